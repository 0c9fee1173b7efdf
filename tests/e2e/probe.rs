//! `outpost probe` against the real binary: an instrument simulator on a real pseudo-terminal
//! (`astm_sim.rs`) playing published captures, an HL7 sender over TCP, a device speaking
//! another protocol, silence, a port that does not exist, and a port the daemon holds. A pty
//! delivers bytes intact at any line setting, so these prove the IO path and the verdict; baud
//! and parity detection are the analysis' unit tests (`src/probe/analyze/tests.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::astm_sim::*;
use crate::support::*;

const PENTRA: &[u8] = include_bytes!("../data/astm/pentra-xlr-frames.txt");
const MINI_VIDAS: &[u8] = include_bytes!("../data/astm/mini-vidas-not-astm.txt");

/// A running `outpost probe`, its stderr (progress) read line by line as it comes.
struct Probe {
    child: Child,
    progress: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<()>,
}

impl Probe {
    fn start(args: &[&str]) -> Probe {
        let mut child = outpost_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn outpost probe");
        let mut out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let (tx, progress) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Probe { child, progress, seen: Vec::new(), stdout, stderr }
    }

    /// Waits for a progress line containing `what`; returns it.
    fn wait_progress(&mut self, what: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no progress line with {what:?} within {DEADLINE:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits for the probe to exit by itself: its status, stdout and all of stderr.
    fn finish(mut self) -> (ExitStatus, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("outpost probe still running after {DEADLINE:?}; stderr so far:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.join().expect("stdout reader");
        let _ = self.stderr.join();
        self.seen.extend(self.progress.try_iter());
        (status, stdout, self.seen.join("\n"))
    }
}

#[test]
fn probe_names_an_astm_analyzer_on_a_serial_port_and_never_writes_to_it() {
    if serial_ports_unavailable("probe_names_an_astm_analyzer_on_a_serial_port_and_never_writes_to_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("analyzer");
    let (mut line, _) = pty_at(&link);
    let link_text = link.display().to_string();
    let mut probe = Probe::start(&["probe", &link_text, "--dwell", "60s", "--json"]);
    // The port is opened and its input cleared before the first setting listens: send after.
    probe.wait_progress("9600 8N1: listening");
    let frames = frames_from_lines(PENTRA);
    line.write(&[ENQ]);
    for frame in &frames {
        line.write(frame);
    }
    line.write(&[EOT]);
    let (status, stdout, stderr) = probe.finish();
    assert_eq!(status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    let v = &report["verdict"];
    assert_eq!(v["outcome"], "found");
    assert_eq!(v["protocol"], "astm");
    assert_eq!(v["instrument"], "ABX");
    assert_eq!(v["profile"], "horiba-pentra-xlr");
    assert_eq!(v["line"], "9600 8N1", "a pty reads right at the first setting: the cycle stops there");
    assert_eq!(report["tried"].as_array().unwrap().len(), 1);
    let config = v["config"].as_str().unwrap();
    assert!(config.contains(&format!("serial = {{ port = \"{link_text}\", baud = 9600 }}")), "{config}");
    assert!(config.contains("profile = \"horiba-pentra-xlr\""), "{config}");
    assert_eq!(report["tried"][0]["hearing"]["astm"]["valid_frames"], frames.len());
    // What to do while it listens, on stderr.
    assert!(stderr.contains("send results"), "{stderr}");
    // No patient data anywhere (the capture holds a name and a birth date in P).
    for phi in ["Mohale", "Rita", "19771201", "S1234"] {
        assert!(!stdout.contains(phi) && !stderr.contains(phi), "{phi} printed");
    }
    // Passive: not one byte reached the instrument (no ACK to its ENQ, none to its frames).
    assert_eq!(line.collect_for(Duration::from_millis(200)), Vec::<u8>::new());
}

#[test]
fn probe_hears_hl7_over_mllp_from_an_analyzer_that_connects() {
    let mut probe = Probe::start(&["probe", "127.0.0.1:0", "--for", "60s"]);
    let listening = probe.wait_progress("listening on ");
    let addr = listening.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let mut sender = TcpStream::connect(&addr).expect("connect to the probe");
    let message = std::fs::read(sample("lab-oru-r01.hl7")).unwrap();
    sender.write_all(&outpost::mllp::encode(&message)).unwrap();
    sender.shutdown(std::net::Shutdown::Write).unwrap();
    // Nothing comes back (no ACK): the probe closes when it is done.
    sender.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut answer = Vec::new();
    let _ = sender.read_to_end(&mut answer);
    assert!(answer.is_empty(), "the probe answered {} byte(s)", answer.len());
    let (status, stdout, stderr) = probe.finish();
    assert_eq!(status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("verdict: HL7 v2 over MLLP"), "{stdout}");
    assert!(stdout.contains("kind = \"mllp\""), "{stdout}");
    assert!(stdout.contains(&format!("listen = \"{addr}\"")), "{stdout}");
    assert!(stdout.contains("instrument: ") && stdout.contains("(MSH-3 / MSH-4)"), "{stdout}");
    // Only the header's sender: no PID content.
    let text = String::from_utf8_lossy(&message);
    let pid = text.split('\r').find(|s| s.starts_with("PID")).unwrap();
    let family = pid.split('|').nth(5).unwrap().split('^').next().unwrap();
    assert!(!stdout.contains(family), "{family} printed");
}

#[test]
fn probe_of_a_device_speaking_another_protocol_says_it_is_not_astm() {
    // A device (the mini VIDAS capture) that the probe connects to, which sends and hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let device = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(MINI_VIDAS).unwrap();
    });
    let out = output_within(outpost_command(&["probe", "--connect", &addr, "--for", "60s"]), DEADLINE);
    device.join().unwrap();
    let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(65), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("verdict: nothing valid was heard"), "{stdout}");
    assert!(stdout.contains("mini VIDAS"), "the refusal names the likely device: {stdout}");
    assert!(!stdout.contains("[[source]]"), "no config for what outpost cannot read: {stdout}");
    assert!(!stdout.contains("Anti-HBc") && !stdout.contains("Positif"), "{stdout}");
}

#[test]
fn probe_of_a_silent_port_says_what_to_try() {
    if serial_ports_unavailable("probe_of_a_silent_port_says_what_to_try") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("quiet");
    let (mut line, _) = pty_at(&link);
    let out = output_within(
        outpost_command(&["probe", &link.display().to_string(), "--baud", "9600", "--line", "7E1", "--for", "1s"]),
        DEADLINE,
    );
    let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(75), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("9600 7E1") && stdout.contains("verdict: nothing was heard"), "{stdout}");
    assert!(stdout.contains("null-modem"), "{stdout}");
    assert!(stdout.contains("--for"), "it says how to listen longer: {stdout}");
    assert_eq!(line.collect_for(Duration::from_millis(100)), Vec::<u8>::new());
}

#[test]
fn probe_of_a_port_that_does_not_exist_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("usb-nothing-here");
    let out = output_within(outpost_command(&["probe", &missing.display().to_string()]), DEADLINE);
    assert_eq!(out.status.code(), Some(66), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("no such port") && err.contains("outpost ports"), "{err}");
    assert!(stdout_of(&out).is_empty());
}

