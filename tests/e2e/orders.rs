//! The order cache end to end: an EHR's orders (ORM^O01, OML^O21 over MLLP) answer a lab
//! instrument's query in the host's own session and are pushed to instruments that take
//! unsolicited downloads; then the instrument's results come in. The instrument is the
//! simulator of `astm_sim.rs`, over TCP and on a pty.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use serde_json::Value;

use crate::astm_sim::*;
use crate::support::*;

/// An EHR feed `ehr` (MLLP) and a Yumizen H500 `lab` (its `link` and `extra` keys), both
/// archived to files.
fn config(link: &str, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"ehr\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[source]]\nname = \"lab\"\nkind = \"astm\"\nprofile = \"horiba-yumizen-h500\"\n{link}\n{extra}\n\n\
         [[destination]]\nname = \"archive\"\nkind = \"file\"\ndir = \"{{dir}}/archive\"\n\n\
         [[route]]\nname = \"all\"\nfrom = [\"ehr\", \"lab\"]\nto = [\"archive\"]\n"
    )
}

const TCP: &str = "tcp_listen = \"127.0.0.1:0\"";

fn lab_addr(daemon: &Daemon) -> SocketAddr {
    let s = daemon.status();
    let lab = s["sources"].as_array().unwrap().iter().find(|x| x["name"] == "lab").cloned().expect("lab");
    lab["at"].as_str().expect("the bound address").parse().unwrap()
}

fn instrument(daemon: &Daemon) -> Instrument {
    Instrument::new(Line::tcp(TcpStream::connect(lab_addr(daemon)).unwrap()))
}

/// A new order (ORC-1 `NW`, or `CA` to cancel it) for a blood count on `specimen`: WBC and
/// HGB by LOINC, and a glucose the analyzer does not do.
fn orm(control_id: &str, control: &str, specimen: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EPIC|NORTHFIELD|OUTPOST|LAB|20260301101500||ORM^O01^ORM_O01|{control_id}|P|2.5.1\r\
         PID|1||MRN12345^^^NORTHFIELD^MR||Doe^Jane||19800101|F\r\
         ORC|{control}|PL-{specimen}-1|{specimen}\r\
         OBR|1|PL-{specimen}-1|{specimen}|6690-2^Leukocytes^LN\r\
         ORC|{control}|PL-{specimen}-2|{specimen}\r\
         OBR|2|PL-{specimen}-2|{specimen}|718-7^Hemoglobin^LN\r\
         ORC|{control}|PL-{specimen}-3|{specimen}\r\
         OBR|3|PL-{specimen}-3|{specimen}|2345-7^Glucose^LN\r"
    )
    .into_bytes()
}

/// An OML^O21 for `specimen` (in SPM-2), stat (TQ1-9).
fn oml(control_id: &str, specimen: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EHR|CLINIC|OUTPOST|LAB|20260301120000||OML^O21^OML_O21|{control_id}|P|2.5.1\r\
         PID|1||P-9^^^CLINIC^MR||Roe^Richard||19700215|M\r\
         ORC|NW|ORD-1\rTQ1|1||||||||S\rOBR|1|ORD-1||777-3^Platelets^LN\rSPM|1|{specimen}&EHR||BLDV\r"
    )
    .into_bytes()
}

fn send_order(daemon: &Daemon, msg: &[u8]) {
    let mut ehr = Client::connect(daemon.addr("ehr"));
    let ack = ehr.send(msg);
    assert_eq!(ack_code(&ack), "AA", "{ack}");
}

/// The instrument's query for `specimen` (Q.13 `O`, or `A` to cancel its query).
fn query(specimen: &str, status: &str) -> Vec<Vec<u8>> {
    frames_for(
        format!("H|\\^&|||H500^SIM^1.0|||||||P|LIS2-A2|20260301101600\rQ|1|^{specimen}||ALL||||||||{status}\rL|1|N\r")
            .as_bytes(),
    )
}

fn results(specimen: &str) -> Vec<Vec<u8>> {
    frames_for(
        format!(
            "H|\\^&|||H500^SIM^1.0|||||||P|LIS2-A2|20260301110000\rP|1\rO|1|{specimen}||^^^WBC\\^^^HGB|R\r\
             R|1|^^^WBC|6.1|10E3/uL||N||F\rR|2|^^^HGB|13.2|g/dL||N||F\rL|1|N\r"
        )
        .as_bytes(),
    )
}

fn records(received: &Received) -> Vec<String> {
    String::from_utf8_lossy(&received.records).split_terminator('\r').map(str::to_string).collect()
}

/// The host's next session: its records.
fn host_session(sim: &mut Instrument) -> Vec<String> {
    records(&sim.receive_session(DEADLINE).expect("the host's session"))
}

