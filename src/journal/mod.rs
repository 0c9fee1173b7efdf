//! The journal: every received item, durably, in SQLite. Only this module touches SQLite.
//!
//! Promises:
//! - [`Journal::insert`] returns only after the item is committed and the WAL fdatasynced, so
//!   an ACK sent after it survives kill -9 and power loss.
//! - Writes go through one writer thread that commits everything waiting in one transaction
//!   (group commit); a sync thread fdatasyncs each commit while the writer fills the next
//!   (`writer/commit.rs`): concurrent connections share syncs, and a commit cycle lasts about
//!   one sync. Workers and the uplink read only up to the synced head.
//! - Nothing undelivered is ever evicted. When `max_bytes` would be exceeded, delivered items
//!   are purged early; if that is not enough, new items are refused with [`JournalError::Full`].
//! - An item names its destinations in its own row; each destination keeps a cursor (every
//!   item for it up to there is done) and only exceptions get a delivery row (a failed
//!   attempt, a dead letter, a retried or rerouted item, an acknowledgement from central ahead
//!   of an earlier one), a row winning over the cursor. Taking an item in writes one table
//!   leaf; recording progress, one cursor.
//! - Delivery progress (delivered, attempt errors), central's acknowledgements and
//!   purges ride along in the same batches, or commit without a sync of their own
//!   (a batch of nothing else is answered at its commit; made durable by the next sync or
//!   checkpoint). A power cut may lose such a record, so an item may be delivered (released,
//!   purged) again (at-least-once), never skipped or lost. One sync per commit cycle, and only
//!   for what an acknowledgement waits on: that is what a gateway's SD card or eMMC pays for.

mod delivery;
mod disk;
mod orders;
mod reader;
mod recent;
mod schema;
mod writer;

pub use delivery::DeliveryState;
pub use disk::free_bytes;
pub use orders::{DownloadOutcome, DownloadRow, MAX_DOWNLOAD_ATTEMPTS, OrderCounts, PendingDownload};
pub use reader::{
    AttemptRow, DeliveryRow, Item, ItemFilter, PendingItem, Reader, StateFilter, StatusCounts, UnroutedItem,
    UplinkBacklog, UplinkItem,
};
pub use schema::VERSION as SCHEMA_VERSION;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::OptionalExtension;
use tokio::sync::{mpsc, oneshot, watch};

use crate::envelope::NewEnvelope;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "journal full: undelivered items hold {stored} of the {max} bytes allowed (journal.max_bytes); \
         new items are refused until destinations catch up, failed items are retried or purged, \
         or journal.max_bytes is raised"
    )]
    Full { stored: u64, max: u64 },
    #[error(
        "disk nearly full: {free} bytes free where the journal lives, below journal.min_free_disk ({min}); \
         free space on that filesystem"
    )]
    DiskFull { free: u64, min: u64 },
    #[error(
        "disk full: the filesystem where the journal lives has no space left; free space there \
         (journal.min_free_disk, default 100MiB, normally refuses before this happens)"
    )]
    NoSpace,
    #[error("journal database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error(
        "journal schema version {found} is newer than this outpost supports ({supported}); \
         run the newer outpost or restore a backup"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("cannot open journal {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "another outpost is already running on journal {path} ({holder}); stop it first \
         (systemctl stop outpost), or give this one its own node.state_dir"
    )]
    InUse { path: String, holder: String },
    #[error(
        "journal {path} belongs to gateway {site}/{node}, but this config names {config_site}/{config_node}; \
         its items must never reach central under another gateway's name. Fix node.site and node.id, or give \
         this gateway its own node.state_dir (to rename a gateway: stop it once central has acknowledged \
         everything, then start it with a new state_dir)"
    )]
    OtherGateway { path: String, site: String, node: String, config_site: String, config_node: String },
    #[error("journal is shutting down")]
    Closed,
}

impl From<rusqlite::Error> for JournalError {
    /// SQLite's "database or disk is full" becomes [`JournalError::NoSpace`]: words a field
    /// tech acts on, wherever it happens.
    fn from(e: rusqlite::Error) -> JournalError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => JournalError::NoSpace,
            _ => JournalError::Sqlite(e),
        }
    }
}

impl JournalError {
    /// A copy (SQLite's errors cannot be cloned): the same kind, code and text.
    pub fn copy(&self) -> JournalError {
        writer::clone_error(self)
    }

