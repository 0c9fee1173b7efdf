//! Golden outputs built from the public captures in /work/shared/samples/astm/ (the result sets
//! are written by hand from what each capture's records hold), read back with our own HL7
//! parser to check fields by path.

use super::*;
use crate::hl7::{FieldPath, Message};
use crate::instrument::{Patient, PersonName, Sex, critical};

fn ctx() -> OruContext {
    OruContext {
        sending_application: "OUTPOST".into(),
        sending_facility: "CLINIC-1".into(),
        receiving_application: "LIS".into(),
        receiving_facility: "LAB".into(),
        control_id: "OP0001".into(),
        message_time: "20260101120000+0000".into(),
    }
}

/// A result row from [code, value, units, range, flags (space-separated), status (the
/// instrument's letter, read by `profile`), completed at]; empty strings are absent values.
fn row(profile: &Profile, [code, value, units, range, flags, status, at]: [&str; 7]) -> ResultRow {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ResultRow {
        test_code: code.into(),
        value: value.into(),
        units: some(units),
        reference_range: some(range),
        flags: flags.split_whitespace().filter_map(Flag::from_code).collect(),
        status: profile.result_status(status),
        completed_at: some(at),
        comments: Vec::new(),
    }
}

fn oru(set: &ResultSet, profile: &Profile) -> String {
    to_oru_r01(set, profile, None, &ctx()).unwrap()
}

/// Every value at `path`, unescaped (empty ones left out).
fn values(text: &str, path: &str) -> Vec<String> {
    let message = Message::parse(text).unwrap_or_else(|e| panic!("{e}\n{}", text.replace('\r', "\n")));
    message.values(&path.parse::<FieldPath>().unwrap())
}

/// The first value at `path`, or "".
fn get(text: &str, path: &str) -> String {
    values(text, path).into_iter().next().unwrap_or_default()
}

fn segment_ids(text: &str) -> Vec<&str> {
    text.split('\r').filter(|s| !s.is_empty()).map(|s| &s[..3]).collect()
}

/// The Yumizen H500 capture: H, an empty P, O|1|2021679||^^^DIF|R|20200407151558|...|BLOOD|...,
/// a C record of alarms, four M records (histograms), 27 R records, L.
fn yumizen_set(p: &Profile) -> ResultSet {
    let rows = [
        ("PCT", "0.13", "%", "0.15 - 0.40", "L", "W"),
        ("NEU#", "3.03", "10E3/uL", "1.60 - 7.00", "N", "W"),
        ("MCV", "79.3", "um3", "76.0 - 100.0", "N", "F"),
        ("P-LCR", "36.2", "%", "18.0 - 50.0", "N", "W"),
        ("NEU%", "67.9", "%", "40.0 - 73.0", "N", "W"),
        ("RDW-CV", "28.8", "%", "11.0 - 17.0", "HH", "F"),
        ("MPV", "9.2", "um3", "8.0 - 11.0", "N", "W"),
        ("RBC", "1.74", "10E6/uL", "3.80 - 6.00", "LL", "F"),
        ("P-LCC", "50", "10E3/uL", "44 - 140", "N", "W"),
        ("MON#", "0.33", "10E3/uL", "0.20 - 0.80", "N", "W"),
        ("WBC", "4.55", "10E3/uL", "3.50 - 10.00", "N", "W"),
        ("PLT", "139", "10E3/uL", "150 - 400", "L", "W"),
        ("LIC%", "1.7", "%", "0.0 - 1.0", "H", "W"),
        ("MON%", "7.3", "%", "4.0 - 12.0", "N", "W"),
        ("LIC#", "0.08", "10E3/uL", "0.00 - 0.10", "N", "W"),
        ("LYM#", "1.02", "10E3/uL", "1.00 - 3.00", "N", "W"),
        ("PDW", "20.7", "um3", "11.0 - 22.0", "N", "W"),
        ("HGB", "4.6", "g/dL", "11.5 - 17.0", "LL", "F"),
        ("LYM%", "22.8", "%", "15.0 - 45.0", "N", "W"),
        ("RDW-SD", "90.5", "um3", "37.0 - 49.0", "HH", "F"),
        ("BAS%", "1.4", "%", "0.0 - 2.0", "N", "W"),
        ("BAS#", "0.06", "10E3/uL", "0.00 - 0.15", "N", "W"),
        ("MCH", "26.4", "pg", "27.0 - 34.0", "L", "F"),
        ("MCHC", "33.3", "g/dL", "32.0 - 35.0", "N", "F"),
        ("HCT", "13.8", "%", "35.0 - 52.0", "LL", "F"),
        ("EOS#", "0.03", "10E3/uL", "0.00 - 0.50", "N", "W"),
        ("EOS%", "0.6", "%", "0.5 - 7.0", "N", "W"),
    ];
    ResultSet {
        instrument_id: "H500 906YOXH02459".into(),
        message_time: Some("20200407165331".into()),
        specimen_id: Some("2021679".into()),
        specimen_type: Some("BLOOD".into()),
        ordered_tests: vec!["DIF".into()],
        results: rows
            .iter()
            .map(|(code, value, units, range, flag, status)| {
                // R.13 is empty; the profile reads R.12.
                row(p, [code, value, units, range, flag, status, "20200407151558"])
            })
            .collect(),
        comments: vec!["NON_COMPLIANT_DATA WBC LL_OR_LL1_INTERFERE".into(), "SUSPECTED_PATHOLOGY ANEMIA".into()],
        ..ResultSet::default()
    }
}

