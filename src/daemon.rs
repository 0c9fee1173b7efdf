//! The daemon: wires config, journal, intake, adapters and delivery workers together, and
//! runs them until a signal says stop. SIGHUP (or `outpost reload`) reloads the config:
//! validated first, listeners bound before anything is switched, so a bad config changes
//! nothing.
//!
//! Shutdown order: stop ingress (no new items; connections finish the message they are on),
//! then stop delivery (attempts in progress are abandoned; items stay pending), then close the
//! journal. Everything acknowledged is already committed, so the grace period bounds time,
//! never safety.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Destination, Source, SourceKind};
use crate::control::{self, ControlContext};
use crate::current::Current;
use crate::envelope::now_ms;
use crate::escalate::{self, ActiveEscalations};
use crate::events::Bus;
use crate::ingress;
use crate::intake::{Intake, Rules};
use crate::journal::{Journal, Limits};
use crate::remote::{self, ConfigSet, ConfigStatus, RemoteHandle};
use crate::stats::Stats;

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

    fn load(&self) -> Result<Config, String> {
        match self {
            ConfigOrigin::File(p) => Config::load(p).map_err(|e| e.to_string()),
            ConfigOrigin::Embedded => Ok(Config::embedded_default()),
        }
    }
}

struct RunningSource {
    config: Source,
    /// Stops accepting; the task then returns the listener.
    accept_cancel: CancellationToken,
    /// Closes the source's open connections.
    conn_cancel: CancellationToken,
    task: tokio::task::JoinHandle<tokio::net::TcpListener>,
}

struct RunningDestination {
    config: Destination,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The uplink as started: its settings and destination (a change restarts it).
struct RunningUplink {
    config: (crate::config::Uplink, Option<String>),
    cancel: CancellationToken,
    /// Why it is being stopped, for its death message (`shutdown` unless set).
    stop_reason: Arc<std::sync::OnceLock<&'static str>>,
    task: tokio::task::JoinHandle<()>,
}

/// A config from central being watched before it is kept.
struct PendingRemote {
    set: ConfigSet,
    previous: Config,
    applied_at: i64,
    deadline: tokio::time::Instant,
    uplink_restarted: bool,
}

struct Daemon {
    config: Arc<Current<Config>>,
    control: ControlContext,
    uplink: Option<RunningUplink>,
    remote_status: watch::Sender<Option<ConfigStatus>>,
    remote_version: Arc<Current<String>>,
    pending: Option<PendingRemote>,
    /// A config that arrived while another was watched (the newest wins).
    queued: Option<ConfigSet>,
    origin: ConfigOrigin,
    journal: Journal,
    intake: Arc<Intake>,
    bus: Bus,
    stats: Arc<Stats>,
    ingress_cancel: CancellationToken,
    ingress_tasks: TaskTracker,
    sources: BTreeMap<String, RunningSource>,
    destinations: BTreeMap<String, RunningDestination>,
}

fn limits(config: &Config) -> Limits {
    Limits {
        uplink_destination: config.uplink_destination().map(str::to_string),
        max_bytes: config.journal.max_bytes,
        min_free_disk: config.journal.min_free_disk,
        dedup_window_ms: config.journal.dedup_window.as_millis() as i64,
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
    let journal = Journal::open(&config.journal.path, limits(&config))?;
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

    let control_listener =
        control::bind(&config.control.socket, config.control.socket_mode).map_err(anyhow::Error::msg)?;
    let (reload_tx, mut reload_rx) = mpsc::channel::<control::ReloadRequest>(4);
    let (remote_tx, mut remote_rx) = mpsc::channel::<ConfigSet>(4);
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
        intake: intake.clone(),
        remote: RemoteHandle { tx: remote_tx, status: status_rx, version: remote_version.clone() },
    };
    let control_task =
        tokio::spawn(control::serve(control_listener, config.control.socket.clone(), ctx.clone(), background.clone()));

    let mut daemon = Daemon {
        config: shared_config.clone(),
        control: ctx.clone(),
        uplink: None,
        remote_status,
        remote_version,
        pending: None,
        queued: None,
        origin,
        journal: journal.clone(),
        intake,
        bus: bus.clone(),
        stats: stats.clone(),
        ingress_cancel: CancellationToken::new(),
        ingress_tasks: TaskTracker::new(),
        sources: BTreeMap::new(),
        destinations: BTreeMap::new(),
    };
    for d in &config.destinations {
        daemon.start_destination(d.clone());
    }
    daemon.start_uplink(&config);
    for s in &config.sources {
        let listener = bind_source(s).await.map_err(anyhow::Error::msg)?;
        daemon.start_source(s.clone(), listener);
    }

    let monitor = tokio::spawn(escalate::monitor(
        shared_config.clone(),
        journal.clone(),
        stats.clone(),
        bus.clone(),
        escalations,
        background.clone(),
    ));
    let purger = tokio::spawn(purge_loop(shared_config.clone(), journal.clone(), background.clone()));

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
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

    let mut remote_check = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            Some(set) = remote_rx.recv() => daemon.remote_config(set).await,
            _ = remote_check.tick(), if daemon.pending.is_some() => daemon.check_remote().await,
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                match daemon.reload().await {
                    Ok(msg) => tracing::info!("{msg}"),
                    Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
                }
            }
            Some(reply) = reload_rx.recv() => {
                let r = daemon.reload().await;
                match &r {
                    Ok(msg) => tracing::info!("{msg}"),
                    Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
                }
                let _ = reply.send(r);
            }
        }
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let grace = config.node.shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    daemon.ingress_cancel.cancel();
    daemon.ingress_tasks.close();
    if tokio::time::timeout_at(deadline, daemon.ingress_tasks.wait()).await.is_err() {
        tracing::warn!(
            "connections still busy after the grace period; closing them (their messages were not acknowledged)"
        );
    }
    let workers: Vec<_> = std::mem::take(&mut daemon.destinations).into_values().collect();
    for w in &workers {
        w.cancel.cancel();
    }
    let uplink = daemon.uplink.take();
    if let Some(u) = &uplink {
        u.cancel.cancel();
    }
    for w in workers {
        let _ = tokio::time::timeout_at(deadline, w.task).await;
    }
    if let Some(u) = uplink {
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(3), u.task).await;
    }
    background.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = monitor.await;
        let _ = purger.await;
        let _ = control_task.await;
    })
    .await;
    let journal = daemon.journal.clone();
    drop(daemon);
    let _ = journal.barrier().await;
    tokio::task::spawn_blocking(move || journal.close()).await?;
    tracing::info!("outpost stopped");
    Ok(())
}

