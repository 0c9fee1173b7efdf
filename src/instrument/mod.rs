//! Lab instruments: what outpost knows about each analyzer model (its [`Profile`]: serial
//! defaults, link quirks, where its records put things, its test-code map), the kind-neutral
//! [`ResultSet`] an instrument adapter fills from what an analyzer sent, and turning a result set
//! into an HL7 v2.5.1 ORU^R01 ([`to_oru_r01`]) or spotting critical results in it ([`critical`]).
//!
//! Promises:
//! - Pure: no IO (the built-in profiles are compiled in; [`Profile::from_file`] reads one file
//!   and nothing else), no clocks (callers pass times and control ids in), no tokio, no journal,
//!   and no knowledge of the ASTM protocol core (`src/astm/`), which fills a [`ResultSet`] and
//!   depends on this module, not the other way round.
//! - No PHI in anything meant for logs: the `Debug` output of [`ResultSet`], [`Patient`] and
//!   [`ResultRow`] leaves out names, ids, dates of birth, specimen ids, values and comments; error
//!   messages and [`Critical`] name test codes, fields and counts, never values or patients.
//! - Quality-control results are never turned into patient results: [`to_oru_r01`] refuses a set
//!   marked [`ResultSet::qc`] with [`OruError::QualityControl`].

mod critical;
mod oru;
mod path;
mod profile;

pub use critical::{Critical, CriticalKind, critical};
pub use oru::{Coded, MappingReport, OrderRef, OruContext, OruError, mapping_report, to_oru_r01};
pub use path::AstmPath;
pub use profile::{
    DataBits, FlowControl, Kind, Link, Locator, Parity, Problem, Profile, ProfileError, ProfileProblems, QcCondition,
    QcTest, Quirk, Records, SerialDefaults, StopBits, TestCodePart, TestDef, TestId, Timers,
};

use std::fmt;

/// One specimen's results from one instrument, as the instrument adapter read them (for ASTM:
/// the H record, then one P/O pair and the R and C records under it). Kind-neutral: nothing in
/// here is ASTM syntax; values are plain text with the instrument's delimiters already taken
/// apart and its escapes decoded.
///
/// Times are written as the instrument and HL7 both write them, `YYYYMMDDHHMMSS` (shorter
/// prefixes and a `+hhmm` offset are accepted); a time that is not of that form is left out of
/// the ORU^R01 rather than copied into a date field.
#[derive(Clone, Default, PartialEq)]
pub struct ResultSet {
    /// Who produced the results (ASTM H.5: name and serial, e.g. `H500 906YOXH02459`), for
    /// OBX-18. One plain value: the adapter picks and joins the components it wants.
    pub instrument_id: String,
    /// When the instrument sent the message (H.14), if it said.
    pub message_time: Option<String>,
    /// Quality-control results (the profile's [`QcCondition`]s decide, see [`Profile::is_qc`]).
    /// A QC set is never converted into a patient result message.
    pub qc: bool,
    pub patient: Patient,
    /// The specimen (sample) id the instrument read from the tube's barcode or was given (ASTM
    /// O.3 or O.4, per [`Records::specimen_id`]): how results find their order.
    pub specimen_id: Option<String>,
    /// The specimen type as the instrument names it (ASTM O.16: `BLOOD`, `SERUM`, ...).
    pub specimen_type: Option<String>,
    /// The tests or panels ordered (ASTM O.5 test codes, e.g. `DIF`).
    pub ordered_tests: Vec<String>,
    /// When the specimen was collected (ASTM O.7 or O.8), if known.
    pub collected_at: Option<String>,
    pub results: Vec<ResultRow>,
    /// Comments about the specimen or order as a whole (C records after P or O), in order.
    pub comments: Vec<String>,
}

