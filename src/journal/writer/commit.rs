//! The writer's commit pipeline: group commit with the sync taken off the writer's thread.
//!
//! A transaction stays open while requests arrive and is committed (`synchronous=NORMAL`:
//! its WAL frames written, not synced) only when the syncer thread is free; the syncer then
//! `fdatasync`s the WAL and only then answers the requests that wait on durability (an ACK to
//! a sender) and publishes the head that delivery workers read up to. While it syncs, the
//! writer applies the next requests into a new transaction, so the CPU work of a batch
//! overlaps the previous batch's sync: one sync per commit cycle, and a cycle as long as a
//! sync rather than a sync plus the work around it. On a fast disk (the last sync took under
//! a millisecond) there is nothing to overlap and the writer syncs inline instead: a hand-over
//! would cost more than the sync.
//!
//! Many senders at once: the commit after a slow sync waits a little for the senders that sync
//! answered (see `Syncer::gather_until`), or they and the rest would take turns, half of them
//! per sync.
//!
//! What may be read before it is synced: an item committed and not yet synced is visible to
//! readers, so delivery workers and the uplink read only up to the published (synced) head;
//! a power cut can then lose only what nobody was told about.
//!
//! Delivery progress is held back too (at most `PROGRESS_DEFER`): it joins the open
//! transaction once that time is up, or at once with a barrier, retry, reroute, purge,
//! checkpoint, or an item that would fill the journal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};

use super::{
    DeliveryUpdate, Head, JournalError, Op, Outcome, PROGRESS_DEFER, PROGRESS_DEFER_MAX, Reply, Request, Shared,
    Writer, apply_waiting, clone_error, needs_fresh_progress, needs_sync,
};
use crate::envelope::now_ms;

/// The WAL file, opened at the first sync. SQLite keeps the same file (truncating it at most)
/// for as long as any connection is open, and the writer's stays open longer than this handle.
pub(super) struct WalFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl WalFile {
    pub(super) fn new(db: &Path) -> WalFile {
        WalFile { path: PathBuf::from(format!("{}-wal", db.display())), file: None }
    }

    /// Another handle on the same file (for another thread).
    fn another(&self) -> WalFile {
        WalFile { path: self.path.clone(), file: None }
    }

    /// `fdatasync` of the WAL: every frame written before it is durable after it.
    fn sync(&mut self) -> std::io::Result<()> {
        let file = match self.file.take() {
            Some(file) => file,
            None => std::fs::File::open(&self.path)?,
        };
        let result = file.sync_data();
        self.file = Some(file);
        result
    }
}

/// A transaction being filled.
struct Txn {
    requests: Vec<Request>,
    outcomes: Vec<Outcome>,
    head: Head,
    /// Stored bytes, next seq and next uplink number when it began (restored on rollback).
    before: (u64, i64, i64),
}

/// A committed batch waiting for its sync: the answers and the head to publish after it.
struct Job {
    answers: Vec<(Request, Outcome)>,
    head: Head,
}

/// The syncer thread's handle.
struct Syncer {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    busy: Arc<AtomicBool>,
    ready: Arc<Notify>,
    /// The last sync: how long it took (µs) and how many requests it answered.
    last: Arc<(AtomicU64, AtomicU64)>,
    /// Where the synced head is published (by whichever thread synced it).
    publish: Arc<watch::Sender<Head>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A sync that answered at least this many requests makes the next commit gather.
const GATHER_FROM: u64 = 4;
/// Only syncs slower than this (a card's or eMMC's) make the next commit gather.
const GATHER_ABOVE: Duration = Duration::from_millis(1);
/// The longest a commit waits for the rest of the senders.
const GATHER_MAX: Duration = Duration::from_micros(1500);
/// A commit stops waiting when no request came for this long: the rest are not on their way.
const GATHER_GAP: Duration = Duration::from_micros(250);

impl Syncer {
    fn start(wal: WalFile, publish: Arc<watch::Sender<Head>>, shared: Arc<Shared>) -> std::io::Result<Syncer> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let busy = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(Notify::new());
        let last = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let (b, r, l, p) = (busy.clone(), ready.clone(), last.clone(), publish.clone());
        let thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || sync_loop(rx, wal, p, shared, b, r, l))?;
        Ok(Syncer { jobs: Some(jobs), busy, ready, last, publish, thread: Some(thread) })
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Many senders at once: those the last sync answered send their next item a moment after
    /// it; committing before they do would split the senders into two halves taking turns,
    /// each paying a sync. So when the last sync was slow and answered several requests, and
    /// fewer than that many wait now, the commit waits for them a little after the sync thread
    /// became free: while they keep coming (a gap of [`GATHER_GAP`] ends it), at most half that
    /// sync and [`GATHER_MAX`]. A lone sender never waits, nor does anything on a fast disk.
    fn gather_until(&self, idle_since: Instant, last_arrival: Instant, waiting: u64) -> Option<Instant> {
        let took = Duration::from_micros(self.last.0.load(Ordering::Relaxed));
        let members = self.last.1.load(Ordering::Relaxed);
        if took < GATHER_ABOVE || members < GATHER_FROM || waiting >= members {
            return None;
        }
        let until = (idle_since + (took / 2).min(GATHER_MAX)).min(idle_since.max(last_arrival) + GATHER_GAP);
        (Instant::now() < until).then_some(until)
    }

