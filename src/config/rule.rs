//! `[[escalation.rule]]` blocks: escalations on what an item holds (a critical result), with a
//! `when` like a route's.

use super::EscalationRule;
use super::condition::conditions;
use super::route::name_list;
use super::values::choice;
use super::walk::{Checker, Got, Tbl};
use crate::events::Severity;

pub(super) fn rule(
    ck: &mut Checker,
    t: &Tbl<'_, '_>,
    name: Option<String>,
    sources: &[String],
) -> Option<EscalationRule> {
    let severity = t.opt(
        ck,
        "severity",
        Severity::Critical,
        choice(&[("warning", Severity::Warning), ("critical", Severity::Critical)], "severity"),
    );
    let from = t.opt(ck, "from", sources.to_vec(), |ck, v| name_list(ck, v, "source", sources, true));
    let when = match t.table(ck, "when", "when") {
        Got::Valid(w) => conditions(ck, &w),
        Got::Invalid => None,
        Got::Absent => {
            t.missing(ck, "when", "when = { \"OBX-8\" = [\"HH\", \"LL\", \"AA\"] }, or for lab instruments { \"R.7\" = [\"HH\", \"LL\"] }");
            None
        }
    };
    t.finish(ck, &[]);
    let when = when?;
    if when.is_empty()
        && let Some(v) = t.val("when")
    {
        v.invalid(ck, "a rule with no condition would raise on every item; give at least one".to_string());
        return None;
    }
    Some(EscalationRule { name: name?, severity: severity?, from: from?, when })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Field};
    use crate::events::Severity;

    const BASE: &str = "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/tmp/x\"\n\
        [[source]]\nname = \"ehr\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:0\"\n\
        [[source]]\nname = \"lab\"\nkind = \"astm\"\ntcp_listen = \"127.0.0.1:0\"\n";

    #[test]
    fn rules_read_with_their_defaults() {
        let c = Config::parse(
            &format!(
                "{BASE}[[escalation.rule]]\nname = \"critical-hl7\"\nwhen = {{ \"OBX-8\" = [\"HH\", \"LL\", \"AA\"] }}\n\
                 [[escalation.rule]]\nname = \"lab-flags\"\nseverity = \"warning\"\nfrom = [\"lab\"]\nwhen = {{ \"R.7\" = [\"HH\", \">\"] }}\n"
            ),
            "t",
        )
        .unwrap();
        let rules = &c.escalation.rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(
            (rules[0].severity, rules[0].from.clone()),
            (Severity::Critical, vec!["ehr".to_string(), "lab".to_string()])
        );
        assert!(matches!(rules[0].when[0].field, Field::Hl7(_)));
        assert_eq!((rules[1].severity, rules[1].from.clone()), (Severity::Warning, vec!["lab".to_string()]));
        assert!(matches!(rules[1].when[0].field, Field::Astm(_)));
    }

    #[test]
    fn mistakes_say_what_to_write() {
        let e = Config::parse(&format!("{BASE}[[escalation.rule]]\nname = \"x\"\n"), "t").unwrap_err().to_string();
        assert!(e.contains("missing the required key \"when\""), "{e}");
        let e = Config::parse(
            &format!("{BASE}[[escalation.rule]]\nname = \"x\"\nfrom = [\"nope\"]\nwhen = {{ qc = \"false\" }}\n"),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = Config::parse(
            &format!("{BASE}[[escalation.rule]]\nname = \"x\"\nseverity = \"loud\"\nwhen = {{ qc = \"false\" }}\n"),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"warning\" or \"critical\""), "{e}");
        let e = Config::parse(&format!("{BASE}[[escalation.rule]]\nwhen = {{ qc = \"false\" }}\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("name"), "{e}");
    }
}