#[test]
fn yumizen_h500_capture() {
    let p = Profile::builtin("horiba-yumizen-h500").unwrap();
    let set = yumizen_set(&p);
    let text = oru(&set, &p);
    assert!(
        text.starts_with("MSH|^~\\&|OUTPOST|CLINIC-1|LIS|LAB|20260101120000+0000||ORU^R01^ORU_R01|OP0001|P|2.5.1\r")
    );
    // The P record is empty: no PID. Then ORC, OBR, the two comments, 27 OBX, SPM.
    let ids = segment_ids(&text);
    assert_eq!(ids[..5], ["MSH", "ORC", "OBR", "NTE", "NTE"]);
    assert_eq!(ids.iter().filter(|s| **s == "OBX").count(), 27);
    assert_eq!(ids.last(), Some(&"SPM"));
    // No order known: the specimen id is the filler order number.
    assert_eq!(get(&text, "ORC-1"), "RE");
    assert_eq!(get(&text, "ORC-2"), "");
    assert_eq!(get(&text, "ORC-3"), "2021679");
    assert_eq!(get(&text, "OBR-3"), "2021679");
    assert_eq!(get(&text, "OBR-4"), "DIF^^99YH500");
    // No collection time: the observation time is the earliest completion time.
    assert_eq!(get(&text, "OBR-7"), "20200407151558");
    assert_eq!(get(&text, "OBR-22"), "20200407151558");
    // W (questionable: alarms) results are preliminary, so the order is too.
    assert_eq!(get(&text, "OBR-25"), "P");
    assert_eq!(get(&text, "NTE[1]-3"), "NON_COMPLIANT_DATA WBC LL_OR_LL1_INTERFERE");
    assert_eq!(get(&text, "NTE[1]-2"), "L");

    // OBX 1: PCT, not in the map: the instrument's code in the local coding system.
    assert_eq!(get(&text, "OBX[1]-3"), "PCT^^99YH500");
    assert_eq!(get(&text, "OBX[1]-2"), "NM");
    assert_eq!(get(&text, "OBX[1]-6"), "%");
    assert_eq!(get(&text, "OBX[1]-7"), "0.15-0.40");
    assert_eq!(get(&text, "OBX[1]-8"), "L");
    assert_eq!(get(&text, "OBX[1]-11"), "P");
    // OBX 11: WBC, mapped: LOINC, the instrument's code as the alternate, UCUM units.
    assert_eq!(get(&text, "OBX[11]-1"), "11");
    assert_eq!(get(&text, "OBX[11]-3.1"), "6690-2");
    assert_eq!(get(&text, "OBX[11]-3.3"), "LN");
    assert_eq!(get(&text, "OBX[11]-3.4"), "WBC");
    assert_eq!(get(&text, "OBX[11]-3.6"), "99YH500");
    assert_eq!(get(&text, "OBX[11]-5"), "4.55");
    assert_eq!(get(&text, "OBX[11]-6"), "10*3/uL^^UCUM");
    assert_eq!(get(&text, "OBX[11]-7"), "3.50-10.00");
    assert_eq!(get(&text, "OBX[11]-8"), "N");
    assert_eq!(get(&text, "OBX[11]-14"), "20200407151558");
    assert_eq!(get(&text, "OBX[11]-18"), "H500 906YOXH02459");
    assert_eq!(get(&text, "OBX[11]-19"), "20200407151558");
    // OBX 8: RBC, LL, final.
    assert_eq!(get(&text, "OBX[8]-3.1"), "789-8");
    assert_eq!(get(&text, "OBX[8]-6.1"), "10*6/uL");
    assert_eq!(get(&text, "OBX[8]-8"), "LL");
    assert_eq!(get(&text, "OBX[8]-11"), "F");
    // OBX 18: HGB; OBX 3: MCV in um3 is the map's fL.
    assert_eq!(get(&text, "OBX[18]-3.1"), "718-7");
    assert_eq!(get(&text, "OBX[3]-6.1"), "fL");
    // LIC# is mapped to a local code.
    assert_eq!(get(&text, "OBX[15]-3"), "LIC#^Large immature cells [#/volume] in Blood (Horiba)^99YH500");
    assert_eq!(get(&text, "SPM-2.2"), "2021679");
    assert_eq!(get(&text, "SPM-4"), "BLD^Whole blood^HL70487");

    let report = mapping_report(&set, &p);
    assert_eq!(report.unmapped, ["PCT", "P-LCR", "P-LCC", "PDW"]);
    assert!(report.unexpected_units.is_empty());
    let criticals: Vec<String> = set.results.iter().filter_map(|r| critical(r, &p)).map(|c| c.to_string()).collect();
    assert_eq!(
        criticals,
        [
            "critical result for RDW-CV (flagged HH by the instrument)",
            "critical result for RBC (flagged LL by the instrument)",
            "critical result for HGB (below the critical low)",
            "critical result for RDW-SD (flagged HH by the instrument)",
            "critical result for HCT (below the critical low)",
        ]
    );
}

