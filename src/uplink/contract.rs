//! The uplink contract (docs/mqtt.md, v1): topic names and payloads. Pure: no IO, no tokio.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::envelope::{Summary, rfc3339};
use crate::journal::UplinkItem;

pub const VERSION: u32 = 1;
/// Central's retained state topic.
pub const CENTRAL_STATE: &str = "outpost/v1/central/state";

/// The topics of one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub root: String,
}

impl Topics {
    pub fn new(site: &str, node: &str) -> Topics {
        Topics { root: format!("outpost/v1/{site}/{node}") }
    }
    pub fn msg(&self, source: &str) -> String {
        format!("{}/msg/{source}", self.root)
    }
    pub fn ack(&self) -> String {
        format!("{}/ack", self.root)
    }
    pub fn state(&self) -> String {
        format!("{}/state", self.root)
    }
    pub fn telemetry(&self) -> String {
        format!("{}/telemetry", self.root)
    }
    pub fn event(&self) -> String {
        format!("{}/event", self.root)
    }
    pub fn config_set(&self) -> String {
        format!("{}/config/set", self.root)
    }
    pub fn config_status(&self) -> String {
        format!("{}/config/status", self.root)
    }
    pub fn cmd_filter(&self) -> String {
        format!("{}/cmd/+", self.root)
    }
    pub fn cmd_result(&self, name: &str) -> String {
        format!("{}/cmd/{name}/result", self.root)
    }
    /// The command name if `topic` is one of this gateway's command topics.
    pub fn command_name<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let rest = topic.strip_prefix(&self.root)?.strip_prefix("/cmd/")?;
        (!rest.is_empty() && !rest.contains('/')).then_some(rest)
    }
}

#[derive(Debug, Serialize)]
struct Chunk {
    index: usize,
    count: usize,
}

#[derive(Debug, Serialize)]
struct ItemMessage<'a> {
    v: u32,
    id: &'a str,
    seq: i64,
    session: i64,
    source: &'a str,
    kind: &'a str,
    status: &'a str,
    received_at: String,
    historical: bool,
    /// The kind's summary fields (docs/mqtt.md names them per kind).
    summary: &'a Summary,
    charset: Option<&'a str>,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunk: Option<Chunk>,
}

/// The payloads of one item: one message, or its chunks in order when the whole would exceed
/// `max_payload` bytes.
pub fn item_payloads(item: &UplinkItem, session: i64, historical: bool, max_payload: usize) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let message = |chunk: Option<Chunk>| ItemMessage {
        v: VERSION,
        id: &item.id,
        seq: item.useq,
        session,
        source: &item.source,
        kind: &item.kind,
        status: &item.status,
        received_at: rfc3339(item.received_at),
        historical,
        summary: &item.summary,
        charset: item.charset.as_deref(),
        size: item.body.len(),
        chunk,
    };
    // The body is appended as `"body_b64":"..."` by hand: base64 needs no JSON escaping, and
    // scanning it for escapes was a good part of the cost of an item.
    let to_json = |m: &ItemMessage<'_>, body: &[u8]| {
        let mut out = serde_json::to_vec(m).unwrap_or_default();
        if out.last() == Some(&b'}') {
            out.pop();
            out.extend_from_slice(b",\"body_b64\":\"");
            let start = out.len();
            out.resize(start + base64::encoded_len(body.len(), true).unwrap_or(0), 0);
            let n = b64.encode_slice(body, &mut out[start..]).unwrap_or(0);
            out.truncate(start + n);
            out.extend_from_slice(b"\"}");
        }
        out
    };
    let whole = to_json(&message(None), &item.body);
    if whole.len() <= max_payload {
        return vec![whole];
    }
    // Everything but the body, with the widest chunk field a split could need.
    let overhead = to_json(&message(Some(Chunk { index: usize::MAX, count: usize::MAX })), &[]).len();
    // Base64 turns 3 bytes into 4; keep chunks a multiple of 3 so each encodes without padding.
    let per_chunk = (max_payload.saturating_sub(overhead) / 4 * 3).max(3);
    let count = item.body.len().div_ceil(per_chunk);
    item.body
        .chunks(per_chunk)
        .enumerate()
        .map(|(index, part)| to_json(&message(Some(Chunk { index, count })), part))
        .collect()
}

/// `{root}/ack`.
#[derive(Debug, Deserialize)]
pub struct Ack {
    pub ids: Vec<String>,
}

/// Reads an ack; the error says what an ack looks like.
pub fn parse_ack(payload: &[u8]) -> Result<Ack, BadAck> {
    serde_json::from_slice::<Ack>(payload).map_err(BadAck)
}

