//! Instrument profiles: one TOML file per analyzer model (`hardware/instruments/*.toml`, whose
//! README describes the format for a tech adding one). The six built-in profiles are compiled
//! into the binary, so `profile = "horiba-yumizen-h500"` works on a gateway without the source
//! tree; a profile can also be read from a file (`profile_file`).
//!
//! Two steps, as for the config: serde reads the text into raw structs that keep the place of
//! every value that is checked further (`toml::Spanned`), with `deny_unknown_fields` so a
//! misspelt key is an error; then [`validate`] checks every value and reports *every* problem at
//! once, each with its line, column and key (`tests."NEU#".critical_low`). A TOML syntax or type
//! error stops at the first one, like the config's.
//!
//! Pure but for [`Profile::from_file`], which reads the one file it is given.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use super::ResultStatus;
use super::path::AstmPath;

/// The built-in profiles: name (the file's stem) and text.
const BUILTIN: [(&str, &str); 6] = [
    ("horiba-yumizen-h500", include_str!("../../hardware/instruments/horiba-yumizen-h500.toml")),
    ("horiba-pentra-xlr", include_str!("../../hardware/instruments/horiba-pentra-xlr.toml")),
    ("roche-cobas-c111", include_str!("../../hardware/instruments/roche-cobas-c111.toml")),
    ("erba-xl-1000", include_str!("../../hardware/instruments/erba-xl-1000.toml")),
    ("ortho-vitros-3600", include_str!("../../hardware/instruments/ortho-vitros-3600.toml")),
    ("cepheid-genexpert", include_str!("../../hardware/instruments/cepheid-genexpert.toml")),
];

/// What outpost knows about one analyzer model. Built only by [`Profile::builtin`],
/// [`Profile::from_file`] or [`Profile::from_toml`], so every value in it has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The built-in name or the file's stem: `horiba-yumizen-h500`.
    pub id: String,
    /// For people: `Horiba Yumizen H500`.
    pub name: String,
    pub description: String,
    /// Words that name this instrument in the sender field (H.5) of its H record: `outpost
    /// probe` suggests the profile when a component of H.5 starts with one (case-insensitive).
    /// Empty: the instrument's H record does not tell it apart.
    pub senders: Vec<String>,
    pub kind: Kind,
    /// The HL7 coding system for this instrument's own test codes (`99YH500`): OBX-3 of a test
    /// the map does not know, and of map entries with a local `code` but no `system`.
    pub coding_system: String,
    /// Line settings the source config starts from (and may override). `None`: the profile
    /// gives none, the source config must.
    pub serial: Option<SerialDefaults>,
    pub link: Link,
    pub records: Records,
    /// How the instrument marks quality-control results: a set is QC when any condition holds.
    /// Never empty.
    pub qc: Vec<QcCondition>,
    /// The test-code map, keyed by the instrument's own code (as [`Records::test_code`] reads
    /// it).
    pub tests: BTreeMap<String, TestDef>,
}

/// What sort of analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hematology,
    Chemistry,
    Immunoassay,
    Molecular,
    Coagulation,
    Urinalysis,
    /// Anything else (blood gas, point-of-care, ...).
    Other,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Hematology,
        Kind::Chemistry,
        Kind::Immunoassay,
        Kind::Molecular,
        Kind::Coagulation,
        Kind::Urinalysis,
        Kind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hematology => "hematology",
            Kind::Chemistry => "chemistry",
            Kind::Immunoassay => "immunoassay",
            Kind::Molecular => "molecular",
            Kind::Coagulation => "coagulation",
            Kind::Urinalysis => "urinalysis",
            Kind::Other => "other",
        }
    }
}

/// Serial line settings (the same words the source config uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialDefaults {
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    pub flow_control: FlowControl,
}

pub use crate::serial_line::{DataBits, FlowControl, Parity, StopBits};

const BAUD_RATES: [u32; 9] = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400];

/// How the instrument's link layer departs from E1381 / LIS01-A2, and timers it needs changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub quirks: Vec<Quirk>,
    pub timers: Timers,
}

/// A known departure from E1381 framing (`<STX> FN text <ETX|ETB> C1 C2 <CR> <LF>`) that the
/// link layer must accept (and, sending to this instrument, produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quirk {
    /// `no_frame_numbers`: frames carry no frame number digit after STX.
    NoFrameNumbers,
    /// `lf_only`: a frame ends with the checksum then LF, without the CR.
    LfOnly,
    /// `cr_cr`: a frame ends with the checksum then CR CR instead of CR LF.
    CrCr,
    /// `no_cr_before_etx`: the last record in a frame is not ended by CR before ETX/ETB.
    NoCrBeforeEtx,
    /// `no_etx`: the instrument never sends ETX: every frame ends ETB, and its message ends at
    /// EOT.
    NoEtx,
    /// `long_frames`: frames of more than 240 characters of text (up to 64 KiB) are accepted.
    LongFrames,
    /// `send_packed`: messages to the instrument go as one E1381 message (records run together,
    /// cut every 240 characters), not one per record.
    SendPacked,
}

