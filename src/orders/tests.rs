use super::hl7::{extract_bytes, is_order_message};
use super::*;
use crate::instrument::Profile;

/// An EHR's new order for a blood count, two OBRs (WBC and HGB) on one specimen, the
/// specimen id being the lab's accession number (OBR-3), routine, and stat on the second.
const ORM_NEW: &str = "MSH|^~\\&|EPIC|NORTHFIELD|OUTPOST|LAB|20260301101500||ORM^O01^ORM_O01|MSG0001|P|2.5.1\r\
PID|1||MRN12345^^^NORTHFIELD^MR||Doe^Jane^Q||19800101|F\r\
PV1|1|O|CLINIC\r\
ORC|NW|PL1001^EPIC|SP777^LAB||SC||^^^20260301101500^^R\r\
OBR|1|PL1001^EPIC|SP777^LAB|6690-2^Leukocytes^LN|||20260301100000||||||||BLDV&Venous blood&HL70070\r\
ORC|NW|PL1002^EPIC|SP777^LAB||SC||^^^20260301101500^^S\r\
OBR|2|PL1002^EPIC|SP777^LAB|718-7^Hemoglobin^LN\r";

/// OML^O21 (lab order, 2.5.1): ORC, TQ1 (priority in TQ1-9), OBR, SPM (specimen id in SPM-2,
/// an EIP whose placer id has subcomponents; type in SPM-4). No filler number yet.
const OML: &str = "MSH|^~\\&|EHR|CLINIC|OUTPOST|LAB|20260301120000||OML^O21^OML_O21|MSG0100|P|2.5.1\r\
PID|1||P-9^^^CLINIC^MR||Roe^Richard||197002151030|M\r\
ORC|NW|ORD-1^EHR\r\
TQ1|1||||||||S\r\
OBR|1|ORD-1^EHR||2345-7^Glucose^LN\r\
SPM|1|SPEC-42&EHR^SPEC-42&LAB||SER^Serum^HL70487\r\
ORC|NW|ORD-2^EHR\r\
TQ1|1||||||||R\r\
OBR|2|ORD-2^EHR||2160-0^Creatinine^LN\r\
SPM|1|SPEC-42&EHR||SER^Serum^HL70487\r";

fn orm(control: &str, tests: &[(&str, &str)]) -> String {
    let mut m = format!(
        "MSH|^~\\&|EPIC|NORTHFIELD|OUTPOST|LAB|20260301101500||ORM^O01|MSG-{control}|P|2.5.1\r\
         PID|1||MRN12345||Doe^Jane||19800101|F\r"
    );
    for (placer, code) in tests {
        m.push_str(&format!("ORC|{control}|{placer}|SP777\rOBR|1|{placer}|SP777|{code}^^LN\r"));
    }
    m
}

fn paths() -> Vec<crate::hl7::FieldPath> {
    default_specimen_paths()
}

fn changes(text: &str) -> Extracted {
    extract_bytes(text.as_bytes(), None, &paths()).expect("an order message")
}

use super::hl7::Extracted;

#[test]
fn orm_two_obrs_on_one_specimen_are_one_order_with_two_tests() {
    let e = changes(ORM_NEW);
    assert_eq!(e.unreadable, 0);
    assert_eq!(e.changes.len(), 1, "{e:?}");
    let c = &e.changes[0];
    assert_eq!((c.control, c.specimen_id.as_str()), (Control::New, "SP777"));
    assert_eq!((c.placer.as_str(), c.filler.as_str()), ("PL1001", "SP777"));
    let codes: Vec<(&str, &str, &str, &str)> =
        c.tests.iter().map(|t| (t.code.as_str(), t.text.as_str(), t.system.as_str(), t.placer.as_str())).collect();
    assert_eq!(codes, [("6690-2", "Leukocytes", "LN", "PL1001"), ("718-7", "Hemoglobin", "LN", "PL1002")]);
    assert_eq!(c.priority, "S", "one stat test makes the specimen stat");
    assert_eq!(c.specimen_type, "BLDV");
    let p = &c.patient;
    assert_eq!(
        (p.id.as_str(), p.family.as_str(), p.given.as_str(), p.birth_date.as_str(), p.sex.as_str()),
        ("MRN12345", "Doe", "Jane", "19800101", "F")
    );
    // Debug never shows the patient.
    let debug = format!("{e:?}");
    assert!(!debug.contains("Doe") && !debug.contains("19800101"), "{debug}");
}