/// The Pentra XLR capture (a subset of its 21 results, with the comments after them).
fn pentra_set(p: &Profile) -> ResultSet {
    let at = "20220727121550";
    let mut wbc = row(p, ["WBC", "8.5", "", "", "", "W", at]);
    wbc.comments = vec!["Alarm_WBC LMNE- BASO+ LL NL LN NO SL1".into(), "LARGE IMMATURE CELL NRBCs".into()];
    let mut plt = row(p, ["PLT", "234", "", "", "", "F", at]);
    plt.comments = vec!["PLATELET AGGREGATS".into()];
    ResultSet {
        instrument_id: "ABX".into(),
        message_time: Some("20220727121551".into()),
        patient: Patient {
            ids: Vec::new(),
            name: Some(PersonName { family: "Mohale".into(), given: "Rita".into(), middle: String::new() }),
            birth_date: Some("19771201".into()),
            sex: Sex::from_code("F"),
        },
        specimen_id: Some("S1234".into()),
        specimen_type: Some("Standard".into()),
        ordered_tests: vec!["DIF".into()],
        collected_at: Some("202205270000".into()),
        results: vec![
            wbc,
            row(p, ["MON#", "0.15", "", "", "L", "W", at]),
            row(p, ["BAS#", "-----", "", "", "HH", "X", at]),
            row(p, ["RBC", "4.65", "", "", "", "F", at]),
            plt,
        ],
        ..ResultSet::default()
    }
}

