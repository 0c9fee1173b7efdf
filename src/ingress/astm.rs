//! ASTM lab links: an instrument's LIS01-A2 (E1381) link on a serial port, or over TCP either
//! way, carrying LIS02-A2 (E1394) records. The protocol is [`crate::astm::Link`] (sans IO); this
//! adapter owns the port or socket, feeds the link the bytes and the time they arrived, writes
//! what the link asks, journals each message it hands over (through [`Intake`]) and lets the
//! final frame's ACK go only once that message is durable. It also talks back on the same
//! half-duplex link: an instrument's query (a Q record) is answered in a session of our own.
//!
//! A serial port missing at start, unplugged or failing, and an instrument we connect to that
//! is down, are opened again with backoff ([`crate::reopen`]); the link state shows in
//! `status`. TCP reads are a byte stream: the link is fed whatever arrives, whole frames or not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

mod orders;

use super::{OpenError, Serving};
use crate::astm::{Action, DiscardReason, Event, Link, Phase};
use crate::config::{AstmSource, AstmTransport};
use crate::envelope::Kind;
use crate::hl7::Outcome;
use crate::intake::{Arrival, Intake};
use crate::reopen::{SessionEnd, keep_open};
use crate::serial;
use crate::stats::{SourceLink, SourceStats, get, inc};

/// What `status` shows of a lab link beyond the common counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// `serial`, `tcp_listen` or `tcp_connect`.
    pub transport: String,
    /// The port or address configured.
    pub address: String,
    /// Where the link is open, while it is up: the address bound (differs from `address` for
    /// port 0), the port with its line settings, or the instrument's address connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The serial line settings (`9600 8N1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Instruments connected (TCP) or the port open (serial): 0 or 1.
    pub connections: u64,
    pub rejected_frames: u64,
    pub discarded_messages: u64,
    /// Unix ms of the last message taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_at: Option<i64>,
}

pub fn detail(cfg: &AstmSource, stats: &SourceStats, link: &SourceLink) -> Detail {
    let (transport, address, line) = match &cfg.transport {
        AstmTransport::Serial(s) => ("serial", s.port.display().to_string(), Some(s.line())),
        AstmTransport::TcpListen(a) => ("tcp_listen", a.to_string(), None),
        AstmTransport::TcpConnect(a) => ("tcp_connect", a.clone(), None),
    };
    let last = get(&stats.last_item_at);
    Detail {
        transport: transport.into(),
        address,
        at: link.at.clone(),
        line,
        profile: cfg.profile.as_ref().map(|p| p.id.clone()),
        connections: get(&stats.connections),
        rejected_frames: get(&stats.rejected_frames),
        discarded_messages: get(&stats.discarded_messages),
        last_message_at: (last > 0).then_some(last as i64),
    }
}

/// A lab link's transport, opened (or tried) before the daemon says it is ready.
pub enum Opened {
    /// The first attempt at the port: a missing port does not stop the daemon starting; the
    /// source is down, saying why, and the port is tried again with backoff.
    Serial(Option<Result<SerialStream, String>>),
    Listen(TcpListener),
    /// Connected when serving starts, and again whenever the connection is lost.
    Connect,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opened::Serial(Some(Ok(_))) => f.write_str("Serial(open)"),
            Opened::Serial(Some(Err(e))) => write!(f, "Serial(not open: {e})"),
            Opened::Serial(None) => f.write_str("Serial(closed)"),
            Opened::Listen(l) => write!(f, "Listen({:?})", l.local_addr().ok()),
            Opened::Connect => f.write_str("Connect"),
        }
    }
}

