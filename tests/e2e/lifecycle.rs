//! The daemon's life: stop, reload (SIGHUP and `outpost reload`), transforms and routing
//! modes as configured, and refusing to run twice.

use std::net::SocketAddr;

use crate::support::*;

/// basic_config plus a file destination `extra` and a route sending every message there.
fn with_extra_destination(sink: SocketAddr) -> String {
    format!(
        r#"{}
[[destination]]
name = "extra"
kind = "file"
dir = "{{dir}}/extra"

[[route]]
name = "to-extra"
from = ["ehr"]
to = ["extra"]
"#,
        basic_config(sink)
    )
}

fn wait_for_destination(daemon: &Daemon, name: &str) {
    wait_for(&format!("destination {name} in status"), DEADLINE, || {
        daemon.status()["destinations"].as_array()?.iter().any(|d| d["name"] == name).then_some(())
    });
}

#[test]
fn sigterm_while_idle_exits_successfully_and_removes_the_control_socket() {
    let sink = Sink::start(SinkMode::Accept);
    let mut daemon = Daemon::start(&basic_config(sink.addr));
    daemon.wait_for_main_loop();
    assert!(daemon.socket().exists());
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}; log:\n{}", daemon.log());
    assert!(!daemon.socket().exists(), "the control socket is removed on a clean stop");
    assert!(daemon.log().contains("outpost stopped"), "{}", daemon.log());
}

/// A clean stop leaves the journal whole in its database: the WAL copied in and emptied, so
/// the next start replays nothing and the card is written now, not after a power cut.
#[test]
fn sigterm_leaves_the_wal_copied_into_the_database() {
    let sink = Sink::start(SinkMode::Accept);
    let mut daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    for i in 0..50 {
        assert_eq!(ack_code(&client.send(&adt(&format!("WAL-{i}")))), "AA");
    }
    daemon.wait_delivered("WAL-49", "lis");
    let wal = daemon.dir.path().join("journal.db-wal");
    assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0, "the stream went through the WAL");
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}; log:\n{}", daemon.log());
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "the WAL still held {left} bytes after a clean stop");
}

#[test]
fn sighup_reload_adds_a_route_to_a_new_file_destination() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("HUP-1"))), "AA");
    daemon.wait_delivered("HUP-1", "archive");

    daemon.wait_for_main_loop();
    daemon.rewrite_config(&with_extra_destination(sink.addr));
    daemon.sighup();
    wait_for_destination(&daemon, "extra");
    // The same connection carries on after the reload.
    assert_eq!(ack_code(&client.send(&adt("HUP-2"))), "AA");
    daemon.wait_delivered("HUP-2", "extra");
    let extra: Vec<Vec<u8>> = files_in(&daemon.path("extra")).iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(extra, [adt("HUP-2")], "only messages after the reload go to the new destination");
    daemon.wait_delivered("HUP-2", "lis");
    assert_eq!(daemon.item("HUP-2")["routes"], serde_json::json!(["all", "to-extra"]));
    assert_eq!(daemon.item("HUP-1")["routes"], serde_json::json!(["all"]), "stored decisions stay");
}

#[test]
fn reload_cli_applies_a_new_config_and_reports_success() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    daemon.rewrite_config(&with_extra_destination(sink.addr));
    let out = daemon.cli(&["reload"]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("configuration reloaded"), "{text}");
    assert!(text.contains("1 source(s), 3 destination(s), 2 route(s)"), "{text}");
    // The reply comes after the switch: the new route is in force at once.
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("RL-1"))), "AA");
    daemon.wait_delivered("RL-1", "extra");
}

#[test]
fn reload_with_an_invalid_config_is_refused_and_the_old_routes_still_work() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let broken = basic_config(sink.addr).replace("to = [\"lis\", \"archive\"]", "to = [\"lis\", \"archiv\"]");
    daemon.rewrite_config(&broken);
    let out = daemon.cli(&["reload"]);
    assert!(!out.status.success(), "a bad config is refused: {out:?}");
    let err = stderr_of(&out);
    let path = daemon.config_path.display().to_string();
    let text = std::fs::read_to_string(&daemon.config_path).unwrap();
    let line = text.lines().position(|l| l.contains("\"archiv\"")).unwrap() + 1;
    assert!(err.contains(&format!("{path}:{line}:")), "the error names file and line: {err}");
    assert!(err.contains("route[0].to[1]") && err.contains("there is no destination named \"archiv\""), "{err}");

    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("OLD-1"))), "AA");
    daemon.wait_delivered("OLD-1", "lis");
    daemon.wait_delivered("OLD-1", "archive");
    assert_eq!(daemon.item("OLD-1")["routes"], serde_json::json!(["all"]));
}