#[derive(Debug, thiserror::Error)]
#[error("not an ack ({{\"ids\": [...]}}): {0}")]
pub struct BadAck(serde_json::Error);

/// Central's state: `{"status": "online" | "offline"}`.
pub fn central_online(payload: &[u8]) -> Option<bool> {
    #[derive(Deserialize)]
    struct State {
        status: String,
    }
    let s: State = serde_json::from_slice(payload).ok()?;
    match s.status.as_str() {
        "online" => Some(true),
        "offline" => Some(false),
        _ => None,
    }
}

/// The death message (last will, and on a clean stop).
pub fn death(session: i64, reason: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"v": VERSION, "status": "offline", "session": session, "reason": reason}))
        .unwrap_or_default()
}

/// A command from central.
#[derive(Debug, Default, Deserialize)]
pub struct Command {
    #[serde(default)]
    pub request_id: Option<serde_json::Value>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub args: serde_json::Value,
}

pub fn command_result(request_id: &Option<serde_json::Value>, result: Result<serde_json::Value, String>) -> Vec<u8> {
    let v = match result {
        Ok(r) => serde_json::json!({"v": VERSION, "request_id": request_id, "ok": true, "result": r}),
        Err(e) => serde_json::json!({"v": VERSION, "request_id": request_id, "ok": false, "error": e}),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339(crate::envelope::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Summary;

    fn item(body: Vec<u8>) -> UplinkItem {
        UplinkItem {
            seq: 7,
            useq: 3,
            id: "01KAQ7W3Z8000000000000002A".into(),
            source: "ehr-feed".into(),
            kind: "hl7v2".into(),
            status: "accepted".into(),
            received_at: 1_700_000_000_000,
            summary: {
                let mut s = Summary::new("ORU^R01", "C1");
                s.set("message_type", "ORU^R01".into());
                s
            },
            charset: Some("UNICODE UTF-8".into()),
            body,
        }
    }

    fn parse(p: &[u8]) -> serde_json::Value {
        serde_json::from_slice(p).unwrap()
    }

    #[test]
    fn small_item_is_one_message_with_the_contract_fields() {
        let body = b"MSH|^~\\&|A|B\r\xe9".to_vec();
        let out = item_payloads(&item(body.clone()), 5, true, 64 * 1024);
        assert_eq!(out.len(), 1);
        let v = parse(&out[0]);
        assert_eq!(v["id"], "01KAQ7W3Z8000000000000002A");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["session"], 5);
        assert_eq!(v["historical"], true);
        assert_eq!(v["source"], "ehr-feed");
        assert_eq!(v["kind"], "hl7v2");
        assert_eq!(v["summary"]["message_type"], "ORU^R01");
        assert_eq!(v["size"], body.len());
        assert!(v.get("chunk").is_none());
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(b64.decode(v["body_b64"].as_str().unwrap()).unwrap(), body);
    }

    #[test]
    fn large_item_is_split_into_ordered_chunks_within_the_limit() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let limit = 4096;
        let out = item_payloads(&item(body.clone()), 1, false, limit);
        assert!(out.len() > 30, "{} chunks", out.len());
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut joined = Vec::new();
        for (i, p) in out.iter().enumerate() {
            assert!(p.len() <= limit, "chunk {i} is {} bytes", p.len());
            let v = parse(p);
            assert_eq!(v["chunk"]["index"], i);
            assert_eq!(v["chunk"]["count"], out.len());
            assert_eq!(v["size"], body.len());
            joined.extend(b64.decode(v["body_b64"].as_str().unwrap()).unwrap());
        }
        assert_eq!(joined, body);
    }

    #[test]
    fn topics_and_commands() {
        let t = Topics::new("northfield", "gw-01");
        assert_eq!(t.msg("ehr-feed"), "outpost/v1/northfield/gw-01/msg/ehr-feed");
        assert_eq!(t.command_name("outpost/v1/northfield/gw-01/cmd/ping"), Some("ping"));
        assert_eq!(t.command_name("outpost/v1/northfield/gw-02/cmd/ping"), None);
        assert_eq!(t.command_name("outpost/v1/northfield/gw-01/cmd/ping/result"), None);
        assert_eq!(central_online(br#"{"status":"online"}"#), Some(true));
        assert_eq!(central_online(br#"{"status":"offline","x":1}"#), Some(false));
        assert_eq!(central_online(b"garbage"), None);
        assert_eq!(parse_ack(br#"{"ids":["a","b"]}"#).unwrap().ids, vec!["a", "b"]);
        assert!(parse_ack(b"{}").is_err());
    }
}
