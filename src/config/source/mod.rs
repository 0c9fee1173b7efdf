//! `[[source]]` blocks: the keys every source has (`name`, `kind`), then the keys of its kind,
//! each kind in its own file beside this one.
//!
//! Adding a kind: a file here (and its `mod` line) with a function of type [`Read`], and one line
//! in [`KINDS`]. Its keys are the ones its reader reads; the other kinds' messages learn them from
//! the same reading.

pub(crate) mod astm;
mod directory;
mod fax;
mod mllp;

use std::path::Path;

use super::values::kind_of;
use super::walk::{Checker, Elsewhere, Got, Tbl, keys_read_by};
use super::{Source, SourceKind};

/// Reads the keys of one kind of source (all but `name` and `kind`) and builds its typed form;
/// `None` when anything was reported. It must not finish the table: [`source`] does, once it
/// knows which keys belong elsewhere. Relative paths are resolved against `state_dir`.
type Read = fn(&mut Checker, &Tbl<'_, '_>, state_dir: &Path) -> Option<SourceKind>;

/// The accepted values of `kind`, in the order messages list them, each with its reader.
const KINDS: &[(&str, Read)] = &[
    ("mllp", mllp::read),
    ("directory", directory::read),
    ("astm", astm::read),
    ("fax-modem", fax::read_modem),
    ("fax-spool", fax::read_spool),
];

/// One `[[source]]` block; `name` has already been read (see `values::names`).
pub(super) fn source(ck: &mut Checker, t: &Tbl<'_, '_>, name: Option<String>, state_dir: &Path) -> Option<Source> {
    let kind_names: Vec<&str> = KINDS.iter().map(|(kind, _)| *kind).collect();
    let (kind, read) = match t.get(ck, "kind", kind_of("source", &kind_names)) {
        Got::Valid(k) => KINDS.iter().find(|(kind, _)| *kind == k)?,
        // An unknown kind: there is no telling which keys it would have.
        Got::Invalid => return None,
        Got::Absent => {
            t.missing(ck, "kind", "kind = \"mllp\"");
            // With no kind, accept the keys of every kind: read the table as each would, keeping
            // none of what that reports.
            let mut scratch = ck.scratch();
            for (_, read) in KINDS {
                read(&mut scratch, t, state_dir);
            }
            t.finish(ck, &[]);
            return None;
        }
    };
    let built = read(ck, t, state_dir);
    let elsewhere: Vec<Elsewhere> = KINDS
        .iter()
        .filter(|(other, _)| other != kind)
        .map(|(other, read)| Elsewhere {
            owner: format!("kind = {other:?} sources"),
            keys: keys_read_by(ck, |ck, t| {
                read(ck, t, state_dir);
            }),
        })
        .collect();
    t.finish(ck, &elsewhere);
    Some(Source { name: name?, kind: built? })
}
