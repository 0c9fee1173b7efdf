//! `central`: an example central consumer for outpost's MQTT uplink (docs/mqtt.md, v1).
//!
//! It is where a central team starts, and the helper outpost's end-to-end tests drive. It
//! speaks the contract from central's side:
//!
//! - `consume` stores every item the gateways send in SQLite (de-duplicated by gateway and id,
//!   chunks reassembled, one receipt per copy) and acknowledges each item only after the
//!   transaction holding it is committed; events likewise (de-duplicated by id, acknowledged
//!   after commit); it records every other gateway message (state, telemetry, config status,
//!   command results) and keeps central's retained state (`online`, last will `offline`).
//! - `publish-config` sends a gateway a new configuration and can wait for its status.
//! - `cmd` runs a command on a gateway and prints its result.
//! - `state` flips central's retained state online or offline.
//!
//! Run it from the repository:
//!
//! ```sh
//! cargo run --example central -- consume --url mqtt://127.0.0.1:1883 --store central.sqlite
//! cargo run --example central -- publish-config --site north --node gw1 --file outpost.toml --version 2026-11-23.1 --wait-status 90
//! cargo run --example central -- cmd --site north --node gw1 ping
//! cargo run --example central -- state --offline
//! ```
//!
//! Connection flags go with any subcommand: `--url mqtt://HOST:PORT` or `mqtts://HOST:PORT`,
//! `--ca`, `--cert`, `--key` (mutual TLS, PEM), `--username`, `--password` (or
//! `CENTRAL_MQTT_PASSWORD`), `--client-id`. Logs go to stderr (`RUST_LOG` filters them); stdout
//! carries only results (`ready` for `consume`, JSON for `cmd` and `publish-config`).
//!
//! Exit codes: 0 done, 64 usage (bad flags, unreadable files), 69 broker unavailable (one-shot
//! subcommands), 1 anything else (a command that answered `ok: false`, a timeout).
//! See `examples/README.md` for what it guarantees and what to change for production.

mod conn;
mod consume;
mod payload;
mod store;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rumqttc::{Event, Packet};
use sha2::Digest;
use tokio::time::Instant;

use conn::{ConnArgs, OneShot};
use payload::{CENTRAL_STATE, gateway_topic, is_name};

#[derive(Parser, Debug)]
#[command(name = "central", about = "Example central consumer for outpost's MQTT uplink (docs/mqtt.md, v1)")]
struct Cli {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store and acknowledge items, record everything else the gateways say; runs until SIGTERM/SIGINT.
    Consume(ConsumeArgs),
    /// Publish a configuration to a gateway on {root}/config/set.
    PublishConfig(PublishConfigArgs),
    /// Run a command on a gateway and print its result.
    Cmd(CmdArgs),
    /// Publish central's retained state (outpost/v1/central/state).
    State(StateArgs),
}

#[derive(Args, Debug)]
struct ConsumeArgs {
    /// SQLite file to store into (created if missing; several consumers may share it).
    #[arg(long, value_name = "FILE")]
    store: PathBuf,
    /// Take items through the shared subscription $share/GROUP/outpost/v1/+/+/msg/#.
    #[arg(long, value_name = "GROUP")]
    share: Option<String>,
    /// Store items but never acknowledge them.
    #[arg(long)]
    no_ack: bool,
    /// Gather messages this long (or 1000 of them) into one transaction before acknowledging.
    #[arg(long, value_name = "MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    ack_delay_ms: u64,
    /// Do not publish central's state (online, and offline as last will and on exit).
    #[arg(long)]
    no_state: bool,
}

#[derive(Args, Debug)]
struct PublishConfigArgs {
    #[arg(long)]
    site: String,
    #[arg(long)]
    node: String,
    /// The configuration file (sent as is; its hash is of its exact bytes).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// The version to give the configuration (shown by the gateway in its state and status).
    #[arg(long)]
    version: String,
    /// Publish retained, as the gateway's desired state.
    #[arg(long)]
    retain: bool,
    /// Who is publishing, for the gateway's log.
    #[arg(long, value_name = "NAME", default_value = "central")]
    from: String,
    /// Wait up to SECS for the gateway's final status for this configuration and print it.
    #[arg(long, value_name = "SECS")]
    wait_status: Option<u64>,
}

