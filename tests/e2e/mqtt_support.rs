//! Helpers for the uplink's end-to-end tests: real parts, started by the tests. A test CA and
//! certificates made with the `openssl` CLI; a real mosquitto on an ephemeral 127.0.0.1 port that
//! can be stopped, restarted on the same port and frozen; a TCP proxy that can hold or cut the
//! link; and mosquitto_sub/mosquitto_pub as independent MQTT peers. The example consumer as
//! central is in `mqtt_central.rs`, re-exported here. Like `support`, every wait is for a
//! condition with a generous deadline.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{DEADLINE, output_within, read_again, wait_for};

pub use crate::mqtt_central::*;

// ---------------------------------------------------------------------------------------------
// Tools

/// Where a tool the tests run is, or a panic saying how to install it. mosquitto lives in
/// /usr/sbin, which is often not on a non-root PATH.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path).chain(extra).map(|dir| dir.join(name)).find(|p| is_executable(p)).unwrap_or_else(
        || {
            let package = match name {
                "mosquitto" => "mosquitto",
                "mosquitto_pub" | "mosquitto_sub" => "mosquitto-clients",
                "stdbuf" => "coreutils",
                other => other,
            };
            panic!("`{name}` is not installed (Debian package {package}); scripts/test installs what the tests need")
        },
    )
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// A number no other call in this process gets: for unique file names, serials and client ids.
pub(crate) fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn send_signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

