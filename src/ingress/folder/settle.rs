//! Deciding when a file in a watched folder is complete, sans IO.
//!
//! A writer gives no signal that a file is finished, so [`Settle`] judges from what it is told:
//! observations of each file's size and mtime (from scans and from inotify events), and the
//! current time. It answers which files are ready, and which it wants looked at again.
//!
//! A file is ready when either
//! - its size and mtime were seen unchanged `settle` after they last changed (or after it was
//!   first seen), confirmed by a look taken at least that late: a deadline passing is not
//!   enough, since a file written slowly on a share that sends no events changes unseen. At the
//!   deadline [`Settle::due`] names the files to look at again;
//! - or the writer closed it (`IN_CLOSE_WRITE`) or it was renamed into the folder
//!   (`IN_MOVED_TO`, the usual "write `x.part`, then rename" convention), and no write was seen
//!   for `close_quiet` after that, again confirmed by a look. The shell uses 250 ms, not 0: a
//!   writer that closes and at once reopens to append (some copy tools write in two passes)
//!   is then still seen writing. A writer that closes between pieces written further apart than
//!   that cannot be told from a finished one by any event; it must write under a `.part` or
//!   `.tmp` name and rename, as most exporters do.
//!
//! Time is monotonic ([`Instant`]) and passed in; mtimes are only compared for change and used
//! for order, never against the clock (gateways without a battery-backed clock boot in 1970).
//! A file already present at start-up therefore settles like a new one.
//!
//! Hand-out: [`Settle::take_ready`] returns ready files oldest first (mtime, then name), and each
//! is not returned again until [`Settle::done`] (the adapter moved or deleted it) or
//! [`Settle::retry_later`] (it could not: returned again once `at` has passed and it is still
//! settled, without holding back other files). A file that vanished is forgotten, handed out
//! or not; `done` and `retry_later` then do nothing, so that a new file that took the same name
//! (exports that reuse one name) settles on its own.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant, SystemTime};

/// What a look at a file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime: SystemTime,
}

/// What prompted an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A look (a scan, or a check the tracker asked for): only a changed size or mtime counts
    /// as a change.
    Look,
    /// inotify reported a write (`IN_MODIFY`, `IN_CREATE`, or a delete followed by a new file):
    /// a change even if size and mtime look the same (coarse mtimes on FAT, rewrites in place).
    Written,
    /// inotify reported `IN_CLOSE_WRITE` or `IN_MOVED_TO` as the last event for the file: the
    /// writer is done as far as the kernel knows. The stat must be taken after the event.
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Settling,
    HandedOut,
    RetryAt(Instant),
    /// Taken, and left where it is (a spool's file that belongs to another program): not
    /// handed out again unless it changes.
    Kept,
}

#[derive(Debug)]
struct Tracked {
    stat: Stat,
    /// When it was last seen changing (or first seen).
    changed_at: Instant,
    /// When it was reported complete, if no write was seen since.
    completed_at: Option<Instant>,
    /// When it was last looked at.
    seen_at: Instant,
    state: State,
}

/// The files of one folder and how settled each is. See the module docs. `Debug` shows counts,
/// not file names (exports name files after patients).
pub struct Settle {
    settle: Duration,
    close_quiet: Duration,
    files: HashMap<OsString, Tracked>,
}

impl std::fmt::Debug for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let handed_out = self.files.values().filter(|t| t.state == State::HandedOut).count();
        f.debug_struct("Settle")
            .field("settle", &self.settle)
            .field("close_quiet", &self.close_quiet)
            .field("files", &self.files.len())
            .field("handed_out", &handed_out)
            .finish()
    }
}

impl Settle {
    /// `settle`: how long size and mtime must stay the same. `close_quiet`: how long after a
    /// close-write or a rename no write may be seen (used only if shorter than `settle`).
    pub fn new(settle: Duration, close_quiet: Duration) -> Settle {
        Settle { settle, close_quiet, files: HashMap::new() }
    }

