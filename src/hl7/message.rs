//! Reading one HL7 v2 message (or one FHS/BHS batch): its structure, its header, a summary for
//! the journal, and the values a field path designates.
//!
//! Structure: segments end with CR, LF or CRLF. If the text contains any CR, only CR (with an
//! optional LF after it) ends a segment and a lone LF is field data; otherwise LF ends segments.
//! Blank lines, and whitespace or a byte-order mark before the first segment, are skipped. A
//! segment starts with a three-character id (`PID`, `ZDS`, `PV1`) followed by the field
//! separator or the end of the line. Fields, repetitions, components and subcomponents are
//! split by `hl7-parser`, one segment at a time, with the delimiters from MSH-1/MSH-2.
//!
//! Only the header must be well formed. A line that is not a segment (free text broken across
//! lines, the cut-off tail of a truncated message) does not make the message unreadable: it is
//! kept byte for byte, invisible to [`Message::values`], and counted by
//! [`Message::skipped_lines`]. outpost is a store-and-forward gateway; judging message bodies
//! is the receiving application's job.
//!
//! Header segments (MSH, FHS, BHS) count fields as HL7 does: field 1 is the field separator
//! itself, field 2 the encoding characters, field 3 the first one after them.
//!
//! A batch (text starting with FHS or BHS) is read whole. Its [`Header`] takes, field by field,
//! the first valued of FHS-n, BHS-n and the first MSH's MSH-n for the sender and receiver
//! (n = 3..6), the file/batch control id (FHS-11, else BHS-11, else MSH-10) for the control id,
//! and everything FHS/BHS do not have (message type, processing id, version, MSH-15/16/18)
//! from the first MSH. So a batch of ORU^R01 is summarised as ORU^R01 from its sender.

use std::ops::Range;

use hl7_parser::message::{Component, Field, Repeat};

use super::escape::Delimiters;
use super::{FieldPath, Hl7Error};

/// A parsed message. Borrows the decoded text; cheap to build (one pass, no copies of values).
/// Its `Debug` output shows the segment ids only, never content, so it is safe to log.
#[derive(Clone)]
pub struct Message<'a> {
    pub(super) text: &'a str,
    pub(super) delimiters: Delimiters,
    pub(super) segments: Vec<Segment<'a>>,
    skipped_lines: usize,
    header: Header,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.segments.iter().map(|s| s.name).collect();
        f.debug_struct("Message")
            .field("segments", &ids)
            .field("skipped_lines", &self.skipped_lines)
            .finish_non_exhaustive()
    }
}

/// One segment of a message.
#[derive(Clone)]
pub(super) struct Segment<'a> {
    pub name: &'a str,
    /// Byte range in the message text, without the segment terminator.
    pub range: Range<usize>,
    /// MSH, FHS or BHS: `fields[0]` is field 2 (field 1 is the separator and has no entry).
    pub is_header: bool,
    line: &'a str,
    separators: hl7_parser::message::Separators,
    /// As split by hl7-parser, on first use (most segments of most messages are never looked
    /// into: routing reads a few fields, the journal keeps bytes); ranges are relative to
    /// `range.start`.
    fields: std::cell::OnceCell<Vec<Field<'a>>>,
}

impl<'a> Segment<'a> {
    pub fn fields(&self) -> &[Field<'a>] {
        self.fields.get_or_init(|| parse_fields(self.line, self.separators).unwrap_or_default())
    }

    /// Index into `fields` of HL7 field `n` (1-based); `None` for field 1 of a header segment,
    /// which has no entry.
    pub fn field_index(&self, n: usize) -> Option<usize> {
        match self.is_header {
            true => n.checked_sub(2),
            false => n.checked_sub(1),
        }
    }