impl Opened {
    /// Up and where, or down and why, as the source starts.
    pub fn state(&self, cfg: &AstmSource) -> Result<String, String> {
        match (self, &cfg.transport) {
            (Opened::Serial(Some(Ok(_))), AstmTransport::Serial(s)) => Ok(where_serial(s)),
            (Opened::Serial(Some(Err(e))), _) => Err(e.clone()),
            (Opened::Serial(None), _) => Err("not open yet".into()),
            (Opened::Listen(l), _) => Ok(l.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            (Opened::Connect, AstmTransport::TcpConnect(a)) => Err(format!("connecting to {a}")),
            _ => Err("not open yet".into()),
        }
    }
}

fn where_serial(s: &serial::Settings) -> String {
    format!("{} {}", s.port.display(), s.line())
}

/// Opens what the link needs: binds a listener (failing the start or the reload like MLLP
/// does), or tries the serial port once.
pub async fn open(name: &str, cfg: &AstmSource) -> Result<Opened, OpenError> {
    match &cfg.transport {
        AstmTransport::Serial(s) => Ok(Opened::Serial(Some(serial::open(s).map_err(|e| e.to_string())))),
        AstmTransport::TcpListen(addr) => super::bind_tcp(name, *addr).await.map(Opened::Listen),
        AstmTransport::TcpConnect(_) => Ok(Opened::Connect),
    }
}

/// Everything a session needs.
#[derive(Clone)]
struct Ctx {
    name: Arc<str>,
    cfg: Arc<AstmSource>,
    intake: Arc<Intake>,
    stats: Arc<SourceStats>,
    /// The instrument's id from the H record it last sent (H.5.1): the receiver (H.10) of
    /// query answers and downloads.
    instrument: Arc<std::sync::Mutex<String>>,
}

/// Serves the link until `serving.stop` fires; hands back what it opened.
pub async fn serve(name: String, cfg: AstmSource, opened: Opened, serving: Serving) -> Opened {
    let ctx = Ctx {
        name: Arc::from(name.as_str()),
        cfg: Arc::new(cfg),
        intake: serving.intake.clone(),
        stats: serving.stats.clone(),
        instrument: Arc::default(),
    };
    let stop = serving.stop.clone();
    match (ctx.cfg.transport.clone(), opened) {
        (AstmTransport::Serial(settings), Opened::Serial(first)) => {
            let at = where_serial(&settings);
            // A port handed over by a reload is open with the settings it had: apply these.
            let first = first.map(|opened| {
                opened
                    .and_then(|mut port| serial::apply(&mut port, &settings).map(|()| port).map_err(|e| e.to_string()))
            });
            let opener = || {
                let settings = settings.clone();
                async move { serial::open(&settings).map_err(|e| e.to_string()) }
            };
            let port = keep_open(&name, &at, first, opener, &ctx.stats, &stop, |port| {
                session(ctx.clone(), port, stop.clone(), serving.abort.clone())
            })
            .await;
            Opened::Serial(port.map(Ok))
        }
        (AstmTransport::TcpConnect(addr), Opened::Connect) => {
            let opener = || {
                let addr = addr.clone();
                async move {
                    match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr)).await {
                        Ok(Ok(s)) => {
                            let _ = s.set_nodelay(true);
                            Ok(s)
                        }
                        Ok(Err(e)) => Err(format!(
                            "cannot connect to {addr}: {e}; is the instrument on and its host interface set to listen there?"
                        )),
                        Err(_) => Err(format!("no answer from {addr} in 10 s; check the address and the network")),
                    }
                }
            };
            keep_open(&name, &addr, None, opener, &ctx.stats, &stop, |stream| {
                session(ctx.clone(), stream, stop.clone(), serving.abort.clone())
            })
            .await;
            Opened::Connect
        }
        (AstmTransport::TcpListen(_), Opened::Listen(listener)) => {
            Opened::Listen(accept_loop(ctx, listener, serving).await)
        }
        (_, other) => other,
    }
}

