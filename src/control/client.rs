//! The CLI's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::protocol::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the outpost daemon at {socket}: {reason}; is it running (systemctl status outpost)? \
         Point at another instance with --config FILE or --socket PATH"
    )]
    Unreachable { socket: String, reason: String },
    #[error("permission denied on {socket}; run as root or as a member of the socket's group")]
    Denied { socket: String },
    #[error("the daemon's answer could not be read: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
}

fn connect(socket: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => ClientError::Denied { socket: socket.display().to_string() },
        _ => ClientError::Unreachable { socket: socket.display().to_string(), reason: e.to_string() },
    })
}

/// Sends one request and returns the answer's data.
pub fn request(socket: &Path, req: &Request) -> Result<serde_json::Value, ClientError> {
    let mut stream = connect(socket)?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let resp: Response = serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if resp.ok {
        Ok(resp.data.unwrap_or(serde_json::Value::Null))
    } else {
        Err(ClientError::Refused(resp.error.unwrap_or_else(|| "request failed".into())))
    }
}

/// Streams events (`tail`), calling `each` for every line until the daemon closes or `each`
/// returns false.
pub fn stream(socket: &Path, req: &Request, mut each: impl FnMut(&str) -> bool) -> Result<(), ClientError> {
    let mut stream = connect(socket)?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let line = line.map_err(|e| ClientError::Protocol(e.to_string()))?;
        if !each(&line) {
            break;
        }
    }
    Ok(())
}
