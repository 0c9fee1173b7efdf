//! `kind = "fax-modem"` (a Class 2 / 2.0 fax modem on a serial port, `ingress/fax_modem.rs`)
//! and `kind = "fax-spool"` (faxes HylaFAX or mgetty received, from their spool folder,
//! `ingress/fax_spool.rs`) sources.

use std::path::Path;

use crate::config::values::{GIB, KIB, MIB, boolean, choice, count_in, duration, path, secs, size_in, string};
use crate::config::walk::{Checker, Got, Tbl, Val};
use crate::config::{FaxModemSource, FaxSpoolSource, SourceKind, SpoolFormat};
use crate::fax::codes::ModemClass;
use crate::fax::modem::{BitOrder, ClassChoice, Config as ModemConfig, PageWidth, Timers};
use crate::instrument::SerialDefaults;
use crate::serial::{DataBits, FlowControl, Parity, StopBits};

/// A fax modem's line unless the source says otherwise: 115200 8N1 with RTS/CTS, what USB and
/// most external Class 2 modems take (the modem adapts its DTE rate to the `AT` it hears).
const MODEM_LINE: SerialDefaults = SerialDefaults {
    baud: 115_200,
    data_bits: DataBits::Eight,
    parity: Parity::None,
    stop_bits: StopBits::One,
    flow_control: FlowControl::RtsCts,
};

pub(super) fn read_modem(ck: &mut Checker, t: &Tbl<'_, '_>, _state_dir: &Path) -> Option<SourceKind> {
    let serial = match t.table(ck, "serial", "serial") {
        Got::Valid(s) => super::astm::serial(ck, &s, Some(&MODEM_LINE)),
        Got::Invalid => None,
        Got::Absent => {
            t.missing(ck, "serial", "serial = { port = \"/dev/serial/by-id/usb-Conexant_USB_Modem-if00\" }");
            None
        }
    };
    let d = ModemConfig::default();
    let class = t.opt(
        ck,
        "class",
        d.class,
        choice(
            &[
                ("auto", ClassChoice::Auto),
                ("2", ClassChoice::Force(ModemClass::Class2)),
                ("2.0", ClassChoice::Force(ModemClass::Class20)),
            ],
            "fax class",
        ),
    );
    let rings = t.opt(ck, "rings", u64::from(d.rings), count_in(1, 20));
    let local_id = t.opt(ck, "local_id", d.local_id.clone(), local_id);
    let fine = t.opt(ck, "fine", d.fine, boolean);
    let max_bit_rate = t.opt(ck, "max_bit_rate", u64::from(d.max_bit_rate), |ck, v| {
        let n = count_in(2400, 14_400)(ck, v)?;
        if n % 2400 != 0 {
            v.invalid(ck, format!("{n} is not a fax bit rate; use 2400, 4800, 7200, 9600, 12000 or 14400"));
            return None;
        }
        Some(n)
    });
    let max_width = t.opt(
        ck,
        "max_width",
        d.max_width,
        choice(&[("a4", PageWidth::A4), ("b4", PageWidth::B4), ("a3", PageWidth::A3)], "page width"),
    );
    let data_trigger =
        t.opt(ck, "data_trigger", d.data_trigger, choice(&[("dc2", None), ("dc1", Some(0x11u8))], "data trigger"));
    let bit_order = t.opt(
        ck,
        "bit_order",
        d.bit_order,
        choice(
            &[("class", None), ("lsb_first", Some(BitOrder::LsbFirst)), ("msb_first", Some(BitOrder::MsbFirst))],
            "bit order",
        ),
    );
    let page_status_radix = t.opt(
        ck,
        "page_status",
        d.page_status_radix,
        choice(&[("class", None), ("hex", Some(16u32)), ("decimal", Some(10))], "page status number base"),
    );
    let timers = match t.section(ck, "timers", "timers") {
        Some(tt) => modem_timers(ck, &tt, d.timers),
        None => Some(d.timers),
    };
    let max_fax_size = t.opt(ck, "max_fax_size", 64 * MIB, size_in(MIB, GIB));
    let serial = serial?;
    // The flow control the modem is told to use during a call follows the port's.
    let flow_control = match serial.flow_control {
        FlowControl::RtsCts => crate::fax::modem::FlowControl::Hardware,
        FlowControl::XonXoff => crate::fax::modem::FlowControl::Software,
        FlowControl::None => crate::fax::modem::FlowControl::Off,
    };
    Some(SourceKind::FaxModem(FaxModemSource {
        serial,
        modem: ModemConfig {
            class: class?,
            local_id: local_id?,
            rings: u8::try_from(rings?).ok()?,
            fine: fine?,
            max_bit_rate: u32::try_from(max_bit_rate?).ok()?,
            max_width: max_width?,
            flow_control,
            data_trigger: data_trigger?,
            bit_order: bit_order?,
            page_status_radix: page_status_radix?,
            timers: timers?,
        },
        max_fax_size: max_fax_size?,
    }))
}

