//! Splitting the bytes of a file into HL7 v2 messages, sans IO.
//!
//! A file dropped into a folder may hold one message, several one after another, an HL7 batch
//! (`FHS`/`BHS` … messages … `BTS`/`FTS`, possibly several batches in one file, possibly several
//! files concatenated), or MLLP-framed messages (`0x0B` … `0x1C 0x0D`) written by an export that
//! reused its network code. [`split_messages`] finds every message in it and reports what else it
//! saw, so that the folder adapter can journal one item per message and warn or reject on the
//! rest.
//!
//! Promises:
//! - Works on bytes, whatever the charset (latin-1, UTF-8, with or without a byte-order mark):
//!   every message is a byte range of the input, exactly as in the file, from the `M` of `MSH` to
//!   the end of the terminator (CR, LF or CRLF) of its last segment. Blank lines after a message
//!   are not part of it; a last segment without a terminator (end of file, end of an MLLP frame)
//!   ends where its text ends.
//! - Nothing is dropped silently: bytes outside messages are either blank (spaces, tabs, CR, LF,
//!   byte-order marks), envelope segments (FHS, BHS, BTS, FTS, reported in [`Contents::batches`]
//!   and [`Contents::files`]), MLLP framing bytes, or reported in [`Contents::stray`].
//! - Never panics, whatever the bytes; one pass, work and memory linear in the input.
//!
//! How lines are read: a line ends at CR, LF or CRLF, and also at an MLLP start or end byte.
//! Unlike [`super::Message::parse`], which reads a lone LF inside a CR-terminated message as field
//! data, a new line starts after any of them: files are sometimes concatenations of exports with
//! different conventions, and a line starting `MSH|` after a lone LF is far more likely the next
//! message than field text. A message starts at a line beginning with `MSH` and a field
//! separator (an ASCII punctuation character, as in [`super::Message::parse`]), after an optional
//! byte-order mark; it takes every following line, segment or not (lines that are not segments are
//! kept, as [`super::Message::parse`] keeps them), up to the next `MSH`, envelope segment, MLLP
//! framing byte or the end of the file. Text that `MSH` does not start a line of (`junk MSH|...`)
//! does not start a message.

use std::ops::Range;

use crate::mllp::{END as FRAME_END, START as FRAME_START};

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Nothing but blanks (spaces, tabs, CR, LF) and byte-order marks, or no bytes at all.
    Empty,
    /// No line starts with MSH, FHS or BHS: not HL7 v2 (a PDF, an image, a UTF-16 export, a
    /// report). The adapter keeps the whole file as one rejected item.
    NotHl7,
    /// HL7 v2: the messages found (possibly none: an `FHS`/`FTS` file with nothing inside).
    Hl7(Contents),
}

/// The messages of an HL7 file and what surrounds them. `Debug` shows ranges and counts only,
/// never content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contents {
    /// Byte ranges of the messages in the input, in file order, non-empty, not overlapping.
    pub messages: Vec<Range<usize>>,
    /// The batches (`BHS` … `BTS`), in file order. Empty for a file of plain messages.
    pub batches: Vec<Batch>,
    /// The batch files (`FHS` … `FTS`), in file order. Several when files were concatenated.
    pub files: Vec<BatchFile>,
    /// Byte ranges of text that is neither blank, nor part of a message, nor an envelope
    /// segment, nor MLLP framing: text before the first message, after a `BTS` or `FTS`,
    /// between MLLP frames, a stray MLLP end byte. Consecutive lines of it form one range. The
    /// adapter decides whether that rejects the file or is worth a warning.
    pub stray: Vec<Range<usize>>,
    /// Present if the file holds MLLP framing.
    pub mllp: Option<MllpFraming>,
}

/// One batch: `[BHS] {MSH …} [BTS]`. HL7 makes both envelope segments optional; messages inside
/// an `FHS` without a `BHS` form a batch too, as do messages closed by a `BTS` without a `BHS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Indices into [`Contents::messages`].
    pub messages: Range<usize>,
    /// A `BHS` opened it.
    pub header: bool,
    /// A `BTS` closed it. `false` with `header` means the file ended (or another batch began)
    /// without one: maybe a file cut short.
    pub trailer: bool,
    /// BTS-1, the batch message count, when present and a number.
    pub declared: Option<u64>,
}