/// The patient, as far as the instrument knows (often nothing: many analyzers send an empty P
/// record and leave matching to the specimen id).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Patient {
    /// Patient ids in the order the record gives them (ASTM P.3 practice-assigned, P.4
    /// laboratory-assigned, P.5), empty ones left out.
    pub ids: Vec<String>,
    pub name: Option<PersonName>,
    /// `YYYYMMDD` (ASTM P.8).
    pub birth_date: Option<String>,
    pub sex: Option<Sex>,
}

impl Patient {
    /// Whether the instrument said anything at all about the patient.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.name.is_none() && self.birth_date.is_none() && self.sex.is_none()
    }
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct PersonName {
    pub family: String,
    pub given: String,
    pub middle: String,
}

/// Administrative sex (ASTM P.9; HL7 table 0001).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
    Unknown,
}

impl Sex {
    /// ASTM's `M`, `F`, `U` (case ignored); anything else is `None`.
    pub fn from_code(code: &str) -> Option<Sex> {
        match code.trim().to_ascii_uppercase().as_str() {
            "M" => Some(Sex::Male),
            "F" => Some(Sex::Female),
            "U" => Some(Sex::Unknown),
            _ => None,
        }
    }

    pub fn hl7_code(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
            Sex::Unknown => "U",
        }
    }
}

/// One result (ASTM R record) and the comments that followed it.
#[derive(Clone, Default, PartialEq)]
pub struct ResultRow {
    /// The instrument's own code for the test, as [`Records::test_code`] reads it (`WBC`,
    /// `413`, `Xpert/MTB`): the key into the profile's test map.
    pub test_code: String,
    /// The value as sent: a number (`4.55`), a number with a comparator (`<0.5`), or text
    /// (`NOT DETECTED`, `-----`).
    pub value: String,
    /// Units as the instrument wrote them; `None` when the profile does not read units (some
    /// instruments send a unit-system number instead) and the test map's units apply.
    pub units: Option<String>,
    /// The reference range as the instrument sent it (`3.50 - 10.00`), if it did.
    pub reference_range: Option<String>,
    pub flags: Vec<Flag>,
    /// `None` when the instrument sent no status (GeneXpert's analyte sub-results): the status
    /// of the result before it applies, see [`to_oru_r01`].
    pub status: Option<ResultStatus>,
    /// When the instrument completed the test (ASTM R.13, or R.12 for some instruments).
    pub completed_at: Option<String>,
    /// Comments about this result (C records right after its R record), in order.
    pub comments: Vec<String>,
}

/// An abnormal flag (ASTM R.7, LIS2-A2; the same letters as HL7 table 0078).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    /// `L`: below the low normal.
    Low,
    /// `H`: above the high normal.
    High,
    /// `LL`: below the low panic (critical) limit.
    LowLow,
    /// `HH`: above the high panic (critical) limit.
    HighHigh,
    /// `<`: below the instrument's measuring range (off scale low).
    BelowScale,
    /// `>`: above the instrument's measuring range (off scale high).
    AboveScale,
    /// `N`: normal.
    Normal,
    /// `A`: abnormal (for results that have no direction).
    Abnormal,
    /// `AA`: very abnormal.
    VeryAbnormal,
    /// `U`: significant change up.
    Up,
    /// `D`: significant change down.
    Down,
    /// `B`: better.
    Better,
    /// `W`: worse.
    Worse,
    /// Anything else the instrument sent. Not a value of HL7 table 0078, so it is not written to
    /// OBX-8; the ORU^R01 keeps it in a note (NTE) after the result instead.
    Other(String),
}

impl Flag {
    /// Reads one flag as instruments send it (surrounding spaces ignored, letters upper-cased).
    /// `None` for an empty string.
    pub fn from_code(code: &str) -> Option<Flag> {
        let code = code.trim();
        let flag = match code.to_ascii_uppercase().as_str() {
            "" => return None,
            "L" => Flag::Low,
            "H" => Flag::High,
            "LL" => Flag::LowLow,
            "HH" => Flag::HighHigh,
            "<" => Flag::BelowScale,
            ">" => Flag::AboveScale,
            "N" => Flag::Normal,
            "A" => Flag::Abnormal,
            "AA" => Flag::VeryAbnormal,
            "U" => Flag::Up,
            "D" => Flag::Down,
            "B" => Flag::Better,
            "W" => Flag::Worse,
            _ => Flag::Other(code.to_string()),
        };
        Some(flag)
    }

