//! The contract's topics and payloads (docs/mqtt.md, v1), read and written without IO.
//!
//! Everything here is pure so it can be tested exhaustively: topic names in and out, item
//! messages (and their chunks) parsed and validated, acknowledgements built, the gateway's
//! state messages read for logging, and the time format. Error messages never quote a payload:
//! only an item's body may carry patient data, but a malformed message may carry it anywhere.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::Deserialize;

/// The contract's version prefix; every topic starts with it.
pub const PREFIX: &str = "outpost/v1";

/// Central's own retained state topic (birth `online`, last will `offline`).
pub const CENTRAL_STATE: &str = "outpost/v1/central/state";

/// Most ids one acknowledgement message names.
pub const MAX_IDS_PER_ACK: usize = 1000;

/// An id longer than this is not one the gateway made (ULIDs are 26 characters).
const MAX_ID_LEN: usize = 128;

/// What a received topic is, for the consumer.
#[derive(Debug, PartialEq, Eq)]
pub enum Topic<'a> {
    /// `outpost/v1/{site}/{node}/msg/{source}`: an item or one chunk of one.
    Item { gateway: &'a str, source: &'a str },
    /// Any other topic under a gateway's root (state, telemetry, event, config/status,
    /// cmd/{name}/result): recorded as observed.
    Gateway { gateway: &'a str, rest: &'a str },
    /// Not under a gateway's root.
    Other,
}

/// Splits a topic into the gateway (`site/node`, one slice of the topic) and what follows.
pub fn classify(topic: &str) -> Topic<'_> {
    let Some(after) = topic.strip_prefix(PREFIX).and_then(|t| t.strip_prefix('/')) else {
        return Topic::Other;
    };
    let mut parts = after.splitn(3, '/');
    let (Some(site), Some(node), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Topic::Other;
    };
    if !is_name(site) || !is_name(node) {
        return Topic::Other;
    }
    let gateway = &after[..site.len() + 1 + node.len()];
    match rest.strip_prefix("msg/") {
        Some(source) if !source.is_empty() => Topic::Item { gateway, source },
        _ => Topic::Gateway { gateway, rest },
    }
}

/// A site or node name as the contract allows them: letters, digits, `-`, `_`, `.`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `outpost/v1/{site}/{node}` followed by `suffix`.
pub fn gateway_topic(gateway: &str, suffix: &str) -> String {
    format!("{PREFIX}/{gateway}/{suffix}")
}

/// An item message (or one chunk of one), validated, with its body decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub seq: i64,
    pub session: i64,
    pub source: String,
    pub kind: String,
    pub status: String,
    pub received_at: String,
    pub historical: bool,
    /// The `summary` object as JSON text (`{}` when absent).
    pub summary: String,
    pub charset: Option<String>,
    /// The whole body's length, also for a chunk.
    pub size: u64,
    /// The body, or for a chunk only its part.
    pub body: Vec<u8>,
    pub chunk: Option<Chunk>,
}

/// Where a chunk sits in its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub index: u32,
    pub count: u32,
}

/// Why an item message was not taken. The text names fields, never their values.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize)]
struct RawItem<'a> {
    id: String,
    seq: u64,
    session: u64,
    source: String,
    kind: String,
    status: String,
    received_at: String,
    historical: bool,
    #[serde(default)]
    summary: Option<serde_json::Value>,
    #[serde(default)]
    charset: Option<String>,
    size: u64,
    /// Borrowed from the payload (no copy) unless the JSON escapes something in it.
    #[serde(borrow)]
    body_b64: Cow<'a, str>,
    #[serde(default)]
    chunk: Option<RawChunk>,
}

#[derive(Deserialize)]
struct RawChunk {
    index: u64,
    count: u64,
}

