//! An ASTM instrument for the end-to-end tests (test support, not product code): it plays an
//! analyzer on the master side of a real pseudo-terminal, or on a TCP connection, against the
//! real daemon.
//!
//! As sender it does what an E1381 (LIS01-A2) instrument does: ENQ and wait for ACK (contention:
//! the instrument goes first, again after 1 s), each frame and wait for its ACK (sent again on
//! NAK, six times at most), EOT. As receiver it takes the host's own sessions (ENQ answered ACK,
//! each frame checked and ACKed, the records collected, EOT). Faults are scripted by the tests
//! with the low-level calls (write raw bytes, read one reply, close the line).
//!
//! Frames are built and checked here by hand, not with `outpost::astm`: the link core is checked
//! against an independent implementation of the standard.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const STX: u8 = 0x02;
pub const ETX: u8 = 0x03;
pub const EOT: u8 = 0x04;
pub const ENQ: u8 = 0x05;
pub const ACK: u8 = 0x06;
pub const LF: u8 = 0x0A;
pub const CR: u8 = 0x0D;
pub const NAK: u8 = 0x15;
pub const ETB: u8 = 0x17;

/// E1381's limit on a frame's text.
pub const MAX_TEXT: usize = 240;

// ---- frames, by hand ----

/// The two hex digits of a frame's checksum: the sum modulo 256 of the bytes from the frame
/// number through ETX or ETB.
pub fn checksum(number_to_end: &[u8]) -> [u8; 2] {
    let sum = number_to_end.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    let hex = b"0123456789ABCDEF";
    [hex[(sum >> 4) as usize], hex[(sum & 15) as usize]]
}

/// `STX n text ETX|ETB C1 C2 CR LF`: `last` ends the E1381 message (ETX), else ETB.
pub fn frame(number: u8, text: &[u8], last: bool) -> Vec<u8> {
    let mut body = vec![b'0' + number % 8];
    body.extend_from_slice(text);
    body.push(if last { ETX } else { ETB });
    let sum = checksum(&body);
    let mut f = vec![STX];
    f.extend_from_slice(&body);
    f.extend_from_slice(&sum);
    f.extend_from_slice(&[CR, LF]);
    f
}

/// Records (each ending CR) as frames the way most instruments send them: each record its own
/// E1381 message, cut into frames of at most 240 characters; frame numbers from 1, wrapping.
pub fn frames_for(records: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut number = 1u8;
    for record in records.split_inclusive(|&b| b == CR) {
        let pieces: Vec<&[u8]> = record.chunks(MAX_TEXT).collect();
        for (i, piece) in pieces.iter().enumerate() {
            out.push(frame(number, piece, i + 1 == pieces.len()));
            number = (number + 1) % 8;
        }
    }
    out
}

/// A capture on the wire (`.raw`: ENQ, frames to their LF, EOT) cut into what an instrument
/// sends between two replies.
pub fn turns(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < wire.len() {
        let end = match wire[i] {
            ENQ | EOT => i + 1,
            STX => wire[i..].iter().position(|&b| b == LF).map_or(wire.len(), |p| i + p + 1),
            _ => wire[i..].iter().position(|&b| matches!(b, ENQ | EOT | STX)).map_or(wire.len(), |p| i + p),
        };
        out.push(wire[i..end].to_vec());
        i = end;
    }
    out
}

/// The frames of a capture (without ENQ, EOT and anything between frames).
pub fn frames_of(wire: &[u8]) -> Vec<Vec<u8>> {
    turns(wire).into_iter().filter(|t| t[0] == STX).collect()
}

/// senaite.astm's notation (one frame per line, the line end in place of CR LF) as frames
/// ending CR LF.
pub fn frames_from_lines(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|&b| b == LF)
        .map(|line| {
            let mut end = line.len();
            while end > 0 && matches!(line[end - 1], CR | LF) {
                end -= 1;
            }
            &line[..end]
        })
        .filter(|line| !line.is_empty())
        .map(|line| [line, &[CR, LF]].concat())
        .collect()
}

/// Frames exactly as the lines of a `.txt` capture hold them (ending LF alone).
pub fn frames_as_stored(text: &[u8]) -> Vec<Vec<u8>> {
    text.split_inclusive(|&b| b == LF).filter(|l| l.len() > 1).map(<[u8]>::to_vec).collect()
}

/// A checked frame: its number, text and end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub number: u8,
    pub text: Vec<u8>,
    pub last: bool,
}

