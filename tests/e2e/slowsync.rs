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

/// An item committed but not yet synced is not sent on: a delivery worker reads up to the
/// synced head only. The second message arrives while the first one's sync runs, so it is
/// committed when that sync ends and synced by the next; the sink must not have it before
/// that second sync is over (a worker reading the journal as committed would send it one sync
/// early, right after delivering the first).
#[test]
fn an_item_is_delivered_only_once_its_sync_is_over() {
    if slowsync_unavailable("an_item_is_delivered_only_once_its_sync_is_over") {
        return;
    }
    const SYNC_MS: u64 = 400;
    let sink = Sink::start(SinkMode::Accept);
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = dir.path().join("slowsync.counters");
    let daemon = Daemon::start_with_env(
        dir,
        &single_route_config("", sink.addr, "", ""),
        slowsync_env(SYNC_MS * 1000, &counters),
    );
    let (first, second) = (daemon.addr("ehr"), daemon.addr("ehr"));
    let before = Counts::read(&counters);
    let one = std::thread::spawn(move || ack_code(&Client::connect(first).send(&oru("SYNCED-1", "N"))));
    // The first message's sync has started (the shim counts a sync as it begins).
    wait_for("the first message's sync", DEADLINE, || {
        (Counts::read(&counters).since(&before).get(Slot::WalCommit) >= 1).then_some(())
    });
    let sent = std::time::Instant::now();
    let two = std::thread::spawn(move || ack_code(&Client::connect(second).send(&oru("SYNCED-2", "N"))));
    // Looked at closely (not with `wait_for`'s growing pauses), so the time is the arrival's.
    while sink.count() < 2 {
        assert!(sent.elapsed() < DEADLINE, "the messages never reached the sink: {}", sink.count());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let delivered_after = sent.elapsed();
    assert_eq!((one.join().unwrap(), two.join().unwrap()), ("AA".to_string(), "AA".to_string()));
    // The rest of the first sync, then the second one: well over one sync.
    assert!(
        delivered_after >= std::time::Duration::from_millis(SYNC_MS * 3 / 2),
        "the second message reached the sink {delivered_after:?} after it was sent, before its own sync could end"
    );
}