#[test]
fn pentra_xlr_capture_golden() {
    let p = Profile::builtin("horiba-pentra-xlr").unwrap();
    let text = oru(&pentra_set(&p), &p);
    let expected = [
        "MSH|^~\\&|OUTPOST|CLINIC-1|LIS|LAB|20260101120000+0000||ORU^R01^ORU_R01|OP0001|P|2.5.1",
        "PID|1||||Mohale^Rita||19771201|F",
        "ORC|RE||S1234",
        "OBR|1||S1234|DIF^^99PXLR|||202205270000|||||||||||||||20220727121550|||P",
        "OBX|1|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN^WBC^^99PXLR||8.5|10*3/uL^^UCUM|4.0-10.0||||P|||202205270000||||ABX|20220727121550",
        "NTE|1|L|Alarm_WBC LMNE- BASO+ LL NL LN NO SL1",
        "NTE|2|L|LARGE IMMATURE CELL NRBCs",
        "OBX|2|NM|742-7^Monocytes [#/volume] in Blood by Automated count^LN^MON#^^99PXLR||0.15|10*3/uL^^UCUM||L|||P|||202205270000||||ABX|20220727121550",
        "OBX|3|ST|704-7^Basophils [#/volume] in Blood by Automated count^LN^BAS#^^99PXLR||-----|10*3/uL^^UCUM||HH|||X|||202205270000||||ABX|20220727121550",
        "OBX|4|NM|789-8^Erythrocytes [#/volume] in Blood by Automated count^LN^RBC^^99PXLR||4.65|10*6/uL^^UCUM|4.00-5.50||||F|||202205270000||||ABX|20220727121550",
        "OBX|5|NM|777-3^Platelets [#/volume] in Blood by Automated count^LN^PLT^^99PXLR||234|10*3/uL^^UCUM|150-400||||F|||202205270000||||ABX|20220727121550",
        "NTE|1|L|PLATELET AGGREGATS",
        "SPM|1|^S1234||^Standard",
        "",
    ]
    .join("\r");
    assert_eq!(text, expected, "\n{}", text.replace('\r', "\n"));
    // Read back by path: the patient, and the status the Pentra's letters mean.
    assert_eq!(get(&text, "PID-5.1"), "Mohale");
    assert_eq!(get(&text, "PID-8"), "F");
    assert_eq!(get(&text, "OBX[3]-11"), "X");
}

#[test]
fn erba_xl1000_capture_golden() {
    // H|`^&||||||||||P|E 1394-97|20200928132312  P|1|||||||U||||||||0|0
    // O|1|1044041||^^^DBILL|||||||||||SERUM  R|1|^^^DBILL|0.3|mg/dl|^DEFAULT|A|N|F||||20200928132312
    // C|1|I|Instrument Flag A  L|1|N
    let p = Profile::builtin("erba-xl-1000").unwrap();
    let mut dbill = row(&p, ["DBILL", "0.3", "mg/dl", "", "A", "F", "20200928132312"]);
    dbill.comments = vec!["Instrument Flag A".into()];
    let set = ResultSet {
        message_time: Some("20200928132312".into()),
        patient: Patient { sex: Sex::from_code("U"), ..Patient::default() },
        specimen_id: Some("1044041".into()),
        specimen_type: Some("SERUM".into()),
        ordered_tests: vec!["DBILL".into()],
        results: vec![dbill],
        ..ResultSet::default()
    };
    let text = oru(&set, &p);
    let expected = [
        "MSH|^~\\&|OUTPOST|CLINIC-1|LIS|LAB|20260101120000+0000||ORU^R01^ORU_R01|OP0001|P|2.5.1",
        "PID|1|||||||U",
        "ORC|RE||1044041",
        "OBR|1||1044041|1968-7^Bilirubin.direct [Mass/volume] in Serum or Plasma^LN^DBILL^^99XL1000|||20200928132312|||||||||||||||20200928132312|||F",
        "OBX|1|NM|1968-7^Bilirubin.direct [Mass/volume] in Serum or Plasma^LN^DBILL^^99XL1000||0.3|mg/dL^^UCUM|0.0-0.3|A|||F|||20200928132312|||||20200928132312",
        "NTE|1|L|Instrument Flag A",
        "SPM|1|^1044041||SER^Serum^HL70487",
        "",
    ]
    .join("\r");
    assert_eq!(text, expected, "\n{}", text.replace('\r', "\n"));
    assert!(mapping_report(&set, &p).is_clean());
}

