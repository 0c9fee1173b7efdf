//! Building the host's answer to an instrument's query (a Q record), or an order download:
//! H, then a P and an O per specimen, then L. Pure: the caller passes the time and ids in.
//!
//! The records use the standard delimiters `|\^&`; values are escaped. Each O record orders
//! its tests as repeats of O.5, each test a universal test id `^^^code` (the code in component
//! 4, the manufacturer's local code, which is what instruments match on). With no orders the
//! answer is `H` and `L|1|I` ("no information available"), which tells the instrument the host
//! knows nothing of the specimen; otherwise `L|1|N`.
//!
//! Compared with a real exchange (`vitros-3600-order-reply.raw`): the same records and fields
//! (O.3 specimen, O.5 tests, O.6 priority, O.12 action code `N`, O.16 specimen descriptor,
//! O.26 report type `O`, L.3 `N`); that LIS put the request time in O.8 and prefixed records
//! with a digit, which E1394 does not have (the time goes in O.7 here).

use super::ctrl::CR;
use super::records::{Delimiters, RecordError, escape};

/// Who answers whom, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHeader {
    /// H.5: the host's name (some instruments check it).
    pub sender: String,
    /// H.10: the instrument's id, as it sent it in its own H.5 (some check it).
    pub receiver: String,
    /// H.14 and O.7: `YYYYMMDDHHMMSS`, local time as instruments expect it.
    pub timestamp: String,
    /// H.13, `LIS2-A2` by default.
    pub version: String,
}

impl ReplyHeader {
    pub fn new(sender: impl Into<String>, receiver: impl Into<String>, timestamp: impl Into<String>) -> ReplyHeader {
        ReplyHeader {
            sender: sender.into(),
            receiver: receiver.into(),
            timestamp: timestamp.into(),
            version: "LIS2-A2".into(),
        }
    }
}

/// The tests ordered for one specimen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// O.3.
    pub specimen_id: String,
    /// O.5: test codes (each becomes `^^^code`).
    pub tests: Vec<String>,
    /// P.3, the practice-assigned patient id; often empty.
    pub patient_id: String,
    /// P.6, the patient's name as components (last, first, ...); empty when not known.
    pub patient_name: Vec<String>,
    /// P.8, `YYYYMMDD`.
    pub birth_date: String,
    /// P.9: `M`, `F`, `U`.
    pub sex: String,
    /// O.6: `R` routine (default), `S` stat.
    pub priority: String,
    /// O.12: `N` new specimen (default), `A` add tests, `C` cancel, `Q` QC specimen.
    pub action_code: String,
    /// O.16: the specimen type as the instrument names it (empty by default).
    pub specimen_descriptor: String,
    /// O.26: `O` order (default).
    pub report_type: String,
}

impl Order {
    pub fn new(specimen_id: impl Into<String>, tests: Vec<String>) -> Order {
        Order {
            specimen_id: specimen_id.into(),
            tests,
            patient_id: String::new(),
            patient_name: Vec::new(),
            birth_date: String::new(),
            sex: String::new(),
            priority: "R".into(),
            action_code: "N".into(),
            specimen_descriptor: String::new(),
            report_type: "O".into(),
        }
    }
}

