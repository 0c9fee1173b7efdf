//! Requests and answers on the control socket.

use serde::{Deserialize, Serialize};

use crate::events::Escalation;
use crate::ingress::SourceDetail;
use crate::journal::Item;
use crate::stats::{SourceState, UplinkState};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    QueueLs {
        #[serde(default)]
        state: Option<String>,
        #[serde(default)]
        destination: Option<String>,
        #[serde(default)]
        limit: usize,
    },
    QueueShow {
        id: String,
        #[serde(default)]
        body: bool,
    },
    QueueRetry {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        destination: Option<String>,
    },
    /// Route unrouted items again with the current rules (one by id, or all).
    QueueReroute {
        #[serde(default)]
        id: Option<String>,
    },
    Tail,
    Reload,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: impl Serialize) -> Response {
        Response { ok: true, data: serde_json::to_value(data).ok(), error: None }
    }

    pub fn err(error: impl Into<String>) -> Response {
        Response { ok: false, data: None, error: Some(error.into()) }
    }
}

/// `queue show`: the item, and its body (base64) when asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShownItem {
    #[serde(flatten)]
    pub item: Item,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_b64: Option<String>,
}

/// `queue retry`: how many failed deliveries were put back in the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retried {
    pub retried: usize,
}

/// `queue retry --unrouted`: unrouted items routed again, and those the rules still miss.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rerouted {
    pub routed: usize,
    pub still_unrouted: usize,
}

/// `reload`: what the daemon did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reloaded {
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub site: String,
    pub node: String,
    pub uptime_s: u64,
    pub config: String,
    pub routing_mode: String,
    pub sources: Vec<SourceStatus>,
    pub destinations: Vec<DestinationStatus>,
    pub journal: JournalStatus,
    /// The order cache: active orders, downloads waiting and given up (counts only).
    #[serde(default)]
    pub orders: crate::journal::OrderCounts,
    pub escalations: Vec<Escalation>,
    /// The link to central, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UplinkStatus {
    pub broker: String,
    pub state: UplinkState,
    pub central_online: Option<bool>,
    pub session: i64,
    pub since: i64,
    pub last_disconnect: Option<String>,
    /// Items waiting for central's acknowledgement, and the oldest one's age.
    pub backlog: u64,
    pub oldest_pending_age_s: Option<u64>,
    pub in_flight: u64,
    pub published: u64,
    pub acked: u64,
    pub resent: u64,
    pub reconnects: u64,
    /// Escalation events kept until central acknowledges them.
    #[serde(default)]
    pub events_waiting: u64,
    pub events_dropped: u64,
}

/// One source: what every kind has, then (flattened, tagged by `kind`) what is its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    /// `up` or `down`.
    #[serde(default)]
    pub state: SourceState,
    /// Unix ms of the last change of `state`.
    #[serde(default)]
    pub since: i64,
    /// Why it is down, or its last problem while up.
    #[serde(default)]
    pub last_error: Option<String>,
    pub received: u64,
    pub rejected: u64,
    pub refused: u64,
    pub duplicates: u64,
    #[serde(flatten)]
    pub detail: SourceDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationStatus {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub pending: u64,
    pub failed: u64,
    pub oldest_pending_age_s: Option<u64>,
    pub delivered: u64,
    pub unreachable_since: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalStatus {
    pub path: String,
    pub disk_bytes: u64,
    pub stored_bytes: u64,
    pub max_bytes: u64,
    pub items: u64,
    pub unrouted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub refused: u64,
    pub schema_version: i64,
    /// Commits since start, and those that synced the WAL (what an acknowledgement waited on);
    /// the rest rode without a sync of their own (delivery progress, acknowledgements, purges).
    #[serde(default)]
    pub commits: u64,
    #[serde(default)]
    pub synced_commits: u64,
}
