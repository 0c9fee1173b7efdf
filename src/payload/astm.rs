//! ASTM E1394 as a payload kind: the summary it gives an item and the values routing conditions
//! see. Reading itself is `crate::astm::records`.
//!
//! The summary names (the uplink contract, docs/mqtt.md): `instrument` (H.5, the sender's name,
//! model, serial), `processing_id` (H.12), `qc` (`true` for quality-control results),
//! `sample_ids` and `tests` (comma-separated, in order), `results` (the count of R records),
//! `records`, `complete` (ends with an L record). The item's type is `results`, `qc-results`,
//! `query`, `orders` or `other`; its ref is the first sample id (with the source and the bytes
//! after the header record, whose H.14 an instrument restamps when it sends a message again, it
//! recognises a message sent again). Never a patient's name or a value.

use crate::astm::records::{Message, MessageKind};
use crate::envelope::Summary;
use crate::instrument::Profile;

/// An ASTM message read with its instrument's profile, when the source has one: test codes
/// are then where the profile says (Vitros: part of R.3.4), and results can be judged against
/// the profile's critical ranges.
#[derive(Debug, Clone)]
pub struct Lab<'d> {
    pub message: Message<'d>,
    pub profile: Option<&'d Profile>,
    /// Every result read with the profile (or the standard positions), once: routing and each
    /// escalation rule ask for test codes and critical findings again.
    rows: std::cell::OnceCell<Vec<crate::instrument::ResultRow>>,
}

impl<'d> Lab<'d> {
    pub fn new(message: Message<'d>, profile: Option<&'d Profile>) -> Lab<'d> {
        Lab { message, profile, rows: std::cell::OnceCell::new() }
    }

    /// The profile results are read with: the source's, else the standard positions.
    fn reading_profile(&self) -> &Profile {
        self.profile.unwrap_or_else(|| Profile::standard())
    }

    /// Every result of the message in record order, read with [`Lab::reading_profile`].
    fn rows(&self) -> &[crate::instrument::ResultRow] {
        self.rows.get_or_init(|| {
            crate::astm::result_sets(&self.message, self.reading_profile())
                .into_iter()
                .flat_map(|set| set.results)
                .collect()
        })
    }
}

impl<'d> std::ops::Deref for Lab<'d> {
    type Target = Message<'d>;

    fn deref(&self) -> &Message<'d> {
        &self.message
    }
}

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
pub fn values(message: &Lab<'_>, field: &crate::config::AstmField) -> Vec<String> {
    use crate::config::AstmField;
    match field {
        AstmField::Path(path) => message.values(path),
        AstmField::Instrument => vec![message.header().value(5, 1)],
        AstmField::Test => message.summary().tests,
        AstmField::Qc => vec![message.summary().qc.to_string()],
        AstmField::Critical => criticals(message).into_iter().flatten().map(str::to_string).collect(),
    }
}

/// The test code of each R record: where the profile says, else R.3 (component 4, else the
/// first non-empty component).
pub fn result_tests(lab: &Lab<'_>) -> Vec<String> {
    match lab.profile {
        Some(_) => lab.rows().iter().map(|row| row.test_code.clone()).collect(),
        None => lab
            .of_kind(b'R')
            .map(|r| r.repeats(3).first().and_then(|repeat| r.test_code(repeat)).unwrap_or_default())
            .collect(),
    }
}

/// Each R record's critical finding, if any (`crate::instrument::critical`): `high` or `low`
/// (beyond the profile's critical range for the test), `HH` or `LL` (the instrument's panic
/// flags), `>` or `<` (off its measuring range). Without a profile only the instrument's flags
/// count. Codes, never values.
pub fn criticals(lab: &Lab<'_>) -> Vec<Option<&'static str>> {
    use crate::instrument::CriticalKind as K;
    let profile = lab.reading_profile();
    lab.rows()
        .iter()
        .map(|row| {
            crate::instrument::critical(row, profile).map(|c| match c.kind {
                K::High => "high",
                K::Low => "low",
                K::FlagHH => "HH",
                K::FlagLL => "LL",
                K::AboveScale => ">",
                K::BelowScale => "<",
            })
        })
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
        let message = Lab::new(Message::parse(RESULTS).unwrap(), None);
        assert_eq!(values(&message, &AstmField::Path("R.3.4".parse().unwrap())), ["WBC", "HGB"]);
        assert_eq!(values(&message, &AstmField::Path("R.7".parse().unwrap())), ["N", "L"]);
        assert_eq!(values(&message, &AstmField::Instrument), ["H500"]);
        assert_eq!(values(&message, &AstmField::Test), ["WBC", "HGB"]);
        assert_eq!(values(&message, &AstmField::Qc), ["false"]);
    }

    #[test]
    fn critical_results_by_the_profiles_ranges_and_the_instruments_flags() {
        use crate::config::AstmField;
        // WBC 35 is above the Yumizen map's critical high (30); HGB is flagged LL by the
        // instrument; RBC has no critical range and no flag.
        let text = b"H|\\^&|||H500|||||||P|LIS2-A2|20200407170704\r\
O|1|S1||^^^DIF\r\
R|1|^^^WBC|35.0|10E3/uL||H||F\r\
R|2|^^^HGB|9.0|g/dL||LL||F\r\
R|3|^^^RBC|4.5|10E6/uL||N||F\r\
L|1|N\r";
        let profile = Profile::builtin("horiba-yumizen-h500").unwrap();
        let lab = Lab::new(Message::parse(text).unwrap(), Some(&profile));
        assert_eq!(criticals(&lab), [Some("high"), Some("LL"), None]);
        assert_eq!(values(&lab, &AstmField::Critical), ["high", "LL"]);
        // Without the profile only the instrument's own flags say so.
        let bare = Lab::new(Message::parse(text).unwrap(), None);
        assert_eq!(criticals(&bare), [None, Some("LL"), None]);
    }
}
