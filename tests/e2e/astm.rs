//! ASTM lab links against the real binary: an instrument simulator (`astm_sim.rs`) on real
//! pseudo-terminals and TCP connections, playing published captures (`tests/data/astm/`) and
//! scripted faults; items read back through the control socket, the CLI and a file destination.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::astm_sim::*;
use crate::support::*;

const YUMIZEN: &[u8] = include_bytes!("../data/astm/yumizen-h500-session.raw");
const VITROS_QUERY: &[u8] = include_bytes!("../data/astm/vitros-3600-host-query.raw");
const ERBA: &[u8] = include_bytes!("../data/astm/erba-xl1000-single-frame.raw");
const PENTRA: &[u8] = include_bytes!("../data/astm/pentra-xlr-frames.txt");
const COBAS: &[u8] = include_bytes!("../data/astm/cobas-c111-etb-frames.txt");
const GENEXPERT: &[u8] = include_bytes!("../data/astm/genexpert.txt");
const MINI_VIDAS: &[u8] = include_bytes!("../data/astm/mini-vidas-not-astm.txt");

/// TCP reads cut anywhere: the simulator writes in pieces of these sizes.
const ODD_CHUNKS: &[usize] = &[1, 2, 3, 5, 7, 11, 13, 64, 240, 17];

/// One lab source per `(name, link)` (its transport and extra keys), all routed to a file
/// destination `archive` in `{dir}/archive`.
fn lab_config(sources: &[(&str, String)], top: &str) -> String {
    let mut text = top.to_string();
    for (name, body) in sources {
        text.push_str(&format!("\n[[source]]\nname = \"{name}\"\nkind = \"astm\"\n{body}\n"));
    }
    let names: Vec<String> = sources.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    text.push_str(&format!(
        "\n[[destination]]\nname = \"archive\"\nkind = \"file\"\ndir = \"{{dir}}/archive\"\n\n[[route]]\nname = \"lab\"\nfrom = [{}]\nto = [\"archive\"]\n",
        names.join(", ")
    ));
    text
}

fn serial(link: &Path, extra: &str) -> String {
    format!("serial = {{ port = \"{}\", baud = 115200 }}\n{extra}", link.display())
}

/// A daemon with one serial source `lab` on a new pty (`extra` added to the source), and the
/// instrument on the pty's master.
fn serial_lab(extra: &str) -> (Daemon, Instrument, PathBuf) {
    serial_lab_under("", extra)
}

/// [`serial_lab`] with `top` (e.g. a `[journal]` section) before the source.
fn serial_lab_under(top: &str, extra: &str) -> (Daemon, Instrument, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("analyzer");
    if under_emulation() {
        // No serial ports under qemu-user (see `under_emulation`): the same link over TCP, so
        // the ARM build's link layer is still tested end to end.
        let tcp = format!("tcp_listen = \"127.0.0.1:0\"\n{extra}");
        let daemon = Daemon::start_in(dir, &lab_config(&[("lab", tcp)], top));
        let st = source(&daemon, "lab");
        let addr: SocketAddr = st["at"].as_str().expect("the bound address in status").parse().unwrap();
        return (daemon, Instrument::new(Line::tcp(TcpStream::connect(addr).unwrap())), link);
    }
    let (line, _) = pty_at(&link);
    let daemon = Daemon::start_in(dir, &lab_config(&[("lab", serial(&link, extra))], top));
    (daemon, Instrument::new(line), link)
}

fn source(daemon: &Daemon, name: &str) -> Value {
    let s = daemon.status();
    s["sources"].as_array().unwrap().iter().find(|x| x["name"] == name).cloned().expect("source in status")
}

/// The journal's items, newest first, through the control socket (no CLI process: quick).
fn items_now(daemon: &Daemon) -> Vec<Value> {
    let req = outpost::control::protocol::Request::QueueLs { state: Some("all".into()), destination: None, limit: 0 };
    let v = outpost::control::client::request(&daemon.socket(), &req).expect("queue ls");
    v.as_array().cloned().unwrap_or_default()
}

fn astm_items(daemon: &Daemon, source: &str) -> Vec<Value> {
    items_now(daemon).into_iter().filter(|i| i["source"] == source && i["kind"] == "astm").collect()
}

/// Waits for `n` items from `source` and returns them, oldest first.
fn wait_items(daemon: &Daemon, source: &str, n: usize) -> Vec<Value> {
    let mut items = wait_for(&format!("{n} item(s) from {source}"), DEADLINE, || {
        let items = astm_items(daemon, source);
        (items.len() >= n).then_some(items)
    });
    items.reverse();
    items
}

fn id(item: &Value) -> String {
    item["id"].as_str().unwrap().to_string()
}

/// Waits until `source`'s status satisfies `cond`; returns it.
fn wait_source(daemon: &Daemon, name: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, DEADLINE, || {
        let s = source(daemon, name);
        cond(&s).then_some(s)
    })
}

fn delivered_file(daemon: &Daemon, item: &Value) -> Vec<u8> {
    let path = daemon.path("archive").join(format!("{}.astm", id(item)));
    wait_for(&format!("{} written", path.display()), DEADLINE, || std::fs::read(&path).ok())
}

