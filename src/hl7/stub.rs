#![allow(dead_code, unused_variables)]
use super::{Charset, FieldPath, Transform};
use std::borrow::Cow;
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub message_type: String,
    pub control_id: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub version: String,
}
pub struct Decoded<'a> {
    pub text: Cow<'a, str>,
    pub charset: Charset,
    pub lossy: bool,
}
pub fn decode(bytes: &[u8], o: Option<Charset>) -> Decoded<'_> {
    let (t, l) = Charset::Latin1.decode(bytes);
    Decoded { text: t, charset: o.unwrap_or(Charset::Latin1), lossy: l }
}
pub struct Message<'a> {
    t: &'a str,
}
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Hl7Error {
    #[error("x")]
    X,
}
impl<'a> Message<'a> {
    pub fn parse(text: &'a str) -> Result<Message<'a>, Hl7Error> {
        Ok(Message { t: text })
    }
    pub fn header(&self) -> Header {
        Header::default()
    }
    pub fn summary(&self) -> Summary {
        Summary::default()
    }
    pub fn values(&self, path: &FieldPath) -> Vec<String> {
        vec![]
    }
}
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub field_separator: char,
    pub encoding_characters: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub message_type: String,
    pub message_code: String,
    pub trigger_event: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
    pub accept_ack_type: String,
    pub application_ack_type: String,
    pub character_set: String,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    AA,
    AE,
    AR,
    CA,
    CE,
    CR,
}
impl AckCode {
    pub fn as_str(&self) -> &'static str {
        "AA"
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Original,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Unparseable,
    CannotStore,
}
impl AckMode {
    pub fn of(h: &Header) -> AckMode {
        AckMode::Original
    }
    pub fn code(&self, o: Outcome) -> AckCode {
        AckCode::AA
    }
    pub fn should_send(&self, o: Outcome) -> bool {
        true
    }
}
pub fn build_ack(
    original: Option<&Header>,
    code: AckCode,
    text: Option<&str>,
    ack_control_id: &str,
    timestamp: &str,
) -> String {
    String::new()
}
pub struct AckReply {
    pub code: AckCode,
    pub control_id: String,
    pub text: Option<String>,
}
pub fn parse_ack(text: &str) -> Result<AckReply, Hl7Error> {
    Err(Hl7Error::X)
}
pub fn apply_transforms(bytes: &[u8], charset: Charset, transforms: &[Transform]) -> Result<Vec<u8>, Hl7Error> {
    Ok(bytes.to_vec())
}