    /// The HL7 table 0078 code (OBX-8); `None` for [`Flag::Other`].
    pub fn hl7_code(&self) -> Option<&'static str> {
        Some(match self {
            Flag::Low => "L",
            Flag::High => "H",
            Flag::LowLow => "LL",
            Flag::HighHigh => "HH",
            Flag::BelowScale => "<",
            Flag::AboveScale => ">",
            Flag::Normal => "N",
            Flag::Abnormal => "A",
            Flag::VeryAbnormal => "AA",
            Flag::Up => "U",
            Flag::Down => "D",
            Flag::Better => "B",
            Flag::Worse => "W",
            Flag::Other(_) => return None,
        })
    }
}

/// A result's status, with the meanings ASTM E1394 / LIS2-A2 give R.9. Instruments that give
/// a letter another meaning say so in their profile (`[records.status_codes]`), and
/// [`Profile::result_status`] reads the letter with that in mind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultStatus {
    /// `F`: final.
    Final,
    /// `P`: preliminary.
    Preliminary,
    /// `C`: a correction of a result sent before.
    Corrected,
    /// `X`: the test cannot be done.
    CannotBeDone,
    /// `I`: in the instrument, result pending.
    Pending,
    /// `S`: partial result.
    Partial,
    /// `M`: a MIC level (microbiology).
    Mic,
    /// `R`: a result sent before, sent again.
    Retransmitted,
    /// `N`: new information about a result sent before.
    NewInformation,
    /// `Q`: the answer to a query.
    QueryResponse,
    /// `V`: verified (approved) by the operator.
    Verified,
    /// `W`: warning: the result's validity is questionable (instrument alarms).
    Warning,
}

impl ResultStatus {
    pub const ALL: [ResultStatus; 12] = [
        ResultStatus::Final,
        ResultStatus::Preliminary,
        ResultStatus::Corrected,
        ResultStatus::CannotBeDone,
        ResultStatus::Pending,
        ResultStatus::Partial,
        ResultStatus::Mic,
        ResultStatus::Retransmitted,
        ResultStatus::NewInformation,
        ResultStatus::QueryResponse,
        ResultStatus::Verified,
        ResultStatus::Warning,
    ];

    /// The ASTM letter.
    pub fn code(self) -> &'static str {
        match self {
            ResultStatus::Final => "F",
            ResultStatus::Preliminary => "P",
            ResultStatus::Corrected => "C",
            ResultStatus::CannotBeDone => "X",
            ResultStatus::Pending => "I",
            ResultStatus::Partial => "S",
            ResultStatus::Mic => "M",
            ResultStatus::Retransmitted => "R",
            ResultStatus::NewInformation => "N",
            ResultStatus::QueryResponse => "Q",
            ResultStatus::Verified => "V",
            ResultStatus::Warning => "W",
        }
    }

    /// Reads an ASTM letter with its standard meaning (case and spaces ignored).
    pub fn from_code(code: &str) -> Option<ResultStatus> {
        let code = code.trim();
        ResultStatus::ALL.into_iter().find(|s| s.code().eq_ignore_ascii_case(code))
    }

    /// The HL7 observation result status (OBX-11, table 0085). Results that are final as far as
    /// the instrument is concerned (final, verified, a MIC, a retransmission, a query's answer)
    /// are `F`; a correction or new information about an earlier result is `C`; preliminary,
    /// partial and *questionable* (`W`: the instrument raised alarms and a person must look) are
    /// `P`, so that a receiving system never files them as final; pending is `I`, cannot be done
    /// is `X`.
    pub fn hl7_code(self) -> &'static str {
        match self {
            ResultStatus::Final
            | ResultStatus::Verified
            | ResultStatus::Mic
            | ResultStatus::Retransmitted
            | ResultStatus::QueryResponse => "F",
            ResultStatus::Corrected | ResultStatus::NewInformation => "C",
            ResultStatus::Preliminary | ResultStatus::Partial | ResultStatus::Warning => "P",
            ResultStatus::Pending => "I",
            ResultStatus::CannotBeDone => "X",
        }
    }
}