#[derive(Args, Debug)]
struct CmdArgs {
    #[arg(long)]
    site: String,
    #[arg(long)]
    node: String,
    /// The command: ping, status, rebirth, resend, retry, reload, ...
    name: String,
    /// The command's arguments as a JSON object, e.g. '{"from_seq": 40000}'.
    #[arg(long, value_name = "JSON")]
    args: Option<String>,
    /// Who is asking, for the gateway's log.
    #[arg(long, value_name = "NAME", default_value = "central")]
    from: String,
    /// Seconds to wait for the result.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

#[derive(Args, Debug)]
struct StateArgs {
    /// Publish {"status":"online"} (the default).
    #[arg(long, conflicts_with = "offline")]
    online: bool,
    /// Publish {"status":"offline"}.
    #[arg(long)]
    offline: bool,
}

/// An error that says which exit code it means.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Exit 64: the command line is wrong (or names unusable files).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Exit { code: 64, message: message.into() }.into()
}

/// Exit 69: the broker cannot be reached.
pub fn unavailable(message: impl Into<String>) -> anyhow::Error {
    Exit { code: 69, message: message.into() }.into()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("central: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("central: {e:#}");
            ExitCode::from(conn::exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Consume(args) => {
            if let Some(group) = &args.share
                && (group.is_empty() || group.contains(['/', '+', '#']))
            {
                return Err(usage(format!("--share {group}: a group name has no '/', '+' or '#'")));
            }
            let options = consume::Options {
                store: args.store,
                share: args.share,
                ack: !args.no_ack,
                ack_delay: Duration::from_millis(args.ack_delay_ms),
                state: !args.no_state,
            };
            consume::run(&cli.conn, options).await?;
            Ok(0)
        }
        Command::PublishConfig(args) => publish_config(&cli.conn, args).await,
        Command::Cmd(args) => cmd(&cli.conn, args).await,
        Command::State(args) => {
            let mut session = OneShot::connect(&cli.conn).await?;
            let online = !args.offline;
            let deadline = Instant::now() + Duration::from_secs(10);
            session.publish(CENTRAL_STATE, true, payload::central_state(online).into(), deadline).await?;
            session.close().await;
            Ok(0)
        }
    }
}

/// `outpost/v1/{site}/{node}`, once both names are checked.
fn gateway(site: &str, node: &str) -> anyhow::Result<String> {
    for (flag, name) in [("--site", site), ("--node", node)] {
        if !is_name(name) {
            return Err(usage(format!("{flag} {name}: only letters, digits, '-', '_' and '.' are allowed")));
        }
    }
    Ok(format!("{site}/{node}"))
}

fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).context("cannot write to stdout")
}

async fn publish_config(conn: &ConnArgs, args: PublishConfigArgs) -> anyhow::Result<u8> {
    let gateway = gateway(&args.site, &args.node)?;
    let bytes =
        std::fs::read(&args.file).map_err(|e| usage(format!("--file {}: cannot read it: {e}", args.file.display())))?;
    let hash = format!("sha256:{}", payload::hex(&sha2::Sha256::digest(&bytes)));
    let toml = String::from_utf8(bytes)
        .map_err(|_| usage(format!("--file {}: not UTF-8 text; the gateway reads only UTF-8", args.file.display())))?;
    let message = serde_json::json!({ "version": args.version, "hash": hash, "toml": toml, "from": args.from });
    let status_topic = gateway_topic(&gateway, "config/status");

    let mut session = OneShot::connect(conn).await?;
    let started = Instant::now();
    if args.wait_status.is_some() {
        session.subscribe(&status_topic, started + Duration::from_secs(10)).await?;
    }
    // Statuses may arrive before the PUBACK (a retained one, or a fast gateway): keep the first
    // final one for this hash while waiting for it.
    let mut answer: Option<String> = None;
    let mut published = false;
    session
        .client
        .publish(gateway_topic(&gateway, "config/set"), rumqttc::QoS::AtLeastOnce, args.retain, message.to_string())
        .await?;
    let puback_deadline = started + Duration::from_secs(10);
    let done = session
        .until(puback_deadline, |event| {
            match event {
                Event::Incoming(Packet::PubAck(_)) => published = true,
                Event::Incoming(Packet::Publish(p)) if p.topic == status_topic && answer.is_none() => {
                    answer = final_status(&p.payload, &hash);
                }
                _ => {}
            }
            published.then_some(())
        })
        .await?;
    if done.is_none() {
        return Err(unavailable(format!("the broker at {} did not acknowledge the configuration", conn.url)));
    }
    let Some(wait) = args.wait_status else {
        session.close().await;
        return Ok(0);
    };
    if answer.is_none() {
        answer = session
            .until(Instant::now() + Duration::from_secs(wait), |event| match event {
                Event::Incoming(Packet::Publish(p)) if p.topic == status_topic => final_status(&p.payload, &hash),
                _ => None,
            })
            .await?;
    }
    session.close().await;
    match answer {
        Some(status) => {
            print_line(&status)?;
            Ok(0)
        }
        None => Err(anyhow::anyhow!(
            "no final status from {gateway} for {hash} within {wait} s (is the gateway online? see outpost/v1/{gateway}/state)"
        )),
    }
}

