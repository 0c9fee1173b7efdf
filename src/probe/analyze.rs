//! What was heard at one line setting, judged: bytes in, a [`Hearing`] out. Sans IO (no tokio,
//! no clock, no port): `outpost probe`'s listener feeds it what it read, and its tests feed it
//! captures, re-sampled bit streams and noise.
//!
//! The judgement, strongest first:
//! - **ASTM E1381**: at least one frame with a valid checksum (read by `astm::decode`'s lenient
//!   walk over `astm::frame`, so a capture's quirks show too). The instrument id is H.5 of the
//!   first H record (`astm::records`' summary).
//! - **HL7 v2 over MLLP** (`0x0B` … `0x1C 0x0D`, read by `mllp::Decoder`): a frame whose text is a
//!   message with an MSH header; MSH-3.1/MSH-4.1 (sending application and facility) name the sender.
//! - **HL7 v2 without MLLP**: an `MSH|^~\&` segment in the stream.
//! - **ASTM E1394 records without E1381 framing**.
//! - **an ASTM sender bidding** (ENQ, again and again, nothing else): an instrument that wants to
//!   send and waits for the host's ACK, which a passive probe never gives. The setting is right;
//!   the frames come once outpost answers.
//! - **readable text** of another protocol (the mini VIDAS', a printer report), **garbled**
//!   bytes, or **nothing**.
//!
//! A wrong baud rate shows as garbled bytes: NUL and 0xFF (framing errors, breaks), bytes with
//! the high bit set. Seven data bits with parity read as eight show as every byte's bit 7 being
//! its parity bit ([`Signs::parity`]); the bytes are then judged again with bit 7 cleared, and
//! the hearing names the line (`7E1`, `7O1`) that reads them.
//!
//! Promises: no PHI leaves this module. A hearing holds counts, ratios, the protocol, and the
//! sender's id (ASTM H.5, HL7 MSH-3/MSH-4), never a record's or segment's other content. Nothing
//! here panics on input; memory is bounded by the caller's buffer ([`KEEP`]).

use serde::Serialize;

use crate::astm::ctrl::{ACK, CR, ENQ, EOT, ETB, ETX, LF, NAK, STX};
use crate::astm::decode::{Need, WireItem, walk};
use crate::astm::frame::{FrameProblem, LineEnd};
use crate::astm::{Message as AstmMessage, NotAstm, Shape, classify, split_messages};
use crate::mllp;
use crate::serial_line::Parity;

/// The most bytes of one setting's listening kept for judging: minutes of a 9600 baud line,
/// sessions of any analyzer. What comes after is counted, not kept.
pub const KEEP: usize = 256 * 1024;

/// Fewer bytes than this are not judged as text or noise (a few bytes of line noise when a
/// port opens or a cable moves say nothing).
const MIN_JUDGED: usize = 8;

/// What was heard, as a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Nothing at all.
    Silence,
    /// Bytes, but not readable: a wrong baud rate or parity, or binary data.
    Garbled,
    /// Readable text that is neither ASTM nor HL7.
    Text,
    /// ENQ after ENQ and nothing else: an ASTM sender waiting for the host's ACK.
    AstmBidding,
    /// ASTM E1394 records with no E1381 framing.
    AstmRecords,
    /// HL7 v2 segments with no MLLP framing.
    Hl7,
    /// HL7 v2 messages in MLLP frames.
    Hl7Mllp,
    /// ASTM E1381 frames with valid checksums.
    Astm,
}

impl Protocol {
    /// For people: what a tech reads in the verdict.
    pub fn describe(self) -> &'static str {
        match self {
            Protocol::Silence => "nothing",
            Protocol::Garbled => "garbled bytes (wrong baud rate or parity?)",
            Protocol::Text => "readable text, neither ASTM nor HL7",
            Protocol::AstmBidding => "ASTM E1381: the instrument asks to send (ENQ) and waits for the host's ACK",
            Protocol::AstmRecords => "ASTM E1394 records without E1381 frames",
            Protocol::Hl7 => "HL7 v2 without MLLP framing",
            Protocol::Hl7Mllp => "HL7 v2 over MLLP",
            Protocol::Astm => "ASTM E1381/E1394",
        }
    }

    /// A protocol outpost can be configured for: this setting is the one (stop cycling).
    pub fn is_found(self) -> bool {
        self >= Protocol::AstmBidding
    }

    fn base_score(self) -> u32 {
        match self {
            Protocol::Silence => 0,
            Protocol::Garbled => 100,
            Protocol::Text => 300,
            Protocol::AstmBidding => 600,
            Protocol::AstmRecords => 700,
            Protocol::Hl7 => 800,
            Protocol::Hl7Mllp | Protocol::Astm => 900,
        }
    }
}

