//! Helpers for end-to-end tests: the real `outpost` binary as a subprocess on port 0 in a
//! temporary directory, a real MLLP sink, and an MLLP client. Waits are for conditions with
//! generous deadlines, never fixed sleeps standing in for a check.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost::mllp;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_outpost")
}

/// A command running the `outpost` binary. When the tests are built for another architecture
/// and run under emulation (`cross/test`), the binary is that architecture's too: the runner in
/// `OUTPOST_TEST_RUNNER` (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`, split on whitespace)
/// goes in front of it, as cargo's runner goes in front of the tests. Host tools (mosquitto,
/// openssl, python, the example central) stay native.
pub fn bin_command() -> Command {
    match runner() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(bin());
            cmd
        }
        None => Command::new(bin()),
    }
}

/// Whether the tests run under emulation (`cross/test`): the daemon is then qemu-user's guest.
/// qemu-user (7.2, Debian bookworm's) does not emulate the termios2 ioctls (`TCGETS2`,
/// `TCSETS2`) that set a serial port's line, so the daemon cannot open a serial port there
/// (ENOSYS); lab-link tests then run their instrument over TCP, and tests of serial ports
/// themselves say so and stop (they run natively in `scripts/test`, in the same CI run).
pub fn under_emulation() -> bool {
    runner().is_some()
}

/// For a test of serial ports themselves: true (after saying why) when they cannot run here.
pub fn serial_ports_unavailable(test: &str) -> bool {
    if under_emulation() {
        eprintln!(
            "{test}: not run under qemu-user, which does not emulate the termios2 ioctls serial ports are \
             set with; it runs natively in scripts/test"
        );
        return true;
    }
    false
}

fn runner() -> Option<(String, Vec<String>)> {
    let value = std::env::var("OUTPOST_TEST_RUNNER").ok()?;
    let mut words = value.split_whitespace().map(str::to_string);
    let program = words.next()?;
    Some((program, words.collect()))
}

/// What to do when `outpost` could not be started at all. 127 is what a child exits with when
/// its exec fails and the failure cannot be reported as a spawn error, as under qemu-user (it
/// runs vfork as fork): an ARM `outpost` started without the runner.
fn not_started_hint(status: std::process::ExitStatus) -> &'static str {
    if status.code() == Some(127) && runner().is_none() {
        " (it could not be started: for tests built for another architecture, set OUTPOST_TEST_RUNNER \
         or run them with cross/test)"
    } else {
        ""
    }
}

/// A read that timed out (SO_RCVTIMEO), would block, or was interrupted by a signal (SIGCHLD
/// from another test's child): read again.
pub fn read_again(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted)
}

/// Polls `cond` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, deadline: Duration, cond: impl FnMut() -> Option<T>) -> T {
    within(deadline, cond).unwrap_or_else(|| panic!("timed out after {deadline:?} waiting for {what}"))
}

/// Polls `cond` until it returns Some, or None once the deadline passes.
pub fn within<T>(deadline: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if start.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// What a process is doing, from /proc: the command it runs (a child that never got to exec
/// still shows its parent's) and the state and kernel wait channel of each thread. For a
/// process that does not answer: was it started at all, and where is it stuck?
pub fn process_report(pid: u32) -> String {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
    let mut report = format!("process {pid}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ").trim_end());
    let mut tasks: Vec<PathBuf> = std::fs::read_dir(proc.join("task"))
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    tasks.sort();
    for task in tasks {
        let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').next()).unwrap_or("?");
        let wchan = std::fs::read_to_string(task.join("wchan")).unwrap_or_default();
        let tid = task.file_name().unwrap_or_default().to_string_lossy().into_owned();
        report.push_str(&format!(
            "\n  thread {tid}: state {state}, waiting in {}",
            if wchan.is_empty() { "-" } else { &wchan }
        ));
    }
    report
}

