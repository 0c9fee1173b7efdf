//! End-to-end tests: the real `outpost` binary, real sockets, real SQLite files.

mod support;

mod bad_input;
mod cli;
mod config;
mod escalation;
mod intake;
mod lifecycle;
mod protocol;
