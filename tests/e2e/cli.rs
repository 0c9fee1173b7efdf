//! The field-tech CLI against a running daemon (status, queue, tail, send) and offline
//! (rules test).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use crate::support::*;

/// One MLLP source; critical-looking ORUs go to an MLLP destination, everything is archived.
/// With `lis` pointing nowhere, ORUs stay pending while ADTs are fully delivered.
fn lab_and_archive_config(lis: std::net::SocketAddr) -> String {
    format!(
        r#"
[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "lis"
kind = "mllp"
connect = "{lis}"
connect_timeout = "2s"
ack_timeout = "2s"
retry = {{ initial_backoff = "100ms", max_backoff = "500ms" }}

[[destination]]
name = "archive"
kind = "file"
dir = "{{dir}}/archive"

[[route]]
name = "results-to-lab"
from = ["ehr"]
when = {{ "MSH-9.1" = "ORU" }}
to = ["lis"]

[[route]]
name = "archive-all"
from = ["ehr"]
to = ["archive"]
"#
    )
}

fn send_all(daemon: &Daemon, messages: &[Vec<u8>]) {
    let mut client = Client::connect(daemon.addr("ehr"));
    for m in messages {
        let ack = client.send(m);
        assert_eq!(ack_code(&ack), "AA", "{ack}");
    }
}

fn ids(items: &serde_json::Value) -> Vec<String> {
    items
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|it| it["summary"]["control_id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The whitespace-separated columns of the first line of `text` starting with `name `.
fn row<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"))
        .split_whitespace()
        .collect()
}

#[test]
fn status_names_every_source_and_destination_with_its_counts() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    send_all(&daemon, &[adt("ST-1"), adt("ST-2")]);
    daemon.wait_delivered("ST-2", "lis");
    daemon.wait_delivered("ST-2", "archive");

    let out = daemon.cli(&["status"]);
    assert_success(&out);
    let text = stdout_of(&out);
    // SOURCE KIND LISTEN CONN RECEIVED REJECTED REFUSED DUPS
    let ehr = row(&text, "ehr");
    assert_eq!(ehr[1], "mllp", "{text}");
    assert_eq!(ehr[2], daemon.addr("ehr").to_string(), "{text}");
    assert_eq!(ehr[4], "2", "received: {text}");
    assert_eq!(&ehr[5..8], &["0", "0", "0"], "rejected, refused, dups: {text}");
    // DESTINATION KIND TARGET PENDING FAILED OLDEST STATE
    let lis = row(&text, "lis");
    assert_eq!(lis[2], sink.addr.to_string(), "{text}");
    assert_eq!(&lis[3..], &["0", "0", "-", "ok"], "{text}");
    let archive = row(&text, "archive");
    assert_eq!(archive[1], "file", "{text}");
    assert_eq!(&archive[3..], &["0", "0", "-", "ok"], "{text}");
    assert!(text.contains("2 item(s)"), "journal line: {text}");
    assert!(text.contains("site test") && text.contains("node gw"), "{text}");
}

#[test]
fn status_json_counts_received_delivered_pending_and_rejected() {
    let daemon = Daemon::start(&lab_and_archive_config(dead_addr()));
    send_all(&daemon, &[adt("SJ-1"), oru("SJ-2", "N"), adt("SJ-3")]);
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(b"not hl7 at all")), "AE");
    // Counted delivered (a live counter) and recorded as such in the journal (pending is
    // counted from it): both, or the snapshot below could fall between the two.
    wait_for("three deliveries to the archive", DEADLINE, || {
        let a = daemon.destination("archive");
        (a["delivered"] == 3 && a["pending"] == 0).then_some(())
    });

    let out = daemon.cli(&["status", "--json"]);
    assert_success(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let sources = s["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["name"], "ehr");
    assert_eq!(sources[0]["received"], 4, "{s:#}");
    assert_eq!(sources[0]["rejected"], 1, "{s:#}");
    let dest = |name: &str| s["destinations"].as_array().unwrap().iter().find(|d| d["name"] == name).unwrap().clone();
    assert_eq!(s["destinations"].as_array().unwrap().len(), 2);
    let (lis, archive) = (dest("lis"), dest("archive"));
    assert_eq!((lis["pending"].as_u64(), lis["delivered"].as_u64()), (Some(1), Some(0)), "{s:#}");
    assert!(lis["oldest_pending_age_s"].is_u64(), "{s:#}");
    assert_eq!((archive["pending"].as_u64(), archive["delivered"].as_u64()), (Some(0), Some(3)), "{s:#}");
    assert_eq!(s["journal"]["items"], 4, "{s:#}");
    assert_eq!(s["journal"]["rejected"], 1, "{s:#}");
    assert_eq!(s["journal"]["unrouted"], 0, "{s:#}");
    assert_eq!(s["routing_mode"], "all-matches");
}

#[test]
fn queue_ls_lists_undelivered_items_by_default_and_every_item_with_state_all() {
    let daemon = Daemon::start(&lab_and_archive_config(dead_addr()));
    send_all(&daemon, &[adt("QL-1"), oru("QL-2", "N"), adt("QL-3")]);
    daemon.wait_delivered("QL-3", "archive");
    daemon.wait_delivered("QL-2", "archive");

    let pending = daemon.cli_json(&["queue", "ls", "--json"]);
    assert_eq!(ids(&pending), ["QL-2"], "only the ORU waits (for lis)");
    let all = daemon.cli_json(&["queue", "ls", "--state", "all", "--json"]);
    assert_eq!(ids(&all), ["QL-3", "QL-2", "QL-1"], "every item, newest first");

    // The human listing shows the same items, with each delivery's state.
    let out = daemon.cli(&["queue", "ls"]);
    assert_success(&out);
    let text = stdout_of(&out);
    let oru_id = pending[0]["id"].as_str().unwrap();
    assert!(text.contains(oru_id), "{text}");
    assert!(text.contains("ORU"), "{text}");
    assert!(text.contains("lis:pending") || text.contains("lis:in_flight"), "{text}");
    assert!(text.contains("archive:delivered"), "{text}");
    assert!(!text.contains(all[0]["id"].as_str().unwrap()), "delivered items are not listed by default: {text}");
}

#[test]
fn queue_ls_filters_by_destination() {
    let daemon = Daemon::start(&lab_and_archive_config(dead_addr()));
    send_all(&daemon, &[adt("QD-1"), oru("QD-2", "N")]);
    daemon.wait_delivered("QD-2", "archive");

    let lis_all = daemon.cli_json(&["queue", "ls", "--state", "all", "--destination", "lis", "--json"]);
    assert_eq!(ids(&lis_all), ["QD-2"], "only the ORU was routed to lis");
    let archive_all = daemon.cli_json(&["queue", "ls", "--state", "all", "--destination", "archive", "--json"]);
    assert_eq!(ids(&archive_all), ["QD-2", "QD-1"]);
    let lis_pending = daemon.cli_json(&["queue", "ls", "--destination", "lis", "--json"]);
    assert_eq!(ids(&lis_pending), ["QD-2"]);
    let archive_pending = daemon.cli_json(&["queue", "ls", "--destination", "archive", "--json"]);
    assert_eq!(ids(&archive_pending), Vec::<String>::new(), "everything reached the archive");
    let out = daemon.cli(&["queue", "ls", "--destination", "archive"]);
    assert_success(&out);
    assert_eq!(stdout_of(&out).trim(), "no items");
}

#[test]
fn queue_show_prints_summary_routes_and_deliveries_and_the_body_only_with_body() {
    let daemon = Daemon::start(&lab_and_archive_config(dead_addr()));
    send_all(&daemon, &[oru("QS-1", "HH")]);
    daemon.wait_delivered("QS-1", "archive");
    let id = daemon.item("QS-1")["id"].as_str().unwrap().to_string();

    let out = daemon.cli(&["queue", "show", &id]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains(&id), "{text}");
    assert!(text.contains("ORU^R01") && text.contains("control id QS-1"), "summary: {text}");
    assert!(text.contains("from LAB / CLINIC") && text.contains("HL7 2.5.1"), "summary: {text}");
    assert!(text.contains("source       ehr"), "{text}");
    assert!(text.contains("routes       results-to-lab, archive-all"), "{text}");
    let delivery = |dest: &str| {
        text.lines().find(|l| l.starts_with("delivery") && l.contains(dest)).unwrap_or_else(|| panic!("{text}"))
    };
    assert!(delivery("archive").contains("delivered"), "{text}");
    assert!(!delivery("lis").contains("delivered"), "{text}");
    assert!(!text.contains("--- body ---"), "no body without --body: {text}");
    assert!(!text.contains("TEST^PATIENT") && !text.contains("OBX"), "no patient data without --body: {text}");
    assert!(daemon.show(&id, false).get("body_b64").is_none(), "no body in JSON without --body");

    let out = daemon.cli(&["queue", "show", &id, "--body"]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("--- body ---"), "{text}");
    let body = text.split("--- body ---").nth(1).unwrap();
    assert!(body.contains("OBX|1|NM|718-7^HGB^LN||7.1|g/dL|12-16|HH|||F"), "{text}");
    assert!(body.contains("PID|1||QS-1^^^CLINIC^MR||TEST^PATIENT"), "{text}");
    assert_eq!(daemon.body(&id), oru("QS-1", "HH"), "the JSON body is the exact bytes");
}

#[test]
fn queue_show_of_an_unknown_id_says_how_to_list_items() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let out = daemon.cli(&["queue", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("no item 01ARZ3NDEKTSV4RRFFQ69G5FAV") && err.contains("outpost queue ls"), "{err}");
}

#[test]
fn queue_retry_of_an_item_without_a_failed_delivery_exits_nonzero_and_says_why() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    send_all(&daemon, &[adt("QR-1")]);
    daemon.wait_delivered("QR-1", "lis");
    let id = daemon.item("QR-1")["id"].as_str().unwrap().to_string();

    let out = daemon.cli(&["queue", "retry", &id]);
    assert!(!out.status.success(), "{out:?}");
    let text = format!("{}{}", stdout_of(&out), stderr_of(&out));
    assert!(text.contains(&format!("item {id} has no failed delivery")), "{text}");
    assert!(text.contains(&format!("outpost queue show {id}")), "points at what to look at: {text}");
    assert_eq!(sink.count(), 1, "nothing was sent again");
}

