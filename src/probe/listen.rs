//! The probe's IO: a serial port opened with each candidate setting in turn (`crate::serial`),
//! or a TCP address listened on or connected to, read for a while, and what was read handed
//! to [`super::analyze`]. Progress and what to do meanwhile go to `progress` (stderr), the
//! verdict to the caller.
//!
//! Passive: nothing is ever written. An ASTM instrument therefore gets no ACK to its ENQ (the
//! analysis knows that sign); an HL7 sender gets no ACK either, and its message is heard all the
//! same. A port held by another program (outpost's own lab link, a getty, ModemManager) is not
//! taken: opening it fails, and the error names the holder when it is a source of the running
//! outpost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::analyze::{KEEP, hear};
use super::plan::{self, Line};
use super::report::{self, Place, Report, Tried};
use crate::cli::{EX_NOINPUT, EX_UNAVAILABLE, EX_USAGE};

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A serial port (best a `/dev/serial/by-id/...` path).
    Serial(PathBuf),
    /// `IP:PORT` to listen on: the instrument connects.
    Listen(String),
    /// `HOST:PORT` to connect to: the instrument listens.
    Connect(String),
}

impl Target {
    /// From the command line: `--connect HOST:PORT`, else PORT: `IP:PORT`, `HOST:PORT` or
    /// `:PORT` (all addresses) to listen on; anything else is a serial port (a bare `ttyUSB0` is
    /// looked for in /dev).
    pub fn parse(port: Option<&str>, connect: Option<&str>) -> Target {
        if let Some(c) = connect {
            return Target::Connect(c.to_string());
        }
        let port = port.unwrap_or_default();
        if let Some((host, number)) = port.rsplit_once(':')
            && !port.contains('/')
            && number.parse::<u16>().is_ok()
        {
            let host = if host.is_empty() { "0.0.0.0" } else { host };
            return Target::Listen(format!("{host}:{number}"));
        }
        let path = Path::new(port);
        if !port.contains('/') && !path.exists() && Path::new("/dev").join(port).exists() {
            return Target::Serial(Path::new("/dev").join(port));
        }
        Target::Serial(path.to_path_buf())
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// Pins the baud rate (no cycling).
    pub baud: Option<u32>,
    /// Pins the data bits, parity and stop bits.
    pub line: Option<Line>,
    /// How long each setting of the cycle is listened to.
    pub dwell: Duration,
    /// How long a pinned setting, or a TCP link, is listened to.
    pub listen_for: Duration,
    /// The running daemon's control socket, to name the source holding a port.
    pub socket: Option<PathBuf>,
}

/// Why the probe could not listen at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    NoSuchPort(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Usage(String),
}

impl ProbeError {
    /// sysexits: 66 no such port, 69 cannot open or bind or connect, 64 bad usage.
    pub fn exit_code(&self) -> u8 {
        match self {
            ProbeError::NoSuchPort(_) => EX_NOINPUT,
            ProbeError::Unavailable(_) => EX_UNAVAILABLE,
            ProbeError::Usage(_) => EX_USAGE,
        }
    }
}

/// After this long without a byte, what was heard is judged; a setting that found its protocol
/// stops listening then (the rest of a session has come by then, or the instrument waits).
const QUIET: Duration = Duration::from_millis(1000);

/// How often a listener looks at the clock while nothing comes.
const TICK: Duration = Duration::from_millis(200);

/// Listens as `opts` says and concludes.
pub fn run(opts: &Options, progress: &mut dyn Write) -> Result<Report, ProbeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProbeError::Unavailable(format!("cannot start the async runtime: {e}")))?;
    if !matches!(opts.target, Target::Serial(_)) && (opts.baud.is_some() || opts.line.is_some()) {
        return Err(ProbeError::Usage(
            "--baud and --line are for serial ports; a TCP link has no line settings".into(),
        ));
    }
    runtime.block_on(async {
        match &opts.target {
            Target::Serial(port) => serial(opts, port, progress).await,
            Target::Listen(addr) => tcp_listen(opts, addr, progress).await,
            Target::Connect(addr) => tcp_connect(opts, addr, progress).await,
        }
    })
}

