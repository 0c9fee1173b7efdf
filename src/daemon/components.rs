//! The running parts: sources, delivery workers and the uplink. Started from a config,
//! switched to another (bind first, then swap: a config that cannot open changes nothing), and
//! stopped, every step bounded in time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Destination, Source};
use crate::control::ControlContext;
use crate::ingress::{self, OpenError, Opened, Serving};
use crate::intake::Rules;
use crate::journal::Limits;

/// How long one part may take to stop during a reload before it is abandoned (its task is
/// aborted; nothing acknowledged is lost, the journal holds it).
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// How long a source told to end its work in progress (after [`STOP_WITHIN`]) may take to keep
/// what it has before its task is aborted.
const ABORT_WITHIN: Duration = Duration::from_secs(2);

struct RunningSource {
    config: Source,
    /// Stops taking new work; the task then returns what the source opened.
    stop: CancellationToken,
    /// Ends the source's work in progress (open connections).
    abort: CancellationToken,
    task: JoinHandle<Opened>,
}

struct RunningDestination {
    config: Destination,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The uplink's settings and destination as started (a change restarts it).
pub(super) type UplinkSettings = (crate::config::Uplink, Option<String>);

struct RunningUplink {
    config: UplinkSettings,
    cancel: CancellationToken,
    /// Why it is being stopped, for its death message (`shutdown` unless set).
    stop_reason: Arc<std::sync::OnceLock<&'static str>>,
    task: JoinHandle<()>,
}

pub(super) struct Components {
    ctx: ControlContext,
    /// Parent of every source's tokens: shutdown stops all ingress at once.
    ingress: CancellationToken,
    /// Connections and other work in progress of every source.
    tracker: TaskTracker,
    sources: BTreeMap<String, RunningSource>,
    destinations: BTreeMap<String, RunningDestination>,
    uplink: Option<RunningUplink>,
}

pub(super) fn limits(config: &Config) -> Limits {
    Limits {
        uplink_destination: config.uplink_destination().map(str::to_string),
        max_bytes: config.journal.max_bytes,
        min_free_disk: config.journal.min_free_disk,
        dedup_window_ms: config.journal.dedup_window.as_millis() as i64,
    }
}

impl Components {
    pub(super) fn new(ctx: ControlContext) -> Components {
        Components {
            ctx,
            ingress: CancellationToken::new(),
            tracker: TaskTracker::new(),
            sources: BTreeMap::new(),
            destinations: BTreeMap::new(),
            uplink: None,
        }
    }

    /// Starts everything `config` names: delivery first (so nothing waits on it), then the
    /// sources, each opened before it serves. Fails on the first source that cannot open.
    pub(super) async fn start(&mut self, config: &Config) -> Result<(), OpenError> {
        ingress::check_exclusive(&config.sources)?;
        for d in &config.destinations {
            self.start_destination(d.clone());
        }
        self.start_uplink(config);
        for s in &config.sources {
            let opened = ingress::open(s).await?;
            self.start_source(s.clone(), opened);
        }
        Ok(())
    }

    pub(super) fn stats(&self) -> &crate::stats::Stats {
        &self.ctx.stats
    }

    pub(super) fn uplink_settings(&self) -> Option<UplinkSettings> {
        self.uplink.as_ref().map(|u| u.config.clone())
    }

    fn start_source(&mut self, config: Source, opened: Opened) {
        // Up from here, not from inside its task: READY=1 and its status line follow at once,
        // and must not count an opened source as down.
        match opened.state(&config) {
            Ok(at) => self.ctx.stats.source(&config.name).up(at),
            Err(why) => self.ctx.stats.source(&config.name).down(Some(why)),
        }
        let stop = self.ingress.child_token();
        let abort = self.ingress.child_token();
        let serving = Serving {
            intake: self.ctx.intake.clone(),
            stats: self.ctx.stats.source(&config.name),
            stop: stop.clone(),
            abort: abort.clone(),
            tracker: self.tracker.clone(),
        };
        let task = self.tracker.spawn(ingress::serve(config.clone(), opened, serving));
        self.sources.insert(config.name.clone(), RunningSource { config, stop, abort, task });
    }

