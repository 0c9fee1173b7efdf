use super::*;

/// A small valid profile; tests edit it to break one thing at a time.
const GOOD: &str = r#"
name = "Test analyzer"
kind = "chemistry"
coding_system = "99TEST"

[serial]
baud = 9600

[link]
quirks = ["lf_only"]
reply_timeout = "15s"

[records]
test_code = "R.3.4"
value = "R.4"
units = "R.5"
completed_at = ["R.13", "R.12"]
specimen_id = "O.3"

[qc]
when = [{ field = "H.12", is = ["Q"] }]

[tests.GLU]
loinc = "2345-7"
name = "Glucose"
units = "mg/dL"
critical_low = 40
critical_high = 450.5
"#;

fn load(text: &str) -> Result<Profile, ProfileError> {
    Profile::from_toml(text, "test", "test.toml")
}

/// The problems' lines, `{origin}:{line}:{col}: {key}: {message}`.
fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("the profile loaded:\n{text}"),
        Err(ProfileError::Invalid(p)) => p.to_string().lines().map(str::to_string).collect(),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn every_builtin_profile_loads() {
    assert_eq!(Profile::names().len(), 6);
    for name in Profile::names() {
        let profile = Profile::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(profile.id, name);
        assert!(!profile.name.is_empty() && !profile.description.is_empty(), "{name}");
        assert!(!profile.qc.is_empty(), "{name}: no QC marker");
        assert!(profile.serial.is_some(), "{name}: no serial defaults");
        // Every quirk a built-in profile names is one the link layer knows.
        for quirk in &profile.link.quirks {
            assert_eq!(Quirk::from_name(quirk.name()), Some(*quirk));
        }
        // A test with a critical range says its units.
        for (code, test) in &profile.tests {
            if test.critical_low.is_some() || test.critical_high.is_some() {
                assert!(test.units.is_some(), "{name}: {code}");
            }
        }
    }
}

#[test]
fn the_builtin_files_are_the_ones_in_hardware() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hardware/instruments");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "toml").then(|| path.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    on_disk.sort();
    let mut builtin = Profile::names();
    builtin.sort();
    assert_eq!(on_disk, builtin, "every profile in hardware/instruments is built in, and only those");
    for name in Profile::names() {
        let from_file = Profile::from_file(&dir.join(format!("{name}.toml"))).unwrap();
        assert_eq!(from_file, Profile::builtin(name).unwrap());
    }
}

#[test]
fn quirk_names_are_exactly_the_link_layers() {
    let names: Vec<&str> = Quirk::ALL.iter().map(|q| q.name()).collect();
    assert_eq!(
        names,
        ["no_frame_numbers", "lf_only", "cr_cr", "no_cr_before_etx", "no_etx", "long_frames", "send_packed"]
    );
    for quirk in Quirk::ALL {
        assert_eq!(Quirk::from_name(quirk.name()), Some(quirk));
        let text = GOOD.replace("quirks = [\"lf_only\"]", &format!("quirks = [{:?}]", quirk.name()));
        assert_eq!(load(&text).unwrap().link.quirks, [quirk]);
    }
}

#[test]
fn a_good_profile_reads_into_typed_values() {
    let p = load(GOOD).unwrap();
    assert_eq!(p.id, "test");
    assert_eq!(p.kind, Kind::Chemistry);
    assert_eq!(
        p.serial,
        Some(SerialDefaults {
            baud: 9600,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        })
    );
    assert!(p.has_quirk(Quirk::LfOnly));
    assert_eq!(p.link.timers.reply_timeout, Some(Duration::from_secs(15)));
    assert_eq!(p.link.timers.receive_timeout, None);
    assert_eq!(p.records.completed_at.as_ref().unwrap().paths.len(), 2);
    let glu = p.test("GLU").unwrap();
    assert_eq!(glu.id, TestId::Loinc("2345-7".into()));
    assert_eq!((glu.critical_low, glu.critical_high), (Some(40.0), Some(450.5)));
    assert!(p.test("glu").is_none(), "codes are case-sensitive, as instruments send them");
}