#[test]
fn cobas_c111_capture() {
    // O|1||T20 10134GA D28^^6||S||||||N|...  R|1|^^^413|40.13|g/L||N||F||$SYS$||20230803131700
    let p = Profile::builtin("roche-cobas-c111").unwrap();
    let set = ResultSet {
        instrument_id: "c111 13147".into(),
        specimen_id: Some("T20 10134GA D28".into()),
        results: vec![row(&p, ["413", "40.13", "g/L", "", "N", "F", "20230803131700"])],
        ..ResultSet::default()
    };
    let text = oru(&set, &p);
    assert_eq!(segment_ids(&text), ["MSH", "ORC", "OBR", "OBX", "SPM"]);
    assert_eq!(get(&text, "OBR-3"), "T20 10134GA D28");
    // No ordered test: the instrument itself is the service.
    assert_eq!(get(&text, "OBR-4"), "roche-cobas-c111^Roche cobas c 111 results^99C111");
    assert_eq!(get(&text, "OBR-25"), "F");
    assert_eq!(get(&text, "OBX-3"), "1751-7^Albumin [Mass/volume] in Serum or Plasma^LN^413^^99C111");
    assert_eq!(get(&text, "OBX-6"), "g/L^^UCUM");
    assert_eq!(get(&text, "OBX-7"), "35-52");
    assert_eq!(get(&text, "OBX-8"), "N");
    assert_eq!(get(&text, "SPM-4"), "");
}

#[test]
fn genexpert_capture_sub_results_inherit_the_main_status() {
    // R|1|^MTB-RIF^^Xpert^Xpert MTB-RIF Ultra^4^MTB^|NOT DETECTED^|||||F||..|20250514121638|20250514132103|...
    // R|2|^MTB-RIF^^Xpert^^^rpoB1^|INVALID^|||   R|3|^MTB-RIF^^Xpert^^^rpoB1^Ct|^0.0|||
    // R|14|^MTB-RIF^^Xpert^^^SPC^|PASS^|||   R|15|^MTB-RIF^^Xpert^^^SPC^Ct|^24.7|||
    // R|20|^MTB-RIF^^Trace^Xpert MTB-RIF Ultra^4^MTB Trace^|^|||||F||..  R|33|^MTB-RIF^^Trace^^^SPC^|PASS^|||
    let p = Profile::builtin("cepheid-genexpert").unwrap();
    let done = "20250514132103";
    let set = ResultSet {
        instrument_id: "Cepheid-44413S0 806149".into(),
        specimen_id: Some("PR25A137".into()),
        specimen_type: Some("ORH".into()),
        ordered_tests: vec!["MTB-RIF".into()],
        results: vec![
            row(&p, ["Xpert/MTB", "NOT DETECTED", "", "", "", "F", done]),
            row(&p, ["Xpert/rpoB1", "INVALID", "", "", "", "", ""]),
            row(&p, ["Xpert/rpoB1/Ct", "0.0", "", "", "", "", ""]),
            row(&p, ["Xpert/SPC", "PASS", "", "", "", "", ""]),
            row(&p, ["Xpert/SPC/Ct", "24.7", "", "", "", "", ""]),
            row(&p, ["Trace/MTB Trace", "", "", "", "", "F", done]),
            row(&p, ["Trace/SPC", "PASS", "", "", "", "", ""]),
        ],
        ..ResultSet::default()
    };
    let text = oru(&set, &p);
    assert_eq!(values(&text, "OBX-11"), ["F"; 7]);
    assert_eq!(get(&text, "OBR-25"), "F");
    assert_eq!(
        get(&text, "OBX[1]-3"),
        "MTB^Mycobacterium tuberculosis complex DNA (Xpert MTB/RIF Ultra)^99GXP^Xpert/MTB^^99GXP"
    );
    assert_eq!(get(&text, "OBX[1]-2"), "ST");
    assert_eq!(get(&text, "OBX[1]-5"), "NOT DETECTED");
    assert_eq!(get(&text, "OBX[3]-3"), "Xpert/rpoB1/Ct^^99GXP");
    assert_eq!(get(&text, "OBX[3]-2"), "NM");
    assert_eq!(get(&text, "OBX[5]-5"), "24.7");
    // The Trace main result has no value: OBX-2 and OBX-5 stay empty.
    assert_eq!(get(&text, "OBX[6]-3.1"), "MTB-TRACE");
    assert_eq!(get(&text, "OBX[6]-2"), "");
    assert_eq!(get(&text, "OBX[6]-5"), "");
    // Sub-results without a time have no OBX-14/19; the OBR has the main results' time.
    assert_eq!(get(&text, "OBX[2]-19"), "");
    assert_eq!(get(&text, "OBR-7"), done);
    assert_eq!(get(&text, "SPM-4"), "^ORH", "not a table 0487 word: text only");
    assert_eq!(get(&text, "OBR-4"), "MTB-RIF^^99GXP");
    assert_eq!(
        mapping_report(&set, &p).unmapped,
        ["Xpert/rpoB1", "Xpert/rpoB1/Ct", "Xpert/SPC", "Xpert/SPC/Ct", "Trace/SPC"]
    );
}

