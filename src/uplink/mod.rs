//! The uplink: the MQTT link to central (contract: docs/mqtt.md).
//!
//! One task owns the link. Each *session* is one MQTT connection with a fresh client (so its
//! last will carries the session number, persisted in the journal so it never goes back):
//! connect → subscribe → birth → items, events and telemetry until the link fails → back off
//! (exponential, with jitter; rumqttc on its own would reconnect at once) → next session.
//!
//! The journal is the source of truth, not the MQTT client: an item stays pending until
//! central's application acknowledgement names it (`{root}/ack`), and each session starts again
//! from what is unacknowledged. rumqttc's own retransmission state is dropped with the client.
//! A silent broker is noticed by rumqttc's keep-alive (no PINGRESP by the next ping).

mod contract;
mod flow;
mod outbox;
mod report;
mod tls;

pub(crate) use report::kernel_clock;
pub(crate) use tls::client_config as tls_client_config;

pub use contract::{CENTRAL_STATE, Topics};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::backoff::{jitter, sleep_or_cancel};
use crate::config::Uplink;
use crate::control::ControlContext;
use crate::envelope::now_ms;
use crate::events::{EscalationCode, EventKind, Severity};
use crate::journal::{DeliveryUpdate, RetryTarget, SharedReader};
use crate::stats::{UplinkState, inc};
use flow::Flow;
use outbox::Outbox;

/// Events kept in the journal until central acknowledges them (the newest win).
pub const MAX_KEPT_EVENTS: usize = 1000;
/// Events from the bus journaled in one commit, at most.
const EVENT_BATCH: usize = 256;
/// How long a connection attempt may take, TLS included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often overdue acknowledgements and the replay rate are looked at.
const TICK: Duration = Duration::from_millis(100);
/// The persistent counter of link sessions.
const SESSION_COUNTER: &str = "uplink_session";

/// How the daemon stops the uplink: cancel, after setting the reason its death message gives
/// (`shutdown` when none is set; `restart` when its settings changed).
pub struct Stopping {
    pub cancel: CancellationToken,
    pub reason: Arc<std::sync::OnceLock<&'static str>>,
}

/// Runs the uplink until cancelled. `destination` is the config's uplink destination, if any
/// (without one the link still carries state, telemetry, events, config and commands).
pub async fn run(ctx: ControlContext, cfg: Uplink, destination: Option<String>, stopping: Stopping) {
    let reader = match ctx.journal.shared_reader() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the uplink cannot read the journal; it does not start");
            return;
        }
    };
    let config = ctx.config.get();
    let topics = Topics::new(&config.node.site, &config.node.id);
    let mut link = Link {
        bus: ctx.bus.subscribe(),
        ctx,
        cfg,
        destination,
        topics,
        reader,
        events: VecDeque::new(),
        down_since: None,
        stop_reason: stopping.reason,
    };
    link.run(stopping.cancel).await;
}

struct Link {
    ctx: ControlContext,
    cfg: Uplink,
    destination: Option<String>,
    topics: Topics,
    reader: SharedReader,
    bus: broadcast::Receiver<crate::events::Event>,
    /// Events to publish in this session, in order: those kept in the journal when it started
    /// (or when central came back) and those raised since. They stay in the journal until
    /// central acknowledges them; what was published but not acknowledged goes again in the
    /// next session.
    events: VecDeque<Vec<u8>>,
    down_since: Option<(i64, String)>,
    stop_reason: Arc<std::sync::OnceLock<&'static str>>,
}

/// How a session ended.
enum End {
    Cancelled,
    /// The link failed; `connected` says whether it had been up (the backoff starts over).
    Down {
        reason: String,
        connected: bool,
    },
}

/// What the poll task passes on from rumqttc's event loop.
type NetEvent = Result<Event, rumqttc::ConnectionError>;

