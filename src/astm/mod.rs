//! ASTM lab links: the CLSI LIS01-A2 (ASTM E1381) link layer and the LIS02-A2 (ASTM E1394)
//! record layer, sans IO.
//!
//! The async adapter around it (serial or TCP) reads bytes and feeds them to a [`Link`] with the
//! time they arrived, calls [`Link::tick`] when [`Link::next_deadline`] comes, writes what the
//! link asks it to write and journals the messages it hands over, then tells the link
//! [`Link::durable`] (the final frame's ACK goes out only then). Everything else here is pure
//! reading and building of bytes.
//!
//! | file | what |
//! |---|---|
//! | `frame.rs` | one frame: parsing (bounded, byte by byte), checksums, encoding, splitting records into frames |
//! | `link.rs` | the E1381 state machine for one half-duplex link, both directions |
//! | `split.rs` | cutting a stream of records into H…L messages (batch and incremental) |
//! | `records.rs` | E1394 records: delimiters, escapes, fields by position, a message's summary and queries |
//! | `classify.rs` | is this ASTM at all? (a clear refusal for what is not) |
//! | `decode.rs` | a wire capture as a report a field tech can read, PHI masked |
//! | `reply.rs` | building order replies (H, P, O, L) to an instrument's query |
//!
//! Promises:
//! - No IO, no clocks, no threads, no tokio: time comes in as [`std::time::Instant`] arguments.
//!   Never imports `journal`, `config` or `ingress`.
//! - Nothing here panics on input, whatever the bytes; memory is bounded (a frame's text by
//!   [`frame::LONG_TEXT_MAX`], a message by [`Link::with_max_message_size`]).
//! - Nothing here logs, and no `Debug` or `Display` of a type here shows record content (PHI):
//!   events, errors and summaries carry frame numbers, record types, ids, codes and counts. Only
//!   [`decode::Report::render`] with `show_phi` prints values.

pub mod classify;
pub mod decode;
pub mod frame;
pub mod link;
pub mod records;
pub mod reply;
pub mod results;
pub mod split;

#[cfg(test)]
pub(crate) mod tests;

pub use classify::{NotAstm, Shape, classify, is_astm};
pub use frame::{Frame, FrameEnd, FrameError, FrameProblem, LineEnd, split_message, split_message_packed};
pub use link::{Action, DiscardReason, Event, Link, Phase, Quirks, Rejection, SendFailure, SendId, Timers, Token};
pub use records::{Delimiters, FieldPath, Message, Query, Record, RecordError, Summary};
pub use reply::{Order, ReplyHeader, build_order_reply};
pub use results::result_sets;
pub use split::{Assembled, Assembler, Split, split_messages};

/// The control characters of E1381.
pub mod ctrl {
    pub const SOH: u8 = 0x01;
    pub const STX: u8 = 0x02;
    pub const ETX: u8 = 0x03;
    pub const EOT: u8 = 0x04;
    pub const ENQ: u8 = 0x05;
    pub const ACK: u8 = 0x06;
    pub const LF: u8 = 0x0A;
    pub const CR: u8 = 0x0D;
    pub const DLE: u8 = 0x10;
    pub const DC1: u8 = 0x11;
    pub const DC4: u8 = 0x14;
    pub const NAK: u8 = 0x15;
    pub const SYN: u8 = 0x16;
    pub const ETB: u8 = 0x17;

    /// The characters E1381 forbids in a frame's text (they would be mistaken for link
    /// control): SOH STX ETX EOT ENQ ACK DLE NAK SYN ETB LF DC1-DC4. CR is allowed (it ends
    /// records); other control characters are not restricted by the standard.
    pub fn is_restricted(b: u8) -> bool {
        matches!(b, SOH..=ACK | LF | DLE..=DC4 | NAK | SYN | ETB)
    }
}