/// Takes the instrument's connections on a listener, one at a time: a new connection replaces
/// the one before (an analyzer that reconnects after a network hiccup leaves a dead one behind),
/// after that one has finished the message it is on.
async fn accept_loop(ctx: Ctx, listener: TcpListener, serving: Serving) -> TcpListener {
    let stop = serving.stop.clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(source = %ctx.name, %addr, "listening for an ASTM instrument");
    }
    let mut current: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(source = %ctx.name, error = %e, "accept failed");
                if crate::backoff::sleep_or_cancel(Duration::from_millis(200), &stop).await {
                    break;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Some((old, task)) = current.take() {
            tracing::info!(source = %ctx.name, %peer, "a new connection replaces the instrument's previous one");
            old.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        tracing::info!(source = %ctx.name, %peer, "instrument connected");
        let this = stop.child_token();
        let (ctx2, this2, abort) = (ctx.clone(), this.clone(), serving.abort.clone());
        let task = serving.tracker.spawn(async move {
            if let SessionEnd::Lost(why) = session(ctx2.clone(), stream, this2, abort).await {
                tracing::info!(source = %ctx2.name, %peer, reason = %why, "instrument disconnected");
            }
        });
        current = Some((this, task));
    }
    if let Some((old, task)) = current.take() {
        old.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    listener
}

/// How long a session told to stop may take to finish the message it is on.
const FINISH_WITHIN: Duration = Duration::from_secs(4);

/// One session on an open link: runs the E1381 link until the link is lost or the source is
/// told to stop (then, once the link is idle, or after [`FINISH_WITHIN`], the stream is handed
/// back).
async fn session<S>(ctx: Ctx, mut stream: S, stop: CancellationToken, abort: CancellationToken) -> SessionEnd<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cfg = &ctx.cfg;
    let mut link = Link::new(cfg.timers, cfg.quirks).with_max_message_size(cfg.max_message_size);
    let mut buf = vec![0u8; 4096];
    let mut stopping: Option<Instant> = None;
    let mut downloads = orders::Downloads::new(&ctx);
    // One timer for the session, re-armed only when the link wants waking earlier than it is
    // set: most deadlines move later with every byte (the receive timer), and a timer that
    // fires early costs one harmless tick, where re-arming on every read of a serial line
    // (a few bytes at a time) costs a timer-wheel update per read.
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    inc(&ctx.stats.connections);
    let end = loop {
        if let Err(why) = act(&ctx, &mut link, &mut stream, &mut downloads).await {
            break Err(why);
        }
        if stopping.is_none() {
            downloads.send_due(&ctx, &mut link).await;
            if let Err(why) = act(&ctx, &mut link, &mut stream, &mut downloads).await {
                break Err(why);
            }
        }
        if let Some(since) = stopping
            && ((link.phase() == Phase::Idle && link.queued() == 0) || since.elapsed() >= FINISH_WITHIN)
        {
            break Ok(());
        }
        if let Some(deadline) = link.next_deadline()
            && armed.is_none_or(|at| deadline < at)
        {
            timer.as_mut().reset(tokio::time::Instant::from_std(deadline));
            armed = Some(deadline);
        }
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => break Err(lost(&ctx, "read", None)),
                Ok(n) => link.receive(&buf[..n], Instant::now()),
                Err(e) => break Err(lost(&ctx, "read", Some(e))),
            },
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                link.tick(Instant::now());
            }
            _ = downloads.woken(), if stopping.is_none() => {}
            _ = stop.cancelled(), if stopping.is_none() => stopping = Some(Instant::now()),
            // While stopping, look again every 100 ms whether the link has gone idle.
            _ = tokio::time::sleep(Duration::from_millis(100)), if stopping.is_some() => {}
            _ = abort.cancelled() => break Err("stopped".to_string()),
        }
    };
    ctx.stats.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    match end {
        Ok(()) => SessionEnd::Stopped(stream),
        Err(why) => {
            link.disconnected(Instant::now());
            // What the link says of the message it dropped (logged and counted).
            while let Some(action) = link.poll_action() {
                if let Action::Event(e) = action {
                    event(&ctx, e);
                }
            }
            SessionEnd::Lost(why)
        }
    }
}

