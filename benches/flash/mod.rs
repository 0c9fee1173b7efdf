//! "Journal on flash": the intake benchmark's gateway-disk mode (issue 12).
//!
//! Every process measured here runs under the slow-sync shim (`benches/slowsync/`), twice: with
//! no added latency (the real disk; the shim only counts) and with each sync made
//! `OUTPOST_BENCH_SYNC_US` slower (2 ms by default, an SD card or eMMC flush). The servers:
//! the reference (`reference.rs`: append + fdatasync per message, then ACK), and outpost with
//! its MLLP destination down, live (a sink that ACKs at once), and live with an uplink draining
//! to the example central through a private mosquitto. Each runs on a fresh journal through the
//! same passes (1 connection, then 32, with 1 KiB ORU messages, then 64 KiB ones); per pass it
//! reports messages/s, ACK latency, syncs and commits per message, and bytes written; per run
//! the bytes written from start to stop, checkpoints included, the write amplification, peak
//! RSS; and for the live-destination run, what the retention purge of
//! everything then writes.
//!
//! Counting: syncs and the bytes per file (WAL, database) come from the shim; commits are the
//! WAL syncs the journal's writer thread makes after writing frames (SQLite syncs the WAL once
//! per commit that wrote something under `synchronous=FULL`; a WAL restart adds a header sync,
//! counted apart); bytes written per message are `/proc/PID/io` `write_bytes` (pages the process
//! dirtied, what the card will be asked to write), read at the end of a run from the zombie so
//! that shutdown's writes count. Whatever the WAL still holds then is checkpointed by the bench
//! itself (`PRAGMA wal_checkpoint(TRUNCATE)`, its bytes counted the same way and added): the
//! daemon would copy it into the database later, and this build's shutdown does not (its
//! closing checkpoint runs only once every journal handle is gone, which a SIGTERM'd daemon
//! does not wait for).

mod reference;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::mqtt::{Broker, consumer_binary, start_broker, wait_until};
use crate::common::*;
use crate::env_usize;
use crate::slowsync::{self, Counts, Slot};

/// Set (to a directory) in the bench binary's own environment when it is re-executed as the
/// reference server.
pub const REFERENCE_ENV: &str = "OUTPOST_BENCH_REFERENCE";

pub fn reference_main(dir: &str) {
    reference::serve(Path::new(dir));
}

pub struct Knobs {
    pub latency_us: u64,
    pub seq: usize,
    pub conns: usize,
    pub per_conn: usize,
    pub big_seq: usize,
    pub big_per_conn: usize,
    pub big_size: usize,
    pub uplink: bool,
}

impl Knobs {
    pub fn from_env(conns: usize) -> Knobs {
        Knobs {
            latency_us: env_usize("OUTPOST_BENCH_SYNC_US", 2000) as u64,
            seq: env_usize("OUTPOST_BENCH_FLASH_SEQ", 2000),
            conns,
            per_conn: env_usize("OUTPOST_BENCH_FLASH_PER_CONN", 200),
            big_seq: env_usize("OUTPOST_BENCH_FLASH_BIG_SEQ", 200),
            big_per_conn: env_usize("OUTPOST_BENCH_FLASH_BIG_PER_CONN", 10),
            big_size: 64 * 1024,
            uplink: std::env::var("OUTPOST_BENCH_FLASH_UPLINK").map(|v| v != "0").unwrap_or(true),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Reference,
    /// outpost, its MLLP destination unreachable (intake alone).
    Down,
    /// outpost delivering to an MLLP sink that ACKs at once.
    Live,
    /// outpost delivering to the sink and through its uplink to the example central.
    Uplink,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Reference => "reference (append + fdatasync)",
            Server::Down => "outpost, destination down",
            Server::Live => "outpost, MLLP destination live",
            Server::Uplink => "outpost, MLLP live + uplink draining",
        }
    }
}

struct Pass {
    conns: usize,
    size: usize,
    msgs: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    counts: Counts,
    write_bytes: u64,
}

struct Run {
    server: Server,
    latency_us: u64,
    passes: Vec<Pass>,
    msgs: usize,
    received_bytes: u64,
    /// From start to stop.
    counts: Counts,
    /// From start to stop, the checkpoint of the WAL left at stop included.
    write_bytes: u64,
    /// Of which that checkpoint (run by the bench).
    residue: u64,
    peak_rss_kib: u64,
    /// What purging every (delivered) item at the next start wrote: items, counters, bytes.
    purge: Option<(u64, Counts, u64)>,
}

