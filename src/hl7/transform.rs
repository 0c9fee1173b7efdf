//! Per-destination edits of an outgoing copy (set, copy or clear a field). The journal always
//! keeps the original bytes; transforms only shape what one destination receives.
//!
//! Promises of [`apply_transforms`]:
//! - Every byte outside the edited values stays as it was, segment terminators included, and
//!   the copy is written in the charset it was read in.
//! - A path naming a whole field (`PID-3`) edits the whole field, every repetition; one naming
//!   a component or subcomponent edits the first repetition unless it pins one (`PID-3(2).1`).
//!   Segments: the first occurrence unless pinned (`OBX[2]-5`).
//! - Set and Copy create a missing field, repetition, component or subcomponent by adding
//!   separators; they fail if the segment is missing. Clear of something absent does nothing.
//! - MSH-1 and MSH-2 (and FHS/BHS-1/2) cannot be edited.

use std::ops::Range;

use super::{Charset, FieldPath, Hl7Error, Message};

#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Writes `value` (raw HL7: it may contain component separators) at `path`.
    Set { path: FieldPath, value: String },
    /// Copies the raw value at `from` (first occurrence and repetition unless pinned) to `to`.
    Copy { from: FieldPath, to: FieldPath },
    /// Empties the value at `path`.
    Clear { path: FieldPath },
}

/// Applies transforms in order to a copy of `bytes` (read in `charset`) and returns the new
/// bytes in the same charset. See the module docs for what is and is not touched.
pub fn apply_transforms(bytes: &[u8], charset: Charset, transforms: &[Transform]) -> Result<Vec<u8>, Hl7Error> {
    if transforms.is_empty() {
        return Ok(bytes.to_vec());
    }
    let (text, fell_back) = charset.decode(bytes);
    // Invalid UTF-8 was read as latin-1; write it back the same way.
    let charset = match charset {
        Charset::Utf8 if fell_back => Charset::Latin1,
        other => other,
    };
    if charset.encode(&text) != bytes {
        return Err(Hl7Error::CharsetMismatch { charset: charset.name() });
    }
    let mut text = text.into_owned();
    for transform in transforms {
        let edit = {
            let message = Message::read(&text)?;
            plan(&message, transform)?
        };
        if let Some((range, replacement)) = edit {
            text.replace_range(range, &replacement);
        }
    }
    Ok(charset.encode(&text))
}

/// Where a path's value is, or where it would go.
enum Spot {
    Existing(Range<usize>),
    /// Absent: insert `padding` (separators) and the value at byte `at`.
    Missing {
        at: usize,
        padding: String,
    },
}

/// The text edit one transform makes: replace `range` by the string.
fn plan(message: &Message<'_>, transform: &Transform) -> Result<Option<(Range<usize>, String)>, Hl7Error> {
    match transform {
        Transform::Set { path, value } => set(message, path, value),
        Transform::Copy { from, to } => set(message, to, &read_raw(message, from)?),
        Transform::Clear { path } => {
            if message.occurrences(path).next().is_none() {
                return Ok(None);
            }
            Ok(match locate(message, path)? {
                Spot::Existing(range) => Some((range, String::new())),
                Spot::Missing { .. } => None,
            })
        }
    }
}

fn set(message: &Message<'_>, path: &FieldPath, value: &str) -> Result<Option<(Range<usize>, String)>, Hl7Error> {
    if value.contains(['\r', '\n', message.delimiters.field]) {
        return Err(Hl7Error::InvalidValue { path: path.to_string() });
    }
    Ok(match locate(message, path)? {
        Spot::Existing(range) => Some((range, value.to_string())),
        Spot::Missing { .. } if value.is_empty() => None,
        Spot::Missing { at, padding } => Some((at..at, padding + value)),
    })
}

