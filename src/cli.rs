//! The `outpost` command line: the daemon (`run`) and the field-tech tools. Raw flags are
//! parsed by clap; every path exits with a code from sysexits, as the README's table says:
//! 0 done, 64 bad usage or config, 65 bad data (a message that is not HL7, a peer's negative
//! ACK, a request the daemon refused), 66 an input file missing or unreadable, 69 the daemon or a
//! peer unavailable, 70 an internal error, 75 nothing heard (`probe`: try again while the
//! instrument sends), 76 a peer that does not answer in protocol.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::control::{client, protocol::*};
use crate::daemon::ConfigOrigin;
use crate::envelope::rfc3339;
use crate::events::{Event, EventKind};
use crate::hl7;
use crate::journal::Item;
use crate::mllp;
use crate::stats::UplinkState;

pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_SOFTWARE: u8 = 70;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_PROTOCOL: u8 = 76;

/// An input file that cannot be read (exit 66).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", .path.display())]
pub struct InputError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn read_input(path: &Path) -> Result<Vec<u8>, InputError> {
    std::fs::read(path).map_err(|source| InputError { path: path.to_path_buf(), source })
}

/// The installed config, used by the CLI tools when neither --config nor $OUTPOST_CONFIG is given.
const SYSTEM_CONFIG: &str = "/etc/outpost/outpost.toml";

#[derive(Parser, Debug)]
#[command(
    name = "outpost",
    version,
    about = "A clinic's integration edge: HL7 v2 intake, journal, routing and delivery."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone, Default)]