/// `outpost tail --json` as a child process; its stdout lines arrive on a channel.
struct Tail {
    child: Child,
    lines: Receiver<String>,
}

impl Tail {
    fn start(daemon: &Daemon) -> Tail {
        let mut child = outpost_command(&["tail", "--json", "--socket"])
            .arg(daemon.socket())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn outpost tail");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Tail { child, lines }
    }

    fn next_event(&self, within: Duration) -> Option<serde_json::Value> {
        let line = self.lines.recv_timeout(within).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("tail --json printed non-JSON {line:?}: {e}")))
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tail_json_shows_received_routed_and_delivered_for_a_message() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let tail = Tail::start(&daemon);
    let mut client = Client::connect(daemon.addr("ehr"));
    // The tail subscribes asynchronously: send probes until it shows one.
    let mut probe = 0;
    wait_for("tail to show events", DEADLINE, || {
        probe += 1;
        assert_eq!(ack_code(&client.send(&adt(&format!("PROBE-{probe}")))), "AA");
        tail.next_event(Duration::from_millis(500))
    });

    assert_eq!(ack_code(&client.send(&adt("TAIL-1"))), "AA");
    let mut id: Option<String> = None;
    let (mut routed, mut delivered) = (false, Vec::new());
    wait_for("received, routed and delivered events for TAIL-1", DEADLINE, || {
        while let Some(ev) = tail.next_event(Duration::from_millis(200)) {
            assert!(ev["at"].is_i64(), "{ev}");
            let ours = id.as_deref().is_some_and(|id| ev["id"] == id);
            match ev["event"].as_str() {
                Some("received") if ev["control_id"] == "TAIL-1" => {
                    assert_eq!(ev["source"], "ehr", "{ev}");
                    assert!(ev["message_type"].as_str().unwrap().starts_with("ADT^A01"), "{ev}");
                    id = Some(ev["id"].as_str().unwrap().to_string());
                }
                Some("routed") if ours => {
                    assert_eq!(ev["routes"], serde_json::json!(["all"]), "{ev}");
                    assert_eq!(ev["destinations"], serde_json::json!(["lis", "archive"]), "{ev}");
                    routed = true;
                }
                Some("delivered") if ours => {
                    assert!(routed, "delivered before routed: {ev}");
                    delivered.push(ev["destination"].as_str().unwrap().to_string());
                }
                _ => {}
            }
            if routed && delivered.len() == 2 {
                return Some(());
            }
        }
        None
    });
    delivered.sort();
    assert_eq!(delivered, ["archive", "lis"]);
}

