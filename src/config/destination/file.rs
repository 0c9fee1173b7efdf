//! `kind = "file"` destinations: one file per item in a directory (`egress/file.rs`).

use std::path::Path;

use super::{Parts, delivery};
use crate::config::values::{path, string};
use crate::config::walk::{Checker, Tbl, Val};
use crate::config::{DestinationKind, FileDestination};

pub(super) fn read(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<Parts> {
    let dir = t.req(ck, "dir", "dir = \"archive\"", |ck, v| path(ck, v).map(|p| state_dir.join(p)));
    let extension = t.opt(ck, "extension", None, |ck, v| extension(ck, v).map(Some));
    let delivery = delivery(ck, t);
    let file = FileDestination { dir: dir?, extension: extension? };
    let (retry, transforms) = delivery?;
    Some(Parts { kind: DestinationKind::File(file), retry, transforms })
}

fn extension(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    let why = if s.is_empty() {
        Some("it is empty".to_string())
    } else if let Some(rest) = s.strip_prefix('.') {
        Some(format!("write it without the dot: {rest:?}"))
    } else if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Some("use only letters, digits, '-' and '_'".to_string())
    } else {
        None
    };
    if let Some(why) = why {
        v.invalid(ck, format!("{s:?} is not a file extension: {why}; e.g. \"hl7\""));
        return None;
    }
    Some(s)
}
