//! The daemon's side of the control socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::protocol::*;
use crate::config::{Config, DestinationKind, RoutingMode};
use crate::current::Current;
use crate::envelope::now_ms;
use crate::escalate::ActiveEscalations;
use crate::events::{Bus, Event, EventKind};
use crate::journal::{Item, ItemFilter, Journal, RetryTarget, SCHEMA_VERSION, StateFilter};
use crate::stats::{Stats, get};

/// A request to reload the config; the answer says what happened.
pub type ReloadRequest = oneshot::Sender<Result<String, ReloadError>>;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config does not check (every error, one per line).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    /// A source of the new config cannot open (an address in use, a folder missing).
    #[error(transparent)]
    Open(#[from] crate::ingress::OpenError),
}

/// Why the control socket cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot create the control socket's directory {}: {source}", .dir.display())]
    Directory { dir: PathBuf, source: std::io::Error },
    #[error(
        "another outpost is already running with control socket {}; stop it first (systemctl stop outpost) \
         or give this one its own node.state_dir and control.socket",
        .path.display()
    )]
    InUse { path: PathBuf },
    #[error("cannot create the control socket {}: {source}; check control.socket", .path.display())]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("cannot set mode {mode:o} on {}: {source}", .path.display())]
    Mode { path: PathBuf, mode: u32, source: std::io::Error },
}

/// What the control server reads from.
#[derive(Clone)]
pub struct ControlContext {
    pub journal: Journal,
    pub stats: Arc<Stats>,
    pub bus: Bus,
    pub config: Arc<Current<Config>>,
    pub config_origin: String,
    pub reload: mpsc::Sender<ReloadRequest>,
    pub escalations: ActiveEscalations,
    /// For routing unrouted items again.
    pub intake: std::sync::Arc<crate::intake::Intake>,
    /// Configs from central, and what became of them.
    pub remote: crate::remote::RemoteHandle,
}

/// Binds the control socket. A stale socket file from a previous run is replaced; a live one
/// (another daemon answering) is an error.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, BindError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BindError::Directory { dir: dir.to_path_buf(), source })?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse { path: path.to_path_buf() });
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| BindError::Socket { path: path.to_path_buf(), source })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| BindError::Mode {
        path: path.to_path_buf(),
        mode,
        source,
    })?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, path: PathBuf, ctx: ControlContext, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, ctx, cancel).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn handle(stream: UnixStream, ctx: ControlContext, cancel: CancellationToken) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(64 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response::err(format!("bad request: {e}")),
        Ok(Request::Tail) => return tail(write, ctx, cancel).await,
        Ok(req) => answer(req, &ctx).await,
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

async fn tail(
    mut write: tokio::net::unix::OwnedWriteHalf,
    ctx: ControlContext,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let mut rx = ctx.bus.subscribe();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            e = rx.recv() => e,
        };
        let event = match event {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                Event { at: now_ms(), kind: EventKind::Lagged { missed: n } }
            }
            Err(_) => return Ok(()),
        };
        let line = serde_json::to_vec(&event).unwrap_or_default();
        write.write_all(&line).await?;
        write.write_all(b"\n").await?;
    }
}

