//! MLLP listener: HL7 v2 over TCP. One task per connection; messages on a connection are
//! handled strictly in order, and each is ACKed only after the journal has committed it.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Serving;
use crate::config::MllpSource;
use crate::envelope::Kind;
use crate::envelope::hl7_now;
use crate::hl7::{self, AckMode, Charset, Outcome};
use crate::intake::{Arrival, Intake, Receipt};
use crate::mllp::{self, Frame};
use crate::stats::{SourceLink, SourceStats, get};

/// What `status` shows of an MLLP source beyond the common counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The configured address.
    pub listen: String,
    /// The address actually bound (differs from `listen` for port 0); absent while down.
    pub bound: Option<String>,
    pub connections: u64,
    pub oversized: u64,
    pub discarded_bytes: u64,
}

pub fn detail(cfg: &MllpSource, stats: &SourceStats, link: &SourceLink) -> Detail {
    Detail {
        listen: cfg.listen.to_string(),
        bound: link.at.clone(),
        connections: get(&stats.connections),
        oversized: get(&stats.oversized),
        discarded_bytes: get(&stats.discarded_bytes),
    }
}

/// Accepts connections until `serving.stop` fires, then hands the listener back (a reload
/// that changes a source's settings but not its address keeps the same socket). Connections
/// run until `serving.abort` fires or they close; they are tracked so that shutdown can wait
/// for them to finish the message they are on.
pub async fn serve(name: String, cfg: MllpSource, listener: TcpListener, serving: Serving) -> TcpListener {
    let Serving { intake, stats: source_stats, stop: accept_cancel, abort: conn_cancel, tracker } = serving;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(source = %name, %addr, "listening for MLLP");
    }
    let permits = Arc::new(Semaphore::new(cfg.max_connections));
    let cfg = Arc::new(cfg);
    loop {
        let accepted = tokio::select! {
            _ = accept_cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(source = %name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(source = %name, %peer, max = cfg.max_connections,
                "connection refused: max_connections reached; raise it or find the sender that does not close its connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            source: name.clone(),
            cfg: cfg.clone(),
            intake: intake.clone(),
            stats: source_stats.clone(),
            peer,
        };
        let cancel = conn_cancel.clone();
        tracker.spawn(async move {
            let _counted = OpenConnection::new(conn.stats.clone());
            tracing::debug!(source = %conn.source, peer = %conn.peer, "connection opened");
            conn.run(stream, cancel).await;
            drop(permit);
        });
    }
    tracing::info!(source = %name, "listener stopped");
    listener
}

/// Counts a connection in `status` for as long as it lives.
struct OpenConnection(Arc<SourceStats>);

impl OpenConnection {
    fn new(stats: Arc<SourceStats>) -> OpenConnection {
        crate::stats::inc(&stats.connections);
        OpenConnection(stats)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Connection {
    source: String,
    cfg: Arc<MllpSource>,
    intake: Arc<Intake>,
    stats: Arc<SourceStats>,
    peer: SocketAddr,
}

impl Connection {
    async fn run(&self, mut stream: TcpStream, cancel: CancellationToken) {
        let mut decoder = mllp::Decoder::new(self.cfg.max_message_size);
        let mut buf = vec![0u8; 64 * 1024];
        let mut frames = Vec::new();
        loop {
            let read = tokio::select! {
                _ = cancel.cancelled() => break,
                r = read_with_idle(&mut stream, &mut buf, self.cfg.idle_timeout) => r,
            };
            match read {
                Ok(0) => {
                    decoder.finish(&mut frames);
                    let _ = self.handle(&mut stream, &mut frames).await;
                    break;
                }
                Ok(n) => {
                    decoder.push(&buf[..n], &mut frames);
                    if self.handle(&mut stream, &mut frames).await.is_err() {
                        break;
                    }
                }
                Err(ReadEnd::Idle) => {
                    tracing::info!(source = %self.source, peer = %self.peer, "closing idle connection (idle_timeout)");
                    break;
                }
                Err(ReadEnd::Io(e)) => {
                    tracing::debug!(source = %self.source, peer = %self.peer, error = %e, "connection error");
                    break;
                }
            }
        }
        if decoder.in_frame() {
            tracing::warn!(source = %self.source, peer = %self.peer, bytes = decoder.buffered(),
                "connection ended inside a message; the partial message was not acknowledged and is dropped");
        }
        let _ = stream.shutdown().await;
    }

    /// Handles decoded frames in order. Returns Err when the connection must close.
    async fn handle(&self, stream: &mut TcpStream, frames: &mut Vec<Frame>) -> std::io::Result<()> {
        for frame in frames.drain(..) {
            match frame {
                Frame::Message(body) => {
                    let arrival = Arrival::new(&self.source, Kind::Hl7v2, self.cfg.charset, body);
                    let receipt = self.intake.accept(arrival).await;
                    self.answer(stream, &receipt).await?;
                }
                Frame::Oversized { head, size } => {
                    crate::stats::inc(&self.stats.oversized);
                    let reason = format!(
                        "message of {size} bytes exceeds max_message_size ({} bytes); it was not stored",
                        self.cfg.max_message_size
                    );
                    tracing::warn!(source = %self.source, peer = %self.peer, size, "{reason}");
                    self.intake.refuse(&self.source, reason.clone());
                    let decoded = hl7::decode(&head, self.cfg.charset);
                    let header = hl7::Message::parse(&decoded.text).ok().map(|m| m.header());
                    let receipt = Receipt { header, outcome: Outcome::Unparseable, id: None, error: Some(reason) };
                    self.answer(stream, &receipt).await?;
                }
                Frame::Discarded { bytes, unterminated } => {
                    self.stats.discarded_bytes.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
                    if unterminated {
                        tracing::warn!(source = %self.source, peer = %self.peer, bytes,
                            "a message started but never ended (no 0x1C 0x0D) before the next one; its bytes were dropped unacknowledged");
                    } else {
                        tracing::warn!(source = %self.source, peer = %self.peer, bytes,
                            "bytes outside MLLP framing discarded (is the sender using MLLP framing 0x0B ... 0x1C 0x0D?)");
                    }
                }
            }
        }
        Ok(())
    }

    async fn answer(&self, stream: &mut TcpStream, receipt: &Receipt) -> std::io::Result<()> {
        let mode = receipt.header.as_ref().map(AckMode::of).unwrap_or(AckMode::Original);
        if !mode.should_send(receipt.outcome) {
            return Ok(());
        }
        let code = mode.code(receipt.outcome);
        let ack_id = receipt.id.clone().unwrap_or_else(|| ulid::Ulid::generate().to_string());
        let text = hl7::build_ack(receipt.header.as_ref(), code, receipt.error.as_deref(), &ack_id, &hl7_now());
        let charset = self
            .cfg
            .charset
            .or_else(|| receipt.header.as_ref().and_then(|h| Charset::from_label(&h.character_set)))
            .unwrap_or(Charset::Utf8);
        stream.write_all(&mllp::encode(&charset.encode(&text))).await
    }
}

enum ReadEnd {
    Idle,
    Io(std::io::Error),
}

async fn read_with_idle(
    stream: &mut TcpStream,
    buf: &mut [u8],
    idle: Option<std::time::Duration>,
) -> Result<usize, ReadEnd> {
    match idle {
        Some(d) => match tokio::time::timeout(d, stream.read(buf)).await {
            Ok(r) => r.map_err(ReadEnd::Io),
            Err(_) => Err(ReadEnd::Idle),
        },
        None => stream.read(buf).await.map_err(ReadEnd::Io),
    }
}
