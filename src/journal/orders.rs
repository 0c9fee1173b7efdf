//! The order cache in the journal (schema v7): `orders`, one row per specimen id, and
//! `order_downloads`, one row per (specimen, lab link that takes downloads).
//!
//! Writes go through the single writer like everything else ([`Journal::upsert_orders`],
//! [`Journal::order_downloaded`], [`Journal::purge_orders`]); what a change does to a cached
//! order is decided by [`crate::orders::merge`], inside the writer's transaction, so the same
//! message stored twice changes nothing (no row, no time, no download).
//!
//! A download row is `pending` (action `N` new, or `C` cancel), `sent`, `failed` (given up
//! after [`MAX_DOWNLOAD_ATTEMPTS`]) or `skipped` (the instrument does none of the tests). Its
//! `version` goes up whenever it is made pending again, so a send that finishes after the order
//! changed does not mark the new content sent.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Journal, JournalError, Op, Reader, Reply};
use crate::orders::{Change, Merged, Order, State};

/// A download that failed this many times is given up (`failed`, shown in `status`).
pub const MAX_DOWNLOAD_ATTEMPTS: i64 = 5;

pub(super) enum OrderOp {
    Upsert { changes: Vec<Change>, item_id: String, download_to: Vec<String> },
    Download { specimen_id: String, source: String, version: i64, outcome: DownloadOutcome },
    Purge { before: i64 },
}

/// What became of one download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadOutcome {
    /// The instrument took the message (the link's `Sent`).
    Sent,
    /// The link gave up on it; tried again from `retry_at` (unix ms), until the last attempt.
    Failed { retry_at: i64 },
    /// The instrument does none of the order's tests.
    Skipped,
}

/// An order waiting to be pushed to one instrument.
#[derive(Debug, Clone)]
pub struct PendingDownload {
    pub order: Order,
    /// `N` or `C`.
    pub action: String,
    pub version: i64,
}

/// Counts for `status`: no content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCounts {
    /// Orders cached and active.
    pub active: u64,
    pub downloads_pending: u64,
    pub downloads_failed: u64,
}

impl Journal {
    /// Applies what an order message asks (see [`crate::orders::merge`]) and makes downloads
    /// pending for `download_to`; returns how many orders changed, once committed.
    pub async fn upsert_orders(
        &self,
        changes: Vec<Change>,
        item_id: String,
        download_to: Vec<String>,
    ) -> Result<usize, JournalError> {
        self.order_op(OrderOp::Upsert { changes, item_id, download_to }).await
    }

    /// Records what became of a download (see [`PendingDownload::version`]).
    pub async fn order_downloaded(
        &self,
        specimen_id: String,
        source: String,
        version: i64,
        outcome: DownloadOutcome,
    ) -> Result<usize, JournalError> {
        self.order_op(OrderOp::Download { specimen_id, source, version, outcome }).await
    }

    /// Deletes orders that last changed before `before` (unix ms), and their downloads.
    pub async fn purge_orders(&self, before: i64) -> Result<usize, JournalError> {
        self.order_op(OrderOp::Purge { before }).await
    }

    async fn order_op(&self, op: OrderOp) -> Result<usize, JournalError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Orders(op), Reply::Count(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }
}

/// The writer's side, inside its open transaction.
pub(super) fn apply(conn: &Connection, op: &OrderOp, now: i64) -> Result<usize, JournalError> {
    match op {
        OrderOp::Upsert { changes, item_id, download_to } => upsert(conn, changes, item_id, download_to, now),
        OrderOp::Download { specimen_id, source, version, outcome } => {
            let n = match outcome {
                DownloadOutcome::Sent => conn
                    .prepare_cached(
                        "UPDATE order_downloads SET state = 'sent', attempts = attempts + 1, updated_at = ?4
                         WHERE specimen_id = ?1 AND source = ?2 AND version = ?3 AND state = 'pending'",
                    )?
                    .execute(params![specimen_id, source, version, now])?,
                DownloadOutcome::Failed { retry_at } => conn
                    .prepare_cached(
                        "UPDATE order_downloads SET attempts = attempts + 1, next_attempt_at = ?5, updated_at = ?4,
                            state = CASE WHEN attempts + 1 >= ?6 THEN 'failed' ELSE 'pending' END
                         WHERE specimen_id = ?1 AND source = ?2 AND version = ?3 AND state = 'pending'",
                    )?
                    .execute(params![specimen_id, source, version, now, retry_at, MAX_DOWNLOAD_ATTEMPTS])?,
                DownloadOutcome::Skipped => conn
                    .prepare_cached(
                        "UPDATE order_downloads SET state = 'skipped', updated_at = ?4
                         WHERE specimen_id = ?1 AND source = ?2 AND version = ?3 AND state = 'pending'",
                    )?
                    .execute(params![specimen_id, source, version, now])?,
            };
            Ok(n)
        }
        OrderOp::Purge { before } => {
            Ok(conn.prepare_cached("DELETE FROM orders WHERE received_at < ?1")?.execute([before])?)
        }
    }
}

