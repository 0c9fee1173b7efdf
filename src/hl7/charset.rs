//! Character sets of HL7 v2 messages (MSH-18) and per-source overrides.
//!
//! outpost always stores the exact bytes it received; a charset is only used to *read* a message
//! (routing conditions, summaries, transforms) and to write a transformed copy back in the same
//! encoding. ISO 8859-1 is decoded byte for byte, so a latin-1 message round-trips exactly.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// US-ASCII; bytes above 0x7F are read as latin-1 rather than rejected.
    Ascii,
    /// ISO 8859-1, decoded byte for byte.
    Latin1,
    Utf8,
    /// Any other encoding `encoding_rs` knows (8859/2..15, windows-125x, ...).
    Other(&'static encoding_rs::Encoding),
}

impl Charset {
    /// Maps an MSH-18 value (HL7 table 0211) or a config label to a charset.
    /// Accepts the HL7 names (`ASCII`, `8859/1`, `UNICODE UTF-8`) and common labels
    /// (`latin1`, `iso-8859-1`, `utf-8`, `windows-1252`). Returns `None` for unknown labels.
    pub fn from_label(label: &str) -> Option<Charset> {
        let l = label.trim();
        let upper = l.to_ascii_uppercase();
        match upper.as_str() {
            "" => None,
            "ASCII" | "US-ASCII" | "ISO IR6" => Some(Charset::Ascii),
            "8859/1" | "ISO-8859-1" | "ISO8859-1" | "ISO_8859-1" | "LATIN1" | "LATIN-1" | "ISO-IR100" | "ISO IR100" => {
                Some(Charset::Latin1)
            }
            "UNICODE UTF-8" | "UTF-8" | "UTF8" | "UNICODE" | "ISO IR192" => Some(Charset::Utf8),
            // HL7 table 0211 names that are not encoding_rs labels.
            "GB 18030-2000" => Some(Charset::Other(encoding_rs::GB18030)),
            "BIG-5" => Some(Charset::Other(encoding_rs::BIG5)),
            "KS X 1001" => Some(Charset::Other(encoding_rs::EUC_KR)),
            _ => {
                if let Some(n) = upper.strip_prefix("8859/") {
                    return encoding_rs::Encoding::for_label(format!("iso-8859-{n}").as_bytes()).map(Charset::Other);
                }
                encoding_rs::Encoding::for_label(l.as_bytes()).map(Charset::Other)
            }
        }
    }

    /// A short name for logs and the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            Charset::Ascii => "ascii",
            Charset::Latin1 => "iso-8859-1",
            Charset::Utf8 => "utf-8",
            Charset::Other(e) => e.name(),
        }
    }

    /// Decodes bytes for reading. UTF-8 that is not valid UTF-8 falls back to latin-1 so that no
    /// byte is lost or replaced; the returned flag says whether that fallback happened.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> (Cow<'a, str>, bool) {
        match self {
            Charset::Ascii | Charset::Latin1 => (latin1_decode(bytes), false),
            Charset::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => (Cow::Borrowed(s), false),
                Err(_) => (latin1_decode(bytes), true),
            },
            Charset::Other(enc) => {
                let (text, had_errors) = enc.decode_without_bom_handling(bytes);
                (text, had_errors)
            }
        }
    }

    /// Encodes text back into this charset. Characters the charset cannot hold are written as
    /// `?` (only possible for text a transform inserted). Never as `&#NNNN;`, which is what
    /// `encoding_rs` writes by default and which would put HL7 separators (`&`) into a value.
    pub fn encode(&self, text: &str) -> Vec<u8> {
        match self {
            Charset::Ascii | Charset::Latin1 => {
                text.chars().map(|c| if (c as u32) <= 0xFF { c as u32 as u8 } else { b'?' }).collect()
            }
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Other(enc) => encode_with_question_marks(enc, text),
        }
    }
}

fn encode_with_question_marks(enc: &'static encoding_rs::Encoding, text: &str) -> Vec<u8> {
    use encoding_rs::EncoderResult;
    let mut encoder = enc.new_encoder();
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut rest = text;
    loop {
        // `None` only on usize overflow; then reserve something and let OutputFull loop.
        out.reserve(encoder.max_buffer_length_from_utf8_without_replacement(rest.len()).unwrap_or(1024));
        let (result, read) = encoder.encode_from_utf8_to_vec_without_replacement(rest, &mut out, true);
        rest = &rest[read..];
        match result {
            EncoderResult::InputEmpty => return out,
            EncoderResult::OutputFull => {}
            EncoderResult::Unmappable(_) => out.push(b'?'),
        }
    }
}

fn latin1_decode(bytes: &[u8]) -> Cow<'_, str> {
    if bytes.is_ascii() {
        // ASCII is valid UTF-8.
        Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default())
    } else {
        Cow::Owned(bytes.iter().map(|&b| b as char).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(Charset::from_label("8859/1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_label("UNICODE UTF-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_label("ascii"), Some(Charset::Ascii));
        assert!(matches!(Charset::from_label("8859/2"), Some(Charset::Other(_))));
        assert_eq!(Charset::from_label("klingon"), None);
        assert_eq!(Charset::from_label("8859/15").map(|c| c.name()), Some("ISO-8859-15"));
        assert_eq!(Charset::from_label("BIG-5").map(|c| c.name()), Some("Big5"));
        assert_eq!(Charset::from_label("ISO IR6"), Some(Charset::Ascii));
        assert_eq!(Charset::from_label("ISO IR192"), Some(Charset::Utf8));
    }

    #[test]
    fn latin1_round_trips_every_byte() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let (text, _) = Charset::Latin1.decode(&bytes);
        assert_eq!(Charset::Latin1.encode(&text), bytes);
    }

    #[test]
    fn invalid_utf8_falls_back_without_loss() {
        let bytes = b"M\xfcller";
        let (text, fell_back) = Charset::Utf8.decode(bytes);
        assert!(fell_back);
        assert_eq!(text, "Müller");
        assert_eq!(Charset::Latin1.encode(&text), bytes);
    }

    #[test]
    fn unmappable_characters_become_question_marks() {
        let sjis = Charset::from_label("shift_jis").unwrap();
        assert_eq!(sjis.encode("a\u{e24b}é日"), b"a??\x93\xfa");
        assert_eq!(Charset::Latin1.encode("a日"), b"a?");
    }
}
