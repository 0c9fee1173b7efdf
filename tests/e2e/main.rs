//! End-to-end tests: the real `outpost` binary, real sockets, real SQLite files.

mod support;

mod intake;
