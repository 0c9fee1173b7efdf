//! `outpost probe`: listen to an unknown instrument, passively, and say what it speaks.
//!
//! | file | what |
//! |---|---|
//! | `analyze.rs` | bytes heard at one setting → a [`Hearing`] (protocol, instrument id, line signs, score). Sans IO. |
//! | `plan.rs` | the settings tried, in order; `--baud`, `--line`, durations as a tech types them. Pure. |
//! | `report.rs` | the settings tried → the verdict: best setting, profile, config to paste, advice, exit code. Pure. |
//! | `listen.rs` | the IO: a serial port cycled through the settings, a TCP listener or connection; progress on stderr. |
//!
//! Promises: the probe never writes a byte to the instrument (it neither answers ENQ nor
//! ACKs a message: a port is opened for its settings and only read); nothing it prints or
//! returns holds more of what was heard than the sender's id and protocol facts (no patient
//! data, no results).

pub mod analyze;
pub mod listen;
pub mod plan;
pub mod report;

pub use analyze::{Hearing, Protocol, hear};
pub use listen::{Options, ProbeError, Target, run};
pub use report::{Place, Report, Tried};
