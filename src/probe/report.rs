//! From what each setting heard to the verdict a tech acts on: the best setting, the protocol,
//! the instrument's id and the built-in profile it names, the config to paste, and what to do
//! when nothing was found. Pure: the listener hands over [`Tried`] settings, this renders.
//!
//! Nothing here prints what the instrument sent beyond its id and protocol facts (counts,
//! versions, line signs): no patient data, no results.

use serde::Serialize;

use super::analyze::{Hearing, ParityWord, Protocol};
use crate::instrument::Profile;
use crate::serial::Settings;
use crate::serial_line::{DataBits, Parity, StopBits};

/// Something heard that outpost can be configured for.
pub const FOUND: u8 = 0;
/// Bytes were heard, but no setting read ASTM or HL7 in them.
pub const EX_NOTHING_VALID: u8 = crate::cli::EX_DATAERR;
/// Nothing at all was heard (sysexits' EX_TEMPFAIL: try again while the instrument sends).
pub const EX_SILENT: u8 = crate::cli::EX_TEMPFAIL;

/// Where the probe listened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Serial(std::path::PathBuf),
    /// The instrument connects to us at this address.
    TcpListen(String),
    /// We connect to the instrument at this address.
    TcpConnect(String),
}

impl Place {
    fn transport(&self) -> &'static str {
        match self {
            Place::Serial(_) => "serial",
            Place::TcpListen(_) => "tcp_listen",
            Place::TcpConnect(_) => "tcp_connect",
        }
    }

    fn shown(&self) -> String {
        match self {
            Place::Serial(p) => p.display().to_string(),
            Place::TcpListen(a) | Place::TcpConnect(a) => a.clone(),
        }
    }
}

/// One setting listened at, and what it heard.
#[derive(Debug, Clone, Serialize)]
pub struct Tried {
    /// `9600 8N1`, or `tcp` for a TCP link.
    pub setting: String,
    #[serde(skip)]
    pub serial: Option<Settings>,
    /// How long it listened, in ms.
    pub listened_ms: u64,
    pub hearing: Hearing,
}

/// What `outpost probe` concluded.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub transport: &'static str,
    /// The port or the address.
    pub at: String,
    pub tried: Vec<Tried>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A protocol outpost can be set up for.
    Found,
    /// Bytes, but nothing valid at any setting.
    NothingValid,
    /// Not a byte.
    Silent,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub protocol: Protocol,
    /// The setting that heard best (serial), as a tech writes it: `9600 7E1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baud: Option<u32>,
    /// ASTM H.5, or HL7 MSH-3 / MSH-4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
    /// The built-in profile whose `senders` the instrument id matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A `[[source]]` to paste into the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// What to do next, in order.
    pub advice: Vec<String>,
}

impl Report {
    /// The exit code: [`FOUND`], [`EX_NOTHING_VALID`] or [`EX_SILENT`].
    pub fn exit_code(&self) -> u8 {
        match self.verdict.outcome {
            Outcome::Found => FOUND,
            Outcome::NothingValid => EX_NOTHING_VALID,
            Outcome::Silent => EX_SILENT,
        }
    }
}

/// The first setting with the highest score (the cycle's order breaks ties: the commoner one).
pub fn best(tried: &[Tried]) -> Option<&Tried> {
    let mut best: Option<&Tried> = None;
    for t in tried {
        if best.is_none_or(|b| t.hearing.score > b.hearing.score) {
            best = Some(t);
        }
    }
    best
}

/// The built-in profile whose instrument names itself `h5` in its H record.
pub fn profile_for(h5: &str) -> Option<Profile> {
    Profile::names().into_iter().filter_map(|n| Profile::builtin(n).ok()).find(|p| p.names_sender(h5))
}

/// Concludes from what each setting heard.
pub fn conclude(place: &Place, tried: Vec<Tried>) -> Report {
    let verdict = match best(&tried) {
        Some(b) => verdict(place, b, &tried),
        None => silent(place),
    };
    Report { transport: place.transport(), at: place.shown(), tried, verdict }
}