/// Bytes compared, shown as text when they differ.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}: {} bytes, {} expected\n got: {:?}\nwant: {:?}",
        got.len(),
        want.len(),
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want)
    );
}

fn records(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body).split_inclusive('\r').map(str::to_string).collect()
}

/// A small results message built by hand: H, P, O, `results` R records, L.
fn results_message(sample: &str, results: usize) -> Vec<u8> {
    let mut m = format!("H|\\^&|||SIM^e2e^1.0|||||||P|LIS2-A2|20260101120000\rP|1\rO|1|{sample}||^^^CBC|R\r");
    for i in 1..=results {
        m.push_str(&format!("R|{i}|^^^T{i}|{}.5|g/L||N||F\r", i * 3));
    }
    m.push_str("L|1|N\r");
    m.into_bytes()
}

/// The simulator's hand-built frames against a published capture: its framing is the
/// instrument's, its checksum check fails a corrupted frame.
#[test]
fn astm_simulator_frames_as_the_vitros_did() {
    let frames = frames_of(VITROS_QUERY);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames_for(&records_of(&frames)), frames);
    assert!(frames.iter().all(|f| parse_frame(f).is_ok()));
    let mut bad = frames[0].clone();
    let at = bad.len() - 3;
    bad[at] ^= 1;
    assert!(parse_frame(&bad).unwrap_err().contains("checksum"));
}

#[test]
fn astm_yumizen_session_over_a_pty_is_one_item_acked_after_commit_and_filed_byte_exact() {
    if serial_ports_unavailable("astm_yumizen_session_over_a_pty_is_one_item_acked_after_commit_and_filed_byte_exact") {
        return;
    }
    let (daemon, mut sim, link) = serial_lab("");
    let frames = frames_of(YUMIZEN);
    assert_eq!(frames.len(), 125);
    let mut sent = Sent::default();
    sim.establish(&mut sent).unwrap();
    let (last, rest) = frames.split_last().unwrap();
    for f in rest {
        sim.send_frame(f, &mut sent).unwrap();
    }
    assert!(astm_items(&daemon, "lab").is_empty(), "nothing is stored before the message's last frame");
    // The last frame's ACK comes only once the item is committed: by the time it is read, the
    // journal lists it.
    assert_eq!(sim.send(last), Reply::Ack);
    let stored = astm_items(&daemon, "lab");
    assert_eq!(stored.len(), 1, "the item is in the journal when its ACK arrives");
    sim.line.write(&[EOT]);
    assert_eq!(sent.naks, 0);

    let item = &stored[0];
    let expected = records_of(&frames);
    let body = daemon.body(&id(item));
    assert_same(&body, &expected, "the records exactly, frames removed");
    let recs = records(&body);
    assert_eq!(recs.len(), 36);
    assert!(recs.iter().all(|r| r.ends_with('\r')), "each record ends CR");
    assert!(recs[0].starts_with("H|\\^&|||H500^906YOXH02459") && recs[35] == "L|1|N\r");

    let shown = daemon.show(&id(item), false);
    assert_eq!((shown["kind"].as_str(), shown["type"].as_str()), (Some("astm"), Some("results")));
    let summary = &shown["summary"];
    assert_eq!(summary["instrument"], "H500^906YOXH02459^2.2.0.5");
    assert_eq!(summary["sample_ids"], "2021679");
    assert_eq!(summary["results"], "27");
    assert_eq!(summary["records"], "36");
    assert_eq!(summary["complete"], "true");
    assert!(summary["tests"].as_str().unwrap().starts_with("PCT,NEU#,MCV,"), "{summary}");
    assert_eq!(summary["tests"].as_str().unwrap().split(',').count(), 27);

    assert_same(&delivered_file(&daemon, item), &expected, "delivered as a .astm file, byte for byte");
    let st = source(&daemon, "lab");
    assert_eq!((st["kind"].as_str(), st["state"].as_str()), (Some("astm"), Some("up")));
    assert_eq!((st["transport"].as_str(), st["line"].as_str()), (Some("serial"), Some("115200 8N1")));
    assert_eq!(st["address"].as_str(), link.to_str());
    assert_eq!((st["received"].as_u64(), st["connections"].as_u64()), (Some(1), Some(1)));
    assert_eq!((st["rejected_frames"].as_u64(), st["discarded_messages"].as_u64()), (Some(0), Some(0)));
    assert!(st["last_message_at"].as_i64().is_some(), "{st}");
    assert_eq!(astm_items(&daemon, "lab").len(), 1, "EOT added nothing");
}

