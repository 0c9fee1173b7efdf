//! Read-only queries of the journal, on a connection of their own (WAL readers never block
//! the writer). Synchronous: async callers go through `Journal::read` or a `SharedReader`.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{DeliveryState, JournalError};
use crate::envelope::{Kind, Status, Summary};

/// The next undelivered item for a destination.
#[derive(Debug, Clone)]
pub struct PendingItem {
    pub seq: i64,
    pub id: String,
    pub received_at: i64,
    pub body: Vec<u8>,
    /// What the item is (destinations write and transform by kind).
    pub kind: Kind,
    pub charset: Option<String>,
    /// The sender's own id for the item (HL7: MSH-10; an MLLP destination checks its ACK
    /// against it).
    pub item_ref: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
}

/// An item as the uplink sends it to central.
#[derive(Debug, Clone)]
pub struct UplinkItem {
    pub seq: i64,
    /// The uplink sequence number (contiguous over items sent to central).
    pub useq: i64,
    pub id: String,
    pub source: String,
    pub kind: String,
    pub status: String,
    pub received_at: i64,
    pub summary: Summary,
    pub charset: Option<String>,
    pub body: Vec<u8>,
}

/// The uplink's backlog: deliveries to central not yet acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UplinkBacklog {
    pub items: u64,
    pub oldest_received_at: Option<i64>,
    /// Highest journal seq among them.
    pub last_seq: Option<i64>,
    pub first_useq: Option<i64>,
    pub last_useq: Option<i64>,
}

/// An unrouted item, with what routing needs to look at it again.
#[derive(Debug, Clone)]
pub struct UnroutedItem {
    pub seq: i64,
    pub id: String,
    pub source: String,
    pub kind: Kind,
    pub charset: Option<String>,
    pub body: Vec<u8>,
    /// Its summary's fields (what the adapter knew of it too: a fax's caller id).
    pub fields: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub destination: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: i64,
    /// When its row last changed; none for a delivery with no row (see schema migration 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRow {
    pub destination: String,
    pub at: i64,
    pub outcome: String,
    pub error: String,
}

/// An envelope as the CLI shows it (body only on request).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub seq: i64,
    pub id: String,
    pub source: String,
    pub kind: String,
    pub received_at: i64,
    pub status: String,
    pub size: u64,
    /// What sort of item (HL7: the message type); also in `summary` by the kind's own name.
    #[serde(rename = "type")]
    pub item_type: String,
    pub summary: Summary,
    pub charset: Option<String>,
    pub routes: Vec<String>,
    pub note: Option<String>,
    pub duplicates: u32,
    pub deliveries: Vec<DeliveryRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRow>,
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
}

/// Which items `queue ls` lists.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    /// `None`: every item not yet fully delivered.
    pub state: Option<StateFilter>,
    pub destination: Option<String>,
    pub limit: usize,
}

/// The `--state` of `queue ls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Every item, delivered or not.
    All,
    /// Items with a delivery (to the filter's destination, if any) in this state.
    Delivery(DeliveryState),
    /// Items kept with this status (unrouted or rejected ones have no deliveries).
    Status(Status),
}

impl StateFilter {
    /// `all`, a delivery state, or `unrouted` / `rejected`.
    pub fn parse(s: &str) -> Option<StateFilter> {
        if s == "all" {
            return Some(StateFilter::All);
        }
        // Accepted items are listed by the state of their deliveries.
        let kept = || Status::parse(s).filter(|status| *status != Status::Accepted).map(StateFilter::Status);
        DeliveryState::parse(s).map(StateFilter::Delivery).or_else(kept)
    }
}

/// Per-destination and per-status counts for `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusCounts {
    /// destination → (pending incl. in flight, failed, oldest pending received_at)
    pub destinations: Vec<(String, u64, u64, Option<i64>)>,
    pub unrouted: u64,
    pub rejected: u64,
    pub envelopes: u64,
    /// Escalation events kept for central, not yet acknowledged.
    pub events: u64,
}