#[test]
fn reload_adding_a_listener_on_a_taken_address_is_refused_and_the_old_listener_still_answers() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let old = daemon.addr("ehr");
    let mut client = Client::connect(old);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let config = format!(
        "{}\n[[source]]\nname = \"lab\"\nkind = \"mllp\"\nlisten = \"{taken_addr}\"\n",
        with_extra_destination(sink.addr)
    );
    daemon.rewrite_config(&config);
    let out = daemon.cli(&["reload"]);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr_of(&out);
    assert!(err.contains(&format!("cannot listen on {taken_addr}")), "{err}");
    assert!(err.contains("already listens there"), "says what is wrong: {err}");

    // Nothing changed: same listener, same connection, old routes only.
    assert_eq!(daemon.addr("ehr"), old);
    assert_eq!(ack_code(&client.send(&adt("TAKEN-1"))), "AA");
    assert_eq!(ack_code(&Client::connect(old).send(&adt("TAKEN-2"))), "AA");
    daemon.wait_delivered("TAKEN-2", "lis");
    assert_eq!(daemon.item("TAKEN-2")["routes"], serde_json::json!(["all"]), "the new route is not in force");
    assert_eq!(daemon.status()["sources"].as_array().unwrap().len(), 1);
}

#[test]
fn reload_moving_a_listener_to_a_taken_address_is_refused_and_the_old_listener_still_answers() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let old = daemon.addr("ehr");
    let mut client = Client::connect(old);
    assert_eq!(ack_code(&client.send(&adt("MOVE-0"))), "AA");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    daemon.rewrite_config(&basic_config(sink.addr).replace("127.0.0.1:0", &taken_addr.to_string()));
    let out = daemon.cli(&["reload"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr_of(&out).contains(&format!("cannot listen on {taken_addr}")), "{}", stderr_of(&out));

    // "A listener that cannot bind changes nothing": the open connection and the old address
    // still answer.
    let ack = client.try_send(&adt("MOVE-1"));
    assert_eq!(ack.as_deref().map(ack_code).as_deref(), Some("AA"), "the open connection still answers");
    std::net::TcpStream::connect(old).expect("the old address still accepts connections");
    assert_eq!(ack_code(&Client::connect(old).send(&adt("MOVE-2"))), "AA");
    assert_eq!(daemon.addr("ehr"), old, "the listener is still on its old address");
}

/// A transform on one destination rewrites its copy only.
fn with_ssn(msh5: &str, ssn: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EHR|CLINIC|{msh5}|LAB|20261123120000||ADT^A01^ADT_A01|TR-1|P|2.5\rEVN|A01|20261123120000\rPID|1||TR-1^^^CLINIC^MR||TEST^PATIENT||19700101|F|||||||||||{ssn}|DL-77\rPV1|1|O\r"
    )
    .into_bytes()
}

#[test]
fn a_destinations_transforms_rewrite_its_copy_while_the_journal_keeps_the_original() {
    let sink = Sink::start(SinkMode::Accept);
    let config = basic_config(sink.addr).replace(
        "retry = { initial_backoff = \"100ms\", max_backoff = \"500ms\" }",
        "retry = { initial_backoff = \"100ms\", max_backoff = \"500ms\" }\ntransform = [{ set = \"MSH-5\", value = \"LIS2\" }, { clear = \"PID-19\" }]",
    );
    assert!(config.contains("LIS2"), "test setup");
    let daemon = Daemon::start(&config);
    let original = with_ssn("LIS", "123-45-6789");
    assert!(String::from_utf8_lossy(&original).contains("|F|||||||||||123-45-6789|DL-77"), "PID-19 is the SSN");
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&original)), "AA");
    daemon.wait_delivered("TR-1", "lis");
    assert_eq!(sink.messages(), [with_ssn("LIS2", "")], "MSH-5 rewritten and PID-19 emptied, nothing else changed");
    let id = daemon.item("TR-1")["id"].as_str().unwrap().to_string();
    assert_eq!(daemon.body(&id), original, "the journal keeps the bytes received");
    daemon.wait_delivered("TR-1", "archive");
    let archived: Vec<Vec<u8>> = files_in(&daemon.path("archive")).iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(archived, [original], "a destination without transforms gets the original");
}

