//! The daemon: wires config, journal, intake, adapters and delivery workers together, and
//! runs them until a signal says stop.
//!
//! - `mod.rs` (here): start-up, the main loop (signals and a health check; it forwards
//!   reloads and never waits on one), and shutdown.
//! - `supervisor.rs`: the one task that changes the running parts: reloads (SIGHUP, `outpost
//!   reload`) and configs from central (applied, watched, kept or rolled back).
//! - `summary.rs`: the log's periodic summary of items (they are logged one by one at debug).
//! - `notify.rs`: systemd's notify protocol: ready, status, watchdog pings while healthy,
//!   stopping.
//! - `components.rs`: the running parts (sources, delivery workers, the uplink), started,
//!   switched (everything opened before anything switches, so a bad config changes nothing)
//!   and stopped.
//!
//! Shutdown keeps to `node.shutdown_grace` as a whole: stop ingress (no new items; connections
//! finish the message they are on), then delivery and the uplink (attempts in progress are
//! abandoned; items stay pending), then background tasks, then close the journal. Everything
//! acknowledged is already committed, so the grace period bounds time, never safety.

mod components;
mod notify;
mod summary;
mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigErrors};
use crate::control::{self, ControlContext};
use crate::current::Current;
use crate::envelope::now_ms;
use crate::escalate::{self, ActiveEscalations};
use crate::events::Bus;
use crate::intake::{Intake, Rules};
use crate::journal::Journal;
use crate::remote::watch::RemoteWatch;
use crate::remote::{self, ConfigSet, RemoteHandle};
use crate::stats::Stats;
use components::Components;
use supervisor::{Command, Supervisor};

pub use crate::control::ReloadError;

/// How often retention purges run.
const PURGE_EVERY: Duration = Duration::from_secs(300);

/// Where the running config came from; reload reads it again.
#[derive(Debug, Clone)]
pub enum ConfigOrigin {
    File(PathBuf),
    Embedded,
}

impl ConfigOrigin {
    pub fn describe(&self) -> String {
        match self {
            ConfigOrigin::File(p) => p.display().to_string(),
            ConfigOrigin::Embedded => "<embedded default>".into(),
        }
    }

    fn file(&self) -> Option<&std::path::Path> {
        match self {
            ConfigOrigin::File(p) => Some(p),
            ConfigOrigin::Embedded => None,
        }
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        match self {
            ConfigOrigin::File(p) => Config::load(p),
            ConfigOrigin::Embedded => Ok(Config::embedded_default()),
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Returns an error (for exit code 69/70) when it cannot
/// start.
pub async fn run(config: Config, origin: ConfigOrigin) -> anyhow::Result<()> {
    // Installed first: a SIGHUP or SIGTERM during start-up must not kill the process outright.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    if matches!(origin, ConfigOrigin::Embedded) {
        tracing::info!(
            state_dir = %config.node.state_dir.display(),
            "no --config given: running on the embedded default (MLLP on 127.0.0.1:2575, items written to {}); \
             see `outpost config check` and docs/config.md to write your own",
            config.destinations.first().map(|d| match &d.kind {
                crate::config::DestinationKind::File(f) => f.dir.display().to_string(),
                crate::config::DestinationKind::Mllp(m) => m.connect.clone(),
                crate::config::DestinationKind::Uplink => "central".into(),
            }).unwrap_or_default()
        );
    }
    std::fs::create_dir_all(&config.node.state_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create state directory {}: {e}; set node.state_dir to a writable directory",
            config.node.state_dir.display()
        )
    })?;
    let journal =
        Journal::open_for(&config.journal.path, components::limits(&config), &config.node.site, &config.node.id)?;
    tracing::info!(path = %config.journal.path.display(), "journal open");

    let bus = Bus::new();
    let stats = Arc::new(Stats::default());
    let escalations = ActiveEscalations::default();
    let intake = Arc::new(Intake::new(
        journal.clone(),
        Rules::from_config(&config),
        bus.clone(),
        stats.clone(),
        escalations.clone(),
    ));
    let shared_config = Arc::new(Current::new(config.clone()));
    let background = CancellationToken::new();

    let control_listener = control::bind(&config.control.socket, config.control.socket_mode)?;
    let (reload_tx, reload_rx) = mpsc::channel::<control::ReloadRequest>(4);
    let (remote_tx, remote_rx) = mpsc::channel::<ConfigSet>(4);
    let (version, last_status) = remote::load_version(&config.node.state_dir, &config.hash());
    let (remote_status, status_rx) = watch::channel(last_status);
    let remote_version = Arc::new(Current::new(version));
    let ctx = ControlContext {
        journal: journal.clone(),
        stats: stats.clone(),
        bus: bus.clone(),
        config: shared_config.clone(),
        config_origin: origin.describe(),
        reload: reload_tx,
        escalations: escalations.clone(),
        intake,
        remote: RemoteHandle { tx: remote_tx, status: status_rx, version: remote_version.clone() },
    };
    let control_task =
        tokio::spawn(control::serve(control_listener, config.control.socket.clone(), ctx.clone(), background.clone()));

