//! ASTM lab-link benchmark: the real `outpost` binary taking an instrument's sessions over a
//! real pseudo-terminal at a serial line's rate (115200 baud 8N1: 10 bits a byte, 11.52 bytes/ms)
//! and over TCP as fast as it takes them. The instrument is the end-to-end tests' simulator
//! (`tests/e2e/astm_sim.rs`): each message its own session (ENQ, frames each waiting for its
//! ACK, EOT), every item journaled before its last frame's ACK and delivered to a folder.
//!
//! `cargo bench --bench astm` prints a Markdown table (kept in docs/PERFORMANCE.md): messages and
//! results (R records) per second, how much of the line's rate the link uses, the time outpost
//! adds per frame, from the frame's last byte written to its ACK read (p50/p99), apart for the
//! frames that end a message (those wait for the journal's commit), and the daemon's CPU per
//! message (from /proc, delivery to the folder included). Two messages: a hematology result with
//! histograms (the Yumizen H500 capture: 125 frames, 27 R, 24.6 KB) and a chemistry panel (24
//! frames, 20 R, 1.3 KB), each with its own sample id. Environment: OUTPOST_BENCH_ASTM_SERIAL
//! (hematology messages over the pty, default 8; panels: 8 times as many),
//! OUTPOST_BENCH_ASTM_TCP (hematology messages over TCP, default 200; panels: 5 times as many),
//! OUTPOST_BENCH_BIN (the outpost binary, default this build's).

use std::net::TcpStream;
use std::time::Instant;

mod common;
use common::*;

#[path = "../tests/e2e/astm_sim.rs"]
mod astm_sim;
use astm_sim::*;

const BAUD: f64 = 115_200.0;
/// 8N1: a start bit, 8 data bits, a stop bit.
const BYTES_PER_MS: f64 = BAUD / 10.0 / 1000.0;

const YUMIZEN: &[u8] = include_bytes!("../tests/data/astm/yumizen-h500-session.raw");

struct Workload {
    name: &'static str,
    /// The records, with `{ID}` where the sample id goes.
    template: String,
    results: usize,
}

impl Workload {
    /// `n` messages as frames, each with its own 7-character sample id.
    fn messages(&self, n: usize, tag: char) -> Vec<Vec<Vec<u8>>> {
        (0..n).map(|i| frames_for(self.template.replace("{ID}", &format!("{tag}{i:06}")).as_bytes())).collect()
    }
}

fn hematology() -> Workload {
    let records = String::from_utf8_lossy(&records_of(&frames_of(YUMIZEN))).into_owned();
    assert!(records.contains("|2021679|"));
    // Framed as the instrument framed it: one record per E1381 message, cut every 240.
    assert_eq!(frames_for(records.as_bytes()), frames_of(YUMIZEN));
    Workload { name: "hematology (125 frames, 27 R)", template: records.replace("|2021679|", "|{ID}|"), results: 27 }
}

fn panel() -> Workload {
    let tests = ["ALB", "ALP", "ALT", "AST", "BUN", "CA", "CHOL", "CK", "CL", "CREA"];
    let mut m = String::from("H|\\^&|||BENCH^Chem^1.0|||||||P|LIS2-A2|20260101120000\r");
    m.push_str("P|1||PID0001||DOE^JANE||19700101|F\rO|1|{ID}||^^^PANEL|R||20260101115500||||N||||SERUM\r");
    for i in 1..=20 {
        let test = tests[(i - 1) % tests.len()];
        m.push_str(&format!(
            "R|{i}|^^^{test}^{i}|{}.{}|mg/dL|1.0 to 9.9|N||F||BENCH|20260101115900|20260101120000\r",
            i * 7 % 90,
            i % 10
        ));
    }
    m.push_str("L|1|N\r");
    Workload { name: "chemistry panel (24 frames, 20 R)", template: m, results: 20 }
}

#[derive(Default)]
struct Run {
    messages: usize,
    results: usize,
    bytes: usize,
    secs: f64,
    /// Reply times of frames that do not end a message, ms, sorted.
    frame_ms: Vec<f64>,
    /// Reply times of frames that end a message (journaled before the ACK), ms, sorted.
    final_ms: Vec<f64>,
    /// The daemon's CPU seconds meanwhile (intake, and delivery to the folder as it goes).
    cpu: f64,
}

