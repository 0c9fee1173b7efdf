//! outpost: a clinic's integration edge. See ARCHITECTURE.md for the codemap.
#![forbid(unsafe_code)]

pub mod config;
pub mod hl7;
