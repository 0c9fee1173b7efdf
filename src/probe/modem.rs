//! `outpost probe --modem`: what a modem's answers to identification commands say about it.
//! Sans IO: the commands to send ([`FIRST`], [`after_classes`], [`LAST`]), when a reply is
//! complete ([`Answer::read`]), and the verdict from the whole exchange ([`conclude`]):
//! manufacturer, model, revision, the fax classes offered, whether outpost can drive it
//! (Class 2 or 2.0) or it needs HylaFAX (Class 1 only), and the `[[source]]` to paste.
//!
//! The commands never take the line off-hook (no `ATA`, no `ATD`), and the exchange ends with
//! `AT+FCLASS=0` and `ATZ` so the modem is left as it was found. Replies are read with echo on
//! or off (an echoed command is not an answer), in any mix of CR and LF, with the `+FMI:`-style
//! prefixes and quotes some firmware puts around identification strings.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::cli::{EX_DATAERR, EX_TEMPFAIL};

/// The wake-up: a modem answers `OK` at whatever DTE rate it heard it.
pub const HELLO: &str = "AT";

/// Asked of every modem once `AT` is answered.
pub const FIRST: &[&str] = &["ATI", "ATI3", "AT+FCLASS=?"];

/// Class 2.0 (TIA-592) identification, asked in that class.
const CLASS20: &[&str] = &["AT+FCLASS=2.0", "AT+FMI?", "AT+FMM?", "AT+FMR?"];
/// Class 2 (SP-2388) identification, asked in that class.
const CLASS2: &[&str] = &["AT+FCLASS=2", "AT+FMFR?", "AT+FMDL?", "AT+FREV?"];

/// Leaves the modem in data mode and reset to its stored profile.
pub const LAST: &[&str] = &["AT+FCLASS=0", "ATZ"];

/// The DTE rates tried when `AT` gets no `OK`, after the one asked for.
pub const BAUDS: [u32; 5] = [115_200, 57_600, 38_400, 19_200, 9_600];

/// The most a reply may hold before it is cut (a modem that streams: not a modem).
pub const MAX_REPLY: usize = 4096;

/// How a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    Ok,
    Error,
    /// No final result code in time (what came is in the lines).
    Silent,
}

/// A command's reply: its information lines (echo and blank lines left out) and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub lines: Vec<String>,
    pub end: End,
}

impl Answer {
    /// Reads what came back for `command` so far: `Some` once a final result code (`OK`,
    /// `ERROR`, `+CME ERROR`, `NO CARRIER`) ended it on a line of its own.
    pub fn read(command: &str, received: &[u8]) -> Option<Answer> {
        let mut lines = Vec::new();
        let text = String::from_utf8_lossy(received);
        // Only whole lines: the last piece may still be arriving.
        let complete = text.rfind(['\r', '\n']).map_or("", |end| &text[..end]);
        for line in complete.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()) {
            match final_code(line) {
                Some(end) => return Some(Answer { lines, end }),
                None if line.eq_ignore_ascii_case(command) => {}
                None => lines.push(printable(line)),
            }
        }
        None
    }

    /// What came for `command` when no final result code did.
    pub fn silent(command: &str, received: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(received);
        let lines = text
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.eq_ignore_ascii_case(command))
            .map(printable)
            .collect();
        Answer { lines, end: End::Silent }
    }

    fn text(&self) -> Option<String> {
        (self.end == End::Ok).then(|| self.lines.join(" ")).filter(|t| !t.is_empty())
    }
}

fn final_code(line: &str) -> Option<End> {
    let upper = line.to_ascii_uppercase();
    match upper.as_str() {
        "OK" => Some(End::Ok),
        "ERROR" | "NO CARRIER" => Some(End::Error),
        _ if upper.starts_with("+CME ERROR") => Some(End::Error),
        _ => None,
    }
}