    pub fn field(&self, n: usize) -> Option<&Field<'a>> {
        self.fields().get(self.field_index(n)?)
    }

    /// Whether `n` is field 1 or 2 of a header segment, which are the delimiters themselves.
    pub fn is_delimiter_field(&self, n: usize) -> bool {
        self.is_header && n <= 2
    }

    fn raw(&self, n: usize) -> &'a str {
        self.field(n).map_or("", |f| f.raw_value())
    }

    fn raw_component(&self, n: usize, c: usize) -> &'a str {
        self.field(n)
            .and_then(|f| f.repeats.first())
            .and_then(|r| r.components.get(c - 1))
            .map_or("", |c| c.raw_value())
    }
}

/// An owned copy of the message header. Values are raw HL7, as in the message (escape
/// sequences and component separators intact), so they can be written back into an ACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub field_separator: char,
    pub encoding_characters: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-9 raw, e.g. `ORU^R01^ORU_R01`.
    pub message_type: String,
    /// MSH-9.1.
    pub message_code: String,
    /// MSH-9.2.
    pub trigger_event: String,
    pub control_id: String,
    pub processing_id: String,
    /// MSH-12 raw (may have components; the version id is MSH-12.1).
    pub version: String,
    /// MSH-15.
    pub accept_ack_type: String,
    /// MSH-16.
    pub application_ack_type: String,
    /// MSH-18 raw (may repeat; the first repetition is the message's encoding).
    pub character_set: String,
}

/// What the journal keeps about a message besides its bytes. Values are unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// `MSH-9.1^MSH-9.2`, e.g. `ORU^R01` (just `ACK` when there is no trigger event).
    pub message_type: String,
    pub control_id: String,
    /// MSH-3.1.
    pub sending_application: String,
    /// MSH-4.1.
    pub sending_facility: String,
    /// MSH-12.1, e.g. `2.5.1`.
    pub version: String,
}

