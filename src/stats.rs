//! Live counters and link states that `status` reports. Written by adapters and delivery
//! workers, read by the control server; plain atomics and short locks, no IO.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// A source's live counters and link. The counters are those most kinds share (a kind shows
/// the ones that mean something for it, see `ingress::status`); intake counts items, adapters
/// count the rest.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Open connections or sessions (MLLP connections, TCP peers).
    pub connections: AtomicU64,
    pub received: AtomicU64,
    pub rejected: AtomicU64,
    pub refused: AtomicU64,
    pub duplicates: AtomicU64,
    /// Bytes outside the kind's framing, dropped.
    pub discarded_bytes: AtomicU64,
    /// Items larger than the source's limit, refused.
    pub oversized: AtomicU64,
    /// Work waiting at the source itself (files in a watched folder not yet taken in).
    pub waiting: AtomicU64,
    /// Link-layer frames refused (ASTM: NAKed for a bad checksum, frame number, character).
    pub rejected_frames: AtomicU64,
    /// Unfinished messages dropped (ASTM: a receive timeout, the instrument aborting).
    pub discarded_messages: AtomicU64,
    /// Unix ms of the last item taken (0: none yet).
    pub last_item_at: AtomicU64,
    /// Order groups in this source's order messages that had no specimen id (not cached).
    pub orders_unreadable: AtomicU64,
    /// Calls answered (fax modems).
    pub calls: AtomicU64,
    /// Pages received (fax modems).
    pub pages: AtomicU64,
    /// Items kept incomplete (a fax call that ended early).
    pub incomplete: AtomicU64,
    /// What the source's device is doing now, in words (a fax modem: `idle`, `receiving page
    /// 2`), and its protocol variant (the modem's class).
    pub activity: Mutex<(String, Option<String>)>,
    pub link: Mutex<SourceLink>,
}

/// Whether a source can take items now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Not opened yet, or its resource failed (an unplugged port, a folder gone).
    #[default]
    Down,
    Up,
}

#[derive(Debug, Default, Clone)]
pub struct SourceLink {
    pub state: SourceState,
    /// What the source holds while up: the bound address, the folder watched, the device.
    pub at: Option<String>,
    /// Unix ms of the last change of `state`.
    pub since: i64,
    /// Why it is down, or the last problem while up (a file that cannot be read).
    pub last_error: Option<String>,
}

impl SourceStats {
    pub fn link(&self) -> SourceLink {
        self.link.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Marks the source up at `at` (clearing the last error).
    pub fn up(&self, at: String) {
        self.set_link(SourceState::Up, Some(at), None);
    }

    /// Marks the source down, with why.
    pub fn down(&self, why: Option<String>) {
        self.set_link(SourceState::Down, None, why);
    }

    /// Records a problem that does not take the source down.
    pub fn problem(&self, why: Option<String>) {
        if let Ok(mut l) = self.link.lock() {
            l.last_error = why;
        }
    }

    fn set_link(&self, state: SourceState, at: Option<String>, last_error: Option<String>) {
        if let Ok(mut l) = self.link.lock() {
            // A source that starts down (a serial port not there yet) is down since then.
            if l.state != state || l.since == 0 {
                l.since = crate::envelope::now_ms();
            }
            *l = SourceLink { state, at, since: l.since, last_error };
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct LinkState {
    /// Set while the destination cannot be reached (connect errors, timeouts).
    pub unreachable_since: Option<i64>,
    pub last_error: Option<String>,
    pub connected: bool,
}

#[derive(Debug, Default)]
pub struct DestinationStats {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub link: Mutex<LinkState>,
}

impl DestinationStats {
    pub fn link(&self) -> LinkState {
        self.link.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn set_link(&self, f: impl FnOnce(&mut LinkState)) {
        if let Ok(mut l) = self.link.lock() {
            f(&mut l);
        }
    }
}

/// The uplink's link state and counters.
#[derive(Debug, Default)]
pub struct UplinkStats {
    pub published: AtomicU64,
    pub acked: AtomicU64,
    pub resent: AtomicU64,
    pub reconnects: AtomicU64,
    pub events_dropped: AtomicU64,
    pub in_flight: AtomicU64,
    pub link: Mutex<UplinkLink>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct UplinkLink {
    pub state: UplinkState,
    pub broker: String,
    /// Central's retained state, once seen this session.
    pub central_online: Option<bool>,
    pub session: i64,
    /// Unix ms of the last change of `state`.
    pub since: i64,
    pub last_disconnect: Option<String>,
}

/// Where the link to central stands, as `status` and telemetry name it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkState {
    /// The first session of this run is being set up (also before the uplink task has begun).
    #[default]
    Connecting,
    Connected,
    /// Lost or refused; the next session is tried after a backoff.
    Down,
}

impl UplinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            UplinkState::Connecting => "connecting",
            UplinkState::Connected => "connected",
            UplinkState::Down => "down",
        }
    }
}

impl std::fmt::Display for UplinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl UplinkStats {
    pub fn link(&self) -> UplinkLink {
        self.link.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn set_link(&self, f: impl FnOnce(&mut UplinkLink)) {
        if let Ok(mut l) = self.link.lock() {
            f(&mut l);
        }
    }
}

pub struct Stats {
    pub started: Instant,
    pub uplink: UplinkStats,
    sources: RwLock<BTreeMap<String, Arc<SourceStats>>>,
    destinations: RwLock<BTreeMap<String, Arc<DestinationStats>>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            uplink: UplinkStats::default(),
            sources: RwLock::default(),
            destinations: RwLock::default(),
        }
    }
}

impl Stats {
    pub fn source(&self, name: &str) -> Arc<SourceStats> {
        if let Some(s) = self.sources.read().ok().and_then(|m| m.get(name).cloned()) {
            return s;
        }
        let mut map = match self.sources.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(name.to_string()).or_default().clone()
    }

    pub fn destination(&self, name: &str) -> Arc<DestinationStats> {
        if let Some(s) = self.destinations.read().ok().and_then(|m| m.get(name).cloned()) {
            return s;
        }
        let mut map = match self.destinations.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(name.to_string()).or_default().clone()
    }

    /// Forgets components no longer configured (after a reload).
    pub fn retain(&self, sources: &[String], destinations: &[String]) {
        if let Ok(mut m) = self.sources.write() {
            m.retain(|k, _| sources.contains(k));
        }
        if let Ok(mut m) = self.destinations.write() {
            m.retain(|k, _| destinations.contains(k));
        }
    }
}

pub fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

pub fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_states_are_named_as_status_shows_them_and_start_as_connecting() {
        for (state, name) in [
            (UplinkState::Connecting, "connecting"),
            (UplinkState::Connected, "connected"),
            (UplinkState::Down, "down"),
        ] {
            assert_eq!((state.as_str(), state.to_string()), (name, name.to_string()));
            assert_eq!(serde_json::to_value(state).unwrap(), name);
            assert_eq!(serde_json::from_value::<UplinkState>(name.into()).unwrap(), state);
        }
        assert_eq!(UplinkStats::default().link().state, UplinkState::Connecting);
    }
}