fn verdict(place: &Place, best: &Tried, tried: &[Tried]) -> Verdict {
    let h = &best.hearing;
    let outcome = if h.is_found() {
        Outcome::Found
    } else if tried.iter().all(|t| t.hearing.bytes == 0) {
        return silent(place);
    } else {
        Outcome::NothingValid
    };
    let serial = best.serial.as_ref().map(|s| line_heard(s, h.seven_bits));
    let astm = matches!(h.protocol, Protocol::Astm | Protocol::AstmBidding);
    let profile = if astm { h.instrument.as_deref().and_then(profile_for) } else { None };
    let mut advice = Vec::new();
    let config = match outcome {
        Outcome::Found => source_config(place, serial.as_ref(), h, profile.as_ref(), &mut advice),
        _ => None,
    };
    if outcome == Outcome::Found {
        found_advice(h, serial.as_ref(), profile.as_ref(), &mut advice);
    } else {
        nothing_valid_advice(place, tried, &mut advice);
    }
    Verdict {
        outcome,
        protocol: h.protocol,
        line: serial.as_ref().map(Settings::line),
        baud: serial.as_ref().map(|s| s.baud),
        instrument: h.instrument.clone(),
        profile: profile.map(|p| p.id),
        config,
        advice,
    }
}

fn silent(place: &Place) -> Verdict {
    let mut advice = vec![
        "nothing was heard. Make the analyzer send while outpost probe listens: press its 'send results' / \
         'transmit' / 'host communication' button, or send a finished result to the host again"
            .to_string(),
    ];
    match place {
        Place::Serial(_) => {
            advice.push(
                "check the cable: analyzer and gateway are both DTE, so it needs a null-modem cable or adapter \
                 (TX to RX); check that the analyzer's host (LIS) interface is switched on and set to this port"
                    .into(),
            );
            advice.push(
                "an analyzer that sends rarely: pin the setting and listen longer, e.g. --baud 9600 --line 8N1 \
                 --for 10m"
                    .into(),
            );
        }
        Place::TcpListen(a) => advice.push(format!(
            "no instrument connected to {a} or it sent nothing: check the analyzer's host address and port, and \
             the gateway's firewall"
        )),
        Place::TcpConnect(a) => advice.push(format!(
            "the instrument at {a} sent nothing: check it is the instrument's host port, and that the \
             instrument sends to a host that connects to it"
        )),
    }
    Verdict {
        outcome: Outcome::Silent,
        protocol: Protocol::Silence,
        line: None,
        baud: None,
        instrument: None,
        profile: None,
        config: None,
        advice,
    }
}

/// The setting that heard, with 7 data bits and the parity when they read it.
fn line_heard(s: &Settings, seven: Option<ParityWord>) -> Settings {
    let mut s = s.clone();
    if let Some(p) = seven {
        s.data_bits = DataBits::Seven;
        s.parity = p.into();
    }
    s
}

