//! Egress: one delivery worker per destination, strictly in journal order (FIFO).
//!
//! The worker takes the oldest undelivered item for its destination, applies the destination's
//! transforms to a copy, and hands it to the destination's sink. Nothing behind the head item is
//! sent until the head is delivered or given up on (failed, kept as a dead letter): an ADT
//! stream delivered out of order corrupts a patient record. Retries back off exponentially
//! with jitter. Progress is recorded in the journal; the journal is the only queue.

mod file;
mod mllp;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::{jitter, sleep_or_cancel};
use crate::config::{Destination, DestinationKind, NakAction, RetryPolicy};
use crate::envelope::{Kind, now_ms};
use crate::events::{Bus, EventKind};
use crate::hl7::{self, AckCode, Charset};
use crate::journal::{DeliveryUpdate, Journal, PendingItem, SharedReader};
use crate::stats::{DestinationStats, Stats};

/// Why an attempt failed.
#[derive(Debug)]
pub enum DeliveryError {
    /// The destination could not be reached or did not answer (retry; counts as unreachable).
    Transport(String),
    /// The destination answered with a negative ACK.
    Nak { code: AckCode, text: String },
    /// The item cannot be delivered as it is (a transform failed); retrying will not help.
    Permanent(String),
    /// The destination refused for a local reason (a file could not be written).
    Local(String),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Transport(s) | DeliveryError::Permanent(s) | DeliveryError::Local(s) => f.write_str(s),
            DeliveryError::Nak { code, text } => write!(f, "{} {}", code.as_str(), text),
        }
    }
}

enum Sink {
    Mllp(mllp::Client),
    File(file::FileSink),
}

impl Sink {
    async fn deliver(&mut self, item: &PendingItem, bytes: Vec<u8>, control_id: &str) -> Result<(), DeliveryError> {
        match self {
            Sink::Mllp(c) => c.deliver(bytes, control_id).await,
            Sink::File(f) => f.deliver(&item.id, item.kind, bytes).await,
        }
    }

    async fn close(&mut self) {
        if let Sink::Mllp(c) = self {
            c.close().await;
        }
    }
}

/// Runs one destination's delivery loop until cancelled.
pub async fn run_worker(dest: Destination, journal: Journal, bus: Bus, stats: Arc<Stats>, cancel: CancellationToken) {
    let reader = match journal.shared_reader() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(destination = %dest.name, error = %e, "cannot open the journal for reading; deliveries stop");
            return;
        }
    };
    let mut sink = match &dest.kind {
        DestinationKind::Mllp(cfg) => Sink::Mllp(mllp::Client::new(cfg.clone())),
        DestinationKind::File(cfg) => Sink::File(file::FileSink::new(cfg.clone())),
        // The uplink delivers its own (see uplink/): it waits for central's acknowledgement.
        DestinationKind::Uplink => return,
    };
    let worker = Worker { stats: stats.destination(&dest.name), dest, journal, bus };
    tracing::info!(destination = %worker.dest.name, kind = worker.dest.kind.name(), "delivery worker started");
    worker.run(&mut sink, reader, cancel).await;
    sink.close().await;
    tracing::info!(destination = %worker.dest.name, "delivery worker stopped");
}

struct Worker {
    dest: Destination,
    journal: Journal,
    bus: Bus,
    stats: Arc<DestinationStats>,
}

/// Items fetched per journal read.
const FETCH: usize = 64;

