//! Acknowledgements: which ACK to send for a message we received (and whether to send one at
//! all), building its text, and reading the ACKs downstream systems send us.
//!
//! outpost answers after the message is durable in the journal, so its ACK is a commit: in
//! enhanced mode an accept acknowledgement (CA/CE/CR), in original mode the application
//! acknowledgement (AA/AE/AR). It never sends an enhanced-mode application acknowledgement; the
//! receiving application downstream is the one to do that.
//!
//! Mode rules (HL7 v2.5 §2.9.2/§2.9.3, v2.9 MSH-15/MSH-16 definitions):
//! - MSH-15 and MSH-16 both empty: original mode.
//! - Otherwise enhanced mode, MSH-15 telling when to send the accept ACK: AL always, NE never,
//!   ER only on error/reject, SU only on success.
//! - The standard gives no meaning to an empty MSH-15 next to a valued MSH-16 (v2.9 says both
//!   SHALL be valued or both empty), nor to values outside table 0155. We answer as for AL: a
//!   sender waiting for an accept ACK that never comes resends forever, while an unexpected ACK
//!   is harmless.

use std::fmt;

use super::escape::Delimiters;
use super::{FieldPath, Header, Hl7Error, Message};

/// MSA-1 acknowledgement code (HL7 table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Original mode: application accept.
    AA,
    /// Original mode: application error.
    AE,
    /// Original mode: application reject.
    AR,
    /// Enhanced mode: commit accept.
    CA,
    /// Enhanced mode: commit error.
    CE,
    /// Enhanced mode: commit reject.
    CR,
}

impl AckCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// Reads an MSA-1 value (surrounding spaces and case ignored).
    pub fn from_code(code: &str) -> Option<AckCode> {
        match code.trim().to_ascii_uppercase().as_str() {
            "AA" => Some(AckCode::AA),
            "AE" => Some(AckCode::AE),
            "AR" => Some(AckCode::AR),
            "CA" => Some(AckCode::CA),
            "CE" => Some(AckCode::CE),
            "CR" => Some(AckCode::CR),
            _ => None,
        }
    }

    /// Whether the code says the message was not accepted.
    pub fn is_error(&self) -> bool {
        !matches!(self, AckCode::AA | AckCode::CA)
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When the sender wants an accept acknowledgement (MSH-15, HL7 table 0155).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptAck {
    Always,
    Never,
    ErrorOnly,
    SuccessOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Original,
    Enhanced(AcceptAck),
}

/// What became of a message we received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Durable in the journal.
    Stored,
    /// Kept, but it is not a readable HL7 message.
    Unparseable,
    /// Could not be stored (journal full or failing); the sender should retry.
    CannotStore,
}

impl AckMode {
    /// The mode a message asks for (see the module docs for the exact rules).
    pub fn of(header: &Header) -> AckMode {
        let accept = header.accept_ack_type.trim();
        if accept.is_empty() && header.application_ack_type.trim().is_empty() {
            return AckMode::Original;
        }
        AckMode::Enhanced(match accept.to_ascii_uppercase().as_str() {
            "NE" => AcceptAck::Never,
            "ER" => AcceptAck::ErrorOnly,
            "SU" => AcceptAck::SuccessOnly,
            _ => AcceptAck::Always,
        })
    }

    /// The code to answer with for an outcome: Stored → AA/CA, Unparseable → AE/CE,
    /// CannotStore → AR/CR.
    pub fn code(&self, outcome: Outcome) -> AckCode {
        match (self, outcome) {
            (AckMode::Original, Outcome::Stored) => AckCode::AA,
            (AckMode::Original, Outcome::Unparseable) => AckCode::AE,
            (AckMode::Original, Outcome::CannotStore) => AckCode::AR,
            (AckMode::Enhanced(_), Outcome::Stored) => AckCode::CA,
            (AckMode::Enhanced(_), Outcome::Unparseable) => AckCode::CE,
            (AckMode::Enhanced(_), Outcome::CannotStore) => AckCode::CR,
        }
    }

    /// Whether an ACK is sent at all: always in original mode; in enhanced mode as MSH-15 says.
    pub fn should_send(&self, outcome: Outcome) -> bool {
        match self {
            AckMode::Original | AckMode::Enhanced(AcceptAck::Always) => true,
            AckMode::Enhanced(AcceptAck::Never) => false,
            AckMode::Enhanced(AcceptAck::ErrorOnly) => outcome != Outcome::Stored,
            AckMode::Enhanced(AcceptAck::SuccessOnly) => outcome == Outcome::Stored,
        }
    }
}

