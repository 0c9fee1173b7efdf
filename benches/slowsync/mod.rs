//! The slow-sync shim (`slowsync.c` beside this file): built with the system C compiler, run
//! with `LD_PRELOAD`, its counters read back. Shared by `benches/intake.rs` and the e2e tests
//! (`tests/e2e/slowsync.rs` includes this file by path), so that both read the counters by the
//! same slot numbers as the C file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The shim's source.
pub const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/slowsync/slowsync.c");

/// Compiles the shim into `dir/libslowsync.so` unless it is there and newer than its source;
/// returns its path. `$CC` or `cc` (gcc or clang both do). Safe to call from several processes
/// at once: each compiles to a name of its own and renames it into place.
pub fn build(dir: &Path) -> Result<PathBuf, String> {
    let lib = dir.join("libslowsync.so");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(source)) = (modified(&lib), modified(Path::new(SOURCE)))
        && built >= source
    {
        return Ok(lib);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!("libslowsync.so.{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(SOURCE)
        .args(["-ldl", "-lpthread"])
        .output()
        .map_err(|e| format!("cannot run the C compiler {cc:?} (install gcc, or set CC): {e}"))?;
    if !out.status.success() {
        return Err(format!("{cc} could not build {SOURCE}:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    std::fs::rename(&tmp, &lib).map_err(|e| format!("cannot move the shim into {}: {e}", lib.display()))?;
    Ok(lib)
}

/// The environment that runs a process under the shim: each sync `latency_us` slower
/// (0: counted only), counted into the file `counters` (created by the shim).
pub fn env(lib: &Path, latency_us: u64, counters: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("OUTPOST_SLOWSYNC_US".into(), latency_us.to_string()),
        ("OUTPOST_SLOWSYNC_COUNT".into(), counters.display().to_string()),
    ]
}

/// The counter slots, numbered as in `slowsync.c`.
#[derive(Clone, Copy, Debug)]
pub enum Slot {
    Magic = 0,
    /// Every sync call.
    Syncs = 1,
    Fsync = 2,
    Fdatasync = 3,
    /// syncfs, sync_file_range, msync(MS_SYNC).
    OtherSyncCalls = 4,
    /// WAL syncs on the journal's writer thread after frames: one per commit that wrote.
    WalCommit = 5,
    /// WAL syncs right after a fresh WAL header (the WAL restarting after a checkpoint).
    WalHeader = 6,
    /// Syncs on the journal's checkpoint thread.
    CheckpointThread = 7,
    /// Database-file syncs on the writer thread (its own checkpoints).
    WriterDb = 8,
    /// Every other sync (other threads or files; the reference server's log).
    OtherSyncs = 9,
    /// Nanoseconds spent in sync calls, the added latency included.
    SyncNs = 10,
    BytesWal = 11,
    BytesDb = 12,
    BytesShm = 13,
    BytesOther = 14,
    /// Every WAL sync, whatever the thread.
    WalSyncs = 15,
}

const SLOTS: usize = 32;
const MAGIC: u64 = 0x534c_4f57_5359_4e43;

/// A reading of the counters (all zero if the file is missing or not set up yet).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts([u64; SLOTS]);

impl Counts {
    pub fn read(path: &Path) -> Counts {
        let mut c = [0u64; SLOTS];
        if let Ok(bytes) = std::fs::read(path) {
            for (slot, chunk) in c.iter_mut().zip(bytes.chunks_exact(8)) {
                *slot = u64::from_ne_bytes(chunk.try_into().unwrap());
            }
        }
        if c[0] != MAGIC {
            return Counts::default();
        }
        Counts(c)
    }

    pub fn get(&self, slot: Slot) -> u64 {
        self.0[slot as usize]
    }

    /// What was counted since `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut c = [0u64; SLOTS];
        for (i, v) in c.iter_mut().enumerate() {
            *v = self.0[i].saturating_sub(earlier.0[i]);
        }
        c[0] = MAGIC;
        Counts(c)
    }
}
