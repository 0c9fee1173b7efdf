//! `outpost probe`: listen to an unknown instrument, passively, and say what it speaks.
//!
//! | file | what |
//! |---|---|
//! | `analyze.rs` | bytes heard at one setting → a [`Hearing`] (protocol, instrument id, line signs, score). Sans IO. |
//! | `plan.rs` | the settings tried, in order; `--baud`, `--line`, durations as a tech types them. Pure. |
//! | `report.rs` | the settings tried → the verdict: best setting, profile, config to paste, advice, exit code. Pure. |
//! | `listen.rs` | the IO: a serial port cycled through the settings, a TCP listener or connection; progress on stderr. |
//! | `modem.rs` | `--modem`: the AT commands that identify a fax modem, its replies read, the verdict (classes, native or HylaFAX, the source to paste). Sans IO. |
//! | `ask.rs` | `--modem`'s IO: the port opened (115200 8N1 RTS/CTS, other rates if no `OK`), each command written and its reply read with a short timeout. |
//!
//! Promises: the passive probe never writes a byte to the instrument (it neither answers ENQ
//! nor ACKs a message: a port is opened for its settings and only read); nothing it prints or
//! returns holds more of what was heard than the sender's id and protocol facts (no patient
//! data, no results). `--modem` is the one mode that writes, and only to a modem: AT
//! identification commands, never `ATA`/`ATD` (the line stays on-hook), ending with `ATZ`.

pub mod analyze;
pub mod ask;
pub mod listen;
pub mod modem;
pub mod plan;
pub mod report;

pub use analyze::{Hearing, Protocol, hear};
pub use listen::{Options, ProbeError, Target, run};
pub use report::{Place, Report, Tried};

#[cfg(test)]
mod tests {
    /// The analysis, the plan and the report do no IO: none of them imports tokio, a socket or
    /// a file API (the listener alone does).
    #[test]
    fn only_the_listener_does_io() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/probe");
        for file in ["analyze.rs", "analyze/tests.rs", "plan.rs", "report.rs", "modem.rs"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for forbidden in ["tokio", "std::net", "std::fs", "crate::serial::open", "crate::control"] {
                let used = text.lines().any(|l| {
                    let l = l.trim_start();
                    (l.starts_with("use ") || l.starts_with("pub use ")) && l.contains(forbidden)
                });
                assert!(!used, "{file} imports {forbidden}");
            }
        }
    }
}