/// A running daemon in its own temporary state directory.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub child: Option<Child>,
    /// Extra environment for the process (e.g. systemd's NOTIFY_SOCKET).
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes `config` (a TOML body without [node]/[control]; `{dir}` is replaced by the state
    /// directory) and starts the daemon on it.
    pub fn start(config: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        Daemon::start_in(dir, config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Daemon {
        Daemon::start_with_env(dir, config, Vec::new())
    }

    pub fn start_with_env(dir: tempfile::TempDir, config: &str, env: Vec<(String, String)>) -> Daemon {
        Daemon::start_opts(dir, "", config, env)
    }

    /// `node_extra` is appended to the `[node]` table (e.g. `log_summary = "1s"`).
    pub fn start_opts(dir: tempfile::TempDir, node_extra: &str, config: &str, env: Vec<(String, String)>) -> Daemon {
        let mut d = Daemon::configured(dir, node_extra, config, env);
        d.spawn();
        d
    }

    /// Like [`Daemon::start_opts`], but waits only until the daemon answers on its control
    /// socket: its sources may be down (a serial port not plugged in yet).
    pub fn start_answering(dir: tempfile::TempDir, config: &str, env: Vec<(String, String)>) -> Daemon {
        let mut d = Daemon::configured(dir, "", config, env);
        d.spawn_until("the daemon to answer", |_| true);
        d
    }

    /// Writes the config file; starts nothing.
    fn configured(dir: tempfile::TempDir, node_extra: &str, config: &str, env: Vec<(String, String)>) -> Daemon {
        let config_path = dir.path().join("outpost.toml");
        let body = config.replace("{dir}", &dir.path().display().to_string());
        let full = format!(
            "[node]\nsite = \"test\"\nid = \"gw\"\nstate_dir = \"{}\"\nshutdown_grace = \"5s\"\n{node_extra}\n\n[control]\nsocket = \"{}\"\n\n{}",
            dir.path().display(),
            dir.path().join("control.sock").display(),
            body
        );
        std::fs::write(&config_path, full).expect("write config");
        Daemon { dir, config_path, child: None, env }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// (Re)starts the process and waits until every source listens.
    pub fn spawn(&mut self) {
        self.spawn_until("the daemon to listen", |s| {
            s["sources"].as_array().is_some_and(|sources| sources.iter().all(|src| src["state"] == "up"))
        });
    }

    /// (Re)starts the process and waits until its status satisfies `ready`.
    pub fn spawn_until(&mut self, what: &str, ready: impl Fn(&serde_json::Value) -> bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log file");
        let child = bin_command()
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env("OUTPOST_LOG", "debug")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn outpost");
        let pid = child.id();
        self.child = Some(child);
        let listening = within(DEADLINE, || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("outpost exited early with {status}{}; log:\n{}", not_started_hint(status), self.log());
            }
            let s = self.try_status()?;
            ready(&s).then_some(())
        });
        if listening.is_none() {
            panic!("timed out after {DEADLINE:?} waiting for {what}; {}", process_report(pid));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn try_status(&self) -> Option<serde_json::Value> {
        outpost::control::client::request(&self.socket(), &outpost::control::protocol::Request::Status).ok()
    }

    pub fn status(&self) -> serde_json::Value {
        self.try_status().expect("status")
    }

    /// The bound address of a source.
    pub fn addr(&self, source: &str) -> SocketAddr {
        let s = self.status();
        let src = s["sources"].as_array().unwrap().iter().find(|x| x["name"] == source).expect("source in status");
        src["bound"].as_str().unwrap().parse().unwrap()
    }

    pub fn destination(&self, name: &str) -> serde_json::Value {
        let s = self.status();
        s["destinations"].as_array().unwrap().iter().find(|x| x["name"] == name).cloned().expect("destination")
    }

    /// Runs an `outpost` CLI command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        bin_command()
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .env_remove("OUTPOST_CONFIG")
            .output()
            .expect("run outpost cli")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.stop_with("TERM")
    }

    /// Sends a signal (e.g. "INT") and waits for the exit status.
    pub fn stop_with(&mut self, sig: &str) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(&c, sig);
        wait_for("the daemon to exit", DEADLINE, || c.try_wait().ok().flatten())
    }

    pub fn sighup(&self) {
        signal(self.child.as_ref().expect("running"), "HUP");
    }

    pub fn rewrite_config(&self, config: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let head_end = text.find("\n\n[control]").unwrap();
        let control_end = text[head_end + 2..].find("\n\n").unwrap() + head_end + 2;
        let body = config.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(&self.config_path, format!("{}\n\n{}", &text[..control_end], body)).unwrap();
    }
}

fn signal(c: &Child, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(c.id().to_string()).status().map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "kill -{sig} failed");
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- daemon log ({}) ---\n{}", self.dir.path().display(), self.log());
        }
    }
}

