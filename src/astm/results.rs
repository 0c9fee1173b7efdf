//! An ASTM message's results as the kind-neutral [`ResultSet`]s of `instrument/`, read where the
//! instrument's profile says its records put things: one set per order (O record) that has
//! results, with the patient (P) above it and the header's instrument and time. This is the one
//! place that knows both E1394 records and result sets; `instrument/` knows no ASTM.
//!
//! Scoping, as E1394 nests records: H (message) → P (patient) → O (order) → R (result) → C
//! (comment on the record just before it). A C after an R is that result's comment; after an O
//! or a P it is the specimen's. M (manufacturer) records are skipped (histograms, instrument
//! data). A result before any O (some point-of-care devices) belongs to a set with no specimen
//! id, which the ORU^R01 conversion refuses unless an order matched it.

use crate::instrument::{AstmPath, Flag, Patient, PersonName, Profile, ResultRow, ResultSet, Sex};

use super::records::{Message, Record, unescape};

/// The result sets of `message`, in order: one per O record that has R records under it (an O
/// without results, e.g. an order echo, gives none).
pub fn result_sets(message: &Message<'_>, profile: &Profile) -> Vec<ResultSet> {
    let header = message.header();
    let instrument_id = joined_components(&header, 5);
    let message_time = Some(header.value(14, 1)).filter(|t| !t.is_empty());
    let mut sets: Vec<ResultSet> = Vec::new();
    let mut patient_record: Option<Record<'_>> = None;
    let mut order_record: Option<Record<'_>> = None;
    let mut current: Option<ResultSet> = None;
    // The record a C record comments on.
    let mut last = b'H';
    let new_set = |p: Option<Record<'_>>, o: Option<Record<'_>>| {
        let scope = Scope { h: Some(header), p, o, r: None };
        ResultSet {
            instrument_id: instrument_id.clone(),
            message_time: message_time.clone(),
            qc: scope.is_qc(profile),
            patient: p.map(patient).unwrap_or_default(),
            specimen_id: profile.records.specimen_id.first(|path| scope.text(path)).map(str::to_string),
            specimen_type: o.map(|o| o.value(16, 1)).filter(|t| !t.trim().is_empty()),
            ordered_tests: o.map(ordered_tests).unwrap_or_default(),
            // O.8, the collection time; O.7 is when the test was requested, not collected.
            collected_at: o.map(|o| o.value(8, 1).trim().to_string()).filter(|t| !t.is_empty()),
            results: Vec::new(),
            comments: Vec::new(),
        }
    };
    for record in message.records() {
        match record.kind() {
            Some(b'P') => {
                sets.extend(current.take().filter(|s| !s.results.is_empty()));
                patient_record = Some(*record);
                order_record = None;
                last = b'P';
            }
            Some(b'O') => {
                sets.extend(current.take().filter(|s| !s.results.is_empty()));
                order_record = Some(*record);
                current = Some(new_set(patient_record, order_record));
                last = b'O';
            }
            Some(b'R') => {
                let set = current.get_or_insert_with(|| new_set(patient_record, order_record));
                let scope = Scope { h: Some(header), p: patient_record, o: order_record, r: Some(*record) };
                set.results.push(result_row(&scope, record, profile));
                last = b'R';
            }
            Some(b'C') => {
                let text = comment_text(record);
                if text.is_empty() {
                    continue;
                }
                match (last, current.as_mut()) {
                    (b'R', Some(set)) => {
                        if let Some(row) = set.results.last_mut() {
                            row.comments.push(text);
                        }
                    }
                    (b'O', Some(set)) => set.comments.push(text),
                    // A comment on the patient goes with every set of that patient: kept on the
                    // next set only when one comes (rare; instruments comment on results).
                    _ => {}
                }
            }
            _ => {}
        }
    }
    sets.extend(current.take().filter(|s| !s.results.is_empty()));
    sets
}

/// The records a path may name, for the result (or order) being read.
struct Scope<'a> {
    h: Option<Record<'a>>,
    p: Option<Record<'a>>,
    o: Option<Record<'a>>,
    r: Option<Record<'a>>,
}

impl<'a> Scope<'a> {
    /// The bytes at `path` (first repeat; the whole repeat when no component is named), raw.
    fn raw(&self, path: &AstmPath) -> Option<&'a [u8]> {
        let record = match path.record {
            'H' => self.h,
            'P' => self.p,
            'O' => self.o,
            'R' => self.r,
            _ => None,
        }?;
        let repeat = *record.repeats(path.field).first()?;
        match path.component {
            None => Some(repeat),
            Some(c) => record.components(repeat).nth(c - 1),
        }
    }

    /// The text at `path`, trimmed, when it needs no unescaping (the profile's paths name ids,
    /// codes and times, which carry no escapes in practice); `None` for text with escapes, read
    /// through [`Scope::owned`] instead.
    fn text(&self, path: &AstmPath) -> Option<&'a str> {
        let raw = self.raw(path)?;
        let d = self.h.map(|h| h.delimiters())?;
        if d.escape.is_some_and(|e| raw.contains(&e)) {
            return None;
        }
        std::str::from_utf8(raw).ok()
    }

    /// The text at `path`, unescaped (values and comments may carry escapes).
    fn owned(&self, path: &AstmPath) -> Option<String> {
        let raw = self.raw(path)?;
        let d = self.h.map(|h| h.delimiters())?;
        let text = String::from_utf8_lossy(&unescape(raw, &d)).trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    fn is_qc(&self, profile: &Profile) -> bool {
        profile.is_qc(|path| self.text(path))
    }
}

