//! ASTM E1394 as a payload kind: the summary it gives an item and the values routing conditions
//! see. Reading itself is `crate::astm::records`.
//!
//! The summary names (the uplink contract, docs/mqtt.md): `instrument` (H.5, the sender's name,
//! model, serial), `processing_id` (H.12), `qc` (`true` for quality-control results),
//! `sample_ids` and `tests` (comma-separated, in order), `results` (the count of R records),
//! `records`, `complete` (ends with an L record). The item's type is `results`, `qc-results`,
//! `query`, `orders` or `other`; its ref is the first sample id (with the source and the bytes,
//! it recognises a message the instrument sends again). Never a patient's name or a value.

use crate::astm::records::{Message, MessageKind};
use crate::envelope::Summary;

pub fn summary(message: &Message<'_>) -> Summary {
    let s = message.summary();
    let item_type = match (s.kind, s.qc) {
        (MessageKind::Results, true) => "qc-results",
        (kind, _) => kind.as_str(),
    };
    let mut summary = Summary::new(item_type, s.sample_ids.first().map(String::as_str).unwrap_or(""));
    summary.set("instrument", s.instrument);
    summary.set("processing_id", s.processing_id);
    summary.set("qc", s.qc.to_string());
    summary.set("sample_ids", s.sample_ids.join(","));
    summary.set("tests", s.tests.join(","));
    summary.set("results", s.results.to_string());
    summary.set("records", s.records.to_string());
    summary.set("complete", s.complete.to_string());
    summary
}

/// The summary of an ASTM item that could not be read: the same names, empty.
pub fn empty_summary() -> Summary {
    let mut summary = Summary::new("", "");
    for name in ["instrument", "processing_id", "qc", "sample_ids", "tests", "results", "records", "complete"] {
        summary.set(name, String::new());
    }
    summary
}

/// The values a routing condition names. Record paths (`R.3.4`, `H.5.1`) read the message;
/// three names read its summary, so a route need not know where an instrument puts things:
/// `instrument` (H.5 component 1), `test` (every result's test code, as in `tests`), `qc`
/// (`true` or `false`).
pub fn values(message: &Message<'_>, field: &crate::config::AstmField) -> Vec<String> {
    use crate::config::AstmField;
    match field {
        AstmField::Path(path) => message.values(path),
        AstmField::Instrument => vec![message.header().value(5, 1)],
        AstmField::Test => message.summary().tests,
        AstmField::Qc => vec![message.summary().qc.to_string()],
    }
}

/// The test code of each R record (R.3: component 4, else the first non-empty component).
pub fn result_tests(message: &Message<'_>) -> Vec<String> {
    message
        .of_kind(b'R')
        .map(|r| r.repeats(3).first().and_then(|repeat| r.test_code(repeat)).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULTS: &[u8] = b"H|\\^&|||H500^Yumizen^1.0|||||||P|LIS2-A2|20200407170704\r\
P|1||PAT42||DOE^JANE||19700101|F\r\
O|1|S1234||^^^CBC|||||||N\r\
R|1|^^^WBC|8.5|10*3/uL|4.0-10.0|N||F\r\
R|2|^^^HGB|9.1|g/dL|12.0-16.0|L||F\r\
L|1|N\r";

    #[test]
    fn summary_has_ids_types_and_counts_and_no_patient_data() {
        let message = Message::parse(RESULTS).unwrap();
        let s = summary(&message);
        assert_eq!((s.item_type.as_str(), s.item_ref.as_str()), ("results", "S1234"));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["instrument"], "H500^Yumizen^1.0");
        assert_eq!(v["tests"], "WBC,HGB");
        assert_eq!(v["results"], "2");
        assert_eq!(v["qc"], "false");
        assert_eq!(v["complete"], "true");
        let text = v.to_string();
        for phi in ["DOE", "JANE", "19700101", "8.5", "9.1", "PAT42"] {
            assert!(!text.contains(phi), "{phi} in {text}");
        }
        assert_eq!(empty_summary().fields.keys().collect::<Vec<_>>(), s.fields.keys().collect::<Vec<_>>());
    }

    #[test]
    fn qc_results_have_their_own_type() {
        let qc = String::from_utf8_lossy(RESULTS).replace("|||||||P|LIS2-A2", "|||||||Q|LIS2-A2");
        let message = Message::parse(qc.as_bytes()).unwrap();
        assert_eq!(summary(&message).item_type, "qc-results");
    }

    #[test]
    fn routing_values_by_path_and_by_name() {
        use crate::config::AstmField;
        let message = Message::parse(RESULTS).unwrap();
        assert_eq!(values(&message, &AstmField::Path("R.3.4".parse().unwrap())), ["WBC", "HGB"]);
        assert_eq!(values(&message, &AstmField::Path("R.7".parse().unwrap())), ["N", "L"]);
        assert_eq!(values(&message, &AstmField::Instrument), ["H500"]);
        assert_eq!(values(&message, &AstmField::Test), ["WBC", "HGB"]);
        assert_eq!(values(&message, &AstmField::Qc), ["false"]);
    }
}