async fn answer(req: Request, ctx: &ControlContext) -> Response {
    match req {
        Request::Status => match status(ctx).await {
            Ok(s) => Response::ok(s),
            Err(e) => Response::err(e.to_string()),
        },
        Request::QueueLs { state, destination, limit } => {
            let state = match state.as_deref().map(StateFilter::parse) {
                // A state that is none of them matches no item.
                Some(None) => return Response::ok(Vec::<Item>::new()),
                parsed => parsed.flatten(),
            };
            let filter = ItemFilter { state, destination, limit };
            match ctx.journal.read(move |r| r.list(&filter)).await {
                Ok(items) => Response::ok(items),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::QueueShow { id, body } => {
            let wanted = id.clone();
            match ctx.journal.read(move |r| r.show(&id, body)).await {
                Ok(Some(item)) => {
                    let body_b64 = item.body.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b));
                    Response::ok(ShownItem { item, body_b64 })
                }
                Ok(None) => Response::err(format!(
                    "no item {wanted} in the journal (it may have been purged after delivery); list items with `outpost queue ls`"
                )),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::QueueRetry { id, destination } => {
            match ctx.journal.retry(RetryTarget { id: id.clone(), destination }).await {
                Ok(n) => {
                    tracing::info!(
                        retried = n,
                        item = id.as_deref().unwrap_or("all failed"),
                        "retry requested from the CLI"
                    );
                    Response::ok(Retried { retried: n })
                }
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::QueueReroute { id } => match ctx.intake.reroute(id).await {
            Ok((routed, still_unrouted)) => Response::ok(Rerouted { routed, still_unrouted }),
            Err(e) => Response::err(e.to_string()),
        },
        Request::Reload => {
            let (tx, rx) = oneshot::channel();
            if ctx.reload.send(tx).await.is_err() {
                return Response::err("the daemon is shutting down");
            }
            match rx.await {
                Ok(Ok(message)) => Response::ok(Reloaded { message }),
                Ok(Err(e)) => Response::err(e.to_string()),
                Err(_) => Response::err("reload was interrupted"),
            }
        }
        Request::Tail => Response::err("tail is a stream"),
    }
}

/// Each configured source with its live counters (no journal read).
pub fn source_statuses(ctx: &ControlContext, config: &Config) -> Vec<SourceStatus> {
    config.sources.iter().map(|s| crate::ingress::status(s, &ctx.stats.source(&s.name))).collect()
}

/// What `outpost status` shows (also the uplink's `status` command and the base of its telemetry).
pub async fn status(ctx: &ControlContext) -> Result<StatusReport, crate::journal::JournalError> {
    let config = ctx.config.get();
    let counts = ctx.journal.read(|r| r.status_counts()).await?;
    let orders = ctx.journal.read(|r| r.order_counts()).await?;
    let now = now_ms();
    let sources = source_statuses(ctx, &config);
    let destinations = config
        .destinations
        .iter()
        .map(|d| {
            let st = ctx.stats.destination(&d.name);
            let link = st.link();
            let c = counts.destinations.iter().find(|c| c.0 == d.name);
            DestinationStatus {
                name: d.name.clone(),
                kind: d.kind.name().into(),
                target: match &d.kind {
                    DestinationKind::Mllp(m) => m.connect.clone(),
                    DestinationKind::File(f) => f.dir.display().to_string(),
                    DestinationKind::Uplink => config.uplink.as_ref().map(|u| u.broker.to_string()).unwrap_or_default(),
                },
                pending: c.map(|c| c.1).unwrap_or(0),
                failed: c.map(|c| c.2).unwrap_or(0),
                oldest_pending_age_s: c.and_then(|c| c.3).map(|t| ((now - t).max(0) / 1000) as u64),
                delivered: get(&st.delivered),
                unreachable_since: link.unreachable_since,
                last_error: link.last_error,
            }
        })
        .collect();
    let shared = ctx.journal.shared();
    Ok(StatusReport {
        version: env!("CARGO_PKG_VERSION").into(),
        site: config.node.site.clone(),
        node: config.node.id.clone(),
        uptime_s: ctx.stats.started.elapsed().as_secs(),
        config: ctx.config_origin.clone(),
        routing_mode: match config.routing.mode {
            RoutingMode::AllMatches => "all-matches".into(),
            RoutingMode::FirstMatch => "first-match".into(),
        },
        sources,
        destinations,
        journal: JournalStatus {
            path: ctx.journal.path().display().to_string(),
            disk_bytes: ctx.journal.disk_bytes(),
            stored_bytes: get(&shared.stored_bytes),
            max_bytes: get(&shared.max_bytes),
            items: counts.envelopes,
            unrouted: counts.unrouted,
            rejected: counts.rejected,
            duplicates: get(&shared.duplicates),
            refused: get(&shared.refused),
            schema_version: SCHEMA_VERSION,
            commits: get(&shared.commits),
            synced_commits: get(&shared.synced_commits),
        },
        orders,
        escalations: ctx.escalations.snapshot(),
        uplink: config.uplink.as_ref().map(|u| {
            let st = &ctx.stats.uplink;
            let link = st.link();
            let c = config.uplink_destination().and_then(|d| counts.destinations.iter().find(|c| c.0 == d));
            UplinkStatus {
                broker: u.broker.to_string(),
                state: link.state,
                central_online: link.central_online,
                session: link.session,
                since: link.since,
                last_disconnect: link.last_disconnect,
                backlog: c.map(|c| c.1).unwrap_or(0),
                oldest_pending_age_s: c.and_then(|c| c.3).map(|t| ((now - t).max(0) / 1000) as u64),
                in_flight: get(&st.in_flight),
                published: get(&st.published),
                acked: get(&st.acked),
                resent: get(&st.resent),
                reconnects: get(&st.reconnects),
                events_waiting: counts.events,
                events_dropped: get(&st.events_dropped),
            }
        }),
    })
}