#[test]
fn send_prints_aa_for_a_sample_file_and_exits_0() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let file = sample("adt-a01.hl7");
    let out =
        output_within(outpost_command(&["send", &daemon.addr("ehr").to_string(), file.to_str().unwrap()]), DEADLINE);
    assert_success(&out);
    let text = stdout_of(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("adt-a01.hl7: AA (control id MSG00001)"), "{text}");
    daemon.wait_delivered("MSG00001", "lis");
}

#[test]
fn send_prints_one_ack_line_per_message_in_a_file() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let file = daemon.path("two.hl7");
    // Segments on lines, as a tech would type them.
    let text: String =
        [adt("TWO-1"), adt("TWO-2")].iter().map(|m| String::from_utf8_lossy(m).replace('\r', "\n")).collect();
    std::fs::write(&file, text).unwrap();
    let out =
        output_within(outpost_command(&["send", &daemon.addr("ehr").to_string(), file.to_str().unwrap()]), DEADLINE);
    assert_success(&out);
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with("two.hl7#1: AA (control id TWO-1)"), "{text}");
    assert!(lines[1].ends_with("two.hl7#2: AA (control id TWO-2)"), "{text}");
    daemon.wait_delivered("TWO-2", "lis");
    let got: Vec<Vec<u8>> = sink.messages();
    assert_eq!(got, [adt("TWO-1"), adt("TWO-2")], "each line-per-segment message arrives with CR segment ends");
}

