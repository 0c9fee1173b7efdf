//! Logging: journald when systemd runs us (it sets $JOURNAL_STREAM), stderr otherwise.
//! The level comes from $OUTPOST_LOG (or $RUST_LOG), default `info`. Nothing logged at info
//! carries message content: ids, types, counts and names only. Items are logged one by one at
//! debug; at info the daemon summarises them every `node.log_summary` and throttles per-item
//! escalations (see `daemon/summary.rs`), so a burst never reaches journald's rate limit.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("OUTPOST_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default))
}

pub fn init_daemon() {
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(layer) = tracing_journald::layer()
    {
        // Fields become journald fields by their own names (`source` → SOURCE), so that
        // `journalctl -u outpost SOURCE=ehr-feed` finds a source's lines.
        let layer = layer.with_field_prefix(None);
        let _ = tracing_subscriber::registry().with(filter("info")).with(layer).try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn init_cli() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