/// A line as shown: control characters and non-ASCII as `?`, at most 120 characters.
fn printable(line: &str) -> String {
    line.chars().take(120).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

/// The classes in an `AT+FCLASS=?` answer, as written: `0,1,2,2.0,8`, `(0-2,2.0,8)`,
/// `0, 1, 1.0` (ranges of whole classes expanded).
pub fn classes(answer: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in answer.split([',', '(', ')', ' ', '\t']).map(str::trim).filter(|t| !t.is_empty()) {
        let token = token.trim_start_matches("+FCLASS:").trim();
        let expanded: Vec<String> = match token.split_once('-') {
            Some((a, b)) => match (a.parse::<u8>(), b.parse::<u8>()) {
                (Ok(a), Ok(b)) if a <= b && b - a < 20 => (a..=b).map(|n| n.to_string()).collect(),
                _ => continue,
            },
            None if token.chars().all(|c| c.is_ascii_digit() || c == '.') && !token.is_empty() => vec![token.into()],
            None => continue,
        };
        for class in expanded {
            if !out.contains(&class) {
                out.push(class);
            }
        }
    }
    out
}

/// Which identification to ask for, given the classes offered: each fax class's own commands
/// (selecting the class first, as HylaFAX's probemodem does: many modems answer `+FMI?` only
/// in Class 2.0).
pub fn after_classes(offered: &[String]) -> Vec<&'static str> {
    let has = |c: &str| offered.iter().any(|x| x == c);
    let mut commands = Vec::new();
    if has("2.0") || has("2.1") {
        commands.extend_from_slice(CLASS20);
    }
    if has("2") {
        commands.extend_from_slice(CLASS2);
    }
    commands
}

/// One command and its reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exchange {
    pub command: String,
    pub answer: Answer,
}

/// What the modem can do for outpost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Class 2 and/or 2.0: `kind = "fax-modem"` receives with it.
    Native,
    /// Class 1 (or 1.0) only: receive through HylaFAX, then `kind = "fax-spool"`.
    Class1Only,
    /// A modem, but no fax class offered.
    NoFax,
    /// `AT+FCLASS=?` was refused or not answered: not a fax modem as far as we can tell.
    Unknown,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModemReport {
    pub port: String,
    /// The DTE rate the modem answered at (none: nothing answered `AT`).
    pub baud: Option<u32>,
    /// The rates `AT` was tried at.
    pub tried: Vec<u32>,
    /// Bytes that came back without an `OK` at any rate (a device that is no modem, or the
    /// wrong rate).
    pub heard_bytes: usize,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub revision: Option<String>,
    /// `ATI` and `ATI3` as the modem answered them.
    pub identification: Vec<String>,
    /// The `AT+FCLASS=?` classes (`0` data, `1`/`1.0` fax Class 1, `2`, `2.0`/`2.1`, `8` voice).
    pub classes: Vec<String>,
    pub capability: Option<Capability>,
    /// The `[[source]]` to paste (when outpost can drive the modem).
    pub config: Option<String>,
    pub advice: Vec<String>,
    pub exchanges: Vec<Exchange>,
}