/// Reads one frame strictly (what a receiver following LIS01-A2 accepts), saying what is wrong.
pub fn parse_frame(f: &[u8]) -> Result<Frame, String> {
    let n = f.len();
    if n < 7 || f[0] != STX {
        return Err(format!("not a frame: {f:02X?}"));
    }
    if f[n - 2..] != [CR, LF] {
        return Err(format!("frame does not end CR LF: ...{:02X?}", &f[n.saturating_sub(6)..]));
    }
    let end = f[n - 5];
    if end != ETX && end != ETB {
        return Err(format!("no ETX or ETB before the checksum: ...{:02X?}", &f[n.saturating_sub(8)..]));
    }
    if f[n - 4..n - 2] != checksum(&f[1..n - 4]) {
        return Err(format!("bad checksum {:?}", String::from_utf8_lossy(&f[n - 4..n - 2])));
    }
    let number = f[1].wrapping_sub(b'0');
    if number > 7 {
        return Err(format!("frame number {:?}", f[1] as char));
    }
    let text = f[2..n - 5].to_vec();
    if text.len() > MAX_TEXT {
        return Err(format!("{} characters of text", text.len()));
    }
    if let Some(b) = text.iter().find(|&&b| matches!(b, 0x01..=0x06 | LF | 0x10..=0x17)) {
        return Err(format!("restricted character 0x{b:02X} in the text"));
    }
    Ok(Frame { number, text, last: end == ETX })
}

/// What a receiver keeps of frames: their text (between the frame number and ETX or ETB, whatever
/// their length and line end), run together: the records, each ending CR.
pub fn records_of(frames: &[Vec<u8>]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|f| {
            let end = f.iter().rposition(|&b| b == ETX || b == ETB).expect("a frame ends ETX or ETB");
            f[2..end].to_vec()
        })
        .collect()
}

/// Field `n` (1-based, the type id being 1) of the first record of type `kind`.
pub fn record_field(records: &[u8], kind: &str, n: usize) -> Option<String> {
    let text = String::from_utf8_lossy(records);
    let record = text.split('\r').find(|r| r.split('|').next() == Some(kind))?;
    record.split('|').nth(n - 1).map(str::to_string)
}

// ---- the line ----

/// A tty's settings (termios2).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub iflag: libc::tcflag_t,
    pub oflag: libc::tcflag_t,
    pub cflag: libc::tcflag_t,
    pub lflag: libc::tcflag_t,
    /// Output speed in baud.
    pub speed: u32,
}

/// What the reader thread saw.
enum Read {
    Bytes(Vec<u8>, Instant),
    Closed(String),
}

/// What came next on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Byte(u8, Instant),
    /// Nothing within the time given.
    Quiet,
    /// The other end closed (or the line failed).
    Closed,
}

/// How writes go out.
#[derive(Debug, Clone)]
enum Shape {
    /// Each write whole.
    Whole,
    /// At a serial line's rate: no faster than this many bytes per millisecond.
    Paced { bytes_per_ms: f64, free_at: Instant },
    /// In pieces of these sizes, in turn (a TCP byte stream cut anywhere), a moment apart.
    Chunks { sizes: Vec<usize>, next: usize },
}

/// A byte stream to the host, read by a thread of its own (each chunk timestamped as read).
pub struct Line {
    fd: Arc<OwnedFd>,
    /// A pty's slave side, held open so that the master reads nothing but what the host writes
    /// (with no slave open, reading the master fails with EIO).
    _slave: Option<OwnedFd>,
    rx: mpsc::Receiver<Read>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    pending: VecDeque<(u8, Instant)>,
    closed: Option<String>,
    shape: Shape,
}

impl Line {
    pub fn tcp(stream: TcpStream) -> Line {
        stream.set_nodelay(true).expect("nodelay");
        Line::new(OwnedFd::from(stream), None)
    }

    fn new(fd: OwnedFd, slave: Option<OwnedFd>) -> Line {
        let fd = Arc::new(fd);
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (rfd, rstop) = (fd.clone(), stop.clone());
        let reader = std::thread::spawn(move || read_loop(&rfd, &tx, &rstop));
        Line {
            fd,
            _slave: slave,
            rx,
            stop,
            reader: Some(reader),
            pending: VecDeque::new(),
            closed: None,
            shape: Shape::Whole,
        }
    }