/// What one setting has heard so far.
#[derive(Default)]
struct Heard {
    kept: Vec<u8>,
    total: usize,
}

impl Heard {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len();
        let room = KEEP.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Why listening ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The time was up.
    Deadline,
    /// The protocol was found and the line has gone quiet.
    Settled,
    /// The other end closed (TCP).
    Closed,
    /// Reading failed (a port unplugged: EIO).
    Failed(String),
}

/// Reads `from` into `heard` until `deadline`, the other end closes, or what was heard is found
/// and the line is quiet for [`QUIET`].
async fn listen<R: AsyncRead + Unpin>(from: &mut R, heard: &mut Heard, deadline: Instant) -> End {
    let mut buf = [0u8; 4096];
    let mut last_byte = Instant::now();
    let mut judged = heard.total;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return End::Deadline;
        }
        let wait = TICK.min(deadline - now);
        match tokio::time::timeout(wait, from.read(&mut buf)).await {
            Ok(Ok(0)) => return End::Closed,
            Ok(Ok(n)) => {
                heard.push(&buf[..n]);
                last_byte = Instant::now();
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return End::Failed(e.to_string()),
            Err(_) => {
                if heard.total != judged && last_byte.elapsed() >= QUIET {
                    judged = heard.total;
                    if hear(&heard.kept, heard.total).is_found() {
                        return End::Settled;
                    }
                }
            }
        }
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{} s", d.as_secs()) } else { format!("{:.1} s", d.as_secs_f64()) }
}

pub(super) fn say(progress: &mut dyn Write, text: &str) {
    let _ = writeln!(progress, "{text}");
    let _ = progress.flush();
}

const TRIGGER: &str = "Make the analyzer send now: press its 'send results' / 'transmit' button, or send a \
                       finished result to the host (LIS) again";

async fn serial(opts: &Options, port: &Path, progress: &mut dyn Write) -> Result<Report, ProbeError> {
    if !port.exists() {
        return Err(ProbeError::NoSuchPort(format!(
            "no such port {}: is the adapter plugged in and the path right? `outpost ports` lists the ports on this box",
            port.display()
        )));
    }
    let candidates = plan::candidates(port, opts.baud, opts.line);
    let window = if opts.baud.is_some() { opts.listen_for } else { opts.dwell };
    let Some(first) = candidates.first() else { return Err(ProbeError::Usage("no setting to try".into())) };
    let mut stream = crate::serial::open(first).map_err(|e| open_error(&e, opts.socket.as_deref(), port))?;
    say(
        progress,
        &format!(
            "outpost probe: listening to {} ({} setting(s), up to {} each); it never sends a byte. {TRIGGER}.",
            port.display(),
            candidates.len(),
            secs(window)
        ),
    );
    let mut tried = Vec::new();
    for (i, settings) in candidates.iter().enumerate() {
        if i > 0 {
            crate::serial::apply(&mut stream, settings)
                .map_err(|e| ProbeError::Unavailable(format!("{e} (while trying {})", settings.line())))?;
        }
        // What the port buffered at the last setting is not this setting's.
        {
            use tokio_serial::SerialPort;
            let _ = stream.clear(tokio_serial::ClearBuffer::Input);
        }
        say(progress, &format!("  {}: listening...", settings.line()));
        let started = Instant::now();
        let mut heard = Heard::default();
        let end = listen(&mut stream, &mut heard, started + window).await;
        let hearing = hear(&heard.kept, heard.total);
        say(progress, &format!("  {}: {} byte(s): {}", settings.line(), heard.total, report::heard(&hearing)));
        let found = hearing.is_found();
        tried.push(Tried {
            setting: settings.line(),
            serial: Some(settings.clone()),
            listened_ms: started.elapsed().as_millis() as u64,
            hearing,
        });
        if let End::Failed(why) = end {
            say(progress, &format!("  reading {} failed: {why}; was the adapter unplugged?", port.display()));
            break;
        }
        if found {
            break;
        }
    }
    Ok(report::conclude(&Place::Serial(port.to_path_buf()), tried))
}