impl Quirk {
    pub const ALL: [Quirk; 7] = [
        Quirk::NoFrameNumbers,
        Quirk::LfOnly,
        Quirk::CrCr,
        Quirk::NoCrBeforeEtx,
        Quirk::NoEtx,
        Quirk::LongFrames,
        Quirk::SendPacked,
    ];

    /// The name a profile writes in `[link] quirks`.
    pub fn name(self) -> &'static str {
        match self {
            Quirk::NoFrameNumbers => "no_frame_numbers",
            Quirk::LfOnly => "lf_only",
            Quirk::CrCr => "cr_cr",
            Quirk::NoCrBeforeEtx => "no_cr_before_etx",
            Quirk::NoEtx => "no_etx",
            Quirk::LongFrames => "long_frames",
            Quirk::SendPacked => "send_packed",
        }
    }

    pub fn from_name(name: &str) -> Option<Quirk> {
        Quirk::ALL.into_iter().find(|q| q.name() == name)
    }
}

/// Timer overrides for the link layer; `None` keeps the E1381 value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timers {
    /// How long a sender waits for the answer to ENQ or to a frame (E1381: 15 s).
    pub reply_timeout: Option<Duration>,
    /// How long a receiver waits for the next frame or EOT (E1381: 30 s).
    pub receive_timeout: Option<Duration>,
    /// How long a sender waits after a busy answer (NAK to ENQ) before trying again (E1381:
    /// 10 s).
    pub busy_wait: Option<Duration>,
    /// How long the host waits after losing ENQ contention (E1381: 20 s).
    pub contention_wait: Option<Duration>,
}

/// Where the instrument puts things in its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    /// The instrument's test code. Several paths are joined by `/` (non-empty parts only), e.g.
    /// GeneXpert's host test code, analyte and complementary result: `Xpert/SPC/Ct`.
    pub test_code: Locator,
    /// Part of the code field to keep (Vitros writes `dilution+test+dilution` in R.3.4).
    pub test_code_part: Option<TestCodePart>,
    /// The value: the first non-empty of these.
    pub value: Locator,
    /// `None`: the instrument sends no units (or a unit-system number): the map's units apply.
    pub units: Option<AstmPath>,
    pub reference_range: Option<AstmPath>,
    pub flags: Option<AstmPath>,
    pub status: Option<AstmPath>,
    /// When the test was completed: the first non-empty of these.
    pub completed_at: Option<Locator>,
    /// The specimen id: the first non-empty of these (O.3 specimen id, O.4 instrument specimen
    /// id).
    pub specimen_id: Locator,
    /// Status letters this instrument uses with another meaning than the standard's, mapped to
    /// the standard letter meant (Pentra XLR: `N` is "rejected", i.e. `X`).
    pub status_codes: BTreeMap<String, ResultStatus>,
}

/// One or more record paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    pub paths: Vec<AstmPath>,
}

impl Locator {
    /// The first path whose value is non-empty (after trimming spaces), and that value.
    pub fn first<'v>(&self, value: impl Fn(&AstmPath) -> Option<&'v str>) -> Option<&'v str> {
        self.paths.iter().filter_map(|p| value(p).map(str::trim)).find(|v| !v.is_empty())
    }
}

/// `{ separator = "+", number = 2 }`: the second `+`-separated part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCodePart {
    pub separator: String,
    /// 1-based.
    pub number: usize,
}

/// One way the instrument marks QC results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QcCondition {
    pub field: AstmPath,
    pub test: QcTest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QcTest {
    /// The field is one of these (case ignored).
    Is(Vec<String>),
    /// The field starts with one of these (case ignored).
    StartsWith(Vec<String>),
    /// The field is not empty.
    NotEmpty,
}

/// One entry of the test-code map.
#[derive(Debug, Clone, PartialEq)]
pub struct TestDef {
    pub id: TestId,
    /// For OBX-3.2.
    pub name: String,
    /// Units written to OBX-6, UCUM where UCUM has them (`10*3/uL`).
    pub units: Option<String>,
    /// The units as this instrument writes them when they differ from `units` (`10E3/uL`).
    pub instrument_units: Option<String>,
    /// OBX-7 when the instrument sends no range.
    pub reference_range: Option<String>,
    /// A numeric value below this is critical (in `units`).
    pub critical_low: Option<f64>,
    /// A numeric value above this is critical (in `units`).
    pub critical_high: Option<f64>,
}

/// The code a test is reported under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestId {
    /// A LOINC code (`6690-2`), check digit verified.
    Loinc(String),
    /// A local code in a local coding system (`99YH500`).
    Local { code: String, system: String },
}

impl TestId {
    /// (code, coding system) for HL7 CWE.1 and CWE.3.
    pub fn code_and_system(&self) -> (&str, &str) {
        match self {
            TestId::Loinc(code) => (code, "LN"),
            TestId::Local { code, system } => (code, system),
        }
    }
}

