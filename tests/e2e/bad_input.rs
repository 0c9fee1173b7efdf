//! Bad input gets the documented answer, and nothing acknowledged is lost.

use crate::support::*;

#[test]
fn garbage_between_frames_is_dropped_and_the_stream_continues() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&single_route_config("", sink.addr, "", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    client.send_raw(b"GET / HTTP/1.0\r\n\r\n");
    let ack = client.send(&adt("G-1"));
    assert_eq!(ack_code(&ack), "AA");
    client.send_raw(b"\r\n\x00\xff garbage");
    let ack = client.send(&adt("G-2"));
    assert_eq!(ack_code(&ack), "AA");
    wait_for("both delivered", DEADLINE, || (sink.count() == 2).then_some(()));
    let discarded = daemon.status()["sources"][0]["discarded_bytes"].as_u64().unwrap();
    assert_eq!(discarded, 18 + 12, "garbage is counted");
    assert!(!daemon.log().contains("GET / HTTP"), "garbage content must not be logged");
}

#[test]
fn a_frame_without_an_end_is_not_acknowledged_and_does_not_block_the_next() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&single_route_config("", sink.addr, "", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    // A start block and half a message, then a proper message: the half is dropped unacknowledged.
    let mut half = vec![0x0b];
    half.extend_from_slice(&adt("H-LOST")[..40]);
    client.send_raw(&half);
    let ack = client.send(&adt("H-OK"));
    assert_eq!(ack_code(&ack), "AA");
    assert_eq!(ack_control_id(&ack), "H-OK");
    wait_for("delivery", DEADLINE, || (sink.count() == 1).then_some(()));
    assert_eq!(field(&sink.messages()[0], 10), "H-OK");
    // A connection that closes inside a frame: nothing stored, nothing acknowledged.
    let mut c2 = Client::connect(daemon.addr("ehr"));
    c2.send_raw(&half);
    drop(c2);
    let out = daemon.cli(&["queue", "ls", "--state", "all", "--json"]);
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 1);
}

#[test]
fn an_oversized_message_gets_ae_and_the_connection_stays_usable() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&single_route_config("", sink.addr, "max_message_size = \"4KiB\"", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    let mut big = adt("BIG-1");
    big.extend(std::iter::repeat_n(b'X', 10_000));
    big.push(b'\r');
    let ack = client.send(&big);
    assert_eq!(ack_code(&ack), "AE", "{ack}");
    assert_eq!(ack_control_id(&ack), "BIG-1", "the ACK names the oversized message: {ack}");
    assert!(ack.contains("max_message_size"), "{ack}");
    let ack = client.send(&adt("SMALL-1"));
    assert_eq!(ack_code(&ack), "AA");
    wait_for("delivery of the small one", DEADLINE, || (sink.count() == 1).then_some(()));
    assert_eq!(daemon.status()["sources"][0]["oversized"], 1);
}

#[test]
fn non_hl7_bytes_get_ae_and_are_kept_as_rejected() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&single_route_config("", sink.addr, "", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    let payload = b"this is not HL7 \xff\xfe at all".to_vec();
    let ack = client.send(&payload);
    assert_eq!(ack_code(&ack), "AE", "{ack}");
    let status = daemon.status();
    assert_eq!(status["journal"]["rejected"], 1);
    let out = daemon.cli(&["queue", "ls", "--state", "rejected", "--json"]);
    assert!(out.status.success());
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = items[0]["id"].as_str().unwrap().to_string();
    let out = daemon.cli(&["queue", "show", &id, "--body", "--json"]);
    let item: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.decode(item["body_b64"].as_str().unwrap()).unwrap();
    assert_eq!(body, payload, "the exact bytes are kept");
    assert!(item["note"].as_str().unwrap().contains("MSH"), "{item}");
    // Nothing went to the destination, and the escalation is visible in the log.
    assert_eq!(sink.count(), 0);
    assert!(daemon.log().contains("escalation"), "rejected items are escalated");
}