fn play(sim: &mut Instrument, messages: &[Vec<Vec<u8>>], results: usize, pid: u32) -> Run {
    let mut run = Run::default();
    let cpu = cpu_secs(pid);
    let start = Instant::now();
    for frames in messages {
        let mut sent = Sent::default();
        sim.establish(&mut sent).expect("ENQ answered");
        run.bytes += 1;
        for (i, f) in frames.iter().enumerate() {
            let (reply, time) = sim.send_timed(f);
            assert_eq!(reply, Reply::Ack, "frame {i}");
            let ms = time.expect("a reply").as_secs_f64() * 1000.0;
            if i + 1 == frames.len() { &mut run.final_ms } else { &mut run.frame_ms }.push(ms);
            run.bytes += f.len();
        }
        sim.line.write(&[EOT]);
        run.bytes += 1;
        run.messages += 1;
        run.results += results;
    }
    run.secs = start.elapsed().as_secs_f64();
    run.cpu = cpu_secs(pid) - cpu;
    run.frame_ms.sort_by(f64::total_cmp);
    run.final_ms.sort_by(f64::total_cmp);
    run
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let serial_n = env_usize("OUTPOST_BENCH_ASTM_SERIAL", 8);
    let tcp_n = env_usize("OUTPOST_BENCH_ASTM_TCP", 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("analyzer");
    let (line, _) = pty_at(&link);
    let config = format!(
        r#"[node]
site = "bench"
id = "bench"
state_dir = "{dir}"

[[source]]
name = "serial"
kind = "astm"
serial = {{ port = "{link}", baud = 115200 }}

[[source]]
name = "tcp"
kind = "astm"
tcp_listen = "127.0.0.1:0"

[[destination]]
name = "archive"
kind = "file"
dir = "archive"

[[route]]
name = "lab"
from = ["serial", "tcp"]
to = ["archive"]
"#,
        dir = dir.path().display(),
        link = link.display()
    );
    let mut child = spawn_outpost(dir.path(), &config);
    let pid = child.0.id();
    let status = wait_for_status(&dir.path().join("control.sock"), |v| {
        v["sources"].as_array().is_some_and(|s| s.iter().all(|s| s["state"] == "up"))
    });
    let tcp_addr: std::net::SocketAddr = status["sources"][1]["at"].as_str().expect("tcp bound").parse().unwrap();

    let workloads = [hematology(), panel()];
    let mut rows = Vec::new();

    let mut sim = Instrument::new(line.paced(BYTES_PER_MS));
    // Warm-up (the first sessions open the journal's pages, start the file destination).
    play(&mut sim, &workloads[1].messages(5, 'w'), workloads[1].results, pid);
    for (w, n, tag) in [(&workloads[0], serial_n, 'a'), (&workloads[1], serial_n * 8, 'b')] {
        let run = play(&mut sim, &w.messages(n, tag), w.results, pid);
        rows.push(("pty, 115200 8N1, paced", w.name, run));
    }

    let mut sim = Instrument::new(Line::tcp(TcpStream::connect(tcp_addr).expect("connect")));
    play(&mut sim, &workloads[1].messages(5, 'x'), workloads[1].results, pid);
    for (w, n, tag) in [(&workloads[0], tcp_n, 'c'), (&workloads[1], tcp_n * 5, 'd')] {
        let run = play(&mut sim, &w.messages(n, tag), w.results, pid);
        rows.push(("TCP, unpaced", w.name, run));
    }

    // Every message acknowledged is in the journal.
    let status = wait_for_status(&dir.path().join("control.sock"), |_| true);
    let stored = |i: usize| status["sources"][i]["received"].as_u64().unwrap_or(0) as usize;
    let sent = |link: &str| rows.iter().filter(|r| r.0.starts_with(link)).map(|r| r.2.messages).sum::<usize>() + 5;
    assert_eq!((stored(0), stored(1)), (sent("pty"), sent("TCP")), "{status}");
    child.stop();

    println!("## ASTM lab-link benchmark ({})", machine());
    println!();
    println!(
        "Each message its own session (ENQ, frames each waiting for its ACK, EOT), journaled before its last ACK, \
         delivered to a folder meanwhile; journal on {}. Frame ACK: from a frame's last byte written to its ACK \
         read; a message's last frame waits for the commit.",
        dir.path().display()
    );
    println!();
    println!(
        "| link | message | messages | msg/s | results/s | line use | frame ACK p50 / p99 | last frame ACK p50 / p99 | daemon CPU per message |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (link, name, r) in &rows {
        let rate = r.bytes as f64 / r.secs;
        let use_ = if link.starts_with("pty") {
            format!("{:.1} % of {:.0} B/s", rate * 100.0 / (BYTES_PER_MS * 1000.0), BYTES_PER_MS * 1000.0)
        } else {
            format!("{:.0} KB/s", rate / 1000.0)
        };
        println!(
            "| {link} | {name} | {} | {:.1} | {:.0} | {use_} | {:.3} / {:.3} ms | {:.2} / {:.2} ms | {:.0} µs |",
            r.messages,
            r.messages as f64 / r.secs,
            r.results as f64 / r.secs,
            pct(&r.frame_ms, 50.0),
            pct(&r.frame_ms, 99.0),
            pct(&r.final_ms, 50.0),
            pct(&r.final_ms, 99.0),
            r.cpu * 1e6 / r.messages as f64,
        );
    }
}
