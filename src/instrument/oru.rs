//! Lab results → HL7 v2.5.1 ORU^R01, driven by the instrument's profile (its test-code map and
//! local coding system).
//!
//! The message, segments separated by CR:
//!
//! ```text
//! MSH|^~\&|<sending app>|<sending facility>|<receiving app>|<receiving facility>|<time>||ORU^R01^ORU_R01|<control id>|P|2.5.1
//! PID|1||<patient ids, repeated>||<family>^<given>^<middle>||<birth date>|<sex>     (left out when the instrument knows nothing of the patient)
//! ORC|RE|<placer order number>|<filler order number, else the specimen id>
//! OBR|1|<placer>|<filler>|<universal service id>|||<observation time>|...|<status change time (22)>|...|<result status (25)>
//! NTE|n|L|<comment on the specimen>                                                  (one per comment)
//! OBX|n|<NM, SN or ST>|<code>^<name>^<system>[^<instrument code>^^<local system>]|<sub-id>|<value>|<units>|<range>|<flags>|||<status>|||<observed at>||||<instrument>|<analysed at>
//! NTE|n|L|<comment on the result, or an instrument flag HL7 has no code for>         (after its OBX)
//! SPM|1|^<specimen id>||<specimen type>
//! ```
//!
//! Decisions:
//! - **QC is never a patient result.** A set marked [`ResultSet::qc`] is refused with
//!   [`OruError::QualityControl`]; the adapter keeps QC apart (the instrument's raw messages are
//!   journaled as they came).
//! - **Codes.** A test in the profile's map is reported under its LOINC code (`LN`) or its local
//!   code, with the instrument's own code as the alternate identifier (CWE.4-6). A test the map
//!   does not know is kept, not dropped: reported under the instrument's code in the profile's
//!   local coding system (`P-LCC^^99YH500`), and counted by [`mapping_report`].
//! - **Values.** OBX-2 is `NM` for a plain number, `SN` for a number with a comparator (`<0.5`
//!   becomes `<^0.5`), `ST` for anything else; OBX-2 stays empty with an empty value (HL7 asks
//!   for it only when OBX-5 is valued).
//! - **Units.** The map's units (UCUM, `units^^UCUM`) when the instrument sent none (some send
//!   a unit-system number instead) or sent the ones the map expects; otherwise the instrument's
//!   own units as sent, and then the map's reference range and critical range do not apply
//!   (they are in other units), and [`mapping_report`] lists the code.
//! - **Ranges.** The instrument's range when it sends one (`3.50 - 10.00` written `3.50-10.00`),
//!   else the map's.
//! - **Flags.** R.7 flags go to OBX-8 as HL7 table 0078 codes, repeated; a flag outside the table
//!   goes to an NTE after the result ("instrument flag: ...").
//! - **Status.** OBX-11 from [`ResultStatus::hl7_code`]; a result with no status takes the one
//!   of the result before it (GeneXpert sends it on the main result only), and `P` if none came
//!   before. OBR-25 is `X` if every result could not be done, else `C` if any is a correction,
//!   `P` if any is not final, `F` otherwise.
//! - **Times.** OBR-7 and OBX-14 (observation, i.e. collection) take the collection time if known,
//!   else the earliest completion time; OBX-19 is the analysis (completion) time; OBR-22 the
//!   latest completion time, else the message time. A time that is not an HL7 date/time is left
//!   out.
//! - **Orders.** ORC/OBR-2 and -3 come from the order the adapter matched (by specimen id);
//!   without one, the specimen id is the filler order number. OBR-4 is the order's universal
//!   service id if known, else the one test the instrument says was ordered, else (several or
//!   none) the instrument itself (`<profile id>^<name> results^<local system>`).
//! - **Escaping.** Every value is escaped with our HL7 escaping (`|^~\&`, line breaks), whatever
//!   the instrument put in it. MSH-18 says `UNICODE UTF-8` when the message is not plain ASCII.
//! - **PID** is left out when the instrument knows nothing of the patient (the PATIENT group of
//!   ORU_R01 is optional); matching then rests on the order numbers and specimen id.

