//! Live events: what `outpost tail` shows, what escalations are made of, and what the
//! uplink publishes as events. Events carry ids, names, types and counts, never message content.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::envelope::now_ms;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unix ms.
    pub at: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// A threshold crossed (or cleared). `code` is stable for machines; `message` is for people.
#[derive(Debug, Clone, Serialize)]
pub struct Escalation {
    pub code: &'static str,
    pub severity: Severity,
    /// What it concerns: an item id, a destination or source name, or "journal".
    pub subject: String,
    pub message: String,
    /// False when the condition has cleared.
    pub active: bool,
}

/// Broadcast bus. Slow subscribers miss events (they are told how many) rather than slowing
/// intake down.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(4096);
        Bus { tx }
    }

    pub fn emit(&self, kind: EventKind) {
        if let EventKind::Escalation(e) = &kind {
            if e.active {
                tracing::warn!(code = e.code, severity = ?e.severity, subject = %e.subject, "escalation: {}", e.message);
            } else {
                tracing::info!(code = e.code, subject = %e.subject, "cleared: {}", e.message);
            }
        }
        let _ = self.tx.send(Event { at: now_ms(), kind });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
