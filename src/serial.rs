//! Serial ports: lab analyzers (ASTM) and fax modems on RS-232, through USB adapters or on-board
//! UARTs: opening a port with its line settings, failing in words a tech can act on. Keeping it
//! open (reopening a port missing at start, unplugged, or failing with EIO) is
//! [`crate::reopen`]'s. The protocol on top (ASTM's link layer, a modem's AT dialogue) belongs
//! to the caller, which gets a byte stream.

use std::path::PathBuf;

use tokio_serial::{SerialPortBuilderExt, SerialStream};

/// A port and its line settings, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Best a `/dev/serial/by-id/...` path: it names the adapter, whatever order USB devices
    /// enumerate in.
    pub port: PathBuf,
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    pub flow_control: FlowControl,
}

pub use crate::serial_line::{DataBits, FlowControl, Parity, StopBits};

impl Settings {
    /// A port at 9600 8N1 without flow control, the most common analyzer default.
    pub fn new(port: impl Into<PathBuf>, baud: u32) -> Settings {
        Settings {
            port: port.into(),
            baud,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        }
    }

    /// The line settings as a tech writes them: `9600 8N1`, `2400 7E2 rts/cts`.
    pub fn line(&self) -> String {
        let bits = match self.data_bits {
            DataBits::Seven => 7,
            DataBits::Eight => 8,
        };
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        let stop = match self.stop_bits {
            StopBits::One => 1,
            StopBits::Two => 2,
        };
        let flow = match self.flow_control {
            FlowControl::None => "",
            FlowControl::RtsCts => " rts/cts",
            FlowControl::XonXoff => " xon/xoff",
        };
        format!("{} {bits}{parity}{stop}{flow}", self.baud)
    }
}

/// Why a port could not be opened, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot open {port}: {reason}; {hint}")]
pub struct OpenFailure {
    pub port: String,
    pub reason: String,
    pub hint: &'static str,
}

/// Opens `settings.port` exclusively (TIOCEXCL and an exclusive flock: a second program
/// opening it fails rather than sharing the line) in raw mode with its line settings.
pub fn open(settings: &Settings) -> Result<SerialStream, OpenFailure> {
    let (data_bits, parity, stop_bits, flow_control) = line(settings);
    let builder = tokio_serial::new(settings.port.to_string_lossy(), settings.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow_control);
    builder.open_native_async().map_err(|e| failure(settings, &e))
}

/// Sets the line settings of a port already open (a reload that changes them keeps the port
/// open): without this the port would keep running at the settings it was opened with.
pub fn apply(port: &mut SerialStream, settings: &Settings) -> Result<(), OpenFailure> {
    use tokio_serial::SerialPort;
    let (data_bits, parity, stop_bits, flow_control) = line(settings);
    port.set_baud_rate(settings.baud)
        .and_then(|()| port.set_data_bits(data_bits))
        .and_then(|()| port.set_parity(parity))
        .and_then(|()| port.set_stop_bits(stop_bits))
        .and_then(|()| port.set_flow_control(flow_control))
        .map_err(|e| failure(settings, &e))
}

fn line(
    settings: &Settings,
) -> (tokio_serial::DataBits, tokio_serial::Parity, tokio_serial::StopBits, tokio_serial::FlowControl) {
    (
        match settings.data_bits {
            DataBits::Seven => tokio_serial::DataBits::Seven,
            DataBits::Eight => tokio_serial::DataBits::Eight,
        },
        match settings.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        },
        match settings.stop_bits {
            StopBits::One => tokio_serial::StopBits::One,
            StopBits::Two => tokio_serial::StopBits::Two,
        },
        match settings.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::RtsCts => tokio_serial::FlowControl::Hardware,
            FlowControl::XonXoff => tokio_serial::FlowControl::Software,
        },
    )
}

