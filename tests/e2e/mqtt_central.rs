//! The example consumer (`examples/central`) as the uplink tests' central: built once per run,
//! run as a subprocess (`consume`) or for one-shot commands, its SQLite store read back. Split
//! from `mqtt_support.rs` (re-exported there) to keep each helper file to one concern.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::mqtt_support::*;
use crate::support::{DEADLINE, output_within, wait_for};
// ---------------------------------------------------------------------------------------------
// Central: the example consumer

/// The example consumer's binary, built once per test run (a no-op when scripts/test built it
/// already; it also keeps it current while the example is being edited). It is built for this
/// machine (no `--target`) even when the tests are an ARM build run under qemu (`cross/test`):
/// central is not the gateway's software, and runs natively like the other peers.
pub fn central_bin() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build_central).clone().unwrap_or_else(|e| panic!("{e}"))
}

fn build_central() -> Result<PathBuf, String> {
    let outpost = Path::new(env!("CARGO_BIN_EXE_outpost"));
    let profile_dir = outpost.parent().expect("the binary's directory");
    let expected = profile_dir.join("examples/central");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    // Without what cargo set for this test process: some build scripts rerun when such a
    // variable changes, and the next `cargo test` would then rebuild everything again.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo = ["CARGO_PKG_", "CARGO_BIN_EXE_"].iter().any(|p| key.starts_with(p))
            || ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_BIN_NAME"].contains(&&*key)
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR", "OUT_DIR"].contains(&&*key);
        if set_by_cargo {
            cmd.env_remove(&*key);
        }
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--example",
        "central",
        "--message-format=json-render-diagnostics",
    ]);
    // The target directory the tests were built in, when it is `<target-dir>/<profile>`.
    if let Some(target_dir) = profile_dir.parent().filter(|d| d.join("CACHEDIR.TAG").exists()) {
        cmd.arg("--target-dir").arg(target_dir);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let built = cmd.stdin(Stdio::null()).output();
    let out = match built {
        Ok(out) if out.status.success() => out,
        other => {
            let why = match other {
                Ok(out) => format!("{}\n{}", out.status, tail(&String::from_utf8_lossy(&out.stderr), 40)),
                Err(e) => e.to_string(),
            };
            if expected.exists() {
                eprintln!("warning: `cargo build --example central` failed, using {}: {why}", expected.display());
                return Ok(expected);
            }
            return Err(format!(
                "the example consumer is not built ({}) and `{} build --example central` failed: {why}",
                expected.display(),
                cargo.to_string_lossy()
            ));
        }
    };
    // cargo says where the executable is (it follows --target-dir, --target and the profile).
    let from_cargo = String::from_utf8_lossy(&out.stdout).lines().find_map(|line| {
        let msg: serde_json::Value = serde_json::from_str(line).ok()?;
        (msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "central")
            .then(|| msg["executable"].as_str().map(PathBuf::from))
            .flatten()
    });
    match from_cargo.or_else(|| expected.exists().then_some(expected.clone())) {
        Some(path) => Ok(path),
        None => Err(format!(
            "`cargo build --example central` succeeded but named no executable (looked for {})",
            expected.display()
        )),
    }
}

/// How to run the example consumer's one-shot commands against a broker.
#[derive(Clone, Debug)]
pub struct CentralCli {
    pub url: String,
    pub tls: Option<ClientTls>,
}

impl CentralCli {
    pub fn new(url: &str, tls: Option<&ClientTls>) -> CentralCli {
        CentralCli { url: url.to_string(), tls: tls.cloned() }
    }