    /// Writes at most `bytes_per_ms` (a serial line: 11.52 at 115200 baud 8N1).
    pub fn paced(mut self, bytes_per_ms: f64) -> Line {
        self.shape = Shape::Paced { bytes_per_ms, free_at: Instant::now() };
        self
    }

    /// Writes in pieces of these sizes, in turn.
    pub fn chunked(mut self, sizes: &[usize]) -> Line {
        self.shape = Shape::Chunks { sizes: sizes.to_vec(), next: 0 };
        self
    }

    /// Writes `bytes` (shaped); returns when the last of them was handed to the kernel (the
    /// moment before the write that carried it: the host may answer before that write returns).
    pub fn write(&mut self, bytes: &[u8]) -> Instant {
        let mut at = Instant::now();
        let mut i = 0;
        while i < bytes.len() {
            let n = match &mut self.shape {
                Shape::Whole => bytes.len() - i,
                Shape::Paced { bytes_per_ms, free_at } => {
                    // The line is busy until `free_at`: the next piece goes out then.
                    let now = Instant::now();
                    if *free_at > now {
                        std::thread::sleep(*free_at - now);
                    }
                    let n = 16.min(bytes.len() - i);
                    *free_at = (*free_at).max(now) + Duration::from_secs_f64(n as f64 / *bytes_per_ms / 1000.0);
                    n
                }
                Shape::Chunks { sizes, next } => {
                    if i > 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let n = sizes[*next % sizes.len()].max(1);
                    *next += 1;
                    n.min(bytes.len() - i)
                }
            };
            at = Instant::now();
            self.write_all(&bytes[i..i + n]);
            i += n;
        }
        at
    }

    fn write_all(&self, mut bytes: &[u8]) {
        let mut stuck_since: Option<Instant> = None;
        while !bytes.is_empty() {
            match nix::unistd::write(self.fd.as_fd(), bytes) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    stuck_since = None;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    // Only a line made `bounded_writes`: the host reads nothing, the line is full.
                    let since = *stuck_since.get_or_insert_with(Instant::now);
                    assert!(
                        since.elapsed() < Duration::from_secs(60),
                        "the host read nothing of what was written for 60 s ({} bytes left to write)",
                        bytes.len()
                    );
                    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
                    let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(100u8));
                }
                // The host went away; what the test reads next says so.
                Err(_) => return,
            }
        }
    }

    /// Writes that fail the test when the host has read nothing for 60 s, instead of blocking
    /// for ever (a pty's buffer holds a few kilobytes: a daemon that stopped reading mid-page
    /// would hang the test).
    pub fn bounded_writes(self) -> Line {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_truncate(fcntl(self.fd.as_fd(), FcntlArg::F_GETFL).expect("F_GETFL"));
        fcntl(self.fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("O_NONBLOCK");
        self
    }

    /// The next byte from the host, waiting at most `within`.
    pub fn next(&mut self, within: Duration) -> Next {
        let deadline = Instant::now() + within;
        loop {
            if let Some((b, at)) = self.pending.pop_front() {
                return Next::Byte(b, at);
            }
            if self.closed.is_some() {
                return Next::Closed;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Read::Bytes(bytes, at)) => self.pending.extend(bytes.into_iter().map(|b| (b, at))),
                Ok(Read::Closed(why)) => self.closed = Some(why),
                Err(mpsc::RecvTimeoutError::Timeout) => return Next::Quiet,
                Err(mpsc::RecvTimeoutError::Disconnected) => self.closed = Some("reader gone".into()),
            }
        }
    }

    /// Everything the host sends within `window` (for checking that it sends nothing).
    pub fn collect_for(&mut self, window: Duration) -> Vec<u8> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Byte(b, _) => got.push(b),
                Next::Quiet | Next::Closed => return got,
            }
        }
    }

    /// A pty's line settings (one set for the tty: what the daemon set on its side), read as
    /// serialport sets them on Linux (termios2, any speed).
    pub fn settings(&self) -> Settings {
        use std::os::fd::AsRawFd;
        let fd = self._slave.as_ref().expect("a pty").as_raw_fd();
        // SAFETY: termios2 is plain data; TCGETS2 fills it.
        let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
        // SAFETY: TCGETS2 writes one termios2 through the pointer, which points at one.
        let rc = unsafe { libc::ioctl(fd, libc::TCGETS2, &mut t) };
        assert_eq!(rc, 0, "TCGETS2: {}", std::io::Error::last_os_error());
        Settings { iflag: t.c_iflag, oflag: t.c_oflag, cflag: t.c_cflag, lflag: t.c_lflag, speed: t.c_ospeed }
    }

    /// Whether a pty is in exclusive mode (TIOCEXCL: no further opens but by root).
    pub fn exclusive(&self) -> bool {
        use std::os::fd::AsRawFd;
        let fd = self._slave.as_ref().expect("a pty").as_raw_fd();
        let mut on: libc::c_int = 0;
        // SAFETY: TIOCGEXCL writes one int through the pointer, which points at one.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGEXCL, &mut on) };
        assert_eq!(rc, 0, "TIOCGEXCL: {}", std::io::Error::last_os_error());
        on != 0
    }

    /// Lets the daemon open a pty again after it closed it (a reset). The daemon opens ports in
    /// exclusive mode (TIOCEXCL), and a pty keeps that mode while any side is open, as this
    /// line's slave is: only root could open it again. A no-op for a TCP line.
    pub fn release_exclusive(&self) {
        use std::os::fd::AsRawFd;
        if let Some(slave) = &self._slave {
            // SAFETY: TIOCNXCL takes no argument.
            unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCNXCL) };
        }
    }

    /// Why the line closed, if it did.
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// Closes the line (for a pty: both sides, so the device goes away).
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.shut();
    }
}

