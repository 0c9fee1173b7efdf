//! A Class 2 / Class 2.0 fax modem for the end-to-end tests (test support, not product code):
//! it plays the modem's side of the serial line on the master side of a real pseudo-terminal
//! (`astm_sim::pty_at`, `astm_sim::Line`), against the real daemon on the slave side.
//!
//! It answers set-up as a modem does (`ATZ`, `ATE0V1`, `AT+FCLASS=?` with its class list, every
//! other command `OK`, or `ERROR` to the commands a test says it refuses; it echoes commands
//! until `ATE0`, as modems do after a reset) and, on the test's cue, plays the modem's turns of
//! a call as recorded from modems (`src/fax/modem.rs` documents them): `RING` (caller id
//! lines), `ATA`, the negotiation reports, `AT+FLO` (Class 2.0), per page `AT+FDR`, `CONNECT`,
//! the data trigger, the page DLE-stuffed, `DLE ETX`, page status, `+FET`, `OK`, then the hangup
//! report. Faults are the tests' own sequences of these steps: a page cut off with or without
//! `NO CARRIER`, a modem that stops answering (or answers late), reports left out, data in the
//! wrong bit order, a line closed. A host that writes while the modem answers a call fails the
//! test (a real modem hangs up then); a host that stops reading fails it after 60 s.
//!
//! Everything is checked here by hand, not with `outpost::fax`: commands are compared as text,
//! page data stuffed and bit-reversed here, so the daemon's modem core is tested against an
//! independent modem.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use crate::astm_sim::{Line, Next};
use crate::support::DEADLINE;

pub const DLE: u8 = 0x10;
pub const ETX: u8 = 0x03;
pub const DC1: u8 = 0x11;
pub const DC2: u8 = 0x12;

/// How long the modem takes to answer (ATA to its first report): seconds on a real line.
pub const TRAINING: Duration = Duration::from_millis(300);

/// The modem's fax class for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// SP-2388-A (Rockwell): `+FCON`, `+FTSI:`, `+FDCS:`, `+FPTS:` (decimal), `+FHNG:`
    /// (decimal); page data MSB first (the "Rockwell" order everyone copied).
    Two,
    /// TIA/EIA-592: `+FCO`, `+FTI:`, `+FCS:`, `+FPS:` (hex), `+FHS:` (hex); `AT+FLO` after the
    /// handshake; page data LSB first, as it is on the telephone line.
    TwoZero,
}

/// What the modem heard from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A command line (without its CR).
    Command(String),
    /// A single byte outside a command: the data trigger (DC1, DC2).
    Byte(u8),
    Quiet,
    Closed,
}

/// One page of a call: G3 data MSB first (as `g3test.g3` is, and as TIFF FillOrder 1 holds it),
/// and the line count the modem reports for it.
#[derive(Debug, Clone)]
pub struct Page {
    pub data: Vec<u8>,
    pub lines: u32,
}

/// How a call's sender ends a page: more pages follow (MPS), or this is the last (EOP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum More {
    Pages,
    End,
}

/// A fax modem on a line. See the module documentation.
pub struct FaxModem {
    pub line: Line,
    pub class: Class,
    /// Sends Class 2.0 page data MSB first anyway (firmware that ignores `AT+FBO=0`).
    pub msb_first_anyway: bool,
    /// The answer to `AT+FCLASS=?`.
    pub classes: String,
    /// Commands answered `ERROR`.
    pub refuse: Vec<String>,
    /// The data trigger the host must send after `CONNECT`.
    pub trigger: u8,
    /// Rings before the host answers (its `rings`).
    pub rings: u8,
    /// Reports neither the sender's id nor the session parameters (a Class 2.0 modem whose
    /// reporting, `AT+FNR`, is off).
    pub no_reports: bool,
    /// Echoing commands (on after `ATZ`, off after `ATE0`).
    echo: bool,
    /// A command line being read.
    partial: Vec<u8>,
    /// Every command heard, in order.
    pub heard: Vec<String>,
    /// Health checks (`AT`) answered while waiting for something else.
    pub health_checks: usize,
    /// DLE bytes doubled in the page data sent so far.
    pub dles_stuffed: usize,
}

/// `\r\nTEXT\r\n` for each line: how a modem frames its responses (V1).
pub fn lines(ls: &[&str]) -> Vec<u8> {
    ls.iter().flat_map(|l| format!("\r\n{l}\r\n").into_bytes()).collect()
}

/// Each byte's bits in the other order (MSB-first G3 ↔ LSB-first, as on the line).
pub fn reversed(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b.reverse_bits()).collect()
}

/// Page data as the modem sends it: every DLE doubled, `DLE ETX` at the end. Returns the wire
/// bytes and the number of DLEs doubled.
pub fn stuffed(data: &[u8]) -> (Vec<u8>, usize) {
    let mut wire = Vec::with_capacity(data.len() + 64);
    let mut dles = 0;
    for &b in data {
        wire.push(b);
        if b == DLE {
            wire.push(DLE);
            dles += 1;
        }
    }
    wire.extend_from_slice(&[DLE, ETX]);
    (wire, dles)
}

