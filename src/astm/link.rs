//! The E1381 (LIS01-A2) link layer as a state machine with no IO: one half-duplex link to one
//! instrument, serial or TCP alike, in both directions. outpost is the host (the "computer
//! system" of the standard): it receives results and queries, and it sends order replies and
//! order downloads.
//!
//! The adapter feeds it what it reads ([`Link::receive`]) and the passing of time
//! ([`Link::tick`] at [`Link::next_deadline`]), queues outgoing messages ([`Link::send`]), and
//! performs the [`Action`]s it drains with [`Link::poll_action`]: bytes to write, messages to
//! journal, outcomes of sends, and [`Event`]s to log or count (none carries record content).
//!
//! # Receiving
//! - ENQ is answered ACK, or NAK while a message handed over is not yet durable (see *Busy*).
//! - Frames are checked (checksum, frame number, restricted characters, at most 240 characters
//!   of text, CR LF after the checksum) and answered ACK or NAK. The expected frame number is 1
//!   after each ENQ, then wraps 7 → 0. A repeat of the last accepted frame's number is a
//!   retransmission (our ACK was lost): ACKed again, not stored twice. Any other number is NAKed.
//! - The text of accepted frames is cut into H…L messages by [`Assembler`] (several messages per
//!   session, and per frame, are fine), and each is handed over as [`Action::Message`].
//! - **Durability**: the frame that ends a message is not acknowledged until the adapter has
//!   journaled every message it ended and called [`Link::durable`] for each. If the journal
//!   refuses one ([`Link::refused`]), that frame is NAKed and its text taken back, so the
//!   instrument's retransmission hands the messages over again (and a refusal repeated six times
//!   makes the instrument give up and keep its data).
//! - EOT ends the session. A message still open then (records without their L) is handed over
//!   incomplete: every frame of it was acknowledged, so the instrument believes it delivered. But
//!   if the session ends in the middle of an E1381 message (the last frame ended ETB), the
//!   instrument aborted: what it sent of the open message is discarded (it will send it again)
//!   and reported.
//! - No frame or EOT for 30 s: the open message is discarded (reported) and the link is idle.
//! - ENQ directly followed by EOT (a keep-alive some instruments send) is just that.
//! - Bytes outside frames are counted ([`Event::Stray`]), never kept or shown.
//!
//! # Busy
//! While any message handed over is neither durable nor refused, an ENQ is answered NAK: the
//! instrument waits 10 s and tries again. This is the backpressure: the instrument keeps its
//! data while the journal is slow, and we never hold two sessions' worth in memory. It only
//! happens when the instrument gave up waiting for our ACK (15 s) and came back before the
//! journal answered.
//!
//! # Sending
//! One queued message per session: ENQ, then its frames (each record its own E1381 message,
//! [`split_message`]; or all records as one with [`Quirks::send_packed`]), then EOT.
//! - No reply within 15 s to ENQ or to a frame: EOT, and the message is tried again 10 s later.
//!   NAK to ENQ: tried again 10 s later. After six failed tries, [`Action::SendFailed`].
//! - A frame NAKed is sent again; the sixth NAK of one frame ends the session (EOT) and fails
//!   the message (LIS01-A2: "not accepted six times"; retrying the same bytes will not help).
//! - Contention (the instrument's ENQ while we wait for the reply to ours): the instrument wins.
//!   We do not answer that ENQ; the instrument sends another after 1 s, which we answer as any
//!   ENQ, and we bid again no sooner than 20 s later.
//! - Receiver interrupt (EOT instead of ACK to a frame): honoured. The frame counts as
//!   accepted; if it was the last, the message is sent; otherwise we end with EOT, and the whole
//!   message is sent again in a later session (15 s later at the earliest), counting as a try.
//! - A byte other than ACK, NAK or EOT while waiting for a reply is counted as stray, not taken
//!   as a NAK as LIS01-A2 says: on TCP a stray byte (a CR LF after ACK) is no line noise, and a
//!   retransmission per stray byte would flood the instrument. A garbled ACK on serial then
//!   costs a 15 s timeout and a retry of the message.
//!
//! # Quirks
//! Per-instrument tolerances, set by the instrument's profile and never guessed: see [`Quirks`].
//! They change what is accepted, never what is sent (except [`Quirks::send_packed`]).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::ctrl::{ACK, CR, ENQ, EOT, NAK, STX};
use super::frame::{
    Frame, FrameEnd, FrameError, FrameOptions, FrameParser, FrameProblem, LONG_TEXT_MAX, LineEnd, MAX_TEXT, Step,
    split_message, split_message_packed,
};
use super::split::Assembler;

