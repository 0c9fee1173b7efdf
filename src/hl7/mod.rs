//! HL7 v2: decoding bytes, reading messages (header, summary, field values), building and reading
//! ACKs, and applying per-destination transforms.
//!
//! Promises:
//! - Pure code: no IO, no clocks (callers pass timestamps and ids in).
//! - Nothing here panics on input, whatever the bytes.
//! - Errors never quote message content (PHI) beyond the first three characters of a message;
//!   they name fields and paths instead (`MSH-10 control id is empty`).
//! - [`decode`] never loses a byte for latin-1 or valid UTF-8, and [`apply_transforms`] leaves
//!   every byte it does not edit as it was.

mod ack;
pub mod batch;
mod charset;
mod error;
mod escape;
mod message;
mod path;
mod transform;

use std::borrow::Cow;

pub use ack::{AcceptAck, AckCode, AckMode, AckReply, Outcome, build_ack, parse_ack};
pub use charset::Charset;
pub use error::{Hl7Error, Start};
pub use escape::escape;
pub use message::{Header, Message, Summary};
pub use path::FieldPath;
pub use transform::{Transform, apply_transforms};

/// Message bytes read as text, and how they were read. `Debug` leaves the text out (PHI).
#[derive(Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub text: Cow<'a, str>,
    /// The charset `text` was actually decoded with; `charset.encode(&text)` gives the original
    /// bytes back unless `lossy`. A message that declares UTF-8 but is not valid UTF-8 is read as
    /// latin-1, and this says `Latin1`.
    pub charset: Charset,
    /// `text` does not encode back to the same bytes: some were not valid in `charset` and
    /// became U+FFFD, or have no way back (only possible for encodings other than ASCII,
    /// latin-1 and UTF-8). The stored bytes are unaffected; transforms refuse such a message.
    pub lossy: bool,
}

impl std::fmt::Debug for Decoded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("text_len", &self.text.len())
            .field("charset", &self.charset)
            .field("lossy", &self.lossy)
            .finish()
    }
}

/// Chooses the charset: `override_charset` if `Some`, else MSH-18 read from the raw bytes (the
/// MSH delimiters are ASCII, so this is safe before decoding; a batch uses its first MSH), else
/// UTF-8 if the bytes are valid UTF-8, else latin-1. An MSH-18 this module does not know counts
/// as absent. Never fails; never loses bytes for latin-1.
pub fn decode(bytes: &[u8], override_charset: Option<Charset>) -> Decoded<'_> {
    let chosen =
        override_charset.or_else(|| declared_charset(bytes)).unwrap_or_else(|| match std::str::from_utf8(bytes) {
            Ok(_) => Charset::Utf8,
            Err(_) => Charset::Latin1,
        });
    let (text, flagged) = chosen.decode(bytes);
    match chosen {
        // `Charset::decode` falls back to latin-1 for invalid UTF-8, without loss.
        Charset::Utf8 if flagged => Decoded { text, charset: Charset::Latin1, lossy: false },
        // Some encodings decode bytes they cannot encode again (e.g. Shift_JIS user-defined
        // characters); that is a loss too.
        Charset::Other(_) => {
            let lossy = flagged || chosen.encode(&text) != bytes;
            Decoded { text, charset: chosen, lossy }
        }
        _ => Decoded { text, charset: chosen, lossy: flagged },
    }
}

