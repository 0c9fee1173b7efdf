//! Central's side for the benchmarks that use the uplink: a private mosquitto, the example
//! consumer (`examples/central`), and waiting on both.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::target_dir;

/// A private mosquitto; killed when dropped.
pub struct Broker(pub Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts mosquitto (`$MOSQUITTO`, or /usr/sbin/mosquitto) on 127.0.0.1:`port` with a config in
/// `dir`, and waits until it listens.
pub fn start_broker(dir: &std::path::Path, port: u16) -> Broker {
    let conf = dir.join("mosquitto.conf");
    // Central's consumer must be able to take a gateway's whole window at once.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1000\n\
             max_queued_messages 100000\nmessage_size_limit 0\n"
        ),
    )
    .unwrap();
    let bin = std::env::var("MOSQUITTO").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto".into()
        } else {
            "mosquitto".into()
        }
    });
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto (apt install mosquitto)");
    wait_until("mosquitto listens", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Broker(child)
}

/// The gateway's uplink backlog, from its status.
pub fn backlog(socket: &std::path::Path) -> Option<u64> {
    let v = outpost::control::client::request(socket, &outpost::control::protocol::Request::Status).ok()?;
    v["uplink"]["backlog"].as_u64()
}

pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The example consumer, built in release mode next to this bench's outpost.
pub fn consumer_binary() -> std::path::PathBuf {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--example", "central"])
        .status()
        .expect("run cargo");
    assert!(status.success(), "cannot build the example consumer");
    target_dir().join("release/examples/central")
}

/// Items in the example consumer's store (-1 while it cannot be read).
pub fn count_stored(store: &std::path::Path) -> i64 {
    rusqlite::Connection::open(store)
        .and_then(|c| c.query_row("SELECT count(*) FROM items", [], |r| r.get(0)))
        .unwrap_or(-1)
}