    /// True when the error means "no room": the sender should get AR/CR, and ops an escalation.
    pub fn is_capacity(&self) -> bool {
        match self {
            JournalError::Full { .. } | JournalError::DiskFull { .. } | JournalError::NoSpace => true,
            JournalError::Sqlite(e) => matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::SystemIoFailure)),
            _ => false,
        }
    }
}

/// Result of an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    Stored {
        seq: i64,
        id: String,
    },
    /// A retransmission of an item already stored (same source, control id and bytes).
    Duplicate {
        seq: i64,
        id: String,
    },
}

/// What happened to one delivery attempt.
#[derive(Debug, Clone)]
pub enum DeliveryUpdate {
    /// Delivered. A destination's worker delivers in journal order, so this also says that
    /// every earlier item for the destination is done (delivered or given up): the
    /// destination's cursor moves to it.
    Delivered { seq: i64, destination: String },
    /// A failed attempt. With `give_up`, the delivery becomes [`DeliveryState::Failed`] (a dead
    /// letter); otherwise it is pending again.
    Failed { seq: i64, destination: String, error: String, outcome: &'static str, next_attempt_at: i64, give_up: bool },
}

/// A file whose items are all committed (see `source_files` in the schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenFile {
    pub source: String,
    pub name: String,
    /// `sha256:` and the hex SHA-256 of the file's bytes.
    pub digest: String,
    pub size: u64,
    pub items: u64,
}

/// Which failed deliveries to retry.
#[derive(Debug, Clone, Default)]
pub struct RetryTarget {
    /// One envelope (by id), or every failed one when `None`.
    pub id: Option<String>,
    pub destination: Option<String>,
}

/// A new routing decision for an unrouted item (after the rules changed).
#[derive(Debug, Clone)]
pub struct Rerouted {
    pub seq: i64,
    pub routes: Vec<String>,
    pub destinations: Vec<String>,
}

/// The committed head: delivery workers wait on it for new work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// Highest committed envelope seq.
    pub seq: i64,
    /// Bumped when failed deliveries are put back to pending (workers rescan from the start).
    pub rescan: u64,
}

/// Limits the writer enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The destination that sends to central: its deliveries get uplink sequence numbers.
    pub uplink_destination: Option<String>,
    pub max_bytes: u64,
    pub min_free_disk: u64,
    pub dedup_window_ms: i64,
}

enum Op {
    Insert(Box<NewEnvelope>),
    Delivery(DeliveryUpdate),
    Retry(RetryTarget),
    Reroute(Vec<Rerouted>),
    Purge {
        delivered_before: i64,
        problems_before: i64,
    },
    SetLimits(Limits),
    /// Central acknowledged these ids for this destination.
    Acked {
        destination: String,
        ids: Vec<String>,
    },
    /// Keeps events for central (id, payload), then the newest `keep` of all kept; returns how
    /// many older ones were dropped to make room.
    AddEvents {
        events: Vec<(String, Vec<u8>)>,
        keep: usize,
    },
    /// Increments a persistent counter and returns its new value.
    Bump(&'static str),
    /// Every item of a file taken from a folder, and the file's record: all or none.
    InsertFile {
        envelopes: Vec<NewEnvelope>,
        file: TakenFile,
    },
    /// An item and the items derived from it (a lab message and its HL7 results): all or none,
    /// each derived one naming the first in its summary (`derived_from`), the first naming them
    /// (`derived`). A retransmission of the first stores none of them again.
    InsertLinked {
        envelopes: Vec<NewEnvelope>,
    },
    /// The order cache (`orders.rs`).
    Orders(orders::OrderOp),
    Barrier,
    /// A barrier, then `wal_checkpoint(TRUNCATE)` before the answer.
    Checkpoint,
}

enum Reply {
    Insert(oneshot::Sender<Result<Inserted, JournalError>>),
    InsertFile(oneshot::Sender<Result<Vec<Inserted>, JournalError>>),
    Count(oneshot::Sender<Result<usize, JournalError>>),
    Value(oneshot::Sender<Result<i64, JournalError>>),
    Unit(oneshot::Sender<()>),
    /// Like `Unit`, but a failed commit is an error (a health check must not pass on one).
    Checked(oneshot::Sender<Result<(), JournalError>>),
    None,
}

struct Request {
    op: Op,
    reply: Reply,
}

/// Counters shared between the writer and everyone else.
#[derive(Debug, Default)]
pub struct Shared {
    /// Bytes of bodies of all stored envelopes.
    pub stored_bytes: AtomicU64,
    pub max_bytes: AtomicU64,
    pub commits: AtomicU64,
    /// Syncs of the WAL after a commit: those an acknowledgement waited on.
    pub synced_commits: AtomicU64,
    pub inserts: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Set when the writer has stopped; the checkpointer then stops too.
    pub closed: std::sync::atomic::AtomicBool,
    /// Per destination, the items waiting for it by its cursor (those with no delivery row:
    /// see schema migration 9), as of the last commit. Counted once at open, then kept by the
    /// writer, so `status` never reads a backlog to count it.
    pub waiting: Mutex<std::collections::HashMap<String, u64>>,
}

/// Handle to the journal. Cheap to clone; the writer thread stops when the last handle is
/// closed or dropped.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Request>,
    head: watch::Receiver<Head>,
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Queue depth of the writer; senders wait when it is full (backpressure on intake).
const OP_QUEUE: usize = 8192;

impl Journal {
    /// Opens the journal of gateway `site`/`node`: a new journal is claimed for it, one that
    /// belongs to another gateway is refused ([`JournalError::OtherGateway`]).
    pub fn open_for(path: &Path, limits: Limits, site: &str, node: &str) -> Result<Journal, JournalError> {
        Journal::open_inner(path, limits, Some((site, node)))
    }

