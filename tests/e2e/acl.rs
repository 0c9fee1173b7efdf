//! The fleet configuration in examples/mosquitto (mosquitto.conf and its ACL file, used as they
//! are but for port, certificates and directories), checked with mosquitto_pub/mosquitto_sub as
//! gateways and central: every gateway stays inside its own root.
//!
//! mosquitto grants a forbidden subscription and acknowledges a forbidden publish, then drops
//! the messages. So each absence is shown after a positive control: a message that is allowed,
//! sent after the forbidden ones, arrives on the same connection; had a forbidden one been let
//! through, it would have arrived first.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use crate::mqtt_support::*;
use crate::support::*;

/// Two gateways with ACL blocks in examples/mosquitto/acl (the same node id at two sites).
const A: (&str, &str) = ("northfield", "gw-01");
const B: (&str, &str) = ("riverside", "gw-01");
const CENTRAL_STATE: &str = "outpost/v1/central/state";

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/mosquitto").join(name)
}

fn root((site, node): (&str, &str)) -> String {
    format!("outpost/v1/{site}/{node}")
}

fn cn((site, node): (&str, &str)) -> String {
    format!("{site}:{node}")
}

/// examples/mosquitto/mosquitto.conf with this test's port, certificates, ACL file and
/// directory, and the broker helper's log instead of syslog.
fn example_conf(certs: &Certs) -> String {
    let text = std::fs::read_to_string(example("mosquitto.conf")).unwrap();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(key) = line.split_whitespace().next().filter(|k| !k.starts_with('#')) else {
            out.push(line.to_string());
            continue;
        };
        seen.insert(key.to_string());
        out.push(match key {
            "listener" => "listener {port} 127.0.0.1".to_string(),
            "cafile" => format!("cafile {}", certs.ca.display()),
            "certfile" => format!("certfile {}", certs.server_cert.display()),
            "keyfile" => format!("keyfile {}", certs.server_key.display()),
            "acl_file" => format!("acl_file {}", example("acl").display()),
            "persistence_location" => "persistence_location {dir}/".to_string(),
            "log_dest" => continue,
            _ => line.to_string(),
        });
    }
    for key in
        ["listener", "cafile", "certfile", "keyfile", "acl_file", "require_certificate", "use_identity_as_username"]
    {
        assert!(seen.contains(key), "examples/mosquitto/mosquitto.conf has no {key}");
    }
    out.join("\n")
}

/// The example broker, and certificates for gateways A and B, central, and a gateway the ACL
/// file does not know.
struct Fleet {
    _broker: Broker,
    url: String,
    a: ClientTls,
    b: ClientTls,
    central: ClientTls,
    unknown: ClientTls,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(dir.path());
        let broker = Broker::start_with(BrokerOptions {
            tls: Some(certs.clone()),
            conf_template: Some(example_conf(&certs)),
            ..BrokerOptions::default()
        });
        let url = broker.url();
        Fleet {
            url,
            a: certs.client_tls(&cn(A)),
            b: certs.client_tls(&cn(B)),
            central: certs.client_tls("central"),
            unknown: certs.client_tls("lakeside:gw-09"),
            _broker: broker,
            _dir: dir,
        }
    }

    fn subscribe(&self, who: &ClientTls, filters: &[&str]) -> Subscriber {
        Subscriber::start_with(&self.url, Some(who), filters, None)
    }

    fn publish(&self, who: &ClientTls, topic: &str, payload: &str) {
        publish_with(&self.url, Some(who), topic, payload.as_bytes(), false);
    }

    fn publish_retained(&self, who: &ClientTls, topic: &str, payload: &str) {
        publish_with(&self.url, Some(who), topic, payload.as_bytes(), true);
    }
}

/// Topics of the messages under `prefix` that `sub` got.
fn topics_under(sub: &Subscriber, prefix: &str) -> Vec<String> {
    sub.messages().into_iter().map(|m| m.topic).filter(|t| t.starts_with(prefix)).collect()
}