    /// Records a look at `name`, taken at `now` or later (take `now` before the look). A look
    /// older than the latest recorded one for the file is ignored: it may show a stale size.
    pub fn observe(&mut self, name: &OsStr, stat: Stat, seen: Seen, now: Instant) {
        let Some(t) = self.files.get_mut(name) else {
            let completed_at = (seen == Seen::Complete).then_some(now);
            let t = Tracked { stat, changed_at: now, completed_at, seen_at: now, state: State::Settling };
            self.files.insert(name.to_owned(), t);
            return;
        };
        if now < t.seen_at {
            return;
        }
        let changed = t.stat != stat || seen == Seen::Written;
        t.stat = stat;
        t.seen_at = now;
        if changed {
            t.changed_at = now;
            t.completed_at = None;
            if t.state == State::Kept {
                // Rewritten since it was taken: a new file under an old name.
                t.state = State::Settling;
            }
        }
        if seen == Seen::Complete {
            t.completed_at = Some(now);
        }
    }

    /// `name` is gone (deleted, moved away, no longer a regular file).
    pub fn vanished(&mut self, name: &OsStr) {
        self.files.remove(name);
    }

    /// After a complete listing of the folder: forgets the files it did not list.
    pub fn forget_unlisted(&mut self, listed: &HashSet<OsString>) {
        self.files.retain(|name, _| listed.contains(name));
    }

    /// Files to look at again now: their time has come but no look confirms it yet.
    pub fn due(&self, now: Instant) -> Vec<OsString> {
        self.files
            .iter()
            .filter(|(_, t)| self.check_at(t).is_some_and(|at| now >= at && t.seen_at < at))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// When a file will next be due, if any is settling.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.files.values().filter_map(|t| self.check_at(t).filter(|&at| t.seen_at < at)).min()
    }

    /// The files ready now, oldest first (mtime, then name), each marked handed out.
    pub fn take_ready(&mut self) -> Vec<OsString> {
        let mut ready: Vec<(SystemTime, OsString)> = self
            .files
            .iter()
            .filter(|(_, t)| self.check_at(t).is_some_and(|at| t.seen_at >= at))
            .map(|(name, t)| (t.stat.mtime, name.clone()))
            .collect();
        ready.sort();
        ready
            .into_iter()
            .map(|(_, name)| {
                if let Some(t) = self.files.get_mut(&name) {
                    t.state = State::HandedOut;
                }
                name
            })
            .collect()
    }

    /// Whether `name` is handed out (and not vanished since).
    pub fn is_handed_out(&self, name: &OsStr) -> bool {
        self.files.get(name).is_some_and(|t| t.state == State::HandedOut)
    }

    /// The adapter is finished with the handed-out `name` (moved or deleted it): forget it. A
    /// file of that name that shows up again is new and settles again.
    pub fn done(&mut self, name: &OsStr) {
        if self.is_handed_out(name) {
            self.files.remove(name);
        }
    }

    /// The adapter has taken the handed-out `name` and leaves it where it is: remember it, so
    /// that it is handed out again only if it changes (and forgotten once it is gone).
    pub fn keep(&mut self, name: &OsStr) {
        if let Some(t) = self.files.get_mut(name).filter(|t| t.state == State::HandedOut) {
            t.state = State::Kept;
        }
    }

    /// The adapter could not take the handed-out `name`: hand it out again once `at` has passed,
    /// if it is still settled then (confirmed by a look at or after `at`).
    pub fn retry_later(&mut self, name: &OsStr, at: Instant) {
        if let Some(t) = self.files.get_mut(name).filter(|t| t.state == State::HandedOut) {
            t.state = State::RetryAt(at);
        }
    }

