//! `central consume`: store what the gateways send, then acknowledge it.
//!
//! Two stages, so the MQTT event loop is always polled (keep-alive, PUBACKs, acks going out)
//! whatever the disk is doing:
//!
//! - the **event loop** (async): connects and reconnects with a short backoff, subscribes after
//!   every CONNACK, keeps central's retained state, and hands every message received to the
//!   writer over a channel bounded by bytes (`QUEUE_BUDGET`);
//! - the **writer** (a thread): gathers messages for `--ack-delay-ms` (or `MAX_BATCH` of them),
//!   parses them, stores them in one transaction, commits, and only then publishes the
//!   acknowledgements, one `{"ids": [...]}` per gateway (at most 1000 ids each).
//!
//! Messages reach the consumer with MQTT QoS 1 and a persistent session (clean_session = false),
//! so the broker queues them while the consumer is away. Their MQTT PUBACK goes out on receipt;
//! durability comes from the contract's own acknowledgement: the gateway keeps (and re-sends) an
//! item until an `ack` names it, so anything lost between PUBACK and commit (a crash, a message
//! dropped because the writer is too far behind) comes again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rumqttc::{
    AsyncClient, Event, LastWill, NetworkOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::conn::{ConnArgs, why};
use crate::payload::{
    CENTRAL_STATE, GatewayState, Topic, ack_payloads, central_state, classify, event_id, gateway_topic,
    parse_gateway_state, parse_item, rfc3339,
};
use crate::store::{Inbound, Outcome, Store};

/// What `consume` was asked to do.
pub struct Options {
    pub store: PathBuf,
    pub share: Option<String>,
    pub ack: bool,
    pub ack_delay: Duration,
    pub state: bool,
}

/// Most messages in one transaction.
const MAX_BATCH: usize = 1000;
/// Payload bytes received but not yet stored. Past it, messages are dropped (and logged): the
/// gateways send unacknowledged items again, and memory stays bounded when the disk cannot keep up.
const QUEUE_BUDGET: usize = 256 * 1024 * 1024;
/// Requests (acks, state, subscriptions) waiting for the event loop.
const REQUEST_CAPACITY: usize = 10_000;
/// Outgoing QoS 1 publishes (acks) awaiting the broker's PUBACK.
const INFLIGHT: u16 = 1000;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a stop waits for the writer to store what it holds and queue its acks.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How long a stop waits for the last state and acks to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Write attempts for one batch before giving up on it (not acknowledged, so sent again).
const WRITE_ATTEMPTS: u32 = 5;

/// The subscriptions: items (shared when asked), and the rest of what gateways publish (never
/// shared: every consumer records them).
pub fn filters(share: Option<&str>) -> Vec<SubscribeFilter> {
    let items = match share {
        Some(group) => format!("$share/{group}/outpost/v1/+/+/msg/#"),
        None => "outpost/v1/+/+/msg/#".to_string(),
    };
    let rest = ["state", "telemetry", "event", "config/status", "cmd/+/result"].map(|t| format!("outpost/v1/+/+/{t}"));
    std::iter::once(items).chain(rest).map(|path| SubscribeFilter::new(path, QoS::AtLeastOnce)).collect()
}