/// Each published capture on a pty of its own, each source with the quirks its instrument
/// needs; one item per capture with the capture's records and summary.
#[test]
fn astm_every_published_sample_is_stored_with_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, Vec<Vec<u8>>); 4] = [
        // The file's frames end LF alone, as the instrument's were stored: the lf_only quirk.
        ("pentra", "quirks = [\"lf_only\"]", frames_as_stored(PENTRA)),
        ("cobas", "", frames_from_lines(COBAS)),
        ("erba", "", frames_of(ERBA)),
        ("genexpert", "quirks = [\"long_frames\"]", frames_from_lines(GENEXPERT)),
    ];
    let mut lines = Vec::new();
    let mut sources = Vec::new();
    let emulated = under_emulation();
    for (name, extra, _) in &cases {
        if emulated {
            // No serial ports under qemu-user (see `under_emulation`): each over TCP.
            sources.push((*name, format!("tcp_listen = \"127.0.0.1:0\"\n{extra}")));
            continue;
        }
        let link = dir.path().join(name);
        lines.push(pty_at(&link).0);
        sources.push((*name, serial(&link, extra)));
    }
    let daemon = Daemon::start_in(dir, &lab_config(&sources, ""));
    if emulated {
        for (name, _, _) in &cases {
            let addr: SocketAddr = source(&daemon, name)["at"].as_str().expect("bound address").parse().unwrap();
            lines.push(Line::tcp(TcpStream::connect(addr).unwrap()));
        }
    }
    for ((name, _, frames), line) in cases.iter().zip(lines) {
        let mut sim = Instrument::new(line);
        sim.session(frames);
        let item = &wait_items(&daemon, name, 1)[0];
        let body = daemon.body(&id(item));
        let expected = records_of(frames);
        assert_same(&body, &expected, name);
        assert_same(&delivered_file(&daemon, item), &expected, name);
        let s = &item["summary"];
        let got = (s["sample_ids"].as_str().unwrap(), s["tests"].as_str().unwrap(), s["results"].as_str().unwrap());
        match *name {
            "pentra" => {
                assert_eq!((got.0, got.2), ("S1234", "21"));
                assert!(got.1.starts_with("WBC,"), "{s}");
                let text = item.to_string();
                assert!(!text.contains("Mohale") && !text.contains("19771201"), "no patient data: {text}");
            }
            "cobas" => {
                assert_eq!(got, ("T20 10134GA D28", "413", "1"));
                assert_eq!(s["instrument"], "SENAITE^Roche^c111^4.2.2.1730^1^13147");
            }
            "erba" => assert_eq!(got, ("1044041", "DBILL", "1")),
            "genexpert" => {
                assert_eq!((got.0, got.2), ("PR25A137", "84"));
                assert_eq!(s["records"], "91");
            }
            _ => unreachable!(),
        }
        assert_eq!(item["type"], "results", "{name}");
        let st = source(&daemon, name);
        assert_eq!((st["received"].as_u64(), st["rejected_frames"].as_u64()), (Some(1), Some(0)), "{name}: {st}");
    }
}

#[test]
fn astm_vitros_host_query_is_stored_and_answered_with_the_hosts_own_session() {
    let (daemon, mut sim, _) = serial_lab("");
    sim.play(VITROS_QUERY);
    // The host bids for the line once the instrument's session is over, and sends H … L|1|I:
    // it knows no orders yet.
    let reply = sim.receive_session(DEADLINE).expect("the host's reply session");
    let recs = records(&reply.records);
    assert!(recs.len() >= 2, "{recs:?}");
    assert!(recs[0].starts_with("H|\\^&|"), "{recs:?}");
    assert_eq!(
        record_field(&reply.records, "H", 10).as_deref(),
        Some("3600796"),
        "addressed to the instrument: {recs:?}"
    );
    assert_eq!(recs.last().unwrap(), "L|1|I\r", "no information: {recs:?}");
    assert!(reply.frames.iter().all(|f| f.last), "one record per E1381 message");
    let item = &wait_items(&daemon, "lab", 1)[0];
    assert_eq!(item["type"], "query");
    assert_same(&daemon.body(&id(item)), &records_of(&frames_of(VITROS_QUERY)), "the query");
    // The line is the instrument's again: its next session goes through.
    sim.play(ERBA);
    wait_items(&daemon, "lab", 2);
}

#[test]
fn astm_tcp_listen_takes_sessions_in_odd_chunks_and_a_resend_after_a_lost_ack_once() {
    let daemon = Daemon::start(&lab_config(&[("lab", "tcp_listen = \"127.0.0.1:0\"".into())], ""));
    let st = source(&daemon, "lab");
    assert_eq!(st["transport"], "tcp_listen");
    let addr: SocketAddr = st["at"].as_str().expect("the bound address in status").parse().unwrap();
    let mut sim = Instrument::new(Line::tcp(TcpStream::connect(addr).unwrap()).chunked(ODD_CHUNKS));
    sim.play(YUMIZEN);
    let item = &wait_items(&daemon, "lab", 1)[0];
    assert_same(&daemon.body(&id(item)), &records_of(&frames_of(YUMIZEN)), "over TCP");
    assert_eq!(source(&daemon, "lab")["connections"], 1);
    // A tech's `outpost status` says when the last message came and what the link refused.
    let text = stdout_of(&outpost(&["status", "--socket", daemon.socket().to_str().unwrap()]));
    assert!(text.contains("lab last message") && text.contains("0 frame(s) refused"), "{text}");

    // The host's writes over TCP: a query answered in the host's own session.
    sim.play(VITROS_QUERY);
    let reply = sim.receive_session(DEADLINE).expect("the host's reply over TCP");
    assert_eq!(records(&reply.records).last().unwrap(), "L|1|I\r");

    // The instrument loses the connection before the last frame's ACK, connects again and sends
    // the whole message again: one item.
    let frames = frames_of(ERBA);
    assert_eq!(sim.send(&[ENQ]), Reply::Ack);
    sim.line.write(&frames[0]);
    sim.line.close();
    let mut sim = Instrument::new(Line::tcp(TcpStream::connect(addr).unwrap()).chunked(ODD_CHUNKS));
    sim.session(&frames);
    // Its last ACK read, the message is in the journal (stored then, or recognised as stored).
    let items = astm_items(&daemon, "lab");
    assert_eq!(items.len(), 3, "{items:?}");
    let erba: Vec<&Value> = items.iter().filter(|i| i["summary"]["sample_ids"] == "1044041").collect();
    assert_eq!(erba.len(), 1, "stored once: {items:?}");
    wait_source(&daemon, "lab", "one connection again", |s| s["connections"] == 1);
}