/// Why the link was lost, in a tech's words. A serial port whose device hangs up (a USB adapter
/// unplugged, a pty's master closed) reads end-of-file, or fails reads and writes with EIO; a
/// TCP peer that closes its end reads end-of-file.
fn lost(ctx: &Ctx, what: &str, error: Option<std::io::Error>) -> String {
    let serial = matches!(ctx.cfg.transport, AstmTransport::Serial(_));
    let hung_up = "the port hung up: was the adapter unplugged or the device switched off?";
    match error {
        None if serial => hung_up.to_string(),
        None => "the instrument closed the connection".to_string(),
        Some(e) if serial && e.raw_os_error() == Some(libc::EIO) => format!("{hung_up} ({what}: {e})"),
        Some(e) => format!("{what} failed: {e}"),
    }
}

/// Does everything the link asks, in order: writes, journals messages (then lets their ACK
/// go), answers queries, logs events.
async fn act<S: AsyncWrite + Unpin>(
    ctx: &Ctx,
    link: &mut Link,
    stream: &mut S,
    downloads: &mut orders::Downloads,
) -> Result<(), String> {
    while let Some(action) = link.poll_action() {
        match action {
            Action::Write(bytes) => {
                stream.write_all(&bytes).await.map_err(|e| lost(ctx, "write", Some(e)))?;
                stream.flush().await.map_err(|e| lost(ctx, "write", Some(e)))?;
            }
            Action::Message { token, records, complete } => {
                let reply = orders::query_reply(ctx, &records).await;
                let derived = if complete { results_as_hl7(ctx, &records).await } else { Vec::new() };
                let mut arrival = Arrival::new(&ctx.name, Kind::Astm, None, records);
                if !complete {
                    arrival.fields.push(("incomplete", "true".into()));
                }
                let receipt = ctx.intake.accept_linked(arrival, derived).await;
                match receipt.outcome {
                    Outcome::CannotStore => {
                        tracing::warn!(source = %ctx.name, error = receipt.error.as_deref().unwrap_or(""), "message not stored: refused (NAK); the instrument will send it again");
                        link.refused(token, Instant::now());
                    }
                    _ => {
                        ctx.stats
                            .last_item_at
                            .store(crate::envelope::now_ms().max(0) as u64, std::sync::atomic::Ordering::Relaxed);
                        link.durable(token, Instant::now());
                        if let Some(reply) = reply
                            && let Err(e) = link.send(&reply, Instant::now())
                        {
                            tracing::warn!(source = %ctx.name, error = %e, "cannot frame the answer to the instrument's query");
                        }
                    }
                }
            }
            Action::Sent { id } => {
                tracing::debug!(source = %ctx.name, message = %id, "message delivered to the instrument");
                downloads.sent(ctx, id).await;
            }
            Action::SendFailed { id, why } => {
                downloads.failed(ctx, id).await;
                tracing::warn!(source = %ctx.name, message = %id, error = %why, "message to the instrument given up");
                ctx.intake.source_problem(
                    &ctx.name,
                    format!("{}: a message to the instrument was given up: {why}", ctx.name),
                );
            }
            Action::Event(e) => event(ctx, e),
        }
    }
    Ok(())
}

/// A message's patient results as HL7 v2.5.1 ORU^R01 items, one per specimen, when the source
/// says so (`hl7 = { ... }`, with a profile). A set that cannot be converted is logged (why,
/// never what); the message itself is journaled as always.
async fn results_as_hl7(ctx: &Ctx, records: &[u8]) -> Vec<Arrival> {
    if ctx.cfg.hl7.is_none() || ctx.cfg.profile.is_none() {
        return Vec::new();
    }
    let orders = orders::for_results(ctx, records).await;
    let mut out = Vec::new();
    for converted in convert_results(&ctx.cfg, records, &orders) {
        match converted {
            Converted::Hl7 { body, fields } => {
                let mut arrival = Arrival::new(&ctx.name, Kind::Hl7v2, None, body);
                arrival.fields = fields;
                out.push(arrival);
            }
            Converted::Qc { results } => {
                tracing::debug!(source = %ctx.name, results, "QC results kept as sent, not converted to HL7")
            }
            Converted::Failed(e) => {
                tracing::warn!(source = %ctx.name, reason = %e, "results not converted to HL7; the instrument's message is kept as sent")
            }
        }
    }
    out
}

