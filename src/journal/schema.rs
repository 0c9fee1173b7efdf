//! The journal's schema and its versioned migrations (tracked in `PRAGMA user_version`).
//! A migration is appended, never edited: a gateway in the field may be several versions behind.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: envelopes, deliveries, attempts.
    r#"
    CREATE TABLE envelopes (
        seq              INTEGER PRIMARY KEY,     -- journal order
        id               TEXT NOT NULL,           -- ULID of (journaled-at ms, seq): see envelope_id
        source           TEXT NOT NULL,
        kind             TEXT NOT NULL,
        received_at      INTEGER NOT NULL,        -- unix ms
        status           TEXT NOT NULL,           -- accepted | unrouted | rejected
        size             INTEGER NOT NULL,
        message_type     TEXT NOT NULL DEFAULT '',
        control_id       TEXT NOT NULL DEFAULT '',
        sending_app      TEXT NOT NULL DEFAULT '',
        sending_facility TEXT NOT NULL DEFAULT '',
        version          TEXT NOT NULL DEFAULT '',
        charset          TEXT,
        routes           TEXT NOT NULL DEFAULT '[]',  -- JSON array of matched route names
        note             TEXT,                    -- why rejected (words, never content)
        duplicates       INTEGER NOT NULL DEFAULT 0,  -- retransmissions ACKed without storing
        body             BLOB NOT NULL            -- exact bytes received; last so summaries read cheaply
    );
    CREATE INDEX envelopes_received ON envelopes(received_at);
    CREATE INDEX envelopes_problem ON envelopes(status, seq) WHERE status <> 'accepted';

    CREATE TABLE deliveries (
        destination     TEXT NOT NULL,
        seq             INTEGER NOT NULL REFERENCES envelopes(seq) ON DELETE CASCADE,
        state           TEXT NOT NULL,            -- pending | in_flight | delivered | failed
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL,
        last_error      TEXT,
        PRIMARY KEY (seq, destination)
    ) WITHOUT ROWID;
    -- Work queues: only rows not yet delivered, per destination in journal order.
    CREATE INDEX deliveries_open ON deliveries(destination, seq) WHERE state <> 'delivered';

    CREATE TABLE attempts (
        seq         INTEGER NOT NULL REFERENCES envelopes(seq) ON DELETE CASCADE,
        destination TEXT NOT NULL,
        at          INTEGER NOT NULL,
        outcome     TEXT NOT NULL,                -- error | nak | gave-up
        error       TEXT NOT NULL
    );
    CREATE INDEX attempts_key ON attempts(seq, destination);
    "#,
    // 2: the uplink. Deliveries to central carry the gateway's uplink sequence number (`useq`,
    // contiguous over the items sent to central); `meta` keeps counters that must never go back
    // (the link session, the highest useq handed out before a purge).
    r#"
    ALTER TABLE deliveries ADD COLUMN useq INTEGER;
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Dead letters per destination, so that `status` counts them without reading the queue.
    CREATE INDEX deliveries_failed ON deliveries(destination) WHERE state = 'failed';
    "#,
    // 3: escalation events for central, kept until central acknowledges them (the newest
    // `uplink::MAX_KEPT_EVENTS`), so that a restart or a broken link loses none.
    r#"
    CREATE TABLE uplink_events (
        eseq    INTEGER PRIMARY KEY,              -- order raised
        id      TEXT NOT NULL UNIQUE,             -- the event's id (a ULID), named by central's ack
        payload BLOB NOT NULL                     -- the event message as published
    );
    "#,
    // 4: kind-neutral summaries. Every payload kind has a type (HL7: the message type) and a
    // ref (the sender's own id, HL7's MSH-10, which recognises a retransmission); the rest of
    // a kind's summary is a JSON object by the uplink contract's names. `sending_app` becomes
    // `summary` (renamed, so it stays before `body` and a summary still reads without the
    // body's overflow pages); rows from earlier versions, all HL7, get theirs from the old
    // columns.
    r#"
    ALTER TABLE envelopes RENAME COLUMN message_type TO item_type;
    ALTER TABLE envelopes RENAME COLUMN control_id TO item_ref;
    ALTER TABLE envelopes RENAME COLUMN sending_app TO summary;
    UPDATE envelopes SET summary = json_object(
        'message_type', item_type, 'control_id', item_ref, 'sending_app', summary,
        'sending_facility', sending_facility, 'version', version);
    ALTER TABLE envelopes DROP COLUMN sending_facility;
    ALTER TABLE envelopes DROP COLUMN version;
    "#,
    // 5: files taken from folders (directory sources). A file is recorded once every item in it
    // is committed, before it is moved or deleted: finding it here again after a crash means
    // "already taken, only the move is left", so re-reading it stores nothing twice. Kept as
    // long as rejected items (journal.rejected_retention).
    r#"
    CREATE TABLE source_files (
        source   TEXT NOT NULL,
        name     TEXT NOT NULL,                   -- the file's name in its folder
        digest   TEXT NOT NULL,                   -- sha256 of its bytes: a new file of the same name differs
        size     INTEGER NOT NULL,
        items    INTEGER NOT NULL,                -- items taken from it
        taken_at INTEGER NOT NULL,                -- unix ms
        PRIMARY KEY (source, name, digest)
    ) WITHOUT ROWID;
    "#,
    // 6: the gateway a journal belongs to (its first `node.site` and `node.id`), so that a
    // config naming another gateway cannot send its items to central under the wrong name.
    r#"
    CREATE TABLE gateway (
        site  TEXT NOT NULL,
        node  TEXT NOT NULL,
        since INTEGER NOT NULL                    -- unix ms of the claim
    );
    "#,
    // 7: the order cache (`orders.rs`): an EHR's orders by specimen id, for lab instruments'
    // queries and downloads, kept `[orders] keep` after they last changed; and the downloads of
    // each order to each lab link that takes them.
    r#"
    CREATE TABLE orders (
        specimen_id   TEXT PRIMARY KEY,
        placer        TEXT NOT NULL DEFAULT '',   -- the first group's ORC-2 / OBR-2
        filler        TEXT NOT NULL DEFAULT '',   -- ORC-3 / OBR-3
        state         TEXT NOT NULL,              -- active | cancelled
        priority      TEXT NOT NULL DEFAULT 'R',  -- S | R
        specimen_type TEXT NOT NULL DEFAULT '',
        tests         TEXT NOT NULL,              -- JSON: code, text, system, placer, filler
        patient       TEXT NOT NULL,              -- JSON: id, family, given, birth_date, sex (PHI, like bodies)
        item_id       TEXT NOT NULL,              -- the HL7 item it last changed with
        received_at   INTEGER NOT NULL            -- unix ms of that change
    ) WITHOUT ROWID;
    CREATE INDEX orders_received ON orders(received_at);
    CREATE TABLE order_downloads (
        specimen_id     TEXT NOT NULL REFERENCES orders(specimen_id) ON DELETE CASCADE,
        source          TEXT NOT NULL,
        state           TEXT NOT NULL,            -- pending | sent | failed | skipped
        action          TEXT NOT NULL,            -- N new | C cancel (ASTM O.12)
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL,
        version         INTEGER NOT NULL DEFAULT 1,  -- up when made pending again
        PRIMARY KEY (specimen_id, source)
    ) WITHOUT ROWID;
    CREATE INDEX order_downloads_due ON order_downloads(source, state);
    "#,
    // 8: no index on envelopes.received_at: only the purge used it, and it cost a page written
    // per item at intake (a gateway's flash pays for every page). Purges go in seq order, which
    // is the order items were received in.
    r#"
    DROP INDEX envelopes_received;
    "#,
    // 9: delivery progress as a cursor per destination. An item names its destinations (and
    // its uplink sequence number) in its own row, so taking it in writes one table leaf and no
    // delivery rows; `cursors` holds, per destination, the seq through which every item for it
    // is done (FIFO per destination makes that exact); `deliveries` keeps only exceptions
    // (attempts that failed, dead letters, retried or rerouted items, central's out-of-order
    // acknowledgements), and a row there wins over the cursor. Rows from before keep their
    // states. The envelopes table is rebuilt so the new columns come before the body (a column
    // after it costs a large item's overflow pages to read); foreign keys are off meanwhile
    // (`migrate`), so dropping the old table takes no delivery rows with it.
    r#"
    CREATE TABLE envelopes_v9 (
        seq          INTEGER PRIMARY KEY,
        id           TEXT NOT NULL,
        source       TEXT NOT NULL,
        kind         TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        status       TEXT NOT NULL,
        size         INTEGER NOT NULL,
        item_type    TEXT NOT NULL DEFAULT '',
        item_ref     TEXT NOT NULL DEFAULT '',
        summary      TEXT NOT NULL DEFAULT '',
        charset      TEXT,
        routes       TEXT NOT NULL DEFAULT '[]',
        note         TEXT,
        duplicates   INTEGER NOT NULL DEFAULT 0,
        destinations TEXT NOT NULL DEFAULT '[]',
        useq         INTEGER,
        body         BLOB NOT NULL
    );
    INSERT INTO envelopes_v9
        SELECT e.seq, e.id, e.source, e.kind, e.received_at, e.status, e.size, e.item_type, e.item_ref,
            e.summary, e.charset, e.routes, e.note, e.duplicates,
            COALESCE((SELECT json_group_array(d.destination) FROM deliveries d WHERE d.seq = e.seq), '[]'),
            (SELECT max(d.useq) FROM deliveries d WHERE d.seq = e.seq),
            e.body
        FROM envelopes e;
    DROP TABLE envelopes;
    ALTER TABLE envelopes_v9 RENAME TO envelopes;
    CREATE INDEX envelopes_problem ON envelopes(status, seq) WHERE status <> 'accepted';
    CREATE TABLE cursors (
        destination TEXT PRIMARY KEY,
        seq         INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
];