use std::collections::HashMap;

use crate::hl7::escape;

use super::critical::{Comparator, parse_value, units_agree};
use super::profile::{numeric_range, range_limits};
use super::{Flag, Profile, ResultRow, ResultSet, ResultStatus, TestDef};

/// The order the results answer, from the adapter's cache of the ORM^O01/OML^O21 orders it saw
/// (keyed by specimen id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderRef {
    /// ORC-2/OBR-2: the ordering system's number.
    pub placer_order_number: Option<String>,
    /// ORC-3/OBR-3: the lab's number.
    pub filler_order_number: Option<String>,
    /// OBR-4 of the order, if kept.
    pub universal_service_id: Option<Coded>,
}

/// A coded value (CWE): code, text, coding system; plain (unescaped) text each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coded {
    pub code: String,
    pub text: String,
    pub system: String,
}

/// Who the message is from and to, its control id and time (the caller's clock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OruContext {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-10; must not be empty.
    pub control_id: String,
    /// MSH-7, an HL7 date/time (`envelope::hl7_now()`).
    pub message_time: String,
}

/// Why a result set was not converted. No message carries PHI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OruError {
    #[error(
        "these are quality-control results: QC is never sent as patient results (ORU^R01); keep it with the \
         instrument's QC data"
    )]
    QualityControl,
    #[error("the result set has no results; there is nothing to report")]
    NoResults,
    #[error(
        "the results carry no specimen id and no order matched them, so a receiving system could not tell what they \
         belong to; check that the instrument sends the sample id where the profile reads it (records.specimen_id)"
    )]
    NoSpecimenId,
    #[error("the control id (MSH-10) is empty; give every message one")]
    EmptyControlId,
    #[error("the message time {0:?} is not an HL7 date/time (YYYYMMDDHHMMSS, optionally +zzzz)")]
    BadMessageTime(String),
}

/// What the conversion could not map, for counters and the log: test codes only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingReport {
    /// Codes the profile's map does not have (reported under the local coding system), each
    /// once, in order.
    pub unmapped: Vec<String>,
    /// Mapped codes whose results came in other units than the map's (sent as they came, with
    /// no reference or critical range from the map).
    pub unexpected_units: Vec<String>,
}

impl MappingReport {
    pub fn is_clean(&self) -> bool {
        self.unmapped.is_empty() && self.unexpected_units.is_empty()
    }
}

/// Which of `set`'s codes the profile could not map (see [`MappingReport`]).
pub fn mapping_report(set: &ResultSet, profile: &Profile) -> MappingReport {
    let mut report = MappingReport::default();
    for row in &set.results {
        let list = match profile.test(&row.test_code) {
            None => &mut report.unmapped,
            Some(test) if !units_agree(row.units.as_deref(), test) => &mut report.unexpected_units,
            Some(_) => continue,
        };
        if !list.contains(&row.test_code) {
            list.push(row.test_code.clone());
        }
    }
    report
}