#[test]
fn quality_control_is_refused() {
    let p = Profile::builtin("horiba-yumizen-h500").unwrap();
    let mut set = yumizen_set(&p);
    set.qc = true;
    let err = to_oru_r01(&set, &p, None, &ctx()).unwrap_err();
    assert_eq!(err, OruError::QualityControl);
    assert!(err.to_string().contains("never sent as patient results"));
    // Even with a matching order.
    let order = OrderRef { placer_order_number: Some("ORD-1".into()), ..OrderRef::default() };
    assert_eq!(to_oru_r01(&set, &p, Some(&order), &ctx()), Err(OruError::QualityControl));
}

#[test]
fn the_matched_order_gives_the_numbers_and_the_service() {
    let p = Profile::builtin("horiba-yumizen-h500").unwrap();
    let set = yumizen_set(&p);
    let order = OrderRef {
        placer_order_number: Some("EHR-778".into()),
        filler_order_number: Some("LAB-42".into()),
        universal_service_id: Some(Coded { code: "58410-2".into(), text: "CBC panel".into(), system: "LN".into() }),
    };
    let text = to_oru_r01(&set, &p, Some(&order), &ctx()).unwrap();
    assert_eq!(get(&text, "ORC-2"), "EHR-778");
    assert_eq!(get(&text, "ORC-3"), "LAB-42");
    assert_eq!(get(&text, "OBR-2"), "EHR-778");
    assert_eq!(get(&text, "OBR-3"), "LAB-42");
    assert_eq!(get(&text, "OBR-4"), "58410-2^CBC panel^LN");
    // The specimen id is still there, in SPM.
    assert_eq!(get(&text, "SPM-2.2"), "2021679");
    // A placer number alone is enough to send results that carry no specimen id.
    let mut anonymous = set.clone();
    anonymous.specimen_id = None;
    let order = OrderRef { placer_order_number: Some("EHR-778".into()), ..OrderRef::default() };
    let text = to_oru_r01(&anonymous, &p, Some(&order), &ctx()).unwrap();
    assert_eq!(get(&text, "OBR-2"), "EHR-778");
    assert_eq!(get(&text, "OBR-3"), "");
    assert!(!segment_ids(&text).contains(&"SPM"));
    assert_eq!(to_oru_r01(&anonymous, &p, None, &ctx()), Err(OruError::NoSpecimenId));
}

