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
    pub updated_at: i64,
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
}

impl Reader {
    /// For the queries kept beside the tables they read (`orders.rs`).
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }
}

const UPLINK_COLUMNS: &str = "d.seq, d.useq, e.id, e.source, e.kind, e.status, e.received_at, e.item_type,
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
    pub(super) fn new(conn: Connection) -> Self {
        Reader { conn }
    }

    /// Undelivered items for `destination` after `after_seq`, in journal order.
    pub fn pending(&self, destination: &str, after_seq: i64, limit: usize) -> Result<Vec<PendingItem>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.seq, e.id, e.received_at, e.body, e.charset, e.item_ref, d.attempts, d.next_attempt_at, e.kind
             FROM deliveries d JOIN envelopes e ON e.seq = d.seq
             WHERE d.destination = ?1 AND d.state <> 'delivered' AND d.state <> 'failed' AND d.seq > ?2
             ORDER BY d.seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![destination, after_seq, limit as i64], |r| {
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
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let sql = format!(
            "SELECT {UPLINK_COLUMNS} FROM deliveries d JOIN envelopes e ON e.seq = d.seq
             WHERE d.destination = ?1 AND d.state <> 'delivered' AND d.state <> 'failed'
               AND d.seq > ?2 AND d.seq <= ?3
             ORDER BY d.seq LIMIT ?4"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![destination, after_seq, upto_seq, limit as i64], uplink_item)?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let sql = format!(
            "SELECT {UPLINK_COLUMNS} FROM deliveries d JOIN envelopes e ON e.seq = d.seq
             WHERE d.destination = ?1 AND d.useq BETWEEN ?2 AND ?3 AND d.seq > ?4
             ORDER BY d.seq LIMIT ?5"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![destination, from_useq, to_useq, after_seq, limit as i64], uplink_item)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One uplink item by journal seq, if it is still waiting for central.
    pub fn uplink_one(&self, destination: &str, seq: i64) -> Result<Option<UplinkItem>, JournalError> {
        let sql = format!(
            "SELECT {UPLINK_COLUMNS} FROM deliveries d JOIN envelopes e ON e.seq = d.seq
             WHERE d.destination = ?1 AND d.seq = ?2 AND d.state <> 'delivered'"
        );
        Ok(self.conn.prepare_cached(&sql)?.query_row(params![destination, seq], uplink_item).optional()?)
    }

    /// Escalation events kept for central (not yet acknowledged), oldest first: (id, payload).
    pub fn uplink_events(&self, limit: usize) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        let mut stmt = self.conn.prepare_cached("SELECT id, payload FROM uplink_events ORDER BY eseq LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Unacknowledged uplink items up to journal seq `upto_seq`.
    pub fn uplink_backlog(&self, destination: &str, upto_seq: i64) -> Result<UplinkBacklog, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT count(*), min(e.received_at), max(d.seq), min(d.useq), max(d.useq)
             FROM deliveries d JOIN envelopes e ON e.seq = d.seq
             WHERE d.destination = ?1 AND d.state <> 'delivered' AND d.state <> 'failed' AND d.seq <= ?2",
        )?;
        Ok(stmt.query_row(params![destination, upto_seq], |r| {
            Ok(UplinkBacklog {
                items: r.get::<_, i64>(0)? as u64,
                oldest_received_at: r.get(1)?,
                last_seq: r.get(2)?,
                first_useq: r.get(3)?,
                last_useq: r.get(4)?,
            })
        })?)
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
        // Counted from the queue index and the (small) dead-letter index alone: joining every
        // waiting row to its envelope, or sorting them by state, would read the whole backlog.
        let mut open = self.conn.prepare_cached(
            "SELECT destination, count(*) FROM deliveries WHERE state <> 'delivered' GROUP BY destination",
        )?;
        for row in open.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (dest, n) = row?;
            counts.destinations.push((dest, n as u64, 0, None));
        }
        let mut failed = self.conn.prepare_cached(
            "SELECT destination, count(*) FROM deliveries WHERE state = 'failed' GROUP BY destination",
        )?;
        for row in failed.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (dest, n) = row?;
            if let Some(entry) = counts.destinations.iter_mut().find(|d| d.0 == dest) {
                entry.1 = entry.1.saturating_sub(n as u64);
                entry.2 = n as u64;
            }
        }
        // The oldest waiting item of each destination is its first in journal order.
        let mut oldest = self.conn.prepare_cached(
            "SELECT e.received_at FROM envelopes e WHERE e.seq = (
                SELECT min(seq) FROM deliveries
                WHERE destination = ?1 AND state <> 'delivered' AND state <> 'failed')",
        )?;
        for entry in counts.destinations.iter_mut().filter(|e| e.1 > 0) {
            entry.3 = oldest.query_row([&entry.0], |r| r.get::<_, i64>(0)).optional()?;
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
                    "SELECT DISTINCT e.seq FROM envelopes e LEFT JOIN deliveries d ON d.seq = e.seq
                     WHERE (?1 IS NULL OR d.destination = ?1) ORDER BY e.seq DESC LIMIT ?2",
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
                stmt.query_map(params![state, filter.destination, limit], |r| r.get(0))?.collect::<Result<_, _>>()?
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
                    updated_at: r.get(4)?,
                    last_error: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
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