impl fmt::Debug for ResultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultSet")
            .field("instrument_id", &self.instrument_id)
            .field("qc", &self.qc)
            .field("patient", &self.patient)
            .field("has_specimen_id", &self.specimen_id.is_some())
            .field("ordered_tests", &self.ordered_tests)
            .field("results", &self.results)
            .field("comments", &self.comments.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patient")
            .field("ids", &self.ids.len())
            .field("has_name", &self.name.is_some())
            .field("has_birth_date", &self.birth_date.is_some())
            .field("has_sex", &self.sex.is_some())
            .finish()
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(..)")
    }
}

impl fmt::Debug for ResultRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultRow")
            .field("test_code", &self.test_code)
            .field("status", &self.status)
            .field("flags", &self.flags.len())
            .field("comments", &self.comments.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_and_map_to_table_0078() {
        for code in ["L", "H", "LL", "HH", "<", ">", "N", "A", "AA", "U", "D", "B", "W"] {
            let flag = Flag::from_code(code).unwrap();
            assert_eq!(flag.hl7_code(), Some(code), "{code}");
        }
        assert_eq!(Flag::from_code(" hh "), Some(Flag::HighHigh));
        assert_eq!(Flag::from_code(""), None);
        assert_eq!(Flag::from_code("PATHO"), Some(Flag::Other("PATHO".into())));
        assert_eq!(Flag::Other("x".into()).hl7_code(), None);
    }

    #[test]
    fn statuses_read_and_map_to_table_0085() {
        for status in ResultStatus::ALL {
            assert_eq!(ResultStatus::from_code(status.code()), Some(status));
        }
        assert_eq!(ResultStatus::from_code("f"), Some(ResultStatus::Final));
        assert_eq!(ResultStatus::from_code("Z"), None);
        assert_eq!(ResultStatus::Warning.hl7_code(), "P");
        assert_eq!(ResultStatus::NewInformation.hl7_code(), "C");
        assert_eq!(ResultStatus::CannotBeDone.hl7_code(), "X");
    }

    /// ARCHITECTURE.md: this module is pure and independent of the ASTM core.
    #[test]
    fn imports_no_runtime_journal_or_astm_core() {
        fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        rust_files(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/instrument"), &mut files);
        assert!(files.len() >= 5);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for forbidden in ["tokio", "crate::journal", "crate::astm", "super::super::astm", "rusqlite"] {
                let used = text.lines().any(|l| {
                    let l = l.trim_start();
                    (l.starts_with("use ") || l.starts_with("pub use ")) && l.contains(forbidden)
                });
                assert!(!used, "{} imports {forbidden}", file.display());
            }
        }
    }

    #[test]
    fn debug_output_carries_no_phi() {
        let set = ResultSet {
            instrument_id: "H500".into(),
            patient: Patient {
                ids: vec!["PAT-4711".into()],
                name: Some(PersonName { family: "Mohale".into(), given: "Rita".into(), middle: String::new() }),
                birth_date: Some("19771201".into()),
                sex: Some(Sex::Female),
            },
            specimen_id: Some("S1234".into()),
            results: vec![ResultRow {
                test_code: "WBC".into(),
                value: "8.5".into(),
                comments: vec!["seen by Dr Who".into()],
                ..ResultRow::default()
            }],
            comments: vec!["Id# 118176".into()],
            ..ResultSet::default()
        };
        let debug = format!("{set:?}");
        for secret in ["PAT-4711", "Mohale", "Rita", "19771201", "S1234", "8.5", "Dr Who", "118176"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("WBC"));
    }
}
