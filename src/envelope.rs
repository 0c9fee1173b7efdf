//! The one currency: an envelope is one received item, exactly as received, with a small
//! summary that logs and the CLI may show (ids and types, never patient data).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What kind of item an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Hl7v2,
    /// An ASTM E1394 (LIS02-A2) message from a lab instrument: its records H…L as received,
    /// each ending CR, the link's frames removed.
    Astm,
    /// A received fax: a multi-page TIFF Class F file, the page data as the modem delivered it.
    Fax,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Hl7v2 => "hl7v2",
            Kind::Astm => "astm",
            Kind::Fax => "fax",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "hl7v2" => Some(Kind::Hl7v2),
            "astm" => Some(Kind::Astm),
            "fax" => Some(Kind::Fax),
            _ => None,
        }
    }

    /// How a person names the kind ("an HL7 v2 message" reads "a readable HL7 v2 item").
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Hl7v2 => "HL7 v2",
            Kind::Astm => "ASTM",
            Kind::Fax => "fax",
        }
    }

    /// Whether a sender's retransmission of an item may differ in its first line only. An ASTM
    /// instrument that sends a message again (it missed our ACK, gave up, and starts over)
    /// rebuilds it, and its header record (H) carries the time of sending (H.14): the copy is
    /// the same message when everything after the header is the same bytes. HL7 senders resend
    /// the message as it was.
    pub fn resend_restamps_first_line(&self) -> bool {
        match self {
            Kind::Hl7v2 => false,
            Kind::Astm => true,
            Kind::Fax => false,
        }
    }

    /// The file name extension of an item of this kind written to a folder.
    pub fn extension(&self) -> &'static str {
        match self {
            Kind::Hl7v2 => "hl7",
            Kind::Astm => "astm",
            Kind::Fax => "tif",
        }
    }
}

/// What logs, the CLI and central may know of an item: ids and types, never patient data.
/// Kind-neutral: `item_type` and `item_ref` are what every kind has (the journal indexes
/// them); `fields` are the kind's own, by the names the uplink contract gives them (HL7:
/// `message_type`, `control_id`, `sending_app`, `sending_facility`, `version`), plus what the
/// adapter adds (`file` for an item taken from a folder). As JSON it is `fields`, flat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// What sort of item it is (HL7: the message type, `ORU^R01`).
    #[serde(skip)]
    pub item_type: String,
    /// The sender's own id for it (HL7: MSH-10). With the source and the bytes, it recognises
    /// a retransmission; empty when the kind has none.
    #[serde(skip)]
    pub item_ref: String,
    #[serde(flatten)]
    pub fields: BTreeMap<String, String>,
}

impl Summary {
    pub fn new(item_type: &str, item_ref: &str) -> Summary {
        Summary { item_type: item_type.to_string(), item_ref: item_ref.to_string(), fields: BTreeMap::new() }
    }

    pub fn set(&mut self, name: &str, value: String) {
        self.fields.insert(name.to_string(), value);
    }

    /// The fields as stored in the journal (a JSON object).
    pub fn fields_json(&self) -> String {
        serde_json::to_string(&self.fields).unwrap_or_else(|_| "{}".into())
    }

    /// Rebuilds a summary from the journal's columns.
    pub fn from_columns(item_type: String, item_ref: String, fields_json: &str) -> Summary {
        let fields = serde_json::from_str(fields_json).unwrap_or_default();
        Summary { item_type, item_ref, fields }
    }
}

/// Where an envelope stands as a whole (per-destination progress is in its deliveries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Parsed and routed to at least one destination.
    Accepted,
    /// Parsed, but no route took it. Kept, shown in `status`, escalated.
    Unrouted,
    /// Not a parseable message. Kept as received, shown in `status`, escalated.
    Rejected,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Unrouted => "unrouted",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "accepted" => Some(Status::Accepted),
            "unrouted" => Some(Status::Unrouted),
            "rejected" => Some(Status::Rejected),
            _ => None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// An item ready to be journaled. The journal gives it its id (a ULID, monotonic in journal
/// order) when it commits it.
#[derive(Debug, Clone)]
pub struct NewEnvelope {
    pub source: String,
    pub kind: Kind,
    pub received_at: i64,
    pub status: Status,
    /// The exact bytes received.
    pub body: Vec<u8>,
    pub summary: Summary,
    /// Charset used to read the message (for transforms on the way out).
    pub charset: Option<String>,
    /// Routes that matched.
    pub routes: Vec<String>,
    /// Destinations to deliver to (one delivery record each).
    pub destinations: Vec<String>,
    /// Why the item was rejected, in words (no content).
    pub note: Option<String>,
}

/// The current time as an HL7 DTM in UTC, e.g. `20261123185012+0000`.
pub fn hl7_now() -> String {
    hl7_timestamp(now_ms())
}

/// Formats unix ms as an HL7 DTM in UTC (seconds precision, explicit +0000 offset).
pub fn hl7_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Formats unix ms as RFC 3339 UTC, for people and JSON.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(hl7_timestamp(0), "19700101000000+0000");
        // 2026-11-23T18:50:12.345Z
        assert_eq!(rfc3339(1_795_459_812_345), "2026-11-23T18:50:12.345Z");
        assert_eq!(hl7_timestamp(951_782_400_000), "20000229000000+0000");
    }
}
