//! E1381 frames, sans IO: `STX FN text ETB|ETX C1 C2 CR LF`.
//!
//! FN is the frame number `0`..`7` (1 for the first frame after each establishment, wrapping
//! 7 → 0). The checksum is the sum of the bytes from FN through ETB/ETX inclusive, modulo 256,
//! written as two hex digits: emitted uppercase, accepted in either case (some instruments send
//! lowercase). A frame carries at most [`MAX_TEXT`] characters of text; a longer record is split
//! over intermediate frames (ETB), its last frame ends with ETX.
//!
//! [`FrameParser`] reads one frame byte by byte after its STX, keeping at most
//! [`FrameOptions::max_text`] bytes of text however long the frame runs, and says what is wrong
//! with it ([`FrameProblem`]) rather than failing: the link answers a bad frame with NAK, the
//! capture decoder reports it. The frame's text is never shown by `Debug` (it is patient data).

use std::fmt;

use super::ctrl::{CR, ENQ, EOT, ETB, ETX, LF, STX, is_restricted};

/// Most characters of text in one frame (LIS01-A2: 247 characters in all).
pub const MAX_TEXT: usize = 240;

/// Most text kept of one frame when an instrument's over-long frames are accepted
/// ([`super::Quirks::long_frames`]), and by the capture decoder: memory stays bounded whatever
/// arrives, and a longer frame is reported too long.
pub const LONG_TEXT_MAX: usize = 64 * 1024;

/// How a frame's text ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameEnd {
    /// ETB: more frames of this record (or E1381 message) follow.
    Intermediate,
    /// ETX: the last frame of an E1381 message (one record, or several records, per sender).
    Final,
}

impl FrameEnd {
    pub fn byte(self) -> u8 {
        match self {
            FrameEnd::Intermediate => ETB,
            FrameEnd::Final => ETX,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameEnd::Intermediate => "ETB",
            FrameEnd::Final => "ETX",
        }
    }
}

/// What must follow the two checksum characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEnd {
    /// CR LF, as the standard says.
    #[default]
    CrLf,
    /// LF alone (CR LF also accepted): instruments that end frames with a bare line feed.
    Lf,
    /// CR CR (CR LF also accepted): instruments that send a second CR instead of the LF.
    CrCr,
}

/// What the frame actually ended with after its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer {
    CrLf,
    Lf,
    CrCr,
    /// A lone CR (the frame ended by what came next or by the end of the input).
    Cr,
    /// Nothing (the end of the input, or the next frame's STX).
    None,
    /// Something other than CR and LF (counted, not shown).
    Other,
}

impl Trailer {
    pub fn name(self) -> &'static str {
        match self {
            Trailer::CrLf => "CR LF",
            Trailer::Lf => "LF",
            Trailer::CrCr => "CR CR",
            Trailer::Cr => "CR",
            Trailer::None => "nothing",
            Trailer::Other => "other bytes",
        }
    }
}

/// Why a frame is not acceptable. The first of these, in this order, is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameProblem {
    #[error("a line feed came before ETX/ETB: the frame never ended (not an E1381 frame, or bytes were lost)")]
    NoEnd,
    #[error("{}", bad_checksum(*.given, *.computed))]
    BadChecksum { given: Option<u8>, computed: u8 },
    #[error("the byte after STX is not a frame number 0-7")]
    BadNumber,
    #[error("the text holds the restricted control character 0x{0:02X}")]
    RestrictedCharacter(u8),
    #[error("{len} characters of text, more than the {max} a frame may carry")]
    TooLong { len: usize, max: usize },
    #[error(
        "the checksum is not followed by CR LF (an instrument that ends frames otherwise needs its line_end quirk)"
    )]
    BadTrailer,
}

fn bad_checksum(given: Option<u8>, computed: u8) -> String {
    match given {
        Some(g) => format!("checksum {g:02X} given, {computed:02X} computed"),
        None => format!("the checksum is not two hex digits ({computed:02X} computed)"),
    }
}