impl Batch {
    /// How many messages were found in it.
    pub fn found(&self) -> usize {
        self.messages.len()
    }

    /// `(declared, found)` when BTS-1 declares a message count other than what was found.
    pub fn count_mismatch(&self) -> Option<(u64, usize)> {
        self.declared.filter(|&d| d != self.found() as u64).map(|d| (d, self.found()))
    }
}

/// One batch file: `[FHS] {batch} [FTS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFile {
    /// Indices into [`Contents::batches`].
    pub batches: Range<usize>,
    /// An `FHS` opened it.
    pub header: bool,
    /// An `FTS` closed it.
    pub trailer: bool,
    /// FTS-1, the file batch count, when present and a number.
    pub declared: Option<u64>,
}

impl BatchFile {
    /// `(declared, found)` when FTS-1 declares a batch count other than what was found.
    pub fn count_mismatch(&self) -> Option<(u64, usize)> {
        self.declared.filter(|&d| d != self.batches.len() as u64).map(|d| (d, self.batches.len()))
    }
}

/// MLLP framing found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MllpFraming {
    /// Start bytes (`0x0B`) seen.
    pub frames: usize,
    /// Frames without an end byte (`0x1C`) before the next start or the end of the file. Their
    /// messages are still returned (a file cut short loses nothing more), but worth a warning.
    pub unterminated: usize,
}

/// Splits a file's bytes into messages (see the module docs).
pub fn split_messages(bytes: &[u8]) -> Split {
    let mut s = Splitter::default();
    let mut pos = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    while pos < bytes.len() {
        match bytes[pos] {
            FRAME_START => {
                s.boundary();
                s.non_blank = true;
                let framing = s.out.mllp.get_or_insert_with(MllpFraming::default);
                framing.frames += 1;
                if s.in_frame {
                    framing.unterminated += 1;
                }
                s.in_frame = true;
                pos += 1;
            }
            FRAME_END => {
                s.end_message();
                s.non_blank = true;
                let mut end = pos + 1;
                if bytes.get(end) == Some(&CR) {
                    end += 1;
                }
                if s.in_frame {
                    s.end_stray();
                    s.in_frame = false;
                } else {
                    s.stray(pos..end);
                }
                pos = end;
            }
            _ => {
                let content_end = pos
                    + bytes[pos..]
                        .iter()
                        .position(|&b| matches!(b, CR | LF | FRAME_START | FRAME_END))
                        .unwrap_or(bytes.len() - pos);
                let line_end = match bytes.get(content_end) {
                    Some(&CR) if bytes.get(content_end + 1) == Some(&LF) => content_end + 2,
                    Some(&CR | &LF) => content_end + 1,
                    _ => content_end,
                };
                s.line(bytes, pos, content_end, line_end);
                // A line ending at a framing byte is empty only if that byte is at `pos`, which
                // the arms above take; every other line moves on by at least one byte.
                pos = line_end;
            }
        }
    }
    s.finish()
}

/// What a line is, by its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Blank,
    Msh,
    Fhs,
    Bhs,
    Bts(Option<u64>),
    Fts(Option<u64>),
    Other,
}

fn classify(line: &[u8]) -> Line {
    if line.iter().all(|&b| b == b' ' || b == b'\t') {
        return Line::Blank;
    }
    let (id, rest) = line.split_at(line.len().min(3));
    let separator = rest.first().copied().filter(u8::is_ascii_punctuation);
    match (id, separator) {
        (b"MSH", Some(_)) => Line::Msh,
        (b"FHS", Some(_)) => Line::Fhs,
        (b"BHS", Some(_)) => Line::Bhs,
        (b"BTS", _) if rest.is_empty() || separator.is_some() => Line::Bts(count_field(rest)),
        (b"FTS", _) if rest.is_empty() || separator.is_some() => Line::Fts(count_field(rest)),
        _ => Line::Other,
    }
}

/// Field 1 of a trailer segment (`rest` starts at its field separator) read as a count.
fn count_field(rest: &[u8]) -> Option<u64> {
    let (&separator, fields) = rest.split_first()?;
    let field = fields.split(|&b| b == separator).next()?;
    std::str::from_utf8(field).ok()?.trim().parse().ok()
}

