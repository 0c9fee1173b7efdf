//! A lab link's side of the order cache: answering an instrument's query (Q records) with the
//! orders cached for its specimens, and pushing orders to an instrument that takes unsolicited
//! downloads (`download_orders = true`).
//!
//! Both read the journal off the async threads (`Journal::read`), occasionally: a query when
//! one comes, downloads when intake says orders were cached (a `watch`), when the link comes
//! up, and when a failed download is due again; never in a loop. A download is sent when the
//! link is idle, one E1381 message per order, and recorded sent or failed as the link reports
//! it (`Action::Sent` / `SendFailed`); pending downloads are in the journal, so they survive a
//! disconnection and a restart (at least once: one sent just before a crash may go again).
//!
//! Logs name sources, specimen ids, test codes and counts: never the patient.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Ctx;
use crate::astm::{self, Link, Phase, SendId};
use crate::journal::{DownloadOutcome, PendingDownload};

/// How long a download the link gave up on waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Most downloads queued on the link at once (more are read once these are done).
const BATCH: usize = 8;

/// The instrument's own id (H.5.1) as it last sent it, the receiver of what we send it.
pub(super) fn receiver(ctx: &Ctx) -> String {
    ctx.instrument.lock().map(|id| id.clone()).unwrap_or_default()
}

fn header(ctx: &Ctx) -> astm::ReplyHeader {
    let now = crate::envelope::hl7_now();
    astm::ReplyHeader::new("outpost", receiver(ctx), now.get(..14).unwrap_or(&now))
}

/// The answer to a query message: H, a P and an O per specimen with active orders the
/// instrument does (its tests in its own codes), L `N`; `L|1|I` when none is known. `None` for
/// a message without queries, or whose queries all cancel an earlier one (Q.13 `A`: no answer
/// is expected). Also remembers the instrument's id from the H record of every message.
pub(super) async fn query_reply(ctx: &Ctx, records: &[u8]) -> Option<Vec<u8>> {
    let message = astm::Message::parse(records).ok()?;
    let instrument = message.header().value(5, 1);
    if !instrument.is_empty()
        && let Ok(mut id) = ctx.instrument.lock()
    {
        *id = instrument;
    }
    let queries = message.queries();
    if queries.is_empty() {
        return None;
    }
    if queries.iter().all(astm::Query::is_cancel) {
        tracing::debug!(source = %ctx.name, "the instrument cancelled its query: no answer");
        return None;
    }
    let mut ids: Vec<String> = Vec::new();
    // The tests each specimen is asked for: none or ALL means every test.
    let mut asked: HashMap<String, Vec<String>> = HashMap::new();
    for q in queries.iter().filter(|q| !q.is_cancel()) {
        for id in &q.specimen_ids {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
            if !q.tests.iter().any(|t| t.eq_ignore_ascii_case("ALL")) {
                asked.entry(id.clone()).or_default().extend(q.tests.iter().cloned());
            }
        }
    }
    let wanted = ids.clone();
    let found = match ctx.intake.journal().read(move |r| r.orders_for(&wanted)).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(source = %ctx.name, error = %e, "cannot read the order cache; the query is answered \"no information\"");
            Vec::new()
        }
    };
    let profile = ctx.cfg.profile.as_deref();
    let mut orders = Vec::new();
    for order in &found {
        let (mut o, unknown) = crate::orders::to_astm(order, profile, "N");
        for code in &unknown {
            tracing::info!(source = %ctx.name, item_id = %order.item_id, test = %code, "ordered test not in the instrument's test map: left out of the answer");
        }
        if let Some(tests) = asked.get(&order.specimen_id).filter(|t| !t.is_empty()) {
            o.tests.retain(|t| tests.contains(t));
        }
        if !o.tests.is_empty() {
            orders.push(o);
        }
    }
    tracing::debug!(source = %ctx.name, specimens = ids.len(), answered = orders.len(), "instrument query answered");
    match astm::build_order_reply(&header(ctx), &orders) {
        Ok(reply) => Some(reply),
        Err(e) => {
            tracing::warn!(source = %ctx.name, error = %e, "an order cannot be written as ASTM records; the query is answered \"no information\"");
            astm::build_order_reply(&header(ctx), &[]).ok()
        }
    }
}

/// One session's downloads: what is on the link now, and when to look for more.
pub(super) struct Downloads {
    /// Intake's "orders were cached"; `None` when the source takes no downloads.
    updates: Option<watch::Receiver<u64>>,
    in_flight: HashMap<SendId, (String, i64)>,
    /// Look for pending downloads once the link is idle.
    wanted: bool,
    /// When a failed download is due again.
    retry_at: Option<Instant>,
}

impl Downloads {
    /// A session's downloads: looked for at once (the link just came up).
    pub(super) fn new(ctx: &Ctx) -> Downloads {
        let updates = ctx.cfg.download_orders.then(|| ctx.intake.order_updates());
        Downloads { wanted: updates.is_some(), updates, in_flight: HashMap::new(), retry_at: None }
    }