#[test]
fn astm_tcp_connect_reaches_the_instrument_and_again_after_it_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let daemon = Daemon::start(&lab_config(&[("lab", format!("tcp_connect = \"{addr}\""))], ""));
    let accept = || {
        wait_for("the daemon to connect", DEADLINE, || {
            let (stream, _) = listener.accept().ok()?;
            stream.set_nonblocking(false).unwrap();
            Some(Instrument::new(Line::tcp(stream).chunked(ODD_CHUNKS)))
        })
    };
    let mut sim = accept();
    let st = source(&daemon, "lab");
    assert_eq!((st["transport"].as_str(), st["at"].as_str()), (Some("tcp_connect"), Some(addr.to_string().as_str())));
    let cobas = frames_from_lines(COBAS);
    sim.session(&cobas);
    let item = &wait_items(&daemon, "lab", 1)[0];
    assert_same(&daemon.body(&id(item)), &records_of(&cobas), "cobas over TCP");

    // The instrument closes its end; the daemon connects again and takes the next session.
    sim.line.close();
    let mut sim = accept();
    sim.play(ERBA);
    let items = wait_items(&daemon, "lab", 2);
    assert_same(&daemon.body(&id(&items[1])), &records_of(&frames_of(ERBA)), "erba after reconnecting");
    assert_eq!(source(&daemon, "lab")["state"], "up");
}

/// Hand-built frames (`frames_for`), one checksum wrong: NAKed, the good one ACKed, the message
/// stored once.
#[test]
fn astm_bad_checksum_is_naked_and_the_good_retransmission_stored_once() {
    let (daemon, mut sim, _) = serial_lab("");
    let message = results_message("CHK-1", 3);
    let frames = frames_for(&message);
    let mut sent = Sent::default();
    sim.establish(&mut sent).unwrap();
    sim.send_frame(&frames[0], &mut sent).unwrap();
    let mut bad = frames[1].clone();
    let at = bad.len() - 3;
    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
    assert_eq!(sim.send(&bad), Reply::Nak, "a wrong checksum is refused");
    for f in &frames[1..] {
        sim.send_frame(f, &mut sent).unwrap();
    }
    sim.line.write(&[EOT]);
    assert_eq!(sent.naks, 0, "only the corrupted frame was refused");
    let items = astm_items(&daemon, "lab");
    assert_eq!(items.len(), 1, "stored once by the time the last ACK came: {items:?}");
    assert_same(&daemon.body(&id(&items[0])), &message, "the good frames' records");
    assert_eq!(items[0]["summary"]["results"], "3");
    let st = source(&daemon, "lab");
    assert_eq!((st["rejected_frames"].as_u64(), st["received"].as_u64()), (Some(1), Some(1)), "{st}");
}

#[test]
fn astm_frame_number_jump_is_naked_and_a_repeated_frame_kept_once() {
    let (daemon, mut sim, _) = serial_lab("");
    let message = results_message("JUMP-1", 2);
    let frames = frames_for(&message);
    let mut sent = Sent::default();
    sim.establish(&mut sent).unwrap();
    sim.send_frame(&frames[0], &mut sent).unwrap();
    // Frame 2's text numbered 3: a frame lost in between.
    let text = &frames[1][2..frames[1].len() - 5];
    assert_eq!(sim.send(&frame(3, text, true)), Reply::Nak, "frame number 3 where 2 is due");
    sim.send_frame(&frames[1], &mut sent).unwrap();
    // Frame 2 again (as if our ACK was lost): acknowledged, not kept twice.
    assert_eq!(sim.send(&frames[1]), Reply::Ack, "a repeat of the last frame");
    for f in &frames[2..] {
        sim.send_frame(f, &mut sent).unwrap();
    }
    sim.line.write(&[EOT]);
    let items = astm_items(&daemon, "lab");
    assert_eq!(items.len(), 1);
    assert_same(&daemon.body(&id(&items[0])), &message, "each record once");
    assert_eq!(source(&daemon, "lab")["rejected_frames"], 1);
}