pub(super) fn open_error(e: &crate::serial::OpenFailure, socket: Option<&Path>, port: &Path) -> ProbeError {
    if e.hint.starts_with("another program holds it") {
        if let Some(source) = socket.and_then(|s| {
            daemon_source_at(s, |transport, address| transport == "serial" && same_file(Path::new(address), port))
        }) {
            return ProbeError::Unavailable(format!(
                "{} is in use by source {source:?} of the running outpost: stop the source first (take it out of \
                 the config and `outpost reload`, or stop outpost), then probe",
                port.display()
            ));
        }
        return ProbeError::Unavailable(format!("{e} (stop that program first, then probe)"));
    }
    match e.hint {
        h if h.contains("outpost ports") => ProbeError::NoSuchPort(e.to_string()),
        _ => ProbeError::Unavailable(e.to_string()),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The name of the running daemon's source whose transport and address `holds` (from
/// `status`: `transport` and `address` of lab links), when the daemon answers.
fn daemon_source_at(socket: &Path, holds: impl Fn(&str, &str) -> bool) -> Option<String> {
    use crate::control::{client, protocol::Request};
    let status = client::request(socket, &Request::Status).ok()?;
    status["sources"].as_array()?.iter().find_map(|s| {
        let (transport, address) = (s["transport"].as_str()?, s["address"].as_str()?);
        holds(transport, address).then(|| s["name"].as_str().unwrap_or("?").to_string())
    })
}

async fn tcp_listen(opts: &Options, addr: &str, progress: &mut dyn Write) -> Result<Report, ProbeError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let port = addr.rsplit(':').next().unwrap_or_default().to_string();
        let holder = (e.kind() == std::io::ErrorKind::AddrInUse)
            .then(|| {
                opts.socket.as_deref().and_then(|s| {
                    daemon_source_at(s, |transport, address| {
                        transport == "tcp_listen" && address.rsplit(':').next() == Some(port.as_str())
                    })
                })
            })
            .flatten();
        match holder {
            Some(source) => ProbeError::Unavailable(format!(
                "{addr} is in use by source {source:?} of the running outpost: stop the source first (take it out \
                 of the config and `outpost reload`), then probe"
            )),
            None if e.kind() == std::io::ErrorKind::AddrInUse => ProbeError::Unavailable(format!(
                "cannot listen on {addr}: another program listens there (`ss -ltnp` names it; outpost's own \
                 sources are in `outpost status`)"
            )),
            None => ProbeError::Unavailable(format!("cannot listen on {addr}: {e}")),
        }
    })?;
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string());
    say(
        progress,
        &format!(
            "outpost probe: listening on {bound} for up to {}; point the analyzer's host address at this gateway; \
             it never sends a byte. {TRIGGER}.",
            secs(opts.listen_for)
        ),
    );
    let started = Instant::now();
    let deadline = started + opts.listen_for;
    let mut heard = Heard::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(accepted) = tokio::time::timeout(left, listener.accept()).await else { break };
        let (mut stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                say(progress, &format!("  accepting a connection failed: {e}"));
                continue;
            }
        };
        say(progress, &format!("  connection from {peer}"));
        let end = listen(&mut stream, &mut heard, deadline).await;
        let found = hear(&heard.kept, heard.total).is_found();
        say(progress, &format!("  {peer}: {} byte(s) so far", heard.total));
        if end != End::Closed || found {
            break;
        }
    }
    let place = Place::TcpListen(if addr.ends_with(":0") { bound } else { addr.to_string() });
    Ok(report::conclude(&place, vec![tcp_tried(started, &heard)]))
}

