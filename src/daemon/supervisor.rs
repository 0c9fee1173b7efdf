//! The supervisor: one task that owns the running parts and changes them, one request at a
//! time: reloads (SIGHUP, `outpost reload`, central's `reload` command) and configs from
//! central (applied, watched, kept or rolled back). The daemon's main loop only forwards
//! signals to it, so the main loop never waits on a reload.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::components::Components;
use super::{ConfigOrigin, ReloadError};
use crate::config::Config;
use crate::control::ReloadRequest;
use crate::current::Current;
use crate::envelope::now_ms;
use crate::remote::watch::{RemoteWatch, Triage, Verdict, Watched};
use crate::remote::{self, ConfigSet, ConfigState, ConfigStatus};
use crate::stats::{SourceState, UplinkState};

/// How often a watched config from central is checked.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// What the supervisor is asked to do.
pub(super) enum Command {
    /// Reload the config file; the answer goes to the requester when there is one.
    Reload(Option<ReloadRequest>),
}

pub(super) struct Supervisor {
    pub(super) parts: Components,
    pub(super) config: Arc<Current<Config>>,
    pub(super) origin: ConfigOrigin,
    pub(super) remote_status: watch::Sender<Option<ConfigStatus>>,
    pub(super) remote_version: Arc<Current<String>>,
    pub(super) watch: RemoteWatch,
}