#[test]
fn send_to_a_port_nobody_listens_on_exits_69_and_says_what_to_check() {
    let addr = dead_addr().to_string();
    let out = output_within(outpost_command(&["send", &addr, sample("adt-a01.hl7").to_str().unwrap()]), DEADLINE);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let err = stderr_of(&out);
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");
    assert!(err.contains("is the listener running"), "says what to check: {err}");
}

#[test]
fn cli_without_a_running_daemon_exits_69_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    for args in [&["status"][..], &["queue", "ls"], &["reload"]] {
        let mut full = args.to_vec();
        full.extend(["--socket", socket.to_str().unwrap()]);
        let out = outpost(&full);
        assert_eq!(out.status.code(), Some(69), "outpost {}: {out:?}", args.join(" "));
        let err = stderr_of(&out);
        assert!(err.contains(&format!("cannot reach the outpost daemon at {}", socket.display())), "{err}");
        assert!(err.contains("is it running"), "{err}");
        assert!(err.contains("--socket") && err.contains("--config"), "{err}");
    }
}

/// An offline config for `rules test`: results to the lab (with an MSH-5 rewrite), ADTs only to
/// an ADT archive, everything to the archive.
fn rules_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("outpost.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[node]
site = "test"
id = "gw"
state_dir = "{}"

[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:2575"

[[destination]]
name = "lis"
kind = "mllp"
connect = "127.0.0.1:6661"
transform = [{{ set = "MSH-5", value = "NEWAPP" }}]

[[destination]]
name = "archive"
kind = "file"
dir = "archive"

[[route]]
name = "results"
from = ["ehr"]
when = {{ "MSH-9.1" = "ORU" }}
to = ["lis", "archive"]

[[route]]
name = "admissions"
from = ["ehr"]
when = {{ "MSH-9.1" = "ADT" }}
to = ["archive"]
"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn write_message(dir: &std::path::Path, name: &str, msg: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, msg).unwrap();
    path
}

#[test]
fn rules_test_shows_matching_routes_destinations_and_transformed_output() {
    let dir = tempfile::tempdir().unwrap();
    let config = rules_config(dir.path());
    let msg = write_message(dir.path(), "oru.hl7", &oru("RT-1", "HH"));
    let out = outpost(&["rules", "test", "--config", config.to_str().unwrap(), msg.to_str().unwrap()]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("ORU^R01") && text.contains("control id RT-1"), "{text}");
    assert!(text.contains("✓ route results"), "{text}");
    assert!(text.contains("✗ route admissions: MSH-9.1 does not match"), "{text}");
    assert!(text.contains("result   delivered to lis, archive"), "{text}");

    let section = |dest: &str| {
        let start = text.find(&format!("--- {dest} receives")).unwrap_or_else(|| panic!("no {dest} output: {text}"));
        let rest = &text[start..];
        let end = rest[3..].find("\n--- ").map(|e| e + 3).unwrap_or(rest.len());
        rest[..end].to_string()
    };
    let lis = section("lis");
    assert!(lis.contains("(1 transform(s) applied)"), "{lis}");
    assert!(
        lis.contains("\nMSH|^~\\&|LAB|CLINIC|NEWAPP|CLINIC|20261123120000||ORU^R01^ORU_R01|RT-1|P|2.5.1\n"),
        "{lis}"
    );
    assert!(lis.contains("\nOBX|1|NM|718-7^HGB^LN||7.1|g/dL|12-16|HH|||F"), "the rest is unchanged: {lis}");
    let archive = section("archive");
    assert!(archive.contains("(unchanged)"), "{archive}");
    assert!(archive.contains("\nMSH|^~\\&|LAB|CLINIC|EHR|CLINIC|"), "the archive gets the original MSH-5: {archive}");
}

#[test]
fn rules_test_reports_a_message_no_route_takes_as_unrouted() {
    let dir = tempfile::tempdir().unwrap();
    let config = rules_config(dir.path());
    let orm = b"MSH|^~\\&|EHR|CLINIC|LIS|LAB|20261123120000||ORM^O01|RU-1|P|2.5\rPID|1||RU-1\rORC|NW|RU-1\r";
    let msg = write_message(dir.path(), "orm.hl7", orm);
    let out = outpost(&["rules", "test", "--config", config.to_str().unwrap(), msg.to_str().unwrap()]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("✗ route results: MSH-9.1 does not match"), "{text}");
    assert!(text.contains("✗ route admissions: MSH-9.1 does not match"), "{text}");
    assert!(text.contains("UNROUTED"), "{text}");
    assert!(!text.contains("receives"), "no destination output for an unrouted message: {text}");
}

#[test]
fn rules_test_json_has_routes_destinations_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let config = rules_config(dir.path());
    let msg = write_message(dir.path(), "oru.hl7", &oru("RJ-1", "N"));
    let out = outpost(&["rules", "test", "--json", "--config", config.to_str().unwrap(), msg.to_str().unwrap()]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("rules test --json is JSON");
    assert_eq!(v["source"], "ehr");
    assert_eq!(v["unrouted"], false);
    assert_eq!(v["summary"]["control_id"], "RJ-1");
    assert_eq!(v["destinations"], serde_json::json!(["lis", "archive"]));
    let routes = v["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!((routes[0]["route"].as_str(), routes[0]["matched"].as_bool()), (Some("results"), Some(true)));
    assert_eq!((routes[1]["route"].as_str(), routes[1]["matched"].as_bool()), (Some("admissions"), Some(false)));
    let outputs = v["outputs"].as_array().unwrap();
    let body_for =
        |d: &str| outputs.iter().find(|o| o["destination"] == d).unwrap()["body"].as_str().unwrap().to_string();
    assert_eq!(field(body_for("lis").as_bytes(), 5), "NEWAPP");
    assert_eq!(body_for("archive").as_bytes(), oru("RJ-1", "N"), "unchanged for the archive");

    // An unrouted message in JSON.
    let msg = write_message(dir.path(), "orm.hl7", b"MSH|^~\\&|EHR|CLINIC|LIS|LAB|20261123||ORM^O01|RJ-2|P|2.5\r");
    let out = outpost(&["rules", "test", "--json", "--config", config.to_str().unwrap(), msg.to_str().unwrap()]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["unrouted"], true);
    assert_eq!(v["destinations"], serde_json::json!([]));
}

#[test]
fn unrouted_items_are_routed_again_after_the_rules_are_fixed() {
    let sink = Sink::start(SinkMode::Accept);
    let only_oru = |extra_route: &str| conditional_route_config(sink.addr, r#""MSH-9.1" = "ORU""#) + extra_route;
    let daemon = Daemon::start(&only_oru(""));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("UR-1"))), "AA");
    assert_eq!(ack_code(&client.send(&adt("UR-2"))), "AA");
    assert_eq!(daemon.status()["journal"]["unrouted"], 2);
    let id = daemon.item("UR-1")["id"].as_str().unwrap().to_string();

    // Rules unchanged: nothing to route, and the CLI says what to do.
    let out = daemon.cli(&["queue", "retry", &id]);
    assert!(!out.status.success());
    assert!(stdout_of(&out).contains("rules test"), "{}", stdout_of(&out));

    // Fix the rules, reload, route the unrouted items again.
    daemon.rewrite_config(&only_oru(
        "\n[[route]]\nname = \"adt\"\nfrom = [\"ehr\"]\nwhen = { \"MSH-9.1\" = \"ADT\" }\nto = [\"lis\"]\n",
    ));
    assert_success(&daemon.cli(&["reload"]));
    let out = daemon.cli(&["queue", "retry", "--unrouted"]);
    assert_success(&out);
    assert!(stdout_of(&out).contains("2 unrouted item(s) routed again"), "{}", stdout_of(&out));
    wait_for("both delivered", DEADLINE, || (sink.count() == 2).then_some(()));
    let ids: Vec<String> = sink.messages().iter().map(|m| field(m, 10)).collect();
    assert_eq!(ids, vec!["UR-1", "UR-2"], "in journal order");
    let status = daemon.status();
    assert_eq!(status["journal"]["unrouted"], 0);
    let item = daemon.show(&id, false);
    assert_eq!(item["status"], "accepted");
    assert_eq!(item["routes"][0], "adt");
}

