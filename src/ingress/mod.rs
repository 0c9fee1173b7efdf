//! Ingress adapters: they own sockets, folders (and later serial ports and modems), turn bytes
//! into items, hand them to [`crate::intake::Intake`], and answer the sender. One module per
//! kind.
//!
//! This file is the one place that knows the set of source kinds. For each kind it says:
//! - what the source holds exclusively ([`resources`]: a TCP address, a folder, a device), so a
//!   reload can keep a running source, hand its resources to the source's new settings, or
//!   refuse a config where two sources claim one;
//! - how it opens ([`open`]): at start and at reload, before anything switches, so that a bad
//!   address or a missing folder fails early with words a field tech can act on;
//! - how it serves until told to stop ([`serve`]), handing its opened resources back;
//! - what state it reports ([`status`]): for `outpost status`, birth and telemetry alike.
//!
//! Adding a kind: a module here, an arm in each `match` below, its config section.

pub mod astm;
pub mod directory;
pub mod fax_modem;
pub mod fax_spool;
pub mod folder;
pub mod mllp;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Source, SourceKind};
use crate::control::protocol::SourceStatus;
use crate::intake::Intake;
use crate::stats::{SourceState, SourceStats, get};

/// Something a source holds exclusively while it runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// A listening TCP address.
    Tcp(SocketAddr),
    /// A folder watched for files.
    Folder(PathBuf),
    /// A serial port (by the path configured; two names of one device are not recognised).
    Device(PathBuf),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Tcp(a) => write!(f, "address {a}"),
            Resource::Folder(p) => write!(f, "folder {}", p.display()),
            Resource::Device(p) => write!(f, "serial port {}", p.display()),
        }
    }
}

/// What a source holds exclusively.
pub fn resources(source: &Source) -> Vec<Resource> {
    match &source.kind {
        SourceKind::Mllp(m) => vec![Resource::Tcp(m.listen)],
        SourceKind::Directory(d) => vec![Resource::Folder(d.dir.clone())],
        SourceKind::Astm(a) => match &a.transport {
            crate::config::AstmTransport::Serial(s) => vec![Resource::Device(s.port.clone())],
            crate::config::AstmTransport::TcpListen(addr) => vec![Resource::Tcp(*addr)],
            crate::config::AstmTransport::TcpConnect(_) => Vec::new(),
        },
        SourceKind::FaxModem(f) => vec![Resource::Device(f.serial.port.clone())],
        SourceKind::FaxSpool(f) => vec![Resource::Folder(f.dir.clone())],
    }
}

/// Refuses sources that claim one resource twice (two listeners on one address, two sources
/// taking files from one folder). Port 0 (any free port) is never a clash.
pub fn check_exclusive(sources: &[Source]) -> Result<(), OpenError> {
    let mut owners: BTreeMap<Resource, &str> = BTreeMap::new();
    for s in sources {
        for r in resources(s) {
            if matches!(r, Resource::Tcp(a) if a.port() == 0) {
                continue;
            }
            if let Some(other) = owners.insert(r.clone(), &s.name) {
                return Err(OpenError {
                    name: s.name.clone(),
                    message: format!("{r} is already used by source `{other}`; give each source its own"),
                });
            }
        }
    }
    Ok(())
}

/// Why a source could not open, in a field tech's words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("source `{name}`: {message}")]
pub struct OpenError {
    /// The source's name.
    pub name: String,
    pub message: String,
}

/// A source's resources, opened and ready to serve.
#[derive(Debug)]
pub enum Opened {
    Mllp(tokio::net::TcpListener),
    Directory(Box<folder::Folder>),
    Astm(astm::Opened),
    FaxModem(fax_modem::Opened),
    FaxSpool(Box<folder::Folder>),
}

