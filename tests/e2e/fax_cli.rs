//! The fax tools against the real binary: `fax show` and `fax export` on a fax a running daemon
//! took from a HylaFAX spool, a file destination writing faxes as PDF (and HL7 as it is), and
//! `probe --modem` against a scripted modem on a real pseudo-terminal, and against silence.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use crate::astm_sim::{Line, Next, pty_at};
use crate::support::*;

const G3: &[u8] = include_bytes!("../data/fax/g3test.g3");
const TSI: &str = "+1 507 555 0199";

/// A two-page TIFF-F as a fax server would leave it: the sample page twice, the TSI in
/// ImageDescription.
fn fax_tiff() -> Vec<u8> {
    use outpost::fax::document::{FaxDocument, Page};
    use outpost::fax::g3::{BitOrder, Resolution, reverse_bits};
    FaxDocument {
        pages: vec![
            Page::new(G3.to_vec(), BitOrder::MsbFirst, 1728, Resolution::Fine),
            Page::new(reverse_bits(G3), BitOrder::LsbFirst, 1728, Resolution::Fine),
        ],
        tsi: Some(TSI.into()),
        complete: true,
        ..FaxDocument::default()
    }
    .to_tiff()
}

const CONFIG: &str = r#"
[[source]]
name = "faxin"
kind = "fax-spool"
dir = "{dir}/recvq"
format = "hylafax"
settle = "100ms"
rescan = "1s"

[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "docs"
kind = "file"
dir = "{dir}/docs"
fax_format = "pdf"

[[destination]]
name = "archive"
kind = "file"
dir = "{dir}/archive"

[[route]]
name = "faxes"
from = ["faxin"]
to = ["docs", "archive"]

[[route]]
name = "ehr"
from = ["ehr"]
to = ["docs"]
"#;

/// A daemon with a fax taken from its spool and delivered, an HL7 message delivered, and
/// their ids.
fn daemon_with_a_fax() -> (Daemon, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("recvq")).unwrap();
    let daemon = Daemon::start_in(dir, CONFIG);
    // Written under another name, then renamed: HylaFAX's file appears whole.
    let tmp = daemon.path("recvq/.incoming");
    std::fs::write(&tmp, fax_tiff()).unwrap();
    std::fs::rename(&tmp, daemon.path("recvq/fax00001.tif")).unwrap();
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("FAXCLI1"))), "AA");
    let ids = wait_for("both items delivered", DEADLINE, || {
        let items = daemon.items();
        let id_of =
            |kind: &str| items.iter().find(|i| i["kind"] == kind).and_then(|i| i["id"].as_str().map(String::from));
        let fax = id_of("fax")?;
        let hl7 = id_of("hl7v2")?;
        let all_delivered = items.iter().all(|i| {
            i["deliveries"].as_array().is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["state"] == "delivered"))
        });
        all_delivered.then_some((fax, hl7))
    });
    (daemon, ids.0, ids.1)
}

#[test]
fn fax_show_summarises_a_received_fax_without_its_content() {
    let (daemon, fax, hl7) = daemon_with_a_fax();
    let out = daemon.cli(&["fax", "show", &fax]);
    assert_success(&out);
    let text = stdout_of(&out);
    for expected in [
        format!("id           {fax}"),
        "source       faxin".into(),
        format!("tsi          {TSI}"),
        "call         complete".into(),
        "file         fax00001.tif".into(),
        "pages        2, 322 bad line(s)".into(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in:\n{text}");
    }
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|f| f.parse::<u32>().is_ok()))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[0][..7], ["1", "1728", "1101", "fine", "161", "msb-first", "T.4"], "{text}");
    assert_eq!(rows[1][5], "lsb-first", "{text}");

    let out = daemon.cli(&["fax", "show", &fax, "--json"]);
    assert_success(&out);
    let v: Value = serde_json::from_str(&stdout_of(&out)).expect("JSON");
    assert_eq!((v["id"].as_str(), v["source"].as_str()), (Some(fax.as_str()), Some("faxin")));
    assert_eq!(v["pages"].as_array().map(Vec::len), Some(2));
    assert_eq!((v["bad_lines"].as_u64(), v["complete"].as_bool()), (Some(322), Some(true)));
    assert_eq!(v["pages"][1]["bit_order"], "lsb-first");
    assert!(v.get("body_b64").is_none(), "no page data in the summary");

    // Not a fax: refused, naming what it is and where to look.
    let out = daemon.cli(&["fax", "show", &hl7]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("not a fax but a hl7v2 item (ADT^A01") && err.contains("outpost queue show"), "{err}");
    assert!(stdout_of(&out).is_empty());
    // No such item: the daemon's refusal.
    let out = daemon.cli(&["fax", "show", "01NOSUCHITEM0000000000000"]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr_of(&out));
}

