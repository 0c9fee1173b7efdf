//! The reference server: the simplest MLLP receiver that is as durable as outpost. Each
//! message is appended to one log file and `fdatasync`ed before its ACK; connections take turns
//! at the log (one lock around append + sync), so every message costs one sync of its own.
//! It runs as a process of its own (the bench binary again, with `OUTPOST_BENCH_REFERENCE`
//! naming its directory), so that it runs under the slow-sync shim exactly as outpost does.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use outpost::mllp;

/// Serves until killed: prints `port N` on stdout once it listens.
pub fn serve(dir: &std::path::Path) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("reference: bind");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("reference.log"))
        .expect("reference: open its log");
    let log = Arc::new(Mutex::new(log));
    println!("port {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut d = mllp::Decoder::new(1 << 24);
            let mut buf = vec![0u8; 65536];
            let mut frames = Vec::new();
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                d.push(&buf[..n], &mut frames);
                for f in frames.drain(..) {
                    let mllp::Frame::Message(m) = f else { continue };
                    {
                        let mut log = log.lock().unwrap();
                        log.write_all(&m).expect("reference: append");
                        log.sync_data().expect("reference: fdatasync");
                    }
                    let text = String::from_utf8_lossy(&m[..m.len().min(256)]);
                    let id = text.split('|').nth(9).unwrap_or("");
                    let ack = format!("MSH|^~\\&|REF|REF|||20260101||ACK|{id}|P|2.5\rMSA|AA|{id}\r");
                    if s.write_all(&mllp::encode(ack.as_bytes())).is_err() {
                        return;
                    }
                }
            }
        });
    }
}