    /// `central SUBCOMMAND --url URL [--ca F --cert F --key F]`, to which the caller adds.
    pub fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(central_bin());
        cmd.arg(subcommand).arg("--url").arg(&self.url);
        if let Some(t) = &self.tls {
            cmd.arg("--ca").arg(&t.ca).arg("--cert").arg(&t.cert).arg("--key").arg(&t.key);
        }
        cmd
    }

    /// `central publish-config ...` (`extra`: `--retain`, `--wait-status SECS`); prints the
    /// config status JSON when it waits for one.
    pub fn publish_config(&self, site: &str, node: &str, file: &Path, version: &str, extra: &[&str]) -> Output {
        let mut cmd = self.command("publish-config");
        cmd.args(["--site", site, "--node", node, "--file"]).arg(file).args(["--version", version]).args(extra);
        output_within(cmd, DEADLINE + wait_arg(extra, "--wait-status"))
    }

    /// `central cmd ... NAME [--args JSON] --timeout SECS`: prints the result JSON, exits 0 iff
    /// the result is ok.
    pub fn cmd(
        &self,
        site: &str,
        node: &str,
        name: &str,
        args: Option<&serde_json::Value>,
        timeout_secs: u64,
    ) -> Output {
        let mut cmd = self.command("cmd");
        cmd.args(["--site", site, "--node", node, name]);
        if let Some(args) = args {
            cmd.arg("--args").arg(args.to_string());
        }
        cmd.arg("--timeout").arg(timeout_secs.to_string());
        output_within(cmd, DEADLINE + Duration::from_secs(timeout_secs))
    }

    /// `central state --online|--offline` (retained on `outpost/v1/central/state`); panics if
    /// it fails.
    pub fn set_state(&self, online: bool) {
        let mut cmd = self.command("state");
        cmd.arg(if online { "--online" } else { "--offline" });
        let out = output_within(cmd, DEADLINE);
        assert!(
            out.status.success(),
            "central state failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn wait_arg(args: &[&str], flag: &str) -> Duration {
    let secs = args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(0))
}

/// An item as central stored it.
#[derive(Clone, Debug, PartialEq)]
pub struct CentralItem {
    pub gateway: String,
    pub id: String,
    pub seq: i64,
    pub source: String,
    pub historical: bool,
    pub body: Vec<u8>,
    pub copies: i64,
}

/// One copy (or chunk) of an item as it reached central, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    pub arrival: i64,
    pub gateway: String,
    pub id: String,
    pub seq: i64,
    pub source: String,
    pub historical: bool,
    pub session: i64,
    pub chunk_index: Option<i64>,
    pub at: String,
}

/// A message central saw on a gateway's other topics (state, events, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub n: i64,
    pub at: String,
    pub topic: String,
    pub retained: bool,
    pub payload: String,
}

/// `central consume` running in the background, with its store in its own temporary directory.
/// Killed on drop.
pub struct Central {
    pub dir: tempfile::TempDir,
    pub cli: CentralCli,
    args: Vec<String>,
    child: Option<Child>,
    /// Another consumer's store, when this one shares it.
    store: Option<PathBuf>,
}

impl Central {
    /// Starts `central consume --url URL [TLS] --store DIR/central.sqlite EXTRA...` and waits
    /// until it says `ready` (subscribed).
    pub fn start(broker_url: &str, tls: Option<&ClientTls>, extra_args: &[&str]) -> Central {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = extra_args.iter().map(|s| s.to_string()).collect();
        let mut central = Central { dir, cli: CentralCli::new(broker_url, tls), args, child: None, store: None };
        central.spawn();
        central
    }

    /// A second consumer writing to `other`'s store (central's consumers share a database).
    pub fn start_sharing_store(
        broker_url: &str,
        tls: Option<&ClientTls>,
        other: &Central,
        extra_args: &[&str],
    ) -> Central {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = extra_args.iter().map(|s| s.to_string()).collect();
        let store = Some(other.store_path());
        let mut central = Central { dir, cli: CentralCli::new(broker_url, tls), args, child: None, store };
        central.spawn();
        central
    }

    pub fn store_path(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(|| self.dir.path().join("central.sqlite"))
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("central.stderr")
    }