struct Target {
    /// Config file of the daemon to talk to (its control.socket is used). Default: $OUTPOST_CONFIG,
    /// else /etc/outpost/outpost.toml if present, else the embedded default.
    #[arg(long, short = 'c', env = "OUTPOST_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Control socket to talk to (overrides --config).
    #[arg(long, env = "OUTPOST_SOCKET", global = true)]
    socket: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum AstmCommand {
    /// Read a capture of an instrument's traffic (or records at rest): each frame with its
    /// number and checksum, the records, each message's summary, and the quirks it needs.
    /// Names, birth dates, values and comments are masked unless --show-phi.
    Decode {
        file: PathBuf,
        /// Show patient data and results as they are (for a tech's own screen only).
        #[arg(long)]
        show_phi: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FaxCommand {
    /// Summarise a received fax: pages (width, lines, resolution, damaged lines, bit order),
    /// the sender's TSI and caller ID, when it came, whether it is complete and why the call
    /// ended. No page content.
    Show {
        /// Item id (or journal sequence number), from `outpost queue ls`.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a received fax to FILE for a tech to look at: its TIFF as stored, or a PDF (--pdf).
    /// The file is made mode 0600 (it holds patient data).
    Export {
        id: String,
        file: PathBuf,
        /// A PDF of the same pages instead of the TIFF.
        #[arg(long)]
        pdf: bool,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (on the embedded default config unless --config or $OUTPOST_CONFIG is given).
    Run {
        #[arg(long, short = 'c', env = "OUTPOST_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write a starter config for a new gateway (asks for what is not given as a flag), checked
    /// before it is written.
    Init {
        /// The clinic's site name (letters, digits, - _ .).
        #[arg(long)]
        site: Option<String>,
        /// This gateway's id within the site.
        #[arg(long)]
        node: Option<String>,
        /// Where the EHR's MLLP feed connects: `0.0.0.0:2575`.
        #[arg(long)]
        listen: Option<String>,
        /// Central's MQTT broker (`mqtts://host:8883`); `none` for a gateway without central.
        #[arg(long)]
        broker: Option<String>,
        /// Where to write it.
        #[arg(long, short = 'o', default_value = SYSTEM_CONFIG)]
        output: PathBuf,
        /// Replace an existing file (it is kept as FILE.orig).
        #[arg(long)]
        force: bool,
    },
    /// Check what usually goes wrong on site (config, state dir and free space, clock, sources,
    /// destinations, broker and TLS files, the daemon and its unit) and say how to fix each.
    Doctor {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List this machine's serial ports: the /dev/serial/by-id path to put in a config, driver,
    /// USB adapter (vendor, product, serial number), and whether you may open each.
    Ports {
        #[arg(long)]
        json: bool,
    },
    /// Show sources, destinations, queues and the journal of a running daemon.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Inspect and retry queued items.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Follow live events: received, routed, delivered, failed, escalations.
    Tail {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Ask a running daemon to reload its config (same as SIGHUP, but reports the result).
    Reload {
        #[command(flatten)]
        target: Target,
    },
    /// Check a config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Try the routing rules on a message file, offline.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Received faxes: summary and export (from the running daemon's journal).
    Fax {
        #[command(subcommand)]
        command: FaxCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Lab instrument links (ASTM E1381/E1394).
    Astm {
        #[command(subcommand)]
        command: AstmCommand,
    },
    /// Listen to an unknown instrument, passively, and say what it speaks and how to configure it
    ///
    /// On a serial port: the baud rate and line that read it. Then: ASTM, HL7 or neither; the
    /// instrument's id (ASTM H.5, HL7 MSH-3/MSH-4); the built-in profile that fits; the
    /// [[source]] to paste into the config.
    ///
    /// A serial port is listened to at 9600, 19200, 38400, 57600, 115200, 4800, 2400 and 1200
    /// baud, --dwell each, stopping at the first that reads valid frames; 8N1 also reads 7E1,
    /// 7O1 and two stop bits (the parity arrives as bit 7 and is recognised); pin 8E1/8O1 or a
    /// setting with --baud/--line. PORT may instead be IP:PORT to listen on (the analyzer
    /// connects), or use --connect HOST:PORT. Make the analyzer send meanwhile ("send results",
    /// "transmit"). Never sends a byte, so an ASTM analyzer may only ask to send (ENQ): that
    /// names the setting too. Prints ids and protocol facts only, never patient data or results.
    ///
    /// Exit 0 found, 65 bytes heard but nothing valid, 75 nothing heard, 66 no such port, 69 the
    /// port held (by a source of the running outpost: stop it first) or cannot listen/connect.
    ///
    /// --modem PORT is the one active mode: it WRITES to the port. It asks a fax modem who it
    /// is (AT, ATI, ATI3, AT+FCLASS=?, then AT+FMI?/FMM?/FMR? in Class 2.0 and
    /// AT+FMFR?/FMDL?/FREV? in Class 2), at 115200 8N1 RTS/CTS (or --baud), other rates if AT
    /// gets no OK; never ATA or ATD (the line stays on-hook); it ends with AT+FCLASS=0 and ATZ.
    /// It says whether outpost can receive with it (Class 2 or 2.0) or only through HylaFAX
    /// (Class 1: kind = "fax-spool"), and prints the [[source]] kind = "fax-modem" to paste.
    /// Exit 0 a fax modem, 65 an answer but no fax modem, 75 no modem answered.
    #[command(verbatim_doc_comment)]
    Probe {
        /// A serial port (best its /dev/serial/by-id path: `outpost ports`), or IP:PORT to listen on.
        #[arg(required_unless_present = "connect", conflicts_with = "connect", value_name = "PORT")]
        port: Option<String>,
        /// Connect to the analyzer at HOST:PORT and listen there.
        #[arg(long, value_name = "HOST:PORT")]
        connect: Option<String>,
        /// PORT is a fax modem: ask it who it is and what it can do. WRITES AT commands to the
        /// port (never dials or answers; ends with ATZ).
        #[arg(long, conflicts_with_all = ["connect", "line"])]
        modem: bool,
        /// Listen at this baud rate only (for --for), instead of cycling.
        #[arg(long, value_parser = crate::probe::plan::baud)]
        baud: Option<u32>,
        /// Data bits, parity and stop bits: 8N1 (default), 7E1, 7O1, 8E1, 7E2...; without --baud,
        /// every baud rate is tried with it.
        #[arg(long, value_parser = |s: &str| s.parse::<crate::probe::plan::Line>())]
        line: Option<crate::probe::plan::Line>,
        /// How long to listen at each setting of the cycle (10s, 1m).
        #[arg(long, default_value = "10s", value_parser = crate::probe::plan::duration)]
        dwell: Duration,
        /// How long to listen at a pinned --baud, or on a TCP link.
        #[arg(long = "for", value_name = "DURATION", default_value = "60s", value_parser = crate::probe::plan::duration)]
        listen_for: Duration,
        /// The report as JSON (progress still goes to stderr).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Send HL7 files to an MLLP listener and print the ACKs (a field test sender).
    Send {
        /// HOST:PORT of the listener.
        address: String,
        /// Files holding one or more HL7 messages (segments on lines; LF, CRLF or CR).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Seconds to wait for each ACK.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Send each file's bytes exactly as they are, as one message.
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// List items not yet delivered (or filter by --state / --destination).
    Ls {
        /// pending, in_flight, failed, delivered, rejected, unrouted, or all.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        destination: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one item: summary, routing, deliveries and every attempt's error.
    Show {
        /// Item id (or journal sequence number).
        id: String,
        /// Also print the message body (patient data: mind who is looking).
        #[arg(long)]
        body: bool,
        #[arg(long)]
        json: bool,
    },
    /// Put failed deliveries back in the queue, or route unrouted items again with the current
    /// rules (after fixing them: `outpost reload`, then `outpost queue retry --unrouted`).
    Retry {
        /// Item id: its failed deliveries are retried, or, if it is unrouted, it is routed again.
        #[arg(required_unless_present_any = ["failed", "unrouted"], conflicts_with_all = ["failed", "unrouted"])]
        id: Option<String>,
        /// Every failed delivery.
        #[arg(long, conflicts_with = "unrouted")]
        failed: bool,
        /// Every unrouted item, routed again with the current rules.
        #[arg(long)]
        unrouted: bool,
        /// Only this destination (failed deliveries).
        #[arg(long)]
        destination: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a config file; print every error with its line and column. Exit 64 if invalid.
    Check { file: PathBuf },
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Which routes take MESSAGE_FILE (an HL7 message; an ASTM capture for a lab-link source), which
    /// escalation rules it raises, and what each destination receives. Offline.
    Test {
        message_file: PathBuf,
        /// Config to test (default as for the other tools).
        #[arg(long, short = 'c', env = "OUTPOST_CONFIG")]
        config: Option<PathBuf>,
        /// Source the message is taken to come from (default: the first source).
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are answers, not errors; anything else is bad usage.
            let _ = e.print();
            return ExitCode::from(if e.exit_code() == 0 { 0 } else { EX_USAGE });
        }
    };
    // The daemon sets up its own logging (journald under systemd).
    if !matches!(cli.command, Command::Run { .. }) {
        crate::logging::init_cli();
    }
    match command(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("outpost: {e:#}");
            ExitCode::from(exit_code_for(&e))
        }
    }
}

fn exit_code_for(e: &anyhow::Error) -> u8 {
    if let Some(ce) = e.downcast_ref::<client::ClientError>() {
        return match ce {
            client::ClientError::Unreachable { .. } | client::ClientError::Denied { .. } => EX_UNAVAILABLE,
            client::ClientError::Refused(_) => EX_DATAERR,
            client::ClientError::Protocol(_) => EX_SOFTWARE,
        };
    }
    if e.downcast_ref::<crate::config::ConfigErrors>().is_some() {
        return EX_USAGE;
    }
    if e.downcast_ref::<InputError>().is_some() {
        return EX_NOINPUT;
    }
    EX_SOFTWARE
}

fn run_daemon(config_path: Option<PathBuf>) -> u8 {
    crate::logging::init_daemon();
    let (config, origin) = match config_path {
        Some(p) => match Config::load(&p) {
            Ok(c) => (c, ConfigOrigin::File(p)),
            Err(e) => {
                eprint!("{e}");
                eprintln!("{} error(s); outpost did not start (check with `outpost config check FILE`)", e.len());
                return EX_USAGE;
            }
        },
        None => (Config::embedded_default(), ConfigOrigin::Embedded),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("outpost")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return EX_SOFTWARE;
        }
    };
    match runtime.block_on(crate::daemon::run(config, origin)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("outpost: {e:#}");
            EX_UNAVAILABLE
        }
    }
}

/// The config the CLI tools use: --config/$OUTPOST_CONFIG, else the system config, else the
/// embedded default.
fn tool_config(explicit: Option<&Path>) -> anyhow::Result<Config> {
    if let Some(p) = explicit {
        return Ok(Config::load(p)?);
    }
    let system = Path::new(SYSTEM_CONFIG);
    if system.exists() {
        return Ok(Config::load(system)?);
    }
    Ok(Config::embedded_default())
}

fn socket_of(target: &Target) -> anyhow::Result<PathBuf> {
    if let Some(s) = &target.socket {
        return Ok(s.clone());
    }
    Ok(tool_config(target.config.as_deref())?.control.socket)
}

fn command(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run { config } => Ok(run_daemon(config)),
        Command::Ports { json } => ports(json),
        Command::Init { site, node, listen, broker, output, force } => init(site, node, listen, broker, &output, force),
        Command::Doctor { json, target } => doctor(json, &target),
        Command::Status { json, target } => {
            let data = client::request(&socket_of(&target)?, &Request::Status)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                let report: StatusReport = serde_json::from_value(data)?;
                print_status(&report);
            }
            Ok(0)
        }
        Command::Queue { command, target } => queue(command, &socket_of(&target)?),
        Command::Tail { json, target } => {
            let stdout = std::io::stdout();
            client::stream(&socket_of(&target)?, &Request::Tail, |line| {
                let mut out = stdout.lock();
                let text = if json { line.to_string() } else { format_event(line) };
                writeln!(out, "{text}").is_ok() && out.flush().is_ok()
            })?;
            Ok(0)
        }
        Command::Reload { target } => {
            let data = client::request(&socket_of(&target)?, &Request::Reload)?;
            let reloaded: Reloaded = serde_json::from_value(data)?;
            println!("{}", reloaded.message);
            Ok(0)
        }
        Command::Config { command: ConfigCommand::Check { file } } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: valid. {} source(s), {} destination(s), {} route(s); routing mode {}; journal {}",
                    file.display(),
                    c.sources.len(),
                    c.destinations.len(),
                    c.routes.len(),
                    match c.routing.mode {
                        crate::config::RoutingMode::AllMatches => "all-matches (every matching route delivers)",
                        crate::config::RoutingMode::FirstMatch =>
                            "first-match (only the first matching route delivers)",
                    },
                    c.journal.path.display()
                );
                if let Some(u) = &c.uplink {
                    println!(
                        "uplink {} as {}; {}; config hash {}",
                        u.broker,
                        u.client_id,
                        match c.uplink_destination() {
                            Some(d) => format!("items routed to {d:?} go to central"),
                            None => "no uplink destination (state, telemetry and events only)".into(),
                        },
                        c.hash()
                    );
                }
                Ok(0)
            }
            Err(e) => {
                eprint!("{e}");
                eprintln!("{} error(s); nothing was changed.", e.len());
                Ok(EX_USAGE)
            }
        },
        Command::Rules { command: RulesCommand::Test { message_file, config, source, json } } => {
            rules_test(&message_file, config.as_deref(), source.as_deref(), json)
        }
        Command::Astm { command: AstmCommand::Decode { file, show_phi } } => astm_decode(&file, show_phi),
        Command::Fax { command: FaxCommand::Show { id, json }, target } => {
            crate::fax_cli::show(&socket_of(&target)?, &id, json)
        }
        Command::Fax { command: FaxCommand::Export { id, file, pdf, force }, target } => {
            crate::fax_cli::export(&socket_of(&target)?, &id, &file, pdf, force)
        }
        Command::Send { address, files, timeout, raw } => send(&address, &files, Duration::from_secs(timeout), raw),
        Command::Probe { port: Some(port), modem: true, baud, json, target, .. } => {
            let options = crate::probe::ask::ModemOptions {
                port: match crate::probe::Target::parse(Some(&port), None) {
                    crate::probe::Target::Serial(path) => path,
                    _ => PathBuf::from(&port),
                },
                baud,
                timeout: Duration::from_secs(3),
                socket: socket_of(&target).ok(),
            };
            probe_modem(&options, json)
        }
        Command::Probe { port, connect, baud, line, dwell, listen_for, json, target, .. } => {
            let options = crate::probe::Options {
                target: crate::probe::Target::parse(port.as_deref(), connect.as_deref()),
                baud,
                line,
                dwell,
                listen_for,
                socket: socket_of(&target).ok(),
            };
            probe(&options, json)
        }
    }
}

fn queue(command: QueueCommand, socket: &Path) -> anyhow::Result<u8> {
    match command {
        QueueCommand::Ls { state, destination, limit, json } => {
            let data = client::request(socket, &Request::QueueLs { state, destination, limit })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
                return Ok(0);
            }
            let items: Vec<Item> = serde_json::from_value(data)?;
            if items.is_empty() {
                println!("no items");
                return Ok(0);
            }
            println!(
                "{:<26}  {:<24}  {:<12}  {:<10}  {:<16}  DELIVERIES",
                "ID", "RECEIVED", "SOURCE", "STATUS", "TYPE"
            );
            for it in items {
                let deliveries: Vec<String> = it
                    .deliveries
                    .iter()
                    .map(|d| {
                        let attempts = if d.attempts > 0 { format!("({})", d.attempts) } else { String::new() };
                        format!("{}:{}{attempts}", d.destination, d.state)
                    })
                    .collect();
                println!(
                    "{:<26}  {:<24}  {:<12}  {:<10}  {:<16}  {}",
                    it.id,
                    rfc3339(it.received_at),
                    it.source,
                    it.status,
                    it.item_type,
                    deliveries.join(" ")
                );
            }
            Ok(0)
        }
        QueueCommand::Show { id, body, json } => {
            let data = client::request(socket, &Request::QueueShow { id, body })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
                return Ok(0);
            }
            let ShownItem { item, body_b64 } = serde_json::from_value(data)?;
            let s = &item.summary;
            println!("id           {}", item.id);
            println!("seq          {}", item.seq);
            println!("received     {}", rfc3339(item.received_at));
            println!("source       {} ({})", item.source, item.kind);
            println!("status       {}", item.status);
            if let Some(note) = &item.note {
                println!("note         {note}");
            }
            println!("size         {} bytes, charset {}", item.size, item.charset.as_deref().unwrap_or("?"));
            // HL7's summary reads as a sentence; any other field (another kind's, or what the
            // adapter added, such as the file an item came from) as `name value`.
            let mut said: &[&str] = &[];
            if item.kind == "hl7v2" && item.status != "rejected" {
                let f = |k: &str| s.fields.get(k).map(String::as_str).unwrap_or("");
                println!(
                    "message      {} control id {} from {} / {} (HL7 {})",
                    f("message_type"),
                    f("control_id"),
                    f("sending_app"),
                    f("sending_facility"),
                    f("version")
                );
                said = &["message_type", "control_id", "sending_app", "sending_facility", "version"];
            }
            for (name, value) in s.fields.iter().filter(|(k, _)| !said.contains(&k.as_str())) {
                println!("{:<12} {value}", name.replace('_', " "));
            }
            let routes = if item.routes.is_empty() { "(none)".to_string() } else { item.routes.join(", ") };
            println!("routes       {routes}");
            if item.duplicates > 0 {
                println!("duplicates   {} retransmission(s) acknowledged without storing", item.duplicates);
            }
            for d in &item.deliveries {
                println!(
                    "delivery     {:<16} {:<10} attempts {}{}",
                    d.destination,
                    d.state,
                    d.attempts,
                    d.last_error.as_ref().map(|e| format!("  last error: {e}")).unwrap_or_default()
                );
            }
            for a in &item.attempts {
                println!("attempt      {} {:<16} {:<8} {}", rfc3339(a.at), a.destination, a.outcome, a.error);
            }
            if let Some(b64) = body_b64 {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64)?;
                let decoded = hl7::decode(&bytes, None);
                println!("--- body ---");
                println!("{}", decoded.text.replace('\r', "\n").trim_end());
            }
            Ok(0)
        }
        QueueCommand::Retry { id, failed: _, unrouted, destination } => {
            if unrouted {
                return reroute(socket, None);
            }
            let data = client::request(socket, &Request::QueueRetry { id: id.clone(), destination })?;
            let Retried { retried: n } = serde_json::from_value(data)?;
            match (&id, n) {
                (Some(id), 0) => {
                    let again = client::request(socket, &Request::QueueReroute { id: Some(id.clone()) })?;
                    let again: Rerouted = serde_json::from_value(again)?;
                    if again.routed > 0 {
                        println!("unrouted item {id} routed again with the current rules");
                        return Ok(0);
                    }
                    if again.still_unrouted > 0 {
                        println!(
                            "item {id} is unrouted and the current rules still match no route; \
                             check them with `outpost rules test`, then `outpost reload`"
                        );
                    } else {
                        println!("item {id} has no failed delivery to retry (see `outpost queue show {id}`)");
                    }
                    Ok(EX_DATAERR)
                }
                _ => {
                    println!("{n} failed deliver{} put back in the queue", if n == 1 { "y" } else { "ies" });
                    Ok(0)
                }
            }
        }
    }
}

fn reroute(socket: &Path, id: Option<String>) -> anyhow::Result<u8> {
    let data = client::request(socket, &Request::QueueReroute { id })?;
    let Rerouted { routed, still_unrouted } = serde_json::from_value(data)?;
    println!("{routed} unrouted item(s) routed again; {still_unrouted} still match no route");
    Ok(0)
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn print_status(r: &StatusReport) {
    println!("outpost {} · site {} · node {} · up {}", r.version, r.site, r.node, human_duration(r.uptime_s));
    println!("config   {} (routing: {})", r.config, r.routing_mode);
    let j = &r.journal;
    println!(
        "journal  {} · {} on disk · {} of {} held · {} item(s)",
        j.path,
        human_bytes(j.disk_bytes),
        human_bytes(j.stored_bytes),
        human_bytes(j.max_bytes),
        j.items
    );
    let o = &r.orders;
    if o.active + o.downloads_pending + o.downloads_failed > 0 {
        println!(
            "orders   {} active · {} download(s) waiting · {} given up",
            o.active, o.downloads_pending, o.downloads_failed
        );
    }
    if j.unrouted + j.rejected + j.refused > 0 {
        println!(
            "problems unrouted {} · rejected {} · refused {}   (outpost queue ls --state unrouted|rejected)",
            j.unrouted, j.rejected, j.refused
        );
    }
    println!();
    println!(
        "{:<16} {:<5} {:<22} {:>5} {:>9} {:>8} {:>8} {:>6}",
        "SOURCE", "KIND", "AT", "OPEN", "RECEIVED", "REJECTED", "REFUSED", "DUPS"
    );
    for s in &r.sources {
        let (at, open) = s.detail.columns();
        println!(
            "{:<16} {:<5} {:<22} {:>5} {:>9} {:>8} {:>8} {:>6}",
            s.name,
            s.detail.kind(),
            at,
            open,
            s.received,
            s.rejected,
            s.refused,
            s.duplicates
        );
    }
    let now = crate::envelope::now_ms();
    let ago = |t: i64| human_duration(((now - t).max(0) / 1000) as u64);
    for s in &r.sources {
        if let Some(e) = &s.last_error {
            if s.state == crate::stats::SourceState::Up {
                println!("  {} problem: {e}", s.name);
            } else if s.since > 0 {
                println!("  {} down for {}: {e}", s.name, ago(s.since));
            } else {
                println!("  {} down: {e}", s.name);
            }
        }
        if let Some(note) = s.detail.status_note(ago) {
            println!("  {} {note}", s.name);
        }
    }
    println!();
    println!(
        "{:<16} {:<6} {:<28} {:>8} {:>7} {:>8}  STATE",
        "DESTINATION", "KIND", "TARGET", "PENDING", "FAILED", "OLDEST"
    );
    for d in &r.destinations {
        let state = match (d.unreachable_since, &d.last_error) {
            (Some(since), err) => format!(
                "unreachable for {}: {}",
                human_duration(((now - since).max(0) / 1000) as u64),
                err.as_deref().unwrap_or("")
            ),
            (None, _) if d.failed > 0 => {
                format!("{} failed: outpost queue ls --state failed --destination {}", d.failed, d.name)
            }
            _ => "ok".into(),
        };
        println!(
            "{:<16} {:<6} {:<28} {:>8} {:>7} {:>8}  {}",
            d.name,
            d.kind,
            fit(&d.target, 28),
            d.pending,
            d.failed,
            d.oldest_pending_age_s.map(human_duration).unwrap_or_else(|| "-".into()),
            state
        );
    }
    if let Some(u) = &r.uplink {
        println!();
        let central = match u.central_online {
            Some(true) => "central online",
            Some(false) => "central OFFLINE (items wait)",
            None => "central state not yet seen",
        };
        let since = human_duration(((now - u.since).max(0) / 1000) as u64);
        let state = match u.state {
            UplinkState::Connected => format!("connected for {since} · {central}"),
            UplinkState::Down => format!("DOWN for {since}: {}", u.last_disconnect.as_deref().unwrap_or("")),
            UplinkState::Connecting => u.state.to_string(),
        };
        println!("uplink   {} · session {} · {state}", u.broker, u.session);
        println!(
            "         backlog {} (oldest {}) · in flight {} · published {} · acknowledged {} · re-sent {} · reconnects {}",
            u.backlog,
            u.oldest_pending_age_s.map(human_duration).unwrap_or_else(|| "-".into()),
            u.in_flight,
            u.published,
            u.acked,
            u.resent,
            u.reconnects
        );
        if u.events_waiting > 0 || u.events_dropped > 0 {
            println!(
                "         events waiting for central's acknowledgement {} · dropped {}",
                u.events_waiting, u.events_dropped
            );
        }
    }
    if !r.escalations.is_empty() {
        println!();
        for e in &r.escalations {
            println!("ESCALATION [{}] {}: {}", e.severity.as_str(), e.code, e.message);
        }
    }
}

/// Shortens `s` to `width` characters, keeping its end (the informative part of a path).
fn init(
    site: Option<String>,
    node: Option<String>,
    listen: Option<String>,
    broker: Option<String>,
    output: &Path,
    force: bool,
) -> anyhow::Result<u8> {
    // The package ships /etc/outpost/outpost.toml as comments only (nothing configured yet):
    // that one is replaced without --force, and without a .orig.
    let existing = std::fs::read_to_string(output).ok();
    let placeholder = existing.as_deref().is_some_and(|t| !crate::init::holds_config(t));
    if output.exists() && !force && !placeholder {
        eprintln!(
            "outpost: {} exists; give --force to replace it (it is kept as .orig), or -o another file",
            output.display()
        );
        return Ok(EX_USAGE);
    }
    let ask = |what: &str, given: Option<String>, default: Option<&str>| -> anyhow::Result<String> {
        if let Some(v) = given {
            return Ok(v);
        }
        let hint = default.map(|d| format!(" [{d}]")).unwrap_or_default();
        eprint!("{what}{hint}: ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        match (line.trim(), default) {
            ("", Some(d)) => Ok(d.to_string()),
            ("", None) => anyhow::bail!("{what} is needed; give it as a flag (outpost init --help)"),
            (v, _) => Ok(v.to_string()),
        }
    };
    let site = ask("site (the clinic, e.g. northfield)", site, None)?;
    let node = ask("node id (this gateway, e.g. gw-01)", node, None)?;
    let listen = ask("MLLP listen address", listen, Some("0.0.0.0:2575"))?;
    let broker = ask("central's broker URL, or none", broker, Some("none"))?;
    let answers = crate::init::Answers {
        site,
        node,
        listen,
        broker: (!broker.eq_ignore_ascii_case("none") && !broker.is_empty()).then_some(broker),
    };
    let ports = crate::ports::list(Path::new("/sys"), Path::new("/dev"));
    let text = match crate::init::render(&answers, &ports, &rfc3339(crate::envelope::now_ms())) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("outpost: these answers do not make a valid config:\n{e}");
            return Ok(EX_USAGE);
        }
    };
    if output.exists() && !placeholder {
        std::fs::copy(output, format!("{}.orig", output.display()))?;
    }
    crate::init::write(output, &text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}; run as root, or -o FILE", output.display()))?;
    println!(
        "wrote {}; check it with `outpost config check {}`, then start outpost",
        output.display(),
        output.display()
    );
    Ok(0)
}