fn upsert(
    conn: &Connection,
    changes: &[Change],
    item_id: &str,
    download_to: &[String],
    now: i64,
) -> Result<usize, JournalError> {
    let mut changed = 0;
    for change in changes {
        let existing = load(conn, &change.specimen_id)?;
        let merged = crate::orders::merge(existing.as_ref(), change, item_id, now);
        let order = match &merged {
            Merged::Unchanged => continue,
            Merged::Active(o) | Merged::Cancelled(o) | Merged::Reduced(o) => o,
        };
        save(conn, order)?;
        changed += 1;
        match merged {
            Merged::Active(_) => {
                let mut pend = conn.prepare_cached(
                    "INSERT INTO order_downloads (specimen_id, source, state, action, updated_at)
                     VALUES (?1, ?2, 'pending', 'N', ?3)
                     ON CONFLICT (specimen_id, source) DO UPDATE SET state = 'pending', action = 'N',
                        attempts = 0, next_attempt_at = 0, updated_at = ?3, version = version + 1",
                )?;
                for source in download_to {
                    pend.execute(params![order.specimen_id, source, now])?;
                }
            }
            Merged::Reduced(_) => {
                // Not sent yet: it goes with the tests left (a send under way is not marked sent).
                conn.prepare_cached(
                    "UPDATE order_downloads SET version = version + 1, updated_at = ?2
                     WHERE specimen_id = ?1 AND state = 'pending'",
                )?
                .execute(params![order.specimen_id, now])?;
            }
            Merged::Cancelled(_) => {
                // Instruments that have it are told to cancel it; the others never get it.
                conn.prepare_cached(
                    "DELETE FROM order_downloads WHERE specimen_id = ?1 AND state <> 'sent' AND action = 'N'",
                )?
                .execute([&order.specimen_id])?;
                conn.prepare_cached(
                    "UPDATE order_downloads SET state = 'pending', action = 'C', attempts = 0, next_attempt_at = 0,
                        updated_at = ?2, version = version + 1
                     WHERE specimen_id = ?1 AND state = 'sent'",
                )?
                .execute(params![order.specimen_id, now])?;
            }
            Merged::Unchanged => {}
        }
    }
    Ok(changed)
}

const COLUMNS: &str =
    "specimen_id, placer, filler, state, priority, specimen_type, tests, patient, item_id, received_at";

fn order_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Order> {
    let json = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let tests: String = json(6)?;
    let patient: String = json(7)?;
    Ok(Order {
        specimen_id: r.get(0)?,
        placer: r.get(1)?,
        filler: r.get(2)?,
        state: State::parse(&r.get::<_, String>(3)?),
        priority: r.get(4)?,
        specimen_type: r.get(5)?,
        // Written by this module from these types; a row that does not read is an empty one.
        tests: serde_json::from_str(&tests).unwrap_or_default(),
        patient: serde_json::from_str(&patient).unwrap_or_default(),
        item_id: r.get(8)?,
        received_at: r.get(9)?,
    })
}

fn load(conn: &Connection, specimen_id: &str) -> Result<Option<Order>, JournalError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM orders WHERE specimen_id = ?1"))?
        .query_row([specimen_id], order_of)
        .optional()?)
}

