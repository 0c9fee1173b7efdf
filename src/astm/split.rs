//! Cutting a stream of E1394 records into messages: a message runs from an H (header) record to
//! the next L (terminator) record, and the intake keeps one item per message.
//!
//! One session (ENQ … EOT) may carry several messages, and one frame may end one message and
//! start the next, so messages are found in the records, not in the frames. The rules, the same
//! for [`split_messages`] (bytes at rest) and [`Assembler`] (the link's incremental version):
//! - A record is a header when it starts with `H` and a punctuation character (its field
//!   delimiter), a terminator when it is `L` alone or `L` and a punctuation character.
//! - A message starts at its first record and ends after the CR of its L record.
//! - An H record while a message is open (no L yet) ends that message, incomplete, and starts
//!   the next: nothing is merged into a message it does not belong to, nothing is dropped.
//! - Records before any H form a message of their own (incomplete, without header): the intake
//!   keeps it as an unreadable item rather than losing it.
//! - Empty records (CR CR) are kept inside a message, skipped between messages.

use std::ops::Range;

use super::ctrl::{CR, LF};

/// Whether a record (without its CR) is an H record.
pub fn is_header(record: &[u8]) -> bool {
    record.len() >= 2 && record[0] == b'H' && record[1].is_ascii_punctuation()
}

/// Whether a record (without its CR) is an L record.
pub fn is_terminator(record: &[u8]) -> bool {
    record.first() == Some(&b'L') && record.get(1).is_none_or(|b| b.is_ascii_punctuation())
}

/// One message found by [`split_messages`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// From its first record to the end of its last record's terminator (CR, LF or CR LF;
    /// nothing for a last record at the end of the input without one).
    pub range: Range<usize>,
    /// Ends with an L record. False for a message cut short by the next H or by the end of the
    /// input, and for records before any H.
    pub complete: bool,
}

/// The messages in records at rest (a file, a capture's text). Records end at CR, LF or CR LF
/// (LF is not sent inside frames, but files are written with anything). Every record is in
/// exactly one message; only blank lines between messages are in none.
pub fn split_messages(bytes: &[u8]) -> Vec<Split> {
    let mut out = Vec::new();
    // The open message: from its first record to the end of its last non-empty record (the
    // empty records in between are inside it; those after it are not, unless a record follows).
    let mut open: Option<Range<usize>> = None;
    let mut i = 0;
    while i < bytes.len() {
        let end = bytes[i..].iter().position(|&b| b == CR || b == LF).map_or(bytes.len(), |p| i + p);
        let record = &bytes[i..end];
        let next = match bytes.get(end) {
            None => end,
            Some(&CR) if bytes.get(end + 1) == Some(&LF) => end + 2,
            Some(_) => end + 1,
        };
        if !record.is_empty() {
            if is_header(record)
                && let Some(m) = open.take()
            {
                out.push(Split { range: m, complete: false });
            }
            open.get_or_insert(i..i).end = next;
            if is_terminator(record)
                && let Some(m) = open.take()
            {
                out.push(Split { range: m, complete: true });
            }
        }
        i = next;
    }
    out.extend(open.map(|range| Split { range, complete: false }));
    out
}

/// A message cut out of the stream by an [`Assembler`].
#[derive(Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The message's records as received, each ending with CR.
    pub records: Vec<u8>,
    /// Ends with an L record (see [`Split::complete`]).
    pub complete: bool,
}

impl std::fmt::Debug for Assembled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembled").field("bytes", &self.records.len()).field("complete", &self.complete).finish()
    }
}

/// Cuts messages out of frame text as it arrives (records end at CR).
///
/// The link takes a [`checkpoint`](Assembler::checkpoint) before each frame it accepts, so that
/// a frame whose messages the journal refused can be taken back ([`rollback`](Assembler::rollback))
/// and received again when the instrument retransmits it. Memory: the open message and the
/// text of the frames since the last checkpoint.
#[derive(Default)]
pub struct Assembler {
    buf: Vec<u8>,
    /// Where the open message starts in `buf` (before: messages already handed out).
    consumed: usize,
    /// Where the record being received starts in `buf`.
    record_start: usize,
    /// `buf`'s length and `record_start` at the checkpoint (`consumed` was 0).
    saved: Option<(usize, usize)>,
}

impl std::fmt::Debug for Assembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembler").field("open_len", &self.open_len()).finish_non_exhaustive()
    }
}