#[test]
fn hostile_values_are_escaped_and_never_break_the_message() {
    let p = Profile::builtin("horiba-yumizen-h500").unwrap();
    let hostile = "a|b^c~d\\e&f\rOBX|99|ST|X\nPID|1";
    let mut bad = row(&p, ["ODD|CODE^1", hostile, "mg|dl^x", "1-2|3", "", "F", "20200407151558"]);
    bad.flags = vec![Flag::Other("X|^Y".into())];
    bad.comments = vec![hostile.into()];
    let set = ResultSet {
        instrument_id: "H500|^~".into(),
        patient: Patient {
            ids: vec!["ID|1".into(), "ID~2".into()],
            name: Some(PersonName { family: "O'Brien^Smith".into(), given: "J|r".into(), middle: "\\".into() }),
            ..Patient::default()
        },
        specimen_id: Some("S|1^2&3".into()),
        specimen_type: Some("BLOOD^X".into()),
        ordered_tests: vec!["P|X".into()],
        results: vec![bad, row(&p, ["WBC", "<0.5", "10E3/uL", "", "", "F", ""])],
        comments: vec!["set & comment | with ~ delimiters".into()],
        ..ResultSet::default()
    };
    let mut context = ctx();
    context.sending_facility = "CLINIC|1^A".into();
    context.control_id = "C|1".into();
    let text = to_oru_r01(&set, &p, None, &context).unwrap();
    // Exactly the segments we made: nothing was injected.
    assert_eq!(segment_ids(&text), ["MSH", "PID", "ORC", "OBR", "NTE", "OBX", "NTE", "NTE", "OBX", "SPM"]);
    assert!(!text.contains('\n'));
    assert_eq!(get(&text, "MSH-4"), "CLINIC|1^A");
    assert_eq!(get(&text, "MSH-10"), "C|1");
    assert_eq!(values(&text, "PID-3"), ["ID|1", "ID~2"]);
    assert_eq!(get(&text, "PID-5.1"), "O'Brien^Smith");
    assert_eq!(get(&text, "PID-5.2"), "J|r");
    assert_eq!(get(&text, "PID-5.3"), "\\");
    assert_eq!(get(&text, "ORC-3"), "S|1^2&3");
    assert_eq!(get(&text, "OBR-4.1"), "P|X");
    assert_eq!(get(&text, "NTE[1]-3"), "set & comment | with ~ delimiters");
    assert_eq!(get(&text, "OBX[1]-3.1"), "ODD|CODE^1");
    assert_eq!(get(&text, "OBX[1]-2"), "ST");
    assert_eq!(get(&text, "OBX[1]-5"), hostile);
    assert_eq!(get(&text, "OBX[1]-6"), "mg|dl^x");
    assert_eq!(get(&text, "OBX[1]-7"), "1-2|3");
    assert_eq!(get(&text, "OBX[1]-18"), "H500|^~");
    assert_eq!(get(&text, "NTE[2]-3"), hostile);
    assert_eq!(get(&text, "NTE[3]-3"), "instrument flag: X|^Y");
    assert_eq!(get(&text, "SPM-2.2"), "S|1^2&3");
    assert_eq!(get(&text, "SPM-4.2"), "BLOOD^X");
    // A value with a comparator is structured numeric.
    assert_eq!(get(&text, "OBX[2]-2"), "SN");
    assert_eq!(get(&text, "OBX[2]-5.1"), "<");
    assert_eq!(get(&text, "OBX[2]-5.2"), "0.5");
}

#[test]
fn unmapped_codes_are_kept_and_counted() {
    let p = Profile::builtin("erba-xl-1000").unwrap();
    let set = ResultSet {
        specimen_id: Some("1".into()),
        results: vec![
            row(&p, ["HBA1C", "5.9", "%", "", "", "F", ""]),
            row(&p, ["DBILL", "0.3", "mg/dl", "", "", "F", ""]),
            row(&p, ["HBA1C", "6.0", "%", "", "", "F", ""]),
        ],
        ..ResultSet::default()
    };
    let text = oru(&set, &p);
    assert_eq!(get(&text, "OBX[1]-3"), "HBA1C^^99XL1000");
    assert_eq!(get(&text, "OBX[1]-6"), "%");
    // The same observation twice in one order: OBX-4 tells them apart.
    assert_eq!(get(&text, "OBX[1]-4"), "1");
    assert_eq!(get(&text, "OBX[2]-4"), "");
    assert_eq!(get(&text, "OBX[3]-4"), "2");
    assert_eq!(mapping_report(&set, &p).unmapped, ["HBA1C"]);
}

#[test]
fn other_units_are_sent_as_they_came_without_the_maps_ranges() {
    let p = Profile::builtin("erba-xl-1000").unwrap();
    let set = ResultSet {
        specimen_id: Some("1".into()),
        results: vec![row(&p, ["GLU", "5.4", "mmol/L", "", "", "F", ""])],
        ..ResultSet::default()
    };
    let text = oru(&set, &p);
    assert_eq!(get(&text, "OBX-3.1"), "2345-7");
    assert_eq!(get(&text, "OBX-6"), "mmol/L");
    assert_eq!(get(&text, "OBX-7"), "", "the map's range is in mg/dL");
    let report = mapping_report(&set, &p);
    assert_eq!(report.unexpected_units, ["GLU"]);
    assert!(report.unmapped.is_empty() && !report.is_clean());
}

