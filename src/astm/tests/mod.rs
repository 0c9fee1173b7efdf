//! Tests of the link with the instruments' own bytes (`samples.rs`), scripted faults
//! (`receiving.rs`) and the sending side (`sending.rs`). Time is fake: `Instant`s built from one
//! base, never slept on.

mod receiving;
pub(crate) mod samples;
mod sending;

use std::time::{Duration, Instant};

use super::ctrl::{ENQ, EOT, LF, STX};
use super::{Action, Event, Link, Quirks, SendFailure, SendId, Timers, Token};

pub(super) const ACK: &[u8] = &[super::ctrl::ACK];
pub(super) const NAK: &[u8] = &[super::ctrl::NAK];

/// A link and what it did, with a fake clock.
pub(super) struct Harness {
    pub link: Link,
    pub t0: Instant,
    pub now: Instant,
    /// Answer every message handed over with `durable` as soon as it is seen.
    pub auto_durable: bool,
    pub messages: Vec<(Token, Vec<u8>, bool)>,
    pub events: Vec<Event>,
    pub sent: Vec<SendId>,
    pub failed: Vec<(SendId, SendFailure)>,
}

impl Harness {
    pub fn new(quirks: Quirks) -> Harness {
        let t0 = Instant::now();
        Harness {
            link: Link::new(Timers::default(), quirks),
            t0,
            now: t0,
            auto_durable: true,
            messages: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
            failed: Vec::new(),
        }
    }

    pub fn manual(quirks: Quirks) -> Harness {
        Harness { auto_durable: false, ..Harness::new(quirks) }
    }

    /// Sets the clock to `secs` after the start.
    pub fn at(&mut self, secs: f64) {
        self.now = self.t0 + Duration::from_secs_f64(secs);
    }

    /// Feeds bytes; returns what the link wrote.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.link.receive(bytes, self.now);
        self.drain()
    }

    /// Feeds bytes in chunks of `chunk`; returns what the link wrote.
    pub fn feed_chunked(&mut self, bytes: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            out.extend(self.feed(c));
        }
        out
    }

    pub fn tick(&mut self) -> Vec<u8> {
        self.link.tick(self.now);
        self.drain()
    }

    pub fn durable(&mut self, token: Token) -> Vec<u8> {
        self.link.durable(token, self.now);
        self.drain()
    }

    pub fn refused(&mut self, token: Token) -> Vec<u8> {
        self.link.refused(token, self.now);
        self.drain()
    }

    pub fn send(&mut self, records: &[u8]) -> (SendId, Vec<u8>) {
        let id = self.link.send(records, self.now).expect("records are sendable");
        (id, self.drain())
    }

    /// Performs the link's actions; returns the bytes written.
    pub fn drain(&mut self) -> Vec<u8> {
        let mut written = Vec::new();
        while let Some(action) = self.link.poll_action() {
            match action {
                Action::Write(bytes) => written.extend(bytes),
                Action::Message { token, records, complete } => {
                    self.messages.push((token, records, complete));
                    if self.auto_durable {
                        self.link.durable(token, self.now);
                    }
                }
                Action::Sent { id } => self.sent.push(id),
                Action::SendFailed { id, why } => self.failed.push((id, why)),
                Action::Event(e) => self.events.push(e),
            }
        }
        written
    }

    pub fn records(&self) -> Vec<Vec<u8>> {
        self.messages.iter().map(|m| m.1.clone()).collect()
    }

    pub fn has_event(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(pred)
    }
}

/// An instrument's side of a session cut into turns: ENQ, each frame (to its LF), EOT, and
/// runs of other bytes. An instrument waits for our reply after each.
pub(super) fn turns(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < wire.len() {
        let end = match wire[i] {
            ENQ | EOT => i + 1,
            STX => wire[i..].iter().position(|&b| b == LF).map_or(wire.len(), |p| i + p + 1),
            _ => wire[i..].iter().position(|&b| matches!(b, ENQ | EOT | STX)).map_or(wire.len(), |p| i + p),
        };
        out.push(&wire[i..end]);
        i = end;
    }
    out
}

/// senaite.astm's notation (one frame per line, line ends in place of CR LF) as wire bytes:
/// ENQ, each line with CR LF, EOT.
pub(super) fn wire_from_lines(text: &[u8]) -> Vec<u8> {
    let mut wire = vec![ENQ];
    for line in text.split(|&b| b == LF) {
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
            end -= 1;
        }
        if end > 0 {
            wire.extend_from_slice(&line[..end]);
            wire.extend_from_slice(b"\r\n");
        }
    }
    wire.push(EOT);
    wire
}

/// Plays an instrument's session turn by turn, each turn in chunks of `chunk` bytes, and checks
/// the link answers ENQ and every frame with ACK (nothing after EOT). Messages are made durable
/// as soon as they are handed over.
pub(super) fn play(h: &mut Harness, wire: &[u8], chunk: usize) {
    for turn in turns(wire) {
        let reply = h.feed_chunked(turn, chunk);
        match turn[0] {
            ENQ | STX => assert_eq!(reply, ACK, "turn at byte {} chunk {chunk}: {:?}", turn.len(), h.events),
            _ => assert!(reply.is_empty(), "reply to EOT or stray bytes: {reply:?}"),
        }
    }
}