fn items(daemon: &Daemon) -> Vec<Value> {
    let req = outpost::control::protocol::Request::QueueLs { state: Some("all".into()), destination: None, limit: 0 };
    let v = outpost::control::client::request(&daemon.socket(), &req).expect("queue ls");
    v.as_array().cloned().unwrap_or_default()
}

fn wait_results(daemon: &Daemon, specimen: &str) -> Value {
    wait_for(&format!("results for {specimen} journaled"), DEADLINE, || {
        items(daemon).into_iter().find(|i| {
            i["source"] == "lab" && i["type"] == "results" && i["summary"]["sample_ids"].as_str() == Some(specimen)
        })
    })
}

/// The acceptance test: ORM over MLLP in, the instrument's query, the order back in the host's
/// own session (H, P, O with the tests it does, L N), results in.
#[test]
fn orders_host_query_round_trip_orm_in_query_answered_results_in() {
    let daemon = Daemon::start(&config(TCP, ""));
    send_order(&daemon, &orm("ORM-1", "NW", "SP777"));
    let mut sim = instrument(&daemon);
    sim.session(&query("SP777", "O"));
    let recs = host_session(&mut sim);
    assert_eq!(recs.len(), 4, "H, P, O, L: {recs:?}");
    assert!(recs[0].starts_with("H|\\^&|||outpost|||||H500||P|"), "addressed to the instrument: {recs:?}");
    assert_eq!(recs[1], "P|1|MRN12345|||Doe^Jane||19800101|F");
    assert!(recs[2].starts_with("O|1|SP777||^^^WBC\\^^^HGB|R|"), "its own codes, glucose left out: {recs:?}");
    assert_eq!(recs[3], "L|1|N");
    let log = daemon.log();
    assert!(log.contains("ordered test not in the instrument's test map") && log.contains("2345-7"), "{log}");
    assert!(!log.contains("Doe") && !log.contains("19800101"), "no patient in the log");

    sim.session(&results("SP777"));
    wait_results(&daemon, "SP777");
    let query_item = items(&daemon).into_iter().find(|i| i["type"] == "query").expect("the query is journaled");
    assert_eq!(query_item["summary"]["sample_ids"], "SP777");
}

/// The whole loop a clinic runs: the EHR's order over MLLP, downloaded to the analyzer (which
/// takes downloads) and answered again when it asks; its results in; the results out to the
/// EHR as an HL7 ORU^R01 carrying the order's numbers and patient (the analyzer sent none).
#[test]
fn orders_acceptance_orm_in_download_query_results_in_oru_out_to_the_ehr() {
    let sink = Sink::start(SinkMode::Accept);
    let extra = format!(
        "download_orders = true\nhl7 = {{ sending_application = \"H500\", receiving_application = \"EHR\" }}\n\n\
         [[destination]]\nname = \"ehr-results\"\nkind = \"mllp\"\nconnect = \"{}\"\n\n\
         [[route]]\nname = \"results\"\nfrom = [\"lab\"]\nwhen = {{ \"MSH-9.1\" = \"ORU\" }}\nto = [\"ehr-results\"]",
        sink.addr
    );
    let daemon = Daemon::start(&config(TCP, &extra));
    let mut sim = instrument(&daemon);
    send_order(&daemon, &orm("ORM-55", "NW", "SP555"));
    let download = host_session(&mut sim);
    assert!(download[2].starts_with("O|1|SP555||^^^WBC\\^^^HGB|R|"), "downloaded: {download:?}");
    sim.session(&query("SP555", "O"));
    let answer = host_session(&mut sim);
    assert_eq!(answer.last().map(String::as_str), Some("L|1|N"), "{answer:?}");
    let orders = &daemon.status()["orders"];
    assert_eq!((orders["active"].as_u64(), orders["downloads_pending"].as_u64()), (Some(1), Some(0)), "{orders}");
    let text = stdout_of(&outpost(&["status", "--socket", daemon.socket().to_str().unwrap()]));
    assert!(text.contains("orders   1 active · 0 download(s) waiting"), "{text}");

    sim.session(&results("SP555"));
    let lab = wait_results(&daemon, "SP555");
    wait_for("the ORU^R01 at the EHR", DEADLINE, || (sink.count() == 1).then_some(()));
    let oru = String::from_utf8(sink.messages().remove(0)).unwrap();
    let segments: Vec<&str> = oru.split('\r').collect();
    let seg = |id: &str| segments.iter().find(|s| s.starts_with(id)).copied().unwrap_or_default();
    assert!(seg("MSH|").contains("|ORU^R01^ORU_R01|"), "{oru}");
    assert!(seg("PID|").contains("MRN12345") && seg("PID|").contains("Doe^Jane"), "the order's patient: {oru}");
    assert!(seg("ORC|").starts_with("ORC|RE|PL-SP555-1|SP555"), "the order's numbers: {oru}");
    assert_eq!(segments.iter().filter(|s| s.starts_with("OBX|")).count(), 2, "{oru}");
    assert!(oru.contains("|6690-2^Leukocytes"), "{oru}");
    let derived = items(&daemon).into_iter().find(|i| i["type"] == "ORU^R01").expect("the ORU^R01 item");
    assert_eq!(derived["summary"]["derived_from"], lab["id"]);
    assert!(!daemon.log().contains("Doe"), "no patient in the log");
}

