//! `[orders]`: the order cache (`src/orders/`). Which HL7 sources' order messages fill it,
//! where a specimen id is found in them, how long an order is kept.

use toml::de::DeValue;

use super::error::ConfigErrorKind;
use super::values::{duration, field_path, secs, string};
use super::walk::{Checker, Tbl, Val, closest};
use super::{Orders, Source};
use crate::hl7::FieldPath;

/// The `[orders]` table (or an empty one). `from` is checked against every source name given;
/// absent, it is resolved once the sources are known ([`resolve`]).
pub(super) fn orders(ck: &mut Checker, t: &Tbl<'_, '_>, known: &[String]) -> Option<Orders> {
    let from = match t.val("from") {
        None => Some(None),
        Some(v) => source_names(ck, &v, known).map(Some),
    };
    let specimen_id = t.opt(ck, "specimen_id", crate::orders::default_specimen_paths(), paths);
    let keep = t.opt(ck, "keep", secs(7 * 86_400), duration(false));
    t.finish(ck, &[]);
    let from = from?;
    Some(Orders { from_given: from.is_some(), from: from.unwrap_or_default(), specimen_id: specimen_id?, keep: keep? })
}

/// `from` left out means every MLLP source; given, each must be a source of HL7 items.
pub(super) fn resolve(ck: &mut Checker, t: &Tbl<'_, '_>, orders: &mut Orders, sources: &[Option<Source>]) {
    if !orders.from_given {
        orders.from =
            sources.iter().flatten().filter(|s| s.kind.feeds_orders_by_default()).map(|s| s.name.clone()).collect();
        return;
    }
    let Some(v) = t.val("from") else { return };
    let DeValue::Array(items) = v.value else { return };
    for (i, item) in items.iter().enumerate() {
        let DeValue::String(name) = item.get_ref() else { continue };
        let Some(source) = sources.iter().flatten().find(|s| s.name == name.as_ref()) else { continue };
        if !source.kind.payloads().contains(&crate::envelope::Kind::Hl7v2) {
            ck.report(
                ConfigErrorKind::InvalidValue,
                &item.span(),
                &format!("{}[{i}]", v.path),
                format!(
                    "source {name:?} sends no HL7 messages, so it has no orders to cache; list the EHR's \
                     HL7 sources (kind = \"mllp\" or \"directory\")"
                ),
            );
        }
    }
}

/// A list of source names; empty turns the cache off.
fn source_names(ck: &mut Checker, v: &Val<'_, '_>, known: &[String]) -> Option<Vec<String>> {
    let DeValue::Array(items) = v.value else {
        let hint = match v.value {
            DeValue::String(s) => format!("; write it as a list: [{s:?}]"),
            _ => ", e.g. [\"ehr\"] (or [] to cache no orders)".to_string(),
        };
        v.wrong_type(ck, "a list of source names", &hint);
        return None;
    };
    let mut ok = true;
    let mut names = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let iv = Val { value: item.get_ref(), span: item.span(), path: format!("{}[{i}]", v.path) };
        let Some(name) = string(ck, &iv) else {
            ok = false;
            continue;
        };
        if names.contains(&name) {
            iv.invalid(ck, format!("{name:?} is listed twice; remove one"));
            ok = false;
        } else if !known.contains(&name) {
            let hint = match closest(&name, known.iter().map(String::as_str)) {
                Some(near) => format!("did you mean {near:?}?"),
                None if known.is_empty() => "this file defines no [[source]] yet".to_string(),
                None => format!("the sources defined in this file are: {}", known.join(", ")),
            };
            ck.report(
                ConfigErrorKind::UnknownName,
                &iv.span,
                &iv.path,
                format!("there is no source named {name:?}; {hint}"),
            );
            ok = false;
        }
        names.push(name);
    }
    ok.then_some(names)
}

/// Field paths, the first non-empty of which is the specimen id.
fn paths(ck: &mut Checker, v: &Val<'_, '_>) -> Option<Vec<FieldPath>> {
    let DeValue::Array(items) = v.value else {
        v.wrong_type(ck, "a list of HL7 field paths", ", e.g. [\"SPM-2.1\", \"OBR-3.1\", \"OBR-2.1\"]");
        return None;
    };
    if items.is_empty() {
        v.invalid(ck, "give at least one place for the specimen id, e.g. [\"OBR-3.1\"]".to_string());
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let iv = Val { value: item.get_ref(), span: item.span(), path: format!("{}[{i}]", v.path) };
        match field_path(ck, &iv) {
            Some(p) => out.push(p),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/tmp/x\"\n\
        [[source]]\nname = \"ehr\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:0\"\n\
        [[source]]\nname = \"ehr2\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:0\"\n\
        [[source]]\nname = \"lab\"\nkind = \"astm\"\ntcp_listen = \"127.0.0.1:0\"\ndownload_orders = true\n";

    #[test]
    fn defaults_take_orders_from_every_mllp_source() {
        let c = Config::parse(BASE, "t").unwrap();
        assert_eq!(c.orders.from, ["ehr", "ehr2"]);
        let paths: Vec<String> = c.orders.specimen_id.iter().map(|p| p.to_string()).collect();
        assert_eq!(paths, ["SPM-2.1", "OBR-3.1", "OBR-2.1"]);
        assert_eq!(c.orders.keep, std::time::Duration::from_secs(7 * 86_400));
        assert_eq!(c.order_download_sources(), ["lab"]);
        let c = Config::parse(
            &format!("{BASE}[orders]\nfrom = [\"ehr2\"]\nspecimen_id = [\"OBR-20\"]\nkeep = \"2d\"\n"),
            "t",
        )
        .unwrap();
        assert_eq!(c.orders.from, ["ehr2"]);
        assert_eq!(c.orders.specimen_id[0].to_string(), "OBR-20");
        assert_eq!(c.orders.keep, std::time::Duration::from_secs(2 * 86_400));
        let c = Config::parse(&format!("{BASE}[orders]\nfrom = []\n"), "t").unwrap();
        assert!(c.orders.from.is_empty(), "an empty list turns the cache off");
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let e = Config::parse(
            &format!(
                "{BASE}[orders]\nfrom = [\"ehrr\", \"lab\"]\nspecimen_id = [\"obr-3\"]\nkeep = \"0s\"\ncolour = 1\n"
            ),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t:19:") && e.contains("no source named \"ehrr\"; did you mean \"ehr\"?"), "{e}");
        assert!(e.contains("t:20:") && e.contains("PID-3.1"), "{e}");
        assert!(e.contains("t:21:") && e.contains("above zero"), "{e}");
        assert!(e.contains("unknown key \"colour\""), "{e}");
        let e = Config::parse(&format!("{BASE}[orders]\nfrom = [\"lab\"]\n"), "t").unwrap_err().to_string();
        assert!(e.contains("t:19:") && e.contains("sends no HL7 messages"), "{e}");
        let e = Config::parse(&format!("{BASE}[orders]\nfrom = \"ehr\"\n"), "t").unwrap_err().to_string();
        assert!(e.contains("write it as a list: [\"ehr\"]"), "{e}");
    }
}