    /// Resolves when there may be something to send: orders were cached, or a retry is due.
    pub(super) async fn woken(&mut self) {
        let retry_at = self.retry_at;
        let Some(updates) = self.updates.as_mut() else { return std::future::pending().await };
        let retry = async move {
            match retry_at {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        let cached = tokio::select! {
            changed = updates.changed() => changed.is_ok(),
            _ = retry => true,
        };
        if !cached {
            // Intake is gone (shutting down): nothing more will be cached.
            self.updates = None;
            return;
        }
        if self.retry_at.is_some_and(|at| at <= Instant::now()) {
            self.retry_at = None;
        }
        self.wanted = true;
    }

    /// Queues the pending downloads on the link when it is idle and nothing of ours is on it.
    pub(super) async fn send_due(&mut self, ctx: &Ctx, link: &mut Link) {
        if !self.wanted
            || self.updates.is_none()
            || !self.in_flight.is_empty()
            || link.phase() != Phase::Idle
            || link.queued() > 0
        {
            return;
        }
        self.wanted = false;
        let source = ctx.name.to_string();
        let now = crate::envelope::now_ms();
        let read = ctx
            .intake
            .journal()
            .read(move |r| Ok((r.pending_downloads(&source, now, BATCH)?, r.next_download_retry(&source, now)?)))
            .await;
        let (due, retry) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(source = %ctx.name, error = %e, "cannot read pending order downloads; trying again later");
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                return;
            }
        };
        if let Some(at) = retry {
            let wait = Duration::from_millis(at.saturating_sub(now).max(0) as u64);
            self.retry_at = Some(Instant::now() + wait);
        }
        if due.len() == BATCH {
            self.wanted = true;
        }
        for d in due {
            self.send(ctx, link, d).await;
        }
    }

    async fn send(&mut self, ctx: &Ctx, link: &mut Link, d: PendingDownload) {
        let PendingDownload { order, action, version } = d;
        let (o, unknown) = crate::orders::to_astm(&order, ctx.cfg.profile.as_deref(), &action);
        for code in &unknown {
            tracing::info!(source = %ctx.name, item_id = %order.item_id, test = %code, "ordered test not in the instrument's test map: not downloaded");
        }
        let skip = |why: &str| {
            tracing::info!(source = %ctx.name, item_id = %order.item_id, why, "order not downloaded");
        };
        if o.tests.is_empty() && action != "C" {
            skip("the instrument does none of its tests");
            self.record(ctx, &order.specimen_id, version, DownloadOutcome::Skipped).await;
            return;
        }
        let records = match astm::build_order_reply(&header(ctx), &[o]) {
            Ok(r) => r,
            Err(e) => {
                skip(&e.to_string());
                self.record(ctx, &order.specimen_id, version, DownloadOutcome::Skipped).await;
                return;
            }
        };
        match link.send(&records, Instant::now()) {
            Ok(id) => {
                tracing::debug!(source = %ctx.name, specimen = %order.specimen_id, action = %action, message = %id, "order download queued");
                self.in_flight.insert(id, (order.specimen_id, version));
            }
            Err(e) => {
                skip(&e.to_string());
                self.record(ctx, &order.specimen_id, version, DownloadOutcome::Skipped).await;
            }
        }
    }

    /// The link delivered message `id`: if it was a download, it is recorded sent.
    pub(super) async fn sent(&mut self, ctx: &Ctx, id: SendId) {
        if let Some((specimen, version)) = self.in_flight.remove(&id) {
            tracing::debug!(source = %ctx.name, specimen = %specimen, "order downloaded to the instrument");
            self.record(ctx, &specimen, version, DownloadOutcome::Sent).await;
            self.wanted |= self.in_flight.is_empty();
        }
    }

    /// The link gave message `id` up: if it was a download, it is tried again later.
    pub(super) async fn failed(&mut self, ctx: &Ctx, id: SendId) {
        if let Some((specimen, version)) = self.in_flight.remove(&id) {
            let retry_at = crate::envelope::now_ms() + RETRY_AFTER.as_millis() as i64;
            self.record(ctx, &specimen, version, DownloadOutcome::Failed { retry_at }).await;
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
        }
    }

    async fn record(&self, ctx: &Ctx, specimen: &str, version: i64, outcome: DownloadOutcome) {
        let journal = ctx.intake.journal();
        if let Err(e) = journal.order_downloaded(specimen.to_string(), ctx.name.to_string(), version, outcome).await {
            tracing::warn!(source = %ctx.name, specimen, error = %e, "cannot record an order download; it may be sent again");
        }
    }
}

/// The cached orders of the specimens a results message names, by specimen id, for its
/// ORU^R01s (their order numbers and patient). Empty when the journal cannot be read: the
/// results then go without them (the specimen id is the filler number), as without an order.
pub(super) async fn for_results(ctx: &Ctx, records: &[u8]) -> std::collections::HashMap<String, crate::orders::Order> {
    let Ok(message) = astm::Message::parse(records) else { return Default::default() };
    let wanted = message.summary().sample_ids;
    if wanted.is_empty() {
        return Default::default();
    }
    match ctx.intake.journal().read(move |r| r.orders_for(&wanted)).await {
        Ok(found) => found.into_iter().map(|o| (o.specimen_id.clone(), o)).collect(),
        Err(e) => {
            tracing::warn!(source = %ctx.name, error = %e, "cannot read the order cache; results go without their order numbers");
            Default::default()
        }
    }
}