/// What became of one specimen's results.
#[derive(Debug)]
pub enum Converted {
    /// An ORU^R01, and the summary fields to add (test codes the map lacks).
    Hl7 {
        body: Vec<u8>,
        fields: Vec<(&'static str, String)>,
    },
    /// Quality control: never a patient result.
    Qc {
        results: usize,
    },
    Failed(crate::instrument::OruError),
}

/// The source's conversion of a message's results (`hl7 = { ... }` and a profile), one entry
/// per specimen with results; nothing when the source does not convert or the records do not
/// read. `orders` are the cached orders of the message's specimens (by specimen id): their
/// numbers go to ORC/OBR, and their patient to PID when the instrument sent none. Shared by the
/// adapter and `rules test`.
pub fn convert_results(
    cfg: &AstmSource,
    records: &[u8],
    orders: &std::collections::HashMap<String, crate::orders::Order>,
) -> Vec<Converted> {
    let (Some(hl7), Some(profile)) = (cfg.hl7.as_ref(), cfg.profile.as_deref()) else {
        return Vec::new();
    };
    let Ok(message) = crate::astm::Message::parse(records) else { return Vec::new() };
    let mut out = Vec::new();
    for mut set in crate::astm::result_sets(&message, profile) {
        if set.qc {
            out.push(Converted::Qc { results: set.results.len() });
            continue;
        }
        let context = crate::instrument::OruContext {
            sending_application: hl7.sending_application.clone(),
            sending_facility: hl7.sending_facility.clone(),
            receiving_application: hl7.receiving_application.clone(),
            receiving_facility: hl7.receiving_facility.clone(),
            control_id: unique_control_id(),
            message_time: crate::envelope::hl7_now(),
        };
        let order = set.specimen_id.as_ref().and_then(|id| orders.get(id));
        if let Some(order) = order
            && set.patient.is_empty()
        {
            set.patient = order.result_patient();
        }
        let order_ref = order.map(crate::orders::Order::order_ref);
        match crate::instrument::to_oru_r01(&set, profile, order_ref.as_ref(), &context) {
            Ok(oru) => {
                let mut fields = Vec::new();
                let report = crate::instrument::mapping_report(&set, profile);
                if !report.unmapped.is_empty() {
                    fields.push(("unmapped_tests", report.unmapped.join(",")));
                }
                if !report.unexpected_units.is_empty() {
                    fields.push(("unexpected_units", report.unexpected_units.join(",")));
                }
                out.push(Converted::Hl7 { body: oru.into_bytes(), fields });
            }
            Err(e) => out.push(Converted::Failed(e)),
        }
    }
    out
}

/// An MSH-10 no other message from this gateway has: milliseconds since the epoch times 100,
/// then counting up (strictly increasing across sources and restarts while the clock does).
fn unique_control_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let floor = (crate::envelope::now_ms().max(0) as u64).saturating_mul(100);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = last.saturating_add(1).max(floor);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return format!("OP{next}"),
            Err(actual) => last = actual,
        }
    }
}

/// Logs and counts what happened on the link: routine things at debug, what loses or delays
/// data at warn. Never content.
fn event(ctx: &Ctx, e: Event) {
    let name = &*ctx.name;
    match e {
        Event::FrameRejected { .. } => {
            inc(&ctx.stats.rejected_frames);
            tracing::debug!(source = name, event = %e, "frame refused");
        }
        Event::Discarded { why, .. } => {
            inc(&ctx.stats.discarded_messages);
            match why {
                DiscardReason::Disconnected | DiscardReason::Restarted => {
                    tracing::info!(source = name, event = %e, "unfinished message dropped; the instrument sends it again")
                }
                _ => tracing::warn!(source = name, event = %e, "unfinished message dropped"),
            }
        }
        Event::RecordWithoutCr | Event::AckAbandoned { .. } => tracing::warn!(source = name, event = %e, "link"),
        Event::Stray { bytes } => {
            ctx.stats.discarded_bytes.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(source = name, event = %e, "link");
        }
        _ => tracing::debug!(source = name, event = %e, "link"),
    }
}
