//! The directory source against the real binary: files dropped into a real folder, messages
//! delivered to a real MLLP sink, the journal on disk, kill -9 in the middle.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

/// A directory source `drop` over `{dir}/inbox` routed to an MLLP sink; `extra` is appended to
/// the source's table.
fn folder_config(sink: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[[source]]
name = "drop"
kind = "directory"
dir = "inbox"
rescan = "1s"
{extra}

[[destination]]
name = "lis"
kind = "mllp"
connect = "{sink}"
connect_timeout = "1s"
ack_timeout = "2s"
retry = {{ initial_backoff = "50ms", max_backoff = "200ms" }}

[[route]]
name = "all"
from = ["drop"]
to = ["lis"]
"#
    )
}

/// Starts the daemon with its inbox folder already there.
fn start(config: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    Daemon::start_in(dir, config)
}

fn inbox(daemon: &Daemon) -> PathBuf {
    daemon.path("inbox")
}

/// Writes a file the way exporters should: under a `.part` name, then renamed in.
fn drop_file(dir: &Path, name: &str, bytes: &[u8]) {
    let part = dir.join(format!("{name}.part"));
    std::fs::write(&part, bytes).unwrap();
    std::fs::rename(part, dir.join(name)).unwrap();
}

fn control_ids(sink: &Sink) -> Vec<String> {
    sink.messages().iter().map(|m| field(m, 10)).collect()
}

fn wait_for_ids(sink: &Sink, n: usize) -> Vec<String> {
    wait_for(&format!("{n} distinct messages at the sink"), DEADLINE, || {
        let ids: BTreeSet<String> = control_ids(sink).into_iter().collect();
        (ids.len() >= n).then(|| ids.into_iter().collect())
    })
}

fn regular_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn single_and_batch_files_become_one_item_per_message_byte_exact_and_are_moved_after() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = start(&folder_config(sink.addr, "settle = \"300ms\""));
    let single = adt("DIR-1");
    let (b1, b2, b3) = (oru("DIR-B1", "N"), adt("DIR-B2"), oru("DIR-B3", "H"));
    let mut batch = b"FHS|^~\\&|EHR|CLINIC|||20261129\rBHS|^~\\&|EHR|CLINIC|||20261129\r".to_vec();
    for m in [&b1, &b2, &b3] {
        batch.extend_from_slice(m);
    }
    batch.extend_from_slice(b"BTS|3\rFTS|1\r");
    drop_file(&inbox(&daemon), "single.hl7", &single);
    drop_file(&inbox(&daemon), "batch.hl7", &batch);

    wait_for_ids(&sink, 4);
    let delivered = sink.messages();
    for m in [&single, &b1, &b2, &b3] {
        assert!(delivered.contains(m), "each message delivered byte for byte");
    }
    assert_eq!(delivered.len(), 4, "the batch envelope segments are not items");
    let item = daemon.item("DIR-B2");
    assert_eq!(item["summary"]["file"], "batch.hl7", "the file name is in the summary: {item}");
    assert_eq!(item["kind"], "hl7v2");
    wait_for("both files moved to processed/", DEADLINE, || {
        let moved = regular_files(&inbox(&daemon).join("processed"));
        (moved.len() == 2 && regular_files(&inbox(&daemon)).is_empty()).then_some(())
    });
    let st = &daemon.status()["sources"][0];
    assert_eq!(
        (st["kind"].as_str(), st["state"].as_str(), st["received"].as_u64()),
        (Some("directory"), Some("up"), Some(4))
    );
}

#[test]
fn a_latin1_file_written_slowly_is_taken_once_complete_and_unchanged() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = start(&folder_config(sink.addr, "settle = \"2s\"\nafter = \"delete\""));
    let mut message = adt("DIR-LATIN");
    let at = message.windows(7).position(|w| w == b"PATIENT").unwrap();
    message.splice(at..at + 7, b"J\xe9R\xd4ME".iter().copied());
    // Written in pieces through one open handle, each well within the settle time: a file
    // still growing must not be read.
    let path = inbox(&daemon).join("slow.hl7");
    let mut f = std::fs::File::create(&path).unwrap();
    for piece in message.chunks(message.len() / 5 + 1) {
        f.write_all(piece).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    drop(f);
    wait_for_ids(&sink, 1);
    assert_eq!(sink.messages(), vec![message.clone()], "one item, the whole file, latin-1 bytes unchanged");
    let item = daemon.item("DIR-LATIN");
    assert_eq!(daemon.body(item["id"].as_str().unwrap()), message);
    wait_for("the file deleted", DEADLINE, || (!path.exists()).then_some(()));
}