/// One frame as received.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// 0..=7; `None` for a frame read without frame numbers, or when the byte after STX is not
    /// a frame number ([`FrameProblem::BadNumber`]).
    pub number: Option<u8>,
    /// The text between FN and ETB/ETX (at most the parser's `max_text` bytes of it).
    pub text: Vec<u8>,
    /// The text's full length, also when more than `text` holds.
    pub text_len: usize,
    /// `None` when the frame never reached ETB/ETX ([`FrameProblem::NoEnd`]).
    pub end: Option<FrameEnd>,
    pub checksum_given: Option<u8>,
    pub checksum_computed: u8,
    pub trailer: Trailer,
    pub problem: Option<FrameProblem>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("number", &self.number)
            .field("text_len", &self.text_len)
            .field("end", &self.end)
            .field("checksum_given", &self.checksum_given)
            .field("checksum_computed", &self.checksum_computed)
            .field("trailer", &self.trailer)
            .field("problem", &self.problem)
            .finish_non_exhaustive()
    }
}

impl Frame {
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// How to read frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameOptions {
    /// False for instruments that send no frame number ([`super::Quirks::no_frame_numbers`]):
    /// the text starts right after STX and the checksum starts with it.
    pub numbered: bool,
    pub line_end: LineEnd,
    /// Longer text makes the frame [`FrameProblem::TooLong`] (and is not kept).
    pub max_text: usize,
    /// Whatever follows the checksum ends the frame, CR and LF optional: for captures, where
    /// frames may be stored one per line with their line end removed. Never for a live link: a
    /// frame could not be told to have ended before the next byte arrives.
    pub any_line_end: bool,
}

impl Default for FrameOptions {
    fn default() -> Self {
        FrameOptions { numbered: true, line_end: LineEnd::CrLf, max_text: MAX_TEXT, any_line_end: false }
    }
}

/// The result of feeding one byte to a [`FrameParser`].
#[derive(Debug)]
pub enum Step {
    /// The frame goes on.
    More,
    /// The frame is complete, this byte included.
    Done(Frame),
    /// The frame ended just before this byte, which belongs to what follows: process it again.
    DoneBefore(Frame),
    /// The frame was broken off by STX, ENQ or EOT before its checksum (`bytes` after STX were
    /// received). The byte was not consumed: process it again.
    Cut { bytes: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Number,
    Text,
    Check1,
    Check2,
    /// After the checksum; `cr` is whether a CR has been seen.
    Trailer {
        cr: bool,
        junk: u8,
    },
}

/// Reads one frame, byte by byte, from the byte after its STX. `Debug` shows no text.
pub struct FrameParser {
    opts: FrameOptions,
    phase: Phase,
    received: usize,
    number: Option<u8>,
    bad_number: bool,
    text: Vec<u8>,
    text_len: usize,
    restricted: Option<u8>,
    sum: u8,
    end: Option<FrameEnd>,
    given: [Option<u8>; 2],
}

impl fmt::Debug for FrameParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameParser")
            .field("phase", &self.phase)
            .field("received", &self.received)
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

/// How many bytes of junk after a checksum are tolerated before the frame is declared ended.
const TRAILER_JUNK_MAX: u8 = 8;

impl FrameParser {
    /// A parser for the frame whose STX was just received.
    pub fn new(opts: FrameOptions) -> FrameParser {
        FrameParser {
            opts,
            phase: if opts.numbered { Phase::Number } else { Phase::Text },
            received: 0,
            number: None,
            bad_number: false,
            text: Vec::new(),
            text_len: 0,
            restricted: None,
            sum: 0,
            end: None,
            given: [None, None],
        }
    }

    /// Bytes received after STX so far.
    pub fn received(&self) -> usize {
        self.received
    }