pub async fn run(conn: &ConnArgs, options: Options) -> anyhow::Result<()> {
    let store = Store::open(&options.store)
        .with_context(|| format!("--store {}: cannot open it as a SQLite store", options.store.display()))?;
    let client_id = conn.client_id.clone().unwrap_or_else(|| "central-consumer".to_string());
    let mut mqtt = conn.options(&client_id)?;
    mqtt.set_clean_session(false).set_keep_alive(Duration::from_secs(10)).set_inflight(INFLIGHT);
    if options.state {
        mqtt.set_last_will(LastWill::new(CENTRAL_STATE, central_state(false), QoS::AtLeastOnce, true));
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, REQUEST_CAPACITY);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(5);
    eventloop.set_network_options(network);

    let (tx, rx) = mpsc::channel::<Publish>();
    let queued = Arc::new(AtomicUsize::new(0));
    let (writer_done_tx, mut writer_done) = tokio::sync::oneshot::channel::<()>();
    let writer = Writer {
        store,
        rx,
        acker: options.ack.then(|| Acker { client: client.clone(), runtime: tokio::runtime::Handle::current() }),
        delay: options.ack_delay,
        queued: Arc::clone(&queued),
        births: HashMap::new(),
        totals: Totals::default(),
    };
    std::thread::Builder::new()
        .name("store".into())
        .spawn(move || {
            writer.run();
            drop(writer_done_tx);
        })
        .context("cannot start the store thread")?;

    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let filters = filters(options.share.as_deref());
    let mut tx = Some(tx);
    let mut ready = false;
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0u32;
    let mut dropped = 0u64;
    info!(url = %conn.url, client_id = %client_id, store = %options.store.display(), "consumer starting");

    loop {
        let event = tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = &mut writer_done => anyhow::bail!("the store writer stopped unexpectedly; see the errors above"),
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if failures > 0 {
                    info!(attempts = failures, "reconnected to the broker");
                }
                info!(session_present = ack.session_present, "connected");
                failures = 0;
                backoff = MIN_BACKOFF;
                // Subscribe before saying online: the broker handles the two in order, so no item
                // sent because central came online can miss the subscription. A task, because the
                // request channel drains only while this loop polls.
                let client = client.clone();
                let filters = filters.clone();
                let state = options.state;
                tokio::spawn(async move {
                    if let Err(e) = client.subscribe_many(filters).await {
                        warn!(error = %e, "cannot subscribe");
                    }
                    if state
                        && let Err(e) = client.publish(CENTRAL_STATE, QoS::AtLeastOnce, true, central_state(true)).await
                    {
                        warn!(error = %e, "cannot publish central's state");
                    }
                });
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                    error!(codes = ?ack.return_codes, "the broker refused a subscription (ACL? shared subscriptions?)");
                }
                if !ready {
                    ready = true;
                    if let Err(e) = crate::print_line("ready") {
                        warn!(error = %e, "cannot say ready");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let len = publish.payload.len();
                let Some(sender) = &tx else { continue };
                if queued.load(Ordering::Relaxed).saturating_add(len) > QUEUE_BUDGET {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        warn!(
                            dropped,
                            "the store is not keeping up; dropping messages (gateways will send them again)"
                        );
                    }
                    continue;
                }
                queued.fetch_add(len, Ordering::Relaxed);
                // A closed channel means the writer ended; the select above reports it.
                let _ = sender.send(publish);
            }
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    warn!(url = %conn.url, error = %why(&e), attempts = failures, "broker connection lost or refused; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = sigterm.recv() => break,
                    _ = sigint.recv() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    info!("stopping: storing what was received, then going offline");
    // The writer stores what it holds, queues those acks, and ends when the channel closes.
    drop(tx.take());
    let grace = Instant::now() + DRAIN_GRACE;
    loop {
        tokio::select! {
            _ = &mut writer_done => break,
            _ = tokio::time::sleep_until(grace) => {
                warn!("the store writer did not finish in time; its last batch is not acknowledged");
                break;
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            event = eventloop.poll() => {
                if event.is_err() {
                    tokio::time::sleep(MIN_BACKOFF).await;
                }
            }
        }
    }
    let closer = client.clone();
    let state = options.state;
    tokio::spawn(async move {
        if state {
            let _ = closer.publish(CENTRAL_STATE, QoS::AtLeastOnce, true, central_state(false)).await;
        }
        let _ = closer.disconnect().await;
    });
    let deadline = Instant::now() + CLOSE_GRACE;
    loop {
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            },
            _ = tokio::time::sleep_until(deadline) => {
                warn!("could not disconnect cleanly in time");
                break;
            }
        }
    }
    info!("stopped");
    Ok(())
}

/// Publishes acknowledgements from the writer thread through the event loop's client.
struct Acker {
    client: AsyncClient,
    runtime: tokio::runtime::Handle,
}

impl Acker {
    /// Queues the acks; false when the client is gone (the consumer is stopping).
    fn send(&self, acks: &[(String, Vec<String>)]) -> bool {
        for (gateway, ids) in acks {
            let topic = gateway_topic(gateway, "ack");
            for payload in ack_payloads(ids) {
                let publish = self.client.publish(topic.clone(), QoS::AtLeastOnce, false, payload);
                if let Err(e) = self.runtime.block_on(publish) {
                    warn!(error = %e, "cannot queue acknowledgements; the gateways will send those items again");
                    return false;
                }
            }
        }
        true
    }
}

/// Running totals, logged every `REPORT_EVERY` while something happens.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    new_items: u64,
    new_events: u64,
    duplicates: u64,
    chunks_waiting: u64,
    unfit: u64,
    observed: u64,
    malformed: u64,
    acked_ids: u64,
}

const REPORT_EVERY: Duration = Duration::from_secs(10);

struct Writer {
    store: Store,
    rx: mpsc::Receiver<Publish>,
    acker: Option<Acker>,
    delay: Duration,
    queued: Arc<AtomicUsize>,
    /// The session of each gateway's last birth, to recognise stale deaths in the log.
    births: HashMap<String, u64>,
    totals: Totals,
}

impl Writer {
    fn run(mut self) {
        let mut reported = self.totals;
        let mut last_report = std::time::Instant::now();
        while let Some(raw) = self.gather() {
            let bytes: usize = raw.iter().map(|p| p.payload.len()).sum();
            let batch: Vec<Inbound> = raw.iter().filter_map(|p| self.decode(p)).collect();
            drop(raw);
            if !batch.is_empty()
                && let Some(outcome) = self.write(&batch)
            {
                self.count(&outcome);
                if let Some(acker) = &self.acker
                    && !acker.send(&outcome.acks)
                {
                    self.acker = None;
                }
            }
            drop(batch);
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            if last_report.elapsed() >= REPORT_EVERY && self.totals != reported {
                self.report();
                reported = self.totals;
                last_report = std::time::Instant::now();
            }
        }
        self.report();
    }

