//! `outpost probe --modem`: the IO of the active probe. Unlike the rest of `probe`, this
//! **writes** to the port: AT commands that identify a modem ([`super::modem`] chooses them and
//! reads the replies). Never `ATA` or `ATD`: the line is never taken off-hook; the exchange
//! ends with `AT+FCLASS=0` and `ATZ`, and closing the port drops DTR.
//!
//! The port is opened at 115200 8N1 with RTS/CTS (a fax source's default) or `--baud`; a modem
//! that does not answer `AT` there is tried at the other [`super::modem::BAUDS`]. Each command
//! waits a short while for its final result code; a write the modem does not take (CTS held
//! low) counts as no answer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

use super::listen::{ProbeError, open_error, say};
use super::modem::{self, Answer, Exchange, ModemReport};
use crate::serial::{DataBits, FlowControl, Parity, Settings, StopBits};

#[derive(Debug, Clone)]
pub struct ModemOptions {
    pub port: PathBuf,
    /// The first rate tried (115200 when none).
    pub baud: Option<u32>,
    /// How long each command may take to be answered.
    pub timeout: Duration,
    /// The running daemon's control socket, to name the source holding a port.
    pub socket: Option<PathBuf>,
}

/// How long `AT` waits at each rate (a modem answers in milliseconds).
const HELLO_TIMEOUT: Duration = Duration::from_millis(1000);

/// Asks the modem on `opts.port` who it is and what it can do.
pub fn run(opts: &ModemOptions, progress: &mut dyn Write) -> Result<ModemReport, ProbeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProbeError::Unavailable(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(ask(opts, progress))
}

fn settings(port: &Path, baud: u32) -> Settings {
    Settings {
        port: port.to_path_buf(),
        baud,
        data_bits: DataBits::Eight,
        parity: Parity::None,
        stop_bits: StopBits::One,
        flow_control: FlowControl::RtsCts,
    }
}

async fn ask(opts: &ModemOptions, progress: &mut dyn Write) -> Result<ModemReport, ProbeError> {
    let port = opts.port.as_path();
    if !port.exists() {
        return Err(ProbeError::NoSuchPort(format!(
            "no such port {}: is the modem plugged in and the path right? `outpost ports` lists the ports on this box",
            port.display()
        )));
    }
    let first = opts.baud.unwrap_or(modem::BAUDS[0]);
    let rates: Vec<u32> = std::iter::once(first).chain(modem::BAUDS.into_iter().filter(|&b| b != first)).collect();
    let mut stream =
        crate::serial::open(&settings(port, first)).map_err(|e| open_error(&e, opts.socket.as_deref(), port))?;
    say(
        progress,
        &format!(
            "outpost probe --modem: asking {} who it is; this WRITES AT commands to the port (never ATA or ATD: \
             the line stays on-hook) and ends with ATZ.",
            port.display()
        ),
    );
    let mut tried = Vec::new();
    let mut heard = 0usize;
    let mut answered_at = None;
    for (i, &baud) in rates.iter().enumerate() {
        if i > 0 {
            crate::serial::apply(&mut stream, &settings(port, baud))
                .map_err(|e| ProbeError::Unavailable(format!("{e} (while trying {baud} baud)")))?;
        }
        {
            use tokio_serial::SerialPort;
            let _ = stream.clear(tokio_serial::ClearBuffer::All);
        }
        tried.push(baud);
        let (answer, bytes) = exchange(&mut stream, modem::HELLO, HELLO_TIMEOUT).await;
        heard += bytes;
        say(progress, &format!("  {baud} 8N1: AT → {}", shown(&answer)));
        if answer.end == modem::End::Ok {
            answered_at = Some(baud);
            break;
        }
    }
    let Some(baud) = answered_at else {
        return Ok(modem::conclude(port, None, tried, heard, Vec::new()));
    };
    let mut exchanges = Vec::new();
    let mut ask_one = async |stream: &mut SerialStream, command: &str, progress: &mut dyn Write| {
        let (answer, _) = exchange(stream, command, opts.timeout).await;
        say(progress, &format!("  {command} → {}", shown(&answer)));
        exchanges.push(Exchange { command: command.to_string(), answer: answer.clone() });
        answer
    };
    let mut offered = Vec::new();
    for command in modem::FIRST {
        let answer = ask_one(&mut stream, command, progress).await;
        if *command == "AT+FCLASS=?" && answer.end == modem::End::Ok {
            offered = modem::classes(&answer.lines.join(","));
        }
    }
    for command in modem::after_classes(&offered).into_iter().chain(modem::LAST.iter().copied()) {
        ask_one(&mut stream, command, progress).await;
    }
    Ok(modem::conclude(port, Some(baud), tried, heard, exchanges))
}

fn shown(answer: &Answer) -> String {
    let end = match answer.end {
        modem::End::Ok => "OK",
        modem::End::Error => "ERROR",
        modem::End::Silent => "no answer",
    };
    if answer.lines.is_empty() { end.to_string() } else { format!("{} ({end})", answer.lines.join(" | ")) }
}

/// Sends `command` and reads until its final result code or `timeout`; the answer and how many
/// bytes came.
async fn exchange(stream: &mut SerialStream, command: &str, timeout: Duration) -> (Answer, usize) {
    let deadline = Instant::now() + timeout;
    let line = format!("{command}\r");
    match tokio::time::timeout(timeout, AsyncWriteExt::write_all(stream, line.as_bytes())).await {
        Ok(Ok(())) => {}
        // Not taken (CTS held low, the port gone): no answer.
        _ => return (Answer::silent(command, b""), 0),
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        if let Some(answer) = Answer::read(command, &received) {
            return (answer, received.len());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || received.len() >= modem::MAX_REPLY {
            return (Answer::silent(command, &received), received.len());
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => return (Answer::silent(command, &received), received.len()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return (Answer::silent(command, &received), received.len()),
        }
    }
}