    pub fn push(&mut self, b: u8) -> Step {
        let cuts = matches!(b, STX | ENQ | EOT);
        match self.phase {
            Phase::Number | Phase::Text | Phase::Check1 | Phase::Check2 if cuts => {
                return Step::Cut { bytes: self.received };
            }
            Phase::Number | Phase::Text if b == LF => {
                self.received += 1;
                return Step::Done(self.build(Trailer::None));
            }
            _ => {}
        }
        self.received += 1;
        match self.phase {
            Phase::Number => {
                self.sum = self.sum.wrapping_add(b);
                match b {
                    b'0'..=b'7' => self.number = Some(b - b'0'),
                    ETX | ETB => {
                        // No number and no text: an empty, unnumbered frame.
                        self.bad_number = true;
                        self.end = Some(if b == ETX { FrameEnd::Final } else { FrameEnd::Intermediate });
                        self.phase = Phase::Check1;
                        return Step::More;
                    }
                    _ => self.bad_number = true,
                }
                self.phase = Phase::Text;
            }
            Phase::Text => {
                self.sum = self.sum.wrapping_add(b);
                match b {
                    ETX => {
                        self.end = Some(FrameEnd::Final);
                        self.phase = Phase::Check1;
                    }
                    ETB => {
                        self.end = Some(FrameEnd::Intermediate);
                        self.phase = Phase::Check1;
                    }
                    _ => {
                        if is_restricted(b) && self.restricted.is_none() {
                            self.restricted = Some(b);
                        }
                        self.text_len += 1;
                        if self.text.len() < self.opts.max_text {
                            self.text.push(b);
                        }
                    }
                }
            }
            Phase::Check1 | Phase::Check2 => {
                if b == LF {
                    // The checksum is cut short: the frame ends here, without it.
                    return Step::Done(self.build(Trailer::Lf));
                }
                let i = usize::from(self.phase == Phase::Check2);
                self.given[i] = hex_value(b);
                self.phase = if i == 0 { Phase::Check2 } else { Phase::Trailer { cr: false, junk: 0 } };
            }
            Phase::Trailer { cr, junk } => return self.trailer(b, cr, junk),
        }
        Step::More
    }

    fn trailer(&mut self, b: u8, cr: bool, junk: u8) -> Step {
        let lenient = self.opts.any_line_end;
        match b {
            LF => Step::Done(self.build(match (cr, junk) {
                (true, 0) => Trailer::CrLf,
                (false, 0) => Trailer::Lf,
                _ => Trailer::Other,
            })),
            CR if cr && junk == 0 => Step::Done(self.build(Trailer::CrCr)),
            CR if junk == 0 => {
                self.phase = Phase::Trailer { cr: true, junk };
                Step::More
            }
            STX | ENQ | EOT => {
                self.received -= 1;
                let t = match (cr, junk) {
                    (_, 1..) => Trailer::Other,
                    (true, _) => Trailer::Cr,
                    (false, _) => Trailer::None,
                };
                Step::DoneBefore(self.build(t))
            }
            _ if lenient && junk == 0 => {
                self.received -= 1;
                Step::DoneBefore(self.build(if cr { Trailer::Cr } else { Trailer::None }))
            }
            _ if junk + 1 >= TRAILER_JUNK_MAX => Step::Done(self.build(Trailer::Other)),
            _ => {
                self.phase = Phase::Trailer { cr, junk: junk + 1 };
                Step::More
            }
        }
    }

    /// Ends the frame at the end of the input (a capture that stops mid-frame or right after a
    /// checksum).
    pub fn finish(mut self) -> Frame {
        let trailer = match self.phase {
            Phase::Trailer { cr: true, junk: 0 } => Trailer::Cr,
            Phase::Trailer { junk: 1.., .. } => Trailer::Other,
            _ => Trailer::None,
        };
        self.build(trailer)
    }