/// Builds the ORU^R01 for `set` (see the module docs for every choice made).
pub fn to_oru_r01(
    set: &ResultSet,
    profile: &Profile,
    order: Option<&OrderRef>,
    ctx: &OruContext,
) -> Result<String, OruError> {
    if set.qc {
        return Err(OruError::QualityControl);
    }
    if set.results.is_empty() {
        return Err(OruError::NoResults);
    }
    if ctx.control_id.trim().is_empty() {
        return Err(OruError::EmptyControlId);
    }
    let message_time = dtm(&ctx.message_time).ok_or_else(|| OruError::BadMessageTime(ctx.message_time.clone()))?;
    let specimen_id = set.specimen_id.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let placer = order.and_then(|o| o.placer_order_number.as_deref()).map(str::trim).filter(|s| !s.is_empty());
    let filler = order.and_then(|o| o.filler_order_number.as_deref()).map(str::trim).filter(|s| !s.is_empty());
    let filler = filler.or(specimen_id);
    if filler.is_none() && placer.is_none() {
        return Err(OruError::NoSpecimenId);
    }

    let statuses = statuses(&set.results);
    let completed: Vec<&str> = set.results.iter().filter_map(|r| r.completed_at.as_deref().and_then(dtm)).collect();
    let earliest = completed.iter().min().copied();
    let latest = completed.iter().max().copied();
    let collected = set.collected_at.as_deref().and_then(dtm);
    let observed = collected.or(earliest);

    let mut segments: Vec<String> = Vec::new();
    if !set.patient.is_empty() {
        segments.push(pid(set));
    }
    segments.push(fields(&["ORC", "RE", &e(placer.unwrap_or_default()), &e(filler.unwrap_or_default())]));
    let service = universal_service(set, profile, order);
    let obr_status = obr_status(&statuses);
    let mut obr = vec![String::new(); 26];
    obr[0] = "OBR".into();
    obr[1] = "1".into();
    obr[2] = e(placer.unwrap_or_default());
    obr[3] = e(filler.unwrap_or_default());
    obr[4] = service;
    obr[7] = observed.unwrap_or_default().into();
    obr[22] = latest.unwrap_or(message_time).into();
    obr[25] = obr_status.into();
    segments.push(join_fields(&obr));
    notes(&mut segments, set.comments.iter().map(String::as_str));

    let identifiers: Vec<String> = set.results.iter().map(|r| observation_id(r, profile)).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, (row, identifier)) in set.results.iter().zip(&identifiers).enumerate() {
        let repeated = identifiers.iter().filter(|other| *other == identifier).count() > 1;
        let occurrence = seen.entry(identifier.as_str()).and_modify(|n| *n += 1).or_insert(1);
        let sub_id = if repeated { occurrence.to_string() } else { String::new() };
        let test = profile.test(&row.test_code);
        let same_units = test.is_some_and(|t| units_agree(row.units.as_deref(), t));
        let test = test.filter(|_| same_units);
        let (value_type, value) = encode_value(&row.value);
        let mut obx = vec![String::new(); 20];
        obx[0] = "OBX".into();
        obx[1] = (i + 1).to_string();
        obx[2] = value_type.into();
        obx[3] = identifier.clone();
        obx[4] = sub_id;
        obx[5] = value;
        obx[6] = units(row, test);
        obx[7] = reference_range(row, test);
        obx[8] = row.flags.iter().filter_map(Flag::hl7_code).collect::<Vec<_>>().join("~");
        obx[11] = statuses[i].into();
        obx[14] = collected.or(row.completed_at.as_deref().and_then(dtm)).unwrap_or_default().into();
        obx[18] = e(set.instrument_id.trim());
        obx[19] = row.completed_at.as_deref().and_then(dtm).unwrap_or_default().into();
        segments.push(join_fields(&obx));
        let odd_flags: Vec<String> = row
            .flags
            .iter()
            .filter_map(|f| match f {
                Flag::Other(text) => Some(format!("instrument flag: {text}")),
                _ => None,
            })
            .collect();
        notes(&mut segments, row.comments.iter().map(String::as_str).chain(odd_flags.iter().map(String::as_str)));
    }
    if let Some(specimen) = specimen_id {
        let kind = set.specimen_type.as_deref().map(specimen_type).unwrap_or_default();
        segments.push(fields(&["SPM", "1", &format!("^{}", e(specimen)), "", &kind]));
    }

    let body = segments.join("\r");
    let mut msh = vec![
        "MSH".to_string(),
        "^~\\&".to_string(),
        e(&ctx.sending_application),
        e(&ctx.sending_facility),
        e(&ctx.receiving_application),
        e(&ctx.receiving_facility),
        message_time.to_string(),
        String::new(),
        "ORU^R01^ORU_R01".to_string(),
        e(ctx.control_id.trim()),
        "P".to_string(),
        "2.5.1".to_string(),
    ];
    let text_is_ascii = body.is_ascii() && msh.iter().all(|f| f.is_ascii());
    if !text_is_ascii {
        // MSH-13 .. MSH-17 empty, then MSH-18.
        msh.extend(std::iter::repeat_n(String::new(), 5));
        msh.push("UNICODE UTF-8".to_string());
    }
    Ok(format!("{}\r{body}\r", msh.join("|")))
}

