//! Crash points for the end-to-end tests, named by `OUTPOST_FAILPOINT` (read once, at the first
//! point reached). A test sets it to make the daemon die at one precise moment, as a power cut
//! there would leave things (e.g. `abort-after-delivery`: a delivery done, its progress record
//! never written). Unset in production, where every point is a no-op.

use std::sync::OnceLock;

/// The daemon aborts here: a delivery was accepted by its destination, and its progress record
/// is not written yet (`egress`).
pub const ABORT_AFTER_DELIVERY: &str = "abort-after-delivery";

/// Aborts the process (no unwinding, no cleanup: like `kill -9`) if `OUTPOST_FAILPOINT` names
/// this point.
pub fn hit(point: &'static str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var("OUTPOST_FAILPOINT").ok().filter(|v| !v.is_empty()));
    if chosen.as_deref() == Some(point) {
        eprintln!("outpost: failpoint {point} reached (OUTPOST_FAILPOINT): aborting");
        std::process::abort();
    }
}