pub struct Reader {
    conn: Connection,
    shared: std::sync::Arc<super::Shared>,
}

impl Reader {
    /// For the queries kept beside the tables they read (`orders.rs`).
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }
}

const UPLINK_COLUMNS: &str =
    "e.seq, COALESCE(e.useq, d.useq), e.id, e.source, e.kind, e.status, e.received_at, e.item_type,
    e.item_ref, e.summary, e.charset, e.body";

fn uplink_item(r: &Row<'_>) -> rusqlite::Result<UplinkItem> {
    Ok(UplinkItem {
        seq: r.get(0)?,
        useq: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
        id: r.get(2)?,
        source: r.get(3)?,
        kind: r.get(4)?,
        status: r.get(5)?,
        received_at: r.get(6)?,
        summary: summary_at(r, 7)?,
        charset: r.get(10)?,
        body: r.get(11)?,
    })
}

const ITEM_COLUMNS: &str = "e.seq, e.id, e.source, e.kind, e.received_at, e.status, e.size, e.item_type,
    e.item_ref, e.summary, e.charset, e.routes, e.note, e.duplicates";

impl Reader {
    pub(super) fn new(conn: Connection, shared: std::sync::Arc<super::Shared>) -> Self {
        Reader { conn, shared }
    }

    /// `destination`'s cursor (see schema migration 9); `None` when it has none (nothing has
    /// waited for it by the cursor).
    fn cursor(&self, destination: &str) -> Result<Option<i64>, JournalError> {
        super::cursor_of(&self.conn, destination)
    }

    /// Seqs of the items waiting for `destination` with `after < seq <= upto`, in journal order
    /// (`limit` at most): those with a pending row, and those after its cursor with none.
    fn waiting_seqs(&self, destination: &str, after: i64, upto: i64, limit: usize) -> Result<Vec<i64>, JournalError> {
        let mut seqs = self.waiting_rows(destination, after, upto, limit)?;
        seqs.extend(self.by_cursor(destination, (after, upto), false, false, limit)?);
        seqs.sort_unstable();
        seqs.dedup();
        seqs.truncate(limit);
        Ok(seqs)
    }

