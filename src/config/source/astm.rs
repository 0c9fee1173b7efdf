//! `kind = "astm"` sources: a lab instrument's ASTM E1381/E1394 link on a serial port, or over
//! TCP either way (`ingress/astm.rs`).

use std::path::Path;

use toml::de::DeValue;

use crate::astm::{LineEnd, Quirks, Timers};
use crate::config::values::{
    GIB, KIB, MIB, boolean, choice, count_in, duration, host_port, listen_address, path, size_in, string,
};
use crate::config::walk::{Checker, Got, Tbl, Val};
use crate::config::{AstmSource, AstmTransport, Hl7Results, SourceKind};
use crate::instrument::{Profile, SerialDefaults};
use crate::serial::{DataBits, FlowControl, Parity, Settings, StopBits};

/// The tolerance switches a profile or a source may name, and what each turns on.
pub const QUIRKS: &[&str] =
    &["no_frame_numbers", "lf_only", "cr_cr", "no_cr_before_etx", "no_etx", "long_frames", "send_packed"];

pub(super) fn read(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<SourceKind> {
    // The profile first: the serial settings, quirks and timers start from it.
    let profile = t.opt(ck, "profile", None, |ck, v| {
        let name = string(ck, v)?;
        match Profile::builtin(&name) {
            Ok(p) => Some(Some(p)),
            Err(e) => {
                v.invalid(ck, e.to_string());
                None
            }
        }
    });
    let profile_file = t.opt(ck, "profile_file", None, |ck, v| {
        let file = state_dir.join(path(ck, v)?);
        match Profile::from_file(&file) {
            Ok(p) => Some(Some(p)),
            Err(e) => {
                v.invalid(ck, e.to_string());
                None
            }
        }
    });
    let profile = match (profile, profile_file) {
        (Some(Some(_)), Some(Some(_))) => {
            if let Some(v) = t.val("profile_file") {
                v.invalid(ck, "give profile (a built-in profile's name) or profile_file, not both".to_string());
            }
            None
        }
        (Some(p), Some(f)) => Some(p.or(f).map(Box::new)),
        _ => None,
    };
    let from_profile = profile.as_ref().and_then(|p| p.as_ref());
    let serial = match t.table(ck, "serial", "serial") {
        Got::Valid(s) => Got::Valid(serial(ck, &s, from_profile.and_then(|p| p.serial.as_ref()))),
        Got::Invalid => Got::Invalid,
        Got::Absent => Got::Absent,
    };
    let listen = t.get(ck, "tcp_listen", listen_address);
    let connect = t.get(ck, "tcp_connect", host_port);
    let mut base_quirks = Quirks::default();
    for q in from_profile.map(|p| p.link.quirks.as_slice()).unwrap_or_default() {
        set_quirk(&mut base_quirks, q.name());
    }
    let quirks = t.opt(ck, "quirks", base_quirks, quirk_list);
    let base_timers = from_profile.map(|p| profile_timers(&p.link.timers)).unwrap_or_default();
    let timers = match t.section(ck, "timers", "timers") {
        Some(tt) => timers(ck, &tt, base_timers),
        None => None,
    };
    let max_message_size = t.opt(ck, "max_message_size", 16 * MIB, size_in(KIB, GIB));
    let hl7 = match t.table(ck, "hl7", "hl7") {
        Got::Valid(h) => {
            if from_profile.is_none() && matches!(profile, Some(None)) {
                if let Some(v) = t.val("hl7") {
                    v.invalid(
                        ck,
                        "results become HL7 through the instrument's test-code map: give the source a profile \
                         (profile = \"horiba-yumizen-h500\", or profile_file) too"
                            .to_string(),
                    );
                }
                None
            } else {
                hl7(ck, &h).map(Some)
            }
        }
        Got::Invalid => None,
        Got::Absent => Some(None),
    };
    let download_orders = t.opt(ck, "download_orders", false, boolean);

    let transport = match (serial, listen, connect) {
        (Got::Valid(s), Got::Absent, Got::Absent) => s.map(AstmTransport::Serial),
        (Got::Absent, Got::Valid(a), Got::Absent) => Some(AstmTransport::TcpListen(a)),
        (Got::Absent, Got::Absent, Got::Valid(c)) => Some(AstmTransport::TcpConnect(c)),
        (Got::Absent, Got::Absent, Got::Absent) => {
            t.missing(
                ck,
                "serial",
                "serial = { port = \"/dev/serial/by-id/usb-FTDI_...-port0\", baud = 9600 }, or tcp_listen = \"0.0.0.0:5100\", or tcp_connect = \"10.0.0.9:5100\"",
            );
            None
        }
        (s, l, c) => {
            let given = [
                (matches!(s, Got::Valid(_) | Got::Invalid), "serial"),
                (!matches!(l, Got::Absent), "tcp_listen"),
                (!matches!(c, Got::Absent), "tcp_connect"),
            ];
            let names: Vec<&str> = given.iter().filter(|(g, _)| *g).map(|(_, n)| *n).collect();
            if names.len() > 1
                && let Some(v) = t.val(names[1])
            {
                v.invalid(
                    ck,
                    format!(
                        "an instrument link is one of serial, tcp_listen or tcp_connect; this source has {}: keep one",
                        names.join(" and ")
                    ),
                );
            }
            None
        }
    };
    Some(SourceKind::Astm(AstmSource {
        transport: transport?,
        profile: profile?,
        quirks: quirks?,
        timers: timers?,
        max_message_size: usize::try_from(max_message_size?).ok()?,
        hl7: hl7?,
        download_orders: download_orders?,
    }))
}

/// `hl7 = { sending_application = "HEMATOLOGY", receiving_application = "EHR", ... }`.
fn hl7(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Hl7Results> {
    let sending_application = t.opt(ck, "sending_application", "outpost".to_string(), string);
    let sending_facility = t.opt(ck, "sending_facility", String::new(), string);
    let receiving_application = t.opt(ck, "receiving_application", String::new(), string);
    let receiving_facility = t.opt(ck, "receiving_facility", String::new(), string);
    t.finish(ck, &[]);
    Some(Hl7Results {
        sending_application: sending_application?,
        sending_facility: sending_facility?,
        receiving_application: receiving_application?,
        receiving_facility: receiving_facility?,
    })
}

/// A profile's timer overrides on E1381's values.
fn profile_timers(p: &crate::instrument::Timers) -> Timers {
    let d = Timers::default();
    Timers {
        reply: p.reply_timeout.unwrap_or(d.reply),
        receive: p.receive_timeout.unwrap_or(d.receive),
        contention: p.contention_wait.unwrap_or(d.contention),
        retry: p.busy_wait.unwrap_or(d.retry),
        interrupt: d.interrupt,
    }
}

/// The port's settings: what the source gives, else what its profile gives, else 9600 8N1.
pub(super) fn serial(ck: &mut Checker, t: &Tbl<'_, '_>, profile: Option<&SerialDefaults>) -> Option<Settings> {
    let port = t.req(ck, "port", "port = \"/dev/serial/by-id/usb-FTDI_FT232R_A10K1234-if00-port0\"", path);
    let baud = t.opt(ck, "baud", profile.map_or(9600, |p| u64::from(p.baud)), count_in(50, 4_000_000));
    let data_bits = t.opt(ck, "data_bits", profile.map_or(DataBits::Eight, |p| p.data_bits), |ck, v| {
        match count_in(7, 8)(ck, v)? {
            7 => Some(DataBits::Seven),
            _ => Some(DataBits::Eight),
        }
    });
    let parity = t.opt(
        ck,
        "parity",
        profile.map_or(Parity::None, |p| p.parity),
        choice(&[("none", Parity::None), ("even", Parity::Even), ("odd", Parity::Odd)], "parity"),
    );
    let stop_bits =
        t.opt(ck, "stop_bits", profile.map_or(StopBits::One, |p| p.stop_bits), |ck, v| match count_in(1, 2)(ck, v)? {
            2 => Some(StopBits::Two),
            _ => Some(StopBits::One),
        });
    let flow_control = t.opt(
        ck,
        "flow_control",
        profile.map_or(FlowControl::None, |p| p.flow_control),
        choice(
            &[("none", FlowControl::None), ("rts_cts", FlowControl::RtsCts), ("xon_xoff", FlowControl::XonXoff)],
            "flow control",
        ),
    );
    t.finish(ck, &[]);
    Some(Settings {
        port: port?,
        baud: u32::try_from(baud?).ok()?,
        data_bits: data_bits?,
        parity: parity?,
        stop_bits: stop_bits?,
        flow_control: flow_control?,
    })
}

fn timers(ck: &mut Checker, t: &Tbl<'_, '_>, d: Timers) -> Option<Timers> {
    let reply = t.opt(ck, "reply", d.reply, duration(false));
    let receive = t.opt(ck, "receive", d.receive, duration(false));
    let contention = t.opt(ck, "contention", d.contention, duration(false));
    let retry = t.opt(ck, "retry", d.retry, duration(false));
    let interrupt = t.opt(ck, "interrupt", d.interrupt, duration(false));
    t.finish(ck, &[]);
    Some(Timers { reply: reply?, receive: receive?, contention: contention?, retry: retry?, interrupt: interrupt? })
}

/// `quirks = ["lf_only", "no_etx"]`: the switches by name.
pub(crate) fn quirk_list(ck: &mut Checker, v: &Val<'_, '_>) -> Option<Quirks> {
    let DeValue::Array(items) = v.value else {
        v.wrong_type(
            ck,
            "a list of quirk names",
            &format!("; e.g. [\"lf_only\"]; the names are {}", QUIRKS.join(", ")),
        );
        return None;
    };
    let mut quirks = Quirks::default();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let iv = Val { value: item.get_ref(), span: item.span(), path: format!("{}[{i}]", v.path) };
        let Some(name) = string(ck, &iv) else {
            ok = false;
            continue;
        };
        if !set_quirk(&mut quirks, &name) {
            let near = crate::suggest::closest(&name, QUIRKS.iter().copied())
                .map(|k| format!("did you mean {k:?}? "))
                .unwrap_or_default();
            iv.invalid(ck, format!("unknown quirk {name:?}; {near}the quirks are {}", QUIRKS.join(", ")));
            ok = false;
        }
    }
    if quirks.line_end == LineEnd::CrCr
        && items.iter().any(|i| matches!(i.get_ref(), DeValue::String(s) if s.as_ref() == "lf_only"))
    {
        v.invalid(ck, "lf_only and cr_cr are two different line ends; keep the one the instrument sends".to_string());
        ok = false;
    }
    ok.then_some(quirks)
}

/// Turns on the quirk `name`; false for a name that is none.
pub fn set_quirk(quirks: &mut Quirks, name: &str) -> bool {
    match name {
        "no_frame_numbers" => quirks.no_frame_numbers = true,
        "lf_only" => quirks.line_end = LineEnd::Lf,
        "cr_cr" => quirks.line_end = LineEnd::CrCr,
        "no_cr_before_etx" => quirks.missing_cr_before_etx = true,
        "no_etx" => quirks.no_etx = true,
        "long_frames" => quirks.long_frames = true,
        "send_packed" => quirks.send_packed = true,
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::config::{AstmTransport, Config, SourceKind};

    fn parse(source: &str) -> Result<Config, String> {
        let toml = format!(
            "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/tmp/x\"\n[[source]]\nname = \"lab\"\nkind = \"astm\"\n{source}\n"
        );
        Config::parse(&toml, "t").map_err(|e| e.to_string())
    }

    fn astm(c: &Config) -> &crate::config::AstmSource {
        match &c.sources[0].kind {
            SourceKind::Astm(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_serial_link_with_defaults_and_with_every_setting() {
        let c = parse("serial = { port = \"/dev/ttyUSB0\" }").unwrap();
        let AstmTransport::Serial(s) = &astm(&c).transport else { panic!() };
        assert_eq!((s.port.to_str(), s.line()), (Some("/dev/ttyUSB0"), "9600 8N1".to_string()));
        let c = parse(
            "serial = { port = \"/dev/ttyS0\", baud = 2400, data_bits = 7, parity = \"even\", stop_bits = 2, flow_control = \"rts_cts\" }\nquirks = [\"lf_only\", \"no_etx\"]\ntimers = { receive = \"45s\" }",
        )
        .unwrap();
        let a = astm(&c);
        let AstmTransport::Serial(s) = &a.transport else { panic!() };
        assert_eq!(s.line(), "2400 7E2 rts/cts");
        assert!(a.quirks.no_etx && a.quirks.line_end == crate::astm::LineEnd::Lf);
        assert_eq!(a.timers.receive, std::time::Duration::from_secs(45));
        assert_eq!(a.timers.reply, std::time::Duration::from_secs(15));
    }

    #[test]
    fn a_profile_gives_line_settings_and_quirks_the_source_may_override() {
        let c = parse("profile = \"horiba-yumizen-h500\"\nserial = { port = \"/dev/ttyUSB0\" }").unwrap();
        let a = astm(&c);
        assert_eq!(a.profile.as_ref().map(|p| p.id.as_str()), Some("horiba-yumizen-h500"));
        let c = parse("profile = \"horiba-yumizen-h500\"\nserial = { port = \"/dev/ttyUSB0\", baud = 19200 }").unwrap();
        let AstmTransport::Serial(s) = &astm(&c).transport else { panic!() };
        assert_eq!(s.baud, 19200);
        let e = parse("profile = \"horiba-yumizen-h5000\"\ntcp_listen = \"0.0.0.0:5100\"").unwrap_err();
        assert!(e.contains("horiba-yumizen-h500"), "the known names are listed: {e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.toml");
        std::fs::write(&file, "name = \"x\"\n").unwrap();
        let e = parse(&format!("profile_file = {:?}\ntcp_listen = \"0.0.0.0:5100\"", file.display().to_string()))
            .unwrap_err();
        assert!(e.contains("mine.toml"), "{e}");
    }

    #[test]
    fn tcp_either_way() {
        let c = parse("tcp_listen = \"0.0.0.0:5100\"").unwrap();
        assert!(matches!(astm(&c).transport, AstmTransport::TcpListen(a) if a.port() == 5100));
        let c = parse("tcp_connect = \"10.0.0.9:5100\"").unwrap();
        assert!(matches!(&astm(&c).transport, AstmTransport::TcpConnect(a) if a == "10.0.0.9:5100"));
    }

    #[test]
    fn mistakes_are_named_with_the_fix() {
        let e = parse("").unwrap_err();
        assert!(e.contains("tcp_listen") && e.contains("serial"), "{e}");
        let e = parse("serial = { port = \"/dev/ttyS0\" }\ntcp_listen = \"0.0.0.0:5100\"").unwrap_err();
        assert!(e.contains("keep one"), "{e}");
        let e = parse("serial = { port = \"/dev/ttyS0\", parity = \"mark\" }").unwrap_err();
        assert!(e.contains("\"none\" or \"even\" or \"odd\""), "{e}");
        let e = parse("serial = { port = \"/dev/ttyS0\", bauds = 9600 }").unwrap_err();
        assert!(e.contains("did you mean \"baud\""), "{e}");
        let e = parse("tcp_listen = \"0.0.0.0:5100\"\nquirks = [\"lf-only\"]").unwrap_err();
        assert!(e.contains("did you mean \"lf_only\""), "{e}");
        let e = parse("tcp_listen = \"0.0.0.0:5100\"\nlisten = \"0.0.0.0:2575\"").unwrap_err();
        assert!(e.contains("only applies to kind = \"mllp\" sources"), "{e}");
    }

    #[test]
    fn results_as_hl7_need_a_profile_and_take_the_header_fields() {
        let c = parse(
            "profile = \"horiba-yumizen-h500\"\ntcp_listen = \"0.0.0.0:5100\"\nhl7 = { sending_application = \"H500\", receiving_application = \"EHR\", receiving_facility = \"CLINIC\" }",
        )
        .unwrap();
        let h = astm(&c).hl7.clone().unwrap();
        assert_eq!(
            (h.sending_application.as_str(), h.sending_facility.as_str(), h.receiving_application.as_str()),
            ("H500", "", "EHR")
        );
        assert_eq!(c.sources[0].kind.payloads(), [crate::envelope::Kind::Astm, crate::envelope::Kind::Hl7v2]);
        let c = parse("profile = \"horiba-yumizen-h500\"\ntcp_listen = \"0.0.0.0:5100\"\nhl7 = {}").unwrap();
        assert_eq!(astm(&c).hl7.as_ref().map(|h| h.sending_application.as_str()), Some("outpost"));
        let e = parse("tcp_listen = \"0.0.0.0:5100\"\nhl7 = {}").unwrap_err();
        assert!(e.contains("give the source a profile"), "{e}");
        let e = parse("profile = \"horiba-yumizen-h500\"\ntcp_listen = \"0.0.0.0:5100\"\nhl7 = { sender = \"x\" }")
            .unwrap_err();
        assert!(e.contains("sender"), "unknown keys are reported: {e}");
    }

    #[test]
    fn a_route_narrowed_to_hl7_by_its_conditions_may_send_a_lab_links_results_over_mllp() {
        let base = "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/tmp/x\"\n\
                    [[source]]\nname = \"lab\"\nkind = \"astm\"\nprofile = \"horiba-yumizen-h500\"\n\
                    tcp_listen = \"127.0.0.1:0\"\nhl7 = {}\n\
                    [[destination]]\nname = \"ehr\"\nkind = \"mllp\"\nconnect = \"127.0.0.1:2575\"\n\
                    [[route]]\nname = \"results\"\nfrom = [\"lab\"]\nto = [\"ehr\"]\n";
        let e = Config::parse(base, "t").unwrap_err().to_string();
        assert!(e.contains("can send it ASTM items"), "{e}");
        let narrowed = format!("{base}when = {{ \"MSH-9.1\" = \"ORU\" }}\n");
        Config::parse(&narrowed, "t").unwrap();
    }
}