    /// Opens (creating if needed) the journal at `path`, migrates it, and starts the writer.
    pub fn open(path: &Path, limits: Limits) -> Result<Journal, JournalError> {
        Journal::open_inner(path, limits, None)
    }

    fn open_inner(path: &Path, limits: Limits, gateway: Option<(&str, &str)>) -> Result<Journal, JournalError> {
        let open_err = |reason: String| JournalError::Open { path: path.display().to_string(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                open_err(format!(
                    "cannot create directory {}: {e}; check node.state_dir and its permissions",
                    dir.display()
                ))
            })?;
        }
        // One process per journal: two writers would deliver every item twice.
        let lock = lock_journal(path)?;
        let mut conn = open_connection(path, false).map_err(|e| open_err(e.to_string()))?;
        schema::migrate(&mut conn).map_err(|e| match e {
            JournalError::NewerSchema { found, supported } => JournalError::NewerSchema { found, supported },
            other => open_err(other.to_string()),
        })?;
        if let Some((site, node)) = gateway {
            claim(&conn, path, site, node)?;
        }
        let stored: i64 = conn.query_row("SELECT COALESCE(SUM(size), 0) FROM envelopes", [], |r| r.get(0))?;
        // Seqs never go back, even when every item was purged: a new item must come after every
        // destination's cursor, or it would count as done.
        let head_seq: i64 = conn.query_row(
            "SELECT max(COALESCE((SELECT MAX(seq) FROM envelopes), 0), COALESCE((SELECT MAX(seq) FROM cursors), 0))",
            [],
            |r| r.get(0),
        )?;
        // Deliveries that were in flight when the last run stopped are simply pending again.
        conn.execute("UPDATE deliveries SET state = 'pending' WHERE state = 'in_flight'", [])?;

