//! A destination's `transform` list: edits to the copy sent to it (the journal keeps the
//! original). Each transform is a small table whose form is named by the key saying what it does:
//! `set`, `copy` or `clear`.

use toml::de::DeValue;

use crate::config::Transform;
use crate::config::error::ConfigErrorKind;
use crate::config::values::{field_path, string, writable_field_path};
use crate::config::walk::{Checker, Elsewhere, Tbl, Val, join_key, keys_read_by};

/// Reads the keys of one form of transform. It must not finish the table.
type ReadOp = fn(&mut Checker, &Tbl<'_, '_>) -> Option<Transform>;

/// The forms of a transform: the key that names each (the accepted operations, in the order
/// messages list them) and the reader of its keys.
const OPS: &[(&str, ReadOp)] = &[("set", set), ("copy", copy), ("clear", clear)];

pub(super) fn transforms(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Vec<Transform>> {
    let Some(v) = t.val("transform") else {
        return Some(Vec::new());
    };
    let DeValue::Array(items) = v.value else {
        v.wrong_type(
            ck,
            "a list of transforms",
            "; write transform = [ { set = \"MSH-5\", value = \"LIS\" } ] or one \
             [[destination.transform]] block per transform",
        );
        return None;
    };
    let mut out = Some(Vec::with_capacity(items.len()));
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", v.path);
        let DeValue::Table(table) = item.get_ref() else {
            Val { value: item.get_ref(), span: item.span(), path }.wrong_type(
                ck,
                "a transform table",
                ", e.g. { set = \"MSH-5\", value = \"LIS\" }",
            );
            out = None;
            continue;
        };
        let tt = Tbl::new(table, item.span(), path, "a transform");
        match (transform(ck, &tt), out.as_mut()) {
            (Some(tr), Some(out)) => out.push(tr),
            _ => out = None,
        }
    }
    out
}

fn transform(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Transform> {
    let ops: Vec<&(&str, ReadOp)> = OPS.iter().filter(|(op, _)| t.has(op)).collect();
    match ops.as_slice() {
        [] => {
            // Accept the keys of every form, so that a misspelt one gets its did-you-mean.
            let mut scratch = ck.scratch();
            for (_, read) in OPS {
                read(&mut scratch, t);
            }
            t.finish(ck, &[]);
            ck.report(
                ConfigErrorKind::MissingKey,
                &t.span,
                &t.path,
                "a transform needs one of set, copy or clear, e.g. { set = \"MSH-5\", value = \
                 \"LIS\" }, { copy = \"MSH-4\", to = \"MSH-6\" } or { clear = \"PID-19\" }"
                    .to_string(),
            );
            None
        }
        [(op, read)] => {
            let transform = read(ck, t);
            let elsewhere: Vec<Elsewhere> = OPS
                .iter()
                .filter(|(other, _)| other != op)
                .map(|(other, read)| Elsewhere {
                    owner: format!("{other} transforms"),
                    keys: keys_read_by(ck, |ck, t| {
                        read(ck, t);
                    }),
                })
                .collect();
            t.finish(ck, &elsewhere);
            transform
        }
        [(first, _), (second, _), ..] => {
            // Its keys are not checked: which form's keys would they be?
            if let Some(v) = t.key_span(second) {
                ck.report(
                    ConfigErrorKind::InvalidValue,
                    &v,
                    &join_key(&t.path, second),
                    format!(
                        "a transform does one thing, but this one has both {first} and \
                         {second}; split it into two transforms (they are applied in order)"
                    ),
                );
            }
            None
        }
    }
}

fn set(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Transform> {
    let path = t.req(ck, "set", "", writable_field_path);
    let value = t.req(ck, "value", "value = \"LIS\"", string);
    Some(Transform::Set { path: path?, value: value? })
}

fn copy(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Transform> {
    let from = t.req(ck, "copy", "", field_path);
    let to = t.req(ck, "to", "to = \"MSH-6\"", writable_field_path);
    Some(Transform::Copy { from: from?, to: to? })
}

fn clear(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<Transform> {
    let path = t.req(ck, "clear", "", writable_field_path);
    Some(Transform::Clear { path: path? })
}