/// The records of the reply (each ending CR), for [`super::Link::send`].
pub fn build_order_reply(header: &ReplyHeader, orders: &[Order]) -> Result<Vec<u8>, RecordError> {
    let d = Delimiters::STANDARD;
    let v = |value: &str, what: &'static str| -> Result<String, RecordError> {
        Ok(String::from_utf8_lossy(&escape(value.as_bytes(), &d, what)?).into_owned())
    };
    let mut out = Vec::new();
    let h = [
        "H".to_string(),
        "\\^&".to_string(),
        String::new(),
        String::new(),
        v(&header.sender, "sender")?,
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        v(&header.receiver, "receiver")?,
        String::new(),
        "P".into(),
        v(&header.version, "version")?,
        v(&header.timestamp, "timestamp")?,
    ];
    push_record(&mut out, &h);
    for (i, order) in orders.iter().enumerate() {
        let mut name = Vec::with_capacity(order.patient_name.len());
        for part in &order.patient_name {
            name.push(v(part, "patient name")?);
        }
        let p = [
            "P".into(),
            (i + 1).to_string(),
            v(&order.patient_id, "patient id")?,
            String::new(),
            String::new(),
            name.join("^"),
            String::new(),
            v(&order.birth_date, "birth date")?,
            v(&order.sex, "sex")?,
        ];
        push_record(&mut out, &p);
        let mut tests = Vec::with_capacity(order.tests.len());
        for t in &order.tests {
            tests.push(format!("^^^{}", v(t, "test code")?));
        }
        let mut o = vec![String::new(); 26];
        o[0] = "O".into();
        o[1] = "1".into();
        o[2] = v(&order.specimen_id, "specimen id")?;
        o[4] = tests.join("\\");
        o[5] = v(&order.priority, "priority")?;
        o[6] = v(&header.timestamp, "timestamp")?;
        o[11] = v(&order.action_code, "action code")?;
        o[15] = v(&order.specimen_descriptor, "specimen descriptor")?;
        o[25] = v(&order.report_type, "report type")?;
        push_record(&mut out, &o);
    }
    push_record(&mut out, &["L".into(), "1".into(), if orders.is_empty() { "I" } else { "N" }.into()]);
    Ok(out)
}

/// Fields joined by `|`, trailing empty fields dropped, CR at the end.
fn push_record(out: &mut Vec<u8>, fields: &[String]) {
    let used = fields.iter().rposition(|f| !f.is_empty()).map_or(1, |i| i + 1);
    out.extend_from_slice(fields[..used].join("|").as_bytes());
    out.push(CR);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astm::records::Message;

    #[test]
    fn order_reply_reads_back() {
        let header = ReplyHeader::new("OUTPOST", "3600796", "20201121111002");
        let mut order = Order::new("1068687", vec!["1.0000+002+1.0".into(), "A|B".into()]);
        order.specimen_descriptor = "5".into();
        let records = build_order_reply(&header, &[order]).unwrap();
        let text = String::from_utf8(records.clone()).unwrap();
        assert_eq!(
            text,
            "H|\\^&|||OUTPOST|||||3600796||P|LIS2-A2|20201121111002\r\
             P|1\r\
             O|1|1068687||^^^1.0000+002+1.0\\^^^A&F&B|R|20201121111002|||||N||||5||||||||||O\r\
             L|1|N\r"
        );
        let m = Message::parse(&records).unwrap();
        assert_eq!(m.values(&"O.5.4".parse().unwrap()), ["1.0000+002+1.0", "A|B"]);
        assert_eq!(m.summary().sample_ids, ["1068687"]);
    }

    #[test]
    fn the_p_record_carries_the_patient_when_known() {
        let header = ReplyHeader::new("OUTPOST", "X", "20250101000000");
        let mut order = Order::new("S1", vec!["WBC".into()]);
        order.patient_id = "MRN^7".into();
        order.patient_name = vec!["Doe".into(), "Jane".into()];
        order.birth_date = "19800101".into();
        order.sex = "F".into();
        order.action_code = "C".into();
        let text = String::from_utf8(build_order_reply(&header, &[order]).unwrap()).unwrap();
        assert!(text.contains("\rP|1|MRN&S&7|||Doe^Jane||19800101|F\r"), "{text}");
        let m = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(m.values(&"O.12".parse().unwrap()), ["C"]);
        assert_eq!(m.values(&"P.6.2".parse().unwrap()), ["Jane"]);
    }

    #[test]
    fn no_orders_is_l_i_and_bad_values_are_refused() {
        let header = ReplyHeader::new("OUTPOST", "X", "20250101000000");
        let records = build_order_reply(&header, &[]).unwrap();
        assert!(records.ends_with(b"\rL|1|I\r"));
        assert_eq!(records.iter().filter(|&&b| b == CR).count(), 2);
        let bad = Order::new("12\r34", vec![]);
        assert_eq!(build_order_reply(&header, &[bad]), Err(RecordError::Unencodable { what: "specimen id" }));
    }
}