    fn send(&self, job: Job) {
        self.busy.store(true, Ordering::Release);
        if let Some(jobs) = &self.jobs
            && let Err(std::sync::mpsc::SendError(job)) = jobs.send(job)
        {
            // The syncer is gone (it cannot be while the writer runs): never answer as durable.
            self.busy.store(false, Ordering::Release);
            let e = JournalError::Closed;
            for (req, _) in job.answers {
                refuse(req, &e, None);
            }
        }
    }

    /// Waits until the last batch handed over is synced and answered.
    fn wait_idle(&self, clock: &tokio::runtime::Runtime) {
        while self.busy() {
            clock.block_on(async {
                tokio::select! {
                    _ = self.ready.notified() => {}
                    // Never trust a wake-up alone: look at the flag again now and then.
                    _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                }
            });
        }
    }

    fn stop(mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sync_loop(
    jobs: std::sync::mpsc::Receiver<Job>,
    mut wal: WalFile,
    publish: Arc<watch::Sender<Head>>,
    shared: Arc<Shared>,
    busy: Arc<AtomicBool>,
    ready: Arc<Notify>,
    last: Arc<(AtomicU64, AtomicU64)>,
) {
    while let Ok(job) = jobs.recv() {
        sync_and_answer(&mut wal, job, &publish, &shared, &last);
        busy.store(false, Ordering::Release);
        ready.notify_one();
    }
}

/// Syncs the WAL, then answers a committed batch and publishes its head (or, if the sync
/// failed, tells every requester so). Remembers what the sync cost.
fn sync_and_answer(
    wal: &mut WalFile,
    job: Job,
    publish: &watch::Sender<Head>,
    shared: &Shared,
    last: &(AtomicU64, AtomicU64),
) {
    let started = Instant::now();
    let synced = wal.sync();
    last.0.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    last.1.store(job.answers.iter().filter(|(r, _)| needs_sync(&r.op)).count() as u64, Ordering::Relaxed);
    match synced {
        Ok(()) => {
            shared.synced_commits.fetch_add(1, Ordering::Relaxed);
            if job.head != *publish.borrow() {
                publish.send_replace(job.head);
            }
            for (req, outcome) in job.answers {
                answer(req, outcome);
            }
        }
        Err(e) => {
            let e = sync_error(&e);
            tracing::error!(error = %e, items = job.answers.len(), "cannot sync the journal; the senders are told it failed");
            for (req, _) in job.answers {
                refuse(req, &e, Some(shared));
            }
        }
    }
}

fn sync_error(e: &std::io::Error) -> JournalError {
    if e.raw_os_error() == Some(nix::libc::ENOSPC) {
        return JournalError::NoSpace;
    }
    JournalError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
        Some(format!("cannot sync the journal's WAL: {e}")),
    ))
}

/// What woke the writer.
enum Event {
    Request(Option<Request>),
    Ready,
    Due,
}

