//! Uplink drain benchmark: the real `outpost` binary, a real mosquitto, the example central
//! consumer storing and acknowledging.
//!
//! `cargo bench --bench uplink` journals N 1 KiB messages (default 100,000) over MLLP while
//! central is away (no central state: items wait in the journal), measures a bare MQTT client's
//! QoS 1 publish rate of the same number and size of messages on the same broker, then starts the
//! example consumer and times the drain until the gateway's backlog is empty (every item stored
//! and acknowledged end to end), sampling the gateway's RSS. Prints a Markdown table (kept in
//! docs/PERFORMANCE.md). Environment: OUTPOST_BENCH_UPLINK_N (messages, default 100000),
//! OUTPOST_BENCH_BIN (the outpost binary, default this build's), MOSQUITTO (the broker binary).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::mqtt::*;
use common::*;

fn main() {
    let n: usize = std::env::var("OUTPOST_BENCH_UPLINK_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");

    let port = free_port();
    let broker = start_broker(dir.path(), port);
    let url = format!("mqtt://127.0.0.1:{port}");

    let config = format!(
        r#"[node]
site = "bench"
id = "gw-1"
state_dir = "{dir}"

[journal]
max_bytes = "2GiB"

[uplink]
url = "{url}"
# The whole backlog is historical; let it go as fast as the link takes it.
replay_rate = 1000000
max_in_flight = 3000
telemetry_interval = "10s"

[[source]]
name = "bench"
kind = "mllp"
listen = "127.0.0.1:0"
max_connections = 256

[[destination]]
name = "central"
kind = "uplink"

[[route]]
name = "all"
from = ["bench"]
to = ["central"]
"#,
        dir = dir.path().display()
    );
    let (mut gateway, addr) = start_outpost(dir.path(), &config);
    let socket = dir.path().join("control.sock");

    // Journal the backlog (central has not said it is online, so nothing goes up yet).
    let body = sample_message("X");
    let conns = 32;
    let (intake_rate, _) = run_load(addr, conns, n / conns, &body, "U");
    let total = conns * (n / conns);
    wait_until("the backlog is journaled", Duration::from_secs(60), || backlog(&socket) == Some(total as u64));
    let rss_before = rss_kib(&gateway, "VmRSS");

    // The bare client: QoS 1 publishes of the same size, each acknowledged by the broker.
    let bare_rate = bare_publish(port, total, body.len(), false);
    // The same with a QoS 1 subscriber taking every message (the broker's pass-through rate).
    let bare_sub_rate = bare_publish(port, total, body.len(), true);

    // The drain: the consumer comes up (and says central is online); time until the backlog
    // is empty, i.e. every item stored by the consumer and its acknowledgement committed.
    let store = dir.path().join("central.db");
    let consumer_bin = consumer_binary();
    let mut consumer = Running(
        Command::new(consumer_bin)
            .args(["consume", "--url", &url, "--store"])
            .arg(&store)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the example consumer"),
    );
    let mut ready = String::new();
    BufReader::new(consumer.stdout.take().expect("stdout")).read_line(&mut ready).expect("consumer output");
    assert_eq!(ready.trim(), "ready", "the consumer did not start");
    let cpu_before = [cpu_secs(gateway.id()), cpu_secs(broker.0.id()), cpu_secs(consumer.id())];
    let start = Instant::now();
    let mut peak_rss = 0;
    // Watch central's store (asking the gateway for its status counts the backlog each time,
    // which would load the gateway being measured), then wait for the last acknowledgements.
    loop {
        peak_rss = peak_rss.max(rss_kib(&gateway, "VmRSS"));
        if count_stored(&store) >= total as i64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "the drain did not finish: {} stored",
            count_stored(&store)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("the gateway released everything", Duration::from_secs(120), || backlog(&socket) == Some(0));
    let drain = start.elapsed().as_secs_f64();
    let cpu_after = [cpu_secs(gateway.id()), cpu_secs(broker.0.id()), cpu_secs(consumer.id())];
    let cpu: Vec<f64> = cpu_after.iter().zip(cpu_before).map(|(a, b)| a - b).collect();
    let stored = count_stored(&store);

    consumer.stop();
    gateway.stop();
    drop(broker);

    let rate = total as f64 / drain;
    println!("## Uplink drain benchmark ({})", machine());
    println!();
    println!("{total} messages of {} bytes; mosquitto on loopback; the example consumer stores in SQLite", body.len());
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| intake while central is away (32 connections) | {intake_rate:.0} msg/s |");
    println!("| bare client, QoS 1 publish of {total} × {} B | {bare_rate:.0} msg/s |", body.len());
    println!("| drain to central, stored and acknowledged end to end | {rate:.0} msg/s ({drain:.1} s) |");
    println!("| … as share of the bare client's rate | {:.0} % |", rate * 100.0 / bare_rate);
    println!(
        "| bare client with a QoS 1 subscriber receiving every message | {bare_sub_rate:.0} msg/s (the drain is {:.0} % of it) |",
        rate * 100.0 / bare_sub_rate
    );
    println!("| items in central's store | {stored} |");
    println!(
        "| CPU during the drain: gateway / mosquitto / consumer | {:.1} s / {:.1} s / {:.1} s (in {drain:.1} s on 2 cores) |",
        cpu[0], cpu[1], cpu[2]
    );
    println!(
        "| gateway RSS before the drain / peak during it | {:.1} MiB / {:.1} MiB |",
        rss_before as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
}

/// Publishes `n` messages of `size` bytes at QoS 1 with rumqttc (the client outpost uses) and
/// returns messages/s until the broker acknowledged the last; with `subscribed`, a second
/// rumqttc client subscribes at QoS 1 and the rate is until it has received them all.
fn bare_publish(port: u16, n: usize, size: usize, subscribed: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let topic = if subscribed { "bench/bare-sub" } else { "bench/bare" };
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        if subscribed {
            let mut o = rumqttc::MqttOptions::new("bench-sub", "127.0.0.1", port);
            o.set_keep_alive(Duration::from_secs(30));
            o.set_max_packet_size(1 << 20, 1 << 20);
            let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 1000);
            client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
            loop {
                if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
                    break;
                }
            }
            let r = received.clone();
            tokio::spawn(async move {
                let _client = client;
                while let Ok(ev) = eventloop.poll().await {
                    if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(_)) = ev {
                        r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        let mut o =
            rumqttc::MqttOptions::new(if subscribed { "bench-bare-2" } else { "bench-bare" }, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_inflight(1000);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 1000);
        let payload = vec![b'x'; size];
        let start = Instant::now();
        let publisher = tokio::spawn(async move {
            for _ in 0..n {
                client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
            }
            client
        });
        let mut acked = 0;
        while acked < n {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("bare client: {e}"),
            }
        }
        if subscribed {
            while received.load(std::sync::atomic::Ordering::Relaxed) < n {
                assert!(start.elapsed() < Duration::from_secs(300), "the subscriber did not get everything");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        let _ = publisher.await;
        rate
    })
}