#[test]
fn unknown_builtin_lists_the_names_and_suggests_the_closest() {
    let err = Profile::builtin("yumizen").unwrap_err().to_string();
    assert!(err.contains("did you mean \"horiba-yumizen-h500\"?"), "{err}");
    assert!(err.contains("cepheid-genexpert, ") || err.contains(", cepheid-genexpert"), "{err}");
    let err = Profile::builtin("horiba-pentra-xl").unwrap_err().to_string();
    assert!(err.contains("did you mean \"horiba-pentra-xlr\"?"), "{err}");
    let err = Profile::builtin("sysmex-xn-550").unwrap_err().to_string();
    assert!(!err.contains("did you mean"), "{err}");
    assert!(err.contains("profile_file") && err.contains("README"), "{err}");
}

#[test]
fn unknown_quirk_names_the_valid_ones() {
    let lines = problems(&GOOD.replace("[\"lf_only\"]", "[\"lf_only\", \"lf-only\", \"crcr\"]"));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("test.toml:10:22: link.quirks[1]: unknown quirk \"lf-only\" (did you mean \"lf_only\"?)")
    );
    assert!(lines[0].ends_with(
        "the quirks are: no_frame_numbers, lf_only, cr_cr, no_cr_before_etx, no_etx, long_frames, send_packed"
    ));
    assert!(lines[1].contains("link.quirks[2]: unknown quirk \"crcr\" (did you mean \"cr_cr\"?)"), "{}", lines[1]);
}

#[test]
fn contradicting_and_repeated_quirks() {
    let lines = problems(&GOOD.replace("[\"lf_only\"]", "[\"lf_only\", \"cr_cr\", \"cr_cr\"]"));
    assert!(lines.iter().any(|l| l.contains("link.quirks[2]: \"cr_cr\" is listed twice")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("\"lf_only\" and \"cr_cr\"")), "{lines:#?}");
}

#[test]
fn bad_paths_say_where_and_how_to_write_them() {
    let text =
        GOOD.replace("value = \"R.4\"", "value = \"R.0\"").replace("specimen_id = \"O.3\"", "specimen_id = \"R.3\"");
    let lines = problems(&text);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].starts_with("test.toml:15:9: records.value: \"R.0\" is not a record path"), "{}", lines[0]);
    assert!(lines[0].contains("write it like \"R.4\" or \"R.3.4\""));
    assert!(lines[1].contains("records.specimen_id: R.3 is in a R record, but this is read from the O record"));
    let lines = problems(&GOOD.replace("value = \"R.4\"", "value = []"));
    assert!(lines[0].contains("records.value: the list is empty"), "{lines:#?}");
    let lines = problems(&GOOD.replace("value = \"R.4\"", "value = 4"));
    assert!(lines[0].contains("a record path such as \"R.4\""), "{lines:#?}");
}

#[test]
fn ranges_must_run_from_low_to_high() {
    let lines = problems(&GOOD.replace("critical_low = 40", "critical_low = 500"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "test.toml:27:16: tests.GLU.critical_low: the critical range is empty or negative (500 to 450.5)"
        ),
        "{}",
        lines[0]
    );
    let text = GOOD.replace("name = \"Glucose\"", "name = \"Glucose\"\nreference_range = \"110 - 70\"");
    let lines = problems(&text);
    assert!(lines[0].contains("tests.GLU.reference_range: \"110 - 70\" runs from high to low"), "{lines:#?}");
    // A text range is left as written.
    let text = GOOD.replace("name = \"Glucose\"", "name = \"Glucose\"\nreference_range = \"NEGATIVE\"");
    assert_eq!(load(&text).unwrap().test("GLU").unwrap().reference_range.as_deref(), Some("NEGATIVE"));
}

#[test]
fn a_critical_range_needs_units() {
    let lines = problems(&GOOD.replace("units = \"mg/dL\"\n", ""));
    assert!(lines[0].contains("tests.GLU: a critical range needs the units it is in"), "{lines:#?}");
}

