//! Live events: what `outpost tail` shows, what escalations are made of, and what the
//! uplink publishes as events. Events carry ids, names, types and counts, never message content.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::envelope::now_ms;

/// One event, as `tail` streams it (a JSON object per line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Unix ms.
    pub at: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Received {
        id: String,
        source: String,
        kind: String,
        message_type: String,
        control_id: String,
        size: usize,
    },
    Duplicate {
        id: String,
        source: String,
        control_id: String,
    },
    Routed {
        id: String,
        routes: Vec<String>,
        destinations: Vec<String>,
    },
    Unrouted {
        id: String,
        source: String,
        message_type: String,
    },
    Rejected {
        id: String,
        source: String,
        reason: String,
    },
    /// Could not be stored; the sender got a negative ACK and keeps the message.
    Refused {
        source: String,
        reason: String,
    },
    Delivered {
        id: String,
        destination: String,
        attempts: u32,
    },
    AttemptFailed {
        id: String,
        destination: String,
        attempt: u32,
        error: String,
        retry_in_ms: u64,
    },
    Failed {
        id: String,
        destination: String,
        attempts: u32,
        error: String,
    },
    Escalation(Escalation),
    /// Never on the bus: a `tail` stream's notice that its reader fell behind and missed events.
    Lagged {
        missed: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What an escalation is about. The names (snake_case) are a contract with central and with
/// whoever reads `status` and `tail` (see docs/mqtt.md and docs/config.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationCode {
    /// An item has waited for a destination longer than `escalation.undelivered_after`.
    Undelivered,
    /// A destination has been unreachable longer than `escalation.unreachable_after`.
    Unreachable,
    /// Items wait for a destination that is no longer in the config.
    Orphaned,
    /// The journal holds more than `journal.high_water` of `journal.max_bytes`.
    HighWater,
    /// Free disk is below twice `journal.min_free_disk`.
    LowDisk,
    /// The journal refuses new items (full, or the disk is).
    JournalFull,
    /// An item matched no route (one event per item).
    Unrouted,
    /// An item was not a readable message (one event per item).
    Rejected,
    /// An adapter could not take an item at all, e.g. too large (one event per item).
    Refused,
    /// The uplink to central is down.
    LinkDown,
    /// A source cannot take some of its items for now: a file it cannot read or move (one
    /// event each time).
    SourceProblem,
    /// A source has been down longer than `escalation.source_down_after` (a lab instrument's
    /// port unplugged, its connection gone).
    SourceDown,
    /// An item matched an `[[escalation.rule]]` (a critical result), one event per item.
    Rule,
}

impl EscalationCode {
    /// Raised once per item (or per file), not as a state that is raised and cleared: a burst
    /// of items can raise thousands, so their log lines are throttled.
    pub fn per_item(self) -> bool {
        matches!(
            self,
            EscalationCode::Unrouted
                | EscalationCode::Rejected
                | EscalationCode::Refused
                | EscalationCode::SourceProblem
                | EscalationCode::Rule
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EscalationCode::Undelivered => "undelivered",
            EscalationCode::Unreachable => "unreachable",
            EscalationCode::Orphaned => "orphaned",
            EscalationCode::HighWater => "high_water",
            EscalationCode::LowDisk => "low_disk",
            EscalationCode::JournalFull => "journal_full",
            EscalationCode::Unrouted => "unrouted",
            EscalationCode::Rejected => "rejected",
            EscalationCode::Refused => "refused",
            EscalationCode::LinkDown => "link_down",
            EscalationCode::SourceProblem => "source_problem",
            EscalationCode::SourceDown => "source_down",
            EscalationCode::Rule => "rule",
        }
    }
}

impl std::fmt::Display for EscalationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A threshold crossed (or cleared). `code` is stable for machines; `message` is for people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Escalation {
    pub code: EscalationCode,
    pub severity: Severity,
    /// What it concerns: an item id, a destination or source name, or "journal".
    pub subject: String,
    pub message: String,
    /// False when the condition has cleared.
    pub active: bool,
}

/// Broadcast bus. Slow subscribers miss events (they are told how many) rather than slowing
/// intake down. Escalations are also logged: per-item ones (an unrouted item, ...) at most
/// [`LOGGED_PER_WINDOW`] per code per minute, the rest counted for the periodic summary, so a
/// burst of items cannot fill the log and make journald drop the lines that matter.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
    throttle: std::sync::Arc<std::sync::Mutex<Throttle>>,
}

/// Per-item escalations logged one by one per code in each window; the rest only counted.
pub const LOGGED_PER_WINDOW: u32 = 10;
const THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Which per-item escalations are logged, and how many were not. No IO; time is passed in.
#[derive(Debug, Default)]
pub struct Throttle {
    window_start: Option<std::time::Instant>,
    logged: std::collections::HashMap<EscalationCode, u32>,
    suppressed: std::collections::HashMap<EscalationCode, u64>,
}