#[test]
fn a_file_that_is_not_hl7_is_kept_as_rejected_and_moved_aside_once() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = start(&folder_config(sink.addr, "settle = \"300ms\""));
    drop_file(&inbox(&daemon), "scan.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n");
    drop_file(&inbox(&daemon), "good.hl7", &adt("DIR-GOOD"));
    wait_for_ids(&sink, 1);
    wait_for("the PDF in rejected/", DEADLINE, || {
        regular_files(&inbox(&daemon).join("rejected")).contains(&"scan.pdf".to_string()).then_some(())
    });
    let rejected = daemon.cli_json(&["queue", "ls", "--state", "rejected", "--json"]);
    let rejected = rejected.as_array().unwrap();
    assert_eq!(rejected.len(), 1, "kept once as a rejected item: {rejected:?}");
    assert_eq!(rejected[0]["summary"]["file"], "scan.pdf");
    // Several rescans later it has not come back into the loop.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(daemon.cli_json(&["queue", "ls", "--state", "rejected", "--json"]).as_array().unwrap().len(), 1);
    assert_eq!(daemon.status()["sources"][0]["rejected"], 1);
}

#[test]
fn a_file_that_cannot_be_taken_is_reported_and_tried_again_without_holding_up_others() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = start(&folder_config(sink.addr, "settle = \"300ms\"\nmax_file_size = \"1KiB\"\nretry_after = \"1s\""));
    let mut big = adt("DIR-BIG");
    big.extend(std::iter::repeat_n(b'Z', 1500));
    big.push(b'\r');
    drop_file(&inbox(&daemon), "big.hl7", &big);
    drop_file(&inbox(&daemon), "small.hl7", &adt("DIR-SMALL"));
    assert_eq!(wait_for_ids(&sink, 1), vec!["DIR-SMALL".to_string()]);
    let st = wait_for("the problem in status", DEADLINE, || {
        let st = daemon.status()["sources"][0].clone();
        st["last_error"].as_str().is_some_and(|e| e.contains("max_file_size")).then_some(st)
    });
    assert_eq!(st["state"], "up", "a file it cannot take does not take the source down: {st}");
    let out = daemon.cli(&["status"]);
    assert!(stdout_of(&out).contains("max_file_size"), "status says why: {}", stdout_of(&out));
    assert!(inbox(&daemon).join("big.hl7").exists(), "the file is left where it was");
    wait_for("the escalation", DEADLINE, || daemon.log().contains("source_problem").then_some(()));
    assert!(!stdout_of(&out).contains("big.hl7"), "file names (PHI) stay out of status");
}

#[test]
fn kill_9_among_200_files_loses_no_message_and_files_waiting_at_start_are_taken() {
    let sink = Sink::start(SinkMode::Accept);
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    // Waiting before the daemon starts.
    for i in 0..200 {
        drop_file(&inbox, &format!("f{i:03}.hl7"), &adt(&format!("KILL-{i:03}")));
    }
    let mut daemon = Daemon::start_in(dir, &folder_config(sink.addr, "settle = \"200ms\""));
    wait_for("some files taken", DEADLINE, || (sink.count() >= 20).then_some(()));
    daemon.kill9();
    let before = sink.count();
    daemon.spawn();
    let ids = wait_for_ids(&sink, 200);
    assert_eq!(ids.len(), 200, "every message delivered");
    wait_for("the folder empty", DEADLINE, || regular_files(&daemon.path("inbox")).is_empty().then_some(()));
    let st = daemon.status()["sources"][0].clone();
    let stored = st["received"].as_u64().unwrap();
    let dups = st["duplicates"].as_u64().unwrap();
    eprintln!("kill -9 after {before} deliveries; after restart: {stored} stored, {dups} recognised as duplicates");
    assert_eq!(dups, 0, "a file is journaled whole or not at all: none is read twice into the journal");
    let items = wait_for("200 deliveries recorded in the journal", DEADLINE, || {
        let items = daemon.cli_json(&["queue", "ls", "--state", "delivered", "--limit", "1000", "--json"]);
        let items = items.as_array()?.clone();
        (items.len() >= 200).then_some(items)
    });
    let mut seen = BTreeSet::new();
    for it in &items {
        assert!(seen.insert(it["summary"]["control_id"].as_str().unwrap().to_string()), "stored twice: {it}");
    }
}