impl Writer {
    /// Runs the writer until every handle is gone (see the module's doc).
    pub(in crate::journal) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let clock = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(clock) => clock,
            Err(e) => {
                tracing::error!(error = %e, "the journal's writer cannot start its clock; nothing can be stored");
                return;
            }
        };
        let Some(publish) = self.publish.take() else { return };
        let publish = Arc::new(publish);
        // (The syncer keeps a handle; `commit` and `alone` publish through it when they sync.)
        // Durability comes from the syncer's fdatasync of the WAL, not from COMMIT.
        if let Err(e) = self.conn.execute_batch("PRAGMA synchronous = NORMAL") {
            tracing::error!(error = %e, "the journal's writer cannot set up its connection; nothing can be stored");
            return;
        }
        let syncer = match Syncer::start(self.wal.another(), publish, self.shared.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "the journal's writer cannot start its sync thread; nothing can be stored");
                return;
            }
        };
        let mut txn: Option<Txn> = None;
        let mut deferred: Vec<Request> = Vec::new();
        let mut deferred_at = Instant::now();
        let mut open = true;
        // Since when the sync thread has been free with a transaction waiting for it.
        let mut idle_since: Option<Instant> = None;
        let mut last_arrival = Instant::now();
        loop {
            let mut gather: Option<Instant> = None;
            if !syncer.busy() {
                if let Some(t) = txn.take() {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    let waiting = t.requests.iter().filter(|r| needs_sync(&r.op)).count() as u64;
                    match syncer.gather_until(since, last_arrival, waiting).filter(|_| open) {
                        Some(until) => {
                            gather = Some(until);
                            txn = Some(t);
                        }
                        None => {
                            idle_since = None;
                            self.commit(t, &syncer, &clock);
                            continue;
                        }
                    }
                } else if !open {
                    break;
                }
            }
            if !open {
                syncer.wait_idle(&clock);
                continue;
            }
            let due = [(!deferred.is_empty()).then(|| deferred_at + PROGRESS_DEFER), gather]
                .into_iter()
                .flatten()
                .min()
                .map(tokio::time::Instant::from_std);
            let event = clock.block_on(async {
                tokio::select! {
                    r = rx.recv() => Event::Request(r),
                    _ = syncer.ready.notified() => Event::Ready,
                    _ = async {
                        match due {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => Event::Due,
                }
            });
            match event {
                Event::Ready => {}
                Event::Due => {
                    // Progress held long enough, or the gathering is over (the loop commits).
                    if !deferred.is_empty() && deferred_at.elapsed() >= PROGRESS_DEFER {
                        let held = std::mem::take(&mut deferred);
                        self.apply_into(&mut txn, held, &syncer, &clock);
                    }
                }
                Event::Request(None) => {
                    open = false;
                    let held = std::mem::take(&mut deferred);
                    if !held.is_empty() {
                        self.apply_into(&mut txn, held, &syncer, &clock);
                    }
                }
                Event::Request(Some(req)) => {
                    last_arrival = Instant::now();
                    let mut reqs = vec![req];
                    while reqs.len() < super::MAX_BATCH
                        && let Ok(req) = rx.try_recv()
                    {
                        reqs.push(req);
                    }
                    for req in reqs.extract_if(.., |r| matches!(r.op, Op::Delivery(_))) {
                        if deferred.is_empty() {
                            deferred_at = Instant::now();
                        }
                        deferred.push(req);
                    }
                    let now_due = deferred_at.elapsed() >= PROGRESS_DEFER
                        || deferred.len() >= PROGRESS_DEFER_MAX
                        || reqs.iter().any(|r| needs_fresh_progress(&r.op))
                        // Making room for an item evicts delivered items: all must be known.
                        || self.would_fill(&reqs);
                    if now_due && !deferred.is_empty() {
                        // Ahead of the rest: they were reported first.
                        deferred.append(&mut reqs);
                        reqs = std::mem::take(&mut deferred);
                    }
                    if !reqs.is_empty() {
                        self.apply_into(&mut txn, reqs, &syncer, &clock);
                    }
                }
            }
        }
        syncer.stop();
        // Every handle is gone: leave the WAL checkpointed so the next start is quick.
        self.shared.closed.store(true, Ordering::Relaxed);
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// Whether the items in `batch` would take the journal past `max_bytes`.
    fn would_fill(&self, batch: &[Request]) -> bool {
        let incoming: u64 = batch
            .iter()
            .map(|r| match &r.op {
                Op::Insert(env) => env.body.len() as u64,
                Op::InsertFile { envelopes, .. } | Op::InsertLinked { envelopes } => {
                    envelopes.iter().map(|e| e.body.len() as u64).sum()
                }
                _ => 0,
            })
            .sum();
        incoming > 0 && self.shared.stored_bytes.load(Ordering::Relaxed) + incoming > self.limits.max_bytes
    }

    fn begin(&mut self) -> Result<Txn, JournalError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Txn {
            requests: Vec::new(),
            outcomes: Vec::new(),
            head: self.committed,
            before: (self.shared.stored_bytes.load(Ordering::Relaxed), self.next_seq, self.next_useq),
        })
    }

    /// Undoes an open transaction and what the writer counted in it.
    fn rollback(&mut self, before: (u64, i64, i64)) {
        let _ = self.conn.execute_batch("ROLLBACK");
        let (stored, next_seq, next_useq) = before;
        self.shared.stored_bytes.store(stored, Ordering::Relaxed);
        self.next_seq = next_seq;
        self.next_useq = next_useq;
        self.pending_recent.clear();
        self.waiting_delta.clear();
        self.cursors_moved = false;
    }

    /// Applies requests into the open transaction (beginning one if none is open). If one
    /// fails, the transaction is rolled back and every request in it is taken on its own.
    fn apply_into(
        &mut self,
        txn: &mut Option<Txn>,
        reqs: Vec<Request>,
        syncer: &Syncer,
        clock: &tokio::runtime::Runtime,
    ) {
        if txn.is_none() {
            match self.begin() {
                Ok(t) => *txn = Some(t),
                Err(_) => {
                    for req in reqs {
                        self.alone(req, syncer, clock);
                    }
                    return;
                }
            }
        }
        // In order; a run of deliveries is applied at once (`Writer::delivered_many`), never
        // across another request (a failure given up on must be a row before the cursor passes).
        let mut reqs = reqs.into_iter().peekable();
        while reqs.peek().is_some() {
            let mut run = Vec::new();
            while let Some(req) = reqs.next_if(|r| matches!(r.op, Op::Delivery(DeliveryUpdate::Delivered { .. }))) {
                run.push(req);
            }
            let single = if run.is_empty() { reqs.next() } else { None };
            let Some(t) = txn.as_mut() else { return };
            let applied: Result<Vec<Outcome>, JournalError> = match &single {
                Some(req) => self.apply(&req.op, now_ms(), &mut t.head).map(|o| vec![o]),
                None => {
                    let seqs: Vec<(&str, i64)> = run
                        .iter()
                        .filter_map(|r| match &r.op {
                            Op::Delivery(DeliveryUpdate::Delivered { seq, destination }) => {
                                Some((destination.as_str(), *seq))
                            }
                            _ => None,
                        })
                        .collect();
                    self.delivered_many(&seqs, now_ms()).map(|()| run.iter().map(|_| Outcome::Unit).collect())
                }
            };
            let these = run.into_iter().chain(single);
            match applied {
                Ok(outcomes) => {
                    let Some(t) = txn.as_mut() else { return };
                    for (req, outcome) in these.zip(outcomes) {
                        t.outcomes.push(outcome);
                        t.requests.push(req);
                    }
                }
                Err(_) => {
                    let Some(t) = txn.take() else { return };
                    self.rollback(t.before);
                    // The transaction as a whole failed (disk full, I/O error): take each
                    // request on its own so that only those that cannot be stored fail.
                    for req in t.requests.into_iter().chain(these).chain(reqs.by_ref()) {
                        self.alone(req, syncer, clock);
                    }
                    return;
                }
            }
        }
    }

    /// Commits the open transaction. What waits on durability is answered by the syncer after
    /// its sync; a transaction of nothing of the kind is answered now.
    fn commit(&mut self, t: Txn, syncer: &Syncer, clock: &tokio::runtime::Runtime) {
        if self.commit_sql(t.head, t.before).is_err() {
            for req in t.requests {
                self.alone(req, syncer, clock);
            }
            return;
        }
        let synced = t.requests.iter().any(|r| needs_sync(&r.op));
        let checkpoint = t.requests.iter().any(|r| matches!(r.op, Op::Checkpoint));
        let (mut answers, mut later): (Vec<_>, Vec<_>) =
            t.requests.into_iter().zip(t.outcomes).partition(|(r, _)| !matches!(r.op, Op::Checkpoint));
        if synced {
            let job = Job { answers: std::mem::take(&mut answers), head: t.head };
            if Duration::from_micros(syncer.last.0.load(Ordering::Relaxed)) < GATHER_ABOVE {
                // A fast disk: the sync costs less than handing it over; nothing to overlap.
                sync_and_answer(&mut self.wal, job, &syncer.publish, &self.shared, &syncer.last);
            } else {
                syncer.send(job);
            }
        }
        for (req, outcome) in answers {
            answer(req, outcome);
        }
        if checkpoint {
            // After everything before it is synced: the checkpoint copies it all.
            syncer.wait_idle(clock);
            if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "journal checkpoint failed; the next start recovers the WAL");
            }
            for (req, outcome) in later.drain(..) {
                answer(req, outcome);
            }
        }
    }

    /// Commits the open transaction (cursors of idle destinations caught up first) and makes
    /// known what it holds: items to recognise retransmissions by, waiting counts, the head. On
    /// failure it is rolled back.
    fn commit_sql(&mut self, head: Head, before: (u64, i64, i64)) -> Result<(), JournalError> {
        let moved = std::mem::take(&mut self.cursors_moved);
        let result = (if moved { self.catch_up_cursors(head.seq) } else { Ok(()) })
            .and_then(|_| self.conn.execute_batch("COMMIT").map_err(JournalError::from));
        if let Err(e) = result {
            self.rollback(before);
            return Err(e);
        }
        for (key, seq, at) in std::mem::take(&mut self.pending_recent) {
            self.recent.remember(key, seq, at);
        }
        apply_waiting(&self.shared, std::mem::take(&mut self.waiting_delta));
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        self.committed = head;
        Ok(())
    }

    /// One request in a transaction of its own, synced here if it waits on durability: after
    /// a batch failed, so that only what cannot be stored fails.
    fn alone(&mut self, req: Request, syncer: &Syncer, clock: &tokio::runtime::Runtime) {
        syncer.wait_idle(clock);
        let mut t = match self.begin() {
            Ok(t) => t,
            Err(e) => return refuse(req, &e, Some(&self.shared)),
        };
        let outcome = match self.apply(&req.op, now_ms(), &mut t.head) {
            Ok(outcome) => outcome,
            Err(e) => {
                self.rollback(t.before);
                return refuse(req, &e, Some(&self.shared));
            }
        };
        if let Err(e) = self.commit_sql(t.head, t.before) {
            return refuse(req, &e, Some(&self.shared));
        }
        if needs_sync(&req.op) {
            // Synced, published and answered the way every batch is, on this thread.
            let job = Job { answers: vec![(req, outcome)], head: t.head };
            sync_and_answer(&mut self.wal, job, &syncer.publish, &self.shared, &syncer.last);
        } else {
            answer(req, outcome);
        }
    }
}

