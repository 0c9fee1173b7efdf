//! What the gateway says about itself: birth, telemetry, events. Ids, names, types and
//! counts only, never message content.

use serde_json::{Value, json};

use super::contract::{VERSION, now_rfc3339};
use crate::control::ControlContext;
use crate::envelope::rfc3339;
use crate::events::Escalation;
use crate::journal::SharedReader;

/// The birth message: `{root}/state`, retained. `upto_seq` is where this session's historical
/// lane ends (journal seq).
pub async fn birth(
    ctx: &ControlContext,
    reader: &SharedReader,
    destination: Option<&str>,
    session: i64,
    upto_seq: i64,
) -> Vec<u8> {
    let config = ctx.config.get();
    let backlog = match destination {
        Some(dest) => {
            let dest = dest.to_string();
            reader.read(move |r| r.uplink_backlog(&dest, upto_seq)).await.ok()
        }
        None => None,
    };
    let backlog = backlog.map(|b| {
        json!({
            "items": b.items,
            "oldest_received_at": b.oldest_received_at.map(rfc3339),
            "from_seq": b.first_useq,
            "to_seq": b.last_useq,
        })
    });
    // Birth needs the sources' live state only, not status's count of the queue.
    let sources: Vec<Value> = crate::control::source_statuses(ctx, &config).iter().map(|s| source(s, false)).collect();
    let escalations: Vec<Value> = ctx
        .escalations
        .snapshot()
        .into_iter()
        .map(|e| json!({"code": e.code, "severity": e.severity, "subject": e.subject, "message": e.message}))
        .collect();
    let v = json!({
        "v": VERSION,
        "status": "online",
        "session": session,
        "at": now_rfc3339(),
        "version": env!("CARGO_PKG_VERSION"),
        "config": {"version": config_version(ctx), "hash": config.hash()},
        "sources": sources,
        "backlog": backlog,
        "escalations": escalations,
        "clock": clock(),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The version central gave the running config, or `local`.
pub fn config_version(ctx: &ControlContext) -> String {
    ctx.remote.version.get().to_string()
}

/// Telemetry: `{root}/telemetry`.
pub async fn telemetry(ctx: &ControlContext, session: i64) -> Vec<u8> {
    let st = match crate::control::status(ctx).await {
        Ok(st) => st,
        Err(e) => {
            tracing::warn!(error = %e, "cannot gather telemetry");
            return serde_json::to_vec(
                &json!({"v": VERSION, "session": session, "at": now_rfc3339(), "error": e.to_string()}),
            )
            .unwrap_or_default();
        }
    };
    let free_disk = ctx.journal.free_disk();
    let sources: Vec<Value> = st.sources.iter().map(|s| source(s, true)).collect();
    let destinations: Vec<Value> = st
        .destinations
        .iter()
        .map(|d| {
            json!({
                "name": d.name, "kind": d.kind, "pending": d.pending, "failed": d.failed,
                "oldest_pending_age_s": d.oldest_pending_age_s, "delivered": d.delivered,
                "connected": d.unreachable_since.is_none(),
            })
        })
        .collect();
    let uplink = st.uplink.as_ref().map(|u| {
        json!({
            "backlog": u.backlog, "in_flight": u.in_flight, "oldest_pending_age_s": u.oldest_pending_age_s,
            "published": u.published, "acked": u.acked, "resent": u.resent,
            "reconnects": u.reconnects, "last_disconnect": u.last_disconnect,
        })
    });
    let v = json!({
        "v": VERSION,
        "session": session,
        "at": now_rfc3339(),
        "uptime_s": st.uptime_s,
        "rss_bytes": rss_bytes(),
        "journal": {
            "bytes": st.journal.disk_bytes, "stored_bytes": st.journal.stored_bytes,
            "max_bytes": st.journal.max_bytes, "items": st.journal.items,
            "unrouted": st.journal.unrouted, "rejected": st.journal.rejected,
            "free_disk_bytes": free_disk,
        },
        "sources": sources,
        "destinations": destinations,
        "uplink": uplink,
        "clock": clock(),
        "events_waiting": st.uplink.as_ref().map(|u| u.events_waiting).unwrap_or(0),
        "events_dropped": st.uplink.as_ref().map(|u| u.events_dropped).unwrap_or(0),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A source in birth (`counts` false) and telemetry.
fn source(s: &crate::control::protocol::SourceStatus, counts: bool) -> Value {
    let mut v = json!({"name": s.name, "kind": s.detail.kind(), "link": s.detail.link_word(s.state)});
    if let Some(o) = v.as_object_mut() {
        for (k, value) in s.detail.contract_fields() {
            o.insert(k.into(), value);
        }
    }
    if counts && let Some(o) = v.as_object_mut() {
        for (k, n) in
            [("received", s.received), ("rejected", s.rejected), ("duplicates", s.duplicates), ("refused", s.refused)]
        {
            o.insert(k.into(), n.into());
        }
    }
    v
}

/// An escalation as an event for central (`{root}/event`): (id, payload).
pub fn event(e: &Escalation, at: i64, session: i64) -> (String, Vec<u8>) {
    let id = ulid::Ulid::from_parts(at.max(0) as u64, rand::random::<u128>()).to_string();
    let v = json!({
        "v": VERSION,
        "id": id,
        "at": rfc3339(at),
        "session": session,
        "code": e.code,
        "severity": e.severity,
        "subject": e.subject,
        "state": if e.active { "raised" } else { "cleared" },
        "message": e.message,
    });
    (id, serde_json::to_vec(&v).unwrap_or_default())
}

/// Resident set size, from /proc.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    Some(pages * page)
}

/// Whether the kernel considers the clock NTP-synchronised, and its offset estimate.
fn clock() -> Value {
    match kernel_clock() {
        Some((synced, offset_ms)) => {
            json!({"synced": synced, "offset_ms": if synced { Some(offset_ms) } else { None }})
        }
        None => json!({"synced": null, "offset_ms": null}),
    }
}

/// Whether the kernel considers the clock synchronised, and its offset estimate in ms; `None`
/// when it cannot be asked.
#[allow(unsafe_code)]
pub(crate) fn kernel_clock() -> Option<(bool, f64)> {
    // SAFETY: adjtimex with modes = 0 only reads the kernel's clock state into the zeroed
    // struct we own; it has no other effect.
    let (state, tx) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut tx);
        (state, tx)
    };
    if state < 0 {
        return None;
    }
    let synced = state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    let offset_ms = if tx.status & libc::STA_NANO != 0 { tx.offset as f64 / 1e6 } else { tx.offset as f64 / 1e3 };
    Some((synced, offset_ms))
}
