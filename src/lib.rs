//! outpost: a clinic's integration edge. See ARCHITECTURE.md for the codemap.
#![deny(unsafe_code)]

pub mod astm;
pub mod atomic_file;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod control;
pub mod current;
pub mod daemon;
pub mod doctor;
pub mod egress;
pub mod envelope;
pub mod escalate;
pub mod events;
pub mod fax;
pub mod health;
pub mod hl7;
pub mod ingress;
pub mod init;
pub mod instrument;
pub mod intake;
pub mod journal;
pub mod logging;
pub mod mllp;
pub mod payload;
pub mod ports;
pub mod remote;
pub mod reopen;
pub mod router;
pub mod rules_test;
pub mod serial;
pub mod serial_line;
pub mod stats;
pub mod suggest;
pub mod uplink;