#[test]
fn every_path_exits_with_its_sysexits_code() {
    // Usage: an unknown command or flag is 64, help and version are 0.
    assert_eq!(outpost(&["no-such-command"]).status.code(), Some(64));
    assert_eq!(outpost(&["status", "--no-such-flag"]).status.code(), Some(64));
    assert_eq!(outpost(&["--help"]).status.code(), Some(0));
    assert_eq!(outpost(&["--version"]).status.code(), Some(0));

    // An input file that is not there is 66, and the message says which.
    let sink = Sink::start(SinkMode::Accept);
    let out = outpost(&["send", &sink.addr.to_string(), "/nonexistent/msg.hl7"]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
    assert!(stderr_of(&out).contains("cannot read /nonexistent/msg.hl7"), "{}", stderr_of(&out));
    let out = outpost(&["rules", "test", "/nonexistent/msg.hl7"]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");

    // A negative ACK to `send` is 65: the peer refused the data.
    let refusing = Sink::start(SinkMode::Nak("AE"));
    let file = sample("adt-a01.hl7");
    let out = output_within(outpost_command(&["send", &refusing.addr.to_string(), file.to_str().unwrap()]), DEADLINE);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(stdout_of(&out).contains(": AE"), "{}", stdout_of(&out));

    // A request the daemon refuses is 65 too.
    let daemon = Daemon::start(&basic_config(sink.addr));
    let out = daemon.cli(&["queue", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
}

#[test]
fn ports_lists_this_machines_serial_ports_as_json_and_as_a_table() {
    let out = outpost(&["ports", "--json"]);
    assert_success(&out);
    let ports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for p in ports.as_array().expect("a list") {
        assert!(p["device"].as_str().is_some_and(|d| d.starts_with("/dev/tty")), "{p}");
        assert!(p["accessible"].is_boolean(), "{p}");
    }
    let out = outpost(&["ports"]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("PATH FOR THE CONFIG") || text.contains("no serial ports found"), "{text}");
}

#[test]
fn doctor_says_what_is_wrong_and_how_to_fix_it_and_exits_69_when_something_is() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let config = format!(
        "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"{state}\"\n\n\
         [[source]]\nname = \"ehr\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[source]]\nname = \"drop\"\nkind = \"directory\"\ndir = \"{inbox}\"\n\n\
         [[destination]]\nname = \"lis\"\nkind = \"mllp\"\nconnect = \"{dead}\"\n\n\
         [[destination]]\nname = \"archive\"\nkind = \"file\"\ndir = \"archive\"\n\n\
         [[route]]\nname = \"all\"\nfrom = [\"ehr\", \"drop\"]\nto = [\"lis\", \"archive\"]\n",
        state = dir.path().join("state").display(),
        inbox = inbox.display(),
        dead = dead_addr(),
    );
    let path = dir.path().join("outpost.toml");
    std::fs::write(&path, config).unwrap();
    let out = outpost(&["doctor", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(69), "{}", stdout_of(&out));
    let text = stdout_of(&out);
    let line = |check: &str| text.lines().find(|l| l[4..].trim_start().starts_with(check)).unwrap_or("").to_string();
    assert!(
        line("destination lis").starts_with("FAIL") && line("destination lis").contains("cannot connect"),
        "{text}"
    );
    assert!(text.contains("is the receiving system's interface running"), "says what to check: {text}");
    assert!(line("source drop").starts_with("ok"), "{text}");
    assert!(line("config").starts_with("ok"), "{text}");
    assert!(!dir.path().join("state").exists(), "doctor creates nothing");

    // With the daemon running, its sources are judged live.
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let out = daemon.cli(&["doctor", "--json", "--config", daemon.config_path.to_str().unwrap()]);
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let find = |check: &str| findings.as_array().unwrap().iter().find(|f| f["check"] == check).cloned().unwrap();
    assert_eq!(find("daemon")["verdict"], "ok", "{findings:#}");
    assert_eq!(find("source ehr")["detail"], "up in the running daemon", "{findings:#}");
    assert_eq!(find("destination lis")["verdict"], "ok", "{findings:#}");
}

#[test]
fn init_writes_a_starter_config_that_checks_from_flags_or_answers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("outpost.toml");
    let f = file.to_str().unwrap();
    let out = outpost(&[
        "init",
        "--site",
        "northfield",
        "--node",
        "gw-01",
        "--listen",
        "127.0.0.1:2575",
        "--broker",
        "mqtts://central.example:8883",
        "-o",
        f,
    ]);
    assert_success(&out);
    assert_success(&outpost(&["config", "check", f]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("site = \"northfield\"") && text.contains("url = \"mqtts://central.example:8883\""),
        "{text}"
    );

    // An existing file is kept unless --force, and then kept as .orig.
    let again =
        outpost(&["init", "--site", "s", "--node", "n", "--listen", "0.0.0.0:2575", "--broker", "none", "-o", f]);
    assert_eq!(again.status.code(), Some(64), "{again:?}");
    assert!(stderr_of(&again).contains("--force"));
    let forced = outpost(&[
        "init",
        "--site",
        "s",
        "--node",
        "n",
        "--listen",
        "0.0.0.0:2575",
        "--broker",
        "none",
        "-o",
        f,
        "--force",
    ]);
    assert_success(&forced);
    assert_eq!(std::fs::read_to_string(format!("{f}.orig")).unwrap(), text);

    // Answers on stdin for what the flags leave out; the defaults by an empty line.
    let asked = dir.path().join("asked.toml");
    let mut cmd = outpost_command(&["init", "-o", asked.to_str().unwrap()]);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"eastside\ngw-7\n\nnone\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    assert_success(&outpost(&["config", "check", asked.to_str().unwrap()]));
    let text = std::fs::read_to_string(&asked).unwrap();
    assert!(
        text.contains("id = \"gw-7\"") && text.contains("listen = \"0.0.0.0:2575\"") && !text.contains("[uplink]"),
        "{text}"
    );

    // Answers a config cannot hold are refused, naming the key.
    let bad = outpost(&[
        "init",
        "--site",
        "north field",
        "--node",
        "n",
        "--listen",
        "0.0.0.0:2575",
        "--broker",
        "none",
        "-o",
        dir.path().join("bad.toml").to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(stderr_of(&bad).contains("node.site"), "{}", stderr_of(&bad));
    assert!(!dir.path().join("bad.toml").exists());

    // The package's placeholder (comments only) is replaced without --force, and no .orig kept.
    let placeholder = dir.path().join("placeholder.toml");
    std::fs::write(&placeholder, "# outpost is not configured yet: run `outpost init`.\n# [node]\n").unwrap();
    let p = placeholder.to_str().unwrap();
    let out = outpost(&["init", "--site", "s", "--node", "n", "--listen", "0.0.0.0:2575", "--broker", "none", "-o", p]);
    assert_success(&out);
    assert_success(&outpost(&["config", "check", p]));
    assert!(!dir.path().join("placeholder.toml.orig").exists());
}

/// The repository's copy of a public instrument capture.
fn astm_sample(name: &str) -> String {
    format!("{}/tests/data/astm/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn astm_decode_shows_frames_and_records_with_patient_data_masked() {
    let out = outpost(&["astm", "decode", &astm_sample("pentra-xlr-frames.txt")]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("checksum") && text.contains("R|13|^^^HGB^717-9^1|***("), "{text}");
    assert!(!text.contains("Mohale"), "a patient's name is masked: {text}");
    let shown = stdout_of(&outpost(&["astm", "decode", "--show-phi", &astm_sample("pentra-xlr-frames.txt")]));
    assert!(shown.contains("Mohale"), "--show-phi shows it: {shown}");
    // Not ASTM at all: said so, exit 65, no bytes of it quoted.
    let vidas = outpost(&["astm", "decode", &astm_sample("mini-vidas-not-astm.txt")]);
    assert_eq!(vidas.status.code(), Some(65), "{vidas:?}");
    assert!(stderr_of(&vidas).contains("not ASTM"), "{}", stderr_of(&vidas));
}

#[test]
fn rules_test_reads_an_astm_capture_and_names_the_escalation_rules_it_raises() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = {:?}\n\
             [[source]]\nname = \"hema\"\nkind = \"astm\"\nprofile = \"horiba-yumizen-h500\"\ntcp_listen = \"127.0.0.1:0\"\n\
             [[destination]]\nname = \"archive\"\nkind = \"file\"\ndir = \"archive\"\n\
             [[route]]\nname = \"patients\"\nfrom = [\"hema\"]\nwhen = {{ qc = \"false\" }}\nto = [\"archive\"]\n\
             [[escalation.rule]]\nname = \"flagged-hgb\"\nseverity = \"warning\"\nwhen = {{ test = \"HGB\", \"R.7\" = [\"H\", \"HH\", \"L\", \"LL\"] }}\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    assert_success(&outpost(&["config", "check", c]));
    let out = outpost(&["rules", "test", "--config", c, &astm_sample("yumizen-h500-session.raw")]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("ASTM results from instrument H500"), "{text}");
    assert!(text.contains("✓ route patients"), "{text}");
    assert!(text.contains("escalation rule flagged-hgb would raise a warning escalation (tests HGB)"), "{text}");
    let json = outpost(&["rules", "test", "--json", "--config", c, &astm_sample("yumizen-h500-session.raw")]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!((v["kind"].as_str(), v["item_type"].as_str()), (Some("astm"), Some("results")));
    assert_eq!(v["escalations"][0]["tests"], serde_json::json!(["HGB"]));
    assert_eq!(v["summary"]["results"], "27");
}