impl<'a> Message<'a> {
    /// Parses a message or an FHS/BHS batch (see the module docs for both). Requires MSH-9.1
    /// (message type) and MSH-10 (control id) to be valued, since routing and ACKs need them.
    pub fn parse(text: &'a str) -> Result<Message<'a>, Hl7Error> {
        let message = Message::read(text)?;
        if message.header.message_code.trim().is_empty() {
            return Err(Hl7Error::EmptyMessageType);
        }
        if message.header.control_id.trim().is_empty() {
            return Err(Hl7Error::EmptyControlId);
        }
        Ok(message)
    }

    /// Parses the structure and header without requiring MSH-9 or MSH-10 (replies from other
    /// systems are often sloppy there).
    pub(super) fn read(text: &'a str) -> Result<Message<'a>, Hl7Error> {
        let start = text.find(|c| !matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{feff}')).ok_or(Hl7Error::Empty)?;
        let first = &text[start..];
        let id = match first.get(..3) {
            Some(id @ ("MSH" | "FHS" | "BHS")) => header_name(id),
            _ => {
                let c = first.chars().next().unwrap_or(' ');
                return Err(Hl7Error::NotHl7 { start: super::error::Start::of(c) });
            }
        };
        let delimiters = read_delimiters(id, &first[3..])?;
        let (segments, skipped_lines) = split_segments(text, start, delimiters);
        let header = build_header(&segments, delimiters)?;
        Ok(Message { text, delimiters, segments, skipped_lines, header })
    }

    /// How many lines are not segments (see the module docs). Worth a warning in the log: the
    /// values on those lines are invisible to routing.
    pub fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }

    /// The segment ids in message order (`MSH`, `PID`, `ORC`, `OBR`, ...): with
    /// [`FieldPath::occurrence`] they tell which segments belong together (an order's ORC, OBR,
    /// TQ1 and SPM).
    pub fn segment_ids(&self) -> Vec<&'a str> {
        self.segments.iter().map(|s| s.name).collect()
    }

    /// An owned copy of the header fields (for a batch, see the module docs).
    pub fn header(&self) -> Header {
        self.header.clone()
    }

    pub fn summary(&self) -> Summary {
        let h = &self.header;
        let d = &self.delimiters;
        let first = |raw: &str| -> String {
            let rep = raw.split(d.repetition).next().unwrap_or_default();
            d.unescape(rep.split(d.component).next().unwrap_or_default()).into_owned()
        };
        let code = d.unescape(&h.message_code);
        let trigger = d.unescape(&h.trigger_event);
        let message_type = match trigger.is_empty() {
            true => code.into_owned(),
            false => format!("{code}^{trigger}"),
        };
        Summary {
            message_type,
            control_id: d.unescape(&h.control_id).into_owned(),
            sending_application: first(&h.sending_application),
            sending_facility: first(&h.sending_facility),
            version: first(&h.version),
        }
    }

    /// Every value the path designates, escape sequences decoded: any segment occurrence and
    /// any field repetition unless the path pins them. A path without a component gives each
    /// whole repetition, components and subcomponents still joined by the message's own
    /// separators (each part unescaped). Empty values are left out, so an empty field and an
    /// absent one both give an empty vec. MSH-1 and MSH-2 give the delimiters as written.
    pub fn values(&self, path: &FieldPath) -> Vec<String> {
        self.values_per_segment(path).into_iter().flatten().collect()
    }

    /// [`Message::values`], one list per occurrence of the path's segment (an empty list for an
    /// occurrence without a value): which OBX segment holds what, for rules that look at one
    /// result at a time.
    pub fn values_per_segment(&self, path: &FieldPath) -> Vec<Vec<String>> {
        self.occurrences(path).map(|segment| self.segment_values(segment, path)).collect()
    }

    fn segment_values(&self, segment: &Segment<'a>, path: &FieldPath) -> Vec<String> {
        let mut out = Vec::new();
        if segment.is_delimiter_field(path.field) {
            if path.repetition.unwrap_or(1) == 1 && path.component.is_none() {
                out.push(self.delimiter_field(segment, path.field).to_string());
            }
            return out;
        }
        let Some(field) = segment.field(path.field) else {
            return out;
        };
        let repeats: Vec<&Repeat<'_>> = match path.repetition {
            Some(r) => field.repeats.get(r.wrapping_sub(1)).into_iter().collect(),
            None => field.repeats.iter().collect(),
        };
        for repeat in repeats {
            let value = match (path.component, path.subcomponent) {
                (None, _) => self.decode_repeat(repeat),
                (Some(c), None) => match repeat.components.get(c.wrapping_sub(1)) {
                    Some(component) => self.decode_component(component),
                    None => continue,
                },
                (Some(c), Some(s)) => {
                    match repeat.components.get(c.wrapping_sub(1)).and_then(|c| c.subcomponents.get(s.wrapping_sub(1)))
                    {
                        Some(sub) => self.delimiters.unescape(sub.value).into_owned(),
                        None => continue,
                    }
                }
            };
            if !value.is_empty() {
                out.push(value);
            }
        }
        out
    }

    /// The segments the path names: its pinned occurrence, or every one.
    pub(super) fn occurrences<'m>(&'m self, path: &FieldPath) -> impl Iterator<Item = &'m Segment<'a>> + 'm {
        let name = path.segment.clone();
        let pinned = path.occurrence;
        self.segments
            .iter()
            .filter(move |s| s.name == name)
            .enumerate()
            .filter(move |(i, _)| pinned.is_none_or(|o| o == i + 1))
            .map(|(_, s)| s)
    }

    /// Field 1 or 2 of a header segment, as written.
    pub(super) fn delimiter_field(&self, segment: &Segment<'a>, n: usize) -> &'a str {
        let line = &self.text[segment.range.clone()];
        match n {
            1 => line.get(3..4).unwrap_or_default(),
            _ => segment.fields().first().map_or("", |f| f.raw_value()),
        }
    }

    fn decode_repeat(&self, repeat: &Repeat<'_>) -> String {
        let parts: Vec<String> = repeat.components.iter().map(|c| self.decode_component(c)).collect();
        parts.join(&self.delimiters.component.to_string())
    }

    fn decode_component(&self, component: &Component<'_>) -> String {
        let parts: Vec<_> = component.subcomponents.iter().map(|s| self.delimiters.unescape(s.value)).collect();
        parts.join(&self.delimiters.subcomponent.to_string())
    }
}