#[test]
fn a_gateway_publishes_every_contract_topic_and_reads_what_central_sends_it() {
    let fleet = Fleet::start();
    let a = root(A);
    let central_all = fleet.subscribe(&fleet.central, &["outpost/v1/#"]);
    let central_items = fleet.subscribe(&fleet.central, &["$share/central/outpost/v1/+/+/msg/#"]);
    let gateway = fleet
        .subscribe(&fleet.a, &[&format!("{a}/ack"), &format!("{a}/config/set"), &format!("{a}/cmd/+"), CENTRAL_STATE]);

    let upward = ["msg/ehr-feed", "state", "telemetry", "event", "config/status", "cmd/ping/result"];
    for suffix in upward {
        fleet.publish(&fleet.a, &format!("{a}/{suffix}"), &format!("from A: {suffix}"));
    }
    for suffix in upward {
        let topic = format!("{a}/{suffix}");
        central_all.wait_for_payload(&topic, format!("from A: {suffix}").as_bytes());
    }
    central_items.wait_for_payload(&format!("{a}/msg/ehr-feed"), b"from A: msg/ehr-feed");

    for suffix in ["ack", "config/set", "cmd/ping"] {
        fleet.publish(&fleet.central, &format!("{a}/{suffix}"), &format!("from central: {suffix}"));
    }
    fleet.publish_retained(&fleet.central, CENTRAL_STATE, r#"{"status": "online"}"#);
    for suffix in ["ack", "config/set", "cmd/ping"] {
        gateway.wait_for_payload(&format!("{a}/{suffix}"), format!("from central: {suffix}").as_bytes());
    }
    gateway.wait_for_payload(CENTRAL_STATE, br#"{"status": "online"}"#);
    // Central's own writes are readable to it too (it may observe other consumers' acks).
    central_all.wait_for_payload(&format!("{a}/ack"), b"from central: ack");
}

#[test]
fn a_gateway_cannot_read_another_gateways_topics() {
    let fleet = Fleet::start();
    let (a, b) = (root(A), root(B));
    // B asks for A's topics by name and for everything; it also listens on its own ack.
    let filters = [
        format!("{a}/ack"),
        format!("{a}/config/set"),
        format!("{a}/cmd/+"),
        format!("{a}/msg/#"),
        format!("{a}/state"),
    ];
    let mut b_filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    b_filters.extend(["outpost/v1/#", "#"]);
    let b_ack = format!("{b}/ack");
    b_filters.push(&b_ack);
    let intruder = fleet.subscribe(&fleet.b, &b_filters);
    let a_own = fleet.subscribe(&fleet.a, &filters[..3].iter().map(String::as_str).collect::<Vec<_>>());

    for suffix in ["ack", "config/set", "cmd/ping"] {
        fleet.publish(&fleet.central, &format!("{a}/{suffix}"), &format!("for A only: {suffix}"));
    }
    fleet.publish(&fleet.a, &format!("{a}/msg/ehr-feed"), "A's item");
    fleet.publish_retained(&fleet.a, &format!("{a}/state"), "A's birth");
    // A got what was meant for it: the messages were published.
    for suffix in ["ack", "config/set", "cmd/ping"] {
        a_own.wait_for_payload(&format!("{a}/{suffix}"), format!("for A only: {suffix}").as_bytes());
    }

    // The control: B's own ack, sent after all of the above.
    fleet.publish(&fleet.central, &b_ack, "for B");
    intruder.wait_for_payload(&b_ack, b"for B");
    assert_eq!(topics_under(&intruder, &a), Vec::<String>::new(), "B read A's topics");

    // Nor does a new subscription of B's get A's retained birth.
    let late = fleet.subscribe(&fleet.b, &[&format!("{a}/state"), &b_ack]);
    fleet.publish(&fleet.central, &b_ack, "for B again");
    late.wait_for_payload(&b_ack, b"for B again");
    assert_eq!(topics_under(&late, &a), Vec::<String>::new(), "B got A's retained state");
}

#[test]
fn a_gateway_cannot_publish_into_another_gateways_root_or_as_central() {
    let fleet = Fleet::start();
    let (a, b) = (root(A), root(B));
    fleet.publish_retained(&fleet.central, CENTRAL_STATE, "central online");
    let central_all = fleet.subscribe(&fleet.central, &["outpost/v1/#"]);
    let a_own = fleet.subscribe(&fleet.a, &[&format!("{a}/ack"), &format!("{a}/config/set"), &format!("{a}/cmd/+")]);

    // B writes as A, up and down, and as central.
    for suffix in [
        "msg/ehr-feed",
        "state",
        "telemetry",
        "event",
        "config/status",
        "cmd/ping/result",
        "ack",
        "config/set",
        "cmd/ping",
    ] {
        fleet.publish(&fleet.b, &format!("{a}/{suffix}"), &format!("forged by B: {suffix}"));
    }
    fleet.publish_retained(&fleet.b, &format!("{a}/state"), "forged by B: retained state");
    fleet.publish_retained(&fleet.b, CENTRAL_STATE, "forged by B: central offline");

    // Controls: B's own item reaches central, central's ack reaches A.
    fleet.publish(&fleet.b, &format!("{b}/msg/ehr-feed"), "B's item");
    central_all.wait_for_payload(&format!("{b}/msg/ehr-feed"), b"B's item");
    fleet.publish(&fleet.central, &format!("{a}/ack"), "central's ack");
    a_own.wait_for_payload(&format!("{a}/ack"), b"central's ack");
    central_all.wait_for_payload(&format!("{a}/ack"), b"central's ack");

    assert_eq!(topics_under(&central_all, &a), [format!("{a}/ack")], "only central's own ack under A's root");
    assert_eq!(a_own.messages().len(), 1, "A got forged messages: {:?}", a_own.messages());
    let central_state: Vec<String> =
        central_all.messages().into_iter().filter(|m| m.topic == CENTRAL_STATE).map(|m| m.text()).collect();
    assert_eq!(central_state, ["central online"], "the retained state on subscribing, nothing forged after");
    // What is retained is still central's own.
    assert_eq!(retained(&fleet.url, Some(&fleet.a), CENTRAL_STATE, 1)[CENTRAL_STATE], b"central online");
}

#[test]
fn a_certificate_without_an_acl_block_can_do_nothing() {
    let fleet = Fleet::start();
    let a = root(A);
    let stranger_root = "outpost/v1/lakeside/gw-09";
    let central_all = fleet.subscribe(&fleet.central, &["outpost/v1/#"]);
    // It may connect (its certificate is from the CA) but has no topic.
    let stranger = fleet.subscribe(&fleet.unknown, &["#", &format!("{stranger_root}/ack"), &format!("{a}/ack")]);

    fleet.publish(&fleet.unknown, &format!("{stranger_root}/msg/ehr-feed"), "stranger's item");
    fleet.publish(&fleet.unknown, &format!("{a}/msg/ehr-feed"), "stranger as A");
    fleet.publish(&fleet.a, &format!("{a}/msg/ehr-feed"), "A's item");
    central_all.wait_for_payload(&format!("{a}/msg/ehr-feed"), b"A's item");
    let texts: Vec<String> = central_all.messages().iter().map(Received::text).collect();
    assert_eq!(texts, ["A's item"]);

    // Reading: nothing reaches it, though central's messages reach the others at once.
    let a_own = fleet.subscribe(&fleet.a, &[&format!("{a}/ack")]);
    fleet.publish(&fleet.central, &format!("{stranger_root}/ack"), "to the stranger");
    fleet.publish(&fleet.central, &format!("{a}/ack"), "to A");
    a_own.wait_for_payload(&format!("{a}/ack"), b"to A");
    central_all.wait_for_payload(&format!("{a}/ack"), b"to A");
    assert_nothing_for(
        "a message to a certificate without an ACL block",
        std::time::Duration::from_millis(500),
        || stranger.messages().into_iter().next(),
    );
}

#[test]
fn the_example_broker_refuses_a_client_without_a_certificate() {
    let fleet = Fleet::start();
    let (host, port, _) = parse_url(&fleet.url);
    let out = Command::new(tool("mosquitto_pub"))
        .args(["-h", &host, "-p", &port.to_string(), "--cafile"])
        .arg(&fleet.a.ca)
        .args(["-u", "central", "-q", "1", "-t", CENTRAL_STATE, "-m", "no certificate"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a client without a certificate got in: {}", stderr_of(&out));
    // A control on the same broker: a client with a certificate gets in.
    publish_with(&fleet.url, Some(&fleet.central), CENTRAL_STATE, b"with a certificate", true);
    assert_eq!(retained(&fleet.url, Some(&fleet.a), CENTRAL_STATE, 1)[CENTRAL_STATE], b"with a certificate");
}

#[test]
fn acl_blocks_are_what_the_provisioning_script_prints() {
    let acl = std::fs::read_to_string(example("acl")).unwrap();
    for (site, node) in [A, B] {
        let out = Command::new("sh").arg(example("gateway-acl")).args([site, node]).output().unwrap();
        assert_success(&out);
        let block = stdout_of(&out);
        assert!(block.starts_with(&format!("\nuser {site}:{node}\n")), "{block}");
        assert!(acl.contains(&block), "the block for {site}:{node} in examples/mosquitto/acl differs from:\n{block}");
    }
    for bad in ["north/field", "north+", "#", "site:x", ""] {
        let out = Command::new("sh").arg(example("gateway-acl")).args([bad, "gw-01"]).output().unwrap();
        assert_eq!(out.status.code(), Some(65), "{bad:?} accepted:\n{}", stdout_of(&out));
    }
}
