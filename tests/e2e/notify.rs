//! systemd's notify protocol, the daemon's side, without systemd: a datagram socket stands in
//! for it (`NOTIFY_SOCKET`), with a watchdog interval in `WATCHDOG_USEC`.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

/// Every datagram the daemon sends, with when it arrived.
struct Systemd {
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Systemd {
    fn listen(path: &std::path::Path) -> Systemd {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        sink.lock().unwrap().push((Instant::now(), text));
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        // The test is over when nobody holds the list any more.
                        if Arc::strong_count(&sink) == 1 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        Systemd { got }
    }

    /// Lines received (one datagram may hold several), with their arrival time.
    fn lines(&self) -> Vec<(Instant, String)> {
        let got = self.got.lock().unwrap();
        got.iter().flat_map(|(at, text)| text.lines().map(move |l| (*at, l.to_string()))).collect()
    }

    fn pings_since(&self, since: Instant) -> usize {
        self.lines().iter().filter(|(at, l)| *at >= since && l == "WATCHDOG=1").count()
    }

    fn last_ping(&self) -> Option<Instant> {
        self.lines().iter().filter(|(_, l)| l == "WATCHDOG=1").map(|(at, _)| *at).max()
    }
}

const CONFIG: &str = r#"
[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "lis"
kind = "mllp"
connect = "{dead}"
connect_timeout = "1s"

[[route]]
name = "all"
from = ["ehr"]
to = ["lis"]
"#;

#[test]
fn ready_status_watchdog_pings_only_while_healthy_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let systemd = Systemd::listen(&socket);
    let env = vec![
        ("NOTIFY_SOCKET".to_string(), socket.display().to_string()),
        // Pings every second; a health check may take at most half a second.
        ("WATCHDOG_USEC".to_string(), "2000000".to_string()),
    ];
    let config = CONFIG.replace("{dead}", &dead_addr().to_string());
    let mut daemon = Daemon::start_with_env(dir, &config, env);

    wait_for("READY=1 with a status line", DEADLINE, || {
        let lines = systemd.lines();
        let ready = lines.iter().any(|(_, l)| l == "READY=1");
        let status = lines.iter().find(|(_, l)| l.starts_with("STATUS="))?.1.clone();
        ready.then_some(status)
    });
    let status = systemd.lines().into_iter().find(|(_, l)| l.starts_with("STATUS=")).unwrap().1;
    assert_eq!(status, "STATUS=1 source up, 0 pending", "what systemctl status shows");
    let start = Instant::now();
    wait_for("three watchdog pings", DEADLINE, || (systemd.pings_since(start) >= 3).then_some(()));

    // A status change (an item waiting for a destination that is down) is sent once counted.
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("NT-1"))), "AA");
    wait_for("the status to count the item", DEADLINE, || {
        systemd.lines().iter().any(|(_, l)| l == "STATUS=1 source up, 1 pending").then_some(())
    });

    // The journal writer wedged: another process holds SQLite's write lock, so the writer
    // cannot commit. The pings must stop, so that systemd would restart the service.
    let blocker = rusqlite::Connection::open(daemon.path("journal.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let wedged = Instant::now();
    wait_for("the daemon to say it is unhealthy", DEADLINE, || daemon.log().contains("unhealthy").then_some(()));
    wait_for("a silence of three ping intervals", DEADLINE, || {
        let last = systemd.last_ping()?;
        (last.elapsed() >= Duration::from_secs(3)).then_some(())
    });
    assert!(wedged.elapsed() < DEADLINE);

    // Unwedged: pings come back, and the log says so.
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let released = Instant::now();
    wait_for("pings again", DEADLINE, || (systemd.pings_since(released) >= 2).then_some(()));
    wait_for("the log to say healthy again", DEADLINE, || daemon.log().contains("healthy again").then_some(()));

    assert!(daemon.terminate().success());
    let lines = || systemd.lines().into_iter().map(|(_, l)| l).collect::<Vec<_>>();
    wait_for("STOPPING=1", DEADLINE, || lines().iter().any(|l| l == "STOPPING=1").then_some(()));
    assert!(!lines().iter().any(|l| l.starts_with("RECV-ERROR")), "{:?}", lines());
}
