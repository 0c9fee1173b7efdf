//! A lab link's results as HL7: each message's patient results journaled again as an HL7
//! v2.5.1 ORU^R01, a new item linked to the instrument's message in the same transaction,
//! routed as HL7 (to an MLLP sink here); QC never converted; critical results by the profile's
//! ranges escalated at once. The instrument is the simulator over TCP, the EHR a real MLLP sink.

use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

use crate::astm_sim::*;
use crate::support::*;

const YUMIZEN: &[u8] = include_bytes!("../data/astm/yumizen-h500-session.raw");

/// A Yumizen H500 on TCP whose results go to the EHR (an MLLP sink) as HL7, and every item
/// (the instrument's messages and the HL7 made from them) to a file archive.
fn config(ehr: SocketAddr, extra: &str) -> String {
    format!(
        "[[source]]
name = \"hema\"
kind = \"astm\"
tcp_listen = \"127.0.0.1:0\"
profile = \"horiba-yumizen-h500\"
hl7 = {{ sending_application = \"H500\", sending_facility = \"LAB\", receiving_application = \"EHR\" }}

[[destination]]
name = \"archive\"
kind = \"file\"
dir = \"{{dir}}/archive\"

[[destination]]
name = \"ehr\"
kind = \"mllp\"
connect = \"{ehr}\"

[[route]]
name = \"everything\"
from = [\"hema\"]
to = [\"archive\"]

[[route]]
name = \"results-to-ehr\"
from = [\"hema\"]
when = {{ \"MSH-9.1\" = \"ORU\" }}
to = [\"ehr\"]
{extra}"
    )
}

fn connect(daemon: &Daemon) -> Instrument {
    let sources = daemon.status()["sources"].as_array().cloned().unwrap_or_default();
    let hema = sources.iter().find(|s| s["name"] == "hema").expect("source hema in status");
    let addr: SocketAddr = hema["at"].as_str().expect("the bound address").parse().unwrap();
    Instrument::new(Line::tcp(TcpStream::connect(addr).unwrap()))
}

/// The journal's items from `hema`, oldest first.
fn items(daemon: &Daemon) -> Vec<Value> {
    let mut all = daemon.items();
    all.retain(|i| i["source"] == "hema");
    all.reverse();
    all
}

fn wait_items(daemon: &Daemon, n: usize) -> Vec<Value> {
    wait_for(&format!("{n} item(s) from hema"), DEADLINE, || {
        let items = items(daemon);
        (items.len() >= n).then_some(items)
    })
}

fn id(item: &Value) -> &str {
    item["id"].as_str().unwrap()
}

#[test]
fn lab_results_become_an_oru_r01_linked_to_the_instruments_message_and_reach_the_ehr() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&config(sink.addr, ""));
    let mut sim = connect(&daemon);
    sim.play(YUMIZEN);
    let both = wait_items(&daemon, 2);
    let (astm, hl7) = (&both[0], &both[1]);
    assert_eq!((astm["kind"].as_str(), hl7["kind"].as_str()), (Some("astm"), Some("hl7v2")), "{both:?}");

    // Linked both ways, in the summaries central and the CLI see.
    let shown_astm = daemon.show(id(astm), false);
    let shown_hl7 = daemon.show(id(hl7), false);
    assert_eq!(shown_hl7["summary"]["derived_from"].as_str(), Some(id(astm)));
    assert_eq!(shown_astm["summary"]["derived"].as_str(), Some(id(hl7)));
    assert_eq!(shown_hl7["type"], "ORU^R01");
    assert_eq!(
        shown_hl7["summary"]["unmapped_tests"], "PCT,P-LCR,P-LCC,PDW",
        "codes the map lacks are named (and still sent, under the local system)"
    );

    // The EHR receives the ORU^R01, not the instrument's records.
    wait_for("the ORU^R01 at the EHR", DEADLINE, || (sink.count() == 1).then_some(()));
    let oru = String::from_utf8(sink.messages().remove(0)).unwrap();
    assert!(oru.starts_with("MSH|^~\\&|H500|LAB|EHR||"), "{oru}");
    assert!(oru.contains("|ORU^R01^ORU_R01|"), "{oru}");
    assert_eq!(oru.matches("\rOBX|").count(), 27, "every result: {oru}");
    assert!(oru.contains("|6690-2^Leukocytes"), "WBC under its LOINC code: {oru}");
    assert!(oru.contains("\rSPM|1|^2021679"), "the specimen id: {oru}");
    assert_eq!(daemon.body(id(hl7)), oru.as_bytes(), "what was journaled is what was sent");

    // One message received; the HL7 was made, not received.
    let hema = &daemon.status()["sources"].as_array().unwrap().iter().find(|s| s["name"] == "hema").cloned().unwrap();
    assert_eq!(hema["received"], 1, "{hema}");

    // The instrument sends the same message again (it missed our ACK): recognised, and no
    // second ORU^R01 is made.
    sim.play(YUMIZEN);
    wait_for("the retransmission counted", DEADLINE, || {
        (daemon.status()["sources"][0]["duplicates"].as_u64() == Some(1)).then_some(())
    });
    assert_eq!(items(&daemon).len(), 2);
    assert_eq!(sink.count(), 1);
    let log = daemon.log();
    assert!(!log.lines().any(|l| l.contains(" INFO ") && l.contains("2021679")), "no specimen id at info");
}

#[test]
fn qc_results_are_kept_as_sent_and_never_converted() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&config(sink.addr, ""));
    let mut sim = connect(&daemon);
    let qc = b"H|\\^&|||H500^906YOXH02459|||||||Q|LIS2-A2|20260101120000\r\
P|1\r\
O|1|QC-LOT-7||^^^DIF\r\
R|1|^^^WBC|7.1|10E3/uL||N||F\r\
L|1|N\r";
    sim.session(&frames_for(qc));
    let stored = wait_items(&daemon, 1);
    assert_eq!(stored[0]["type"], "qc-results");
    // A patient message after it is converted: so the QC one had its chance and was not.
    let patient = String::from_utf8_lossy(qc).replace("|Q|LIS2-A2", "|P|LIS2-A2").replace("QC-LOT-7", "S-1");
    sim.session(&frames_for(patient.as_bytes()));
    let all = wait_items(&daemon, 3);
    let kinds: Vec<&str> = all.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["astm", "astm", "hl7v2"], "{all:?}");
    wait_for("one ORU at the EHR", DEADLINE, || (sink.count() == 1).then_some(()));
    assert!(String::from_utf8_lossy(&sink.messages()[0]).contains("^S-1"));
}

#[test]
fn a_result_beyond_the_profiles_critical_range_escalates_at_once_naming_the_test_not_the_value() {
    let sink = Sink::start(SinkMode::Accept);
    let rule = "\n[[escalation.rule]]\nname = \"critical-lab\"\nfrom = [\"hema\"]\nwhen = { critical = [\"high\", \"low\", \"HH\", \"LL\"] }\n";
    let daemon = Daemon::start(&config(sink.addr, rule));
    let mut sim = connect(&daemon);
    // WBC 35.5 is above the Yumizen map's critical high (30); the instrument flags it only H.
    let message = b"H|\\^&|||H500^906YOXH02459|||||||P|LIS2-A2|20260101120000\r\
P|1\r\
O|1|S-42||^^^DIF\r\
R|1|^^^WBC|35.5|10E3/uL|3.50 - 10.00|H||F\r\
R|2|^^^RBC|4.51|10E6/uL|3.80 - 6.00|N||F\r\
L|1|N\r";
    sim.session(&frames_for(message));
    let line = wait_for("the rule's escalation in the log", DEADLINE, || {
        daemon.log().lines().find(|l| l.contains("rule critical-lab")).map(str::to_string)
    });
    assert!(line.contains("WARN") && line.contains("tests WBC"), "{line}");
    assert!(!after_timestamp(&line).contains("35.5") && !line.contains("S-42"), "no value, no specimen: {line}");
    assert_eq!(daemon.log().matches("rule critical-lab").count(), 1, "raised once, by the lab message");
    // A normal message raises nothing more.
    let normal = String::from_utf8_lossy(message).replace("35.5", "7.5").replace("S-42", "S-43");
    sim.session(&frames_for(normal.as_bytes()));
    wait_items(&daemon, 4);
    assert_eq!(daemon.log().matches("rule critical-lab").count(), 1);
}

#[test]
fn rules_test_shows_the_hl7_a_capture_becomes_and_where_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.toml");
    let text = format!(
        "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = {:?}\n{}",
        dir.path().display().to_string(),
        config("127.0.0.1:9".parse().unwrap(), "")
    )
    .replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&path, text).unwrap();
    let c = path.to_str().unwrap();
    assert_success(&outpost(&["config", "check", c]));
    let capture = format!("{}/tests/data/astm/yumizen-h500-session.raw", env!("CARGO_MANIFEST_DIR"));
    let out = outpost(&["rules", "test", "--config", c, &capture]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("ASTM results from instrument H500"), "{text}");
    assert!(text.contains("ORU^R01 control id OP"), "{text}");
    assert!(text.contains("the lab message's results as HL7"), "{text}");
    assert!(text.contains("✓ route results-to-ehr"), "{text}");
    assert!(text.contains("--- ehr receives (unchanged) ---"), "{text}");
}
