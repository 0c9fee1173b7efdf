//! The modem driven by recorded dialogues, written out as modems speak them (`\r\n` framing,
//! echo off after `ATE0`), each modem turn fed in chunks of many sizes from one byte. Time is
//! fake: `Instant`s from one base, never slept on. Page data is the real G3 page in
//! `tests/data/fax/g3test.g3` (MSB first, 1103 lines), DLE-stuffed onto the wire.

use std::time::{Duration, Instant};

use super::*;
use crate::fax::dle::{DC1, DLE, ETX, SUB};

const G3TEST: &[u8] = include_bytes!("../../../tests/data/fax/g3test.g3");
const CHUNKS: [usize; 9] = [1, 2, 3, 5, 7, 13, 64, 1500, usize::MAX];

fn reversed(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b.reverse_bits()).collect()
}

fn ok() -> Vec<u8> {
    b"\r\nOK\r\n".to_vec()
}

fn lines(ls: &[&str]) -> Vec<u8> {
    ls.iter().flat_map(|l| format!("\r\n{l}\r\n").into_bytes()).collect()
}

/// What the modem sends, and what we must write in reply.
struct Turn {
    modem: Vec<u8>,
    host: Vec<u8>,
}

fn turn(modem: Vec<u8>, host: &[u8]) -> Turn {
    Turn { modem, host: host.to_vec() }
}

/// The set-up of a Class 2.0 modem after `ATZ` (which [`Modem::start`] writes).
fn init_20() -> Vec<Turn> {
    vec![
        turn(ok(), b"ATE0V1\r"),
        turn(ok(), b"ATS0=0\r"),
        turn(ok(), b"AT+FCLASS=?\r"),
        turn(lines(&["0,1,2,2.0", "OK"]), b"AT+FCLASS=2.0\r"),
        turn(ok(), b"AT+FLI=\"+41 44 555 01 99\"\r"),
        turn(ok(), b"AT+FCR=1\r"),
        turn(ok(), b"AT+FCC=1,5,0,2,0,0,0,0\r"),
        turn(ok(), b"AT+FBO=0\r"),
        turn(ok(), b"AT+FCT=30\r"),
        turn(ok(), b"AT+FNR=1,1,1,0\r"),
        turn(ok(), b"AT+FPP=0\r"),
        turn(ok(), b"AT+FIE=0\r"),
        turn(ok(), b"AT+FAA=0\r"),
        turn(ok(), b""),
    ]
}

/// The same for a Class 2 modem (it echoes `ATZ` before `ATE0` takes effect).
fn init_2() -> Vec<Turn> {
    vec![
        turn(b"ATZ\r\r\nOK\r\n".to_vec(), b"ATE0V1\r"),
        turn(b"ATE0V1\r\r\nOK\r\n".to_vec(), b"ATS0=0\r"),
        turn(ok(), b"AT+FCLASS=?\r"),
        turn(lines(&["(0,1,2)", "OK"]), b"AT+FCLASS=2\r"),
        turn(ok(), b"AT+FLID=\"+41 44 555 01 99\"\r"),
        turn(ok(), b"AT+FCR=1\r"),
        turn(ok(), b"AT+FDCC=1,5,0,2,0,0,0,0\r"),
        turn(ok(), b"AT+FBOR=0\r"),
        turn(ok(), b"AT+FPHCTO=30\r"),
        turn(ok(), b"AT+FAA=0\r"),
        turn(ok(), b""),
    ]
}

fn config() -> Config {
    Config { local_id: "+41 44 555 01 99".into(), ..Config::default() }
}

/// A Class 2.0 page on the wire: data stuffed, `DLE ETX`, page status, post-page message, OK.
fn page_20(data: &[u8], lc: usize, fet: u8) -> Vec<u8> {
    let mut wire = Unstuffer::stuff(data);
    wire.extend(lines(&[&format!("+FPS:1,{lc:X},0,0,0"), &format!("+FET:{fet}"), "OK"]));
    wire
}

fn page_2(data: &[u8], lc: usize, fet: u8) -> Vec<u8> {
    let mut wire = Unstuffer::stuff(data);
    wire.extend(lines(&[&format!("+FPTS:1,{lc},0,0"), &format!("+FET:{fet}"), "OK"]));
    wire
}