/// How often one frame may be refused before the sender gives up (LIS01-A2).
pub const MAX_FRAME_ATTEMPTS: u8 = 6;

/// How many sessions an outgoing message is tried in (NAK or no reply to ENQ, no reply to a
/// frame, receiver interrupt) before it is reported failed.
pub const MAX_TRIES: u8 = 6;

/// Default bound on one received message (16 MiB, as for MLLP).
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The link's timers, LIS01-A2's values by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// How long we wait for the reply to our ENQ or frame (15 s).
    pub reply: Duration,
    /// How long we wait, receiving, for the next frame or EOT (30 s).
    pub receive: Duration,
    /// After contention, how long before we bid again (the host waits 20 s).
    pub contention: Duration,
    /// After a NAK to our ENQ or a failed try, how long before we bid again (10 s).
    pub retry: Duration,
    /// After honouring a receiver interrupt, how long before we bid again (15 s).
    pub interrupt: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            reply: Duration::from_secs(15),
            receive: Duration::from_secs(30),
            contention: Duration::from_secs(20),
            retry: Duration::from_secs(10),
            interrupt: Duration::from_secs(15),
        }
    }
}

/// Tolerances for instruments that do not follow LIS01-A2 to the letter. All off by default;
/// each is switched on by an instrument's profile, never guessed from traffic (the capture
/// decoder, [`super::decode`], says which ones a capture needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// Frames carry no frame number (`STX text ETX C1 C2 CR LF`, the checksum from the text).
    /// Retransmissions can then not be recognised: a frame whose ACK was lost is stored twice
    /// (the journal's duplicate check may still recognise the whole message).
    pub no_frame_numbers: bool,
    /// What follows the checksum: CR LF (standard), or LF alone, or CR CR.
    pub line_end: LineEnd,
    /// The last frame of a record ends `…|F ETX` with no CR before ETX: the record ends at ETX.
    /// Without it, such a frame is reported ([`Event::RecordWithoutCr`]) and its text runs into
    /// the next record.
    pub missing_cr_before_etx: bool,
    /// The instrument never sends ETX (every frame ends ETB) and ends at EOT: EOT after an ETB
    /// frame is then the normal end, not an abort.
    pub no_etx: bool,
    /// Frames of more than 240 characters of text are accepted (up to 64 KiB), instead of being
    /// NAKed. GeneXpert captures show such frames.
    pub long_frames: bool,
    /// Send a message as one E1381 message (all records run together, cut every 240
    /// characters, one ETX at the end) rather than one per record.
    pub send_packed: bool,
}

/// Names a message handed over by [`Action::Message`], for [`Link::durable`] and
/// [`Link::refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u64);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rx{}", self.0)
    }
}

/// Names a message queued by [`Link::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendId(u64);

impl fmt::Display for SendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// What the adapter must do. `Debug` shows no record content.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the instrument, in order.
    Write(Vec<u8>),
    /// A received message: its records as received, each ending CR (frames removed). Journal
    /// it, then call [`Link::durable`] (or [`Link::refused`]) with `token`: every token must be
    /// answered, once.
    Message {
        token: Token,
        records: Vec<u8>,
        /// Ends with an L record. False for a message cut short by the next H record or ended
        /// by EOT, and for records before any H.
        complete: bool,
    },
    /// A queued message was delivered (every frame acknowledged).
    Sent { id: SendId },
    /// A queued message was given up.
    SendFailed { id: SendId, why: SendFailure },
    /// Something to log or count.
    Event(Event),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Write(bytes) if bytes.len() == 1 => write!(f, "Write({})", control_name(bytes[0])),
            Action::Write(bytes) => write!(f, "Write({} bytes)", bytes.len()),
            Action::Message { token, records, complete } => f
                .debug_struct("Message")
                .field("token", token)
                .field("bytes", &records.len())
                .field("complete", complete)
                .finish(),
            Action::Sent { id } => f.debug_struct("Sent").field("id", id).finish(),
            Action::SendFailed { id, why } => f.debug_struct("SendFailed").field("id", id).field("why", why).finish(),
            Action::Event(e) => f.debug_tuple("Event").field(e).finish(),
        }
    }
}

