//! The journal's single writer: group commit of everything waiting, one fsync per batch.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

mod commit;

use super::recent::{self, Recent};
use super::{
    DeliveryState, DeliveryUpdate, Head, Inserted, JournalError, Limits, Op, Reply, Request, Rerouted, RetryTarget,
    Shared, TakenFile,
};
use crate::envelope::{NewEnvelope, Status, now_ms};

/// Most operations committed in one transaction; bounds the latency of a batch's last member.
const MAX_BATCH: usize = 1024;

/// How long delivery progress may wait in memory for a commit to ride in (see
/// [`Writer::run`]): the most of it a process crash can lose, which only means delivering again.
const PROGRESS_DEFER: Duration = Duration::from_millis(100);
/// Progress records held at most, whatever their age.
const PROGRESS_DEFER_MAX: usize = 4096;

/// How long a free-space reading is trusted.
const FREE_DISK_TTL: Duration = Duration::from_millis(500);

pub(super) struct Writer {
    conn: Connection,
    dir: PathBuf,
    limits: Limits,
    shared: Arc<Shared>,
    /// The next envelope's seq. Assigned here, never reused while the process runs (SQLite's
    /// own rowid could restart at 1 after every row was purged, behind the workers' cursors).
    next_seq: i64,
    /// The next uplink sequence number (see schema migration 2).
    next_useq: i64,
    /// Timestamp of the last id handed out; ids never go back in time.
    last_id_ms: u64,
    free_disk: Option<(Instant, u64)>,
    /// Recently stored items, for recognising retransmissions (see `recent.rs`).
    recent: Recent,
    /// Items stored in the open transaction; remembered once it commits.
    pending_recent: Vec<(u64, i64, i64)>,
    /// Changes to the destinations' waiting counts ([`Shared::waiting`]) in the open
    /// transaction; applied once it commits.
    waiting_delta: Vec<(String, i64)>,
    /// Destinations known to have a row in `cursors` (one is made with a destination's first item).
    known_cursors: std::collections::HashSet<String>,
    /// Whether the open transaction moved a cursor (the `cursors` page is written anyway).
    cursors_moved: bool,
    /// The committed head (its items maybe not synced yet; `publish` tells the rest once they
    /// are).
    committed: Head,
    /// Where the syncer publishes the synced head; taken by [`Writer::run`].
    publish: Option<watch::Sender<Head>>,
    /// The WAL, for syncing it from this thread (a request that failed in a batch, retried alone).
    wal: commit::WalFile,
    /// Held while the writer lives; released when the thread ends.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Whether committing `op` must be durable before its requester hears back: what a sender's
/// ACK, a tech's command or central's view rests on. Records whose loss in a power cut can
/// only make an item be delivered (or released, purged, an order downloaded) again, never
/// skipped, ride along unsynced: they become durable with the next synced commit (the WAL is
/// one file, appended in order: syncing it makes every earlier frame durable) or checkpoint.
/// A process crash loses nothing either way (the frames are in the OS's page cache).
fn needs_sync(op: &Op) -> bool {
    match op {
        // An item stored (its ACK), a file's record (the file is moved next), the order
        // cache (the EHR's ACK), events kept for central, counters, a tech's retry or
        // reroute, limits.
        Op::Insert(_)
        | Op::InsertFile { .. }
        | Op::InsertLinked { .. }
        | Op::Orders(super::orders::OrderOp::Upsert { .. })
        | Op::AddEvents { .. }
        | Op::Bump(_)
        | Op::Retry(_)
        | Op::Reroute(_)
        | Op::SetLimits(_) => true,
        // Delivery progress and attempts, central's acknowledgements, purges, download
        // outcomes, an empty transaction (a health check, a barrier before a read).
        Op::Delivery(_) | Op::Acked { .. } | Op::Purge { .. } | Op::Orders(_) | Op::Barrier | Op::Checkpoint => false,
    }
}

/// Whether `op` must see every delivery reported before it committed with it: a barrier (a
/// worker rescanning, a read that follows), a checkpoint, a retry or reroute (they rescan), a
/// purge (it deletes what is delivered).
fn needs_fresh_progress(op: &Op) -> bool {
    matches!(op, Op::Barrier | Op::Checkpoint | Op::Retry(_) | Op::Reroute(_) | Op::Purge { .. })
}

/// An operation's outcome, held until its batch commits.
enum Outcome {
    Inserted(Result<Inserted, JournalError>),
    InsertedFile(Result<Vec<Inserted>, JournalError>),
    Count(usize),
    Value(i64),
    Unit,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        path: PathBuf,
        limits: Limits,
        shared: Arc<Shared>,
        head: watch::Sender<Head>,
        lock: nix::fcntl::Flock<std::fs::File>,
    ) -> Self {
        let dir = super::disk::dir_of(&path).to_path_buf();
        let recent = warm_recent(&conn, &limits);
        let committed = *head.borrow();
        let next_seq = committed.seq + 1;
        let next_useq = last_useq(&conn) + 1;
        Writer {
            next_useq,
            conn,
            dir,
            limits,
            shared,
            next_seq,
            last_id_ms: 0,
            free_disk: None,
            recent,
            pending_recent: Vec::new(),
            waiting_delta: Vec::new(),
            known_cursors: std::collections::HashSet::new(),
            cursors_moved: false,
            committed,
            wal: commit::WalFile::new(&path),
            publish: Some(head),
            _lock: lock,
        }
    }