/// Answers a request with its outcome.
fn answer(req: Request, outcome: Outcome) {
    match (req.reply, outcome) {
        (Reply::Insert(tx), Outcome::Inserted(r)) => {
            let _ = tx.send(r);
        }
        (Reply::InsertFile(tx), Outcome::InsertedFile(r)) => {
            let _ = tx.send(r);
        }
        (Reply::Count(tx), Outcome::Count(n)) => {
            let _ = tx.send(Ok(n));
        }
        (Reply::Value(tx), Outcome::Value(v)) => {
            let _ = tx.send(Ok(v));
        }
        (Reply::Unit(tx), _) => {
            let _ = tx.send(());
        }
        (Reply::Checked(tx), _) => {
            let _ = tx.send(Ok(()));
        }
        _ => {}
    }
}

/// Answers a request with an error (counted when it means "no room").
fn refuse(req: Request, e: &JournalError, shared: Option<&Shared>) {
    let e = clone_error(e);
    if e.is_capacity()
        && let Some(shared) = shared
    {
        shared.refused.fetch_add(1, Ordering::Relaxed);
    }
    match req.reply {
        Reply::Insert(tx) => {
            let _ = tx.send(Err(e));
        }
        Reply::InsertFile(tx) => {
            let _ = tx.send(Err(e));
        }
        Reply::Count(tx) => {
            let _ = tx.send(Err(e));
        }
        Reply::Value(tx) => {
            let _ = tx.send(Err(e));
        }
        Reply::Unit(tx) => {
            let _ = tx.send(());
        }
        Reply::Checked(tx) => {
            let _ = tx.send(Err(e));
        }
        Reply::None => {
            if let Op::Delivery(update) = &req.op {
                tracing::error!(error = %e, ?update, "cannot record delivery progress; the item may be delivered again");
            }
        }
    }
}
