//! Fax modem source: a Class 2 / 2.0 fax modem on a serial port (a USB modem, or one on a
//! UART) answering calls. The dialogue is [`crate::fax::modem::Modem`] (sans IO); this adapter
//! owns the port, feeds the machine the bytes and the time they came, does what it asks
//! (writes, flow control, resets by dropping DTR and reopening), collects each call's pages and
//! journals the fax as one item: a multi-page TIFF-F built from the page data as the modem
//! delivered it ([`crate::fax::document`]).
//!
//! A call that ends early keeps the pages that were complete: the item is marked incomplete
//! with the hangup reason and an escalation (`source_problem`) is raised. A modem that is
//! missing at start, unplugged, or stops answering is reopened with backoff
//! ([`crate::reopen`]); its state shows in `status`.
//!
//! Unlike MLLP or ASTM, the sender is not waiting on our commit: a Class 2 modem confirms each
//! page to the sender itself (MCF). So the fax is journaled when the call ends; if the journal
//! refuses it (full), it is kept in memory and tried again every few seconds, escalated, until
//! it is stored (or the daemon stops: then it is lost, which the log says).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPort, SerialStream};
use tokio_util::sync::CancellationToken;

use super::Serving;
use crate::config::FaxModemSource;
use crate::envelope::Kind;
use crate::fax::codes::ModemClass;
use crate::fax::document::{FaxDocument, Page};
use crate::fax::g3;
use crate::fax::modem::{self, Action, Modem, ModemState};
use crate::hl7::Outcome;
use crate::intake::{Arrival, Intake};
use crate::reopen::{SessionEnd, keep_open};
use crate::serial;
use crate::stats::{SourceLink, SourceStats, get, inc};

/// How long a refused fax waits before it is offered to the journal again.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// What `status` shows of a fax modem beyond the common counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    pub port: String,
    pub line: String,
    /// What the modem does now: `closed`, `initialising`, `idle`, `ringing`, `in call`,
    /// `receiving page N`, `resetting`.
    pub modem: String,
    /// `2` or `2.0`, once set up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub calls: u64,
    pub pages: u64,
    /// Faxes kept incomplete (the call ended early).
    pub incomplete: u64,
    /// Unix ms of the last fax stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fax_at: Option<i64>,
}

pub fn detail(cfg: &FaxModemSource, stats: &SourceStats, _link: &SourceLink) -> Detail {
    let (modem, class) = stats.activity.lock().map(|s| s.clone()).unwrap_or_default();
    let last = get(&stats.last_item_at);
    Detail {
        port: cfg.serial.port.display().to_string(),
        line: cfg.serial.line(),
        modem: if modem.is_empty() { "closed".into() } else { modem },
        class,
        calls: get(&stats.calls),
        pages: get(&stats.pages),
        incomplete: get(&stats.incomplete),
        last_fax_at: (last > 0).then_some(last as i64),
    }
}

/// The first attempt at the port (a missing modem does not stop the daemon starting).
pub struct Opened(pub Option<Result<SerialStream, String>>);

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(Ok(_)) => f.write_str("FaxModem(open)"),
            Some(Err(e)) => write!(f, "FaxModem(not open: {e})"),
            None => f.write_str("FaxModem(closed)"),
        }
    }
}

impl Opened {
    pub fn state(&self, cfg: &FaxModemSource) -> Result<String, String> {
        match &self.0 {
            Some(Ok(_)) => Ok(where_at(cfg)),
            Some(Err(e)) => Err(e.clone()),
            None => Err("not open yet".into()),
        }
    }
}

fn where_at(cfg: &FaxModemSource) -> String {
    format!("{} {}", cfg.serial.port.display(), cfg.serial.line())
}

pub fn open(cfg: &FaxModemSource) -> Opened {
    Opened(Some(serial::open(&cfg.serial).map_err(|e| e.to_string())))
}

#[derive(Clone)]
struct Ctx {
    name: Arc<str>,
    cfg: Arc<FaxModemSource>,
    intake: Arc<Intake>,
    stats: Arc<SourceStats>,
}