    fn build(&mut self, trailer: Trailer) -> Frame {
        let given = match self.given {
            [Some(h), Some(l)] => Some(h << 4 | l),
            _ => None,
        };
        let trailer_ok = self.opts.any_line_end
            || matches!(
                (self.opts.line_end, trailer),
                (_, Trailer::CrLf) | (LineEnd::Lf, Trailer::Lf) | (LineEnd::CrCr, Trailer::CrCr)
            );
        let problem = if self.end.is_none() {
            Some(FrameProblem::NoEnd)
        } else if given != Some(self.sum) {
            Some(FrameProblem::BadChecksum { given, computed: self.sum })
        } else if self.bad_number {
            Some(FrameProblem::BadNumber)
        } else if let Some(c) = self.restricted {
            Some(FrameProblem::RestrictedCharacter(c))
        } else if self.text_len > self.opts.max_text {
            Some(FrameProblem::TooLong { len: self.text_len, max: self.opts.max_text })
        } else if !trailer_ok {
            Some(FrameProblem::BadTrailer)
        } else {
            None
        };
        Frame {
            number: self.number,
            text: std::mem::take(&mut self.text),
            text_len: self.text_len,
            end: self.end,
            checksum_given: given,
            checksum_computed: self.sum,
            trailer,
            problem,
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The E1381 checksum of the bytes from FN through ETB/ETX inclusive.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// One frame on the wire: `STX FN text end C1 C2 CR LF`, checksum in uppercase hex.
/// `number` is taken modulo 8. The text is not checked (see [`split_message`]).
pub fn encode_frame(number: u8, text: &[u8], end: FrameEnd) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 7);
    out.push(STX);
    out.push(b'0' + number % 8);
    out.extend_from_slice(text);
    out.push(end.byte());
    let sum = checksum(&out[1..]);
    out.extend_from_slice(format!("{sum:02X}").as_bytes());
    out.push(CR);
    out.push(LF);
    out
}

/// Why records cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("nothing to send: the message has no records")]
    Empty,
    #[error(
        "record {record} of the message holds the control character 0x{code:02X}, which a frame may not carry \
         (records end with CR alone; escape or remove control characters)"
    )]
    RestrictedCharacter { record: usize, code: u8 },
}

/// Records (each ending CR; a CR is added to a last record without one) split into frames as
/// E1394 sends them: each record is its own E1381 message, in as many frames as it needs of at
/// most [`MAX_TEXT`] characters, intermediate ones ending ETB and its last ETX. Frame numbers
/// start at 1 and wrap 7 → 0 across the whole message, as they do over one session.
pub fn split_message(records: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let records = checked_records(records)?;
    let mut frames = Vec::new();
    for record in records {
        push_frames(&mut frames, &record);
    }
    Ok(frames)
}

/// Records split into frames as one E1381 message: the records' text run together, cut every
/// [`MAX_TEXT`] characters (ETB), the last frame ending ETX. For instruments that want a whole
/// H…L message as one E1381 message (some read only what comes before the first ETX).
pub fn split_message_packed(records: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let text = checked_records(records)?.concat();
    let mut frames = Vec::new();
    push_frames(&mut frames, &text);
    Ok(frames)
}

fn push_frames(frames: &mut Vec<Vec<u8>>, text: &[u8]) {
    let chunks = text.chunks(MAX_TEXT).count();
    for (i, chunk) in text.chunks(MAX_TEXT).enumerate() {
        let number = ((frames.len() + 1) % 8) as u8;
        let end = if i + 1 == chunks { FrameEnd::Final } else { FrameEnd::Intermediate };
        frames.push(encode_frame(number, chunk, end));
    }
}