/// The state letter of a process from /proc (`T` when stopped), None once it is gone.
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; the state follows it.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits for a child to exit by itself, killing it at the deadline.
pub(crate) fn wait_exit(child: &mut Child, what: &str, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Asserts that `cond` stays None for the whole `window`. Absence can only be shown over a
/// period: use it after a positive control has shown the thing would have happened by now.
pub fn assert_nothing_for<T: std::fmt::Debug>(what: &str, window: Duration, mut cond: impl FnMut() -> Option<T>) {
    let start = Instant::now();
    while start.elapsed() < window {
        if let Some(v) = cond() {
            panic!("{what}: {v:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test CA, and a server certificate from it for `localhost` and 127.0.0.1. EC P-256
/// throughout, so generating is fast.
#[derive(Clone, Debug)]
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    openssl_cnf: PathBuf,
}

/// What a client needs for mutual TLS: the CA to trust and its own certificate and key.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Extensions as strict verifiers (rustls/webpki) want them: a real CA, and leaf certificates
/// with SANs and an extended key usage, never CAs themselves.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = replaced by -subj
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl Certs {
    /// Makes the CA and the server certificate in `dir` (created if missing).
    pub fn generate(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).expect("certs dir");
        let openssl_cnf = dir.join("openssl.cnf");
        std::fs::write(&openssl_cnf, OPENSSL_CNF).expect("write openssl.cnf");
        let certs = Certs {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            openssl_cnf,
        };
        ec_key(&certs.ca_key);
        openssl(&[
            "req".as_ref(),
            "-new".as_ref(),
            "-x509".as_ref(),
            "-config".as_ref(),
            certs.openssl_cnf.as_os_str(),
            "-extensions".as_ref(),
            "ca_ext".as_ref(),
            "-key".as_ref(),
            certs.ca_key.as_os_str(),
            "-subj".as_ref(),
            format!("/CN=outpost test CA {}", unique()).as_ref(),
            "-days".as_ref(),
            "3650".as_ref(),
            "-out".as_ref(),
            certs.ca.as_os_str(),
        ]);
        certs.issue("localhost", "server_ext", &certs.server_cert, &certs.server_key);
        certs
    }

    /// A client certificate with common name `cn`, signed by the CA: (cert, key).
    pub fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        let stem: String =
            cn.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let stem = format!("client-{}-{stem}", unique());
        let (cert, key) = (self.dir.join(format!("{stem}.crt")), self.dir.join(format!("{stem}.key")));
        self.issue(cn, "client_ext", &cert, &key);
        (cert, key)
    }

    /// [`Certs::client`] with the CA, ready to hand to a client.
    pub fn client_tls(&self, cn: &str) -> ClientTls {
        let (cert, key) = self.client(cn);
        ClientTls { ca: self.ca.clone(), cert, key }
    }

    fn issue(&self, cn: &str, extensions: &str, cert: &Path, key: &Path) {
        ec_key(key);
        let csr = cert.with_extension("csr");
        // In -subj, '/' separates name parts and '+' joins them: escape them (and '\').
        let escaped: String =
            cn.chars().flat_map(|c| if "/+\\".contains(c) { vec!['\\', c] } else { vec![c] }).collect();
        openssl(&[
            "req".as_ref(),
            "-new".as_ref(),
            "-config".as_ref(),
            self.openssl_cnf.as_os_str(),
            "-key".as_ref(),
            key.as_os_str(),
            "-subj".as_ref(),
            format!("/CN={escaped}").as_ref(),
            "-out".as_ref(),
            csr.as_os_str(),
        ]);
        openssl(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            self.ca.as_os_str(),
            "-CAkey".as_ref(),
            self.ca_key.as_os_str(),
            "-set_serial".as_ref(),
            format!("{}{:04}", std::process::id(), unique()).as_ref(),
            "-days".as_ref(),
            "3650".as_ref(),
            "-extfile".as_ref(),
            self.openssl_cnf.as_os_str(),
            "-extensions".as_ref(),
            extensions.as_ref(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]);
    }
}

fn ec_key(path: &Path) {
    openssl(&[
        "genpkey".as_ref(),
        "-algorithm".as_ref(),
        "EC".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-out".as_ref(),
        path.as_os_str(),
    ]);
}

fn openssl(args: &[&std::ffi::OsStr]) {
    let out = Command::new(tool("openssl")).args(args).stdin(Stdio::null()).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {:?} failed ({}):\n{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Broker

/// How to configure a [`Broker`]. `Default` is a plain listener allowing anonymous clients.
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    /// A TLS listener with this CA and server certificate, requiring a client certificate whose
    /// CN becomes the username (`use_identity_as_username`); anonymous clients refused. With
    /// `conf_template`, set it when the template's listener is TLS: it decides [`Broker::url`].
    pub tls: Option<Certs>,
    /// A mosquitto ACL file.
    pub acl_file: Option<PathBuf>,
    /// `max_packet_size`: larger packets from a client get it disconnected.
    pub max_packet_size: Option<u32>,
    /// `message_size_limit`: larger payloads are dropped (QoS flows still complete).
    pub message_size_limit: Option<u32>,
    /// Keep retained messages and sessions on disk in the broker's directory across
    /// [`Broker::terminate`] + [`Broker::start_again`] (a SIGKILL loses what was not autosaved).
    pub persistence: bool,
    /// Appended to the generated configuration.
    pub extra_conf: String,
    /// Instead of the generated configuration, this one, with `{port}` and `{dir}` replaced
    /// (the options above but `extra_conf` are then not used). The broker must listen on
    /// 127.0.0.1:{port}. Logging to the broker's log is added either way.
    pub conf_template: Option<String>,
}

/// A mosquitto subprocess on an ephemeral 127.0.0.1 port, in its own temporary directory
/// (config, log). Killed on drop.
pub struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    opts: BrokerOptions,
    child: Option<Child>,
}

enum StartFailure {
    PortInUse,
    Exited(String),
}

impl Broker {
    /// A plain listener; anonymous clients allowed.
    pub fn start() -> Broker {
        Broker::start_with(BrokerOptions::default())
    }

    /// A TLS listener requiring client certificates from `certs`' CA (CN = username).
    pub fn start_tls(certs: &Certs) -> Broker {
        Broker::start_with(BrokerOptions { tls: Some(certs.clone()), ..BrokerOptions::default() })
    }

    pub fn start_with(opts: BrokerOptions) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut broker = Broker { dir, port: 0, opts, child: None };
        // The port is free when picked but someone may take it before mosquitto binds it: then
        // pick another.
        for attempt in 1.. {
            broker.port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            match broker.spawn() {
                Ok(()) => return broker,
                Err(StartFailure::PortInUse) if attempt < 10 => continue,
                Err(StartFailure::PortInUse) => panic!("no free port for mosquitto after {attempt} attempts"),
                Err(StartFailure::Exited(why)) => panic!("mosquitto did not start: {why}"),
            }
        }
        unreachable!()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn is_tls(&self) -> bool {
        self.opts.tls.is_some()
    }

    /// `mqtt://127.0.0.1:PORT`, or `mqtts://localhost:PORT` (the name in the server certificate).
    pub fn url(&self) -> String {
        if self.is_tls() {
            format!("mqtts://localhost:{}", self.port)
        } else {
            format!("mqtt://127.0.0.1:{}", self.port)
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, and wait for it to be gone: clients see their connections reset.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (mosquitto saves its persistence file and says goodbye), and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the broker is running");
        send_signal(child.id(), Signal::SIGCONT);
        send_signal(child.id(), Signal::SIGTERM);
        wait_exit(&mut child, "mosquitto", DEADLINE)
    }

    /// Starts it again on the same port (stopping it first if it runs), retrying while the port
    /// is not yet free.
    pub fn start_again(&mut self) {
        self.stop();
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(StartFailure::PortInUse) if start.elapsed() < DEADLINE => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(StartFailure::PortInUse) => panic!("port {} still in use after {DEADLINE:?}", self.port),
                Err(StartFailure::Exited(why)) => panic!("mosquitto did not start again: {why}"),
            }
        }
    }

    /// [`Broker::stop`] then [`Broker::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// SIGSTOP: the broker goes silent but its sockets stay open, and the kernel still accepts
    /// new connections for it (a half-open link). Returns once the process is stopped.
    pub fn pause(&mut self) {
        let pid = self.pid().expect("the broker is running");
        send_signal(pid, Signal::SIGSTOP);
        wait_for("mosquitto to be stopped", DEADLINE, || (process_state(pid)? == 'T').then_some(()));
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&mut self) {
        let pid = self.pid().expect("the broker is running");
        send_signal(pid, Signal::SIGCONT);
        wait_for("mosquitto to run again", DEADLINE, || (process_state(pid)? != 'T').then_some(()));
    }

    /// The broker's log (every start appends to it), then anything it wrote to stderr.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let stderr = std::fs::read_to_string(self.dir.path().join("mosquitto.stderr")).unwrap_or_default();
        if stderr.trim().is_empty() { log } else { format!("{log}\n--- stderr ---\n{stderr}") }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn conf(&self) -> String {
        let dir = self.dir.path().display().to_string();
        let port = self.port.to_string();
        let mut conf = String::new();
        if let Some(template) = &self.opts.conf_template {
            conf.push_str(&template.replace("{port}", &port).replace("{dir}", &dir));
            conf.push('\n');
        } else {
            conf.push_str(&format!("per_listener_settings false\nlistener {port} 127.0.0.1\n"));
            match &self.opts.tls {
                Some(certs) => conf.push_str(&format!(
                    "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
                    certs.ca.display(),
                    certs.server_cert.display(),
                    certs.server_key.display()
                )),
                None => conf.push_str("allow_anonymous true\n"),
            }
            if let Some(acl) = &self.opts.acl_file {
                conf.push_str(&format!("acl_file {}\n", acl.display()));
            }
            if let Some(n) = self.opts.max_packet_size {
                conf.push_str(&format!("max_packet_size {n}\n"));
            }
            if let Some(n) = self.opts.message_size_limit {
                conf.push_str(&format!("message_size_limit {n}\n"));
            }
            if self.opts.persistence {
                conf.push_str(&format!("persistence true\npersistence_location {dir}/\n"));
            } else {
                conf.push_str("persistence false\n");
            }
            conf.push_str(&self.opts.extra_conf);
            conf.push('\n');
        }
        conf.push_str(&format!(
            "log_dest file {}\nlog_type all\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\nconnection_messages true\n",
            self.log_path().display()
        ));
        // Run as root, mosquitto switches to the user `mosquitto`, who cannot read our temporary
        // directory. It only does that when started as root.
        if nix::unistd::geteuid().is_root() {
            conf.push_str("user root\n");
        }
        conf
    }

    /// Writes the config and starts mosquitto; returns once its log says it is running.
    fn spawn(&mut self) -> Result<(), StartFailure> {
        std::fs::write(self.conf_path(), self.conf()).expect("write mosquitto.conf");
        let log_before = std::fs::metadata(self.log_path()).map(|m| m.len() as usize).unwrap_or(0);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.stderr"))
            .expect("stderr file");
        let child = Command::new(tool("mosquitto"))
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        wait_for("mosquitto to be running", DEADLINE, || {
            let log = std::fs::read(self.log_path()).unwrap_or_default();
            let new = String::from_utf8_lossy(log.get(log_before..).unwrap_or_default());
            if new.lines().any(|l| l.contains("mosquitto version") && l.ends_with(" running")) {
                return Some(Ok(()));
            }
            let child = self.child.as_mut().unwrap();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let text = self.log();
                if text.contains("Address already in use") {
                    return Some(Err(StartFailure::PortInUse));
                }
                return Some(Err(StartFailure::Exited(format!("exit {status}; log:\n{}", tail(&text, 40)))));
            }
            None
        })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- mosquitto log ({}), last lines ---\n{}", self.dir.path().display(), tail(&self.log(), 150));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Proxy

/// A TCP forwarder from an ephemeral 127.0.0.1 port to `upstream`, one thread per direction of
/// each connection. It can hold the link (nothing forwarded, every socket left open: a
/// half-open WAN) and cut it (every current connection closed).
pub struct Proxy {
    port: u16,
    upstream: SocketAddr,
    scheme_host: String,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    state: Mutex<ProxyState>,
    changed: Condvar,
    accepted: AtomicUsize,
    stop: AtomicBool,
}

#[derive(Default)]
struct ProxyState {
    paused: bool,
    conns: Vec<Arc<ProxyConn>>,
}

struct ProxyConn {
    client: TcpStream,
    upstream: Mutex<Option<TcpStream>>,
    closed: AtomicBool,
}

impl Proxy {
    /// A proxy to `upstream`; [`Proxy::url`] is then `mqtt://127.0.0.1:PORT`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        Proxy::start_as(upstream, "mqtt://127.0.0.1")
    }

    /// A proxy to the broker, whose [`Proxy::url`] speaks like the broker's (`mqtts://localhost`
    /// for a TLS broker: the server certificate names both localhost and 127.0.0.1).
    pub fn in_front_of(broker: &Broker) -> Proxy {
        Proxy::start_as(broker.addr(), if broker.is_tls() { "mqtts://localhost" } else { "mqtt://127.0.0.1" })
    }

    fn start_as(upstream: SocketAddr, scheme_host: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(ProxyShared {
            state: Mutex::new(ProxyState::default()),
            changed: Condvar::new(),
            accepted: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = stream else { continue };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                std::thread::spawn(move || proxy_connection(s, client, upstream));
            }
        });
        Proxy { port, upstream, scheme_host: scheme_host.to_string(), shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("{}:{}", self.scheme_host, self.port)
    }

    /// Stops forwarding in both directions without closing anything. Connections accepted
    /// while paused are not forwarded either (nor connected upstream) until [`Proxy::heal`].
    pub fn pause(&self) {
        self.shared.state.lock().unwrap().paused = true;
        self.shared.changed.notify_all();
    }

    /// Forwards again, including whatever was held.
    pub fn heal(&self) {
        self.shared.state.lock().unwrap().paused = false;
        self.shared.changed.notify_all();
    }

    /// Closes every current connection (both sides); later connections are served as usual.
    pub fn cut(&self) {
        let conns = std::mem::take(&mut self.shared.state.lock().unwrap().conns);
        for conn in conns {
            conn.close();
        }
        self.shared.changed.notify_all();
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.shared.state.lock().unwrap().conns.len()
    }

    pub fn is_paused(&self) -> bool {
        self.shared.state.lock().unwrap().paused
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the acceptor so that it sees `stop`.
        let _ = TcpStream::connect(self.addr());
    }
}

impl ProxyConn {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(up) = self.upstream.lock().unwrap().as_ref() {
            let _ = up.shutdown(Shutdown::Both);
        }
    }
}

