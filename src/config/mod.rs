//! Configuration: the typed, validated form every other module reads.
//!
//! Files are TOML. `parse.rs` reads the raw document (keeping positions), checks every key and
//! value, and builds these types, reporting *all* problems at once with their line and column.
//! Each section is read in its own file (`sections.rs`, `uplink.rs`, `source/`, `destination/`,
//! `route.rs`), over the table walker in `walk.rs` and the value readers in `values.rs`.
//! Nothing here does IO except `load`, and nothing here binds ports or opens files: a config can
//! be checked on a laptop (`outpost config check`) exactly as the daemon checks it.
//!
//! Relative paths in a config are resolved against `node.state_dir`.

mod condition;
mod destination;
mod error;
mod orders;
mod parse;
mod route;
mod rule;
mod sections;
mod source;
mod uplink;
mod values;
mod walk;

pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::envelope::Kind;
pub use crate::hl7::Transform;

/// The item kinds a destination transform can edit (the HL7 field paths it names only exist in
/// HL7 v2 items).
pub fn transform_kinds(transform: &Transform) -> &'static [Kind] {
    match transform {
        Transform::Set { .. } | Transform::Copy { .. } | Transform::Clear { .. } => &[Kind::Hl7v2],
    }
}
use crate::hl7::{Charset, FieldPath};

/// The configuration that `outpost run` uses when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node: Node,
    pub control: Control,
    pub journal: Journal,
    pub routing: Routing,
    pub escalation: Escalation,
    pub sources: Vec<Source>,
    pub destinations: Vec<Destination>,
    pub routes: Vec<Route>,
    /// The link to central (MQTT); `None` when this gateway has no uplink.
    pub uplink: Option<Uplink>,
    /// `[orders]`: the order cache for lab instruments.
    pub orders: Orders,
    /// The exact text this config was parsed from (for hashing, reporting and rollback).
    pub source_text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub site: String,
    pub id: String,
    /// Where the journal, the control socket (by default) and relative paths live.
    pub state_dir: PathBuf,
    /// How long a graceful shutdown may take before outstanding work is abandoned (it stays in
    /// the journal and resumes at the next start).
    pub shutdown_grace: Duration,
    /// How often the log summarises what happened to items (received, delivered, refused...):
    /// items are logged one by one at debug only.
    pub log_summary: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub socket: PathBuf,
    /// File mode of the socket; 0o660 lets a field-tech group use the CLI without root.
    pub socket_mode: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    /// SQLite database file.
    pub path: PathBuf,
    /// Cap on the bytes of stored items. Undelivered items are never evicted to stay under it:
    /// new items are refused (AR) instead.
    pub max_bytes: u64,
    /// Fraction of `max_bytes` above which a high-water escalation is raised (0.0..=1.0).
    pub high_water: f64,
    /// Below this much free space on the journal's filesystem, new items are refused (AR).
    pub min_free_disk: u64,
    /// How long fully delivered items are kept before purge.
    pub retention: Duration,
    /// How long rejected (unparseable) and unrouted items are kept before purge.
    pub rejected_retention: Duration,
    /// A retransmission (same source, same MSH-10, same bytes) within this window is ACKed
    /// again without being stored or delivered twice.
    pub dedup_window: Duration,
}