/// The records, each ending with CR, after checking no frame would be invalid.
fn checked_records(records: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (i, record) in records.split(|&b| b == CR).enumerate() {
        if record.is_empty() {
            continue;
        }
        if let Some(&code) = record.iter().find(|&&b| is_restricted(b)) {
            return Err(FrameError::RestrictedCharacter { record: i + 1, code });
        }
        let mut r = record.to_vec();
        r.push(CR);
        out.push(r);
    }
    if out.is_empty() {
        return Err(FrameError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8], opts: FrameOptions) -> (Vec<Step>, usize) {
        assert_eq!(bytes[0], STX);
        let mut p = FrameParser::new(opts);
        let mut steps = Vec::new();
        for (i, &b) in bytes[1..].iter().enumerate() {
            match p.push(b) {
                Step::More => {}
                s => {
                    steps.push(s);
                    return (steps, i + 1);
                }
            }
        }
        (steps, bytes.len())
    }

    fn one(bytes: &[u8], opts: FrameOptions) -> Frame {
        match parse(bytes, opts).0.pop() {
            Some(Step::Done(f)) | Some(Step::DoneBefore(f)) => f,
            other => panic!("no frame: {other:?}"),
        }
    }

    #[test]
    fn encodes_as_the_vitros_query_frame() {
        // Bytes from vitros-3600-host-query.raw, second frame.
        let frame = encode_frame(2, b"Q|1|^1068687||ALL||||||||O\r", FrameEnd::Final);
        assert_eq!(frame, b"\x022Q|1|^1068687||ALL||||||||O\r\x038E\r\n");
        let f = one(&frame, FrameOptions::default());
        assert_eq!(f.number, Some(2));
        assert_eq!(f.text, b"Q|1|^1068687||ALL||||||||O\r");
        assert_eq!(f.end, Some(FrameEnd::Final));
        assert_eq!((f.checksum_given, f.checksum_computed), (Some(0x8E), 0x8E));
        assert!(f.is_valid(), "{f:?}");
    }

    #[test]
    fn lowercase_checksum_is_accepted_and_wrong_one_reported() {
        let f = one(b"\x022Q|1|^1068687||ALL||||||||O\r\x038e\r\n", FrameOptions::default());
        assert!(f.is_valid());
        let f = one(b"\x022Q|1|^1068687||ALL||||||||O\r\x038F\r\n", FrameOptions::default());
        assert_eq!(f.problem, Some(FrameProblem::BadChecksum { given: Some(0x8F), computed: 0x8E }));
        let f = one(b"\x022Q|1\r\x03zz\r\n", FrameOptions::default());
        assert!(matches!(f.problem, Some(FrameProblem::BadChecksum { given: None, .. })));
    }

    #[test]
    fn restricted_characters_make_a_frame_invalid() {
        for c in [0x01u8, 0x06, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16] {
            let text = [b"R|1|".as_slice(), &[c], b"\r"].concat();
            let wire = encode_frame(1, &text, FrameEnd::Final);
            let f = one(&wire, FrameOptions::default());
            assert_eq!(f.problem, Some(FrameProblem::RestrictedCharacter(c)), "0x{c:02X}");
        }
        // Other control characters are not restricted by E1381.
        let wire = encode_frame(1, b"R|1|a\x1eb\tc\r", FrameEnd::Final);
        assert!(one(&wire, FrameOptions::default()).is_valid());
    }

    #[test]
    fn stx_enq_eot_cut_a_frame_and_lf_ends_it() {
        let (steps, used) = parse(b"\x021R|1|abc\x04", FrameOptions::default());
        assert!(matches!(steps[..], [Step::Cut { bytes: 8 }]), "{steps:?}");
        assert_eq!(used, 9);
        let f = one(b"\x02\x1emtrsl|\x1epi|\x1db0\n", FrameOptions::default());
        assert_eq!(f.problem, Some(FrameProblem::NoEnd));
        assert_eq!(f.end, None);
    }

    #[test]
    fn bad_frame_number_is_reported() {
        let mut wire = encode_frame(1, b"L|1|N\r", FrameEnd::Final);
        wire[1] = b'9';
        let sum = checksum(&wire[1..wire.len() - 4]);
        let len = wire.len();
        wire[len - 4..len - 2].copy_from_slice(format!("{sum:02X}").as_bytes());
        let f = one(&wire, FrameOptions::default());
        assert_eq!(f.problem, Some(FrameProblem::BadNumber));
        assert_eq!(f.number, None);
    }

    #[test]
    fn too_long_text_is_reported_and_not_kept() {
        let text = vec![b'x'; 300];
        let wire = encode_frame(1, &text, FrameEnd::Intermediate);
        let f = one(&wire, FrameOptions::default());
        assert_eq!(f.problem, Some(FrameProblem::TooLong { len: 300, max: MAX_TEXT }));
        assert_eq!((f.text.len(), f.text_len), (MAX_TEXT, 300));
        let f = one(&wire, FrameOptions { max_text: LONG_TEXT_MAX, ..FrameOptions::default() });
        assert!(f.is_valid());
        assert_eq!(f.text, text);
    }

    #[test]
    fn line_ends() {
        let good = encode_frame(3, b"P|1\r", FrameEnd::Final);
        let body = &good[..good.len() - 2];
        let lf = [body, b"\n"].concat();
        let crcr = [body, b"\r\r"].concat();
        let strict = FrameOptions::default();
        assert_eq!(one(&lf, strict).problem, Some(FrameProblem::BadTrailer));
        let f = one(&lf, FrameOptions { line_end: LineEnd::Lf, ..strict });
        assert!(f.is_valid());
        assert_eq!(f.trailer, Trailer::Lf);
        assert!(one(&good, FrameOptions { line_end: LineEnd::Lf, ..strict }).is_valid());
        assert_eq!(one(&crcr, strict).problem, Some(FrameProblem::BadTrailer));
        let f = one(&crcr, FrameOptions { line_end: LineEnd::CrCr, ..strict });
        assert!(f.is_valid());
        assert_eq!(f.trailer, Trailer::CrCr);
        // Any line end (captures): the next STX ends a frame that has no line end at all.
        let joined = [body, b"\x02"].concat();
        let (steps, _) = parse(&joined, FrameOptions { any_line_end: true, ..strict });
        match &steps[..] {
            [Step::DoneBefore(f)] => assert!(f.is_valid() && f.trailer == Trailer::None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unnumbered_frames() {
        let mut wire = vec![STX];
        wire.extend_from_slice(b"H|\\^&\r");
        wire.push(ETX);
        let sum = checksum(&wire[1..]);
        wire.extend_from_slice(format!("{sum:02X}\r\n").as_bytes());
        let f = one(&wire, FrameOptions { numbered: false, ..FrameOptions::default() });
        assert!(f.is_valid(), "{f:?}");
        assert_eq!((f.number, f.text.as_slice()), (None, b"H|\\^&\r".as_slice()));
        assert_eq!(one(&wire, FrameOptions::default()).problem, Some(FrameProblem::BadNumber));
    }

    #[test]
    fn split_message_numbers_and_cuts_records() {
        let long = vec![b'M'; 600];
        let records = [b"H|\\^&\r".as_slice(), &long, b"\rL|1|N\r"].concat();
        let frames = split_message(&records).unwrap();
        // H: 1 frame; M (601 with CR): 240 + 240 + 121; L: 1.
        assert_eq!(frames.len(), 5);
        let parsed: Vec<Frame> = frames.iter().map(|f| one(f, FrameOptions::default())).collect();
        let numbers: Vec<_> = parsed.iter().map(|f| f.number.unwrap()).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        let ends: Vec<_> = parsed.iter().map(|f| f.end.unwrap()).collect();
        use FrameEnd::*;
        assert_eq!(ends, [Final, Intermediate, Intermediate, Final, Final]);
        assert!(parsed.iter().all(|f| f.is_valid() && f.text_len <= MAX_TEXT));
        assert_eq!(parsed.iter().flat_map(|f| f.text.clone()).collect::<Vec<_>>(), records);

        let many: Vec<u8> = (0..10).flat_map(|i| format!("R|{i}\r").into_bytes()).collect();
        let numbers: Vec<u8> = split_message(&many).unwrap().iter().map(|f| f[1] - b'0').collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]);

        let packed = split_message_packed(&records).unwrap();
        assert_eq!(packed.len(), 3);
        assert_eq!(packed[2][packed[2].len() - 5], ETX);
    }

    #[test]
    fn split_message_refuses_what_no_frame_may_carry() {
        assert_eq!(split_message(b""), Err(FrameError::Empty));
        assert_eq!(split_message(b"\r\r"), Err(FrameError::Empty));
        assert_eq!(split_message(b"H|\\^&\rP|1|a\nb\r"), Err(FrameError::RestrictedCharacter { record: 2, code: LF }));
        // A last record without its CR gets one.
        let frames = split_message(b"H|\\^&\rL|1|N").unwrap();
        assert!(frames[1].starts_with(b"\x022L|1|N\r\x03"));
    }

    #[test]
    fn debug_shows_no_text() {
        let f = one(&encode_frame(1, b"P|1||||Doe^Jane\r", FrameEnd::Final), FrameOptions::default());
        assert!(!format!("{f:?}").contains("Doe"));
    }
}