async fn tcp_connect(opts: &Options, addr: &str, progress: &mut dyn Write) -> Result<Report, ProbeError> {
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(ProbeError::Unavailable(format!(
                "cannot connect to {addr}: {e}; is the analyzer on, and is this its host port?"
            )));
        }
        Err(_) => {
            return Err(ProbeError::Unavailable(format!(
                "cannot connect to {addr}: no answer within 10 s; check the address and the network"
            )));
        }
    };
    say(
        progress,
        &format!(
            "outpost probe: connected to {addr}, listening for up to {}; it never sends a byte. {TRIGGER}.",
            secs(opts.listen_for)
        ),
    );
    let started = Instant::now();
    let mut heard = Heard::default();
    if listen(&mut stream, &mut heard, started + opts.listen_for).await == End::Closed {
        say(progress, &format!("  {addr} closed the connection"));
    }
    Ok(report::conclude(&Place::TcpConnect(addr.to_string()), vec![tcp_tried(started, &heard)]))
}

fn tcp_tried(started: Instant, heard: &Heard) -> Tried {
    Tried {
        setting: "tcp".into(),
        serial: None,
        listened_ms: started.elapsed().as_millis() as u64,
        hearing: hear(&heard.kept, heard.total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_bytes_are_bounded_and_all_are_counted() {
        let mut h = Heard::default();
        h.push(&vec![b'x'; KEEP - 10]);
        h.push(&[b'y'; 100]);
        assert_eq!((h.kept.len(), h.total), (KEEP, KEEP + 90));
    }

    /// The IO path on a real TCP connection (a peer that sends a capture and closes), without
    /// the binary.
    #[test]
    fn a_capture_over_tcp_is_heard_and_judged() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(include_bytes!("../../tests/data/astm/vitros-3600-host-query.raw")).unwrap();
        });
        let opts = Options {
            target: Target::Connect(addr),
            baud: None,
            line: None,
            dwell: Duration::from_secs(1),
            listen_for: Duration::from_secs(60),
            socket: None,
        };
        let mut progress = Vec::new();
        let report = run(&opts, &mut progress).unwrap();
        peer.join().unwrap();
        assert_eq!(report.verdict.protocol, super::super::Protocol::Astm);
        assert_eq!(report.verdict.profile.as_deref(), Some("ortho-vitros-3600"));
        assert!(report.verdict.config.as_deref().unwrap().contains("tcp_connect = \"127.0.0.1:"));
        assert!(String::from_utf8_lossy(&progress).contains("never sends a byte"));
    }

    #[test]
    fn ports_and_addresses_from_the_command_line() {
        assert_eq!(Target::parse(Some("0.0.0.0:5100"), None), Target::Listen("0.0.0.0:5100".into()));
        assert_eq!(Target::parse(Some(":5100"), None), Target::Listen("0.0.0.0:5100".into()));
        assert_eq!(Target::parse(Some("localhost:5100"), None), Target::Listen("localhost:5100".into()));
        assert_eq!(Target::parse(Some("[::]:5100"), None), Target::Listen("[::]:5100".into()));
        assert_eq!(Target::parse(None, Some("10.0.0.9:5100")), Target::Connect("10.0.0.9:5100".into()));
        assert_eq!(
            Target::parse(Some("/dev/serial/by-id/usb-FTDI-if00"), None),
            Target::Serial("/dev/serial/by-id/usb-FTDI-if00".into())
        );
        assert_eq!(Target::parse(Some("null"), None), Target::Serial("/dev/null".into()));
    }

    #[test]
    fn a_missing_port_is_no_such_port() {
        let opts = Options {
            target: Target::Serial("/dev/serial/by-id/usb-nothing-here".into()),
            baud: None,
            line: None,
            dwell: Duration::from_secs(1),
            listen_for: Duration::from_secs(1),
            socket: None,
        };
        let e = run(&opts, &mut Vec::new()).unwrap_err();
        assert_eq!(e.exit_code(), EX_NOINPUT);
        assert!(e.to_string().contains("outpost ports"), "{e}");
    }
}