fn result_row(scope: &Scope<'_>, record: &Record<'_>, profile: &Profile) -> ResultRow {
    let records = &profile.records;
    let test_code = records.test_code(|p| scope.text(p)).unwrap_or_else(|| {
        // No code where the profile says: the standard place, so the result is not nameless.
        record.repeats(3).first().and_then(|r| record.test_code(r)).unwrap_or_default()
    });
    let value = records.value.paths.iter().find_map(|p| scope.owned(p)).unwrap_or_default();
    let flags = match records.flags {
        Some(path) => flags(scope, record, &path),
        None => Vec::new(),
    };
    ResultRow {
        test_code,
        value,
        units: records.units.and_then(|p| scope.owned(&p)),
        reference_range: records.reference_range.and_then(|p| scope.owned(&p)),
        flags,
        status: records.status.and_then(|p| scope.owned(&p)).and_then(|s| profile.result_status(&s)),
        completed_at: records.completed_at.as_ref().and_then(|l| l.first(|p| scope.text(p))).map(str::to_string),
        comments: Vec::new(),
    }
}

/// Every repeat of the flags field (`H`, or `L\W` for two), each one flag.
fn flags(scope: &Scope<'_>, record: &Record<'_>, path: &AstmPath) -> Vec<Flag> {
    if path.record != 'R' {
        return scope.owned(path).and_then(|f| Flag::from_code(&f)).into_iter().collect();
    }
    let d = record.delimiters();
    record
        .repeats(path.field)
        .into_iter()
        .filter_map(|repeat| {
            let part = match path.component {
                None => repeat,
                Some(c) => record.components(repeat).nth(c - 1)?,
            };
            Flag::from_code(&String::from_utf8_lossy(&unescape(part, &d)))
        })
        .collect()
}

/// E1394 P record: P.3 practice-assigned id, P.4 laboratory-assigned id, P.5 a third id;
/// P.6 name (last^first^middle), P.8 birth date, P.9 sex.
fn patient(p: Record<'_>) -> Patient {
    let ids = [3, 4, 5].iter().map(|&n| p.value(n, 1)).filter(|v| !v.trim().is_empty()).collect();
    let (family, given, middle) = (p.value(6, 1), p.value(6, 2), p.value(6, 3));
    let name = (!(family.trim().is_empty() && given.trim().is_empty())).then(|| PersonName {
        family: family.trim().to_string(),
        given: given.trim().to_string(),
        middle: middle.trim().to_string(),
    });
    Patient {
        ids,
        name,
        birth_date: Some(p.value(8, 1)).filter(|v| !v.trim().is_empty()),
        sex: Sex::from_code(&p.value(9, 1)),
    }
}

/// O.5's test codes, each once.
fn ordered_tests(o: Record<'_>) -> Vec<String> {
    let mut tests: Vec<String> = Vec::new();
    for repeat in o.repeats(5) {
        if let Some(code) = o.test_code(repeat)
            && !tests.contains(&code)
        {
            tests.push(code);
        }
    }
    tests
}

/// A field's components unescaped, joined by `^`, trailing empty ones dropped (`H500^906YOX`).
fn joined_components(record: &Record<'_>, n: usize) -> String {
    let d = record.delimiters();
    let Some(repeat) = record.repeats(n).first().copied() else { return String::new() };
    let mut parts: Vec<String> =
        record.components(repeat).map(|c| String::from_utf8_lossy(&unescape(c, &d)).trim().to_string()).collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts.join("^")
}

/// C.4, the comment: its components joined by spaces, its repeats by `; `, unescaped.
fn comment_text(c: &Record<'_>) -> String {
    let d = c.delimiters();
    let repeats: Vec<String> = c
        .repeats(4)
        .into_iter()
        .map(|repeat| {
            let parts: Vec<String> = c
                .components(repeat)
                .map(|part| String::from_utf8_lossy(&unescape(part, &d)).trim().to_string())
                .filter(|part| !part.is_empty())
                .collect();
            parts.join(" ")
        })
        .filter(|r| !r.is_empty())
        .collect();
    repeats.join("; ")
}

#[cfg(test)]
mod tests;