/// `[orders]`: which HL7 sources' orders (ORM^O01, OML^O21) fill the order cache that answers
/// lab instruments' queries and feeds their downloads.
#[derive(Debug, Clone, PartialEq)]
pub struct Orders {
    /// The sources; every MLLP source unless the file says otherwise; empty: no cache.
    pub from: Vec<String>,
    /// Whether the file gave `from` (else it was resolved to every MLLP source).
    pub from_given: bool,
    /// Where a specimen id is: the first non-empty of these paths.
    pub specimen_id: Vec<FieldPath>,
    /// How long an order is kept after it last changed (purged with the journal's retention).
    pub keep: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingMode {
    /// Every route whose conditions hold contributes its destinations.
    AllMatches,
    /// Only the first route (in file order) whose conditions hold is used.
    FirstMatch,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub mode: RoutingMode,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    /// Raise when an item has waited longer than this for a destination.
    pub undelivered_after: Duration,
    /// Raise when a destination has been unreachable for longer than this.
    pub unreachable_after: Duration,
    /// Raise when a source has been down longer than this (a lab link's port unplugged).
    pub source_down_after: Duration,
    /// Raise on items no route takes.
    pub on_unrouted: bool,
    /// Raise on items rejected as unparseable.
    pub on_rejected: bool,
    /// How often thresholds are evaluated.
    pub check_interval: Duration,
    /// Rules on what items hold (a critical result), checked as each item arrives.
    pub rules: Vec<EscalationRule>,
}

/// `[[escalation.rule]]`: an item whose content matches raises an escalation at once.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationRule {
    pub name: String,
    pub severity: crate::events::Severity,
    /// The sources whose items it looks at.
    pub from: Vec<String>,
    /// All must hold. Conditions on a result (HL7 OBX fields, ASTM R fields) must hold in one
    /// and the same result; the others anywhere in the item.
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Mllp(MllpSource),
    Directory(DirectorySource),
    Astm(AstmSource),
    FaxModem(FaxModemSource),
    FaxSpool(FaxSpoolSource),
}

/// `kind = "fax-modem"`: a Class 2 / 2.0 fax modem on a serial port, answering calls.
#[derive(Debug, Clone, PartialEq)]
pub struct FaxModemSource {
    pub serial: crate::serial::Settings,
    /// How the modem is driven (class, station id, rings, capabilities, timers).
    pub modem: crate::fax::modem::Config,
    /// A fax larger than this is cut at the page that passes it (kept, marked incomplete).
    pub max_fax_size: u64,
}

/// `kind = "fax-spool"`: faxes another program received, from its spool folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FaxSpoolSource {
    pub dir: PathBuf,
    pub format: SpoolFormat,
    /// A file unchanged this long (and not locked by its writer) is complete.
    pub settle: Duration,
    pub rescan: Duration,
    pub retry_after: Duration,
    pub max_fax_size: u64,
}

/// Whose spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFormat {
    /// HylaFAX's `recvq/`: one multi-page TIFF-F per fax (`fax00012.tif`), locked while
    /// received.
    Hylafax,
    /// mgetty-fax's incoming folder: one raw G3 file per page (`ff-<call id>.<page>`, `fn-`
    /// for normal resolution), the sender's id in the name.
    Mgetty,
}

/// `kind = "astm"`: a lab instrument's ASTM E1381/E1394 link.
#[derive(Debug, Clone, PartialEq)]
pub struct AstmSource {
    pub transport: AstmTransport,
    /// The instrument's profile (`hardware/instruments/`, or a file): where its records put
    /// things, its test-code map, and the defaults the keys above start from.
    pub profile: Option<Box<crate::instrument::Profile>>,
    /// Tolerances for the instrument's departures from LIS01-A2.
    pub quirks: crate::astm::Quirks,
    pub timers: crate::astm::Timers,
    /// A received message larger than this is refused (NAK) frame by frame.
    pub max_message_size: usize,
    /// `download_orders`: the instrument takes unsolicited order downloads; cached orders are
    /// pushed to it whenever its link is up and idle.
    pub download_orders: bool,
    /// `hl7 = { ... }`: each message's patient results are also journaled as an HL7 v2.5.1
    /// ORU^R01, a new item linked to the message (needs a profile: its test-code map).
    pub hl7: Option<Hl7Results>,
}

/// The header of the ORU^R01 messages a lab link's results become.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hl7Results {
    /// MSH-3.
    pub sending_application: String,
    /// MSH-4.
    pub sending_facility: String,
    /// MSH-5.
    pub receiving_application: String,
    /// MSH-6.
    pub receiving_facility: String,
}

/// How the instrument is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum AstmTransport {
    /// A serial port (RS-232, through a USB adapter or a UART).
    Serial(crate::serial::Settings),
    /// The instrument connects to us.
    TcpListen(SocketAddr),
    /// We connect to the instrument (`host:port`).
    TcpConnect(String),
}

