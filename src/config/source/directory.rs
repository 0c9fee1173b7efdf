//! `kind = "directory"` sources: HL7 files dropped into a folder (`ingress/directory.rs`).

use std::path::Path;

use crate::config::values::{GIB, KIB, MIB, charset, duration, path, secs, size_in, string};
use crate::config::walk::{Checker, Tbl, Val};
use crate::config::{AfterTaken, DirectorySource, SourceKind};

pub(super) fn read(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<SourceKind> {
    let in_state_dir = |ck: &mut Checker, v: &Val<'_, '_>| path(ck, v).map(|p| state_dir.join(p));
    let dir = t.req(ck, "dir", "dir = \"/srv/ehr-export\"", in_state_dir);
    let pattern = t.opt(ck, "pattern", None, |ck, v| {
        let text = string(ck, v)?;
        match globset::GlobBuilder::new(&text).literal_separator(true).build() {
            Ok(g) => Some(Some((text, g.compile_matcher()))),
            Err(e) => {
                v.invalid(ck, format!("{text:?} is not a file name pattern: {e}; e.g. \"*.hl7\""));
                None
            }
        }
    });
    let after = t.opt(ck, "after", "move".to_string(), |ck, v| {
        let s = string(ck, v)?;
        if s == "move" || s == "delete" {
            return Some(s);
        }
        v.invalid(ck, format!("{s:?} is not what to do with a taken file; use \"move\" or \"delete\""));
        None
    });
    let move_to = t.opt(ck, "move_to", None, |ck, v| in_state_dir(ck, v).map(Some));
    let settle = t.opt(ck, "settle", secs(2), duration(true));
    let rescan = t.opt(ck, "rescan", secs(30), duration(false));
    let retry_after = t.opt(ck, "retry_after", secs(60), duration(false));
    let max_file_size = t.opt(ck, "max_file_size", 16 * MIB, size_in(KIB, GIB));
    let charset = t.opt(ck, "charset", None, |ck, v| charset(ck, v).map(Some));
    let (dir, after, move_to) = (dir?, after?, move_to?);
    let after = match (after.as_str(), move_to) {
        ("delete", Some(_)) => {
            if let Some(v) = t.val("move_to") {
                v.invalid(ck, "move_to does nothing with after = \"delete\"; remove one of them".to_string());
            }
            return None;
        }
        ("delete", None) => AfterTaken::Delete,
        (_, Some(to)) => AfterTaken::Move(to),
        (_, None) => AfterTaken::Move(dir.join("processed")),
    };
    let (pattern, matcher) = match pattern? {
        Some(p) => p,
        None => ("*".to_string(), globset::Glob::new("*").ok()?.compile_matcher()),
    };
    Some(SourceKind::Directory(DirectorySource {
        dir,
        pattern,
        matcher,
        after,
        settle: settle?,
        rescan: rescan?,
        retry_after: retry_after?,
        max_file_size: max_file_size?,
        charset: charset?,
    }))
}