/// Signs of the line in the raw bytes, whatever the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Signs {
    /// Share of bytes that text or the protocols' control characters are made of (printable
    /// ASCII, CR, LF, TAB, STX ETX EOT ENQ ACK NAK ETB, VT FS RS GS).
    pub clean: f64,
    /// Share of bytes with bit 7 set.
    pub high_bit: f64,
    /// Share of NUL and 0xFF bytes: framing errors and breaks, typical of a wrong baud rate.
    pub nul_or_ff: f64,
    /// Set when bit 7 of nearly every byte is the parity of the other seven: seven data bits
    /// with that parity, read as eight.
    pub parity: Option<ParityWord>,
}

/// A parity, as `outpost probe` and a source's `serial.parity` write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParityWord {
    Even,
    Odd,
}

impl From<ParityWord> for Parity {
    fn from(p: ParityWord) -> Parity {
        match p {
            ParityWord::Even => Parity::Even,
            ParityWord::Odd => Parity::Odd,
        }
    }
}

/// ASTM facts: counts from the E1381 frames heard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AstmFacts {
    pub valid_frames: usize,
    /// Frames (STX … ETX/ETB) whose checksum did not match.
    pub bad_checksums: usize,
    /// Frames broken otherwise (no end, no frame number, cut off by a control character…).
    pub broken_frames: usize,
    pub enq: usize,
    pub eot: usize,
    /// H … L messages in the valid frames' text.
    pub messages: usize,
    /// Link-layer quirks a source needs for what was heard (`lf_only`, `long_frames`…), by the
    /// names a source's `quirks` takes.
    pub quirks: Vec<&'static str>,
}

/// HL7 facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hl7Facts {
    pub messages: usize,
    /// MSH-12.1 of the first message.
    pub version: Option<String>,
}

/// What one setting heard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hearing {
    /// Bytes heard (all of them, also those beyond [`KEEP`]).
    pub bytes: usize,
    pub protocol: Protocol,
    /// Data bits 7 with this parity read the bytes (they were judged with bit 7 cleared).
    pub seven_bits: Option<ParityWord>,
    /// Who sent it: ASTM H.5 (components joined by `^`), HL7 MSH-3 and MSH-4 (joined by ` / `).
    pub instrument: Option<String>,
    pub signs: Signs,
    pub astm: AstmFacts,
    pub hl7: Hl7Facts,
    /// Why readable STX-framed text is not ASTM (`astm::classify`'s words, which quote nothing).
    pub not_astm: Option<String>,
    /// How well this setting read the line: higher is better; only compared between settings.
    pub score: u32,
}

impl Hearing {
    pub fn is_found(&self) -> bool {
        self.protocol.is_found()
    }
}

/// Judges `bytes`, heard at one setting. `total` is how many were heard (at least
/// `bytes.len()`; more when the listener kept only the first [`KEEP`]).
pub fn hear(bytes: &[u8], total: usize) -> Hearing {
    let signs = signs(bytes);
    let mut hearing = judge(bytes, signs);
    if let Some(parity) = signs.parity {
        let stripped: Vec<u8> = bytes.iter().map(|b| b & 0x7F).collect();
        let mut seven = judge(&stripped, signs);
        if seven.protocol >= hearing.protocol {
            seven.seven_bits = Some(parity);
            // The parity read right is a sign of the right setting in itself.
            seven.score += 50;
            hearing = seven;
        }
    }
    hearing.bytes = total.max(bytes.len());
    hearing
}

