//! A destination's `retry` table: the backoff between attempts and when to give up.

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::config::error::ConfigErrorKind;
use crate::config::values::{count_in, duration, format_duration, secs};
use crate::config::walk::{Checker, Tbl};

pub(super) fn policy(ck: &mut Checker, t: &Tbl<'_, '_>) -> Option<RetryPolicy> {
    let initial_backoff = t.opt(ck, "initial_backoff", secs(1), duration(false));
    let max_backoff = t.opt(ck, "max_backoff", secs(300), duration(false));
    let max_attempts = t.opt(ck, "max_attempts", 0, count_in(0, u64::from(u32::MAX)));
    let max_age = t.opt(ck, "max_age", Duration::ZERO, duration(true));
    t.finish(ck, &[]);
    if let (Some(initial), Some(max)) = (initial_backoff, max_backoff)
        && initial > max
    {
        let at = t.val("initial_backoff").or_else(|| t.val("max_backoff"));
        if let Some(v) = at {
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!(
                    "initial_backoff ({}) is longer than max_backoff ({}); make max_backoff at \
                     least as long as initial_backoff",
                    format_duration(initial),
                    format_duration(max)
                ),
            );
        }
    }
    Some(RetryPolicy {
        initial_backoff: initial_backoff?,
        max_backoff: max_backoff?,
        max_attempts: u32::try_from(max_attempts?).ok().filter(|&n| n > 0),
        max_age: Some(max_age?).filter(|d| !d.is_zero()),
    })
}