#[derive(Default)]
struct Splitter {
    out: Contents,
    /// The message being read: from its `MSH` to the end of its last non-blank line so far.
    message: Option<Range<usize>>,
    /// Stray text being gathered (consecutive lines form one range).
    stray: Option<Range<usize>>,
    /// First message index of the open `BHS` batch.
    batch: Option<usize>,
    /// First batch index of the open `FHS` file.
    file: Option<usize>,
    /// First message index not yet in any batch.
    loose_messages: usize,
    /// First batch index not yet in any file.
    loose_batches: usize,
    in_frame: bool,
    saw_header: bool,
    non_blank: bool,
}

impl Splitter {
    fn line(&mut self, bytes: &[u8], start: usize, content_end: usize, line_end: usize) {
        let text = &bytes[start..content_end];
        let (text, start) = match text.strip_prefix(BOM) {
            Some(rest) => (rest, start + BOM.len()),
            None => (text, start),
        };
        let kind = classify(text);
        if kind != Line::Blank {
            self.non_blank = true;
        }
        if matches!(kind, Line::Msh | Line::Fhs | Line::Bhs) {
            self.saw_header = true;
        }
        match kind {
            Line::Blank => {}
            Line::Other => match &mut self.message {
                Some(message) => message.end = line_end,
                None => self.stray(start..line_end),
            },
            Line::Msh => {
                self.boundary();
                self.message = Some(start..line_end);
            }
            Line::Bhs => {
                self.boundary();
                self.close_batch(false, None);
                self.flush_loose_messages();
                self.batch = Some(self.out.messages.len());
            }
            Line::Bts(declared) => {
                self.boundary();
                let count = self.out.messages.len();
                match self.batch.take() {
                    Some(first) => self.push_batch(first..count, true, true, declared),
                    None => self.push_batch(self.loose_messages..count, false, true, declared),
                }
            }
            Line::Fhs => {
                self.boundary();
                self.close_batch(false, None);
                self.flush_loose_messages();
                self.close_file(false, None);
                self.file = Some(self.out.batches.len());
                // Messages before the file belong to no batch of it.
                self.loose_messages = self.out.messages.len();
            }
            Line::Fts(declared) => {
                self.boundary();
                self.close_batch(false, None);
                self.flush_loose_messages();
                let header = self.file.is_some();
                self.close_file(true, declared);
                if !header {
                    // An FTS without FHS still closes the batches since the last file.
                    self.push_file(self.loose_batches..self.out.batches.len(), false, true, declared);
                }
            }
        }
    }

    /// Ends the message and the stray text being read.
    fn boundary(&mut self) {
        self.end_message();
        self.end_stray();
    }

    fn end_message(&mut self) {
        if let Some(message) = self.message.take() {
            self.out.messages.push(message);
        }
    }

    fn stray(&mut self, range: Range<usize>) {
        match &mut self.stray {
            Some(open) => open.end = range.end,
            None => self.stray = Some(range),
        }
    }

    fn end_stray(&mut self) {
        if let Some(range) = self.stray.take() {
            self.out.stray.push(range);
        }
    }

    /// Closes the open `BHS` batch, if any.
    fn close_batch(&mut self, trailer: bool, declared: Option<u64>) {
        if let Some(first) = self.batch.take() {
            self.push_batch(first..self.out.messages.len(), true, trailer, declared);
        }
    }

    /// Inside an `FHS` file, messages not in a `BHS` batch form a batch of their own.
    fn flush_loose_messages(&mut self) {
        let count = self.out.messages.len();
        if self.file.is_some() && self.batch.is_none() && self.loose_messages < count {
            self.push_batch(self.loose_messages..count, false, false, None);
        }
    }

    fn push_batch(&mut self, messages: Range<usize>, header: bool, trailer: bool, declared: Option<u64>) {
        self.out.batches.push(Batch { messages, header, trailer, declared });
        self.loose_messages = self.out.messages.len();
    }

    /// Closes the open `FHS` file, if any.
    fn close_file(&mut self, trailer: bool, declared: Option<u64>) {
        if let Some(first) = self.file.take() {
            self.push_file(first..self.out.batches.len(), true, trailer, declared);
        }
    }

    fn push_file(&mut self, batches: Range<usize>, header: bool, trailer: bool, declared: Option<u64>) {
        self.out.files.push(BatchFile { batches, header, trailer, declared });
        self.loose_batches = self.out.batches.len();
    }