/// Where E1394 itself puts things, for an instrument with no profile.
const STANDARD: &str = r#"
name = "ASTM E1394 (standard positions)"
description = "no instrument profile: the standard's field positions, no test-code map"
kind = "other"
coding_system = "99ASTM"

[records]
test_code = "R.3.4"
value = "R.4"
units = "R.5"
reference_range = "R.6"
flags = "R.7"
status = "R.9"
completed_at = "R.13"
specimen_id = ["O.3.1", "O.4.1"]

[qc]
when = [
    { field = "H.12", is = ["Q", "T", "D"] },
    { field = "O.12", is = ["Q"] },
]
"#;

impl Profile {
    /// The standard's field positions and QC markers, with no test-code map: how an
    /// instrument without a profile is read.
    pub fn standard() -> &'static Profile {
        static STANDARD_PROFILE: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
        STANDARD_PROFILE.get_or_init(|| {
            match Profile::from_toml(STANDARD, "astm-standard", "the standard positions (built in)") {
                Ok(p) => p,
                // The text is a constant a test reads; it cannot fail at run time.
                Err(e) => unreachable!("the built-in standard profile does not read: {e}"),
            }
        })
    }

    /// Whether this instrument's H.5 (the sender, components joined by `^`) names this
    /// profile's instrument: a component, or a word of one, starts with one of [`Profile::senders`].
    pub fn names_sender(&self, h5: &str) -> bool {
        let words: Vec<String> = h5.split(['^', ' ', '/']).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        self.senders.iter().map(|s| s.to_lowercase()).any(|s| words.iter().any(|w| w.starts_with(&s)))
    }

    /// The names of the built-in profiles.
    pub fn names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(name, _)| *name).collect()
    }

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
        match BUILTIN.iter().find(|(n, _)| *n == name.trim()) {
            Some((name, text)) => Profile::from_toml(text, name, &format!("{name} (built in)")),
            None => Err(ProfileError::UnknownBuiltin {
                name: name.to_string(),
                suggestion: suggest(name, &Profile::names()).map(str::to_string),
                known: Profile::names().join(", "),
            }),
        }
    }

    /// A profile from a file; its id is the file's stem.
    pub fn from_file(path: &Path) -> Result<Profile, ProfileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "no such file; check the path (a built-in profile is chosen with profile = \"name\", not \
                     profile_file)"
                        .to_string()
                }
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied; make it readable by the user outpost runs as".to_string()
                }
                std::io::ErrorKind::InvalidData => "it is not UTF-8 text; save it as UTF-8".to_string(),
                _ => e.to_string(),
            };
            ProfileError::Unreadable { path: shown.clone(), reason }
        })?;
        let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Profile::from_toml(&text, &id, &shown)
    }

    /// A profile from its text. `id` becomes [`Profile::id`]; `origin` names the text in
    /// errors.
    pub fn from_toml(text: &str, id: &str, origin: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let (line, column) = line_col(text, span.start);
            let message = format!("not a valid profile: {}", e.message().trim().replace('\n', " "));
            ProfileError::Invalid(ProfileProblems {
                origin: origin.to_string(),
                problems: vec![Problem { line, column, key: String::new(), message }],
            })
        })?;
        let mut ck = Checker { text, problems: Vec::new() };
        let profile = validate(&mut ck, raw, id);
        match profile {
            Some(profile) if ck.problems.is_empty() => Ok(profile),
            _ => {
                if ck.problems.is_empty() {
                    ck.report(
                        &(0..0),
                        "",
                        "the profile was refused but no reason was recorded; this is a bug in outpost, please \
                         report it with the profile"
                            .into(),
                    );
                }
                ck.problems.sort_by_key(|p| (p.line, p.column));
                Err(ProfileError::Invalid(ProfileProblems { origin: origin.to_string(), problems: ck.problems }))
            }
        }
    }

    /// The map's entry for an instrument test code.
    pub fn test(&self, code: &str) -> Option<&TestDef> {
        self.tests.get(code)
    }

    pub fn has_quirk(&self, quirk: Quirk) -> bool {
        self.link.quirks.contains(&quirk)
    }

    /// Reads an R.9 status letter as this instrument means it.
    pub fn result_status(&self, code: &str) -> Option<ResultStatus> {
        let code = code.trim();
        match self.records.status_codes.get(code) {
            Some(status) => Some(*status),
            None => ResultStatus::from_code(code),
        }
    }

    /// Whether a message (H, P, O records) is quality control: `value` gives the text at a path
    /// (unescaped, the first repetition), `None` where there is nothing.
    pub fn is_qc<'v>(&self, value: impl Fn(&AstmPath) -> Option<&'v str>) -> bool {
        self.qc.iter().any(|c| {
            let text = value(&c.field).unwrap_or_default().trim();
            match &c.test {
                QcTest::Is(values) => values.iter().any(|v| v.eq_ignore_ascii_case(text)),
                QcTest::StartsWith(prefixes) => {
                    prefixes.iter().any(|p| text.get(..p.len()).is_some_and(|head| head.eq_ignore_ascii_case(p)))
                }
                QcTest::NotEmpty => !text.is_empty(),
            }
        })
    }
}

