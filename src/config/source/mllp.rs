//! `kind = "mllp"` sources: a TCP listener speaking MLLP (`ingress/mllp.rs`).

use std::path::Path;

use crate::config::values::{GIB, KIB, MIB, charset, count_in, duration, listen_address, secs, size_in};
use crate::config::walk::{Checker, Tbl};
use crate::config::{MllpSource, SourceKind};

pub(super) fn read(ck: &mut Checker, t: &Tbl<'_, '_>, _state_dir: &Path) -> Option<SourceKind> {
    let listen = t.req(ck, "listen", "listen = \"0.0.0.0:2575\"", listen_address);
    let max_message_size = t.opt(ck, "max_message_size", 16 * MIB, size_in(KIB, GIB));
    let idle_timeout =
        t.opt(ck, "idle_timeout", Some(secs(3600)), |ck, v| duration(true)(ck, v).map(|d| (!d.is_zero()).then_some(d)));
    let max_connections = t.opt(ck, "max_connections", 64, count_in(1, 65_535));
    let charset = t.opt(ck, "charset", None, |ck, v| charset(ck, v).map(Some));
    Some(SourceKind::Mllp(MllpSource {
        listen: listen?,
        max_message_size: usize::try_from(max_message_size?).ok()?,
        idle_timeout: idle_timeout?,
        max_connections: usize::try_from(max_connections?).ok()?,
        charset: charset?,
    }))
}