#[test]
fn loinc_codes_are_checked_by_their_check_digit() {
    for good in ["6690-2", "789-8", "718-7", "4544-3", "777-3", "2345-7", "21000-5", "1968-7", "10-9"] {
        assert_eq!(loinc_problem(good), None, "{good}");
    }
    // 789-9 and 2100-5 are what the public Pentra XLR capture sends in R.3.5.
    assert!(loinc_problem("789-9").unwrap().contains("should be 8 (789-8)"));
    assert!(loinc_problem("2100-5").unwrap().contains("should be 6"));
    for bad in ["6690", "6690-", "-2", "66a0-2", "6690-22", "12345678-9"] {
        assert!(loinc_problem(bad).unwrap().contains("digits, a dash and a check digit"), "{bad}");
    }
    let lines = problems(&GOOD.replace("2345-7", "2345-8"));
    assert!(lines[0].starts_with("test.toml:24:9: tests.GLU.loinc: \"2345-8\" is not a LOINC code"), "{lines:#?}");
}

#[test]
fn a_test_is_coded_one_way() {
    let both = GOOD.replace("loinc = \"2345-7\"", "loinc = \"2345-7\"\ncode = \"GLU\"");
    assert!(problems(&both)[0].contains("give either loinc"), "{:#?}", problems(&both));
    let neither = GOOD.replace("loinc = \"2345-7\"\n", "");
    assert!(problems(&neither)[0].contains("give either loinc"));
    let local_ln = GOOD.replace("loinc = \"2345-7\"", "code = \"2345-7\"\nsystem = \"LN\"");
    assert!(problems(&local_ln)[0].contains("for a LOINC code write loinc"));
    let local = GOOD.replace("loinc = \"2345-7\"", "code = \"GLUC\"");
    assert_eq!(
        load(&local).unwrap().test("GLU").unwrap().id,
        TestId::Local { code: "GLUC".into(), system: "99TEST".into() }
    );
    let other_system = GOOD.replace("loinc = \"2345-7\"", "code = \"GLUC\"\nsystem = \"99LAB\"");
    assert_eq!(
        load(&other_system).unwrap().test("GLU").unwrap().id,
        TestId::Local { code: "GLUC".into(), system: "99LAB".into() }
    );
    let bad_system = GOOD.replace("loinc = \"2345-7\"", "code = \"GLUC\"\nsystem = \"LAB\"");
    assert!(problems(&bad_system)[0].contains("starts with 99") || problems(&bad_system)[0].contains("start with 99"));
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = GOOD
        .replace("kind = \"chemistry\"", "kind = \"chem\"")
        .replace("coding_system = \"99TEST\"", "coding_system = \"TEST\"")
        .replace("baud = 9600", "baud = 9601\nparity = \"mark\"")
        .replace("reply_timeout = \"15s\"", "reply_timeout = \"15\"")
        .replace("critical_low = 40", "critical_low = 460");
    let lines = problems(&text);
    let keys: Vec<&str> = lines.iter().map(|l| l.split(": ").nth(1).unwrap()).collect();
    assert_eq!(
        keys,
        ["kind", "coding_system", "serial.baud", "serial.parity", "link.reply_timeout", "tests.GLU.critical_low"],
        "{lines:#?}"
    );
    assert!(lines[0].contains("use one of: hematology, chemistry, immunoassay, molecular, coagulation, urinalysis"));
    assert!(lines[2].contains("9601 is not a baud rate"));
    assert!(lines[4].contains("\"15\" is not a usable timer"));
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_their_place() {
    let lines = problems(&GOOD.replace("[link]\n", "[link]\nquirk = []\n"));
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("test.toml:10:1: not a valid profile: unknown field `quirk`"), "{}", lines[0]);
    let lines = problems(&GOOD.replace("baud = 9600", "baud = \"9600\""));
    assert!(lines[0].starts_with("test.toml:7:8: not a valid profile: invalid type"), "{}", lines[0]);
    let lines = problems("name = \"x\"\nkind = ");
    assert!(lines[0].starts_with("test.toml:2:"), "{lines:#?}");
}

