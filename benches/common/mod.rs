//! Helpers shared by the benchmarks (a module of each bench, not a bench itself).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use outpost::mllp;

pub mod mqtt;

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{cpus} cores, {model}")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process a benchmark started: stopped (SIGTERM, then waited for) when dropped, a panic
/// included, so a failed benchmark never leaves a daemon, broker or consumer behind.
pub struct Running(pub Child);

impl Running {
    /// Stops it now (SIGTERM so it shuts down cleanly, then waits).
    pub fn stop(&mut self) {
        let _ = std::process::Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// The directory cargo builds into: `$CARGO_TARGET_DIR` (relative to the package) or `target`.
pub fn target_dir() -> std::path::PathBuf {
    let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => package.join(dir),
        None => package.join("target"),
    }
}

/// Writes `config` to `dir/bench.toml` and starts `outpost run` on it (the build under test,
/// or `OUTPOST_BENCH_BIN`, e.g. one with debug symbols for profiling); returns the process and
/// the first source's bound address once it listens. The control socket is `dir/control.sock`.
pub fn start_outpost(dir: &std::path::Path, config: &str) -> (Running, SocketAddr) {
    let child = spawn_outpost(dir, config);
    let addr = wait_for_listener(&dir.join("control.sock"));
    (child, addr)
}

/// Writes `config` to `dir/bench.toml` and starts `outpost run` on it; waits for nothing.
pub fn spawn_outpost(dir: &std::path::Path, config: &str) -> Running {
    let config_path = dir.join("bench.toml");
    std::fs::write(&config_path, config).unwrap();
    let bin = std::env::var("OUTPOST_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_outpost").to_string());
    let child = std::process::Command::new(bin)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("OUTPOST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start outpost");
    Running(child)
}

pub fn wait_for_listener(socket: &std::path::Path) -> SocketAddr {
    let status = wait_for_status(socket, |v| v["sources"][0]["bound"].is_string());
    status["sources"][0]["bound"].as_str().unwrap().parse().unwrap()
}

/// The daemon's status once `ready` holds for it (within 60 s).
pub fn wait_for_status(socket: &std::path::Path, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Ok(v) = outpost::control::client::request(socket, &outpost::control::protocol::Request::Status)
            && ready(&v)
        {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn rss_kib(child: &Child, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn sample_message(control_id: &str) -> String {
    let mut m = format!(
        "MSH|^~\\&|LAB|CLINIC|EHR|CLINIC|20261123120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1\rPID|1||123456^^^CLINIC^MR||DOE^JANE||19800101|F\rOBR|1||A1|24317-0^CBC^LN\r"
    );
    let mut i = 1;
    while m.len() < 1000 {
        m.push_str(&format!("OBX|{i}|NM|718-7^HGB^LN||13.{i}|g/dL|12-16|N|||F\r"));
        i += 1;
    }
    m.replace(&format!("|{control_id}|P|"), "|{ID}|P|")
}

/// `conns` connections, each sending `n` messages one after the other (send, wait for ACK).
pub fn run_load(addr: SocketAddr, conns: usize, n: usize, template: &str, tag: &str) -> (f64, Vec<f64>) {
    let start = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            let template = template.to_string();
            let tag = tag.to_string();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut lat = Vec::with_capacity(n);
                let mut buf = [0u8; 4096];
                let mut d = mllp::Decoder::new(1 << 20);
                let mut frames = Vec::new();
                for i in 0..n {
                    let msg = template.replace("{ID}", &format!("{tag}{c}-{i}"));
                    let t = Instant::now();
                    s.write_all(&mllp::encode(msg.as_bytes())).unwrap();
                    loop {
                        let k = s.read(&mut buf).unwrap();
                        assert!(k > 0, "connection closed");
                        d.push(&buf[..k], &mut frames);
                        if !frames.is_empty() {
                            break;
                        }
                    }
                    let ack = match frames.pop() {
                        Some(mllp::Frame::Message(m)) => m,
                        other => panic!("unexpected {other:?}"),
                    };
                    assert!(ack.windows(7).any(|w| w == b"MSA|AA|"), "not AA: {}", String::from_utf8_lossy(&ack));
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    (rate, all)
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// User + system CPU seconds of a process so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}