impl Opened {
    /// As the source starts: up and where it is (the bound address, the folder, the port), or
    /// down and why (a serial port that is not there yet: the daemon starts all the same).
    pub fn state(&self, source: &Source) -> Result<String, String> {
        match (self, &source.kind) {
            (Opened::Mllp(listener), _) => Ok(listener.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            (Opened::Directory(folder), _) => Ok(folder.dir().display().to_string()),
            (Opened::Astm(opened), SourceKind::Astm(cfg)) => opened.state(cfg),
            (Opened::FaxModem(opened), SourceKind::FaxModem(cfg)) => opened.state(cfg),
            (Opened::FaxSpool(folder), _) => Ok(folder.dir().display().to_string()),
            (Opened::Astm(_) | Opened::FaxModem(_), _) => Err("not open".into()),
        }
    }
}

/// Binds a listening TCP socket (separately from serving, so that a bad address or a port in
/// use is reported at start or reload, before anything else changes), failing with what to do.
pub async fn bind_tcp(name: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, OpenError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "another program (or another outpost) already listens there; \
                 find it with `ss -ltnp` or choose another port"
            }
            std::io::ErrorKind::PermissionDenied => {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port above 1024"
            }
            std::io::ErrorKind::AddrNotAvailable => "this machine has no such address; use 0.0.0.0 or one of `ip addr`",
            _ => "check the address in the config",
        };
        OpenError { name: name.to_string(), message: format!("cannot listen on {addr}: {e}; {hint}") }
    })
}

/// Opens what `source` needs (binds, checks folders and ports).
pub async fn open(source: &Source) -> Result<Opened, OpenError> {
    match &source.kind {
        SourceKind::Mllp(m) => bind_tcp(&source.name, m.listen).await.map(Opened::Mllp),
        SourceKind::Directory(d) => directory::open(&source.name, d).map(|f| Opened::Directory(Box::new(f))),
        SourceKind::Astm(a) => astm::open(&source.name, a).await.map(Opened::Astm),
        SourceKind::FaxModem(f) => Ok(Opened::FaxModem(fax_modem::open(f))),
        SourceKind::FaxSpool(f) => fax_spool::open(&source.name, f).map(|f| Opened::FaxSpool(Box::new(f))),
    }
}

/// What a serving source works with.
#[derive(Clone)]
pub struct Serving {
    pub intake: Arc<Intake>,
    pub stats: Arc<SourceStats>,
    /// Stops taking new work (accepting connections, picking up files); `serve` then returns
    /// the opened resources.
    pub stop: CancellationToken,
    /// Ends work in progress (open connections); fired only when the source goes away.
    pub abort: CancellationToken,
    /// Tracks work in progress so that shutdown can wait for it.
    pub tracker: TaskTracker,
}

/// Serves until `serving.stop` fires, then hands back what it opened (a reload that keeps a
/// source's resources but changes its settings serves them again without closing them).
pub async fn serve(source: Source, opened: Opened, serving: Serving) -> Opened {
    let name = source.name;
    match (source.kind, opened) {
        (SourceKind::Mllp(cfg), Opened::Mllp(listener)) => {
            Opened::Mllp(mllp::serve(name, cfg, listener, serving).await)
        }
        (SourceKind::Directory(cfg), Opened::Directory(folder)) => {
            Opened::Directory(Box::new(directory::serve(name, cfg, *folder, serving).await))
        }
        (SourceKind::Astm(cfg), Opened::Astm(opened)) => Opened::Astm(astm::serve(name, cfg, opened, serving).await),
        (SourceKind::FaxModem(cfg), Opened::FaxModem(opened)) => {
            Opened::FaxModem(fax_modem::serve(name, cfg, opened, serving).await)
        }
        (SourceKind::FaxSpool(cfg), Opened::FaxSpool(folder)) => {
            Opened::FaxSpool(Box::new(fax_spool::serve(name, cfg, *folder, serving).await))
        }
        // The daemon hands a source only what `open` made for its own kind; anything else is
        // returned untouched (the reload then opens afresh).
        (_, other) => {
            tracing::error!(source = %name, "resources of another kind handed to this source; not serving them");
            other
        }
    }
}

