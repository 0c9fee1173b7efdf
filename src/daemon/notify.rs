//! The daemon's side of systemd's notify protocol (sd_notify(3)): `READY=1` once the journal is
//! open and every source is up, `STATUS=` lines a tech reads in `systemctl status` (sent when
//! they change), `WATCHDOG=1` at half the interval systemd gives in `$WATCHDOG_USEC` *only
//! while healthy*, and `STOPPING=1` at shutdown. A wedged journal writer or a stalled runtime
//! stops the pings, so systemd restarts the service. Without `$NOTIFY_SOCKET` every call is a
//! no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::Instant;

use crate::journal::Journal;
use crate::stats::{SourceState, Stats, UplinkState};

/// How often health is checked (and the status refreshed) when systemd asks for no watchdog.
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The status line is recounted (a journal read) at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Notifier {
    /// Whether systemd listens ($NOTIFY_SOCKET): without it, no status is counted at all.
    listening: bool,
    /// systemd's watchdog interval, when it set one.
    watchdog: Option<Duration>,
    healthy: bool,
    status: String,
    status_at: Option<Instant>,
}

/// What the status line says, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Standing {
    pub sources: usize,
    pub sources_up: usize,
    pub pending: u64,
    pub failed: u64,
    pub uplink: Option<UplinkState>,
}

impl Standing {
    /// The line for `systemctl status`: "2 sources up, 12 pending, uplink connected".
    pub fn line(&self) -> String {
        let sources = match (self.sources, self.sources_up) {
            (n, up) if n == up => format!("{n} source{} up", if n == 1 { "" } else { "s" }),
            (n, up) => format!("{up} of {n} sources up"),
        };
        let mut line = format!("{sources}, {} pending", self.pending);
        if self.failed > 0 {
            line.push_str(&format!(", {} failed", self.failed));
        }
        if let Some(u) = self.uplink {
            line.push_str(&format!(", uplink {}", u.as_str()));
        }
        line
    }
}

impl Notifier {
    pub(super) fn from_env() -> Notifier {
        Notifier {
            listening: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled(),
            healthy: true,
            status: String::new(),
            status_at: None,
        }
    }

    /// Whether anyone reads the status lines (so whether they are worth counting).
    pub(super) fn listening(&self) -> bool {
        self.listening
    }

    /// How often the main loop calls [`Notifier::tick`]: half the watchdog interval, as
    /// sd_watchdog_enabled(3) advises, or [`CHECK_EVERY`] without one.
    pub(super) fn interval(&self) -> Duration {
        self.watchdog.map(|w| w / 2).unwrap_or(CHECK_EVERY).max(Duration::from_millis(10))
    }

    pub(super) fn ready(&mut self, standing: &Standing) {
        self.status = standing.line();
        self.status_at = Some(Instant::now());
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&self.status)]);
        if let Some(w) = self.watchdog {
            tracing::info!(interval = ?w, "systemd watchdog on: pinging while healthy");
        }
    }

    pub(super) fn stopping(&self) {
        let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// One check: is the journal writer answering (within a quarter of the watchdog interval,
    /// so a healthy answer still pings in time)? Ping if so; log when health changes; send the
    /// status line when it changed.
    pub(super) async fn tick(&mut self, journal: &Journal, stats: &Stats, config: &crate::config::Config) {
        let within = self.watchdog.map(|w| w / 4).unwrap_or(CHECK_EVERY).max(Duration::from_millis(5));
        let health = crate::health::check(journal, within).await;
        match (&health, self.healthy) {
            (Err(e), true) => tracing::error!("unhealthy, so no watchdog pings until it recovers: {e}"),
            (Ok(()), false) => tracing::info!("healthy again: the journal writer answers"),
            _ => {}
        }
        self.healthy = health.is_ok();
        if self.healthy && self.watchdog.is_some() {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
        if !self.listening || !self.healthy || self.status_at.is_some_and(|at| at.elapsed() < STATUS_EVERY) {
            return;
        }
        self.status_at = Some(Instant::now());
        if let Some(standing) = standing(journal, stats, config).await {
            let line = standing.line();
            if line != self.status {
                let _ = sd_notify::notify(&[NotifyState::Status(&line)]);
                self.status = line;
            }
        }
    }
}

/// Counts what the status line says: sources up from the live stats, the queue from the
/// journal's indexes.
pub(super) async fn standing(journal: &Journal, stats: &Stats, config: &crate::config::Config) -> Option<Standing> {
    let counts = journal.read(|r| r.status_counts()).await.ok()?;
    let sources_up = config.sources.iter().filter(|s| stats.source(&s.name).link().state == SourceState::Up).count();
    Some(Standing {
        sources: config.sources.len(),
        sources_up,
        pending: counts.destinations.iter().map(|d| d.1).sum(),
        failed: counts.destinations.iter().map(|d| d.2).sum(),
        uplink: config.uplink.as_ref().map(|_| stats.uplink.link().state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_reads_as_a_tech_would_say_it() {
        let mut s =
            Standing { sources: 2, sources_up: 2, pending: 12, failed: 0, uplink: Some(UplinkState::Connected) };
        assert_eq!(s.line(), "2 sources up, 12 pending, uplink connected");
        s.sources_up = 1;
        s.failed = 3;
        s.uplink = None;
        assert_eq!(s.line(), "1 of 2 sources up, 12 pending, 3 failed");
        let one = Standing { sources: 1, sources_up: 1, pending: 0, failed: 0, uplink: Some(UplinkState::Down) };
        assert_eq!(one.line(), "1 source up, 0 pending, uplink down");
    }
}
