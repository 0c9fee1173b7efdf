//! The Class 2 / Class 2.0 fax-modem dialogue, receive only, as a state machine with no IO: we
//! are the answering side of one modem on one serial port.
//!
//! The adapter opens the port and calls [`Modem::start`], feeds what it reads
//! ([`Modem::receive`]) and the passing of time ([`Modem::tick`] at [`Modem::next_deadline`]),
//! and performs the [`Action`]s it drains with [`Modem::poll_action`]: bytes to write, the
//! serial flow control to set, a reset to perform (drop DTR, reopen with backoff, then
//! [`Modem::start`] again), and what a call brings: [`Action::CallStarted`], [`Action::Remote`],
//! [`Action::Session`], [`Action::PageData`] chunks, [`Action::PageEnd`] or
//! [`Action::PageAborted`], [`Action::CallEnded`]. A DCD drop it sees is
//! [`Modem::carrier_lost`]; a port gone is [`Modem::disconnected`].
//!
//! # One machine, two dialects
//! Class 2 (SP-2388-A, the Rockwell-era draft) and Class 2.0 (TIA/EIA-592) say the same things
//! with different names and number bases. A [`Dialect`] table holds the differences (commands,
//! report names, decimal or hex, bit order, data trigger); the states are shared. Reports are
//! recognised by either class's name, since some firmware mixes them.
//!
//! | | Class 2 | Class 2.0 |
//! |---|---|---|
//! | select | `AT+FCLASS=2` | `AT+FCLASS=2.0` |
//! | local id | `AT+FLID="…"` | `AT+FLI="…"` |
//! | capabilities | `AT+FDCC=…` | `AT+FCC=…` |
//! | bit order | `AT+FBOR=0` (Rockwell delivers MSB first anyway) | `AT+FBO=0` (LSB first, as on the line) |
//! | phase C timeout | `AT+FPHCTO=30` | `AT+FCT=30` |
//! | reporting, misc | (always reports) | `AT+FNR=1,1,1,0`, `AT+FPP=0`, `AT+FIE=0` |
//! | flow control after connect | (no command) | `AT+FLO=2` / `AT+FLO=1` |
//! | connect, TSI, DCS | `+FCON`, `+FTSI:`, `+FDCS:` | `+FCO`, `+FTI:`, `+FCS:` |
//! | page status, post page | `+FPTS:` (decimal), `+FET:` | `+FPS:` (hex), `+FET:` |
//! | hangup | `+FHNG:` (decimal) | `+FHS:` (hex) |
//!
//! # The dialogue
//! Initialisation (after [`Modem::start`], and again after every call): `ATZ`, `ATE0V1`,
//! `ATS0=0` (we answer, not the modem), `AT+FCLASS=?` (2.0 chosen when offered, else 2, unless
//! [`Config::class`] forces one), then the class's commands: select, local id, `AT+FCR=1`,
//! capabilities restricted to what we store losslessly (1-D MH, no ECM, as mgetty's
//! `fax_set_fdcc`: `vr,br,wd,2,0,0,0,0`), bit order, phase C timeout, reporting, `AT+FAA=0`.
//! `ERROR` to an optional command is reported ([`Event::CommandRefused`]) and set-up goes on;
//! to a required one (select, `AT+FCR=1`, the first three) it is a reset.
//!
//! A call, as mgetty's `faxrec.c`/`faxrecp.c` and HylaFAX's `faxd/Class2Recv.c++` drive it:
//! `RING` (caller id lines `NMBR = `, `NAME = `, `DATE = `, `TIME = ` collected), after
//! [`Config::rings`] rings `ATA`; `+FCO`, `+FTI:`, `+FCS:`, `OK`; flow control set (serial side
//! first, then `AT+FLO`, as mgetty does it only once connected); then per page `AT+FDR`,
//! (`+FCFR`, `+FTI:`, `+FCS:`) `CONNECT`, our data trigger (DC2, or DC1 by config as HylaFAX's
//! default for Class 2), phase-C data DLE-unstuffed ([`super::dle`]) up to `DLE ETX`, then
//! `+FPS:`, `+FET:`, `OK`. After the last page `AT+FDR` is answered `+FHS:00` and `OK`.
//!
//! # Faults
//! - Every wait has a deadline ([`Timers`]): a command's reply, ring to handshake, `AT+FDR` to
//!   `CONNECT`, 60 s without page data, the post-page reports. A wait that runs out in a call
//!   ends it (incomplete) and asks for a reset: the modem may be stuck, and dropping DTR also
//!   hangs up the line. A command unanswered while idle or initialising is a reset too.
//! - `NO CARRIER` (or [`Modem::carrier_lost`]) instead of a hangup code ends the call with that
//!   reason; `NO CARRIER` inside page data (modems send it there without `DLE ETX`) too. Pages
//!   already ended stay reported; the page open is [`Action::PageAborted`].
//! - `OK` where `CONNECT` was expected after `AT+FDR`: some modems (HylaFAX names the PPI
//!   PM14400FXMT) do this between documents and then send the page; we send the trigger and
//!   read the page, as HylaFAX does ([`Event::OkForConnect`]); no data then is the data timeout.
//! - `ERROR` after the post-page reports is taken as their end: Class 2.0 modems may answer so
//!   when their copy-quality check found the page bad (HylaFAX `Class2Recv.c++`).
//! - While idle, `AT` every [`Timers::health`]; no `OK` in time: [`Action::Health`] false and a
//!   reset. A `RING` before that `OK` (the phone rang as we checked) is counted, and answered
//!   once the `OK` is in: taken after `ATA`, it would read as the end of the handshake.
//!
//! # Promises
//! No IO, no clock, never panics on any input; memory is bounded (a response line is cut at
//! [`MAX_LINE`] bytes, page data leaves as it arrives). Events and `Debug` carry no page
//! content, no caller id and no station id.

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use super::codes::{ModemClass, PageStatus, PostPage};
use super::dle::{DC2, Unstuffer};

