//! What can go wrong reading, acknowledging or transforming an HL7 v2 message.
//!
//! Every message is written for the person at the interface engine or the lab instrument: it
//! names the segment, field or config path at fault and what was expected. None quotes message
//! content (PHI), not even its first characters: `NotHl7` says what *kind* of byte the message
//! starts with (MLLP framing left on, a control character, other text), which is what a tech
//! needs, and these texts reach events, escalations and central.

/// What a message that is not HL7 starts with, told without quoting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// 0x0B: MLLP framing that was not removed.
    MllpStart,
    /// Another control character (its code, which is no content).
    Control(u32),
    /// Anything else (not shown: it may be patient data).
    Text,
}

impl Start {
    pub fn of(c: char) -> Start {
        match c {
            '\u{b}' => Start::MllpStart,
            c if c.is_control() => Start::Control(c as u32),
            _ => Start::Text,
        }
    }
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::MllpStart => f.write_str("the MLLP start byte 0x0B (the framing was not removed)"),
            Start::Control(c) => write!(f, "the control character 0x{c:02X}"),
            Start::Text => f.write_str("other text (not shown: it may be patient data)"),
        }
    }
}

/// A problem with an HL7 v2 message or with a transform applied to one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hl7Error {
    #[error("the message is empty")]
    Empty,

    #[error(
        "the message does not start with MSH (nor FHS/BHS for a batch): it starts with {start}. \
         Is the sender speaking HL7 v2, and is any framing removed?"
    )]
    NotHl7 { start: Start },

    #[error(
        "{segment}-1 field separator missing or invalid: {segment} must be followed directly by a punctuation \
         character, usually |"
    )]
    FieldSeparator { segment: &'static str },

    #[error(
        "{segment}-2 encoding characters missing: after the field separator the sender must put the four \
         encoding characters, usually ^~\\&"
    )]
    MissingEncodingCharacters { segment: &'static str },

    #[error(
        "{segment}-2 encoding characters invalid: expected 4 distinct punctuation characters such as ^~\\& \
         (5 with the v2.7 truncation character), none equal to the field separator"
    )]
    BadEncodingCharacters { segment: &'static str },

    #[error("MSH-9 message type is empty")]
    EmptyMessageType,

    #[error("MSH-10 control id is empty")]
    EmptyControlId,

    #[error("the batch (FHS/BHS) contains no MSH message")]
    EmptyBatch,

    #[error("no MSA segment: the reply is not an HL7 acknowledgement")]
    NoMsa,

    #[error("MSA-1 acknowledgement code is missing or unknown (expected AA, AE, AR, CA, CE or CR)")]
    UnknownAckCode,

    #[error("transform on {path}: the message has no such segment")]
    MissingSegment { path: String },

    #[error("transform on {path}: MSH-1 and MSH-2 (and FHS/BHS-1/2) define the separators and cannot be edited")]
    ReadOnlyField { path: String },

    #[error(
        "transform on {path}: the value contains a line break or the message's field separator, which would \
         split the segment; escape it (\\F\\) or change the value"
    )]
    InvalidValue { path: String },

    #[error(
        "the message is not valid {charset}, so a transformed copy would change bytes outside the edited fields; \
         check the source's charset setting or the sender's MSH-18"
    )]
    CharsetMismatch { charset: &'static str },
}