    /// Applies one operation inside the open transaction. An `Err` aborts the whole batch; a
    /// refusal that concerns only this item (journal full) is an `Ok` outcome carrying the error.
    fn apply(&mut self, op: &Op, now: i64, head: &mut Head) -> Result<Outcome, JournalError> {
        match op {
            Op::Insert(env) => match self.insert(env, now) {
                Ok(inserted) => {
                    if let Inserted::Stored { seq, .. } = &inserted {
                        head.seq = head.seq.max(*seq);
                    }
                    Ok(Outcome::Inserted(Ok(inserted)))
                }
                Err(e @ (JournalError::Full { .. } | JournalError::DiskFull { .. })) => {
                    self.shared.refused.fetch_add(1, Ordering::Relaxed);
                    Ok(Outcome::Inserted(Err(e)))
                }
                Err(e) => Err(e),
            },
            Op::Delivery(update) => {
                self.delivery(update, now)?;
                Ok(Outcome::Unit)
            }
            Op::Retry(target) => {
                let n = self.retry(target, now)?;
                if n > 0 {
                    head.rescan += 1;
                }
                Ok(Outcome::Count(n))
            }
            Op::Reroute(decisions) => {
                let n = self.reroute(decisions, now)?;
                if n > 0 {
                    head.rescan += 1;
                }
                Ok(Outcome::Count(n))
            }
            Op::Purge { delivered_before, problems_before } => {
                Ok(Outcome::Count(self.purge(*delivered_before, *problems_before)?))
            }
            Op::SetLimits(limits) => {
                self.limits = limits.clone();
                Ok(Outcome::Unit)
            }
            Op::Acked { destination, ids } => Ok(Outcome::Count(self.acked(destination, ids, now)?)),
            Op::AddEvents { events, keep } => Ok(Outcome::Count(self.add_events(events, *keep)?)),
            Op::Bump(key) => {
                let v: i64 = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO meta (key, value) VALUES (?1, 1)
                         ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                    )?
                    .query_row([key], |r| r.get(0))?;
                Ok(Outcome::Value(v))
            }
            Op::InsertFile { envelopes, file } => self.insert_file(envelopes, file, now, head),
            Op::InsertLinked { envelopes } => self.insert_linked(envelopes, now, head),
            Op::Orders(op) => Ok(Outcome::Count(super::orders::apply(&self.conn, op, now)?)),
            Op::Barrier => Ok(Outcome::Unit),
            // Run once its transaction is committed and synced (see `commit.rs`).
            Op::Checkpoint => Ok(Outcome::Unit),
        }
    }

    /// A file's items and its record, all or none (see [`Writer::all_or_none`]).
    fn insert_file(
        &mut self,
        envelopes: &[NewEnvelope],
        file: &TakenFile,
        now: i64,
        head: &mut Head,
    ) -> Result<Outcome, JournalError> {
        self.all_or_none(head, |w, head| {
            let mut inserted = Vec::with_capacity(envelopes.len());
            for env in envelopes {
                inserted.push(w.insert_counted(env, now, head)?);
            }
            w.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO source_files (source, name, digest, size, items, taken_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![file.source, file.name, file.digest, file.size as i64, file.items as i64, now])?;
            Ok(inserted)
        })
    }

    /// An item and the items derived from it, all or none, linked both ways in their summaries.
    fn insert_linked(&mut self, envelopes: &[NewEnvelope], now: i64, head: &mut Head) -> Result<Outcome, JournalError> {
        let Some((primary, derived)) = envelopes.split_first() else {
            return Ok(Outcome::InsertedFile(Ok(Vec::new())));
        };
        self.all_or_none(head, |w, head| {
            let first = w.insert_counted(primary, now, head)?;
            let Inserted::Stored { seq, id } = &first else {
                // A retransmission: its derived items were stored with it the first time.
                return Ok(vec![first]);
            };
            let (seq, id) = (*seq, id.clone());
            let mut inserted = vec![first];
            let mut ids = Vec::with_capacity(derived.len());
            for env in derived {
                let mut env = env.clone();
                env.summary.set("derived_from", id.clone());
                let i = w.insert_counted(&env, now, head)?;
                let (Inserted::Stored { id, .. } | Inserted::Duplicate { id, .. }) = &i;
                ids.push(id.clone());
                inserted.push(i);
            }
            if !ids.is_empty() {
                let mut summary = primary.summary.clone();
                summary.set("derived", ids.join(","));
                w.conn
                    .prepare_cached("UPDATE envelopes SET summary = ?1 WHERE seq = ?2")?
                    .execute(params![summary.fields_json(), seq])?;
            }
            Ok(inserted)
        })
    }

    /// One item inserted as part of a batch, the committed head following it.
    fn insert_counted(&mut self, env: &NewEnvelope, now: i64, head: &mut Head) -> Result<Inserted, JournalError> {
        let i = self.insert(env, now)?;
        if let Inserted::Stored { seq, .. } = &i {
            head.seq = head.seq.max(*seq);
        }
        Ok(i)
    }

    /// Runs `write` inside a savepoint: a refusal (journal or disk full) of any item takes back
    /// the others and leaves the rest of the batch alone, answered as that refusal.
    fn all_or_none(
        &mut self,
        head: &mut Head,
        write: impl FnOnce(&mut Self, &mut Head) -> Result<Vec<Inserted>, JournalError>,
    ) -> Result<Outcome, JournalError> {
        let before = (self.shared.stored_bytes.load(Ordering::Relaxed), self.next_seq, self.next_useq, *head);
        let pending_recent = self.pending_recent.len();
        let waiting_delta = self.waiting_delta.len();
        self.conn.execute_batch("SAVEPOINT batch")?;
        match write(self, head) {
            Ok(inserted) => {
                self.conn.execute_batch("RELEASE batch")?;
                Ok(Outcome::InsertedFile(Ok(inserted)))
            }
            Err(e @ (JournalError::Full { .. } | JournalError::DiskFull { .. })) => {
                self.conn.execute_batch("ROLLBACK TO batch; RELEASE batch")?;
                let (stored, next_seq, next_useq, old_head) = before;
                self.shared.stored_bytes.store(stored, Ordering::Relaxed);
                self.next_seq = next_seq;
                self.next_useq = next_useq;
                *head = old_head;
                self.pending_recent.truncate(pending_recent);
                self.waiting_delta.truncate(waiting_delta);
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                Ok(Outcome::InsertedFile(Err(e)))
            }
            Err(e) => Err(e),
        }
    }

    fn insert(&mut self, env: &NewEnvelope, now: i64) -> Result<Inserted, JournalError> {
        let dedup_key = (env.status != Status::Rejected && !env.summary.item_ref.is_empty())
            .then(|| recent::key(&env.source, &env.summary.item_ref));
        if let Some(key) = dedup_key {
            self.recent.expire(env.received_at - self.limits.dedup_window_ms);
            // The newest first: an item earlier in this same transaction, then one committed.
            let candidate = self
                .pending_recent
                .iter()
                .rev()
                .find(|(k, _, _)| *k == key)
                .map(|(_, seq, _)| *seq)
                .or_else(|| self.recent.candidate(key, env.received_at - self.limits.dedup_window_ms));
            if let Some(seq) = candidate {
                // The same bytes; for a kind whose resends restamp their first line, the same
                // bytes after it (see `Kind::resend_restamps_first_line`).
                let (sql, compared) = if env.kind.resend_restamps_first_line() {
                    (
                        "SELECT id FROM envelopes WHERE seq = ?1 AND source = ?2 AND item_ref = ?3
                            AND kind = ?5 AND substr(body, instr(body, X'0D') + 1) = ?4",
                        after_first_line(&env.body),
                    )
                } else {
                    (
                        "SELECT id FROM envelopes WHERE seq = ?1 AND source = ?2 AND item_ref = ?3
                            AND kind = ?5 AND body = ?4",
                        &env.body[..],
                    )
                };
                let same: Option<String> = self
                    .conn
                    .prepare_cached(sql)?
                    .query_row(params![seq, env.source, env.summary.item_ref, compared, env.kind.as_str()], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(id) = same {
                    self.conn
                        .prepare_cached("UPDATE envelopes SET duplicates = duplicates + 1 WHERE seq = ?1")?
                        .execute([seq])?;
                    self.shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    return Ok(Inserted::Duplicate { seq, id });
                }
            }
        }

        let size = env.body.len() as u64;
        self.check_free_disk()?;
        let stored = self.shared.stored_bytes.load(Ordering::Relaxed);
        if stored + size > self.limits.max_bytes {
            // Make room from delivered items first (they are only kept for retention).
            let need = stored + size - self.limits.max_bytes;
            self.evict_delivered(need)?;
            let stored = self.shared.stored_bytes.load(Ordering::Relaxed);
            if stored + size > self.limits.max_bytes {
                return Err(JournalError::Full { stored, max: self.limits.max_bytes });
            }
        }

        let seq = self.next_seq;
        self.last_id_ms = self.last_id_ms.max(now.max(0) as u64);
        let id = super::envelope_id(self.last_id_ms, seq);
        let routes = serde_json::to_string(&env.routes).unwrap_or_else(|_| "[]".into());
        let destinations = serde_json::to_string(&env.destinations).unwrap_or_else(|_| "[]".into());
        let useq = env.destinations.iter().find_map(|d| self.take_useq(d));
        self.conn
            .prepare_cached(
                "INSERT INTO envelopes (id, source, kind, received_at, status, size, item_type,
                    item_ref, summary, charset, routes, note, body, seq, destinations, useq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?
            .execute(params![
                id,
                env.source,
                env.kind.as_str(),
                env.received_at,
                env.status.as_str(),
                size as i64,
                env.summary.item_type,
                env.summary.item_ref,
                env.summary.fields_json(),
                env.charset,
                routes,
                env.note,
                env.body,
                seq,
                destinations,
                useq,
            ])?;
        self.next_seq += 1;
        // No delivery rows: each destination's cursor is below this seq, so the item is waiting
        // for it (see schema migration 9).
        for dest in &env.destinations {
            self.ensure_cursor(dest, seq)?;
            self.waiting_delta.push((dest.clone(), 1));
        }
        if let Some(key) = dedup_key {
            self.pending_recent.push((key, seq, env.received_at));
        }
        self.shared.stored_bytes.fetch_add(size, Ordering::Relaxed);
        self.shared.inserts.fetch_add(1, Ordering::Relaxed);
        Ok(Inserted::Stored { seq, id })
    }

    fn check_free_disk(&mut self) -> Result<(), JournalError> {
        if self.limits.min_free_disk == 0 {
            return Ok(());
        }
        let free = match self.free_disk {
            Some((at, free)) if at.elapsed() < FREE_DISK_TTL => free,
            _ => {
                let free = super::disk::free_bytes(&self.dir).unwrap_or(u64::MAX);
                self.free_disk = Some((Instant::now(), free));
                free
            }
        };
        if free < self.limits.min_free_disk {
            return Err(JournalError::DiskFull { free, min: self.limits.min_free_disk });
        }
        Ok(())
    }

    fn delivery(&mut self, update: &DeliveryUpdate, now: i64) -> Result<(), JournalError> {
        match update {
            // A worker delivers in journal order: everything before this item is done.
            DeliveryUpdate::Delivered { seq, destination } => self.delivered_many(&[(destination, *seq)], now)?,
            DeliveryUpdate::Failed { seq, destination, error, outcome, next_attempt_at, give_up } => {
                let state = if *give_up { DeliveryState::Failed } else { DeliveryState::Pending };
                let updated = self
                    .conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                            updated_at = ?5, last_error = ?6
                         WHERE destination = ?1 AND seq = ?2 AND state <> 'delivered'",
                    )?
                    .execute(params![destination, seq, state, next_attempt_at, now, error])?;
                let known = self
                    .conn
                    .prepare_cached("SELECT 1 FROM deliveries WHERE destination = ?1 AND seq = ?2")?
                    .exists(params![destination, seq])?;
                // The first failed attempt of an item waiting by the cursor: it becomes an
                // exception row (one after the cursor only: before it, the item is done).
                if updated == 0 && !known && self.cursor(destination)?.is_some_and(|c| *seq > c) {
                    let inserted = self
                        .conn
                        .prepare_cached(
                            "INSERT INTO deliveries (destination, seq, state, attempts, next_attempt_at,
                                updated_at, last_error, useq)
                             SELECT ?1, ?2, ?3, 1, ?4, ?5, ?6, e.useq FROM envelopes e WHERE e.seq = ?2",
                        )?
                        .execute(params![destination, seq, state, next_attempt_at, now, error])?;
                    if inserted > 0 {
                        self.waiting_delta.push((destination.clone(), -1));
                    }
                }
                self.conn
                    .prepare_cached(
                        "INSERT INTO attempts (seq, destination, at, outcome, error)
                         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM envelopes WHERE seq = ?1)",
                    )?
                    .execute(params![seq, destination, now, outcome, error])?;
            }
        }
        Ok(())
    }

    /// Deliveries (one, or a run of held-back progress): per destination, the rows among them
    /// are marked delivered, the rest counted off what waits, and the cursor moved once, to the
    /// highest (a worker delivers in journal order, so everything before it is done).
    pub(super) fn delivered_many(&mut self, delivered: &[(&str, i64)], now: i64) -> Result<(), JournalError> {
        let mut by_dest: std::collections::BTreeMap<&str, Vec<i64>> = std::collections::BTreeMap::new();
        for (dest, seq) in delivered {
            by_dest.entry(dest).or_default().push(*seq);
        }
        for (dest, mut seqs) in by_dest {
            seqs.sort_unstable();
            seqs.dedup();
            let (Some(&lo), Some(&hi)) = (seqs.first(), seqs.last()) else { continue };
            let rows: std::collections::HashSet<i64> = self
                .conn
                .prepare_cached("SELECT seq FROM deliveries WHERE destination = ?1 AND seq BETWEEN ?2 AND ?3")?
                .query_map(params![dest, lo, hi], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let cursor = self.cursor(dest)?;
            let mut update = self.conn.prepare_cached(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, updated_at = ?3, last_error = NULL
                 WHERE destination = ?1 AND seq = ?2",
            )?;
            let mut counted_off = 0;
            for seq in &seqs {
                if rows.contains(seq) {
                    update.execute(params![dest, seq, now])?;
                } else if cursor.is_some_and(|c| *seq > c) {
                    counted_off += 1;
                }
            }
            drop(update);
            if counted_off > 0 {
                self.waiting_delta.push((dest.to_string(), -counted_off));
            }
            if cursor.is_some_and(|c| hi > c) {
                self.move_cursor(dest, hi)?;
            }
        }
        Ok(())
    }

    /// `destination`'s cursor: every item for it with a seq up to this is done, unless a
    /// delivery row says otherwise. `None`: it has had no item since the journal had cursors.
    fn cursor(&self, destination: &str) -> Result<Option<i64>, JournalError> {
        super::cursor_of(&self.conn, destination)
    }

    fn move_cursor(&mut self, destination: &str, seq: i64) -> Result<(), JournalError> {
        self.conn
            .prepare_cached("UPDATE cursors SET seq = max(seq, ?2) WHERE destination = ?1")?
            .execute(params![destination, seq])?;
        self.cursors_moved = true;
        Ok(())
    }

    /// Gives `destination` a cursor just below its first item, if it has none yet.
    fn ensure_cursor(&mut self, destination: &str, seq: i64) -> Result<(), JournalError> {
        if self.known_cursors.contains(destination) {
            return Ok(());
        }
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO cursors (destination, seq) VALUES (?1, ?2)")?
            .execute(params![destination, seq - 1])?;
        self.known_cursors.insert(destination.to_string());
        Ok(())
    }

    /// Moves the cursors of destinations with nothing waiting up to `head`, in a transaction
    /// that writes the cursors' page anyway: so that counting what waits at the next start
    /// reads only from where something does.
    fn catch_up_cursors(&mut self, head: i64) -> Result<(), JournalError> {
        let idle: Vec<String> = {
            let committed = self.shared.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let mut counts: std::collections::HashMap<&str, i64> =
                committed.iter().map(|(d, n)| (d.as_str(), *n as i64)).collect();
            for (d, n) in &self.waiting_delta {
                *counts.entry(d.as_str()).or_default() += n;
            }
            counts.into_iter().filter(|(_, n)| *n <= 0).map(|(d, _)| d.to_string()).collect()
        };
        let mut stmt = self.conn.prepare_cached("UPDATE cursors SET seq = ?2 WHERE destination = ?1 AND seq < ?2")?;
        for dest in idle {
            stmt.execute(params![dest, head])?;
        }
        Ok(())
    }

    fn retry(&mut self, target: &RetryTarget, now: i64) -> Result<usize, JournalError> {
        let (seq, id) = match &target.id {
            Some(text) => match super::resolve_id(text) {
                Some((seq, id)) => (Some(seq), id),
                None => return Ok(0),
            },
            None => (None, None),
        };
        let n = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = 0, updated_at = ?1
                 WHERE state = 'failed'
                   AND (?2 IS NULL OR seq = ?2 AND EXISTS (SELECT 1 FROM envelopes WHERE seq = ?2 AND id = ?3))
                   AND (?4 IS NULL OR destination = ?4)",
            )?
            .execute(params![now, seq, id, target.destination])?;
        Ok(n)
    }

    fn reroute(&mut self, decisions: &[Rerouted], now: i64) -> Result<usize, JournalError> {
        let mut changed = 0;
        for d in decisions.iter().filter(|d| !d.destinations.is_empty()) {
            let routes = serde_json::to_string(&d.routes).unwrap_or_else(|_| "[]".into());
            let destinations = serde_json::to_string(&d.destinations).unwrap_or_else(|_| "[]".into());
            let n = self
                .conn
                .prepare_cached(
                    "UPDATE envelopes SET status = 'accepted', routes = ?2, destinations = ?3
                     WHERE seq = ?1 AND status = 'unrouted'",
                )?
                .execute(params![d.seq, routes, destinations])?;
            if n == 0 {
                continue;
            }
            // An old seq, likely behind the destinations' cursors: its deliveries are rows.
            for dest in &d.destinations {
                let useq = self.take_useq(dest);
                let n = self
                    .conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO deliveries (destination, seq, state, updated_at, useq)
                         VALUES (?1, ?2, 'pending', ?3, ?4)",
                    )?
                    .execute(params![dest, d.seq, now, useq])?;
                if n == 0 && useq.is_some() {
                    self.next_useq -= 1;
                } else if let Some(useq) = useq {
                    self.conn
                        .prepare_cached("UPDATE envelopes SET useq = ?2 WHERE seq = ?1")?
                        .execute(params![d.seq, useq])?;
                    // An old seq with a new useq: the newest rows no longer tell the highest.
                    self.keep_useq_floor()?;
                }
            }
            changed += 1;
        }
        Ok(changed)
    }

    /// The uplink sequence number for a new delivery to `destination` (none for other
    /// destinations).
    fn take_useq(&mut self, destination: &str) -> Option<i64> {
        if self.limits.uplink_destination.as_deref() != Some(destination) {
            return None;
        }
        let useq = self.next_useq;
        self.next_useq += 1;
        Some(useq)
    }

    /// Releases the uplink deliveries central acknowledged. An id names its item by seq; the id
    /// itself is checked, so a stale or mistyped id releases nothing. Central acknowledges
    /// mostly in order: the cursor moves over what is acknowledged from its position on, and
    /// only an acknowledgement ahead of an unacknowledged item is kept as a row.
    fn acked(&mut self, destination: &str, ids: &[String], now: i64) -> Result<usize, JournalError> {
        let cursor = self.cursor(destination)?;
        // (seq, id, position in `ids`), in journal order.
        let mut named: Vec<(i64, String, usize)> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, text)| match super::resolve_id(text) {
                Some((seq, Some(id))) => Some((seq, id, i)),
                _ => None,
            })
            .collect();
        named.sort_unstable();
        let mut released_item = vec![false; ids.len()];
        // Items waiting by the cursor (no row) that this acknowledgement releases.
        let mut released = std::collections::BTreeSet::new();
        let mut n = 0;
        if let (Some((lo, ..)), Some((hi, ..))) = (named.first(), named.last()) {
            let (lo, hi) = (*lo, *hi);
            // What the journal holds for the acknowledged span: one read of the span when it
            // is dense (acknowledgements come in runs), one look per id when it is not.
            let rows: std::collections::HashMap<i64, String> = self
                .conn
                .prepare_cached("SELECT seq, state FROM deliveries WHERE destination = ?1 AND seq BETWEEN ?2 AND ?3")?
                .query_map(params![destination, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let dense = (hi - lo) as usize <= named.len() * 4 + 1024;
            let mut items: std::collections::HashMap<i64, (String, bool)> = std::collections::HashMap::new();
            if dense {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT seq, id, instr(destinations, json_quote(?1)) > 0 FROM envelopes WHERE seq BETWEEN ?2 AND ?3",
                )?;
                for row in stmt.query_map(params![destination, lo, hi], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))? {
                    let (seq, item) = row?;
                    items.insert(seq, item);
                }
            } else {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT id, instr(destinations, json_quote(?1)) > 0 FROM envelopes WHERE seq = ?2",
                )?;
                for (seq, ..) in &named {
                    if let Some(item) =
                        stmt.query_row(params![destination, seq], |r| Ok((r.get(0)?, r.get(1)?))).optional()?
                    {
                        items.insert(*seq, item);
                    }
                }
            }
            let mut update = self.conn.prepare_cached(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, updated_at = ?3, last_error = NULL
                 WHERE destination = ?1 AND seq = ?2 AND state <> 'delivered'",
            )?;
            for (seq, id, i) in &named {
                // The id itself is checked: a stale or mistyped one releases nothing.
                let Some((known, member)) = items.get(seq) else { continue };
                if known != id {
                    continue;
                }
                let done = match rows.get(seq).map(String::as_str) {
                    Some("delivered") => false,
                    Some(_) => update.execute(params![destination, seq, now])? > 0,
                    None => {
                        let waiting = *member && cursor.is_some_and(|c| *seq > c) && released.insert(*seq);
                        if waiting {
                            self.waiting_delta.push((destination.to_string(), -1));
                        }
                        waiting
                    }
                };
                n += usize::from(done);
                released_item[*i] = done;
            }
        }
        if let Some(mut at) = cursor {
            // Over the items acknowledged now and the rows acknowledged before, in order.
            let mut next_items = self.conn.prepare_cached(
                "SELECT seq FROM envelopes WHERE seq > ?2 AND instr(destinations, json_quote(?1)) > 0
                 ORDER BY seq LIMIT ?3",
            )?;
            let mut gone = self
                .conn
                .prepare_cached("DELETE FROM deliveries WHERE destination = ?1 AND seq = ?2 AND state = 'delivered'")?;
            'advance: loop {
                let batch: Vec<i64> = next_items
                    .query_map(params![destination, at, released.len() as i64 + 16], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                if batch.is_empty() {
                    break;
                }
                for next in batch {
                    if released.remove(&next) || gone.execute(params![destination, next])? > 0 {
                        at = next;
                    } else {
                        break 'advance;
                    }
                }
            }
            drop((next_items, gone));
            if Some(at) != cursor {
                self.move_cursor(destination, at)?;
            }
            // Acknowledged ahead of an item central has not acknowledged yet.
            let mut ahead = self.conn.prepare_cached(
                "INSERT OR IGNORE INTO deliveries (destination, seq, state, attempts, updated_at, useq)
                 SELECT ?1, seq, 'delivered', 1, ?3, useq FROM envelopes WHERE seq = ?2",
            )?;
            for seq in released {
                ahead.execute(params![destination, seq, now])?;
            }
        }
        // Ids that released no item may name kept events.
        let mut forget = self.conn.prepare_cached("DELETE FROM uplink_events WHERE id = ?1")?;
        for (text, item) in ids.iter().zip(released_item) {
            if !item {
                forget.execute([text])?;
            }
        }
        Ok(n)
    }

    /// Keeps events for central, then trims to the newest `keep`; returns how many were dropped.
    fn add_events(&mut self, events: &[(String, Vec<u8>)], keep: usize) -> Result<usize, JournalError> {
        let mut add = self.conn.prepare_cached("INSERT OR IGNORE INTO uplink_events (id, payload) VALUES (?1, ?2)")?;
        for (id, payload) in events {
            add.execute(params![id, payload])?;
        }
        let dropped = self.conn.prepare_cached(
            "DELETE FROM uplink_events WHERE eseq IN (SELECT eseq FROM uplink_events ORDER BY eseq DESC LIMIT -1 OFFSET ?1)",
        )?
        .execute([keep as i64])?;
        Ok(dropped)
    }

    /// Deletes items past their retention: fully delivered ones received before
    /// `delivered_before`, rejected and unrouted ones received before `problems_before`.
    fn purge(&mut self, delivered_before: i64, problems_before: i64) -> Result<usize, JournalError> {
        self.keep_useq_floor()?;
        let (delivered, _) = self.purge_delivered(delivered_before, i64::MAX)?;
        let (problems, freed) = self.delete_returning_size(
            "DELETE FROM envelopes WHERE seq IN (
                SELECT seq FROM envelopes WHERE status <> 'accepted' AND received_at < ?1 ORDER BY seq LIMIT ?2)
             RETURNING size",
            problems_before,
            i64::MAX,
        )?;
        self.sub_stored(freed);
        self.conn.prepare_cached("DELETE FROM source_files WHERE taken_at < ?1")?.execute([problems_before])?;
        Ok(delivered + problems)
    }

    /// Deletes up to `limit` fully delivered items received before `before`, oldest first.
    /// Returns how many went and the bytes freed.
    fn purge_delivered(&mut self, before: i64, limit: i64) -> Result<(usize, u64), JournalError> {
        let (n, freed) = self.delete_returning_size(
            "DELETE FROM envelopes WHERE seq IN (
                SELECT e.seq FROM envelopes e
                WHERE e.received_at < ?1 AND e.status = 'accepted'
                  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq AND d.state <> 'delivered')
                  -- and no destination still waiting for it by its cursor
                  AND NOT EXISTS (
                    SELECT 1 FROM json_each(e.destinations) j
                    WHERE e.seq > COALESCE((SELECT c.seq FROM cursors c WHERE c.destination = j.value), 0)
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq AND d.destination = j.value))
                ORDER BY e.seq LIMIT ?2)
             RETURNING size",
            before,
            limit,
        )?;
        self.sub_stored(freed);
        Ok((n, freed))
    }

    fn delete_returning_size(&mut self, sql: &str, before: i64, limit: i64) -> Result<(usize, u64), JournalError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut n = 0;
        let mut freed = 0u64;
        for size in stmt.query_map(params![before, limit], |r| r.get::<_, i64>(0))? {
            freed += size? as u64;
            n += 1;
        }
        Ok((n, freed))
    }

    /// Purges fully delivered items, oldest first, until `need` bytes are free or none is left.
    fn evict_delivered(&mut self, need: u64) -> Result<(), JournalError> {
        self.keep_useq_floor()?;
        let mut freed = 0u64;
        while freed < need {
            match self.purge_delivered(i64::MAX, 256)? {
                (0, _) => break,
                (_, bytes) => freed += bytes,
            }
        }
        if freed > 0 {
            tracing::info!(bytes = freed, "journal at its size cap: purged delivered items early");
        }
        Ok(())
    }

    /// Before rows are deleted, records the highest uplink sequence number handed out, so that
    /// numbering continues above it even when every delivery carrying one is purged.
    fn keep_useq_floor(&mut self) -> Result<(), JournalError> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('useq', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            )?
            .execute([self.next_useq - 1])?;
        Ok(())
    }

    fn sub_stored(&self, bytes: u64) {
        let _ = self
            .shared
            .stored_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(bytes)));
    }
}