impl Assembler {
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// Bytes of the open (not yet ended) message.
    pub fn open_len(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// Whether a record has started and not ended (text after the last CR).
    pub fn mid_record(&self) -> bool {
        self.record_start < self.buf.len()
    }

    /// Adds text; appends every message it ends to `out`.
    pub fn push(&mut self, text: &[u8], out: &mut Vec<Assembled>) {
        for &b in text {
            if b == CR && self.consumed == self.buf.len() {
                // A CR between messages: not part of either.
                self.record_start = self.buf.len();
                continue;
            }
            self.buf.push(b);
            if b != CR {
                continue;
            }
            let end = self.buf.len() - 1;
            let record = &self.buf[self.record_start..end];
            if is_header(record) && self.record_start > self.consumed {
                let records = self.buf[self.consumed..self.record_start].to_vec();
                out.push(Assembled { records, complete: false });
                self.consumed = self.record_start;
            }
            if is_terminator(&self.buf[self.record_start..end]) {
                out.push(Assembled { records: self.buf[self.consumed..].to_vec(), complete: true });
                self.consumed = self.buf.len();
            }
            self.record_start = self.buf.len();
        }
    }

    /// Ends the stream (EOT): the open message, if any, incomplete, a last record without its
    /// CR given one.
    pub fn finish(&mut self) -> Option<Assembled> {
        if self.open_len() == 0 {
            self.clear();
            return None;
        }
        let mut records = self.buf[self.consumed..].to_vec();
        if self.mid_record() {
            records.push(CR);
        }
        self.clear();
        Some(Assembled { records, complete: false })
    }

    /// Drops the open message; returns how many bytes it had.
    pub fn clear(&mut self) -> usize {
        let n = self.open_len();
        *self = Assembler::default();
        n
    }

    /// Marks the state to return to by [`Assembler::rollback`].
    pub fn checkpoint(&mut self) {
        self.buf.drain(..self.consumed);
        self.record_start = self.record_start.saturating_sub(self.consumed);
        self.consumed = 0;
        self.saved = Some((self.buf.len(), self.record_start));
    }

    /// Returns to the last checkpoint: the text pushed since is forgotten, and the messages it
    /// ended are open again.
    pub fn rollback(&mut self) {
        if let Some((len, record_start)) = self.saved {
            self.buf.truncate(len);
            self.consumed = 0;
            self.record_start = record_start;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(bytes: &[u8]) -> Vec<(String, bool)> {
        split_messages(bytes)
            .into_iter()
            .map(|s| (String::from_utf8_lossy(&bytes[s.range]).into_owned(), s.complete))
            .collect()
    }

    #[test]
    fn splits_on_h_and_l() {
        let two = b"H|\\^&\rP|1\rR|1|^^^A|1\rL|1|N\rH|\\^&\rQ|1|^2\rL|1|N\r";
        assert_eq!(
            texts(two),
            [("H|\\^&\rP|1\rR|1|^^^A|1\rL|1|N\r".into(), true), ("H|\\^&\rQ|1|^2\rL|1|N\r".into(), true)]
        );
        // CR LF record ends (a file), blank lines between messages, a last record without CR.
        let file = b"\r\nH|\\^&\r\nL|1|N\r\n\r\n\nH|`^&\nR|1\nL|1";
        assert_eq!(texts(file), [("H|\\^&\r\nL|1|N\r\n".into(), true), ("H|`^&\nR|1\nL|1".into(), true)]);
    }

    #[test]
    fn cut_short_and_headless_messages_are_kept() {
        assert_eq!(
            texts(b"P|1\rR|1\rH|\\^&\rR|1\rH|\\^&\rL|1|N\rR|9\r\r"),
            [
                ("P|1\rR|1\r".into(), false),
                ("H|\\^&\rR|1\r".into(), false),
                ("H|\\^&\rL|1|N\r".into(), true),
                ("R|9\r".into(), false),
            ]
        );
        assert!(split_messages(b"\r\n\r").is_empty());
        // HL7-ish or record-like text that is not H or L does not split.
        assert_eq!(texts(b"H|\\^&\rHX|1\rLAB|x\rL\r"), [("H|\\^&\rHX|1\rLAB|x\rL\r".into(), true)]);
    }

    fn assemble(chunks: &[&[u8]]) -> (Vec<Assembled>, Assembler) {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        for c in chunks {
            a.checkpoint();
            a.push(c, &mut out);
        }
        (out, a)
    }

    #[test]
    fn assembler_agrees_with_split_messages_at_every_cut() {
        let stream = b"\rH|\\^&\rP|1\r\rR|1|^^^A|1\rL|1|N\rH|\\^&\rQ|1|^2\rL|1|N\rP|1\rH|\\^&\rR|1\r";
        let expected: Vec<(Vec<u8>, bool)> =
            split_messages(stream).into_iter().map(|s| (stream[s.range].to_vec(), s.complete)).collect();
        for cut in 0..stream.len() {
            for cut2 in cut..stream.len() {
                let (mut out, mut a) = assemble(&[&stream[..cut], &stream[cut..cut2], &stream[cut2..]]);
                out.extend(a.finish());
                let got: Vec<(Vec<u8>, bool)> = out.into_iter().map(|m| (m.records, m.complete)).collect();
                assert_eq!(got, expected, "cuts {cut} {cut2}");
            }
        }
    }

    #[test]
    fn rollback_reopens_what_the_last_push_ended() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        a.checkpoint();
        a.push(b"H|\\^&\rR|1|^^^A|", &mut out);
        a.checkpoint();
        a.push(b"1\rL|1|N\rH|\\^&\rR|", &mut out);
        assert_eq!(out.len(), 1);
        a.rollback();
        assert_eq!(a.open_len(), b"H|\\^&\rR|1|^^^A|".len());
        out.clear();
        a.checkpoint();
        a.push(b"1\rL|1|N\r", &mut out);
        assert_eq!(out[0].records, b"H|\\^&\rR|1|^^^A|1\rL|1|N\r");
        assert!(out[0].complete);
        assert_eq!(a.open_len(), 0);
    }

    #[test]
    fn finish_completes_a_last_record() {
        let (out, mut a) = assemble(&[b"H|\\^&\rR|1|^^^A|1"]);
        assert!(out.is_empty());
        let m = a.finish().unwrap();
        assert_eq!((m.records.as_slice(), m.complete), (b"H|\\^&\rR|1|^^^A|1\r".as_slice(), false));
        assert!(a.finish().is_none());
        assert_eq!(a.clear(), 0);
    }
}