impl SourceKind {
    /// Whether the order cache takes this source's orders when `[orders] from` is not given:
    /// the EHR's MLLP feeds.
    pub fn feeds_orders_by_default(&self) -> bool {
        matches!(self, SourceKind::Mllp(_))
    }

    /// The kinds of item this source can produce (so `config check` can tell which
    /// destinations a route may send which kinds to).
    pub fn payloads(&self) -> &'static [Kind] {
        match self {
            SourceKind::Mllp(_) | SourceKind::Directory(_) => &[Kind::Hl7v2],
            SourceKind::Astm(a) if a.hl7.is_some() => &[Kind::Astm, Kind::Hl7v2],
            SourceKind::Astm(_) => &[Kind::Astm],
            SourceKind::FaxModem(_) | SourceKind::FaxSpool(_) => &[Kind::Fax],
        }
    }

    /// The instrument profile its items are read with, if any (lab links).
    pub fn profile(&self) -> Option<&crate::instrument::Profile> {
        match self {
            SourceKind::Astm(a) => a.profile.as_deref(),
            SourceKind::Mllp(_) | SourceKind::Directory(_) | SourceKind::FaxModem(_) | SourceKind::FaxSpool(_) => None,
        }
    }

    /// The charset the source's settings impose on its items, if any.
    pub fn charset(&self) -> Option<Charset> {
        match self {
            SourceKind::Mllp(m) => m.charset,
            SourceKind::Directory(d) => d.charset,
            SourceKind::Astm(_) | SourceKind::FaxModem(_) | SourceKind::FaxSpool(_) => None,
        }
    }
}

/// `kind = "directory"`: HL7 files dropped into a folder.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    /// The folder watched (absolute, or relative to `node.state_dir`).
    pub dir: PathBuf,
    /// Which file names are taken (a glob on the name, `*` by default).
    pub pattern: String,
    pub matcher: globset::GlobMatcher,
    /// What happens to a file once every message in it is journaled.
    pub after: AfterTaken,
    /// A file whose size and time have not changed for this long is complete (sooner once its
    /// writer closed it).
    pub settle: Duration,
    /// How often the folder is listed in full (the safety net for network shares, which send
    /// no change events).
    pub rescan: Duration,
    /// How long a file that could not be taken (unreadable, cannot be moved) waits before the
    /// next try.
    pub retry_after: Duration,
    /// Larger files are left where they are, reported and escalated.
    pub max_file_size: u64,
    /// Overrides MSH-18 for reading the files' messages.
    pub charset: Option<Charset>,
}

impl PartialEq for DirectorySource {
    fn eq(&self, o: &Self) -> bool {
        (&self.dir, &self.pattern, &self.after, self.settle, self.rescan, self.retry_after, self.max_file_size)
            == (&o.dir, &o.pattern, &o.after, o.settle, o.rescan, o.retry_after, o.max_file_size)
            && self.charset == o.charset
    }
}

/// What becomes of a file whose messages are all journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterTaken {
    /// Moved into this folder (`processed/` beside the files unless `move_to` says otherwise).
    Move(PathBuf),
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MllpSource {
    pub listen: SocketAddr,
    /// Largest message accepted; larger ones get a negative ACK and are not buffered.
    pub max_message_size: usize,
    /// Close a connection idle this long; `None` keeps it open forever.
    pub idle_timeout: Option<Duration>,
    pub max_connections: usize,
    /// Overrides MSH-18 for reading messages from this source.
    pub charset: Option<Charset>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub name: String,
    pub kind: DestinationKind,
    pub retry: RetryPolicy,
    /// Applied, in order, to the copy sent to this destination; the journal keeps the original.
    pub transforms: Vec<Transform>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DestinationKind {
    Mllp(MllpDestination),
    File(FileDestination),
    /// Central, over the `[uplink]` MQTT link (at most one per config).
    Uplink,
}

impl DestinationKind {
    /// The item kinds this destination can carry; `None` for any (files, central).
    pub fn carries(&self) -> Option<&'static [Kind]> {
        match self {
            // MLLP frames HL7 v2; an instrument's ASTM records are not HL7.
            DestinationKind::Mllp(_) => Some(&[Kind::Hl7v2]),
            DestinationKind::File(_) | DestinationKind::Uplink => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DestinationKind::Mllp(_) => "mllp",
            DestinationKind::File(_) => "file",
            DestinationKind::Uplink => "uplink",
        }
    }
}

