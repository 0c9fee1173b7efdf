//! The consumer's SQLite store: items (de-duplicated by gateway and id), a receipt per copy or
//! chunk received, chunks waiting for the rest of their item, events (de-duplicated by gateway and
//! id), and every other message observed.
//!
//! One `write` is one transaction; it returns the ids to acknowledge, which the caller publishes
//! only after `write` returned (the commit is fsynced: WAL, `synchronous=FULL`). Several
//! processes may share one file: transactions start `IMMEDIATE` (the write lock is taken first, so
//! what a transaction reads is what it writes over), and chunks stored by one consumer complete
//! items for another.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tracing::warn;

use crate::payload::{Chunk, Item, chunks_fit};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    gateway TEXT NOT NULL,        -- site/node, from the topic
    id TEXT NOT NULL,             -- the gateway's item id (a ULID)
    seq INTEGER NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at TEXT NOT NULL,
    historical INTEGER NOT NULL,  -- of the copy stored
    summary TEXT NOT NULL,        -- JSON object
    charset TEXT,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    first_session INTEGER NOT NULL, -- link session of the copy stored (for a chunked item, of its last chunk)
    copies INTEGER NOT NULL,      -- copies received (a chunked copy counts at its first chunk)
    stored_at TEXT NOT NULL,
    PRIMARY KEY (gateway, id)
);
CREATE INDEX IF NOT EXISTS items_by_seq ON items (gateway, seq);
CREATE TABLE IF NOT EXISTS receipts (
    arrival INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source TEXT NOT NULL,
    historical INTEGER NOT NULL,
    session INTEGER NOT NULL,
    chunk_index INTEGER,          -- NULL for an item sent whole
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    count INTEGER NOT NULL,
    size INTEGER NOT NULL,        -- the whole body's length
    data BLOB NOT NULL,
    PRIMARY KEY (gateway, id, idx)
);
CREATE TABLE IF NOT EXISTS events (
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,             -- the event's id (a ULID)
    payload TEXT NOT NULL,        -- the first copy received
    copies INTEGER NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (gateway, id)
);
CREATE TABLE IF NOT EXISTS observed (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    topic TEXT NOT NULL,
    retained INTEGER NOT NULL,
    payload TEXT NOT NULL
);
";

/// A message ready to be stored.
#[derive(Debug)]
pub enum Inbound {
    /// An item, or one chunk of one, from gateway `site/node`.
    Item { gateway: String, item: Box<Item> },
    /// An escalation event with its id: stored once per id, logged as observed, acknowledged.
    Event { gateway: String, id: String, topic: String, payload: String },
    /// Anything else received (state, telemetry, config/status, cmd results, an event without
    /// an id).
    Observed { topic: String, retained: bool, payload: String },
}

/// What one `write` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Per gateway, the ids now durably stored (new or already there), each once.
    pub acks: Vec<(String, Vec<String>)>,
    /// Items stored for the first time (whole, or completed from their chunks).
    pub new_items: u64,
    /// Copies (or chunks) of items already stored.
    pub duplicates: u64,
    /// Chunks stored to wait for the rest of their item.
    pub chunks_waiting: u64,
    /// Chunked items whose chunks did not fit together (discarded; not acknowledged).
    pub unfit: u64,
    pub observed: u64,
    /// Events stored for the first time.
    pub new_events: u64,
}

/// Ids to acknowledge, per gateway in order of first appearance, each id once.
#[derive(Default)]
struct Acks {
    gateways: Vec<(String, Vec<String>)>,
    seen: HashSet<(String, String)>,
}