fn locate(message: &Message<'_>, path: &FieldPath) -> Result<Spot, Hl7Error> {
    let segment =
        message.occurrences(path).next().ok_or_else(|| Hl7Error::MissingSegment { path: path.to_string() })?;
    if segment.is_delimiter_field(path.field) {
        return Err(Hl7Error::ReadOnlyField { path: path.to_string() });
    }
    let d = message.delimiters;
    let pad = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
    let abs = |r: &Range<usize>| segment.range.start + r.start..segment.range.start + r.end;
    // Paths parsed from config are 1-based; treat a hand-built 0 as 1 rather than panic.
    let field = path.field.max(1);
    let repetition = path.repetition.unwrap_or(1).max(1);
    let component = path.component.map(|c| c.max(1));
    let subcomponent = path.subcomponent.map(|s| s.max(1));
    // Separators that create the levels below one that is being created.
    let below_repetition =
        pad(d.component, component.map_or(0, |c| c - 1)) + &pad(d.subcomponent, subcomponent.map_or(0, |s| s - 1));

    let index = segment.field_index(field).unwrap_or(0);
    let Some(f) = segment.fields().get(index) else {
        let padding =
            pad(d.field, index + 1 - segment.fields().len()) + &pad(d.repetition, repetition - 1) + &below_repetition;
        return Ok(Spot::Missing { at: segment.range.end, padding });
    };
    if path.repetition.is_none() && component.is_none() {
        return Ok(Spot::Existing(abs(&f.range)));
    }
    let Some(r) = f.repeats.get(repetition - 1) else {
        let padding = pad(d.repetition, repetition - f.repeats.len().max(1)) + &below_repetition;
        return Ok(Spot::Missing { at: abs(&f.range).end, padding });
    };
    let Some(component) = component else {
        return Ok(Spot::Existing(abs(&r.range)));
    };
    let Some(c) = r.components.get(component - 1) else {
        let padding = pad(d.component, component - r.components.len().max(1))
            + &pad(d.subcomponent, subcomponent.map_or(0, |s| s - 1));
        return Ok(Spot::Missing { at: abs(&r.range).end, padding });
    };
    let Some(subcomponent) = subcomponent else {
        return Ok(Spot::Existing(abs(&c.range)));
    };
    match c.subcomponents.get(subcomponent - 1) {
        Some(s) => Ok(Spot::Existing(abs(&s.range))),
        None => Ok(Spot::Missing {
            at: abs(&c.range).end,
            padding: pad(d.subcomponent, subcomponent - c.subcomponents.len().max(1)),
        }),
    }
}

