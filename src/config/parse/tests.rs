//! `parse` end to end: valid files build the right values, and each kind of mistake gives one
//! error of the right kind, at the right place, saying what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse;
use crate::config::values::secs;
use crate::config::{
    Broker, Condition, Config, ConfigError, ConfigErrorKind, ConfigErrors, Control, DEFAULT_CONFIG, Destination,
    DestinationKind, Escalation, FileDestination, Journal, Matcher, MllpDestination, MllpSource, NakAction, Node,
    RetryPolicy, Route, RoutingMode, Source, SourceKind, Transform,
};
use crate::hl7::{Charset, FieldPath};

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
    let text = include_str!("../../../examples/outpost.toml");
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
        Node {
            site: "northfield".into(),
            id: "gw-01".into(),
            state_dir: state.clone(),
            shutdown_grace: secs(10),
            log_summary: secs(60)
        }
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
            source_down_after: secs(300),
            on_unrouted: true,
            on_rejected: true,
            check_interval: secs(30),
            rules: Vec::new(),
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
            retry: RetryPolicy { initial_backoff: secs(1), max_backoff: secs(300), max_attempts: None, max_age: None },
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
            extension: Some("hl7".into()),
            fax_format: crate::config::FaxFormat::Tiff,
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
    let SourceKind::Mllp(s) = &c.sources[0].kind else { panic!("an mllp source") };
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
    let SourceKind::Mllp(s) = &c.sources[0].kind else { panic!("an mllp source") };
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
    let text =
        edit(9, "listen = \"0.0.0.0:2575\"\n[[source]]\nname = \"lab-in\"\nkind = \"mllp\"\nlisten = \"0.0.0.0:2576\"")
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

/// The message of the one unknown-key error in `text` (other errors, such as a missing `kind`,
/// may come with it).
#[track_caller]
fn unknown_key_message(text: &str) -> String {
    let errs = errors(text);
    let unknown: Vec<&ConfigError> = errs.iter().filter(|e| e.kind == ConfigErrorKind::UnknownKey).collect();
    assert_eq!(unknown.len(), 1, "expected one unknown key, got:\n{errs}");
    format!("{}: {}", unknown[0].key, unknown[0].message)
}

/// A table's keys are the keys its reader reads: this pins, for every table, which keys those are
/// and the order messages list them in.
#[test]
fn every_table_lists_its_keys_in_reading_order() {
    let unknown = "unknown key \"zzz\"; remove it or fix its spelling. The keys of";
    let with_zzz = |line: usize, kept: &str| edit(line, &format!("{kept}\nzzz = 1"));
    let cases: Vec<(String, String)> = vec![
        (
            format!("zzz = 1\n{BASE}"),
            format!(
                "zzz: {unknown} the top level of the file are: node, control, journal, routing, escalation, \
                 uplink, orders, source, destination, route"
            ),
        ),
        (format!("{BASE}[orders]\nzzz = 1\n"), format!("orders.zzz: {unknown} [orders] are: from, specimen_id, keep")),
        (
            with_zzz(4, "state_dir = \"/srv/outpost\""),
            format!("node.zzz: {unknown} [node] are: site, id, state_dir, shutdown_grace, log_summary"),
        ),
        (format!("{BASE}[control]\nzzz = 1\n"), format!("control.zzz: {unknown} [control] are: socket, socket_mode")),
        (
            format!("{BASE}[journal]\nzzz = 1\n"),
            format!(
                "journal.zzz: {unknown} [journal] are: path, max_bytes, high_water, min_free_disk, retention, \
                 rejected_retention, dedup_window"
            ),
        ),
        (format!("{BASE}[routing]\nzzz = 1\n"), format!("routing.zzz: {unknown} [routing] are: mode")),
        (
            format!("{BASE}[escalation]\nzzz = 1\n"),
            format!(
                "escalation.zzz: {unknown} [escalation] are: undelivered_after, unreachable_after, \
                 source_down_after, on_unrouted, on_rejected, check_interval, rule"
            ),
        ),
        (
            with_zzz(9, "listen = \"0.0.0.0:2575\""),
            format!(
                "source[0].zzz: {unknown} [[source]] are: name, kind, listen, max_message_size, idle_timeout, \
                 max_connections, charset"
            ),
        ),
        (
            // With no kind, every kind's keys are accepted.
            edit(8, "zzz = 1"),
            format!(
                "source[0].zzz: {unknown} [[source]] are: name, kind, listen, max_message_size, idle_timeout, \
                 max_connections, charset, dir, pattern, after, move_to, settle, rescan, retry_after, max_file_size, profile, profile_file, serial, tcp_listen, tcp_connect, quirks, \
                 timers, hl7, download_orders, class, rings, local_id, fine, max_bit_rate, max_width, data_trigger, \
                 bit_order, page_status, max_fax_size, format"
            ),
        ),
        (
            with_zzz(14, "connect = \"10.0.0.7:6661\""),
            format!(
                "destination[0].zzz: {unknown} [[destination]] are: name, kind, connect, connect_timeout, \
                 ack_timeout, on_ae, on_ar, retry, transform"
            ),
        ),
        (
            edit(13, "kind = \"file\"\ndir = \"out\"\nzzz = 1").replace("connect = \"10.0.0.7:6661\"\n", ""),
            format!(
                "destination[0].zzz: {unknown} [[destination]] are: name, kind, dir, extension, fax_format, retry, transform"
            ),
        ),
        (
            edit(13, "zzz = 1"),
            format!(
                "destination[0].zzz: {unknown} [[destination]] are: name, kind, connect, connect_timeout, \
                 ack_timeout, on_ae, on_ar, retry, transform, dir, extension, fax_format"
            ),
        ),
        (
            UPLINK.replace("kind = \"uplink\"", "kind = \"uplink\"\nzzz = 1"),
            format!("destination[0].zzz: {unknown} [[destination]] are: name, kind"),
        ),
        (
            edit(14, "connect = \"10.0.0.7:6661\"\nretry = { zzz = 1 }"),
            format!(
                "destination[0].retry.zzz: {unknown} retry are: initial_backoff, max_backoff, max_attempts, max_age"
            ),
        ),
        (with_zzz(19, "to = [\"lis\"]"), format!("route[0].zzz: {unknown} [[route]] are: name, from, when, to")),
        (
            edit(19, "to = [\"lis\"]\nwhen = { \"MSH-3\" = { glob = \"A*\", zzz = 1 } }"),
            format!("route[0].when.MSH-3.zzz: {unknown} a condition are: glob, regex"),
        ),
        (
            UPLINK.replace("key = \"certs/gw.key\"", "key = \"certs/gw.key\"\nzzz = 1"),
            format!(
                "uplink.zzz: {unknown} [uplink] are: url, client_id, username, password, ca, cert, key, \
                 keep_alive, max_in_flight, ack_timeout, replay_rate, max_packet_size, telemetry_interval, \
                 reconnect_min, reconnect_max, wait_for_central, remote_config, config_rollback_after"
            ),
        ),
    ];
    for (text, expected) in &cases {
        assert_eq!(&unknown_key_message(text), expected, "in:\n{text}");
    }
    let transform = |t: &str| edit(14, &format!("connect = \"10.0.0.7:6661\"\ntransform = [{t}]"));
    for (t, keys) in [
        ("{ set = \"MSH-5\", value = \"X\", zzz = 1 }", "set, value"),
        ("{ copy = \"MSH-4\", to = \"MSH-6\", zzz = 1 }", "copy, to"),
        ("{ clear = \"PID-19\", zzz = 1 }", "clear"),
        ("{ zzz = 1 }", "set, value, copy, to, clear"),
    ] {
        let expected = format!("destination[0].transform[0].zzz: {unknown} a transform are: {keys}");
        assert_eq!(unknown_key_message(&transform(t)), expected);
    }
}

