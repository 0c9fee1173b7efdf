//! Is this ASTM at all? A clear refusal, in a field tech's words, for what is not: an
//! instrument set to another output format, a proprietary protocol that also uses STX (the
//! bioMérieux mini VIDAS), a file of something else.
//!
//! Framed input (a wire capture: ENQ, frames, EOT) is ASTM when at least one block starting
//! with STX is a valid E1381 frame and the frames' text holds an H record. Unframed input
//! (records at rest) is ASTM when it holds an H record with valid delimiters. Errors name what
//! was missing, never the bytes.

use super::decode::{WireItem, walk};
use super::frame::FrameProblem;
use super::records::{Delimiters, Start};
use super::split::{is_header, split_messages};

/// What ASTM input looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// E1381 frames (`frames` of them valid).
    Framed { frames: usize },
    /// E1394 records without framing.
    Records,
}

/// Why input is not ASTM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAstm {
    #[error("not ASTM: it is empty")]
    Empty,
    #[error(
        "not ASTM E1381: {blocks} block(s) start with STX but none is a valid frame (the first: {first}), and so \
         there is no H record either. Is the instrument set to send ASTM (LIS2-A2)? Some instruments (the \
         bioMérieux mini VIDAS) use a protocol of their own, which outpost cannot read"
    )]
    NoValidFrame { blocks: usize, first: FrameProblem },
    #[error(
        "not ASTM E1394: {frames} valid frame(s), but their text holds no H (header) record; it starts with \
         {start}"
    )]
    FramesWithoutHeader { frames: usize, start: Start },
    #[error(
        "not ASTM: no E1381 frame (STX) and no H (header) record with valid delimiters; it starts with {start}. \
         Is this an export in another format?"
    )]
    NoHeader { start: Start },
}

/// Says whether `bytes` are ASTM, framed or not.
pub fn classify(bytes: &[u8]) -> Result<Shape, NotAstm> {
    let Some(&first_byte) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else { return Err(NotAstm::Empty) };
    let walked = walk(bytes);
    let frames: Vec<_> = walked
        .items
        .iter()
        .filter_map(|i| match i {
            WireItem::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    if !frames.is_empty() {
        let valid = frames.iter().filter(|f| f.problem.is_none()).count();
        if valid == 0 {
            let first = frames[0].problem.unwrap_or(FrameProblem::NoEnd);
            return Err(NotAstm::NoValidFrame { blocks: frames.len(), first });
        }
        if !has_header(&walked.text) {
            let start = walked.text.first().map_or(Start::Text, |&b| Start::of(b));
            return Err(NotAstm::FramesWithoutHeader { frames: valid, start });
        }
        return Ok(Shape::Framed { frames: valid });
    }
    if has_header(bytes) {
        return Ok(Shape::Records);
    }
    Err(NotAstm::NoHeader { start: Start::of(first_byte) })
}

/// [`classify`] says it is ASTM.
pub fn is_astm(bytes: &[u8]) -> bool {
    classify(bytes).is_ok()
}

fn has_header(text: &[u8]) -> bool {
    split_messages(text).iter().any(|m| {
        let first = text[m.range.clone()].split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
        is_header(first) && Delimiters::from_header(first).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astm::frame::{FrameEnd, encode_frame};

    #[test]
    fn framed_records_and_refusals() {
        let framed = [b"\x05".as_slice(), &encode_frame(1, b"H|\\^&\rL|1|N\r", FrameEnd::Final), b"\x04"].concat();
        assert_eq!(classify(&framed), Ok(Shape::Framed { frames: 1 }));
        assert_eq!(classify(b"\r\nH|\\^&|||X\rR|1|^^^A|1\rL|1|N\r"), Ok(Shape::Records));
        assert_eq!(classify(b" \r\n"), Err(NotAstm::Empty));
        assert_eq!(classify(b"MSH|^~\\&|A"), Err(NotAstm::NoHeader { start: Start::Text }));
        assert_eq!(classify(b"H|ab|"), Err(NotAstm::NoHeader { start: Start::Text }));
        let headless = encode_frame(1, b"P|1\rL|1|N\r", FrameEnd::Final);
        assert_eq!(classify(&headless), Err(NotAstm::FramesWithoutHeader { frames: 1, start: Start::Text }));
        assert!(!is_astm(b"%PDF-1.4"));
    }

    #[test]
    fn refusals_quote_nothing() {
        let e = classify(b"\x02\x1emtrsl|\x1epi|\x1epnDoe Jane|\x1db0\n").unwrap_err();
        assert!(matches!(e, NotAstm::NoValidFrame { blocks: 1, first: FrameProblem::NoEnd }), "{e:?}");
        let text = e.to_string();
        assert!(!text.contains("Doe") && !text.contains("mtrsl"), "{text}");
    }
}