/// The highest uplink sequence number ever handed out: on the newest item for central (or a
/// rerouted item's row) or, when those were purged, the floor kept in `meta`.
fn last_useq(conn: &Connection) -> i64 {
    let in_rows: i64 = conn
        .query_row(
            "SELECT max(
                COALESCE((SELECT useq FROM envelopes WHERE useq IS NOT NULL ORDER BY seq DESC LIMIT 1), 0),
                COALESCE((SELECT max(useq) FROM deliveries), 0))",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let floor: i64 =
        conn.query_row("SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'useq'", [], |r| r.get(0)).unwrap_or(0);
    in_rows.max(floor)
}

/// Rebuilds the memory of recent items from the journal's newest rows.
fn warm_recent(conn: &Connection, limits: &Limits) -> Recent {
    let mut recent = Recent::default();
    let since = now_ms() - limits.dedup_window_ms;
    let rows = conn
        .prepare(
            "SELECT seq, source, item_ref, received_at FROM envelopes
             WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM envelopes) - ?1
               AND status <> 'rejected' AND item_ref <> '' AND received_at >= ?2
             ORDER BY seq",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![recent::CAPACITY as i64, since], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        });
    match rows {
        Ok(rows) => {
            for (seq, source, control_id, at) in rows {
                recent.remember(recent::key(&source, &control_id), seq, at);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read recent items; retransmissions from before this start may be stored twice")
        }
    }
    recent
}

/// `JournalError` holds a non-Clone rusqlite error; replies to several waiters each need one.
pub(super) fn clone_error(e: &JournalError) -> JournalError {
    match e {
        JournalError::Full { stored, max } => JournalError::Full { stored: *stored, max: *max },
        JournalError::DiskFull { free, min } => JournalError::DiskFull { free: *free, min: *min },
        // Keeps the code (so a full disk is still recognised as one) and the text.
        JournalError::Sqlite(inner) => JournalError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error {
                code: inner.sqlite_error_code().unwrap_or(rusqlite::ErrorCode::Unknown),
                extended_code: 0,
            },
            Some(inner.to_string()),
        )),
        JournalError::NewerSchema { found, supported } => {
            JournalError::NewerSchema { found: *found, supported: *supported }
        }
        JournalError::Open { path, reason } => JournalError::Open { path: path.clone(), reason: reason.clone() },
        JournalError::InUse { path, holder } => JournalError::InUse { path: path.clone(), holder: holder.clone() },
        JournalError::NoSpace => JournalError::NoSpace,
        JournalError::OtherGateway { path, site, node, config_site, config_node } => JournalError::OtherGateway {
            path: path.clone(),
            site: site.clone(),
            node: node.clone(),
            config_site: config_site.clone(),
            config_node: config_node.clone(),
        },
        JournalError::Closed => JournalError::Closed,
    }
}

/// The bytes after the first CR (all of them when there is none), as SQLite's
/// `substr(body, instr(body, X'0D') + 1)` gives them.
fn after_first_line(body: &[u8]) -> &[u8] {
    match body.iter().position(|&b| b == b'\r') {
        Some(i) => &body[i + 1..],
        None => body,
    }
}

/// Adds a committed transaction's changes to the destinations' waiting counts.
fn apply_waiting(shared: &Shared, delta: Vec<(String, i64)>) {
    if delta.is_empty() {
        return;
    }
    let mut waiting = shared.waiting.lock().unwrap_or_else(|e| e.into_inner());
    for (dest, n) in delta {
        let count = waiting.entry(dest).or_default();
        *count = (*count as i64 + n).max(0) as u64;
    }
}