fn judge(bytes: &[u8], signs: Signs) -> Hearing {
    let mut h = Hearing {
        bytes: bytes.len(),
        protocol: Protocol::Silence,
        seven_bits: None,
        instrument: None,
        signs,
        astm: AstmFacts::default(),
        hl7: Hl7Facts::default(),
        not_astm: None,
        score: 0,
    };
    if bytes.is_empty() {
        return h;
    }
    astm(bytes, &mut h);
    if h.protocol == Protocol::Silence {
        hl7(bytes, &mut h);
    }
    if h.protocol == Protocol::Silence {
        h.protocol = if h.astm.enq >= 2 && (h.astm.enq + h.astm.eot) * 10 >= bytes.len() * 8 {
            Protocol::AstmBidding
        } else if bytes.len() >= MIN_JUDGED && signs.clean >= 0.9 {
            Protocol::Text
        } else {
            Protocol::Garbled
        };
    }
    h.score = score(&h);
    h
}

fn score(h: &Hearing) -> u32 {
    let mut s = h.protocol.base_score() + (h.signs.clean * 100.0) as u32;
    if h.protocol == Protocol::Astm {
        let frames = h.astm.valid_frames + h.astm.bad_checksums + h.astm.broken_frames;
        // Frames read right, as a share: a setting that garbles some frames is worse.
        s += (50 * h.astm.valid_frames / frames.max(1)) as u32;
    }
    if h.instrument.is_some() {
        s += 20;
    }
    s
}

fn astm(bytes: &[u8], h: &mut Hearing) {
    let walked = walk(bytes);
    for item in &walked.items {
        match item {
            WireItem::Enq { .. } => h.astm.enq += 1,
            WireItem::Eot { .. } => h.astm.eot += 1,
            WireItem::Frame(f) => match f.problem {
                None => h.astm.valid_frames += 1,
                Some(FrameProblem::BadChecksum { .. }) => h.astm.bad_checksums += 1,
                Some(_) => h.astm.broken_frames += 1,
            },
            WireItem::Cut { .. } => h.astm.broken_frames += 1,
            _ => {}
        }
    }
    if h.astm.valid_frames > 0 {
        h.protocol = Protocol::Astm;
        h.astm.quirks = walked.needs.iter().filter_map(|n| quirk_for(*n)).collect();
        h.astm.messages = astm_messages(&walked.text, &mut h.instrument);
        return;
    }
    match classify(bytes) {
        Ok(Shape::Records) => {
            h.protocol = Protocol::AstmRecords;
            h.astm.messages = astm_messages(bytes, &mut h.instrument);
        }
        Ok(Shape::Framed { .. }) => {}
        // STX-framed text that is not E1381 (the mini VIDAS): say why, quoting nothing.
        Err(e @ NotAstm::NoValidFrame { .. }) if h.signs.clean >= 0.9 => h.not_astm = Some(e.to_string()),
        Err(_) => {}
    }
}

/// The H … L messages in `text`; the first H.5 that says something goes to `instrument`.
fn astm_messages(text: &[u8], instrument: &mut Option<String>) -> usize {
    let splits = split_messages(text);
    for s in &splits {
        if instrument.is_some() {
            break;
        }
        if let Ok(m) = AstmMessage::parse(&text[s.range.clone()]) {
            let sender = m.summary().instrument;
            if !sender.trim().is_empty() {
                *instrument = Some(printable(&sender));
            }
        }
    }
    splits.len()
}

/// The quirk a source needs for what `astm::decode` says a capture needs; `None` for what no
/// quirk covers (no line end at all: a capture cut off mid-frame).
fn quirk_for(need: Need) -> Option<&'static str> {
    match need {
        Need::LineEnd(LineEnd::Lf) => Some("lf_only"),
        Need::LineEnd(LineEnd::CrCr) => Some("cr_cr"),
        Need::LineEnd(LineEnd::CrLf) | Need::NoLineEnd => None,
        Need::LongFrames => Some("long_frames"),
        Need::NoFrameNumbers => Some("no_frame_numbers"),
        Need::MissingCrBeforeEtx => Some("no_cr_before_etx"),
        Need::NoEtx => Some("no_etx"),
    }
}

