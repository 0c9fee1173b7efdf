//! Keeping a link open: a serial port missing at start, unplugged or failing with EIO, or an
//! instrument's TCP port we connect to that is down, is opened again with backoff (1 s,
//! doubling to 30 s, with jitter) until the source is stopped. The link state in the source's
//! stats follows: up (with where) while open, down with the reason otherwise. A failure is
//! logged when it changes, not at every retry, so a port unplugged for a week writes one line.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::{jitter, sleep_or_cancel};
use crate::stats::SourceStats;

/// How a session on an open link ended.
pub enum SessionEnd<S> {
    /// Told to stop: the link is handed back (a reload may keep it open for new settings).
    Stopped(S),
    /// The link failed (unplugged, EIO, closed by the peer): it is opened again after a pause.
    Lost(String),
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Opens with `open` and runs `session` on what it gives, again and again, until `stop` fires;
/// returns the link if it was open then. `first` is an attempt already made (the daemon tries
/// each serial port once before it tells systemd it is ready). `at` says where the link is,
/// for `status` (the port and its line settings, the address).
pub async fn keep_open<S, O, OF, F, SF>(
    source: &str,
    at: &str,
    first: Option<Result<S, String>>,
    mut open: O,
    stats: &SourceStats,
    stop: &CancellationToken,
    mut session: F,
) -> Option<S>
where
    O: FnMut() -> OF,
    OF: Future<Output = Result<S, String>>,
    F: FnMut(S) -> SF,
    SF: Future<Output = SessionEnd<S>>,
{
    let mut attempt = first;
    let mut delay = FIRST_RETRY;
    let mut last_failure: Option<String> = None;
    loop {
        if stop.is_cancelled() {
            return attempt.and_then(Result::ok);
        }
        let opened = match attempt.take() {
            Some(a) => a,
            None => {
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    a = open() => a,
                }
            }
        };
        match opened {
            Ok(link) => {
                stats.up(at.to_string());
                if last_failure.take().is_some() {
                    tracing::info!(source, at, "link open again");
                } else {
                    tracing::info!(source, at, "link open");
                }
                delay = FIRST_RETRY;
                match session(link).await {
                    SessionEnd::Stopped(link) => return Some(link),
                    SessionEnd::Lost(why) => {
                        tracing::warn!(source, at, error = %why, "link lost; opening it again");
                        stats.down(Some(why.clone()));
                        last_failure = Some(why);
                    }
                }
            }
            Err(why) => {
                if last_failure.as_deref() != Some(why.as_str()) {
                    tracing::warn!(source, error = %why, "link not open; trying again with backoff");
                }
                stats.down(Some(why.clone()));
                last_failure = Some(why);
            }
        }
        if sleep_or_cancel(jitter(delay), stop).await {
            return None;
        }
        delay = (delay * 2).min(MAX_RETRY);
    }
}
