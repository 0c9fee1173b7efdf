//! The gateway-wide single-table sections: `[node]`, `[control]`, `[journal]`, `[routing]` and
//! `[escalation]`. Each reader reads its keys (which makes them the section's keys), finishes the
//! table, and returns `None` when anything was reported.

use std::path::Path;

use super::values::{
    GIB, MIB, absolute_path, boolean, choice, duration, file_mode, fraction, identifier, path, secs, size_in,
};
use super::walk::{Checker, Tbl};
use super::{Control, Escalation, Journal, Node, Routing, RoutingMode, default_state_dir};

pub(super) fn node(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Node> {
    let site = t.req(ck, "site", "site = \"northfield\"", identifier);
    let id = t.req(ck, "id", "id = \"gw-01\"", identifier);
    let state_dir = t.opt(ck, "state_dir", default_state_dir(), absolute_path);
    let shutdown_grace = t.opt(ck, "shutdown_grace", secs(10), duration(true));
    let log_summary = t.opt(ck, "log_summary", secs(60), duration(false));
    t.finish(ck, &[]);
    Some(Node {
        site: site?,
        id: id?,
        state_dir: state_dir?,
        shutdown_grace: shutdown_grace?,
        log_summary: log_summary?,
    })
}

pub(super) fn control(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<Control> {
    let socket = t.opt(ck, "socket", state_dir.join("control.sock"), |ck, v| path(ck, v).map(|p| state_dir.join(p)));
    let socket_mode = t.opt(ck, "socket_mode", 0o660, file_mode);
    t.finish(ck, &[]);
    Some(Control { socket: socket?, socket_mode: socket_mode? })
}

pub(super) fn journal(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<Journal> {
    let path = t.opt(ck, "path", state_dir.join("journal.db"), |ck, v| path(ck, v).map(|p| state_dir.join(p)));
    let max_bytes = t.opt(ck, "max_bytes", GIB, size_in(1, u64::MAX));
    let high_water = t.opt(ck, "high_water", 0.8, fraction);
    let min_free_disk = t.opt(ck, "min_free_disk", 100 * MIB, size_in(0, u64::MAX));
    let retention = t.opt(ck, "retention", secs(7 * 86_400), duration(true));
    let rejected_retention = t.opt(ck, "rejected_retention", secs(30 * 86_400), duration(true));
    let dedup_window = t.opt(ck, "dedup_window", secs(86_400), duration(true));
    t.finish(ck, &[]);
    Some(Journal {
        path: path?,
        max_bytes: max_bytes?,
        high_water: high_water?,
        min_free_disk: min_free_disk?,
        retention: retention?,
        rejected_retention: rejected_retention?,
        dedup_window: dedup_window?,
    })
}

pub(super) fn routing(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Routing> {
    let modes = [("all-matches", RoutingMode::AllMatches), ("first-match", RoutingMode::FirstMatch)];
    let mode = t.opt(ck, "mode", RoutingMode::AllMatches, choice(&modes, "routing mode"));
    t.finish(ck, &[]);
    Some(Routing { mode: mode? })
}

/// `[escalation]`, but for its `[[escalation.rule]]` blocks, which are returned to be read once
/// the sources they name are known (see `rule.rs`).
pub(super) fn escalation<'a, 'i>(ck: &mut Checker, t: &Tbl<'a, 'i>) -> (Option<Escalation>, Vec<Tbl<'a, 'i>>) {
    let undelivered_after = t.opt(ck, "undelivered_after", secs(15 * 60), duration(false));
    let unreachable_after = t.opt(ck, "unreachable_after", secs(5 * 60), duration(false));
    let source_down_after = t.opt(ck, "source_down_after", secs(5 * 60), duration(false));
    let on_unrouted = t.opt(ck, "on_unrouted", true, boolean);
    let on_rejected = t.opt(ck, "on_rejected", true, boolean);
    let check_interval = t.opt(ck, "check_interval", secs(30), duration(false));
    let rules = t.blocks(ck, "rule", "[[escalation.rule]]");
    t.finish(ck, &[]);
    let escalation = (|| {
        Some(Escalation {
            undelivered_after: undelivered_after?,
            unreachable_after: unreachable_after?,
            source_down_after: source_down_after?,
            on_unrouted: on_unrouted?,
            on_rejected: on_rejected?,
            check_interval: check_interval?,
            rules: Vec::new(),
        })
    })();
    (escalation, rules)
}
