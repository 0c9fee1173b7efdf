//! A wire capture (or a file of records) as a report a field tech can read: what came on the
//! line (ENQ, frames with their numbers, ends and checksums, replies, stray bytes), the
//! messages their text holds, each record's type and field count, and which [`Quirks`] the
//! instrument needs. For `outpost astm decode FILE`.
//!
//! Frames are read leniently, so that one report shows everything wrong at once: any line end
//! (or none: captures are often stored one frame per line), text up to 64 KiB, an unnumbered
//! frame recognised as such. What a live link would refuse is reported per frame and in
//! [`Report::needs`]. The text of valid frames (retransmissions once) is cut into messages.
//!
//! Patient data is masked unless asked for: [`Report`]'s `Display` and [`Report::render`] with
//! `show_phi` false print a masked field as `***(n)` (its length): P from P.6 on (names, birth
//! date, address…), R.4 (the value) and R.11 (operator), C.4 (comment text), M and S from field
//! 3 on, O's clinical and people fields, Q.9–Q.12, H.4 and H.11, every field after the first of
//! a record of unknown type. Ids, test codes, flags, units and dates stay readable.
//!
//! [`Quirks`]: super::Quirks

use std::fmt;

use super::classify::{NotAstm, classify};
use super::ctrl::{ACK, CR, ENQ, EOT, LF, NAK, STX};
use super::frame::{
    Frame, FrameEnd, FrameOptions, FrameParser, FrameProblem, LONG_TEXT_MAX, LineEnd, MAX_TEXT, Step, Trailer,
};
use super::records::{Delimiters, Message, RecordError, Summary};
use super::split::split_messages;

/// One thing seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireItem {
    Enq {
        offset: usize,
    },
    Eot {
        offset: usize,
    },
    Ack {
        offset: usize,
    },
    Nak {
        offset: usize,
    },
    Frame(FrameReport),
    /// A frame broken off by STX, ENQ or EOT before its checksum.
    Cut {
        offset: usize,
        bytes: usize,
    },
    /// Bytes outside frames (not shown).
    Stray {
        offset: usize,
        bytes: usize,
    },
}

/// One frame as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameReport {
    /// Of its STX in the capture.
    pub offset: usize,
    pub number: Option<u8>,
    pub end: Option<FrameEnd>,
    pub checksum_given: Option<u8>,
    pub checksum_computed: u8,
    pub text_len: usize,
    pub trailer: Trailer,
    /// What makes it invalid even read leniently (checksum, restricted character, no end…).
    pub problem: Option<FrameProblem>,
    /// Valid when read without a frame number (quirk `no_frame_numbers`).
    pub unnumbered: bool,
    /// A final frame whose text does not end with CR (quirk `missing_cr_before_etx`).
    pub record_cr_missing: bool,
    /// Same number and text as the frame accepted before it: counted once.
    pub retransmission: bool,
}

/// A quirk a live link would need to read this capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    LineEnd(LineEnd),
    /// Frames end after their checksum with no CR LF at all: a capture stored one frame per
    /// line, or an instrument no quirk covers.
    NoLineEnd,
    LongFrames,
    NoFrameNumbers,
    MissingCrBeforeEtx,
    /// A session ended after an ETB frame (quirk `no_etx`, or an aborted transfer).
    NoEtx,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Need::LineEnd(LineEnd::Lf) => "line_end = lf (frames end with LF, no CR)",
            Need::LineEnd(LineEnd::CrCr) => "line_end = cr_cr (frames end with CR CR)",
            Need::LineEnd(LineEnd::CrLf) => "line_end = cr_lf",
            Need::NoLineEnd => {
                "no CR LF after the checksums (a capture stored one frame per line? on a live link no quirk covers it)"
            }
            Need::LongFrames => "long_frames (frames of more than 240 characters)",
            Need::NoFrameNumbers => "no_frame_numbers",
            Need::MissingCrBeforeEtx => "missing_cr_before_etx (records end at ETX without CR)",
            Need::NoEtx => "no_etx (a session ends after an ETB frame; or the instrument aborted)",
        })
    }
}

/// One record of a message.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordReport {
    /// Field 1 (`R`), shown as text.
    pub type_id: String,
    pub fields: usize,
    text: Vec<u8>,
    delimiters: Delimiters,
}

