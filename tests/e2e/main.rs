//! End-to-end tests: the real `outpost` binary, real sockets, real SQLite files.

mod astm_sim;
mod fax_sim;
mod mqtt_central;
mod mqtt_support;
mod support;

mod acl;
mod astm;
mod astm_results;
mod bad_input;
mod cli;
mod config;
mod directory;
mod escalation;
mod fax_cli;
mod fax_modem;
mod fax_spool;
mod intake;
mod lifecycle;
mod logging;
mod mqtt_harness;
mod notify;
mod orders;
mod probe;
mod protocol;
mod slowsync;
mod uplink;