    /// The next batch: waits for a first message, then gathers for `delay` or `MAX_BATCH`
    /// messages. `None` once the channel is closed and empty.
    fn gather(&self) -> Option<Vec<Publish>> {
        let first = self.rx.recv().ok()?;
        let deadline = std::time::Instant::now() + self.delay;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let next = if left.is_zero() { self.rx.try_recv().ok() } else { self.rx.recv_timeout(left).ok() };
            match next {
                Some(publish) => batch.push(publish),
                None => break,
            }
        }
        Some(batch)
    }

    /// A received message as something to store; `None` (logged) when it is a malformed item.
    fn decode(&mut self, publish: &Publish) -> Option<Inbound> {
        match classify(&publish.topic) {
            Topic::Item { gateway, .. } => match parse_item(&publish.payload) {
                Ok(item) => Some(Inbound::Item { gateway: gateway.to_string(), item: Box::new(item) }),
                Err(e) => {
                    self.totals.malformed += 1;
                    warn!(topic = %publish.topic, error = %e, "skipping a malformed item (not acknowledged)");
                    None
                }
            },
            topic => {
                if let Topic::Gateway { gateway, rest: "state" } = topic {
                    self.note_state(gateway, &publish.payload, publish.retain);
                }
                if let Topic::Gateway { gateway, rest: "event" } = topic
                    && let Some(id) = event_id(&publish.payload)
                {
                    let payload = String::from_utf8_lossy(&publish.payload).into_owned();
                    return Some(Inbound::Event {
                        gateway: gateway.to_string(),
                        id,
                        topic: publish.topic.clone(),
                        payload,
                    });
                }
                let payload = String::from_utf8_lossy(&publish.payload).into_owned();
                Some(Inbound::Observed { topic: publish.topic.clone(), retained: publish.retain, payload })
            }
        }
    }

    /// Logs births and deaths, recognising a stale death (older session than the last birth).
    fn note_state(&mut self, gateway: &str, payload: &[u8], retained: bool) {
        match parse_gateway_state(payload) {
            Some(GatewayState { online: true, session }) => {
                if let Some(session) = session {
                    self.births.insert(gateway.to_string(), session);
                }
                info!(gateway, session, retained, "gateway online");
            }
            Some(GatewayState { online: false, session }) => {
                let last_birth = self.births.get(gateway).copied();
                if matches!((session, last_birth), (Some(death), Some(birth)) if death < birth) {
                    info!(gateway, session, last_birth, "stale death of an earlier session; ignored");
                } else {
                    info!(gateway, session, retained, "gateway offline");
                }
            }
            None => warn!(gateway, "a state message the contract does not describe"),
        }
    }

    /// Stores the batch, retrying a few times (a locked or briefly failing disk). On giving up,
    /// nothing is acknowledged, so the gateways send those items again.
    fn write(&mut self, batch: &[Inbound]) -> Option<Outcome> {
        let mut pause = Duration::from_millis(200);
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.store.write(batch, &rfc3339(SystemTime::now())) {
                Ok(outcome) => return Some(outcome),
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    warn!(error = %e, attempt, messages = batch.len(), "cannot store a batch; retrying");
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                Err(e) => {
                    error!(error = %e, messages = batch.len(), "cannot store a batch; giving up on it (not acknowledged, the gateways will send it again)");
                }
            }
        }
        None
    }

    fn count(&mut self, outcome: &Outcome) {
        let t = &mut self.totals;
        t.new_items += outcome.new_items;
        t.new_events += outcome.new_events;
        t.duplicates += outcome.duplicates;
        t.chunks_waiting += outcome.chunks_waiting;
        t.unfit += outcome.unfit;
        t.observed += outcome.observed;
        if self.acker.is_some() {
            t.acked_ids += outcome.acks.iter().map(|(_, ids)| ids.len() as u64).sum::<u64>();
        }
        debug!(
            new = outcome.new_items,
            duplicates = outcome.duplicates,
            chunks = outcome.chunks_waiting,
            observed = outcome.observed,
            "batch stored"
        );
    }

    fn report(&self) {
        let t = self.totals;
        info!(
            items = t.new_items,
            events = t.new_events,
            duplicates = t.duplicates,
            chunks_waiting = t.chunks_waiting,
            unfit = t.unfit,
            observed = t.observed,
            malformed = t.malformed,
            acked_ids = t.acked_ids,
            "stored so far"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions() {
        let paths = |share| filters(share).into_iter().map(|f| f.path).collect::<Vec<_>>();
        assert_eq!(
            paths(None),
            [
                "outpost/v1/+/+/msg/#",
                "outpost/v1/+/+/state",
                "outpost/v1/+/+/telemetry",
                "outpost/v1/+/+/event",
                "outpost/v1/+/+/config/status",
                "outpost/v1/+/+/cmd/+/result"
            ]
        );
        let shared = paths(Some("central"));
        assert_eq!(shared[0], "$share/central/outpost/v1/+/+/msg/#");
        assert_eq!(shared[1], "outpost/v1/+/+/state");
        assert!(filters(None).iter().all(|f| f.qos == QoS::AtLeastOnce));
    }
}