/// The modem and everything it did.
struct Harness {
    modem: Modem,
    t0: Instant,
    now: Instant,
    written: Vec<u8>,
    pages: Vec<Vec<u8>>,
    page: Vec<u8>,
    ends: Vec<PageEnd>,
    aborted: Vec<(u32, u64)>,
    sessions: Vec<Session>,
    remotes: Vec<(Option<String>, CallerId)>,
    calls: Vec<(u32, Hangup, bool)>,
    resets: Vec<ResetReason>,
    health: Vec<bool>,
    flow: Vec<FlowControl>,
    started: usize,
    events: Vec<Event>,
}

impl Harness {
    fn new(config: Config) -> Harness {
        let t0 = Instant::now();
        Harness {
            modem: Modem::new(config),
            t0,
            now: t0,
            written: Vec::new(),
            pages: Vec::new(),
            page: Vec::new(),
            ends: Vec::new(),
            aborted: Vec::new(),
            sessions: Vec::new(),
            remotes: Vec::new(),
            calls: Vec::new(),
            resets: Vec::new(),
            health: Vec::new(),
            flow: Vec::new(),
            started: 0,
            events: Vec::new(),
        }
    }

    fn at(&mut self, secs: f64) {
        self.now = self.t0 + Duration::from_secs_f64(secs);
    }

    fn start(&mut self) -> Vec<u8> {
        self.modem.start(self.now);
        self.drain()
    }

