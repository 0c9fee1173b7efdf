//! Connecting to the broker: the common flags, the broker URL, TLS (mutual, from PEM files),
//! and the helpers the one-shot subcommands share (connect once, wait for an event, leave).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, TlsConfiguration, Transport,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::time::Instant;

use crate::{Exit, unavailable, usage};

/// Largest packet accepted or sent (an item's chunk, an acknowledgement, a config).
pub const MAX_PACKET: usize = 16 * 1024 * 1024;

/// The connection flags every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Broker: mqtt://HOST[:PORT] (default port 1883) or mqtts://HOST[:PORT] (8883, needs --ca).
    #[arg(long, global = true, value_name = "URL", default_value = "mqtt://localhost:1883")]
    pub url: String,
    /// CA certificate(s) (PEM) the broker's certificate must chain to.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; needs --key.
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM: PKCS#8, PKCS#1 or SEC1); needs --cert.
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// User name for the broker (password from --password, or empty).
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// Password (better from the environment than the command line).
    #[arg(long, global = true, env = "CENTRAL_MQTT_PASSWORD", hide_env_values = true, requires = "username")]
    pub password: Option<String>,
    /// MQTT client id (default: central-consumer for consume, central-<random> otherwise).
    #[arg(long, global = true, value_name = "ID")]
    pub client_id: Option<String>,
}

/// Where the broker is.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// Reads `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (an IPv6 address in brackets).
pub fn parse_url(url: &str) -> Result<Endpoint, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else {
        return Err(format!("--url {url}: expected mqtt://HOST:PORT or mqtts://HOST:PORT"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "--url {url}: only a host and a port are allowed (credentials go in --username/--password)"
        ));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(format!("--url {url}: unclosed '[' in the host"));
        };
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| format!("--url {url}: expected ':' after ']'"))?),
        };
        (format!("[{addr}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("--url {url}: no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| format!("--url {url}: bad port '{p}'"))?,
    };
    Ok(Endpoint { host, port, tls })
}