fn doctor(json: bool, target: &Target) -> anyhow::Result<u8> {
    use crate::doctor::Verdict;
    let path = target.config.clone().or_else(|| {
        let system = PathBuf::from(SYSTEM_CONFIG);
        system.exists().then_some(system)
    });
    let socket = socket_of(target).ok();
    let daemon = socket.and_then(|s| client::request(&s, &Request::Status).ok());
    let findings = crate::doctor::examine(path.as_deref(), daemon.as_ref());
    if json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            let word = match f.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            println!("{word} {:<22} {}", f.check, f.detail);
            if let Some(fix) = &f.fix {
                println!("     {:<22} → {fix}", "");
            }
        }
    }
    let worst = findings.iter().map(|f| f.verdict).max_by_key(|v| *v as u8).unwrap_or(Verdict::Ok);
    Ok(match worst {
        Verdict::Fail if findings.first().is_some_and(|f| f.check == "config" && f.verdict == Verdict::Fail) => {
            EX_USAGE
        }
        Verdict::Fail => EX_UNAVAILABLE,
        _ => 0,
    })
}

fn ports(json: bool) -> anyhow::Result<u8> {
    let ports = crate::ports::list(Path::new("/sys"), Path::new("/dev"));
    if json {
        println!("{}", serde_json::to_string_pretty(&ports)?);
        return Ok(0);
    }
    if ports.is_empty() {
        println!("no serial ports found (plug the adapter in, then see `dmesg | tail` for its driver)");
        return Ok(0);
    }
    println!(
        "{:<14} {:<10} {:<10} {:<28} {:<14} {:<6} PATH FOR THE CONFIG",
        "DEVICE", "DRIVER", "USB", "PRODUCT", "SERIAL", "ACCESS"
    );
    for p in &ports {
        let usb = p.usb.as_ref();
        println!(
            "{:<14} {:<10} {:<10} {:<28} {:<14} {:<6} {}",
            p.device.display(),
            p.driver.as_deref().unwrap_or("-"),
            usb.map(|u| format!("{}:{}", u.vendor_id, u.product_id)).unwrap_or_else(|| "-".into()),
            fit(
                &usb.map(|u| {
                    [u.manufacturer.as_deref(), u.product.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
                28
            ),
            usb.and_then(|u| u.serial.as_deref()).unwrap_or("-"),
            if p.accessible { "yes" } else { "NO" },
            p.by_id.as_ref().unwrap_or(&p.device).display()
        );
    }
    for p in ports.iter().filter(|p| !p.accessible) {
        let group = crate::ports::owner_group(&p.device).unwrap_or_else(|| "dialout".into());
        println!(
            "you cannot open {}: it belongs to group {group}; add yourself with `sudo usermod -aG {group} $USER` \
             and log in again (the outpost service's user is already in dialout)",
            p.device.display()
        );
    }
    if ports.iter().any(|p| p.usb.is_some() && p.by_id.is_none()) {
        println!(
            "a USB port without a /dev/serial/by-id path: its name may change when re-plugged; see hardware/ for a udev rule"
        );
    }
    Ok(0)
}

fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - (width - 1)).collect();
    format!("…{tail}")
}

fn format_event(line: &str) -> String {
    let event = match serde_json::from_str::<Event>(line) {
        Ok(event) => event,
        // An event this CLI does not know (from a newer daemon): its name, then the line as it came.
        Err(_) => {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { return line.to_string() };
            return format!("{}  {} {line}", rfc3339(v["at"].as_i64().unwrap_or(0)), v["event"].as_str().unwrap_or(""));
        }
    };
    let text = match event.kind {
        EventKind::Received { id, source, message_type, size, .. } => {
            format!("received    {id} {message_type} from {source} ({size} bytes)")
        }
        EventKind::Duplicate { id, source, .. } => {
            format!("duplicate   {id} from {source} (acknowledged again, not stored)")
        }
        EventKind::Routed { id, routes, destinations } => {
            format!("routed      {id} by {} to {}", routes.join(","), destinations.join(","))
        }
        EventKind::Unrouted { id, source, message_type } => {
            format!("UNROUTED    {id} {message_type} from {source}: no route matched")
        }
        EventKind::Rejected { id, source, reason } => format!("REJECTED    {id} from {source}: {reason}"),
        EventKind::Refused { source, reason } => format!("REFUSED     from {source}: {reason}"),
        EventKind::Delivered { id, destination, attempts } => {
            format!("delivered   {id} to {destination} (attempt {attempts})")
        }
        EventKind::AttemptFailed { id, destination, attempt, error, retry_in_ms } => {
            format!("retrying    {id} to {destination} (attempt {attempt}, next in {retry_in_ms} ms): {error}")
        }
        EventKind::Failed { id, destination, attempts, error } => {
            format!("FAILED      {id} to {destination} after {attempts} attempt(s): {error}")
        }
        EventKind::Escalation(e) => format!(
            "{}  [{}] {}: {}",
            if e.active { "ESCALATION" } else { "cleared   " },
            e.severity.as_str(),
            e.code,
            e.message
        ),
        EventKind::Lagged { missed } => format!("(missed {missed} events: the terminal could not keep up)"),
    };
    format!("{}  {text}", rfc3339(event.at))
}

/// Reads a message file for `rules test`: line ends normalised to CR.
/// Splits a file into HL7 messages: MLLP frames if the file is framed, else a new message at
/// every line starting with `MSH`; line ends (LF, CRLF, CR) become CR.
pub fn split_messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.contains(&mllp::START) {
        let mut d = mllp::Decoder::new(usize::MAX);
        let mut frames = Vec::new();
        d.push(bytes, &mut frames);
        d.finish(&mut frames);
        return frames
            .into_iter()
            .filter_map(|f| match f {
                mllp::Frame::Message(m) => Some(m),
                _ => None,
            })
            .collect();
    }
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for line in bytes.split(|&b| b == b'\n' || b == b'\r') {
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b"MSH") || messages.is_empty() {
            messages.push(Vec::new());
        }
        if let Some(m) = messages.last_mut() {
            m.extend_from_slice(line);
            m.push(b'\r');
        }
    }
    messages
}

