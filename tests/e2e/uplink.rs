//! The uplink end to end: the real daemon, a real mosquitto (stopped, restarted, frozen, behind
//! a proxy that goes half-open), the example consumer as central, mosquitto_sub as an
//! independent observer.

use std::time::Duration;

use serde_json::Value;

use crate::mqtt_support::*;
use crate::support::*;

const ROOT: &str = "outpost/v1/test/gw";

/// An uplink config (the daemon helper adds [node] site "test", id "gw"). `extra` goes into
/// [uplink]; `route_when` optionally limits what is routed to central.
fn config(url: &str, extra: &str) -> String {
    format!(
        r#"[uplink]
url = "{url}"
keep_alive = "2s"
reconnect_min = "100ms"
reconnect_max = "1s"
telemetry_interval = "1s"
{extra}

[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "central"
kind = "uplink"

[[route]]
name = "up"
from = ["ehr"]
to = ["central"]
"#
    )
}

/// As `config`, but only ADT messages are routed to central (others are unrouted).
fn adt_only(url: &str) -> String {
    config(url, "").replace("to = [\"central\"]", "when = { \"MSH-9.1\" = \"ADT\" }\nto = [\"central\"]")
}

fn uplink(d: &Daemon) -> Value {
    d.status()["uplink"].clone()
}

fn backlog(d: &Daemon) -> u64 {
    uplink(d)["backlog"].as_u64().unwrap_or(u64::MAX)
}

/// Sends `n` distinct ADT messages, each acknowledged AA; returns their bytes in order.
fn send(d: &Daemon, prefix: &str, n: usize) -> Vec<Vec<u8>> {
    let mut c = Client::connect(d.addr("ehr"));
    (0..n)
        .map(|i| {
            let msg = adt(&format!("{prefix}{i}"));
            let ack = c.send(&msg);
            assert_eq!(ack_code(&ack), "AA", "{ack}");
            msg
        })
        .collect()
}

fn wait_state(d: &Daemon, state: &str) -> Value {
    wait_for(&format!("uplink {state}"), DEADLINE, || {
        let u = uplink(d);
        (u["state"] == state).then_some(u)
    })
}

/// Waits until central has the gateway's birth. The gateway subscribes (to `config/set`, `cmd/+`)
/// before it publishes its birth, on the same connection, so from then on the broker hands it
/// what central publishes. The uplink's state is `connected` a moment earlier, as soon as the
/// broker accepts the connection: a config published then was lost (seen under qemu).
fn wait_birth(central: &Central) {
    wait_for("the gateway's birth at central", DEADLINE, || {
        central.observed("/state").iter().any(|b| b["status"] == "online").then_some(())
    });
}

/// Waits until central has stored `n` items and the gateway released them all.
fn wait_drained(d: &Daemon, central: &Central, n: usize) -> Vec<CentralItem> {
    wait_for(&format!("{n} items stored at central and released at the gateway"), Duration::from_secs(120), || {
        let items = central.items();
        (items.len() >= n && backlog(d) == 0).then_some(items)
    })
}

/// Central's items sorted by seq: the uplink sequence is 1..=n and the bytes are the ones sent.
fn assert_same_items(items: &[CentralItem], sent: &[Vec<u8>]) {
    assert_eq!(items.len(), sent.len(), "central stored {} items, {} were sent", items.len(), sent.len());
    for (i, (item, body)) in items.iter().zip(sent).enumerate() {
        assert_eq!(item.seq, i as i64 + 1, "uplink sequence numbers are contiguous from 1");
        assert_eq!(&item.body, body, "item {} arrived byte-identical", item.seq);
        assert_eq!(item.gateway, "test/gw");
        assert_eq!(item.source, "ehr");
    }
}

fn json_out(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn items_journaled_while_the_broker_is_down_are_delivered_and_released_after_it_starts() {
    let mut broker = Broker::start();
    let url = broker.url();
    broker.stop();
    let d = Daemon::start(&config(&url, ""));
    let down = wait_state(&d, "down");
    assert!(down["last_disconnect"].as_str().is_some_and(|s| !s.is_empty()), "{down}");
    let sent = send(&d, "B", 30);
    assert_eq!(backlog(&d), 30);
    assert!(uplink(&d)["oldest_pending_age_s"].is_u64(), "{}", uplink(&d));
    let escalations = d.status()["escalations"].to_string();
    assert!(escalations.contains("link_down"), "{escalations}");

    broker.start_again();
    let central = Central::start(&url, None, &[]);
    let items = wait_drained(&d, &central, 30);
    assert_same_items(&items, &sent);
    assert!(items.iter().all(|i| i.historical), "journaled before the session: historical");
    assert!(items.iter().all(|i| i.copies == 1), "sent once each");
    // The counters follow the journal's commit of the acknowledgements.
    wait_for("the counters to show 30 acknowledged", DEADLINE, || {
        let (u, dest) = (uplink(&d), d.destination("central"));
        (u["state"] == "connected" && u["acked"] == 30 && dest["pending"] == 0 && dest["delivered"] == 30).then_some(())
    });
    // The link_down escalation cleared once the link came back.
    wait_for("link_down to clear", DEADLINE, || {
        (!d.status()["escalations"].to_string().contains("link_down")).then_some(())
    });
}

#[test]
fn broker_killed_mid_drain_and_restarted_loses_nothing_and_keeps_order() {
    let mut broker = Broker::start();
    let url = broker.url();
    // A slow replay, so that the broker dies several times during it.
    let d = Daemon::start(&config(&url, "replay_rate = 150"));
    wait_state(&d, "connected");
    let sent = send(&d, "K", 450);
    let central = Central::start(&url, None, &[]);
    let mut last = 0;
    for round in 0..3 {
        last = wait_for(&format!("progress before kill {round}"), DEADLINE, || {
            let n = central.count();
            (n >= last + 40).then_some(n)
        });
        broker.stop();
        wait_state(&d, "down");
        broker.start_again();
    }
    let items = wait_drained(&d, &central, sent.len());
    assert_same_items(&items, &sent);

    // Within each session, items went up in journal order (re-sends only across sessions).
    let receipts = central.receipts();
    let mut sessions: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for r in &receipts {
        sessions.entry(r.session).or_default().push(r.seq);
    }
    assert!(sessions.len() >= 4, "one session per broker start: {:?}", sessions.keys());
    for (session, seqs) in &sessions {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "session {session} out of order: {seqs:?}");
    }
    let dups = receipts.len() - sent.len();
    eprintln!("{} receipts for {} items ({dups} duplicates, all across sessions)", receipts.len(), sent.len());
    assert!(uplink(&d)["reconnects"].as_u64().unwrap_or(0) >= 3);
}

#[test]
fn a_half_open_link_is_detected_and_healed_without_loss() {
    let broker = Broker::start();
    let proxy = Proxy::in_front_of(&broker);
    let central = Central::start(&broker.url(), None, &[]);
    let d = Daemon::start(&config(&proxy.url(), ""));
    let mut sent = send(&d, "H", 5);
    wait_drained(&d, &central, 5);

    // The WAN goes silent: TCP stays up, nothing gets through.
    proxy.pause();
    let down = wait_for("the silent link to be noticed", DEADLINE, || {
        let u = uplink(&d);
        (u["state"] == "down").then_some(u)
    });
    let why = down["last_disconnect"].as_str().unwrap_or("").to_string();
    assert!(why.contains("keep-alive") || why.contains("half-open") || why.contains("timeout"), "{why}");
    // Intake is unaffected; the new items wait.
    sent.extend(send(&d, "I", 10));
    assert_eq!(central.count(), 5);

    proxy.heal();
    let items = wait_drained(&d, &central, 15);
    assert_same_items(&items, &sent);
    assert!(proxy.connections() >= 2, "the gateway reconnected through the proxy");
}

#[test]
fn items_central_does_not_acknowledge_are_sent_again_and_stay_pending() {
    let broker = Broker::start();
    let url = broker.url();
    let mut deaf = Central::start(&url, None, &["--no-ack", "--client-id", "central-deaf"]);
    let d = Daemon::start(&config(&url, "ack_timeout = \"1s\""));
    send(&d, "N", 3);
    wait_for("each item to be sent at least three times", DEADLINE, || (deaf.receipts().len() >= 9).then_some(()));
    assert_eq!(backlog(&d), 3, "nothing is released without central's acknowledgement");
    assert!(uplink(&d)["resent"].as_u64().unwrap_or(0) >= 3);
    let id = deaf.items()[0].id.clone();
    let show = d.cli(&["queue", "show", &id]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("no acknowledgement from central"), "{text}");

    // A consumer that acknowledges takes over; everything is released.
    deaf.stop();
    let central = Central::start(&url, None, &["--client-id", "central-ok"]);
    wait_drained(&d, &central, 3);
}

#[test]
fn kill_9_during_the_drain_sends_unacknowledged_items_again_after_restart() {
    let broker = Broker::start();
    let url = broker.url();
    let mut d = Daemon::start(&config(&url, "replay_rate = 200"));
    wait_state(&d, "connected");
    let sent = send(&d, "D", 400);
    // Acks are slow, so plenty are in flight when the daemon dies.
    let central = Central::start(&url, None, &["--ack-delay-ms", "300"]);
    wait_for("the drain to be under way", DEADLINE, || (central.count() >= 50).then_some(()));
    let session_before = uplink(&d)["session"].as_i64().unwrap();
    d.kill9();
    d.spawn();
    let items = wait_drained(&d, &central, sent.len());
    assert_same_items(&items, &sent);
    assert!(uplink(&d)["session"].as_i64().unwrap() > session_before, "a new session after restart");
}

#[test]
fn birth_telemetry_events_and_death_are_published_without_patient_data() {
    let broker = Broker::start();
    let url = broker.url();
    let watcher = Subscriber::start(&url, &format!("{ROOT}/#"));
    let _central = Central::start(&url, None, &[]);
    // Only ADTs go to central: an ORU is unrouted and raises an event.
    let cfg = adt_only(&url);
    let mut d = Daemon::start(&cfg);

    let state_topic = format!("{ROOT}/state");
    let birth =
        watcher.wait_for_message("a birth", DEADLINE, |m| m.topic == state_topic && m.json()["status"] == "online");
    let b = birth.json();
    let config_text = std::fs::read_to_string(&d.config_path).unwrap();
    assert_eq!(b["config"]["hash"], outpost::config::text_hash(&config_text), "{b}");
    assert_eq!(b["config"]["version"], "local");
    assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(b["sources"][0]["name"], "ehr");
    assert_eq!(b["sources"][0]["link"], "listening");
    let session = b["session"].as_i64().expect("session");
    assert!(b["clock"].get("synced").is_some(), "{b}");

    let tele = watcher.wait_for_message("telemetry", DEADLINE, |m| m.topic == format!("{ROOT}/telemetry")).json();
    assert!(tele["rss_bytes"].as_u64().unwrap_or(0) > 0, "{tele}");
    assert!(tele["journal"]["free_disk_bytes"].as_u64().unwrap_or(0) > 0, "{tele}");
    assert_eq!(tele["sources"][0]["name"], "ehr");
    assert!(tele["uplink"]["backlog"].is_u64(), "{tele}");
    assert_eq!(tele["session"], session);

    let mut c = Client::connect(d.addr("ehr"));
    assert_eq!(ack_code(&c.send(&oru("SECRET-1", "LL"))), "AA");
    let event = watcher
        .wait_for_message("an unrouted event", DEADLINE, |m| {
            m.topic == format!("{ROOT}/event") && m.json()["code"] == "unrouted"
        })
        .json();
    assert_eq!(event["state"], "raised");
    assert_eq!(event["severity"], "warning");
    for m in watcher.messages().iter().filter(|m| !m.topic.contains("/msg/")) {
        let text = m.text();
        assert!(!text.contains("PATIENT") && !text.contains("SECRET-1^^^"), "patient data on {}: {text}", m.topic);
    }

    // kill -9: the broker publishes the will, naming the same session.
    d.kill9();
    let death = watcher
        .wait_for_message("the last will", DEADLINE, |m| m.topic == state_topic && m.json()["status"] == "offline");
    assert_eq!(death.json()["session"], session);
    assert_eq!(death.json()["reason"], "connection lost");
    let kept = retained(&url, None, &state_topic, 1);
    let kept: Value = serde_json::from_slice(&kept[&state_topic]).unwrap();
    assert_eq!(kept["status"], "offline", "the will is retained: {kept}");

    d.spawn();
    let rebirth = watcher.wait_for_message("a new birth", DEADLINE, |m| {
        m.topic == state_topic && m.json()["status"] == "online" && m.json()["session"].as_i64() > Some(session)
    });
    assert!(rebirth.json()["session"].as_i64().unwrap() > session);

    // A clean stop says goodbye itself.
    d.terminate();
    watcher.wait_for_message("the goodbye", DEADLINE, |m| m.topic == state_topic && m.json()["reason"] == "shutdown");
}

#[test]
fn remote_config_is_validated_applied_or_rolled_back() {
    let broker = Broker::start();
    let url = broker.url();
    let central = Central::start(&url, None, &[]);
    // Under qemu-user the daemon reconnects several times slower: a good config must not be
    // rolled back for taking longer than the window to prove itself.
    let window = if under_emulation() { "15s" } else { "5s" };
    let d = Daemon::start(&config(&url, &format!("config_rollback_after = \"{window}\"")));
    wait_birth(&central);
    let running = std::fs::read_to_string(&d.config_path).unwrap();
    let write = |name: &str, text: &str| {
        let p = d.path(name);
        std::fs::write(&p, text).unwrap();
        p
    };

    // Invalid: every error, with its place, and nothing changes.
    let bad = format!("{running}\nbogus = 1\n\n[[route]]\nname = \"x\"\nfrom = [\"nope\"]\nto = [\"central\"]\n");
    let out = central.cli.publish_config("test", "gw", &write("bad.toml", &bad), "v-bad", &["--wait-status", "30"]);
    let status = json_out(&out);
    assert_eq!(status["status"], "rejected", "{status}");
    let errors: Vec<String> =
        status["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.starts_with("outpost.toml:")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("bogus")) && errors.iter().any(|e| e.contains("nope")), "{errors:?}");

    // A listener that cannot bind: rolled back, the old listener still serves.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let unbindable = running.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    let out = central.cli.publish_config(
        "test",
        "gw",
        &write("unbindable.toml", &unbindable),
        "v-bind",
        &["--wait-status", "30"],
    );
    let status = json_out(&out);
    assert_eq!(status["status"], "rolled_back", "{status}");
    assert!(status["errors"].to_string().contains(&port.to_string()), "{status}");
    send(&d, "R", 1);
    assert_eq!(std::fs::read_to_string(&d.config_path).unwrap(), running, "the file is unchanged");

    // A good one (a second source, faster telemetry): applied, kept, announced in the birth.
    let good = running.replace("telemetry_interval = \"1s\"", "telemetry_interval = \"2s\"")
        + "\n[[source]]\nname = \"lab\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:0\"\n";
    let out = central.cli.publish_config("test", "gw", &write("good.toml", &good), "v-good", &["--wait-status", "30"]);
    let status = json_out(&out);
    assert_eq!(status["status"], "applied", "{status}");
    assert_eq!(std::fs::read_to_string(&d.config_path).unwrap(), good, "the config file now holds it");
    let last_good = std::fs::read_to_string(format!("{}.last-good", d.config_path.display())).unwrap();
    assert_eq!(last_good, running, "the previous config is kept");
    wait_for("the new source to listen", DEADLINE, || {
        d.status()["sources"].as_array()?.iter().any(|s| s["name"] == "lab" && s["bound"].is_string()).then_some(())
    });
    wait_for("a birth naming the new version", DEADLINE, || {
        central.observed("/state").iter().any(|b| b["config"]["version"] == "v-good").then_some(())
    });
    // Its uplink settings changed, so the link restarted, and said so in its death message.
    let deaths = central.observed("/state").into_iter().filter(|b| b["status"] == "offline").collect::<Vec<_>>();
    assert!(deaths.iter().any(|b| b["reason"] == "restart"), "{deaths:?}");
    drop(taken);
}

#[test]
fn commands_answer_and_state_changing_ones_are_logged() {
    let broker = Broker::start();
    let url = broker.url();
    let central = Central::start(&url, None, &[]);
    let d = Daemon::start(&config(&url, ""));
    let sent = send(&d, "C", 4);
    wait_drained(&d, &central, 4);

    let ping = json_out(&central.cli.cmd("test", "gw", "ping", None, 30));
    assert_eq!(ping["ok"], true, "{ping}");
    assert_eq!(ping["result"]["pong"], true);

    let status = json_out(&central.cli.cmd("test", "gw", "status", None, 30));
    assert_eq!(status["result"]["site"], "test", "{status}");
    assert_eq!(status["result"]["uplink"]["state"], "connected");

    let out = central.cli.cmd("test", "gw", "frobnicate", None, 30);
    assert!(!out.status.success());
    assert!(json_out(&out)["error"].as_str().unwrap_or("").contains("unknown command"));

    // Resend from seq 3: items 3 and 4 come again, flagged historical.
    let resend = json_out(&central.cli.cmd("test", "gw", "resend", Some(&serde_json::json!({"from_seq": 3})), 30));
    assert_eq!(resend["result"]["items"], 2, "{resend}");
    wait_for("the resent copies", DEADLINE, || {
        let again: Vec<_> = central.receipts().into_iter().filter(|r| r.seq >= 3 && r.historical).collect();
        (again.len() >= 2).then_some(())
    });
    let items = central.items();
    assert_same_items(&items, &sent);
    assert_eq!(items.iter().filter(|i| i.copies == 2).count(), 2);

    let retry = json_out(&central.cli.cmd("test", "gw", "retry", None, 30));
    assert_eq!(retry["result"]["items"], 0, "{retry}");
    let reload = json_out(&central.cli.cmd("test", "gw", "reload", None, 30));
    assert_eq!(reload["result"]["reloaded"], true, "{reload}");
    let births = central.observed("/state").iter().filter(|b| b["status"] == "online").count();
    let rebirth = json_out(&central.cli.cmd("test", "gw", "rebirth", None, 30));
    assert_eq!(rebirth["ok"], true, "{rebirth}");
    wait_for("a second birth", DEADLINE, || {
        (central.observed("/state").iter().filter(|b| b["status"] == "online").count() > births).then_some(())
    });
    // Who asked is logged with each command that changes something.
    let log = d.log();
    for cmd in ["resend", "retry", "reload", "rebirth"] {
        let line = log.lines().find(|l| l.contains(&format!("remote command: {cmd}"))).unwrap_or("");
        assert!(line.contains("from=") && line.contains("request="), "{cmd}: {line}\n{log}");
    }
}

#[test]
fn mutual_tls_with_client_certificates() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(certs_dir.path());
    let broker = Broker::start_tls(&certs);
    let url = broker.url();
    let central_tls = certs.client_tls("central");
    let central = Central::start(&url, Some(&central_tls), &[]);
    let gw = certs.client_tls("test:gw");
    let tls = format!("ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"", gw.ca.display(), gw.cert.display(), gw.key.display());
    let d = Daemon::start(&config(&url, &tls));
    let sent = send(&d, "T", 3);
    let items = wait_drained(&d, &central, 3);
    assert_same_items(&items, &sent);

    // Without a client certificate the broker refuses; the gateway says why and keeps the items.
    let no_cert = format!("ca = \"{}\"", gw.ca.display());
    let d2 = Daemon::start(&config(&url, &no_cert));
    send(&d2, "U", 1);
    let u = wait_for("the refusal", DEADLINE, || {
        let u = uplink(&d2);
        (u["state"] == "down" && u["last_disconnect"].is_string()).then_some(u)
    });
    assert_eq!(backlog(&d2), 1, "{u}");
}

#[test]
fn items_larger_than_the_packet_limit_go_in_chunks_and_are_reassembled() {
    let broker = Broker::start_with(BrokerOptions { message_size_limit: Some(8192), ..Default::default() });
    let url = broker.url();
    let central = Central::start(&url, None, &[]);
    let d = Daemon::start(&config(&url, "max_packet_size = \"6KiB\""));
    // A result with a 60 KiB embedded document (OBX-5, base64 as analyzers send it).
    let pdf: String = (0..60_000).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    let big = format!(
        "MSH|^~\\&|LAB|CLINIC|EHR|CLINIC|20261123120000||ORU^R01^ORU_R01|BIG1|P|2.5.1\rPID|1||1^^^C^MR\rOBX|1|ED|PDF^Report||^application^pdf^Base64^{pdf}||||||F\r"
    )
    .into_bytes();
    let mut c = Client::connect(d.addr("ehr"));
    assert_eq!(ack_code(&c.send(&big)), "AA");
    let small = send(&d, "S", 1);
    let items = wait_drained(&d, &central, 2);
    assert_same_items(&items, &[big.clone(), small[0].clone()]);
    let chunks: Vec<i64> = central.receipts().iter().filter(|r| r.seq == 1).filter_map(|r| r.chunk_index).collect();
    assert!(chunks.len() >= 10, "sent as chunks: {chunks:?}");
    assert_eq!(chunks, (0..chunks.len() as i64).collect::<Vec<_>>(), "in order");
}

#[test]
fn items_wait_while_central_is_offline() {
    let broker = Broker::start();
    let url = broker.url();
    let central = Central::start(&url, None, &[]);
    let d = Daemon::start(&config(&url, ""));
    let mut sent = send(&d, "O", 2);
    wait_drained(&d, &central, 2);

    central.cli.set_state(false);
    wait_for("the gateway to see central offline", DEADLINE, || (uplink(&d)["central_online"] == false).then_some(()));
    sent.extend(send(&d, "P", 3));
    assert_nothing_for("items sent while central is offline", Duration::from_secs(1), || {
        (central.count() > 2).then_some(central.count())
    });
    assert_eq!(backlog(&d), 3);

    central.cli.set_state(true);
    let items = wait_drained(&d, &central, 5);
    assert_same_items(&items, &sent);
    assert!(items[2..].iter().all(|i| i.historical), "held items are replayed as backlog");
}

#[test]
fn a_config_whose_uplink_cannot_connect_is_rolled_back() {
    let broker = Broker::start();
    let url = broker.url();
    let central = Central::start(&url, None, &[]);
    let d = Daemon::start(&config(&url, "config_rollback_after = \"3s\""));
    wait_birth(&central);
    let running = std::fs::read_to_string(&d.config_path).unwrap();
    // A broker address where nothing listens.
    let dead = dead_addr();
    let moved = running.replace(&url, &format!("mqtt://{dead}"));
    let file = d.path("moved.toml");
    std::fs::write(&file, &moved).unwrap();
    let out = central.cli.publish_config("test", "gw", &file, "v-dead-broker", &["--wait-status", "60"]);
    let status = json_out(&out);
    assert_eq!(status["status"], "rolled_back", "{status}");
    assert!(status["errors"].to_string().contains("uplink"), "{status}");
    // Back on the old broker, with the old file.
    wait_state(&d, "connected");
    assert_eq!(std::fs::read_to_string(&d.config_path).unwrap(), running);
    let sent = send(&d, "A", 2);
    let items = wait_drained(&d, &central, 2);
    assert_same_items(&items, &sent);
}

#[test]
fn consumers_sharing_a_subscription_store_and_acknowledge_everything_once() {
    let broker = Broker::start_with(BrokerOptions { message_size_limit: Some(8192), ..Default::default() });
    let url = broker.url();
    // Two consumers share the work (and one store, as central's consumers share a database).
    let a = Central::start(&url, None, &["--share", "central", "--client-id", "central-a"]);
    let b = Central::start_sharing_store(&url, None, &a, &["--share", "central", "--client-id", "central-b"]);
    let d = Daemon::start(&config(&url, "max_packet_size = \"6KiB\""));
    let mut sent = Vec::new();
    let mut c = Client::connect(d.addr("ehr"));
    for i in 0..40 {
        // Every fourth item is large enough to go in chunks, which the two consumers split.
        let msg = if i % 4 == 0 {
            let doc: String = (0..20_000).map(|k| (b'a' + ((k + i) % 26) as u8) as char).collect();
            format!("MSH|^~\\&|LAB|C|EHR|C|20261123120000||ORU^R01|SH{i}|P|2.5\rOBX|1|ED|PDF||^application^pdf^Base64^{doc}||||||F\r")
                .into_bytes()
        } else {
            adt(&format!("SH{i}"))
        };
        assert_eq!(ack_code(&c.send(&msg)), "AA");
        sent.push(msg);
    }
    let items = wait_drained(&d, &a, sent.len());
    assert_same_items(&items, &sent);
    // Both consumers did part of the work (each reports what it acknowledged when it stops).
    let (mut a, mut b) = (a, b);
    a.stop();
    b.stop();
    let acked = |c: &Central| -> u64 {
        let log = c.stderr();
        let last = log.lines().rev().find(|l| l.contains("acked_ids=")).unwrap_or("").to_string();
        last.split("acked_ids=")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (na, nb) = (acked(&a), acked(&b));
    assert!(na > 0 && nb > 0, "both consumers acknowledged items: {na} and {nb}\n{}\n{}", a.stderr(), b.stderr());
    assert!(na + nb >= sent.len() as u64, "{na} + {nb}");
}

#[test]
fn unrouted_items_routed_again_to_central_go_up() {
    let broker = Broker::start();
    let url = broker.url();
    let central = Central::start(&url, None, &[]);
    let only_adt = adt_only(&url);
    let d = Daemon::start(&only_adt);
    let mut c = Client::connect(d.addr("ehr"));
    let result = oru("RR1", "N");
    assert_eq!(ack_code(&c.send(&result)), "AA");
    let adts = send(&d, "RA", 2);
    wait_drained(&d, &central, 2);
    assert_eq!(d.status()["journal"]["unrouted"], 1);

    // The rules are fixed: the result is routed again and goes to central behind the others.
    d.rewrite_config(&config(&url, ""));
    let out = d.cli(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = d.cli(&["queue", "retry", "--unrouted"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items = wait_drained(&d, &central, 3);
    assert_same_items(&items, &[adts[0].clone(), adts[1].clone(), result]);
}

#[test]
fn events_raised_while_the_link_is_down_are_published_when_it_returns() {
    let broker = Broker::start();
    let proxy = Proxy::in_front_of(&broker);
    // The observer is on the broker itself, subscribed before anything happens.
    let watcher = Subscriber::start(&broker.url(), &format!("{ROOT}/event"));
    let _central = Central::start(&broker.url(), None, &[]);
    let only_adt = adt_only(&proxy.url());
    let d = Daemon::start(&only_adt);
    wait_state(&d, "connected");
    proxy.pause();
    wait_state(&d, "down");
    // An unrouted item while offline: its event waits for the link.
    let mut c = Client::connect(d.addr("ehr"));
    assert_eq!(ack_code(&c.send(&oru("OFF1", "N"))), "AA");
    assert!(watcher.messages().iter().all(|m| m.json()["code"] != "unrouted"), "published while the link was down?");
    proxy.heal();
    let events = wait_for("the queued events", DEADLINE, || {
        let e: Vec<Value> = watcher.messages().iter().map(|m| m.json()).collect();
        let unrouted = e.iter().any(|e| e["code"] == "unrouted" && e["state"] == "raised");
        let back = e.iter().any(|e| e["code"] == "link_down" && e["state"] == "cleared");
        (unrouted && back).then_some(e)
    });
    // In the order they happened: the link went down, the item arrived, the link came back.
    let pos = |code: &str, state: &str| events.iter().position(|e| e["code"] == code && e["state"] == state);
    let (down, item, up) = (pos("link_down", "raised"), pos("unrouted", "raised"), pos("link_down", "cleared"));
    assert!(down.is_some() && down < item && item < up, "{events:?}");
}

#[test]
fn events_are_kept_across_a_restart_until_central_acknowledges_them() {
    let broker = Broker::start();
    let proxy = Proxy::in_front_of(&broker);
    let watcher = Subscriber::start(&broker.url(), &format!("{ROOT}/event"));
    let mut d = Daemon::start(&adt_only(&proxy.url()));
    wait_state(&d, "connected");
    proxy.pause();
    wait_state(&d, "down");
    // An unrouted item while the link is down: its event is kept in the journal...
    let mut c = Client::connect(d.addr("ehr"));
    assert_eq!(ack_code(&c.send(&oru("KEEP1", "N"))), "AA");
    drop(c);
    // Two events are kept by then: the link going down, and the item's. Each is journaled by
    // the uplink after it is raised, in its own commit: waiting for one only could kill the
    // daemon before the item's is kept (seen under qemu, where the second commit came later).
    wait_for("both events to be kept", DEADLINE, || (uplink(&d)["events_waiting"].as_u64()? >= 2).then_some(()));
    // ... so a power cut before the link returns loses nothing.
    d.kill9();
    proxy.heal();
    d.spawn();
    let unrouted = |m: &Received| m.json()["code"] == "unrouted" && m.json()["state"] == "raised";
    let event = watcher.wait_for_message("the kept event after the restart", DEADLINE, unrouted).json();
    let id = event["id"].as_str().expect("event id").to_string();
    let copies = |id: &str| watcher.messages().iter().filter(|m| m.json()["id"] == id).count();

    // Nobody has acknowledged it: the next session sends it again.
    d.kill9();
    d.spawn();
    wait_for("the same event again", DEADLINE, || (copies(&id) >= 2).then_some(()));
    assert!(uplink(&d)["events_waiting"].as_u64().unwrap_or(0) >= 1);

    // Central comes online: it gets the event, stores it once, and acknowledges it; the gateway
    // then forgets it.
    let central = Central::start(&broker.url(), None, &[]);
    wait_for("central to store the event", DEADLINE, || {
        central.observed("/event").iter().any(|e| e["id"] == id.as_str()).then_some(())
    });
    wait_for("the gateway to forget acknowledged events", DEADLINE, || {
        (uplink(&d)["events_waiting"].as_u64()? == 0).then_some(())
    });

    // A new session does not send it again: an event raised after it connected arrives, and the
    // acknowledged one did not come before it.
    let before = copies(&id);
    d.kill9();
    d.spawn();
    wait_state(&d, "connected");
    let mut c = Client::connect(d.addr("ehr"));
    assert_eq!(ack_code(&c.send(&oru("KEEP2", "N"))), "AA");
    let later = watcher.wait_for_message("the next event", DEADLINE, |m| unrouted(m) && m.json()["id"] != id.as_str());
    assert_ne!(later.json()["subject"], event["subject"]);
    assert_eq!(copies(&id), before, "an acknowledged event was sent again");
}

#[test]
fn a_live_item_overtakes_a_rate_limited_backlog() {
    let broker = Broker::start();
    let url = broker.url();
    // Central is away while a backlog builds up; it replays at 40 items/s (ten seconds).
    let d = Daemon::start(&config(&url, "replay_rate = 40"));
    wait_state(&d, "connected");
    let backlog_sent = send(&d, "B", 400);
    let central = Central::start(&url, None, &[]);
    wait_for("the replay to start", DEADLINE, || (central.count() >= 5).then_some(()));
    // A fresh result arrives during the replay: it goes up at once, as live, not behind the
    // backlog.
    let live = send(&d, "L", 1).remove(0);
    let item = wait_for("the live item at central", DEADLINE, || central.items().into_iter().find(|i| i.body == live));
    assert!(!item.historical, "journaled during the session: live");
    let receipts = central.receipts();
    let live_arrival = receipts.iter().find(|r| r.id == item.id).map(|r| r.arrival).unwrap_or(i64::MAX);
    let replayed_before = receipts.iter().filter(|r| r.historical && r.arrival < live_arrival).count();
    assert!(
        replayed_before < backlog_sent.len() / 2,
        "{replayed_before} of {} backlog items went up before the live one",
        backlog_sent.len()
    );
    // The replay carries on behind it, and everything arrives.
    wait_drained(&d, &central, backlog_sent.len() + 1);
    let after = central.receipts().into_iter().filter(|r| r.historical && r.arrival > live_arrival).count();
    assert!(after > 0, "the backlog went on after the live item");
}