/// `[uplink]`: the MQTT link to central. See docs/mqtt.md for the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    pub broker: Broker,
    /// MQTT client id; `outpost-{site}-{node}` by default.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// CA certificate(s) (PEM) that the broker's certificate must chain to; required for
    /// `mqtts://`.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// MQTT keep-alive; a silent broker is detected within about two of these.
    pub keep_alive: Duration,
    /// Items sent to central and not yet acknowledged by it, at most.
    pub max_in_flight: usize,
    /// An item not acknowledged within this long is sent again.
    pub ack_timeout: Duration,
    /// Backlog items replayed per second after an outage (live items are not limited).
    pub replay_rate: u32,
    /// Largest MQTT packet sent; larger items are split into chunks.
    pub max_packet_size: usize,
    pub telemetry_interval: Duration,
    /// Reconnect backoff bounds (exponential, with jitter).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Send items only while central's retained state says it is online.
    pub wait_for_central: bool,
    /// Accept configurations from central on `{root}/config/set`.
    pub remote_config: bool,
    /// How long a remotely applied config is watched before it is kept.
    pub config_rollback_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", if self.tls { "mqtts" } else { "mqtt" }, self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MllpDestination {
    /// `host:port`; resolved at connect time so DNS changes are followed.
    pub connect: String,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    /// What an AE (application error) answer does.
    pub on_ae: NakAction,
    /// What an AR (application reject) answer does.
    pub on_ar: NakAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakAction {
    /// Count as a failed attempt and retry under the retry policy.
    Retry,
    /// Mark the delivery failed at once (dead letter) and move on to the next item.
    DeadLetter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileDestination {
    pub dir: PathBuf,
    /// File name extension, without the dot; `None`: the item kind's own (`hl7` for HL7 v2).
    pub extension: Option<String>,
    /// How fax items are written: the stored TIFF as it is, or a PDF made from it (many EHR
    /// document imports take only PDF). Other kinds' items are written as they are.
    pub fax_format: FaxFormat,
}

/// The file format of fax items in a file destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaxFormat {
    /// The TIFF Class F file the journal keeps, byte for byte.
    #[default]
    Tiff,
    /// A PDF of the same pages (`FaxDocument::to_pdf`), named `.pdf`.
    Pdf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up after this many attempts; `None` for no limit.
    pub max_attempts: Option<u32>,
    /// Give up once the item is older than this; `None` for no limit.
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// Source names this route takes items from.
    pub from: Vec<String>,
    /// All must hold.
    pub when: Vec<Condition>,
    pub to: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub field: Field,
    pub matcher: Matcher,
}

/// What a routing condition looks at: a field of the item, named the way its payload kind
/// names fields. A condition on one kind's fields never holds for an item of another kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// An HL7 v2 field path (`MSH-9.1`, `OBX-8`).
    Hl7(FieldPath),
    /// An ASTM record path (`R.3.4`, `H.5.1`) or one of the names for what every instrument
    /// has (`instrument`, `test`, `qc`).
    Astm(AstmField),
    /// A fax's summary field (`fax.tsi`, `fax.pages`; see `payload::fax::FIELDS`).
    Fax(String),
}

/// What a condition on ASTM items looks at (see `payload::astm::values`).
#[derive(Debug, Clone, PartialEq)]
pub enum AstmField {
    Path(crate::astm::FieldPath),
    Instrument,
    Test,
    Qc,
    /// A result's critical finding: `high`/`low` (the profile's critical range), `HH`/`LL`
    /// (the instrument's panic flags), `>`/`<` (off its measuring range).
    Critical,
}