/// Two file destinations; an ADT-only route to `first`, a catch-all to `second`.
fn two_routes(mode: &str) -> String {
    format!(
        r#"
[routing]
mode = "{mode}"

[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "first"
kind = "file"
dir = "{{dir}}/first"

[[destination]]
name = "second"
kind = "file"
dir = "{{dir}}/second"

[[route]]
name = "adt"
from = ["ehr"]
when = {{ "MSH-9.1" = "ADT" }}
to = ["first"]

[[route]]
name = "everything"
from = ["ehr"]
to = ["second"]
"#
    )
}

fn destinations_of(item: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> =
        item["deliveries"].as_array().unwrap().iter().map(|d| d["destination"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

#[test]
fn first_match_routing_delivers_only_to_the_first_matching_route() {
    let daemon = Daemon::start(&two_routes("first-match"));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("FM-1"))), "AA");
    assert_eq!(ack_code(&client.send(&oru("FM-2", "N"))), "AA");
    daemon.wait_delivered("FM-1", "first");
    daemon.wait_delivered("FM-2", "second");
    let adt_item = daemon.item("FM-1");
    assert_eq!(adt_item["routes"], serde_json::json!(["adt"]));
    assert_eq!(destinations_of(&adt_item), ["first"], "the catch-all is not used for the ADT");
    assert_eq!(files_in(&daemon.path("first")).len(), 1);
    assert_eq!(files_in(&daemon.path("second")).len(), 1, "only the ORU reached the catch-all");
    assert_eq!(daemon.status()["routing_mode"], "first-match");
}

#[test]
fn all_matches_routing_delivers_to_every_matching_route() {
    let daemon = Daemon::start(&two_routes("all-matches"));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("AM-1"))), "AA");
    daemon.wait_delivered("AM-1", "first");
    daemon.wait_delivered("AM-1", "second");
    let item = daemon.item("AM-1");
    assert_eq!(item["routes"], serde_json::json!(["adt", "everything"]));
    assert_eq!(destinations_of(&item), ["first", "second"]);
    assert_eq!(std::fs::read(&files_in(&daemon.path("first"))[0]).unwrap(), adt("AM-1"));
    assert_eq!(std::fs::read(&files_in(&daemon.path("second"))[0]).unwrap(), adt("AM-1"));
}

#[test]
fn a_condition_on_obx_8_routes_critical_results_and_leaves_normal_ones_unrouted() {
    let sink = Sink::start(SinkMode::Accept);
    let config = format!(
        r#"
[[source]]
name = "lab"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "pager"
kind = "mllp"
connect = "{}"

[[route]]
name = "critical"
from = ["lab"]
when = {{ "OBX-8" = "HH" }}
to = ["pager"]
"#,
        sink.addr
    );
    let daemon = Daemon::start(&config);
    let mut client = Client::connect(daemon.addr("lab"));
    assert_eq!(ack_code(&client.send(&oru("CRIT-1", "HH"))), "AA");
    assert_eq!(ack_code(&client.send(&oru("NORM-1", "N"))), "AA", "an unrouted message is still accepted");
    daemon.wait_delivered("CRIT-1", "pager");
    assert_eq!(sink.messages(), [oru("CRIT-1", "HH")]);
    let normal = daemon.item("NORM-1");
    assert_eq!(normal["status"], "unrouted", "{normal:#}");
    assert_eq!(normal["deliveries"], serde_json::json!([]));
    assert_eq!(daemon.status()["journal"]["unrouted"], 1);
    let unrouted = daemon.cli_json(&["queue", "ls", "--state", "unrouted", "--json"]);
    let ids: Vec<&str> =
        unrouted.as_array().unwrap().iter().map(|i| i["summary"]["control_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["NORM-1"]);
}

#[test]
fn a_second_daemon_on_the_same_state_dir_and_socket_refuses_to_start() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let mut second = outpost_command(&["run", "--config", daemon.config_path.to_str().unwrap()]);
    second.env("OUTPOST_LOG", "off");
    let out = output_within(second, DEADLINE);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr_of(&out);
    assert!(err.contains("another outpost is already running"), "{err}");
    assert!(err.contains(&daemon.path("journal.db").display().to_string()), "names the journal: {err}");
    // The first one is unharmed: its socket still answers and it still takes messages.
    assert!(daemon.socket().exists());
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("TWICE-1"))), "AA");
    daemon.wait_delivered("TWICE-1", "lis");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_with_another_socket_refuses_to_start() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let text = std::fs::read_to_string(&daemon.config_path).unwrap();
    let other_socket = daemon.path("other.sock");
    let config = text.replace(&daemon.socket().display().to_string(), &other_socket.display().to_string());
    assert_ne!(config, text, "test setup");
    let path = daemon.path("second.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = outpost_command(&["run", "--config", path.to_str().unwrap()]);
    cmd.env("OUTPOST_LOG", "off");
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Either it exits by itself (right), or it comes up on the shared journal (wrong).
    let outcome = wait_for("the second daemon to exit or come up", DEADLINE, || {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(Err(status));
        }
        outpost::control::client::request(&other_socket, &outpost::control::protocol::Request::Status).ok().map(Ok)
    });
    let _ = child.kill();
    let _ = child.wait();
    match outcome {
        Err(status) => assert!(!status.success(), "{status}"),
        Ok(status) => panic!("a second daemon runs on the same journal {}: {status}", status["journal"]["path"]),
    }
}