#[test]
fn latin1_bytes_are_stored_exactly_and_routed_by_their_value() {
    let sink = Sink::start(SinkMode::Accept);
    let config = conditional_route_config(sink.addr, r#""PID-5.1" = "Müller""#);
    let daemon = Daemon::start(&config);
    let mut client = Client::connect(daemon.addr("ehr"));
    let msg =
        b"MSH|^~\\&|EHR|CLINIC|LIS|LAB|20261123||ADT^A08|L1-1|P|2.5|||||DE|8859/1\rPID|1||77||M\xfcller^J\xfcrgen\r"
            .to_vec();
    let ack = client.send(&msg);
    assert_eq!(ack_code(&ack), "AA", "{ack}");
    wait_for("delivery", DEADLINE, || (sink.count() == 1).then_some(()));
    assert_eq!(sink.messages()[0], msg, "byte-identical latin-1");
    let other =
        b"MSH|^~\\&|EHR|CLINIC|LIS|LAB|20261123||ADT^A08|L1-2|P|2.5|||||DE|8859/1\rPID|1||78||M\xe9ller\r".to_vec();
    assert_eq!(ack_code(&client.send(&other)), "AA");
    assert_eq!(daemon.status()["journal"]["unrouted"], 1);
}

#[test]
fn a_destination_that_answers_ae_dead_letters_and_ar_retries() {
    let sink = Sink::start(SinkMode::Nak("AE"));
    let daemon = Daemon::start(&single_route_config("", sink.addr, "", "on_ae = \"dead-letter\"\non_ar = \"retry\""));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("N-1"))), "AA");
    wait_for("the AE'd item to be failed", DEADLINE, || (daemon.destination("lis")["failed"] == 1).then_some(()));
    // AR: retried until the sink accepts.
    sink.set_mode(SinkMode::Nak("AR"));
    assert_eq!(ack_code(&client.send(&adt("N-2"))), "AA");
    wait_for("AR retries recorded", DEADLINE, || {
        let out = daemon.cli(&["queue", "ls", "--state", "pending", "--json"]);
        let items: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let attempts = items.as_array()?.first()?["deliveries"][0]["attempts"].as_u64()?;
        (attempts >= 2).then_some(())
    });
    sink.set_mode(SinkMode::Accept);
    wait_for("N-2 delivered after AR retries", DEADLINE, || (sink.count() == 1).then_some(()));
    assert_eq!(field(&sink.messages()[0], 10), "N-2");
    // The failed one comes back with `queue retry --failed`.
    let out = daemon.cli(&["queue", "retry", "--failed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("N-1 delivered after retry", DEADLINE, || (sink.count() == 2).then_some(()));
    assert_eq!(field(&sink.messages()[1], 10), "N-1");
}

#[test]
fn a_destination_that_never_answers_keeps_items_pending_in_order() {
    let sink = Sink::start(SinkMode::Silent);
    let daemon = Daemon::start(&single_route_config("", sink.addr, "", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    for i in 0..3 {
        assert_eq!(ack_code(&client.send(&adt(&format!("S-{i}")))), "AA");
    }
    wait_for("the link to be reported down", DEADLINE, || {
        let d = daemon.destination("lis");
        (d["unreachable_since"].is_i64() && d["last_error"].as_str()?.contains("ack_timeout")).then_some(())
    });
    assert_eq!(daemon.destination("lis")["pending"], 3);
    sink.set_mode(SinkMode::Accept);
    wait_for("all delivered", DEADLINE, || (sink.count() == 3).then_some(()));
    let ids: Vec<String> = sink.messages().iter().map(|m| field(m, 10)).collect();
    assert_eq!(ids, vec!["S-0", "S-1", "S-2"], "strict FIFO after recovery");
}

#[test]
fn a_full_journal_answers_ar_and_keeps_what_it_acknowledged() {
    // The destination is down, so nothing can be evicted; the cap is tiny.
    let dead = dead_addr();
    let mut config = single_route_config("", dead, "", "");
    config.push_str("\n[journal]\nmax_bytes = \"2KiB\"\n");
    let mut daemon = Daemon::start(&config);
    let mut client = Client::connect(daemon.addr("ehr"));
    let (acked, refused) = send_until_refused(&mut client, "F", 50, adt);
    for i in 0..3 {
        let ack = client.send(&adt(&format!("F-again-{i}")));
        assert_eq!(ack_code(&ack), "AR", "still full: {ack}");
    }
    assert!(refused.contains("journal full"), "{refused}");
    assert!(!acked.is_empty());
    assert!(daemon.log().contains("journal_full"), "escalated");
    let active = daemon.status()["escalations"].clone();
    assert!(active.as_array().unwrap().iter().any(|e| e["code"] == "journal_full"), "{active}");
    let raised = daemon.log().matches("escalation: journal full").count();
    assert_eq!(raised, 1, "raised once, not at every refusal");
    // Everything acknowledged is still there after a restart, and goes out once the destination is up.
    daemon.kill9();
    let sink = Sink::start_on(&dead.to_string(), SinkMode::Accept);
    daemon.spawn();
    wait_for("acknowledged items delivered", DEADLINE, || (sink.count() >= acked.len()).then_some(()));
    let got: Vec<String> = sink.messages().iter().map(|m| field(m, 10)).collect();
    assert_eq!(got, acked);
}

#[test]
fn an_idle_connection_is_closed_after_idle_timeout() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&single_route_config("", sink.addr, "idle_timeout = \"1s\"", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("IDLE-1"))), "AA");
    // Nothing more is sent: the daemon closes the connection (the read sees EOF, not a timeout).
    assert_eq!(client.read_ack(), None, "closed by the daemon");
    assert!(daemon.log().contains("idle_timeout"));
}