fn source_config(
    place: &Place,
    serial: Option<&Settings>,
    h: &Hearing,
    profile: Option<&Profile>,
    advice: &mut Vec<String>,
) -> Option<String> {
    let mut c = String::from("[[source]]\nname = \"analyzer\"\n");
    match h.protocol {
        Protocol::Astm | Protocol::AstmBidding => {
            c.push_str("kind = \"astm\"\n");
            if let Some(p) = profile {
                c.push_str(&format!("profile = \"{}\"\n", p.id));
            }
            match place {
                Place::Serial(_) => c.push_str(&format!("serial = {}\n", serial_table(serial?))),
                Place::TcpListen(a) => c.push_str(&format!("tcp_listen = \"{a}\"\n")),
                Place::TcpConnect(a) => c.push_str(&format!("tcp_connect = \"{a}\"\n")),
            }
            if !h.astm.quirks.is_empty() {
                let q: Vec<String> = h.astm.quirks.iter().map(|q| format!("\"{q}\"")).collect();
                c.push_str(&format!("quirks = [{}]\n", q.join(", ")));
            }
            Some(c)
        }
        Protocol::Hl7Mllp => match place {
            Place::TcpListen(a) => {
                c.push_str(&format!("kind = \"mllp\"\nlisten = \"{a}\"\n"));
                Some(c)
            }
            Place::TcpConnect(_) => {
                advice.push(
                    "outpost's HL7 (mllp) sources listen: set the instrument to connect to this gateway (e.g. port \
                     2575) instead of waiting for a connection"
                        .into(),
                );
                None
            }
            Place::Serial(_) => {
                advice.push(
                    "outpost takes HL7 over TCP (MLLP), not on a serial port: set the instrument to send HL7 over \
                     its network port, or to ASTM on this serial port"
                        .into(),
                );
                None
            }
        },
        Protocol::Hl7 => {
            advice.push(
                "HL7 without MLLP framing (no 0x0B … 0x1C 0x0D around messages): outpost cannot take it live; set \
                 the instrument's HL7 output to MLLP over TCP"
                    .into(),
            );
            None
        }
        Protocol::AstmRecords => {
            advice.push(
                "ASTM records without E1381 framing (no STX, frame numbers, checksums): set the instrument's host \
                 interface to ASTM E1381 / LIS01-A2 (often called 'ASTM with handshake' or 'LIS2-A2')"
                    .into(),
            );
            None
        }
        Protocol::Silence | Protocol::Garbled | Protocol::Text => None,
    }
}

/// `{ port = "...", baud = 9600 }`, with data bits, parity and stop bits when not 8N1.
fn serial_table(s: &Settings) -> String {
    let mut keys = vec![format!("port = \"{}\"", s.port.display()), format!("baud = {}", s.baud)];
    if s.data_bits == DataBits::Seven {
        keys.push("data_bits = 7".into());
    }
    match s.parity {
        Parity::None => {}
        Parity::Even => keys.push("parity = \"even\"".into()),
        Parity::Odd => keys.push("parity = \"odd\"".into()),
    }
    if s.stop_bits == StopBits::Two {
        keys.push("stop_bits = 2".into());
    }
    format!("{{ {} }}", keys.join(", "))
}

fn found_advice(h: &Hearing, serial: Option<&Settings>, profile: Option<&Profile>, advice: &mut Vec<String>) {
    if h.protocol == Protocol::AstmBidding {
        advice.push(
            "the analyzer asks to send (ENQ) and waits for the host's ACK, which outpost probe never sends: once \
             the source is configured, outpost answers and the results come"
                .into(),
        );
    }
    if let (Some(s), Some(_)) = (serial, h.seven_bits) {
        advice.push(format!(
            "the analyzer sends 7 data bits with {} parity ({})",
            if s.parity == Parity::Odd { "odd" } else { "even" },
            s.line()
        ));
    }
    if h.astm.bad_checksums > 0 {
        advice.push(format!(
            "{} frame(s) had a bad checksum beside {} good: the line is noisy (cable length, ground, a loose \
             connector) or a byte was lost; outpost NAKs them and the analyzer sends them again",
            h.astm.bad_checksums, h.astm.valid_frames
        ));
    }
    if matches!(h.protocol, Protocol::Astm | Protocol::AstmBidding) {
        match (&h.instrument, profile) {
            (Some(_), Some(p)) => advice.push(format!(
                "the H record names a {} (built-in profile {}): check the profile's [confirm] values on site",
                p.name, p.id
            )),
            (Some(_), None) => advice.push(
                "no built-in profile names this instrument: write one (hardware/instruments/README.md) and give \
                 it with profile_file"
                    .into(),
            ),
            (None, _) if h.protocol == Protocol::Astm => advice.push(
                "the instrument's H record was not heard, or names no sender (H.5): choose its profile by model \
                 (hardware/instruments/README.md)"
                    .into(),
            ),
            (None, _) => {}
        }
    }
    advice.push("paste the config into the gateway's config, then `outpost config check` and `outpost reload`".into());
}