#[test]
fn a_second_daemon_that_refuses_to_start_leaves_the_running_daemons_journal_alone() {
    let sink = Sink::start(SinkMode::Silent);
    let daemon = Daemon::start(&basic_config(sink.addr).replace("ack_timeout = \"2s\"", "ack_timeout = \"10m\""));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("INFLIGHT-1"))), "AA");
    // The archive has it (its progress committed); lis is waiting for an answer that never
    // comes, so the running daemon writes nothing more.
    let states = || {
        let item = daemon.cli_json(&["queue", "show", "1", "--json"]);
        let mut states: Vec<(String, String)> = item["deliveries"]
            .as_array()?
            .iter()
            .map(|d| Some((d["destination"].as_str()?.to_string(), d["state"].as_str()?.to_string())))
            .collect::<Option<_>>()?;
        states.sort();
        Some(states)
    };
    let expected = vec![("archive".to_string(), "delivered".to_string()), ("lis".to_string(), "pending".to_string())];
    wait_for("the archive to have the item", DEADLINE, || (states()? == expected).then_some(()));
    let files =
        || ["journal.db", "journal.db-wal"].map(|f| std::fs::read(daemon.dir.path().join(f)).unwrap_or_default());
    let before = files();
    let mut second = outpost_command(&["run", "--config", daemon.config_path.to_str().unwrap()]);
    second.env("OUTPOST_LOG", "off");
    let out = output_within(second, DEADLINE);
    assert!(stderr_of(&out).contains("another outpost is already running"), "{out:?}");
    assert!(files() == before, "the refused daemon wrote to the running daemon's journal");
    assert_eq!(states(), Some(expected), "the running daemon's deliveries stand as they were");
}

#[test]
fn sigterm_during_a_stream_drains_and_loses_nothing_acknowledged() {
    let sink = Sink::start(SinkMode::Accept);
    let mut daemon = Daemon::start(&basic_config(sink.addr));
    daemon.wait_for_main_loop();
    let addr = daemon.addr("ehr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let sender = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        for i in 0.. {
            let id = format!("TERM-{i:05}");
            match client.try_send(&adt(&id)) {
                Some(ack) if ack_code(&ack) == "AA" => {
                    if tx.send(id).is_err() {
                        return;
                    }
                }
                // Refused while stopping, or the connection closed: the sender keeps the message.
                _ => return,
            }
        }
    });
    let mut acked: Vec<String> = (0..100).map(|_| rx.recv_timeout(DEADLINE).expect("acks")).collect();
    let status = daemon.terminate();
    assert!(status.success(), "graceful exit: {status}");
    sender.join().unwrap();
    acked.extend(rx.try_iter());
    daemon.spawn();
    wait_for("every acknowledged message delivered", DEADLINE, || {
        let seen: std::collections::HashSet<String> = sink.messages().iter().map(|m| field(m, 10)).collect();
        acked.iter().all(|id| seen.contains(id)).then_some(())
    });
}

#[test]
fn sigint_stops_the_daemon_cleanly_after_it_acknowledged_a_message() {
    let sink = Sink::start(SinkMode::Accept);
    let mut daemon = Daemon::start(&basic_config(sink.addr));
    daemon.wait_for_main_loop();
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("INT-1"))), "AA");
    let status = daemon.stop_with("INT");
    assert!(status.success(), "exit status {status}");
    assert!(!daemon.socket().exists(), "the control socket is removed");
    assert!(daemon.log().contains("SIGINT"), "the log says why it stopped");
}

#[test]
fn a_journal_refuses_a_config_that_names_another_gateway() {
    let sink = Sink::start(SinkMode::Accept);
    let mut daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("OWN-1"))), "AA");
    drop(client);
    assert!(daemon.terminate().success());

    // The same state directory under another node id: its items must never go to central as
    // this other gateway's.
    let text = std::fs::read_to_string(&daemon.config_path).unwrap();
    let renamed = text.replace("id = \"gw\"", "id = \"gw-2\"");
    assert_ne!(renamed, text, "test setup");
    let path = daemon.path("renamed.toml");
    std::fs::write(&path, renamed).unwrap();
    let mut run = outpost_command(&["run", "--config", path.to_str().unwrap()]);
    run.env("OUTPOST_LOG", "off");
    let out = output_within(run, DEADLINE);
    assert_eq!(out.status.code(), Some(69), "unavailable: {out:?}");
    let err = stderr_of(&out);
    assert!(err.contains("belongs to gateway test/gw") && err.contains("test/gw-2"), "{err}");
    assert!(err.contains("node.state_dir"), "says what to do: {err}");

    // Its own config still opens it, with the item still there.
    daemon.spawn();
    daemon.wait_delivered("OWN-1", "lis");
}
