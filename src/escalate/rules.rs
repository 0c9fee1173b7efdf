//! `[[escalation.rule]]`: escalations on what an item holds, checked as it arrives (before it is
//! journaled, so the escalation is raised with the item's id once it is). A rule's conditions on
//! a result (HL7 OBX fields, ASTM R fields, and `test`) must hold in one and the same result, so
//! `{ "OBX-3.1" = "K", "OBX-8" = "HH" }` means "a potassium result flagged HH", not "some result
//! is potassium and some result is HH". Its other conditions may hold anywhere in the item.
//!
//! A hit names the rule and the test codes of the results that matched: never a value, never a
//! patient.

use crate::config::{Condition, EscalationRule};
use crate::events::Severity;
use crate::payload::Parsed;

/// A rule an item matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: String,
    pub severity: Severity,
    /// The test codes of the results that matched (empty for a rule on the item as a whole).
    pub tests: Vec<String>,
}

/// The rules `item` from `source` matches, in the config's order.
pub fn evaluate(rules: &[EscalationRule], source: &str, item: &Parsed<'_>) -> Vec<Hit> {
    rules.iter().filter(|r| r.from.iter().any(|s| s == source)).filter_map(|r| check(r, item)).collect()
}

fn check(rule: &EscalationRule, item: &Parsed<'_>) -> Option<Hit> {
    let mut per_result: Vec<(&Condition, Vec<Vec<String>>)> = Vec::new();
    for cond in &rule.when {
        match item.result_values(&cond.field) {
            Some(values) => per_result.push((cond, values)),
            None => {
                if !item.values(&cond.field).iter().any(|v| cond.matcher.is_match(v)) {
                    return None;
                }
            }
        }
    }
    let hit = |tests| Some(Hit { rule: rule.name.clone(), severity: rule.severity, tests });
    if per_result.is_empty() {
        return hit(Vec::new());
    }
    let codes = item.result_tests();
    let mut tests: Vec<String> = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let holds = per_result
            .iter()
            .all(|(cond, values)| values.get(i).is_some_and(|vs| vs.iter().any(|v| cond.matcher.is_match(v))));
        if holds && !tests.contains(code) {
            tests.push(code.clone());
        }
    }
    if tests.is_empty() { None } else { hit(tests) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::envelope::Kind;

    fn rules(when: &str) -> Vec<EscalationRule> {
        let text = format!(
            "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/tmp/x\"\n\
             [[source]]\nname = \"src\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:0\"\n\
             [[escalation.rule]]\nname = \"critical\"\nwhen = {when}\n"
        );
        Config::parse(&text, "t").unwrap().escalation.rules
    }

    fn hits(kind: Kind, body: &[u8], when: &str) -> Vec<Hit> {
        let decoded = crate::payload::decode(kind, body, None);
        let parsed = decoded.parse().unwrap();
        evaluate(&rules(when), "src", &parsed)
    }

    const ORU: &[u8] = b"MSH|^~\\&|LAB|NORTH|EHR|NORTH|20261129||ORU^R01|C1|P|2.5.1\r\
PID|1||123||DOE^JANE\r\
OBR|1|||CHEM\r\
OBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L|3.5-5.1|HH|||F\r\
OBX|2|NM|2951-2^Sodium^LN||139|mmol/L|135-145|N|||F\r\
OBX|3|NM|2345-7^Glucose^LN||31|mg/dL|70-99|LL|||F\r";

    const ASTM: &[u8] = b"H|\\^&|||H500^Yumizen|||||||P|LIS2-A2\r\
P|1||PAT42||DOE^JANE\r\
O|1|S1||^^^CBC\r\
R|1|^^^WBC|45.0|10*3/uL|4-10|HH||F\r\
R|2|^^^HGB|13.1|g/dL|12-16|N||F\r\
L|1|N\r";

    #[test]
    fn hl7_critical_flags_name_the_tests_that_have_them() {
        let h = hits(Kind::Hl7v2, ORU, "{ \"OBX-8\" = [\"HH\", \"LL\", \"AA\"] }");
        assert_eq!(
            h,
            vec![Hit {
                rule: "critical".into(),
                severity: Severity::Critical,
                tests: vec!["2823-3".into(), "2345-7".into()]
            }]
        );
        assert!(hits(Kind::Hl7v2, ORU, "{ \"OBX-8\" = \"AA\" }").is_empty());
    }

    #[test]
    fn result_conditions_hold_in_one_and_the_same_result() {
        // Sodium is in the message, and HH is in the message, but not in the same result.
        assert!(hits(Kind::Hl7v2, ORU, "{ \"OBX-3.1\" = \"2951-2\", \"OBX-8\" = \"HH\" }").is_empty());
        let h = hits(Kind::Hl7v2, ORU, "{ \"OBX-3.1\" = \"2823-3\", \"OBX-8\" = \"HH\" }");
        assert_eq!(h[0].tests, ["2823-3"]);
        // A condition on the item as a whole holds anywhere.
        let h = hits(Kind::Hl7v2, ORU, "{ \"MSH-3\" = \"LAB\", \"OBX-8\" = \"LL\" }");
        assert_eq!(h[0].tests, ["2345-7"]);
        assert!(hits(Kind::Hl7v2, ORU, "{ \"MSH-3\" = \"OTHER\", \"OBX-8\" = \"LL\" }").is_empty());
    }

    #[test]
    fn astm_results_by_flag_and_by_test() {
        let h = hits(Kind::Astm, ASTM, "{ \"R.7\" = [\"HH\", \"LL\", \">\", \"<\"] }");
        assert_eq!(h[0].tests, ["WBC"]);
        assert!(hits(Kind::Astm, ASTM, "{ test = \"HGB\", \"R.7\" = \"HH\" }").is_empty());
        assert_eq!(hits(Kind::Astm, ASTM, "{ test = \"WBC\", qc = \"false\" }")[0].tests, ["WBC"]);
        // A rule on HL7 fields never holds for an ASTM item.
        assert!(hits(Kind::Astm, ASTM, "{ \"OBX-8\" = \"HH\" }").is_empty());
    }

    #[test]
    fn a_hit_carries_no_value_and_no_patient() {
        let h = format!("{:?}", hits(Kind::Hl7v2, ORU, "{ \"OBX-8\" = [\"HH\", \"LL\"] }"));
        for phi in ["6.9", "31", "DOE", "JANE", "123"] {
            assert!(!h.contains(phi), "{phi} in {h}");
        }
    }
}