    fn finish(mut self) -> Split {
        self.boundary();
        self.close_batch(false, None);
        self.flush_loose_messages();
        self.close_file(false, None);
        if self.in_frame {
            self.out.mllp.get_or_insert_with(MllpFraming::default).unterminated += 1;
        }
        match (self.non_blank, self.saw_header) {
            (false, _) => Split::Empty,
            (true, false) => Split::NotHl7,
            (true, true) => Split::Hl7(self.out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = include_bytes!("testdata/adt-a01.hl7");
    const ORU: &[u8] = include_bytes!("testdata/lab-oru-r01.hl7");
    const CHEM: &[u8] = include_bytes!("testdata/chem-report-8859-1.hl7");
    const BATCH: &[u8] = include_bytes!("testdata/batch-fhs-bhs.hl7");

    fn contents(bytes: &[u8]) -> Contents {
        match split_messages(bytes) {
            Split::Hl7(c) => c,
            other => panic!("expected HL7, got {other:?}"),
        }
    }

    /// The messages as byte strings.
    fn messages(bytes: &[u8]) -> Vec<&[u8]> {
        contents(bytes).messages.into_iter().map(|r| &bytes[r]).collect()
    }

    /// A list of one range (clippy takes `[a..b]` for a mistaken `(a..b).collect()`).
    fn one_range(range: Range<usize>) -> Vec<Range<usize>> {
        vec![range]
    }

    fn batch(messages: Range<usize>, header: bool, trailer: bool, declared: Option<u64>) -> Batch {
        Batch { messages, header, trailer, declared }
    }

    fn file(batches: Range<usize>, header: bool, trailer: bool, declared: Option<u64>) -> BatchFile {
        BatchFile { batches, header, trailer, declared }
    }

    #[test]
    fn one_message_with_each_terminator() {
        for terminator in ["\r", "\n", "\r\n"] {
            let text = format!("MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5{terminator}PID|1{terminator}");
            let c = contents(text.as_bytes());
            assert_eq!(c.messages, one_range(0..text.len()), "{terminator:?}");
            assert!(c.batches.is_empty() && c.files.is_empty() && c.stray.is_empty() && c.mllp.is_none());
            // Without a final terminator the message ends with its text.
            let cut = text.trim_end();
            assert_eq!(messages(cut.as_bytes()), [cut.as_bytes()], "{terminator:?}");
        }
        // Real samples, as published (CR, some without a final CR).
        for sample in [ADT, ORU, CHEM] {
            assert_eq!(messages(sample), [sample]);
        }
    }

    #[test]
    fn several_messages_separated_by_blank_lines_or_nothing() {
        let one = "MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5\rPID|1\r";
        let two = "MSH|^~\\&|A|B|||1||ADT^A01|2|P|2.5\nPID|2\n";
        let three = "MSH|^~\\&|A|B|||1||ADT^A01|3|P|2.5\r\nPID|3\r\n";
        let text = format!("{one}{two}\n\n{three}  \r\n\t\r\n\r\n");
        assert_eq!(messages(text.as_bytes()), [one.as_bytes(), two.as_bytes(), three.as_bytes()]);
        // Blank lines inside a message are kept; only trailing ones are left out.
        let inner = "MSH|^~\\&|A|B|||1||ADT^A01|4|P|2.5\r\rPID|4\r";
        let text = format!("{inner}\r\r{one}");
        assert_eq!(messages(text.as_bytes()), [inner.as_bytes(), one.as_bytes()]);
        // The real samples back to back: ORU has no final CR, so ADT follows on the same line
        // and is part of it; with a CR between them they are two.
        let glued = [ORU, ADT].concat();
        assert_eq!(messages(&glued), [glued.as_slice()]);
        let text = [ORU, b"\r", ADT, b"\r\n", CHEM].concat();
        assert_eq!(messages(&text), [&[ORU, b"\r"].concat()[..], &[ADT, b"\r\n"].concat(), CHEM]);
    }

    #[test]
    fn batch_file_with_counts() {
        let c = contents(BATCH);
        assert_eq!(c.messages.len(), 2);
        assert!(BATCH[c.messages[0].clone()].starts_with(b"MSH|^~\\&|ADT|General Hospital|"));
        assert!(BATCH[c.messages[1].clone()].starts_with(b"MSH|^~\\&|IBI-IIS|"));
        // The OBX values `xMSH`, `MSH` stay inside the second message, which ends at BTS.
        assert!(BATCH[c.messages[1].clone()].ends_with(b"OBX||||MSH||||MSH\r"));
        assert_eq!(c.batches, [batch(0..2, true, true, None)]);
        assert_eq!(c.files, [file(0..1, true, true, None)]);
        assert!(c.stray.is_empty());

        let m = |id: u32| format!("MSH|^~\\&|A|B|||1||ORU^R01|{id}|P|2.5\rOBX|1||x\r");
        let text = format!("FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r{}{}BTS|2\rFTS|1|end\r", m(1), m(2));
        let c = contents(text.as_bytes());
        assert_eq!(c.messages.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(), [m(1), m(2)]);
        assert_eq!(c.batches, [batch(0..2, true, true, Some(2))]);
        assert_eq!(c.batches[0].count_mismatch(), None);
        assert_eq!(c.files, [file(0..1, true, true, Some(1))]);
        assert_eq!(c.files[0].count_mismatch(), None);

        // Declared counts that disagree with what is there.
        let text = format!("FHS|^~\\&\rBHS|^~\\&\r{}BTS|3\rFTS|2\r", m(1));
        let c = contents(text.as_bytes());
        assert_eq!(c.batches[0].count_mismatch(), Some((3, 1)));
        assert_eq!(c.files[0].count_mismatch(), Some((2, 1)));
        // A count that is empty or not a number is not declared; BTS alone is a trailer.
        for trailer in ["BTS", "BTS|", "BTS||note", "BTS|two", "BTS| 1 |"] {
            let text = format!("BHS|^~\\&\r{}{trailer}\r", m(1));
            let declared = (trailer == "BTS| 1 |").then_some(1);
            assert_eq!(contents(text.as_bytes()).batches, [batch(0..1, true, true, declared)], "{trailer}");
        }
    }

    #[test]
    fn several_batches_in_one_file_and_files_concatenated() {
        let m = |id: u32| format!("MSH|^~\\&|A|B|||1||ORU^R01|{id}|P|2.5\nOBX|1||x\n");
        let text = format!(
            "FHS|^~\\&\nBHS|^~\\&\n{}{}BTS|2\nBHS|^~\\&\n{}BTS|1\nBHS|^~\\&\nBTS|0\nFTS|3\n\n\
             \u{feff}FHS|^~\\&\nBHS|^~\\&\n{}FTS|1\n",
            m(1),
            m(2),
            m(3),
            m(4)
        );
        let c = contents(text.as_bytes());
        assert_eq!(c.messages.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(), [m(1), m(2), m(3), m(4)]);
        assert_eq!(
            c.batches,
            [
                batch(0..2, true, true, Some(2)),
                batch(2..3, true, true, Some(1)),
                batch(3..3, true, true, Some(0)),
                // The second file lost its BTS.
                batch(3..4, true, false, None),
            ]
        );
        assert_eq!(c.files, [file(0..3, true, true, Some(3)), file(3..4, true, true, Some(1))]);
        assert!(c.batches.iter().all(|b| b.count_mismatch().is_none()));

        // BHS and BTS are optional: messages directly inside FHS form a batch, as do messages
        // closed by a BTS without a BHS.
        let text = format!("FHS|^~\\&\r{}{}FTS|1\r{}BTS|1\r", m(1), m(2), m(3));
        let c = contents(text.as_bytes());
        assert_eq!(c.batches, [batch(0..2, false, false, None), batch(2..3, false, true, Some(1))]);
        assert_eq!(c.files, [file(0..1, true, true, Some(1))]);
        // Messages before an FHS are in no batch of it.
        let text = format!("{}FHS|^~\\&\r{}FTS|1\r", m(1), m(2));
        let c = contents(text.as_bytes());
        assert_eq!(c.batches, [batch(1..2, false, false, None)]);
        assert_eq!(c.files, [file(0..1, true, true, Some(1))]);
        // A file cut short: no BTS, no FTS.
        let text = format!("FHS|^~\\&\rBHS|^~\\&\r{}", m(1));
        let c = contents(text.as_bytes());
        assert_eq!(c.batches, [batch(0..1, true, false, None)]);
        assert_eq!(c.files, [file(0..1, true, false, None)]);
    }

    #[test]
    fn envelope_only_file_has_no_messages() {
        for text in ["FHS|^~\\&|LAB\rFTS|0\r", "FHS|^~\\&\nBHS|^~\\&\nBTS|0\nFTS|1\n"] {
            let c = contents(text.as_bytes());
            assert!(c.messages.is_empty() && c.stray.is_empty(), "{text:?}");
            assert_eq!(c.files.len(), 1);
        }
        let c = contents(b"FHS|^~\\&|LAB\rFTS|0\r");
        assert_eq!(c.files, [file(0..0, true, true, Some(0))]);
        assert!(c.batches.is_empty());
    }

    #[test]
    fn mllp_framing_is_stripped() {
        let one = b"MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5\rPID|1\r";
        let two = b"MSH|^~\\&|A|B|||1||ADT^A01|2|P|2.5\rPID|2";
        let text = [&crate::mllp::encode(one)[..], b"\r\n", &crate::mllp::encode(two), b"\n"].concat();
        let c = contents(&text);
        assert_eq!(c.messages.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(), [&one[..], &two[..]]);
        assert_eq!(c.mllp, Some(MllpFraming { frames: 2, unterminated: 0 }));
        assert!(c.stray.is_empty());
        // A frame cut short, a new start before the end, a bare end byte without CR, junk
        // between frames.
        let text = [b"\x0b", &one[..], b"\x0b", &two[..], b"\x1c", b"junk\r", b"\x0b", &one[..]].concat();
        let c = contents(&text);
        assert_eq!(c.messages.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(), [&one[..], &two[..], &one[..]]);
        assert_eq!(c.mllp, Some(MllpFraming { frames: 3, unterminated: 2 }));
        assert_eq!(c.stray.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(), [b"junk\r"]);
        // A batch inside a frame.
        let text = [b"\x0bFHS|^~\\&\rBHS|^~\\&\r", &one[..], b"BTS|1\rFTS|1\r\x1c\r"].concat();
        let c = contents(&text);
        assert_eq!(c.messages.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(), [&one[..]]);
        assert_eq!(c.batches, [batch(0..1, true, true, Some(1))]);
        // A stray end byte outside a frame.
        let text = [&one[..], b"\x1c\r"].concat();
        let c = contents(&text);
        assert_eq!(c.messages, one_range(0..one.len()));
        assert_eq!(c.stray, one_range(one.len()..text.len()));
    }

    #[test]
    fn latin1_and_utf8_bytes_are_kept_as_they_are() {
        let latin1 = b"MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5|||||8859/1\rPID|1||||Bront\xe9^Ren\xe9e\r";
        assert_eq!(messages(latin1), [&latin1[..]]);
        let utf8 = "MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5|||||UNICODE UTF-8\rPID|1||||Brontë^Renée\r";
        assert_eq!(messages(utf8.as_bytes()), [utf8.as_bytes()]);
        let both = [&latin1[..], b"\r\n", utf8.as_bytes()].concat();
        assert_eq!(messages(&both), [&latin1[..], utf8.as_bytes()]);
    }

    #[test]
    fn byte_order_marks_are_skipped() {
        let one = "MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5\r\nPID|1\r\n";
        let text = format!("\u{feff}{one}\u{feff}{one}");
        let c = contents(text.as_bytes());
        assert_eq!(c.messages, [3..3 + one.len(), 6 + one.len()..text.len()]);
        assert!(c.stray.is_empty());
        assert_eq!(split_messages("\u{feff}".as_bytes()), Split::Empty);
        assert_eq!(split_messages("\u{feff}\r\n\u{feff}  \r\n".as_bytes()), Split::Empty);
    }

    #[test]
    fn leading_and_trailing_text_is_reported() {
        let one = "MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5\rPID|1\r";
        let text = format!("Export of 2024-05-01\r\n\r\nrun 7\r\n{one}");
        let c = contents(text.as_bytes());
        assert_eq!(c.messages, one_range(text.len() - one.len()..text.len()));
        assert_eq!(
            c.stray.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(),
            ["Export of 2024-05-01\r\n\r\nrun 7\r\n"]
        );
        // Text after a message is part of it (kept, as Message::parse keeps lines that are not
        // segments); text after a trailer is stray.
        let text = format!("{one}-- end --\r\n");
        assert_eq!(messages(text.as_bytes()), [text.as_bytes()]);
        let text = format!("BHS|^~\\&\r{one}BTS|1\r-- end --\r\n");
        let c = contents(text.as_bytes());
        assert_eq!(c.stray.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(), ["-- end --\r\n"]);
        // `MSH` not at the start of a line does not start a message.
        assert_eq!(split_messages(format!("junk {one}").as_bytes()), Split::NotHl7);
        let text = format!("junk\r {one}");
        assert_eq!(split_messages(text.as_bytes()), Split::NotHl7);
    }

    #[test]
    fn empty_and_blank_files() {
        for text in ["", "\r\n", "  \t\n\n\r", "\r\r\r"] {
            assert_eq!(split_messages(text.as_bytes()), Split::Empty, "{text:?}");
        }
    }

    #[test]
    fn files_that_are_not_hl7() {
        let cases: [&[u8]; 8] = [
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            // UTF-16 with a BOM: MSH is there, but not as bytes `MSH`.
            b"\xff\xfeM\0S\0H\0|\0^\0~\0",
            b"MSH",
            b"MSHX|^~\\&|",
            b"msh|^~\\&|",
            b"BTS|1\rFTS|1\r",
            b"\x0b\x1c\r",
        ];
        for bytes in cases {
            assert_eq!(split_messages(bytes), Split::NotHl7, "{bytes:?}");
        }
        let mut x: u64 = 7;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(split_messages(&random), Split::NotHl7);
    }

    #[test]
    fn debug_output_has_no_content() {
        let split = split_messages(b"PATIENT NAME\rMSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5\rPID|1||||DOE^JOHN\r");
        let debug = format!("{split:?}");
        assert!(!debug.contains("JOHN") && !debug.contains("PATIENT"), "{debug}");
    }

    /// Random files made of the pieces that matter; checks the promises that hold for any input.
    #[test]
    fn any_bytes_split_into_valid_ranges() {
        const PIECES: [&[u8]; 18] = [
            b"MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5",
            b"FHS|^~\\&",
            b"BHS|^~\\&",
            b"BTS|2",
            b"FTS|1",
            b"PID|1||\xe9",
            b"MSH",
            b"BTS",
            b"\r",
            b"\n",
            b"\r\n",
            b"  ",
            b"\x0b",
            b"\x1c",
            b"\x1c\r",
            b"\xef\xbb\xbf",
            b"\xef\xbb",
            b"x",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
        for round in 0..20_000 {
            let len = next() % 40;
            let mut bytes = Vec::new();
            for _ in 0..len {
                match next() % 4 {
                    0 => bytes.push(next() as u8),
                    _ => bytes.extend_from_slice(PIECES[next() % PIECES.len()]),
                }
            }
            let Split::Hl7(c) = split_messages(&bytes) else { continue };
            let mut ranges: Vec<(Range<usize>, bool)> = c.messages.iter().map(|r| (r.clone(), true)).collect();
            ranges.extend(c.stray.iter().map(|r| (r.clone(), false)));
            ranges.sort_by_key(|(r, _)| r.start);
            let mut end = 0;
            for (r, is_message) in &ranges {
                assert!(r.start >= end && r.start < r.end && r.end <= bytes.len(), "round {round}: {ranges:?}");
                end = r.end;
                if *is_message {
                    let m = &bytes[r.clone()];
                    assert!(m.starts_with(b"MSH") && !m.contains(&FRAME_START) && !m.contains(&FRAME_END));
                    // A message split again is itself, whole.
                    assert_eq!(
                        split_messages(m),
                        Split::Hl7(Contents { messages: one_range(0..m.len()), ..Contents::default() })
                    );
                }
            }
            assert!(c.messages.windows(2).all(|w| w[0].end <= w[1].start));
            for b in &c.batches {
                assert!(b.messages.start <= b.messages.end && b.messages.end <= c.messages.len());
            }
            for f in &c.files {
                assert!(f.batches.start <= f.batches.end && f.batches.end <= c.batches.len());
            }
        }
        // Long inputs take linear time: a few megabytes of short lines, one long line.
        let many = b"MSH|^~\\&\r\n\r\nx\r".repeat(200_000);
        assert_eq!(contents(&many).messages.len(), 200_000);
        let long = [b"MSH|".as_slice(), &vec![b'a'; 4 << 20]].concat();
        assert_eq!(contents(&long).messages, one_range(0..long.len()));
    }
}