fn control_name(b: u8) -> String {
    match b {
        ACK => "ACK".into(),
        NAK => "NAK".into(),
        ENQ => "ENQ".into(),
        EOT => "EOT".into(),
        b => format!("0x{b:02X}"),
    }
}

/// Why a received frame was answered NAK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Frame(FrameProblem),
    WrongNumber {
        expected: u8,
        got: u8,
    },
    /// The message it belongs to is over the size limit: every frame until EOT is refused.
    TooLarge,
    /// The adapter could not store a message this frame ended ([`Link::refused`]).
    NotStored,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Frame(p) => p.fmt(f),
            Rejection::WrongNumber { expected, got } => write!(f, "frame number {got}, {expected} expected"),
            Rejection::TooLarge => f.write_str("its message is over the size limit"),
            Rejection::NotStored => f.write_str("a message it ends could not be stored"),
        }
    }
}

/// Why received data was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardReason {
    /// No frame or EOT within the receive timeout.
    ReceiveTimeout,
    /// EOT in the middle of an E1381 message (after an ETB frame): the instrument aborted.
    SenderAborted,
    /// The message grew over the size limit.
    TooLarge,
    /// A new ENQ arrived before the session ended.
    Restarted,
    /// The adapter reported the connection lost ([`Link::disconnected`]).
    Disconnected,
}

impl fmt::Display for DiscardReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiscardReason::ReceiveTimeout => "no frame or EOT within the receive timeout",
            DiscardReason::SenderAborted => "the instrument ended the session (EOT) in the middle of a message",
            DiscardReason::TooLarge => "the message is over the size limit",
            DiscardReason::Restarted => "the instrument started a new session (ENQ) without ending the last",
            DiscardReason::Disconnected => "the connection was lost",
        })
    }
}

/// Why one try at sending failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryFailure {
    /// NAK to our ENQ.
    Busy,
    /// No reply to our ENQ or frame.
    NoReply,
    /// Receiver interrupt.
    Interrupted,
    Disconnected,
}

impl fmt::Display for TryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryFailure::Busy => "the instrument answered ENQ with NAK (busy)",
            TryFailure::NoReply => "no reply within the reply timeout",
            TryFailure::Interrupted => "the instrument interrupted to send its own data",
            TryFailure::Disconnected => "the connection was lost",
        })
    }
}

/// Why a queued message was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    #[error(
        "the instrument refused frame {number} six times (NAK): check that it accepts these records \
         (test codes, specimen id) and the framing (send_packed)"
    )]
    FrameRefused { number: u8 },
    #[error("not delivered after {tries} tries; last: {last}. Is the instrument on, connected and in host mode?")]
    GaveUp { tries: u8, last: TryFailure },
}