impl Link {
    async fn run(&mut self, cancel: CancellationToken) {
        let stats = &self.ctx.stats.uplink;
        stats.set_link(|l| {
            l.state = UplinkState::Connecting;
            l.broker = self.cfg.broker.to_string();
            l.since = now_ms();
        });
        let mut backoff = self.cfg.reconnect_min;
        loop {
            let session = match self.ctx.journal.bump(SESSION_COUNTER).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the uplink session in the journal; retrying");
                    if sleep_or_cancel(Duration::from_secs(5), &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            let end = match self.options(session) {
                Ok(options) => self.session(session, options, &cancel).await,
                Err(e) => End::Down { reason: e, connected: false },
            };
            match end {
                End::Cancelled => {
                    self.ctx.stats.uplink.set_link(|l| {
                        l.state = UplinkState::Down;
                        l.since = now_ms();
                        l.last_disconnect = Some(self.stop_reason().into());
                    });
                    return;
                }
                End::Down { reason, connected } => {
                    if connected {
                        backoff = self.cfg.reconnect_min;
                    }
                    // Jitter, so that a fleet does not reconnect in step after a broker restart.
                    let wait = jitter(backoff);
                    tracing::warn!(broker = %self.cfg.broker, session, retry_in_ms = wait.as_millis() as u64,
                        "uplink down: {reason}");
                    self.ctx.stats.uplink.set_link(|l| {
                        if l.state != UplinkState::Down {
                            l.since = now_ms();
                        }
                        l.state = UplinkState::Down;
                        l.central_online = None;
                        l.last_disconnect = Some(reason.clone());
                    });
                    if connected || self.down_since.is_none() {
                        self.link_went_down(reason);
                    }
                    backoff = (backoff * 2).min(self.cfg.reconnect_max);
                    // Escalations raised while down are queued for when the link returns.
                    let deadline = tokio::time::Instant::now() + wait;
                    loop {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep_until(deadline) => break,
                            e = self.bus.recv() => self.on_bus(e, session).await,
                        }
                    }
                }
            }
        }
    }