#[test]
fn oml_takes_the_specimen_from_spm_and_the_priority_from_tq1() {
    let e = changes(OML);
    assert_eq!(e.changes.len(), 1, "{e:?}");
    let c = &e.changes[0];
    assert_eq!(c.specimen_id, "SPEC-42", "SPM-2.1's entity id, not its namespace");
    assert_eq!(c.tests.iter().map(|t| t.code.as_str()).collect::<Vec<_>>(), ["2345-7", "2160-0"]);
    assert_eq!(c.priority, "S");
    assert_eq!(c.specimen_type, "SER");
    assert_eq!((c.placer.as_str(), c.filler.as_str()), ("ORD-1", ""));
    assert_eq!(c.patient.birth_date, "19700215", "the date of a birth time");
}

#[test]
fn a_cancel_is_read_as_one() {
    let e = changes(&orm("CA", &[("PL1001", "6690-2")]));
    assert_eq!(e.changes.len(), 1);
    assert_eq!((e.changes[0].control, e.changes[0].tests.len()), (Control::Cancel, 1));
    for (code, control) in
        [("OC", Control::Cancel), ("DC", Control::Cancel), ("XO", Control::Change), ("", Control::New)]
    {
        assert_eq!(Control::from_code(code), Some(control), "{code}");
    }
    assert_eq!(Control::from_code("SC"), None, "a status change is no order");
    assert!(changes(&orm("SC", &[("PL1001", "6690-2")])).changes.is_empty());
}

#[test]
fn a_group_without_a_specimen_id_is_counted_and_the_others_read() {
    let text = "MSH|^~\\&|EHR|C|OUTPOST|LAB|20260301||ORM^O01|M1|P|2.5.1\r\
        ORC|NW\rOBR|1|||6690-2^WBC^LN\r\
        ORC|NW|PL9\rOBR|2|PL9||718-7^HGB^LN\r";
    let e = changes(text);
    assert_eq!(e.unreadable, 1);
    assert_eq!(e.changes.len(), 1);
    assert_eq!(e.changes[0].specimen_id, "PL9", "OBR-2.1 is the last default");
}

#[test]
fn configured_paths_come_first_and_one_orc_may_cover_several_obrs() {
    let text = "MSH|^~\\&|EHR|C|OUTPOST|LAB|20260301||ORM^O01|M1|P|2.5.1\r\
        ORC|NW|PL1|FL1\rOBR|1|||6690-2^WBC^LN||||||||||||||||BAR-1\rOBR|2|||718-7^HGB^LN||||||||||||||||BAR-2\r";
    let paths: Vec<crate::hl7::FieldPath> = vec!["OBR-20".parse().unwrap(), "OBR-3.1".parse().unwrap()];
    let e = extract_bytes(text.as_bytes(), None, &paths).unwrap();
    let got: Vec<(&str, &str, &str)> =
        e.changes.iter().map(|c| (c.specimen_id.as_str(), c.placer.as_str(), c.tests[0].code.as_str())).collect();
    assert_eq!(got, [("BAR-1", "PL1", "6690-2"), ("BAR-2", "PL1", "718-7")]);
}

