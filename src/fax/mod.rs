//! Fax reception: the fax modem's AT dialogue (sans IO) and the received document.
//!
//! `modem.rs`: the Class 2 / 2.0 receive state machine; `dle.rs`: phase-C DLE unstuffing;
//! `codes.rs`: hangup, page status and post-page tables.

pub mod codes;
pub mod dle;
pub mod modem;