impl Field {
    /// The one kind of item a condition on this field can hold for.
    pub fn kind(&self) -> Kind {
        match self {
            Field::Hl7(_) => Kind::Hl7v2,
            Field::Astm(_) => Kind::Astm,
            Field::Fax(_) => Kind::Fax,
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Hl7(p) => p.fmt(f),
            Field::Astm(AstmField::Path(p)) => p.fmt(f),
            Field::Astm(AstmField::Instrument) => f.write_str("instrument"),
            Field::Astm(AstmField::Test) => f.write_str("test"),
            Field::Astm(AstmField::Qc) => f.write_str("qc"),
            Field::Astm(AstmField::Critical) => f.write_str("critical"),
            Field::Fax(name) => write!(f, "fax.{name}"),
        }
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.matcher == other.matcher
    }
}

#[derive(Debug, Clone)]
pub enum Matcher {
    /// Any of these exact values.
    Exact(Vec<String>),
    Glob {
        pattern: String,
        matcher: globset::GlobMatcher,
    },
    Regex(regex::Regex),
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Matcher::Exact(a), Matcher::Exact(b)) => a == b,
            (Matcher::Glob { pattern: a, .. }, Matcher::Glob { pattern: b, .. }) => a == b,
            (Matcher::Regex(a), Matcher::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Matcher {
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(values) => values.iter().any(|v| v == value),
            Matcher::Glob { matcher, .. } => matcher.is_match(value),
            Matcher::Regex(re) => re.is_match(value),
        }
    }
}

impl Config {
    /// The lab links that take unsolicited order downloads (`download_orders = true`).
    pub fn order_download_sources(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|s| matches!(&s.kind, SourceKind::Astm(a) if a.download_orders))
            .map(|s| s.name.clone())
            .collect()
    }

    /// Parses and validates a config text. `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        parse::parse(text, origin)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::single(&origin, format!("cannot read config file: {e}")))?;
        if !crate::init::holds_config(&text) {
            // The package's placeholder, or a file emptied by hand: say what to do, not what
            // section is missing.
            return Err(ConfigErrors::single(
                &origin,
                "this file holds no config yet (comments only); write one with `outpost init -o FILE` \
                 (asks for the site, node id and listen address), or by hand (docs/config.md)"
                    .to_string(),
            ));
        }
        Config::parse(&text, &origin)
    }

    /// The embedded default config.
    pub fn embedded_default() -> Config {
        // The embedded default is tested to parse (see tests); a failure here is a build bug.
        match Config::parse(DEFAULT_CONFIG, "<embedded default>") {
            Ok(c) => c,
            Err(e) => panic!("embedded default config is invalid: {e}"),
        }
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// The name of the destination that sends to central, if any.
    pub fn uplink_destination(&self) -> Option<&str> {
        self.destinations.iter().find(|d| d.kind == DestinationKind::Uplink).map(|d| d.name.as_str())
    }

    /// `sha256:` and the hex SHA-256 of the exact config text.
    pub fn hash(&self) -> String {
        text_hash(&self.source_text)
    }
}

/// `sha256:` and the hex SHA-256 of some bytes (how a file taken from a folder is recognised).
pub fn bytes_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `sha256:` and the hex SHA-256 of a config text (how birth messages and remote configs name a
/// config).
pub fn text_hash(text: &str) -> String {
    bytes_hash(text.as_bytes())
}

/// The state directory used when a config does not name one: systemd's `$STATE_DIRECTORY`,
/// else `$XDG_STATE_HOME/outpost`, else `~/.local/state/outpost`, else `/var/lib/outpost`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several colon-separated directories; the first is ours.
        let s = dir.to_string_lossy().to_string();
        return PathBuf::from(s.split(':').next().unwrap_or(&s));
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("outpost");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/outpost");
    }
    PathBuf::from("/var/lib/outpost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = Config::parse(DEFAULT_CONFIG, "default").unwrap();
        assert_eq!(c.sources.len(), 1);
        assert!(!c.routes.is_empty());
    }
}