impl Throttle {
    /// Whether this escalation of `code` may be logged now; if not, it is counted.
    pub fn allow(&mut self, code: EscalationCode, now: std::time::Instant) -> bool {
        if self.window_start.is_none_or(|start| now.duration_since(start) >= THROTTLE_WINDOW) {
            self.window_start = Some(now);
            self.logged.clear();
        }
        let logged = self.logged.entry(code).or_default();
        if *logged < LOGGED_PER_WINDOW {
            *logged += 1;
            return true;
        }
        *self.suppressed.entry(code).or_default() += 1;
        false
    }

    /// The escalations not logged since the last call, per code.
    pub fn take_suppressed(&mut self) -> Vec<(EscalationCode, u64)> {
        let mut out: Vec<(EscalationCode, u64)> = self.suppressed.drain().collect();
        out.sort_by_key(|(code, _)| code.as_str());
        out
    }
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(4096);
        Bus { tx, throttle: Default::default() }
    }

    /// Per-item escalations that were not logged one by one since the last call, per code.
    pub fn take_suppressed(&self) -> Vec<(EscalationCode, u64)> {
        self.throttle.lock().map(|mut t| t.take_suppressed()).unwrap_or_default()
    }

    pub fn emit(&self, kind: EventKind) {
        if let EventKind::Escalation(e) = &kind {
            let logged = !e.code.per_item()
                || self.throttle.lock().map(|mut t| t.allow(e.code, std::time::Instant::now())).unwrap_or(true);
            if !logged {
                // Counted for the summary; still on the bus for `tail` and central.
            } else if e.active {
                tracing::warn!(event = "escalation", code = e.code.as_str(), severity = e.severity.as_str(), subject = %e.subject, "escalation: {}", e.message);
            } else {
                tracing::info!(event = "cleared", code = e.code.as_str(), subject = %e.subject, "cleared: {}", e.message);
            }
        }
        let _ = self.tx.send(Event { at: now_ms(), kind });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_item_escalations_are_logged_ten_a_minute_per_code_and_the_rest_counted() {
        let mut t = Throttle::default();
        let start = std::time::Instant::now();
        let allowed = (0..25).filter(|_| t.allow(EscalationCode::Unrouted, start)).count();
        assert_eq!(allowed, LOGGED_PER_WINDOW as usize);
        assert!(t.allow(EscalationCode::Rejected, start), "each code has its own budget");
        let later = start + std::time::Duration::from_secs(61);
        assert!(t.allow(EscalationCode::Unrouted, later), "a new minute, a new budget");
        assert_eq!(t.take_suppressed(), vec![(EscalationCode::Unrouted, 15)]);
        assert_eq!(t.take_suppressed(), vec![], "counted once");
    }

    #[test]
    fn escalation_codes_keep_their_names() {
        let all = [
            (EscalationCode::Undelivered, "undelivered"),
            (EscalationCode::Unreachable, "unreachable"),
            (EscalationCode::Orphaned, "orphaned"),
            (EscalationCode::HighWater, "high_water"),
            (EscalationCode::LowDisk, "low_disk"),
            (EscalationCode::JournalFull, "journal_full"),
            (EscalationCode::Unrouted, "unrouted"),
            (EscalationCode::Rejected, "rejected"),
            (EscalationCode::Refused, "refused"),
            (EscalationCode::LinkDown, "link_down"),
        ];
        for (code, name) in all {
            assert_eq!((code.as_str(), code.to_string()), (name, name.to_string()));
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(serde_json::from_value::<EscalationCode>(name.into()).unwrap(), code);
        }
    }

    #[test]
    fn an_escalation_event_reads_as_before() {
        let e = Escalation {
            code: EscalationCode::HighWater,
            severity: Severity::Warning,
            subject: "journal".into(),
            message: "above".into(),
            active: true,
        };
        let line = serde_json::to_string(&Event { at: 5, kind: EventKind::Escalation(e) }).unwrap();
        assert_eq!(
            line,
            r#"{"at":5,"event":"escalation","code":"high_water","severity":"warning","subject":"journal","message":"above","active":true}"#
        );
        let back: Event = serde_json::from_str(&line).unwrap();
        assert!(matches!(back.kind, EventKind::Escalation(Escalation { code: EscalationCode::HighWater, .. })));
    }

    #[test]
    fn the_lagged_notice_reads_as_before() {
        let line = serde_json::to_string(&Event { at: 5, kind: EventKind::Lagged { missed: 3 } }).unwrap();
        assert_eq!(line, r#"{"at":5,"event":"lagged","missed":3}"#);
    }
}