/// Parses and validates an item message. Unknown fields are ignored, as the contract asks.
pub fn parse_item(payload: &[u8]) -> Result<Item, Malformed> {
    let raw: RawItem = serde_json::from_slice(payload).map_err(|e| Malformed(describe_json_error(&e)))?;
    if raw.id.is_empty() || raw.id.len() > MAX_ID_LEN || raw.id.chars().any(char::is_control) {
        return Err(Malformed("`id` is empty, too long or has control characters".into()));
    }
    let seq = i64::try_from(raw.seq).map_err(|_| Malformed("`seq` is out of range".into()))?;
    let session = i64::try_from(raw.session).map_err(|_| Malformed("`session` is out of range".into()))?;
    if i64::try_from(raw.size).is_err() {
        return Err(Malformed("`size` is out of range".into()));
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(raw.body_b64.as_bytes())
        .map_err(|_| Malformed("`body_b64` is not standard base64 with padding".into()))?;
    let chunk = match raw.chunk {
        None => {
            if body.len() as u64 != raw.size {
                return Err(Malformed(format!("body is {} bytes but `size` says {}", body.len(), raw.size)));
            }
            None
        }
        Some(RawChunk { index, count }) => {
            let (Ok(index), Ok(count)) = (u32::try_from(index), u32::try_from(count)) else {
                return Err(Malformed("`chunk.index` or `chunk.count` is out of range".into()));
            };
            if count == 0 || index >= count {
                return Err(Malformed(format!("chunk index {index} does not fit a count of {count}")));
            }
            if body.len() as u64 > raw.size {
                return Err(Malformed(format!("chunk of {} bytes is larger than `size` {}", body.len(), raw.size)));
            }
            Some(Chunk { index, count })
        }
    };
    let summary = match raw.summary {
        None | Some(serde_json::Value::Null) => "{}".to_string(),
        Some(v) => v.to_string(),
    };
    Ok(Item {
        id: raw.id,
        seq,
        session,
        source: raw.source,
        kind: raw.kind,
        status: raw.status,
        received_at: raw.received_at,
        historical: raw.historical,
        summary,
        charset: raw.charset,
        size: raw.size,
        body,
        chunk,
    })
}

/// serde_json's messages may quote the offending value ("invalid type: string \"…\""); only a
/// missing field is safe to name as is.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    match e.classify() {
        Category::Data if text.starts_with("missing field") => text,
        Category::Data => format!("a field has the wrong type or value (line {} column {})", e.line(), e.column()),
        Category::Syntax => format!("not JSON (syntax error at line {} column {})", e.line(), e.column()),
        Category::Eof => "truncated JSON".to_string(),
        Category::Io => "unreadable JSON".to_string(),
    }
}

/// Checks that stored chunk lengths (in index order, all `count` of them) make up a body of
/// `size` bytes as the contract cuts it: every chunk but the last `n` bytes, the last the rest
/// (1..=n bytes). Chunks of copies cut differently (the gateway's packet size changed between
/// sends) do not fit together, even when their lengths happen to add up.
pub fn chunks_fit(lengths: &[u64], size: u64) -> Result<(), String> {
    let Some((&last, rest)) = lengths.split_last() else {
        return Err("no chunks".into());
    };
    let total: u64 = lengths.iter().sum();
    if total != size {
        return Err(format!("chunks add up to {total} bytes, `size` says {size}"));
    }
    let Some(&n) = rest.first() else {
        return Ok(());
    };
    if n == 0 || rest.iter().any(|&l| l != n) || last == 0 || last > n {
        return Err(format!("chunks of {} bytes are not cut evenly", lengths.len()));
    }
    Ok(())
}

/// Acknowledgement payloads `{"ids": [...]}` naming `ids`, at most `MAX_IDS_PER_ACK` each.
pub fn ack_payloads(ids: &[String]) -> Vec<Vec<u8>> {
    ids.chunks(MAX_IDS_PER_ACK).map(|ids| serde_json::json!({ "ids": ids }).to_string().into_bytes()).collect()
}

/// Central's state payload.
pub fn central_state(online: bool) -> &'static str {
    if online { r#"{"status":"online"}"# } else { r#"{"status":"offline"}"# }
}

/// The two fields of a gateway's state message that say what it means.
#[derive(Debug, PartialEq, Eq)]
pub struct GatewayState {
    pub online: bool,
    pub session: Option<u64>,
}

/// Reads a gateway's `state` message; `None` when it is not one the contract describes.
pub fn parse_gateway_state(payload: &[u8]) -> Option<GatewayState> {
    #[derive(Deserialize)]
    struct Raw {
        status: String,
        #[serde(default)]
        session: Option<u64>,
    }
    let raw: Raw = serde_json::from_slice(payload).ok()?;
    let online = match raw.status.as_str() {
        "online" => true,
        "offline" => false,
        _ => return None,
    };
    Some(GatewayState { online, session: raw.session })
}