impl fmt::Debug for RecordReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordReport").field("type_id", &self.type_id).field("fields", &self.fields).finish()
    }
}

/// One H…L message of the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReport {
    pub complete: bool,
    pub records: Vec<RecordReport>,
    pub summary: Option<Summary>,
    /// Why it could not be read as a message (no header…); its records are still listed.
    pub error: Option<RecordError>,
}

/// A capture, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub bytes: usize,
    /// In capture order; empty for records at rest.
    pub wire: Vec<WireItem>,
    pub messages: Vec<MessageReport>,
    pub needs: Vec<Need>,
}

/// What [`walk`] found.
pub(crate) struct Walk {
    pub items: Vec<WireItem>,
    /// The text of the valid frames, retransmissions once, a CR added where a final frame's
    /// record had none.
    pub text: Vec<u8>,
    pub needs: Vec<Need>,
}

/// Reads a capture's bytes as wire traffic.
pub(crate) fn walk(bytes: &[u8]) -> Walk {
    let mut w = Walk { items: Vec::new(), text: Vec::new(), needs: Vec::new() };
    let mut stray: Option<(usize, usize)> = None;
    let mut last: Option<(Option<u8>, Vec<u8>)> = None;
    let mut after_etb = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !matches!(b, ENQ | EOT | ACK | NAK | STX) {
            stray.get_or_insert((i, 0)).1 += 1;
            i += 1;
            continue;
        }
        if let Some((offset, n)) = stray.take() {
            w.items.push(WireItem::Stray { offset, bytes: n });
        }
        let offset = i;
        i += 1;
        match b {
            ENQ => {
                w.items.push(WireItem::Enq { offset });
                last = None;
            }
            EOT => {
                w.items.push(WireItem::Eot { offset });
                if after_etb {
                    need(&mut w.needs, Need::NoEtx);
                }
                after_etb = false;
            }
            ACK => w.items.push(WireItem::Ack { offset }),
            NAK => w.items.push(WireItem::Nak { offset }),
            _ => {
                let (frame, next) = read_frame(bytes, i, true);
                let Some(frame) = frame else {
                    w.items.push(WireItem::Cut { offset, bytes: next - i });
                    i = next;
                    continue;
                };
                let mut report = FrameReport {
                    offset,
                    number: frame.number,
                    end: frame.end,
                    checksum_given: frame.checksum_given,
                    checksum_computed: frame.checksum_computed,
                    text_len: frame.text_len,
                    trailer: frame.trailer,
                    problem: frame.problem,
                    unnumbered: false,
                    record_cr_missing: false,
                    retransmission: false,
                };
                let mut frame = frame;
                if matches!(frame.problem, Some(FrameProblem::BadNumber | FrameProblem::BadChecksum { .. }))
                    && let (Some(f), _) = read_frame(&bytes[..next], i, false)
                    && f.problem.is_none()
                {
                    report.unnumbered = true;
                    report.problem = None;
                    report.number = None;
                    report.checksum_computed = f.checksum_computed;
                    report.text_len = f.text_len;
                    frame = f;
                    need(&mut w.needs, Need::NoFrameNumbers);
                }
                i = next;
                if report.problem.is_none() {
                    note_needs(&mut w.needs, &report);
                    let key = (frame.number, frame.text.clone());
                    if last.as_ref() == Some(&key) && !report.unnumbered {
                        report.retransmission = true;
                    } else {
                        let end = frame.end.unwrap_or(FrameEnd::Final);
                        w.text.extend_from_slice(&frame.text);
                        if end == FrameEnd::Final && frame.text.last() != Some(&CR) {
                            report.record_cr_missing = true;
                            need(&mut w.needs, Need::MissingCrBeforeEtx);
                            w.text.push(CR);
                        }
                        after_etb = end == FrameEnd::Intermediate;
                        last = Some(key);
                    }
                }
                w.items.push(WireItem::Frame(report));
            }
        }
    }
    if let Some((offset, n)) = stray {
        w.items.push(WireItem::Stray { offset, bytes: n });
    }
    w
}

