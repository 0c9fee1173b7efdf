//! `[uplink]`: the MQTT link to central (broker, credentials, TLS files, flow limits), and the
//! checks between its keys that a key alone cannot make (a certificate needs its key, TLS needs a
//! CA). Which destination sends over it is `destination/uplink.rs`'s business.

use std::path::Path;

use super::error::ConfigErrorKind;
use super::values::{
    KIB, MIB, boolean, check_host_port, count_in, duration, format_duration, path, secs, size_in, string,
};
use super::walk::{Checker, Tbl, Val};
use super::{Broker, Node, Uplink};

pub(super) fn uplink(ck: &mut Checker, t: &Tbl<'_, '_>, node: Option<&Node>, state_dir: &Path) -> Option<Uplink> {
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
    t.finish(ck, &[]);

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
