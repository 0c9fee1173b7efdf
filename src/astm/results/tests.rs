//! Result sets read from the public captures with their instruments' built-in profiles, and
//! from hand-written messages for the scoping rules.

use super::*;
use crate::astm::decode::walk;
use crate::astm::split_messages;
use crate::instrument::{OruContext, ResultStatus, to_oru_r01};

fn profile(name: &str) -> Profile {
    Profile::builtin(name).unwrap()
}

/// The messages (records, frames stripped) of a capture.
fn messages(capture: &[u8]) -> Vec<Vec<u8>> {
    let text = match crate::astm::classify(capture).unwrap() {
        crate::astm::Shape::Framed { .. } => walk(capture).text,
        crate::astm::Shape::Records => capture.to_vec(),
    };
    split_messages(&text).into_iter().map(|s| text[s.range].to_vec()).collect()
}

fn sets_of(capture: &[u8], profile_name: &str) -> Vec<ResultSet> {
    let profile = profile(profile_name);
    messages(capture).iter().flat_map(|m| result_sets(&Message::parse(m).unwrap(), &profile)).collect()
}

#[test]
fn yumizen_h500_session_is_one_set_with_every_result_and_converts() {
    let capture = include_bytes!("../../../tests/data/astm/yumizen-h500-session.raw");
    let sets = sets_of(capture, "horiba-yumizen-h500");
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    let records = messages(capture).remove(0);
    let r_count = Message::parse(&records).unwrap().of_kind(b'R').count();
    assert_eq!(set.results.len(), r_count);
    assert_eq!(set.instrument_id, "H500^906YOXH02459^2.2.0.5");
    assert_eq!(set.message_time.as_deref(), Some("20200407165331"));
    assert_eq!(set.specimen_id.as_deref(), Some("2021679"));
    assert_eq!(set.specimen_type.as_deref(), Some("BLOOD"));
    assert_eq!(set.ordered_tests, ["DIF"]);
    assert!(!set.qc);
    assert!(set.patient.is_empty(), "the capture's P record is empty");
    assert!(set.comments[0].starts_with("NON_COMPLIANT_DATA WBC"), "{:?}", set.comments);
    let pct = &set.results[0];
    assert_eq!((pct.test_code.as_str(), pct.value.as_str()), ("PCT", "0.13"));
    assert_eq!(pct.units.as_deref(), Some("%"));
    assert_eq!(pct.reference_range.as_deref(), Some("0.15 - 0.40"));
    assert_eq!(pct.flags, [Flag::Low]);
    assert_eq!(pct.status, Some(ResultStatus::from_code("W").unwrap()));
    assert_eq!(pct.completed_at.as_deref(), Some("20200407151558"), "R.13 empty, R.12 read");

    let ctx = OruContext {
        sending_application: "outpost".into(),
        receiving_application: "EHR".into(),
        control_id: "C1".into(),
        message_time: "20200407170000".into(),
        ..Default::default()
    };
    let oru = to_oru_r01(set, &profile("horiba-yumizen-h500"), None, &ctx).unwrap();
    assert!(oru.starts_with("MSH|^~\\&|outpost||EHR||20200407170000||ORU^R01^ORU_R01|C1|P|2.5.1"), "{oru}");
    assert!(oru.contains("|6690-2^Leukocytes"), "WBC under its LOINC code: {oru}");
    assert_eq!(oru.matches("\rOBX|").count(), r_count);
}

#[test]
fn pentra_comments_follow_their_result_and_status_letters_are_the_profiles() {
    let sets = sets_of(include_bytes!("../../../tests/data/astm/pentra-xlr-frames.txt"), "horiba-pentra-xlr");
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    assert_eq!(set.specimen_id.as_deref(), Some("S1234"), "O.3.1 of S1234^00^00");
    assert_eq!(set.patient.name.as_ref().map(|n| n.family.as_str()), Some("Mohale"));
    assert_eq!(set.patient.birth_date.as_deref(), Some("19771201"));
    assert_eq!(set.collected_at.as_deref(), Some("202205270000"), "O.8");
    let wbc = &set.results[0];
    assert_eq!(wbc.test_code, "WBC");
    assert_eq!(wbc.comments.len(), 2, "both C records after R|1 are its comments: {:?}", wbc.comments);
    assert!(wbc.comments[0].starts_with("Alarm_WBC LMNE-"));
    assert!(set.comments.is_empty());
    let bas = set.results.iter().find(|r| r.test_code == "BAS#").unwrap();
    assert_eq!(bas.flags, [Flag::HighHigh]);
    assert_eq!(bas.status, Some(ResultStatus::CannotBeDone));
}