    /// Stops a source taking new work and returns what it opened (None if its task died or did
    /// not hand back in time).
    async fn stop_source(&mut self, name: &str) -> Option<(RunningSource, Opened)> {
        let mut running = self.sources.remove(name)?;
        running.stop.cancel();
        match tokio::time::timeout(STOP_WITHIN, &mut running.task).await {
            Ok(Ok(opened)) => Some((running, opened)),
            Ok(Err(e)) => {
                tracing::error!(source = %name, error = %e, "source task ended abnormally");
                None
            }
            Err(_) => {
                // Work in progress (a fax call, a connection mid-message) is ended, so the
                // adapter keeps what it has (a call's complete pages) before the task goes.
                tracing::warn!(source = %name, "source did not stop in time; ending its work in progress");
                running.abort.cancel();
                match tokio::time::timeout(ABORT_WITHIN, &mut running.task).await {
                    Ok(Ok(opened)) => Some((running, opened)),
                    _ => {
                        tracing::error!(source = %name, "source did not end its work in time; abandoning it");
                        running.task.abort();
                        None
                    }
                }
            }
        }
    }

    fn start_destination(&mut self, config: Destination) {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(crate::egress::run_worker(
            config.clone(),
            self.ctx.journal.clone(),
            self.ctx.bus.clone(),
            self.ctx.stats.clone(),
            cancel.clone(),
        ));
        self.destinations.insert(config.name.clone(), RunningDestination { config, cancel, task });
    }

    async fn stop_destination(&mut self, name: &str) {
        if let Some(d) = self.destinations.remove(name) {
            d.cancel.cancel();
            stop_within(name, d.task, STOP_WITHIN).await;
        }
    }

    fn start_uplink(&mut self, config: &Config) {
        let Some(u) = &config.uplink else { return };
        let cancel = CancellationToken::new();
        let dest = config.uplink_destination().map(str::to_string);
        let stop_reason = Arc::new(std::sync::OnceLock::new());
        let stopping = crate::uplink::Stopping { cancel: cancel.clone(), reason: stop_reason.clone() };
        let task = tokio::spawn(crate::uplink::run(self.ctx.clone(), u.clone(), dest.clone(), stopping));
        self.uplink = Some(RunningUplink { config: (u.clone(), dest), cancel, stop_reason, task });
    }

    /// Stops the uplink; `reason` goes into its death message.
    async fn stop_uplink(&mut self, reason: &'static str) {
        if let Some(u) = self.uplink.take() {
            let _ = u.stop_reason.set(reason);
            u.cancel.cancel();
            stop_within("uplink", u.task, STOP_WITHIN).await;
        }
    }

