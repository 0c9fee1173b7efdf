//! `outpost init`: a starter config for a new gateway, from flags or answers, that passes
//! `outpost config check` as written. [`render`] is pure: the answers and the serial ports
//! found go in, the config text comes out; the CLI asks, and [`write`] puts the text in place.

use crate::config::Config;
use crate::ports::Port;

/// What a starter config is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    pub site: String,
    pub node: String,
    /// `host:port` (or `0.0.0.0:2575`) the EHR's MLLP feed connects to.
    pub listen: String,
    /// `mqtts://broker.example:8883`, when the gateway reports to central.
    pub broker: Option<String>,
}

/// The config text for `answers`, with the serial ports found listed as comments (their
/// by-id paths are what lab and fax sources will name). Checked: the text parses, or the error
/// says what in the answers is wrong.
pub fn render(answers: &Answers, ports: &[Port], written_at: &str) -> Result<String, String> {
    let Answers { site, node, listen, broker } = answers;
    let mut text = format!(
        "# outpost configuration for gateway {site}/{node}, written by `outpost init` on {written_at}.\n\
         # Every key is described in docs/config.md. Check it with `outpost config check FILE`;\n\
         # after a change, `systemctl reload outpost` (a config that does not check changes nothing).\n\n\
         [node]\n\
         site = {site:?}\n\
         id = {node:?}\n\
         # state_dir: systemd's StateDirectory (/var/lib/outpost) when run as the service.\n\n\
         [control]\n\
         # Where the CLI of a tech in group outpost finds the daemon (the unit's RuntimeDirectory).\n\
         socket = \"/run/outpost/control.sock\"\n\n\
         # The EHR's HL7 feed (MLLP). Each message is acknowledged once it is in the journal.\n\
         [[source]]\n\
         name = \"ehr\"\n\
         kind = \"mllp\"\n\
         listen = {listen:?}\n\n\
         # Every item is also written to a folder (under the state directory) until real\n\
         # destinations are set up; remove it then, or keep it as an archive.\n\
         [[destination]]\n\
         name = \"archive\"\n\
         kind = \"file\"\n\
         dir = \"archive\"\n"
    );
    let mut to = vec!["archive"];
    if let Some(url) = broker {
        let tls = if url.starts_with("mqtts://") {
            "# Mutual TLS: place the files here, readable by the outpost user.\n\
             ca = \"/etc/outpost/ca.pem\"\n\
             cert = \"/etc/outpost/gateway.pem\"\n\
             key = \"/etc/outpost/gateway.key\"\n"
        } else {
            ""
        };
        text.push_str(&format!(
            "\n# Central, over MQTT (docs/mqtt.md): items are kept until central acknowledges them.\n\
             [uplink]\n\
             url = {url:?}\n\
             {tls}\n\
             [[destination]]\n\
             name = \"central\"\n\
             kind = \"uplink\"\n"
        ));
        to.push("central");
    }
    text.push_str(&format!(
        "\n[[route]]\n\
         name = \"everything\"\n\
         from = [\"*\"]\n\
         to = {to:?}\n"
    ));
    if !ports.is_empty() {
        text.push_str(
            "\n# Serial ports on this box (`outpost ports`), for lab analyzers and fax modems: use\n\
             # the by-id path in their sources so a re-plugged adapter keeps its name.\n",
        );
        for p in ports {
            let usb = p
                .usb
                .as_ref()
                .map(|u| {
                    let what =
                        [u.manufacturer.as_deref(), u.product.as_deref()].into_iter().flatten().collect::<Vec<_>>();
                    format!(
                        ", {}:{} {}{}",
                        u.vendor_id,
                        u.product_id,
                        what.join(" "),
                        u.serial.as_ref().map(|s| format!(", serial {s}")).unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            text.push_str(&format!(
                "#   {} ({}{usb})\n",
                p.by_id.as_ref().unwrap_or(&p.device).display(),
                p.driver.as_deref().unwrap_or("no driver"),
            ));
        }
    }
    Config::parse(&text, "the new config").map_err(|e| e.to_string().trim_end().to_string())?;
    Ok(text)
}

/// True when `text` has a line that is neither blank nor a comment: the package's placeholder
/// (`/etc/outpost/outpost.toml`, comments only) holds no config, so `init` may replace it.
pub fn holds_config(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Writes the config in place: see [`crate::atomic_file::replace`].
pub fn write(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    crate::atomic_file::replace(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_comments_holds_no_config() {
        assert!(!holds_config("# outpost is not configured yet\n\n  # [node]\n"));
        assert!(!holds_config(""));
        assert!(holds_config("# a site\n[node]\n"));
    }

    fn answers(broker: Option<&str>) -> Answers {
        Answers {
            site: "northfield".into(),
            node: "gw-01".into(),
            listen: "0.0.0.0:2575".into(),
            broker: broker.map(String::from),
        }
    }

    #[test]
    fn a_starter_config_checks_with_and_without_central() {
        for broker in [None, Some("mqtts://central.example:8883"), Some("mqtt://10.0.0.9:1883")] {
            let text = render(&answers(broker), &[], "2026-11-29").unwrap();
            let config = Config::parse(&text, "t").unwrap();
            assert_eq!((config.node.site.as_str(), config.node.id.as_str()), ("northfield", "gw-01"));
            assert_eq!(config.uplink.is_some(), broker.is_some(), "{text}");
            assert_eq!(config.routes[0].to.len(), if broker.is_some() { 2 } else { 1 });
        }
    }

    #[test]
    fn ports_found_are_listed_with_their_by_id_path() {
        let port = Port {
            device: "/dev/ttyUSB0".into(),
            by_id: Some("/dev/serial/by-id/usb-FTDI_FT232R_A50285BI-if00-port0".into()),
            driver: Some("ftdi_sio".into()),
            usb: Some(crate::ports::Usb {
                vendor_id: "0403".into(),
                product_id: "6001".into(),
                manufacturer: Some("FTDI".into()),
                product: Some("FT232R".into()),
                serial: Some("A50285BI".into()),
            }),
            accessible: true,
        };
        let text = render(&answers(None), &[port], "2026-11-29").unwrap();
        assert!(text.contains("#   /dev/serial/by-id/usb-FTDI_FT232R_A50285BI-if00-port0 (ftdi_sio, 0403:6001 FTDI FT232R, serial A50285BI)"), "{text}");
    }

    #[test]
    fn answers_a_config_cannot_hold_are_refused_with_the_reason() {
        let mut bad = answers(None);
        bad.site = "north field".into();
        let err = render(&bad, &[], "2026-11-29").unwrap_err();
        assert!(err.contains("node.site"), "{err}");
        let mut bad = answers(None);
        bad.listen = "everywhere".into();
        assert!(render(&bad, &[], "x").unwrap_err().contains("listen"));
    }
}