/// The status JSON as received, when it is about `hash` and no longer `applying`.
fn final_status(payload: &[u8], hash: &str) -> Option<String> {
    let status: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let about_hash = status.get("hash").and_then(|h| h.as_str()) == Some(hash);
    let state = status.get("status").and_then(|s| s.as_str())?;
    (about_hash && state != "applying").then(|| String::from_utf8_lossy(payload).into_owned())
}

async fn cmd(conn: &ConnArgs, args: CmdArgs) -> anyhow::Result<u8> {
    let gateway = gateway(&args.site, &args.node)?;
    if args.name.is_empty() || args.name.contains(['/', '+', '#']) {
        return Err(usage(format!("command name '{}': no '/', '+' or '#' allowed", args.name)));
    }
    let cmd_args: serde_json::Value = match &args.args {
        None => serde_json::json!({}),
        Some(text) => match serde_json::from_str(text) {
            Ok(value @ serde_json::Value::Object(_)) => value,
            _ => return Err(usage(format!("--args {text}: not a JSON object"))),
        },
    };
    let request_id = format!("r-{}", ulid::Ulid::generate());
    let request = serde_json::json!({ "request_id": request_id, "from": args.from, "args": cmd_args });
    let result_topic = gateway_topic(&gateway, &format!("cmd/{}/result", args.name));

    let mut session = OneShot::connect(conn).await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    session.subscribe(&result_topic, deadline).await?;
    session
        .client
        .publish(
            gateway_topic(&gateway, &format!("cmd/{}", args.name)),
            rumqttc::QoS::AtLeastOnce,
            false,
            request.to_string(),
        )
        .await?;
    let result = session
        .until(deadline, |event| match event {
            Event::Incoming(Packet::Publish(p)) if p.topic == result_topic => {
                let result: serde_json::Value = serde_json::from_slice(&p.payload).ok()?;
                let ours = result.get("request_id").and_then(|r| r.as_str()) == Some(request_id.as_str());
                ours.then(|| (result, String::from_utf8_lossy(&p.payload).into_owned()))
            }
            _ => None,
        })
        .await?;
    session.close().await;
    let Some((result, text)) = result else {
        return Err(anyhow::anyhow!(
            "no result for command '{}' ({request_id}) from {gateway} within {} s (is the gateway online? see outpost/v1/{gateway}/state)",
            args.name,
            args.timeout
        ));
    };
    print_line(&text)?;
    Ok(if result.get("ok").and_then(|ok| ok.as_bool()) == Some(true) { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses() {
        let h = "sha256:ab";
        assert_eq!(final_status(br#"{"hash":"sha256:ab","status":"applying"}"#, h), None);
        assert_eq!(final_status(br#"{"hash":"sha256:cd","status":"applied"}"#, h), None);
        assert!(final_status(br#"{"v":1,"hash":"sha256:ab","status":"applied"}"#, h).is_some());
        assert!(final_status(br#"{"hash":"sha256:ab","status":"rejected","errors":["x"]}"#, h).is_some());
        assert_eq!(final_status(b"garbage", h), None);
    }

    #[test]
    fn gateway_names() {
        assert_eq!(gateway("north", "gw-1").unwrap(), "north/gw-1");
        assert_eq!(conn::exit_code(&gateway("no/rth", "gw").unwrap_err()), 64);
        assert_eq!(conn::exit_code(&gateway("north", "+").unwrap_err()), 64);
    }

    #[test]
    fn command_line() {
        Cli::try_parse_from(["central", "consume", "--store", "x.sqlite", "--url", "mqtt://h:1"]).unwrap();
        Cli::try_parse_from(["central", "--url", "mqtt://h:1", "state", "--offline"]).unwrap();
        assert!(Cli::try_parse_from(["central", "state", "--online", "--offline"]).is_err());
        assert!(Cli::try_parse_from(["central", "consume"]).is_err());
        assert!(Cli::try_parse_from(["central", "cmd", "--site", "s", "--node", "n", "ping", "--cert", "c"]).is_err());
        let cli = Cli::try_parse_from([
            "central",
            "publish-config",
            "--site",
            "s",
            "--node",
            "n",
            "--file",
            "f",
            "--version",
            "v1",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::PublishConfig(PublishConfigArgs { ref version, .. }) if version == "v1")
        );
    }
}