fn header_name(id: &str) -> &'static str {
    match id {
        "FHS" => "FHS",
        "BHS" => "BHS",
        _ => "MSH",
    }
}

/// Reads MSH-1 and MSH-2 from the text right after the header segment's id.
fn read_delimiters(segment: &'static str, after_id: &str) -> Result<Delimiters, Hl7Error> {
    let mut chars = after_id.chars();
    let field = chars.next().filter(|c| c.is_ascii_punctuation()).ok_or(Hl7Error::FieldSeparator { segment })?;
    let rest = chars.as_str();
    let encoding = rest.split([field, '\r', '\n']).next().unwrap_or_default();
    if encoding.is_empty() {
        return Err(Hl7Error::MissingEncodingCharacters { segment });
    }
    let bad = Hl7Error::BadEncodingCharacters { segment };
    let count = encoding.chars().count();
    if !(4..=5).contains(&count) || !encoding.chars().all(|c| c.is_ascii_punctuation()) {
        return Err(bad);
    }
    let distinct = encoding.chars().enumerate().all(|(i, c)| !encoding.chars().skip(i + 1).any(|o| o == c));
    if !distinct {
        return Err(bad);
    }
    Delimiters::new(field, encoding).ok_or(bad)
}

/// Splits `text[from..]` into segments (ranges relative to `text`), and counts the lines that
/// are not segments.
fn split_segments(text: &str, from: usize, delimiters: Delimiters) -> (Vec<Segment<'_>>, usize) {
    let terminator = if text.contains('\r') { '\r' } else { '\n' };
    let separators = delimiters.to_parser();
    let mut segments = Vec::new();
    let mut skipped = 0;
    let mut offset = from;
    for piece in text[from..].split(terminator) {
        let piece_start = offset;
        offset += piece.len() + 1;
        // After a CR, an LF belongs to the terminator (CRLF).
        let line = piece.trim_start_matches('\n');
        if line.trim().is_empty() {
            continue;
        }
        let start = piece_start + (piece.len() - line.len());
        match segment_id(line, delimiters) {
            Some(name) => segments.push(Segment {
                name,
                range: start..start + line.len(),
                is_header: matches!(name, "MSH" | "FHS" | "BHS"),
                line,
                separators,
                fields: std::cell::OnceCell::new(),
            }),
            None => skipped += 1,
        }
    }
    (segments, skipped)
}

/// A segment's id; `None` if the line is not a segment (an id, then the field separator or
/// the end of the line).
fn segment_id(line: &str, delimiters: Delimiters) -> Option<&str> {
    let id = line.get(..3).filter(|id| is_segment_id(id))?;
    match line[3..].chars().next() {
        None => Some(id),
        Some(c) if c == delimiters.field => Some(id),
        Some(_) => None,
    }
}

/// A segment's fields, split by hl7-parser; `None` if it cannot split the whole line.
fn parse_fields<'a>(line: &'a str, separators: hl7_parser::message::Separators) -> Option<Vec<Field<'a>>> {
    if line.len() <= 3 {
        return Some(Vec::new());
    }
    let parsed = hl7_parser::parser::parse_segment_with_separators(line, separators).ok()?;
    let consumed = parsed.fields.last().map_or(3, |f| f.range.end);
    (consumed == line.len()).then_some(parsed.fields)
}