fn probe(options: &crate::probe::Options, json: bool) -> anyhow::Result<u8> {
    let result = crate::probe::run(options, &mut std::io::stderr());
    print_probe(result.map(|r| (r.exit_code(), r)).map_err(|e| (e.exit_code(), e)), json)
}

fn probe_modem(options: &crate::probe::ask::ModemOptions, json: bool) -> anyhow::Result<u8> {
    let result = crate::probe::ask::run(options, &mut std::io::stderr());
    print_probe(result.map(|r| (r.exit_code(), r)).map_err(|e| (e.exit_code(), e)), json)
}

/// A probe's report (text or JSON) and its exit code, or its error on stderr and that code.
fn print_probe<R: serde::Serialize + std::fmt::Display, E: std::fmt::Display>(
    result: Result<(u8, R), (u8, E)>,
    json: bool,
) -> anyhow::Result<u8> {
    match result {
        Ok((code, report)) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(code)
        }
        Err((code, e)) => {
            eprintln!("outpost: {e}");
            Ok(code)
        }
    }
}

fn astm_decode(file: &Path, show_phi: bool) -> anyhow::Result<u8> {
    let bytes = read_input(file)?;
    match crate::astm::decode::decode(&bytes) {
        Ok(report) => {
            print!("{}", report.render(show_phi));
            Ok(0)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(EX_DATAERR)
        }
    }
}