/// Concludes from what the modem answered at `baud` (none: no rate got `OK`).
pub fn conclude(
    port: &Path,
    baud: Option<u32>,
    tried: Vec<u32>,
    heard_bytes: usize,
    exchanges: Vec<Exchange>,
) -> ModemReport {
    let answer = |command: &str| exchanges.iter().find(|e| e.command == command).map(|e| &e.answer);
    let text = |command: &str| answer(command).and_then(Answer::text).map(|t| identification_text(&t));
    let mut report = ModemReport {
        port: port.display().to_string(),
        baud,
        tried,
        heard_bytes,
        manufacturer: text("AT+FMI?").or_else(|| text("AT+FMFR?")),
        model: text("AT+FMM?").or_else(|| text("AT+FMDL?")),
        revision: text("AT+FMR?").or_else(|| text("AT+FREV?")),
        identification: ["ATI", "ATI3"].iter().filter_map(|c| text(c).map(|t| format!("{c}: {t}"))).collect(),
        classes: Vec::new(),
        capability: None,
        config: None,
        advice: Vec::new(),
        exchanges: Vec::new(),
    };
    let Some(baud) = baud else {
        report.advice.push(if heard_bytes == 0 {
            "no modem answered: nothing came back to AT at any rate. Is this the modem's port (`outpost ports`), \
             is it powered, and is the cable a modem cable (straight through, not null-modem)?"
                .into()
        } else {
            "something answered, but not OK to AT at any rate: this is probably not a modem (an instrument, a \
             console), or it is set to a rate or line other than 8N1"
                .into()
        });
        report.exchanges = exchanges;
        return report;
    };
    let fclass = answer("AT+FCLASS=?");
    report.classes = fclass.filter(|a| a.end == End::Ok).map(|a| classes(&a.lines.join(","))).unwrap_or_default();
    let has = |c: &str| report.classes.iter().any(|x| x == c);
    let (class2, class20) = (has("2"), has("2.0") || has("2.1"));
    let capability = if fclass.is_none_or(|a| a.end != End::Ok) {
        Capability::Unknown
    } else if class2 || class20 {
        Capability::Native
    } else if has("1") || has("1.0") {
        Capability::Class1Only
    } else {
        Capability::NoFax
    };
    report.capability = Some(capability);
    match capability {
        Capability::Native => {
            let class = match (class2, class20) {
                (true, false) => Some("2"),
                (false, true) => Some("2.0"),
                _ => None,
            };
            report.config = Some(source_config(port, baud, class));
            report.advice.push(match class {
                None => "it receives faxes natively (Class 2.0 and Class 2; outpost uses 2.0): paste the [[source]] \
                         below"
                    .into(),
                Some(c) => format!("it receives faxes natively (Class {c}): paste the [[source]] below"),
            });
        }
        Capability::Class1Only => report.advice.push(
            "Class 1 only: outpost cannot drive it itself (it speaks Class 2 and 2.0). Receive with HylaFAX \
             (faxgetty) on this modem and take its faxes with a [[source]] kind = \"fax-spool\" on HylaFAX's \
             recvq; see hardware/fax-modems.md, or use a Class 2/2.0 modem"
                .into(),
        ),
        Capability::NoFax => report.advice.push(format!(
            "a modem, but it offers no fax class (AT+FCLASS=? lists {}): it cannot receive faxes; see \
             hardware/fax-modems.md for modems that can",
            report.classes.join(",")
        )),
        Capability::Unknown => report.advice.push(
            "it answers AT but refuses AT+FCLASS=?: not a fax modem (a GSM/LTE modem or a data-only modem?); see \
             hardware/fax-modems.md"
                .into(),
        ),
    }
    report.exchanges = exchanges;
    report
}

/// An identification answer without the `+FMI:`-style prefix and the quotes around it.
fn identification_text(text: &str) -> String {
    let t = text.trim();
    let t = match t.split_once(':') {
        Some((prefix, rest)) if prefix.starts_with('+') && !prefix.contains(' ') => rest.trim(),
        _ => t,
    };
    t.trim_matches('"').trim().to_string()
}

fn source_config(port: &Path, baud: u32, class: Option<&str>) -> String {
    let serial = if baud == 115_200 {
        format!("serial = {{ port = \"{}\" }}", port.display())
    } else {
        format!("serial = {{ port = \"{}\", baud = {baud} }}", port.display())
    };
    let mut text = format!("[[source]]\nname = \"fax\"\nkind = \"fax-modem\"\n{serial}\n");
    if let Some(class) = class {
        text.push_str(&format!("class = \"{class}\"\n"));
    }
    text
}