mod types;
pub use types::*;

// ---- the machine ----

/// One set-up command.
#[derive(Debug, Clone)]
struct Command {
    text: String,
    required: bool,
}

enum State {
    Closed,
    Resetting,
    /// Sending `commands[step]`, waiting for its reply.
    Init {
        step: usize,
        deadline: Instant,
        /// The non-final lines of the reply (`AT+FCLASS=?`'s list).
        info: Vec<String>,
    },
    Idle {
        health_due: Instant,
    },
    Health {
        deadline: Instant,
        /// `RING`s that came before the `OK` to the `AT`: the call waits for that `OK`, which
        /// would otherwise be read as the end of the sender's handshake after `ATA`.
        rings: u8,
    },
    Ringing {
        rings: u8,
        deadline: Instant,
    },
    Call(Box<Call>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `ATA` sent: `+FCO`, `+FTI`, `+FCS` until `OK`.
    Answering,
    /// `AT+FLO` sent.
    FlowControl,
    /// `AT+FDR` sent: until `CONNECT`.
    AwaitConnect,
    /// Receiving page data.
    Data,
    /// After `DLE ETX`: `+FPS`, `+FET` until `OK`.
    PostPage,
    /// After a hangup report: until `OK`.
    HangingUp,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Answering => "waiting for the fax handshake after answering",
            Phase::FlowControl => "waiting for the reply to AT+FLO",
            Phase::AwaitConnect => "waiting for CONNECT after AT+FDR",
            Phase::Data => "no page data",
            Phase::PostPage => "waiting for the page status after the page",
            Phase::HangingUp => "waiting for OK after the hangup report",
        }
    }
}

struct Call {
    phase: Phase,
    deadline: Instant,
    /// Pages ended (PageEnd).
    pages: u32,
    tsi: Option<String>,
    caller_id: CallerId,
    remote_sent: bool,
    hangup: Option<Hangup>,
    last_post: Option<PostPage>,
    flow_set: bool,
    // the page being received
    unstuffer: Unstuffer,
    started: bool,
    skipped: usize,
    bytes: u64,
    no_carrier: usize,
    status: PageStatus,
    lines: Option<u32>,
    bad_lines: Option<u32>,
    post: PostPage,
    interrupt: bool,
    page_open: bool,
}

/// One Class 2 / 2.0 fax modem. See the module documentation.
pub struct Modem {
    config: Config,
    dialect: Option<&'static Dialect>,
    state: State,
    commands: Vec<Command>,
    refused: u32,
    line: Vec<u8>,
    line_too_long: bool,
    caller_id: CallerId,
    actions: VecDeque<Action>,
    last_error: Option<String>,
    calls: u64,
    pages: u64,
}

impl fmt::Debug for Modem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Modem").field("status", &self.status()).finish_non_exhaustive()
    }
}

/// `NO CARRIER` as a modem writes it into the data stream when the line drops mid-page.
const NO_CARRIER_IN_DATA: &[u8] = b"\r\nNO CARRIER";

impl Modem {
    pub fn new(config: Config) -> Modem {
        Modem {
            config,
            dialect: None,
            state: State::Closed,
            commands: Vec::new(),
            refused: 0,
            line: Vec::new(),
            line_too_long: false,
            caller_id: CallerId::default(),
            actions: VecDeque::new(),
            last_error: None,
            calls: 0,
            pages: 0,
        }
    }

    /// The port is open (first time, or again after [`Action::Reset`]): initialise the modem.
    /// A call in progress ends (incomplete).
    pub fn start(&mut self, now: Instant) {
        self.abandon_call("the port was reopened");
        self.begin_init(now);
    }

    /// The port is gone (unplugged, read error). A call in progress ends (incomplete); nothing
    /// happens until [`Modem::start`].
    pub fn disconnected(&mut self, _now: Instant) {
        self.abandon_call("the serial port was lost");
        self.state = State::Closed;
    }

