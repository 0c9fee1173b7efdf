//! `[[route]]` blocks: which sources a route takes items from, the conditions they must meet
//! (`condition.rs`), and the destinations it sends them to. Names are checked against every name
//! the file gives, so a route never names a source or destination that does not exist.

use toml::de::DeValue;

use super::condition::conditions;
use super::error::ConfigErrorKind;
use super::values::string;
use super::walk::{Checker, Got, Tbl, Val, closest};
use super::{Destination, Route, Source, transform_kinds};
use crate::envelope::Kind;

pub(super) fn route(
    ck: &mut Checker,
    t: &Tbl<'_, '_>,
    name: Option<String>,
    sources: &[String],
    destinations: &[String],
) -> Option<Route> {
    let from = t.req(ck, "from", "from = [\"ehr-feed\"] (or [\"*\"] for every source)", |ck, v| {
        name_list(ck, v, "source", sources, true)
    });
    let when = match t.table(ck, "when", "when") {
        Got::Absent => Some(Vec::new()),
        Got::Invalid => None,
        Got::Valid(w) => conditions(ck, &w),
    };
    let to = t.req(ck, "to", "to = [\"lis\"]", |ck, v| name_list(ck, v, "destination", destinations, false));
    t.finish(ck, &[]);
    Some(Route { name: name?, from: from?, when: when?, to: to? })
}

/// A route's `from` or `to`: a non-empty list of known, distinct names. In `from`, `"*"` alone
/// stands for every source and is expanded here, so the router never sees it.
pub(super) fn name_list(
    ck: &mut Checker,
    v: &Val<'_, '_>,
    what: &str,
    known: &[String],
    star: bool,
) -> Option<Vec<String>> {
    let example = if star { "[\"ehr-feed\"]" } else { "[\"lis\", \"archive\"]" };
    let DeValue::Array(items) = v.value else {
        let hint = match v.value {
            DeValue::String(s) => format!("; write it as a list: [{s:?}]"),
            _ => format!(", e.g. {example}"),
        };
        v.wrong_type(ck, &format!("a list of {what} names"), &hint);
        return None;
    };
    if items.is_empty() {
        let more = if star { " (or [\"*\"] for every source)" } else { "" };
        ck.report(
            ConfigErrorKind::MissingKey,
            &v.span,
            &v.path,
            format!("a route needs at least one {what}; list them, e.g. {example}{more}"),
        );
        return None;
    }
    let mut ok = true;
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    let mut seen: Vec<&str> = Vec::with_capacity(items.len());
    let mut has_star = false;
    for (i, item) in items.iter().enumerate() {
        let iv = Val { value: item.get_ref(), span: item.span(), path: format!("{}[{i}]", v.path) };
        let Some(name) = string(ck, &iv) else {
            ok = false;
            continue;
        };
        if seen.contains(&name.as_str()) {
            ck.report(
                ConfigErrorKind::Duplicate,
                &iv.span,
                &iv.path,
                format!("{name:?} is listed twice in this route; remove one"),
            );
            ok = false;
        } else if star && name == "*" {
            has_star = true;
        } else if !known.contains(&name) {
            let hint = match closest(&name, known.iter().map(String::as_str)) {
                Some(near) => format!("did you mean {near:?}?"),
                None if known.is_empty() => format!("this file defines no [[{what}]] yet"),
                None => format!("the {what}s defined in this file are: {}", known.join(", ")),
            };
            ck.report(
                ConfigErrorKind::UnknownName,
                &iv.span,
                &iv.path,
                format!("there is no {what} named {name:?}; {hint}"),
            );
            ok = false;
        }
        if let DeValue::String(s) = item.get_ref() {
            seen.push(s.as_ref());
        }
        names.push(name);
    }
    if has_star && items.len() > 1 {
        v.invalid(
            ck,
            "\"*\" already means every source; write from = [\"*\"] alone, or list the sources \
             by name"
                .to_string(),
        );
        return None;
    }
    if !ok {
        return None;
    }
    if has_star {
        return Some(known.to_vec());
    }
    Some(names)
}