impl ProxyShared {
    /// Blocks while paused; false when the connection is closed or the proxy stopped.
    fn wait_flowing(&self, conn: &ProxyConn) -> bool {
        let mut state = self.state.lock().unwrap();
        loop {
            if conn.closed.load(Ordering::SeqCst) || self.stop.load(Ordering::SeqCst) {
                return false;
            }
            if !state.paused {
                return true;
            }
            state = self.changed.wait_timeout(state, Duration::from_millis(100)).unwrap().0;
        }
    }

    fn forget(&self, conn: &Arc<ProxyConn>) {
        conn.close();
        self.state.lock().unwrap().conns.retain(|c| !Arc::ptr_eq(c, conn));
    }
}

fn proxy_connection(shared: Arc<ProxyShared>, client: TcpStream, upstream_addr: SocketAddr) {
    let conn = Arc::new(ProxyConn {
        client: client.try_clone().expect("clone client socket"),
        upstream: Mutex::new(None),
        closed: AtomicBool::new(false),
    });
    shared.state.lock().unwrap().conns.push(conn.clone());
    if !shared.wait_flowing(&conn) {
        return shared.forget(&conn);
    }
    let Ok(upstream) = TcpStream::connect_timeout(&upstream_addr, Duration::from_secs(10)) else {
        // Nobody upstream: the client sees its connection closed, as if refused.
        return shared.forget(&conn);
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    *conn.upstream.lock().unwrap() = Some(upstream.try_clone().expect("clone upstream socket"));
    if conn.closed.load(Ordering::SeqCst) {
        // Cut while connecting.
        return shared.forget(&conn);
    }
    let down = {
        let (shared, conn) = (shared.clone(), conn.clone());
        let (from, to) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
        std::thread::spawn(move || pump(&shared, &conn, from, to))
    };
    pump(&shared, &conn, client, upstream);
    let _ = down.join();
}

/// Copies `from` → `to` until either side closes, holding (not reading) while paused.
fn pump(shared: &Arc<ProxyShared>, conn: &Arc<ProxyConn>, mut from: TcpStream, mut to: TcpStream) {
    from.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while shared.wait_flowing(conn) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if read_again(&e) => {
                continue;
            }
            Err(_) => break,
        };
        // Paused between the read and the write: hold these bytes too.
        if !shared.wait_flowing(conn) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    shared.forget(conn);
}