/// HL7-escapes one value (default delimiters).
fn e(text: &str) -> String {
    escape(text, None)
}

/// Escapes each component and joins them with `^`, leaving off empty trailing ones.
fn components(parts: &[&str]) -> String {
    let mut out: Vec<String> = parts.iter().map(|p| e(p.trim())).collect();
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out.join("^")
}

/// Joins already-encoded fields, leaving off empty trailing ones.
fn fields(parts: &[&str]) -> String {
    let owned: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    join_fields(&owned)
}

fn join_fields(parts: &[String]) -> String {
    let end = parts.iter().rposition(|p| !p.is_empty()).map_or(0, |i| i + 1);
    parts[..end].join("|")
}

fn notes<'c>(segments: &mut Vec<String>, comments: impl Iterator<Item = &'c str>) {
    let comments = comments.map(str::trim).filter(|c| !c.is_empty());
    for (i, comment) in comments.enumerate() {
        segments.push(fields(&["NTE", &(i + 1).to_string(), "L", &e(comment)]));
    }
}

fn pid(set: &ResultSet) -> String {
    let p = &set.patient;
    let ids: Vec<String> = p.ids.iter().map(|id| e(id.trim())).filter(|id| !id.is_empty()).collect();
    let name = p.name.as_ref().map(|n| components(&[&n.family, &n.given, &n.middle])).unwrap_or_default();
    let birth = p.birth_date.as_deref().and_then(dtm).unwrap_or_default();
    let sex = p.sex.map(|s| s.hl7_code()).unwrap_or_default();
    fields(&["PID", "1", "", &ids.join("~"), "", &name, "", birth, sex])
}

/// OBR-4 (see the module docs).
fn universal_service(set: &ResultSet, profile: &Profile, order: Option<&OrderRef>) -> String {
    if let Some(s) = order.and_then(|o| o.universal_service_id.as_ref()).filter(|s| !s.code.trim().is_empty()) {
        return components(&[&s.code, &s.text, &s.system]);
    }
    let ordered: Vec<&str> = set.ordered_tests.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
    match ordered.as_slice() {
        [one] => match profile.test(one) {
            Some(test) => coded(test, one, &profile.coding_system),
            None => components(&[one, "", &profile.coding_system]),
        },
        _ => components(&[&profile.id, &format!("{} results", profile.name), &profile.coding_system]),
    }
}

/// OBX-3 for a row.
fn observation_id(row: &ResultRow, profile: &Profile) -> String {
    let code = row.test_code.trim();
    match profile.test(code) {
        Some(test) => coded(test, code, &profile.coding_system),
        None => components(&[code, "", &profile.coding_system]),
    }
}

/// A mapped test as CWE, with the instrument's code as the alternate identifier when it differs.
fn coded(test: &TestDef, instrument_code: &str, local_system: &str) -> String {
    let (code, system) = test.id.code_and_system();
    if code == instrument_code && system == local_system {
        components(&[code, &test.name, system])
    } else {
        components(&[code, &test.name, system, instrument_code, "", local_system])
    }
}