#[test]
fn connections_beyond_max_connections_are_refused_and_the_others_keep_working() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&single_route_config("", sink.addr, "max_connections = 1", ""));
    let addr = daemon.addr("ehr");
    let mut first = Client::connect(addr);
    assert_eq!(ack_code(&first.send(&adt("MAX-1"))), "AA");
    let mut second = Client::connect(addr);
    assert_eq!(second.try_send(&adt("MAX-2")), None, "the second connection is closed unanswered");
    assert!(daemon.log().contains("max_connections"));
    assert_eq!(ack_code(&first.send(&adt("MAX-3"))), "AA");
    // Once the first goes away, a new connection is taken.
    drop(first);
    wait_for("a new connection to be served", DEADLINE, || {
        let mut c = Client::connect(addr);
        c.try_send(&adt("MAX-4")).filter(|ack| ack_code(ack) == "AA")
    });
}

#[test]
fn random_and_mangled_messages_never_take_the_daemon_down() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&single_route_config("", sink.addr, "", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    let base = adt("FUZZ");
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300 {
        // Start from a real message and damage it: cut it, flip bytes, insert separators and
        // high bytes, or replace it with noise. Framing bytes are kept out of the payload so
        // that every frame is complete and must be answered.
        let mut msg = base.clone();
        match next() % 4 {
            0 => msg.truncate((next() % msg.len() as u64) as usize),
            1 => {
                for _ in 0..8 {
                    let at = (next() % msg.len() as u64) as usize;
                    msg[at] = (next() % 256) as u8;
                }
            }
            2 => {
                for _ in 0..8 {
                    let at = (next() % msg.len() as u64) as usize;
                    msg.insert(at, b"|^~\\&\r\xe9\xff"[(next() % 8) as usize]);
                }
            }
            _ => msg = (0..(next() % 200)).map(|_| (next() % 256) as u8).collect(),
        }
        msg.retain(|b| *b != 0x0b && *b != 0x1c);
        let ack = client.send(&msg);
        let code = ack_code(&ack);
        assert!(code == "AA" || code == "AE", "frame {i}: unexpected answer {ack:?}");
    }
    // Still alive, still taking good messages, and everything answered is accounted for.
    assert_eq!(ack_code(&client.send(&adt("AFTER-FUZZ"))), "AA");
    let status = daemon.status();
    let journal = &status["journal"];
    let (items, duplicates) = (journal["items"].as_u64().unwrap(), journal["duplicates"].as_u64().unwrap());
    assert_eq!(items + duplicates, 301, "every answered frame is stored once (or recognised as a retransmission)");
    assert!(!daemon.log().contains("panicked"));
}