    /// Seqs of the items with a pending row for `destination` (a failed attempt, a retry) with
    /// `after < seq <= upto`, in journal order.
    fn waiting_rows(&self, destination: &str, after: i64, upto: i64, limit: usize) -> Result<Vec<i64>, JournalError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT seq FROM deliveries WHERE destination = ?1 AND state IN ('pending', 'in_flight')
                   AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
            )?
            .query_map(params![destination, after, upto, limit.min(i64::MAX as usize) as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Seqs of items for `destination` with no delivery row and `after < seq <= upto`, in
    /// journal order (`newest_first`: the other way): with `delivered`, those its cursor has
    /// passed (delivered at the first attempt), otherwise those after it (waiting).
    fn by_cursor(
        &self,
        destination: &str,
        (after, upto): (i64, i64),
        delivered: bool,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<i64>, JournalError> {
        let Some(cursor) = self.cursor(destination)? else { return Ok(Vec::new()) };
        let (after, upto) = if delivered { (after, upto.min(cursor)) } else { (after.max(cursor), upto) };
        if after >= upto {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT e.seq FROM envelopes e WHERE e.seq > ?2 AND e.seq <= ?3 AND {}
             ORDER BY e.seq {} LIMIT ?4",
            super::NO_ROW_FOR_DESTINATION,
            if newest_first { "DESC" } else { "ASC" }
        );
        let seqs = self
            .conn
            .prepare_cached(&sql)?
            .query_map(params![destination, after, upto, limit.min(i64::MAX as usize) as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(seqs)
    }

    /// Every destination with a cursor.
    fn cursor_destinations(&self) -> Result<Vec<String>, JournalError> {
        Ok(self
            .conn
            .prepare_cached("SELECT destination FROM cursors ORDER BY destination")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn uplink_by_seq(&self, destination: &str, seqs: &[i64]) -> Result<Vec<UplinkItem>, JournalError> {
        let sql = format!(
            "SELECT {UPLINK_COLUMNS} FROM envelopes e LEFT JOIN deliveries d ON d.seq = e.seq AND d.destination = ?1
             WHERE e.seq = ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut items = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(item) = stmt.query_row(params![destination, seq], uplink_item).optional()? {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// The first seq from which items for central carry uplink sequence numbers of `from` or
    /// more. Numbers grow with seq, except a rerouted item's (an old seq given a new number, too
    /// high for its place, which only moves this lower; its row carries the number too): a
    /// binary search over seq, each probe reading forward to the next item for central.
    fn first_seq_for_useq(&self, from: i64) -> Result<i64, JournalError> {
        let (mut lo, mut hi): (i64, i64) =
            self.conn.query_row("SELECT COALESCE(min(seq), 0), COALESCE(max(seq), 0) FROM envelopes", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let mut probe = self.conn.prepare_cached(
            "SELECT seq, useq FROM envelopes WHERE seq >= ?1 AND useq IS NOT NULL ORDER BY seq LIMIT 1",
        )?;
        // Every item for central before `lo` has a number below `from`.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match probe.query_row([mid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).optional()? {
                Some((seq, useq)) if useq < from => lo = seq + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// Undelivered items for `destination` after `after_seq`, in journal order.
    pub fn pending(&self, destination: &str, after_seq: i64, limit: usize) -> Result<Vec<PendingItem>, JournalError> {
        self.pending_upto(destination, after_seq, i64::MAX, limit)
    }

    /// Undelivered items for `destination` with `after_seq < seq <= upto_seq`, in journal order.
    /// A delivery worker reads up to the synced head ([`super::Journal::head`]): an item
    /// committed but not yet synced may still vanish in a power cut, and is not sent on.
    pub fn pending_upto(
        &self,
        destination: &str,
        after_seq: i64,
        upto_seq: i64,
        limit: usize,
    ) -> Result<Vec<PendingItem>, JournalError> {
        // Then attempts, next attempt, kind.
        const ITEM: &str = "e.seq, e.id, e.received_at, e.body, e.charset, e.item_ref";
        let item = |r: &Row<'_>| {
            Ok(PendingItem {
                seq: r.get(0)?,
                id: r.get(1)?,
                received_at: r.get(2)?,
                body: r.get(3)?,
                charset: r.get(4)?,
                item_ref: r.get(5)?,
                attempts: r.get(6)?,
                next_attempt_at: r.get(7)?,
                kind: kind_at(r, 8)?,
            })
        };
        let limit_sql = limit.min(i64::MAX as usize) as i64;
        // Items with a pending row (a failed attempt, a retry): few, read by seq.
        let rows = self.waiting_rows(destination, after_seq, upto_seq, limit)?;
        // Items waiting by the cursor, read whole in one pass (the common case).
        let mut items: Vec<PendingItem> = match self.cursor(destination)? {
            Some(cursor) if after_seq.max(cursor) < upto_seq => {
                // No row: no attempt made yet.
                let sql = format!(
                    "SELECT {ITEM}, 0, 0, e.kind FROM envelopes e WHERE e.seq > ?2 AND e.seq <= ?3 AND {}
                     ORDER BY e.seq LIMIT ?4",
                    super::NO_ROW_FOR_DESTINATION
                );
                self.conn
                    .prepare_cached(&sql)?
                    .query_map(params![destination, after_seq.max(cursor), upto_seq, limit_sql], item)?
                    .collect::<Result<_, _>>()?
            }
            _ => Vec::new(),
        };
        if !rows.is_empty() {
            let sql = format!(
                "SELECT {ITEM}, d.attempts, d.next_attempt_at, e.kind
                 FROM envelopes e JOIN deliveries d ON d.seq = e.seq AND d.destination = ?1
                 WHERE e.seq = ?2"
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            for seq in rows {
                items.extend(stmt.query_row(params![destination, seq], item).optional()?);
            }
            items.sort_by_key(|i| i.seq);
            items.dedup_by_key(|i| i.seq);
            items.truncate(limit);
        }
        Ok(items)
    }

    /// Unacknowledged uplink items for `destination` with `after_seq < seq <= upto_seq`, in
    /// journal order.
    pub fn uplink_pending(
        &self,
        destination: &str,
        after_seq: i64,
        upto_seq: i64,
        limit: usize,
    ) -> Result<Vec<UplinkItem>, JournalError> {
        let seqs = self.waiting_seqs(destination, after_seq, upto_seq, limit)?;
        self.uplink_by_seq(destination, &seqs)
    }

    /// Uplink items still in the journal whose uplink sequence number is in
    /// `from_useq..=to_useq`, acknowledged or not, after `after_seq`, in journal order (for a
    /// resend central asked for).
    pub fn uplink_range(
        &self,
        destination: &str,
        from_useq: i64,
        to_useq: i64,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<UplinkItem>, JournalError> {
        let limit_sql = limit.min(i64::MAX as usize) as i64;
        // Rerouted items carry their number in their row; the rest, on the item, in seq order.
        let mut seqs: Vec<i64> = self
            .conn
            .prepare_cached(
                "SELECT seq FROM deliveries WHERE destination = ?1 AND useq BETWEEN ?2 AND ?3 AND seq > ?4
                 ORDER BY seq LIMIT ?5",
            )?
            .query_map(params![destination, from_useq, to_useq, after_seq, limit_sql], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let start = after_seq.max(self.first_seq_for_useq(from_useq)? - 1);
        let on_items: Vec<i64> = self
            .conn
            .prepare_cached(
                "SELECT seq FROM envelopes WHERE seq > ?2 AND useq BETWEEN ?3 AND ?4
                   AND instr(destinations, json_quote(?1)) > 0
                 ORDER BY seq LIMIT ?5",
            )?
            .query_map(params![destination, start, from_useq, to_useq, limit_sql], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        seqs.extend(on_items);
        seqs.sort_unstable();
        seqs.dedup();
        seqs.truncate(limit);
        self.uplink_by_seq(destination, &seqs)
    }

    /// One uplink item by journal seq, if it is still waiting for central.
    pub fn uplink_one(&self, destination: &str, seq: i64) -> Result<Option<UplinkItem>, JournalError> {
        let seqs = self.waiting_seqs(destination, seq - 1, seq, 1)?;
        Ok(self.uplink_by_seq(destination, &seqs)?.pop())
    }

    /// Escalation events kept for central (not yet acknowledged), oldest first: (id, payload).
    pub fn uplink_events(&self, limit: usize) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        let mut stmt = self.conn.prepare_cached("SELECT id, payload FROM uplink_events ORDER BY eseq LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Unacknowledged uplink items up to journal seq `upto_seq`.
    pub fn uplink_backlog(&self, destination: &str, upto_seq: i64) -> Result<UplinkBacklog, JournalError> {
        let (items, _) = self.waiting_count(destination, upto_seq)?;
        if items == 0 {
            return Ok(UplinkBacklog::default());
        }
        let first = self.waiting_seqs(destination, 0, upto_seq, 1)?;
        let mut last: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT max(seq) FROM deliveries WHERE destination = ?1 AND state IN ('pending', 'in_flight') AND seq <= ?2",
            )?
            .query_row(params![destination, upto_seq], |r| r.get(0))?;
        if let Some(seq) = self.by_cursor(destination, (0, upto_seq), false, true, 1)?.first() {
            last = last.max(Some(*seq));
        }
        let ends: Vec<i64> = first.iter().copied().chain(last).collect();
        let ends = self.uplink_by_seq(destination, &ends)?;
        Ok(UplinkBacklog {
            items,
            oldest_received_at: ends.first().map(|i| i.received_at),
            last_seq: ends.last().map(|i| i.seq),
            first_useq: ends.first().map(|i| i.useq),
            last_useq: ends.last().map(|i| i.useq),
        })
    }

    /// Items waiting for `destination` up to seq `upto` (rows pending or in flight, and those
    /// waiting by its cursor, which the writer counts), and its dead letters.
    fn waiting_count(&self, destination: &str, upto: i64) -> Result<(u64, u64), JournalError> {
        let (rows, failed): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT count(*) FILTER (WHERE state <> 'failed' AND seq <= ?2), count(*) FILTER (WHERE state = 'failed')
                 FROM deliveries WHERE destination = ?1 AND state <> 'delivered'",
            )?
            .query_row(params![destination, upto], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let by_cursor = self.shared.waiting.lock().unwrap_or_else(|e| e.into_inner()).get(destination).copied();
        let mut waiting = rows as u64 + by_cursor.unwrap_or(0);
        if by_cursor.is_some_and(|n| n > 0) && upto < i64::MAX {
            // Those after `upto` (a recent head: few) are not asked for.
            let later = self.by_cursor(destination, (upto, i64::MAX), false, false, usize::MAX)?.len() as u64;
            waiting = waiting.saturating_sub(later);
        }
        Ok((waiting, failed as u64))
    }

    /// Unrouted items: one (by id or seq) or the oldest `limit`.
    pub fn unrouted(&self, id: Option<&str>, limit: usize) -> Result<Vec<UnroutedItem>, JournalError> {
        let map = |r: &Row<'_>| {
            Ok(UnroutedItem {
                seq: r.get(0)?,
                id: r.get(1)?,
                source: r.get(2)?,
                charset: r.get(3)?,
                body: r.get(4)?,
                kind: kind_at(r, 5)?,
                fields: r
                    .get::<_, Option<String>>(6)?
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default(),
            })
        };
        let sql = "SELECT seq, id, source, charset, body, kind, summary FROM envelopes WHERE status = 'unrouted'";
        match id {
            Some(text) => {
                let Some((seq, id)) = super::resolve_id(text) else { return Ok(Vec::new()) };
                let mut stmt = self.conn.prepare_cached(&format!("{sql} AND seq = ?1"))?;
                let items: Vec<UnroutedItem> = stmt.query_map([seq], map)?.collect::<Result<_, _>>()?;
                Ok(items.into_iter().filter(|i| id.as_ref().is_none_or(|id| *id == i.id)).collect())
            }
            None => {
                let mut stmt = self.conn.prepare_cached(&format!("{sql} ORDER BY seq LIMIT ?1"))?;
                Ok(stmt.query_map([limit as i64], map)?.collect::<Result<_, _>>()?)
            }
        }
    }

    /// Whether the file `name` with this digest was taken by `source` (all its items committed).
    pub fn file_taken(&self, source: &str, name: &str, digest: &str) -> Result<bool, JournalError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM source_files WHERE source = ?1 AND name = ?2 AND digest = ?3")?
            .query_row(params![source, name, digest], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn status_counts(&self) -> Result<StatusCounts, JournalError> {
        let mut counts = StatusCounts::default();
        // Rows are counted from the queue index; items waiting by a cursor are counted by the
        // writer: nothing here reads a backlog.
        let mut names: Vec<String> = self
            .conn
            .prepare_cached("SELECT DISTINCT destination FROM deliveries WHERE state <> 'delivered'")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        {
            let waiting = self.shared.waiting.lock().unwrap_or_else(|e| e.into_inner());
            names.extend(waiting.iter().filter(|(_, n)| **n > 0).map(|(d, _)| d.clone()));
        }
        names.sort();
        names.dedup();
        // The oldest waiting item of each destination is its first in journal order.
        let mut oldest = self.conn.prepare_cached("SELECT received_at FROM envelopes WHERE seq = ?1")?;
        for dest in names {
            let (waiting, failed) = self.waiting_count(&dest, i64::MAX)?;
            if waiting == 0 && failed == 0 {
                continue;
            }
            let first = match self.waiting_seqs(&dest, 0, i64::MAX, 1)?.first() {
                Some(seq) => oldest.query_row([seq], |r| r.get::<_, i64>(0)).optional()?,
                None => None,
            };
            counts.destinations.push((dest, waiting, failed, first));
        }
        counts.events =
            self.conn.prepare_cached("SELECT count(*) FROM uplink_events")?.query_row([], |r| r.get::<_, i64>(0))?
                as u64;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, count(*) FROM envelopes WHERE status <> 'accepted' GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (status, n) = row?;
            match Status::parse(&status) {
                Some(Status::Unrouted) => counts.unrouted = n as u64,
                Some(Status::Rejected) => counts.rejected = n as u64,
                _ => {}
            }
        }
        counts.envelopes = self.conn.query_row("SELECT count(*) FROM envelopes", [], |r| r.get::<_, i64>(0))? as u64;
        Ok(counts)
    }

    /// Lists items, newest first.
    pub fn list(&self, filter: &ItemFilter) -> Result<Vec<Item>, JournalError> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let seqs: Vec<i64> = match filter.state {
            Some(StateFilter::Status(status)) => {
                let mut stmt = self
                    .conn
                    .prepare_cached("SELECT seq FROM envelopes WHERE status = ?1 ORDER BY seq DESC LIMIT ?2")?;
                stmt.query_map(params![status.as_str(), limit], |r| r.get(0))?.collect::<Result<_, _>>()?
            }
            Some(StateFilter::All) => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT e.seq FROM envelopes e
                     WHERE ?1 IS NULL OR instr(e.destinations, json_quote(?1)) > 0
                        OR EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq AND d.destination = ?1)
                     ORDER BY e.seq DESC LIMIT ?2",
                )?;
                stmt.query_map(params![filter.destination, limit], |r| r.get(0))?.collect::<Result<_, _>>()?
            }
            Some(StateFilter::Delivery(_)) | None => {
                // A delivery state, or (None) everything not yet delivered.
                let state = match filter.state {
                    Some(StateFilter::Delivery(state)) => Some(state),
                    _ => None,
                };
                let mut stmt = self.conn.prepare_cached(
                    "SELECT DISTINCT d.seq FROM deliveries d
                     WHERE (?1 IS NULL AND d.state <> 'delivered' OR d.state = ?1)
                       AND (?2 IS NULL OR d.destination = ?2)
                     ORDER BY d.seq DESC LIMIT ?3",
                )?;
                let mut seqs: Vec<i64> = stmt
                    .query_map(params![state, filter.destination, limit], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                // Items with no row: waiting (pending) or delivered, by each destination's cursor.
                let by_cursor = match state {
                    None | Some(DeliveryState::Pending) => Some(false),
                    Some(DeliveryState::Delivered) => Some(true),
                    Some(DeliveryState::InFlight | DeliveryState::Failed) => None,
                };
                if let Some(delivered) = by_cursor {
                    let dests = match &filter.destination {
                        Some(d) => vec![d.clone()],
                        None => self.cursor_destinations()?,
                    };
                    for dest in dests {
                        seqs.extend(self.by_cursor(&dest, (0, i64::MAX), delivered, true, limit as usize)?);
                    }
                }
                seqs.sort_unstable_by(|a, b| b.cmp(a));
                seqs.dedup();
                seqs.truncate(limit as usize);
                seqs
            }
        };
        let mut items = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(item) = self.item_by_seq(seq, false, false)? {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// One item by id (a full ULID, any case) or by journal seq number.
    pub fn show(&self, id: &str, with_body: bool) -> Result<Option<Item>, JournalError> {
        let Some((seq, id)) = super::resolve_id(id) else { return Ok(None) };
        let item = self.item_by_seq(seq, true, with_body)?;
        Ok(item.filter(|item| id.as_ref().is_none_or(|id| *id == item.id)))
    }

    fn item_by_seq(&self, seq: i64, with_attempts: bool, with_body: bool) -> Result<Option<Item>, JournalError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM envelopes e WHERE e.seq = ?1");
        let item = self.conn.prepare_cached(&sql)?.query_row([seq], item_from_row).optional()?;
        let Some(mut item) = item else { return Ok(None) };
        let mut stmt = self.conn.prepare_cached(
            "SELECT destination, state, attempts, next_attempt_at, updated_at, last_error
             FROM deliveries WHERE seq = ?1 ORDER BY destination",
        )?;
        item.deliveries = stmt
            .query_map([seq], |r| {
                Ok(DeliveryRow {
                    destination: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_at: r.get(3)?,
                    updated_at: Some(r.get(4)?),
                    last_error: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        // Destinations with no row: delivered at the first attempt once the cursor passed it.
        let destinations: String = self
            .conn
            .prepare_cached("SELECT destinations FROM envelopes WHERE seq = ?1")?
            .query_row([seq], |r| r.get(0))?;
        for dest in serde_json::from_str::<Vec<String>>(&destinations).unwrap_or_default() {
            if item.deliveries.iter().any(|d| d.destination == dest) {
                continue;
            }
            let delivered = self.cursor(&dest)?.is_some_and(|c| seq <= c);
            item.deliveries.push(DeliveryRow {
                destination: dest,
                state: if delivered { DeliveryState::Delivered } else { DeliveryState::Pending },
                attempts: u32::from(delivered),
                next_attempt_at: 0,
                updated_at: None,
                last_error: None,
            });
        }
        item.deliveries.sort_by(|a, b| a.destination.cmp(&b.destination));
        if with_attempts {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT destination, at, outcome, error FROM attempts WHERE seq = ?1 ORDER BY rowid")?;
            item.attempts = stmt
                .query_map([seq], |r| {
                    Ok(AttemptRow { destination: r.get(0)?, at: r.get(1)?, outcome: r.get(2)?, error: r.get(3)? })
                })?
                .collect::<Result<_, _>>()?;
        }
        if with_body {
            item.body = Some(
                self.conn
                    .prepare_cached("SELECT body FROM envelopes WHERE seq = ?1")?
                    .query_row([seq], |r| r.get(0))?,
            );
        }
        Ok(Some(item))
    }
}

/// The three summary columns (type, ref, the kind's fields as JSON), in that order from column
/// `first`.
fn summary_at(r: &Row<'_>, first: usize) -> rusqlite::Result<Summary> {
    let fields: String = r.get(first + 2)?;
    Ok(Summary::from_columns(r.get(first)?, r.get(first + 1)?, &fields))
}

/// A kind column; a kind this build does not know (a journal written by a newer outpost) is
/// an error, not a guess.
fn kind_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Kind> {
    let text: String = r.get(i)?;
    Kind::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown item kind {text:?}").into(),
        )
    })
}

fn item_from_row(r: &Row<'_>) -> rusqlite::Result<Item> {
    let routes: String = r.get(11)?;
    Ok(Item {
        seq: r.get(0)?,
        id: r.get(1)?,
        source: r.get(2)?,
        kind: r.get(3)?,
        received_at: r.get(4)?,
        status: r.get(5)?,
        size: r.get::<_, i64>(6)? as u64,
        item_type: r.get(7)?,
        summary: summary_at(r, 7)?,
        charset: r.get(10)?,
        routes: serde_json::from_str(&routes).unwrap_or_default(),
        note: r.get(12)?,
        duplicates: r.get(13)?,
        deliveries: Vec::new(),
        attempts: Vec::new(),
        body: None,
    })
}