#[test]
fn every_public_results_capture_gives_sets_with_test_codes_for_its_profile() {
    for (capture, name) in [
        (&include_bytes!("../../../tests/data/astm/cobas-c111-etb-frames.txt")[..], "roche-cobas-c111"),
        (include_bytes!("../../../tests/data/astm/erba-xl1000-single-frame.raw"), "erba-xl-1000"),
        (include_bytes!("../../../tests/data/astm/genexpert.txt"), "cepheid-genexpert"),
    ] {
        let sets = sets_of(capture, name);
        assert!(!sets.is_empty(), "{name}");
        for set in &sets {
            assert!(set.specimen_id.is_some(), "{name}");
            assert!(set.results.iter().all(|r| !r.test_code.is_empty()), "{name}");
        }
    }
    let genexpert = sets_of(include_bytes!("../../../tests/data/astm/genexpert.txt"), "cepheid-genexpert");
    let codes: Vec<&str> = genexpert[0].results.iter().map(|r| r.test_code.as_str()).collect();
    assert!(codes.iter().any(|c| c.contains('/')), "host code / analyte / complementary joined: {codes:?}");
    assert!(genexpert[0].results.iter().any(|r| r.status.is_none()), "sub-results carry no status");
}

const TWO_ORDERS: &[u8] = b"H|\\^&|||AN^1|||||||P|LIS2-A2|20260101120000\r\
P|1|PAT1||L7|DOE^JANE^Q||19700101|F\r\
O|1|SP1||^^^CBC|R||20260101110000\r\
R|1|^^^WBC|8&F&5|10E3/uL||H\\W||F||||20260101115900\r\
C|1|I|hemolysed^sample|G\r\
O|2|SP2||^^^K|R\r\
O|3|SP3||^^^NA|R\r\
R|1|^^^NA|140|mmol/L||N||F\r\
P|2\r\
O|1|SP4||^^^K\r\
C|1|I|order comment|G\r\
R|1|^^^K|4.1|mmol/L||||F\r\
L|1|N\r";

#[test]
fn a_set_per_order_with_results_under_its_patient() {
    let m = Message::parse(TWO_ORDERS).unwrap();
    let sets = result_sets(&m, &profile("horiba-yumizen-h500"));
    let ids: Vec<_> = sets.iter().map(|s| s.specimen_id.clone().unwrap_or_default()).collect();
    assert_eq!(ids, ["SP1", "SP3", "SP4"], "an O with no results gives no set");
    let first = &sets[0];
    assert_eq!(first.patient.ids, ["PAT1", "L7"]);
    assert_eq!(first.patient.name.as_ref().map(|n| (n.given.as_str(), n.middle.as_str())), Some(("JANE", "Q")));
    assert_eq!(first.collected_at.as_deref(), Some("20260101110000"));
    assert_eq!(first.results[0].value, "8|5", "escapes decoded (&F& is the field delimiter)");
    assert_eq!(first.results[0].flags, [Flag::High, Flag::Worse], "repeated flags each read");
    assert_eq!(first.results[0].comments, ["hemolysed sample"]);
    assert!(sets[2].patient.is_empty(), "the second P record names no one");
    assert_eq!(sets[2].comments, ["order comment"]);
}

#[test]
fn qc_is_the_profiles_decision() {
    let qc = String::from_utf8_lossy(TWO_ORDERS).replace("|||||||P|LIS2-A2", "|||||||Q|LIS2-A2");
    let m = Message::parse(qc.as_bytes()).unwrap();
    let sets = result_sets(&m, &profile("horiba-yumizen-h500"));
    assert!(sets.iter().all(|s| s.qc));
    let m = Message::parse(TWO_ORDERS).unwrap();
    assert!(result_sets(&m, &profile("horiba-yumizen-h500")).iter().all(|s| !s.qc));
}

#[test]
fn results_before_any_order_still_make_a_set() {
    let m = Message::parse(b"H|\\^&\rR|1|^^^GLU|5.5|mmol/L||||F\rL|1\r").unwrap();
    let sets = result_sets(&m, &profile("horiba-yumizen-h500"));
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].specimen_id, None);
    assert_eq!(sets[0].results[0].test_code, "GLU");
}