    /// What the consumer wrote to stderr (all runs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("central stderr file");
        let mut cmd = self.cli.command("consume");
        cmd.arg("--store").arg(self.store_path()).args(&self.args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", central_bin().display()));
        let ready = Arc::new(AtomicBool::new(false));
        let (r, out) = (ready.clone(), child.stdout.take().unwrap());
        let stdout_log = self.dir.path().join("central.stdout");
        std::thread::spawn(move || {
            // Keep draining stdout so that the consumer never blocks on it.
            let mut log = std::fs::OpenOptions::new().create(true).append(true).open(stdout_log).ok();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if line.trim() == "ready" {
                    r.store(true, Ordering::SeqCst);
                }
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        self.child = Some(child);
        wait_for("central consume to say ready", DEADLINE, || {
            if ready.load(Ordering::SeqCst) {
                return Some(());
            }
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                panic!("central consume exited with {status} before ready; stderr:\n{}", tail(&self.stderr(), 60));
            }
            None
        });
    }

    /// Starts the consumer again with the same store and arguments (stopping it first if it
    /// runs).
    pub fn start_again(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, and the exit status once it has stopped.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("central is running");
        send_signal(child.id(), Signal::SIGTERM);
        wait_exit(&mut child, "central consume", DEADLINE)
    }

    /// SIGKILL (no goodbye: its will, if any, is the broker's to publish).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Opens the store read-only (None before the consumer created it).
    fn store(&self) -> Option<rusqlite::Connection> {
        let path = self.store_path();
        if !path.exists() {
            return None;
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&path, flags)
            .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()));
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        Some(conn)
    }

    fn query<T>(&self, sql: &str, row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>) -> Vec<T> {
        let Some(conn) = self.store() else { return Vec::new() };
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        stmt.query_map([], row).and_then(|rows| rows.collect()).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every stored item, by gateway and seq.
    pub fn items(&self) -> Vec<CentralItem> {
        self.query(
            "SELECT gateway, id, seq, source, historical, body, copies FROM items ORDER BY gateway, seq, id",
            |r| {
                Ok(CentralItem {
                    gateway: r.get(0)?,
                    id: r.get(1)?,
                    seq: r.get(2)?,
                    source: r.get(3)?,
                    historical: as_bool(r.get(4)?),
                    body: as_bytes(r.get(5)?),
                    copies: r.get(6)?,
                })
            },
        )
    }

    /// How many items are stored.
    pub fn count(&self) -> usize {
        self.query("SELECT count(*) FROM items", |r| r.get::<_, i64>(0)).first().copied().unwrap_or(0) as usize
    }

    /// Waits until at least `n` items are stored; returns them.
    pub fn wait_for_items(&self, n: usize) -> Vec<CentralItem> {
        wait_for(&format!("{n} item(s) at central"), DEADLINE, || {
            let items = self.items();
            (items.len() >= n).then_some(items)
        })
    }

    /// Every copy (or chunk) received, in arrival order.
    pub fn receipts(&self) -> Vec<Receipt> {
        self.query(
            "SELECT arrival, gateway, id, seq, source, historical, session, chunk_index, at FROM receipts ORDER BY arrival",
            |r| {
                Ok(Receipt {
                    arrival: r.get(0)?,
                    gateway: r.get(1)?,
                    id: r.get(2)?,
                    seq: r.get(3)?,
                    source: r.get(4)?,
                    historical: as_bool(r.get(5)?),
                    session: r.get(6)?,
                    chunk_index: r.get(7)?,
                    at: as_text(r.get(8)?),
                })
            },
        )
    }

    /// Every observed message, in order.
    pub fn observed_all(&self) -> Vec<Observed> {
        self.query("SELECT n, at, topic, retained, payload FROM observed ORDER BY n", |r| {
            Ok(Observed {
                n: r.get(0)?,
                at: as_text(r.get(1)?),
                topic: r.get(2)?,
                retained: as_bool(r.get(3)?),
                payload: as_text(r.get(4)?),
            })
        })
    }

    /// The payloads (as JSON; a string when not JSON) of observed messages whose topic ends
    /// with `topic_suffix` (e.g. "/state", "gw/event"), in order.
    pub fn observed(&self, topic_suffix: &str) -> Vec<serde_json::Value> {
        self.observed_all()
            .into_iter()
            .filter(|o| o.topic.ends_with(topic_suffix))
            .map(|o| serde_json::from_str(&o.payload).unwrap_or(serde_json::Value::String(o.payload)))
            .collect()
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- central stderr ({}) ---\n{}", self.dir.path().display(), tail(&self.stderr(), 80));
        }
    }
}

// The consumer's columns are read whatever SQLite type it chose for them.

fn as_bool(v: rusqlite::types::Value) -> bool {
    use rusqlite::types::Value;
    match v {
        Value::Integer(i) => i != 0,
        Value::Real(f) => f != 0.0,
        Value::Text(t) => matches!(t.as_str(), "1" | "true" | "TRUE" | "True"),
        Value::Blob(_) | Value::Null => false,
    }
}

fn as_bytes(v: rusqlite::types::Value) -> Vec<u8> {
    use rusqlite::types::Value;
    match v {
        Value::Blob(b) => b,
        Value::Text(t) => t.into_bytes(),
        Value::Null => Vec::new(),
        other => panic!("not bytes: {other:?}"),
    }
}

fn as_text(v: rusqlite::types::Value) -> String {
    use rusqlite::types::Value;
    match v {
        Value::Text(t) => t,
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::Null => String::new(),
    }
}