fn read_loop(fd: &OwnedFd, tx: &mpsc::Sender<Read>, stop: &AtomicBool) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(20u8)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Read::Closed(format!("poll: {e}")));
                return;
            }
        }
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) => {
                let _ = tx.send(Read::Closed("end of stream".into()));
                return;
            }
            Ok(n) => {
                if tx.send(Read::Bytes(buf[..n].to_vec(), Instant::now())).is_err() {
                    return;
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(e) => {
                let _ = tx.send(Read::Closed(format!("read: {e}")));
                return;
            }
        }
    }
}

// ---- pseudo-terminals ----

/// A new pseudo-terminal whose slave is reached at `link` (a symlink, as udev's
/// `/dev/serial/by-id/...` names are): the daemon opens `link`, the simulator holds the master.
/// Opened with O_CLOEXEC (`posix_openpt` rather than `openpty`, which cannot): the daemons and
/// CLIs other tests spawn meanwhile must not inherit either side, or closing the master here
/// would not hang the line up.
pub fn pty_at(link: &Path) -> (Line, PathBuf) {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).expect("posix_openpt");
    nix::pty::grantpt(&master).expect("grantpt");
    nix::pty::unlockpt(&master).expect("unlockpt");
    let name = PathBuf::from(nix::pty::ptsname_r(&master).expect("ptsname_r"));
    let slave = nix::fcntl::open(&name, flags, nix::sys::stat::Mode::empty()).expect("open the pty's slave");
    // Replace the link in one step (a daemon opening it meanwhile sees the old or the new).
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename the symlink");
    (Line::new(OwnedFd::from(master), Some(slave)), name)
}

// ---- the instrument ----

/// The host's answer to what the instrument sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Ack,
    Nak,
    Eot,
    Enq,
    Other(u8),
    Quiet,
    Closed,
}

impl Reply {
    fn of(next: Next) -> (Reply, Option<Instant>) {
        match next {
            Next::Byte(ACK, at) => (Reply::Ack, Some(at)),
            Next::Byte(NAK, at) => (Reply::Nak, Some(at)),
            Next::Byte(EOT, at) => (Reply::Eot, Some(at)),
            Next::Byte(ENQ, at) => (Reply::Enq, Some(at)),
            Next::Byte(b, at) => (Reply::Other(b), Some(at)),
            Next::Quiet => (Reply::Quiet, None),
            Next::Closed => (Reply::Closed, None),
        }
    }
}

/// How one session as sender went.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    /// For each frame sent (retransmissions included): from its last byte written to the reply
    /// read.
    pub reply_times: Vec<Duration>,
    pub naks: usize,
    pub contentions: usize,
}

/// A session received from the host.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub frames: Vec<Frame>,
    /// The frames' text run together: the records, each ending CR.
    pub records: Vec<u8>,
}

/// An analyzer on a line.
pub struct Instrument {
    pub line: Line,
    /// How long it waits for the host's reply (LIS01-A2: 15 s; longer here, for slow machines).
    pub reply_timeout: Duration,
    /// How long after a NAK to its ENQ (the host is busy) it bids again (LIS01-A2: 10 s).
    pub busy_wait: Duration,
}