#[test]
fn orders_an_unknown_specimen_a_cancelled_order_and_a_cancelled_query() {
    let daemon = Daemon::start(&config(TCP, ""));
    let mut sim = instrument(&daemon);
    sim.session(&query("NOPE", "O"));
    assert_eq!(host_session(&mut sim).last().map(String::as_str), Some("L|1|I"), "nothing known");

    send_order(&daemon, &orm("ORM-2", "NW", "SP800"));
    send_order(&daemon, &orm("ORM-3", "CA", "SP800"));
    sim.session(&query("SP800", "O"));
    let recs = host_session(&mut sim);
    assert_eq!(recs.len(), 2, "H and L only: {recs:?}");
    assert_eq!(recs[1], "L|1|I", "a cancelled order is not offered");

    // An OML (specimen in SPM-2, stat) answers too; a query the instrument cancels is not
    // answered: the next session of the host is the answer to the query after it.
    send_order(&daemon, &oml("OML-1", "SP900"));
    sim.session(&query("SP900", "A"));
    sim.session(&query("SP900", "O"));
    let recs = host_session(&mut sim);
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert!(recs[2].starts_with("O|1|SP900||^^^PLT|S|"), "{recs:?}");
    assert!(daemon.log().contains("the instrument cancelled its query"));
}

/// Downloads over TCP: an order cached while the instrument is away is sent when it connects;
/// again after a restart if it was not sent; the EHR's retransmission is not sent twice; a
/// cancellation after the download sends an O record with action C.
#[test]
fn orders_download_waits_for_the_instrument_survives_a_restart_and_is_sent_once() {
    let mut daemon = Daemon::start(&config(TCP, "download_orders = true"));
    send_order(&daemon, &orm("ORM-10", "NW", "SP10"));
    // Pending through a restart, the instrument never having connected.
    daemon.terminate();
    daemon.spawn();
    let mut sim = instrument(&daemon);
    let recs = host_session(&mut sim);
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert!(recs[2].starts_with("O|1|SP10||^^^WBC\\^^^HGB|R|") && recs[2].contains("|N|"), "{recs:?}");
    assert!(recs[0].starts_with("H|\\^&|||outpost|"), "{recs:?}");

    // The instrument introduces itself (a query), and is addressed by its id from then on.
    sim.session(&query("NOPE", "O"));
    assert_eq!(host_session(&mut sim).last().map(String::as_str), Some("L|1|I"));

    // The EHR sends SP10's order again (lost ACK): not downloaded again. The next download is
    // SP11's, cached after it.
    send_order(&daemon, &orm("ORM-10", "NW", "SP10"));
    send_order(&daemon, &oml("OML-11", "SP11"));
    let recs = host_session(&mut sim);
    assert!(recs[0].starts_with("H|\\^&|||outpost|||||H500|"), "{recs:?}");
    assert!(recs[2].starts_with("O|1|SP11||^^^PLT|S|"), "SP11, not SP10 again: {recs:?}");

    // Cancelled in the EHR after it was downloaded: the instrument is told.
    send_order(&daemon, &orm("ORM-12", "CA", "SP10"));
    let recs = host_session(&mut sim);
    assert!(recs[2].starts_with("O|1|SP10|") && recs[2].contains("|C|"), "action code C: {recs:?}");

    // Results come in over the same link.
    sim.session(&results("SP11"));
    wait_results(&daemon, "SP11");

    // The instrument goes away; an order cached meanwhile is sent when it is back.
    sim.line.close();
    send_order(&daemon, &orm("ORM-13", "NW", "SP13"));
    let mut sim = instrument(&daemon);
    let recs = host_session(&mut sim);
    assert!(recs[2].starts_with("O|1|SP13|"), "{recs:?}");
}

/// The same over a serial line (a pty): the order is downloaded once the port is open.
#[test]
fn orders_download_over_a_pty() {
    if serial_ports_unavailable("orders_download_over_a_pty") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("analyzer");
    let (line, _) = pty_at(&link);
    let serial = format!("serial = {{ port = \"{}\", baud = 115200 }}", Path::new(&link).display());
    let daemon = Daemon::start_in(dir, &config(&serial, "download_orders = true"));
    let mut sim = Instrument::new(line);
    send_order(&daemon, &orm("ORM-20", "NW", "SP20"));
    let recs = host_session(&mut sim);
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert!(recs[2].starts_with("O|1|SP20||^^^WBC\\^^^HGB|R|"), "{recs:?}");
    sim.session(&results("SP20"));
    wait_results(&daemon, "SP20");
}