#[test]
fn only_orm_o01_and_oml_o21_are_order_messages() {
    assert!(is_order_message(ORM_NEW.as_bytes()));
    assert!(is_order_message(OML.as_bytes()));
    assert!(is_order_message(b"\r\nMSH#^~\\&#A#B#C#D#1##ORM^O01#1#P#2.5\r"));
    for not in [
        &b"MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\r"[..],
        b"MSH|^~\\&|A|B|C|D|1||ORM^O02|1|P|2.5\r",
        b"MSH|^~\\&|A|B|C|D|1||ORM",
        b"",
        b"H|\\^&",
    ] {
        assert!(!is_order_message(not), "{:?}", String::from_utf8_lossy(not));
    }
    assert_eq!(extract_bytes(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\r", None, &paths()), None);
}

fn first(text: &str) -> Change {
    changes(text).changes.remove(0)
}

#[test]
fn merge_new_retransmitted_added_changed_and_cancelled() {
    let new = first(ORM_NEW);
    let Merged::Active(order) = merge(None, &new, "ITEM1", 1000) else { panic!("a new order") };
    assert_eq!((order.state, order.tests.len(), order.item_id.as_str()), (State::Active, 2, "ITEM1"));
    // The EHR sends the same message again: nothing changes, not even the time.
    assert_eq!(merge(Some(&order), &new, "ITEM2", 2000), Merged::Unchanged);
    // Another test for the same specimen is added; one with the same placer number replaced.
    let more = first(&orm("NW", &[("PL1003", "4544-3")]));
    let Merged::Active(order) = merge(Some(&order), &more, "ITEM3", 3000) else { panic!("added") };
    assert_eq!(order.tests.iter().map(|t| t.code.as_str()).collect::<Vec<_>>(), ["6690-2", "718-7", "4544-3"]);
    let changed = first(&orm("XO", &[("PL1003", "777-3")]));
    let Merged::Active(order) = merge(Some(&order), &changed, "ITEM4", 4000) else { panic!("changed") };
    assert_eq!(order.tests.iter().map(|t| t.code.as_str()).collect::<Vec<_>>(), ["6690-2", "718-7", "777-3"]);
    // One test cancelled: the others stand.
    let cancel_one = first(&orm("CA", &[("PL1003", "777-3")]));
    let Merged::Reduced(order) = merge(Some(&order), &cancel_one, "ITEM5", 5000) else { panic!("reduced") };
    assert_eq!(order.tests.len(), 2);
    // All cancelled: the order is, keeping its tests (to tell an instrument what to cancel).
    let cancel_all = first(&orm("CA", &[("PL1001", "6690-2"), ("PL1002", "718-7")]));
    let Merged::Cancelled(cancelled) = merge(Some(&order), &cancel_all, "ITEM6", 6000) else { panic!("cancelled") };
    assert_eq!((cancelled.state, cancelled.tests.len()), (State::Cancelled, 2));
    assert_eq!(merge(Some(&cancelled), &cancel_all, "ITEM7", 7000), Merged::Unchanged);
    assert_eq!(merge(None, &cancel_all, "ITEM7", 7000), Merged::Unchanged, "nothing to cancel");
    // Ordered again after a cancellation: active with the new tests only.
    let Merged::Active(again) = merge(Some(&cancelled), &more, "ITEM8", 8000) else { panic!("again") };
    assert_eq!((again.state, again.tests.len()), (State::Active, 1));
}

#[test]
fn tests_map_back_to_the_instruments_codes() {
    let yumizen = Profile::builtin("horiba-yumizen-h500").unwrap();
    let t = |code: &str, system: &str| Test { code: code.into(), system: system.into(), ..Test::default() };
    let tests = [t("6690-2", "LN"), t("718-7", ""), t("2345-7", "LN"), t("PLT", ""), t("6690-2", "99XYZ")];
    let (known, unknown) = instrument_tests(&tests, Some(&yumizen));
    assert_eq!(known, ["WBC", "HGB", "PLT"]);
    assert_eq!(unknown, ["2345-7", "6690-2"], "glucose is no blood count; a LOINC code is not in another system");
    let (known, unknown) = instrument_tests(&tests[..2], None);
    assert_eq!((known, unknown), (vec!["6690-2".to_string(), "718-7".to_string()], Vec::<String>::new()));
}

#[test]
fn a_cached_order_becomes_the_o_record_the_instrument_takes() {
    let Merged::Active(order) = merge(None, &first(ORM_NEW), "ITEM1", 1000) else { panic!() };
    let yumizen = Profile::builtin("horiba-yumizen-h500").unwrap();
    let (o, unknown) = to_astm(&order, Some(&yumizen), "N");
    assert!(unknown.is_empty());
    assert_eq!((o.specimen_id.as_str(), o.tests.clone()), ("SP777", vec!["WBC".to_string(), "HGB".to_string()]));
    assert_eq!((o.priority.as_str(), o.action_code.as_str(), o.specimen_descriptor.as_str()), ("S", "N", "BLDV"));
    let header = crate::astm::ReplyHeader::new("outpost", "H500", "20260301101600");
    let text = String::from_utf8(crate::astm::build_order_reply(&header, &[o]).unwrap()).unwrap();
    assert_eq!(
        text,
        "H|\\^&|||outpost|||||H500||P|LIS2-A2|20260301101600\r\
         P|1|MRN12345|||Doe^Jane||19800101|F\r\
         O|1|SP777||^^^WBC\\^^^HGB|S|20260301101600|||||N||||BLDV||||||||||O\r\
         L|1|N\r"
    );
    let (cancel, _) = to_astm(&order, Some(&yumizen), "C");
    assert_eq!(cancel.action_code, "C");
}