impl Worker {
    async fn run(&self, sink: &mut Sink, reader: SharedReader, cancel: CancellationToken) {
        let mut head = self.journal.head();
        let mut cursor = 0i64;
        let mut rescan = head.borrow().rescan;
        loop {
            let now_rescan = head.borrow_and_update().rescan;
            if now_rescan != rescan {
                // Failed items were put back: start from the beginning, once our own progress
                // is committed (or what was just delivered would look pending again).
                rescan = now_rescan;
                cursor = 0;
                let _ = self.journal.barrier().await;
            }
            let dest = self.dest.name.clone();
            // Up to the synced head: nothing that could still vanish in a power cut is sent on.
            let upto = head.borrow().seq;
            let items = match reader.read(move |r| r.pending_upto(&dest, cursor, upto, FETCH)).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(destination = %self.dest.name, error = %e, "cannot read the journal; retrying");
                    if sleep_or_cancel(Duration::from_secs(1), &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            if items.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = head.changed() => if r.is_err() { return },
                }
                continue;
            }
            for item in items {
                if cancel.is_cancelled() {
                    return;
                }
                match self.deliver_until_done(sink, &item, &cancel).await {
                    Some(()) => cursor = item.seq,
                    None => return,
                }
                if head.borrow().rescan != rescan {
                    break;
                }
            }
        }
    }

    /// Attempts one item until it is delivered or given up. `None` when cancelled.
    async fn deliver_until_done(&self, sink: &mut Sink, item: &PendingItem, cancel: &CancellationToken) -> Option<()> {
        let name = &self.dest.name;
        let mut attempts = item.attempts;
        let wait = item.next_attempt_at - now_ms();
        if wait > 0 && sleep_or_cancel(Duration::from_millis(wait as u64), cancel).await {
            return None;
        }
        loop {
            let result = match self.prepare(item) {
                Ok((bytes, control_id)) => {
                    tokio::select! {
                        // An attempt in progress is abandoned at shutdown; the item stays pending.
                        _ = cancel.cancelled() => return None,
                        r = sink.deliver(item, bytes, &control_id) => r,
                    }
                }
                Err(e) => Err(e),
            };
            attempts += 1;
            match result {
                Ok(()) => {
                    crate::failpoint::hit(crate::failpoint::ABORT_AFTER_DELIVERY);
                    self.stats.set_link(|l| {
                        l.unreachable_since = None;
                        l.connected = true;
                    });
                    crate::stats::inc(&self.stats.delivered);
                    let _ = self
                        .journal
                        .update(DeliveryUpdate::Delivered { seq: item.seq, destination: name.clone() })
                        .await;
                    tracing::debug!(event = "delivered", destination = %name, item_id = %item.id, attempts, "delivered");
                    self.bus.emit(EventKind::Delivered { id: item.id.clone(), destination: name.clone(), attempts });
                    return Some(());
                }
                Err(err) => {
                    crate::stats::inc(&self.stats.failed_attempts);
                    let (outcome, give_up_now) = match &err {
                        DeliveryError::Transport(_) => {
                            self.stats.set_link(|l| {
                                l.unreachable_since.get_or_insert(now_ms());
                                l.connected = false;
                            });
                            ("error", false)
                        }
                        DeliveryError::Nak { code, .. } => {
                            let action = self.nak_action(*code);
                            ("nak", action == NakAction::DeadLetter)
                        }
                        DeliveryError::Permanent(_) => ("error", true),
                        DeliveryError::Local(_) => ("error", false),
                    };
                    let text = err.to_string();
                    self.stats.set_link(|l| l.last_error = Some(text.clone()));
                    let give_up = give_up_now || exhausted(&self.dest.retry, attempts, item.received_at);
                    let backoff = backoff(&self.dest.retry, attempts);
                    let next = now_ms() + backoff.as_millis() as i64;
                    let _ = self
                        .journal
                        .update(DeliveryUpdate::Failed {
                            seq: item.seq,
                            destination: name.clone(),
                            error: text.clone(),
                            outcome,
                            next_attempt_at: if give_up { 0 } else { next },
                            give_up,
                        })
                        .await;
                    if give_up {
                        crate::stats::inc(&self.stats.dead_lettered);
                        tracing::error!(event = "failed", destination = %name, item_id = %item.id, attempts, error = %text,
                            "delivery failed for good; the item is kept as failed (outpost queue retry {})", item.id);
                        self.bus.emit(EventKind::Failed {
                            id: item.id.clone(),
                            destination: name.clone(),
                            attempts,
                            error: text,
                        });
                        return Some(());
                    }
                    tracing::warn!(event = "attempt_failed", destination = %name, item_id = %item.id, attempts, retry_in_ms = backoff.as_millis() as u64,
                        error = %text, "delivery attempt failed; will retry");
                    self.bus.emit(EventKind::AttemptFailed {
                        id: item.id.clone(),
                        destination: name.clone(),
                        attempt: attempts,
                        error: text,
                        retry_in_ms: backoff.as_millis() as u64,
                    });
                    if sleep_or_cancel(backoff, cancel).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The bytes this destination receives, and the ref its answer must name (HL7: the control
    /// id an ACK names). Transforms apply to the kinds they understand; `config check` refuses
    /// them on a destination that can receive any other.
    fn prepare(&self, item: &PendingItem) -> Result<(Vec<u8>, String), DeliveryError> {
        if self.dest.transforms.is_empty() {
            return Ok((item.body.clone(), item.item_ref.clone()));
        }
        match item.kind {
            Kind::Hl7v2 => self.prepare_hl7(item),
            // `config check` refuses transforms on a destination that can receive ASTM items.
            Kind::Astm | Kind::Fax => Ok((item.body.clone(), item.item_ref.clone())),
        }
    }

    fn prepare_hl7(&self, item: &PendingItem) -> Result<(Vec<u8>, String), DeliveryError> {
        let charset = item
            .charset
            .as_deref()
            .and_then(Charset::from_label)
            .unwrap_or_else(|| hl7::decode(&item.body, None).charset);
        let bytes = hl7::apply_transforms(&item.body, charset, &self.dest.transforms)
            .map_err(|e| DeliveryError::Permanent(format!("transform failed: {e}")))?;
        let decoded = hl7::decode(&bytes, Some(charset));
        let control_id =
            hl7::Message::parse(&decoded.text).map(|m| m.header().control_id).unwrap_or_else(|_| item.item_ref.clone());
        Ok((bytes, control_id))
    }

    fn nak_action(&self, code: AckCode) -> NakAction {
        match &self.dest.kind {
            DestinationKind::Mllp(cfg) => match code {
                AckCode::AE | AckCode::CE => cfg.on_ae,
                _ => cfg.on_ar,
            },
            _ => NakAction::Retry,
        }
    }
}

/// Whether the retry policy is used up after `attempts` attempts of an item received at
/// `received_at`.
pub fn exhausted(policy: &RetryPolicy, attempts: u32, received_at: i64) -> bool {
    if policy.max_attempts.is_some_and(|max| attempts >= max) {
        return true;
    }
    policy.max_age.is_some_and(|age| now_ms() - received_at >= age.as_millis() as i64)
}

/// Backoff before the next attempt: initial × 2^(attempts−1), capped, with ±20 % jitter so that
/// many gateways do not retry in step.
pub fn backoff(policy: &RetryPolicy, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let base = policy.initial_backoff.saturating_mul(1u32 << exp).min(policy.max_backoff);
    jitter(base).min(policy.max_backoff.mul_f64(1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_attempts: Some(5),
            max_age: None,
        }
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let p = policy();
        for (attempt, base) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0), (7, 60.0), (40, 60.0)] {
            let b = backoff(&p, attempt).as_secs_f64();
            assert!(b >= base * 0.8 - 1e-9 && b <= base * 1.2 + 1e-9, "attempt {attempt}: {b}");
        }
    }

    #[test]
    fn exhaustion_by_attempts_and_age() {
        let mut p = policy();
        assert!(!exhausted(&p, 4, now_ms()));
        assert!(exhausted(&p, 5, now_ms()));
        p.max_attempts = None;
        p.max_age = Some(Duration::from_secs(60));
        assert!(!exhausted(&p, 100, now_ms()));
        assert!(exhausted(&p, 1, now_ms() - 61_000));
    }
}
