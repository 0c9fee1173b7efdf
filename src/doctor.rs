//! `outpost doctor`: what usually goes wrong on site, checked in one go, each finding with how to
//! fix it. The config, the state directory and its free space, the clock, each source (its
//! address free or its listener up, its folder there and writable), each destination
//! (reachable, or its folder writable), the broker and the TLS files, the daemon and its
//! systemd unit. It changes nothing.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, DestinationKind, SourceKind};

/// How long a reachability check waits for a connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked: `config`, `state dir`, `source ehr`, `destination lis`, `uplink`, ...
    pub check: String,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it, when not ok.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding { check: check.into(), verdict: Verdict::Ok, detail: detail.into(), fix: None }
    }

    fn bad(verdict: Verdict, check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check: check.into(), verdict, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Runs every check for the config at `path` (`None`: the embedded default). `daemon` is the
/// running daemon's status, when one answers on the config's control socket.
pub fn examine(path: Option<&Path>, daemon: Option<&serde_json::Value>) -> Vec<Finding> {
    let name = path.map(|p| p.display().to_string()).unwrap_or_else(|| "<embedded default>".into());
    let config = match path.map(Config::load).unwrap_or_else(|| Ok(Config::embedded_default())) {
        Ok(c) => c,
        Err(errors) => {
            let first = errors.messages().into_iter().next().unwrap_or_default();
            return vec![Finding::bad(
                Verdict::Fail,
                "config",
                format!("{} problem(s), the first: {first}", errors.len()),
                format!("run `outpost config check {name}` for every one, with its line"),
            )];
        }
    };
    let mut out = vec![Finding::ok(
        "config",
        format!(
            "{name}: valid ({} source(s), {} destination(s), {} route(s))",
            config.sources.len(),
            config.destinations.len(),
            config.routes.len()
        ),
    )];
    out.push(state_dir(&config));
    out.push(clock());
    out.push(match daemon {
        Some(st) => Finding::ok("daemon", format!("running, up {} s", st["uptime_s"].as_u64().unwrap_or(0))),
        None => Finding::bad(
            Verdict::Warn,
            "daemon",
            format!("not answering on {}", config.control.socket.display()),
            "start it (`systemctl start outpost`); if it is running, check control.socket in its config",
        ),
    });
    for s in &config.sources {
        out.push(source(s, daemon));
    }
    for d in &config.destinations {
        out.push(destination(d, &config));
    }
    if let Some(u) = &config.uplink {
        out.push(uplink(u));
    }
    out.extend(unit());
    out
}

/// Whether `dir` can be written, or created where it is missing: `Ok(true)` if it exists,
/// `Ok(false)` if it would be created; `Err` with why not. Creates nothing.
fn writable_or_creatable(dir: &Path) -> Result<bool, String> {
    let w = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
    if dir.is_dir() {
        return nix::unistd::access(dir, w).map(|_| true).map_err(|e| format!("not writable ({e})"));
    }
    let parent = dir.ancestors().skip(1).find(|a| a.is_dir()).unwrap_or(Path::new("/"));
    nix::unistd::access(parent, w)
        .map(|_| false)
        .map_err(|e| format!("missing, and {} is not writable to create it ({e})", parent.display()))
}

fn state_dir(config: &Config) -> Finding {
    let dir = &config.node.state_dir;
    match writable_or_creatable(dir) {
        Err(why) => {
            return Finding::bad(
                Verdict::Fail,
                "state dir",
                format!("{}: {why}", dir.display()),
                format!("`chown -R outpost:outpost {}`, or set node.state_dir to a directory it owns", dir.display()),
            );
        }
        Ok(false) => return Finding::ok("state dir", format!("{}: created at the first start", dir.display())),
        Ok(true) => {}
    }
    let min = config.journal.min_free_disk;
    match crate::journal::free_bytes(dir) {
        Some(free) if free < min => Finding::bad(
            Verdict::Fail,
            "state dir",
            format!(
                "{}: {} free, below journal.min_free_disk ({}): new items are refused",
                dir.display(),
                mib(free),
                mib(min)
            ),
            "free space on that filesystem",
        ),
        Some(free) if free < 2 * min => Finding::bad(
            Verdict::Warn,
            "state dir",
            format!("{}: {} free, less than twice journal.min_free_disk", dir.display(), mib(free)),
            "free space on that filesystem soon",
        ),
        Some(free) => Finding::ok("state dir", format!("{}: writable, {} free", dir.display(), mib(free))),
        None => Finding::ok("state dir", format!("{}: writable", dir.display())),
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

fn clock() -> Finding {
    match crate::uplink::kernel_clock() {
        Some((true, offset)) => Finding::ok("clock", format!("synchronised (offset {offset:.1} ms)")),
        Some((false, _)) => Finding::bad(
            Verdict::Warn,
            "clock",
            "not synchronised: items carry their receipt time and central orders by it",
            "enable NTP: `timedatectl set-ntp true` (or chrony), and allow UDP 123 out",
        ),
        None => Finding::bad(Verdict::Warn, "clock", "cannot ask the kernel", "check `timedatectl`"),
    }
}

fn source(s: &crate::config::Source, daemon: Option<&serde_json::Value>) -> Finding {
    let check = format!("source {}", s.name);
    let live = daemon.and_then(|st| st["sources"].as_array()?.iter().find(|x| x["name"] == s.name.as_str()).cloned());
    if let Some(live) = live {
        return match live["state"].as_str() {
            Some("up") => Finding::ok(check, "up in the running daemon"),
            _ => Finding::bad(
                Verdict::Fail,
                check,
                format!("down in the running daemon: {}", live["last_error"].as_str().unwrap_or("no reason given")),
                "see `outpost status` and the log (`journalctl -u outpost`)",
            ),
        };
    }
    match &s.kind {
        SourceKind::Mllp(m) => listen_free(check, m.listen),
        SourceKind::Directory(d) => {
            let rwx = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
            if !d.dir.is_dir() {
                Finding::bad(
                    Verdict::Fail,
                    check,
                    format!("folder {} does not exist", d.dir.display()),
                    format!("`mkdir -p {0}` and `chown outpost {0}`, or fix dir", d.dir.display()),
                )
            } else if nix::unistd::access(&d.dir, rwx).is_err() {
                Finding::bad(
                    Verdict::Fail,
                    check,
                    format!("folder {}: no read/write access", d.dir.display()),
                    format!("`chown outpost {}` or `setfacl -m u:outpost:rwx {}`", d.dir.display(), d.dir.display()),
                )
            } else {
                Finding::ok(check, format!("folder {} is there and writable", d.dir.display()))
            }
        }
        SourceKind::Astm(a) => match &a.transport {
            crate::config::AstmTransport::Serial(port) => serial_port(check, &port.port),
            crate::config::AstmTransport::TcpListen(addr) => listen_free(check, *addr),
            crate::config::AstmTransport::TcpConnect(addr) => match reach(addr) {
                Ok(()) => Finding::ok(check, format!("the instrument at {addr} accepts connections")),
                Err(e) => Finding::bad(
                    Verdict::Fail,
                    check,
                    format!("cannot connect to the instrument at {addr}: {e}"),
                    "is the instrument on, with its host interface listening on that port?",
                ),
            },
        },
        SourceKind::FaxModem(f) => serial_port(check, &f.serial.port),
        SourceKind::FaxSpool(f) => {
            let rx = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::X_OK;
            if !f.dir.is_dir() {
                Finding::bad(
                    Verdict::Fail,
                    check,
                    format!("fax spool {} does not exist", f.dir.display()),
                    "is HylaFAX (or mgetty) installed and receiving into it? fix dir",
                )
            } else if nix::unistd::access(&f.dir, rx).is_err() {
                Finding::bad(
                    Verdict::Fail,
                    check,
                    format!("fax spool {}: no read access", f.dir.display()),
                    format!(
                        "add the outpost user to the spool's group (HylaFAX: `usermod -aG uucp outpost`) or \
                         `setfacl -m u:outpost:rx {}`",
                        f.dir.display()
                    ),
                )
            } else {
                Finding::ok(check, format!("fax spool {} is there and readable", f.dir.display()))
            }
        }
    }
}

/// A listening address a source names: free to listen on (the daemon is not running here).
fn listen_free(check: String, addr: std::net::SocketAddr) -> Finding {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Finding::ok(check, format!("{addr} is free to listen on")),
        Err(e) => Finding::bad(
            Verdict::Fail,
            check,
            format!("cannot listen on {addr}: {e}"),
            "another program holds it (`ss -ltnp`), or the address is not this machine's",
        ),
    }
}

/// A serial port a source names: there, and openable by this user (in group dialout).
fn serial_port(check: String, port: &std::path::Path) -> Finding {
    let rw = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
    if !port.exists() {
        Finding::bad(
            Verdict::Fail,
            check,
            format!("serial port {} is not there", port.display()),
            "plug the adapter in, or fix the path: `outpost ports` lists the ports on this box with their by-id paths",
        )
    } else if nix::unistd::access(port, rw).is_err() {
        Finding::bad(
            Verdict::Fail,
            check,
            format!("serial port {}: no read/write access for this user", port.display()),
            "the service's user outpost is in group dialout; for a tech: `sudo adduser $USER dialout`, then log in again",
        )
    } else {
        Finding::ok(check, format!("serial port {} is there and accessible", port.display()))
    }
}

fn destination(d: &crate::config::Destination, config: &Config) -> Finding {
    let check = format!("destination {}", d.name);
    match &d.kind {
        DestinationKind::Mllp(m) => match reach(&m.connect) {
            Ok(()) => Finding::ok(check, format!("{} accepts connections", m.connect)),
            Err(e) => Finding::bad(
                Verdict::Fail,
                check,
                format!("cannot connect to {}: {e}", m.connect),
                "is the receiving system's interface running, and the host and port in `connect` right? \
                 (a firewall between them shows as a timeout)",
            ),
        },
        DestinationKind::File(f) => match writable_or_creatable(&f.dir) {
            Ok(true) => Finding::ok(check, format!("folder {} is writable", f.dir.display())),
            Ok(false) => Finding::ok(check, format!("folder {} is created at the first delivery", f.dir.display())),
            Err(why) => Finding::bad(
                Verdict::Fail,
                check,
                format!("folder {}: {why}", f.dir.display()),
                format!("`chown outpost {}`, or fix dir", f.dir.display()),
            ),
        },
        DestinationKind::Uplink => Finding::ok(
            check,
            format!("to central over {}", config.uplink.as_ref().map(|u| u.broker.to_string()).unwrap_or_default()),
        ),
    }
}

fn uplink(u: &crate::config::Uplink) -> Finding {
    if u.broker.tls
        && let Err(e) = crate::uplink::tls_client_config(u)
    {
        return Finding::bad(Verdict::Fail, "uplink", e, "fix uplink.ca / uplink.cert / uplink.key");
    }
    match reach(&format!("{}:{}", u.broker.host, u.broker.port)) {
        Ok(()) => Finding::ok(
            "uplink",
            format!(
                "broker {} accepts connections{}",
                u.broker,
                if u.broker.tls { ", TLS files readable" } else { "" }
            ),
        ),
        Err(e) => Finding::bad(
            Verdict::Fail,
            "uplink",
            format!("cannot connect to broker {}: {e}", u.broker),
            "check the clinic's outbound firewall (MQTT is usually 8883 with TLS) and uplink.url; \
             items wait in the journal meanwhile",
        ),
    }
}

/// Connects to `host:port` (resolving names) within [`CONNECT_WITHIN`].
fn reach(target: &str) -> Result<(), String> {
    let addrs: Vec<_> = target.to_socket_addrs().map_err(|e| format!("cannot resolve: {e}"))?.collect();
    let mut last = "no address".to_string();
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, CONNECT_WITHIN) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The systemd unit, when systemd runs this machine.
fn unit() -> Option<Finding> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let query = |what: &str| {
        std::process::Command::new("systemctl")
            .args([what, "outpost"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let (active, enabled) = (query("is-active")?, query("is-enabled").unwrap_or_default());
    Some(if active == "active" {
        Finding::ok("unit", format!("outpost.service {active}, {enabled}"))
    } else {
        Finding::bad(
            Verdict::Warn,
            "unit",
            format!("outpost.service {active}, {enabled}"),
            "`systemctl enable --now outpost`; if it fails, `journalctl -u outpost -b` says why",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_config_is_the_only_finding_and_says_how_to_see_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[node]\nsite = \"s\"\nid = \"n\"\nbogus = 1\n").unwrap();
        let f = examine(Some(&path), None);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].check.as_str(), f[0].verdict), ("config", Verdict::Fail));
        assert!(f[0].detail.contains("bogus"), "{f:?}");
        assert!(f[0].fix.as_deref().unwrap().contains("outpost config check"), "{f:?}");
    }
}