fn listen_address(s: &Source) -> std::net::SocketAddr {
    match &s.kind {
        SourceKind::Mllp(m) => m.listen,
    }
}

async fn bind_source(s: &Source) -> Result<tokio::net::TcpListener, String> {
    match &s.kind {
        SourceKind::Mllp(m) => ingress::mllp::bind(&s.name, m).await,
    }
}

async fn purge_loop(config: Arc<Current<Config>>, journal: Journal, cancel: CancellationToken) {
    loop {
        let (retention, rejected) = {
            let c = config.get();
            (c.journal.retention, c.journal.rejected_retention)
        };
        let now = now_ms();
        match journal.purge(now - retention.as_millis() as i64, now - rejected.as_millis() as i64).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(items = n, "purged items past their retention"),
            Err(e) => tracing::warn!(error = %e, "purge failed; will try again"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PURGE_EVERY) => {}
        }
    }
}

impl Daemon {
    fn start_source(&mut self, config: Source, listener: tokio::net::TcpListener) {
        let accept_cancel = self.ingress_cancel.child_token();
        let conn_cancel = self.ingress_cancel.child_token();
        let task = match &config.kind {
            SourceKind::Mllp(m) => self.ingress_tasks.spawn(ingress::mllp::serve(
                config.name.clone(),
                m.clone(),
                listener,
                self.intake.clone(),
                self.stats.clone(),
                accept_cancel.clone(),
                conn_cancel.clone(),
                self.ingress_tasks.clone(),
            )),
        };
        self.sources.insert(config.name.clone(), RunningSource { config, accept_cancel, conn_cancel, task });
    }

    /// Stops a source's accept loop and returns its listener (None if its task died).
    async fn stop_accepting(&mut self, name: &str) -> Option<(RunningSource, tokio::net::TcpListener)> {
        let mut running = self.sources.remove(name)?;
        running.accept_cancel.cancel();
        match (&mut running.task).await {
            Ok(listener) => Some((running, listener)),
            Err(e) => {
                tracing::error!(source = %name, error = %e, "listener task ended abnormally");
                None
            }
        }
    }

    fn start_destination(&mut self, config: Destination) {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(crate::egress::run_worker(
            config.clone(),
            self.journal.clone(),
            self.bus.clone(),
            self.stats.clone(),
            cancel.clone(),
        ));
        self.destinations.insert(config.name.clone(), RunningDestination { config, cancel, task });
    }