fn nothing_valid_advice(place: &Place, tried: &[Tried], advice: &mut Vec<String>) {
    // An ASTM analyzer bids again only after its timeouts (15 s and more): one clean ENQ in a
    // dwell is worth a longer listen at that setting.
    let lone_enq = tried.iter().find(|t| t.hearing.astm.enq > 0 && t.hearing.signs.clean >= 0.9);
    if let Some(Tried { serial: Some(s), .. }) = lone_enq {
        let line = s.line();
        let (baud, bits) = line.split_once(' ').unwrap_or((line.as_str(), "8N1"));
        advice.push(format!(
            "an ENQ (an ASTM analyzer asking to send) was heard at {line}: it asks again only every 15 s or so; \
             listen longer there: --baud {baud} --line {bits} --for 2m"
        ));
    }
    if let Some(why) = tried.iter().find_map(|t| t.hearing.not_astm.clone()) {
        advice.push(why);
    }
    if tried.iter().any(|t| t.hearing.protocol == Protocol::Text) {
        advice.push(
            "readable text came but neither ASTM nor HL7: the analyzer's host output may be set to a printer \
             or export format; set it to ASTM (LIS01-A2/LIS2-A2) or HL7"
                .into(),
        );
    }
    if matches!(place, Place::Serial(_)) && tried.iter().all(|t| t.hearing.protocol <= Protocol::Garbled) {
        advice.push(
            "bytes came but no setting read them: the analyzer may use a baud rate or line not tried (pin it: \
             --baud 4800 --line 8E1), or the line is noisy; check the analyzer's host interface screen for its \
             settings"
                .into(),
        );
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "outpost probe {} ({}; passive: nothing was sent)", self.at, self.transport.replace('_', " "))?;
        if !self.tried.is_empty() {
            writeln!(f, "\n{:<14} {:>8}  HEARD", "SETTING", "BYTES")?;
            for t in &self.tried {
                writeln!(f, "{:<14} {:>8}  {}", t.setting, t.hearing.bytes, heard(&t.hearing))?;
            }
        }
        let v = &self.verdict;
        writeln!(f)?;
        match v.outcome {
            Outcome::Found => {
                write!(f, "verdict: {}", v.protocol.describe())?;
                match &v.line {
                    Some(line) => writeln!(f, ", at {line}")?,
                    None => writeln!(f)?,
                }
            }
            Outcome::NothingValid => writeln!(f, "verdict: nothing valid was heard")?,
            Outcome::Silent => writeln!(f, "verdict: nothing was heard")?,
        }
        if let Some(i) = &v.instrument {
            let from = if matches!(v.protocol, Protocol::Hl7 | Protocol::Hl7Mllp) { "MSH-3 / MSH-4" } else { "H.5" };
            writeln!(f, "instrument: {i} ({from})")?;
        }
        if let Some(p) = &v.profile {
            writeln!(f, "profile: {p}")?;
        }
        if let Some(c) = &v.config {
            write!(f, "\nconfig to paste (a [[source]], beside the others):\n\n{c}")?;
        }
        if !v.advice.is_empty() {
            writeln!(f, "\nwhat to do:")?;
        }
        for a in &v.advice {
            writeln!(f, "- {a}")?;
        }
        Ok(())
    }
}

