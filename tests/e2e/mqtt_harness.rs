//! The uplink tests' harness checked on its own: the broker it starts, stops, restarts and
//! freezes; TLS with generated certificates; the proxy that holds and cuts the link. If these
//! fail, the uplink tests prove nothing.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::mqtt_support::*;
use crate::support::*;

/// How long something that should not happen is given to happen anyway, once a positive control
/// shows it would have by now.
const QUIET: Duration = Duration::from_millis(500);

#[test]
fn broker_carries_messages_and_restarts_on_the_same_port() {
    let mut broker = Broker::start();
    let url = broker.url();
    assert!(url.starts_with("mqtt://127.0.0.1:"), "{url}");
    let sub = Subscriber::start(&url, "harness/#");
    publish(&url, "harness/one", b"first", false);
    let got = sub.wait_for_payload("harness/one", b"first");
    assert!(!got.retained);

    let port = broker.port();
    broker.stop();
    assert!(!broker.is_running());
    assert!(TcpStream::connect(broker.addr()).is_err(), "nothing listens on a stopped broker's port");
    assert!(!try_publish(&url, None, "harness/none", b"lost", false).status.success());

    broker.start_again();
    assert_eq!(broker.port(), port);
    let sub = Subscriber::start(&url, "harness/#");
    publish(&url, "harness/two", b"second", false);
    sub.wait_for_payload("harness/two", b"second");

    broker.restart();
    assert_eq!(broker.port(), port);
    let runs = broker.log().lines().filter(|l| l.contains("mosquitto version") && l.ends_with(" running")).count();
    assert_eq!(runs, 3, "one log across the three runs:\n{}", broker.log());
}

#[test]
fn retained_messages_survive_a_restart_only_with_persistence() {
    // Without persistence (the default) a restart forgets them.
    let mut broker = Broker::start();
    let url = broker.url();
    publish(&url, "harness/kept", b"before", true);
    assert_eq!(retained(&url, None, "harness/kept", 1)["harness/kept"], b"before");
    broker.restart();
    let sub = Subscriber::start(&url, "harness/kept");
    // A retained message would come right after the SUBACK, so before anything published later.
    publish(&url, "harness/kept", b"after", false);
    sub.wait_for_payload("harness/kept", b"after");
    assert_eq!(sub.messages().len(), 1, "{:?}", sub.messages());

    let mut broker = Broker::start_with(BrokerOptions { persistence: true, ..BrokerOptions::default() });
    let url = broker.url();
    publish(&url, "harness/kept", b"persisted", true);
    assert!(broker.terminate().success(), "{}", broker.log());
    broker.start_again();
    let got = retained(&url, None, "harness/kept", 1);
    assert_eq!(got["harness/kept"], b"persisted");
}