    fn feed(&mut self, bytes: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            self.modem.receive(c, self.now);
            out.extend(self.drain());
        }
        out
    }

    fn tick(&mut self) -> Vec<u8> {
        self.modem.tick(self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<u8> {
        let mut written = Vec::new();
        while let Some(action) = self.modem.poll_action() {
            match action {
                Action::Write(bytes) => written.extend(bytes),
                Action::SetFlowControl(fc) => self.flow.push(fc),
                Action::Reset { why } => self.resets.push(why),
                Action::CallStarted { .. } => self.started += 1,
                Action::Remote { tsi, caller_id } => self.remotes.push((tsi, caller_id)),
                Action::Session(s) => self.sessions.push(s),
                Action::PageData(bytes) => {
                    assert!(!bytes.is_empty(), "no empty chunks");
                    self.page.extend(bytes)
                }
                Action::PageEnd(end) => {
                    self.pages.push(std::mem::take(&mut self.page));
                    self.ends.push(end);
                }
                Action::PageAborted { page, bytes } => {
                    assert_eq!(bytes, self.page.len() as u64);
                    self.page.clear();
                    self.aborted.push((page, bytes));
                }
                Action::CallEnded { pages, hangup, complete } => self.calls.push((pages, hangup, complete)),
                Action::Health(ok) => self.health.push(ok),
                Action::Event(e) => self.events.push(e),
            }
        }
        self.written.extend(&written);
        written
    }

    /// Plays turns at `chunk`, checking what we write after each.
    fn play(&mut self, turns: &[Turn], chunk: usize) {
        for (i, t) in turns.iter().enumerate() {
            let wrote = self.feed(&t.modem, chunk);
            assert_eq!(
                String::from_utf8_lossy(&wrote),
                String::from_utf8_lossy(&t.host),
                "turn {i} at chunk {chunk}; events {:?}",
                self.events
            );
        }
    }

    fn has_event(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(pred)
    }
}

/// A modem set up and idle.
fn ready(config: Config, init: &[Turn], chunk: usize) -> Harness {
    let mut h = Harness::new(config);
    assert_eq!(h.start(), b"ATZ\r");
    h.play(init, chunk);
    assert_eq!(h.modem.status().state, ModemState::Idle);
    h
}

#[test]
fn class20_one_page_at_normal_resolution() {
    // Class 2.0 with +FBO=0 delivers the page as it is on the line: LSB first.
    let wire_page = reversed(G3TEST);
    assert!(wire_page.contains(&DLE), "the page must exercise DLE stuffing");
    for chunk in CHUNKS {
        let mut h = ready(config(), &init_20(), chunk);
        h.play(
            &[
                turn(lines(&["RING"]), b"ATA\r"),
                turn(lines(&["+FCO", "+FTI:\"+1 555 0100\"", "+FCS:0,5,0,2,0,0,0,0", "OK"]), b"AT+FLO=2\r"),
                turn(ok(), b"AT+FDR\r"),
                turn(lines(&["CONNECT"]), &[DC2]),
                turn(page_20(&wire_page, 1103, 2), b"AT+FDR\r"),
                turn(lines(&["+FHS:00", "OK"]), b"ATZ\r"),
            ],
            chunk,
        );
        assert_eq!(h.started, 1);
        assert_eq!(h.flow, [FlowControl::Hardware, FlowControl::Off], "set after connect, off after the call");
        assert_eq!(h.remotes, [(Some("+1 555 0100".to_string()), CallerId::default())]);
        assert_eq!(
            h.sessions,
            [Session {
                resolution: Resolution::Normal,
                width_px: Some(1728),
                bit_rate: 14400,
                data_format: DataFormat::Mh,
                ecm: false,
                bit_order: BitOrder::LsbFirst,
            }]
        );
        assert_eq!(h.pages.len(), 1, "chunk {chunk}");
        assert!(h.pages[0] == wire_page, "chunk {chunk}: unstuffed page differs");
        assert!(reversed(&h.pages[0]) == G3TEST, "bit-reversed, the page is the file");
        let end = h.ends[0];
        assert_eq!(
            (end.page, end.status, end.more, end.interrupt),
            (1, PageStatus::Good, PostPage::EndOfProcedure, false)
        );
        assert_eq!(
            (end.lines, end.bad_lines, end.bytes, end.unknown_escapes),
            (Some(1103), Some(0), G3TEST.len() as u64, 0)
        );
        assert_eq!(h.calls.len(), 1);
        let (pages, hangup, complete) = &h.calls[0];
        assert_eq!((*pages, hangup.code, *complete), (1, Some(0), true));
        assert_eq!(hangup.to_string(), "+FHS:00: normal and proper end of connection (call placement and termination)");
        assert!(h.aborted.is_empty() && h.resets.is_empty());
        let status = h.modem.status();
        assert_eq!((status.state, status.calls, status.pages), (ModemState::Initialising, 1, 1));
        // Set up again after the call.
        h.play(&init_20(), chunk);
        assert_eq!(h.modem.status().state, ModemState::Idle);
    }
}

#[test]
fn class2_three_pages_at_fine_resolution_with_dc1_and_msb_first() {
    let config = Config { data_trigger: Some(DC1), ..config() };
    for chunk in CHUNKS {
        let mut h = ready(config.clone(), &init_2(), chunk);
        let mut turns = vec![
            turn(lines(&["RING"]), b"ATA\r"),
            // Class 2: no flow control command; AT+FDR straight after the handshake.
            turn(lines(&["+FCON", "+FTSI: 555 0100 ", "+FDCS:1,3,0,2,0,0,0,0", "OK"]), b"AT+FDR\r"),
            turn(lines(&["+FCFR", "CONNECT"]), &[DC1]),
            turn(page_2(G3TEST, 1103, 0), b"AT+FDR\r"),
            turn(lines(&["CONNECT"]), &[DC1]),
            turn(page_2(G3TEST, 1103, 0), b"AT+FDR\r"),
            // An inter-page DCS before the last page.
            turn(lines(&["+FDCS:1,3,0,2,0,0,0,0", "CONNECT"]), &[DC1]),
            turn(page_2(G3TEST, 1103, 2), b"AT+FDR\r"),
            turn(lines(&["+FHNG:0", "OK"]), b"ATZ\r"),
        ];
        turns.extend(init_2());
        h.play(&turns, chunk);
        assert_eq!(h.flow, [FlowControl::Hardware, FlowControl::Off]);
        assert_eq!(h.remotes[0].0.as_deref(), Some("555 0100"));
        assert_eq!(h.sessions.len(), 2);
        let s = h.sessions[0];
        assert_eq!(
            (s.resolution, s.resolution.lines_per_inch(), s.width_px),
            (Resolution::Fine, Some(196), Some(1728))
        );
        assert_eq!((s.bit_rate, s.bit_order, s.data_format), (9600, BitOrder::MsbFirst, DataFormat::Mh));
        assert_eq!(h.pages.len(), 3, "chunk {chunk}");
        assert!(h.pages.iter().all(|p| p == G3TEST), "chunk {chunk}: every page is the file byte for byte");
        let mores: Vec<_> = h.ends.iter().map(|e| (e.page, e.more, e.lines)).collect();
        assert_eq!(
            mores,
            [
                (1, PostPage::MorePages, Some(1103)),
                (2, PostPage::MorePages, Some(1103)),
                (3, PostPage::EndOfProcedure, Some(1103))
            ]
        );
        let (pages, hangup, complete) = &h.calls[0];
        assert_eq!((*pages, hangup.code, hangup.class, *complete), (3, Some(0), ModemClass::Class2, true));
        assert_eq!(h.modem.status().state, ModemState::Idle);
    }
}

#[test]
fn dle_escapes_split_across_chunk_boundaries() {
    // Data with every kind of pair, the DLEs placed so that small chunks cut between DLE and
    // its partner.
    let wire_data = [0, 1, DLE, DLE, 2, DLE, SUB, 3, DLE, b'x', 4, DLE, DLE, DLE, DLE, 5];
    let expected = [0, 1, DLE, 2, DLE, DLE, 3, 4, DLE, DLE, 5];
    for chunk in 1..=17 {
        let mut h = ready(config(), &init_20(), 64);
        let mut page = wire_data.to_vec();
        page.extend([DLE, ETX]);
        page.extend(lines(&["+FPS:1,2,0,0,0", "+FET:2", "OK"]));
        h.play(
            &[
                turn(lines(&["RING"]), b"ATA\r"),
                turn(lines(&["+FCO", "+FCS:0,5,0,2,0,0,0,0", "OK"]), b"AT+FLO=2\r"),
                turn(ok(), b"AT+FDR\r"),
                turn(lines(&["CONNECT"]), &[DC2]),
                turn(page, b"AT+FDR\r"),
            ],
            chunk,
        );
        assert_eq!(h.pages, [expected.to_vec()], "chunk {chunk}");
        assert_eq!(h.ends[0].unknown_escapes, 1, "DLE x dropped and counted");
        // The end of CONNECT's line before the data is not page data.
        assert!(!h.has_event(|e| matches!(e, Event::UnexpectedLine { .. })));
    }
}

/// A Class 2.0 modem in a call, first page received (MPS), second page begun with `half` of
/// the data.
fn mid_second_page(chunk: usize) -> Harness {
    let mut h = ready(config(), &init_20(), chunk);
    let half = Unstuffer::stuff(G3TEST);
    h.play(
        &[
            turn(lines(&["RING"]), b"ATA\r"),
            turn(lines(&["+FCO", "+FTI:\"+1 555 0100\"", "+FCS:0,5,0,2,0,0,0,0", "OK"]), b"AT+FLO=2\r"),
            turn(ok(), b"AT+FDR\r"),
            turn(lines(&["CONNECT"]), &[DC2]),
            turn(page_20(G3TEST, 1103, 0), b"AT+FDR\r"),
            turn(lines(&["CONNECT"]), &[DC2]),
            turn(half[..half.len() / 2].to_vec(), b""),
        ],
        chunk,
    );
    assert_eq!(h.modem.status().state, ModemState::ReceivingPage { page: 2 });
    h
}

#[test]
fn no_carrier_in_the_middle_of_a_page() {
    for chunk in CHUNKS {
        let mut h = mid_second_page(chunk);
        // No DLE ETX, no +FHS: the modem writes NO CARRIER into the data stream.
        let wrote = h.feed(b"\r\nNO CARRIER\r\n", chunk);
        assert_eq!(wrote, b"ATZ\r", "set up again");
        assert_eq!(h.ends.len(), 1, "the first page stays reported");
        assert_eq!(h.aborted.len(), 1);
        assert_eq!(h.aborted[0].0, 2);
        let (pages, hangup, complete) = &h.calls[0];
        assert_eq!((*pages, hangup.code, *complete), (1, None, false));
        assert!(hangup.reason.contains("NO CARRIER"), "{hangup}");
        assert!(h.modem.status().last_error.is_some_and(|e| e.contains("NO CARRIER")));
        assert_eq!(h.flow.last(), Some(&FlowControl::Off));
        assert!(h.resets.is_empty());
    }
}

#[test]
fn carrier_lost_in_the_middle_of_a_page() {
    let mut h = mid_second_page(64);
    h.modem.carrier_lost(h.now);
    assert_eq!(h.drain(), b"ATZ\r");
    assert_eq!((h.ends.len(), h.aborted.len()), (1, 1));
    let (pages, hangup, complete) = &h.calls[0];
    assert_eq!((*pages, hangup.code, *complete), (1, None, false));
    assert!(hangup.reason.contains("DCD"));
}

#[test]
fn hangup_code_after_the_page_data() {
    let mut h = mid_second_page(64);
    // The rest of the page arrives, then the remote gives up in phase D.
    let stuffed = Unstuffer::stuff(G3TEST);
    let mut rest = stuffed[stuffed.len() / 2..].to_vec();
    rest.extend(lines(&["+FPS:1,44F,0,0,0", "+FHS:A1", "OK"]));
    assert_eq!(h.feed(&rest, 7), b"ATZ\r");
    assert_eq!(h.ends.len(), 2, "the second page's data was complete");
    assert_eq!(h.ends[1].more, PostPage::Unreported);
    assert!(h.pages[1] == G3TEST);
    let (pages, hangup, complete) = &h.calls[0];
    assert_eq!((*pages, hangup.code, *complete), (2, Some(0xA1), false));
    assert_eq!(hangup.reason, "RSPREC invalid response received");
    assert_eq!(hangup.to_string(), "+FHS:A1: RSPREC invalid response received (receive phase D)");
}

#[test]
fn a_silent_modem_is_reset() {
    // Silent from the start.
    let mut h = Harness::new(config());
    assert_eq!(h.start(), b"ATZ\r");
    h.at(4.9);
    assert!(h.tick().is_empty());
    h.at(5.0);
    h.tick();
    assert_eq!(h.resets, [ResetReason::NoReply { command: "ATZ".into(), secs: 5 }]);
    assert_eq!(h.modem.status().state, ModemState::Resetting);
    assert_eq!(h.modem.next_deadline(), None);
    // Bytes while resetting are counted, not read.
    h.feed(b"\r\nRING\r\n", 64);
    assert!(h.has_event(|e| *e == Event::Stray { bytes: 8 }));
    assert_eq!(h.start(), b"ATZ\r", "the adapter reopened the port");

    // Health checks while idle: a good one, then silence.
    let mut h = ready(config(), &init_20(), 64);
    assert_eq!(h.modem.next_deadline(), Some(h.t0 + Duration::from_secs(60)));
    h.at(60.0);
    assert_eq!(h.tick(), b"AT\r");
    assert_eq!(h.feed(&ok(), 64), b"");
    assert_eq!(h.health, [true]);
    h.at(120.0);
    assert_eq!(h.tick(), b"AT\r");
    h.at(125.0);
    h.tick();
    assert_eq!(h.health, [true, false]);
    assert_eq!(h.resets, [ResetReason::HealthCheck { secs: 5 }]);

    // Silent in the middle of a page: 60 s without data.
    let mut h = mid_second_page(1500);
    h.at(59.0);
    h.tick();
    assert!(h.calls.is_empty());
    h.at(60.0);
    h.tick();
    assert_eq!(h.aborted.len(), 1);
    let (pages, hangup, complete) = &h.calls[0];
    assert_eq!((*pages, *complete), (1, false));
    assert!(hangup.reason.contains("no page data"));
    assert_eq!(h.resets, [ResetReason::Stuck { waiting_for: "no page data" }]);
    assert_eq!(h.modem.status().state, ModemState::Resetting);

    // Silent after ATA.
    let mut h = ready(config(), &init_20(), 64);
    assert_eq!(h.feed(&lines(&["RING"]), 64), b"ATA\r");
    h.at(75.0);
    h.tick();
    assert_eq!(h.calls[0].0, 0);
    assert!(matches!(h.resets[..], [ResetReason::Stuck { .. }]));
}

/// Regression: the phone rings while a health check is under way; the modem reports `RING`
/// before its `OK` to the `AT`. That `OK` is not the end of the sender's handshake: we answer
/// after it, not before (writing `AT+FLO` while the modem answers would hang it up).
#[test]
fn a_ring_during_a_health_check_is_answered_after_its_ok() {
    for chunk in [1, 64] {
        let mut h = ready(config(), &init_20(), chunk);
        h.at(60.0);
        assert_eq!(h.tick(), b"AT\r");
        h.play(
            &[
                turn(lines(&["RING"]), b""),
                turn(ok(), b"ATA\r"),
                turn(lines(&["+FCO", "+FTI:\"+1 555 0100\"", "+FCS:0,5,0,2,0,0,0,0", "OK"]), b"AT+FLO=2\r"),
                turn(ok(), b"AT+FDR\r"),
            ],
            chunk,
        );
        assert_eq!(h.health, [true]);
        assert!(h.has_event(|e| *e == Event::Ring { count: 1 }));
    }

    // Two rings wanted: the one during the check counts; caller id is kept.
    let mut h = ready(Config { rings: 2, ..config() }, &init_20(), 64);
    h.at(60.0);
    assert_eq!(h.tick(), b"AT\r");
    assert_eq!(h.feed(&lines(&["RING", "NMBR = 0445550199", "OK"]), 64), b"");
    assert_eq!(h.modem.status().state, ModemState::Ringing { rings: 1 });
    h.at(66.0);
    assert_eq!(h.feed(&lines(&["RING"]), 64), b"ATA\r");
    h.feed(&lines(&["NO CARRIER"]), 64);
    assert_eq!(h.remotes[0].1.number.as_deref(), Some("0445550199"));

    // The OK never comes after the ring: the modem is alive, the call goes on.
    let mut h = ready(config(), &init_20(), 64);
    h.at(60.0);
    h.tick();
    h.feed(&lines(&["RING"]), 64);
    h.at(65.0);
    assert_eq!(h.tick(), b"ATA\r");
    assert!(h.resets.is_empty());
}

#[test]
fn ok_where_connect_was_expected() {
    for chunk in [1, 64] {
        let mut h = ready(config(), &init_20(), chunk);
        h.play(
            &[
                turn(lines(&["RING"]), b"ATA\r"),
                turn(lines(&["+FCO", "+FCS:0,5,0,2,0,0,0,0", "OK"]), b"AT+FLO=2\r"),
                turn(ok(), b"AT+FDR\r"),
                turn(lines(&["CONNECT"]), &[DC2]),
                turn(page_20(G3TEST, 1103, 1), b"AT+FDR\r"),
                // Between documents (after EOM) this modem says OK, then sends the page.
                turn(ok(), &[DC2]),
                turn(page_20(G3TEST, 1103, 2), b"AT+FDR\r"),
                turn(lines(&["+FHS:00", "OK"]), b"ATZ\r"),
            ],
            chunk,
        );
        assert!(h.has_event(|e| *e == Event::OkForConnect));
        assert_eq!(h.pages.len(), 2);
        assert!(h.pages.iter().all(|p| p == G3TEST));
        let mores: Vec<_> = h.ends.iter().map(|e| e.more).collect();
        assert_eq!(mores, [PostPage::EndOfDocument, PostPage::EndOfProcedure]);
        assert!(h.calls[0].2, "complete");
    }
}

#[test]
fn error_on_init_commands() {
    // An optional command refused: reported, set-up goes on.
    let mut init = init_20();
    init[9] = turn(lines(&["ERROR"]), b"AT+FNR=1,1,1,0\r");
    let h = ready(config(), &init, 64);
    assert!(h.has_event(|e| *e == Event::CommandRefused { command: "AT+FCT=30".into() }));
    assert!(h.has_event(|e| *e == Event::Initialised { class: ModemClass::Class20, refused: 1 }));
    assert_eq!(h.modem.status().last_error.as_deref(), Some("the modem refused AT+FCT=30"));

    // A required one: a reset naming it.
    let mut h = Harness::new(config());
    h.start();
    let init = init_20();
    h.play(&init[..6], 64);
    h.feed(&lines(&["ERROR"]), 64);
    assert_eq!(h.resets, [ResetReason::Refused { command: "AT+FCR=1".into() }]);

    // No fax class offered.
    let mut h = Harness::new(config());
    h.start();
    h.play(&init[..3], 64);
    h.feed(&lines(&["0,1,8", "OK"]), 64);
    assert_eq!(h.resets, [ResetReason::NoFaxClass { offered: "0,1,8".into() }]);

    // A forced class, though the modem does not list it.
    let mut h = Harness::new(Config { class: ClassChoice::Force(ModemClass::Class2), ..config() });
    h.start();
    h.play(&init[..3], 64);
    assert_eq!(h.feed(&lines(&["0,1,2.0", "OK"]), 64), b"AT+FCLASS=2\r");
    assert!(h.has_event(|e| matches!(e, Event::ClassChosen { class: ModemClass::Class2, forced: true, .. })));
}

#[test]
fn caller_id_before_answering() {
    let mut h = ready(Config { rings: 2, ..config() }, &init_20(), 64);
    assert_eq!(h.feed(&lines(&["RING"]), 3), b"");
    assert_eq!(h.modem.status().state, ModemState::Ringing { rings: 1 });
    h.at(1.0);
    assert_eq!(h.feed(&lines(&["DATE = 0321", "TIME = 1405", "NMBR = 0445550199", "NAME = CITY LAB"]), 3), b"");
    h.at(6.0);
    assert_eq!(h.feed(&lines(&["RING"]), 3), b"ATA\r");
    h.feed(&lines(&["NO CARRIER"]), 3);
    let caller = CallerId {
        number: Some("0445550199".into()),
        name: Some("CITY LAB".into()),
        date: Some("0321".into()),
        time: Some("1405".into()),
    };
    assert_eq!(h.remotes, [(None, caller.clone())]);
    assert!(!format!("{:?}", h.remotes[0].1).contains("0445550199"), "Debug shows no caller id");
    let (pages, hangup, complete) = &h.calls[0];
    assert_eq!((*pages, hangup.code, *complete), (0, None, false));

    // Rings that stop before we answer forget the caller id.
    let mut h = ready(Config { rings: 3, ..config() }, &init_20(), 64);
    h.feed(&lines(&["RING", "NMBR = 0445550199"]), 64);
    h.at(10.0);
    h.tick();
    assert!(h.has_event(|e| *e == Event::RingsStopped { rings: 1 }));
    assert_eq!(h.modem.status().state, ModemState::Idle);
    h.at(20.0);
    h.feed(&lines(&["RING", "RING", "RING", "NO CARRIER"]), 64);
    assert_eq!(h.remotes, [(None, CallerId::default())]);
}

/// A small deterministic generator (no dependency on a crate's API for a test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn garbage_never_panics() {
    let vocabulary: Vec<Vec<u8>> = [
        "OK",
        "ERROR",
        "RING",
        "CONNECT",
        "NO CARRIER",
        "+FCO",
        "+FCON",
        "+FTI:",
        "+FCS:",
        "+FCS:9,ZZ,1",
        "+FDCS:1,3,0,2,0,0,0,0",
        "+FPS:",
        "+FPS:1,FFFFFFFFFF,0",
        "+FPTS:7",
        "+FET:",
        "+FET:99",
        "+FHS:",
        "+FHS:GG",
        "+FHNG:99999",
        "NMBR =",
        "NAME = x",
        "0,1,2,2.0",
        "+FCFR",
        "AT",
        ":",
        "=",
    ]
    .iter()
    .map(|l| format!("\r\n{l}\r\n").into_bytes())
    .chain([vec![DLE], vec![DLE, ETX], vec![DLE, SUB], vec![0; 300], vec![b'x'; 600]])
    .collect();
    let mut rng = Lcg(0x5EED);
    for round in 0..300 {
        let class = match round % 3 {
            0 => ClassChoice::Auto,
            1 => ClassChoice::Force(ModemClass::Class2),
            _ => ClassChoice::Force(ModemClass::Class20),
        };
        let mut h = Harness::new(Config { class, rings: (round % 3) as u8, ..config() });
        h.start();
        let mut secs = 0.0;
        for _ in 0..200 {
            match rng.next() % 10 {
                0 => {
                    secs += (rng.next() % 90) as f64;
                    h.at(secs);
                    h.tick();
                }
                1 => {
                    let n = (rng.next() % 40) as usize;
                    let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    h.feed(&bytes, (rng.next() % 5 + 1) as usize);
                }
                2 if rng.next().is_multiple_of(20) => {
                    h.start();
                }
                3 if rng.next().is_multiple_of(30) => h.modem.carrier_lost(h.now),
                _ => {
                    let word = &vocabulary[(rng.next() as usize) % vocabulary.len()];
                    h.feed(word, (rng.next() % 7 + 1) as usize);
                }
            }
            let _ = h.modem.status();
            if let Some(d) = h.modem.next_deadline() {
                assert!(d >= h.t0);
            }
        }
        // Every call that started ended or is still going; nothing panicked.
        assert!(h.calls.len() <= h.started);
    }
}