/// T.30's station id: at most 20 characters, digits, `+` and spaces by the standard (modems
/// take other printable ASCII; outpost allows it but no control characters or quotes).
fn local_id(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    if s.chars().count() > 20 {
        v.invalid(ck, format!("{s:?} is longer than the 20 characters a fax station id may have"));
        return None;
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii() || c.is_ascii_control() || *c == '"') {
        v.invalid(ck, format!("{s:?} has {c:?}, which a modem cannot send as a station id; use digits, + and spaces"));
        return None;
    }
    Some(s)
}

fn modem_timers(ck: &mut Checker, t: &Tbl<'_, '_>, d: Timers) -> Option<Timers> {
    let command = t.opt(ck, "command", d.command, duration(false));
    let answer = t.opt(ck, "answer", d.answer, duration(false));
    let page_start = t.opt(ck, "page_start", d.page_start, duration(false));
    let page_data = t.opt(ck, "page_data", d.page_data, duration(false));
    let post_page = t.opt(ck, "post_page", d.post_page, duration(false));
    let ring_gap = t.opt(ck, "ring_gap", d.ring_gap, duration(false));
    let health = t.opt(ck, "health", d.health, duration(false));
    t.finish(ck, &[]);
    Some(Timers {
        command: command?,
        answer: answer?,
        page_start: page_start?,
        page_data: page_data?,
        post_page: post_page?,
        ring_gap: ring_gap?,
        health: health?,
    })
}