/// How a sink answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkMode {
    Accept,
    /// Answer with this ACK code (AE, AR).
    Nak(&'static str),
    /// Read the message, never answer.
    Silent,
}

/// An MLLP receiver written for the tests: records every message, answers per `mode`.
pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
    mode: Arc<Mutex<SinkMode>>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    pub fn start(mode: SinkMode) -> Sink {
        Sink::start_on("127.0.0.1:0", mode)
    }

    pub fn start_on(addr: &str, mode: SinkMode) -> Sink {
        release(addr);
        let listener = TcpListener::bind(addr).expect("bind sink");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(mode));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, m, s) = (received.clone(), mode.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (r, m, s) = (r.clone(), m.clone(), s.clone());
                        std::thread::spawn(move || serve_sink(stream, r, m, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Sink { addr, received, mode, stop }
    }

    pub fn set_mode(&self, mode: SinkMode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_sink(
    mut stream: TcpStream,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    mode: Arc<Mutex<SinkMode>>,
    stop: Arc<AtomicBool>,
) {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut decoder = mllp::Decoder::new(64 << 20);
    let mut buf = vec![0u8; 65536];
    let mut frames = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if read_again(&e) => {
                continue;
            }
            Err(_) => return,
        };
        decoder.push(&buf[..n], &mut frames);
        for f in frames.drain(..) {
            if let mllp::Frame::Message(m) = f {
                let mode = *mode.lock().unwrap();
                let control_id = field(&m, 10);
                let reply = match mode {
                    SinkMode::Accept => {
                        received.lock().unwrap().push(m);
                        Some("AA")
                    }
                    SinkMode::Nak(code) => Some(code),
                    SinkMode::Silent => None,
                };
                if let Some(code) = reply {
                    let ack = format!(
                        "MSH|^~\\&|SINK|TEST|||20260101000000||ACK|A{control_id}|P|2.5\rMSA|{code}|{control_id}|test sink says {code}\r"
                    );
                    if stream.write_all(&mllp::encode(ack.as_bytes())).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// MSH field `n` of a message (MSH-1 is the separator), as text.
pub fn field(msg: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(msg);
    let msh = text.split('\r').next().unwrap_or("");
    msh.split('|').nth(n - 1).unwrap_or("").to_string()
}

/// A simple MLLP client connection.
pub struct Client {
    stream: TcpStream,
    decoder: mllp::Decoder,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Client { stream, decoder: mllp::Decoder::new(1 << 20) }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends one framed message and returns the ACK text.
    pub fn send(&mut self, msg: &[u8]) -> String {
        self.send_raw(&mllp::encode(msg));
        self.read_ack().expect("an ACK")
    }

    pub fn try_send(&mut self, msg: &[u8]) -> Option<String> {
        self.stream.write_all(&mllp::encode(msg)).ok()?;
        self.read_ack()
    }

    pub fn read_ack(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        let mut frames = Vec::new();
        loop {
            // A read with a timeout is not restarted after a signal (SIGCHLD from another test's
            // child): EINTR is not the end of the connection.
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            if n == 0 {
                return None;
            }
            self.decoder.push(&buf[..n], &mut frames);
            if let Some(mllp::Frame::Message(m)) = frames.into_iter().next() {
                return Some(String::from_utf8_lossy(&m).into_owned());
            }
            frames = Vec::new();
        }
    }
}

/// MSA-1 of an ACK.
pub fn ack_code(ack: &str) -> String {
    ack.split('\r').find(|s| s.starts_with("MSA")).and_then(|s| s.split('|').nth(1)).unwrap_or("").to_string()
}

/// MSA-2 of an ACK.
pub fn ack_control_id(ack: &str) -> String {
    ack.split('\r').find(|s| s.starts_with("MSA")).and_then(|s| s.split('|').nth(2)).unwrap_or("").to_string()
}

/// A small valid HL7 v2.5 message with the given control id.
pub fn adt(control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EHR|CLINIC|LIS|LAB|20261123120000||ADT^A01^ADT_A01|{control_id}|P|2.5\rEVN|A01|20261123120000\rPID|1||{control_id}^^^CLINIC^MR||TEST^PATIENT||19700101|F\rPV1|1|O\r"
    )
    .into_bytes()
}

pub fn oru(control_id: &str, flag: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LAB|CLINIC|EHR|CLINIC|20261123120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1\rPID|1||{control_id}^^^CLINIC^MR||TEST^PATIENT\rOBR|1||{control_id}|24317-0^CBC^LN\rOBX|1|NM|718-7^HGB^LN||7.1|g/dL|12-16|{flag}|||F\r"
    )
    .into_bytes()
}

pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// One MLLP source `ehr` routed to one MLLP destination `lis` at `dest`, with fast retries.
/// `top` goes before the source (e.g. a `[journal]` section); `extra_source` and `extra_dest`
/// are appended to the source's and the destination's tables.
pub fn single_route_config(top: &str, dest: SocketAddr, extra_source: &str, extra_dest: &str) -> String {
    format!(
        r#"
{top}

[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"
{extra_source}

[[destination]]
name = "lis"
kind = "mllp"
connect = "{dest}"
connect_timeout = "1s"
ack_timeout = "1s"
retry = {{ initial_backoff = "50ms", max_backoff = "200ms" }}
{extra_dest}

[[route]]
name = "all"
from = ["ehr"]
to = ["lis"]
"#
    )
}

/// One MLLP source `ehr` and one MLLP destination `lis` at `dest`, joined by a route named
/// `conditional` that takes only messages matching `when` (the inside of a TOML inline table,
/// e.g. `"MSH-9.1" = "ORU"`).
pub fn conditional_route_config(dest: SocketAddr, when: &str) -> String {
    format!(
        r#"
[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "lis"
kind = "mllp"
connect = "{dest}"

[[route]]
name = "conditional"
from = ["ehr"]
when = {{ {when} }}
to = ["lis"]
"#
    )
}

/// The standard test config: one MLLP source, a sink destination and a file destination.
pub fn basic_config(sink: SocketAddr) -> String {
    format!(
        r#"
[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "lis"
kind = "mllp"
connect = "{sink}"
connect_timeout = "2s"
ack_timeout = "2s"
retry = {{ initial_backoff = "100ms", max_backoff = "500ms" }}

[[destination]]
name = "archive"
kind = "file"
dir = "{{dir}}/archive"

[[route]]
name = "all"
from = ["ehr"]
to = ["lis", "archive"]
"#
    )
}

/// Runs the `outpost` binary with `args` and no daemon-finding environment (no
/// $OUTPOST_CONFIG/$OUTPOST_SOCKET leaking in from the caller).
pub fn outpost(args: &[&str]) -> Output {
    outpost_command(args).output().expect("run outpost")
}

pub fn outpost_command(args: &[&str]) -> Command {
    let mut cmd = bin_command();
    cmd.args(args).env_remove("OUTPOST_CONFIG").env_remove("OUTPOST_SOCKET").env_remove("JOURNAL_STREAM");
    cmd
}

/// Runs a command that is expected to exit by itself, killing it (and failing) if it is still
/// running at the deadline.
pub fn output_within(mut cmd: Command, deadline: Duration) -> Output {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {deadline:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a command succeeded, showing its output when it did not.
pub fn assert_success(out: &Output) {
    assert!(out.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status, stdout_of(out), stderr_of(out));
}

/// A public HL7 sample file kept in the repository (`src/hl7/testdata`, see its README).
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/hl7/testdata").join(name)
}

/// An address nobody listens on: bound to an ephemeral port, then released.
/// An address where nobody listens, and nobody will until a test starts a [`Sink`] on it.
///
/// Binding port 0 and letting go is not enough: the kernel may hand the same port to the
/// daemon's own listener a moment later, and the "dead" destination then answers. So the port
/// stays bound, not listening (a connection to it is refused), until `Sink::start_on` takes it.
pub fn dead_addr() -> SocketAddr {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind port 0");
    let bound: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).expect("getsockname");
    let addr = SocketAddr::from(std::net::SocketAddrV4::from(bound));
    RESERVED.lock().unwrap().insert(addr, fd);
    addr
}

/// Ports [`dead_addr`] holds bound, by address.
static RESERVED: Mutex<std::collections::BTreeMap<SocketAddr, std::os::fd::OwnedFd>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Lets go of a port [`dead_addr`] holds, so a test can listen on it.
fn release(addr: &str) {
    if let Ok(addr) = addr.parse::<SocketAddr>() {
        RESERVED.lock().unwrap().remove(&addr);
    }
}

impl Daemon {
    /// Runs a CLI command that must succeed and print JSON; returns the parsed JSON.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert_success(&out);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("`outpost {}` did not print JSON: {e}\n{}", args.join(" "), stdout_of(&out)))
    }

    /// Every item in the journal (`queue ls --state all --json`), newest first.
    pub fn items(&self) -> Vec<serde_json::Value> {
        self.cli_json(&["queue", "ls", "--state", "all", "--json"]).as_array().cloned().unwrap_or_default()
    }

    /// The journal item whose MSH-10 is `control_id`, once it is there.
    pub fn item(&self, control_id: &str) -> serde_json::Value {
        wait_for(&format!("item {control_id} in the journal"), DEADLINE, || {
            self.items().into_iter().find(|it| it["summary"]["control_id"] == control_id)
        })
    }

    /// `queue show ID --json` (with the body when `body`).
    pub fn show(&self, id: &str, body: bool) -> serde_json::Value {
        let mut args = vec!["queue", "show", id, "--json"];
        if body {
            args.push("--body");
        }
        self.cli_json(&args)
    }

    /// The stored bytes of an item (`queue show --body`).
    pub fn body(&self, id: &str) -> Vec<u8> {
        use base64::Engine;
        let item = self.show(id, true);
        base64::engine::general_purpose::STANDARD.decode(item["body_b64"].as_str().expect("body_b64")).unwrap()
    }

    /// Waits until the item with MSH-10 `control_id` is delivered to `destination`.
    pub fn wait_delivered(&self, control_id: &str, destination: &str) {
        wait_for(&format!("{control_id} delivered to {destination}"), DEADLINE, || {
            let item = self.items().into_iter().find(|it| it["summary"]["control_id"] == control_id)?;
            item["deliveries"]
                .as_array()?
                .iter()
                .any(|d| d["destination"] == destination && d["state"] == "delivered")
                .then_some(())
        });
    }
}

impl Daemon {
    /// Waits until the daemon's main loop runs. `spawn` returns once the listeners are bound,
    /// a moment before the signal handlers are installed; an `outpost reload` is answered by the
    /// main loop itself, so its answer proves SIGTERM/SIGHUP are handled from then on.
    pub fn wait_for_main_loop(&self) {
        let out = self.cli(&["reload"]);
        assert_success(&out);
    }
}

/// A tmpfs of `size` mounted on a fresh directory for the life of the value: a filesystem that
/// really runs out of space. Mounting needs root: run as root (as CI does), or with
/// password-less sudo.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

fn as_root(cmd: &str) -> std::process::Command {
    if nix::unistd::geteuid().is_root() {
        std::process::Command::new(cmd)
    } else {
        let mut c = std::process::Command::new("sudo");
        c.args(["-n", cmd]);
        c
    }
}

impl SmallDisk {
    pub fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        let out = as_root("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700,uid={uid},gid={gid}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill a real filesystem: run the tests as root or with \
             password-less sudo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = as_root("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A log line without its leading timestamp, for asserting that a value is not logged (the
/// time `08:12:35.512` holds `35.5`, which a result's value may also be).
pub fn after_timestamp(line: &str) -> &str {
    line.trim_start().split_once(char::is_whitespace).map_or(line, |(_, rest)| rest)
}