    /// How many files are tracked and not yet taken (settling, handed out or waiting to be
    /// retried; not those kept).
    pub fn len(&self) -> usize {
        self.files.values().filter(|t| t.state != State::Kept).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When a look at `t` can confirm it ready; `None` while handed out.
    fn check_at(&self, t: &Tracked) -> Option<Instant> {
        let by_settle = t.changed_at.checked_add(self.settle);
        let by_close = t.completed_at.and_then(|c| c.checked_add(self.close_quiet));
        let at = match (by_settle, by_close) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        match t.state {
            State::Settling => Some(at),
            State::RetryAt(retry) => Some(at.max(retry)),
            State::HandedOut | State::Kept => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(5);
    const QUIET: Duration = Duration::from_millis(250);

    fn stat(size: u64, mtime_secs: u64) -> Stat {
        Stat { size, mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_secs) }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn names(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// Looks at every due file as `files` says it is now, then takes the ready ones: what the
    /// shell does at a deadline.
    fn tick(s: &mut Settle, now: Instant, files: &[(&str, Stat)]) -> Vec<OsString> {
        for name in s.due(now) {
            match files.iter().find(|(n, _)| OsStr::new(n) == name) {
                Some((_, st)) => s.observe(&name, *st, Seen::Look, now),
                None => s.vanished(&name),
            }
        }
        s.take_ready()
    }

    #[test]
    fn a_file_is_ready_once_unchanged_for_settle() {
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("a.hl7".as_ref(), stat(100, 1), Seen::Look, t0);
        assert_eq!(s.next_deadline(), Some(t0 + SETTLE));
        assert!(tick(&mut s, t0 + SETTLE - ms(1), &[("a.hl7", stat(100, 1))]).is_empty());
        // The deadline alone does not make it ready: a look must confirm it.
        assert!(s.take_ready().is_empty());
        assert_eq!(s.due(t0 + SETTLE), names(&["a.hl7"]));
        assert_eq!(tick(&mut s, t0 + SETTLE, &[("a.hl7", stat(100, 1))]), names(&["a.hl7"]));
        assert!(s.is_handed_out("a.hl7".as_ref()));
        assert_eq!(s.next_deadline(), None);
        // Not handed out again, however long it stays.
        assert!(tick(&mut s, t0 + SETTLE * 10, &[("a.hl7", stat(100, 1))]).is_empty());
        assert!(s.due(t0 + SETTLE * 10).is_empty());
    }

    #[test]
    fn a_file_still_growing_is_not_ready() {
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("slow.hl7".as_ref(), stat(10, 1), Seen::Look, t0);
        // Grows unseen (no events: a network share); at the deadline the look sees it changed.
        assert!(tick(&mut s, t0 + SETTLE, &[("slow.hl7", stat(20, 2))]).is_empty());
        assert_eq!(s.next_deadline(), Some(t0 + SETTLE * 2));
        // A scan in between sees it change again.
        s.observe("slow.hl7".as_ref(), stat(30, 3), Seen::Look, t0 + SETTLE + ms(100));
        assert!(tick(&mut s, t0 + SETTLE * 2, &[("slow.hl7", stat(30, 3))]).is_empty());
        let ready_at = t0 + SETTLE * 2 + ms(100);
        assert_eq!(tick(&mut s, ready_at, &[("slow.hl7", stat(30, 3))]), names(&["slow.hl7"]));
        // A write event counts as a change even when size and mtime look the same.
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("fat.hl7".as_ref(), stat(10, 2), Seen::Look, t0);
        s.observe("fat.hl7".as_ref(), stat(10, 2), Seen::Written, t0 + ms(4000));
        assert!(tick(&mut s, t0 + SETTLE, &[("fat.hl7", stat(10, 2))]).is_empty());
        assert_eq!(s.next_deadline(), Some(t0 + ms(4000) + SETTLE));
    }

    #[test]
    fn close_write_or_rename_makes_it_ready_sooner() {
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("a.hl7".as_ref(), stat(0, 1), Seen::Written, t0);
        s.observe("a.hl7".as_ref(), stat(500, 2), Seen::Complete, t0 + ms(50));
        assert_eq!(s.next_deadline(), Some(t0 + ms(50) + QUIET));
        assert!(tick(&mut s, t0 + ms(200), &[("a.hl7", stat(500, 2))]).is_empty());
        assert_eq!(tick(&mut s, t0 + ms(300), &[("a.hl7", stat(500, 2))]), names(&["a.hl7"]));

        // Reopened and written after the close: back to settling.
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("b.hl7".as_ref(), stat(500, 2), Seen::Complete, t0);
        s.observe("b.hl7".as_ref(), stat(600, 3), Seen::Written, t0 + ms(100));
        assert!(tick(&mut s, t0 + ms(400), &[("b.hl7", stat(600, 3))]).is_empty());
        assert_eq!(s.next_deadline(), Some(t0 + ms(100) + SETTLE));
        // A look that finds it changed after the close also undoes the close.
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("c.hl7".as_ref(), stat(500, 2), Seen::Complete, t0);
        assert!(tick(&mut s, t0 + QUIET, &[("c.hl7", stat(700, 4))]).is_empty());
        assert_eq!(s.next_deadline(), Some(t0 + QUIET + SETTLE));

        // With no quiet time, complete means ready at once; with a quiet time longer than
        // settle, settle decides.
        let mut s = Settle::new(SETTLE, Duration::ZERO);
        s.observe("d.hl7".as_ref(), stat(5, 1), Seen::Complete, t0);
        assert_eq!(s.take_ready(), names(&["d.hl7"]));
        let mut s = Settle::new(ms(100), SETTLE);
        s.observe("e.hl7".as_ref(), stat(5, 1), Seen::Complete, t0);
        assert_eq!(s.next_deadline(), Some(t0 + ms(100)));
    }

    #[test]
    fn ready_files_come_oldest_first() {
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        let files = [("c.hl7", stat(1, 10)), ("b.hl7", stat(1, 20)), ("a.hl7", stat(1, 20)), ("z.hl7", stat(1, 5))];
        for (name, st) in files {
            s.observe(name.as_ref(), st, Seen::Look, t0);
        }
        assert_eq!(tick(&mut s, t0 + SETTLE, &files), names(&["z.hl7", "c.hl7", "a.hl7", "b.hl7"]));
    }

    #[test]
    fn vanished_files_are_forgotten() {
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("a.hl7".as_ref(), stat(1, 1), Seen::Look, t0);
        s.observe("b.hl7".as_ref(), stat(1, 1), Seen::Look, t0);
        s.observe("c.hl7".as_ref(), stat(1, 1), Seen::Look, t0);
        s.vanished("a.hl7".as_ref());
        s.forget_unlisted(&["c.hl7".into()].into_iter().collect());
        assert_eq!(s.len(), 1);
        // Gone by the time it is due: nothing to hand out.
        assert!(tick(&mut s, t0 + SETTLE, &[]).is_empty());
        assert!(s.is_empty());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_kept_file_is_not_handed_out_again_unless_it_changes() {
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("fax00001.tif".as_ref(), stat(100, 1), Seen::Complete, t0);
        assert_eq!(tick(&mut s, t0 + QUIET, &[("fax00001.tif", stat(100, 1))]), names(&["fax00001.tif"]));
        s.keep("fax00001.tif".as_ref());
        assert!(s.is_empty(), "kept files are not waiting");
        // Seen again by every rescan, unchanged: never due, never ready.
        let t1 = t0 + SETTLE * 3;
        s.observe("fax00001.tif".as_ref(), stat(100, 1), Seen::Look, t1);
        assert_eq!(s.next_deadline(), None);
        assert!(tick(&mut s, t1 + SETTLE, &[("fax00001.tif", stat(100, 1))]).is_empty());
        // Rewritten under the same name: settles and is handed out again.
        let t2 = t1 + SETTLE * 2;
        s.observe("fax00001.tif".as_ref(), stat(200, 9), Seen::Look, t2);
        assert_eq!(s.len(), 1);
        assert_eq!(tick(&mut s, t2 + SETTLE, &[("fax00001.tif", stat(200, 9))]), names(&["fax00001.tif"]));
        // Gone from a complete listing: forgotten.
        s.keep("fax00001.tif".as_ref());
        s.forget_unlisted(&HashSet::new());
        assert_eq!(s.files.len(), 0);
    }

    #[test]
    fn done_and_a_new_file_of_the_same_name() {
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("daily.hl7".as_ref(), stat(1, 1), Seen::Complete, t0);
        assert_eq!(tick(&mut s, t0 + QUIET, &[("daily.hl7", stat(1, 1))]), names(&["daily.hl7"]));
        // The adapter moves it away (the event says it is gone), and the exporter writes the
        // next one under the same name before the adapter says done.
        s.vanished("daily.hl7".as_ref());
        let t1 = t0 + SETTLE;
        s.observe("daily.hl7".as_ref(), stat(2, 2), Seen::Written, t1);
        s.done("daily.hl7".as_ref());
        s.retry_later("daily.hl7".as_ref(), t1);
        // The new file is untouched by both and settles on its own.
        assert!(!s.is_handed_out("daily.hl7".as_ref()));
        assert_eq!(s.next_deadline(), Some(t1 + SETTLE));
        assert_eq!(tick(&mut s, t1 + SETTLE, &[("daily.hl7", stat(2, 2))]), names(&["daily.hl7"]));
        // Done while it is still handed out: forgotten; seen again later, it is new.
        s.done("daily.hl7".as_ref());
        assert!(s.is_empty());
        let t2 = t1 + SETTLE * 2;
        s.observe("daily.hl7".as_ref(), stat(2, 2), Seen::Look, t2);
        assert!(tick(&mut s, t2, &[("daily.hl7", stat(2, 2))]).is_empty());
        assert_eq!(s.next_deadline(), Some(t2 + SETTLE));
    }

    #[test]
    fn retry_later_defers_one_file_and_not_the_others() {
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        let files = [("a.hl7", stat(1, 1)), ("b.hl7", stat(1, 2))];
        s.observe("a.hl7".as_ref(), stat(1, 1), Seen::Look, t0);
        s.observe("b.hl7".as_ref(), stat(1, 2), Seen::Look, t0);
        assert_eq!(tick(&mut s, t0 + SETTLE, &files), names(&["a.hl7", "b.hl7"]));
        let t1 = t0 + SETTLE + ms(10);
        s.retry_later("a.hl7".as_ref(), t1 + SETTLE * 3);
        s.done("b.hl7".as_ref());
        // A new file arriving meanwhile is not held back by the one waiting.
        s.observe("c.hl7".as_ref(), stat(1, 3), Seen::Complete, t1);
        let files = [files[0], files[1], ("c.hl7", stat(1, 3))];
        assert_eq!(tick(&mut s, t1 + QUIET, &files), names(&["c.hl7"]));
        assert_eq!(s.next_deadline(), Some(t1 + SETTLE * 3));
        assert!(tick(&mut s, t1 + SETTLE * 3 - ms(1), &files).is_empty());
        // At its time it is looked at again and, unchanged, handed out again.
        assert_eq!(s.due(t1 + SETTLE * 3), names(&["a.hl7"]));
        assert_eq!(tick(&mut s, t1 + SETTLE * 3, &files), names(&["a.hl7"]));

        // Changed while waiting: it settles again before it is retried.
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("a.hl7".as_ref(), stat(1, 1), Seen::Complete, t0);
        assert_eq!(tick(&mut s, t0 + QUIET, &files), names(&["a.hl7"]));
        s.retry_later("a.hl7".as_ref(), t0 + SETTLE);
        s.observe("a.hl7".as_ref(), stat(9, 9), Seen::Written, t0 + SETTLE - ms(1));
        assert!(tick(&mut s, t0 + SETTLE, &[("a.hl7", stat(9, 9))]).is_empty());
        assert_eq!(s.next_deadline(), Some(t0 + SETTLE * 2 - ms(1)));
    }

    #[test]
    fn a_look_older_than_the_last_is_ignored() {
        // A scan started before an event was handled, but its result came in after it.
        let t0 = Instant::now();
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("a.hl7".as_ref(), stat(500, 2), Seen::Complete, t0 + ms(100));
        s.observe("a.hl7".as_ref(), stat(100, 1), Seen::Look, t0);
        assert_eq!(s.next_deadline(), Some(t0 + ms(100) + QUIET));
        assert_eq!(tick(&mut s, t0 + ms(100) + QUIET, &[("a.hl7", stat(500, 2))]), names(&["a.hl7"]));
    }

    #[test]
    fn debug_output_has_no_names() {
        let mut s = Settle::new(SETTLE, QUIET);
        s.observe("DOE_JOHN.hl7".as_ref(), stat(1, 1), Seen::Look, Instant::now());
        let debug = format!("{s:?}");
        assert!(!debug.contains("DOE"), "{debug}");
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let t0 = Instant::now();
        let mut s = Settle::new(Duration::MAX, Duration::MAX);
        s.observe("a.hl7".as_ref(), stat(1, 1), Seen::Complete, t0);
        assert_eq!(s.next_deadline(), None);
        assert!(s.due(t0).is_empty() && s.take_ready().is_empty());
        let mut s = Settle::new(Duration::ZERO, Duration::ZERO);
        s.observe("a.hl7".as_ref(), stat(1, 1), Seen::Look, t0);
        assert_eq!(s.take_ready(), names(&["a.hl7"]));
    }
}