    fn start_uplink(&mut self, config: &Config) {
        let Some(u) = &config.uplink else { return };
        let cancel = CancellationToken::new();
        let dest = config.uplink_destination().map(str::to_string);
        let stop_reason = Arc::new(std::sync::OnceLock::new());
        let stopping = crate::uplink::Stopping { cancel: cancel.clone(), reason: stop_reason.clone() };
        let task = tokio::spawn(crate::uplink::run(self.control.clone(), u.clone(), dest.clone(), stopping));
        self.uplink = Some(RunningUplink { config: (u.clone(), dest), cancel, stop_reason, task });
    }

    /// Stops the uplink; `reason` goes into its death message.
    async fn stop_uplink(&mut self, reason: &'static str) {
        if let Some(u) = self.uplink.take() {
            let _ = u.stop_reason.set(reason);
            u.cancel.cancel();
            let _ = u.task.await;
        }
    }

    async fn stop_destination(&mut self, name: &str) {
        if let Some(d) = self.destinations.remove(name) {
            d.cancel.cancel();
            let _ = d.task.await;
        }
    }

    /// Reloads the config file. Either everything applies or nothing changes.
    async fn reload(&mut self) -> Result<String, String> {
        let new = self.origin.load()?;
        if let Some(p) = self.pending.take() {
            self.set_remote_status(ConfigStatus::new(
                &p.set,
                "rolled_back",
                vec!["superseded by a reload of the config file on the gateway".into()],
            ));
        }
        let r = self.apply(new).await;
        if r.is_ok() {
            let hash = self.config.get().hash();
            let (version, _) = remote::load_version(&self.config.get().node.state_dir, &hash);
            self.remote_version.set(version);
        }
        r
    }

    /// A config from central: checked, applied, then watched (see remote.rs).
    async fn remote_config(&mut self, set: ConfigSet) {
        let running = self.config.get();
        let who = set.from.clone().unwrap_or_else(|| "unknown".into());
        if self.pending.is_some() {
            tracing::info!(version = %set.version, "a remote config arrived while another is watched; it waits");
            self.queued = Some(set);
            return;
        }
        let last = self.remote_status.borrow().clone();
        if remote::hash(&set.toml).eq_ignore_ascii_case(&running.hash())
            && set.hash.eq_ignore_ascii_case(&running.hash())
        {
            // Already running (a retained desired state, or a repeat): say so again.
            let mut status = ConfigStatus::new(&set, "applied", Vec::new());
            if let Some(l) = last.filter(|l| l.hash == set.hash && l.status == "applied") {
                status = l;
            }
            self.set_remote_status(status);
            return;
        }
        if let Some(l) =
            last.filter(|l| l.hash.eq_ignore_ascii_case(&set.hash) && l.status != "applying" && l.status != "applied")
        {
            tracing::info!(version = %set.version, status = %l.status, "remote config seen before; answered again");
            self.set_remote_status(l);
            return;
        }
        let new = match remote::validate(&set, &running, self.origin.file()) {
            Ok(c) => c,
            Err(errors) => {
                tracing::warn!(version = %set.version, from = %who, errors = errors.len(), "remote config rejected");
                for e in &errors {
                    tracing::warn!("remote config {}: {e}", set.version);
                }
                self.set_remote_status(ConfigStatus::new(&set, "rejected", errors));
                return;
            }
        };
        tracing::info!(version = %set.version, from = %who, "applying a config from central");
        let previous = (*running).clone();
        let uplink_before = self.uplink.as_ref().map(|u| u.config.clone());
        match self.apply(new).await {
            Ok(msg) => {
                tracing::info!("{msg}");
                let uplink_restarted = self.uplink.as_ref().map(|u| u.config.clone()) != uplink_before;
                self.pending = Some(PendingRemote {
                    deadline: tokio::time::Instant::now()
                        + previous.uplink.as_ref().map(|u| u.config_rollback_after).unwrap_or(Duration::from_secs(60)),
                    set: set.clone(),
                    previous,
                    applied_at: now_ms(),
                    uplink_restarted,
                });
                self.set_remote_status(ConfigStatus::new(&set, "applying", Vec::new()));
            }
            Err(e) => {
                tracing::warn!(version = %set.version, "remote config could not be applied; the previous one stays: {e}");
                self.set_remote_status(ConfigStatus::new(&set, "rolled_back", vec![e]));
            }
        }
    }