#[test]
fn astm_frame_over_240_characters_is_naked_and_the_record_cut_right_is_stored() {
    let (daemon, mut sim, _) = serial_lab("");
    let long = format!("R|1|^^^HIST|{}|||N||F\r", "A".repeat(300));
    let message = format!("H|\\^&|||SIM^e2e|||||||P|LIS2-A2|20260101120000\rO|1|LONG-1||^^^HIST\r{long}L|1|N\r");
    let frames = frames_for(message.as_bytes());
    assert_eq!(frames.len(), 5, "the long record in two frames");
    let mut sent = Sent::default();
    sim.establish(&mut sent).unwrap();
    sim.send_frame(&frames[0], &mut sent).unwrap();
    sim.send_frame(&frames[1], &mut sent).unwrap();
    let whole = frame(3, long.as_bytes(), true);
    assert!(whole.len() > 240 + 7);
    assert_eq!(sim.send(&whole), Reply::Nak, "{} characters in one frame", long.len());
    for f in &frames[2..] {
        sim.send_frame(f, &mut sent).unwrap();
    }
    sim.line.write(&[EOT]);
    let items = wait_items(&daemon, "lab", 1);
    assert_same(&daemon.body(&id(&items[0])), message.as_bytes(), "the record joined again");
    assert_eq!(source(&daemon, "lab")["rejected_frames"], 1);
}