/// What is particular to a kind in its status: flattened into [`SourceStatus`] with `kind` as
/// the tag, so a status reads `{"name": .., "kind": "mllp", "listen": .., "bound": ..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceDetail {
    Mllp(mllp::Detail),
    Directory(directory::Detail),
    Astm(astm::Detail),
    #[serde(rename = "fax-modem")]
    FaxModem(fax_modem::Detail),
    #[serde(rename = "fax-spool")]
    FaxSpool(fax_spool::Detail),
}

impl SourceDetail {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceDetail::Mllp(_) => "mllp",
            SourceDetail::Directory(_) => "directory",
            SourceDetail::Astm(_) => "astm",
            SourceDetail::FaxModem(_) => "fax-modem",
            SourceDetail::FaxSpool(_) => "fax-spool",
        }
    }

    /// The word for `link` in birth and telemetry (docs/mqtt.md): the kind's own word for up
    /// (`listening`), or `down`.
    pub fn link_word(&self, state: SourceState) -> &'static str {
        match (state, self) {
            (SourceState::Down, _) => "down",
            (SourceState::Up, SourceDetail::Mllp(_)) => "listening",
            (SourceState::Up, SourceDetail::Directory(_)) => "watching",
            (SourceState::Up, SourceDetail::Astm(_) | SourceDetail::FaxModem(_)) => "open",
            (SourceState::Up, SourceDetail::FaxSpool(_)) => "watching",
        }
    }

    /// The AT and OPEN columns of `outpost status`: where the source is (the bound address,
    /// the folder) and what is open at it (connections, files waiting).
    pub fn columns(&self) -> (String, String) {
        match self {
            SourceDetail::Mllp(m) => {
                (m.bound.clone().unwrap_or_else(|| "(not listening)".into()), m.connections.to_string())
            }
            SourceDetail::Directory(d) => (d.dir.clone(), d.waiting.to_string()),
            SourceDetail::Astm(a) => (a.address.clone(), a.connections.to_string()),
            SourceDetail::FaxModem(f) => (f.port.clone(), f.modem.clone()),
            SourceDetail::FaxSpool(f) => (f.dir.clone(), f.waiting.to_string()),
        }
    }

    /// A line for `outpost status` under the table, when the kind has more to say: a lab
    /// link's last message and its refused frames and dropped messages. `ago` renders a time
    /// (unix ms) as an age.
    pub fn status_note(&self, ago: impl Fn(i64) -> String) -> Option<String> {
        match self {
            SourceDetail::Astm(a) => {
                let last = a
                    .last_message_at
                    .map(&ago)
                    .map(|t| format!("last message {t} ago"))
                    .unwrap_or("no message yet".into());
                Some(format!(
                    "{last} · {} frame(s) refused · {} unfinished message(s) dropped",
                    a.rejected_frames, a.discarded_messages
                ))
            }
            SourceDetail::FaxModem(f) => {
                let last = f.last_fax_at.map(&ago).map(|t| format!("last fax {t} ago")).unwrap_or("no fax yet".into());
                let class = f.class.as_ref().map(|c| format!("class {c} · ")).unwrap_or_default();
                Some(format!(
                    "{class}{last} · {} call(s), {} page(s), {} incomplete fax(es)",
                    f.calls, f.pages, f.incomplete
                ))
            }
            SourceDetail::Mllp(_) | SourceDetail::Directory(_) | SourceDetail::FaxSpool(_) => None,
        }
    }

    /// The kind's own fields for birth and telemetry (no patient data: counts and states).
    pub fn contract_fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        match self {
            SourceDetail::Mllp(d) => vec![("connections", d.connections.into())],
            SourceDetail::Directory(d) => vec![("waiting", d.waiting.into())],
            SourceDetail::Astm(d) => vec![
                ("connections", d.connections.into()),
                ("rejected_frames", d.rejected_frames.into()),
                ("discarded_messages", d.discarded_messages.into()),
            ],
            SourceDetail::FaxModem(d) => vec![
                ("modem", d.modem.clone().into()),
                ("calls", d.calls.into()),
                ("pages", d.pages.into()),
                ("incomplete", d.incomplete.into()),
            ],
            SourceDetail::FaxSpool(d) => vec![("waiting", d.waiting.into())],
        }
    }
}