#[test]
fn qc_must_be_said_and_well_formed() {
    let lines = problems(&GOOD.replace("[qc]\nwhen = [{ field = \"H.12\", is = [\"Q\"] }]\n", ""));
    assert!(lines[0].contains("qc: the [qc] section is missing; say how the instrument marks quality-control results"));
    let lines = problems(&GOOD.replace("is = [\"Q\"]", "is = [\"Q\"], not_empty = true"));
    assert!(lines[0].contains("qc.when[0]: give the field and exactly one test"), "{lines:#?}");
    let lines = problems(&GOOD.replace("is = [\"Q\"]", "is = []"));
    assert!(lines[0].contains("qc.when[0]"), "{lines:#?}");
    let lines = problems(&GOOD.replace("\"H.12\"", "\"H12\""));
    assert!(lines[0].contains("qc.when[0].field: \"H12\" is not a record path"), "{lines:#?}");
    let lines = problems(&GOOD.replace("when = [{ field = \"H.12\", is = [\"Q\"] }]", "when = []"));
    assert!(lines[0].contains("qc.when: the list is empty"), "{lines:#?}");
}

#[test]
fn qc_conditions_decide_on_record_values() {
    let c111 = Profile::builtin("roche-cobas-c111").unwrap();
    let values = |pairs: &'static [(&'static str, &'static str)]| {
        move |p: &AstmPath| pairs.iter().find(|(k, _)| *k == p.to_string()).map(|(_, v)| *v)
    };
    // The capture: H.12 = P, O.4 = T20 10134GA D28^^6 (no control type).
    assert!(!c111.is_qc(values(&[("H.12", "P"), ("O.4.1", "T20 10134GA D28")])));
    assert!(c111.is_qc(values(&[("H.12", "q")])));
    assert!(c111.is_qc(values(&[("H.12", "P"), ("O.12", "Q")])));
    assert!(c111.is_qc(values(&[("H.12", "P"), ("O.4.6", "CONTROL1")])));
    assert!(!c111.is_qc(values(&[("O.4.6", "  ")])));
    let prefixed = load(&GOOD.replace("is = [\"Q\"]", "starts_with = [\"QC\"]")).unwrap();
    assert!(prefixed.is_qc(|_| Some("qc-lot-7")));
    assert!(!prefixed.is_qc(|_| Some("Q")));
    assert!(!prefixed.is_qc(|_| None));
}

#[test]
fn status_letters_are_read_as_the_instrument_means_them() {
    let pentra = Profile::builtin("horiba-pentra-xlr").unwrap();
    assert_eq!(pentra.result_status("N"), Some(ResultStatus::CannotBeDone), "Pentra N is 'rejected'");
    assert_eq!(pentra.result_status("D"), Some(ResultStatus::Final), "Pentra D is 'obtained by dilution'");
    assert_eq!(pentra.result_status("W"), Some(ResultStatus::Warning));
    let yumizen = Profile::builtin("horiba-yumizen-h500").unwrap();
    assert_eq!(yumizen.result_status("N"), Some(ResultStatus::NewInformation));
    assert_eq!(yumizen.result_status(" F "), Some(ResultStatus::Final));
    assert_eq!(yumizen.result_status("?"), None);
    let lines = problems(&GOOD.replace("[qc]", "[records.status_codes]\nN = \"rejected\"\n\n[qc]"));
    assert!(lines[0].contains("records.status_codes.N: \"rejected\" is not a standard result status"), "{lines:#?}");
}