/// Something that happened on the link, for logs and counters. Never carries record content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An instrument's session ended with EOT.
    SessionEnded { frames: u32, messages: u32 },
    /// ENQ then EOT with nothing between: a keep-alive.
    KeepAlive,
    /// An ENQ answered NAK: a message handed over is not yet durable.
    Busy,
    /// A frame answered NAK.
    FrameRejected { number: Option<u8>, why: Rejection },
    /// A repeat of the last accepted frame (our ACK was lost): acknowledged, kept once.
    Retransmission { number: u8 },
    /// A frame arrived while we still held the previous frame's ACK: ignored.
    FrameWhileHeld { number: Option<u8> },
    /// A frame broken off by STX, ENQ or EOT after `bytes` bytes.
    FrameCut { bytes: usize },
    /// An ETX frame whose text does not end with a record's CR.
    RecordWithoutCr,
    /// An unfinished message dropped (`bytes` of records).
    Discarded { bytes: usize, why: DiscardReason },
    /// The instrument gave up waiting for the ACK of a frame that ended `messages` messages
    /// (handed over, so stored if the journal takes them): it may send them again.
    AckAbandoned { messages: usize },
    /// Bytes outside frames or expected replies, ignored.
    Stray { bytes: usize },
    /// Both sides sent ENQ: the instrument goes first.
    Contention,
    /// The instrument answered our ENQ with NAK.
    EnqRefused,
    /// No reply to our ENQ (`frame` None) or to our frame.
    NoReply { frame: Option<u8> },
    /// The instrument refused our frame; it is sent again.
    FrameNaked { number: u8, attempt: u8 },
    /// The instrument interrupted our message (EOT instead of ACK); it will be sent again.
    Interrupted { id: SendId },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |n: &Option<u8>| n.map_or("(unnumbered)".to_string(), |n| n.to_string());
        match self {
            Event::SessionEnded { frames, messages } => {
                write!(f, "session ended: {frames} frame(s), {messages} message(s)")
            }
            Event::KeepAlive => f.write_str("keep-alive (ENQ then EOT)"),
            Event::Busy => f.write_str("ENQ answered NAK: a received message is not stored yet"),
            Event::FrameRejected { number, why } => write!(f, "frame {} refused (NAK): {why}", n(number)),
            Event::Retransmission { number } => {
                write!(f, "frame {number} received again (our ACK was lost?): acknowledged, kept once")
            }
            Event::FrameWhileHeld { number } => {
                write!(f, "frame {} sent before the previous one was acknowledged: ignored", n(number))
            }
            Event::FrameCut { bytes } => write!(f, "a frame was cut off by STX, ENQ or EOT after {bytes} bytes"),
            Event::RecordWithoutCr => f.write_str(
                "a frame ended with ETX but its record has no CR; if this instrument always does so, set its \
                 missing_cr_before_etx quirk",
            ),
            Event::Discarded { bytes, why } => write!(f, "{bytes} bytes of an unfinished message discarded: {why}"),
            Event::AckAbandoned { messages } => write!(
                f,
                "the instrument stopped waiting for our ACK of {messages} message(s) being stored; it may send \
                 them again"
            ),
            Event::Stray { bytes } => write!(f, "{bytes} byte(s) outside frames ignored"),
            Event::Contention => f.write_str("contention (both sent ENQ): the instrument goes first"),
            Event::EnqRefused => f.write_str("the instrument answered our ENQ with NAK (busy)"),
            Event::NoReply { frame: None } => f.write_str("no reply to our ENQ"),
            Event::NoReply { frame: Some(n) } => write!(f, "no reply to our frame {n}"),
            Event::FrameNaked { number, attempt } => {
                write!(
                    f,
                    "the instrument refused our frame {number} (NAK {attempt} of {MAX_FRAME_ATTEMPTS}): sent again"
                )
            }
            Event::Interrupted { id } => {
                write!(f, "the instrument interrupted message {id} to send its own (it will be sent again)")
            }
        }
    }
}

/// What the link is doing, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Receiving,
    /// Bidding (ENQ sent) or sending frames.
    Sending,
}

#[derive(Default)]
enum State {
    #[default]
    Idle,
    Receiving(Receiving),
    /// ENQ sent, waiting for the reply.
    Establishing {
        deadline: Instant,
    },
    Sending(Sending),
}

struct Receiving {
    deadline: Instant,
    /// The frame number the next new frame must have.
    expected: u8,
    /// Frames acknowledged this session.
    accepted: u32,
    /// Frames refused this session.
    rejected: u32,
    messages: u32,
    frame: Option<FrameParser>,
    /// The last acknowledged frame ended ETB.
    mid_message: bool,
    held: Option<Held>,
    /// The open message went over the size limit: refuse every frame until EOT.
    refusing: bool,
}

/// A frame that ended messages, not acknowledged until they are durable.
struct Held {
    number: Option<u8>,
    end: FrameEnd,
    tokens: Vec<Token>,
    emitted: u32,
}

struct Sending {
    index: usize,
    naks: u8,
    deadline: Instant,
}

struct Outgoing {
    id: SendId,
    frames: Vec<Vec<u8>>,
    tries: u8,
}