/// A frame starting after the STX at `from`; `None` if cut off. Returns where reading goes on.
fn read_frame(bytes: &[u8], from: usize, numbered: bool) -> (Option<Frame>, usize) {
    let opts = FrameOptions { numbered, line_end: LineEnd::CrLf, max_text: LONG_TEXT_MAX, any_line_end: true };
    let mut parser = FrameParser::new(opts);
    let mut j = from;
    while j < bytes.len() {
        match parser.push(bytes[j]) {
            Step::More => j += 1,
            Step::Done(f) => return (Some(f), j + 1),
            Step::DoneBefore(f) => return (Some(f), j),
            Step::Cut { .. } => return (None, j),
        }
    }
    (Some(parser.finish()), j)
}

fn note_needs(needs: &mut Vec<Need>, f: &FrameReport) {
    match f.trailer {
        Trailer::Lf => need(needs, Need::LineEnd(LineEnd::Lf)),
        Trailer::CrCr => need(needs, Need::LineEnd(LineEnd::CrCr)),
        Trailer::None | Trailer::Cr | Trailer::Other => need(needs, Need::NoLineEnd),
        Trailer::CrLf => {}
    }
    if f.text_len > MAX_TEXT {
        need(needs, Need::LongFrames);
    }
}

fn need(needs: &mut Vec<Need>, n: Need) {
    if !needs.contains(&n) {
        needs.push(n);
    }
}

/// Decodes a capture: wire traffic (`.raw`: ENQ, frames, replies, EOT; or one frame per line),
/// or records at rest. Refuses what is not ASTM, saying why.
pub fn decode(capture: &[u8]) -> Result<Report, NotAstm> {
    let shape = classify(capture)?;
    let (wire, text, needs) = match shape {
        super::Shape::Framed { .. } => {
            let w = walk(capture);
            (w.items, w.text, w.needs)
        }
        super::Shape::Records => (Vec::new(), capture.to_vec(), Vec::new()),
    };
    let messages = split_messages(&text).into_iter().map(|s| message_report(&text[s.range], s.complete)).collect();
    Ok(Report { bytes: capture.len(), wire, messages, needs })
}

fn message_report(bytes: &[u8], complete: bool) -> MessageReport {
    let parsed = Message::parse(bytes);
    let delimiters = parsed.as_ref().map(|m| m.delimiters()).unwrap_or(Delimiters::STANDARD);
    let records = bytes
        .split(|&b| b == CR || b == LF)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let record = super::Record::new(r, delimiters);
            RecordReport {
                type_id: String::from_utf8_lossy(record.type_id()).into_owned(),
                fields: record.field_count(),
                text: r.to_vec(),
                delimiters,
            }
        })
        .collect();
    let (summary, error) = match parsed {
        Ok(m) => (Some(m.summary()), None),
        Err(e) => (None, Some(e)),
    };
    MessageReport { complete, records, summary, error }
}

impl Report {
    /// The report as text; patient data masked unless `show_phi`.
    pub fn render(&self, show_phi: bool) -> Rendered<'_> {
        Rendered { report: self, show_phi }
    }

    pub fn frames(&self) -> impl Iterator<Item = &FrameReport> {
        self.wire.iter().filter_map(|i| match i {
            WireItem::Frame(f) => Some(f),
            _ => None,
        })
    }
}

impl fmt::Display for Report {
    /// Masked: see the module documentation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(false).fmt(f)
    }
}