/// Each kind's messages name the keys of the other kinds without a list of them: they are found
/// by reading.
#[test]
fn a_key_of_another_kind_names_that_kind() {
    let cases = [
        (
            edit(14, "connect = \"10.0.0.7:6661\"\nextension = \"txt\""),
            "destination[0].extension: \"extension\" only applies to kind = \"file\" destinations; remove it here. \
             The keys of [[destination]] are: name, kind, connect, connect_timeout, ack_timeout, on_ae, on_ar, \
             retry, transform",
        ),
        (
            edit(13, "kind = \"file\"\ndir = \"out\"\non_ae = \"retry\"").replace("connect = \"10.0.0.7:6661\"\n", ""),
            "destination[0].on_ae: \"on_ae\" only applies to kind = \"mllp\" destinations; remove it here. The \
             keys of [[destination]] are: name, kind, dir, extension, fax_format, retry, transform",
        ),
        (
            UPLINK.replace("kind = \"uplink\"", "kind = \"uplink\"\ndir = \"out\""),
            "destination[0].dir: \"dir\" only applies to kind = \"mllp\" and kind = \"file\" destinations (an \
             uplink destination sends the exact bytes and waits for central's acknowledgement; the link's \
             settings are in [uplink]); remove it here. The keys of [[destination]] are: name, kind",
        ),
        (
            UPLINK.replace("kind = \"uplink\"", "kind = \"uplink\"\ntransform = []"),
            "destination[0].transform: \"transform\" only applies to kind = \"mllp\" and kind = \"file\" \
             destinations (an uplink destination sends the exact bytes and waits for central's acknowledgement; \
             the link's settings are in [uplink]); remove it here. The keys of [[destination]] are: name, kind",
        ),
        (
            edit(14, "connect = \"10.0.0.7:6661\"\ntransform = [{ clear = \"PID-19\", value = \"X\" }]"),
            "destination[0].transform[0].value: \"value\" only applies to set transforms; remove it here. The \
             keys of a transform are: clear",
        ),
        (
            edit(14, "connect = \"10.0.0.7:6661\"\ntransform = [{ set = \"PID-19\", value = \"X\", to = \"Y\" }]"),
            "destination[0].transform[0].to: \"to\" only applies to copy transforms; remove it here. The keys of \
             a transform are: set, value",
        ),
    ];
    for (text, expected) in &cases {
        assert_eq!(&unknown_key_message(text), expected, "in:\n{text}");
    }
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
    let text = BASE.replacen("[node]\nsite = \"northfield\"\nid = \"gw-01\"\nstate_dir = \"/srv/outpost\"\n", "", 1);
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
    let e = one_error(&edit(19, "to = [\"lis\", \"lis\"]"), ConfigErrorKind::Duplicate, 19, "route[0].to[1]", "twice");
    assert_eq!(e.column, 14);
    one_error(&edit(18, "from = []"), ConfigErrorKind::MissingKey, 18, "route[0].from", "at least one source");
    one_error(&edit(18, "from = [\"*\", \"ehr-feed\"]"), ConfigErrorKind::InvalidValue, 18, "route[0].from", "alone");
}

#[test]
fn unknown_kind_lists_the_known_kinds() {
    one_error(
        &edit(8, "kind = \"hl7fax\""),
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