impl Acks {
    fn add(&mut self, gateway: &str, id: &str) {
        if !self.seen.insert((gateway.to_string(), id.to_string())) {
            return;
        }
        match self.gateways.iter_mut().find(|(g, _)| g == gateway) {
            Some((_, ids)) => ids.push(id.to_string()),
            None => self.gateways.push((gateway.to_string(), vec![id.to_string()])),
        }
    }
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if need be) the store at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Another consumer sharing the file may be switching it to WAL at this very moment.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(mode = %mode, "store is not in WAL mode; sharing it between consumers will be slow");
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        let mut store = Store { conn };
        let tx = store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        Ok(store)
    }

    /// Stores `batch` in one transaction stamped `now`, and says which ids may be acknowledged.
    /// On error nothing was stored (and nothing may be acknowledged).
    pub fn write(&mut self, batch: &[Inbound], now: &str) -> rusqlite::Result<Outcome> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcome = Outcome::default();
        let mut acks = Acks::default();
        for inbound in batch {
            match inbound {
                Inbound::Item { gateway, item } => {
                    insert_receipt(&tx, gateway, item, now)?;
                    match item.chunk {
                        None => {
                            if insert_item(&tx, gateway, item, &item.body, now)? {
                                outcome.new_items += 1;
                            } else {
                                outcome.duplicates += 1;
                            }
                            acks.add(gateway, &item.id);
                        }
                        Some(chunk) => match store_chunk(&tx, gateway, item, chunk, now)? {
                            ChunkOutcome::Duplicate => {
                                outcome.duplicates += 1;
                                acks.add(gateway, &item.id);
                            }
                            ChunkOutcome::Completed => {
                                outcome.new_items += 1;
                                acks.add(gateway, &item.id);
                            }
                            ChunkOutcome::Waiting => outcome.chunks_waiting += 1,
                            ChunkOutcome::Unfit => outcome.unfit += 1,
                        },
                    }
                }
                Inbound::Observed { topic, retained, payload } => {
                    insert_observed(&tx, now, topic, *retained, payload)?;
                    outcome.observed += 1;
                }
                Inbound::Event { gateway, id, topic, payload } => {
                    insert_observed(&tx, now, topic, false, payload)?;
                    outcome.observed += 1;
                    let copies: i64 = tx
                        .prepare_cached(
                            "INSERT INTO events (gateway, id, payload, copies, stored_at) VALUES (?1, ?2, ?3, 1, ?4)
                             ON CONFLICT (gateway, id) DO UPDATE SET copies = copies + 1 RETURNING copies",
                        )?
                        .query_row(params![gateway, id, payload, now], |row| row.get(0))?;
                    if copies == 1 {
                        outcome.new_events += 1;
                    }
                    acks.add(gateway, id);
                }
            }
        }
        tx.commit()?;
        outcome.acks = acks.gateways;
        Ok(outcome)
    }
}

fn insert_observed(
    tx: &Transaction<'_>,
    now: &str,
    topic: &str,
    retained: bool,
    payload: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO observed (at, topic, retained, payload) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![now, topic, retained, payload])?;
    Ok(())
}

fn insert_receipt(tx: &Transaction<'_>, gateway: &str, item: &Item, now: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO receipts (gateway, id, seq, source, historical, session, chunk_index, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        gateway,
        item.id,
        item.seq,
        item.source,
        item.historical,
        item.session,
        item.chunk.map(|c| c.index),
        now
    ])?;
    Ok(())
}

/// Inserts the item with `body`, or counts one more copy of it. True when it was new.
fn insert_item(tx: &Transaction<'_>, gateway: &str, item: &Item, body: &[u8], now: &str) -> rusqlite::Result<bool> {
    let copies: i64 = tx
        .prepare_cached(
            "INSERT INTO items (gateway, id, seq, source, kind, status, received_at, historical, summary, charset,
                                size, body, first_session, copies, stored_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1, ?14)
             ON CONFLICT (gateway, id) DO UPDATE SET copies = copies + 1
             RETURNING copies",
        )?
        .query_row(
            params![
                gateway,
                item.id,
                item.seq,
                item.source,
                item.kind,
                item.status,
                item.received_at,
                item.historical,
                item.summary,
                item.charset,
                item.size as i64,
                body,
                item.session,
                now
            ],
            |row| row.get(0),
        )?;
    Ok(copies == 1)
}

enum ChunkOutcome {
    /// The item is already stored.
    Duplicate,
    /// This chunk was the last one missing; the item is stored and its chunks removed.
    Completed,
    /// Stored; other chunks are still missing.
    Waiting,
    /// All chunks are here but do not make up the body; they were removed.
    Unfit,
}