/// Refuses a destination whose transforms do not understand a kind of item that a route can
/// send it (an HL7 transform on a destination a lab analyzer's ASTM items reach). Reported at
/// the route's `to` entry naming the destination.
pub(super) fn transforms_fit_kinds(
    ck: &mut Checker,
    tables: &[Tbl<'_, '_>],
    routes: &[Option<Route>],
    sources: &[Option<Source>],
    destinations: &[Option<Destination>],
) {
    for (t, route) in tables.iter().zip(routes) {
        let Some(route) = route else { continue };
        let mut kinds: Vec<Kind> = Vec::new();
        for s in sources.iter().flatten().filter(|s| route.from.contains(&s.name)) {
            // A condition on one kind's fields never holds for another kind's items: a route
            // with `when = { "MSH-9.1" = "ORU" }` from a lab link carries its HL7 results only.
            for k in s.kind.payloads().iter().filter(|k| route.when.iter().all(|c| c.field.kind() == **k)) {
                if !kinds.contains(k) {
                    kinds.push(*k);
                }
            }
        }
        let Some(to) = t.val("to") else { continue };
        let DeValue::Array(items) = to.value else { continue };
        for (item, name) in items.iter().zip(&route.to) {
            let Some(dest) = destinations.iter().flatten().find(|d| &d.name == name) else { continue };
            let at = format!("{}[{}]", to.path, route.to.iter().position(|n| n == name).unwrap_or(0));
            if let Some(carried) = dest.kind.carries() {
                let foreign: Vec<&str> = kinds.iter().filter(|k| !carried.contains(k)).map(|k| k.label()).collect();
                if !foreign.is_empty() {
                    ck.report(
                        ConfigErrorKind::InvalidValue,
                        &item.span(),
                        &at,
                        format!(
                            "destination {name:?} (kind = {:?}) carries only {} items, and this route can send it {} \
                             items; send those to a file or uplink destination, or narrow `from`",
                            dest.kind.name(),
                            carried.iter().map(|k| k.label()).collect::<Vec<_>>().join(" and "),
                            foreign.join(" and ")
                        ),
                    );
                    continue;
                }
            }
            let understood: Vec<&[Kind]> = dest.transforms.iter().map(transform_kinds).collect();
            let misfit = kinds_not_understood(&kinds, &understood);
            if misfit.is_empty() {
                continue;
            }
            let labels: Vec<&str> = misfit.iter().map(|k| k.label()).collect();
            ck.report(
                ConfigErrorKind::InvalidValue,
                &item.span(),
                &at,
                format!(
                    "destination {name:?} has transforms that cannot edit {} items, and this route can \
                     send it such items; route them to a destination without transforms, or narrow `from`",
                    labels.join(" and ")
                ),
            );
        }
    }
}

/// The kinds among `kinds` that one of the transforms (each given as the kinds it understands)
/// cannot edit.
fn kinds_not_understood(kinds: &[Kind], transforms: &[&[Kind]]) -> Vec<Kind> {
    kinds.iter().filter(|k| transforms.iter().any(|understood| !understood.contains(k))).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_one_transform_cannot_edit_is_named_and_none_without_transforms() {
        let hl7: &[Kind] = &[Kind::Hl7v2];
        let none: &[Kind] = &[];
        assert_eq!(kinds_not_understood(&[Kind::Hl7v2], &[hl7, hl7]), vec![]);
        assert_eq!(kinds_not_understood(&[Kind::Hl7v2], &[]), vec![], "no transforms, nothing to refuse");
        assert_eq!(kinds_not_understood(&[Kind::Hl7v2], &[hl7, none]), vec![Kind::Hl7v2]);
        assert_eq!(kinds_not_understood(&[], &[none]), vec![], "a route from no source carries nothing");
    }
}