// ---------------------------------------------------------------------------------------------
// MQTT peers: mosquitto_sub and mosquitto_pub

/// Host, port and whether TLS is used, from `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
pub fn parse_url(url: &str) -> (String, u16, bool) {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        panic!("not an mqtt:// or mqtts:// URL: {url}")
    };
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').unwrap_or_else(|| panic!("no port in {url}"));
    (host.to_string(), port.parse().unwrap_or_else(|_| panic!("bad port in {url}")), tls)
}

/// The connection arguments of the mosquitto clients for `url` (MQTT 3.1.1, as the contract).
pub(crate) fn mosquitto_client_args(cmd: &mut Command, url: &str, tls: Option<&ClientTls>) {
    let (host, port, is_tls) = parse_url(url);
    cmd.args(["-V", "mqttv311", "-h", &host, "-p", &port.to_string()]);
    match (is_tls, tls) {
        (true, Some(t)) => {
            cmd.arg("--cafile").arg(&t.ca).arg("--cert").arg(&t.cert).arg("--key").arg(&t.key);
        }
        (true, None) => panic!("{url} needs TLS files"),
        (false, Some(_)) => panic!("TLS files given for the plain {url}"),
        (false, None) => {}
    }
}

/// One message as a subscriber got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    /// The retain flag as delivered: set for a retained message sent on subscribing.
    pub retained: bool,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("payload on {} is not JSON ({e}): {}", self.topic, self.text()))
    }
}