fn store_chunk(
    tx: &Transaction<'_>,
    gateway: &str,
    item: &Item,
    chunk: Chunk,
    now: &str,
) -> rusqlite::Result<ChunkOutcome> {
    let stored = tx
        .prepare_cached("SELECT 1 FROM items WHERE gateway = ?1 AND id = ?2")?
        .query_row(params![gateway, item.id], |_| Ok(()))
        .optional()?
        .is_some();
    if stored {
        if chunk.index == 0 {
            tx.prepare_cached("UPDATE items SET copies = copies + 1 WHERE gateway = ?1 AND id = ?2")?
                .execute(params![gateway, item.id])?;
        }
        return Ok(ChunkOutcome::Duplicate);
    }
    // Chunks of a copy cut differently (the gateway's packet size changed) give way to this one.
    tx.prepare_cached("DELETE FROM chunks WHERE gateway = ?1 AND id = ?2 AND (count != ?3 OR size != ?4)")?
        .execute(params![gateway, item.id, chunk.count, item.size as i64])?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO chunks (gateway, id, idx, count, size, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![gateway, item.id, chunk.index, chunk.count, item.size as i64, item.body])?;
    let lengths = tx
        .prepare_cached("SELECT length(data) FROM chunks WHERE gateway = ?1 AND id = ?2 ORDER BY idx")?
        .query_map(params![gateway, item.id], |row| row.get::<_, i64>(0))?
        .map(|length| length.map(|l| l as u64))
        .collect::<rusqlite::Result<Vec<u64>>>()?;
    if (lengths.len() as u64) < u64::from(chunk.count) {
        return Ok(ChunkOutcome::Waiting);
    }
    let discard = |tx: &Transaction<'_>| {
        tx.prepare_cached("DELETE FROM chunks WHERE gateway = ?1 AND id = ?2")?.execute(params![gateway, item.id])
    };
    if let Err(why) = chunks_fit(&lengths, item.size) {
        warn!(gateway = %gateway, id = %item.id, why = %why, "discarding the chunks of an item; they do not make up its body (the gateway will send it again)");
        discard(tx)?;
        return Ok(ChunkOutcome::Unfit);
    }
    let mut body = Vec::with_capacity(item.size as usize);
    {
        let mut stmt = tx.prepare_cached("SELECT data FROM chunks WHERE gateway = ?1 AND id = ?2 ORDER BY idx")?;
        let mut rows = stmt.query(params![gateway, item.id])?;
        while let Some(row) = rows.next()? {
            body.extend_from_slice(row.get_ref(0)?.as_blob()?);
        }
    }
    insert_item(tx, gateway, item, &body, now)?;
    discard(tx)?;
    Ok(ChunkOutcome::Completed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, seq: i64, body: &[u8]) -> Item {
        Item {
            id: id.into(),
            seq,
            session: 3,
            source: "ehr".into(),
            kind: "hl7v2".into(),
            status: "accepted".into(),
            received_at: "2026-11-23T21:07:31.412Z".into(),
            historical: false,
            summary: "{}".into(),
            charset: None,
            size: body.len() as u64,
            body: body.to_vec(),
            chunk: None,
        }
    }

    /// The chunks of `body` cut every `n` bytes, as the gateway sends them.
    fn chunks(id: &str, body: &[u8], n: usize) -> Vec<Item> {
        let count = body.len().div_ceil(n) as u32;
        body.chunks(n)
            .enumerate()
            .map(|(index, part)| Item {
                size: body.len() as u64,
                body: part.to_vec(),
                chunk: Some(Chunk { index: index as u32, count }),
                ..item(id, 9, body)
            })
            .collect()
    }

    fn inbound(item: Item) -> Inbound {
        Inbound::Item { gateway: "s1/n1".into(), item: Box::new(item) }
    }

    fn acked(outcome: &Outcome) -> Vec<String> {
        outcome.acks.iter().flat_map(|(_, ids)| ids.clone()).collect()
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("central.sqlite")).unwrap()
    }

    #[test]
    fn items_are_stored_once_and_acknowledged_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let out = store.write(&[inbound(item("A", 1, b"one")), inbound(item("B", 2, b"two"))], "now").unwrap();
        assert_eq!((out.new_items, out.duplicates), (2, 0));
        assert_eq!(acked(&out), ["A", "B"]);
        let out = store.write(&[inbound(item("A", 1, b"one")), inbound(item("A", 1, b"one"))], "later").unwrap();
        assert_eq!((out.new_items, out.duplicates), (0, 2));
        assert_eq!(out.acks, [("s1/n1".to_string(), vec!["A".to_string()])]);
        assert_eq!(count(&store, "SELECT copies FROM items WHERE id = 'A'"), 3);
        assert_eq!(count(&store, "SELECT count(*) FROM items"), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM receipts"), 4);
        let body: Vec<u8> = store.conn.query_row("SELECT body FROM items WHERE id = 'B'", [], |r| r.get(0)).unwrap();
        assert_eq!(body, b"two");
    }

    #[test]
    fn acks_are_grouped_per_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let batch = [
            inbound(item("A", 1, b"x")),
            Inbound::Item { gateway: "s2/n1".into(), item: Box::new(item("A", 1, b"x")) },
            inbound(item("B", 2, b"y")),
        ];
        let out = store.write(&batch, "now").unwrap();
        assert_eq!(
            out.acks,
            [
                ("s1/n1".to_string(), vec!["A".to_string(), "B".to_string()]),
                ("s2/n1".to_string(), vec!["A".to_string()])
            ]
        );
        assert_eq!(out.new_items, 3);
    }

    #[test]
    fn chunks_complete_an_item_in_any_order_and_across_consumers() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = open(&dir);
        let mut two = open(&dir);
        let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut parts = chunks("C", &body, 300).into_iter().map(inbound).collect::<Vec<_>>();
        assert_eq!(parts.len(), 4);
        let last = parts.pop().unwrap();
        let first = parts.remove(0);
        let out = one.write(&[last], "t").unwrap();
        assert_eq!((out.chunks_waiting, acked(&out).len()), (1, 0));
        let out = two.write(&parts, "t").unwrap();
        assert_eq!((out.chunks_waiting, acked(&out).len()), (2, 0));
        let out = one.write(&[first], "t").unwrap();
        assert_eq!(out.new_items, 1);
        assert_eq!(acked(&out), ["C"]);
        let stored: Vec<u8> = two.conn.query_row("SELECT body FROM items WHERE id = 'C'", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, body);
        assert_eq!(count(&two, "SELECT count(*) FROM chunks"), 0);
        assert_eq!(count(&two, "SELECT count(*) FROM receipts WHERE chunk_index IS NOT NULL"), 4);
        assert_eq!(count(&two, "SELECT size FROM items"), 1000);
    }

    #[test]
    fn chunks_of_a_stored_item_are_acknowledged_and_counted_once_per_copy() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let body = b"abcdefghij";
        let copy = || chunks("D", body, 4).into_iter().map(inbound).collect::<Vec<_>>();
        let out = store.write(&copy(), "t").unwrap();
        assert_eq!((out.new_items, out.chunks_waiting), (1, 2));
        let out = store.write(&copy(), "t").unwrap();
        assert_eq!((out.new_items, out.duplicates), (0, 3));
        assert_eq!(acked(&out), ["D"]);
        assert_eq!(count(&store, "SELECT copies FROM items"), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM chunks"), 0);
    }

    #[test]
    fn a_chunk_alone_is_a_whole_item() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let out = store.write(&chunks("E", b"short", 10).into_iter().map(inbound).collect::<Vec<_>>(), "t").unwrap();
        assert_eq!(acked(&out), ["E"]);
    }

    #[test]
    fn chunks_of_copies_cut_differently_do_not_mix() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let body = b"0123456789";
        // First copy cut every 4 bytes (3 chunks), only the first two arrive.
        let mut first: Vec<_> = chunks("F", body, 4).into_iter().map(inbound).collect();
        first.truncate(2);
        store.write(&first, "t").unwrap();
        // The re-send is cut every 5 bytes (2 chunks): its chunks replace the others.
        let out = store.write(&chunks("F", body, 5).into_iter().map(inbound).collect::<Vec<_>>(), "t").unwrap();
        assert_eq!(acked(&out), ["F"]);
        let stored: Vec<u8> = store.conn.query_row("SELECT body FROM items", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, body);
        // Same count, different cut: a 9-byte body in 3 chunks of n = 4 or n = 3.
        let body = b"abcdefghi";
        let a = chunks("G", body, 4); // 4, 4, 1
        let b = chunks("G", body, 3); // 3, 3, 3
        let out = store.write(&[inbound(a[0].clone()), inbound(b[1].clone()), inbound(a[2].clone())], "t").unwrap();
        assert_eq!((out.unfit, acked(&out).len()), (1, 0));
        assert_eq!(count(&store, "SELECT count(*) FROM chunks"), 0);
        let out = store.write(&b.into_iter().map(inbound).collect::<Vec<_>>(), "t").unwrap();
        assert_eq!(acked(&out), ["G"]);
    }

    #[test]
    fn observed_messages_are_kept_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let batch = [Inbound::Observed {
            topic: "outpost/v1/s1/n1/state".into(),
            retained: true,
            payload: r#"{"status":"online"}"#.into(),
        }];
        let out = store.write(&batch, "t").unwrap();
        assert_eq!(out.observed, 1);
        assert!(out.acks.is_empty());
        let (topic, retained, payload): (String, bool, String) = store
            .conn
            .query_row("SELECT topic, retained, payload FROM observed", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        assert_eq!(
            (topic.as_str(), retained, payload.as_str()),
            ("outpost/v1/s1/n1/state", true, r#"{"status":"online"}"#)
        );
    }

    #[test]
    fn events_are_stored_once_and_acknowledged_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let event = |id: &str| Inbound::Event {
            gateway: "s1/n1".into(),
            id: id.into(),
            topic: "outpost/v1/s1/n1/event".into(),
            payload: format!(r#"{{"id":"{id}","code":"unrouted"}}"#),
        };
        let out = store.write(&[event("E1"), event("E2")], "t").unwrap();
        assert_eq!((out.new_events, acked(&out)), (2, vec!["E1".to_string(), "E2".to_string()]));
        // A copy sent again (the ack was lost): acknowledged again, not stored twice.
        let out = store.write(&[event("E1")], "t").unwrap();
        assert_eq!((out.new_events, acked(&out)), (0, vec!["E1".to_string()]));
        assert_eq!(count(&store, "SELECT count(*) FROM events"), 2);
        assert_eq!(count(&store, "SELECT copies FROM events WHERE id = 'E1'"), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM observed"), 3);
    }
}