fn save(conn: &Connection, o: &Order) -> Result<(), JournalError> {
    let tests = serde_json::to_string(&o.tests).unwrap_or_else(|_| "[]".into());
    let patient = serde_json::to_string(&o.patient).unwrap_or_else(|_| "{}".into());
    conn.prepare_cached(&format!(
        "INSERT INTO orders ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (specimen_id) DO UPDATE SET placer = ?2, filler = ?3, state = ?4, priority = ?5,
            specimen_type = ?6, tests = ?7, patient = ?8, item_id = ?9, received_at = ?10"
    ))?
    .execute(params![
        o.specimen_id,
        o.placer,
        o.filler,
        o.state.as_str(),
        o.priority,
        o.specimen_type,
        tests,
        patient,
        o.item_id,
        o.received_at
    ])?;
    Ok(())
}

/// Shape of a cached order for `status` and tests: what is cached, by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRow {
    pub specimen_id: String,
    pub source: String,
    pub state: String,
    pub action: String,
    pub attempts: i64,
}

impl Reader {
    /// The active orders for these specimen ids (an instrument's query), in the ids' order.
    pub fn orders_for(&self, specimen_ids: &[String]) -> Result<Vec<Order>, JournalError> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM orders WHERE specimen_id = ?1 AND state = 'active'"))?;
        let mut out = Vec::new();
        for id in specimen_ids {
            if let Some(o) = stmt.query_row([id], order_of).optional()? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// The order cached for one specimen, whatever its state.
    pub fn order(&self, specimen_id: &str) -> Result<Option<Order>, JournalError> {
        load(self.conn(), specimen_id)
    }

    /// Downloads due for `source` at `now`, oldest change first, at most `limit`.
    pub fn pending_downloads(
        &self,
        source: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<PendingDownload>, JournalError> {
        let cols: String = COLUMNS.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ");
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT {cols}, d.action, d.version FROM order_downloads d JOIN orders o USING (specimen_id)
             WHERE d.source = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2
             ORDER BY o.received_at LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![source, now, limit as i64], |r| {
            Ok(PendingDownload { order: order_of(r)?, action: r.get(10)?, version: r.get(11)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the next failed download of `source` is due again (unix ms), if one waits.
    pub fn next_download_retry(&self, source: &str, now: i64) -> Result<Option<i64>, JournalError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT MIN(next_attempt_at) FROM order_downloads
                 WHERE source = ?1 AND state = 'pending' AND next_attempt_at > ?2",
            )?
            .query_row(params![source, now], |r| r.get(0))?)
    }

    /// Every download row (for tests and `status`).
    pub fn downloads(&self) -> Result<Vec<DownloadRow>, JournalError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT specimen_id, source, state, action, attempts FROM order_downloads ORDER BY specimen_id, source",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DownloadRow {
                specimen_id: r.get(0)?,
                source: r.get(1)?,
                state: r.get(2)?,
                action: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts for `status`.
    pub fn order_counts(&self) -> Result<OrderCounts, JournalError> {
        let conn = self.conn();
        let active: i64 =
            conn.prepare_cached("SELECT count(*) FROM orders WHERE state = 'active'")?.query_row([], |r| r.get(0))?;
        let mut by_state = conn.prepare_cached(
            "SELECT state, count(*) FROM order_downloads WHERE state IN ('pending', 'failed') GROUP BY state",
        )?;
        let mut counts = OrderCounts { active: active as u64, ..OrderCounts::default() };
        for row in by_state.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            match row? {
                (s, n) if s == "pending" => counts.downloads_pending = n as u64,
                (_, n) => counts.downloads_failed = n as u64,
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{Control, Patient, Test};

    fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let limits = super::super::Limits {
            uplink_destination: None,
            max_bytes: 1 << 30,
            min_free_disk: 0,
            dedup_window_ms: 86_400_000,
        };
        let j = Journal::open(&dir.path().join("journal.db"), limits).unwrap();
        (dir, j)
    }

    fn change(control: Control, specimen: &str, codes: &[&str]) -> Change {
        Change {
            control,
            specimen_id: specimen.into(),
            placer: "PL1".into(),
            filler: String::new(),
            tests: codes.iter().map(|c| Test { code: c.to_string(), ..Test::default() }).collect(),
            priority: "R".into(),
            patient: Patient { id: "MRN1".into(), ..Patient::default() },
            specimen_type: String::new(),
        }
    }

    fn rows(j: &Journal) -> Vec<(String, String, String)> {
        j.reader().unwrap().downloads().unwrap().into_iter().map(|d| (d.source, d.state, d.action)).collect()
    }

    #[tokio::test]
    async fn the_same_order_twice_changes_nothing_and_a_cancel_after_a_download_sends_c() {
        let (_dir, j) = journal();
        let to = vec!["lab".to_string(), "chem".to_string()];
        let new = vec![change(Control::New, "S1", &["WBC"])];
        assert_eq!(j.upsert_orders(new.clone(), "ITEM1".into(), to.clone()).await.unwrap(), 1);
        let r = j.reader().unwrap();
        let before = r.order("S1").unwrap().unwrap();
        assert_eq!(before.item_id, "ITEM1");
        let pending = r.pending_downloads("lab", i64::MAX, 10).unwrap();
        assert_eq!((pending.len(), pending[0].action.as_str()), (1, "N"));
        // The EHR retransmits: nothing changes.
        assert_eq!(j.upsert_orders(new, "ITEM2".into(), to.clone()).await.unwrap(), 0);
        assert_eq!(r.order("S1").unwrap().unwrap(), before);
        let version = pending[0].version;
        assert_eq!(j.order_downloaded("S1".into(), "lab".into(), version, DownloadOutcome::Sent).await.unwrap(), 1);
        assert!(r.pending_downloads("lab", i64::MAX, 10).unwrap().is_empty());
        assert_eq!(r.orders_for(&["S1".into(), "S9".into()]).unwrap().len(), 1);
        // Cancelled: the instrument that has it is told; the one that never got it is not.
        let cancel = vec![change(Control::Cancel, "S1", &[])];
        assert_eq!(j.upsert_orders(cancel, "ITEM3".into(), to).await.unwrap(), 1);
        assert_eq!(rows(&j), [("lab".to_string(), "pending".to_string(), "C".to_string())]);
        assert!(r.orders_for(&["S1".into()]).unwrap().is_empty(), "a cancelled order answers no query");
        let counts = r.order_counts().unwrap();
        assert_eq!((counts.active, counts.downloads_pending), (0, 1));
    }

    #[tokio::test]
    async fn a_failed_download_waits_then_gives_up_and_a_stale_version_marks_nothing() {
        let (_dir, j) = journal();
        j.upsert_orders(vec![change(Control::New, "S2", &["WBC"])], "I1".into(), vec!["lab".into()]).await.unwrap();
        let r = j.reader().unwrap();
        let v = r.pending_downloads("lab", 0, 10).unwrap()[0].version;
        j.order_downloaded("S2".into(), "lab".into(), v, DownloadOutcome::Failed { retry_at: 5_000 }).await.unwrap();
        assert!(r.pending_downloads("lab", 4_999, 10).unwrap().is_empty());
        assert_eq!(r.next_download_retry("lab", 4_999).unwrap(), Some(5_000));
        assert_eq!(r.pending_downloads("lab", 5_000, 10).unwrap().len(), 1);
        // The order changes while a send is under way: that send does not mark the new one.
        j.upsert_orders(vec![change(Control::New, "S2", &["HGB"])], "I2".into(), vec!["lab".into()]).await.unwrap();
        assert_eq!(j.order_downloaded("S2".into(), "lab".into(), v, DownloadOutcome::Sent).await.unwrap(), 0);
        let d = &r.pending_downloads("lab", 0, 10).unwrap()[0];
        assert_eq!(d.order.tests.len(), 2);
        for _ in 0..MAX_DOWNLOAD_ATTEMPTS {
            j.order_downloaded("S2".into(), "lab".into(), d.version, DownloadOutcome::Failed { retry_at: 0 })
                .await
                .unwrap();
        }
        assert_eq!(rows(&j), [("lab".to_string(), "failed".to_string(), "N".to_string())]);
        assert_eq!(r.order_counts().unwrap().downloads_failed, 1);
        // Purged with its downloads.
        assert_eq!(j.purge_orders(i64::MAX).await.unwrap(), 1);
        assert!(rows(&j).is_empty());
    }
}