/// Builds an ACK's text: every segment terminated by CR, no MLLP framing.
///
/// With `original`: its separators and encoding characters; MSH-3/4 ↔ MSH-5/6 swapped; MSH-7 =
/// `timestamp`; MSH-9 = `ACK^<trigger>^ACK` (`ACK` if the original had no trigger);
/// MSH-10 = `ack_control_id`; MSH-11, MSH-12 and MSH-18 copied (MSH-18 so that the receiver
/// decodes the ACK as it encoded its message: encode the ACK in that charset). Without
/// `original` (the bytes were not HL7): `|^~\&`, MSH-11 `P`, MSH-12 `2.5`, MSA-2 empty.
///
/// MSA-1 = `code`, MSA-2 = the original MSH-10, MSA-3 = `text` (deprecated since v2.4 but still
/// what many systems display). For error codes an ERR segment follows, shaped for the
/// original's version: before v2.5 ERR-1 `^^^<code>&<text>&HL70357`; from v2.5 (and when the
/// version is unknown) ERR-3 `<code>^<text>^HL70357`, ERR-4 `E` and ERR-8 = `text`. The HL7
/// error code (table 0357) is 100 "Segment sequence error" for AE/CE (the message structure
/// could not be read) and 207 "Application internal error" for AR/CR (we could not store it).
/// All values are HL7-escaped.
pub fn build_ack(
    original: Option<&Header>,
    code: AckCode,
    text: Option<&str>,
    ack_control_id: &str,
    timestamp: &str,
) -> String {
    let d = original.map(Delimiters::of).unwrap_or_default();
    let (f, c, s) = (d.field, d.component, d.subcomponent);
    let default = Header { processing_id: "P".into(), version: "2.5".into(), ..Header::default() };
    let h = original.unwrap_or(&default);
    let message_type = match h.trigger_event.is_empty() {
        true => "ACK".to_string(),
        false => format!("ACK{c}{}{c}ACK", h.trigger_event),
    };
    let (encoding, timestamp, ack_control_id) =
        (d.encoding_characters(), d.escape(timestamp), d.escape(ack_control_id));
    let fields: [&str; 12] = [
        "MSH",
        &encoding,
        &h.receiving_application,
        &h.receiving_facility,
        &h.sending_application,
        &h.sending_facility,
        &timestamp,
        "",
        &message_type,
        &ack_control_id,
        &h.processing_id,
        &h.version,
    ];
    let mut msh = fields.join(&f.to_string());
    if !h.character_set.is_empty() {
        // MSH-13 .. MSH-17 empty, then MSH-18.
        msh.extend(std::iter::repeat_n(f, 6));
        msh.push_str(&h.character_set);
    }

    let text = text.map(|t| d.escape(t));
    let mut out = format!("{msh}\rMSA{f}{code}{f}{}", h.control_id);
    if let Some(text) = &text {
        out.push_str(&format!("{f}{text}"));
    }
    out.push('\r');

    if code.is_error() {
        let (number, meaning) = match code {
            AckCode::AE | AckCode::CE => (100, "Segment sequence error"),
            _ => (207, "Application internal error"),
        };
        if version_before_2_5(&h.version, &d) {
            out.push_str(&format!("ERR{f}{c}{c}{c}{number}{s}{meaning}{s}HL70357\r"));
        } else {
            out.push_str(&format!("ERR{f}{f}{f}{number}{c}{meaning}{c}HL70357{f}E"));
            if let Some(text) = &text {
                out.push_str(&format!("{f}{f}{f}{f}{text}"));
            }
            out.push('\r');
        }
    }
    out
}

/// Whether MSH-12.1 names a version before 2.5 (`2.3`, `2.3.1`, `2.4`). Unreadable versions
/// count as current.
fn version_before_2_5(version: &str, d: &Delimiters) -> bool {
    let id = version.split(d.component).next().unwrap_or_default().trim();
    let mut parts = id.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) < (2, 5),
        _ => false,
    }
}

/// An ACK we received from a downstream system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckReply {
    pub code: AckCode,
    /// MSA-2: the control id of the message being acknowledged.
    pub control_id: String,
    /// The first valued of MSA-3, ERR-8 (user message), ERR-3.2 and ERR-1.4.2 (pre-2.5 error
    /// text), unescaped.
    pub text: Option<String>,
}