#[test]
fn test_codes_are_read_where_each_instrument_puts_them() {
    let fields = |pairs: &'static [(&'static str, &'static str)]| {
        move |p: &AstmPath| pairs.iter().find(|(k, _)| *k == p.to_string()).map(|(_, v)| *v)
    };
    let yumizen = Profile::builtin("horiba-yumizen-h500").unwrap();
    assert_eq!(yumizen.records.test_code(fields(&[("R.3.4", "WBC"), ("R.3.5", "6690-2")])).as_deref(), Some("WBC"));
    // GeneXpert: host test code / analyte / complementary result, empty parts left out.
    let gx = Profile::builtin("cepheid-genexpert").unwrap();
    let main = fields(&[("R.3.2", "MTB-RIF"), ("R.3.4", "Xpert"), ("R.3.7", "MTB"), ("R.3.8", "")]);
    assert_eq!(gx.records.test_code(main).as_deref(), Some("Xpert/MTB"));
    let ct = fields(&[("R.3.4", "Xpert"), ("R.3.7", "SPC"), ("R.3.8", "Ct")]);
    assert_eq!(gx.records.test_code(ct).as_deref(), Some("Xpert/SPC/Ct"));
    assert_eq!(gx.records.value.first(fields(&[("R.4.1", ""), ("R.4.2", "24.7")])), Some("24.7"));
    assert_eq!(gx.records.value.first(fields(&[("R.4.1", "NOT DETECTED")])), Some("NOT DETECTED"));
    // Vitros: the assay number between the dilutions.
    let vitros = Profile::builtin("ortho-vitros-3600").unwrap();
    assert_eq!(vitros.records.test_code(fields(&[("R.3.4", "1.0000+002+1.0")])).as_deref(), Some("002"));
    assert_eq!(vitros.records.test_code(fields(&[("R.3.4", "")])), None);
    // Yumizen's completion time is in R.12.
    let done = yumizen.records.completed_at.as_ref().unwrap();
    assert_eq!(done.first(fields(&[("R.13", ""), ("R.12", "20200407151558")])), Some("20200407151558"));
    // cobas c111 sends the sample id in O.4 and leaves O.3 empty.
    let c111 = Profile::builtin("roche-cobas-c111").unwrap();
    assert_eq!(
        c111.records.specimen_id.first(fields(&[("O.3.1", ""), ("O.4.1", "T20 10134GA D28")])),
        Some("T20 10134GA D28")
    );
}

#[test]
fn files_that_cannot_be_read_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = Profile::from_file(&missing).unwrap_err().to_string();
    assert!(err.contains("nope.toml") && err.contains("no such file") && err.contains("profile = "), "{err}");
    let bad = dir.path().join("my-analyzer.toml");
    std::fs::write(&bad, GOOD.replace("lf_only", "lf_olny")).unwrap();
    let err = Profile::from_file(&bad).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:10:11:", bad.display())), "{err}");
    std::fs::write(&bad, GOOD).unwrap();
    assert_eq!(Profile::from_file(&bad).unwrap().id, "my-analyzer");
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration(" 2m "), Some(Duration::from_secs(120)));
    for bad in ["15", "s", "1.5s", "-1s", "1h", ""] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn numeric_ranges_parse() {
    assert_eq!(numeric_range("3.50 - 10.00"), Some((3.5, 10.0)));
    assert_eq!(numeric_range("3.5-10"), Some((3.5, 10.0)));
    assert_eq!(numeric_range("3.5 to 4.5"), Some((3.5, 4.5)));
    assert_eq!(numeric_range("-2-2"), Some((-2.0, 2.0)));
    for text in ["NEGATIVE", "<5", "to 4.5", "3.5-", ""] {
        assert_eq!(numeric_range(text), None, "{text}");
    }
}

#[test]
fn senders_name_the_instrument_by_a_word_of_h5() {
    let p =
        load(&GOOD.replace("kind = \"chemistry\"", "senders = [\"XL\", \"Analyzer9\"]\nkind = \"chemistry\"")).unwrap();
    assert_eq!(p.senders, ["XL", "Analyzer9"]);
    assert!(p.names_sender("XL-1000^SN123^1.0"), "a word starting with a sender");
    assert!(p.names_sender("Clinic Lab^analyzer9"), "case-insensitive, any component");
    assert!(!p.names_sender("AXL^1"), "a word must start with it");
    assert!(!load(GOOD).unwrap().names_sender("anything"), "no senders: never");
    let lines = problems(&GOOD.replace("kind = \"chemistry\"", "senders = [\"H500\", \" \"]\nkind = \"chemistry\""));
    assert!(lines[0].contains("senders[1]: \" \"") || lines[0].contains("senders[1]: \"\""), "{lines:#?}");
}