    /// The adapter saw DCD drop: in a call, the line is gone.
    pub fn carrier_lost(&mut self, now: Instant) {
        if !matches!(self.state, State::Call(_)) {
            return;
        }
        if let State::Call(call) = std::mem::replace(&mut self.state, State::Closed) {
            let class = self.class();
            self.end_call(*call, Hangup::local(class, "carrier lost (DCD dropped) without a hangup code"), None, now);
        }
    }

    /// The next action to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Modem::tick`] must be called (if nothing arrives before).
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Closed | State::Resetting => None,
            State::Init { deadline, .. } | State::Health { deadline, .. } | State::Ringing { deadline, .. } => {
                Some(*deadline)
            }
            State::Idle { health_due } => Some(*health_due),
            State::Call(call) => Some(call.deadline),
        }
    }

    /// For `status`.
    pub fn status(&self) -> Status {
        let state = match &self.state {
            State::Closed => ModemState::Closed,
            State::Resetting => ModemState::Resetting,
            State::Init { .. } => ModemState::Initialising,
            State::Idle { .. } | State::Health { .. } => ModemState::Idle,
            State::Ringing { rings, .. } => ModemState::Ringing { rings: *rings },
            State::Call(c) if c.phase == Phase::Data => ModemState::ReceivingPage { page: c.pages + 1 },
            State::Call(c) => ModemState::InCall { pages: c.pages },
        };
        Status {
            state,
            class: self.dialect.map(|d| d.class),
            last_error: self.last_error.clone(),
            calls: self.calls,
            pages: self.pages,
        }
    }

    /// Bytes read from the modem, as they came (any chunking).
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if matches!(self.state, State::Closed | State::Resetting) {
            if !bytes.is_empty() {
                self.event(Event::Stray { bytes: bytes.len() });
            }
            return;
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            if let State::Call(call) = &mut self.state
                && call.phase == Phase::Data
            {
                let used = self.data(rest, now);
                rest = rest.get(used..).unwrap_or_default();
                continue;
            }
            let b = rest[0];
            rest = &rest[1..];
            if b == b'\r' || b == b'\n' {
                if !self.line.is_empty() {
                    let line = std::mem::take(&mut self.line);
                    self.line_too_long = false;
                    self.on_line(&String::from_utf8_lossy(&line), now);
                }
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            } else if !self.line_too_long {
                self.line_too_long = true;
                self.event(Event::LineTooLong);
            }
        }
    }

    /// Time passed: timeouts, health checks.
    pub fn tick(&mut self, now: Instant) {
        let timers = self.config.timers;
        self.state = match std::mem::replace(&mut self.state, State::Closed) {
            State::Init { step, deadline, .. } if now >= deadline => {
                let command = self.commands.get(step).map(|c| c.text.clone()).unwrap_or_default();
                self.reset(ResetReason::NoReply { command, secs: timers.command.as_secs() });
                State::Resetting
            }
            State::Idle { health_due } if now >= health_due => {
                self.write_command("AT");
                State::Health { deadline: now + timers.command, rings: 0 }
            }
            State::Health { deadline, rings } if now >= deadline && rings > 0 => {
                // It rang, so the modem is alive; its OK is lost: the call goes on without it.
                self.after_health_check(rings, now)
            }
            State::Health { deadline, .. } if now >= deadline => {
                self.push(Action::Health(false));
                self.reset(ResetReason::HealthCheck { secs: timers.command.as_secs() });
                State::Resetting
            }
            State::Ringing { rings, deadline } if now >= deadline => {
                self.event(Event::RingsStopped { rings });
                self.caller_id = CallerId::default();
                State::Idle { health_due: now + timers.health }
            }
            State::Call(call) if now >= call.deadline => {
                let class = self.class();
                if call.phase == Phase::HangingUp {
                    // The hangup was reported; only its OK is missing.
                    let hangup = call.hangup.clone().unwrap_or(Hangup::local(class, "hangup"));
                    self.end_call(*call, hangup, None, now);
                } else {
                    let waiting_for = call.phase.name();
                    let reason = match call.phase {
                        Phase::Answering => "no fax handshake after answering (timeout)",
                        Phase::Data => "no page data for too long (timeout)",
                        _ => "the modem stopped answering during the call (timeout)",
                    };
                    self.end_call(*call, Hangup::local(class, reason), Some(ResetReason::Stuck { waiting_for }), now);
                }
                std::mem::replace(&mut self.state, State::Closed)
            }
            state => state,
        };
    }

    // ---- set-up ----

    fn begin_init(&mut self, now: Instant) {
        self.line.clear();
        self.refused = 0;
        self.commands = ["ATZ", "ATE0V1"].iter().map(|c| Command { text: c.to_string(), required: true }).collect();
        self.commands.push(Command { text: "ATS0=0".into(), required: false });
        self.commands.push(Command { text: "AT+FCLASS=?".into(), required: true });
        self.send_step(0, now);
    }

    fn send_step(&mut self, step: usize, now: Instant) {
        match self.commands.get(step) {
            Some(c) => {
                let text = c.text.clone();
                self.write_command(&text);
                self.state = State::Init { step, deadline: now + self.config.timers.command, info: Vec::new() };
            }
            None => {
                let class = self.class();
                self.event(Event::Initialised { class, refused: self.refused });
                self.state = State::Idle { health_due: now + self.config.timers.health };
            }
        }
    }

    /// After `AT+FCLASS=?`: choose the class and queue its commands.
    fn choose_class(&mut self, offered: &[String]) -> Result<(), ResetReason> {
        let listed = offered.join(" ");
        let classes: Vec<String> = offered
            .iter()
            .flat_map(|l| l.split(|c: char| c == ',' || c == '(' || c == ')' || c.is_whitespace()))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let has = |c: &str| classes.iter().any(|x| x == c);
        let (class, forced) = match self.config.class {
            ClassChoice::Force(class) => (class, true),
            ClassChoice::Auto if has("2.0") || has("2.1") => (ModemClass::Class20, false),
            ClassChoice::Auto if has("2") => (ModemClass::Class2, false),
            ClassChoice::Auto => return Err(ResetReason::NoFaxClass { offered: listed }),
        };
        self.event(Event::ClassChosen { class, offered: listed, forced });
        let d = Dialect::of(class);
        self.dialect = Some(d);
        let c = &self.config;
        let id: String = c
            .local_id
            .chars()
            .filter(|ch| ch.is_ascii_graphic() || *ch == ' ')
            .filter(|ch| *ch != '"')
            .take(20)
            .collect();
        let rate_code = (c.max_bit_rate.clamp(2400, 14400) / 2400).saturating_sub(1);
        let width = match c.max_width {
            PageWidth::A4 => 0,
            PageWidth::B4 => 1,
            PageWidth::A3 => 2,
        };
        let mut more = vec![
            Command { text: d.select.into(), required: true },
            Command { text: format!("{}=\"{id}\"", d.local_id), required: false },
            Command { text: "AT+FCR=1".into(), required: true },
            // vr, br, wd, ln (2: unlimited), df (0: 1-D MH), ec (0: no ECM), bf, st.
            Command {
                text: format!("{}={},{:X},{width},2,0,0,0,0", d.capabilities, u8::from(c.fine), rate_code),
                required: false,
            },
            Command { text: d.bit_order.into(), required: false },
            Command { text: d.phase_c_timeout.into(), required: false },
        ];
        more.extend(d.extra.iter().map(|e| Command { text: e.to_string(), required: false }));
        // Fax only, no adaptive answering (mgetty's fax_only).
        more.push(Command { text: "AT+FAA=0".into(), required: false });
        self.commands.extend(more);
        Ok(())
    }

    fn init_line(
        &mut self,
        step: usize,
        deadline: Instant,
        mut info: Vec<String>,
        line: Line,
        text: &str,
        now: Instant,
    ) {
        let Some(command) = self.commands.get(step).cloned() else {
            self.send_step(step, now);
            return;
        };
        match line {
            Line::Ok => {
                if command.text == "AT+FCLASS=?"
                    && let Err(why) = self.choose_class(&info)
                {
                    self.reset(why);
                    return;
                }
                self.send_step(step + 1, now);
            }
            Line::Error if command.text == "AT+FCLASS=?" && matches!(self.config.class, ClassChoice::Force(_)) => {
                // A forced class needs no list.
                let _ = self.choose_class(&info);
                self.send_step(step + 1, now);
            }
            Line::Error if command.required => self.reset(ResetReason::Refused { command: command.text }),
            Line::Error => {
                self.refused += 1;
                self.last_error = Some(format!("the modem refused {}", command.text));
                self.event(Event::CommandRefused { command: command.text });
                self.send_step(step + 1, now);
            }
            Line::Echo | Line::Ring => self.state = State::Init { step, deadline, info },
            _ => {
                if info.len() < 8 {
                    info.push(text.to_string());
                }
                self.state = State::Init { step, deadline, info };
            }
        }
    }

    // ---- lines ----

    fn on_line(&mut self, text: &str, now: Instant) {
        let radix = self.dialect.map_or(10, |d| d.class.radix());
        let line = Line::parse(text, radix, self.page_status_radix());
        let timers = self.config.timers;
        self.state = match std::mem::replace(&mut self.state, State::Closed) {
            state @ (State::Closed | State::Resetting) => state,
            State::Init { step, deadline, info } => {
                self.init_line(step, deadline, info, line, text, now);
                return;
            }
            State::Idle { health_due } => self.idle_line(line, State::Idle { health_due }, now),
            State::Health { deadline, rings } => match line {
                Line::Ok if rings == 0 => {
                    self.push(Action::Health(true));
                    State::Idle { health_due: now + timers.health }
                }
                Line::Ok => self.after_health_check(rings, now),
                Line::Ring => {
                    // Alive. The OK to the AT is still to come (modems report RING as it
                    // happens, before the reply to a command in progress): answering now would
                    // take that OK for the end of the handshake. The ring is counted; the call
                    // goes on after the OK.
                    if rings == 0 {
                        self.push(Action::Health(true));
                    }
                    let rings = rings.saturating_add(1);
                    self.event(Event::Ring { count: rings });
                    State::Health { deadline, rings }
                }
                Line::CallerId(field, value) => {
                    self.caller_id_field(field, value);
                    State::Health { deadline, rings }
                }
                Line::FaxConnect => {
                    // The modem answered by itself; the call comes first.
                    self.push(Action::Health(true));
                    self.idle_line(line, State::Idle { health_due: now + timers.health }, now)
                }
                _ => State::Health { deadline, rings },
            },
            State::Ringing { rings, deadline } => self.ringing_line(line, rings, deadline, now),
            State::Call(call) => {
                self.call_line(*call, line, now);
                return;
            }
        };
    }

    fn idle_line(&mut self, line: Line, idle: State, now: Instant) -> State {
        match line {
            Line::Ring => self.ringing_line(Line::Ring, 0, now, now),
            Line::CallerId(field, value) => {
                self.caller_id_field(field, value);
                idle
            }
            Line::FaxConnect => {
                self.event(Event::AnsweredByModem);
                self.answer(now, false)
            }
            Line::Ok | Line::Echo => idle,
            _ => {
                self.event(Event::UnexpectedLine { state: "idle" });
                idle
            }
        }
    }

    fn ringing_line(&mut self, line: Line, rings: u8, deadline: Instant, now: Instant) -> State {
        match line {
            Line::Ring => {
                let rings = rings.saturating_add(1);
                self.event(Event::Ring { count: rings });
                if rings >= self.config.rings.max(1) {
                    self.answer(now, true)
                } else {
                    State::Ringing { rings, deadline: now + self.config.timers.ring_gap }
                }
            }
            Line::CallerId(field, value) => {
                self.caller_id_field(field, value);
                State::Ringing { rings, deadline }
            }
            Line::FaxConnect => {
                self.event(Event::AnsweredByModem);
                self.answer(now, false)
            }
            _ => State::Ringing { rings, deadline },
        }
    }

    /// The health check's reply came (or its time ran out) after `rings` rings: answer, or
    /// wait for the next ring.
    fn after_health_check(&mut self, rings: u8, now: Instant) -> State {
        if rings >= self.config.rings.max(1) {
            self.answer(now, true)
        } else {
            State::Ringing { rings, deadline: now + self.config.timers.ring_gap }
        }
    }

    fn caller_id_field(&mut self, field: CallerField, value: String) {
        let value = Some(value);
        match field {
            CallerField::Number => self.caller_id.number = value,
            CallerField::Name => self.caller_id.name = value,
            CallerField::Date => self.caller_id.date = value,
            CallerField::Time => self.caller_id.time = value,
        }
    }

    fn answer(&mut self, now: Instant, write_ata: bool) -> State {
        if write_ata {
            self.write_command("ATA");
        }
        self.calls += 1;
        self.push(Action::CallStarted { at: now });
        State::Call(Box::new(Call {
            phase: Phase::Answering,
            deadline: now + self.config.timers.answer,
            pages: 0,
            tsi: None,
            caller_id: std::mem::take(&mut self.caller_id),
            remote_sent: false,
            hangup: None,
            last_post: None,
            flow_set: false,
            unstuffer: Unstuffer::new(),
            started: false,
            skipped: 0,
            bytes: 0,
            no_carrier: 0,
            status: PageStatus::Unreported,
            lines: None,
            bad_lines: None,
            post: PostPage::Unreported,
            interrupt: false,
            page_open: false,
        }))
    }

    fn call_line(&mut self, mut call: Call, line: Line, now: Instant) {
        let timers = self.config.timers;
        let class = self.class();
        let dialect = self.dialect.unwrap_or(&CLASS20);
        // Reports that may come at any time in a call.
        match line {
            Line::Tsi(tsi) => {
                call.tsi = Some(tsi);
                self.state = State::Call(Box::new(call));
                return;
            }
            Line::Dcs(ref params) => {
                if let Some(session) = parse_session(params, self.bit_order()) {
                    self.push(Action::Session(session));
                }
                self.state = State::Call(Box::new(call));
                return;
            }
            Line::Hangup(code) => {
                if call.phase == Phase::PostPage {
                    self.end_page(&mut call);
                }
                let hangup = match code {
                    Some(code) => Hangup::reported(class, code),
                    None => Hangup::local(class, "unreadable hangup code"),
                };
                if !hangup.is_normal() {
                    self.last_error = Some(hangup.to_string());
                }
                call.hangup = Some(hangup);
                call.phase = Phase::HangingUp;
                call.deadline = now + timers.command;
                self.state = State::Call(Box::new(call));
                return;
            }
            Line::NoCarrier => {
                if call.phase == Phase::PostPage {
                    self.end_page(&mut call);
                }
                let hangup = call
                    .hangup
                    .clone()
                    .unwrap_or(Hangup::local(class, "carrier lost (NO CARRIER) without a hangup code"));
                self.end_call(call, hangup, None, now);
                return;
            }
            _ => {}
        }
        match (call.phase, line) {
            (Phase::Answering, Line::FaxConnect) => {}
            (Phase::Answering, Line::Ok) => {
                let fc = self.config.flow_control;
                self.push(Action::SetFlowControl(fc));
                call.flow_set = true;
                let command = match (dialect.flow_control, fc) {
                    (Some((hw, _)), FlowControl::Hardware) => Some(hw),
                    (Some((_, sw)), FlowControl::Software) => Some(sw),
                    _ => None,
                };
                match command {
                    Some(command) => {
                        self.write_command(command);
                        call.phase = Phase::FlowControl;
                        call.deadline = now + timers.command;
                    }
                    None => self.fdr(&mut call, now),
                }
            }
            (Phase::Answering, Line::Error) => {
                self.end_call(
                    call,
                    Hangup::local(class, "the modem answered ERROR instead of a fax handshake"),
                    None,
                    now,
                );
                return;
            }
            (Phase::FlowControl, Line::Ok) => self.fdr(&mut call, now),
            (Phase::FlowControl, Line::Error) => {
                self.event(Event::FlowControlRefused);
                self.fdr(&mut call, now);
            }
            (Phase::AwaitConnect, Line::Connect) => self.begin_page(&mut call, now),
            (Phase::AwaitConnect, Line::Ok) => {
                self.event(Event::OkForConnect);
                self.begin_page(&mut call, now);
            }
            (Phase::AwaitConnect, Line::Error) => {
                self.end_call(call, Hangup::local(class, "the modem refused AT+FDR (ERROR)"), None, now);
                return;
            }
            (Phase::PostPage, Line::PageStatus { status, lines, bad_lines }) => {
                call.status = status;
                call.lines = lines;
                call.bad_lines = bad_lines;
            }
            (Phase::PostPage, Line::PostPage(code)) => {
                let (post, interrupt) = PostPage::from_code(code);
                call.post = post;
                call.interrupt = interrupt;
            }
            (Phase::PostPage, Line::Ok | Line::Error) => {
                self.end_page(&mut call);
                self.fdr(&mut call, now);
            }
            (Phase::HangingUp, Line::Ok | Line::Error) => {
                let hangup = call.hangup.clone().unwrap_or(Hangup::local(class, "hangup"));
                self.end_call(call, hangup, None, now);
                return;
            }
            (_, Line::Echo | Line::Other | Line::Fcfr) => {}
            (phase, _) => self.event(Event::UnexpectedLine { state: phase.name() }),
        }
        self.state = State::Call(Box::new(call));
    }

    fn fdr(&mut self, call: &mut Call, now: Instant) {
        self.write_command("AT+FDR");
        call.phase = Phase::AwaitConnect;
        call.deadline = now + self.config.timers.page_start;
    }

    fn begin_page(&mut self, call: &mut Call, now: Instant) {
        self.send_remote(call);
        self.push(Action::Write(vec![self.config.data_trigger.unwrap_or(DC2)]));
        call.phase = Phase::Data;
        call.deadline = now + self.config.timers.page_data;
        call.unstuffer = Unstuffer::new();
        call.started = false;
        call.skipped = 0;
        call.bytes = 0;
        call.no_carrier = 0;
        call.status = PageStatus::Unreported;
        call.lines = None;
        call.bad_lines = None;
        call.post = PostPage::Unreported;
        call.interrupt = false;
        call.page_open = true;
    }

    fn send_remote(&mut self, call: &mut Call) {
        if !call.remote_sent {
            call.remote_sent = true;
            self.push(Action::Remote { tsi: call.tsi.clone(), caller_id: call.caller_id.clone() });
        }
    }

    /// Page data: returns how many of `bytes` belonged to the page.
    fn data(&mut self, bytes: &[u8], now: Instant) -> usize {
        let State::Call(mut call) = std::mem::replace(&mut self.state, State::Closed) else { return bytes.len() };
        call.deadline = now + self.config.timers.page_data;
        let mut input = bytes;
        let mut offset = 0;
        if !call.started {
            // mgetty: the page starts with a zero byte (T.4's EOL begins with zeros) or a DLE;
            // what comes before (the end of CONNECT's line, an XON) is not page data.
            match input.iter().position(|&b| b == 0 || b == super::dle::DLE) {
                Some(p) => {
                    call.skipped += p;
                    call.started = true;
                    if call.skipped > 0 {
                        self.event(Event::SkippedBeforePage { bytes: call.skipped });
                    }
                    input = &input[p..];
                    offset = p;
                }
                None => {
                    call.skipped += input.len();
                    self.state = State::Call(call);
                    return bytes.len();
                }
            }
        }
        // NO CARRIER written into the data when the line drops.
        let mut cut = None;
        for (i, &b) in input.iter().enumerate() {
            if NO_CARRIER_IN_DATA.get(call.no_carrier) == Some(&b) {
                call.no_carrier += 1;
            } else {
                call.no_carrier = usize::from(b == NO_CARRIER_IN_DATA[0]);
            }
            if call.no_carrier == NO_CARRIER_IN_DATA.len() {
                cut = Some(i + 1);
                break;
            }
        }
        let page_part = &input[..cut.unwrap_or(input.len())];
        let mut out = Vec::new();
        let ended = call.unstuffer.push(page_part, &mut out);
        if !out.is_empty() {
            call.bytes += out.len() as u64;
            self.push(Action::PageData(out));
        }
        if let Some(n) = ended {
            call.phase = Phase::PostPage;
            call.deadline = now + self.config.timers.post_page;
            self.state = State::Call(call);
            return offset + n;
        }
        if let Some(n) = cut {
            let class = self.class();
            self.end_call(
                *call,
                Hangup::local(class, "carrier lost during a page (NO CARRIER in the data)"),
                None,
                now,
            );
            return offset + n;
        }
        self.state = State::Call(call);
        bytes.len()
    }

    fn end_page(&mut self, call: &mut Call) {
        if !call.page_open {
            return;
        }
        call.page_open = false;
        call.pages += 1;
        self.pages += 1;
        if call.post != PostPage::Unreported {
            call.last_post = Some(call.post);
        }
        self.push(Action::PageEnd(PageEnd {
            page: call.pages,
            status: call.status,
            more: call.post,
            interrupt: call.interrupt,
            lines: call.lines,
            bad_lines: call.bad_lines,
            bytes: call.bytes,
            unknown_escapes: call.unstuffer.unknown_pairs(),
        }));
    }

    /// The call is over: the open page aborted, the remote reported if not yet, the call's
    /// end, then set-up again or a reset.
    fn end_call(&mut self, mut call: Call, hangup: Hangup, reset: Option<ResetReason>, now: Instant) {
        if call.page_open {
            call.page_open = false;
            self.push(Action::PageAborted { page: call.pages + 1, bytes: call.bytes });
        }
        self.send_remote(&mut call);
        let complete = hangup.is_normal() && call.last_post == Some(PostPage::EndOfProcedure);
        if !complete {
            self.last_error = Some(hangup.to_string());
        }
        self.push(Action::CallEnded { pages: call.pages, hangup, complete });
        if call.flow_set {
            self.push(Action::SetFlowControl(FlowControl::Off));
        }
        match reset {
            Some(why) => self.reset(why),
            None => self.begin_init(now),
        }
    }

    fn abandon_call(&mut self, reason: &'static str) {
        if let State::Call(call) = std::mem::replace(&mut self.state, State::Closed) {
            let class = self.class();
            let mut call = *call;
            if call.page_open {
                call.page_open = false;
                self.push(Action::PageAborted { page: call.pages + 1, bytes: call.bytes });
            }
            self.send_remote(&mut call);
            let hangup = Hangup::local(class, reason);
            self.last_error = Some(hangup.to_string());
            self.push(Action::CallEnded { pages: call.pages, hangup, complete: false });
            if call.flow_set {
                self.push(Action::SetFlowControl(FlowControl::Off));
            }
        }
    }

    fn reset(&mut self, why: ResetReason) {
        self.last_error = Some(why.to_string());
        self.push(Action::Reset { why });
        self.state = State::Resetting;
    }

    // ---- helpers ----

    fn class(&self) -> ModemClass {
        self.dialect.map_or(ModemClass::Class20, |d| d.class)
    }

    fn bit_order(&self) -> BitOrder {
        self.config.bit_order.unwrap_or(self.dialect.map_or(BitOrder::LsbFirst, |d| d.delivers))
    }

    fn write_command(&mut self, command: &str) {
        let mut bytes = command.as_bytes().to_vec();
        bytes.push(b'\r');
        self.push(Action::Write(bytes));
    }

    fn event(&mut self, e: Event) {
        self.push(Action::Event(e));
    }

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn page_status_radix(&self) -> u32 {
        self.config.page_status_radix.unwrap_or(self.class().radix())
    }
}