/// [`Report::render`]'s result.
pub struct Rendered<'a> {
    report: &'a Report,
    show_phi: bool,
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        let count = |pred: fn(&WireItem) -> bool| r.wire.iter().filter(|i| pred(i)).count();
        let frames: Vec<&FrameReport> = r.frames().collect();
        let valid = frames.iter().filter(|f| f.problem.is_none()).count();
        let repeats = frames.iter().filter(|f| f.retransmission).count();
        if r.wire.is_empty() {
            writeln!(f, "ASTM records (no framing): {} bytes, {} message(s)", r.bytes, r.messages.len())?;
        } else {
            let stray: usize = r
                .wire
                .iter()
                .map(|i| match i {
                    WireItem::Stray { bytes, .. } => *bytes,
                    _ => 0,
                })
                .sum();
            writeln!(
                f,
                "ASTM capture: {} bytes; {} frame(s), {valid} valid, {repeats} retransmitted; ENQ {}, EOT {}, ACK {}, \
                 NAK {}; {stray} stray byte(s); {} message(s)",
                r.bytes,
                frames.len(),
                count(|i| matches!(i, WireItem::Enq { .. })),
                count(|i| matches!(i, WireItem::Eot { .. })),
                count(|i| matches!(i, WireItem::Ack { .. })),
                count(|i| matches!(i, WireItem::Nak { .. })),
                r.messages.len(),
            )?;
        }
        if r.needs.is_empty() {
            writeln!(f, "quirks needed: none")?;
        } else {
            writeln!(f, "quirks needed:")?;
            for n in &r.needs {
                writeln!(f, "  {n}")?;
            }
        }
        if !r.wire.is_empty() {
            writeln!(f, "wire:")?;
        }
        for item in &r.wire {
            match item {
                WireItem::Enq { offset } => writeln!(f, "  {offset:>7}  ENQ")?,
                WireItem::Eot { offset } => writeln!(f, "  {offset:>7}  EOT")?,
                WireItem::Ack { offset } => writeln!(f, "  {offset:>7}  ACK")?,
                WireItem::Nak { offset } => writeln!(f, "  {offset:>7}  NAK")?,
                WireItem::Cut { offset, bytes } => {
                    writeln!(f, "  {offset:>7}  frame cut off by STX/ENQ/EOT after {bytes} bytes")?
                }
                WireItem::Stray { offset, bytes } => writeln!(f, "  {offset:>7}  {bytes} stray byte(s)")?,
                WireItem::Frame(fr) => write_frame(f, fr)?,
            }
        }
        let mut masked_any = false;
        for (i, m) in r.messages.iter().enumerate() {
            let mut kinds: Vec<(String, usize)> = Vec::new();
            for rec in &m.records {
                match kinds.iter_mut().find(|(k, _)| *k == rec.type_id) {
                    Some((_, n)) => *n += 1,
                    None => kinds.push((rec.type_id.clone(), 1)),
                }
            }
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{} {n}", shown_type(k))).collect();
            writeln!(
                f,
                "message {} of {}: {}, {} record(s) ({})",
                i + 1,
                r.messages.len(),
                if m.complete { "complete (H…L)" } else { "incomplete (no L record)" },
                m.records.len(),
                kinds.join(", ")
            )?;
            if let Some(s) = &m.summary {
                writeln!(f, "  {s}")?;
            }
            if let Some(e) = &m.error {
                writeln!(f, "  not readable as a message: {e}")?;
            }
            for rec in &m.records {
                let (line, masked) = record_line(rec, self.show_phi);
                masked_any |= masked;
                writeln!(f, "  {:<2} {:>3} fields  {line}", shown_type(&rec.type_id), rec.fields)?;
            }
        }
        if masked_any {
            writeln!(f, "(patient data masked as ***(length); show it with --show-phi (outpost astm decode))")?;
        }
        Ok(())
    }
}

fn write_frame(f: &mut fmt::Formatter<'_>, fr: &FrameReport) -> fmt::Result {
    let number = match (fr.unnumbered, fr.number) {
        (true, _) => "-".to_string(),
        (false, Some(n)) => n.to_string(),
        (false, None) => "?".to_string(),
    };
    let end = fr.end.map_or("---", FrameEnd::name);
    let given = fr.checksum_given.map_or("??".to_string(), |g| format!("{g:02X}"));
    write!(f, "  {:>7}  frame {number} {end} {:>5} chars  checksum {given}", fr.offset, fr.text_len)?;
    match fr.problem {
        None => write!(f, " ok")?,
        Some(p) => write!(f, " BAD: {p}")?,
    }
    if fr.trailer != Trailer::CrLf {
        write!(f, "; ends with {}", fr.trailer.name())?;
    }
    if fr.unnumbered {
        write!(f, "; no frame number")?;
    }
    if fr.text_len > MAX_TEXT {
        write!(f, "; over {MAX_TEXT} chars")?;
    }
    if fr.record_cr_missing {
        write!(f, "; no CR before ETX")?;
    }
    if fr.retransmission {
        write!(f, "; retransmission (counted once)")?;
    }
    writeln!(f)
}

/// A record type as text, control characters shown by code.
fn shown_type(t: &str) -> String {
    visible(t.as_bytes())
}

/// Whether field `n` (1-based) of a record of type `t` is masked.
fn is_masked(t: &str, n: usize) -> bool {
    match t {
        "H" => matches!(n, 4 | 11),
        "P" => n >= 6,
        "O" => !matches!(n, 1..=10 | 12 | 15 | 16 | 23..=26),
        "R" => matches!(n, 4 | 11),
        "C" => n == 4,
        "M" | "S" => n >= 3,
        "Q" => matches!(n, 9..=12),
        "L" => false,
        _ => n >= 2,
    }
}