    /// Keeps a watched remote config once it is healthy, or rolls it back at its deadline.
    async fn check_remote(&mut self) {
        let Some(p) = &self.pending else { return };
        let config = self.config.get();
        let mut problems = Vec::new();
        for s in &config.sources {
            if self.stats.source(&s.name).bound.lock().map(|b| b.is_none()).unwrap_or(true) {
                problems.push(format!("source {} is not listening", s.name));
            }
        }
        if config.uplink.is_some() {
            let link = self.stats.uplink.link();
            let fresh = !p.uplink_restarted || link.since >= p.applied_at;
            if link.state != crate::stats::UplinkState::Connected || !fresh {
                let why = link.last_disconnect.clone().unwrap_or_else(|| "not connected yet".into());
                problems.push(format!("the uplink has not reconnected with the new settings: {why}"));
            }
        }
        if problems.is_empty() {
            let Some(p) = self.pending.take() else { return };
            let status = ConfigStatus::new(&p.set, "applied", Vec::new());
            let file = self.origin.file().map(|f| f.to_path_buf());
            let written = match &file {
                Some(f) => remote::commit(f, &p.previous.source_text, &p.set, &status, &config.node.state_dir),
                None => Err("no config file to write".into()),
            };
            match written {
                Ok(()) => {
                    tracing::info!(version = %p.set.version, "config from central is healthy and kept");
                    self.remote_version.set(p.set.version.clone());
                    self.set_remote_status(status);
                }
                Err(e) => {
                    tracing::error!(version = %p.set.version, "config from central works but cannot be saved ({e}); rolling back");
                    self.rollback(p, vec![e]).await;
                }
            }
        } else if tokio::time::Instant::now() >= p.deadline {
            let Some(p) = self.pending.take() else { return };
            tracing::warn!(version = %p.set.version, "config from central failed its health checks; rolling back: {}", problems.join("; "));
            self.rollback(p, problems).await;
        } else {
            return;
        }
        if let Some(next) = self.queued.take() {
            self.remote_config(next).await;
        }
    }

    async fn rollback(&mut self, p: PendingRemote, errors: Vec<String>) {
        if let Err(e) = self.apply(p.previous).await {
            tracing::error!(
                "rolling back to the previous config failed: {e}; fix the gateway's config file and reload"
            );
        }
        self.set_remote_status(ConfigStatus::new(&p.set, "rolled_back", errors));
    }

    fn set_remote_status(&mut self, status: ConfigStatus) {
        let config = self.config.get();
        remote::remember_status(&config.node.state_dir, &self.remote_version.get(), &config.hash(), &status);
        self.remote_status.send_replace(Some(status));
    }

    /// Switches to `new`. Either everything applies or nothing changes.
    async fn apply(&mut self, new: Config) -> Result<String, String> {
        let old = self.config.get();
        let mut notes = Vec::new();
        if new.node != old.node || new.control != old.control || new.journal.path != old.journal.path {
            notes.push("changes to [node], [control] and journal.path take effect at the next restart".to_string());
        }

        // Phase 1, which may fail and then changes nothing: bind every listener on an address
        // not yet listened on. A source whose settings change but whose address does not keeps
        // its socket.
        let mut bound = BTreeMap::new();
        for s in &new.sources {
            let same_address =
                self.sources.get(&s.name).is_some_and(|r| listen_address(&r.config) == listen_address(s));
            if !same_address {
                bound.insert(s.name.clone(), bind_source(s).await?);
            }
        }

        // Phase 2: switch. Connections already open finish on the settings they started with;
        // those of removed sources are closed.
        for name in self.sources.keys().cloned().collect::<Vec<_>>() {
            let keep = new.source(&name).is_some_and(|s| self.sources.get(&name).is_some_and(|r| r.config == *s));
            if keep {
                continue;
            }
            let removed = new.source(&name).is_none();
            if let Some((old, listener)) = self.stop_accepting(&name).await {
                if removed {
                    old.conn_cancel.cancel();
                } else {
                    bound.entry(name.clone()).or_insert(listener);
                }
            }
        }
        for s in &new.sources {
            if let Some(listener) = bound.remove(&s.name) {
                self.start_source(s.clone(), listener);
            } else if !self.sources.contains_key(&s.name) {
                // The old listener could not be handed over (its task died): bind afresh.
                match bind_source(s).await {
                    Ok(l) => self.start_source(s.clone(), l),
                    Err(e) => notes.push(e),
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

        let _ = self.journal.set_limits(limits(&new)).await;
        let uplink_now = new.uplink.clone().map(|u| (u, new.uplink_destination().map(str::to_string)));
        if self.uplink.as_ref().map(|u| &u.config) != uplink_now.as_ref() {
            self.stop_uplink("restart").await;
            self.start_uplink(&new);
        }
        self.intake.set_rules(Rules::from_config(&new));
        self.stats.retain(
            &new.sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            &new.destinations.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        );
        let summary = format!(
            "configuration reloaded from {}: {} source(s), {} destination(s), {} route(s)",
            self.origin.describe(),
            new.sources.len(),
            new.destinations.len(),
            new.routes.len()
        );
        self.config.set(new);
        notes.insert(0, summary);
        Ok(notes.join("; "))
    }
}