pub(super) fn read_spool(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<SourceKind> {
    let dir = t.req(ck, "dir", "dir = \"/var/spool/hylafax/recvq\"", |ck, v| path(ck, v).map(|p| state_dir.join(p)));
    let format = t.opt(
        ck,
        "format",
        SpoolFormat::Hylafax,
        choice(&[("hylafax", SpoolFormat::Hylafax), ("mgetty", SpoolFormat::Mgetty)], "spool format"),
    );
    // mgetty writes a call's pages one file after another, seconds apart: a call is complete
    // once none of its pages changed for longer than that. HylaFAX locks a fax while receiving.
    let default_settle = match format {
        Some(SpoolFormat::Mgetty) => secs(30),
        _ => secs(5),
    };
    let settle = t.opt(ck, "settle", default_settle, duration(true));
    let rescan = t.opt(ck, "rescan", secs(30), duration(false));
    let retry_after = t.opt(ck, "retry_after", secs(60), duration(false));
    let max_fax_size = t.opt(ck, "max_fax_size", 64 * MIB, size_in(KIB, GIB));
    Some(SourceKind::FaxSpool(FaxSpoolSource {
        dir: dir?,
        format: format?,
        settle: settle?,
        rescan: rescan?,
        retry_after: retry_after?,
        max_fax_size: max_fax_size?,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, SourceKind, SpoolFormat};
    use crate::fax::codes::ModemClass;
    use crate::fax::modem::ClassChoice;

    fn parse(kind: &str, source: &str) -> Result<Config, String> {
        let toml = format!(
            "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/srv/x\"\n[[source]]\nname = \"fax\"\nkind = \"{kind}\"\n{source}\n"
        );
        Config::parse(&toml, "t").map_err(|e| e.to_string())
    }

    #[test]
    fn a_modem_with_defaults_and_with_every_setting() {
        let c = parse("fax-modem", "serial = { port = \"/dev/ttyACM0\" }").unwrap();
        let SourceKind::FaxModem(m) = &c.sources[0].kind else { panic!() };
        assert_eq!(m.serial.line(), "115200 8N1 rts/cts");
        assert_eq!((m.modem.class, m.modem.rings, m.modem.fine), (ClassChoice::Auto, 1, true));
        assert_eq!(m.modem.flow_control, crate::fax::modem::FlowControl::Hardware);
        let c = parse(
            "fax-modem",
            "serial = { port = \"/dev/ttyS1\", baud = 38400, flow_control = \"xon_xoff\" }\nclass = \"2\"\nrings = 3\n\
             local_id = \"+1 507 555 0100\"\nfine = false\nmax_bit_rate = 9600\ndata_trigger = \"dc1\"\n\
             bit_order = \"lsb_first\"\npage_status = \"decimal\"\ntimers = { page_data = \"90s\" }\nmax_fax_size = \"8MiB\"",
        )
        .unwrap();
        let SourceKind::FaxModem(m) = &c.sources[0].kind else { panic!() };
        assert_eq!(m.modem.class, ClassChoice::Force(ModemClass::Class2));
        assert_eq!((m.modem.rings, m.modem.local_id.as_str(), m.modem.max_bit_rate), (3, "+1 507 555 0100", 9600));
        assert_eq!((m.modem.data_trigger, m.modem.page_status_radix), (Some(0x11), Some(10)));
        assert_eq!(m.modem.flow_control, crate::fax::modem::FlowControl::Software);
        assert_eq!(m.modem.timers.page_data, std::time::Duration::from_secs(90));
        assert_eq!(m.max_fax_size, 8 << 20);
    }

    #[test]
    fn modem_mistakes_say_what_to_write() {
        let e = parse("fax-modem", "").unwrap_err();
        assert!(e.contains("serial = { port"), "{e}");
        let e = parse("fax-modem", "serial = { port = \"/dev/ttyS1\" }\nclass = \"1\"").unwrap_err();
        assert!(e.contains("\"auto\" or \"2\" or \"2.0\""), "{e}");
        let e = parse("fax-modem", "serial = { port = \"/dev/ttyS1\" }\nlocal_id = \"+1 507 555 0100 ext 12345\"")
            .unwrap_err();
        assert!(e.contains("20 characters"), "{e}");
        let e = parse("fax-modem", "serial = { port = \"/dev/ttyS1\" }\nmax_bit_rate = 10000").unwrap_err();
        assert!(e.contains("not a fax bit rate"), "{e}");
        let e = parse("fax-modem", "serial = { port = \"/dev/ttyS1\" }\ndir = \"/tmp\"").unwrap_err();
        assert!(e.contains("dir"), "a key of another kind: {e}");
    }

    #[test]
    fn a_spool_of_either_format() {
        let c = parse("fax-spool", "dir = \"/var/spool/hylafax/recvq\"").unwrap();
        let SourceKind::FaxSpool(s) = &c.sources[0].kind else { panic!() };
        assert_eq!((s.format, s.dir.to_str()), (SpoolFormat::Hylafax, Some("/var/spool/hylafax/recvq")));
        let c = parse("fax-spool", "dir = \"incoming\"\nformat = \"mgetty\"\nsettle = \"10s\"").unwrap();
        let SourceKind::FaxSpool(s) = &c.sources[0].kind else { panic!() };
        assert_eq!((s.format, s.dir.to_str()), (SpoolFormat::Mgetty, Some("/srv/x/incoming")));
        let e = parse("fax-spool", "").unwrap_err();
        assert!(e.contains("dir = "), "{e}");
        let e = parse("fax-spool", "dir = \"x\"\nformat = \"efax\"").unwrap_err();
        assert!(e.contains("\"hylafax\" or \"mgetty\""), "{e}");
    }
}