// ---- response lines ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallerField {
    Number,
    Name,
    Date,
    Time,
}

/// One response line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Ok,
    Error,
    Connect,
    /// `NO CARRIER`, `BUSY`, `NO DIALTONE`, `NO ANSWER`: the line is gone.
    NoCarrier,
    Ring,
    CallerId(CallerField, String),
    /// `+FCON` / `+FCO`.
    FaxConnect,
    /// `+FCFR`: confirmation to receive (Class 2), nothing to do.
    Fcfr,
    Tsi(String),
    /// The parameters of `+FDCS:` / `+FCS:`, unparsed.
    Dcs(String),
    /// `+FPTS:` / `+FPS:`: the post-page response and the modem's line counts.
    PageStatus {
        status: PageStatus,
        lines: Option<u32>,
        bad_lines: Option<u32>,
    },
    PostPage(u8),
    /// `None`: unreadable.
    Hangup(Option<u16>),
    /// Our own command echoed.
    Echo,
    /// Anything else (other `+F` reports, `+FIS`, `+FNF`, information text).
    Other,
}

impl Line {
    /// Reads a line; names of both dialects are recognised, numbers read in `radix`.
    fn parse(text: &str, radix: u32, page_status_radix: u32) -> Line {
        let text = text.trim();
        let upper = text.to_ascii_uppercase();
        let (name, value) = match upper.find(':') {
            Some(i) => (upper[..i].trim(), text[i + 1..].trim()),
            None => (upper.as_str(), ""),
        };
        let is = |d: fn(&Dialect) -> &'static str| name == d(&CLASS2) || name == d(&CLASS20);
        if upper.starts_with("AT") {
            return Line::Echo;
        }
        match name {
            "OK" => return Line::Ok,
            "ERROR" => return Line::Error,
            "RING" => return Line::Ring,
            "NO CARRIER" | "BUSY" | "NO DIALTONE" | "NO DIAL TONE" | "NO ANSWER" => return Line::NoCarrier,
            "+FCFR" => return Line::Fcfr,
            "+FET" => return number(value, 10).map_or(Line::Other, |n| Line::PostPage(n.min(255) as u8)),
            _ => {}
        }
        if upper.starts_with("CONNECT") {
            return Line::Connect;
        }
        if is(|d| d.connect) {
            return Line::FaxConnect;
        }
        if is(|d| d.tsi) {
            return Line::Tsi(station_id(value));
        }
        if is(|d| d.dcs) {
            return Line::Dcs(value.to_string());
        }
        if is(|d| d.hangup) {
            return Line::Hangup(number(value, radix).and_then(|n| u16::try_from(n).ok()));
        }
        if is(|d| d.page_status) {
            let mut values = value.split(',');
            let status = values
                .next()
                .and_then(|v| number(v, 10))
                .map_or(PageStatus::Other(0), |n| PageStatus::from_code(n.min(255) as u8));
            let mut count = || values.next().and_then(|v| number(v, page_status_radix));
            return Line::PageStatus { status, lines: count(), bad_lines: count() };
        }
        if let Some((field, rest)) = upper.split_once('=') {
            let field = match field.trim() {
                "NMBR" => Some(CallerField::Number),
                "NAME" => Some(CallerField::Name),
                "DATE" => Some(CallerField::Date),
                "TIME" => Some(CallerField::Time),
                _ => None,
            };
            if let Some(field) = field {
                let start = text.len() - rest.len();
                return Line::CallerId(field, text.get(start..).unwrap_or_default().trim().to_string());
            }
        }
        Line::Other
    }
}