impl Instrument {
    pub fn new(line: Line) -> Instrument {
        Instrument { line, reply_timeout: Duration::from_secs(30), busy_wait: Duration::from_secs(10) }
    }

    /// Writes `bytes` and reads the host's one-byte reply.
    pub fn send(&mut self, bytes: &[u8]) -> Reply {
        self.send_timed(bytes).0
    }

    /// Writes `bytes`; the reply and how long after the last byte it was read.
    pub fn send_timed(&mut self, bytes: &[u8]) -> (Reply, Option<Duration>) {
        let written = self.line.write(bytes);
        let (reply, at) = Reply::of(self.line.next(self.reply_timeout));
        (reply, at.map(|at| at.saturating_duration_since(written)))
    }

    /// ENQ until the host answers ACK: on contention (the host's ENQ) the instrument goes
    /// first, bidding again 1 s later; on NAK (busy) it waits `busy_wait`.
    pub fn establish(&mut self, sent: &mut Sent) -> Result<(), String> {
        for _ in 0..6 {
            match self.send(&[ENQ]) {
                Reply::Ack => return Ok(()),
                Reply::Enq => {
                    sent.contentions += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Reply::Nak => std::thread::sleep(self.busy_wait),
                other => return Err(format!("ENQ answered {other:?}")),
            }
        }
        Err("ENQ refused six times".into())
    }

    /// Sends one frame until it is ACKed (again on NAK, six times at most).
    pub fn send_frame(&mut self, frame: &[u8], sent: &mut Sent) -> Result<(), String> {
        for _ in 0..6 {
            let (reply, time) = self.send_timed(frame);
            if let Some(t) = time {
                sent.reply_times.push(t);
            }
            match reply {
                Reply::Ack => return Ok(()),
                Reply::Nak => sent.naks += 1,
                other => return Err(format!("frame {:?} answered {other:?}", frame.get(1).map(|&b| b as char))),
            }
        }
        Err("a frame NAKed six times".into())
    }

    /// A whole session: ENQ, the frames, EOT.
    pub fn send_session(&mut self, frames: &[Vec<u8>]) -> Result<Sent, String> {
        let mut sent = Sent::default();
        self.establish(&mut sent)?;
        for f in frames {
            self.send_frame(f, &mut sent)?;
        }
        self.line.write(&[EOT]);
        Ok(sent)
    }

    /// Like [`Instrument::send_session`], panicking with what went wrong.
    pub fn session(&mut self, frames: &[Vec<u8>]) -> Sent {
        self.send_session(frames).unwrap_or_else(|e| panic!("session: {e}"))
    }

    /// Plays a `.raw` capture as the instrument that made it.
    pub fn play(&mut self, wire: &[u8]) -> Sent {
        self.session(&frames_of(wire))
    }

    /// Takes the host's next session: waits `within` for its ENQ, checks and ACKs each frame,
    /// ends at EOT.
    pub fn receive_session(&mut self, within: Duration) -> Result<Received, String> {
        match self.line.next(within) {
            Next::Byte(ENQ, _) => {}
            other => return Err(format!("waiting for the host's ENQ: {other:?}")),
        }
        self.line.write(&[ACK]);
        self.receive_frames()
    }

    /// The rest of a session whose ENQ was answered: frames, each checked and ACKed, to EOT.
    pub fn receive_frames(&mut self) -> Result<Received, String> {
        let mut got = Received::default();
        let mut expected = 1u8;
        loop {
            match self.line.next(self.reply_timeout) {
                Next::Byte(EOT, _) => return Ok(got),
                Next::Byte(STX, _) => {
                    let mut raw = vec![STX];
                    loop {
                        match self.line.next(self.reply_timeout) {
                            Next::Byte(b, _) => {
                                raw.push(b);
                                if b == LF {
                                    break;
                                }
                            }
                            other => return Err(format!("inside a frame: {other:?} after {raw:02X?}")),
                        }
                    }
                    let f = parse_frame(&raw)?;
                    if f.number != expected {
                        return Err(format!("frame number {}, {expected} expected", f.number));
                    }
                    expected = (expected + 1) % 8;
                    got.records.extend_from_slice(&f.text);
                    got.frames.push(f);
                    self.line.write(&[ACK]);
                }
                other => return Err(format!("waiting for a frame or EOT: {other:?}")),
            }
        }
    }
}
