//! The journal's single writer: group commit of everything waiting, one fsync per batch.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, watch};

use super::{DeliveryUpdate, Head, Inserted, JournalError, Limits, Op, Reply, Request, RetryTarget, Shared};
use crate::envelope::{NewEnvelope, Status, now_ms};

/// Most operations committed in one transaction; bounds the latency of a batch's last member.
const MAX_BATCH: usize = 1024;

/// How long a free-space reading is trusted.
const FREE_DISK_TTL: Duration = Duration::from_millis(500);

pub(super) struct Writer {
    conn: Connection,
    dir: PathBuf,
    limits: Limits,
    shared: Arc<Shared>,
    head: watch::Sender<Head>,
    ids: ulid::Generator,
    free_disk: Option<(Instant, u64)>,
    /// Held while the writer lives; released when the thread ends.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// An operation's outcome, held until its batch commits.
enum Outcome {
    Inserted(Result<Inserted, JournalError>),
    Count(usize),
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
        let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_else(|| PathBuf::from("."));
        Writer { conn, dir, limits, shared, head, ids: ulid::Generator::new(), free_disk: None, _lock: lock }
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(64);
        while let Some(req) = rx.blocking_recv() {
            batch.push(req);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.commit_batch(std::mem::take(&mut batch));
        }
        // Every handle is gone: leave the WAL checkpointed so the next start is quick.
        self.shared.closed.store(true, Ordering::Relaxed);
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    fn commit_batch(&mut self, batch: Vec<Request>) {
        match self.apply_all(&batch) {
            Ok((outcomes, head)) => self.finish(batch, outcomes, head),
            Err(e) if batch.len() == 1 => self.fail(batch, e),
            Err(_) => {
                // The transaction as a whole failed (disk full, I/O error): it was rolled back.
                // Apply each request on its own so that only those that cannot be stored fail.
                for req in batch {
                    let single = vec![req];
                    match self.apply_all(&single) {
                        Ok((outcomes, head)) => self.finish(single, outcomes, head),
                        Err(e) => self.fail(single, e),
                    }
                }
            }
        }
    }