/// The `id` of an event message (what its acknowledgement names); `None` when it has none.
pub fn event_id(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Raw {
        id: String,
    }
    let raw: Raw = serde_json::from_slice(payload).ok()?;
    (!raw.id.is_empty()).then_some(raw.id)
}

/// The time as RFC 3339 UTC with milliseconds, the contract's format.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn item_json(extra: &str) -> String {
        format!(
            r#"{{"v":1,"id":"01KAQ7W3Z8000000000000002A","seq":42,"session":7,"source":"ehr-feed","kind":"hl7v2",
            "status":"accepted","received_at":"2026-11-23T21:07:31.412Z","historical":false,
            "summary":{{"message_type":"ORU^R01"}},"charset":"UNICODE UTF-8"{extra}}}"#
        )
    }

    #[test]
    fn topics() {
        let check = |topic, expected| assert_eq!(classify(topic), expected, "{topic}");
        check("outpost/v1/s1/n-1/msg/ehr-feed", Topic::Item { gateway: "s1/n-1", source: "ehr-feed" });
        check("outpost/v1/s.1/n_1/msg/a/b", Topic::Item { gateway: "s.1/n_1", source: "a/b" });
        check("outpost/v1/s1/n1/state", Topic::Gateway { gateway: "s1/n1", rest: "state" });
        check("outpost/v1/s1/n1/cmd/ping/result", Topic::Gateway { gateway: "s1/n1", rest: "cmd/ping/result" });
        check("outpost/v1/s1/n1/msg/", Topic::Gateway { gateway: "s1/n1", rest: "msg/" });
        check("outpost/v1/central/state", Topic::Other);
        check("outpost/v2/s1/n1/msg/x", Topic::Other);
        check("outpost/v1/s 1/n1/msg/x", Topic::Other);
        check("outpost/v1//n1/msg/x", Topic::Other);
        check("elsewhere", Topic::Other);
    }

    #[test]
    fn names() {
        assert!(is_name("north-field_1.a"));
        assert!(!is_name(""));
        assert!(!is_name("a/b"));
        assert!(!is_name("a+"));
        assert!(!is_name("#"));
    }

    #[test]
    fn whole_item() {
        let item = parse_item(item_json(r#","size":5,"body_b64":"TVNIfF4=","unknown":{"x":1}"#).as_bytes()).unwrap();
        assert_eq!(item.id, "01KAQ7W3Z8000000000000002A");
        assert_eq!((item.seq, item.session, item.size), (42, 7, 5));
        assert_eq!(item.body, b"MSH|^");
        assert_eq!(item.summary, r#"{"message_type":"ORU^R01"}"#);
        assert_eq!(item.charset.as_deref(), Some("UNICODE UTF-8"));
        assert_eq!(item.chunk, None);
        assert!(!item.historical);
    }

    #[test]
    fn escaped_base64() {
        // Some JSON encoders write '/' as "\/".
        let item = parse_item(item_json(r#","size":3,"body_b64":"\/\/\/\/""#).as_bytes()).unwrap();
        assert_eq!(item.body, [0xff, 0xff, 0xff]);
    }

    #[test]
    fn null_charset_and_missing_summary() {
        let json = r#"{"id":"A","seq":1,"session":1,"source":"s","kind":"hl7v2","status":"accepted",
            "received_at":"t","historical":true,"charset":null,"size":0,"body_b64":""}"#;
        let item = parse_item(json.as_bytes()).unwrap();
        assert_eq!(item.charset, None);
        assert_eq!(item.summary, "{}");
        assert!(item.body.is_empty());
    }

    #[test]
    fn chunk_item() {
        let item =
            parse_item(item_json(r#","size":12,"body_b64":"TVNIfF4=","chunk":{"index":1,"count":3}"#).as_bytes())
                .unwrap();
        assert_eq!(item.chunk, Some(Chunk { index: 1, count: 3 }));
        assert_eq!(item.size, 12);
        assert_eq!(item.body.len(), 5);
    }

    #[test]
    fn malformed_items() {
        let bad = |payload: &str, expect: &str| {
            let err = parse_item(payload.as_bytes()).unwrap_err();
            assert!(err.0.contains(expect), "{payload}: {err}");
        };
        bad("not json", "not JSON");
        bad("{\"id\":", "truncated");
        bad("[1,2]", "wrong type");
        bad(&item_json(r#","size":5"#), "missing field `body_b64`");
        bad(&item_json(r#","size":5,"body_b64":"!!!!""#), "base64");
        bad(&item_json(r#","size":5,"body_b64":"TVNIfF4""#), "base64");
        bad(&item_json(r#","size":6,"body_b64":"TVNIfF4=""#), "`size` says 6");
        bad(&item_json(r#","size":"SECRET","body_b64":"TVNIfF4=""#), "wrong type");
        bad(&item_json(r#","size":5,"body_b64":"TVNIfF4=","chunk":{"index":3,"count":3}"#), "does not fit");
        bad(&item_json(r#","size":5,"body_b64":"TVNIfF4=","chunk":{"index":0,"count":0}"#), "does not fit");
        bad(&item_json(r#","size":4,"body_b64":"TVNIfF4=","chunk":{"index":0,"count":2}"#), "larger");
        bad(&item_json(r#","size":-1,"body_b64":"""#), "wrong type");
        let no_id = r#"{"id":"","seq":1,"session":1,"source":"s","kind":"k","status":"s","received_at":"t",
            "historical":false,"size":0,"body_b64":""}"#;
        bad(no_id, "`id`");
        let huge_seq = r#"{"id":"A","seq":18446744073709551615,"session":1,"source":"s","kind":"k","status":"s",
            "received_at":"t","historical":false,"size":0,"body_b64":""}"#;
        bad(huge_seq, "`seq` is out of range");
    }

    #[test]
    fn malformed_messages_do_not_quote_values() {
        let err = parse_item(item_json(r#","size":5,"body_b64":12345678"#).as_bytes()).unwrap_err();
        assert!(!err.0.contains("12345678"), "{err}");
        let err = parse_item(item_json(r#","size":"PATIENT^NAME","body_b64":"""#).as_bytes()).unwrap_err();
        assert!(!err.0.contains("PATIENT"), "{err}");
    }

    #[test]
    fn fitting_chunks() {
        assert_eq!(chunks_fit(&[5], 5), Ok(()));
        assert_eq!(chunks_fit(&[0], 0), Ok(()));
        assert_eq!(chunks_fit(&[4, 4, 2], 10), Ok(()));
        assert_eq!(chunks_fit(&[4, 4, 4], 12), Ok(()));
        assert!(chunks_fit(&[], 0).is_err());
        assert!(chunks_fit(&[4, 4, 2], 11).is_err());
        // Two cuts of a 10-byte body (n = 4 and n = 3, 3 chunks... 4 for n = 3) mixed.
        assert!(chunks_fit(&[4, 3, 3], 10).is_err());
        assert!(chunks_fit(&[3, 3, 4], 10).is_err());
        assert!(chunks_fit(&[0, 0, 5], 5).is_err());
        assert!(chunks_fit(&[5, 0], 5).is_err());
    }

    #[test]
    fn acks_are_split_at_the_limit() {
        let ids: Vec<String> = (0..2001).map(|i| format!("ID{i}")).collect();
        let payloads = ack_payloads(&ids);
        assert_eq!(payloads.len(), 3);
        let first: serde_json::Value = serde_json::from_slice(&payloads[0]).unwrap();
        assert_eq!(first["ids"].as_array().unwrap().len(), 1000);
        assert_eq!(first["ids"][0], "ID0");
        let last: serde_json::Value = serde_json::from_slice(&payloads[2]).unwrap();
        assert_eq!(last, serde_json::json!({"ids": ["ID2000"]}));
        assert!(ack_payloads(&[]).is_empty());
    }

    #[test]
    fn gateway_states() {
        let birth = br#"{"v":1,"status":"online","session":7,"at":"x","sources":[]}"#;
        assert_eq!(parse_gateway_state(birth), Some(GatewayState { online: true, session: Some(7) }));
        let death = br#"{"v":1,"status":"offline","session":6,"reason":"connection lost"}"#;
        assert_eq!(parse_gateway_state(death), Some(GatewayState { online: false, session: Some(6) }));
        assert_eq!(parse_gateway_state(br#"{"status":"dozing"}"#), None);
        assert_eq!(parse_gateway_state(b"\xff"), None);
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_468_051_412);
        assert_eq!(rfc3339(t), "2026-11-23T21:07:31.412Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