impl ConnArgs {
    /// Options for `client_id` with the endpoint, credentials and TLS these flags give. Errors
    /// are usage errors (exit 64): a bad URL, an unreadable or invalid certificate or key.
    pub fn options(&self, client_id: &str) -> anyhow::Result<MqttOptions> {
        let endpoint = parse_url(&self.url).map_err(usage)?;
        if client_id.is_empty() {
            return Err(usage("--client-id must not be empty"));
        }
        let mut options = MqttOptions::new(client_id, endpoint.host, endpoint.port);
        if endpoint.tls {
            let config = self.tls_config().map_err(|e| usage(format!("{e:#}")))?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))));
        } else if self.ca.is_some() || self.cert.is_some() {
            return Err(usage(format!("--ca/--cert/--key need an mqtts:// URL, not {}", self.url)));
        }
        if let Some(user) = &self.username {
            options.set_credentials(user, self.password.as_deref().unwrap_or(""));
        }
        options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        Ok(options)
    }

    fn tls_config(&self) -> anyhow::Result<ClientConfig> {
        let ca = self.ca.as_ref().context("mqtts:// needs --ca FILE (the CA that signed the broker's certificate)")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots.add(cert).with_context(|| format!("--ca {}: not a usable CA certificate", ca.display()))?;
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS: no protocol version available")?
            .with_root_certificates(roots);
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| anyhow::anyhow!("--key {}: no PEM private key read: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("--cert/--key: cannot use this certificate and key for TLS")
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: cannot read PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

/// A random client id for a one-shot subcommand, short enough for any broker (23 bytes).
pub fn random_client_id() -> String {
    let ulid = ulid::Ulid::generate().to_string().to_lowercase();
    format!("central-{}", &ulid[ulid.len() - 12..])
}

/// A one-shot session: connected once, with a clean session; a lost connection ends it.
pub struct OneShot {
    pub client: AsyncClient,
    eventloop: EventLoop,
    url: String,
}

impl OneShot {
    /// Connects (clean session). Failing to reach the broker is exit 69.
    pub async fn connect(conn: &ConnArgs) -> anyhow::Result<OneShot> {
        let client_id = conn.client_id.clone().unwrap_or_else(random_client_id);
        let mut options = conn.options(&client_id)?;
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    return Ok(OneShot { client, eventloop, url: conn.url.clone() });
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(unavailable(format!("cannot connect to the broker at {}: {}", conn.url, why(&e))));
                }
            }
        }
    }

    /// Polls until `f` returns `Some`, or `deadline` (then `None`). A lost connection is exit 69.
    pub async fn until<T>(
        &mut self,
        deadline: Instant,
        mut f: impl FnMut(Event) -> Option<T>,
    ) -> anyhow::Result<Option<T>> {
        loop {
            let event = tokio::select! {
                event = self.eventloop.poll() => event,
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            };
            match event {
                Ok(event) => {
                    if let Some(done) = f(event) {
                        return Ok(Some(done));
                    }
                }
                Err(e) => {
                    return Err(unavailable(format!("lost the connection to the broker at {}: {}", self.url, why(&e))));
                }
            }
        }
    }

    /// Subscribes to `topic` (QoS 1) and waits for the broker to confirm it.
    pub async fn subscribe(&mut self, topic: &str, deadline: Instant) -> anyhow::Result<()> {
        self.client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.context("MQTT client stopped")?;
        let granted = self
            .until(deadline, |event| match event {
                Event::Incoming(Packet::SubAck(ack)) => {
                    Some(ack.return_codes.iter().all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure)))
                }
                _ => None,
            })
            .await?;
        match granted {
            Some(true) => Ok(()),
            Some(false) => Err(anyhow::anyhow!("the broker refused the subscription to {topic} (its ACL?)")),
            None => Err(unavailable(format!("no answer from the broker at {} to a subscription", self.url))),
        }
    }

    /// Publishes (QoS 1) and waits for the broker's PUBACK.
    pub async fn publish(
        &mut self,
        topic: &str,
        retain: bool,
        payload: Vec<u8>,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload).await.context("MQTT client stopped")?;
        // A one-shot session publishes one message at a time, so the next PUBACK is this one's.
        let acked =
            self.until(deadline, |event| matches!(event, Event::Incoming(Packet::PubAck(_))).then_some(())).await?;
        acked.ok_or_else(|| {
            unavailable(format!("the broker at {} did not acknowledge the publish to {topic}", self.url))
        })
    }

    /// Disconnects cleanly (so no last will), waiting briefly for the DISCONNECT to go out.
    pub async fn close(mut self) {
        if self.client.disconnect().await.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(2);
            let _ = self
                .until(deadline, |event| matches!(event, Event::Outgoing(Outgoing::Disconnect)).then_some(()))
                .await;
        }
    }
}

/// A connection error in words a person can act on.
pub fn why(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!("the broker refused the connection ({code:?})"),
        ConnectionError::NetworkTimeout => "timed out".into(),
        other => other.to_string(),
    }
}

/// The exit code an error carries (1 when it says none).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<Exit>().map_or(1, |exit| exit.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str, host: &str, port: u16, tls: bool) {
        assert_eq!(parse_url(url), Ok(Endpoint { host: host.into(), port, tls }), "{url}");
    }

    #[test]
    fn urls() {
        ok("mqtt://localhost:1883", "localhost", 1883, false);
        ok("mqtt://127.0.0.1:41234/", "127.0.0.1", 41234, false);
        ok("mqtt://broker.example", "broker.example", 1883, false);
        ok("mqtts://broker.example", "broker.example", 8883, true);
        ok("mqtts://broker.example:9883", "broker.example", 9883, true);
        ok("mqtt://[::1]:1883", "[::1]", 1883, false);
        ok("mqtt://[::1]", "[::1]", 1883, false);
        for bad in [
            "tcp://x:1",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://x:0",
            "mqtt://x:70000",
            "mqtt://x:port",
            "mqtt://user:pw@x:1",
            "mqtt://x:1/path",
            "mqtt://[::1",
            "mqtt://[::1]1883",
            "localhost:1883",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_ids_fit_any_broker() {
        let id = random_client_id();
        assert!(id.starts_with("central-") && id.len() <= 23, "{id}");
        assert_ne!(id, random_client_id());
    }
}