impl Records {
    /// The instrument's test code from an R record: the non-empty values at the `test_code`
    /// paths joined by `/`, then the `test_code_part` of that if the profile says. `None` when
    /// nothing is left.
    pub fn test_code<'v>(&self, value: impl Fn(&AstmPath) -> Option<&'v str>) -> Option<String> {
        let parts: Vec<&str> =
            self.test_code.paths.iter().filter_map(|p| value(p).map(str::trim)).filter(|v| !v.is_empty()).collect();
        let joined = parts.join("/");
        let code = match &self.test_code_part {
            Some(part) => joined.split(part.separator.as_str()).nth(part.number - 1).unwrap_or_default().trim(),
            None => joined.as_str(),
        };
        (!code.is_empty()).then(|| code.to_string())
    }
}

/// Why a profile could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "there is no built-in instrument profile {name:?}{}; the built-in profiles are: {known}. For another \
         instrument, write a profile file (see hardware/instruments/README.md) and give it with profile_file",
        did_you_mean(.suggestion)
    )]
    UnknownBuiltin { name: String, suggestion: Option<String>, known: String },
    #[error("cannot read instrument profile {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// Every problem found in the text.
    #[error("{0}")]
    Invalid(ProfileProblems),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default()
}

/// Every problem in one profile text, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileProblems {
    /// The file (or `name (built in)`).
    pub origin: String,
    pub problems: Vec<Problem>,
}