impl Supervisor {
    /// Serves requests until `stop` fires; returns the running parts for shutdown. A request in
    /// progress is finished first (each of its steps is bounded).
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut reloads: mpsc::Receiver<ReloadRequest>,
        mut remote: mpsc::Receiver<ConfigSet>,
        stop: CancellationToken,
    ) -> Components {
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(Command::Reload(reply)) = commands.recv() => self.reload_and_answer(reply).await,
                Some(reply) = reloads.recv() => self.reload_and_answer(Some(reply)).await,
                Some(set) = remote.recv() => self.remote_config(set).await,
                _ = check.tick(), if self.watch.is_watching() => self.check_remote().await,
            }
        }
        self.parts
    }

    async fn reload_and_answer(&mut self, reply: Option<ReloadRequest>) {
        let r = self.reload().await;
        match &r {
            Ok(msg) => tracing::info!("{msg}"),
            Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
        }
        if let Some(reply) = reply {
            let _ = reply.send(r);
        }
    }

    /// Reloads the config file. Either everything applies or nothing changes.
    async fn reload(&mut self) -> Result<String, ReloadError> {
        let new = self.origin.load()?;
        if let Some(w) = self.watch.supersede() {
            self.set_remote_status(ConfigStatus::new(
                &w.set,
                ConfigState::RolledBack,
                vec!["superseded by a reload of the config file on the gateway".into()],
            ));
        }
        let summary = self.apply(new).await?;
        let hash = self.config.get().hash();
        let (version, _) = remote::load_version(&self.config.get().node.state_dir, &hash);
        self.remote_version.set(version);
        Ok(summary)
    }

    /// Switches the running parts and the shared config to `new`.
    async fn apply(&mut self, new: Config) -> Result<String, ReloadError> {
        let old = self.config.get();
        let notes = self.parts.apply(&old, &new).await?;
        let summary = format!(
            "configuration reloaded from {}: {} source(s), {} destination(s), {} route(s)",
            self.origin.describe(),
            new.sources.len(),
            new.destinations.len(),
            new.routes.len()
        );
        self.config.set(new);
        Ok(std::iter::once(summary).chain(notes).collect::<Vec<_>>().join("; "))
    }

    /// A config from central: checked, applied, then watched (see `remote::watch`).
    async fn remote_config(&mut self, set: ConfigSet) {
        let running = self.config.get();
        let last = self.remote_status.borrow().clone();
        let set = match self.watch.triage(set, &running.hash(), last.as_ref()) {
            Triage::Queued => {
                tracing::info!("a remote config arrived while another is watched; it waits");
                return;
            }
            Triage::AlreadyRunning(status) => return self.set_remote_status(status),
            Triage::SeenBefore(status) => {
                tracing::info!(version = %status.version, status = ?status.status, "remote config seen before; answered again");
                return self.set_remote_status(status);
            }
            Triage::New(set) => set,
        };
        let who = set.from.clone().unwrap_or_else(|| "unknown".into());
        let new = match remote::validate(&set, &running, self.origin.file()) {
            Ok(c) => c,
            Err(errors) => {
                tracing::warn!(version = %set.version, from = %who, errors = errors.len(), "remote config rejected");
                for e in &errors {
                    tracing::warn!("remote config {}: {e}", set.version);
                }
                return self.set_remote_status(ConfigStatus::new(&set, ConfigState::Rejected, errors));
            }
        };
        tracing::info!(version = %set.version, from = %who, "applying a config from central");
        let previous = (*running).clone();
        let uplink_before = self.parts.uplink_settings();
        match self.apply(new).await {
            Ok(msg) => {
                tracing::info!("{msg}");
                let rollback_after =
                    previous.uplink.as_ref().map(|u| u.config_rollback_after).unwrap_or(Duration::from_secs(60));
                self.set_remote_status(ConfigStatus::new(&set, ConfigState::Applying, Vec::new()));
                self.watch.watch(Watched {
                    uplink_restarted: self.parts.uplink_settings() != uplink_before,
                    deadline: tokio::time::Instant::now() + rollback_after,
                    set,
                    previous,
                    applied_at: now_ms(),
                });
            }
            Err(e) => {
                tracing::warn!(version = %set.version, "remote config could not be applied; the previous one stays: {e}");
                self.set_remote_status(ConfigStatus::new(&set, ConfigState::RolledBack, vec![e.to_string()]));
            }
        }
    }

    /// What keeps the watched config from being healthy: a source not up, an uplink not
    /// reconnected on the new settings.
    fn problems(&self, applied_at: i64, uplink_restarted: bool) -> Vec<String> {
        let config = self.config.get();
        let stats = self.parts.stats();
        let mut problems = Vec::new();
        for s in &config.sources {
            let link = stats.source(&s.name).link();
            if link.state != SourceState::Up {
                let why = link.last_error.map(|e| format!(": {e}")).unwrap_or_default();
                problems.push(format!("source {} is not up{why}", s.name));
            }
        }
        if config.uplink.is_some() {
            let link = stats.uplink.link();
            let fresh = !uplink_restarted || link.since >= applied_at;
            if link.state != UplinkState::Connected || !fresh {
                let why = link.last_disconnect.clone().unwrap_or_else(|| "not connected yet".into());
                problems.push(format!("the uplink has not reconnected with the new settings: {why}"));
            }
        }
        problems
    }

    /// Keeps a watched remote config once it is healthy, or rolls it back at its deadline.
    async fn check_remote(&mut self) {
        let problems = match self.watch.watched() {
            Some(w) => self.problems(w.applied_at, w.uplink_restarted),
            None => return,
        };
        match self.watch.check(problems, tokio::time::Instant::now()) {
            Verdict::Waiting => return,
            Verdict::Healthy(w) => {
                let config = self.config.get();
                let status = ConfigStatus::new(&w.set, ConfigState::Applied, Vec::new());
                let written = match self.origin.file() {
                    Some(f) => remote::commit(f, &w.previous.source_text, &w.set, &status, &config.node.state_dir)
                        .map_err(|e| e.to_string()),
                    None => Err("no config file to write".to_string()),
                };
                match written {
                    Ok(()) => {
                        tracing::info!(version = %w.set.version, "config from central is healthy and kept");
                        self.remote_version.set(w.set.version.clone());
                        self.set_remote_status(status);
                    }
                    Err(e) => {
                        tracing::error!(version = %w.set.version, "config from central works but cannot be saved ({e}); rolling back");
                        self.rollback(w, vec![e.to_string()]).await;
                    }
                }
            }
            Verdict::Failed(w, problems) => {
                tracing::warn!(version = %w.set.version, "config from central failed its health checks; rolling back: {}", problems.join("; "));
                self.rollback(w, problems).await;
            }
        }
        if let Some(next) = self.watch.next_queued() {
            Box::pin(self.remote_config(next)).await;
        }
    }

    async fn rollback(&mut self, w: Watched, errors: Vec<String>) {
        if let Err(e) = self.apply(w.previous).await {
            tracing::error!(
                "rolling back to the previous config failed: {e}; fix the gateway's config file and reload"
            );
        }
        self.set_remote_status(ConfigStatus::new(&w.set, ConfigState::RolledBack, errors));
    }

    fn set_remote_status(&mut self, status: ConfigStatus) {
        let config = self.config.get();
        remote::remember_status(&config.node.state_dir, &self.remote_version.get(), &config.hash(), &status);
        self.remote_status.send_replace(Some(status));
    }
}