/// A `mosquitto_sub` in the background (QoS 1, clean session; it reconnects and subscribes
/// again by itself), collecting every message.
pub struct Subscriber {
    child: Option<Child>,
    shared: Arc<SubscriberShared>,
    readers: Vec<std::thread::JoinHandle<()>>,
    what: String,
}

#[derive(Default)]
struct SubscriberShared {
    messages: Mutex<Vec<Received>>,
    /// Granted QoS per filter, from the first SUBACK (128: refused).
    granted: Mutex<Option<Vec<u8>>>,
    transcript: Mutex<String>,
}

impl Subscriber {
    /// Subscribes anonymously to `filter` on a plain broker; returns once subscribed.
    pub fn start(url: &str, filter: &str) -> Subscriber {
        Subscriber::start_with(url, None, &[filter], None)
    }

    /// Subscribes to `filters` (with a client certificate for an `mqtts://` URL, and the given
    /// client id or a generated one); returns once the broker acknowledged the subscription.
    pub fn start_with(url: &str, tls: Option<&ClientTls>, filters: &[&str], client_id: Option<&str>) -> Subscriber {
        Subscriber::try_start(url, tls, filters, client_id).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Subscriber::start_with`], but an Err with mosquitto_sub's output when it exits
    /// before subscribing (refused by the broker, say).
    pub fn try_start(
        url: &str,
        tls: Option<&ClientTls>,
        filters: &[&str],
        client_id: Option<&str>,
    ) -> Result<Subscriber, String> {
        assert!(!filters.is_empty(), "no topic filter");
        let client_id =
            client_id.map(str::to_string).unwrap_or_else(|| format!("test-sub-{}-{}", std::process::id(), unique()));
        // mosquitto_sub block-buffers its output into a pipe: stdbuf makes it line-buffered, so
        // that the SUBACK line arrives when it happens.
        let mut cmd = Command::new(tool("stdbuf"));
        cmd.arg("-oL").arg(tool("mosquitto_sub"));
        mosquitto_client_args(&mut cmd, url, tls);
        cmd.args(["-i", &client_id, "-q", "1", "-d", "-F", "MSG %r %x %t"]);
        for f in filters {
            cmd.args(["-t", f]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto_sub");
        let shared = Arc::new(SubscriberShared::default());
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let s = shared.clone();
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                s.take_line(&line);
            }
        });
        let s = shared.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                s.transcript.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let what = format!("mosquitto_sub {client_id} on {url} for {filters:?}");
        let mut sub = Subscriber { child: Some(child), shared, readers: vec![stdout_reader, stderr_reader], what };
        let subscribed = wait_for(&format!("{} to subscribe", sub.what), DEADLINE, || {
            if sub.shared.granted.lock().unwrap().is_some() {
                return Some(true);
            }
            let exited = sub.child.as_mut().unwrap().try_wait().ok().flatten().is_some();
            exited.then_some(false)
        });
        if subscribed {
            Ok(sub)
        } else {
            let status = sub.child.take().unwrap().wait().unwrap();
            // The pipes are closed: the readers finish with what is left in them.
            for reader in sub.readers.drain(..) {
                let _ = reader.join();
            }
            Err(format!("{} exited with {status} before subscribing:\n{}", sub.what, sub.transcript()))
        }
    }

    /// Granted QoS per filter (128 when the broker refused one).
    pub fn granted(&self) -> Vec<u8> {
        self.shared.granted.lock().unwrap().clone().unwrap_or_default()
    }

    pub fn messages(&self) -> Vec<Received> {
        self.shared.messages.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.messages.lock().unwrap().len()
    }

    /// Messages whose topic is `topic`.
    pub fn on(&self, topic: &str) -> Vec<Received> {
        self.messages().into_iter().filter(|m| m.topic == topic).collect()
    }

    /// Waits until a message matching `pred` has arrived; returns the first such.
    pub fn wait_for_message(&self, what: &str, deadline: Duration, pred: impl Fn(&Received) -> bool) -> Received {
        let start = Instant::now();
        loop {
            if let Some(m) = self.messages().into_iter().find(&pred) {
                return m;
            }
            if start.elapsed() > deadline {
                panic!(
                    "timed out after {deadline:?} waiting for {what} at {}; got {:?}\n--- transcript ---\n{}",
                    self.what,
                    self.messages(),
                    tail(&self.transcript(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a message on `topic` whose payload is `payload`.
    pub fn wait_for_payload(&self, topic: &str, payload: &[u8]) -> Received {
        let what = format!("{:?} on {topic}", String::from_utf8_lossy(payload));
        self.wait_for_message(&what, DEADLINE, |m| m.topic == topic && m.payload == payload)
    }

    /// What mosquitto_sub printed (its debug lines and errors).
    pub fn transcript(&self) -> String {
        self.shared.transcript.lock().unwrap().clone()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl SubscriberShared {
    fn take_line(&self, line: &str) {
        self.transcript.lock().unwrap().push_str(&format!("{line}\n"));
        if let Some(rest) = line.strip_prefix("MSG ") {
            // "MSG <retained 0|1> <payload as hex> <topic>"
            let mut parts = rest.splitn(3, ' ');
            let (retained, hex, topic) = (parts.next(), parts.next(), parts.next());
            let (Some(retained), Some(hex), Some(topic)) = (retained, hex, topic) else { return };
            let payload =
                (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
            let m = Received { topic: topic.to_string(), payload, retained: retained == "1" };
            self.messages.lock().unwrap().push(m);
        } else if let Some(rest) = line.strip_prefix("Subscribed (mid: ") {
            // "Subscribed (mid: 1): 1, 1"
            let granted = rest.split_once("):").map(|(_, q)| q).unwrap_or("");
            let granted = granted.split(',').filter_map(|q| q.trim().parse().ok()).collect();
            self.granted.lock().unwrap().get_or_insert(granted);
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.what, tail(&self.transcript(), 60));
        }
    }
}

/// Publishes one QoS 1 message with mosquitto_pub to a plain broker, anonymously; panics if
/// that fails.
pub fn publish(url: &str, topic: &str, payload: &[u8], retain: bool) {
    publish_with(url, None, topic, payload, retain);
}

/// [`publish`] with a client certificate (for `mqtts://`). mosquitto acknowledges a publish
/// its ACL forbids and drops it, so this succeeds for those too.
pub fn publish_with(url: &str, tls: Option<&ClientTls>, topic: &str, payload: &[u8], retain: bool) {
    let out = try_publish(url, tls, topic, payload, retain);
    assert!(
        out.status.success(),
        "mosquitto_pub to {topic} at {url} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs mosquitto_pub and returns its output, successful or not. It returns once the broker
/// acknowledged the message (QoS 1).
pub fn try_publish(url: &str, tls: Option<&ClientTls>, topic: &str, payload: &[u8], retain: bool) -> Output {
    let mut cmd = Command::new(tool("mosquitto_pub"));
    mosquitto_client_args(&mut cmd, url, tls);
    cmd.args(["-i", &format!("test-pub-{}-{}", std::process::id(), unique()), "-q", "1", "-t", topic]);
    if retain {
        cmd.arg("-r");
    }
    // Held until the command has run: the payload goes through a file, byte for byte.
    let file = tempfile::NamedTempFile::new().expect("payload file");
    if payload.is_empty() {
        cmd.arg("-n");
    } else {
        std::fs::write(file.path(), payload).expect("write payload");
        cmd.arg("-f").arg(file.path());
    }
    output_within(cmd, DEADLINE)
}

// ---------------------------------------------------------------------------------------------
// Raw MQTT bytes, for checking a link below the clients

/// An MQTT 3.1.1 CONNECT packet (clean session, keep-alive 60 s) for `client_id`.
pub fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    assert!(body.len() < 128, "client id too long for this one-byte length");
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// The CONNACK a broker sends to accept a 3.1.1 clean-session CONNECT.
pub const CONNACK_ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// Reads exactly `n` bytes, or None if nothing complete arrives within `timeout`.
pub fn read_within(stream: &mut TcpStream, n: usize, timeout: Duration) -> Option<Vec<u8>> {
    let start = Instant::now();
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let left = timeout.checked_sub(start.elapsed())?;
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match stream.read(&mut buf[got..]) {
            Ok(0) => return None,
            Ok(k) => got += k,
            Err(e) if read_again(&e) => {}
            Err(_) => return None,
        }
    }
    Some(buf)
}

/// Whether the peer closed the connection (EOF or reset) within `timeout`; data read on the way
/// is discarded.
pub fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while let Some(left) = timeout.checked_sub(start.elapsed()) {
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if read_again(&e) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Topic-to-payload map of the retained messages a fresh subscriber gets for `filter`; returns
/// once `expected` of them have arrived.
pub fn retained(url: &str, tls: Option<&ClientTls>, filter: &str, expected: usize) -> HashMap<String, Vec<u8>> {
    let sub = Subscriber::start_with(url, tls, &[filter], None);
    wait_for(&format!("{expected} retained message(s) on {filter}"), DEADLINE, || {
        let got: HashMap<String, Vec<u8>> =
            sub.messages().into_iter().filter(|m| m.retained).map(|m| (m.topic, m.payload)).collect();
        (got.len() >= expected).then_some(got)
    })
}
