//! HL7 v2 as a payload kind: the summary it gives an item. Reading itself is `crate::hl7`.

use crate::envelope::Summary;
use crate::hl7::Message;

/// `message_type`, `control_id` (also the item's ref: a retransmission repeats it),
/// `sending_app`, `sending_facility`, `version`: the names of the uplink contract (docs/mqtt.md).
pub fn summary(message: &Message<'_>) -> Summary {
    from_header(message.summary())
}

/// The summary of an HL7 item that could not be read: the same names, empty.
pub fn empty_summary() -> Summary {
    from_header(Default::default())
}

fn from_header(s: crate::hl7::Summary) -> Summary {
    let mut summary = Summary::new(&s.message_type, &s.control_id);
    summary.set("message_type", s.message_type);
    summary.set("control_id", s.control_id);
    summary.set("sending_app", s.sending_application);
    summary.set("sending_facility", s.sending_facility);
    summary.set("version", s.version);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_the_contracts_names_and_no_content() {
        let text = "MSH|^~\\&|EPIC|NORTH|LIS|LAB|20261129||ORU^R01|C42|P|2.5.1\rPID|1||123||DOE^JANE\r";
        let s = summary(&Message::parse(text).unwrap());
        assert_eq!((s.item_type.as_str(), s.item_ref.as_str()), ("ORU^R01", "C42"));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["message_type"], "ORU^R01");
        assert_eq!(v["control_id"], "C42");
        assert_eq!(v["sending_app"], "EPIC");
        assert_eq!(v["sending_facility"], "NORTH");
        assert_eq!(v["version"], "2.5.1");
        assert!(!v.to_string().contains("DOE"), "no patient data: {v}");
    }
}