/// Serves the modem until `serving.stop` fires; hands back the port if it is open then.
pub async fn serve(name: String, cfg: FaxModemSource, opened: Opened, serving: Serving) -> Opened {
    let ctx = Ctx {
        name: Arc::from(name.as_str()),
        cfg: Arc::new(cfg),
        intake: serving.intake.clone(),
        stats: serving.stats.clone(),
    };
    let at = where_at(&ctx.cfg);
    let settings = ctx.cfg.serial.clone();
    let first = opened
        .0
        .map(|o| o.and_then(|mut port| serial::apply(&mut port, &settings).map(|()| port).map_err(|e| e.to_string())));
    let opener = || {
        let settings = settings.clone();
        async move { serial::open(&settings).map_err(|e| e.to_string()) }
    };
    let stop = serving.stop.clone();
    let port = keep_open(&name, &at, first, opener, &ctx.stats, &stop, |port| {
        session(ctx.clone(), port, stop.clone(), serving.abort.clone())
    })
    .await;
    set_state(&ctx, "closed", None);
    Opened(port.map(Ok))
}

/// The call being received.
#[derive(Default)]
struct CallInProgress {
    started: Option<Instant>,
    received_at: i64,
    tsi: Option<String>,
    caller_id: Option<String>,
    session: Option<modem::Session>,
    page: Vec<u8>,
    pages: Vec<Page>,
    bytes: u64,
    /// Pages dropped because the fax passed `max_fax_size`.
    over_size: bool,
}

async fn session(
    ctx: Ctx,
    mut port: SerialStream,
    stop: CancellationToken,
    abort: CancellationToken,
) -> SessionEnd<SerialStream> {
    // What the modem said before this session (late replies to a session given up, what it
    // says as DTR drops) would be read as the replies to the set-up's first commands and put
    // it a line out of step: discarded, as mgetty does when it opens the port.
    if let Err(e) = port.clear(tokio_serial::ClearBuffer::Input) {
        tracing::debug!(source = %ctx.name, error = %e, "cannot discard the port's input");
    }
    let mut modem = Modem::new(ctx.cfg.modem.clone());
    modem.start(Instant::now());
    let mut buf = vec![0u8; 4096];
    let mut call = CallInProgress::default();
    // Faxes the journal refused, offered again every STORE_RETRY.
    let mut unstored: Vec<Arrival> = Vec::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    // Set when the session ends for a reset the modem asked for (not a port lost).
    let mut resetting = false;
    let end = loop {
        let mut reset = None;
        let delivers = delivered_order(&ctx.cfg, &modem);
        while let Some(action) = modem.poll_action() {
            if let Err(why) = act(&ctx, &mut port, &mut call, &mut unstored, delivers, action).await {
                reset = Some(why);
                break;
            }
        }
        if let Some(why) = reset {
            // Dropping DTR hangs up whatever the modem is doing; the port is reopened.
            let _ = port.write_data_terminal_ready(false);
            resetting = true;
            break Err(why);
        }
        report(&ctx, &modem);
        if !unstored.is_empty() && retry_at.is_none() {
            retry_at = Some(tokio::time::Instant::now() + STORE_RETRY);
        }
        if stop.is_cancelled()
            && !matches!(modem.status().state, ModemState::InCall { .. } | ModemState::ReceivingPage { .. })
        {
            break Ok(());
        }
        if let Some(deadline) = modem.next_deadline()
            && armed.is_none_or(|at| deadline < at)
        {
            timer.as_mut().reset(tokio::time::Instant::from_std(deadline));
            armed = Some(deadline);
        }
        tokio::select! {
            read = port.read(&mut buf) => match read {
                Ok(0) => break Err("the port hung up: was the modem unplugged or switched off?".to_string()),
                Ok(n) => modem.receive(&buf[..n], Instant::now()),
                Err(e) if e.raw_os_error() == Some(libc::EIO) || e.raw_os_error() == Some(libc::ENODEV) => {
                    break Err(format!("the port hung up: was the modem unplugged? ({e})"))
                }
                Err(e) => break Err(format!("read failed: {e}")),
            },
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                modem.tick(Instant::now());
            }
            _ = async { if let Some(at) = retry_at { tokio::time::sleep_until(at).await } }, if retry_at.is_some() => {
                retry_at = None;
                store_again(&ctx, &mut unstored).await;
            }
            // Told to stop: finish the call in progress (the loop checks), else stop now.
            _ = stop.cancelled(), if !stop.is_cancelled() => {}
            _ = abort.cancelled() => break Err("stopped".to_string()),
        }
    };
    if !unstored.is_empty() {
        tracing::error!(source = %ctx.name, faxes = unstored.len(), "faxes the journal refused are lost: the source stopped before they could be stored");
    }
    match end {
        Ok(()) => SessionEnd::Stopped(port),
        Err(why) => {
            modem.disconnected(Instant::now());
            let delivers = delivered_order(&ctx.cfg, &modem);
            while let Some(action) = modem.poll_action() {
                let _ = act(&ctx, &mut port, &mut call, &mut unstored, delivers, action).await;
            }
            // Until the port is open again, `status` shows why the modem is not there, not the
            // last state it reported (an idle modem that stopped answering, a page being
            // received when the modem was unplugged).
            set_state(&ctx, if resetting { "resetting" } else { "closed" }, None);
            SessionEnd::Lost(why)
        }
    }
}