    /// Switches to `new`. Either every source opens and everything switches, or nothing
    /// changes. Returns notes for the log (what applies only at the next restart).
    pub(super) async fn apply(&mut self, old: &Config, new: &Config) -> Result<Vec<String>, OpenError> {
        let mut notes = Vec::new();
        if new.node != old.node || new.control != old.control || new.journal.path != old.journal.path {
            notes.push("changes to [node], [control] and journal.path take effect at the next restart".to_string());
        }
        ingress::check_exclusive(&new.sources)?;

        // Phase 1, which may fail and then changes nothing: open what no running source holds.
        // A source whose resources stay the same (same name and address, or folder) keeps
        // them, even when its other settings change.
        let same_resources =
            |running: &RunningSource, s: &Source| ingress::resources(&running.config) == ingress::resources(s);
        let mut opened = BTreeMap::new();
        for s in &new.sources {
            if !self.sources.get(&s.name).is_some_and(|r| same_resources(r, s)) {
                opened.insert(s.name.clone(), ingress::open(s).await?);
            }
        }

        // Phase 2: switch. Work in progress finishes on the settings it started with; that of
        // removed sources is ended.
        for name in self.sources.keys().cloned().collect::<Vec<_>>() {
            let unchanged = new.source(&name).is_some_and(|s| self.sources.get(&name).is_some_and(|r| r.config == *s));
            if unchanged {
                continue;
            }
            let removed = new.source(&name).is_none();
            if let Some((old, resources)) = self.stop_source(&name).await {
                if removed {
                    old.abort.cancel();
                } else {
                    opened.entry(name.clone()).or_insert(resources);
                }
            }
        }
        for s in &new.sources {
            if let Some(o) = opened.remove(&s.name) {
                self.start_source(s.clone(), o);
            } else if !self.sources.contains_key(&s.name) {
                // The old source could not hand its resources over (its task died): open afresh.
                match ingress::open(s).await {
                    Ok(o) => self.start_source(s.clone(), o),
                    Err(e) => notes.push(e.to_string()),
                }
            }
        }

        for name in self.destinations.keys().cloned().collect::<Vec<_>>() {
            match new.destination(&name) {
                Some(d) if self.destinations.get(&name).is_some_and(|r| r.config == *d) => {}
                _ => self.stop_destination(&name).await,
            }
        }
        for d in &new.destinations {
            if !self.destinations.contains_key(&d.name) {
                self.start_destination(d.clone());
            }
        }

        let _ = self.ctx.journal.set_limits(limits(new)).await;
        let uplink_now = new.uplink.clone().map(|u| (u, new.uplink_destination().map(str::to_string)));
        if self.uplink_settings() != uplink_now {
            self.stop_uplink("restart").await;
            self.start_uplink(new);
        }
        self.ctx.intake.set_rules(Rules::from_config(new));
        self.ctx.stats.retain(
            &new.sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            &new.destinations.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        );
        Ok(notes)
    }

    /// Stops everything by `deadline`: ingress first (no new items; connections finish the
    /// message they are on), then delivery and the uplink (attempts in progress are abandoned;
    /// items stay pending). Whatever has not stopped by then is abandoned: everything
    /// acknowledged is already in the journal.
    pub(super) async fn shutdown(mut self, deadline: Instant) {
        self.ingress.cancel();
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                "connections still busy after the grace period; closing them (their messages were not acknowledged)"
            );
        }
        let workers: Vec<_> = std::mem::take(&mut self.destinations).into_values().collect();
        for w in &workers {
            w.cancel.cancel();
        }
        let uplink = self.uplink.take();
        if let Some(u) = &uplink {
            u.cancel.cancel();
        }
        for w in workers {
            stop_by(&w.config.name, w.task, deadline).await;
        }
        if let Some(u) = uplink {
            stop_by("uplink", u.task, deadline).await;
        }
    }
}

async fn stop_within(what: &str, task: JoinHandle<()>, within: Duration) {
    stop_by(what, task, Instant::now() + within).await;
}

/// Waits for a cancelled task until `deadline`, then aborts it.
async fn stop_by(what: &str, mut task: JoinHandle<()>, deadline: Instant) {
    if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
        tracing::warn!(part = what, "did not stop in time; abandoned (its work stays in the journal)");
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_part_that_does_not_stop_by_its_deadline_is_abandoned_then() {
        let stuck = tokio::spawn(std::future::pending::<()>());
        let abort = stuck.abort_handle();
        let start = Instant::now();
        stop_by("stuck", stuck, start + Duration::from_secs(5)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5), "waited until the deadline, not longer");
        tokio::task::yield_now().await;
        assert!(abort.is_finished(), "and aborted it");

        let prompt = tokio::spawn(async {});
        let start = Instant::now();
        stop_by("prompt", prompt, start + Duration::from_secs(5)).await;
        assert!(Instant::now() - start < Duration::from_secs(1), "a part that stops is not waited for");
    }
}