/// The raw value at `path`: first occurrence, first repetition unless pinned; empty if absent.
fn read_raw(message: &Message<'_>, path: &FieldPath) -> Result<String, Hl7Error> {
    let segment =
        message.occurrences(path).next().ok_or_else(|| Hl7Error::MissingSegment { path: path.to_string() })?;
    if segment.is_delimiter_field(path.field) {
        return Ok(message.delimiter_field(segment, path.field).to_string());
    }
    let repeat = segment.field(path.field).and_then(|f| f.repeats.get(path.repetition.unwrap_or(1).wrapping_sub(1)));
    let raw = match (path.component, path.subcomponent) {
        (None, _) => repeat.map(|r| r.raw_value()),
        (Some(c), None) => repeat.and_then(|r| r.components.get(c.wrapping_sub(1))).map(|c| c.raw_value()),
        (Some(c), Some(s)) => repeat
            .and_then(|r| r.components.get(c.wrapping_sub(1)))
            .and_then(|c| c.subcomponents.get(s.wrapping_sub(1)))
            .map(|s| s.raw_value()),
    };
    Ok(raw.unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = include_bytes!("testdata/adt-a01.hl7");
    const CHEM: &[u8] = include_bytes!("testdata/chem-report-8859-1.hl7");
    const SIMPLE: &str = "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\rPID|1||111^^^H~222^^^S||DOE^JANE\rPV1|1|I\r";

    fn path(p: &str) -> FieldPath {
        p.parse().unwrap()
    }

    fn set(p: &str, value: &str) -> Transform {
        Transform::Set { path: path(p), value: value.into() }
    }

    fn clear(p: &str) -> Transform {
        Transform::Clear { path: path(p) }
    }

    fn copy(from: &str, to: &str) -> Transform {
        Transform::Copy { from: path(from), to: path(to) }
    }

    /// Applies to SIMPLE (UTF-8) and returns the text.
    fn run(transforms: &[Transform]) -> Result<String, Hl7Error> {
        let out = apply_transforms(SIMPLE.as_bytes(), Charset::Utf8, transforms)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn latin1_round_trips_except_the_edited_field() {
        let original = b"MSH|^~\\&|LAB|CAF\xc9|EMR|CLINIC|1||ORU^R01|7|P|2.5||||||8859/1\rPID|1||9||M\xdcLLER^REN\xc9E\rNTE|1||Bl\xe9\r\n".to_vec();
        let decoded = crate::hl7::decode(&original, None);
        assert_eq!(decoded.charset, Charset::Latin1);
        assert_eq!(decoded.charset.encode(&decoded.text), original);
        let message = Message::parse(&decoded.text).unwrap();
        assert_eq!(message.values(&path("PID-5.2")), ["RENÉE"]);

        let out = apply_transforms(&original, decoded.charset, &[set("PID-5.2", "Zoé")]).unwrap();
        let expected = b"MSH|^~\\&|LAB|CAF\xc9|EMR|CLINIC|1||ORU^R01|7|P|2.5||||||8859/1\rPID|1||9||M\xdcLLER^Zo\xe9\rNTE|1||Bl\xe9\r\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn declared_8859_1_sample_keeps_every_other_byte() {
        let charset = crate::hl7::decode(CHEM, None).charset;
        assert_eq!(charset, Charset::Latin1);
        let out = apply_transforms(CHEM, charset, &[set("MSH-5", "OUTPOST")]).unwrap();
        let old = "|^2.16.840.1.113883.3.59.3:0947^ISO|";
        let at = CHEM.windows(old.len()).position(|w| w == old.as_bytes()).unwrap();
        let mut expected = CHEM[..at].to_vec();
        expected.extend_from_slice(b"|OUTPOST|");
        expected.extend_from_slice(&CHEM[at + old.len()..]);
        assert_eq!(out, expected);
    }

    #[test]
    fn invalid_utf8_is_written_back_as_read() {
        let bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\rPID|1||\xe9";
        let out = apply_transforms(bytes, Charset::Utf8, &[set("PID-1", "2")]).unwrap();
        assert_eq!(out, b"MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\rPID|2||\xe9");
    }

    #[test]
    fn undecodable_bytes_are_refused_rather_than_altered() {
        let sjis = Charset::from_label("shift_jis").unwrap();
        let bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\rPID|1||\x82";
        assert_eq!(
            apply_transforms(bytes, sjis, &[set("PID-1", "2")]),
            Err(Hl7Error::CharsetMismatch { charset: "Shift_JIS" })
        );
    }

    #[test]
    fn set_replaces_at_every_level() {
        let cases = [
            ("PID-3", "X", "PID|1||X||DOE^JANE"),
            ("PID-3.1", "X", "PID|1||X^^^H~222^^^S||DOE^JANE"),
            ("PID-3(2)", "X^Y", "PID|1||111^^^H~X^Y||DOE^JANE"),
            ("PID-3(2).4", "T", "PID|1||111^^^H~222^^^T||DOE^JANE"),
            ("PID-5.2.1", "ANN", "PID|1||111^^^H~222^^^S||DOE^ANN"),
        ];
        for (p, value, pid) in cases {
            let out = run(&[set(p, value)]).unwrap();
            assert_eq!(out, SIMPLE.replace("PID|1||111^^^H~222^^^S||DOE^JANE", pid), "{p}");
        }
    }

    #[test]
    fn set_pads_what_is_missing() {
        let cases = [
            ("PID-8", "F", "PID|1||111^^^H~222^^^S||DOE^JANE|||F"),
            ("PID-8(2).3", "F", "PID|1||111^^^H~222^^^S||DOE^JANE|||~^^F"),
            ("PID-3(3)", "333", "PID|1||111^^^H~222^^^S~333||DOE^JANE"),
            ("PID-5.4", "JR", "PID|1||111^^^H~222^^^S||DOE^JANE^^JR"),
            ("PID-5.2.3", "Q", "PID|1||111^^^H~222^^^S||DOE^JANE&&Q"),
            ("PID-4.2", "B", "PID|1||111^^^H~222^^^S|^B|DOE^JANE"),
            ("MSH-13", "5", "PID|1||111^^^H~222^^^S||DOE^JANE"),
        ];
        for (p, value, pid) in cases {
            let out = run(&[set(p, value)]).unwrap();
            let mut expected = SIMPLE.replace("PID|1||111^^^H~222^^^S||DOE^JANE", pid);
            if p == "MSH-13" {
                expected = expected.replace("|2.5\r", "|2.5|5\r");
            }
            assert_eq!(out, expected, "{p}");
        }
        let out = run(&[set("PV1-5", "V")]).unwrap();
        assert!(out.ends_with("PV1|1|I|||V\r"), "{out:?}");
        let out = apply_transforms(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\nEVN\n", Charset::Utf8, &[set("EVN-2", "E")]);
        assert_eq!(out.unwrap(), b"MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\nEVN||E\n");
    }

    #[test]
    fn copy_takes_the_first_repetition_unless_pinned() {
        let out = run(&[copy("PID-3", "PID-2")]).unwrap();
        assert!(out.contains("PID|1|111^^^H|111^^^H~222^^^S|"), "{out:?}");
        let out = run(&[copy("PID-3(2).1", "PV1-3.2")]).unwrap();
        assert!(out.ends_with("PV1|1|I|^222\r"), "{out:?}");
        let out = run(&[copy("MSH-10", "PID-1"), copy("PID-9", "PID-5")]).unwrap();
        assert!(out.contains("PID|7||111^^^H~222^^^S||\r"), "{out:?}");
    }

    #[test]
    fn clear_empties_and_ignores_what_is_absent() {
        let out = run(&[clear("PID-3"), clear("PID-5.2"), clear("PID-30"), clear("ZZZ-1")]).unwrap();
        assert!(out.contains("\rPID|1||||DOE^\r"), "{out:?}");
        let out = run(&[clear("PID-3.1")]).unwrap();
        assert!(out.contains("\rPID|1||^^^H~222^^^S||"), "{out:?}");
    }

    #[test]
    fn transforms_apply_in_order() {
        let out = run(&[set("PID-2", "A"), copy("PID-2", "PID-1"), clear("PID-2")]).unwrap();
        assert!(out.contains("\rPID|A||111"), "{out:?}");
    }

    #[test]
    fn refusals_name_the_path() {
        let missing = Hl7Error::MissingSegment { path: "ZZZ-1".into() };
        assert_eq!(run(&[set("ZZZ-1", "x")]), Err(missing.clone()));
        assert_eq!(run(&[copy("ZZZ-1", "PID-1")]), Err(missing));
        assert_eq!(run(&[set("OBX-1", "x")]), Err(Hl7Error::MissingSegment { path: "OBX-1".into() }));
        for p in ["MSH-1", "MSH-2", "MSH-2.1"] {
            assert_eq!(run(&[set(p, "x")]), Err(Hl7Error::ReadOnlyField { path: p.into() }));
        }
        assert_eq!(run(&[clear("MSH-2")]), Err(Hl7Error::ReadOnlyField { path: "MSH-2".into() }));
        for value in ["a|b", "a\rb", "a\nb"] {
            assert_eq!(run(&[set("PID-1", value)]), Err(Hl7Error::InvalidValue { path: "PID-1".into() }));
        }
        assert!(matches!(
            apply_transforms(b"not hl7", Charset::Utf8, &[set("PID-1", "x")]),
            Err(Hl7Error::NotHl7 { .. })
        ));
        // Nothing to do: the bytes come back untouched, even if they are not HL7.
        assert_eq!(apply_transforms(b"not hl7", Charset::Utf8, &[]).unwrap(), b"not hl7");
    }

    #[test]
    fn custom_separators_are_honoured() {
        let text = "MSH#$*!@#APP#FAC#R#RF#1##ORU$R01#9#P#2.5\rPID#1##A$1*B$2";
        let out =
            apply_transforms(text.as_bytes(), Charset::Utf8, &[set("PID-3(2).3", "C"), set("PID-5.2", "N")]).unwrap();
        assert_eq!(out, b"MSH#$*!@#APP#FAC#R#RF#1##ORU$R01#9#P#2.5\rPID#1##A$1*B$2$C##$N");
        assert_eq!(
            apply_transforms(text.as_bytes(), Charset::Utf8, &[set("PID-1", "a#b")]),
            Err(Hl7Error::InvalidValue { path: "PID-1".into() })
        );
        // `|` is data in this message.
        let out = apply_transforms(text.as_bytes(), Charset::Utf8, &[set("PID-1", "a|b")]).unwrap();
        assert!(out.ends_with(b"PID#a|b##A$1*B$2"));
    }

    #[test]
    fn terminators_and_other_segments_stay_byte_identical() {
        let crlf = String::from_utf8(ADT.to_vec()).unwrap().replace('\r', "\r\n") + "\r\n";
        let out = apply_transforms(crlf.as_bytes(), Charset::Utf8, &[set("EVN-1", "A04")]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), crlf.replace("EVN|A01|", "EVN|A04|"));
        let out = apply_transforms(ADT, Charset::Utf8, &[set("PID[1]-3(2).1", "987")]).unwrap();
        assert_eq!(out, String::from_utf8(ADT.to_vec()).unwrap().replace("~123456789^", "~987^").into_bytes());
    }
}