fn rules_test(file: &Path, config: Option<&Path>, source: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let config = tool_config(config)?;
    let bytes = read_input(file)?;
    crate::rules_test::run(&config, file, &bytes, source, json)
}

fn send(address: &str, files: &[PathBuf], timeout: Duration, raw: bool) -> anyhow::Result<u8> {
    let mut stream = match std::net::TcpStream::connect(address) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outpost: cannot connect to {address}: {e}; is the listener running and the port right?");
            return Ok(EX_UNAVAILABLE);
        }
    };
    stream.set_read_timeout(Some(timeout))?;
    let mut worst = 0u8;
    for file in files {
        let bytes = read_input(file)?;
        let messages = if raw { vec![bytes] } else { split_messages(&bytes) };
        for (i, msg) in messages.iter().enumerate() {
            stream.write_all(&mllp::encode(msg))?;
            let ack = read_ack(&mut stream)?;
            let label =
                if messages.len() > 1 { format!("{}#{}", file.display(), i + 1) } else { file.display().to_string() };
            match ack {
                Some(ack) => {
                    let text = hl7::decode(&ack, None).text.into_owned();
                    match hl7::parse_ack(&text) {
                        Ok(r) => {
                            println!(
                                "{label}: {} (control id {}){}",
                                r.code.as_str(),
                                r.control_id,
                                r.text.map(|t| format!(": {t}")).unwrap_or_default()
                            );
                            if !matches!(r.code, hl7::AckCode::AA | hl7::AckCode::CA) {
                                // The peer refused the data.
                                worst = worst.max(EX_DATAERR);
                            }
                        }
                        Err(e) => {
                            println!("{label}: answer is not an ACK: {e}");
                            worst = worst.max(EX_PROTOCOL);
                        }
                    }
                }
                None => {
                    println!("{label}: no ACK within {}s", timeout.as_secs());
                    return Ok(EX_UNAVAILABLE);
                }
            }
        }
    }
    Ok(worst)
}

