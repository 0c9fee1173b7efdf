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
];

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

/// Brings the database to [`VERSION`]. Refuses a database from a newer outpost.
pub fn migrate(conn: &mut Connection) -> Result<(), super::JournalError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > VERSION {
        return Err(super::JournalError::NewerSchema { found: current, supported: VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
