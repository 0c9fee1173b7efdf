//! `[[destination]]` blocks: the keys every destination has (`name`, `kind`), then the keys of its
//! kind, each kind in its own file beside this one. `retry` and `transform` belong to the kinds
//! that deliver by themselves, which read them through [`delivery`]; an uplink destination has
//! neither.

mod file;
mod mllp;
mod retry;
mod transform;
mod uplink;

use std::path::Path;

pub(super) use uplink::uplink_destinations;

use super::values::kind_of;
use super::walk::{Checker, Elsewhere, Got, Tbl, keys_read_by};
use super::{Destination, DestinationKind, RetryPolicy, Transform};

/// Everything of a destination but its name, as its kind's reader builds it.
struct Parts {
    kind: DestinationKind,
    retry: RetryPolicy,
    transforms: Vec<Transform>,
}

/// Reads the keys of one kind of destination (all but `name` and `kind`) and builds it; `None`
/// when anything was reported. It must not finish the table: [`destination`] does, once it knows
/// which keys belong to other kinds. Relative paths are resolved against `state_dir`.
type Read = fn(&mut Checker, &Tbl<'_, '_>, state_dir: &Path) -> Option<Parts>;

struct Kind {
    /// The value of `kind`.
    name: &'static str,
    read: Read,
    /// Why the other kinds' keys do not apply to this kind, where a bare "only applies to kind =
    /// ..." would leave a field tech guessing; its messages then name all the other kinds at once.
    others_note: Option<&'static str>,
}

/// The accepted values of `kind`, in the order messages list them.
const KINDS: &[Kind] = &[
    Kind { name: "mllp", read: mllp::read, others_note: None },
    Kind { name: "file", read: file::read, others_note: None },
    Kind { name: "uplink", read: uplink::read, others_note: Some(uplink::OTHER_KINDS_NOTE) },
];

/// One `[[destination]]` block; `name` has already been read (see `values::names`).
pub(super) fn destination(
    ck: &mut Checker,
    t: &Tbl<'_, '_>,
    name: Option<String>,
    state_dir: &Path,
) -> Option<Destination> {
    let kind_names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
    let kind = match t.get(ck, "kind", kind_of("destination", &kind_names)) {
        Got::Valid(k) => KINDS.iter().find(|kind| kind.name == k),
        // An unknown kind: there is no telling which keys it would have.
        Got::Invalid => None,
        Got::Absent => {
            t.missing(ck, "kind", "kind = \"mllp\" or kind = \"file\"");
            // With no kind, accept the keys of every kind: read the table as each would, keeping
            // none of what that reports.
            let mut scratch = ck.scratch();
            for kind in KINDS {
                (kind.read)(&mut scratch, t, state_dir);
            }
            t.finish(ck, &[]);
            None
        }
    };
    let Some(kind) = kind else {
        // Retry and transforms are the same for every kind that has them: check them even when
        // the kind is bad.
        delivery(ck, t);
        return None;
    };
    let parts = (kind.read)(ck, t, state_dir);
    t.finish(ck, &elsewhere(ck, kind, state_dir));
    let Parts { kind, retry, transforms } = parts?;
    Some(Destination { name: name?, kind, retry, transforms })
}

/// The keys of the kinds other than `kind`, so that one of them here says where it belongs.
fn elsewhere(ck: &Checker, kind: &Kind, state_dir: &Path) -> Vec<Elsewhere> {
    let others: Vec<(&str, Vec<String>)> = KINDS
        .iter()
        .filter(|other| other.name != kind.name)
        .map(|other| {
            let keys = keys_read_by(ck, |ck, t| {
                (other.read)(ck, t, state_dir);
            });
            (other.name, keys)
        })
        .filter(|(_, keys)| !keys.is_empty())
        .collect();
    match kind.others_note {
        None => others
            .into_iter()
            .map(|(other, keys)| Elsewhere { owner: format!("kind = {other:?} destinations"), keys })
            .collect(),
        Some(note) => {
            let names: Vec<String> = others.iter().map(|(other, _)| format!("kind = {other:?}")).collect();
            let keys = others.into_iter().flat_map(|(_, keys)| keys).collect();
            vec![Elsewhere { owner: format!("{} destinations ({note})", names.join(" and ")), keys }]
        }
    }
}

/// `retry` and `transform`: how a destination that delivers by itself retries, and what it
/// changes in the copy it sends. Both are read (and checked) even when one is bad.
fn delivery(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<(RetryPolicy, Vec<Transform>)> {
    let retry = t.section(ck, "retry", "retry").and_then(|r| retry::policy(ck, &r));
    let transforms = transform::transforms(ck, t);
    Some((retry?, transforms?))
}
