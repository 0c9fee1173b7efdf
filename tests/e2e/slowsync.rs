//! The daemon under the slow-sync shim (`benches/slowsync/`: every `fsync`/`fdatasync` made
//! slower, as on a gateway's SD card or eMMC, and counted), for tests of the journal on slow
//! flash such as a kill -9 cycle. Use it as
//!
//! ```ignore
//! if slowsync_unavailable("my_test") { return; }
//! let counters = dir.path().join("syncs");
//! let daemon = Daemon::start_with_env(dir, &config, slowsync_env(2000, &counters));
//! ... Counts::read(&counters).get(Slot::Syncs) ...
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::support::*;

#[path = "../../benches/slowsync/mod.rs"]
mod shim;
pub use shim::{Counts, Slot};

/// The environment that runs the daemon under the shim, built once per test run (into
/// cargo's target tmpdir): each sync `latency_us` slower (0: counted only), the counts in
/// the file `counters` (read them with [`Counts::read`]; they survive a kill -9).
pub fn slowsync_env(latency_us: u64, counters: &Path) -> Vec<(String, String)> {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        shim::build(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("slowsync")).unwrap_or_else(|e| panic!("{e}"))
    });
    shim::env(lib, latency_us, counters)
}

/// True (after saying why) when the shim cannot work here: under qemu-user (`cross/test`) the
/// daemon is an emulated binary, and a host library cannot be preloaded into it.
pub fn slowsync_unavailable(test: &str) -> bool {
    if under_emulation() {
        eprintln!(
            "{test}: not run under qemu-user: the slow-sync shim is a host library, and LD_PRELOAD cannot load it \
             into an emulated binary; it runs natively in scripts/test"
        );
        return true;
    }
    false
}

#[test]
fn the_daemon_under_the_slow_sync_shim_syncs_each_commit_slowly_and_counts_it() {
    if slowsync_unavailable("the_daemon_under_the_slow_sync_shim_syncs_each_commit_slowly_and_counts_it") {
        return;
    }
    let sink = Sink::start(SinkMode::Accept);
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = dir.path().join("slowsync.counters");
    let daemon =
        Daemon::start_with_env(dir, &single_route_config("", sink.addr, "", ""), slowsync_env(20_000, &counters));
    let before = Counts::read(&counters);
    let mut client = Client::connect(daemon.addr("ehr"));
    let started = std::time::Instant::now();
    let ack = client.send(&oru("SLOW-1", "N"));
    let took = started.elapsed();
    assert_eq!(ack_code(&ack), "AA", "{ack}");
    let counts = Counts::read(&counters).since(&before);
    // The item's commit synced the WAL on the journal's writer thread, through the shim, before
    // the ACK: so the ACK waited for the added 20 ms.
    assert!(counts.get(Slot::WalCommit) >= 1, "no commit sync counted: {counts:?}");
    assert!(counts.get(Slot::Fdatasync) + counts.get(Slot::Fsync) >= 1, "{counts:?}");
    assert!(counts.get(Slot::BytesWal) >= 4096, "the commit's WAL frames were not counted: {counts:?}");
    assert!(took >= std::time::Duration::from_millis(20), "the ACK came after {took:?}, before the slow sync");
    assert!(counts.get(Slot::SyncNs) >= 20_000_000, "{counts:?}");
    wait_for("the message at the sink", DEADLINE, || (sink.count() == 1).then_some(()));
}