fn number(s: &str, radix: u32) -> Option<u32> {
    u32::from_str_radix(s.trim(), radix).ok()
}

/// A station id as reported: quotes and surrounding blanks removed (mgetty's
/// `fwf_copy_remote_id`), at most 20 characters as T.30 allows (a little slack for modems that
/// pad).
fn station_id(value: &str) -> String {
    value.trim().trim_matches('"').trim().chars().filter(|c| !c.is_control()).take(24).collect()
}

/// `vr,br,wd,ln,df,ec,bf,st` of a DCS report. Read as hex: Class 2.0 writes hex, and Class 2's
/// decimal values of these fields are single digits, the same in both (mgetty reads `br` as hex
/// for both too).
fn parse_session(params: &str, bit_order: BitOrder) -> Option<Session> {
    let values: Vec<u16> = params.split(',').map(|v| u16::from_str_radix(v.trim(), 16).ok()).collect::<Option<_>>()?;
    if values.len() < 5 {
        return None;
    }
    let resolution = match values[0] {
        0 => Resolution::Normal,
        1 => Resolution::Fine,
        n => Resolution::Other(n),
    };
    let width_px = match values[2] {
        0 => Some(1728),
        1 => Some(2048),
        2 => Some(2432),
        _ => None,
    };
    let data_format = match values[4] {
        0 => DataFormat::Mh,
        1 => DataFormat::Mr,
        2 => DataFormat::Uncompressed,
        3 => DataFormat::Mmr,
        n => DataFormat::Other(n),
    };
    Some(Session {
        resolution,
        width_px,
        bit_rate: 2400 * (u32::from(values[1].min(13)) + 1),
        data_format,
        ecm: values.get(5).is_some_and(|&e| e != 0),
        bit_order,
    })
}

#[cfg(test)]
mod tests;