/// MSH-18 (first repetition) of the first MSH segment, read from raw bytes.
fn declared_charset(bytes: &[u8]) -> Option<Charset> {
    let msh = bytes.split(|&b| b == b'\r' || b == b'\n').find(|line| line.starts_with(b"MSH"))?;
    let field_sep = *msh.get(3)?;
    if !field_sep.is_ascii_punctuation() {
        return None;
    }
    // Splitting `MSH|^~\&|...` on `|` gives "MSH", MSH-2, MSH-3, ...: MSH-n is at index n - 1.
    let msh18 = msh.split(|&b| b == field_sep).nth(17)?;
    let repetition_sep = msh.get(5).copied().unwrap_or(b'~');
    let first = msh18.split(|&b| b == repetition_sep).next()?;
    Charset::from_label(std::str::from_utf8(first).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEM: &[u8] = include_bytes!("testdata/chem-report-8859-1.hl7");

    #[test]
    fn msh18_chooses_the_charset() {
        let d = decode(CHEM, None);
        assert_eq!(d.charset, Charset::Latin1);
        assert!(!d.lossy);
        let bytes = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||UNICODE UTF-8\rPID|1||x\xc3\xa9";
        let d = decode(bytes, None);
        assert_eq!(d.charset, Charset::Utf8);
        assert!(d.text.ends_with("xé"));
    }

    #[test]
    fn latin1_bytes_without_msh18_decode_losslessly() {
        let bytes = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||Ren\xe9e";
        let d = decode(bytes, None);
        assert_eq!(d.charset, Charset::Latin1);
        assert!(d.text.ends_with("Renée"));
        assert_eq!(d.charset.encode(&d.text), bytes);
    }

    #[test]
    fn declared_utf8_that_is_not_utf8_reads_as_latin1() {
        let bytes = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||UNICODE UTF-8\rPID|1||\xe9";
        let d = decode(bytes, None);
        assert_eq!(d.charset, Charset::Latin1);
        assert!(!d.lossy);
        assert_eq!(d.charset.encode(&d.text), bytes);
    }

    #[test]
    fn override_wins_and_valid_utf8_borrows() {
        let d = decode(CHEM, Some(Charset::Utf8));
        assert_eq!(d.charset, Charset::Utf8);
        assert!(matches!(d.text, Cow::Borrowed(_)));
    }

    #[test]
    fn unknown_or_junk_msh18_falls_back() {
        let d = decode(b"MSH|^~\\&|||||||||||||||||KLINGON\rPID|\xe9", None);
        assert_eq!(d.charset, Charset::Latin1);
        assert_eq!(decode(b"", None).charset, Charset::Utf8);
        assert_eq!(decode(b"MSH", None).charset, Charset::Utf8);
    }

    /// A fixed-seed linear congruential generator: reproducible "random" inputs, no crates.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n.max(1)
        }

        fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
            &items[self.below(items.len())]
        }
    }

    const SAMPLES: [&[u8]; 4] = [
        include_bytes!("testdata/adt-a01.hl7"),
        include_bytes!("testdata/lab-oru-r01.hl7"),
        include_bytes!("testdata/chem-report-8859-1.hl7"),
        include_bytes!("testdata/batch-fhs-bhs.hl7"),
    ];
    /// Bytes that matter to HL7 parsing, plus a few that matter to charsets and framing.
    const ALPHABET: &[u8] = b"MSHFBPIDOXZ019|^~\\&#$!\r\n \x0b\x1c\xe9\xc3\xa9\xef\xbb\xbf\x82";

    fn input(rng: &mut Lcg) -> Vec<u8> {
        match rng.below(4) {
            0 => (0..rng.below(120)).map(|_| rng.below(256) as u8).collect(),
            1 => {
                let mut bytes = b"MSH|^~\\&|".to_vec();
                bytes.extend((0..rng.below(200)).map(|_| *rng.pick(ALPHABET)));
                bytes
            }
            _ => {
                let mut bytes = rng.pick(&SAMPLES).to_vec();
                for _ in 0..1 + rng.below(6) {
                    let at = rng.below(bytes.len() + 1);
                    match rng.below(4) {
                        0 if at < bytes.len() => bytes[at] = *rng.pick(ALPHABET),
                        1 => bytes.insert(at, *rng.pick(ALPHABET)),
                        2 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.truncate(at),
                    }
                }
                bytes
            }
        }
    }

    #[test]
    fn nothing_panics_on_arbitrary_bytes() {
        let paths: Vec<FieldPath> =
            ["MSH-9", "MSH-1", "MSH-2", "PID-3", "PID-3.1", "PID-3(2).1.1", "OBX[2]-5", "FHS-3"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect();
        let transforms: Vec<Transform> = [
            ("PID-5.2", "X"),
            ("PID-3(2).4.2", "Y^Z"),
            ("MSH-10", "N"),
            ("ZZZ-1", "x"),
            ("MSH-2", "x"),
            ("OBX[2]-5", ""),
        ]
        .iter()
        .map(|(p, v)| Transform::Set { path: p.parse().unwrap(), value: v.to_string() })
        .chain([
            Transform::Copy { from: "MSH-10".parse().unwrap(), to: "PID-20".parse().unwrap() },
            Transform::Clear { path: "OBX-5".parse().unwrap() },
        ])
        .collect();
        let charsets = [None, Some(Charset::Latin1), Some(Charset::Utf8), Charset::from_label("shift_jis")];
        let mut rng = Lcg(0x0u64.wrapping_add(20240611));
        let mut parsed = 0;
        for _ in 0..4000 {
            let bytes = input(&mut rng);
            let decoded = decode(&bytes, *rng.pick(&charsets));
            if !decoded.lossy {
                assert_eq!(decoded.charset.encode(&decoded.text), bytes);
            }
            let _ = parse_ack(&decoded.text);
            if let Ok(message) = Message::parse(&decoded.text) {
                parsed += 1;
                let header = message.header();
                let _ = message.summary();
                for path in &paths {
                    let _ = message.values(path);
                }
                let ack = build_ack(Some(&header), AckCode::AE, Some("bad | text\r"), "K", "T");
                assert!(parse_ack(&ack).is_ok(), "{ack:?}");
            }
            let chosen: Vec<Transform> = (0..rng.below(3)).map(|_| rng.pick(&transforms).clone()).collect();
            match apply_transforms(&bytes, decoded.charset, &chosen) {
                Ok(out) if chosen.is_empty() => assert_eq!(out, bytes),
                Ok(out) => {
                    // Edits never break the structure they edited.
                    let again = decode(&out, Some(decoded.charset));
                    let result = Message::read(&again.text);
                    assert!(result.is_ok(), "{result:?} {chosen:?}\n{bytes:?}\n{out:?}");
                }
                Err(_) => {}
            }
        }
        // The generator must reach past the header checks often enough to mean something.
        assert!(parsed > 1000, "only {parsed} inputs parsed");
    }

    #[test]
    fn hand_built_zero_paths_do_not_panic() {
        let text = std::str::from_utf8(SAMPLES[0]).unwrap();
        let message = Message::parse(text).unwrap();
        let zero = FieldPath {
            segment: "PID".into(),
            occurrence: Some(0),
            field: 0,
            repetition: Some(0),
            component: Some(0),
            subcomponent: Some(0),
        };
        assert!(message.values(&zero).is_empty());
        let unpinned = FieldPath { occurrence: None, ..zero.clone() };
        assert!(message.values(&unpinned).is_empty());
        let set = Transform::Set { path: unpinned.clone(), value: "x".into() };
        let clear = Transform::Clear { path: unpinned };
        let _ = apply_transforms(SAMPLES[0], Charset::Utf8, &[set, clear]);
    }
}