/// The bit order of page data when the modem reported no session parameters (`+FCS`, which a
/// Class 2.0 modem leaves out when `AT+FNR` was refused): the source's `bit_order`, else its
/// class's.
fn delivered_order(cfg: &FaxModemSource, modem: &Modem) -> modem::BitOrder {
    cfg.modem.bit_order.unwrap_or_else(|| {
        modem.status().class.map_or(modem::BitOrder::LsbFirst, |class| modem::Dialect::of(class).delivers)
    })
}

/// Does one thing the modem asks. `Err` asks the session to end (a reset). `delivers`: the
/// page data's bit order when no session parameters were reported.
async fn act(
    ctx: &Ctx,
    port: &mut SerialStream,
    call: &mut CallInProgress,
    unstored: &mut Vec<Arrival>,
    delivers: modem::BitOrder,
    action: Action,
) -> Result<(), String> {
    let name = &*ctx.name;
    match action {
        Action::Write(bytes) => {
            port.write_all(&bytes).await.map_err(|e| format!("write failed: {e}"))?;
            port.flush().await.map_err(|e| format!("write failed: {e}"))?;
        }
        Action::SetFlowControl(fc) => {
            let flow = match fc {
                modem::FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
                modem::FlowControl::Software => tokio_serial::FlowControl::Software,
                modem::FlowControl::Off => tokio_serial::FlowControl::None,
            };
            if let Err(e) = port.set_flow_control(flow) {
                tracing::debug!(source = name, error = %e, "cannot set the port's flow control");
            }
        }
        Action::Reset { why } => {
            tracing::warn!(source = name, reason = %why, "resetting the modem (DTR dropped, port reopened)");
            return Err(why.to_string());
        }
        Action::CallStarted { at } => {
            *call = CallInProgress { started: Some(at), received_at: crate::envelope::now_ms(), ..Default::default() };
            inc(&ctx.stats.calls);
            tracing::info!(source = name, "incoming fax call answered");
        }
        Action::Remote { tsi, caller_id } => {
            call.tsi = tsi.filter(|t| !t.trim().is_empty()).map(|t| t.trim().to_string());
            call.caller_id = caller_id.number.clone().or(caller_id.name.clone());
        }
        Action::Session(s) => call.session = Some(s),
        Action::PageData(bytes) => {
            call.bytes += bytes.len() as u64;
            if call.bytes > ctx.cfg.max_fax_size {
                call.over_size = true;
            } else {
                call.page.extend_from_slice(&bytes);
            }
        }
        Action::PageEnd(end) => {
            let data = std::mem::take(&mut call.page);
            if call.over_size {
                tracing::warn!(
                    source = name,
                    page = end.page,
                    "fax over max_fax_size: this page and the rest are not kept"
                );
            } else {
                let s = call.session;
                let order = match s.map_or(delivers, |s| s.bit_order) {
                    modem::BitOrder::LsbFirst => g3::BitOrder::LsbFirst,
                    modem::BitOrder::MsbFirst => g3::BitOrder::MsbFirst,
                };
                let width = s.and_then(|s| s.width_px).map_or(1728, u32::from);
                let resolution = match s.map(|s| s.resolution) {
                    Some(modem::Resolution::Fine) => g3::Resolution::Fine,
                    _ => g3::Resolution::Normal,
                };
                let page = Page::new(data, order, width, resolution);
                tracing::debug!(source = name, page = end.page, lines = page.info.lines, bad_lines = page.info.bad_lines, status = ?end.status, "page received");
                call.pages.push(page);
                inc(&ctx.stats.pages);
            }
        }
        Action::PageAborted { page, bytes } => {
            call.page.clear();
            tracing::info!(source = name, page, bytes, "a page cut off mid-way is not kept");
        }
        Action::CallEnded { pages, hangup, complete } => {
            let call = std::mem::take(call);
            finish_call(ctx, call, pages, hangup, complete, unstored).await;
        }
        Action::Health(ok) => {
            if !ok {
                tracing::warn!(source = name, "the modem did not answer its health check");
            }
        }
        Action::Event(e) => tracing::debug!(source = name, event = ?e, "modem"),
    }
    Ok(())
}

