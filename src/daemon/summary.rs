//! The log's periodic summary of items. Items are logged one by one at debug only (a backlog
//! of 100,000 would pass journald's rate limit, 10,000 lines in 30 s by default, and journald
//! would then drop every line of the service, warnings included); at info the log says, once
//! per `node.log_summary`, how many were received, delivered, rejected, refused, and which
//! per-item escalations were counted rather than logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::backoff::sleep_or_cancel;
use crate::config::Config;
use crate::current::Current;
use crate::events::Bus;
use crate::stats::{Stats, get};

/// Counters at one moment: per source (received, rejected, refused, duplicates) and per
/// destination (delivered).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Totals {
    sources: BTreeMap<String, [u64; 4]>,
    delivered: u64,
}

fn totals(stats: &Stats, config: &Config) -> Totals {
    let sources = config
        .sources
        .iter()
        .map(|s| {
            let st = stats.source(&s.name);
            (s.name.clone(), [get(&st.received), get(&st.rejected), get(&st.refused), get(&st.duplicates)])
        })
        .collect();
    let delivered = config.destinations.iter().map(|d| get(&stats.destination(&d.name).delivered)).sum();
    Totals { sources, delivered }
}

/// The line for what changed between `before` and `now`; `None` when nothing did.
fn line(before: &Totals, now: &Totals, every: std::time::Duration) -> Option<String> {
    let delta = |name: &str, i: usize| {
        let was = before.sources.get(name).map(|c| c[i]).unwrap_or(0);
        now.sources.get(name).map(|c| c[i]).unwrap_or(0).saturating_sub(was)
    };
    let sum = |i: usize| now.sources.keys().map(|n| delta(n, i)).sum::<u64>();
    let (received, rejected, refused, duplicates) = (sum(0), sum(1), sum(2), sum(3));
    let delivered = now.delivered.saturating_sub(before.delivered);
    if received + rejected + refused + duplicates + delivered == 0 {
        return None;
    }
    let per_source: Vec<String> =
        now.sources.keys().filter(|n| delta(n, 0) > 0).map(|n| format!("{n} {}", delta(n, 0))).collect();
    let mut text = format!("in the last {}: {received} received", humanize(every));
    if per_source.len() > 1 {
        text.push_str(&format!(" ({})", per_source.join(", ")));
    }
    text.push_str(&format!(", {delivered} delivered"));
    for (n, what) in [(rejected, "rejected"), (refused, "refused"), (duplicates, "retransmissions")] {
        if n > 0 {
            text.push_str(&format!(", {n} {what}"));
        }
    }
    Some(text)
}

fn humanize(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s if s >= 1 => format!("{s} s"),
        _ => format!("{} ms", d.as_millis()),
    }
}

pub(super) async fn summary_loop(config: Arc<Current<Config>>, stats: Arc<Stats>, bus: Bus, cancel: CancellationToken) {
    let mut before = totals(&stats, &config.get());
    loop {
        let every = config.get().node.log_summary;
        if sleep_or_cancel(every, &cancel).await {
            return;
        }
        let now = totals(&stats, &config.get());
        if let Some(text) = line(&before, &now, every) {
            tracing::info!("{text}");
        }
        for (code, count) in bus.take_suppressed() {
            tracing::warn!(
                code = code.as_str(),
                count,
                "{count} more `{code}` escalations in the last {} were not logged one by one; `outpost tail` and central have each of them",
                humanize(every)
            );
        }
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn totals(sources: &[(&str, [u64; 4])], delivered: u64) -> Totals {
        Totals { sources: sources.iter().map(|(n, c)| (n.to_string(), *c)).collect(), delivered }
    }

    #[test]
    fn the_summary_says_what_changed_and_nothing_when_nothing_did() {
        let before = totals(&[("ehr", [10, 0, 0, 0]), ("lab", [5, 0, 0, 0])], 12);
        let now = totals(&[("ehr", [1210, 1, 0, 3]), ("lab", [39, 0, 0, 0])], 1242);
        assert_eq!(
            line(&before, &now, Duration::from_secs(60)).unwrap(),
            "in the last 1 min: 1234 received (ehr 1200, lab 34), 1230 delivered, 1 rejected, 3 retransmissions"
        );
        assert_eq!(line(&now, &now, Duration::from_secs(60)), None);
        let one = totals(&[("ehr", [1, 0, 2, 0])], 0);
        assert_eq!(
            line(&Totals::default(), &one, Duration::from_secs(5)).unwrap(),
            "in the last 5 s: 1 received, 0 delivered, 2 refused"
        );
    }
}