impl ModemReport {
    /// 0: a modem that receives faxes (natively or through HylaFAX); 65: something answered but
    /// no fax modem; 75: nothing answered.
    pub fn exit_code(&self) -> u8 {
        match self.capability {
            Some(Capability::Native | Capability::Class1Only) => 0,
            None if self.heard_bytes == 0 => EX_TEMPFAIL,
            _ => EX_DATAERR,
        }
    }
}

impl fmt::Display for ModemReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rates = self.tried.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        match self.baud {
            Some(b) => writeln!(f, "port          {} (answered AT at {b} 8N1)", self.port)?,
            None => writeln!(f, "port          {} (AT tried at {rates})", self.port)?,
        }
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not reported)".into());
        if self.baud.is_some() {
            writeln!(f, "manufacturer  {}", or_unknown(&self.manufacturer))?;
            writeln!(f, "model         {}", or_unknown(&self.model))?;
            writeln!(f, "revision      {}", or_unknown(&self.revision))?;
            for line in &self.identification {
                writeln!(f, "identity      {line}")?;
            }
            let classes = if self.classes.is_empty() { "(none listed)".to_string() } else { self.classes.join(", ") };
            writeln!(f, "classes       {classes}")?;
            let native = match self.capability {
                Some(Capability::Native) => "yes",
                Some(Capability::Class1Only) => "no: Class 1 only (through HylaFAX)",
                _ => "no",
            };
            writeln!(f, "fax receive   {native}")?;
        }
        for advice in &self.advice {
            writeln!(f, "\n{advice}")?;
        }
        if let Some(config) = &self.config {
            writeln!(f, "\n{config}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transcript as a modem with echo on sends it: each command echoed, then its lines.
    fn play(turns: &[(&str, &str)]) -> Vec<Exchange> {
        turns
            .iter()
            .map(|(command, reply)| {
                let wire = format!("{command}\r\r\n{}", reply.replace('\n', "\r\n"));
                let answer =
                    Answer::read(command, wire.as_bytes()).unwrap_or_else(|| Answer::silent(command, wire.as_bytes()));
                Exchange { command: command.to_string(), answer }
            })
            .collect()
    }

    fn port() -> &'static Path {
        Path::new("/dev/serial/by-id/usb-modem-if00")
    }

    #[test]
    fn replies_end_at_a_final_result_code() {
        assert_eq!(Answer::read("ATI3", b"ATI3\r\r\nU.S. Robotics 56K FAX USB V1.2.23\r\n"), None, "no OK yet");
        assert_eq!(Answer::read("ATI3", b"ATI3\r\r\nU.S. Robotics 56K FAX\r\n\r\nO"), None, "OK still arriving");
        let a = Answer::read("ATI3", b"ATI3\r\r\nU.S. Robotics 56K FAX USB V1.2.23\r\n\r\nOK\r\n").unwrap();
        assert_eq!((a.lines.as_slice(), a.end), (&["U.S. Robotics 56K FAX USB V1.2.23".to_string()][..], End::Ok));
        // Echo off, LF only, lower case.
        let a = Answer::read("AT+FMM?", b"\nerror\n").unwrap();
        assert_eq!((a.lines.len(), a.end), (0, End::Error));
        assert_eq!(Answer::read("AT+FMI?", b"+CME ERROR: 4\r\n").unwrap().end, End::Error);
        let a = Answer::silent("AT", b"AT\r\x00\xff\x13junk");
        assert_eq!((a.lines, a.end), (vec!["???junk".to_string()], End::Silent));
    }

    #[test]
    fn class_lists_as_modems_write_them() {
        assert_eq!(classes("0,1,2,2.0,8"), ["0", "1", "2", "2.0", "8"]);
        assert_eq!(classes("(0-2,2.0,8)"), ["0", "1", "2", "2.0", "8"]);
        assert_eq!(classes("0, 1, 1.0"), ["0", "1", "1.0"]);
        assert_eq!(classes("+FCLASS: 0,1,2.0"), ["0", "1", "2.0"]);
        assert_eq!(classes("0,1,1.0,2,2.0,2.1,8,80"), ["0", "1", "1.0", "2", "2.0", "2.1", "8", "80"]);
        assert!(classes("garbage").is_empty());
        assert_eq!(after_classes(&classes("0,1")), Vec::<&str>::new());
        assert_eq!(after_classes(&classes("0,1,2")), CLASS2);
        assert_eq!(after_classes(&classes("0,1,2,2.0")), [CLASS20, CLASS2].concat());
    }

    /// USRobotics 5637 (56K USB Modem): its user guide lists +FCLASS 0 and 1 only (Class 1);
    /// the ATI3 text is shaped after USR's, not captured from the hardware.
    #[test]
    fn usrobotics_5637_is_class_1_only() {
        let exchanges = play(&[
            ("AT", "OK\n"),
            ("ATI", "5601\n\nOK\n"),
            ("ATI3", "U.S. Robotics 56K FAX USB V1.2.23\n\nOK\n"),
            ("AT+FCLASS=?", "0,1\n\nOK\n"),
            ("AT+FCLASS=0", "OK\n"),
            ("ATZ", "OK\n"),
        ]);
        let r = conclude(port(), Some(115_200), vec![115_200], 0, exchanges);
        assert_eq!(r.capability, Some(Capability::Class1Only));
        assert_eq!(r.classes, ["0", "1"]);
        assert_eq!(r.identification, ["ATI: 5601", "ATI3: U.S. Robotics 56K FAX USB V1.2.23"]);
        assert_eq!((r.manufacturer.as_deref(), r.config.as_deref()), (None, None));
        assert!(r.advice[0].contains("fax-spool") && r.advice[0].contains("HylaFAX"), "{:?}", r.advice);
        assert_eq!(r.exit_code(), 0);
        let text = r.to_string();
        assert!(text.contains("fax receive   no: Class 1 only"), "{text}");
        assert!(text.contains("identity      ATI3: U.S. Robotics 56K FAX USB V1.2.23\n"), "{text}");
    }

    /// A Conexant CX93010 USB modem (Zoom 3095 and its many relabels): Class 1, 1.0, 2 and 2.0
    /// offered; identification in either class.
    #[test]
    fn conexant_usb_offers_both_classes() {
        let exchanges = play(&[
            ("AT", "OK\n"),
            ("ATI", "56000\n\nOK\n"),
            ("ATI3", "CX93001-EIS_V0.2013-V92\n\nOK\n"),
            ("AT+FCLASS=?", "0,1,1.0,2,2.0,2.1,8\n\nOK\n"),
            ("AT+FCLASS=2.0", "OK\n"),
            ("AT+FMI?", "+FMI: \"CONEXANT\"\n\nOK\n"),
            ("AT+FMM?", "+FMM: \"CX93001-EIS_V0.2013-V92\"\n\nOK\n"),
            ("AT+FMR?", "+FMR: \"V0.2013\"\n\nOK\n"),
            ("AT+FCLASS=2", "OK\n"),
            ("AT+FMFR?", "CONEXANT\n\nOK\n"),
            ("AT+FMDL?", "ERROR\n"),
            ("AT+FREV?", "ERROR\n"),
            ("AT+FCLASS=0", "OK\n"),
            ("ATZ", "OK\n"),
        ]);
        let r = conclude(port(), Some(115_200), vec![115_200], 0, exchanges);
        assert_eq!(r.capability, Some(Capability::Native));
        assert_eq!(
            (r.manufacturer.as_deref(), r.model.as_deref(), r.revision.as_deref()),
            (Some("CONEXANT"), Some("CX93001-EIS_V0.2013-V92"), Some("V0.2013"))
        );
        let config = r.config.clone().unwrap();
        assert!(config.contains("kind = \"fax-modem\""), "{config}");
        assert!(config.contains("serial = { port = \"/dev/serial/by-id/usb-modem-if00\" }"), "{config}");
        assert!(!config.contains("class ="), "both classes: auto chooses 2.0\n{config}");
        assert_eq!(r.exit_code(), 0);
    }

    /// MultiTech MultiModem (MT9234ZBA): Class 1, 2 and 2.0; `+FMI?` answers `Multi-Tech` as
    /// MultiTech's guides show. At 38400 after 115200 and 57600 got no OK: the rate is pinned.
    #[test]
    fn multitech_at_a_slower_rate_with_class_2_only_listed() {
        let exchanges = play(&[
            ("AT", "OK\n"),
            ("ATI", "MT9234ZBA\n\nOK\n"),
            ("ATI3", "ERROR\n"),
            ("AT+FCLASS=?", "0,1,2\n\nOK\n"),
            ("AT+FCLASS=2", "OK\n"),
            ("AT+FMFR?", "Multi-Tech\n\nOK\n"),
            ("AT+FMDL?", "MT9234ZBA\n\nOK\n"),
            ("AT+FREV?", "1.05a\n\nOK\n"),
            ("AT+FCLASS=0", "OK\n"),
            ("ATZ", "OK\n"),
        ]);
        let r = conclude(port(), Some(38_400), vec![115_200, 57_600, 38_400], 12, exchanges);
        assert_eq!((r.manufacturer.as_deref(), r.model.as_deref()), (Some("Multi-Tech"), Some("MT9234ZBA")));
        assert_eq!(r.identification, ["ATI: MT9234ZBA"], "ATI3 refused is left out");
        let config = r.config.clone().unwrap();
        assert!(config.contains("baud = 38400") && config.contains("class = \"2\""), "{config}");
        assert!(r.advice[0].contains("Class 2)"), "{:?}", r.advice);
    }

    #[test]
    fn modems_that_cannot_fax_and_things_that_are_no_modem() {
        let data_only = play(&[("AT", "OK\n"), ("ATI", "OK\n"), ("ATI3", "OK\n"), ("AT+FCLASS=?", "0,8\n\nOK\n")]);
        let r = conclude(port(), Some(115_200), vec![115_200], 0, data_only);
        assert_eq!((r.capability, r.exit_code()), (Some(Capability::NoFax), EX_DATAERR));
        let gsm = play(&[
            ("AT", "OK\n"),
            ("ATI", "Quectel\nEC25\nRevision: EC25EFAR06A06M4G\n\nOK\n"),
            ("AT+FCLASS=?", "ERROR\n"),
        ]);
        let r = conclude(port(), Some(115_200), vec![115_200], 0, gsm);
        assert_eq!((r.capability, r.exit_code()), (Some(Capability::Unknown), EX_DATAERR));
        assert_eq!(r.identification, ["ATI: Quectel EC25 Revision: EC25EFAR06A06M4G"]);

        let silence = conclude(port(), None, BAUDS.to_vec(), 0, Vec::new());
        assert_eq!(silence.exit_code(), EX_TEMPFAIL);
        let text = silence.to_string();
        assert!(text.contains("no modem answered") && text.contains("115200, 57600, 38400, 19200, 9600"), "{text}");
        let noise = conclude(port(), None, BAUDS.to_vec(), 40, Vec::new());
        assert_eq!(noise.exit_code(), EX_DATAERR);
        assert!(noise.advice[0].contains("not a modem"), "{:?}", noise.advice);
    }

    #[test]
    fn identification_strings_lose_prefixes_and_quotes() {
        assert_eq!(identification_text("+FMI: \"USRobotics\""), "USRobotics");
        assert_eq!(identification_text("\"Multi-Tech\""), "Multi-Tech");
        assert_eq!(identification_text("Revision: 1.2"), "Revision: 1.2");
    }
}