fn is_segment_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 3 && b[0].is_ascii_uppercase() && b[1..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn build_header(segments: &[Segment<'_>], delimiters: Delimiters) -> Result<Header, Hl7Error> {
    let first = segments.first().ok_or(Hl7Error::Empty)?;
    let msh = segments.iter().find(|s| s.name == "MSH").ok_or(Hl7Error::EmptyBatch)?;
    // For a plain message `leading` is just the MSH; for a batch, FHS and/or BHS, then the MSH.
    let leading: Vec<&Segment<'_>> =
        segments.iter().take_while(|s| s.name == "FHS" || s.name == "BHS").chain(std::iter::once(msh)).collect();
    let first_valued = |n: usize| -> String {
        leading.iter().map(|s| s.raw(n)).find(|v| !v.is_empty()).unwrap_or_default().to_string()
    };
    let control_id = match first.name {
        "MSH" => msh.raw(10).to_string(),
        _ => leading
            .iter()
            .map(|s| if s.name == "MSH" { s.raw(10) } else { s.raw(11) })
            .find(|v| !v.trim().is_empty())
            .unwrap_or_default()
            .to_string(),
    };
    Ok(Header {
        field_separator: delimiters.field,
        encoding_characters: delimiters.encoding_characters(),
        sending_application: first_valued(3),
        sending_facility: first_valued(4),
        receiving_application: first_valued(5),
        receiving_facility: first_valued(6),
        message_type: msh.raw(9).to_string(),
        message_code: msh.raw_component(9, 1).to_string(),
        trigger_event: msh.raw_component(9, 2).to_string(),
        control_id,
        processing_id: msh.raw(11).to_string(),
        version: msh.raw(12).to_string(),
        accept_ack_type: msh.raw(15).to_string(),
        application_ack_type: msh.raw(16).to_string(),
        character_set: msh.raw(18).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Start;

    const ADT: &str = include_str!("testdata/adt-a01.hl7");
    const ORU: &str = include_str!("testdata/lab-oru-r01.hl7");
    const CHEM: &str = include_str!("testdata/chem-report-8859-1.hl7");
    const BATCH: &str = include_str!("testdata/batch-fhs-bhs.hl7");

    fn path(p: &str) -> FieldPath {
        p.parse().unwrap()
    }

    fn summary(message_type: &str, control_id: &str, app: &str, facility: &str, version: &str) -> Summary {
        Summary {
            message_type: message_type.into(),
            control_id: control_id.into(),
            sending_application: app.into(),
            sending_facility: facility.into(),
            version: version.into(),
        }
    }

    #[test]
    fn every_sample_parses_with_the_right_summary() {
        let cases = [
            (ADT, summary("ADT^A01", "MSG00001", "ADT1", "GOOD HEALTH HOSPITAL", "2.5.1")),
            (ORU, summary("ORU^R01", "182", "SomeSystem", "", "2.5")),
            // MSH-3 is `^OLIS^X500`: its first component is empty.
            (CHEM, summary("ERP^Z99", "bf3dd577-2108-47ad-abd2-4f06284f3b55", "", "", "2.3.1")),
            // FHS-3 names the sender; FHS-4, BHS-4 and the FHS/BHS-11 control ids are empty.
            (BATCH, summary("ADT^A01", "24553", "1231", "General Hospital", "2.4")),
        ];
        for (text, expected) in cases {
            let message = Message::parse(text).unwrap();
            assert_eq!(message.summary(), expected);
        }
    }

    #[test]
    fn header_is_raw() {
        let h = Message::parse(CHEM).unwrap().header();
        assert_eq!(h.field_separator, '|');
        assert_eq!(h.encoding_characters, "^~\\&");
        assert_eq!(h.sending_application, "^OLIS^X500");
        assert_eq!(h.receiving_application, "^2.16.840.1.113883.3.59.3:0947^ISO");
        assert_eq!(h.message_type, "ERP^Z99^ERP_R09");
        assert_eq!((h.message_code.as_str(), h.trigger_event.as_str()), ("ERP", "Z99"));
        assert_eq!((h.processing_id.as_str(), h.version.as_str()), ("T", "2.3.1"));
        assert_eq!(h.character_set, "8859/1");
        let h = Message::parse(BATCH).unwrap().header();
        assert_eq!((h.receiving_application.as_str(), h.processing_id.as_str()), ("ADT", "P"));
    }

    #[test]
    fn values_over_repetitions_and_occurrences() {
        let adt = Message::parse(ADT).unwrap();
        assert_eq!(
            adt.values(&path("PID-3")),
            ["PATID1234^5^M11^ADT1^MR^GOOD HEALTH HOSPITAL", "123456789^^^USSSA^SS"]
        );
        assert_eq!(adt.values(&path("PID-3.1")), ["PATID1234", "123456789"]);
        assert_eq!(adt.values(&path("PID-3(2).5")), ["SS"]);
        assert_eq!(adt.values(&path("PID-3(3)")), Vec::<String>::new());
        assert_eq!(adt.values(&path("PID[2]-3")), Vec::<String>::new());
        assert_eq!(adt.values(&path("ZZZ-1")), Vec::<String>::new());
        assert_eq!(adt.values(&path("MSH-1")), ["|"]);
        assert_eq!(adt.values(&path("MSH-2")), ["^~\\&"]);
        assert_eq!(adt.values(&path("MSH-3")), ["ADT1"]);
        assert_eq!(adt.values(&path("MSH-9.2")), ["A01"]);

        let oru = Message::parse(ORU).unwrap();
        // Empty OBX-5 values (OBX 1 and 3 of the first group) are left out.
        assert_eq!(oru.values(&path("OBX-5")), ["4.06", "40.1", "221", "72", "2", "20", "6", "0"]);
        assert_eq!(oru.values(&path("OBX[2]-5")), ["4.06"]);
        assert_eq!(oru.values(&path("OBX[6]-3.2")), ["NEUTROPHILS/100 LEUKOCYTES"]);
        assert_eq!(oru.values(&path("OBR-4.1")), ["24317-0", "26464-8"]);

        let batch = Message::parse(BATCH).unwrap();
        assert_eq!(batch.values(&path("MSH-10")), ["24553", "20171023134421"]);
        assert_eq!(batch.values(&path("OBX-4")), ["xMSHx", "xMSH", "MSH"]);
        assert_eq!(batch.values(&path("FHS-3")), ["1231"]);
        assert_eq!(batch.values(&path("BHS-2")), ["^~\\&"]);
    }

    #[test]
    fn escapes_are_decoded_per_value() {
        let text = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rNTE|1||Fish \\T\\ Chips \\F\\ 50\\E\\ \\S\\^two&2\\.br\\";
        let m = Message::parse(text).unwrap();
        assert_eq!(m.values(&path("NTE-3.1")), ["Fish & Chips | 50\\ ^"]);
        assert_eq!(m.values(&path("NTE-3.2.1")), ["two"]);
        assert_eq!(m.values(&path("NTE-3.2")), ["two&2\\.br\\"]);
        assert_eq!(m.values(&path("NTE-3")), ["Fish & Chips | 50\\ ^^two&2\\.br\\"]);
    }

    #[test]
    fn cr_lf_and_crlf_read_alike() {
        let cr = Message::parse(ADT).unwrap();
        for text in [
            ADT.replace('\r', "\n"),
            ADT.replace('\r', "\r\n"),
            format!("\r\n{ADT}\r\n\r\n"),
            format!("\u{feff} \n{}", ADT.replace('\r', "\n\n")),
        ] {
            let m = Message::parse(&text).unwrap();
            assert_eq!(m.summary(), cr.summary());
            assert_eq!(m.values(&path("PV1-3.1")), ["2000"]);
            assert_eq!(m.segments.len(), cr.segments.len());
        }
    }

    #[test]
    fn a_lone_lf_in_a_cr_message_is_data() {
        let m = Message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rNTE|1||one\ntwo\r").unwrap();
        assert_eq!(m.values(&path("NTE-3")), ["one\ntwo"]);
    }

    #[test]
    fn custom_separators_and_truncation_character() {
        let m = Message::parse("MSH#$*!@#APP$X#FAC#R#RF#1##ORU$R01#9#P#2.5\rPID#1##A$1*B$2#N!F!x").unwrap();
        assert_eq!(m.summary(), summary("ORU^R01", "9", "APP", "FAC", "2.5"));
        assert_eq!(m.values(&path("PID-3.1")), ["A", "B"]);
        assert_eq!(m.values(&path("PID-3")), ["A$1", "B$2"]);
        assert_eq!(m.values(&path("PID-4")), ["N#x"]);
        let m = Message::parse("MSH|^~\\&#|APP|FAC|||1||ADT^A01|5|P|2.7").unwrap();
        assert_eq!(m.header().encoding_characters, "^~\\&#");
        assert_eq!(m.summary().sending_application, "APP");
    }

    #[test]
    fn debug_output_has_no_content() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(
            format!("{m:?}"),
            r#"Message { segments: ["MSH", "EVN", "PID", "NK1", "PV1"], skipped_lines: 0, .. }"#
        );
    }

    #[test]
    fn header_only_segments_and_trailing_fields() {
        let m = Message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5|\rEVN\rPID|||").unwrap();
        assert_eq!(m.values(&path("EVN-1")), Vec::<String>::new());
        assert_eq!(m.segments[1].name, "EVN");
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let cases: [(&str, Hl7Error); 13] = [
            ("", Hl7Error::Empty),
            ("\r\n  \r", Hl7Error::Empty),
            ("junk", Hl7Error::NotHl7 { start: Start::Text }),
            ("\u{b}MSH|^~\\&|", Hl7Error::NotHl7 { start: Start::MllpStart }),
            ("\u{1c}\r", Hl7Error::NotHl7 { start: Start::Control(0x1c) }),
            ("MSH", Hl7Error::FieldSeparator { segment: "MSH" }),
            ("MSHA^~\\&", Hl7Error::FieldSeparator { segment: "MSH" }),
            ("MSH|", Hl7Error::MissingEncodingCharacters { segment: "MSH" }),
            ("MSH|^~|A", Hl7Error::BadEncodingCharacters { segment: "MSH" }),
            ("MSH|^^\\&|A", Hl7Error::BadEncodingCharacters { segment: "MSH" }),
            ("MSH|^~\\&|A|B|C|D|1||ADT^A01||P|2.5", Hl7Error::EmptyControlId),
            ("MSH|^~\\&|A|B|C|D|1||^A01|1|P|2.5", Hl7Error::EmptyMessageType),
            ("FHS|^~\\&|A\rBHS|^~\\&\rBTS|0\rFTS|1", Hl7Error::EmptyBatch),
        ];
        for (text, expected) in cases {
            assert_eq!(Message::parse(text).unwrap_err(), expected, "{text:?}");
        }
        // Not a byte of the message in the words: they reach events, escalations and central.
        let words = Message::parse("DOE^JOHN|1970").unwrap_err().to_string();
        assert!(!words.contains("DOE") && !words.contains('J'), "{words}");
        assert!(words.contains("other text"), "{words}");
    }

    #[test]
    fn lines_that_are_not_segments_are_kept_but_not_read() {
        let valid = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rEVN|A01";
        for bad in ["pid|1", "P1|x", "PID-1", "PIDX|1", " PID|1", "\u{1c}", "XXXXXXXX"] {
            let text = format!("{valid}\r\r{bad}\rPV1|1|I");
            let m = Message::parse(&text).unwrap();
            assert_eq!(m.skipped_lines(), 1, "{bad:?}");
            assert_eq!(m.values(&path("PV1-2")), ["I"]);
            assert_eq!(m.values(&path("PID-1")), Vec::<String>::new());
        }
        // A message cut short (e.g. the head of an oversized one) still has its header.
        let m = Message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|BIG-1|P|2.5\rPID|1||XXXXXX\rXX").unwrap();
        assert_eq!(m.header().control_id, "BIG-1");
        assert_eq!(m.skipped_lines(), 1);
    }

    #[test]
    fn errors_never_quote_content() {
        let phi = "DOEJOHN";
        let texts = [
            format!("{phi}|^~\\&"),
            format!("MSH|^~\\&|{phi}|B|C|D|1||ADT^A01||P|2.5"),
            format!("MSH|^~\\&|{phi}|B|C|D|1||^A01|1|P|2.5"),
            format!("MSH|{phi}"),
        ];
        for text in texts {
            let message = Message::parse(&text).unwrap_err().to_string();
            assert!(!message.contains("JOHN"), "{message}");
        }
    }
}
