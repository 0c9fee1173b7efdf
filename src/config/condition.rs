//! A route's `when` table: each key a field path, each value what that field must hold (a value,
//! any of a list, a glob or a regex). Every key of `when` is a condition, so the table is never
//! finished: there are no unknown keys to report, only field paths that do not parse.

use toml::de::DeValue;

use super::error::ConfigErrorKind;
use super::values::string;
use super::walk::{Checker, Tbl, Val, join_key};
use super::{AstmField, Condition, Field, Matcher};
use crate::hl7::FieldPath;

pub(super) fn conditions(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Vec<Condition>> {
    let mut out = Some(Vec::new());
    for (key, value) in t.entries() {
        let key_text: &str = key.get_ref();
        let v = Val { value: value.get_ref(), span: value.span(), path: join_key(&t.path, key_text) };
        // `MSH-9.1 = "ORU"` without quotes is TOML for a table `MSH-9` holding a key `1` (and
        // `R.3.4 = "WBC"` for tables `R` and `3` holding `4`).
        let dotted = match v.value {
            DeValue::Table(inner) if inner.get("glob").is_none() && inner.get("regex").is_none() => {
                dotted_path(key_text, inner).filter(|joined| field(joined).is_ok())
            }
            _ => None,
        };
        if let Some(joined) = dotted {
            ck.report(
                ConfigErrorKind::InvalidValue,
                &key.span(),
                &v.path,
                format!(
                    "TOML read the dot in {joined} as a nested key; put field paths that \
                     contain a dot in double quotes: \"{joined}\" = ..."
                ),
            );
            out = None;
            continue;
        }
        let field = match field(key_text) {
            Ok(f) => Some(f),
            Err(why) => {
                ck.report(ConfigErrorKind::InvalidValue, &key.span(), &v.path, why);
                None
            }
        };
        let matcher = matcher(ck, &v);
        match (field, matcher, out.as_mut()) {
            (Some(field), Some(matcher), Some(out)) => out.push(Condition { field, matcher }),
            _ => out = None,
        }
    }
    out
}

/// What a `when` key names: an HL7 field path (`MSH-9.1`: a segment, a dash), an ASTM record
/// path (`R.3.4`: a record type, a dot), or a name for what every instrument has.
pub(super) fn field(key: &str) -> Result<Field, String> {
    const FORMS: &str = "an HL7 field path such as MSH-9.1 or OBX-8, an ASTM record path such as R.3.4 \
                         or H.5.1, for ASTM items instrument, test, qc or critical, or for faxes fax.tsi, fax.pages and the like";
    match key {
        "instrument" => return Ok(Field::Astm(AstmField::Instrument)),
        "test" => return Ok(Field::Astm(AstmField::Test)),
        "qc" => return Ok(Field::Astm(AstmField::Qc)),
        "critical" => return Ok(Field::Astm(AstmField::Critical)),
        _ => {}
    }
    if let Some(name) = key.strip_prefix("fax.") {
        return match crate::payload::fax::FIELDS.iter().find(|f| **f == name) {
            Some(f) => Ok(Field::Fax(f.to_string())),
            None => Err(format!(
                "{key:?} is not a fax field; a fax's fields are {}",
                crate::payload::fax::FIELDS.iter().map(|f| format!("fax.{f}")).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    // HL7: a segment (three letters or digits, `MSH`, `ZX1`) and a dash; a key that starts like
    // a segment is read as HL7, so its mistakes get HL7's messages.
    let segment_like =
        key.len() >= 3 && key.as_bytes()[..3].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if key.contains('-') || segment_like {
        return key.parse::<FieldPath>().map(Field::Hl7);
    }
    let record = key.split('.').next().unwrap_or_default();
    if record.len() == 1 && "HPORCQMSL".contains(record) {
        return key
            .parse::<crate::astm::FieldPath>()
            .map(|p| Field::Astm(AstmField::Path(p)))
            .map_err(|_| format!("{key:?} is not a field: ASTM record paths are a record type, a field number and maybe a component, e.g. R.3.4; or {FORMS}"));
    }
    Err(format!("{key:?} is not a field; use {FORMS}"))
}

/// The dotted key TOML read as nested tables (`R` → `3` → `4`), joined back: `R.3.4`.
fn dotted_path(key: &str, inner: &toml::de::DeTable<'_>) -> Option<String> {
    let (k, v) = inner.iter().next()?;
    let joined = format!("{key}.{}", k.get_ref());
    match v.get_ref() {
        DeValue::Table(deeper) if inner.len() == 1 => dotted_path(&joined, deeper).or(Some(joined)),
        _ => Some(joined),
    }
}

fn matcher(ck: &mut Checker, v: &Val<'_, '_>) -> Option<Matcher> {
    const FORMS: &str = "\"value\", [\"any\", \"of\", \"these\"], { glob = \"A0*\" } or \
                         { regex = \"^A0[1-4]$\" }";
    match v.value {
        DeValue::String(s) => Some(Matcher::Exact(vec![s.to_string()])),
        DeValue::Array(items) => {
            if items.is_empty() {
                ck.report(
                    ConfigErrorKind::MissingKey,
                    &v.span,
                    &v.path,
                    "an empty list matches nothing; list the values to accept, e.g. [\"A01\", \
                     \"A04\"], or remove the condition"
                        .to_string(),
                );
                return None;
            }
            let mut values = Some(Vec::with_capacity(items.len()));
            for (i, item) in items.iter().enumerate() {
                let iv = Val { value: item.get_ref(), span: item.span(), path: format!("{}[{i}]", v.path) };
                match (string(ck, &iv), values.as_mut()) {
                    (Some(s), Some(values)) => values.push(s),
                    _ => values = None,
                }
            }
            values.map(Matcher::Exact)
        }
        DeValue::Table(table) => {
            let t = Tbl::new(table, v.span.clone(), v.path.clone(), "a condition");
            let (glob, regex) = (t.val("glob"), t.val("regex"));
            t.finish(ck, &[]);
            match (glob, regex) {
                (Some(_), Some(r)) => {
                    r.invalid(ck, "a condition takes either glob or regex, not both; keep one".to_string());
                    None
                }
                (Some(g), None) => {
                    let pattern = string(ck, &g)?;
                    match globset::Glob::new(&pattern) {
                        Ok(glob) => Some(Matcher::Glob { pattern, matcher: glob.compile_matcher() }),
                        Err(e) => {
                            g.invalid(
                                ck,
                                format!(
                                    "{pattern:?} is not a glob: {}; use * for any text, ? for \
                                     one character, [1-4] for a range",
                                    e.kind()
                                ),
                            );
                            None
                        }
                    }
                }
                (None, Some(r)) => {
                    let pattern = string(ck, &r)?;
                    match regex::Regex::new(&pattern) {
                        Ok(re) => Some(Matcher::Regex(re)),
                        Err(e) => {
                            // Shown as written: Debug quoting would double every backslash.
                            let written = ck.snippet(&r.span);
                            r.invalid(
                                ck,
                                format!(
                                    "{written} is not a regular expression: {}; fix the \
                                     pattern (inside \"...\" a backslash must be doubled, \
                                     inside '...' it need not)",
                                    regex_reason(&e)
                                ),
                            );
                            None
                        }
                    }
                }
                (None, None) => {
                    // Unknown keys were reported above; an empty table gets its own message.
                    if table.is_empty() {
                        ck.report(
                            ConfigErrorKind::MissingKey,
                            &v.span,
                            &v.path,
                            format!("an empty table is not a condition; write one of {FORMS}"),
                        );
                    }
                    None
                }
            }
        }
        _ => {
            v.wrong_type(ck, &format!("one of {FORMS}"), "");
            None
        }
    }
}

fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}
