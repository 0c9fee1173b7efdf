//! Intake benchmark: the real `outpost` binary, MLLP with ACK-after-commit.
//!
//! `cargo bench --bench intake` prints a Markdown report (kept in docs/PERFORMANCE.md):
//! the disk's fsync rate, one connection sending sequentially, 32 concurrent connections,
//! messages/s and ACK latency percentiles, the daemon's idle and peak RSS, and how fast the
//! backlog then drains to an MLLP destination. Environment: OUTPOST_BENCH_SEQ (messages on one
//! connection, default 3000), OUTPOST_BENCH_CONNS (default 32), OUTPOST_BENCH_PER_CONN
//! (default 1000), OUTPOST_BENCH_BIN (the outpost binary to run, default this build's).
//!
//! Then "journal on flash" (`flash/`): outpost and a reference server (append + fdatasync per
//! message) under the slow-sync shim (`slowsync/`), on the real disk and with each sync made
//! slower; syncs, commits and bytes written per message, write amplification, peak RSS.
//! Environment: OUTPOST_BENCH_SYNC_US (latency added per sync, default 2000),
//! OUTPOST_BENCH_FLASH_SEQ (1 KiB messages on one connection, default 2000),
//! OUTPOST_BENCH_FLASH_PER_CONN (1 KiB messages per connection with OUTPOST_BENCH_CONNS
//! connections, default 200), OUTPOST_BENCH_FLASH_BIG_SEQ (64 KiB messages on one connection,
//! default 200), OUTPOST_BENCH_FLASH_BIG_PER_CONN (64 KiB messages per connection, default 10),
//! OUTPOST_BENCH_FLASH_UPLINK=0 (leave out the uplink run, which needs mosquitto),
//! OUTPOST_BENCH_FLASH=0 (leave out the section), OUTPOST_BENCH_FLASH=only (only the section).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outpost::mllp;

mod common;
mod flash;
#[path = "slowsync/mod.rs"]
mod slowsync;
use common::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // Re-executed as the flash section's reference server.
    if let Ok(dir) = std::env::var(flash::REFERENCE_ENV) {
        flash::reference_main(&dir);
        return;
    }
    // `cargo bench` passes `--bench`; ignore arguments.
    let flash_mode = std::env::var("OUTPOST_BENCH_FLASH").unwrap_or_default();
    let conns = env_usize("OUTPOST_BENCH_CONNS", 32);
    if flash_mode != "only" {
        intake(conns);
    }
    if flash_mode != "0" {
        flash::run(&flash::Knobs::from_env(conns));
    }
}