/// Reads an ACK from a downstream system: MSA-1 and MSA-2, and a text from MSA-3 or ERR.
/// Accepts CR, LF or CRLF segment ends and does not require the ACK's MSH-9/MSH-10 to be valued.
pub fn parse_ack(text: &str) -> Result<AckReply, Hl7Error> {
    let message = Message::read(text)?;
    let first = |segment: &str, field: usize, component: Option<usize>, subcomponent: Option<usize>| {
        let path = FieldPath {
            segment: segment.to_string(),
            occurrence: Some(1),
            field,
            repetition: Some(1),
            component,
            subcomponent,
        };
        message.values(&path).into_iter().next()
    };
    if !message.segments.iter().any(|s| s.name == "MSA") {
        return Err(Hl7Error::NoMsa);
    }
    let code = first("MSA", 1, Some(1), None).and_then(|c| AckCode::from_code(&c)).ok_or(Hl7Error::UnknownAckCode)?;
    let text = first("MSA", 3, None, None)
        .or_else(|| first("ERR", 8, None, None))
        .or_else(|| first("ERR", 3, Some(2), None))
        .or_else(|| first("ERR", 1, Some(4), Some(2)));
    Ok(AckReply { code, control_id: first("MSA", 2, None, None).unwrap_or_default(), text })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V23: &str = "MSH|^~\\&|LAB|NORTH|EMR|CLINIC|20240101120000||ORU^R01|C123|P|2.3\rPID|1||42";
    const V251: &str = include_str!("testdata/adt-a01.hl7");

    fn header(text: &str) -> Header {
        Message::parse(text).unwrap().header()
    }

    fn segments(ack: &str) -> Vec<&str> {
        assert!(ack.ends_with('\r'), "{ack:?}");
        ack.trim_end_matches('\r').split('\r').collect()
    }

    #[test]
    fn accept_ack_for_v23_swaps_sender_and_receiver() {
        let ack = build_ack(Some(&header(V23)), AckCode::AA, None, "ACK1", "20240101120001");
        assert_eq!(
            segments(&ack),
            ["MSH|^~\\&|EMR|CLINIC|LAB|NORTH|20240101120001||ACK^R01^ACK|ACK1|P|2.3", "MSA|AA|C123"]
        );
    }

    #[test]
    fn error_ack_for_v23_uses_err_1() {
        let ack = build_ack(Some(&header(V23)), AckCode::AE, Some("MSH-10 control id is empty"), "A", "T");
        assert_eq!(
            segments(&ack)[1..],
            ["MSA|AE|C123|MSH-10 control id is empty", "ERR|^^^100&Segment sequence error&HL70357"]
        );
    }

    #[test]
    fn error_ack_for_v251_uses_err_3_4_8_and_escapes_text() {
        let h = header(V251);
        let ack = build_ack(Some(&h), AckCode::AR, Some("journal full | retry ^ later\rok"), "A2", "T");
        let segs = segments(&ack);
        assert_eq!(
            segs[0],
            "MSH|^~\\&|GHH LAB, INC.|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|T||ACK^A01^ACK|A2|P|2.5.1"
        );
        let text = "journal full \\F\\ retry \\S\\ later\\X0D\\ok";
        assert_eq!(segs[1], format!("MSA|AR|MSG00001|{text}"));
        assert_eq!(segs[2], format!("ERR|||207^Application internal error^HL70357|E||||{text}"));
        // And it reads back as it was meant.
        let reply = parse_ack(&ack).unwrap();
        assert_eq!(reply.code, AckCode::AR);
        assert_eq!(reply.control_id, "MSG00001");
        assert_eq!(reply.text.as_deref(), Some("journal full | retry ^ later\rok"));
    }

    #[test]
    fn custom_separators_are_honoured() {
        let h = header("MSH#$*!@#APP$1#FAC#RCV#RFAC#1##ORU$R01#X!F!9#P#2.5.1");
        assert_eq!(h.control_id, "X!F!9");
        let ack = build_ack(Some(&h), AckCode::CE, Some("a#b"), "K", "T");
        assert_eq!(
            segments(&ack),
            [
                "MSH#$*!@#RCV#RFAC#APP$1#FAC#T##ACK$R01$ACK#K#P#2.5.1",
                "MSA#CE#X!F!9#a!F!b",
                "ERR###100$Segment sequence error$HL70357#E####a!F!b",
            ]
        );
        let reply = parse_ack(&ack).unwrap();
        assert_eq!((reply.code, reply.control_id.as_str()), (AckCode::CE, "X#9"));
    }

    #[test]
    fn charset_is_copied_and_missing_trigger_gives_plain_ack() {
        let h = header("MSH|^~\\&|A|B|C|D|1||QRY|7|P|2.4||||||8859/1");
        let ack = build_ack(Some(&h), AckCode::AA, Some("ok"), "K", "T");
        assert_eq!(segments(&ack)[0], "MSH|^~\\&|C|D|A|B|T||ACK|K|P|2.4||||||8859/1");
    }

    #[test]
    fn without_an_original_uses_defaults() {
        let ack = build_ack(None, AckCode::AE, Some("not HL7"), "K", "T");
        assert_eq!(
            segments(&ack),
            [
                "MSH|^~\\&|||||T||ACK|K|P|2.5",
                "MSA|AE||not HL7",
                "ERR|||100^Segment sequence error^HL70357|E||||not HL7",
            ]
        );
        // Our own ACK without an original is still readable by us.
        assert_eq!(parse_ack(&ack).unwrap().code, AckCode::AE);
    }

    #[test]
    fn original_mode_when_msh15_and_msh16_are_empty() {
        let mode = AckMode::of(&header(V23));
        assert_eq!(mode, AckMode::Original);
        assert_eq!(mode.code(Outcome::Stored), AckCode::AA);
        assert_eq!(mode.code(Outcome::Unparseable), AckCode::AE);
        assert_eq!(mode.code(Outcome::CannotStore), AckCode::AR);
        for outcome in [Outcome::Stored, Outcome::Unparseable, Outcome::CannotStore] {
            assert!(mode.should_send(outcome));
        }
    }

    #[test]
    fn enhanced_mode_follows_msh15() {
        let with = |msh15: &str, msh16: &str| Header {
            accept_ack_type: msh15.into(),
            application_ack_type: msh16.into(),
            ..Header::default()
        };
        use AcceptAck::*;
        let cases = [
            (("AL", ""), Always),
            (("NE", "AL"), Never),
            (("ER", "NE"), ErrorOnly),
            (("SU", ""), SuccessOnly),
            (("", "AL"), Always),
            (("xx", ""), Always),
            ((" su ", ""), SuccessOnly),
        ];
        for ((msh15, msh16), expected) in cases {
            assert_eq!(AckMode::of(&with(msh15, msh16)), AckMode::Enhanced(expected), "{msh15:?} {msh16:?}");
        }
        let sends = |a: AcceptAck| {
            [Outcome::Stored, Outcome::Unparseable, Outcome::CannotStore].map(|o| AckMode::Enhanced(a).should_send(o))
        };
        assert_eq!(sends(Always), [true, true, true]);
        assert_eq!(sends(Never), [false, false, false]);
        assert_eq!(sends(ErrorOnly), [false, true, true]);
        assert_eq!(sends(SuccessOnly), [true, false, false]);
        let mode = AckMode::Enhanced(Always);
        assert_eq!(
            [Outcome::Stored, Outcome::Unparseable, Outcome::CannotStore].map(|o| mode.code(o)),
            [AckCode::CA, AckCode::CE, AckCode::CR]
        );
        let h = header("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5|||ER|NE");
        assert_eq!(AckMode::of(&h), AckMode::Enhanced(ErrorOnly));
    }

    #[test]
    fn parse_ack_reads_replies_from_others() {
        let reply = parse_ack("MSH|^~\\&|B|B|A|A|1||ACK|\nMSA|AA|C123\n").unwrap();
        assert_eq!(reply, AckReply { code: AckCode::AA, control_id: "C123".into(), text: None });

        let reply =
            parse_ack("MSH|^~\\&|B|B|A|A|1||ACK^R01|9|P|2.3\r\nMSA|AE|C1\r\nERR|^^^207&Unknown patient&HL70357\r\n")
                .unwrap();
        assert_eq!((reply.code, reply.text.as_deref()), (AckCode::AE, Some("Unknown patient")));

        let reply = parse_ack(
            "MSH|^~\\&|B|B|A|A|1||ACK|9|P|2.5.1\rMSA|ar|C1\rERR|||207^Internal^HL70357|E||||Disk \\T\\ DB down",
        )
        .unwrap();
        assert_eq!((reply.code, reply.text.as_deref()), (AckCode::AR, Some("Disk & DB down")));

        let reply = parse_ack("MSH|^~\\&|B|B|A|A|1||ACK|9|P|2.5.1\rMSA|CR|C1\rERR|||207^Internal^HL70357|E").unwrap();
        assert_eq!(reply.text.as_deref(), Some("Internal"));
    }

    #[test]
    fn parse_ack_errors() {
        assert_eq!(parse_ack("MSH|^~\\&|B|B|A|A|1||ACK|1|P|2.5\rERR|x"), Err(Hl7Error::NoMsa));
        assert_eq!(parse_ack("MSH|^~\\&|B|B|A|A|1||ACK|1|P|2.5\rMSA|OK|1"), Err(Hl7Error::UnknownAckCode));
        assert_eq!(parse_ack("MSH|^~\\&|B|B|A|A|1||ACK|1|P|2.5\rMSA||1"), Err(Hl7Error::UnknownAckCode));
        assert!(matches!(parse_ack("<html>"), Err(Hl7Error::NotHl7 { .. })));
        assert_eq!(parse_ack(""), Err(Hl7Error::Empty));
    }
}