#[test]
fn fax_export_writes_the_stored_tiff_or_a_pdf_privately() {
    let (daemon, fax, hl7) = daemon_with_a_fax();
    let out_dir = tempfile::tempdir().unwrap();
    let tif = out_dir.path().join("fax.tif");
    let tif_text = tif.display().to_string();
    let out = daemon.cli(&["fax", "export", &fax, &tif_text]);
    assert_success(&out);
    let said = stdout_of(&out);
    let stored = stored_body(&daemon, &fax);
    assert!(said.contains(&format!("wrote {tif_text} ({} bytes", stored.len())), "{said}");
    let exported = std::fs::read(&tif).unwrap();
    assert!(exported == stored, "the export is the stored body, byte for byte");
    assert!(exported == fax_tiff(), "and the spool's file");
    assert_eq!(mode(&tif), 0o600);

    // An existing file is kept unless --force.
    let out = daemon.cli(&["fax", "export", &fax, &tif_text, "--pdf"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr_of(&out).contains("--force"), "{}", stderr_of(&out));
    assert!(std::fs::read(&tif).unwrap() == stored, "left alone");
    std::fs::set_permissions(&tif, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = daemon.cli(&["fax", "export", &fax, &tif_text, "--pdf", "--force"]);
    assert_success(&out);
    assert!(stdout_of(&out).contains("a PDF of 2 page(s)"), "{}", stdout_of(&out));
    assert!(std::fs::read(&tif).unwrap().starts_with(b"%PDF-"));
    assert_eq!(mode(&tif), 0o600, "a replaced file is private too");
    qpdf_check(&tif);

    let out = daemon.cli(&["fax", "export", &hl7, &out_dir.path().join("msg.tif").display().to_string()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(!out_dir.path().join("msg.tif").exists());
}

#[test]
fn a_pdf_file_destination_writes_faxes_as_pdf_and_other_items_as_they_are() {
    let (daemon, fax, hl7) = daemon_with_a_fax();
    let pdf = daemon.path(&format!("docs/{fax}.pdf"));
    let bytes = std::fs::read(&pdf).unwrap_or_else(|e| panic!("{}: {e}", pdf.display()));
    assert!(bytes.starts_with(b"%PDF-1.4"));
    qpdf_check(&pdf);
    assert!(!String::from_utf8_lossy(&bytes).contains("555"), "no TSI in the PDF");
    assert!(!daemon.path(&format!("docs/{fax}.tif")).exists());
    // The HL7 message in the same destination, as received.
    let msg = std::fs::read(daemon.path(&format!("docs/{hl7}.hl7"))).unwrap();
    assert!(msg.starts_with(b"MSH|"));
    // The TIFF destination, and the journal, keep the TIFF.
    let tif = std::fs::read(daemon.path(&format!("archive/{fax}.tif"))).unwrap();
    assert!(tif == stored_body(&daemon, &fax));
    assert!(tif == fax_tiff());
}

fn stored_body(daemon: &Daemon, id: &str) -> Vec<u8> {
    let shown = daemon.cli_json(&["queue", "show", id, "--body", "--json"]);
    let b64 = shown["body_b64"].as_str().expect("body_b64");
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// qpdf (installed by scripts/test) finds no problem in the file.
fn qpdf_check(path: &Path) {
    let out =
        std::process::Command::new("qpdf").arg("--check").arg(path).output().expect("qpdf (scripts/test installs it)");
    assert!(out.status.success(), "qpdf --check {}:\n{}{}", path.display(), stdout_of(&out), stderr_of(&out));
}

// ---- probe --modem ----

/// A modem on the master side of a pty: echoes each command line, answers from `replies`
/// (`ERROR` for anything else), and records the commands, until `ATZ` or silence.
fn scripted_modem(
    mut line: Line,
    replies: HashMap<&'static str, &'static str>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut commands = Vec::new();
        let mut current = Vec::new();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            match line.next(Duration::from_secs(5)) {
                Next::Byte(b'\r', _) => {
                    let command = String::from_utf8_lossy(&current).trim().to_string();
                    current.clear();
                    let reply = replies.get(command.as_str()).copied().unwrap_or("ERROR");
                    line.write(format!("{command}\r\r\n{}\r\n", reply.replace('\n', "\r\n")).as_bytes());
                    commands.push(command.clone());
                    if command == "ATZ" {
                        break;
                    }
                }
                Next::Byte(b'\n', _) => {}
                Next::Byte(b, _) => current.push(b),
                Next::Quiet if !commands.is_empty() => break,
                Next::Quiet => {}
                Next::Closed => break,
            }
        }
        commands
    })
}

#[test]
fn probe_modem_identifies_a_class_2_modem_and_leaves_it_on_hook() {
    if serial_ports_unavailable("probe_modem_identifies_a_class_2_modem_and_leaves_it_on_hook") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    let (line, _) = pty_at(&link);
    let replies = HashMap::from([
        ("AT", "OK"),
        ("ATI", "56000\n\nOK"),
        ("ATI3", "CX93001-EIS_V0.2013-V92\n\nOK"),
        ("AT+FCLASS=?", "0,1,1.0,2,8\n\nOK"),
        ("AT+FCLASS=2", "OK"),
        ("AT+FMFR?", "CONEXANT\n\nOK"),
        ("AT+FMDL?", "CX93001\n\nOK"),
        ("AT+FREV?", "V0.2013\n\nOK"),
        ("AT+FCLASS=0", "OK"),
        ("ATZ", "OK"),
    ]);
    let modem = scripted_modem(line, replies);
    let link_text = link.display().to_string();
    let out = output_within(outpost_command(&["probe", "--modem", &link_text]), DEADLINE);
    let commands = modem.join().unwrap();
    let (text, err) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{text}\nstderr:\n{err}");
    assert_eq!(
        commands,
        ["AT", "ATI", "ATI3", "AT+FCLASS=?", "AT+FCLASS=2", "AT+FMFR?", "AT+FMDL?", "AT+FREV?", "AT+FCLASS=0", "ATZ"]
    );
    assert!(!commands.iter().any(|c| c.starts_with("ATA") || c.starts_with("ATD")), "never off-hook");
    for expected in [
        "manufacturer  CONEXANT",
        "model         CX93001",
        "revision      V0.2013",
        "classes       0, 1, 1.0, 2, 8",
        "identity      ATI3: CX93001-EIS_V0.2013-V92",
        "fax receive   yes",
        "kind = \"fax-modem\"",
        "class = \"2\"",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    assert!(text.contains(&format!("serial = {{ port = \"{link_text}\" }}")), "{text}");
    assert!(err.contains("WRITES"), "the tech is told it writes: {err}");
}

#[test]
fn probe_modem_on_silence_says_no_modem_answered() {
    if serial_ports_unavailable("probe_modem_on_silence_says_no_modem_answered") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("not-a-modem");
    let (mut line, _) = pty_at(&link);
    let link_text = link.display().to_string();
    let out = output_within(outpost_command(&["probe", "--modem", &link_text, "--json"]), DEADLINE);
    assert_eq!(out.status.code(), Some(75), "stderr:\n{}", stderr_of(&out));
    let v: Value = serde_json::from_str(&stdout_of(&out)).expect("JSON");
    assert_eq!(v["baud"], Value::Null);
    assert_eq!(v["tried"], serde_json::json!([115200, 57600, 38400, 19200, 9600]));
    assert!(v["advice"][0].as_str().unwrap().contains("no modem answered"), "{v}");
    // What it wrote: AT at each rate, nothing else.
    let written = String::from_utf8_lossy(&line.collect_for(Duration::from_millis(200))).into_owned();
    assert_eq!(written.matches("AT\r").count(), 5, "{written:?}");
    assert!(!written.contains("ATA") && !written.contains("ATD"), "{written:?}");

    let out = output_within(outpost_command(&["probe", "--modem", "/dev/serial/by-id/usb-no-such-modem"]), DEADLINE);
    assert_eq!(out.status.code(), Some(66), "{}", stderr_of(&out));
}