/// One setting's line in the table: protocol facts, no content.
pub fn heard(h: &Hearing) -> String {
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    let seven = h.seven_bits.map(|p| format!(" (7 data bits, {p:?} parity)").to_lowercase()).unwrap_or_default();
    match h.protocol {
        Protocol::Silence => "nothing".into(),
        Protocol::Astm => format!(
            "ASTM: {} valid frame(s), {} bad checksum(s), {} message(s){seven}",
            h.astm.valid_frames, h.astm.bad_checksums, h.astm.messages
        ),
        Protocol::AstmBidding => format!("ASTM: {} ENQ (asking to send), no frames{seven}", h.astm.enq),
        Protocol::AstmRecords => format!("ASTM records, unframed: {} message(s){seven}", h.astm.messages),
        Protocol::Hl7Mllp | Protocol::Hl7 => format!(
            "{}: {} message(s){}{seven}",
            if h.protocol == Protocol::Hl7Mllp { "HL7 over MLLP" } else { "HL7, unframed" },
            h.hl7.messages,
            h.hl7.version.as_ref().map(|v| format!(", version {v}")).unwrap_or_default()
        ),
        Protocol::Text => format!("text, neither ASTM nor HL7 ({} readable){seven}", pct(h.signs.clean)),
        Protocol::Garbled => format!(
            "garbled: {} readable, {} high-bit, {} NUL/FF",
            pct(h.signs.clean),
            pct(h.signs.high_bit),
            pct(h.signs.nul_or_ff)
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::probe::analyze::hear;
    use crate::probe::plan::Line;

    const YUMIZEN: &[u8] = include_bytes!("../../tests/data/astm/yumizen-h500-session.raw");

    fn tried(setting: &Settings, bytes: &[u8]) -> Tried {
        Tried {
            setting: setting.line(),
            serial: Some(setting.clone()),
            listened_ms: 1000,
            hearing: hear(bytes, bytes.len()),
        }
    }

    #[test]
    fn the_best_setting_names_protocol_instrument_profile_and_config() {
        let port = Path::new("/dev/serial/by-id/usb-FTDI-if00");
        let place = Place::Serial(port.to_path_buf());
        let at = |b| Line::EIGHT_N_ONE.settings(port, b);
        let report = conclude(
            &place,
            vec![
                tried(&at(9600), &[0x00, 0xF8, 0x80, 0xFF, 0x00, 0x78, 0xE0, 0x00, 0x00]),
                tried(&at(19200), YUMIZEN),
                tried(&at(38400), b""),
            ],
        );
        let v = &report.verdict;
        assert_eq!((v.outcome, v.protocol), (Outcome::Found, Protocol::Astm));
        assert_eq!(v.line.as_deref(), Some("19200 8N1"));
        assert_eq!(v.instrument.as_deref(), Some("H500^906YOXH02459^2.2.0.5"));
        assert_eq!(v.profile.as_deref(), Some("horiba-yumizen-h500"));
        let config = v.config.as_deref().unwrap();
        assert!(config.contains("kind = \"astm\"\nprofile = \"horiba-yumizen-h500\"\n"), "{config}");
        assert!(config.contains("serial = { port = \"/dev/serial/by-id/usb-FTDI-if00\", baud = 19200 }"), "{config}");
        assert_eq!(report.exit_code(), FOUND);
        // The pasted config is a valid source (with the rest of a config around it).
        let text = format!(
            "[node]\nsite = \"s\"\nid = \"n\"\n\n{config}\n[[destination]]\nname = \"lis\"\nkind = \"file\"\n\
             dir = \"inbox\"\n\n[[route]]\nname = \"r\"\nfrom = [\"analyzer\"]\nto = [\"lis\"]\n"
        );
        if let Err(e) = crate::config::Config::parse(&text, "probe") {
            panic!("{e}\n{text}");
        }
        let shown = report.to_string();
        assert!(shown.contains("19200 8N1") && shown.contains("verdict: ASTM"), "{shown}");
        for phi in ["DIF", "BLOOD", "2021679"] {
            assert!(!shown.contains(phi) && !serde_json::to_string(&report).unwrap().contains(phi), "{phi}: {shown}");
        }
    }

    #[test]
    fn seven_bits_with_parity_go_into_the_config() {
        let port = Path::new("/dev/ttyUSB0");
        let even: Vec<u8> = YUMIZEN.iter().map(|&b| if b.count_ones() % 2 == 1 { b | 0x80 } else { b }).collect();
        let report = conclude(&Place::Serial(port.into()), vec![tried(&Line::EIGHT_N_ONE.settings(port, 9600), &even)]);
        let v = &report.verdict;
        assert_eq!(v.line.as_deref(), Some("9600 7E1"));
        assert!(v.config.as_deref().unwrap().contains("baud = 9600, data_bits = 7, parity = \"even\" }"), "{v:?}");
    }

    #[test]
    fn silence_and_noise_have_their_own_exit_codes_and_advice() {
        let port = Path::new("/dev/ttyUSB0");
        let place = Place::Serial(port.into());
        let at = |b| Line::EIGHT_N_ONE.settings(port, b);
        let silent = conclude(&place, vec![tried(&at(9600), b""), tried(&at(19200), b"")]);
        assert_eq!(silent.exit_code(), EX_SILENT);
        assert!(silent.verdict.advice[0].contains("send results"), "{:?}", silent.verdict.advice);
        let noise: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
        let garbled = conclude(&place, vec![tried(&at(9600), &noise), tried(&at(19200), b"")]);
        assert_eq!(garbled.exit_code(), EX_NOTHING_VALID);
        assert!(garbled.verdict.advice.iter().any(|a| a.contains("--line 8E1")), "{:?}", garbled.verdict.advice);
        assert!(garbled.verdict.config.is_none());
    }

    #[test]
    fn a_lone_enq_asks_for_a_longer_listen_at_its_setting() {
        let port = Path::new("/dev/ttyUSB0");
        let at = |b| Line::EIGHT_N_ONE.settings(port, b);
        let report = conclude(&Place::Serial(port.into()), vec![tried(&at(9600), b""), tried(&at(19200), &[0x05])]);
        assert_eq!(report.exit_code(), EX_NOTHING_VALID);
        assert!(
            report
                .verdict
                .advice
                .iter()
                .any(|a| a.contains("heard at 19200 8N1") && a.contains("--baud 19200 --line 8N1")),
            "{:?}",
            report.verdict.advice
        );
    }

    #[test]
    fn hl7_over_tcp_is_an_mllp_source() {
        let msg = b"MSH|^~\\&|ANALYZER|LAB|HIS|HOSP|20240101||ORU^R01|C1|P|2.5.1\rPID|1||123||Doe^Jane\r";
        let framed = crate::mllp::encode(msg);
        let place = Place::TcpListen("0.0.0.0:5100".into());
        let report = conclude(
            &place,
            vec![Tried { setting: "tcp".into(), serial: None, listened_ms: 10, hearing: hear(&framed, framed.len()) }],
        );
        let v = &report.verdict;
        assert_eq!(v.protocol, Protocol::Hl7Mllp);
        assert_eq!(v.instrument.as_deref(), Some("ANALYZER / LAB"));
        assert_eq!(
            v.config.as_deref(),
            Some("[[source]]\nname = \"analyzer\"\nkind = \"mllp\"\nlisten = \"0.0.0.0:5100\"\n")
        );
        assert!(v.profile.is_none());
        let shown = format!("{report}{}", serde_json::to_string(&report).unwrap());
        assert!(!shown.contains("Doe") && !shown.contains("123"), "{shown}");
    }

    #[test]
    fn every_profile_with_senders_is_found_by_its_own_capture() {
        for (file, profile) in [
            (YUMIZEN.to_vec(), "horiba-yumizen-h500"),
            (
                crate::probe::analyze::tests::wire_from_lines(include_bytes!(
                    "../../tests/data/astm/pentra-xlr-frames.txt"
                )),
                "horiba-pentra-xlr",
            ),
            (
                crate::probe::analyze::tests::wire_from_lines(include_bytes!(
                    "../../tests/data/astm/cobas-c111-etb-frames.txt"
                )),
                "roche-cobas-c111",
            ),
            (
                crate::probe::analyze::tests::wire_from_lines(include_bytes!("../../tests/data/astm/genexpert.txt")),
                "cepheid-genexpert",
            ),
            (include_bytes!("../../tests/data/astm/vitros-3600-host-query.raw").to_vec(), "ortho-vitros-3600"),
        ] {
            let h = hear(&file, file.len());
            let id = h.instrument.clone().unwrap_or_default();
            assert_eq!(profile_for(&id).map(|p| p.id).as_deref(), Some(profile), "{id}");
        }
        assert!(profile_for("SOMETHING^ELSE").is_none());
    }
}