/// OBX-2 and OBX-5.
fn encode_value(value: &str) -> (&'static str, String) {
    let value = value.trim();
    if value.is_empty() {
        return ("", String::new());
    }
    match parse_value(value) {
        Some((Comparator::Equal, _)) if is_hl7_number(value) => ("NM", value.to_string()),
        Some((comparator, _)) if comparator != Comparator::Equal => {
            let split = value.find(|c: char| !matches!(c, '<' | '>' | '=')).unwrap_or(value.len());
            let number = value[split..].trim();
            if is_hl7_number(number) { ("SN", format!("{}^{}", e(&value[..split]), number)) } else { ("ST", e(value)) }
        }
        _ => ("ST", e(value)),
    }
}

/// HL7 NM: an optional sign, digits, at most one decimal point.
fn is_hl7_number(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let points = digits.bytes().filter(|b| *b == b'.').count();
    points <= 1 && digits.bytes().any(|b| b.is_ascii_digit()) && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// OBX-6: the map's UCUM units when they apply, else the instrument's units as sent.
fn units(row: &ResultRow, test: Option<&TestDef>) -> String {
    if let Some(units) = test.and_then(|t| t.units.as_deref()) {
        return components(&[units, "", "UCUM"]);
    }
    row.units.as_deref().map(|u| e(u.trim())).unwrap_or_default()
}

/// OBX-7: the instrument's range, else the map's. A numeric range is written `low-high`.
fn reference_range(row: &ResultRow, test: Option<&TestDef>) -> String {
    let range = row.reference_range.as_deref().map(str::trim).filter(|r| !r.is_empty());
    match range {
        Some(range) => match (numeric_range(range), range_limits(range)) {
            (Some(_), Some((low, high))) => e(&format!("{low}-{high}")),
            _ => e(range),
        },
        None => test.and_then(|t| t.reference_range.as_deref()).map(e).unwrap_or_default(),
    }
}

/// OBX-11 for every row, a missing status taking the one before it.
fn statuses(rows: &[ResultRow]) -> Vec<&'static str> {
    let mut last: Option<ResultStatus> = None;
    rows.iter()
        .map(|row| {
            if row.status.is_some() {
                last = row.status;
            }
            last.map_or("P", ResultStatus::hl7_code)
        })
        .collect()
}

/// OBR-25 (table 0123) from the OBX-11 values.
fn obr_status(statuses: &[&str]) -> &'static str {
    if statuses.iter().all(|s| *s == "X") {
        "X"
    } else if statuses.contains(&"C") {
        "C"
    } else if statuses.iter().any(|s| !matches!(*s, "F" | "X")) {
        "P"
    } else {
        "F"
    }
}

/// SPM-4: the instrument's specimen word as HL7 table 0487 where it is one of the common ones,
/// else as text only (CWE.2).
fn specimen_type(word: &str) -> String {
    let word = word.trim();
    let known = match word.to_ascii_uppercase().as_str() {
        "BLOOD" | "WB" | "WHOLE BLOOD" | "BLD" => Some(("BLD", "Whole blood")),
        "SERUM" | "SER" => Some(("SER", "Serum")),
        "PLASMA" | "PLAS" => Some(("PLAS", "Plasma")),
        "URINE" | "UR" => Some(("UR", "Urine")),
        _ => None,
    };
    match known {
        Some((code, text)) => components(&[code, text, "HL70487"]),
        None => components(&["", word]),
    }
}

/// `text` if it is an HL7 date/time (`YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`).
fn dtm(text: &str) -> Option<&str> {
    let t = text.trim();
    let (main, zone) = match t.find(['+', '-']) {
        Some(at) => (&t[..at], Some(&t[at + 1..])),
        None => (t, None),
    };
    let (digits, fraction) = match main.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (main, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = all_digits(digits)
        && matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14)
        && fraction.is_none_or(|f| digits.len() == 14 && (1..=4).contains(&f.len()) && all_digits(f))
        && zone.is_none_or(|z| z.len() == 4 && all_digits(z));
    ok.then_some(t)
}

#[cfg(test)]
mod tests;
