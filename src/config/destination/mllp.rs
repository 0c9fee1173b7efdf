//! `kind = "mllp"` destinations: an MLLP client (`egress/mllp.rs`) that waits for each ACK.

use std::path::Path;

use super::{Parts, delivery};
use crate::config::values::{choice, duration, host_port, secs};
use crate::config::walk::{Checker, Tbl};
use crate::config::{DestinationKind, MllpDestination, NakAction};

pub(super) fn read(ck: &mut Checker, t: &Tbl<'_, '_>, _state_dir: &Path) -> Option<Parts> {
    let connect = t.req(ck, "connect", "connect = \"10.0.0.7:6661\"", host_port);
    let connect_timeout = t.opt(ck, "connect_timeout", secs(10), duration(false));
    let ack_timeout = t.opt(ck, "ack_timeout", secs(30), duration(false));
    let actions = [("retry", NakAction::Retry), ("dead-letter", NakAction::DeadLetter)];
    let on_ae = t.opt(ck, "on_ae", NakAction::DeadLetter, choice(&actions, "action"));
    let on_ar = t.opt(ck, "on_ar", NakAction::Retry, choice(&actions, "action"));
    let delivery = delivery(ck, t);
    let mllp = MllpDestination {
        connect: connect?,
        connect_timeout: connect_timeout?,
        ack_timeout: ack_timeout?,
        on_ae: on_ae?,
        on_ar: on_ar?,
    };
    let (retry, transforms) = delivery?;
    Some(Parts { kind: DestinationKind::Mllp(mllp), retry, transforms })
}