/// Journals a finished call's fax (its complete pages), escalating one that ended early.
async fn finish_call(
    ctx: &Ctx,
    call: CallInProgress,
    pages: u32,
    hangup: modem::Hangup,
    complete: bool,
    unstored: &mut Vec<Arrival>,
) {
    let name = &*ctx.name;
    let complete = complete && !call.over_size;
    if call.pages.is_empty() {
        tracing::info!(source = name, reason = %hangup, "a fax call ended with no page received");
        if !hangup.is_normal() {
            ctx.intake.source_problem(name, format!("{name}: a fax call ended with no page received ({hangup})"));
        }
        return;
    }
    let doc = FaxDocument {
        tsi: call.tsi,
        caller_id: call.caller_id,
        received_at: Some(call.received_at),
        modem_make: None,
        modem_model: None,
        duration_secs: call.started.map(|s| s.elapsed().as_secs()),
        hangup: Some(hangup.to_string()),
        complete,
        pages: call.pages,
    };
    let kept = doc.pages.len();
    let mut arrival = Arrival::new(name, Kind::Fax, None, doc.to_tiff());
    arrival.fields = doc.summary_fields();
    if !complete {
        inc(&ctx.stats.incomplete);
    }
    match store(ctx, arrival).await {
        Ok(id) => {
            tracing::info!(source = name, item_id = %id, pages = kept, complete, "fax received");
            if !complete {
                ctx.intake.source_problem(
                    name,
                    format!(
                        "{name}: fax {id} is incomplete: {kept} of the call's {pages} page(s) kept ({hangup}); \
                         ask the sender to send it again"
                    ),
                );
            }
        }
        Err(arrival) => unstored.push(arrival),
    }
}

/// Offers a fax to the journal; gives it back if refused.
async fn store(ctx: &Ctx, arrival: Arrival) -> Result<String, Arrival> {
    let keep = arrival.clone();
    let receipt = ctx.intake.accept(arrival).await;
    match (receipt.outcome, receipt.id) {
        (Outcome::CannotStore, _) | (_, None) => {
            let why = receipt.error.unwrap_or_default();
            tracing::warn!(source = %ctx.name, error = %why, "a received fax cannot be stored now; it is kept in memory and tried again");
            Err(keep)
        }
        (_, Some(id)) => {
            ctx.stats.last_item_at.store(crate::envelope::now_ms().max(0) as u64, Ordering::Relaxed);
            Ok(id)
        }
    }
}

async fn store_again(ctx: &Ctx, unstored: &mut Vec<Arrival>) {
    let waiting = std::mem::take(unstored);
    for arrival in waiting {
        match store(ctx, arrival).await {
            Ok(id) => tracing::info!(source = %ctx.name, item_id = %id, "a fax the journal refused is stored now"),
            Err(back) => unstored.push(back),
        }
    }
}

/// Keeps `status` current with the modem's state.
fn report(ctx: &Ctx, modem: &Modem) {
    let s = modem.status();
    let state = match s.state {
        ModemState::Closed => "closed".to_string(),
        ModemState::Initialising => "initialising".to_string(),
        ModemState::Idle => "idle".to_string(),
        ModemState::Ringing { rings } => format!("ringing ({rings})"),
        ModemState::InCall { .. } => "in call".to_string(),
        ModemState::ReceivingPage { page } => format!("receiving page {page}"),
        ModemState::Resetting => "resetting".to_string(),
    };
    set_state(ctx, &state, s.class.map(class_number));
}

/// `2` or `2.0`, as [`Detail::class`] promises (the class's `Display` says "Class 2.0").
fn class_number(class: ModemClass) -> String {
    match class {
        ModemClass::Class2 => "2".into(),
        ModemClass::Class20 => "2.0".into(),
    }
}

fn set_state(ctx: &Ctx, state: &str, class: Option<String>) {
    if let Ok(mut s) = ctx.stats.activity.lock() {
        if s.0 != state {
            s.0 = state.to_string();
        }
        if class.is_some() {
            s.1 = class;
        }
    }
}