impl FaxModem {
    pub fn new(line: Line, class: Class) -> FaxModem {
        FaxModem {
            line: line.bounded_writes(),
            class,
            msb_first_anyway: false,
            classes: match class {
                Class::Two => "0,1,2".into(),
                Class::TwoZero => "0,1,2,2.0".into(),
            },
            refuse: Vec::new(),
            trigger: DC2,
            rings: 1,
            no_reports: false,
            echo: true,
            partial: Vec::new(),
            heard: Vec::new(),
            health_checks: 0,
            dles_stuffed: 0,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.line.write(bytes);
    }

    pub fn say(&mut self, ls: &[&str]) {
        self.write(&lines(ls));
    }

    /// The next command (up to CR) or lone byte from the host, waiting at most `within`.
    pub fn hear(&mut self, within: Duration) -> Heard {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.line.next(left) {
                Next::Byte(b'\r', _) => {
                    let text = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).trim().to_string();
                    if self.echo {
                        self.write(format!("{text}\r").as_bytes());
                    }
                    if text.is_empty() {
                        continue;
                    }
                    self.heard.push(text.clone());
                    return Heard::Command(text);
                }
                Next::Byte(b'\n', _) => {}
                Next::Byte(b, _) if self.partial.is_empty() && !b.is_ascii_graphic() && b != b' ' => {
                    return Heard::Byte(b);
                }
                Next::Byte(b, _) => self.partial.push(b),
                Next::Quiet => return Heard::Quiet,
                Next::Closed => return Heard::Closed,
            }
        }
    }

    /// Drops everything heard so far and not yet read (a modem that was not listening).
    pub fn forget_pending(&mut self) {
        self.partial.clear();
        self.line.collect_for(Duration::from_millis(50));
        self.partial.clear();
    }

    /// The modem's answer to a command outside a call.
    fn answer(&mut self, command: &str) {
        let upper = command.to_ascii_uppercase();
        if self.refuse.iter().any(|r| r.eq_ignore_ascii_case(command)) {
            self.say(&["ERROR"]);
            return;
        }
        if upper == "ATZ" {
            self.echo = true;
        } else if upper.starts_with("ATE0") {
            self.echo = false;
        }
        if upper == "AT+FCLASS=?" {
            let classes = self.classes.clone();
            self.say(&[&classes, "OK"]);
        } else {
            self.say(&["OK"]);
        }
    }

    /// Answers the host's set-up, from `ATZ` (or the command after it, if `ATZ` was already
    /// read) to `AT+FAA=0`, the last set-up command: the daemon's modem is idle then. Returns
    /// the commands heard.
    pub fn setup(&mut self) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            match self.hear(DEADLINE) {
                Heard::Command(c) => {
                    self.answer(&c);
                    let last = c.eq_ignore_ascii_case("AT+FAA=0");
                    got.push(c);
                    if last {
                        return got;
                    }
                }
                other => panic!("during set-up (heard {got:?}) the host sent {other:?}"),
            }
        }
    }

    /// A modem that was busy, not dead: it answers, late, every command it heard meanwhile
    /// (`OK` each, as it would have). Returns how many.
    pub fn answer_late(&mut self) -> usize {
        let mut answered = 0;
        while let Heard::Command(c) = self.hear(Duration::from_millis(100)) {
            self.answer(&c);
            answered += 1;
        }
        answered
    }

    /// Waits for the host to start again (`ATZ`), ignoring what comes before (commands of a
    /// session that ended), then answers the set-up. For a modem that was silent or unplugged:
    /// what the host wrote meanwhile went unanswered.
    pub fn setup_after_reset(&mut self) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            match self.hear(Duration::from_millis(200)) {
                Heard::Command(c) if c.eq_ignore_ascii_case("ATZ") => {
                    self.answer(&c);
                    let mut got = vec![c];
                    got.extend(self.setup());
                    return got;
                }
                Heard::Command(_) | Heard::Byte(_) => {}
                // The host reopens the port when it has closed it: let it (see
                // `Line::release_exclusive`).
                Heard::Quiet => self.line.release_exclusive(),
                Heard::Closed => panic!("waiting for the host to reset the modem (ATZ): the line closed"),
            }
        }
        panic!("timed out after {DEADLINE:?} waiting for the host to reset the modem (ATZ)")
    }

    /// The modem is unplugged: the line is closed (the pty's device goes away).
    pub fn unplug(self) {
        self.line.close();
    }

    /// Reads the host's next command, answering health checks (`AT`) on the way, and checks
    /// that it is `want`.
    pub fn expect(&mut self, want: &str) {
        loop {
            match self.hear(DEADLINE) {
                Heard::Command(c) if c.eq_ignore_ascii_case("AT") && want != "AT" => {
                    self.health_checks += 1;
                    self.say(&["OK"]);
                }
                Heard::Command(c) if c.eq_ignore_ascii_case(want) => return,
                other => panic!("waiting for {want:?} the host sent {other:?} (heard so far {:?})", self.heard),
            }
        }
    }

    /// The phone rings [`FaxModem::rings`] times, the caller id lines after the first ring (as
    /// North American caller id comes, between the first and second ring), and the host answers
    /// `ATA`.
    pub fn ring(&mut self, caller_id: &[&str]) {
        self.say(&["RING"]);
        if !caller_id.is_empty() {
            self.say(caller_id);
        }
        for _ in 1..self.rings {
            self.say(&["RING"]);
        }
        self.expect("ATA");
    }

    /// The sender's phase B: connection, its station id, its session parameters (`fine`: 196
    /// lines per inch), `OK`; for Class 2.0 the host's `AT+FLO=2` answered; then the host's
    /// `AT+FDR` is read.
    pub fn handshake(&mut self, tsi: &str, fine: bool) {
        // The modem trains with the sender (seconds on a real line; a moment here). A byte
        // from the host meanwhile aborts the answer on a real modem: none may come.
        std::thread::sleep(TRAINING);
        if let Next::Byte(b, _) = self.line.next(Duration::ZERO) {
            panic!("the host wrote 0x{b:02X} while the modem was answering (a real modem hangs up then)");
        }
        let vr = u8::from(fine);
        match self.class {
            Class::TwoZero if self.no_reports => {
                self.say(&["+FCO", "OK"]);
                self.expect("AT+FLO=2");
                self.say(&["OK"]);
            }
            Class::TwoZero => {
                let (tsi, dcs) = (format!("+FTI:\"{tsi}\""), format!("+FCS:{vr},5,0,2,0,0,0,0"));
                self.say(&["+FCO", &tsi, &dcs, "OK"]);
                self.expect("AT+FLO=2");
                self.say(&["OK"]);
            }
            Class::Two => {
                // Class 2 modems report the id bare, padded to 20 characters.
                let (tsi, dcs) = (format!("+FTSI:{tsi:>20}"), format!("+FDCS:{vr},3,0,2,0,0,0,0"));
                self.say(&["+FCON", &tsi, &dcs, "OK"]);
            }
        }
        self.expect("AT+FDR");
    }

    /// `CONNECT` (Class 2 modems confirm the training first, `+FCFR`), then the host's data
    /// trigger is read.
    pub fn connect(&mut self) {
        match self.class {
            Class::Two => self.say(&["+FCFR", "CONNECT"]),
            Class::TwoZero => self.say(&["CONNECT"]),
        }
        match self.hear(DEADLINE) {
            Heard::Byte(b) if b == self.trigger => {}
            other => panic!("waiting for the data trigger 0x{:02X} the host sent {other:?}", self.trigger),
        }
    }

    /// A page's data in the order this modem delivers it.
    pub fn wire_order(&self, page: &Page) -> Vec<u8> {
        match (self.class, self.msb_first_anyway) {
            (Class::TwoZero, false) => reversed(&page.data),
            _ => page.data.clone(),
        }
    }

    /// One page: `CONNECT`, the trigger, the data stuffed with `DLE ETX`, page status, `+FET`,
    /// `OK`; then the host's next `AT+FDR` is read.
    pub fn page(&mut self, page: &Page, more: More) {
        self.connect();
        let (wire, dles) = stuffed(&self.wire_order(page));
        self.dles_stuffed += dles;
        self.write(&wire);
        let fet = match more {
            More::Pages => 0,
            More::End => 2,
        };
        let status = match self.class {
            Class::TwoZero => format!("+FPS:1,{:X},0,0,0", page.lines),
            Class::Two => format!("+FPTS:1,{},0,0", page.lines),
        };
        self.say(&[&status, &format!("+FET:{fet}"), "OK"]);
        self.expect("AT+FDR");
    }

    /// The first half of a page's data (stuffed, no `DLE ETX`), then nothing: the caller cuts
    /// the call there.
    pub fn half_page(&mut self, page: &Page) {
        self.connect();
        let data = self.wire_order(page);
        let (mut wire, _) = stuffed(&data[..data.len() / 2]);
        wire.truncate(wire.len() - 2);
        self.write(&wire);
    }

    /// The normal end after the last page: the hangup report (`+FHS:00` / `+FHNG:0`) and `OK`.
    pub fn hangup(&mut self) {
        match self.class {
            Class::TwoZero => self.say(&["+FHS:00", "OK"]),
            Class::Two => self.say(&["+FHNG:0", "OK"]),
        }
    }

    /// A whole call, answered and received: ring, handshake, the pages, hangup; then the
    /// host's set-up after the call is answered.
    pub fn call(&mut self, caller_id: &[&str], tsi: &str, fine: bool, pages: &[Page]) {
        self.ring(caller_id);
        self.handshake(tsi, fine);
        for (i, page) in pages.iter().enumerate() {
            self.page(page, if i + 1 == pages.len() { More::End } else { More::Pages });
        }
        self.hangup();
        self.setup();
    }
}