fn hl7(bytes: &[u8], h: &mut Hearing) {
    if bytes.contains(&mllp::START) {
        let mut decoder = mllp::Decoder::new(KEEP);
        let mut frames = Vec::new();
        decoder.push(bytes, &mut frames);
        for frame in frames {
            if let mllp::Frame::Message(m) = frame
                && let Some(header) = hl7_header(&m)
            {
                h.hl7.messages += 1;
                if h.hl7.messages == 1 {
                    note_hl7_header(h, &header);
                }
            }
        }
        if h.hl7.messages > 0 {
            h.protocol = Protocol::Hl7Mllp;
            return;
        }
    }
    // Unframed: each `MSH` that starts a segment and is followed by a field separator and the
    // encoding characters.
    let mut at = 0;
    while let Some(p) = find(&bytes[at..], b"MSH") {
        let start = at + p;
        at = start + 3;
        let starts_segment = start == 0 || matches!(bytes[start - 1], CR | LF | mllp::START);
        if starts_segment && let Some(header) = hl7_header(&bytes[start..]) {
            h.hl7.messages += 1;
            if h.hl7.messages == 1 {
                note_hl7_header(h, &header);
            }
        }
    }
    if h.hl7.messages > 0 {
        h.protocol = Protocol::Hl7;
    }
}

/// The header of the message starting at `bytes` (its MSH segment alone is read).
fn hl7_header(bytes: &[u8]) -> Option<crate::hl7::Summary> {
    if !bytes.starts_with(b"MSH") || bytes.len() < 8 {
        return None;
    }
    let sep = bytes[3];
    if sep.is_ascii_alphanumeric() || sep.is_ascii_whitespace() || sep.is_ascii_control() {
        return None;
    }
    let end = bytes.iter().position(|&b| b == CR || b == LF).unwrap_or(bytes.len());
    let mut segment = bytes[..end].to_vec();
    segment.push(CR);
    let decoded = crate::hl7::decode(&segment, None);
    crate::hl7::Message::parse(&decoded.text).ok().map(|m| m.summary())
}

fn note_hl7_header(h: &mut Hearing, header: &crate::hl7::Summary) {
    let names: Vec<&str> = [header.sending_application.as_str(), header.sending_facility.as_str()]
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !names.is_empty() {
        h.instrument = Some(printable(&names.join(" / ")));
    }
    let version = header.version.trim();
    if !version.is_empty() {
        h.hl7.version = Some(printable(version));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A sender id as it may be shown on a terminal: control characters out, at most 80 characters.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect::<String>().trim().to_string()
}

/// The line's signs in `bytes`.
pub fn signs(bytes: &[u8]) -> Signs {
    if bytes.is_empty() {
        return Signs { clean: 0.0, high_bit: 0.0, nul_or_ff: 0.0, parity: None };
    }
    let n = bytes.len() as f64;
    let share = |f: &dyn Fn(u8) -> bool| bytes.iter().filter(|&&b| f(b)).count() as f64 / n;
    let clean = share(&|b| is_clean(b));
    let high_bit = share(&|b| b & 0x80 != 0);
    let nul_or_ff = share(&|b| b == 0x00 || b == 0xFF);
    let parity = seven_bit_parity(bytes, high_bit);
    Signs { clean, high_bit, nul_or_ff, parity }
}

fn is_clean(b: u8) -> bool {
    matches!(b, 0x20..=0x7E | CR | LF | b'\t' | STX | ETX | EOT | ENQ | ACK | NAK | ETB | 0x0B | 0x1C..=0x1E)
}

/// Seven data bits with parity, read as eight: bit 7 is the parity bit, so every byte has an
/// even (7E1) or odd (7O1) number of ones; plain 8-bit text has either about as often. Asks
/// for enough bytes, some of them with bit 7 set (else the bytes read right as they are), and
/// for text once bit 7 is cleared.
fn seven_bit_parity(bytes: &[u8], high_bit: f64) -> Option<ParityWord> {
    if bytes.len() < 32 || high_bit < 0.05 {
        return None;
    }
    let even = bytes.iter().filter(|b| b.count_ones() % 2 == 0).count() as f64 / bytes.len() as f64;
    let clean7 = bytes.iter().filter(|&&b| is_clean(b & 0x7F)).count() as f64 / bytes.len() as f64;
    if clean7 < 0.9 {
        return None;
    }
    if even >= 0.97 {
        Some(ParityWord::Even)
    } else if even <= 0.03 {
        Some(ParityWord::Odd)
    } else {
        None
    }
}

#[cfg(test)]
pub(crate) mod tests;
