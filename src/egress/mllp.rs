//! Outbound MLLP client: one connection per destination, one message in flight at a time
//! (HL7's original-mode ordering), reconnecting on any doubt.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::DeliveryError;
use crate::config::MllpDestination;
use crate::hl7::{self, AckCode};
use crate::mllp::{self, Frame};

/// ACKs are small; a larger answer is not an ACK.
const MAX_ACK: usize = 1024 * 1024;

pub(super) struct Client {
    cfg: MllpDestination,
    conn: Option<(TcpStream, mllp::Decoder)>,
}

impl Client {
    pub(super) fn new(cfg: MllpDestination) -> Client {
        Client { cfg, conn: None }
    }

    pub(super) async fn close(&mut self) {
        if let Some((mut s, _)) = self.conn.take() {
            let _ = s.shutdown().await;
        }
    }

    pub(super) async fn deliver(&mut self, bytes: Vec<u8>, control_id: &str) -> Result<(), DeliveryError> {
        let result = self.exchange(&bytes, control_id).await;
        if matches!(result, Err(DeliveryError::Transport(_))) {
            // After a timeout or a stray answer the stream's state is unknown; start afresh.
            self.conn = None;
        }
        result
    }

    async fn exchange(&mut self, bytes: &[u8], control_id: &str) -> Result<(), DeliveryError> {
        let target = self.cfg.connect.clone();
        if self.conn.is_none() {
            let stream = match tokio::time::timeout(self.cfg.connect_timeout, TcpStream::connect(&target)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(DeliveryError::Transport(format!("cannot connect to {target}: {e}"))),
                Err(_) => {
                    return Err(DeliveryError::Transport(format!(
                        "cannot connect to {target}: no answer within {:?} (connect_timeout)",
                        self.cfg.connect_timeout
                    )));
                }
            };
            let _ = stream.set_nodelay(true);
            tracing::info!(%target, "connected");
            self.conn = Some((stream, mllp::Decoder::new(MAX_ACK)));
        }
        let Some((stream, decoder)) = self.conn.as_mut() else {
            return Err(DeliveryError::Transport("not connected".into()));
        };
        stream
            .write_all(&mllp::encode(bytes))
            .await
            .map_err(|e| DeliveryError::Transport(format!("sending to {target} failed: {e}")))?;
        let ack = tokio::time::timeout(self.cfg.ack_timeout, read_frame(stream, decoder)).await.map_err(|_| {
            DeliveryError::Transport(format!("no ACK from {target} within {:?} (ack_timeout)", self.cfg.ack_timeout))
        })??;
        let text = hl7::decode(&ack, None).text.into_owned();
        let reply = hl7::parse_ack(&text)
            .map_err(|e| DeliveryError::Transport(format!("answer from {target} is not an HL7 ACK: {e}")))?;
        if !control_id.is_empty() && !reply.control_id.is_empty() && reply.control_id != control_id {
            return Err(DeliveryError::Transport(format!(
                "ACK from {target} names control id {} but {} was sent; reconnecting",
                reply.control_id, control_id
            )));
        }
        match reply.code {
            AckCode::AA | AckCode::CA => Ok(()),
            code => Err(DeliveryError::Nak { code, text: reply.text.unwrap_or_default() }),
        }
    }
}

async fn read_frame(stream: &mut TcpStream, decoder: &mut mllp::Decoder) -> Result<Vec<u8>, DeliveryError> {
    let mut buf = [0u8; 4096];
    let mut frames = Vec::new();
    loop {
        for f in frames.drain(..) {
            match f {
                Frame::Message(m) => return Ok(m),
                Frame::Oversized { size, .. } => {
                    return Err(DeliveryError::Transport(format!("answer of {size} bytes is too large for an ACK")));
                }
                Frame::Discarded { .. } => {}
            }
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| DeliveryError::Transport(format!("reading the ACK failed: {e}")))?;
        if n == 0 {
            return Err(DeliveryError::Transport("connection closed before the ACK arrived".into()));
        }
        decoder.push(&buf[..n], &mut frames);
    }
}
