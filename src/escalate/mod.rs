//! Escalation: thresholds that turn a quiet problem into a loud event. Evaluated periodically
//! from the journal and link states: an item undelivered too long, a destination unreachable
//! too long, the journal above its high-water mark. (Unrouted and rejected items are raised by
//! intake as they arrive, as are the content rules of `rules.rs`.) Each condition is raised once
//! and cleared once, not every check.

pub mod rules;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::backoff::sleep_or_cancel;
use crate::config::Config;
use crate::envelope::now_ms;
use crate::events::{Bus, Escalation, EscalationCode, EventKind, Severity};
use crate::journal::Journal;
use crate::stats::{Stats, get};

/// The escalations currently raised, keyed by `code:subject`.
#[derive(Clone, Default)]
pub struct ActiveEscalations(Arc<Mutex<BTreeMap<String, Escalation>>>);

impl ActiveEscalations {
    pub fn snapshot(&self) -> Vec<Escalation> {
        self.0.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Subjects with an active escalation of this code.
    fn subjects(&self, code: EscalationCode) -> Vec<String> {
        self.0
            .lock()
            .map(|m| m.values().filter(|e| e.code == code).map(|e| e.subject.clone()).collect())
            .unwrap_or_default()
    }

    /// Raises (with a message) or clears (`None`); emits only on change.
    pub fn set(&self, bus: &Bus, code: EscalationCode, severity: Severity, subject: &str, message: Option<String>) {
        let key = format!("{code}:{subject}");
        let Ok(mut map) = self.0.lock() else { return };
        match message {
            Some(message) => {
                if let std::collections::btree_map::Entry::Vacant(slot) = map.entry(key) {
                    let e = Escalation { code, severity, subject: subject.to_string(), message, active: true };
                    slot.insert(e.clone());
                    bus.emit(EventKind::Escalation(e));
                }
            }
            None => {
                if let Some(mut e) = map.remove(&key) {
                    e.active = false;
                    bus.emit(EventKind::Escalation(e));
                }
            }
        }
    }
}

pub async fn monitor(
    config: Arc<crate::current::Current<Config>>,
    journal: Journal,
    stats: Arc<Stats>,
    bus: Bus,
    active: ActiveEscalations,
    cancel: CancellationToken,
) {
    let reader = match journal.shared_reader() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "escalation monitor cannot read the journal; thresholds are not checked");
            return;
        }
    };
    loop {
        let config = config.get();
        let interval = config.escalation.check_interval;
        let counts = reader.read(|r| r.status_counts()).await.ok();
        let now = now_ms();
        let esc = &config.escalation;
        for dest in &config.destinations {
            let oldest = counts
                .as_ref()
                .and_then(|c| c.destinations.iter().find(|d| d.0 == dest.name))
                .and_then(|d| d.3.map(|t| (d.1, now - t)));
            let msg = oldest.filter(|(_, age)| *age > esc.undelivered_after.as_millis() as i64).map(|(n, age)| {
                format!(
                    "destination {}: {n} item(s) waiting, the oldest for {}s (escalation.undelivered_after = {}s)",
                    dest.name,
                    age / 1000,
                    esc.undelivered_after.as_secs()
                )
            });
            active.set(&bus, EscalationCode::Undelivered, Severity::Warning, &dest.name, msg);

            let link = stats.destination(&dest.name).link();
            let msg = link
                .unreachable_since
                .filter(|since| now - since > esc.unreachable_after.as_millis() as i64)
                .map(|since| {
                    format!(
                        "destination {} unreachable for {}s: {}",
                        dest.name,
                        (now - since) / 1000,
                        link.last_error.clone().unwrap_or_default()
                    )
                });
            active.set(&bus, EscalationCode::Unreachable, Severity::Critical, &dest.name, msg);
        }
        for source in &config.sources {
            let link = stats.source(&source.name).link();
            let down_for = now - link.since;
            let msg = (link.state == crate::stats::SourceState::Down
                && link.since > 0
                && down_for > esc.source_down_after.as_millis() as i64)
                .then(|| {
                    format!(
                        "source {} down for {}s: {}",
                        source.name,
                        down_for / 1000,
                        link.last_error.clone().unwrap_or_else(|| "no reason given".into())
                    )
                });
            active.set(&bus, EscalationCode::SourceDown, Severity::Critical, &source.name, msg);
        }
        for name in active.subjects(EscalationCode::SourceDown) {
            if config.source(&name).is_none() {
                active.set(&bus, EscalationCode::SourceDown, Severity::Critical, &name, None);
            }
        }
        // Items waiting for a destination that is no longer configured would wait forever, and
        // `status` (which lists configured destinations) would not show them.
        if let Some(counts) = &counts {
            let mut orphaned = Vec::new();
            for (dest, pending, failed, _) in &counts.destinations {
                if config.destination(dest).is_none() && pending + failed > 0 {
                    let msg = format!(
                        "{} item(s) wait for destination {dest}, which is no longer in the config; \
                         add it back to deliver them",
                        pending + failed
                    );
                    active.set(&bus, EscalationCode::Orphaned, Severity::Critical, dest, Some(msg));
                    orphaned.push(dest.clone());
                }
            }
            for dest in active.subjects(EscalationCode::Orphaned) {
                if !orphaned.contains(&dest) {
                    active.set(&bus, EscalationCode::Orphaned, Severity::Critical, &dest, None);
                }
            }
        }
        let shared = journal.shared();
        let (stored, max) = (get(&shared.stored_bytes), get(&shared.max_bytes));
        let msg = (max > 0 && stored as f64 > max as f64 * config.journal.high_water).then(|| {
            format!(
                "journal holds {stored} of {max} bytes ({:.0}%), above journal.high_water ({:.0}%); \
                 at 100% new items are refused",
                stored as f64 * 100.0 / max as f64,
                config.journal.high_water * 100.0
            )
        });
        active.set(&bus, EscalationCode::HighWater, Severity::Warning, "journal", msg);

        // Below journal.min_free_disk new items are refused; warn at twice that, while there is
        // still time to make room.
        let min_free = config.journal.min_free_disk;
        let msg = journal.free_disk().filter(|&f| min_free > 0 && f < min_free.saturating_mul(2)).map(|f| {
            format!(
                "{f} bytes free on the journal's filesystem ({}); below {min_free} (journal.min_free_disk) new \
                 items are refused: make room",
                journal.dir().display()
            )
        });
        active.set(&bus, EscalationCode::LowDisk, Severity::Warning, "journal", msg);

        if sleep_or_cancel(interval, &cancel).await {
            return;
        }
    }
}