/// The record as a line: masked fields as `***(n)`; whether any was masked.
fn record_line(rec: &RecordReport, show_phi: bool) -> (String, bool) {
    if show_phi {
        return (visible(&rec.text), false);
    }
    let d = rec.delimiters.field;
    let mut masked = false;
    let fields: Vec<String> = rec
        .text
        .split(|&b| b == d)
        .enumerate()
        .map(|(i, field)| {
            if !field.is_empty() && is_masked(&rec.type_id, i + 1) {
                masked = true;
                format!("***({})", field.len())
            } else {
                visible(field)
            }
        })
        .collect();
    (fields.join(&(d as char).to_string()), masked)
}

/// Text with control characters (and bytes that are not UTF-8) shown as `<XX>`.
fn visible(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("<{:02X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astm::frame::encode_frame;

    fn capture() -> Vec<u8> {
        [
            b"\x05".as_slice(),
            &encode_frame(1, b"H|\\^&|||X^1|||||||P\r", FrameEnd::Final),
            &encode_frame(2, b"P|1||PID7||Doe^Jane||19700101|F\r", FrameEnd::Final),
            &encode_frame(2, b"P|1||PID7||Doe^Jane||19700101|F\r", FrameEnd::Final),
            &encode_frame(3, b"O|1|S42||^^^GLU\r", FrameEnd::Final),
            &encode_frame(4, b"R|1|^^^GLU|5.5|mmol/L||H||F||Op Smith\r", FrameEnd::Final),
            &encode_frame(5, b"C|1|I|call Dr Who|G\r", FrameEnd::Final),
            &encode_frame(6, b"L|1|N\r", FrameEnd::Final),
            b"\x04",
        ]
        .concat()
    }

    #[test]
    fn report_masks_phi_unless_asked() {
        let report = decode(&capture()).unwrap();
        assert_eq!(report.frames().count(), 7);
        assert_eq!(report.frames().filter(|f| f.retransmission).count(), 1);
        assert_eq!(report.messages.len(), 1);
        assert_eq!(report.messages[0].records.len(), 6);
        assert!(report.needs.is_empty());
        let masked = report.to_string();
        for phi in ["Doe", "Jane", "19700101", "5.5", "Smith", "Who"] {
            assert!(!masked.contains(phi), "{phi} in\n{masked}");
        }
        for shown in ["S42", "GLU", "mmol/L", "PID7", "***(8)", "frame 2 ETX", "retransmission"] {
            assert!(masked.contains(shown), "{shown} not in\n{masked}");
        }
        let full = report.render(true).to_string();
        assert!(full.contains("Doe^Jane") && full.contains("|5.5|"), "{full}");
    }

    #[test]
    fn lenient_reading_says_which_quirks_are_needed() {
        let frame = encode_frame(1, b"H|\\^&\rL|1|N", FrameEnd::Final);
        let lf_only = [&frame[..frame.len() - 2], b"\n"].concat();
        let report = decode(&lf_only).unwrap();
        assert_eq!(report.needs, [Need::LineEnd(LineEnd::Lf), Need::MissingCrBeforeEtx]);
        assert!(report.messages[0].complete);
        let text = report.to_string();
        assert!(text.contains("line_end = lf") && text.contains("no CR before ETX"), "{text}");
    }

    #[test]
    fn records_at_rest_and_bad_frames() {
        let report = decode(b"H|\\^&\rR|1|^^^A|9\rL|1|N\r").unwrap();
        assert!(report.wire.is_empty());
        assert_eq!(report.messages[0].summary.as_ref().map(|s| s.results), Some(1));
        let mut bad = encode_frame(1, b"H|\\^&\rL|1|N\r", FrameEnd::Final);
        let good = bad.clone();
        let n = bad.len();
        bad[n - 3] = b'0';
        let report = decode(&[bad, good].concat()).unwrap();
        let problems: Vec<_> = report.frames().map(|f| f.problem.is_some()).collect();
        assert_eq!(problems, [true, false]);
        assert!(report.to_string().contains("BAD: checksum"));
        assert_eq!(report.messages.len(), 1);
    }
}
