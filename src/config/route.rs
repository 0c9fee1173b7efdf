//! `[[route]]` blocks: which sources a route takes items from, the conditions they must meet
//! (`condition.rs`), and the destinations it sends them to. Names are checked against every name
//! the file gives, so a route never names a source or destination that does not exist.

use toml::de::DeValue;

use super::Route;
use super::condition::conditions;
use super::error::ConfigErrorKind;
use super::values::string;
use super::walk::{Checker, Got, Tbl, Val, closest};

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
fn name_list(ck: &mut Checker, v: &Val<'_, '_>, what: &str, known: &[String], star: bool) -> Option<Vec<String>> {
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