#[test]
fn probe_refuses_a_port_the_daemon_holds_and_names_the_source() {
    if serial_ports_unavailable("probe_refuses_a_port_the_daemon_holds_and_names_the_source") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("analyzer");
    let (_line, _) = pty_at(&link);
    let config = format!(
        "[[source]]\nname = \"hematology\"\nkind = \"astm\"\nserial = {{ port = \"{}\", baud = 9600 }}\n\n\
         [[destination]]\nname = \"archive\"\nkind = \"file\"\ndir = \"{{dir}}/archive\"\n\n\
         [[route]]\nname = \"lab\"\nfrom = [\"hematology\"]\nto = [\"archive\"]\n",
        link.display()
    );
    let daemon = Daemon::start_in(dir, &config);
    wait_for("the lab link to hold its port", DEADLINE, || {
        let s = daemon.status();
        let src = s["sources"].as_array()?.iter().find(|x| x["name"] == "hematology")?.clone();
        (src["state"] == "up").then_some(())
    });
    let mut cmd = outpost_command(&["probe", &link.display().to_string(), "--dwell", "1s"]);
    cmd.arg("--socket").arg(daemon.socket());
    let out = output_within(cmd, DEADLINE);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("in use by source \"hematology\" of the running outpost"), "{err}");
    assert!(err.contains("stop the source first"), "{err}");
}

#[test]
fn probe_moves_on_from_a_setting_that_hears_noise_and_stops_at_the_one_that_reads() {
    if serial_ports_unavailable("probe_moves_on_from_a_setting_that_hears_noise_and_stops_at_the_one_that_reads") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("analyzer");
    let (mut line, _) = pty_at(&link);
    let mut probe = Probe::start(&["probe", &link.display().to_string(), "--dwell", "4s", "--json"]);
    // What a wrong baud rate makes of a transmission (a pty cannot garble: the simulator does).
    probe.wait_progress("9600 8N1: listening");
    let mut x: u32 = 0x9E37_79B9;
    let noise: Vec<u8> = (0..600)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as u8) | 0x80
        })
        .collect();
    line.write(&noise);
    probe.wait_progress("19200 8N1: listening");
    line.write(&[ENQ]);
    for frame in frames_from_lines(PENTRA) {
        line.write(&frame);
    }
    line.write(&[EOT]);
    let (status, stdout, stderr) = probe.finish();
    assert_eq!(status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    let tried = report["tried"].as_array().unwrap();
    assert_eq!(tried.len(), 2, "stops at the setting that read frames: {stdout}");
    assert_eq!(tried[0]["setting"], "9600 8N1");
    assert_ne!(tried[0]["hearing"]["protocol"], "astm");
    assert_eq!(report["verdict"]["line"], "19200 8N1");
    assert!(report["verdict"]["config"].as_str().unwrap().contains("baud = 19200"));
    assert_eq!(line.collect_for(Duration::from_millis(100)), Vec::<u8>::new());
}