#[test]
fn a_taken_file_that_cannot_be_moved_is_reported_then_moved_once_possible_and_never_stored_twice() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = start(&folder_config(sink.addr, "settle = \"300ms\"\nretry_after = \"1s\"\nmove_to = \"done\""));
    // Where taken files go is not a folder any more (a tech's slip, a share gone): even root
    // cannot move a file into it.
    let processed = daemon.path("done");
    std::fs::remove_dir(&processed).unwrap();
    std::fs::write(&processed, b"not a folder").unwrap();
    drop_file(&inbox(&daemon), "m.hl7", &adt("DIR-MOVE"));

    assert_eq!(wait_for_ids(&sink, 1), vec!["DIR-MOVE".to_string()], "its message is taken and delivered");
    let st = wait_for("the problem in status", DEADLINE, || {
        let st = daemon.status()["sources"][0].clone();
        st["last_error"].as_str().is_some_and(|e| e.contains("cannot be moved")).then_some(st)
    });
    assert!(inbox(&daemon).join("m.hl7").exists(), "the file stays until it can be moved: {st}");
    wait_for("the escalation", DEADLINE, || daemon.log().contains("source_problem").then_some(()));
    let above_debug: Vec<String> = daemon.log().lines().filter(|l| !l.contains("DEBUG")).map(String::from).collect();
    assert!(!above_debug.iter().any(|l| l.contains("m.hl7")), "file names (PHI) stay out of the log above debug");

    // Fixed: the next try finds the file already taken (the journal's record) and only moves it.
    std::fs::remove_file(&processed).unwrap();
    std::fs::create_dir(&processed).unwrap();
    wait_for("the file moved", DEADLINE, || processed.join("m.hl7").exists().then_some(()));
    let st = wait_for("the problem cleared", DEADLINE, || {
        let st = daemon.status()["sources"][0].clone();
        st["last_error"].is_null().then_some(st)
    });
    assert_eq!((st["received"].as_u64(), st["duplicates"].as_u64()), (Some(1), Some(0)), "stored once: {st}");
    let all = daemon.cli_json(&["queue", "ls", "--state", "all", "--json"]);
    let copies = all.as_array().unwrap().iter().filter(|it| it["summary"]["control_id"] == "DIR-MOVE").count();
    assert_eq!(copies, 1, "one item in the journal");
    assert_eq!(sink.count(), 1, "delivered once");
}

#[test]
fn a_second_source_on_a_watched_folder_is_refused_at_reload_and_the_first_keeps_working() {
    let sink = Sink::start(SinkMode::Accept);
    let config = folder_config(sink.addr, "settle = \"300ms\"");
    let daemon = start(&config);
    let twice = format!(
        "{config}\n[[source]]\nname = \"again\"\nkind = \"directory\"\ndir = \"inbox\"\n\n[[route]]\nname = \"again\"\nfrom = [\"again\"]\nto = [\"lis\"]\n"
    );
    daemon.rewrite_config(&twice);
    let out = daemon.cli(&["reload"]);
    assert!(!out.status.success(), "refused");
    let err = stderr_of(&out);
    assert!(err.contains("already used by source `drop`"), "says which source holds it: {err}");
    drop_file(&inbox(&daemon), "after.hl7", &adt("DIR-AFTER"));
    assert_eq!(wait_for_ids(&sink, 1), vec!["DIR-AFTER".to_string()]);
}
