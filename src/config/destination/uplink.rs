//! `kind = "uplink"` destinations: central, over the `[uplink]` MQTT link. The link's settings
//! are the `[uplink]` section's (`config/uplink.rs`); such a destination has no keys of its own.

use std::path::Path;

use super::Parts;
use crate::config::error::ConfigErrorKind;
use crate::config::values::secs;
use crate::config::walk::{Checker, Tbl};
use crate::config::{Destination, DestinationKind, RetryPolicy};

/// Completes "`dir` only applies to kind = "mllp" and kind = "file" destinations (...)".
pub(super) const OTHER_KINDS_NOTE: &str = "an uplink destination sends the exact bytes and waits for central's \
                                           acknowledgement; the link's settings are in [uplink]";

/// Central receives the exact bytes, and an uplink delivery waits for central's acknowledgement
/// for as long as it takes: no transforms and no retry policy to read.
pub(super) fn read(_ck: &mut Checker, _t: &Tbl<'_, '_>, _state_dir: &Path) -> Option<Parts> {
    Some(Parts {
        kind: DestinationKind::Uplink,
        retry: RetryPolicy { initial_backoff: secs(1), max_backoff: secs(300), max_attempts: None, max_age: None },
        transforms: Vec::new(),
    })
}

/// At most one `kind = "uplink"` destination, and only with an `[uplink]` section.
pub(in crate::config) fn uplink_destinations(
    ck: &mut Checker,
    tables: &[Tbl<'_, '_>],
    built: &[Option<Destination>],
    has_uplink: bool,
) {
    let mut seen: Option<String> = None;
    for (t, d) in tables.iter().zip(built) {
        let Some(d) = d.as_ref().filter(|d| d.kind == DestinationKind::Uplink) else { continue };
        let Some(v) = t.val("kind") else { continue };
        if !has_uplink {
            ck.report(
                ConfigErrorKind::MissingKey,
                &v.span,
                &v.path,
                format!(
                    "destination {:?} sends to central, but there is no [uplink] section; add one \
                     with the broker's url, e.g. [uplink] url = \"mqtts://broker.example.net:8883\"",
                    d.name
                ),
            );
        }
        match &seen {
            Some(first) => ck.report(
                ConfigErrorKind::Duplicate,
                &v.span,
                &v.path,
                format!(
                    "destination {:?} is a second uplink destination; {first:?} already sends to central. \
                     Route to {first:?} instead",
                    d.name
                ),
            ),
            None => seen = Some(d.name.clone()),
        }
    }
}