fn failure(settings: &Settings, e: &tokio_serial::Error) -> OpenFailure {
    use tokio_serial::ErrorKind;
    let port = settings.port.display().to_string();
    // serialport opening a POSIX port says NoDevice for EBUSY (TIOCEXCL held) and for an
    // exclusive flock it cannot take: both mean another program has the port. A missing device
    // is an Io(NotFound).
    let busy = matches!(e.kind, ErrorKind::NoDevice) || e.description.contains("busy");
    let hint = match e.kind {
        _ if busy => {
            "another program holds it (ModemManager, a getty, a second outpost): find it with `fuser -v` on the port"
        }
        ErrorKind::Io(std::io::ErrorKind::NotFound) => {
            "is the adapter plugged in and the path right? `outpost ports` lists the ports on this box"
        }
        ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
            "outpost's user must be in group dialout (the package sets this up; `outpost ports` says who may open it)"
        }
        _ => "check the port and its settings; `outpost probe` listens to a port without opening a session",
    };
    OpenFailure { port, reason: e.description.clone(), hint }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::stats::SourceStats;

    /// Under qemu-user (`cross/test`), which does not emulate the termios2 ioctls a port's line
    /// is set with (ENOSYS): the tests of real ports say so and stop; they run natively in
    /// scripts/test, in the same CI run.
    fn serial_ports_unavailable() -> bool {
        let emulated = std::env::var_os("OUTPOST_TEST_RUNNER").is_some();
        if emulated {
            eprintln!(
                "not run under qemu-user, which does not emulate the termios2 ioctls; runs natively in scripts/test"
            );
        }
        emulated
    }

    #[test]
    fn line_settings_read_as_a_tech_writes_them() {
        let mut s = Settings::new("/dev/ttyUSB0", 9600);
        assert_eq!(s.line(), "9600 8N1");
        s.data_bits = DataBits::Seven;
        s.parity = Parity::Even;
        s.stop_bits = StopBits::Two;
        s.flow_control = FlowControl::RtsCts;
        assert_eq!(s.line(), "9600 7E2 rts/cts");
    }

    #[tokio::test]
    async fn a_missing_port_says_so_and_how_to_find_the_right_one() {
        let e = open(&Settings::new("/dev/serial/by-id/usb-nothing-here", 9600)).unwrap_err();
        assert!(e.to_string().contains("/dev/serial/by-id/usb-nothing-here"), "{e}");
        assert!(e.hint.contains("outpost ports"), "{e}");
    }

    #[tokio::test]
    async fn a_pseudo_terminal_opens_with_line_settings() {
        if serial_ports_unavailable() {
            return;
        }
        let pty = nix::pty::openpty(None, None).unwrap();
        let path = nix::unistd::ttyname(&pty.slave).unwrap();
        let mut s = Settings::new(&path, 115_200);
        s.parity = Parity::Even;
        s.data_bits = DataBits::Seven;
        let port = open(&s).expect("open the pty");
        drop(port);
    }

    #[tokio::test]
    async fn a_port_held_by_another_program_says_so_not_that_it_is_missing() {
        if serial_ports_unavailable() {
            return;
        }
        let pty = nix::pty::openpty(None, None).unwrap();
        let path = nix::unistd::ttyname(&pty.slave).unwrap();
        let s = Settings::new(&path, 9600);
        let held = open(&s).expect("the first open");
        let e = open(&s).unwrap_err();
        assert!(e.hint.contains("another program holds it"), "{e}");
        drop(held);
        open(&s).expect("free again once the first lets go");
    }

    #[tokio::test]
    async fn new_line_settings_apply_to_an_open_port() {
        if serial_ports_unavailable() {
            return;
        }
        let pty = nix::pty::openpty(None, None).unwrap();
        let path = nix::unistd::ttyname(&pty.slave).unwrap();
        let mut port = open(&Settings::new(&path, 9600)).unwrap();
        let mut s = Settings::new(&path, 2400);
        s.stop_bits = StopBits::Two;
        s.flow_control = FlowControl::XonXoff;
        apply(&mut port, &s).unwrap();
        // (A pty keeps 8 data bits and no parity whatever it is told.)
        use tokio_serial::SerialPort;
        assert_eq!(port.baud_rate().unwrap(), 2400);
        assert_eq!(port.stop_bits().unwrap(), tokio_serial::StopBits::Two);
        assert_eq!(port.flow_control().unwrap(), tokio_serial::FlowControl::Software);
    }

    #[tokio::test]
    async fn a_port_that_appears_later_is_opened_and_its_state_follows() {
        if serial_ports_unavailable() {
            return;
        }
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("analyzer");
        let settings = Settings::new(&link, 9600);
        let describe = format!("{} {}", link.display(), settings.line());
        let stats = std::sync::Arc::new(SourceStats::default());
        let stop = CancellationToken::new();
        let first = Some(open(&settings));
        let (st, sp) = (stats.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let opener = || {
                let settings = settings.clone();
                async move { open(&settings).map_err(|e| e.to_string()) }
            };
            let first = first.map(|r| r.map_err(|e| e.to_string()));
            crate::reopen::keep_open("lab", &describe, first, opener, &st, &sp, |mut port| {
                let sp = sp.clone();
                async move {
                    port.write_all(b"hello").await.ok();
                    sp.cancelled().await;
                    crate::reopen::SessionEnd::Stopped(port)
                }
            })
            .await
        });
        // Down, saying why, until the port exists.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while stats.link().last_error.is_none() {
            assert!(std::time::Instant::now() < deadline, "no error recorded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.link().state, crate::stats::SourceState::Down);
        assert!(stats.link().last_error.unwrap().contains("outpost ports"));
        // The adapter is plugged in: a pty appears under the configured name.
        let pty = nix::pty::openpty(None, None).unwrap();
        std::os::unix::fs::symlink(nix::unistd::ttyname(&pty.slave).unwrap(), &link).unwrap();
        let mut master = tokio::fs::File::from(std::fs::File::from(pty.master));
        let mut got = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(30), master.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(stats.link().state, crate::stats::SourceState::Up);
        assert!(stats.link().at.unwrap().ends_with("9600 8N1"));
        stop.cancel();
        assert!(task.await.unwrap().is_some(), "the open port is handed back");
    }
}