/// A source's status from its config and live counters (no journal read).
pub fn status(source: &Source, stats: &SourceStats) -> SourceStatus {
    let link = stats.link();
    let detail = match &source.kind {
        SourceKind::Mllp(m) => SourceDetail::Mllp(mllp::detail(m, stats, &link)),
        SourceKind::Directory(d) => SourceDetail::Directory(directory::detail(d, stats, &link)),
        SourceKind::Astm(a) => SourceDetail::Astm(astm::detail(a, stats, &link)),
        SourceKind::FaxModem(f) => SourceDetail::FaxModem(fax_modem::detail(f, stats, &link)),
        SourceKind::FaxSpool(f) => SourceDetail::FaxSpool(fax_spool::detail(f, stats, &link)),
    };
    SourceStatus {
        name: source.name.clone(),
        state: link.state,
        since: link.since,
        last_error: link.last_error,
        received: get(&stats.received),
        rejected: get(&stats.rejected),
        refused: get(&stats.refused),
        duplicates: get(&stats.duplicates),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mllp(name: &str, listen: &str) -> Source {
        let toml = format!(
            "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/tmp/x\"\n[[source]]\nname = \"{name}\"\nkind = \"mllp\"\nlisten = \"{listen}\"\n"
        );
        crate::config::Config::parse(&toml, "t").unwrap().sources.remove(0)
    }

    #[test]
    fn two_sources_on_one_address_are_refused_but_port_zero_never_clashes() {
        let a = mllp("a", "127.0.0.1:2575");
        let b = mllp("b", "127.0.0.1:2575");
        let e = check_exclusive(&[a.clone(), b]).unwrap_err();
        assert_eq!(e.name, "b");
        assert!(e.message.contains("already used by source `a`"), "{e}");
        assert!(check_exclusive(&[mllp("a", "127.0.0.1:0"), mllp("b", "127.0.0.1:0")]).is_ok());
        assert!(check_exclusive(&[a, mllp("c", "127.0.0.1:2576")]).is_ok());
    }

    #[test]
    fn status_json_keeps_the_kind_fields_flat_and_reads_back() {
        let stats = SourceStats::default();
        stats.up("127.0.0.1:4000".into());
        let st = status(&mllp("ehr", "127.0.0.1:0"), &stats);
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["kind"], "mllp");
        assert_eq!(v["bound"], "127.0.0.1:4000");
        assert_eq!(v["listen"], "127.0.0.1:0");
        assert_eq!(v["state"], "up");
        let back: SourceStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back.detail, st.detail);
        assert_eq!(back.detail.link_word(back.state), "listening");
    }

    #[test]
    fn a_folder_reads_watching_with_its_waiting_files_and_down_when_down() {
        let toml = "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/tmp/x\"\n[[source]]\nname = \"drop\"\nkind = \"directory\"\ndir = \"/srv/in\"\n";
        let source = crate::config::Config::parse(toml, "t").unwrap().sources.remove(0);
        assert_eq!(resources(&source), vec![Resource::Folder("/srv/in".into())]);
        let stats = SourceStats::default();
        stats.waiting.store(3, std::sync::atomic::Ordering::Relaxed);
        let down = status(&source, &stats);
        assert_eq!(down.detail.link_word(down.state), "down");
        stats.up("/srv/in".into());
        let up = status(&source, &stats);
        assert_eq!(up.detail.link_word(up.state), "watching");
        assert_eq!(up.detail.contract_fields(), vec![("waiting", serde_json::Value::from(3))]);
        assert_eq!(up.detail.columns(), ("/srv/in".to_string(), "3".to_string()));
        let v = serde_json::to_value(&up).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["dir"].as_str(), v["pattern"].as_str()),
            (Some("directory"), Some("/srv/in"), Some("*"))
        );
    }
}