/// The schema at [`VERSION`], for a new journal: what [`MIGRATIONS`] build step by step, written
/// out whole, so a new gateway does not pay for rewriting tables it does not have yet (migration
/// 4's renames alone leave half a MiB of heap behind). A test checks the two agree; a new
/// migration changes both.
const CURRENT: &str = r#"
    CREATE TABLE envelopes (
        seq         INTEGER PRIMARY KEY,          -- journal order
        id          TEXT NOT NULL,                -- ULID of (journaled-at ms, seq): see envelope_id
        source      TEXT NOT NULL,
        kind        TEXT NOT NULL,                -- hl7v2, ...
        received_at INTEGER NOT NULL,             -- unix ms
        status      TEXT NOT NULL,                -- accepted | unrouted | rejected
        size        INTEGER NOT NULL,
        item_type   TEXT NOT NULL DEFAULT '',     -- HL7: the message type
        item_ref    TEXT NOT NULL DEFAULT '',     -- the sender's own id (HL7: MSH-10)
        summary     TEXT NOT NULL DEFAULT '',     -- the kind's fields, a JSON object
        charset     TEXT,
        routes      TEXT NOT NULL DEFAULT '[]',   -- JSON array of matched route names
        note        TEXT,                         -- why rejected (words, never content)
        duplicates  INTEGER NOT NULL DEFAULT 0,   -- retransmissions ACKed without storing
        destinations TEXT NOT NULL DEFAULT '[]',  -- JSON array of the destinations it was given
        useq        INTEGER,                      -- uplink sequence number (items for central)
        body        BLOB NOT NULL                 -- exact bytes received; last so summaries read cheaply
    );
    CREATE INDEX envelopes_problem ON envelopes(status, seq) WHERE status <> 'accepted';

    -- Per destination: every item for it with seq <= this is done (delivered, unless a row in
    -- deliveries says otherwise).
    CREATE TABLE cursors (
        destination TEXT PRIMARY KEY,
        seq         INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Exceptions to the cursor: an item with a failed attempt, a dead letter, a retried or
    -- rerouted item, an acknowledgement from central ahead of the cursor. A row wins.
    CREATE TABLE deliveries (
        destination     TEXT NOT NULL,
        seq             INTEGER NOT NULL REFERENCES envelopes(seq) ON DELETE CASCADE,
        state           TEXT NOT NULL,            -- pending | in_flight | delivered | failed
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL,
        last_error      TEXT,
        useq            INTEGER,                  -- uplink sequence number (deliveries to central)
        PRIMARY KEY (seq, destination)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_open ON deliveries(destination, seq) WHERE state <> 'delivered';
    CREATE INDEX deliveries_failed ON deliveries(destination) WHERE state = 'failed';

    CREATE TABLE attempts (
        seq         INTEGER NOT NULL REFERENCES envelopes(seq) ON DELETE CASCADE,
        destination TEXT NOT NULL,
        at          INTEGER NOT NULL,
        outcome     TEXT NOT NULL,                -- error | nak | gave-up
        error       TEXT NOT NULL
    );
    CREATE INDEX attempts_key ON attempts(seq, destination);

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE uplink_events (
        eseq    INTEGER PRIMARY KEY,
        id      TEXT NOT NULL UNIQUE,
        payload BLOB NOT NULL
    );

    CREATE TABLE source_files (
        source   TEXT NOT NULL,
        name     TEXT NOT NULL,
        digest   TEXT NOT NULL,
        size     INTEGER NOT NULL,
        items    INTEGER NOT NULL,
        taken_at INTEGER NOT NULL,
        PRIMARY KEY (source, name, digest)
    ) WITHOUT ROWID;

    CREATE TABLE gateway (
        site  TEXT NOT NULL,
        node  TEXT NOT NULL,
        since INTEGER NOT NULL
    );

    CREATE TABLE orders (
        specimen_id   TEXT PRIMARY KEY,
        placer        TEXT NOT NULL DEFAULT '',
        filler        TEXT NOT NULL DEFAULT '',
        state         TEXT NOT NULL,
        priority      TEXT NOT NULL DEFAULT 'R',
        specimen_type TEXT NOT NULL DEFAULT '',
        tests         TEXT NOT NULL,
        patient       TEXT NOT NULL,
        item_id       TEXT NOT NULL,
        received_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX orders_received ON orders(received_at);

    CREATE TABLE order_downloads (
        specimen_id     TEXT NOT NULL REFERENCES orders(specimen_id) ON DELETE CASCADE,
        source          TEXT NOT NULL,
        state           TEXT NOT NULL,
        action          TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL,
        version         INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (specimen_id, source)
    ) WITHOUT ROWID;
    CREATE INDEX order_downloads_due ON order_downloads(source, state);
"#;

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings a new database to `version` only, as an older outpost left it (for migration tests).
#[cfg(test)]
pub fn create_at(conn: &mut Connection, version: usize) -> Result<(), super::JournalError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().take(version) {
        conn.execute_batch(sql)?;
        conn.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    Ok(())
}

/// Brings the database to [`VERSION`]: a new one is created at it, an older one migrated
/// step by step. Refuses a database from a newer outpost.
pub fn migrate(conn: &mut Connection) -> Result<(), super::JournalError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > VERSION {
        return Err(super::JournalError::NewerSchema { found: current, supported: VERSION });
    }
    if current == 0 {
        let tx = conn.transaction()?;
        tx.execute_batch(CURRENT)?;
        tx.pragma_update(None, "user_version", VERSION)?;
        tx.commit()?;
        return Ok(());
    }
    // Migration 9 rebuilds a table that others reference; SQLite's way is with foreign keys
    // off (a no-op inside a transaction, so here). The tables' rows keep pointing at the same seqs.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let result = migrate_from(conn, current);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    result
}

fn migrate_from(conn: &mut Connection, current: i64) -> Result<(), super::JournalError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table's columns, indexes and foreign keys, as SQLite reports them (not as written).
    fn shape(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        let mut names: Vec<(String, String)> = conn
            .prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        names.sort();
        let rows = |sql: String| -> Vec<String> {
            let mut stmt = conn.prepare(&sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| {
                Ok((0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join(","))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        for (kind, name) in names {
            out.push(format!("{kind} {name}"));
            if kind == "table" {
                out.extend(rows(format!("PRAGMA table_xinfo({name})")));
                out.extend(rows(format!("PRAGMA index_list({name})")).into_iter().map(|l| {
                    // Index list order follows creation order; keep only what describes the index.
                    let f: Vec<&str> = l.split(',').collect();
                    f[1..].join(",")
                }));
                out.extend(rows(format!("PRAGMA foreign_key_list({name})")));
            } else {
                out.extend(rows(format!("PRAGMA index_xinfo({name})")));
                let sql: Option<String> =
                    conn.query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [&name], |r| r.get(0)).unwrap();
                out.push(sql.unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_new_journal_has_the_shape_the_migrations_build() {
        let mut migrated = Connection::open_in_memory().unwrap();
        create_at(&mut migrated, MIGRATIONS.len()).unwrap();
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        let version: i64 = fresh.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, VERSION);
        assert_eq!(shape(&fresh), shape(&migrated));
    }
}