/// One problem, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; 0 when there is no place.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// `records.value`, `tests."NEU#".loinc`; empty for syntax errors.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// One problem per line: `{origin}:{line}:{column}: {key}: {message}`.
impl fmt::Display for ProfileProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", self.origin)?;
            if p.line > 0 {
                write!(f, ":{}:{}", p.line, p.column)?;
            }
            f.write_str(": ")?;
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The raw shape, as serde reads it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    senders: Vec<Spanned<String>>,
    kind: Spanned<String>,
    coding_system: Spanned<String>,
    serial: Option<RawSerial>,
    #[serde(default)]
    link: RawLink,
    records: RawRecords,
    qc: Option<RawQc>,
    #[serde(default)]
    tests: BTreeMap<String, Spanned<RawTest>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSerial {
    baud: Spanned<i64>,
    data_bits: Option<Spanned<i64>>,
    parity: Option<Spanned<String>>,
    stop_bits: Option<Spanned<i64>>,
    flow_control: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLink {
    #[serde(default)]
    quirks: Vec<Spanned<String>>,
    reply_timeout: Option<Spanned<String>>,
    receive_timeout: Option<Spanned<String>>,
    busy_wait: Option<Spanned<String>>,
    contention_wait: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecords {
    test_code: Spanned<Paths>,
    test_code_part: Option<Spanned<RawPart>>,
    value: Spanned<Paths>,
    units: Option<Spanned<String>>,
    reference_range: Option<Spanned<String>>,
    flags: Option<Spanned<String>>,
    status: Option<Spanned<String>>,
    completed_at: Option<Spanned<Paths>>,
    specimen_id: Spanned<Paths>,
    #[serde(default)]
    status_codes: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    separator: String,
    number: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQc {
    when: Spanned<Vec<Spanned<RawQcCondition>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQcCondition {
    field: Spanned<String>,
    is: Option<Vec<String>>,
    starts_with: Option<Vec<String>>,
    not_empty: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    loinc: Option<Spanned<String>>,
    code: Option<Spanned<String>>,
    system: Option<Spanned<String>>,
    name: Spanned<String>,
    units: Option<Spanned<String>>,
    instrument_units: Option<Spanned<String>>,
    reference_range: Option<Spanned<String>>,
    critical_low: Option<Spanned<f64>>,
    critical_high: Option<Spanned<f64>>,
}

/// A record path or a list of them.
struct Paths(Vec<String>);

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathsVisitor;
        impl<'de> Visitor<'de> for PathsVisitor {
            type Value = Paths;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a record path such as \"R.4\", or a list of them such as [\"R.13\", \"R.12\"]")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Paths, E> {
                Ok(Paths(vec![v.to_string()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Paths, A::Error> {
                let mut paths = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    paths.push(p);
                }
                Ok(Paths(paths))
            }
        }
        deserializer.deserialize_any(PathsVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: raw → typed, every problem reported.

struct Checker<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, span: &Range<usize>, key: &str, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { line, column, key: key.to_string(), message });
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// `tests.WBC`, `tests."NEU#"`: a key that is not a bare TOML key is quoted.
fn key_path(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match bare {
        true => format!("{parent}.{key}"),
        false => format!("{parent}.{key:?}"),
    }
}

fn validate(ck: &mut Checker, raw: RawProfile, id: &str) -> Option<Profile> {
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        ck.report(&raw.name.span(), "name", "the name is empty; give the instrument's make and model".into());
    }
    let kind = Kind::ALL.into_iter().find(|k| k.as_str() == raw.kind.get_ref().trim());
    if kind.is_none() {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        ck.report(
            &raw.kind.span(),
            "kind",
            format!(
                "{:?} is not a kind of analyzer outpost knows; use one of: {}",
                raw.kind.get_ref(),
                known.join(", ")
            ),
        );
    }
    let coding_system = raw.coding_system.get_ref().trim().to_string();
    if !is_local_system(&coding_system) {
        ck.report(&raw.coding_system.span(), "coding_system", local_system_advice(&coding_system));
    }
    let mut senders = Vec::new();
    for (i, word) in raw.senders.iter().enumerate() {
        let w = word.get_ref().trim();
        if w.len() < 2 {
            ck.report(
                &word.span(),
                &format!("senders[{i}]"),
                format!("{w:?} is too short to name an instrument; give a word of its H.5 such as \"H500\""),
            );
        } else {
            senders.push(w.to_string());
        }
    }
    let serial = raw.serial.map(|s| serial(ck, s));
    let link = link(ck, raw.link);
    let records = records(ck, raw.records);
    let qc = qc(ck, raw.qc);
    let mut tests = BTreeMap::new();
    for (code, test) in raw.tests {
        if let Some(def) = test_def(ck, &code, test, &coding_system) {
            tests.insert(code, def);
        }
    }
    Some(Profile {
        id: id.to_string(),
        name,
        description: raw.description.trim().to_string(),
        senders,
        kind: kind?,
        coding_system,
        serial: serial.flatten(),
        link: link?,
        records: records?,
        qc: qc?,
        tests,
    })
}

/// HL7's convention for local coding systems: `99` then letters or digits; CWE.3 holds 12.
fn is_local_system(s: &str) -> bool {
    s.len() >= 3 && s.len() <= 12 && s.starts_with("99") && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn local_system_advice(s: &str) -> String {
    format!(
        "{s:?} is not a local coding system name: HL7 local systems start with 99, then letters or digits, at \
         most 12 characters in all, e.g. \"99YH500\""
    )
}

fn serial(ck: &mut Checker, raw: RawSerial) -> Option<SerialDefaults> {
    let baud = u32::try_from(*raw.baud.get_ref()).ok().filter(|b| BAUD_RATES.contains(b));
    if baud.is_none() {
        let rates: Vec<String> = BAUD_RATES.iter().map(u32::to_string).collect();
        ck.report(
            &raw.baud.span(),
            "serial.baud",
            format!("{} is not a baud rate serial ports use; use one of: {}", raw.baud.get_ref(), rates.join(", ")),
        );
    }
    let data_bits = match raw.data_bits.as_ref().map(|v| (*v.get_ref(), v.span())) {
        None | Some((8, _)) => Some(DataBits::Eight),
        Some((7, _)) => Some(DataBits::Seven),
        Some((n, span)) => {
            ck.report(&span, "serial.data_bits", format!("{n} data bits: analyzers use 7 or 8"));
            None
        }
    };
    let stop_bits = match raw.stop_bits.as_ref().map(|v| (*v.get_ref(), v.span())) {
        None | Some((1, _)) => Some(StopBits::One),
        Some((2, _)) => Some(StopBits::Two),
        Some((n, span)) => {
            ck.report(&span, "serial.stop_bits", format!("{n} stop bits: use 1 or 2"));
            None
        }
    };
    let parity = match raw.parity.as_ref().map(|v| (v.get_ref().trim(), v.span())) {
        None | Some(("none", _)) => Some(Parity::None),
        Some(("even", _)) => Some(Parity::Even),
        Some(("odd", _)) => Some(Parity::Odd),
        Some((other, span)) => {
            ck.report(&span, "serial.parity", format!("{other:?} is not a parity; use \"none\", \"even\" or \"odd\""));
            None
        }
    };
    let flow_control = match raw.flow_control.as_ref().map(|v| (v.get_ref().trim(), v.span())) {
        None | Some(("none", _)) => Some(FlowControl::None),
        Some(("rts_cts", _)) => Some(FlowControl::RtsCts),
        Some(("xon_xoff", _)) => Some(FlowControl::XonXoff),
        Some((other, span)) => {
            ck.report(
                &span,
                "serial.flow_control",
                format!("{other:?} is not a flow control; use \"none\", \"rts_cts\" (hardware) or \"xon_xoff\""),
            );
            None
        }
    };
    Some(SerialDefaults {
        baud: baud?,
        data_bits: data_bits?,
        parity: parity?,
        stop_bits: stop_bits?,
        flow_control: flow_control?,
    })
}

fn link(ck: &mut Checker, raw: RawLink) -> Option<Link> {
    let mut quirks = Vec::new();
    let mut ok = true;
    for (i, q) in raw.quirks.iter().enumerate() {
        let key = format!("link.quirks[{i}]");
        match Quirk::from_name(q.get_ref().trim()) {
            Some(quirk) if quirks.contains(&quirk) => {
                ck.report(&q.span(), &key, format!("{:?} is listed twice; keep one", quirk.name()));
            }
            Some(quirk) => quirks.push(quirk),
            None => {
                ok = false;
                let names: Vec<&str> = Quirk::ALL.iter().map(|q| q.name()).collect();
                let hint = did_you_mean(&suggest(q.get_ref(), &names).map(str::to_string));
                ck.report(
                    &q.span(),
                    &key,
                    format!("unknown quirk {:?}{hint}; the quirks are: {}", q.get_ref(), names.join(", ")),
                );
            }
        }
    }
    if quirks.contains(&Quirk::LfOnly) && quirks.contains(&Quirk::CrCr) {
        let span = raw.quirks.first().map(|q| q.span()).unwrap_or(0..0);
        ck.report(
            &span,
            "link.quirks",
            "\"lf_only\" and \"cr_cr\" both say how a frame ends and contradict each other; keep the one the \
             instrument does"
                .into(),
        );
        ok = false;
    }
    let mut timer = |value: &Option<Spanned<String>>, key: &str| -> Option<Option<Duration>> {
        let Some(v) = value else { return Some(None) };
        match parse_duration(v.get_ref()) {
            Some(d) if !d.is_zero() && d <= Duration::from_secs(600) => Some(Some(d)),
            _ => {
                ck.report(
                    &v.span(),
                    &format!("link.{key}"),
                    format!(
                        "{:?} is not a usable timer; write a whole number and a unit, from \"1ms\" to \"10m\", e.g. \
                         \"15s\" or \"500ms\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    };
    let reply_timeout = timer(&raw.reply_timeout, "reply_timeout");
    let receive_timeout = timer(&raw.receive_timeout, "receive_timeout");
    let busy_wait = timer(&raw.busy_wait, "busy_wait");
    let contention_wait = timer(&raw.contention_wait, "contention_wait");
    let timers = Timers {
        reply_timeout: reply_timeout?,
        receive_timeout: receive_timeout?,
        busy_wait: busy_wait?,
        contention_wait: contention_wait?,
    };
    ok.then_some(Link { quirks, timers })
}

/// `"15s"`, `"500ms"`, `"2m"`.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = text[..digits].parse().ok()?;
    match text[digits..].trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

/// Reads one path for `key`, which must be in a record of type `record`.
fn one_path(ck: &mut Checker, raw: &Spanned<String>, key: &str, record: char) -> Option<AstmPath> {
    match raw.get_ref().parse::<AstmPath>() {
        Ok(path) if path.record == record => Some(path),
        Ok(path) => {
            ck.report(
                &raw.span(),
                key,
                format!(
                    "{path} is in a {} record, but this is read from the {record} record; write {record}.n",
                    path.record
                ),
            );
            None
        }
        Err(why) => {
            ck.report(&raw.span(), key, why);
            None
        }
    }
}

fn locator(ck: &mut Checker, raw: &Spanned<Paths>, key: &str, record: char) -> Option<Locator> {
    if raw.get_ref().0.is_empty() {
        ck.report(&raw.span(), key, format!("the list is empty; give at least one path, e.g. \"{record}.4\""));
        return None;
    }
    let mut paths = Vec::new();
    let mut ok = true;
    for p in &raw.get_ref().0 {
        let spanned = Spanned::new(raw.span(), p.clone());
        match one_path(ck, &spanned, key, record) {
            Some(path) => paths.push(path),
            None => ok = false,
        }
    }
    ok.then_some(Locator { paths })
}

fn records(ck: &mut Checker, raw: RawRecords) -> Option<Records> {
    let test_code = locator(ck, &raw.test_code, "records.test_code", 'R');
    let test_code_part = match &raw.test_code_part {
        None => Some(None),
        Some(part) => {
            let p = part.get_ref();
            match usize::try_from(p.number) {
                Ok(number) if number >= 1 && !p.separator.is_empty() => {
                    Some(Some(TestCodePart { separator: p.separator.clone(), number }))
                }
                _ => {
                    ck.report(
                        &part.span(),
                        "records.test_code_part",
                        "give a separator that is not empty and a part number from 1, e.g. { separator = \"+\", \
                         number = 2 }"
                            .into(),
                    );
                    None
                }
            }
        }
    };
    let value = locator(ck, &raw.value, "records.value", 'R');
    let mut optional = |raw: &Option<Spanned<String>>, key: &str| -> Option<Option<AstmPath>> {
        match raw {
            None => Some(None),
            Some(p) => one_path(ck, p, key, 'R').map(Some),
        }
    };
    let units = optional(&raw.units, "records.units");
    let reference_range = optional(&raw.reference_range, "records.reference_range");
    let flags = optional(&raw.flags, "records.flags");
    let status = optional(&raw.status, "records.status");
    let completed_at = match &raw.completed_at {
        None => Some(None),
        Some(p) => locator(ck, p, "records.completed_at", 'R').map(Some),
    };
    let specimen_id = locator(ck, &raw.specimen_id, "records.specimen_id", 'O');
    let mut status_codes = BTreeMap::new();
    let mut codes_ok = true;
    for (letter, meaning) in &raw.status_codes {
        let key = key_path("records.status_codes", letter);
        match ResultStatus::from_code(meaning.get_ref()) {
            Some(status) if !letter.trim().is_empty() => {
                status_codes.insert(letter.trim().to_string(), status);
            }
            _ => {
                codes_ok = false;
                let letters: Vec<&str> = ResultStatus::ALL.iter().map(|s| s.code()).collect();
                ck.report(
                    &meaning.span(),
                    &key,
                    format!(
                        "{:?} is not a standard result status; map the instrument's letter to one of: {}",
                        meaning.get_ref(),
                        letters.join(", ")
                    ),
                );
            }
        }
    }
    Some(Records {
        test_code: test_code?,
        test_code_part: test_code_part?,
        value: value?,
        units: units?,
        reference_range: reference_range?,
        flags: flags?,
        status: status?,
        completed_at: completed_at?,
        specimen_id: specimen_id?,
        status_codes: codes_ok.then_some(status_codes)?,
    })
}

fn qc(ck: &mut Checker, raw: Option<RawQc>) -> Option<Vec<QcCondition>> {
    const ADVICE: &str = "say how the instrument marks quality-control results, so that they never reach a \
                          patient's record; the standard ways are [qc] when = [{ field = \"H.12\", is = [\"Q\"] }, \
                          { field = \"O.12\", is = [\"Q\"] }]";
    let Some(raw) = raw else {
        ck.report(&(0..0), "qc", format!("the [qc] section is missing; {ADVICE}"));
        return None;
    };
    if raw.when.get_ref().is_empty() {
        ck.report(&raw.when.span(), "qc.when", format!("the list is empty; {ADVICE}"));
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, cond) in raw.when.get_ref().iter().enumerate() {
        let key = format!("qc.when[{i}]");
        let c = cond.get_ref();
        let field = match c.field.get_ref().parse::<AstmPath>() {
            Ok(path) => Some(path),
            Err(why) => {
                ck.report(&c.field.span(), &format!("{key}.field"), why);
                None
            }
        };
        let test = match (&c.is, &c.starts_with, c.not_empty) {
            (Some(values), None, None) if values.iter().all(|v| !v.trim().is_empty()) && !values.is_empty() => {
                Some(QcTest::Is(values.iter().map(|v| v.trim().to_string()).collect()))
            }
            (None, Some(prefixes), None) if prefixes.iter().all(|v| !v.trim().is_empty()) && !prefixes.is_empty() => {
                Some(QcTest::StartsWith(prefixes.iter().map(|v| v.trim().to_string()).collect()))
            }
            (None, None, Some(true)) => Some(QcTest::NotEmpty),
            _ => {
                ck.report(
                    &cond.span(),
                    &key,
                    "give the field and exactly one test: is = [\"Q\"], starts_with = [\"QC\"] (non-empty \
                     values) or not_empty = true"
                        .into(),
                );
                None
            }
        };
        match (field, test) {
            (Some(field), Some(test)) => out.push(QcCondition { field, test }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn test_def(ck: &mut Checker, code: &str, raw: Spanned<RawTest>, coding_system: &str) -> Option<TestDef> {
    let base = key_path("tests", code);
    let span = raw.span();
    let t = raw.into_inner();
    let mut ok = true;
    if code.trim().is_empty() || code.trim() != code {
        ck.report(&span, &base, "a test code must not be empty or start or end with spaces".into());
        ok = false;
    }
    let id = match (&t.loinc, &t.code) {
        (Some(loinc), None) => {
            if let Some(system) = &t.system {
                ck.report(
                    &system.span(),
                    &format!("{base}.system"),
                    "a LOINC code's system is LN; remove system, or use code instead of loinc for a local code".into(),
                );
                ok = false;
            }
            match loinc_problem(loinc.get_ref().trim()) {
                None => Some(TestId::Loinc(loinc.get_ref().trim().to_string())),
                Some(why) => {
                    ck.report(&loinc.span(), &format!("{base}.loinc"), why);
                    None
                }
            }
        }
        (None, Some(local)) => {
            let system = match &t.system {
                None => Some(coding_system.to_string()),
                Some(s) if s.get_ref().trim() == "LN" => {
                    ck.report(
                        &s.span(),
                        &format!("{base}.system"),
                        "for a LOINC code write loinc = \"...\" (its check digit is then verified)".into(),
                    );
                    None
                }
                Some(s) if is_local_system(s.get_ref().trim()) => Some(s.get_ref().trim().to_string()),
                Some(s) => {
                    ck.report(&s.span(), &format!("{base}.system"), local_system_advice(s.get_ref()));
                    None
                }
            };
            let code_text = local.get_ref().trim();
            if code_text.is_empty() {
                ck.report(&local.span(), &format!("{base}.code"), "the code is empty".into());
            }
            system.filter(|_| !code_text.is_empty()).map(|system| TestId::Local { code: code_text.to_string(), system })
        }
        _ => {
            ck.report(
                &span,
                &base,
                "give either loinc = \"6690-2\" (a LOINC code) or code = \"...\" (a local code, in the profile's \
                 coding_system unless system says another), not both or neither"
                    .into(),
            );
            None
        }
    };
    let name = t.name.get_ref().trim().to_string();
    if name.is_empty() {
        ck.report(&t.name.span(), &format!("{base}.name"), "the name is empty; say what the test measures".into());
        ok = false;
    }
    let mut text = |v: &Option<Spanned<String>>, key: &str| -> Option<String> {
        let v = v.as_ref()?;
        let s = v.get_ref().trim();
        if s.is_empty() {
            ck.report(&v.span(), &format!("{base}.{key}"), "empty; remove the key or give a value".into());
            ok = false;
        }
        Some(s.to_string())
    };
    let units = text(&t.units, "units");
    let instrument_units = text(&t.instrument_units, "instrument_units");
    let reference_range = text(&t.reference_range, "reference_range");
    if let (Some(range), Some(raw)) = (&reference_range, &t.reference_range)
        && let Some((low, high)) = numeric_range(range)
        && low > high
    {
        ck.report(
            &raw.span(),
            &format!("{base}.reference_range"),
            format!("{range:?} runs from high to low; write the lower limit first, e.g. \"{high}-{low}\""),
        );
        ok = false;
    }
    let mut bound = |v: &Option<Spanned<f64>>, key: &str| -> Option<f64> {
        let v = v.as_ref()?;
        if !v.get_ref().is_finite() {
            ck.report(&v.span(), &format!("{base}.{key}"), "give a finite number".into());
            ok = false;
        }
        Some(*v.get_ref())
    };
    let critical_low = bound(&t.critical_low, "critical_low");
    let critical_high = bound(&t.critical_high, "critical_high");
    if let (Some(low), Some(high), Some(raw)) = (critical_low, critical_high, &t.critical_low)
        && low >= high
    {
        ck.report(
            &raw.span(),
            &format!("{base}.critical_low"),
            format!(
                "the critical range is empty or negative ({low} to {high}): critical_low must be below critical_high"
            ),
        );
        ok = false;
    }
    if (critical_low.is_some() || critical_high.is_some()) && units.is_none() {
        ck.report(
            &span,
            &base,
            "a critical range needs the units it is in: add units (results in other units are never compared \
             against it)"
                .into(),
        );
        ok = false;
    }
    let def = TestDef { id: id?, name, units, instrument_units, reference_range, critical_low, critical_high };
    ok.then_some(def)
}

/// Why `code` is not a LOINC code (`NNNNN-C`, C the mod-10 check digit), or `None`.
pub(super) fn loinc_problem(code: &str) -> Option<String> {
    let Some((number, check)) = code.split_once('-') else {
        return Some(format!(
            "{code:?} is not a LOINC code: write it as digits, a dash and a check digit, e.g. \"6690-2\""
        ));
    };
    let well_formed = !number.is_empty()
        && number.len() <= 7
        && number.bytes().all(|b| b.is_ascii_digit())
        && check.len() == 1
        && check.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Some(format!(
            "{code:?} is not a LOINC code: write it as digits, a dash and a check digit, e.g. \"6690-2\""
        ));
    }
    let expected = loinc_check_digit(number);
    (check.as_bytes()[0] - b'0' != expected).then(|| {
        format!(
            "{code:?} is not a LOINC code: its check digit should be {expected} ({number}-{expected}); check the code \
             in the LOINC table (a typo, or a code copied from an instrument that sends a wrong one)"
        )
    })
}

/// LOINC's mod-10 check digit: from the right, every other digit (starting with the rightmost)
/// doubled, all the digits of the results summed; the digit that brings the sum to a multiple of
/// ten.
fn loinc_check_digit(number: &str) -> u8 {
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match i % 2 {
                0 => (d * 2) / 10 + (d * 2) % 10,
                _ => d,
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// `3.5-10.0`, `3.50 - 10.00`, `3.5 to 10.0` → (low, high).
pub(super) fn numeric_range(text: &str) -> Option<(f64, f64)> {
    let (low, high) = range_limits(text)?;
    let low: f64 = low.parse().ok()?;
    let high: f64 = high.parse().ok()?;
    (low.is_finite() && high.is_finite()).then_some((low, high))
}

/// The two limits of a range as written (trimmed), if it has the form `low-high`,
/// `low - high` or `low to high`; whether they are numbers is the caller's business.
pub(super) fn range_limits(text: &str) -> Option<(&str, &str)> {
    let text = text.trim();
    let (low, high) = text.split_once(" to ").or_else(|| text.split_once(" - ")).or_else(|| {
        // A dash after the first character: "3.5-10", "-2-2" (a leading minus is a sign).
        let at = text.get(1..)?.find('-')? + 1;
        Some((&text[..at], &text[at + 1..]))
    })?;
    Some((low.trim(), high.trim()))
}

/// The known name closest to `word`: one containing it, or one a few edits away.
fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.trim().to_lowercase();
    if word.is_empty() {
        return None;
    }
    if let Some(hit) = candidates.iter().find(|c| c.contains(&word)) {
        return Some(hit);
    }
    crate::suggest::closest(&word, candidates.iter().copied())
}

#[cfg(test)]
mod tests;