/// One E1381 link. See the module documentation.
pub struct Link {
    timers: Timers,
    quirks: Quirks,
    max_message: usize,
    state: State,
    assembler: Assembler,
    outgoing: VecDeque<Outgoing>,
    /// No ENQ of ours before this (contention, retry, interrupt).
    not_before: Option<Instant>,
    /// Messages handed over and not yet answered by `durable` or `refused`.
    unresolved: Vec<Token>,
    next_token: u64,
    next_send: u64,
    actions: VecDeque<Action>,
    stray: usize,
    /// The latest time given, for a deadline that is already due.
    last_now: Option<Instant>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("phase", &self.phase())
            .field("open_bytes", &self.assembler.open_len())
            .field("queued", &self.outgoing.len())
            .field("unresolved", &self.unresolved.len())
            .finish_non_exhaustive()
    }
}

impl Link {
    pub fn new(timers: Timers, quirks: Quirks) -> Link {
        Link {
            timers,
            quirks,
            max_message: DEFAULT_MAX_MESSAGE,
            state: State::Idle,
            assembler: Assembler::new(),
            outgoing: VecDeque::new(),
            not_before: None,
            unresolved: Vec::new(),
            next_token: 1,
            next_send: 1,
            actions: VecDeque::new(),
            stray: 0,
            last_now: None,
        }
    }