        let shared = Arc::new(Shared::default());
        *shared.waiting.lock().unwrap_or_else(|e| e.into_inner()) = count_waiting(&conn)?;
        shared.stored_bytes.store(stored as u64, Ordering::Relaxed);
        shared.max_bytes.store(limits.max_bytes, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(OP_QUEUE);
        let (head_tx, head_rx) = watch::channel(Head { seq: head_seq, rescan: 0 });
        // Checkpoints copy the WAL into the database. A thread of its own does the bulk of it so
        // that a commit (and so an ACK) rarely waits behind one; under steady load it never
        // quite catches up, so the writer finishes the job itself past WRITER_CHECKPOINT_PAGES,
        // which lets SQLite start the WAL from its beginning again instead of growing it.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        let checkpoint_conn = open_connection(path, false).map_err(|e| open_err(e.to_string()))?;
        let (checkpoint_shared, checkpoint_path) = (shared.clone(), path.to_path_buf());
        std::thread::Builder::new()
            .name("journal-ckpt".into())
            .spawn(move || checkpointer(checkpoint_conn, checkpoint_path, checkpoint_shared))
            .map_err(|e| open_err(format!("cannot start checkpoint thread: {e}")))?;
        let writer = writer::Writer::new(conn, path.to_path_buf(), limits, shared.clone(), head_tx, lock);
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| open_err(format!("cannot start writer thread: {e}")))?;
        Ok(Journal { tx, head: head_rx, path: path.to_path_buf(), shared, thread: Arc::new(Mutex::new(Some(thread))) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Stores an item durably. Returns after commit and fsync.
    pub async fn insert(&self, envelope: NewEnvelope) -> Result<Inserted, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Insert(Box::new(envelope)), Reply::Insert(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Records delivery progress. Does not wait for the commit.
    pub async fn update(&self, update: DeliveryUpdate) -> Result<(), JournalError> {
        self.send(Op::Delivery(update), Reply::None).await
    }

    /// Puts failed deliveries back to pending; returns how many.
    pub async fn retry(&self, target: RetryTarget) -> Result<usize, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Retry(target), Reply::Count(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Gives unrouted items the routing decisions made for them now; returns how many were
    /// still unrouted and so changed.
    pub async fn reroute(&self, decisions: Vec<Rerouted>) -> Result<usize, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Reroute(decisions), Reply::Count(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Deletes fully delivered items received before `delivered_before` and rejected/unrouted
    /// items received before `problems_before` (unix ms); returns how many envelopes went.
    pub async fn purge(&self, delivered_before: i64, problems_before: i64) -> Result<usize, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Purge { delivered_before, problems_before }, Reply::Count(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    pub async fn set_limits(&self, limits: Limits) -> Result<(), JournalError> {
        self.shared.max_bytes.store(limits.max_bytes, Ordering::Relaxed);
        self.send(Op::SetLimits(limits), Reply::None).await
    }

    /// Marks the deliveries to `destination` of the items central acknowledged as delivered, and
    /// forgets the kept events it acknowledged; returns how many items were released (ids
    /// unknown or already released are ignored).
    pub async fn acked(&self, destination: &str, ids: Vec<String>) -> Result<usize, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Acked { destination: destination.to_string(), ids }, Reply::Count(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Keeps escalation events for central until an acknowledgement names them (see
    /// [`Journal::acked`]); at most the newest `keep`. Returns how many older ones were dropped.
    pub async fn add_events(&self, events: Vec<(String, Vec<u8>)>, keep: usize) -> Result<usize, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::AddEvents { events, keep }, Reply::Count(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Increments the persistent counter `key` (e.g. the uplink session) and returns its new
    /// value, once committed.
    pub async fn bump(&self, key: &'static str) -> Result<i64, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Bump(key), Reply::Value(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Stores every item of a file and the file's record in one transaction, durably: all of
    /// them, or (refused, or a crash) none. Returns after commit and fsync, one answer per item
    /// in order (a retransmission of an item already stored is a `Duplicate`). Once this returns,
    /// the file may be moved or deleted; found again, [`Reader::file_taken`] recognises it.
    pub async fn insert_file(
        &self,
        envelopes: Vec<NewEnvelope>,
        file: TakenFile,
    ) -> Result<Vec<Inserted>, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::InsertFile { envelopes, file }, Reply::InsertFile(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Stores an item and the items derived from it in one transaction, durably: all of them or
    /// none. The derived items' summaries name the first (`derived_from`), the first's names them
    /// (`derived`, ids joined by commas). When the first is a retransmission of an item already
    /// stored, nothing is stored and the answer is that `Duplicate` alone (its derived items
    /// were stored with it the first time).
    pub async fn insert_linked(
        &self,
        primary: NewEnvelope,
        derived: Vec<NewEnvelope>,
    ) -> Result<Vec<Inserted>, JournalError> {
        let (reply, rx) = oneshot::channel();
        let mut envelopes = Vec::with_capacity(1 + derived.len());
        envelopes.push(primary);
        envelopes.extend(derived);
        self.send(Op::InsertLinked { envelopes }, Reply::InsertFile(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Proves the writer takes requests and commits: an empty transaction (nothing written,
    /// nothing synced). An error when the commit failed (the database locked, an I/O error).
    pub async fn ping(&self) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Barrier, Reply::Checked(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Waits until everything sent before it is committed, then copies the WAL into the
    /// database and empties it (at shutdown: the next start has nothing to recover, and the
    /// card is written now rather than after a power cut).
    pub async fn checkpoint(&self) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Checkpoint, Reply::Unit(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)
    }

    /// Waits until everything sent before it is committed.
    pub async fn barrier(&self) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Barrier, Reply::Unit(reply)).await?;
        rx.await.map_err(|_| JournalError::Closed)
    }

    async fn send(&self, op: Op, reply: Reply) -> Result<(), JournalError> {
        self.tx.send(Request { op, reply }).await.map_err(|_| JournalError::Closed)
    }

    /// A receiver of the committed head, for delivery workers.
    pub fn head(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }

    /// Opens a read-only connection (one per task that reads; readers never block the writer).
    pub fn reader(&self) -> Result<Reader, JournalError> {
        Ok(Reader::new(open_connection(&self.path, true)?, self.shared.clone()))
    }

    /// Runs `f` on a read-only connection of its own, off the async threads (SQLite blocks).
    /// For occasional reads; a task that reads all the time keeps a [`SharedReader`].
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (path, shared) = (self.path.clone(), self.shared.clone());
        off_async_threads(move || f(&Reader::new(open_connection(&path, true)?, shared))).await
    }

    /// A reader for a task that reads all the time (a delivery worker, the uplink, the
    /// escalation monitor): one connection for its whole life, prepared statements and all.
    pub fn shared_reader(&self) -> Result<SharedReader, JournalError> {
        Ok(SharedReader(Arc::new(Mutex::new(self.reader()?))))
    }

    /// The directory the journal lives in.
    pub fn dir(&self) -> &Path {
        disk::dir_of(&self.path)
    }

    /// Bytes free on the journal's filesystem; `None` when it cannot be read.
    pub fn free_disk(&self) -> Option<u64> {
        disk::free_bytes(self.dir())
    }

    /// Bytes the journal occupies on disk (database and WAL).
    pub fn disk_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [self.path.as_path(), wal.as_path()].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    /// Drops this handle. If it was the last, waits for the writer to commit everything queued,
    /// checkpoint and stop; otherwise the writer stops when the last handle goes.
    pub fn close(self) {
        let Journal { tx, thread, .. } = self;
        drop(tx);
        if let Ok(slot) = Arc::try_unwrap(thread)
            && let Some(t) = slot.into_inner().ok().flatten()
        {
            let _ = t.join();
        }
    }
}

/// One task's long-lived [`Reader`], lent to a blocking thread for each read.
pub struct SharedReader(Arc<Mutex<Reader>>);

impl SharedReader {
    /// Runs `f` on this reader, off the async threads (SQLite blocks).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let reader = self.0.clone();
        off_async_threads(move || {
            // Poisoned only if an earlier read panicked, which has panicked its caller too.
            let reader = reader.lock().map_err(|_| JournalError::Closed)?;
            f(&reader)
        })
        .await
    }
}

/// Runs a read on tokio's blocking threads. A read that panicked panics its caller: that is a
/// bug to see, not an error to report.
async fn off_async_threads<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(JournalError::Closed),
    }
}

/// An envelope's id: a ULID whose time is when it was journaled and whose low bits are its seq,
/// so ids sort in journal order and find their row without an index of their own.
pub(crate) fn envelope_id(ms: u64, seq: i64) -> String {
    ulid::Ulid::from_parts(ms, seq as u128).to_string()
}

/// What the CLI may type for an item: its id (any case) or its seq number. Returns the seq and,
/// for an id, the id in canonical form (to check against the row).
pub(crate) fn resolve_id(text: &str) -> Option<(i64, Option<String>)> {
    let text = text.trim();
    if let Ok(seq) = text.parse::<i64>() {
        return Some((seq, None));
    }
    let ulid: ulid::Ulid = text.to_ascii_uppercase().parse().ok()?;
    let seq = i64::try_from(ulid.random()).ok()?;
    Some((seq, Some(ulid.to_string())))
}

/// Claims a new journal for gateway `site`/`node`, or checks that it is the one it belongs to.
fn claim(conn: &rusqlite::Connection, path: &Path, site: &str, node: &str) -> Result<(), JournalError> {
    let owner: Option<(String, String)> =
        conn.query_row("SELECT site, node FROM gateway", [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    match owner {
        None => {
            conn.execute(
                "INSERT INTO gateway (site, node, since) VALUES (?1, ?2, ?3)",
                rusqlite::params![site, node, crate::envelope::now_ms()],
            )?;
            Ok(())
        }
        Some((s, n)) if s == site && n == node => Ok(()),
        Some((s, n)) => Err(JournalError::OtherGateway {
            path: path.display().to_string(),
            site: s,
            node: n,
            config_site: site.to_string(),
            config_node: node.to_string(),
        }),
    }
}

/// `destination`'s cursor (schema 9): every item for it with a seq up to this is done, unless a
/// delivery row says otherwise. `None`: it has had no item since the journal had cursors.
fn cursor_of(conn: &rusqlite::Connection, destination: &str) -> Result<Option<i64>, JournalError> {
    Ok(conn
        .prepare_cached("SELECT seq FROM cursors WHERE destination = ?1")?
        .query_row([destination], |r| r.get(0))
        .optional()?)
}

/// SQL: the item `e` is for destination `?1` and has no delivery row for it. After the
/// destination's cursor, that is an item waiting for it by the cursor (schema migration 9).
const NO_ROW_FOR_DESTINATION: &str = "instr(e.destinations, json_quote(?1)) > 0
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq AND d.destination = ?1)";

/// Per destination with a cursor, the items after it that have no delivery row: what waits for
/// it by the cursor. One pass from the lowest cursor on (a destination with nothing waiting has
/// its cursor moved up to the head now and then: see `Writer::catch_up_cursors`).
fn count_waiting(conn: &rusqlite::Connection) -> Result<std::collections::HashMap<String, u64>, JournalError> {
    // Every destination with a cursor has a count, 0 too: the writer catches up idle ones.
    let mut waiting: std::collections::HashMap<String, u64> = conn
        .prepare("SELECT destination FROM cursors")?
        .query_map([], |r| Ok((r.get(0)?, 0)))?
        .collect::<Result<_, _>>()?;
    let mut counts = conn.prepare(
        "SELECT j.value, count(*) FROM envelopes e, json_each(e.destinations) j
           JOIN cursors c ON c.destination = j.value
         WHERE e.seq > (SELECT COALESCE(min(seq), 0) FROM cursors) AND e.seq > c.seq
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq AND d.destination = j.value)
         GROUP BY j.value",
    )?;
    for row in counts.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (dest, n) = row?;
        waiting.insert(dest, n as u64);
    }
    Ok(waiting)
}

/// WAL size above which the checkpoint thread runs a checkpoint.
const CHECKPOINT_WAL_BYTES: u64 = 1 << 20;

/// WAL pages (4 KiB; 64 MiB in all) above which the writer checkpoints after a commit. Rare,
/// since the checkpoint thread has usually copied all but the last ~100 ms of frames.
const WRITER_CHECKPOINT_PAGES: i64 = 16384;

/// Copies committed WAL frames into the database (PASSIVE: never blocks the writer), whenever
/// the WAL has grown past [`CHECKPOINT_WAL_BYTES`].
fn checkpointer(conn: rusqlite::Connection, path: PathBuf, shared: Arc<Shared>) {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    while !shared.closed.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size < CHECKPOINT_WAL_BYTES {
            continue;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {
                shared.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "journal checkpoint failed; will retry"),
        }
    }
}

/// Takes the journal's lock file (`<journal>.lock`, holding the owner's pid) for the life of the
/// writer.
fn lock_journal(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, JournalError> {
    use std::io::{Read, Seek, Write};
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| JournalError::Open { path: lock_path.display().to_string(), reason: e.to_string() })?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = write!(lock, "{}", std::process::id());
            Ok(lock)
        }
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let holder = match pid.trim() {
                "" => "unknown pid".to_string(),
                p => format!("pid {p}"),
            };
            Err(JournalError::InUse { path: path.display().to_string(), holder })
        }
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<rusqlite::Connection, rusqlite::Error> {
    use rusqlite::OpenFlags;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is fsynced at every commit, so a committed item survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Small caches: the gateway has little memory, and the hot data is the tail of the WAL.
    conn.pragma_update(None, "cache_size", if read_only { -512 } else { -2048 })?;
    Ok(conn)
}

#[cfg(test)]
mod tests;