    fn options(&self, session: i64) -> Result<MqttOptions, String> {
        let cfg = &self.cfg;
        let mut o = MqttOptions::new(&cfg.client_id, &cfg.broker.host, cfg.broker.port);
        o.set_keep_alive(cfg.keep_alive);
        // The journal re-sends what central has not acknowledged: no broker session needed.
        o.set_clean_session(true);
        o.set_max_packet_size(cfg.max_packet_size.max(1 << 20), cfg.max_packet_size);
        o.set_inflight(cfg.max_in_flight.clamp(10, 1000) as u16);
        o.set_request_channel_capacity(cfg.max_in_flight.clamp(64, 4096));
        o.set_last_will(LastWill::new(
            self.topics.state(),
            contract::death(session, "connection lost"),
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &cfg.username {
            o.set_credentials(user, cfg.password.clone().unwrap_or_default());
        }
        if cfg.broker.tls {
            let tls = tls::client_config(cfg)?;
            o.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)));
        }
        Ok(o)
    }

    async fn session(&mut self, session: i64, options: MqttOptions, cancel: &CancellationToken) -> End {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let mut net_opts = rumqttc::NetworkOptions::new();
        net_opts.set_connection_timeout(CONNECT_TIMEOUT.as_secs());
        eventloop.set_network_options(net_opts);
        let (tx, mut rx) = mpsc::unbounded_channel::<NetEvent>();
        let poller = tokio::spawn(async move {
            loop {
                let ev = eventloop.poll().await;
                let failed = ev.is_err();
                // Outgoing events (one per publish) are of no interest; keep the loop quiet.
                if matches!(ev, Ok(Event::Outgoing(_))) {
                    continue;
                }
                if tx.send(ev).is_err() || failed {
                    return;
                }
            }
        });
        let mut s = Session {
            session,
            out: Outbox::new(client, self.cfg.max_in_flight.clamp(64, 4096)),
            flow: None,
            connected: false,
            central_online: if self.cfg.wait_for_central { None } else { Some(true) },
            next_telemetry: tokio::time::Instant::now() + self.cfg.telemetry_interval,
            heard: tokio::time::Instant::now(),
            rescan: self.ctx.journal.head().borrow().rescan,
        };
        // rumqttc pings every keep-alive and fails the link when a ping goes unanswered; this
        // is a second guard, on anything at all heard from the broker.
        let silence_limit = self.cfg.keep_alive * 2 + Duration::from_secs(5);
        self.ctx.stats.uplink.set_link(|l| {
            l.session = session;
            l.central_online = s.central_online;
        });
        let connect_deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(5);
        let mut head = self.ctx.journal.head();
        let mut config_status = self.ctx.remote.status.clone();
        config_status.mark_unchanged();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    if s.connected {
                        self.goodbye(&mut s, &mut rx).await;
                    }
                    break End::Cancelled;
                }
                ev = rx.recv() => match ev {
                    Some(Ok(Event::Incoming(packet))) => {
                        s.heard = tokio::time::Instant::now();
                        match packet {
                            Packet::ConnAck(_) => self.on_connected(&mut s).await,
                            Packet::Publish(p) => self.on_publish(&mut s, &p.topic, &p.payload).await,
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break End::Down { reason: describe(&e), connected: s.connected },
                    None => break End::Down { reason: "the MQTT event loop stopped".into(), connected: s.connected },
                },
                _ = head.changed() => {
                    let rescan = head.borrow_and_update().rescan;
                    if rescan != s.rescan {
                        s.rescan = rescan;
                        // The head moves only after a commit: the new delivery rows are visible.
                        if let Some(flow) = s.flow.as_mut() {
                            flow.rescan();
                        }
                    }
                }
                r = config_status.changed() => {
                    if r.is_ok() && s.connected {
                        self.publish_config_status(&mut s, true).await;
                    }
                }
                _ = tick.tick() => {
                    if !s.connected && tokio::time::Instant::now() > connect_deadline {
                        break End::Down { reason: "no answer to CONNECT".into(), connected: false };
                    }
                    if s.connected && s.heard.elapsed() > silence_limit {
                        break End::Down {
                            reason: format!("nothing heard from the broker for {}s (half-open link)", s.heard.elapsed().as_secs()),
                            connected: true,
                        };
                    }
                    self.on_tick(&mut s).await;
                }
                e = self.bus.recv() => self.on_bus(e, session).await,
            }
            if s.connected {
                self.flush_events(&mut s);
                if let Err(e) = self.pump(&mut s).await {
                    tracing::error!(error = %e, "the uplink cannot read the journal; retrying");
                }
            }
        };
        poller.abort();
        self.ctx.stats.uplink.in_flight.store(0, std::sync::atomic::Ordering::Relaxed);
        end
    }

    async fn on_connected(&mut self, s: &mut Session) {
        s.connected = true;
        let t = &self.topics;
        let mut subs = vec![
            rumqttc::SubscribeFilter::new(t.ack(), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new(t.cmd_filter(), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new(CENTRAL_STATE.to_string(), QoS::AtLeastOnce),
        ];
        if self.cfg.remote_config {
            subs.push(rumqttc::SubscribeFilter::new(t.config_set(), QoS::AtLeastOnce));
        }
        if let Err(e) = s.out.client().try_subscribe_many(subs) {
            tracing::warn!(error = %e, "uplink: cannot subscribe");
        }
        let reconnect = self.down_since.is_some();
        if reconnect {
            inc(&self.ctx.stats.uplink.reconnects);
        }
        self.ctx.stats.uplink.set_link(|l| {
            l.state = UplinkState::Connected;
            l.since = now_ms();
        });
        if let Some(dest) = &self.destination {
            // The destination's row in `status`, and the `unreachable` escalation, follow the link.
            self.ctx.stats.destination(dest).set_link(|l| {
                l.connected = true;
                l.unreachable_since = None;
            });
        }
        tracing::info!(broker = %self.cfg.broker, session = s.session, "uplink connected");
        if let Some((since, reason)) = self.down_since.take() {
            let secs = (now_ms() - since).max(0) / 1000;
            tracing::info!(down_s = secs, "uplink back after: {reason}");
        }
        self.ctx.escalations.set(&self.ctx.bus, EscalationCode::LinkDown, Severity::Warning, "uplink", None);
        if s.central_online == Some(true) {
            self.start_flow(s).await;
        } else {
            self.birth(s).await;
        }
        self.publish_config_status(s, false).await;
        self.load_events().await;
    }

    /// Starts sending items: everything journaled until now is historical backlog.
    async fn start_flow(&mut self, s: &mut Session) {
        let Some(dest) = self.destination.clone() else {
            self.birth(s).await;
            return;
        };
        // Acknowledgements received before now must be committed, or their items would look
        // unacknowledged to the new flow and be sent again.
        let _ = self.ctx.journal.barrier().await;
        let head = self.ctx.journal.head().borrow().seq;
        s.flow = Some(Flow::new(&dest, s.session, &self.cfg, self.topics.clone(), head));
        self.birth(s).await;
    }

    async fn birth(&mut self, s: &mut Session) {
        let upto = s.flow.as_ref().map(|f| f.live_from).unwrap_or(i64::MAX);
        let payload = report::birth(&self.ctx, &self.reader, self.destination.as_deref(), s.session, upto).await;
        s.out.push(self.topics.state(), QoS::AtLeastOnce, true, payload);
        s.out.flush();
    }

    async fn on_publish(&mut self, s: &mut Session, topic: &str, payload: &[u8]) {
        if topic == self.topics.ack() {
            self.on_ack(s, payload);
        } else if topic == CENTRAL_STATE {
            let Some(online) = contract::central_online(payload) else {
                tracing::warn!("central's state message is not {{\"status\": \"online\"|\"offline\"}}; ignored");
                return;
            };
            if !self.cfg.wait_for_central {
                return;
            }
            let was = s.central_online;
            s.central_online = Some(online);
            self.ctx.stats.uplink.set_link(|l| l.central_online = Some(online));
            if was != Some(online) {
                tracing::info!(online, "central is {}", if online { "online" } else { "offline" });
            }
            if online && was != Some(true) {
                self.start_flow(s).await;
                // Events published while central was away may not have reached it.
                self.load_events().await;
            } else if !online {
                // Items wait in the journal; a new flow (with the backlog as historical) starts
                // when central is back.
                s.flow = None;
                self.ctx.stats.uplink.in_flight.store(0, std::sync::atomic::Ordering::Relaxed);
            }
        } else if let Some(name) = self.topics.command_name(topic) {
            let name = name.to_string();
            self.on_command(s, &name, payload).await;
        } else if topic == self.topics.config_set() {
            self.on_config(s, payload).await;
        }
    }

    fn on_ack(&mut self, s: &mut Session, payload: &[u8]) {
        let ack = match contract::parse_ack(payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("uplink: ignored an acknowledgement: {e}");
                return;
            }
        };
        // Without an uplink destination, acks can only name kept events.
        let dest = self.destination.clone().unwrap_or_default();
        let mut released = Vec::new();
        if let Some(flow) = s.flow.as_mut() {
            for id in &ack.ids {
                if let Some((seq, _)) = crate::journal::resolve_id(id)
                    && let Some(sent) = flow.acked(seq)
                {
                    released.push(sent.id);
                }
            }
            self.ctx.stats.uplink.in_flight.store(flow.in_flight() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        // Committed off the loop; a new flow waits for it (see start_flow).
        let (journal, stats, bus) = (self.ctx.journal.clone(), self.ctx.stats.clone(), self.ctx.bus.clone());
        tokio::spawn(async move {
            match journal.acked(&dest, ack.ids).await {
                Ok(n) => {
                    stats.uplink.acked.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    stats.destination(&dest).delivered.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record central's acknowledgement; the items will be sent again")
                }
            }
            for id in released {
                bus.emit(EventKind::Delivered { id, destination: dest.clone(), attempts: 1 });
            }
        });
    }

    async fn on_tick(&mut self, s: &mut Session) {
        if !s.connected {
            return;
        }
        if tokio::time::Instant::now() >= s.next_telemetry {
            s.next_telemetry = tokio::time::Instant::now() + self.cfg.telemetry_interval;
            let payload = report::telemetry(&self.ctx, s.session).await;
            // Telemetry is a snapshot: QoS 0, never queued behind items.
            s.out.push(self.topics.telemetry(), QoS::AtMostOnce, false, payload);
        }
        let Some(flow) = s.flow.as_mut() else { return };
        match flow.resend_overdue(&self.reader, &mut s.out).await {
            Ok(seqs) if !seqs.is_empty() => {
                let n = seqs.len() as u64;
                self.ctx.stats.uplink.resent.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    items = n,
                    timeout_s = self.cfg.ack_timeout.as_secs(),
                    "central did not acknowledge items in time; sent them again"
                );
                if let Some(dest) = &self.destination {
                    let error = format!("no acknowledgement from central within {}s", self.cfg.ack_timeout.as_secs());
                    for seq in seqs {
                        let _ = self
                            .ctx
                            .journal
                            .update(DeliveryUpdate::Failed {
                                seq,
                                destination: dest.clone(),
                                error: error.clone(),
                                outcome: "error",
                                next_attempt_at: 0,
                                give_up: false,
                            })
                            .await;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "the uplink cannot read the journal"),
        }
    }

    async fn pump(&mut self, s: &mut Session) -> Result<(), crate::journal::JournalError> {
        s.out.flush();
        let Some(flow) = s.flow.as_mut() else { return Ok(()) };
        let head = self.ctx.journal.head().borrow().seq;
        let done = flow.pump(&self.reader, head, &mut s.out).await?;
        if done.items > 0 {
            self.ctx.stats.uplink.published.fetch_add(done.items, std::sync::atomic::Ordering::Relaxed);
        }
        self.ctx.stats.uplink.in_flight.store(flow.in_flight() as u64, std::sync::atomic::Ordering::Relaxed);
        s.out.flush();
        Ok(())
    }

    fn stop_reason(&self) -> &'static str {
        self.stop_reason.get().copied().unwrap_or("shutdown")
    }

    /// A clean stop: the death message (so central need not wait for the broker to notice),
    /// then DISCONNECT (so the broker does not publish the will as well).
    async fn goodbye(&mut self, s: &mut Session, rx: &mut mpsc::UnboundedReceiver<NetEvent>) {
        s.out.flush();
        let client = s.out.client().clone();
        let death = contract::death(s.session, self.stop_reason());
        let _ = client.try_publish(self.topics.state(), QoS::AtLeastOnce, true, death);
        let _ = client.try_disconnect();
        // Wait (briefly) for the event loop to send both.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(ev) = rx.recv().await {
                if matches!(ev, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)) {
                    break;
                }
            }
        })
        .await;
    }

    fn link_went_down(&mut self, reason: String) {
        self.down_since.get_or_insert((now_ms(), reason.clone()));
        if let Some(dest) = &self.destination {
            self.ctx.stats.destination(dest).set_link(|l| {
                l.connected = false;
                l.unreachable_since.get_or_insert(now_ms());
                l.last_error = Some(reason.clone());
            });
        }
        self.ctx.escalations.set(
            &self.ctx.bus,
            EscalationCode::LinkDown,
            Severity::Warning,
            "uplink",
            Some(format!("uplink to {} down: {reason}", self.cfg.broker)),
        );
    }

    /// Turns escalations into events for central: journaled (with whatever else the bus has
    /// ready, in one commit), then queued for the link.
    async fn on_bus(&mut self, first: Result<crate::events::Event, broadcast::error::RecvError>, session: i64) {
        let mut raised = Vec::new();
        let mut next = Some(first);
        while let Some(e) = next.take() {
            match e {
                Ok(ev) => {
                    if let EventKind::Escalation(esc) = &ev.kind {
                        raised.push(report::event(esc, ev.at, session));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.ctx.stats.uplink.events_dropped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => {}
            }
            if raised.len() < EVENT_BATCH {
                next = match self.bus.try_recv() {
                    Ok(ev) => Some(Ok(ev)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(broadcast::error::RecvError::Lagged(n))),
                    Err(_) => None,
                };
            }
        }
        if raised.is_empty() {
            return;
        }
        for (_, payload) in &raised {
            if self.events.len() >= MAX_KEPT_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(payload.clone());
        }
        match self.ctx.journal.add_events(raised, MAX_KEPT_EVENTS).await {
            Ok(dropped) if dropped > 0 => {
                self.ctx.stats.uplink.events_dropped.fetch_add(dropped as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    dropped,
                    kept = MAX_KEPT_EVENTS,
                    "more events waiting for central than are kept; the oldest were dropped"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e,
                "cannot keep events for central in the journal; they are sent only if the link stays up"),
        }
    }

    /// Queues, for this session, every event the journal keeps (not yet acknowledged by central).
    async fn load_events(&mut self) {
        // Acknowledgements received before now must be committed, or their events would be
        // sent again.
        let _ = self.ctx.journal.barrier().await;
        match self.reader.read(|r| r.uplink_events(MAX_KEPT_EVENTS)).await {
            Ok(kept) => self.events = kept.into_iter().map(|(_, payload)| payload).collect(),
            Err(e) => tracing::error!(error = %e, "cannot read the events kept for central; they are sent later"),
        }
    }

    fn flush_events(&mut self, s: &mut Session) {
        while let Some(p) = self.events.pop_front() {
            s.out.push(self.topics.event(), QoS::AtLeastOnce, false, p);
        }
    }

    async fn on_command(&mut self, s: &mut Session, name: &str, payload: &[u8]) {
        let cmd: contract::Command = match serde_json::from_slice(payload) {
            Ok(c) => c,
            Err(e) => {
                let result = contract::command_result(&None, Err(format!("not a command payload: {e}")));
                s.out.push(self.topics.cmd_result(name), QoS::AtLeastOnce, false, result);
                return;
            }
        };
        let from = cmd.from.clone().unwrap_or_else(|| "unknown".into());
        let request = cmd.request_id.clone().map(|v| v.to_string()).unwrap_or_default();
        let result = match name {
            "ping" => Ok(serde_json::json!({"pong": true, "session": s.session, "at": contract::now_rfc3339()})),
            "status" => crate::control::status(&self.ctx)
                .await
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .map_err(|e| e.to_string()),
            "rebirth" => {
                tracing::info!(from = %from, request = %request, "remote command: rebirth");
                self.birth(s).await;
                Ok(serde_json::json!({"session": s.session}))
            }
            "resend" => self.resend(s, &cmd.args, &from, &request).await,
            "retry" => {
                let destination = cmd.args.get("destination").and_then(|d| d.as_str()).map(str::to_string);
                tracing::info!(from = %from, request = %request, destination = destination.as_deref().unwrap_or("all"),
                    "remote command: retry failed deliveries");
                self.ctx
                    .journal
                    .retry(RetryTarget { id: None, destination })
                    .await
                    .map(|n| serde_json::json!({"items": n}))
                    .map_err(|e| e.to_string())
            }
            "reload" => {
                tracing::info!(from = %from, request = %request, "remote command: reload");
                let (tx, rx) = tokio::sync::oneshot::channel();
                if self.ctx.reload.send(tx).await.is_err() {
                    Err("the daemon is shutting down".to_string())
                } else {
                    match rx.await {
                        Ok(Ok(msg)) => Ok(serde_json::json!({"reloaded": true, "message": msg})),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("reload was interrupted".to_string()),
                    }
                }
            }
            other => {
                Err(format!("unknown command {other:?}; the commands are ping, status, rebirth, resend, retry, reload"))
            }
        };
        let payload = contract::command_result(&cmd.request_id, result);
        s.out.push(self.topics.cmd_result(name), QoS::AtLeastOnce, false, payload);
    }

    async fn resend(
        &mut self,
        s: &mut Session,
        args: &serde_json::Value,
        from: &str,
        request: &str,
    ) -> Result<serde_json::Value, String> {
        let Some(dest) = self.destination.clone() else {
            return Err("this gateway has no uplink destination; nothing is sent to central".into());
        };
        let from_seq = args.get("from_seq").and_then(|v| v.as_i64()).ok_or("args.from_seq (a number) is required")?;
        let to_seq = args.get("to_seq").and_then(|v| v.as_i64()).unwrap_or(i64::MAX);
        if to_seq < from_seq {
            return Err(format!("to_seq {to_seq} is below from_seq {from_seq}"));
        }
        let Some(flow) = s.flow.as_mut() else {
            return Err("central is offline for this gateway; items are not being sent".into());
        };
        let count = self
            .reader
            .read(move |r| r.uplink_range(&dest, from_seq, to_seq, 0, usize::MAX / 2))
            .await
            .map_err(|e| e.to_string())?
            .len();
        tracing::info!(from = %from, request = %request, from_seq, to_seq, items = count, "remote command: resend");
        flow.resend(from_seq, to_seq);
        Ok(serde_json::json!({"items": count}))
    }

    /// Hands a config from central to the daemon; its answer comes back as a status change.
    async fn on_config(&mut self, s: &mut Session, payload: &[u8]) {
        match serde_json::from_slice::<crate::remote::ConfigSet>(payload) {
            Ok(set) => {
                tracing::info!(version = %set.version, from = set.from.as_deref().unwrap_or("unknown"),
                    "config received from central");
                // Never wait here: the daemon may be restarting this very task.
                if self.ctx.remote.tx.try_send(set).is_err() {
                    tracing::warn!(
                        "config from central ignored: the daemon is busy or shutting down; publish it again"
                    );
                }
            }
            Err(e) => {
                let status = serde_json::json!({
                    "v": contract::VERSION, "version": null, "hash": null, "status": "rejected",
                    "at": contract::now_rfc3339(),
                    "errors": [format!("not a config message ({{\"version\", \"hash\", \"toml\"}}): {e}")],
                });
                s.out.push(
                    self.topics.config_status(),
                    QoS::AtLeastOnce,
                    true,
                    serde_json::to_vec(&status).unwrap_or_default(),
                );
            }
        }
    }

    /// Publishes the latest config status (retained); a config that was just applied also
    /// changes what the birth message says.
    async fn publish_config_status(&mut self, s: &mut Session, rebirth: bool) {
        let status = self.ctx.remote.status.borrow().clone();
        let Some(status) = status else { return };
        let applied = status.status == crate::remote::ConfigState::Applied;
        s.out.push(
            self.topics.config_status(),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&status).unwrap_or_default(),
        );
        if rebirth && applied {
            self.birth(s).await;
        }
    }
}

struct Session {
    session: i64,
    out: Outbox,
    flow: Option<Flow>,
    connected: bool,
    central_online: Option<bool>,
    next_telemetry: tokio::time::Instant,
    /// When the broker last sent anything.
    heard: tokio::time::Instant,
    /// The journal's rescan count last seen (see `Head`).
    rescan: u64,
}

/// Words for a link failure, for logs, `status` and telemetry.
fn describe(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::{ConnectionError as C, StateError};
    match e {
        C::MqttState(StateError::AwaitPingResp) => "keep-alive timeout: the broker stopped answering".into(),
        C::MqttState(StateError::Io(e)) | C::Io(e) => format!("connection lost: {e}"),
        C::NetworkTimeout => "connect timeout".into(),
        C::ConnectionRefused(code) => format!(
            "the broker refused the connection ({code:?}); check uplink.client_id, username/password or the \
             client certificate, and the broker's ACL"
        ),
        C::Tls(e) => format!("TLS failed: {e}; check uplink.ca, cert and key against the broker's certificate"),
        other => other.to_string(),
    }
}