    /// Bounds one received message: the frame that would take it over is NAKed, and so is every
    /// frame after it until EOT (the instrument gives up and keeps the message).
    pub fn with_max_message_size(mut self, bytes: usize) -> Link {
        self.max_message = bytes;
        self
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Idle => Phase::Idle,
            State::Receiving(_) => Phase::Receiving,
            State::Establishing { .. } | State::Sending(_) => Phase::Sending,
        }
    }

    /// Messages queued or being sent.
    pub fn queued(&self) -> usize {
        self.outgoing.len()
    }

    /// The next action to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.flush_stray();
        self.actions.pop_front()
    }

    /// When [`Link::tick`] must be called (if nothing arrives before).
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Idle if self.outgoing.is_empty() => None,
            State::Idle => self.not_before.or(self.last_now),
            State::Receiving(r) => Some(r.deadline),
            State::Establishing { deadline } => Some(*deadline),
            State::Sending(s) => Some(s.deadline),
        }
    }

    /// Bytes read from the instrument, as they came (any chunking).
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        for &b in bytes {
            self.byte(b, now);
        }
        self.flush_stray();
        self.pump(now);
    }

    /// Time passed: timeouts, and bidding for a queued message when its wait is over.
    pub fn tick(&mut self, now: Instant) {
        self.state = match std::mem::take(&mut self.state) {
            State::Receiving(r) if now >= r.deadline => {
                self.end_receiving(r, DiscardReason::ReceiveTimeout);
                State::Idle
            }
            State::Establishing { deadline } if now >= deadline => {
                self.write(EOT);
                self.event(Event::NoReply { frame: None });
                self.failed_try(now, TryFailure::NoReply, self.timers.retry);
                State::Idle
            }
            State::Sending(s) if now >= s.deadline => {
                let number = self.outgoing.front().and_then(|o| o.frames.get(s.index)).and_then(|f| frame_number(f));
                self.write(EOT);
                self.event(Event::NoReply { frame: number });
                self.failed_try(now, TryFailure::NoReply, self.timers.retry);
                State::Idle
            }
            state => state,
        };
        self.pump(now);
    }

    /// Queues records (each ending CR) to send as one message; returns its id for
    /// [`Action::Sent`] / [`Action::SendFailed`].
    pub fn send(&mut self, records: &[u8], now: Instant) -> Result<SendId, FrameError> {
        let frames = if self.quirks.send_packed { split_message_packed(records)? } else { split_message(records)? };
        let id = SendId(self.next_send);
        self.next_send += 1;
        self.outgoing.push_back(Outgoing { id, frames, tries: 0 });
        self.pump(now);
        Ok(id)
    }

    /// The message `token` is durable: the frame that ended it is acknowledged once every
    /// message it ended is.
    pub fn durable(&mut self, token: Token, now: Instant) {
        self.unresolved.retain(|t| *t != token);
        self.state = match std::mem::take(&mut self.state) {
            State::Receiving(mut r) => {
                if let Some(held) = r.held.as_mut() {
                    held.tokens.retain(|t| *t != token);
                    if held.tokens.is_empty()
                        && let Some(held) = r.held.take()
                    {
                        self.accept(&mut r, held.number, held.end);
                        r.deadline = now + self.timers.receive;
                    }
                }
                State::Receiving(r)
            }
            state => state,
        };
        self.pump(now);
    }

    /// The message `token` could not be stored: the frame that ended it is answered NAK and its
    /// text taken back, so that the instrument's retransmission hands it over again.
    pub fn refused(&mut self, token: Token, now: Instant) {
        self.unresolved.retain(|t| *t != token);
        self.state = match std::mem::take(&mut self.state) {
            State::Receiving(mut r) => {
                if r.held.as_ref().is_some_and(|h| h.tokens.contains(&token))
                    && let Some(held) = r.held.take()
                {
                    self.assembler.rollback();
                    r.messages = r.messages.saturating_sub(held.emitted);
                    self.reject(&mut r, held.number, Rejection::NotStored);
                    r.deadline = now + self.timers.receive;
                }
                State::Receiving(r)
            }
            state => state,
        };
        self.pump(now);
    }

    /// The connection is gone (TCP closed, serial port lost): an unfinished received message is
    /// discarded, a message being sent stays queued (counting a try). Call nothing else until
    /// there is a connection again.
    pub fn disconnected(&mut self, now: Instant) {
        match std::mem::take(&mut self.state) {
            State::Receiving(r) => self.end_receiving(r, DiscardReason::Disconnected),
            State::Establishing { .. } | State::Sending(_) => {
                self.failed_try(now, TryFailure::Disconnected, self.timers.retry)
            }
            State::Idle => {}
        }
        self.last_now = Some(now);
        self.flush_stray();
    }

    fn byte(&mut self, b: u8, now: Instant) {
        let (state, again) = match std::mem::take(&mut self.state) {
            State::Idle if b == ENQ => (self.on_enq(now), false),
            State::Idle => {
                self.stray += 1;
                (State::Idle, false)
            }
            State::Receiving(r) => self.receiving_byte(r, b, now),
            State::Establishing { deadline } => (self.establishing_byte(deadline, b, now), false),
            State::Sending(s) => (self.sending_byte(s, b, now), false),
        };
        self.state = state;
        if again {
            // The byte ended or cut a frame and belongs to what follows; the frame is gone, so
            // this recurses once at most.
            self.byte(b, now);
        }
    }

    // ---- receiving ----

    fn on_enq(&mut self, now: Instant) -> State {
        if !self.unresolved.is_empty() {
            self.write(NAK);
            self.event(Event::Busy);
            return State::Idle;
        }
        self.write(ACK);
        State::Receiving(Receiving {
            deadline: now + self.timers.receive,
            expected: 1,
            accepted: 0,
            rejected: 0,
            messages: 0,
            frame: None,
            mid_message: false,
            held: None,
            refusing: false,
        })
    }

    fn frame_options(&self) -> FrameOptions {
        FrameOptions {
            numbered: !self.quirks.no_frame_numbers,
            line_end: self.quirks.line_end,
            max_text: if self.quirks.long_frames { LONG_TEXT_MAX } else { MAX_TEXT },
            any_line_end: false,
        }
    }

    fn receiving_byte(&mut self, mut r: Receiving, b: u8, now: Instant) -> (State, bool) {
        if let Some(mut parser) = r.frame.take() {
            return match parser.push(b) {
                Step::More => {
                    r.frame = Some(parser);
                    (State::Receiving(r), false)
                }
                Step::Done(frame) => (self.on_frame(r, frame, now), false),
                Step::DoneBefore(frame) => (self.on_frame(r, frame, now), true),
                Step::Cut { bytes } => {
                    self.event(Event::FrameCut { bytes });
                    (State::Receiving(r), true)
                }
            };
        }
        match b {
            STX => {
                r.deadline = now + self.timers.receive;
                r.frame = Some(FrameParser::new(self.frame_options()));
                (State::Receiving(r), false)
            }
            EOT => (self.on_eot(r), false),
            ENQ => {
                self.end_receiving(r, DiscardReason::Restarted);
                (self.on_enq(now), false)
            }
            _ => {
                self.stray += 1;
                (State::Receiving(r), false)
            }
        }
    }

    fn on_frame(&mut self, mut r: Receiving, frame: Frame, now: Instant) -> State {
        r.deadline = now + self.timers.receive;
        if r.held.is_some() {
            self.event(Event::FrameWhileHeld { number: frame.number });
            return State::Receiving(r);
        }
        if let Some(problem) = frame.problem {
            self.reject(&mut r, frame.number, Rejection::Frame(problem));
            return State::Receiving(r);
        }
        if r.refusing {
            self.reject(&mut r, frame.number, Rejection::TooLarge);
            return State::Receiving(r);
        }
        if let (false, Some(n)) = (self.quirks.no_frame_numbers, frame.number)
            && n != r.expected
        {
            if r.accepted > 0 && n == (r.expected + 7) % 8 {
                self.write(ACK);
                self.event(Event::Retransmission { number: n });
            } else {
                let why = Rejection::WrongNumber { expected: r.expected, got: n };
                self.reject(&mut r, frame.number, why);
            }
            return State::Receiving(r);
        }
        let end = frame.end.unwrap_or(FrameEnd::Final);
        let mut text = frame.text;
        if end == FrameEnd::Final && text.last() != Some(&CR) {
            if self.quirks.missing_cr_before_etx {
                text.push(CR);
            } else {
                self.event(Event::RecordWithoutCr);
            }
        }
        if self.assembler.open_len() + text.len() > self.max_message {
            let bytes = self.assembler.clear();
            r.refusing = true;
            self.event(Event::Discarded { bytes, why: DiscardReason::TooLarge });
            self.reject(&mut r, frame.number, Rejection::TooLarge);
            return State::Receiving(r);
        }
        self.assembler.checkpoint();
        let mut ended = Vec::new();
        self.assembler.push(&text, &mut ended);
        if ended.is_empty() {
            self.accept(&mut r, frame.number, end);
            return State::Receiving(r);
        }
        let mut held = Held { number: frame.number, end, tokens: Vec::new(), emitted: 0 };
        for m in ended {
            let token = self.hand_over(m.records, m.complete);
            held.tokens.push(token);
            held.emitted += 1;
        }
        r.messages += held.emitted;
        r.held = Some(held);
        State::Receiving(r)
    }

    fn hand_over(&mut self, records: Vec<u8>, complete: bool) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.unresolved.push(token);
        self.push(Action::Message { token, records, complete });
        token
    }

    fn accept(&mut self, r: &mut Receiving, number: Option<u8>, end: FrameEnd) {
        self.write(ACK);
        r.accepted += 1;
        r.expected = (number.unwrap_or(r.expected) + 1) % 8;
        r.mid_message = end == FrameEnd::Intermediate;
    }

    fn reject(&mut self, r: &mut Receiving, number: Option<u8>, why: Rejection) {
        self.write(NAK);
        r.rejected += 1;
        self.event(Event::FrameRejected { number, why });
    }

    fn on_eot(&mut self, mut r: Receiving) -> State {
        if let Some(held) = r.held.take() {
            // The instrument gave up on the frame it sent last; it will send again whatever
            // followed the messages that frame ended.
            self.assembler.clear();
            self.event(Event::AckAbandoned { messages: held.tokens.len() });
        } else if r.mid_message && !self.quirks.no_etx {
            let bytes = self.assembler.clear();
            self.event(Event::Discarded { bytes, why: DiscardReason::SenderAborted });
        } else if let Some(m) = self.assembler.finish() {
            self.hand_over(m.records, m.complete);
            r.messages += 1;
        }
        self.assembler.clear();
        if r.accepted == 0 && r.rejected == 0 && r.messages == 0 {
            self.event(Event::KeepAlive);
        } else {
            self.event(Event::SessionEnded { frames: r.accepted, messages: r.messages });
        }
        State::Idle
    }

    /// The session ends abnormally (timeout, new ENQ, lost connection).
    fn end_receiving(&mut self, r: Receiving, why: DiscardReason) {
        if let Some(held) = r.held {
            self.event(Event::AckAbandoned { messages: held.tokens.len() });
        }
        let bytes = self.assembler.clear() + r.frame.map_or(0, |f| f.received());
        if bytes > 0 || why != DiscardReason::Restarted {
            self.event(Event::Discarded { bytes, why });
        }
    }

    // ---- sending ----

    fn pump(&mut self, now: Instant) {
        self.last_now = Some(now);
        if matches!(self.state, State::Idle) && !self.outgoing.is_empty() && self.not_before.is_none_or(|t| now >= t) {
            self.not_before = None;
            self.write(ENQ);
            self.state = State::Establishing { deadline: now + self.timers.reply };
        }
    }

    fn establishing_byte(&mut self, deadline: Instant, b: u8, now: Instant) -> State {
        match b {
            ACK => self.send_frame(Sending { index: 0, naks: 0, deadline }, now),
            NAK => {
                self.event(Event::EnqRefused);
                self.failed_try(now, TryFailure::Busy, self.timers.retry);
                State::Idle
            }
            ENQ => {
                // Contention: the instrument has priority. Its next ENQ (1 s later) is answered
                // as any other; we bid again no sooner than `contention` from now.
                self.event(Event::Contention);
                self.not_before = Some(now + self.timers.contention);
                State::Idle
            }
            _ => {
                self.stray += 1;
                State::Establishing { deadline }
            }
        }
    }

    fn send_frame(&mut self, mut s: Sending, now: Instant) -> State {
        let Some(frame) = self.outgoing.front().and_then(|o| o.frames.get(s.index)) else { return State::Idle };
        let frame = frame.clone();
        self.push(Action::Write(frame));
        s.deadline = now + self.timers.reply;
        State::Sending(s)
    }

    fn sending_byte(&mut self, mut s: Sending, b: u8, now: Instant) -> State {
        let Some(out) = self.outgoing.front() else { return State::Idle };
        let (id, frames) = (out.id, out.frames.len());
        let number = out.frames.get(s.index).and_then(|f| frame_number(f)).unwrap_or(0);
        match b {
            ACK => {
                s.index += 1;
                s.naks = 0;
                if s.index < frames {
                    return self.send_frame(s, now);
                }
                self.finish_sent(id);
                State::Idle
            }
            NAK => {
                s.naks += 1;
                if s.naks >= MAX_FRAME_ATTEMPTS {
                    self.write(EOT);
                    self.outgoing.pop_front();
                    self.push(Action::SendFailed { id, why: SendFailure::FrameRefused { number } });
                    return State::Idle;
                }
                self.event(Event::FrameNaked { number, attempt: s.naks });
                self.send_frame(s, now)
            }
            EOT if s.index + 1 >= frames => {
                // Receiver interrupt on the last frame: it is accepted, and we are done anyway.
                self.finish_sent(id);
                State::Idle
            }
            EOT => {
                self.write(EOT);
                self.event(Event::Interrupted { id });
                self.failed_try(now, TryFailure::Interrupted, self.timers.interrupt);
                State::Idle
            }
            _ => {
                self.stray += 1;
                State::Sending(s)
            }
        }
    }

    fn finish_sent(&mut self, id: SendId) {
        self.write(EOT);
        self.outgoing.pop_front();
        self.push(Action::Sent { id });
    }

    /// The message at the front of the queue failed one try: try again after `wait`, or give
    /// it up after [`MAX_TRIES`].
    fn failed_try(&mut self, now: Instant, why: TryFailure, wait: Duration) {
        let Some(out) = self.outgoing.front_mut() else { return };
        out.tries += 1;
        if out.tries >= MAX_TRIES {
            let (id, tries) = (out.id, out.tries);
            self.outgoing.pop_front();
            self.push(Action::SendFailed { id, why: SendFailure::GaveUp { tries, last: why } });
        } else {
            self.not_before = Some(now + wait);
        }
    }

    // ---- actions ----

    fn write(&mut self, b: u8) {
        self.push(Action::Write(vec![b]));
    }

    fn event(&mut self, e: Event) {
        self.push(Action::Event(e));
    }

    fn push(&mut self, a: Action) {
        self.flush_stray();
        self.actions.push_back(a);
    }

    fn flush_stray(&mut self) {
        if self.stray > 0 {
            let bytes = std::mem::take(&mut self.stray);
            self.actions.push_back(Action::Event(Event::Stray { bytes }));
        }
    }
}

fn frame_number(frame: &[u8]) -> Option<u8> {
    frame.get(1).filter(|b| (b'0'..=b'7').contains(b)).map(|b| b - b'0')
}