#[test]
fn tls_broker_takes_client_certificates_from_its_ca_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("ca"));
    let broker = Broker::start_tls(&certs);
    let url = broker.url();
    assert_eq!(url, format!("mqtts://localhost:{}", broker.port()));

    let gateway = certs.client_tls("northfield:gw-01");
    let sub = Subscriber::start_with(&url, Some(&gateway), &["harness/#"], None);
    publish_with(&url, Some(&gateway), "harness/tls", b"with a certificate", false);
    sub.wait_for_payload("harness/tls", b"with a certificate");
    assert!(broker.log().contains("u'northfield:gw-01'"), "the certificate's CN is the username:\n{}", broker.log());

    // No client certificate: the handshake fails.
    let (host, port, _) = parse_url(&url);
    let out = Command::new(tool("mosquitto_pub"))
        .args(["-h", &host, "-p", &port.to_string(), "--cafile"])
        .arg(&certs.ca)
        .args(["-q", "1", "-t", "harness/tls", "-m", "without a certificate"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a client without a certificate got in: {}", stderr_of(&out));

    // A certificate from another CA, with a name the broker would otherwise accept.
    let other = Certs::generate(&dir.path().join("other"));
    let (cert, key) = other.client("northfield:gw-01");
    let stranger = ClientTls { ca: certs.ca.clone(), cert, key };
    let out = try_publish(&url, Some(&stranger), "harness/tls", b"from a stranger", false);
    assert!(!out.status.success(), "a certificate from another CA got in: {}", stderr_of(&out));
    let refused = Subscriber::try_start(&url, Some(&stranger), &["harness/#"], None);
    assert!(refused.is_err(), "a subscriber with a certificate from another CA got in");

    // Neither reached the subscriber, which gets what comes after them.
    publish_with(&url, Some(&gateway), "harness/tls", b"control", false);
    sub.wait_for_payload("harness/tls", b"control");
    let payloads: Vec<String> = sub.messages().iter().map(Received::text).collect();
    assert_eq!(payloads, ["with a certificate", "control"]);
}

#[test]
fn a_paused_broker_keeps_connections_open_but_answers_nothing_until_resumed() {
    let mut broker = Broker::start();
    broker.pause();
    // The kernel completes the handshake for a stopped process: a half-open link.
    let mut raw = TcpStream::connect(broker.addr()).expect("connect to the paused broker");
    raw.write_all(&connect_packet("raw-paused-broker")).unwrap();
    assert_eq!(read_within(&mut raw, 4, QUIET), None, "a paused broker answered");
    broker.resume();
    assert_eq!(read_within(&mut raw, 4, DEADLINE), Some(CONNACK_ACCEPTED.to_vec()));
}

#[test]
fn proxy_pause_holds_traffic_until_heal_without_closing_anything() {
    let broker = Broker::start();
    let proxy = Proxy::in_front_of(&broker);
    assert_eq!(proxy.url(), format!("mqtt://127.0.0.1:{}", proxy.port()));
    let via_proxy = Subscriber::start_with(&proxy.url(), None, &["harness/#"], Some("via-proxy"));
    let direct = Subscriber::start(&broker.url(), "harness/#");
    assert_eq!(proxy.connections(), 1);

    proxy.pause();
    publish(&broker.url(), "harness/held", b"while paused", false);
    direct.wait_for_payload("harness/held", b"while paused");
    // The broker has written it to the proxied subscriber's connection; the proxy holds it.
    wait_for("the broker to send to via-proxy", DEADLINE, || {
        broker.log().contains("Sending PUBLISH to via-proxy").then_some(())
    });
    assert_nothing_for("a message through the paused proxy", QUIET, || via_proxy.messages().into_iter().next());

    // A new connection is accepted but not forwarded: its CONNECT gets no CONNACK.
    let mut raw = TcpStream::connect(proxy.addr()).expect("connect while paused");
    raw.write_all(&connect_packet("raw-while-paused")).unwrap();
    assert_eq!(read_within(&mut raw, 4, QUIET), None, "an answer through the paused proxy");
    wait_for("the proxy to accept the connection", DEADLINE, || (proxy.connections() == 2).then_some(()));
    assert!(!broker.log().contains("raw-while-paused"), "the broker heard from a paused connection");

    proxy.heal();
    // Held, not lost, in both directions, on the same connections.
    via_proxy.wait_for_payload("harness/held", b"while paused");
    assert_eq!(read_within(&mut raw, 4, DEADLINE), Some(CONNACK_ACCEPTED.to_vec()));
    assert_eq!(proxy.connections(), 2, "nobody had to reconnect");
}

#[test]
fn proxy_cut_closes_current_connections_and_serves_new_ones() {
    let broker = Broker::start();
    let proxy = Proxy::in_front_of(&broker);
    let mut raw = TcpStream::connect(proxy.addr()).unwrap();
    raw.write_all(&connect_packet("raw-cut")).unwrap();
    assert_eq!(read_within(&mut raw, 4, DEADLINE), Some(CONNACK_ACCEPTED.to_vec()));
    let sub = Subscriber::start_with(&proxy.url(), None, &["harness/#"], Some("sub-cut"));
    assert_eq!(proxy.connections(), 2);
    assert_eq!(proxy.open_connections(), 2);

    proxy.cut();
    assert!(closed_within(&mut raw, DEADLINE), "the raw connection is still open after the cut");
    wait_for("the broker to see raw-cut go", DEADLINE, || {
        broker
            .log()
            .lines()
            .any(|l| l.contains("Client raw-cut") && (l.contains("closed") || l.contains("disconnect")))
            .then_some(())
    });

    // mosquitto_sub notices, connects again through the proxy and subscribes again.
    wait_for("mosquitto_sub to reconnect through the proxy", DEADLINE, || (proxy.connections() >= 3).then_some(()));
    let mut n = 0;
    wait_for("a message through the new connection", DEADLINE, || {
        n += 1;
        publish(&broker.url(), "harness/again", format!("again {n}").as_bytes(), false);
        (!sub.on("harness/again").is_empty()).then_some(())
    });
}

#[test]
fn broker_packet_limits_are_set_by_options() {
    // max_packet_size: a client sending more is disconnected, its message refused.
    let broker = Broker::start_with(BrokerOptions { max_packet_size: Some(4096), ..BrokerOptions::default() });
    let url = broker.url();
    let sub = Subscriber::start(&url, "harness/#");
    let out = try_publish(&url, None, "harness/big", &[b'x'; 5000], false);
    assert!(!out.status.success(), "a 5000-byte publish passed a 4096-byte max_packet_size");
    publish(&url, "harness/small", &[b'y'; 3000], false);
    sub.wait_for_payload("harness/small", &[b'y'; 3000]);
    assert!(sub.on("harness/big").is_empty());

    // message_size_limit: the publish is acknowledged and dropped.
    let broker = Broker::start_with(BrokerOptions { message_size_limit: Some(4096), ..BrokerOptions::default() });
    let url = broker.url();
    let sub = Subscriber::start(&url, "harness/#");
    publish(&url, "harness/big", &[b'x'; 5000], false);
    publish(&url, "harness/small", &[b'y'; 3000], false);
    sub.wait_for_payload("harness/small", &[b'y'; 3000]);
    assert!(sub.on("harness/big").is_empty());
}

#[test]
fn subscriber_keeps_payloads_byte_for_byte() {
    let broker = Broker::start();
    let url = broker.url();
    let sub = Subscriber::start(&url, "harness/#");
    let binary: Vec<u8> = (0..=255u8).chain(b"\n\r\n{}".iter().copied()).collect();
    publish(&url, "harness/binary", &binary, false);
    publish(&url, "harness/empty", b"", false);
    publish(&url, "harness/json", br#"{"v": 1, "status": "online"}"#, false);
    sub.wait_for_payload("harness/binary", &binary);
    sub.wait_for_payload("harness/empty", b"");
    assert_eq!(sub.wait_for_payload("harness/json", br#"{"v": 1, "status": "online"}"#).json()["status"], "online");
}