/// The journal cannot take the message (over its size cap): the frame that ends it is NAKed
/// each time it is sent, so the instrument keeps its data; nothing is stored, and the link still
/// takes what fits.
#[test]
fn astm_journal_full_the_last_frame_is_naked_and_the_instrument_keeps_its_data() {
    let (daemon, mut sim, _) = serial_lab_under("[journal]\nmax_bytes = \"4KiB\"\n", "");
    let frames = frames_of(YUMIZEN);
    let (last, rest) = frames.split_last().unwrap();
    let mut sent = Sent::default();
    sim.establish(&mut sent).unwrap();
    for f in rest {
        sim.send_frame(f, &mut sent).unwrap();
    }
    for attempt in 1..=6 {
        assert_eq!(sim.send(last), Reply::Nak, "attempt {attempt}: not stored, not acknowledged");
    }
    sim.line.write(&[EOT]);
    assert!(items_now(&daemon).is_empty());
    let st = source(&daemon, "lab");
    assert!(st["refused"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["received"], 0);
    sim.play(ERBA);
    let items = wait_items(&daemon, "lab", 1);
    assert_eq!(items[0]["summary"]["sample_ids"], "1044041");
}

#[test]
fn astm_receiver_timeout_discards_the_unfinished_message_and_the_next_session_is_stored() {
    let (daemon, mut sim, _) = serial_lab("timers = { receive = \"2s\" }");
    let message = results_message("TMO-1", 2);
    let frames = frames_for(&message);
    let mut sent = Sent::default();
    sim.establish(&mut sent).unwrap();
    for f in &frames[..3] {
        sim.send_frame(f, &mut sent).unwrap();
    }
    // The instrument stops (H, P, O sent; no L): the host gives up after 2 s.
    let st = wait_source(&daemon, "lab", "a discarded message", |s| s["discarded_messages"] == 1);
    assert_eq!(st["received"], 0);
    assert!(astm_items(&daemon, "lab").is_empty(), "nothing stored of an unfinished message");
    // The instrument, timed out too, ends its session and sends the message again.
    sim.line.write(&[EOT]);
    sim.session(&frames);
    let items = astm_items(&daemon, "lab");
    assert_eq!(items.len(), 1);
    assert_same(&daemon.body(&id(&items[0])), &message, "the whole message once, nothing of the first try");
    let st = source(&daemon, "lab");
    assert_eq!((st["discarded_messages"].as_u64(), st["received"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn astm_keep_alive_enq_eot_is_tolerated() {
    let (daemon, mut sim, _) = serial_lab("");
    for _ in 0..3 {
        assert_eq!(sim.send(&[ENQ]), Reply::Ack);
        sim.line.write(&[EOT]);
    }
    sim.play(ERBA);
    let items = wait_items(&daemon, "lab", 1);
    assert_same(&daemon.body(&id(&items[0])), &records_of(&frames_of(ERBA)), "after keep-alives");
    let st = source(&daemon, "lab");
    assert_eq!((st["discarded_messages"].as_u64(), st["rejected_frames"].as_u64()), (Some(0), Some(0)), "{st}");
    assert_eq!(st["received"], 1);
}

/// The host bids (ENQ) to answer a query as the instrument bids for a session of its own: the
/// instrument goes first, and the host bids again no sooner than its contention timer.
#[test]
fn astm_contention_the_instrument_goes_first_and_the_host_answers_later() {
    let (daemon, mut sim, _) = serial_lab("timers = { contention = \"3s\" }");
    sim.play(VITROS_QUERY);
    match sim.line.next(DEADLINE) {
        Next::Byte(ENQ, _) => {}
        other => panic!("the host should bid to send its answer: {other:?}"),
    }
    let contended = sim.line.write(&[ENQ]);
    // The host does not answer an ENQ that crossed its own; the instrument bids again after 1 s.
    assert_eq!(sim.line.collect_for(Duration::from_secs(1)), Vec::<u8>::new(), "the crossed ENQ is not answered");
    let sent = sim.session(&frames_of(ERBA));
    assert_eq!(sent.contentions, 0, "the instrument's second ENQ is answered ACK");
    let reply = sim.receive_session(DEADLINE).expect("the host's answer, after the instrument's session");
    let waited = Instant::now().duration_since(contended);
    assert!(waited >= Duration::from_secs(3), "the host bid again {waited:?} after contention");
    assert_eq!(records(&reply.records).last().unwrap(), "L|1|I\r");
    let items = wait_items(&daemon, "lab", 2);
    assert_eq!((items[0]["type"].as_str(), items[1]["type"].as_str()), (Some("query"), Some("results")));
}

/// The adapter is unplugged mid-session (the pty's master closed, its device gone): the source
/// is down saying why; plugged in again (a new pty behind the same name) it is up, and the
/// message sent again is stored once.
#[test]
fn astm_port_vanishing_mid_session_goes_down_comes_back_and_the_message_is_stored_once() {
    if serial_ports_unavailable("astm_port_vanishing_mid_session_goes_down_comes_back_and_the_message_is_stored_once") {
        return;
    }
    let (daemon, mut sim, link) = serial_lab("");
    let frames = frames_of(YUMIZEN);
    let mut sent = Sent::default();
    sim.establish(&mut sent).unwrap();
    for f in &frames[..40] {
        sim.send_frame(f, &mut sent).unwrap();
    }
    sim.line.close();
    std::fs::remove_file(&link).unwrap();
    let st = wait_source(&daemon, "lab", "the source down, saying why", |s| {
        s["state"] == "down" && s["last_error"].as_str().is_some_and(|e| e.contains("outpost ports"))
    });
    assert!(st["last_error"].as_str().unwrap().contains(link.to_str().unwrap()), "{st}");
    assert_eq!(st["discarded_messages"], 1, "the unfinished message is dropped: {st}");
    assert_eq!(st["connections"], 0);

    let (line, _) = pty_at(&link);
    wait_source(&daemon, "lab", "the source up again", |s| s["state"] == "up" && s["last_error"].is_null());
    let mut sim = Instrument::new(line);
    sim.session(&frames);
    let items = astm_items(&daemon, "lab");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_same(&daemon.body(&id(&items[0])), &records_of(&frames), "the message sent again, whole");

    // Unplugged again, this time right after a message's last frame: stored or not, the
    // instrument saw no ACK and sends it again; it is stored once.
    let erba = frames_of(ERBA);
    sim.establish(&mut sent).unwrap();
    sim.line.write(&erba[0]);
    sim.line.close();
    std::fs::remove_file(&link).unwrap();
    wait_source(&daemon, "lab", "the source down again", |s| {
        s["state"] == "down" && s["last_error"].as_str().is_some_and(|e| e.contains("outpost ports"))
    });
    let (line, _) = pty_at(&link);
    wait_source(&daemon, "lab", "the source up again", |s| s["state"] == "up");
    let mut sim = Instrument::new(line);
    sim.session(&erba);
    let items = astm_items(&daemon, "lab");
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items.iter().filter(|i| i["summary"]["sample_ids"] == "1044041").count(), 1);

    // What the log says of each loss (end of file, or EIO on a read or a write): a port that
    // hung up, not a peer closing a connection.
    let log = daemon.log();
    let lost: Vec<&str> = log.lines().filter(|l| l.contains("link lost")).collect();
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert!(lost.iter().all(|l| l.contains("hung up") && !l.contains("closed the connection")), "{lost:?}");
}

#[test]
fn astm_a_device_that_is_not_astm_is_refused_and_the_daemon_keeps_serving() {
    let (daemon, mut sim, _) = serial_lab("");
    // mini VIDAS: STX, RS-separated fields, GS, LF: no ENQ, no frame number, no ETX.
    sim.line.write(MINI_VIDAS);
    assert_eq!(sim.line.collect_for(Duration::from_secs(1)), Vec::<u8>::new(), "bytes outside a session get no answer");
    assert_eq!(sim.send(&[ENQ]), Reply::Ack);
    assert_eq!(sim.send(MINI_VIDAS), Reply::Nak, "no frame, even inside a session");
    sim.line.write(&[EOT]);
    sim.line.write(MINI_VIDAS);
    let st = source(&daemon, "lab");
    assert_eq!((st["state"].as_str(), st["received"].as_u64()), (Some("up"), Some(0)), "{st}");
    assert!(items_now(&daemon).is_empty(), "nothing stored");
    // Still serving: an ASTM instrument on the same line is heard.
    sim.play(ERBA);
    let items = wait_items(&daemon, "lab", 1);
    assert_eq!(items[0]["type"], "results");
    assert_eq!(items_now(&daemon).len(), 1, "nothing else was stored");
}

/// An instrument that sends a whole message again (it missed the last ACK): the journal's
/// duplicate rule for ASTM items (same source, the first sample id as item_ref, same bytes,
/// within `journal.dedup_window`) recognises it; a rerun of that sample (other bytes) is new.
#[test]
fn astm_a_message_sent_twice_is_recognised_and_a_rerun_of_the_sample_is_not() {
    let (daemon, mut sim, _) = serial_lab("");
    sim.play(ERBA);
    sim.play(ERBA);
    let items = astm_items(&daemon, "lab");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["duplicates"], 1);
    assert_eq!(source(&daemon, "lab")["duplicates"], 1);
    assert_eq!(daemon.status()["journal"]["duplicates"], 1);
    // Sent again rebuilt, its header restamped with the time of sending: the same message.
    let records = String::from_utf8_lossy(&records_of(&frames_of(ERBA))).into_owned();
    let (header, rest) = records.split_once('\r').unwrap();
    let restamped = format!("{}|20991231235959\r{rest}", header.rsplit_once('|').unwrap().0);
    assert_ne!(restamped, records);
    sim.session(&frames_for(restamped.as_bytes()));
    assert_eq!(astm_items(&daemon, "lab").len(), 1);
    assert_eq!(source(&daemon, "lab")["duplicates"], 2);

    let rerun = String::from_utf8_lossy(&records_of(&frames_of(ERBA))).replace("|0.3|", "|0.4|");
    sim.session(&frames_for(rerun.as_bytes()));
    let items = wait_items(&daemon, "lab", 2);
    assert_eq!(items[1]["summary"]["sample_ids"], "1044041");
    assert_same(&daemon.body(&id(&items[1])), rerun.as_bytes(), "the rerun");
    assert_eq!(source(&daemon, "lab")["duplicates"], 2);
}

/// `outpost run` with the analyzer's adapter not plugged in: ready all the same, the source down
/// saying what to do; once the port appears the source comes up and takes a message.
#[test]
fn astm_serial_port_missing_at_start_the_daemon_is_ready_and_takes_the_port_when_it_appears() {
    if serial_ports_unavailable(
        "astm_serial_port_missing_at_start_the_daemon_is_ready_and_takes_the_port_when_it_appears",
    ) {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("analyzer");
    let notify_path = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&notify_path).unwrap();
    systemd.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let env = vec![("NOTIFY_SOCKET".to_string(), notify_path.display().to_string())];
    let daemon = Daemon::start_answering(dir, &lab_config(&[("lab", serial(&link, ""))], ""), env);
    let mut said = String::new();
    wait_for("READY=1", DEADLINE, || {
        let mut buf = [0u8; 4096];
        if let Ok(n) = systemd.recv(&mut buf) {
            said.push_str(&String::from_utf8_lossy(&buf[..n]));
            said.push('\n');
        }
        said.lines().any(|l| l == "READY=1").then_some(())
    });
    let st = wait_source(&daemon, "lab", "the source down, saying why", |s| s["last_error"].is_string());
    assert_eq!(st["state"], "down", "{st}");
    let why = st["last_error"].as_str().unwrap();
    assert!(why.contains(link.to_str().unwrap()) && why.contains("outpost ports"), "{why}");
    let text = stdout_of(&outpost(&["status", "--socket", daemon.socket().to_str().unwrap()]));
    assert!(text.contains("lab down for ") && text.contains("outpost ports"), "{text}");

    let (line, _) = pty_at(&link);
    wait_source(&daemon, "lab", "the source up once the port exists", |s| s["state"] == "up");
    let mut sim = Instrument::new(line);
    sim.play(ERBA);
    wait_items(&daemon, "lab", 1);
}

#[test]
fn astm_config_check_refuses_two_transports_an_unknown_quirk_and_an_mllp_destination() {
    let dir = tempfile::tempdir().unwrap();
    let head = format!(
        "[node]\nsite = \"test\"\nid = \"gw\"\nstate_dir = \"{}\"\n\n[[source]]\nname = \"lab\"\nkind = \"astm\"\n",
        dir.path().display()
    );
    let file_dest = "\n[[destination]]\nname = \"archive\"\nkind = \"file\"\ndir = \"archive\"\n\n[[route]]\nname = \"r\"\nfrom = [\"lab\"]\nto = [\"archive\"]\n";
    let cases = [
        (
            format!("{head}serial = {{ port = \"/dev/ttyUSB0\" }}\ntcp_listen = \"127.0.0.1:5100\"\n{file_dest}"),
            "source[0].tcp_listen",
            "this source has serial and tcp_listen: keep one",
        ),
        (
            format!("{head}tcp_listen = \"127.0.0.1:5100\"\nquirks = [\"lf-only\"]\n{file_dest}"),
            "source[0].quirks[0]",
            "unknown quirk \"lf-only\"; did you mean \"lf_only\"?",
        ),
        (
            format!(
                "{head}tcp_listen = \"127.0.0.1:5100\"\n\n[[destination]]\nname = \"lis\"\nkind = \"mllp\"\nconnect = \"127.0.0.1:2575\"\n\n[[route]]\nname = \"r\"\nfrom = [\"lab\"]\nto = [\"lis\"]\n"
            ),
            "route[0].to[0]",
            "carries only HL7 v2 items, and this route can send it ASTM items; send those to a file or uplink destination",
        ),
    ];
    for (i, (text, key, says)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = output_within(outpost_command(&["config", "check", path.to_str().unwrap()]), DEADLINE);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(64), "case {i}: {stderr}");
        let line =
            stderr.lines().find(|l| l.contains(&format!(": {key}: "))).unwrap_or_else(|| panic!("{key}: {stderr}"));
        assert!(line.starts_with(&format!("{}:", path.display())) && line.contains(says), "case {i}: {line}");
        assert!(stderr.ends_with("1 error(s); nothing was changed.\n"), "case {i}: {stderr}");
    }
}

/// The port as the daemon sets it: raw (no output processing: ONLCR would turn each frame's LF
/// into CR LF; no input processing: ICRNL would turn CR into LF), the configured line settings,
/// exclusive; a reload that changes the line settings applies them to the open port; a stopped
/// daemon lets the port go.
#[test]
fn astm_serial_port_is_raw_exclusive_and_takes_new_line_settings_on_reload() {
    if serial_ports_unavailable("astm_serial_port_is_raw_exclusive_and_takes_new_line_settings_on_reload") {
        return;
    }
    use libc::{
        CSIZE, CSTOPB, ECHO, ICANON, ICRNL, IEXTEN, IGNCR, IGNPAR, INLCR, INPCK, ISIG, ISTRIP, IXON, OPOST, PARENB,
    };
    let (mut daemon, mut sim, link) = serial_lab("");
    let t = sim.line.settings();
    assert_eq!(t.oflag & OPOST, 0, "output processed: {t:?}");
    assert_eq!(t.iflag & (ICRNL | INLCR | IGNCR | ISTRIP | IXON), 0, "input processed: {t:?}");
    assert_eq!(t.lflag & (ICANON | ECHO | ISIG | IEXTEN), 0, "not raw: {t:?}");
    assert_eq!(t.speed, 115_200);
    assert_eq!(t.cflag & (CSIZE | PARENB | CSTOPB), libc::CS8, "{t:?}");
    assert!(sim.line.exclusive(), "opened exclusively (TIOCEXCL)");
    sim.play(ERBA);
    wait_items(&daemon, "lab", 1);

    // 2400 7E2 from now on, on the port kept open.
    let settings = format!(
        "serial = {{ port = \"{}\", baud = 2400, data_bits = 7, parity = \"even\", stop_bits = 2 }}",
        link.display()
    );
    daemon.rewrite_config(&lab_config(&[("lab", settings)], ""));
    assert_success(&daemon.cli(&["reload"]));
    wait_source(&daemon, "lab", "the new line settings in status", |s| s["line"] == "2400 7E2");
    let t = wait_for("the new line settings on the port", DEADLINE, || {
        let t = sim.line.settings();
        (t.speed == 2400).then_some(t)
    });
    // A pty keeps CS8 and no PARENB whatever it is told (Linux's pty_set_termios); the parity
    // shows in the input checks serialport sets with it.
    assert_eq!(t.cflag & CSTOPB, CSTOPB, "two stop bits: {t:?}");
    assert_eq!(t.iflag & (INPCK | IGNPAR), INPCK, "parity checked: {t:?}");
    assert_eq!((t.oflag & OPOST, t.lflag & ICANON), (0, 0), "still raw: {t:?}");
    sim.session(&frames_from_lines(COBAS));
    wait_items(&daemon, "lab", 2);

    assert!(daemon.terminate().success());
    assert!(!sim.line.exclusive(), "the port is let go when the daemon stops");
}

/// A second outpost on a port the first one holds: down, saying another program holds it (not
/// that the adapter is missing); it takes the port once the first lets it go.
#[test]
fn astm_a_port_held_by_another_program_is_reported_busy_and_taken_when_free() {
    if serial_ports_unavailable("astm_a_port_held_by_another_program_is_reported_busy_and_taken_when_free") {
        return;
    }
    let (mut first, sim, link) = serial_lab("");
    let second = Daemon::start_answering(
        tempfile::tempdir().unwrap(),
        &lab_config(&[("lab", serial(&link, ""))], ""),
        Vec::new(),
    );
    let st =
        wait_source(&second, "lab", "the second daemon's source down, saying why", |s| s["last_error"].is_string());
    assert_eq!(st["state"], "down");
    let why = st["last_error"].as_str().unwrap();
    assert!(why.contains("another program holds it") && !why.contains("plugged in"), "{why}");
    assert_eq!(source(&first, "lab")["state"], "up", "the first keeps the port");

    assert!(first.terminate().success());
    wait_source(&second, "lab", "the second daemon's source up", |s| s["state"] == "up");
    let mut sim = sim;
    sim.play(ERBA);
    wait_items(&second, "lab", 1);
}

#[test]
fn astm_an_instrument_unreachable_longer_than_source_down_after_is_escalated_until_it_is_back() {
    let instrument = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = instrument.local_addr().unwrap();
    drop(instrument);
    let daemon = Daemon::start_answering(
        tempfile::tempdir().unwrap(),
        &lab_config(
            &[("lab", format!("tcp_connect = \"{addr}\""))],
            "[escalation]\nsource_down_after = \"1s\"\ncheck_interval = \"1s\"\n",
        ),
        Vec::new(),
    );
    let raised = |d: &Daemon| {
        d.status()["escalations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .find(|e| e["code"] == "source_down")
    };
    let e = wait_for("source_down raised", DEADLINE, || raised(&daemon));
    assert_eq!((e["subject"].as_str(), e["severity"].as_str()), (Some("lab"), Some("critical")), "{e}");
    assert!(e["message"].as_str().unwrap().contains(&addr.to_string()), "says why: {e}");
    // The instrument comes up: the source connects, and the escalation clears.
    let _instrument = TcpListener::bind(addr).unwrap();
    wait_source(&daemon, "lab", "the source up", |s| s["state"] == "up");
    wait_for("source_down cleared", DEADLINE, || raised(&daemon).is_none().then_some(()));
}