/// The MLLP intake section (the real disk, the daemon alone).
fn intake(conns: usize) {
    let seq_n = env_usize("OUTPOST_BENCH_SEQ", 3000);
    let per_conn = env_usize("OUTPOST_BENCH_PER_CONN", 1000);

    let dir = tempfile::tempdir().expect("tempdir");
    let fsync_rate = measure_fsync_rate(dir.path(), 4096);
    // A one-message commit appends about four WAL frames (envelope, time index, delivery,
    // delivery queue index: 4 × (24 + 4096) bytes).
    let commit_fsync_rate = measure_fsync_rate(dir.path(), 4 * (24 + 4096));

    // The destination starts out unreachable (nobody listens on its port) so that intake is
    // measured alone; it is started afterwards to measure the drain.
    let sink_port = free_port();
    let config = format!(
        r#"[node]
site = "bench"
id = "bench"
state_dir = "{dir}"

[[source]]
name = "bench"
kind = "mllp"
listen = "127.0.0.1:0"
max_connections = 256

[[destination]]
name = "lis"
kind = "mllp"
connect = "127.0.0.1:{sink_port}"
retry = {{ initial_backoff = "200ms", max_backoff = "200ms" }}

[[route]]
name = "all"
from = ["bench"]
to = ["lis"]
"#,
        dir = dir.path().display()
    );
    let (mut child, addr) = start_outpost(dir.path(), &config);
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = rss_kib(&child, "VmRSS");

    let body = sample_message("X");
    // Warm-up.
    run_load(addr, 1, 200, &body, "W");

    let pid = child.0.id();
    let cpu_start = cpu_secs(pid);
    let (seq_rate, seq_lat) = run_load(addr, 1, seq_n, &body, "S");
    let (par_rate, par_lat) = run_load(addr, conns, per_conn, &body, "P");
    let intake_cpu = cpu_secs(pid) - cpu_start;
    let peak_rss = rss_kib(&child, "VmHWM");

    // Drain: start the sink, time until it has everything.
    let total = 200 + seq_n + conns * per_conn;
    let received = Arc::new(AtomicUsize::new(0));
    let sink = TcpListener::bind(("127.0.0.1", sink_port)).expect("bind sink");
    let r = received.clone();
    let drain_start = Instant::now();
    std::thread::spawn(move || sink_loop(sink, r));
    while received.load(Ordering::Relaxed) < total {
        if drain_start.elapsed() > Duration::from_secs(600) {
            panic!("drain did not finish: {} of {total}", received.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let drain_cpu = cpu_secs(pid) - cpu_start - intake_cpu;
    let peak_rss_all = rss_kib(&child, "VmHWM");
    child.stop();

    let msg_size = body.len();
    println!("## Intake benchmark ({})", machine());
    println!();
    println!("message size {msg_size} bytes; journal on {}", dir.path().display());
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| disk fsync rate (4 KiB write + fdatasync, one thread) | {fsync_rate:.0} /s |");
    println!("| disk fsync rate at commit size (16.4 KiB write + fdatasync) | {commit_fsync_rate:.0} /s |");
    println!(
        "| 1 connection, sequential send/ACK ({seq_n} msgs) | {seq_rate:.0} msg/s ({:.0}% of the 4 KiB fsync rate, {:.0}% of the commit-size rate) |",
        seq_rate * 100.0 / fsync_rate,
        seq_rate * 100.0 / commit_fsync_rate
    );
    println!("| 1 connection ACK latency p50 / p99 | {:.2} ms / {:.2} ms |", pct(&seq_lat, 50.0), pct(&seq_lat, 99.0));
    println!("| {conns} connections ({} msgs) | {par_rate:.0} msg/s |", conns * per_conn);
    println!(
        "| {conns} connections ACK latency p50 / p99 | {:.2} ms / {:.2} ms |",
        pct(&par_lat, 50.0),
        pct(&par_lat, 99.0)
    );
    // CPU per message: what the build costs, apart from the disk's sync latency (which
    // dominates the rates above and varies from run to run).
    println!(
        "| daemon CPU per message: intake / drain | {:.0} µs / {:.0} µs |",
        intake_cpu * 1e6 / (seq_n + conns * per_conn) as f64,
        drain_cpu * 1e6 / total as f64
    );
    println!("| idle RSS after start | {:.1} MiB |", idle_rss as f64 / 1024.0);
    println!("| peak RSS during intake | {:.1} MiB |", peak_rss as f64 / 1024.0);
    println!(
        "| drain of {total} msgs to an MLLP destination | {:.0} msg/s ({drain_secs:.1} s) |",
        total as f64 / drain_secs
    );
    println!("| peak RSS including drain | {:.1} MiB |", peak_rss_all as f64 / 1024.0);
}

fn measure_fsync_rate(dir: &std::path::Path, size: usize) -> f64 {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; size];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    n as f64 / start.elapsed().as_secs_f64()
}

fn sink_loop(listener: TcpListener, received: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let received = received.clone();
        std::thread::spawn(move || {
            let mut d = mllp::Decoder::new(1 << 24);
            let mut buf = vec![0u8; 65536];
            let mut frames = Vec::new();
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                d.push(&buf[..n], &mut frames);
                for f in frames.drain(..) {
                    if let mllp::Frame::Message(m) = f {
                        let text = String::from_utf8_lossy(&m);
                        let id = text.split('|').nth(9).unwrap_or("");
                        let ack = format!("MSH|^~\\&|S|S|||20260101||ACK|{id}|P|2.5\rMSA|AA|{id}\r");
                        if s.write_all(&mllp::encode(ack.as_bytes())).is_err() {
                            return;
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
}
