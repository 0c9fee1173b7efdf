//! MLLP and HL7 ACK behaviour as an independent peer sees it: Python's `hl7` package
//! (`mllp_send`), retransmissions, enhanced acknowledgement mode, separators and versions.

use std::process::Command;

use crate::support::*;

/// `mllp_send` from Python's `hl7` package, or a failure telling how to install it.
fn mllp_send() -> Command {
    match Command::new("mllp_send").arg("--version").output() {
        Ok(out) if out.status.success() => Command::new("mllp_send"),
        Ok(out) => panic!("`mllp_send --version` failed ({out:?}); run scripts/test, which installs Python's hl7"),
        Err(e) => panic!("mllp_send is not on PATH ({e}); run scripts/test, which installs Python's hl7 package"),
    }
}

/// What `mllp_send --loose` puts on the wire for a file: line ends made CR, surrounding CR,
/// LF and spaces stripped.
fn as_mllp_send_sends(file: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(file.to_vec()).expect("an ASCII sample");
    let text = text.replace("\r\n", "\r").replace('\n', "\r");
    text.trim_matches(|c| c == '\r' || c == '\n' || c == ' ').as_bytes().to_vec()
}

#[test]
fn mllp_send_gets_aa_and_the_sample_is_stored_and_delivered_byte_identical() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let file = sample("adt-a01.hl7");
    let addr = daemon.addr("ehr");
    let mut cmd = mllp_send();
    cmd.args(["--loose", "--file", file.to_str().unwrap(), "--port", &addr.port().to_string(), "127.0.0.1"]);
    let out = output_within(cmd, DEADLINE);
    assert_success(&out);
    let printed = stdout_of(&out);
    assert!(printed.contains("\rMSA|AA|MSG00001"), "mllp_send shows an AA for MSG00001: {printed:?}");

    let expected = as_mllp_send_sends(&std::fs::read(&file).unwrap());
    daemon.wait_delivered("MSG00001", "lis");
    let item = daemon.item("MSG00001");
    assert_eq!(daemon.body(item["id"].as_str().unwrap()), expected, "journal keeps the exact bytes");
    assert_eq!(sink.messages(), std::slice::from_ref(&expected), "the LIS gets the exact bytes");
    daemon.wait_delivered("MSG00001", "archive");
    let archived: Vec<Vec<u8>> = files_in(&daemon.path("archive")).iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(archived, [expected], "the archive gets the exact bytes");
}

#[test]
fn a_retransmission_is_acknowledged_again_but_stored_and_delivered_once() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    for _ in 0..2 {
        let ack = client.send(&adt("RTX-1"));
        assert_eq!((ack_code(&ack), ack_control_id(&ack)), ("AA".to_string(), "RTX-1".to_string()), "{ack}");
    }
    // A later message is delivered after RTX-1 (per-destination FIFO): once it is there, a second
    // copy of RTX-1 would have been too.
    assert_eq!(ack_code(&client.send(&adt("RTX-2"))), "AA");
    wait_for("RTX-2 at the sink", DEADLINE, || sink.messages().iter().any(|m| field(m, 10) == "RTX-2").then_some(()));
    let ids: Vec<String> = sink.messages().iter().map(|m| field(m, 10)).collect();
    assert_eq!(ids, ["RTX-1", "RTX-2"]);
    let status = daemon.status();
    assert_eq!(status["journal"]["duplicates"], 1, "{status:#}");
    assert_eq!(status["sources"][0]["duplicates"], 1, "{status:#}");
    assert_eq!(status["journal"]["items"], 2, "{status:#}");
    assert_eq!(daemon.item("RTX-1")["duplicates"], 1);
}

/// An ADT with MSH-15 (accept ACK type) and MSH-16 (application ACK type) valued.
fn enhanced(control_id: &str, accept: &str, application: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EHR|CLINIC|LIS|LAB|20261123120000||ADT^A01^ADT_A01|{control_id}|P|2.5|||{accept}|{application}\rEVN|A01|20261123120000\rPID|1||{control_id}^^^CLINIC^MR||TEST^PATIENT\r"
    )
    .into_bytes()
}

#[test]
fn enhanced_mode_always_gets_a_commit_accept() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    let ack = client.send(&enhanced("ENH-AL", "AL", "NE"));
    assert_eq!(ack_code(&ack), "CA", "{ack}");
    assert_eq!(ack_control_id(&ack), "ENH-AL", "{ack}");
    daemon.wait_delivered("ENH-AL", "lis");
}

#[test]
fn enhanced_mode_never_gets_no_ack_and_the_next_message_gets_its_own() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    client.send_raw(&outpost::mllp::encode(&enhanced("ENH-NE", "NE", "NE")));
    let ack = client.send(&adt("AFTER-NE"));
    assert_eq!(ack_control_id(&ack), "AFTER-NE", "the first ACK on the connection is the second message's: {ack}");
    assert_eq!(ack_code(&ack), "AA", "{ack}");
    // The NE message was still taken (messages on a connection are handled in order).
    daemon.wait_delivered("AFTER-NE", "lis");
    let ids: Vec<String> = sink.messages().iter().map(|m| field(m, 10)).collect();
    assert_eq!(ids, ["ENH-NE", "AFTER-NE"]);
}

#[test]
fn an_ack_uses_the_messages_own_separators() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    let msg = b"MSH#$~\\&#EHR#CLINIC#LIS#LAB#20261123120000##ADT$A01#SEP-1#P#2.5\rEVN#A01\rPID#1##SEP-1$$$CLINIC$MR##TEST$PATIENT\r";
    let ack = client.send(msg);
    let segments: Vec<&str> = ack.split('\r').filter(|s| !s.is_empty()).collect();
    let msh: Vec<&str> = segments[0].split('#').collect();
    assert_eq!(&msh[..6], &["MSH", "$~\\&", "LIS", "LAB", "EHR", "CLINIC"], "{ack:?}");
    assert_eq!(msh[8], "ACK$A01$ACK", "{ack:?}");
    assert_eq!(msh[11], "2.5", "{ack:?}");
    assert!(!segments[0].contains('|'), "no default separators in the ACK: {ack:?}");
    let msa: Vec<&str> = segments.iter().find(|s| s.starts_with("MSA")).expect("an MSA").split('#').collect();
    assert_eq!(&msa[..3], &["MSA", "AA", "SEP-1"], "{ack:?}");
    daemon.wait_delivered("SEP-1", "lis");
    assert_eq!(sink.messages(), [msg.to_vec()]);
}

#[test]
fn the_ack_to_a_v2_3_message_keeps_version_2_3() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    let msg =
        b"MSH|^~\\&|EHR|CLINIC|LIS|LAB|20261123120000||ADT^A01|V23-1|P|2.3\rEVN|A01|20261123120000\rPID|1||V23-1\r";
    let ack = client.send(msg);
    let msh: Vec<&str> = ack.split('\r').next().unwrap().split('|').collect();
    assert_eq!(msh[11], "2.3", "MSH-12: {ack:?}");
    assert_eq!(ack_code(&ack), "AA", "{ack:?}");
    assert_eq!(ack_control_id(&ack), "V23-1", "{ack:?}");
}