#[test]
fn a_full_disk_answers_ar_keeps_what_it_acknowledged_and_recovers_when_space_is_freed() {
    // The journal on a 6 MiB filesystem, with the free-space guard off so that the disk really
    // fills (the guard is what normally refuses first; this is the case it does not catch: some
    // other writer filled the disk).
    let disk = SmallDisk::mount("6m");
    // Space something else holds, freed later.
    std::fs::write(disk.path("filler"), vec![0u8; 2 << 20]).unwrap();
    let dead = dead_addr();
    let top = format!(
        "[journal]\npath = \"{}\"\nmin_free_disk = \"0B\"\nmax_bytes = \"1GiB\"",
        disk.path("journal.db").display()
    );
    let mut daemon = Daemon::start(&single_route_config(&top, dead, "", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    // 64 KiB messages until the disk is full.
    let big = |id: &str| {
        let mut m = adt(id);
        m.extend_from_slice(format!("NTE|1||{}\r", "x".repeat(64 * 1024)).as_bytes());
        m
    };
    let (mut acked, refused) = send_until_refused(&mut client, "D", 400, big);
    assert!(refused.contains("disk full") && refused.contains("free space"), "says why and what to do: {refused}");
    assert!(acked.len() >= 10, "only {} stored before the disk was full", acked.len());
    let status = daemon.status();
    assert!(status["escalations"].as_array().unwrap().iter().any(|e| e["code"] == "journal_full"), "{status}");

    // Space comes back: new messages are taken again.
    std::fs::remove_file(disk.path("filler")).unwrap();
    let mut taken = None;
    wait_for("a message accepted once space is free", DEADLINE, || {
        let id = format!("D-after-{}", acked.len() + 1000);
        let ack = client.send(&big(&id));
        (ack_code(&ack) == "AA").then(|| {
            taken = Some(id.clone());
        })
    });
    acked.push(taken.unwrap());

    // Everything acknowledged survives a crash and is delivered, in order.
    daemon.kill9();
    let sink = Sink::start_on(&dead.to_string(), SinkMode::Accept);
    daemon.spawn();
    wait_for("acknowledged items delivered", DEADLINE, || (sink.count() >= acked.len()).then_some(()));
    let mut got: Vec<String> = sink.messages().iter().map(|m| field(m, 10)).collect();
    got.dedup();
    assert_eq!(got, acked);
}

/// Sends messages made by `make` (control ids `{prefix}-0`, `{prefix}-1`, ...) until one is
/// refused with AR; returns the control ids acknowledged AA and the AR. Panics on any other
/// answer, or if none of `max` is refused.
fn send_until_refused(
    client: &mut Client,
    prefix: &str,
    max: usize,
    make: impl Fn(&str) -> Vec<u8>,
) -> (Vec<String>, String) {
    let mut acked = Vec::new();
    for i in 0..max {
        let id = format!("{prefix}-{i}");
        let ack = client.send(&make(&id));
        match ack_code(&ack).as_str() {
            "AA" => acked.push(id),
            "AR" => return (acked, ack),
            other => panic!("unexpected {other}: {ack}"),
        }
    }
    panic!("none of {max} messages was refused");
}