    let mut parts = Components::new(ctx.clone());
    parts.start(&config).await?;

    let monitor = tokio::spawn(escalate::monitor(
        shared_config.clone(),
        journal.clone(),
        stats.clone(),
        bus.clone(),
        escalations,
        background.clone(),
    ));
    let purger = tokio::spawn(purge_loop(shared_config.clone(), journal.clone(), background.clone()));
    let summary =
        tokio::spawn(summary::summary_loop(shared_config.clone(), stats.clone(), bus.clone(), background.clone()));

    let supervisor = Supervisor {
        parts,
        config: shared_config.clone(),
        origin,
        remote_status,
        remote_version,
        watch: RemoteWatch::default(),
    };
    let (commands, command_rx) = mpsc::channel::<Command>(4);
    let stop_supervisor = CancellationToken::new();
    let mut supervisor = tokio::spawn(supervisor.run(command_rx, reload_rx, remote_rx, stop_supervisor.clone()));

    let mut notifier = notify::Notifier::from_env();
    // Counted only for systemd: a journal read that a daemon not run by it need not pay.
    let standing = match notifier.listening() {
        true => notify::standing(&journal, &stats, &config).await,
        false => None,
    };
    notifier.ready(&standing.unwrap_or(notify::Standing {
        sources: config.sources.len(),
        sources_up: config.sources.len(),
        pending: 0,
        failed: 0,
        uplink: None,
    }));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        site = %config.node.site,
        node = %config.node.id,
        sources = config.sources.len(),
        destinations = config.destinations.len(),
        routes = config.routes.len(),
        control = %config.control.socket.display(),
        "outpost ready"
    );

    let mut check = tokio::time::interval(notifier.interval());
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                if commands.try_send(Command::Reload(None)).is_err() {
                    tracing::warn!("SIGHUP: reloads are already queued; this one is folded into them");
                }
            }
            // Health, the watchdog's ping and the status line; bounded, so signals wait at most
            // a quarter of the watchdog interval.
            _ = check.tick() => notifier.tick(&journal, &stats, &shared_config.get()).await,
            _ = &mut supervisor => {
                // It only ends when told to; if it died, reloads cannot be served any more.
                tracing::error!("the supervisor stopped unexpectedly; shutting down so that systemd restarts outpost");
                break;
            }
        }
    }

    notifier.stopping();
    let deadline = Instant::now() + config.node.shutdown_grace;
    shutdown(supervisor, stop_supervisor, background, [monitor, purger, summary, control_task], journal, deadline)
        .await;
    tracing::info!("outpost stopped");
    Ok(())
}

/// Stops everything within `deadline` (see the module's doc for the order). A step still busy
/// at the deadline is abandoned.
async fn shutdown(
    mut supervisor: tokio::task::JoinHandle<Components>,
    stop_supervisor: CancellationToken,
    background: CancellationToken,
    tasks: [tokio::task::JoinHandle<()>; 4],
    journal: Journal,
    deadline: Instant,
) {
    stop_supervisor.cancel();
    // The supervisor finishes the request it is on (a reload), then hands back the parts.
    match tokio::time::timeout_at(deadline, &mut supervisor).await {
        Ok(Ok(parts)) => parts.shutdown(deadline).await,
        Ok(Err(_)) => tracing::error!("the supervisor had stopped; its parts end with the process"),
        Err(_) => {
            tracing::warn!("a reload was still running at the end of the grace period; abandoned");
            supervisor.abort();
        }
    }
    background.cancel();
    for mut task in tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
    // The last commit, then the WAL copied into the database: other handles may still be
    // held by abandoned tasks, so the writer may outlive `close` and never checkpoint itself.
    if tokio::time::timeout_at(deadline, journal.checkpoint()).await.is_err() {
        tracing::warn!("the journal did not finish its last commit within the grace period");
    }
    // Closing waits for the writer to commit what is queued and checkpoint; past the deadline
    // the process exits anyway (the WAL is recovered at the next start).
    let closing = tokio::task::spawn_blocking(move || journal.close());
    if tokio::time::timeout_at(deadline, closing).await.is_err() {
        tracing::warn!("the journal was still closing at the end of the grace period; it recovers at the next start");
    }
}

async fn purge_loop(config: Arc<Current<Config>>, journal: Journal, cancel: CancellationToken) {
    loop {
        let (retention, rejected, keep_orders) = {
            let c = config.get();
            (c.journal.retention, c.journal.rejected_retention, c.orders.keep)
        };
        let now = now_ms();
        match journal.purge(now - retention.as_millis() as i64, now - rejected.as_millis() as i64).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(items = n, "purged items past their retention"),
            Err(e) => tracing::warn!(error = %e, "purge failed; will try again"),
        }
        match journal.purge_orders(now - keep_orders.as_millis() as i64).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(orders = n, "purged cached orders past [orders] keep"),
            Err(e) => tracing::warn!(error = %e, "purging cached orders failed; will try again"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PURGE_EVERY) => {}
        }
    }
}