    /// Applies requests in one transaction and commits. On error everything is rolled back.
    fn apply_all(&mut self, batch: &[Request]) -> Result<(Vec<Outcome>, Head), JournalError> {
        let stored_before = self.shared.stored_bytes.load(Ordering::Relaxed);
        let mut head = *self.head.borrow();
        let now = now_ms();
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut result = Ok(());
        for req in batch {
            match self.apply(&req.op, now, &mut head) {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let result = result.and_then(|_| self.conn.execute_batch("COMMIT").map_err(JournalError::from));
        match result {
            Ok(()) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                Ok((outcomes, head))
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.shared.stored_bytes.store(stored_before, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn finish(&mut self, batch: Vec<Request>, outcomes: Vec<Outcome>, head: Head) {
        if head != *self.head.borrow() {
            self.head.send_replace(head);
        }
        for (req, outcome) in batch.into_iter().zip(outcomes) {
            match (req.reply, outcome) {
                (Reply::Insert(tx), Outcome::Inserted(r)) => {
                    let _ = tx.send(r);
                }
                (Reply::Count(tx), Outcome::Count(n)) => {
                    let _ = tx.send(Ok(n));
                }
                (Reply::Unit(tx), _) => {
                    let _ = tx.send(());
                }
                _ => {}
            }
        }
    }

    fn fail(&mut self, batch: Vec<Request>, e: JournalError) {
        for req in batch {
            let e = clone_error(&e);
            if e.is_capacity() {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
            }
            match req.reply {
                Reply::Insert(tx) => {
                    let _ = tx.send(Err(e));
                }
                Reply::Count(tx) => {
                    let _ = tx.send(Err(e));
                }
                Reply::Unit(tx) => {
                    let _ = tx.send(());
                }
                Reply::None => {
                    if let Op::Delivery(update) = &req.op {
                        tracing::error!(error = %e, ?update, "cannot record delivery progress; the item may be delivered again");
                    }
                }
            }
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
            Op::Purge { delivered_before, problems_before } => {
                Ok(Outcome::Count(self.purge(*delivered_before, *problems_before, usize::MAX)?))
            }
            Op::SetLimits(limits) => {
                self.limits = limits.clone();
                Ok(Outcome::Unit)
            }
            Op::Barrier => Ok(Outcome::Unit),
        }
    }

    fn insert(&mut self, env: &NewEnvelope, now: i64) -> Result<Inserted, JournalError> {
        if env.status != Status::Rejected && !env.summary.control_id.is_empty() {
            let since = env.received_at - self.limits.dedup_window_ms;
            let dup: Option<(i64, String)> = self
                .conn
                .prepare_cached(
                    "SELECT seq, id FROM envelopes
                     WHERE source = ?1 AND control_id = ?2 AND received_at >= ?3 AND body = ?4
                     ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![env.source, env.summary.control_id, since, env.body], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((seq, id)) = dup {
                self.conn
                    .prepare_cached("UPDATE envelopes SET duplicates = duplicates + 1 WHERE seq = ?1")?
                    .execute([seq])?;
                self.shared.duplicates.fetch_add(1, Ordering::Relaxed);
                return Ok(Inserted::Duplicate { seq, id });
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

        let id = match self.ids.generate() {
            Ok(id) => id.to_string(),
            Err(_) => ulid::Ulid::generate().to_string(),
        };
        let routes = serde_json::to_string(&env.routes).unwrap_or_else(|_| "[]".into());
        self.conn
            .prepare_cached(
                "INSERT INTO envelopes (id, source, kind, received_at, status, size, message_type,
                    control_id, sending_app, sending_facility, version, charset, routes, note, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?
            .execute(params![
                id,
                env.source,
                env.kind.as_str(),
                env.received_at,
                env.status.as_str(),
                size as i64,
                env.summary.message_type,
                env.summary.control_id,
                env.summary.sending_application,
                env.summary.sending_facility,
                env.summary.version,
                env.charset,
                routes,
                env.note,
                env.body,
            ])?;
        let seq = self.conn.last_insert_rowid();
        {
            let mut stmt = self.conn.prepare_cached(
                "INSERT INTO deliveries (destination, seq, state, updated_at) VALUES (?1, ?2, 'pending', ?3)",
            )?;
            for dest in &env.destinations {
                stmt.execute(params![dest, seq, now])?;
            }
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
                let free = match nix::sys::statvfs::statvfs(&self.dir) {
                    Ok(s) => s.blocks_available() * s.fragment_size(),
                    Err(_) => u64::MAX,
                };
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
            DeliveryUpdate::InFlight { seq, destination } => {
                self.conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'in_flight', updated_at = ?3
                         WHERE destination = ?1 AND seq = ?2 AND state = 'pending'",
                    )?
                    .execute(params![destination, seq, now])?;
            }
            DeliveryUpdate::Delivered { seq, destination } => {
                self.conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,
                            updated_at = ?3, last_error = NULL
                         WHERE destination = ?1 AND seq = ?2",
                    )?
                    .execute(params![destination, seq, now])?;
            }
            DeliveryUpdate::Failed { seq, destination, error, outcome, next_attempt_at, give_up } => {
                let state = if *give_up { "failed" } else { "pending" };
                self.conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                            updated_at = ?5, last_error = ?6
                         WHERE destination = ?1 AND seq = ?2",
                    )?
                    .execute(params![destination, seq, state, next_attempt_at, now, error])?;
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

    fn retry(&mut self, target: &RetryTarget, now: i64) -> Result<usize, JournalError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = 0, updated_at = ?1
                 WHERE state = 'failed'
                   AND (?2 IS NULL OR seq = (SELECT seq FROM envelopes WHERE id = ?2))
                   AND (?3 IS NULL OR destination = ?3)",
            )?
            .execute(params![now, target.id, target.destination])?;
        Ok(n)
    }

    /// Deletes delivered and expired items, oldest first, at most `limit` of each kind.
    fn purge(&mut self, delivered_before: i64, problems_before: i64, limit: usize) -> Result<usize, JournalError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let mut removed = 0usize;
        let mut freed = 0u64;
        {
            let mut stmt = self.conn.prepare_cached(
                "DELETE FROM envelopes WHERE seq IN (
                    SELECT e.seq FROM envelopes e
                    WHERE e.received_at < ?1 AND e.status = 'accepted'
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq AND d.state <> 'delivered')
                    ORDER BY e.received_at LIMIT ?2)
                 RETURNING size",
            )?;
            let sizes = stmt.query_map(params![delivered_before, limit], |r| r.get::<_, i64>(0))?;
            for s in sizes {
                freed += s? as u64;
                removed += 1;
            }
        }
        {
            let mut stmt = self.conn.prepare_cached(
                "DELETE FROM envelopes WHERE seq IN (
                    SELECT seq FROM envelopes WHERE status <> 'accepted' AND received_at < ?1
                    ORDER BY seq LIMIT ?2)
                 RETURNING size",
            )?;
            let sizes = stmt.query_map(params![problems_before, limit], |r| r.get::<_, i64>(0))?;
            for s in sizes {
                freed += s? as u64;
                removed += 1;
            }
        }
        self.sub_stored(freed);
        Ok(removed)
    }

    /// Purges fully delivered items, oldest first, until `need` bytes are free or none is left.
    fn evict_delivered(&mut self, need: u64) -> Result<(), JournalError> {
        let mut freed = 0u64;
        while freed < need {
            let before = self.shared.stored_bytes.load(Ordering::Relaxed);
            let n = self.purge(i64::MAX, i64::MIN, 256)?;
            let after = self.shared.stored_bytes.load(Ordering::Relaxed);
            if n == 0 {
                break;
            }
            freed += before.saturating_sub(after);
        }
        if freed > 0 {
            tracing::info!(bytes = freed, "journal at its size cap: purged delivered items early");
        }
        Ok(())
    }

    fn sub_stored(&self, bytes: u64) {
        let _ = self
            .shared
            .stored_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(bytes)));
    }
}

/// `JournalError` holds a non-Clone rusqlite error; replies to several waiters each need one.
fn clone_error(e: &JournalError) -> JournalError {
    match e {
        JournalError::Full { stored, max } => JournalError::Full { stored: *stored, max: *max },
        JournalError::DiskFull { free, min } => JournalError::DiskFull { free: *free, min: *min },
        JournalError::Sqlite(inner) => match inner.sqlite_error_code() {
            Some(code) => JournalError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error { code, extended_code: 0 },
                Some(inner.to_string()),
            )),
            None => JournalError::Open { path: String::new(), reason: inner.to_string() },
        },
        JournalError::NewerSchema { found, supported } => {
            JournalError::NewerSchema { found: *found, supported: *supported }
        }
        JournalError::Open { path, reason } => JournalError::Open { path: path.clone(), reason: reason.clone() },
        JournalError::InUse { path, holder } => JournalError::InUse { path: path.clone(), holder: holder.clone() },
        JournalError::Closed => JournalError::Closed,
    }
}