/// Runs the section and prints its report.
pub fn run(knobs: &Knobs) {
    let shim_dir = target_dir().join("slowsync");
    let shim = slowsync::build(&shim_dir).unwrap_or_else(|e| panic!("slow-sync shim: {e}"));
    let consumer = knobs.uplink.then(consumer_binary);
    let mut runs = Vec::new();
    for latency in [0, knobs.latency_us] {
        for server in [Server::Reference, Server::Down, Server::Live, Server::Uplink] {
            if server == Server::Uplink && consumer.is_none() {
                continue;
            }
            eprintln!("flash: {} with {latency} µs added per sync", server.name());
            runs.push(run_one(knobs, &shim, server, latency, consumer.as_deref()));
        }
    }
    report(knobs, &runs);
}

/// The process under test: outpost or the reference, under the shim.
struct Subject {
    child: Running,
    addr: SocketAddr,
    socket: Option<PathBuf>,
}

fn run_one(knobs: &Knobs, shim: &Path, server: Server, latency_us: u64, consumer: Option<&Path>) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = dir.path().join("slowsync.counters");
    let env = slowsync::env(shim, latency_us, &counters);

    // The peers outpost delivers to start first, so that delivery runs from the first message.
    let sink_port = free_port();
    let delivered = Arc::new(AtomicUsize::new(0));
    if matches!(server, Server::Live | Server::Uplink) {
        let sink = TcpListener::bind(("127.0.0.1", sink_port)).expect("bind sink");
        let d = delivered.clone();
        std::thread::spawn(move || crate::sink_loop(sink, d));
    }
    let mut central: Option<(Broker, Running)> = None;
    let mut uplink_config = String::new();
    if server == Server::Uplink {
        let port = free_port();
        let broker = start_broker(dir.path(), port);
        let url = format!("mqtt://127.0.0.1:{port}");
        let mut c = Running(
            Command::new(consumer.expect("consumer"))
                .args(["consume", "--url", &url, "--store"])
                .arg(dir.path().join("central.db"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the example consumer"),
        );
        let mut ready = String::new();
        BufReader::new(c.stdout.take().expect("stdout")).read_line(&mut ready).expect("consumer output");
        assert_eq!(ready.trim(), "ready", "the consumer did not start");
        central = Some((broker, c));
        uplink_config = format!(
            "[uplink]\nurl = \"{url}\"\ntelemetry_interval = \"60s\"\n\n[[destination]]\nname = \"central\"\nkind = \"uplink\"\n\n"
        );
    }

    let mut subject = match server {
        Server::Reference => start_reference(dir.path(), &env),
        _ => {
            let to = if server == Server::Uplink { r#"["lis", "central"]"# } else { r#"["lis"]"# };
            let config = outpost_config(dir.path(), sink_port, &uplink_config, to, None);
            start_outpost_under(dir.path(), &config, &env)
        }
    };
    if server == Server::Uplink {
        let socket = subject.socket.clone().unwrap();
        wait_until("central is online for the gateway", Duration::from_secs(30), || {
            outpost::control::client::request(&socket, &outpost::control::protocol::Request::Status)
                .map(|v| v["uplink"]["central_online"] == serde_json::json!(true))
                .unwrap_or(false)
        });
    }

    let small = sample_message("X");
    let big = sized_message(knobs.big_size);
    let pid = subject.child.id();
    let mut received_bytes = 0u64;
    let mut msgs = 0usize;
    // Warm-up (counted in the run's totals, not in a pass).
    run_load(subject.addr, 1, 100, &small, "W");
    msgs += 100;
    received_bytes += 100 * small.len() as u64;
    settle(&subject, server, &delivered, msgs);

    let plan = [
        (1, knobs.seq, &small, "S"),
        (knobs.conns, knobs.per_conn, &small, "P"),
        (1, knobs.big_seq, &big, "B"),
        (knobs.conns, knobs.big_per_conn, &big, "Q"),
    ];
    let mut passes = Vec::new();
    for (conns, per_conn, body, tag) in plan {
        if conns * per_conn == 0 {
            continue;
        }
        let before = (Counts::read(&counters), proc_io(pid).write_bytes);
        let (rate, lat) = run_load(subject.addr, conns, per_conn, body, tag);
        msgs += conns * per_conn;
        received_bytes += (conns * per_conn * body.len()) as u64;
        settle(&subject, server, &delivered, msgs);
        let after = (Counts::read(&counters), proc_io(pid).write_bytes);
        passes.push(Pass {
            conns,
            size: body.len(),
            msgs: conns * per_conn,
            rate,
            p50: pct(&lat, 50.0),
            p99: pct(&lat, 99.0),
            counts: after.0.since(&before.0),
            write_bytes: after.1 - before.1,
        });
    }
    let peak_rss_kib = rss_kib(&subject.child, "VmHWM");
    let stopped = stop_and_account(&mut subject.child).write_bytes;
    let residue = if server == Server::Reference { 0 } else { checkpoint_residue(dir.path()) };
    let write_bytes = stopped + residue;
    let counts = Counts::read(&counters);

    let purge = (server == Server::Live).then(|| {
        // Everything is delivered: the next start with retention 0 purges it all at once.
        let purge_counters = dir.path().join("slowsync.purge");
        let env = slowsync::env(shim, latency_us, &purge_counters);
        let config = outpost_config(dir.path(), sink_port, "", r#"["lis"]"#, Some("0s"));
        let mut s = start_outpost_under(dir.path(), &config, &env);
        let socket = s.socket.clone().unwrap();
        wait_until("the purge at start", Duration::from_secs(120), || {
            outpost::control::client::request(&socket, &outpost::control::protocol::Request::Status)
                .map(|v| v["journal"]["items"] == serde_json::json!(0))
                .unwrap_or(false)
        });
        let written = stop_and_account(&mut s.child).write_bytes + checkpoint_residue(dir.path());
        (msgs as u64, Counts::read(&purge_counters), written)
    });
    drop(central);
    Run { server, latency_us, passes, msgs, received_bytes, counts, write_bytes, residue, peak_rss_kib, purge }
}

fn outpost_config(dir: &Path, sink_port: u16, uplink: &str, to: &str, retention: Option<&str>) -> String {
    let journal = retention.map(|r| format!("[journal]\nretention = \"{r}\"\n\n")).unwrap_or_default();
    format!(
        r#"[node]
site = "bench"
id = "bench"
state_dir = "{dir}"

{journal}{uplink}[[source]]
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
to = {to}
"#,
        dir = dir.display()
    )
}

fn start_outpost_under(dir: &Path, config: &str, env: &[(String, String)]) -> Subject {
    let config_path = dir.join("bench.toml");
    std::fs::write(&config_path, config).unwrap();
    let bin = std::env::var("OUTPOST_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_outpost").to_string());
    let child = Running(
        Command::new(bin)
            .args(["run", "--config"])
            .arg(&config_path)
            .env("OUTPOST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::null())
            .spawn()
            .expect("start outpost"),
    );
    let socket = dir.join("control.sock");
    let addr = wait_for_listener(&socket);
    Subject { child, addr, socket: Some(socket) }
}

fn start_reference(dir: &Path, env: &[(String, String)]) -> Subject {
    let mut child = Running(
        Command::new(std::env::current_exe().expect("the bench binary"))
            .env(REFERENCE_ENV, dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the reference server"),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("reference output");
    let port: u16 = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("reference port");
    Subject { child, addr: ([127, 0, 0, 1], port).into(), socket: None }
}

/// Waits until what was sent is delivered and recorded (the sink has it, nothing is pending,
/// the uplink's backlog is empty), so that a pass's counts include its delivery's commits.
fn settle(subject: &Subject, server: Server, delivered: &AtomicUsize, sent: usize) {
    if matches!(server, Server::Reference | Server::Down) {
        return;
    }
    let socket = subject.socket.as_ref().unwrap();
    wait_until("delivery caught up", Duration::from_secs(300), || {
        if delivered.load(Ordering::Relaxed) < sent {
            return false;
        }
        let Ok(v) = outpost::control::client::request(socket, &outpost::control::protocol::Request::Status) else {
            return false;
        };
        let pending = v["destinations"].as_array().map(|d| d.iter().all(|d| d["pending"] == 0)).unwrap_or(false);
        pending && (server != Server::Uplink || v["uplink"]["backlog"] == 0)
    });
    // The last delivery records' commit.
    std::thread::sleep(Duration::from_millis(100));
}

/// An ORU message of about `size` bytes (its OBX segments repeated).
fn sized_message(size: usize) -> String {
    let mut m = sample_message("X");
    let mut i = 1000;
    while m.len() < size {
        m.push_str(&format!("OBX|{i}|NM|718-7^HGB^LN||13.{i}|g/dL|12-16|N|||F\r"));
        i += 1;
    }
    m
}

#[derive(Default)]
struct Io {
    write_bytes: u64,
}

fn proc_io(pid: u32) -> Io {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    Io { write_bytes: field("write_bytes:") }
}

/// Checkpoints what the stopped daemon's WAL still holds into the database, as the daemon's
/// next checkpoint would, and returns the bytes that wrote (this thread's `write_bytes`).
fn checkpoint_residue(state_dir: &Path) -> u64 {
    let written = || {
        let text = std::fs::read_to_string("/proc/thread-self/io").unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0u64)
    };
    let before = written();
    let conn = rusqlite::Connection::open(state_dir.join("journal.db")).expect("open the journal");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
    drop(conn);
    written() - before
}

/// SIGTERM, then the process's I/O counters read from its zombie (so the shutdown's writes
/// count), then reaped.
fn stop_and_account(child: &mut Running) -> Io {
    let pid = child.id();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let start = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).unwrap_or("");
        if state == "Z" || state.is_empty() || start.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let io = proc_io(pid);
    let _ = child.wait();
    io
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn report(knobs: &Knobs, runs: &[Run]) {
    println!();
    println!("## Journal on flash ({})", machine());
    println!();
    println!(
        "Each process under the slow-sync shim; \"+{} ms\" rows add {} µs to every sync (served one at a time), \
         \"real\" rows add nothing. Per pass: after it, delivery is waited for, so its commits count.",
        knobs.latency_us as f64 / 1000.0,
        knobs.latency_us
    );
    println!();
    println!(
        "| disk | server | conns | msg size | msgs | msg/s | × reference | ACK p50 / p99 | syncs/msg | commits/msg | syncs/commit | written/msg | WAL / DB writes/msg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        for p in &run.passes {
            let reference = runs
                .iter()
                .find(|r| r.server == Server::Reference && r.latency_us == run.latency_us)
                .and_then(|r| r.passes.iter().find(|q| q.conns == p.conns && q.size == p.size))
                .map(|q| q.rate);
            let syncs = p.counts.get(Slot::Syncs) as f64;
            let commits = p.counts.get(Slot::WalCommit) as f64;
            println!(
                "| {} | {} | {} | {} | {} | {:.0} | {} | {:.2} / {:.2} ms | {:.2} | {} | {} | {} | {} |",
                disk(run.latency_us),
                run.server.name(),
                p.conns,
                kib(p.size as f64),
                p.msgs,
                p.rate,
                match (run.server, reference) {
                    (Server::Reference, _) => "1".to_string(),
                    (_, Some(r)) => format!("{:.2}", p.rate / r),
                    _ => "–".into(),
                },
                p.p50,
                p.p99,
                syncs / p.msgs as f64,
                if run.server == Server::Reference { "–".into() } else { format!("{:.3}", commits / p.msgs as f64) },
                if commits > 0.0 { format!("{:.2}", syncs / commits) } else { "–".into() },
                kib(p.write_bytes as f64 / p.msgs as f64),
                if run.server == Server::Reference {
                    "–".into()
                } else {
                    format!(
                        "{} / {}",
                        kib(p.counts.get(Slot::BytesWal) as f64 / p.msgs as f64),
                        kib(p.counts.get(Slot::BytesDb) as f64 / p.msgs as f64)
                    )
                },
            );
        }
    }
    println!();
    println!(
        "Whole runs, start to stop (warm-up and checkpoints included; what the WAL held at stop checkpointed by the bench \
         and counted in \"written\"). Syncs: commit / WAL restart / checkpoint thread / writer's checkpoint / other."
    );
    println!();
    println!(
        "| disk | server | msgs | received | written (of which the WAL left at stop) | written/msg | write amplification | WAL / DB bytes (shim) | syncs | mean sync | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let c = &run.counts;
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        println!(
            "| {} | {} | {} | {} | {} ({}) | {} | {:.2} | {} / {} | {} / {} / {} / {} / {} | {:.2} ms | {:.1} MiB |",
            disk(run.latency_us),
            run.server.name(),
            run.msgs,
            mib(run.received_bytes),
            mib(run.write_bytes),
            mib(run.residue),
            kib(run.write_bytes as f64 / run.msgs as f64),
            run.write_bytes as f64 / run.received_bytes as f64,
            mib(c.get(Slot::BytesWal)),
            mib(c.get(Slot::BytesDb)),
            c.get(Slot::WalCommit),
            c.get(Slot::WalHeader),
            c.get(Slot::CheckpointThread),
            c.get(Slot::WriterDb),
            c.get(Slot::OtherSyncs),
            c.get(Slot::SyncNs) as f64 / 1e6 / c.get(Slot::Syncs).max(1) as f64,
            run.peak_rss_kib as f64 / 1024.0,
        );
        if let Some((items, pc, written)) = &run.purge {
            println!(
                "| {} | … then a start with retention 0 purging all {items} | – | – | {} | {} | {:.2} (with the run: {:.2}) | {} / {} | {} / {} / {} / {} / {} | {:.2} ms | – |",
                disk(run.latency_us),
                mib(*written),
                kib(*written as f64 / *items as f64),
                *written as f64 / run.received_bytes as f64,
                (run.write_bytes + written) as f64 / run.received_bytes as f64,
                mib(pc.get(Slot::BytesWal)),
                mib(pc.get(Slot::BytesDb)),
                pc.get(Slot::WalCommit),
                pc.get(Slot::WalHeader),
                pc.get(Slot::CheckpointThread),
                pc.get(Slot::WriterDb),
                pc.get(Slot::OtherSyncs),
                pc.get(Slot::SyncNs) as f64 / 1e6 / pc.get(Slot::Syncs).max(1) as f64,
            );
        }
    }
    targets(knobs, runs);
}

fn disk(latency_us: u64) -> String {
    if latency_us == 0 { "real".into() } else { format!("+{} ms", latency_us as f64 / 1000.0) }
}

/// The issue's targets, at the added latency, against what was measured.
fn targets(knobs: &Knobs, runs: &[Run]) {
    let slow = |s: Server| runs.iter().find(|r| r.server == s && r.latency_us == knobs.latency_us);
    let pass = |s: Server, conns: usize, size: usize| {
        slow(s).and_then(|r| r.passes.iter().find(|p| p.conns == conns && p.size == size))
    };
    let small = sample_message("X").len();
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    println!();
    println!("Targets (issue 12) at +{} ms per sync:", knobs.latency_us as f64 / 1000.0);
    println!();
    println!("| target | measured | |");
    println!("|---|---|---|");
    let reference = pass(Server::Reference, 1, small).map(|p| p.rate);
    for s in [Server::Down, Server::Live, Server::Uplink] {
        if let (Some(p), Some(r)) = (pass(s, 1, small), reference) {
            println!(
                "| 1 connection ≥ 0.9 × reference ({}) | {:.2} × ({:.0} vs {r:.0} msg/s) | {} |",
                s.name(),
                p.rate / r,
                p.rate,
                verdict(p.rate >= 0.9 * r)
            );
        }
    }
    for s in [Server::Down, Server::Live, Server::Uplink] {
        if let (Some(p), Some(run)) = (pass(s, knobs.conns, small), slow(s)) {
            let sync_s = run.counts.get(Slot::SyncNs) as f64 / 1e9 / run.counts.get(Slot::Syncs).max(1) as f64;
            let goal = 0.8 * knobs.conns as f64 / sync_s;
            println!(
                "| {} connections ≥ 0.8 × {} / sync time ({}; mean sync {:.2} ms → {goal:.0} msg/s) | {:.0} msg/s | {} |",
                knobs.conns,
                knobs.conns,
                s.name(),
                sync_s * 1e3,
                p.rate,
                verdict(p.rate >= goal)
            );
        }
    }
    if let Some(p) = pass(Server::Uplink, 1, small) {
        let v = p.counts.get(Slot::Syncs) as f64 / p.msgs as f64;
        println!("| ≤ 1.05 syncs/msg, 1 connection, MLLP live + uplink draining | {v:.2} | {} |", verdict(v <= 1.05));
    }
    for s in [Server::Down, Server::Live, Server::Uplink] {
        for (conns, goal) in [(1, 12.0), (knobs.conns, 3.0)] {
            if let Some(p) = pass(s, conns, small) {
                let v = p.write_bytes as f64 / p.msgs as f64 / 1024.0;
                println!(
                    "| ≤ {goal} KiB written per 1 KiB message, {conns} connection(s) ({}) | {v:.1} KiB | {} |",
                    s.name(),
                    verdict(v <= goal)
                );
            }
        }
    }
}
