//! Reads a TOML config into the typed [`Config`], collecting every error with its place.
//!
//! Two steps, as STYLE.md asks. The text is first parsed into a raw TOML document that keeps the
//! byte span of every key and value (`toml::de::DeTable`). This module then walks that document
//! itself, not through serde derive, so that one bad key never hides the next: every problem
//! becomes a [`ConfigError`] with its line, column and key path, and [`parse`] returns them all,
//! sorted by place. A TOML syntax error is the one exception: such a document cannot be walked,
//! so it is reported alone.
//!
//! Pure: no IO. Nothing is bound, opened or resolved (host names in `connect` are checked for
//! form only), so a config checks the same on a laptop as on the gateway.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::{
    Broker, Condition, Config, Control, Destination, DestinationKind, Escalation, FileDestination, Journal, Matcher,
    MllpDestination, MllpSource, NakAction, Node, RetryPolicy, Route, Routing, RoutingMode, Source, SourceKind, Uplink,
    default_state_dir,
};
use crate::hl7::{Charset, FieldPath, Transform};

/// What sort of problem a [`ConfigError`] is; lets tests and tools tell errors apart without
/// matching on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigErrorKind {
    /// The text is not valid TOML.
    Syntax,
    /// A key that this table does not have (often a misspelling).
    UnknownKey,
    /// A required key or section is absent, or a list that must not be empty is.
    MissingKey,
    /// A value of the wrong TOML type: a number where a string belongs, a table for a list, ...
    WrongType,
    /// A value of the right type that does not mean anything: a bad duration, size, address,
    /// charset, field path, regex, glob, name or path.
    InvalidValue,
    /// A number, size or duration outside its allowed range, or two values that contradict.
    OutOfRange,
    /// A name given twice: two sources, destinations or routes with one name, or one
    /// destination or source listed twice in a route.
    Duplicate,
    /// A route naming a source or destination that the file does not define.
    UnknownName,
    /// A `kind` outpost does not know.
    UnknownKind,
    /// Anything else, such as a file that cannot be read.
    Other,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    /// 1-based line of the offending key or value; 0 when the error has no place in the file
    /// (for example, the file could not be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 when `line` is 0.
    pub column: usize,
    /// Byte range in the text the error points at.
    pub span: Option<Range<usize>>,
    /// Where in the document: `node.site`, `source[1].listen`, `route[0].when."MSH-9.1"`.
    /// Indices count `[[source]]` (etc.) blocks from 0 in file order. Empty for syntax errors.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl ConfigError {
    fn write(&self, f: &mut fmt::Formatter<'_>, origin: Option<&str>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::with_capacity(4);
        if let Some(origin) = origin {
            parts.push(origin.to_string());
        }
        if self.line > 0 {
            parts.push(self.line.to_string());
            parts.push(self.column.to_string());
        }
        let place = parts.join(":");
        if !place.is_empty() {
            write!(f, "{place}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// `{line}:{col}: {key path}: {message}`; the place or key is left out when there is none.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, None)
    }
}

/// Every problem found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file name used in messages.
    pub origin: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One error with no place in the file, such as "cannot read config file".
    pub fn single(origin: &str, message: String) -> Self {
        ConfigErrors {
            origin: origin.to_string(),
            errors: vec![ConfigError {
                kind: ConfigErrorKind::Other,
                line: 0,
                column: 0,
                span: None,
                key: String::new(),
                message,
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// Each error as one line, `{origin}:{line}:{col}: {key path}: {message}` (as `config
    /// check` prints them).
    pub fn messages(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_string).collect()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// One error per line, each ending in a newline: `{origin}:{line}:{col}: {key path}: {message}`.
/// (The CLI prints it with `eprint!` and follows it with a count.)
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            e.write(f, Some(&self.origin))?;
            f.write_str("\n")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parses and validates a config text. `origin` names the file in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let mut ck = Checker::new(text);
            let span = e.span().unwrap_or(0..0);
            let what = e.message().replace('\n', " ");
            let message = if what.starts_with("duplicate key") {
                format!("not valid TOML: {} is set a second time in the same table; keep one", ck.snippet(&span))
            } else {
                format!(
                    "not valid TOML: {what}; fix the file at this place (strings need double \
                     quotes, sections are written [name] or [[name]], lists [a, b])"
                )
            };
            ck.report(ConfigErrorKind::Syntax, &span, "", message);
            return Err(ck.into_errors(origin));
        }
    };
    let mut ck = Checker::new(text);
    let empty = DeTable::new();
    let root =
        Tbl { table: doc.get_ref(), span: 0..0, path: String::new(), label: "the top level of the file".to_string() };
    let config = build(&mut ck, &root, &empty);
    if !ck.errors.is_empty() {
        return Err(ck.into_errors(origin));
    }
    config.ok_or_else(|| {
        ConfigErrors::single(
            origin,
            "the config was refused but no reason was recorded; this is a bug in outpost, \
             please report it with the config file"
                .to_string(),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The schema: which keys each table has.

const ROOT_KEYS: &[&str] =
    &["node", "control", "journal", "routing", "escalation", "uplink", "source", "destination", "route"];
const NODE_KEYS: &[&str] = &["site", "id", "state_dir", "shutdown_grace"];
const CONTROL_KEYS: &[&str] = &["socket", "socket_mode"];
const JOURNAL_KEYS: &[&str] =
    &["path", "max_bytes", "high_water", "min_free_disk", "retention", "rejected_retention", "dedup_window"];
const ROUTING_KEYS: &[&str] = &["mode"];
const ESCALATION_KEYS: &[&str] =
    &["undelivered_after", "unreachable_after", "on_unrouted", "on_rejected", "check_interval"];
const SOURCE_KINDS: &[&str] = &["mllp"];
const SOURCE_MLLP_KEYS: &[&str] =
    &["name", "kind", "listen", "max_message_size", "idle_timeout", "max_connections", "charset"];
const DESTINATION_KINDS: &[&str] = &["mllp", "file", "uplink"];
const DESTINATION_UPLINK_KEYS: &[&str] = &["name", "kind"];
const UPLINK_KEYS: &[&str] = &[
    "url",
    "client_id",
    "username",
    "password",
    "ca",
    "cert",
    "key",
    "keep_alive",
    "max_in_flight",
    "ack_timeout",
    "replay_rate",
    "max_packet_size",
    "telemetry_interval",
    "reconnect_min",
    "reconnect_max",
    "wait_for_central",
    "remote_config",
    "config_rollback_after",
];
const DESTINATION_MLLP_KEYS: &[&str] =
    &["name", "kind", "connect", "connect_timeout", "ack_timeout", "on_ae", "on_ar", "retry", "transform"];
const DESTINATION_FILE_KEYS: &[&str] = &["name", "kind", "dir", "extension", "retry", "transform"];
const RETRY_KEYS: &[&str] = &["initial_backoff", "max_backoff", "max_attempts", "max_age"];
const ROUTE_KEYS: &[&str] = &["name", "from", "when", "to"];
const TRANSFORM_OPS: &[&str] = &["set", "copy", "clear"];

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// Durations above this are taken for typos (a missing unit, an extra zero).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------------------------
// Building the typed config. Each function reports what it finds wrong and returns `None` for a
// part it could not build; `parse` only looks at the result when nothing was reported.

fn build<'a, 'i>(ck: &mut Checker, root: &Tbl<'a, 'i>, empty: &'a DeTable<'i>) -> Option<Config> {
    root.check_keys(ck, ROOT_KEYS, &[]);

    let node = node(ck, root);
    let state_dir = node.as_ref().map(|n| n.state_dir.clone()).unwrap_or_else(default_state_dir);
    let control = root.section(ck, "control", "[control]", empty).and_then(|t| control(ck, &t, &state_dir));
    let journal = root.section(ck, "journal", "[journal]", empty).and_then(|t| journal(ck, &t, &state_dir));
    let routing = root.section(ck, "routing", "[routing]", empty).and_then(|t| routing(ck, &t));
    let escalation = root.section(ck, "escalation", "[escalation]", empty).and_then(|t| escalation(ck, &t));
    let uplink = match root.table(ck, "uplink", "[uplink]") {
        Got::Valid(t) => uplink(ck, &t, node.as_ref(), &state_dir).map(Some),
        Got::Invalid => None,
        Got::Absent => Some(None),
    };

    let source_tables = root.blocks(ck, "source", "[[source]]");
    let destination_tables = root.blocks(ck, "destination", "[[destination]]");
    let route_tables = root.blocks(ck, "route", "[[route]]");

    // Names first, so that a route can be checked against every name the file gives, even those
    // of blocks that have other problems (which are reported on their own).
    let source_names = names(ck, &source_tables, "source", "ehr-feed");
    let destination_names = names(ck, &destination_tables, "destination", "lis");
    let route_names = names(ck, &route_tables, "route", "everything");
    let known_sources = distinct(&source_names);
    let known_destinations = distinct(&destination_names);

    let sources: Vec<Option<Source>> =
        source_tables.iter().zip(source_names).map(|(t, name)| source(ck, t, name)).collect();
    let destinations: Vec<Option<Destination>> = destination_tables
        .iter()
        .zip(destination_names)
        .map(|(t, name)| destination(ck, t, name, &state_dir, empty))
        .collect();
    let routes: Vec<Option<Route>> = route_tables
        .iter()
        .zip(route_names)
        .map(|(t, name)| route(ck, t, name, &known_sources, &known_destinations))
        .collect();

    uplink_destinations(ck, &destination_tables, &destinations, root.val("uplink").is_some());

    Some(Config {
        uplink: uplink?,
        node: node?,
        control: control?,
        journal: journal?,
        routing: routing?,
        escalation: escalation?,
        sources: sources.into_iter().collect::<Option<_>>()?,
        destinations: destinations.into_iter().collect::<Option<_>>()?,
        routes: routes.into_iter().collect::<Option<_>>()?,
        source_text: ck.text.to_string(),
    })
}

fn node(ck: &mut Checker, root: &Tbl<'_, '_>) -> Option<Node> {
    let t = match root.table(ck, "node", "[node]") {
        Got::Valid(t) => t,
        Got::Invalid => return None,
        Got::Absent => {
            ck.report(
                ConfigErrorKind::MissingKey,
                &(0..0),
                "node",
                "the [node] section is missing; add it with this gateway's site and id, e.g. \
                 [node] site = \"northfield\" id = \"gw-01\""
                    .to_string(),
            );
            return None;
        }
    };
    t.check_keys(ck, NODE_KEYS, &[]);
    let site = t.req(ck, "site", "site = \"northfield\"", identifier);
    let id = t.req(ck, "id", "id = \"gw-01\"", identifier);
    let state_dir = t.opt(ck, "state_dir", default_state_dir(), absolute_path);
    let shutdown_grace = t.opt(ck, "shutdown_grace", secs(10), duration(true));
    Some(Node { site: site?, id: id?, state_dir: state_dir?, shutdown_grace: shutdown_grace? })
}

fn control(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<Control> {
    t.check_keys(ck, CONTROL_KEYS, &[]);
    let socket = t.opt(ck, "socket", state_dir.join("control.sock"), |ck, v| path(ck, v).map(|p| state_dir.join(p)));
    let socket_mode = t.opt(ck, "socket_mode", 0o660, file_mode);
    Some(Control { socket: socket?, socket_mode: socket_mode? })
}

fn journal(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<Journal> {
    t.check_keys(ck, JOURNAL_KEYS, &[]);
    let path = t.opt(ck, "path", state_dir.join("journal.db"), |ck, v| path(ck, v).map(|p| state_dir.join(p)));
    let max_bytes = t.opt(ck, "max_bytes", GIB, size_in(1, u64::MAX));
    let high_water = t.opt(ck, "high_water", 0.8, fraction);
    let min_free_disk = t.opt(ck, "min_free_disk", 100 * MIB, size_in(0, u64::MAX));
    let retention = t.opt(ck, "retention", secs(7 * 86_400), duration(true));
    let rejected_retention = t.opt(ck, "rejected_retention", secs(30 * 86_400), duration(true));
    let dedup_window = t.opt(ck, "dedup_window", secs(86_400), duration(true));
    Some(Journal {
        path: path?,
        max_bytes: max_bytes?,
        high_water: high_water?,
        min_free_disk: min_free_disk?,
        retention: retention?,
        rejected_retention: rejected_retention?,
        dedup_window: dedup_window?,
    })
}

fn routing(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Routing> {
    t.check_keys(ck, ROUTING_KEYS, &[]);
    let modes = [("all-matches", RoutingMode::AllMatches), ("first-match", RoutingMode::FirstMatch)];
    let mode = t.opt(ck, "mode", RoutingMode::AllMatches, choice(&modes, "routing mode"));
    Some(Routing { mode: mode? })
}

fn escalation(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Escalation> {
    t.check_keys(ck, ESCALATION_KEYS, &[]);
    let undelivered_after = t.opt(ck, "undelivered_after", secs(15 * 60), duration(false));
    let unreachable_after = t.opt(ck, "unreachable_after", secs(5 * 60), duration(false));
    let on_unrouted = t.opt(ck, "on_unrouted", true, boolean);
    let on_rejected = t.opt(ck, "on_rejected", true, boolean);
    let check_interval = t.opt(ck, "check_interval", secs(30), duration(false));
    Some(Escalation {
        undelivered_after: undelivered_after?,
        unreachable_after: unreachable_after?,
        on_unrouted: on_unrouted?,
        on_rejected: on_rejected?,
        check_interval: check_interval?,
    })
}

fn uplink(ck: &mut Checker, t: &Tbl<'_, '_>, node: Option<&Node>, state_dir: &Path) -> Option<Uplink> {
    t.check_keys(ck, UPLINK_KEYS, &[]);
    let broker = t.req(ck, "url", "url = \"mqtts://broker.example.net:8883\"", broker_url);
    let default_client_id = node.map(|n| format!("outpost-{}-{}", n.site, n.id)).unwrap_or_default();
    let client_id = t.opt(ck, "client_id", default_client_id, client_id);
    let username = t.opt(ck, "username", None, |ck, v| string(ck, v).map(Some));
    let password = t.opt(ck, "password", None, |ck, v| string(ck, v).map(Some));
    let file = |ck: &mut Checker, v: &Val<'_, '_>| path(ck, v).map(|p| Some(state_dir.join(p)));
    let ca = t.opt(ck, "ca", None, file);
    let cert = t.opt(ck, "cert", None, file);
    let key = t.opt(ck, "key", None, file);
    let keep_alive = t.opt(ck, "keep_alive", secs(30), duration(false));
    let max_in_flight = t.opt(ck, "max_in_flight", 500, count_in(1, 65_535));
    let ack_timeout = t.opt(ck, "ack_timeout", secs(60), duration(false));
    let replay_rate = t.opt(ck, "replay_rate", 500, count_in(1, 1_000_000));
    let max_packet_size = t.opt(ck, "max_packet_size", 256 * KIB, size_in(4 * KIB, 256 * MIB));
    let telemetry_interval = t.opt(ck, "telemetry_interval", secs(60), duration(false));
    let reconnect_min = t.opt(ck, "reconnect_min", secs(1), duration(false));
    let reconnect_max = t.opt(ck, "reconnect_max", secs(300), duration(false));
    let wait_for_central = t.opt(ck, "wait_for_central", true, boolean);
    let remote_config = t.opt(ck, "remote_config", true, boolean);
    let config_rollback_after = t.opt(ck, "config_rollback_after", secs(60), duration(false));

    if let (Some(Some(_)), Some(None)) | (Some(None), Some(Some(_))) = (&cert, &key) {
        let at = t.val("cert").or_else(|| t.val("key"));
        if let Some(v) = at {
            ck.report(
                ConfigErrorKind::MissingKey,
                &v.span,
                &v.path,
                "a client certificate needs its key and a key needs its certificate; set both cert \
                 and key (PEM files), or neither"
                    .to_string(),
            );
        }
    }
    if let Some(b) = &broker {
        if !b.tls
            && (matches!(cert, Some(Some(_))) || matches!(ca, Some(Some(_))))
            && let Some(v) = t.val("url")
        {
            v.invalid(
                ck,
                "certificates are set but the url is mqtt:// (no TLS); use mqtts:// or remove \
                 ca, cert and key"
                    .to_string(),
            );
        }
        if b.tls && matches!(ca, Some(None)) {
            t.missing(ck, "ca", "ca = \"/etc/outpost/central-ca.pem\" (the CA that signed the broker's certificate)");
        }
    }
    if let (Some(min), Some(max)) = (reconnect_min, reconnect_max)
        && min > max
        && let Some(v) = t.val("reconnect_min")
    {
        ck.report(
            ConfigErrorKind::OutOfRange,
            &v.span,
            &v.path,
            format!(
                "reconnect_min ({}) is longer than reconnect_max ({}); make reconnect_max at least as long",
                format_duration(min),
                format_duration(max)
            ),
        );
    }
    Some(Uplink {
        broker: broker?,
        client_id: client_id?,
        username: username?,
        password: password?,
        ca: ca?,
        cert: cert?,
        key: key?,
        keep_alive: keep_alive?,
        max_in_flight: usize::try_from(max_in_flight?).ok()?,
        ack_timeout: ack_timeout?,
        replay_rate: u32::try_from(replay_rate?).ok()?,
        max_packet_size: usize::try_from(max_packet_size?).ok()?,
        telemetry_interval: telemetry_interval?,
        reconnect_min: reconnect_min?,
        reconnect_max: reconnect_max?,
        wait_for_central: wait_for_central?,
        remote_config: remote_config?,
        config_rollback_after: config_rollback_after?,
    })
}

/// At most one `kind = "uplink"` destination, and only with an `[uplink]` section.
fn uplink_destinations(ck: &mut Checker, tables: &[Tbl<'_, '_>], built: &[Option<Destination>], has_uplink: bool) {
    let mut seen: Option<String> = None;
    for (t, d) in tables.iter().zip(built) {
        let Some(d) = d.as_ref().filter(|d| d.kind == DestinationKind::Uplink) else { continue };
        let Some(v) = t.val("kind") else { continue };
        if !has_uplink {
            ck.report(
                ConfigErrorKind::MissingKey,
                &v.span,
                &v.path,
                format!(
                    "destination {:?} sends to central, but there is no [uplink] section; add one \
                     with the broker's url, e.g. [uplink] url = \"mqtts://broker.example.net:8883\"",
                    d.name
                ),
            );
        }
        match &seen {
            Some(first) => ck.report(
                ConfigErrorKind::Duplicate,
                &v.span,
                &v.path,
                format!(
                    "destination {:?} is a second uplink destination; {first:?} already sends to central. \
                     Route to {first:?} instead",
                    d.name
                ),
            ),
            None => seen = Some(d.name.clone()),
        }
    }
}

/// `url`: `mqtt://host[:port]` or `mqtts://host[:port]`.
fn broker_url(ck: &mut Checker, v: &Val<'_, '_>) -> Option<Broker> {
    let s = string(ck, v)?;
    let parsed = (|| {
        let (scheme, rest) = s.split_once("://").ok_or("it has no scheme")?;
        let (tls, default_port) = match scheme {
            "mqtt" | "tcp" => (false, 1883),
            "mqtts" | "ssl" => (true, 8883),
            _ => return Err(format!("the scheme {scheme:?} is not mqtt or mqtts")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('@') || rest.contains('?') {
            return Err("it has a path, user or query; give only the host and port (credentials go in \
                        username and password)"
                .to_string());
        }
        let with_port = if rest.ends_with(']') || !rest.contains(':') {
            format!("{rest}:{default_port}")
        } else {
            rest.to_string()
        };
        check_host_port(&with_port)?;
        let (host, port) = with_port.rsplit_once(':').ok_or("it has no port")?;
        let port = port.parse::<u16>().map_err(|_| "bad port".to_string())?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(Broker { tls, host, port })
    })();
    match parsed {
        Ok(b) => Some(b),
        Err(why) => {
            v.invalid(ck, format!("{s:?} is not a broker url: {why}; write mqtt://HOST:PORT or mqtts://HOST:PORT"));
            None
        }
    }
}

/// MQTT client ids: printable ASCII without spaces, at most 128 bytes (brokers accept far
/// more than the 23 the old spec guaranteed).
fn client_id(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) || s.contains(['+', '#', '/']) {
        v.invalid(ck, format!("{s:?} is not a usable MQTT client id; use 1 to 128 letters, digits, '-', '_' and '.'"));
        return None;
    }
    Some(s)
}

/// Reads the `name` of each block and reports missing, malformed and repeated names. Returns
/// each block's name as written (even a malformed one, so that routes naming it do not pile up
/// "unknown" errors), or `None` where there is no usable name.
fn names(ck: &mut Checker, tables: &[Tbl<'_, '_>], what: &str, example: &str) -> Vec<Option<String>> {
    let mut first_use: HashMap<String, (String, usize)> = HashMap::new();
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let Some(v) = t.val("name") else {
            t.missing(ck, "name", &format!("name = \"{example}\""));
            out.push(None);
            continue;
        };
        let Some(name) = string(ck, &v) else {
            out.push(None);
            continue;
        };
        if let Err(why) = check_name(&name) {
            v.invalid(ck, format!("{name:?} is not a usable {what} name: {why}"));
        }
        let (line, _) = ck.line_col(v.span.start);
        match first_use.get(&name) {
            Some((first_path, first_line)) => ck.report(
                ConfigErrorKind::Duplicate,
                &v.span,
                &v.path,
                format!(
                    "the {what} name {name:?} is already used by {first_path} on line \
                     {first_line}; give each {what} its own name"
                ),
            ),
            None => {
                first_use.insert(name.clone(), (t.path.clone(), line));
            }
        }
        out.push(Some(name));
    }
    out
}

/// The names given, once each, in file order.
fn distinct(names: &[Option<String>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names.iter().flatten() {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

fn source(ck: &mut Checker, t: &Tbl<'_, '_>, name: Option<String>) -> Option<Source> {
    let kind = match t.get(ck, "kind", kind_of("source", SOURCE_KINDS)) {
        Got::Valid(k) if k == "mllp" => SourceKind::Mllp(mllp_source(ck, t)?),
        // An unknown kind: there is no telling which keys it would have.
        Got::Valid(_) | Got::Invalid => return None,
        Got::Absent => {
            t.missing(ck, "kind", "kind = \"mllp\"");
            // With no kind, check the keys against every kind's.
            t.check_keys(ck, SOURCE_MLLP_KEYS, &[]);
            return None;
        }
    };
    Some(Source { name: name?, kind })
}

fn mllp_source(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<MllpSource> {
    t.check_keys(ck, SOURCE_MLLP_KEYS, &[]);
    let listen = t.req(ck, "listen", "listen = \"0.0.0.0:2575\"", listen_address);
    let max_message_size = t.opt(ck, "max_message_size", 16 * MIB, size_in(KIB, GIB));
    let idle_timeout =
        t.opt(ck, "idle_timeout", Some(secs(3600)), |ck, v| duration(true)(ck, v).map(|d| (!d.is_zero()).then_some(d)));
    let max_connections = t.opt(ck, "max_connections", 64, count_in(1, 65_535));
    let charset = t.opt(ck, "charset", None, |ck, v| charset(ck, v).map(Some));
    Some(MllpSource {
        listen: listen?,
        max_message_size: usize::try_from(max_message_size?).ok()?,
        idle_timeout: idle_timeout?,
        max_connections: usize::try_from(max_connections?).ok()?,
        charset: charset?,
    })
}

fn destination<'a, 'i>(
    ck: &mut Checker,
    t: &Tbl<'a, 'i>,
    name: Option<String>,
    state_dir: &Path,
    empty: &'a DeTable<'i>,
) -> Option<Destination> {
    let kind_name = t.get(ck, "kind", kind_of("destination", DESTINATION_KINDS));
    let file_only: &[&str] = &["dir", "extension"];
    let mllp_only: &[&str] = &["connect", "connect_timeout", "ack_timeout", "on_ae", "on_ar"];
    let kind = match &kind_name {
        Got::Valid(k) if k == "mllp" => {
            t.check_keys(ck, DESTINATION_MLLP_KEYS, &[("kind = \"file\" destinations", file_only)]);
            mllp_destination(ck, t).map(DestinationKind::Mllp)
        }
        Got::Valid(k) if k == "file" => {
            t.check_keys(ck, DESTINATION_FILE_KEYS, &[("kind = \"mllp\" destinations", mllp_only)]);
            file_destination(ck, t, state_dir).map(DestinationKind::File)
        }
        Got::Valid(k) if k == "uplink" => {
            // Central receives the exact bytes, and an uplink delivery waits for central's
            // acknowledgement for as long as it takes: no transforms, no retry policy.
            let mut other: Vec<&str> = mllp_only.iter().chain(file_only).copied().collect();
            other.extend(["retry", "transform"]);
            let owner = "kind = \"mllp\" and kind = \"file\" destinations (an uplink destination sends \
                         the exact bytes and waits for central's acknowledgement; the link's settings \
                         are in [uplink])";
            t.check_keys(ck, DESTINATION_UPLINK_KEYS, &[(owner, &other)]);
            return Some(Destination {
                name: name?,
                kind: DestinationKind::Uplink,
                retry: RetryPolicy {
                    initial_backoff: secs(1),
                    max_backoff: secs(300),
                    max_attempts: None,
                    max_age: None,
                },
                transforms: Vec::new(),
            });
        }
        // An unknown kind: there is no telling which keys it would have.
        Got::Valid(_) | Got::Invalid => None,
        Got::Absent => {
            t.missing(ck, "kind", "kind = \"mllp\" or kind = \"file\"");
            let all: Vec<&str> = DESTINATION_MLLP_KEYS.iter().chain(file_only).copied().collect();
            t.check_keys(ck, &all, &[]);
            None
        }
    };
    // Retry and transforms are the same for every kind: check them even when the kind is bad.
    let retry = t.section(ck, "retry", "retry", empty).and_then(|r| retry_policy(ck, &r));
    let transforms = transforms(ck, t);
    Some(Destination { name: name?, kind: kind?, retry: retry?, transforms: transforms? })
}

fn mllp_destination(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<MllpDestination> {
    let connect = t.req(ck, "connect", "connect = \"10.0.0.7:6661\"", host_port);
    let connect_timeout = t.opt(ck, "connect_timeout", secs(10), duration(false));
    let ack_timeout = t.opt(ck, "ack_timeout", secs(30), duration(false));
    let actions = [("retry", NakAction::Retry), ("dead-letter", NakAction::DeadLetter)];
    let on_ae = t.opt(ck, "on_ae", NakAction::DeadLetter, choice(&actions, "action"));
    let on_ar = t.opt(ck, "on_ar", NakAction::Retry, choice(&actions, "action"));
    Some(MllpDestination {
        connect: connect?,
        connect_timeout: connect_timeout?,
        ack_timeout: ack_timeout?,
        on_ae: on_ae?,
        on_ar: on_ar?,
    })
}

fn file_destination(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<FileDestination> {
    let dir = t.req(ck, "dir", "dir = \"archive\"", |ck, v| path(ck, v).map(|p| state_dir.join(p)));
    let extension = t.opt(ck, "extension", None, |ck, v| extension(ck, v).map(Some));
    Some(FileDestination { dir: dir?, extension: extension? })
}

fn retry_policy(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<RetryPolicy> {
    t.check_keys(ck, RETRY_KEYS, &[]);
    let initial_backoff = t.opt(ck, "initial_backoff", secs(1), duration(false));
    let max_backoff = t.opt(ck, "max_backoff", secs(300), duration(false));
    let max_attempts = t.opt(ck, "max_attempts", 0, count_in(0, u64::from(u32::MAX)));
    let max_age = t.opt(ck, "max_age", Duration::ZERO, duration(true));
    if let (Some(initial), Some(max)) = (initial_backoff, max_backoff)
        && initial > max
    {
        let at = t.val("initial_backoff").or_else(|| t.val("max_backoff"));
        if let Some(v) = at {
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!(
                    "initial_backoff ({}) is longer than max_backoff ({}); make max_backoff at \
                     least as long as initial_backoff",
                    format_duration(initial),
                    format_duration(max)
                ),
            );
        }
    }
    Some(RetryPolicy {
        initial_backoff: initial_backoff?,
        max_backoff: max_backoff?,
        max_attempts: u32::try_from(max_attempts?).ok().filter(|&n| n > 0),
        max_age: Some(max_age?).filter(|d| !d.is_zero()),
    })
}

fn transforms(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Vec<Transform>> {
    let Some(v) = t.val("transform") else {
        return Some(Vec::new());
    };
    let DeValue::Array(items) = v.value else {
        v.wrong_type(
            ck,
            "a list of transforms",
            "; write transform = [ { set = \"MSH-5\", value = \"LIS\" } ] or one \
             [[destination.transform]] block per transform",
        );
        return None;
    };
    let mut out = Some(Vec::with_capacity(items.len()));
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", v.path);
        let DeValue::Table(table) = item.get_ref() else {
            Val { value: item.get_ref(), span: item.span(), path }.wrong_type(
                ck,
                "a transform table",
                ", e.g. { set = \"MSH-5\", value = \"LIS\" }",
            );
            out = None;
            continue;
        };
        let tt = Tbl { table, span: item.span(), path, label: "a transform".to_string() };
        match (transform(ck, &tt), out.as_mut()) {
            (Some(tr), Some(out)) => out.push(tr),
            _ => out = None,
        }
    }
    out
}

fn transform(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Transform> {
    let ops: Vec<&str> = TRANSFORM_OPS.iter().copied().filter(|op| t.val(op).is_some()).collect();
    let set_keys: &[&str] = &["set", "value"];
    let copy_keys: &[&str] = &["copy", "to"];
    let clear_keys: &[&str] = &["clear"];
    match ops.as_slice() {
        [] => {
            t.check_keys(ck, &["set", "value", "copy", "to", "clear"], &[]);
            ck.report(
                ConfigErrorKind::MissingKey,
                &t.span,
                &t.path,
                "a transform needs one of set, copy or clear, e.g. { set = \"MSH-5\", value = \
                 \"LIS\" }, { copy = \"MSH-4\", to = \"MSH-6\" } or { clear = \"PID-19\" }"
                    .to_string(),
            );
            None
        }
        ["set"] => {
            t.check_keys(ck, set_keys, &[("copy transforms", &["to"])]);
            let path = t.req(ck, "set", "", writable_field_path);
            let value = t.req(ck, "value", "value = \"LIS\"", string);
            Some(Transform::Set { path: path?, value: value? })
        }
        ["copy"] => {
            t.check_keys(ck, copy_keys, &[("set transforms", &["value"])]);
            let from = t.req(ck, "copy", "", field_path);
            let to = t.req(ck, "to", "to = \"MSH-6\"", writable_field_path);
            Some(Transform::Copy { from: from?, to: to? })
        }
        [_clear] => {
            t.check_keys(ck, clear_keys, &[("set transforms", &["value"]), ("copy transforms", &["to"])]);
            let path = t.req(ck, "clear", "", writable_field_path);
            Some(Transform::Clear { path: path? })
        }
        [first, second, ..] => {
            if let Some(v) = t.key_span(second) {
                ck.report(
                    ConfigErrorKind::InvalidValue,
                    &v,
                    &join_key(&t.path, second),
                    format!(
                        "a transform does one thing, but this one has both {first} and \
                         {second}; split it into two transforms (they are applied in order)"
                    ),
                );
            }
            None
        }
    }
}

fn route(
    ck: &mut Checker,
    t: &Tbl<'_, '_>,
    name: Option<String>,
    sources: &[String],
    destinations: &[String],
) -> Option<Route> {
    t.check_keys(ck, ROUTE_KEYS, &[]);
    let from = t.req(ck, "from", "from = [\"ehr-feed\"] (or [\"*\"] for every source)", |ck, v| {
        name_list(ck, v, "source", sources, true)
    });
    let when = match t.table(ck, "when", "when") {
        Got::Absent => Some(Vec::new()),
        Got::Invalid => None,
        Got::Valid(w) => conditions(ck, &w),
    };
    let to = t.req(ck, "to", "to = [\"lis\"]", |ck, v| name_list(ck, v, "destination", destinations, false));
    Some(Route { name: name?, from: from?, when: when?, to: to? })
}

/// A route's `from` or `to`: a non-empty list of known, distinct names. In `from`, `"*"` alone
/// stands for every source and is expanded here, so the router never sees it.
fn name_list(ck: &mut Checker, v: &Val<'_, '_>, what: &str, known: &[String], star: bool) -> Option<Vec<String>> {
    let example = if star { "[\"ehr-feed\"]" } else { "[\"lis\", \"archive\"]" };
    let DeValue::Array(items) = v.value else {
        let hint = match v.value {
            DeValue::String(s) => format!("; write it as a list: [{s:?}]"),
            _ => format!(", e.g. {example}"),
        };
        v.wrong_type(ck, &format!("a list of {what} names"), &hint);
        return None;
    };
    if items.is_empty() {
        let more = if star { " (or [\"*\"] for every source)" } else { "" };
        ck.report(
            ConfigErrorKind::MissingKey,
            &v.span,
            &v.path,
            format!("a route needs at least one {what}; list them, e.g. {example}{more}"),
        );
        return None;
    }
    let mut ok = true;
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    let mut seen: Vec<&str> = Vec::with_capacity(items.len());
    let mut has_star = false;
    for (i, item) in items.iter().enumerate() {
        let iv = Val { value: item.get_ref(), span: item.span(), path: format!("{}[{i}]", v.path) };
        let Some(name) = string(ck, &iv) else {
            ok = false;
            continue;
        };
        if seen.contains(&name.as_str()) {
            ck.report(
                ConfigErrorKind::Duplicate,
                &iv.span,
                &iv.path,
                format!("{name:?} is listed twice in this route; remove one"),
            );
            ok = false;
        } else if star && name == "*" {
            has_star = true;
        } else if !known.contains(&name) {
            let hint = match closest(&name, known.iter().map(String::as_str)) {
                Some(near) => format!("did you mean {near:?}?"),
                None if known.is_empty() => format!("this file defines no [[{what}]] yet"),
                None => format!("the {what}s defined in this file are: {}", known.join(", ")),
            };
            ck.report(
                ConfigErrorKind::UnknownName,
                &iv.span,
                &iv.path,
                format!("there is no {what} named {name:?}; {hint}"),
            );
            ok = false;
        }
        if let DeValue::String(s) = item.get_ref() {
            seen.push(s.as_ref());
        }
        names.push(name);
    }
    if has_star && items.len() > 1 {
        v.invalid(
            ck,
            "\"*\" already means every source; write from = [\"*\"] alone, or list the sources \
             by name"
                .to_string(),
        );
        return None;
    }
    if !ok {
        return None;
    }
    if has_star {
        return Some(known.to_vec());
    }
    Some(names)
}

fn conditions(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Vec<Condition>> {
    let mut out = Some(Vec::new());
    for (key, value) in t.entries() {
        let key_text: &str = key.get_ref();
        let v = Val { value: value.get_ref(), span: value.span(), path: join_key(&t.path, key_text) };
        // `MSH-9.1 = "ORU"` without quotes is TOML for a table `MSH-9` holding a key `1`.
        let dotted = match v.value {
            DeValue::Table(inner) if inner.get("glob").is_none() && inner.get("regex").is_none() => {
                inner.iter().find_map(|(k, _)| {
                    let joined = format!("{key_text}.{}", k.get_ref());
                    joined.parse::<FieldPath>().ok().map(|_| joined)
                })
            }
            _ => None,
        };
        if let Some(joined) = dotted {
            ck.report(
                ConfigErrorKind::InvalidValue,
                &key.span(),
                &v.path,
                format!(
                    "TOML read the dot in {joined} as a nested key; put field paths that \
                     contain a dot in double quotes: \"{joined}\" = ..."
                ),
            );
            out = None;
            continue;
        }
        let path = match key_text.parse::<FieldPath>() {
            Ok(p) => Some(p),
            Err(why) => {
                ck.report(ConfigErrorKind::InvalidValue, &key.span(), &v.path, why);
                None
            }
        };
        let matcher = matcher(ck, &v);
        match (path, matcher, out.as_mut()) {
            (Some(path), Some(matcher), Some(out)) => out.push(Condition { field: super::Field::Hl7(path), matcher }),
            _ => out = None,
        }
    }
    out
}

fn matcher(ck: &mut Checker, v: &Val<'_, '_>) -> Option<Matcher> {
    const FORMS: &str = "\"value\", [\"any\", \"of\", \"these\"], { glob = \"A0*\" } or \
                         { regex = \"^A0[1-4]$\" }";
    match v.value {
        DeValue::String(s) => Some(Matcher::Exact(vec![s.to_string()])),
        DeValue::Array(items) => {
            if items.is_empty() {
                ck.report(
                    ConfigErrorKind::MissingKey,
                    &v.span,
                    &v.path,
                    "an empty list matches nothing; list the values to accept, e.g. [\"A01\", \
                     \"A04\"], or remove the condition"
                        .to_string(),
                );
                return None;
            }
            let mut values = Some(Vec::with_capacity(items.len()));
            for (i, item) in items.iter().enumerate() {
                let iv = Val { value: item.get_ref(), span: item.span(), path: format!("{}[{i}]", v.path) };
                match (string(ck, &iv), values.as_mut()) {
                    (Some(s), Some(values)) => values.push(s),
                    _ => values = None,
                }
            }
            values.map(Matcher::Exact)
        }
        DeValue::Table(table) => {
            let t = Tbl { table, span: v.span.clone(), path: v.path.clone(), label: "a condition".to_string() };
            t.check_keys(ck, &["glob", "regex"], &[]);
            match (t.val("glob"), t.val("regex")) {
                (Some(_), Some(r)) => {
                    r.invalid(ck, "a condition takes either glob or regex, not both; keep one".to_string());
                    None
                }
                (Some(g), None) => {
                    let pattern = string(ck, &g)?;
                    match globset::Glob::new(&pattern) {
                        Ok(glob) => Some(Matcher::Glob { pattern, matcher: glob.compile_matcher() }),
                        Err(e) => {
                            g.invalid(
                                ck,
                                format!(
                                    "{pattern:?} is not a glob: {}; use * for any text, ? for \
                                     one character, [1-4] for a range",
                                    e.kind()
                                ),
                            );
                            None
                        }
                    }
                }
                (None, Some(r)) => {
                    let pattern = string(ck, &r)?;
                    match regex::Regex::new(&pattern) {
                        Ok(re) => Some(Matcher::Regex(re)),
                        Err(e) => {
                            // Shown as written: Debug quoting would double every backslash.
                            let written = ck.snippet(&r.span);
                            r.invalid(
                                ck,
                                format!(
                                    "{written} is not a regular expression: {}; fix the \
                                     pattern (inside \"...\" a backslash must be doubled, \
                                     inside '...' it need not)",
                                    regex_reason(&e)
                                ),
                            );
                            None
                        }
                    }
                }
                (None, None) => {
                    // Unknown keys were reported above; an empty table gets its own message.
                    if table.is_empty() {
                        ck.report(
                            ConfigErrorKind::MissingKey,
                            &v.span,
                            &v.path,
                            format!("an empty table is not a condition; write one of {FORMS}"),
                        );
                    }
                    None
                }
            }
        }
        _ => {
            v.wrong_type(ck, &format!("one of {FORMS}"), "");
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Value readers: each checks one value, reports what is wrong with it, and returns it typed.

/// `"value"` as a string, or a wrong-type error.
fn string(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    match v.value {
        DeValue::String(s) => Some(s.to_string()),
        _ => {
            v.wrong_type(ck, "a string in double quotes", "");
            None
        }
    }
}

fn boolean(ck: &mut Checker, v: &Val<'_, '_>) -> Option<bool> {
    match v.value {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            v.wrong_type(ck, "true or false (without quotes)", "");
            None
        }
    }
}

/// Site and node ids end up in MQTT topics and file names: keep them plain.
fn identifier(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let all_ok = s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if s.is_empty() || s.len() > 64 || !first_ok || !all_ok {
        let suggestion: String = s
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
            .collect::<String>()
            .trim_matches(|c| c == '-' || c == '_')
            .to_string();
        let hint = if suggestion.is_empty() || suggestion.len() > 64 {
            String::new()
        } else {
            format!(", e.g. {suggestion:?}")
        };
        v.invalid(
            ck,
            format!(
                "{s:?} is not a valid id; use 1 to 64 lower-case letters, digits, '-' and '_', \
                 starting with a letter or digit{hint}"
            ),
        );
        return None;
    }
    Some(s)
}

/// Names of sources, destinations and routes appear in logs, the CLI and MQTT topics.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty; give it a short name such as \"lab-lis\"".to_string());
    }
    if name.chars().count() > 64 {
        return Err("it is longer than 64 characters; shorten it".to_string());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("it contains {c:?}; use only letters, digits, '-', '_' and '.', e.g. \"lab-lis\""));
    }
    Ok(())
}

fn kind_of(
    what: &'static str,
    kinds: &'static [&'static str],
) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<String> {
    move |ck, v| {
        let s = string(ck, v)?;
        if kinds.contains(&s.as_str()) {
            return Some(s);
        }
        let near = closest(&s, kinds.iter().copied()).map(|k| format!("did you mean {k:?}? ")).unwrap_or_default();
        ck.report(
            ConfigErrorKind::UnknownKind,
            &v.span,
            &v.path,
            format!("unknown {what} kind {s:?}; {near}the known kinds are: {}", kinds.join(", ")),
        );
        None
    }
}

fn choice<T: Copy>(
    options: &[(&'static str, T)],
    what: &'static str,
) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<T> {
    move |ck, v| {
        let s = string(ck, v)?;
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let list: Vec<String> = options.iter().map(|(name, _)| format!("{name:?}")).collect();
        let near =
            closest(&s, options.iter().map(|(n, _)| *n)).map(|k| format!("did you mean {k:?}? ")).unwrap_or_default();
        v.invalid(ck, format!("unknown {what} {s:?}; {near}write {}", list.join(" or ")));
        None
    }
}

/// A path as written; callers join relative paths onto the state directory.
fn path(ck: &mut Checker, v: &Val<'_, '_>) -> Option<PathBuf> {
    let s = string(ck, v)?;
    if s.trim().is_empty() {
        v.invalid(
            ck,
            "the path is empty; write a file or directory path, or remove the key to use the \
             default"
                .to_string(),
        );
        return None;
    }
    if s.starts_with('~') {
        v.invalid(
            ck,
            format!(
                "{s:?} starts with ~, which outpost does not expand; write the full path, e.g. \
                 \"/home/...\", or a path relative to state_dir"
            ),
        );
        return None;
    }
    Some(PathBuf::from(s))
}

fn absolute_path(ck: &mut Checker, v: &Val<'_, '_>) -> Option<PathBuf> {
    let p = path(ck, v)?;
    if !p.is_absolute() {
        v.invalid(
            ck,
            format!(
                "{:?} is relative; state_dir must be an absolute path such as \
                 \"/var/lib/outpost\" (other relative paths are resolved against it)",
                p.display().to_string()
            ),
        );
        return None;
    }
    Some(p)
}

fn extension(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    let why = if s.is_empty() {
        Some("it is empty".to_string())
    } else if let Some(rest) = s.strip_prefix('.') {
        Some(format!("write it without the dot: {rest:?}"))
    } else if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Some("use only letters, digits, '-' and '_'".to_string())
    } else {
        None
    };
    if let Some(why) = why {
        v.invalid(ck, format!("{s:?} is not a file extension: {why}; e.g. \"hl7\""));
        return None;
    }
    Some(s)
}

/// A whole number in `min..=max`.
fn count_in(min: u64, max: u64) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<u64> {
    move |ck, v| {
        let n = unsigned(ck, v)?;
        if n < min || n > max {
            let range = if max == u64::MAX { format!("at least {min}") } else { format!("from {min} to {max}") };
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!("{n} is out of range; write a whole number {range}"),
            );
            return None;
        }
        Some(n)
    }
}

fn unsigned(ck: &mut Checker, v: &Val<'_, '_>) -> Option<u64> {
    match v.value {
        DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                let message = if i.as_str().starts_with('-') {
                    format!("{i} is negative; write a whole number of 0 or more")
                } else {
                    format!("{i} is too large")
                };
                ck.report(ConfigErrorKind::OutOfRange, &v.span, &v.path, message);
                None
            }
        },
        DeValue::String(s) if s.trim().parse::<u64>().is_ok() => {
            v.wrong_type(ck, "a whole number", &format!("; write it without quotes: {}", s.trim()));
            None
        }
        _ => {
            v.wrong_type(ck, "a whole number", "");
            None
        }
    }
}

/// `high_water`: a fraction in (0, 1].
fn fraction(ck: &mut Checker, v: &Val<'_, '_>) -> Option<f64> {
    let x = match v.value {
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n as f64),
        _ => None,
    };
    let Some(x) = x else {
        v.wrong_type(ck, "a fraction such as 0.8", "");
        return None;
    };
    if !(x > 0.0 && x <= 1.0) {
        ck.report(
            ConfigErrorKind::OutOfRange,
            &v.span,
            &v.path,
            format!("{x} is out of range; write a fraction above 0 and at most 1, e.g. 0.8 for 80%"),
        );
        return None;
    }
    Some(x)
}

/// A Unix file mode: a TOML integer (`0o660`) or an octal string (`"0660"`), at most 0o777.
fn file_mode(ck: &mut Checker, v: &Val<'_, '_>) -> Option<u32> {
    const HOW: &str = "write it as an octal literal, e.g. 0o660, or a string, e.g. \"0660\"";
    let (mode, decimal) = match v.value {
        DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => (n, (i.radix() == 10).then(|| i.as_str().to_string())),
            Err(_) => {
                ck.report(ConfigErrorKind::OutOfRange, &v.span, &v.path, format!("{i} is not a file mode; {HOW}"));
                return None;
            }
        },
        DeValue::String(s) => {
            let digits = s.trim().strip_prefix("0o").unwrap_or(s.trim());
            if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                v.invalid(ck, format!("{s:?} is not an octal file mode; {HOW}"));
                return None;
            }
            (u64::from_str_radix(digits, 8).ok()?, None)
        }
        _ => {
            v.wrong_type(ck, "a file mode", &format!("; {HOW}"));
            return None;
        }
    };
    if mode > 0o777 {
        let message = match decimal {
            Some(d) if d.bytes().all(|b| (b'0'..=b'7').contains(&b)) => format!(
                "{d} is read as a decimal number (0o{mode:o}), above the largest mode 0o777; \
                 write the octal literal 0o{d} or the string \"0{d}\""
            ),
            _ => format!("0o{mode:o} is above the largest file mode 0o777; {HOW}"),
        };
        ck.report(ConfigErrorKind::OutOfRange, &v.span, &v.path, message);
        return None;
    }
    Some(mode as u32)
}

fn duration(allow_zero: bool) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<Duration> {
    move |ck, v| {
        let s = match v.value {
            DeValue::String(s) => s,
            DeValue::Integer(i) => {
                v.wrong_type(
                    ck,
                    "a duration",
                    &format!("; durations need a unit: write \"{i}s\" for seconds, \"{i}m\" for minutes"),
                );
                return None;
            }
            _ => {
                v.wrong_type(ck, "a duration such as \"30s\"", "");
                return None;
            }
        };
        let d = match parse_duration(s) {
            Ok(d) => d,
            Err(why) => {
                v.invalid(
                    ck,
                    format!(
                        "{s:?} is not a duration: {why}; write it like \"500ms\", \"30s\", \
                         \"5m\", \"1h30m\" or \"7d\""
                    ),
                );
                return None;
            }
        };
        if d.is_zero() && !allow_zero {
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!("{s:?} is zero, which is not allowed here; write a duration above zero, e.g. \"30s\""),
            );
            return None;
        }
        if d > MAX_DURATION {
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!("{s:?} is longer than 100 years; check the number and unit"),
            );
            return None;
        }
        Some(d)
    }
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"7d"` and sums such as `"1h30m"` or `"1h 30m"`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("it is empty".to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let (digits, after) = rest.split_at(digits_len);
        let n: u64 = digits.parse().map_err(|_| format!("{digits} is too large"))?;
        let after = after.trim_start();
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n.checked_mul(60).map(Duration::from_secs).ok_or("it is too long")?,
            "h" => n.checked_mul(3600).map(Duration::from_secs).ok_or("it is too long")?,
            "d" => n.checked_mul(86_400).map(Duration::from_secs).ok_or("it is too long")?,
            "" => return Err(format!("{n} has no unit (ms, s, m, h or d)")),
            other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
        };
        total = total.checked_add(part).ok_or("it is too long")?;
        rest = after.trim_start();
    }
    Ok(total)
}

fn size_in(min: u64, max: u64) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<u64> {
    move |ck, v| {
        let n = match v.value {
            DeValue::Integer(_) => unsigned(ck, v)?,
            DeValue::String(s) => match parse_size(s) {
                Ok(n) => n,
                Err(why) => {
                    v.invalid(
                        ck,
                        format!(
                            "{s:?} is not a size: {why}; write it like \"512KiB\", \"16MiB\", \
                             \"1GiB\" or \"10MB\", or as a whole number of bytes"
                        ),
                    );
                    return None;
                }
            },
            _ => {
                v.wrong_type(ck, "a size such as \"16MiB\" or a number of bytes", "");
                return None;
            }
        };
        if n < min || n > max {
            let written = ck.snippet(&v.span);
            let bound = if n < min {
                format!("below the minimum {}", format_size(min))
            } else {
                format!("above the maximum {}", format_size(max))
            };
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!("{written} is {bound}; write a size from {} to {}", format_size(min), format_size(max)),
            );
            return None;
        }
        Some(n)
    }
}

/// Parses `"512KiB"`, `"16MiB"`, `"1GiB"`, `"10MB"`, `"1GB"`, `"100"` (bytes). Units are
/// case-insensitive; KiB/MiB/GiB/TiB count in 1024s, KB/MB/GB/TB in 1000s.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let digits_len = text.bytes().take_while(|b| b.is_ascii_digit() || *b == b'_').count();
    let (digits, unit) = text.split_at(digits_len);
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return Err("it does not start with a number".to_string());
    }
    let n: u64 = digits.parse().map_err(|_| format!("{digits} is too large"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => 1024 * GIB,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "tb" => 1000 * 1000 * 1000 * 1000,
        "k" | "m" | "g" | "t" => {
            return Err(format!(
                "{:?} is ambiguous; write {0:?}iB (1024s) or {0:?}B (1000s)",
                unit.trim().to_ascii_uppercase()
            ));
        }
        other => {
            return Err(format!("unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"));
        }
    };
    n.checked_mul(factor).ok_or_else(|| "it is too large".to_string())
}

fn format_size(n: u64) -> String {
    for (unit, size) in [("TiB", 1024 * GIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n} bytes")
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `listen`: an IP address and port to bind. Port 0 (any free port) is allowed for tests.
fn listen_address(ck: &mut Checker, v: &Val<'_, '_>) -> Option<SocketAddr> {
    let s = string(ck, v)?;
    match s.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let why = match s.trim().rsplit_once(':') {
                None => "it has no port".to_string(),
                Some((_, port)) if port.parse::<u16>().is_err() => {
                    format!("the port {port:?} is not a number from 1 to 65535")
                }
                Some((host, _)) if host.contains(':') && !host.starts_with('[') => {
                    "an IPv6 address needs brackets, e.g. [::]:2575".to_string()
                }
                Some((host, _)) => format!(
                    "{host:?} is not an IP address (listen takes the IP of a local interface, \
                     or 0.0.0.0 for all of them; not a host name)"
                ),
            };
            v.invalid(ck, format!("{s:?} is not an address: {why}; write it as IP:PORT, e.g. 0.0.0.0:2575"));
            None
        }
    }
}

/// `connect`: `host:port` with a host name, an IPv4 address or a bracketed IPv6 address. Only
/// the form is checked; the name is resolved at connect time.
fn host_port(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    match check_host_port(&s) {
        Ok(()) => Some(s),
        Err(why) => {
            v.invalid(
                ck,
                format!(
                    "{s:?} is not a host and port: {why}; write it as HOST:PORT, e.g. \
                     10.0.0.7:6661 or lis.lab.local:6661"
                ),
            );
            None
        }
    }
}

fn check_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("it has no port".to_string());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("the port {port:?} is not a number from 1 to 65535")),
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("a '[' without ']'")?;
        return inner.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| format!("{inner:?} is not an IPv6 address"));
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, e.g. [fd00::7]:6661".to_string());
    }
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())) {
        return host.parse::<Ipv4Addr>().map(|_| ()).map_err(|_| format!("{host:?} is not an IPv4 address"));
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let trimmed: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    if host.len() > 253 || !trimmed.iter().all(label_ok) {
        return Err(format!("{host:?} is not a host name (letters, digits and '-', parts separated by dots)"));
    }
    Ok(())
}

fn charset(ck: &mut Checker, v: &Val<'_, '_>) -> Option<Charset> {
    let s = string(ck, v)?;
    match Charset::from_label(&s) {
        Some(c) => Some(c),
        None => {
            v.invalid(
                ck,
                format!(
                    "{s:?} is not a character set outpost knows; use an HL7 name such as \
                     \"8859/1\", \"ASCII\" or \"UNICODE UTF-8\", or a label such as \
                     \"windows-1252\" (leave it out to follow each message's MSH-18)"
                ),
            );
            None
        }
    }
}

fn field_path(ck: &mut Checker, v: &Val<'_, '_>) -> Option<FieldPath> {
    let s = string(ck, v)?;
    match s.parse::<FieldPath>() {
        Ok(p) => Some(p),
        Err(why) => {
            v.invalid(ck, why);
            None
        }
    }
}

/// A field a transform writes: anything but MSH-1 and MSH-2, which hold the separators.
fn writable_field_path(ck: &mut Checker, v: &Val<'_, '_>) -> Option<FieldPath> {
    let p = field_path(ck, v)?;
    if p.segment == "MSH" && p.field <= 2 {
        v.invalid(
            ck,
            format!(
                "{p} holds the message's separator characters and cannot be changed by a \
                 transform; pick another field"
            ),
        );
        return None;
    }
    Some(p)
}

fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

// ---------------------------------------------------------------------------------------------
// Walking the raw document.

/// Collects errors; knows the text so it can turn byte offsets into lines and columns.
struct Checker<'t> {
    text: &'t str,
    errors: Vec<ConfigError>,
}

impl<'t> Checker<'t> {
    fn new(text: &'t str) -> Self {
        Checker { text, errors: Vec::new() }
    }

    fn report(&mut self, kind: ConfigErrorKind, span: &Range<usize>, key: &str, message: String) {
        let (line, column) = self.line_col(span.start);
        self.errors.push(ConfigError { kind, line, column, span: Some(span.clone()), key: key.to_string(), message });
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// The text of a value as written, for messages.
    fn snippet(&self, span: &Range<usize>) -> String {
        self.text.get(span.clone()).map(|s| s.trim().to_string()).unwrap_or_default()
    }

    fn into_errors(mut self, origin: &str) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors { origin: origin.to_string(), errors: self.errors }
    }
}

/// A value with its place: byte span and key path.
struct Val<'a, 'i> {
    value: &'a DeValue<'i>,
    span: Range<usize>,
    path: String,
}

impl Val<'_, '_> {
    /// Reports this value as unusable, with its place.
    fn invalid(&self, ck: &mut Checker, message: String) {
        ck.report(ConfigErrorKind::InvalidValue, &self.span, &self.path, message);
    }

    fn wrong_type(&self, ck: &mut Checker, expected: &str, hint: &str) {
        let found = match self.value {
            DeValue::String(s) => format!("the string {s:?}"),
            DeValue::Integer(i) => format!("the number {i}"),
            DeValue::Float(f) => format!("the number {f}"),
            DeValue::Boolean(b) => format!("{b}"),
            DeValue::Datetime(d) => format!("the date/time {d}"),
            DeValue::Array(_) => "a list".to_string(),
            DeValue::Table(_) => "a table".to_string(),
        };
        ck.report(
            ConfigErrorKind::WrongType,
            &self.span,
            &self.path,
            format!("expected {expected}, found {found}{hint}"),
        );
    }
}

/// What a lookup found: nothing, something unusable (already reported), or a value.
enum Got<T> {
    Absent,
    Invalid,
    Valid(T),
}

/// A table with its place, and how to name it in messages (`[node]`, `[[source]]`, `retry`).
struct Tbl<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Range<usize>,
    path: String,
    label: String,
}

type Entry<'a, 'i> = (&'a Spanned<DeString<'i>>, &'a Spanned<DeValue<'i>>);

impl<'a, 'i> Tbl<'a, 'i> {
    /// Entries in file order (the map itself may be sorted by key).
    fn entries(&self) -> Vec<Entry<'a, 'i>> {
        let mut entries: Vec<Entry<'a, 'i>> = self.table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        entries
    }

    fn val(&self, key: &str) -> Option<Val<'a, 'i>> {
        self.table.get(key).map(|v| Val { value: v.get_ref(), span: v.span(), path: join_key(&self.path, key) })
    }

    fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(k, _)| k.span())
    }

    /// Reports every key not in `allowed`. `elsewhere` names keys that belong to a sibling form
    /// (another kind), so the message can say so instead of "unknown".
    fn check_keys(&self, ck: &mut Checker, allowed: &[&str], elsewhere: &[(&str, &[&str])]) {
        for (k, _) in self.entries() {
            let key: &str = k.get_ref();
            if allowed.contains(&key) {
                continue;
            }
            let valid = allowed.join(", ");
            let message = if let Some((owner, _)) = elsewhere.iter().find(|(_, keys)| keys.contains(&key)) {
                format!("{key:?} only applies to {owner}; remove it here. The keys of {} are: {valid}", self.label)
            } else if let Some(near) = closest(key, allowed.iter().copied()) {
                format!("unknown key {key:?}; did you mean {near:?}? The keys of {} are: {valid}", self.label)
            } else {
                format!("unknown key {key:?}; remove it or fix its spelling. The keys of {} are: {valid}", self.label)
            };
            ck.report(ConfigErrorKind::UnknownKey, &k.span(), &join_key(&self.path, key), message);
        }
    }

    fn missing(&self, ck: &mut Checker, key: &str, example: &str) {
        let example = if example.is_empty() { String::new() } else { format!(", e.g. {example}") };
        ck.report(
            ConfigErrorKind::MissingKey,
            &self.span,
            &join_key(&self.path, key),
            format!("{} is missing the required key {key:?}; add it{example}", self.label),
        );
    }

    fn get<T>(
        &self,
        ck: &mut Checker,
        key: &str,
        read: impl FnOnce(&mut Checker, &Val<'a, 'i>) -> Option<T>,
    ) -> Got<T> {
        match self.val(key) {
            None => Got::Absent,
            Some(v) => match read(ck, &v) {
                Some(t) => Got::Valid(t),
                None => Got::Invalid,
            },
        }
    }

    /// An optional key: its value, or `default` when absent; `None` when invalid (reported).
    fn opt<T>(
        &self,
        ck: &mut Checker,
        key: &str,
        default: T,
        read: impl FnOnce(&mut Checker, &Val<'a, 'i>) -> Option<T>,
    ) -> Option<T> {
        match self.get(ck, key, read) {
            Got::Absent => Some(default),
            Got::Invalid => None,
            Got::Valid(t) => Some(t),
        }
    }

    /// A required key: its value; `None` when absent or invalid (both reported).
    fn req<T>(
        &self,
        ck: &mut Checker,
        key: &str,
        example: &str,
        read: impl FnOnce(&mut Checker, &Val<'a, 'i>) -> Option<T>,
    ) -> Option<T> {
        match self.get(ck, key, read) {
            Got::Absent => {
                self.missing(ck, key, example);
                None
            }
            Got::Invalid => None,
            Got::Valid(t) => Some(t),
        }
    }

    /// A sub-table.
    fn table(&self, ck: &mut Checker, key: &str, label: &str) -> Got<Tbl<'a, 'i>> {
        let Some(v) = self.val(key) else {
            return Got::Absent;
        };
        match v.value {
            DeValue::Table(table) => Got::Valid(Tbl { table, span: v.span, path: v.path, label: label.to_string() }),
            DeValue::Array(_) if label.starts_with('[') => {
                v.wrong_type(ck, &format!("a single {label} section"), &format!("; write {label} once, not [{label}]"));
                Got::Invalid
            }
            _ => {
                v.wrong_type(ck, &format!("a table ({label})"), "");
                Got::Invalid
            }
        }
    }

    /// An optional section: the table, or `empty` (so that defaults apply) when absent;
    /// `None` when it is not a table (reported).
    fn section<'b>(&self, ck: &mut Checker, key: &str, label: &str, empty: &'b DeTable<'i>) -> Option<Tbl<'b, 'i>>
    where
        'a: 'b,
    {
        match self.table(ck, key, label) {
            Got::Valid(t) => Some(t),
            Got::Invalid => None,
            Got::Absent => Some(Tbl {
                table: empty,
                span: self.span.clone(),
                path: join_key(&self.path, key),
                label: label.to_string(),
            }),
        }
    }

    /// The `[[key]]` blocks, each as a table with path `key[i]`.
    fn blocks(&self, ck: &mut Checker, key: &str, label: &str) -> Vec<Tbl<'a, 'i>> {
        let Some(v) = self.val(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = v.value else {
            if let DeValue::Table(table) = v.value {
                v.wrong_type(
                    ck,
                    &format!("a list of {label} blocks"),
                    &format!("; write {label} (double brackets) for each {key}, not [{key}]"),
                );
                // Check it as the one block it was meant to be, so that its other problems are
                // found now and routes naming it are not reported as naming nothing.
                return vec![Tbl { table, span: v.span, path: format!("{}[0]", v.path), label: label.to_string() }];
            }
            v.wrong_type(ck, &format!("a list of {label} blocks"), &format!("; write one {label} block per {key}"));
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", v.path);
            match item.get_ref() {
                DeValue::Table(table) => out.push(Tbl { table, span: item.span(), path, label: label.to_string() }),
                other => Val { value: other, span: item.span(), path }.wrong_type(ck, &format!("a {label} table"), ""),
            }
        }
        out
    }
}

/// `path.key`, quoting keys that are not bare TOML keys (`when."MSH-9.1"`).
fn join_key(path: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if path.is_empty() { key } else { format!("{path}.{key}") }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1) && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CONFIG;

    /// The config shape fixed by the acceptance tests.
    const ACCEPTANCE: &str = r#"
[node]
site = "northfield"
id = "gw-01"
state_dir = "/var/lib/outpost"
shutdown_grace = "10s"

[control]
socket = "/run/outpost/control.sock"
socket_mode = 0o660

[journal]
path = "journal.db"
max_bytes = "1GiB"
high_water = 0.8
min_free_disk = "100MiB"
retention = "7d"
rejected_retention = "30d"
dedup_window = "24h"

[routing]
mode = "all-matches"

[escalation]
undelivered_after = "15m"
unreachable_after = "5m"
on_unrouted = true
on_rejected = true
check_interval = "30s"

[[source]]
name = "ehr-feed"
kind = "mllp"
listen = "0.0.0.0:2575"
max_message_size = "16MiB"
idle_timeout = "1h"
max_connections = 64
charset = "8859/1"

[[destination]]
name = "lis"
kind = "mllp"
connect = "10.0.0.7:6661"
connect_timeout = "10s"
ack_timeout = "30s"
on_ae = "dead-letter"
on_ar = "retry"
retry = { initial_backoff = "1s", max_backoff = "5m", max_attempts = 0, max_age = "0s" }
transform = [ { set = "MSH-5", value = "LIS" }, { copy = "MSH-4", to = "MSH-6" }, { clear = "PID-19" } ]

[[destination]]
name = "archive"
kind = "file"
dir = "/var/lib/outpost/archive"
extension = "hl7"

[[route]]
name = "everything"
from = ["ehr-feed"]
when = { "MSH-9.1" = "ORU" }
to = ["lis", "archive"]
"#;

    /// A small valid config; error tests edit single lines of it, so its line numbers matter.
    const BASE: &str = r#"[node]
site = "northfield"
id = "gw-01"
state_dir = "/srv/outpost"

[[source]]
name = "ehr-feed"
kind = "mllp"
listen = "0.0.0.0:2575"

[[destination]]
name = "lis"
kind = "mllp"
connect = "10.0.0.7:6661"

[[route]]
name = "everything"
from = ["ehr-feed"]
to = ["lis"]
"#;

    /// BASE with line `line` (1-based) replaced by `with` (which may span several lines).
    fn edit(line: usize, with: &str) -> String {
        let mut lines: Vec<&str> = BASE.lines().collect();
        lines[line - 1] = with;
        lines.join("\n") + "\n"
    }

    fn errors(text: &str) -> ConfigErrors {
        match parse(text, "test.toml") {
            Ok(_) => panic!("expected errors, the config parsed:\n{text}"),
            Err(e) => e,
        }
    }

    /// Asserts that `text` has exactly one error, of `kind` at `line` for `key`, whose message
    /// contains `needle`; returns it.
    #[track_caller]
    fn one_error(text: &str, kind: ConfigErrorKind, line: usize, key: &str, needle: &str) -> ConfigError {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "expected one error, got:\n{errs}");
        let e = errs.errors[0].clone();
        assert_eq!((e.kind, e.line, e.key.as_str()), (kind, line, key), "{errs}");
        assert!(e.message.contains(needle), "message lacks {needle:?}: {errs}");
        e
    }

    #[test]
    fn embedded_default_parses() {
        let c = parse(DEFAULT_CONFIG, "<embedded default>").unwrap();
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.routes[0].to, vec!["inbox".to_string()]);
        let DestinationKind::File(f) = &c.destinations[0].kind else { panic!("not a file destination") };
        assert_eq!(f.dir, c.node.state_dir.join("inbox"));
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../examples/outpost.toml");
        let c = match parse(text, "examples/outpost.toml") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.node.site, "northfield");
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.destinations.len(), 3);
        assert_eq!(c.routes.len(), 5);
        assert_eq!(c.uplink_destination(), Some("central"));
        assert!(c.uplink.as_ref().is_some_and(|u| u.broker.tls));
        let lis = c.destination("lab-lis").unwrap();
        assert_eq!(lis.transforms.len(), 4);
        assert_eq!(lis.retry.max_age, Some(Duration::from_secs(3 * 86_400)));
        // "*" is expanded to every source.
        assert_eq!(c.routes[3].from, vec!["ehr-feed".to_string()]);
        // Conditions keep file order.
        let when: Vec<String> = c.routes[1].when.iter().map(|w| w.field.to_string()).collect();
        assert_eq!(when, ["MSH-9.1", "MSH-9.2", "MSH-11"]);
    }

    #[test]
    fn acceptance_config_has_the_right_values() {
        let c = parse(ACCEPTANCE, "outpost.toml").unwrap();
        assert_eq!(c.source_text, ACCEPTANCE);
        let state = PathBuf::from("/var/lib/outpost");
        assert_eq!(
            c.node,
            Node { site: "northfield".into(), id: "gw-01".into(), state_dir: state.clone(), shutdown_grace: secs(10) }
        );
        assert_eq!(c.control, Control { socket: "/run/outpost/control.sock".into(), socket_mode: 0o660 });
        assert_eq!(
            c.journal,
            Journal {
                path: state.join("journal.db"),
                max_bytes: 1 << 30,
                high_water: 0.8,
                min_free_disk: 100 << 20,
                retention: secs(7 * 86_400),
                rejected_retention: secs(30 * 86_400),
                dedup_window: secs(86_400),
            }
        );
        assert_eq!(c.routing.mode, RoutingMode::AllMatches);
        assert_eq!(
            c.escalation,
            Escalation {
                undelivered_after: secs(900),
                unreachable_after: secs(300),
                on_unrouted: true,
                on_rejected: true,
                check_interval: secs(30),
            }
        );
        assert_eq!(
            c.sources,
            vec![Source {
                name: "ehr-feed".into(),
                kind: SourceKind::Mllp(MllpSource {
                    listen: "0.0.0.0:2575".parse().unwrap(),
                    max_message_size: 16 << 20,
                    idle_timeout: Some(secs(3600)),
                    max_connections: 64,
                    charset: Some(Charset::Latin1),
                }),
            }]
        );
        let p = |s: &str| s.parse::<FieldPath>().unwrap();
        assert_eq!(
            c.destinations[0],
            Destination {
                name: "lis".into(),
                kind: DestinationKind::Mllp(MllpDestination {
                    connect: "10.0.0.7:6661".into(),
                    connect_timeout: secs(10),
                    ack_timeout: secs(30),
                    on_ae: NakAction::DeadLetter,
                    on_ar: NakAction::Retry,
                }),
                retry: RetryPolicy {
                    initial_backoff: secs(1),
                    max_backoff: secs(300),
                    max_attempts: None,
                    max_age: None,
                },
                transforms: vec![
                    Transform::Set { path: p("MSH-5"), value: "LIS".into() },
                    Transform::Copy { from: p("MSH-4"), to: p("MSH-6") },
                    Transform::Clear { path: p("PID-19") },
                ],
            }
        );
        assert_eq!(
            c.destinations[1].kind,
            DestinationKind::File(FileDestination {
                dir: "/var/lib/outpost/archive".into(),
                extension: Some("hl7".into())
            })
        );
        assert_eq!(
            c.routes,
            vec![Route {
                name: "everything".into(),
                from: vec!["ehr-feed".into()],
                when: vec![Condition {
                    field: crate::config::Field::Hl7(p("MSH-9.1")),
                    matcher: Matcher::Exact(vec!["ORU".into()])
                }],
                to: vec!["lis".into(), "archive".into()],
            }]
        );
    }

    #[test]
    fn defaults_fill_everything_not_required() {
        let c = parse(BASE, "base.toml").unwrap();
        let state = PathBuf::from("/srv/outpost");
        assert_eq!(c.node.shutdown_grace, secs(10));
        assert_eq!(c.control.socket, state.join("control.sock"));
        assert_eq!(c.control.socket_mode, 0o660);
        assert_eq!(c.journal.path, state.join("journal.db"));
        assert_eq!(c.journal.max_bytes, 1 << 30);
        assert_eq!(c.journal.high_water, 0.8);
        assert_eq!(c.journal.min_free_disk, 100 << 20);
        assert_eq!(c.journal.retention, secs(7 * 86_400));
        assert_eq!(c.journal.rejected_retention, secs(30 * 86_400));
        assert_eq!(c.journal.dedup_window, secs(86_400));
        assert_eq!(c.routing.mode, RoutingMode::AllMatches);
        assert_eq!(c.escalation.undelivered_after, secs(900));
        assert_eq!(c.escalation.unreachable_after, secs(300));
        assert!(c.escalation.on_unrouted && c.escalation.on_rejected);
        assert_eq!(c.escalation.check_interval, secs(30));
        let SourceKind::Mllp(s) = &c.sources[0].kind;
        assert_eq!(s.max_message_size, 16 << 20);
        assert_eq!(s.idle_timeout, Some(secs(3600)));
        assert_eq!(s.max_connections, 64);
        assert_eq!(s.charset, None);
        let d = &c.destinations[0];
        let DestinationKind::Mllp(m) = &d.kind else { panic!() };
        assert_eq!((m.connect_timeout, m.ack_timeout), (secs(10), secs(30)));
        assert_eq!((m.on_ae, m.on_ar), (NakAction::DeadLetter, NakAction::Retry));
        assert_eq!(
            d.retry,
            RetryPolicy { initial_backoff: secs(1), max_backoff: secs(300), max_attempts: None, max_age: None }
        );
        assert!(d.transforms.is_empty());
        assert!(c.routes[0].when.is_empty());
    }

    #[test]
    fn state_dir_defaults_when_absent() {
        let c = parse(&edit(4, ""), "t").unwrap();
        assert_eq!(c.node.state_dir, crate::config::default_state_dir());
        assert_eq!(c.journal.path, c.node.state_dir.join("journal.db"));
    }

    #[test]
    fn zero_means_never_or_no_limit_where_documented() {
        let text = edit(9, "listen = \"127.0.0.1:0\"\nidle_timeout = \"0s\"");
        let c = parse(&text, "t").unwrap();
        let SourceKind::Mllp(s) = &c.sources[0].kind;
        assert_eq!(s.idle_timeout, None);
        assert_eq!(s.listen.port(), 0);

        let text = edit(14, "connect = \"10.0.0.7:6661\"\nretry = { max_attempts = 5, max_age = \"2d\" }");
        let c = parse(&text, "t").unwrap();
        assert_eq!(c.destinations[0].retry.max_attempts, Some(5));
        assert_eq!(c.destinations[0].retry.max_age, Some(secs(2 * 86_400)));
    }

    #[test]
    fn transforms_as_array_of_tables_equal_inline() {
        let blocks = edit(
            14,
            "connect = \"10.0.0.7:6661\"\n[[destination.transform]]\nset = \"MSH-5\"\nvalue = \"LIS\"\n\
             [[destination.transform]]\ncopy = \"MSH-4\"\nto = \"MSH-6\"\n[[destination.transform]]\nclear = \"PID-19\"",
        );
        let inline = edit(
            14,
            "connect = \"10.0.0.7:6661\"\ntransform = [ { set = \"MSH-5\", value = \"LIS\" }, \
             { copy = \"MSH-4\", to = \"MSH-6\" }, { clear = \"PID-19\" } ]",
        );
        let a = parse(&blocks, "a").unwrap();
        let b = parse(&inline, "b").unwrap();
        assert_eq!(a.destinations[0].transforms.len(), 3);
        assert_eq!(a.destinations[0].transforms, b.destinations[0].transforms);
    }

    #[test]
    fn condition_forms() {
        let text = edit(
            19,
            "to = [\"lis\"]\nwhen = { \"MSH-9.1\" = \"ADT\", \"MSH-9.2\" = [\"A01\", \"A04\"], \
             \"PV1-2\" = { glob = \"[IE]*\" }, \"MSH-3\" = { regex = '^EHR\\d+$' } }",
        );
        let c = parse(&text, "t").unwrap();
        let when = &c.routes[0].when;
        assert_eq!(when.len(), 4);
        assert!(when[0].matcher.is_match("ADT") && !when[0].matcher.is_match("ORU"));
        assert!(when[1].matcher.is_match("A04") && !when[1].matcher.is_match("A08"));
        assert!(when[2].matcher.is_match("IN") && !when[2].matcher.is_match("O"));
        assert!(when[3].matcher.is_match("EHR12") && !when[3].matcher.is_match("EHR"));
    }

    #[test]
    fn star_means_every_source() {
        let text = edit(
            9,
            "listen = \"0.0.0.0:2575\"\n[[source]]\nname = \"lab-in\"\nkind = \"mllp\"\nlisten = \"0.0.0.0:2576\"",
        )
        .replace("from = [\"ehr-feed\"]", "from = [\"*\"]");
        let c = parse(&text, "t").unwrap();
        assert_eq!(c.routes[0].from, vec!["ehr-feed".to_string(), "lab-in".to_string()]);
    }

    #[test]
    fn routing_mode_first_match_and_socket_mode_forms() {
        for (mode, expected) in [("0o640", 0o640), ("\"0640\"", 0o640), ("\"750\"", 0o750), ("416", 0o640)] {
            let text = format!("{BASE}[control]\nsocket_mode = {mode}\n[routing]\nmode = \"first-match\"\n");
            let c = parse(&text, "t").unwrap();
            assert_eq!(c.control.socket_mode, expected, "{mode}");
            assert_eq!(c.routing.mode, RoutingMode::FirstMatch);
        }
    }

    #[test]
    fn relative_paths_resolve_against_state_dir() {
        let text = format!("{BASE}[control]\nsocket = \"run/ctl.sock\"\n[journal]\npath = \"/data/j.db\"\n");
        let c = parse(&text, "t").unwrap();
        assert_eq!(c.control.socket, PathBuf::from("/srv/outpost/run/ctl.sock"));
        assert_eq!(c.journal.path, PathBuf::from("/data/j.db"));
    }

    // ---- one test per kind of error: right kind, right line, right key, a useful message ----

    #[test]
    fn syntax_error_is_one_error_with_its_place() {
        let errs = errors(&edit(2, "site = \"northfield"));
        assert_eq!(errs.len(), 1, "{errs}");
        let e = &errs.errors[0];
        assert_eq!((e.kind, e.line), (ConfigErrorKind::Syntax, 2), "{errs}");
        assert!(e.column > 1);
        assert!(errs.to_string().starts_with("test.toml:2:"), "{errs}");

        let errs = errors(&edit(3, "id = \"gw-01\"\nsite = \"southfield\""));
        assert_eq!(errs.len(), 1, "{errs}");
        let e = &errs.errors[0];
        assert_eq!((e.kind, e.line, e.column), (ConfigErrorKind::Syntax, 4, 1), "{errs}");
        assert!(e.message.contains("site is set a second time"), "{errs}");
    }

    #[test]
    fn unknown_key_is_named_with_a_suggestion_and_the_valid_keys() {
        let errs = errors(&edit(9, "listn = \"0.0.0.0:2575\""));
        assert_eq!(errs.len(), 2, "{errs}");
        // The missing `listen` is reported too, at the [[source]] header.
        let missing = &errs.errors[0];
        assert_eq!(
            (missing.kind, missing.line, missing.key.as_str()),
            (ConfigErrorKind::MissingKey, 6, "source[0].listen")
        );
        let unknown = &errs.errors[1];
        assert_eq!((unknown.kind, unknown.line, unknown.column), (ConfigErrorKind::UnknownKey, 9, 1));
        assert_eq!(unknown.key, "source[0].listn");
        assert!(unknown.message.contains("did you mean \"listen\"?"), "{errs}");
        assert!(unknown.message.contains("max_connections"), "{errs}");
    }

    #[test]
    fn unknown_key_at_top_level_and_in_sections() {
        let errs = errors(&format!("{BASE}[[sources]]\nname = \"x\"\n[journal]\nmax_size = 5\n"));
        assert_eq!(errs.len(), 2, "{errs}");
        assert_eq!((errs.errors[0].line, errs.errors[0].key.as_str()), (20, "sources"));
        assert!(errs.errors[0].message.contains("did you mean \"source\"?"));
        assert_eq!((errs.errors[1].line, errs.errors[1].key.as_str()), (23, "journal.max_size"));
    }

    #[test]
    fn key_of_another_kind_says_which_kind_it_belongs_to() {
        one_error(
            &edit(14, "connect = \"10.0.0.7:6661\"\ndir = \"out\""),
            ConfigErrorKind::UnknownKey,
            15,
            "destination[0].dir",
            "only applies to kind = \"file\" destinations",
        );
    }

    #[test]
    fn missing_required_key_points_at_its_table() {
        let e = one_error(&edit(3, "# no id"), ConfigErrorKind::MissingKey, 1, "node.id", "add it, e.g. id = ");
        assert_eq!(e.column, 1);
        one_error(&edit(14, ""), ConfigErrorKind::MissingKey, 11, "destination[0].connect", "connect");
        one_error(&edit(19, ""), ConfigErrorKind::MissingKey, 16, "route[0].to", "\"to\"");
    }

    #[test]
    fn missing_node_section() {
        let text =
            BASE.replacen("[node]\nsite = \"northfield\"\nid = \"gw-01\"\nstate_dir = \"/srv/outpost\"\n", "", 1);
        let e = one_error(&text, ConfigErrorKind::MissingKey, 1, "node", "[node] section is missing");
        assert_eq!(e.column, 1);
    }

    #[test]
    fn wrong_type() {
        let e = one_error(&edit(2, "site = 5"), ConfigErrorKind::WrongType, 2, "node.site", "expected a string");
        assert_eq!(e.column, 8);
        one_error(&edit(18, "from = \"ehr-feed\""), ConfigErrorKind::WrongType, 18, "route[0].from", "[\"ehr-feed\"]");
        one_error(
            &format!("{BASE}[escalation]\non_unrouted = \"yes\"\n"),
            ConfigErrorKind::WrongType,
            21,
            "escalation.on_unrouted",
            "true or false",
        );
        one_error(&BASE.replacen("[[source]]", "[source]", 1), ConfigErrorKind::WrongType, 6, "source", "[[source]]");
        one_error(
            &format!("{BASE}[escalation]\ncheck_interval = 30\n"),
            ConfigErrorKind::WrongType,
            21,
            "escalation.check_interval",
            "\"30s\"",
        );
    }

    #[test]
    fn bad_duration() {
        let e = one_error(
            &edit(4, "shutdown_grace = \"10 sec\""),
            ConfigErrorKind::InvalidValue,
            4,
            "node.shutdown_grace",
            "is not a duration",
        );
        assert_eq!(e.column, 18);
    }

    #[test]
    fn bad_size() {
        one_error(
            &edit(9, "listen = \"0.0.0.0:2575\"\nmax_message_size = \"16 megs\""),
            ConfigErrorKind::InvalidValue,
            10,
            "source[0].max_message_size",
            "is not a size",
        );
    }

    #[test]
    fn bad_address() {
        let e = one_error(
            &edit(9, "listen = \"0.0.0.0:99999\""),
            ConfigErrorKind::InvalidValue,
            9,
            "source[0].listen",
            "write it as IP:PORT, e.g. 0.0.0.0:2575",
        );
        assert_eq!(e.column, 10);
        assert_eq!(
            errors(&edit(9, "listen = \"0.0.0.0:99999\"")).to_string(),
            "test.toml:9:10: source[0].listen: \"0.0.0.0:99999\" is not an address: the port \
             \"99999\" is not a number from 1 to 65535; write it as IP:PORT, e.g. 0.0.0.0:2575\n"
        );
        one_error(
            &edit(9, "listen = \"ehr.local:2575\""),
            ConfigErrorKind::InvalidValue,
            9,
            "source[0].listen",
            "is not an IP address",
        );
        for bad in ["10.0.0.7", "10.0.0.7:0", "10.0.0.300:6661", "fd00::7:6661", "lis lab:6661", ":6661"] {
            one_error(
                &edit(14, &format!("connect = \"{bad}\"")),
                ConfigErrorKind::InvalidValue,
                14,
                "destination[0].connect",
                "HOST:PORT",
            );
        }
        for good in ["lis.lab.local:6661", "[fd00::7]:6661", "10.0.0.7:1", "LIS-01:65535"] {
            parse(&edit(14, &format!("connect = \"{good}\"")), "t").unwrap();
        }
    }

    #[test]
    fn bad_charset() {
        one_error(
            &edit(9, "listen = \"0.0.0.0:2575\"\ncharset = \"klingon\""),
            ConfigErrorKind::InvalidValue,
            10,
            "source[0].charset",
            "8859/1",
        );
    }

    #[test]
    fn bad_field_path_in_condition_and_transform() {
        let e = one_error(
            &edit(19, "to = [\"lis\"]\nwhen = { \"MSH9\" = \"ORU\" }"),
            ConfigErrorKind::InvalidValue,
            20,
            "route[0].when.MSH9",
            "PID-3.1",
        );
        assert_eq!(e.column, 10);
        one_error(
            &edit(14, "connect = \"10.0.0.7:6661\"\ntransform = [{ set = \"MSH-0\", value = \"X\" }]"),
            ConfigErrorKind::InvalidValue,
            15,
            "destination[0].transform[0].set",
            "not a field path",
        );
        one_error(
            &edit(14, "connect = \"10.0.0.7:6661\"\ntransform = [{ clear = \"MSH-2\" }]"),
            ConfigErrorKind::InvalidValue,
            15,
            "destination[0].transform[0].clear",
            "separator",
        );
    }

    #[test]
    fn unquoted_dotted_field_path_gets_a_hint() {
        one_error(
            &edit(19, "to = [\"lis\"]\n[route.when]\nMSH-9.1 = \"ORU\""),
            ConfigErrorKind::InvalidValue,
            21,
            "route[0].when.MSH-9",
            "\"MSH-9.1\" = ...",
        );
    }

    #[test]
    fn bad_regex_and_glob() {
        let e = one_error(
            &edit(19, "to = [\"lis\"]\nwhen = { \"MSH-9.2\" = { regex = \"^A0[1-4$\" } }"),
            ConfigErrorKind::InvalidValue,
            20,
            "route[0].when.\"MSH-9.2\".regex",
            "is not a regular expression",
        );
        assert!(!e.message.contains('\n'), "{}", e.message);
        one_error(
            &edit(19, "to = [\"lis\"]\nwhen = { \"MSH-9.2\" = { glob = \"A0[\" } }"),
            ConfigErrorKind::InvalidValue,
            20,
            "route[0].when.\"MSH-9.2\".glob",
            "is not a glob",
        );
        one_error(
            &edit(19, "to = [\"lis\"]\nwhen = { \"MSH-9.2\" = { like = \"A0%\" } }"),
            ConfigErrorKind::UnknownKey,
            20,
            "route[0].when.\"MSH-9.2\".like",
            "glob, regex",
        );
    }

    #[test]
    fn bad_identifier() {
        one_error(&edit(2, "site = \"North Field\""), ConfigErrorKind::InvalidValue, 2, "node.site", "\"north-field\"");
        one_error(&edit(17, "name = \"every thing\""), ConfigErrorKind::InvalidValue, 17, "route[0].name", "' '");
    }

    #[test]
    fn duplicate_names_point_at_the_second_and_name_the_first() {
        let text = format!("{BASE}\n[[destination]]\nname = \"lis\"\nkind = \"file\"\ndir = \"out\"\n");
        one_error(&text, ConfigErrorKind::Duplicate, 22, "destination[1].name", "destination[0] on line 12");
        let text = format!("{BASE}\n[[route]]\nname = \"everything\"\nfrom = [\"*\"]\nto = [\"lis\"]\n");
        one_error(&text, ConfigErrorKind::Duplicate, 22, "route[1].name", "line 17");
    }

    #[test]
    fn route_naming_unknown_source_or_destination() {
        let e = one_error(
            &edit(18, "from = [\"ehr-fed\"]"),
            ConfigErrorKind::UnknownName,
            18,
            "route[0].from[0]",
            "did you mean \"ehr-feed\"?",
        );
        assert_eq!(e.column, 9);
        one_error(
            &edit(19, "to = [\"lis\", \"billing\"]"),
            ConfigErrorKind::UnknownName,
            19,
            "route[0].to[1]",
            "the destinations defined in this file are: lis",
        );
    }

    #[test]
    fn route_needs_destinations_and_no_repeats() {
        one_error(&edit(19, "to = []"), ConfigErrorKind::MissingKey, 19, "route[0].to", "at least one destination");
        let e =
            one_error(&edit(19, "to = [\"lis\", \"lis\"]"), ConfigErrorKind::Duplicate, 19, "route[0].to[1]", "twice");
        assert_eq!(e.column, 14);
        one_error(&edit(18, "from = []"), ConfigErrorKind::MissingKey, 18, "route[0].from", "at least one source");
        one_error(
            &edit(18, "from = [\"*\", \"ehr-feed\"]"),
            ConfigErrorKind::InvalidValue,
            18,
            "route[0].from",
            "alone",
        );
    }

    #[test]
    fn unknown_kind_lists_the_known_kinds() {
        one_error(
            &edit(8, "kind = \"astm\""),
            ConfigErrorKind::UnknownKind,
            8,
            "source[0].kind",
            "the known kinds are: mllp",
        );
        one_error(
            &edit(13, "kind = \"fil\""),
            ConfigErrorKind::UnknownKind,
            13,
            "destination[0].kind",
            "did you mean \"file\"?",
        );
    }

    #[test]
    fn out_of_range_values() {
        let cases: &[(&str, usize, &str, &str)] = &[
            ("[journal]\nhigh_water = 1.5", 21, "journal.high_water", "at most 1"),
            ("[journal]\nhigh_water = 0", 21, "journal.high_water", "above 0"),
            ("[control]\nsocket_mode = 0o1777", 21, "control.socket_mode", "0o777"),
            ("[control]\nsocket_mode = 660", 21, "control.socket_mode", "0o660"),
            ("[escalation]\ncheck_interval = \"0s\"", 21, "escalation.check_interval", "zero"),
        ];
        for (extra, line, key, needle) in cases {
            one_error(&format!("{BASE}{extra}\n"), ConfigErrorKind::OutOfRange, *line, key, needle);
        }
        let source_cases: &[(&str, &str, &str)] = &[
            ("max_connections = 0", "source[0].max_connections", "from 1 to 65535"),
            ("max_message_size = \"512B\"", "source[0].max_message_size", "below the minimum 1KiB"),
            ("max_message_size = 512", "source[0].max_message_size", "below the minimum 1KiB"),
            ("max_message_size = \"2GiB\"", "source[0].max_message_size", "above the maximum 1GiB"),
            ("max_connections = -1", "source[0].max_connections", "negative"),
        ];
        for (extra, key, needle) in source_cases {
            one_error(
                &edit(9, &format!("listen = \"0.0.0.0:2575\"\n{extra}")),
                ConfigErrorKind::OutOfRange,
                10,
                key,
                needle,
            );
        }
        one_error(
            &edit(14, "connect = \"10.0.0.7:6661\"\nretry = { initial_backoff = \"10m\", max_backoff = \"5m\" }"),
            ConfigErrorKind::OutOfRange,
            15,
            "destination[0].retry.initial_backoff",
            "longer than max_backoff",
        );
    }

    #[test]
    fn five_different_errors_are_all_reported_in_file_order() {
        let text = r#"[node]
site = "North Field"
id = "gw-01"
shutdown_grace = "ten seconds"

[[source]]
name = "ehr-feed"
kind = "mllp"
listen = "0.0.0.0:99999"
colour = "blue"

[[destination]]
name = "lis"
kind = "mllp"
connect = "10.0.0.7:6661"

[[route]]
name = "everything"
from = ["ehr-feed"]
to = ["lis", "archive"]
"#;
        let errs = errors(text);
        let got: Vec<(usize, ConfigErrorKind, &str)> = errs.iter().map(|e| (e.line, e.kind, e.key.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (2, ConfigErrorKind::InvalidValue, "node.site"),
                (4, ConfigErrorKind::InvalidValue, "node.shutdown_grace"),
                (9, ConfigErrorKind::InvalidValue, "source[0].listen"),
                (10, ConfigErrorKind::UnknownKey, "source[0].colour"),
                (20, ConfigErrorKind::UnknownName, "route[0].to[1]"),
            ],
            "{errs}"
        );
        let shown = errs.to_string();
        assert_eq!(shown.lines().count(), 5, "{shown}");
        for line in shown.lines() {
            assert!(line.starts_with("test.toml:"), "{line}");
        }
    }

    #[test]
    fn display_of_an_error_without_a_place() {
        let e = ConfigErrors::single("/etc/outpost.toml", "cannot read config file: not found".into());
        assert_eq!(e.len(), 1);
        assert_eq!(e.to_string(), "/etc/outpost.toml: cannot read config file: not found\n");
    }

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("30s", secs(30)),
            ("5m", secs(300)),
            ("2h", secs(7200)),
            ("7d", secs(7 * 86_400)),
            ("1h30m", secs(5400)),
            ("1h 30m", secs(5400)),
            ("1m30s500ms", Duration::from_millis(90_500)),
            ("0s", Duration::ZERO),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for s in ["", "30", "s", "30x", "1.5h", "-5s", "30 seconds"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("512KiB", 512 * 1024),
            ("16MiB", 16 << 20),
            ("1GiB", 1 << 30),
            ("1GB", 1_000_000_000),
            ("10MB", 10_000_000),
            ("100", 100),
            ("64 kib", 64 * 1024),
            ("1_000B", 1000),
        ];
        for (s, n) in ok {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for s in ["", "MiB", "16M", "1.5GiB", "10 parsecs"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
    }

    const UPLINK: &str = r#"[node]
site = "northfield"
id = "gw-01"
state_dir = "/srv/outpost"

[uplink]
url = "mqtts://broker.example.net"
ca = "certs/ca.pem"
cert = "certs/gw.pem"
key = "certs/gw.key"

[[source]]
name = "ehr-feed"
kind = "mllp"
listen = "0.0.0.0:2575"

[[destination]]
name = "central"
kind = "uplink"

[[route]]
name = "up"
from = ["ehr-feed"]
to = ["central"]
"#;

    #[test]
    fn uplink_section_with_defaults() {
        let c = Config::parse(UPLINK, "t").unwrap();
        let u = c.uplink.as_ref().unwrap();
        assert_eq!(u.broker, Broker { tls: true, host: "broker.example.net".into(), port: 8883 });
        assert_eq!(u.client_id, "outpost-northfield-gw-01");
        assert_eq!(u.ca.as_deref(), Some(Path::new("/srv/outpost/certs/ca.pem")));
        assert_eq!(u.max_packet_size, 256 * 1024);
        assert!(u.wait_for_central && u.remote_config);
        assert_eq!(c.uplink_destination(), Some("central"));
        let plain = Config::parse(
            &UPLINK
                .replace("mqtts://broker.example.net", "mqtt://10.0.0.9:1884")
                .replace("ca = \"certs/ca.pem\"\ncert = \"certs/gw.pem\"\nkey = \"certs/gw.key\"\n", ""),
            "t",
        )
        .unwrap();
        assert_eq!(plain.uplink.unwrap().broker, Broker { tls: false, host: "10.0.0.9".into(), port: 1884 });
    }

    #[test]
    fn uplink_errors() {
        one_error(
            &UPLINK.replace("mqtts://", "http://"),
            ConfigErrorKind::InvalidValue,
            7,
            "uplink.url",
            "not mqtt or mqtts",
        );
        one_error(&UPLINK.replace("ca = \"certs/ca.pem\"\n", ""), ConfigErrorKind::MissingKey, 6, "uplink.ca", "ca");
        one_error(
            &UPLINK.replace("key = \"certs/gw.key\"\n", ""),
            ConfigErrorKind::MissingKey,
            9,
            "uplink.cert",
            "set both cert",
        );
        let no_section = UPLINK.replace("[uplink]\nurl = \"mqtts://broker.example.net\"\nca = \"certs/ca.pem\"\ncert = \"certs/gw.pem\"\nkey = \"certs/gw.key\"\n", "");
        one_error(&no_section, ConfigErrorKind::MissingKey, 14, "destination[0].kind", "no [uplink] section");
        let retry = UPLINK.replace("kind = \"uplink\"", "kind = \"uplink\"\nretry = { max_attempts = 3 }");
        one_error(&retry, ConfigErrorKind::UnknownKey, 20, "destination[0].retry", "only applies to");
        let two = format!("{UPLINK}\n[[destination]]\nname = \"central2\"\nkind = \"uplink\"\n");
        one_error(&two, ConfigErrorKind::Duplicate, 28, "destination[1].kind", "second uplink destination");
    }
}