fn read_ack(stream: &mut std::net::TcpStream) -> anyhow::Result<Option<Vec<u8>>> {
    let mut d = mllp::Decoder::new(1024 * 1024);
    let mut buf = [0u8; 4096];
    let mut frames = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        d.push(&buf[..n], &mut frames);
        for f in frames.drain(..) {
            if let mllp::Frame::Message(m) = f {
                return Ok(Some(m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `outpost tail`'s human lines, from the JSON lines the daemon streams.
    #[test]
    fn tail_lines_read_as_before() {
        let at = "2023-11-14T22:13:20.123Z";
        let cases = [
            (
                r#"{"at":1700000000123,"event":"received","id":"01A","source":"lab","kind":"hl7v2","message_type":"ORU^R01","control_id":"C1","size":321}"#,
                "received    01A ORU^R01 from lab (321 bytes)",
            ),
            (
                r#"{"at":1700000000123,"event":"duplicate","id":"01A","source":"lab","control_id":"C1"}"#,
                "duplicate   01A from lab (acknowledged again, not stored)",
            ),
            (
                r#"{"at":1700000000123,"event":"routed","id":"01A","routes":["r1","r2"],"destinations":["lis","archive"]}"#,
                "routed      01A by r1,r2 to lis,archive",
            ),
            (
                r#"{"at":1700000000123,"event":"unrouted","id":"01A","source":"lab","message_type":"ADT^A01"}"#,
                "UNROUTED    01A ADT^A01 from lab: no route matched",
            ),
            (
                r#"{"at":1700000000123,"event":"rejected","id":"01A","source":"lab","reason":"no MSH"}"#,
                "REJECTED    01A from lab: no MSH",
            ),
            (
                r#"{"at":1700000000123,"event":"refused","source":"lab","reason":"journal full"}"#,
                "REFUSED     from lab: journal full",
            ),
            (
                r#"{"at":1700000000123,"event":"delivered","id":"01A","destination":"lis","attempts":2}"#,
                "delivered   01A to lis (attempt 2)",
            ),
            (
                r#"{"at":1700000000123,"event":"attempt_failed","id":"01A","destination":"lis","attempt":3,"error":"connection refused","retry_in_ms":4000}"#,
                "retrying    01A to lis (attempt 3, next in 4000 ms): connection refused",
            ),
            (
                r#"{"at":1700000000123,"event":"failed","id":"01A","destination":"lis","attempts":5,"error":"AR bad"}"#,
                "FAILED      01A to lis after 5 attempt(s): AR bad",
            ),
            (
                r#"{"at":1700000000123,"event":"escalation","code":"unreachable","severity":"critical","subject":"lis","message":"lis unreachable for 90s","active":true}"#,
                "ESCALATION  [critical] unreachable: lis unreachable for 90s",
            ),
            (
                r#"{"at":1700000000123,"event":"escalation","code":"high_water","severity":"warning","subject":"journal","message":"journal holds 9 of 10 bytes","active":false}"#,
                "cleared     [warning] high_water: journal holds 9 of 10 bytes",
            ),
            (
                r#"{"at":1700000000123,"event":"lagged","missed":17}"#,
                "(missed 17 events: the terminal could not keep up)",
            ),
            // An event this CLI does not know (a newer daemon): its name and the line as it came.
            (
                r#"{"at":1700000000123,"event":"something_new","x":1}"#,
                r#"something_new {"at":1700000000123,"event":"something_new","x":1}"#,
            ),
        ];
        for (line, expect) in cases {
            assert_eq!(format_event(line), format!("{at}  {expect}"), "{line}");
        }
        assert_eq!(format_event("not json"), "not json");
    }
}