#[test]
fn order_status_follows_the_results() {
    assert_eq!(obr_status(&["F", "F"]), "F");
    assert_eq!(obr_status(&["F", "X"]), "F");
    assert_eq!(obr_status(&["X", "X"]), "X");
    assert_eq!(obr_status(&["F", "P"]), "P");
    assert_eq!(obr_status(&["F", "I"]), "P");
    assert_eq!(obr_status(&["P", "C"]), "C");
    let rows = |statuses: &[Option<ResultStatus>]| -> Vec<ResultRow> {
        statuses.iter().map(|s| ResultRow { status: *s, ..ResultRow::default() }).collect()
    };
    assert_eq!(statuses(&rows(&[None, Some(ResultStatus::Final), None])), ["P", "F", "F"]);
    assert_eq!(statuses(&rows(&[Some(ResultStatus::Corrected), None])), ["C", "C"]);
}

#[test]
fn refusals_name_what_is_missing() {
    let p = Profile::builtin("erba-xl-1000").unwrap();
    let set = ResultSet {
        specimen_id: Some("1".into()),
        results: vec![row(&p, ["DBILL", "0.3", "", "", "", "F", ""])],
        ..ResultSet::default()
    };
    let empty = ResultSet { results: Vec::new(), ..set.clone() };
    assert_eq!(to_oru_r01(&empty, &p, None, &ctx()), Err(OruError::NoResults));
    let no_specimen = ResultSet { specimen_id: Some("  ".into()), ..set.clone() };
    assert_eq!(to_oru_r01(&no_specimen, &p, None, &ctx()), Err(OruError::NoSpecimenId));
    let mut c = ctx();
    c.control_id = " ".into();
    assert_eq!(to_oru_r01(&set, &p, None, &c), Err(OruError::EmptyControlId));
    let mut c = ctx();
    c.message_time = "yesterday".into();
    assert_eq!(to_oru_r01(&set, &p, None, &c), Err(OruError::BadMessageTime("yesterday".into())));
}

#[test]
fn bad_times_are_left_out_and_non_ascii_is_declared() {
    let p = Profile::builtin("erba-xl-1000").unwrap();
    let mut dbill = row(&p, ["DBILL", "0.3", "", "", "", "F", "2020-09-28 13:23"]);
    dbill.comments = vec!["hémolysé".into()];
    let set = ResultSet {
        specimen_id: Some("1".into()),
        collected_at: Some("20200928".into()),
        patient: Patient { birth_date: Some("1.12.1977".into()), sex: Some(Sex::Male), ..Patient::default() },
        results: vec![dbill],
        ..ResultSet::default()
    };
    let text = oru(&set, &p);
    assert_eq!(get(&text, "OBX-19"), "");
    assert_eq!(get(&text, "OBX-14"), "20200928");
    assert_eq!(get(&text, "PID-7"), "");
    assert_eq!(get(&text, "OBR-22"), "20260101120000+0000", "no completion time: the message time");
    assert_eq!(get(&text, "MSH-18"), "UNICODE UTF-8");
    assert_eq!(get(&text, "NTE-3"), "hémolysé");
    let ascii = oru(&ResultSet { results: vec![row(&p, ["DBILL", "0.3", "", "", "", "F", ""])], ..set }, &p);
    assert_eq!(get(&ascii, "MSH-18"), "");
}

#[test]
fn values_and_times_are_typed() {
    assert_eq!(encode_value("4.55"), ("NM", "4.55".into()));
    assert_eq!(encode_value("-2.0"), ("NM", "-2.0".into()));
    assert_eq!(encode_value(">=500"), ("SN", ">=^500".into()));
    assert_eq!(encode_value("< 0.5"), ("SN", "<^0.5".into()));
    assert_eq!(encode_value("NOT DETECTED"), ("ST", "NOT DETECTED".into()));
    assert_eq!(encode_value("-----"), ("ST", "-----".into()));
    assert_eq!(encode_value("1e5"), ("ST", "1e5".into()));
    assert_eq!(encode_value(""), ("", String::new()));
    for good in ["2020", "202004", "20200407151558", "20200407151558.1234", "20200407151558+0200", "202205270000-0500"]
    {
        assert_eq!(dtm(good), Some(good), "{good}");
    }
    for bad in ["", "20", "2020040", "20200407151558.", "2020-04-07", "20200407151558+02", "2020.5", "x2020"] {
        assert_eq!(dtm(bad), None, "{bad}");
    }
}
