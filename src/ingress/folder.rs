//! Watching a folder for files that are complete: the part of a directory source (and later
//! the fax spool) that finds files, not the part that reads, journals and moves them.
//!
//! [`Folder`] hands out, one at a time and oldest first (mtime, then name), the regular files
//! directly in the folder whose names match the pattern, once [`Settle`] judges them complete
//! (see `settle.rs`: unchanged for `settle`, or closed by their writer / renamed in and quiet
//! for [`CLOSE_QUIET`]). A file handed out is not handed out again until the adapter says
//! [`Folder::done`] (it moved or deleted it) or [`Folder::retry_later`] (it could not; the file
//! comes back after the given time, other files are not held up meanwhile).
//!
//! What it looks at: Linux inotify (through `nix`, on tokio's reactor) for prompt news of
//! writes, closes, renames and deletes, and a full listing every `rescan` as the safety net:
//! network shares send no events for writes made by other machines, and a full inotify queue
//! drops events (an overflow triggers a rescan at once). If inotify cannot be set up it is
//! logged once and the folder is watched by rescans alone; files are then noticed up to one
//! `rescan` late, never handed out early, since readiness is always confirmed by a fresh look.
//! A folder removed, moved away or unmounted is reported (once) by the failing rescans and
//! watched again when a rescan finds it back.
//!
//! Which files: regular files only (no symlinks, no subfolders: the adapter keeps `processed/`
//! and `rejected/` there), not dotfiles, and not names ending in `.part`, `.tmp` or `.filepart`
//! (WinSCP), in any case: the names writers use while a file is incomplete.
//!
//! Blocking filesystem calls (listing, stat) run on tokio's blocking pool, so that a hung
//! network share stalls this folder, not the runtime. File names are logged at debug only:
//! exports name files after patients.

mod settle;

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use globset::GlobMatcher;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use nix::unistd::AccessFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

pub use settle::{Seen, Settle, Stat};

/// How long after its writer closed it (or it was renamed into the folder) a file must see no
/// write before it is handed out, when that is sooner than `settle`. Not 0: a writer that closes
/// and reopens at once to append is then still seen writing.
pub const CLOSE_QUIET: Duration = Duration::from_millis(250);

/// The shortest rescan interval; a shorter one is raised to it (listing a folder in a loop
/// would only burn the gateway's CPU).
pub const MIN_RESCAN: Duration = Duration::from_millis(100);

/// The longest rescan interval; a longer one is lowered to it (the safety net must run).
pub const MAX_RESCAN: Duration = Duration::from_secs(24 * 3600);

/// How many reads of the inotify descriptor one wake-up takes at most before handling them.
const MAX_READS: usize = 64;

/// Why a folder cannot be watched. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "folder {}: does not exist; create it (`mkdir -p {0}` then `chown outpost {0}`) or correct the path \
         in the config",
        .dir.display()
    )]
    Missing { dir: PathBuf },

    #[error("{}: is not a folder; the path must name the directory files are dropped into", .dir.display())]
    NotADirectory { dir: PathBuf },

    #[error(
        "folder {0}: permission denied; does the outpost user have rwx on it (and x on every folder above \
         it)? Check with `sudo -u outpost ls {0}`, fix with `chown outpost {0}` or `setfacl -m u:outpost:rwx {0}`",
        .dir.display()
    )]
    PermissionDenied { dir: PathBuf },

    #[error(
        "folder {0}: permission denied; the outpost user needs to read it (r-x on it, r on its files, x on \
         every folder above it): add it to the group that owns the folder (for HylaFAX's recvq, \
         `usermod -aG uucp outpost`) or `setfacl -m u:outpost:rx {0}`; check with `sudo -u outpost ls {0}`",
        .dir.display()
    )]
    CannotRead { dir: PathBuf },

    #[error(
        "folder {}: on a read-only filesystem, but outpost must move taken files out of it; remount it \
         read-write (check the share's mount options) or choose another folder",
        .dir.display()
    )]
    ReadOnly { dir: PathBuf },

    #[error(
        "folder {}: cannot open it: {source}; check that its filesystem is mounted and the path is right",
        .dir.display()
    )]
    Unreadable { dir: PathBuf, source: io::Error },
}

/// A watched folder. See the module docs. `Debug` shows counts, not file names.
pub struct Folder {
    dir: PathBuf,
    pattern: GlobMatcher,
    rescan: Duration,
    settle: Settle,
    /// `None` when inotify could not be set up or failed: rescans alone.
    watch: Option<Watch>,
    next_rescan: Instant,
    /// Ready files not yet returned by `next_ready`, oldest first.
    ready: VecDeque<OsString>,
    /// Files inotify named, not yet looked at (kept here so that a dropped `next_ready` loses
    /// no event).
    unlooked: HashMap<OsString, Seen>,
    /// The problem the last rescan had, if any, so that it is logged when it starts and ends,
    /// not at every rescan.
    problem: Option<String>,
}

impl std::fmt::Debug for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Folder")
            .field("dir", &self.dir)
            .field("inotify", &self.uses_inotify())
            .field("tracked", &self.settle.len())
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl Folder {
    /// Checks that `dir` is a folder outpost may read and write (failing with what to do if
    /// not), and starts watching it with inotify; the first [`Folder::next_ready`] lists it.
    /// Must be called inside a tokio runtime (inotify is registered with its reactor; outside
    /// one the folder is watched by rescans alone). `rescan` is kept between [`MIN_RESCAN`] and
    /// [`MAX_RESCAN`].
    pub fn open(dir: &Path, pattern: GlobMatcher, settle: Duration, rescan: Duration) -> Result<Folder, FolderError> {
        check_dir(dir, true)?;
        Folder::watching(dir, pattern, settle, rescan)
    }

    /// [`Folder::open`] for a folder outpost only reads (another program's spool: its files are
    /// left where they are, see [`Folder::keep`]).
    pub fn open_to_read(
        dir: &Path,
        pattern: GlobMatcher,
        settle: Duration,
        rescan: Duration,
    ) -> Result<Folder, FolderError> {
        check_dir(dir, false)?;
        Folder::watching(dir, pattern, settle, rescan)
    }

    fn watching(dir: &Path, pattern: GlobMatcher, settle: Duration, rescan: Duration) -> Result<Folder, FolderError> {
        let rescan = rescan.clamp(MIN_RESCAN, MAX_RESCAN);
        let watch = match Watch::new(dir) {
            Ok(watch) => Some(watch),
            Err(reason) => {
                tracing::warn!(folder = %dir.display(), %reason, every = ?rescan,
                    "inotify unavailable: new files are found by rescans alone");
                None
            }
        };
        if let (Some(_), Some(fs)) = (&watch, network_filesystem(dir)) {
            tracing::info!(folder = %dir.display(), fs, every = ?rescan,
                "folder is on a network filesystem: files written by other machines are found by rescans");
        }
        Ok(Folder {
            dir: dir.to_path_buf(),
            pattern,
            rescan,
            settle: Settle::new(settle, CLOSE_QUIET),
            watch,
            next_rescan: Instant::now(),
            ready: VecDeque::new(),
            unlooked: HashMap::new(),
            problem: None,
        })
    }

    /// Stops using inotify: the folder is watched by rescans alone (for folders where events
    /// are known not to come, and for tests).
    pub fn rescan_only(mut self) -> Folder {
        self.watch = None;
        self
    }

    /// The folder watched, as given to [`Folder::open`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether inotify events are coming in (else rescans alone find files).
    pub fn uses_inotify(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.wd.is_some())
    }

    /// The next complete file (its path in the folder), oldest first; `None` once `cancel`
    /// fires. Cancel-safe: dropping the future loses no file and no event.
    pub async fn next_ready(&mut self, cancel: &CancellationToken) -> Option<PathBuf> {
        loop {
            while let Some(name) = self.ready.pop_front() {
                // It may have vanished (and another file taken its name) since it was ready.
                if self.settle.is_handed_out(&name) {
                    return Some(self.dir.join(name));
                }
            }
            if cancel.is_cancelled() {
                return None;
            }
            if Instant::now() >= self.next_rescan {
                // A watch lost with its folder is set up again before listing, so that nothing
                // created in between goes unseen.
                if let Some(watch) = &mut self.watch {
                    watch.rewatch(&self.dir);
                }
                let started = Instant::now();
                let (dir, pattern) = (self.dir.clone(), self.pattern.clone());
                let listing = tokio::select! {
                    _ = cancel.cancelled() => return None,
                    listing = blocking(move || list(&dir, &pattern)) => listing,
                };
                self.apply_listing(listing, started);
                self.next_rescan = Instant::now() + self.rescan;
            }
            let now = Instant::now();
            let mut look = self.unlooked.clone();
            for name in self.settle.due(now) {
                look.entry(name).or_insert(Seen::Look);
            }
            if !look.is_empty() && !self.look_at(look, now, cancel).await {
                return None;
            }
            self.ready.extend(self.settle.take_ready());
            if !self.ready.is_empty() {
                continue;
            }
            let deadline = self.settle.next_deadline().map_or(self.next_rescan, |d| d.min(self.next_rescan));
            let events = tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep_until(deadline.into()) => continue,
                events = read_events(self.watch.as_ref()) => events,
            };
            match events {
                Ok(events) => self.note_events(events),
                Err(e) => {
                    tracing::warn!(folder = %self.dir.display(), error = %e, every = ?self.rescan,
                        "inotify failed: new files are found by rescans alone");
                    self.watch = None;
                }
            }
        }
    }

    /// Files seen and not yet done with (settling, ready, handed out or waiting to be retried).
    pub fn waiting(&self) -> usize {
        self.settle.len()
    }

    /// The adapter has moved or deleted `path` (as returned by [`Folder::next_ready`]).
    pub fn done(&mut self, path: &Path) {
        if let Some(name) = path.file_name() {
            self.settle.done(name);
        }
    }

    /// The adapter has taken `path` and leaves it in the folder (a spool another program
    /// owns): it is not handed out again unless it changes.
    pub fn keep(&mut self, path: &Path) {
        if let Some(name) = path.file_name() {
            self.settle.keep(name);
        }
    }

    /// The adapter could not take `path` (unreadable, could not be moved): hand it out again
    /// after `at`, if it is still there and settled; other files are handed out meanwhile.
    pub fn retry_later(&mut self, path: &Path, at: Instant) {
        if let Some(name) = path.file_name() {
            self.settle.retry_later(name, at);
        }
    }

    fn apply_listing(&mut self, listing: io::Result<Listing>, at: Instant) {
        let problem = match listing {
            Ok(listing) => {
                for (name, stat) in &listing.files {
                    self.settle.observe(name, *stat, Seen::Look, at);
                }
                if listing.complete {
                    self.settle.forget_unlisted(&listing.names);
                }
                (listing.unreadable > 0).then(|| {
                    format!(
                        "{} files cannot be looked at (stat failed) and are not taken in; check their permissions",
                        listing.unreadable
                    )
                })
            }
            Err(e) => Some(format!(
                "cannot list the folder ({e}); files dropped there are not taken in until it can be listed again"
            )),
        };
        if problem != self.problem {
            match &problem {
                Some(problem) => tracing::warn!(folder = %self.dir.display(), %problem, "folder scan"),
                None => tracing::info!(folder = %self.dir.display(), "folder scan works again"),
            }
            self.problem = problem;
        }
    }

    /// Looks at `names` (on the blocking pool), records what it finds and clears `unlooked`
    /// (all of which `names` holds). `false` if cancelled.
    async fn look_at(&mut self, names: HashMap<OsString, Seen>, now: Instant, cancel: &CancellationToken) -> bool {
        let dir = self.dir.clone();
        let asked: Vec<OsString> = names.keys().cloned().collect();
        let looks = tokio::select! {
            _ = cancel.cancelled() => return false,
            looks = blocking(move || Ok(look_all(&dir, names))) => looks,
        };
        self.unlooked.clear();
        let looks = looks.unwrap_or_else(|e| {
            // Only if the blocking pool fails (shutting down): nothing learnt, forget them
            // rather than find them due again at once; a rescan finds them again.
            tracing::warn!(folder = %self.dir.display(), error = %e, "cannot look at files");
            asked.into_iter().map(|name| (name, Seen::Look, Look::Failed(io::Error::other("not looked at")))).collect()
        });
        for (name, seen, look) in looks {
            match look {
                Look::File(stat) => self.settle.observe(&name, stat, seen, now),
                Look::Gone => self.settle.vanished(&name),
                Look::Failed(e) => {
                    // Forgotten, so that it is not due again at once; a rescan finds it again.
                    tracing::debug!(folder = %self.dir.display(), file = ?name, error = %e, "cannot look at file");
                    self.settle.vanished(&name);
                }
            }
        }
        true
    }

    /// Takes in what inotify reported; the files named are looked at next.
    fn note_events(&mut self, events: Vec<InotifyEvent>) {
        let wd = self.watch.as_ref().and_then(|w| w.wd).map(WatchDescriptor::as_raw);
        let hints = hints(events.into_iter().map(|e| (e.wd.as_raw(), e.mask, e.name)), wd, &self.pattern);
        if hints.watch_lost {
            tracing::warn!(folder = %self.dir.display(), every = ?self.rescan,
                "folder removed, moved or unmounted; watching it again once a rescan finds it");
            if let Some(watch) = &mut self.watch {
                watch.unwatch();
            }
        }
        if hints.rescan {
            if !hints.watch_lost {
                tracing::info!(folder = %self.dir.display(), "inotify queue overflowed (events lost): rescanning");
            }
            self.next_rescan = Instant::now();
        }
        // Later events about a file say more than earlier ones.
        self.unlooked.extend(hints.look);
    }
}

/// Fails with what to do if `dir` is not a folder outpost may list (and, with `write`, move
/// files out of).
fn check_dir(dir: &Path, write: bool) -> Result<(), FolderError> {
    let owned = || dir.to_path_buf();
    let from_io = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => FolderError::Missing { dir: owned() },
        io::ErrorKind::PermissionDenied if !write => FolderError::CannotRead { dir: owned() },
        io::ErrorKind::PermissionDenied => FolderError::PermissionDenied { dir: owned() },
        io::ErrorKind::NotADirectory => FolderError::NotADirectory { dir: owned() },
        io::ErrorKind::ReadOnlyFilesystem => FolderError::ReadOnly { dir: owned() },
        _ => FolderError::Unreadable { dir: owned(), source: e },
    };
    if !std::fs::metadata(dir).map_err(from_io)?.is_dir() {
        return Err(FolderError::NotADirectory { dir: owned() });
    }
    let mode = if write {
        AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK
    } else {
        AccessFlags::R_OK | AccessFlags::X_OK
    };
    nix::unistd::access(dir, mode).map_err(|e| from_io(e.into()))?;
    // access() does not see every refusal (AppArmor, some network filesystems): list it once.
    std::fs::read_dir(dir).map_err(from_io)?;
    Ok(())
}

/// Whether a directory entry's name is one to hand out (the file type is checked apart).
fn is_candidate(name: &OsStr, pattern: &GlobMatcher) -> bool {
    let bytes = name.as_encoded_bytes();
    let partial = [b".part".as_slice(), b".tmp", b".filepart"]
        .iter()
        .any(|suffix| bytes.len() >= suffix.len() && bytes[bytes.len() - suffix.len()..].eq_ignore_ascii_case(suffix));
    !bytes.starts_with(b".") && !partial && pattern.is_match(name)
}

/// Runs blocking filesystem work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// One complete-or-not listing of the folder.
#[derive(Debug, Default)]
struct Listing {
    /// Every candidate name listed.
    names: HashSet<OsString>,
    /// The regular files among them.
    files: Vec<(OsString, Stat)>,
    /// Candidates whose stat failed.
    unreadable: usize,
    /// No entry was lost to an error: names not listed are gone.
    complete: bool,
}

fn list(dir: &Path, pattern: &GlobMatcher) -> io::Result<Listing> {
    let mut listing = Listing { complete: true, ..Listing::default() };
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else {
            listing.complete = false;
            continue;
        };
        let name = entry.file_name();
        if !is_candidate(&name, pattern) {
            continue;
        }
        match look(&dir.join(&name)) {
            Look::File(stat) => listing.files.push((name.clone(), stat)),
            Look::Gone => {}
            Look::Failed(_) => listing.unreadable += 1,
        }
        listing.names.insert(name);
    }
    Ok(listing)
}

#[derive(Debug)]
enum Look {
    File(Stat),
    /// Not there, or not a regular file.
    Gone,
    Failed(io::Error),
}

fn look(path: &Path) -> Look {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {
            Look::File(Stat { size: m.len(), mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH) })
        }
        Ok(_) => Look::Gone,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Look::Gone,
        Err(e) => Look::Failed(e),
    }
}

fn look_all(dir: &Path, names: HashMap<OsString, Seen>) -> Vec<(OsString, Seen, Look)> {
    names
        .into_iter()
        .map(|(name, seen)| {
            let look = look(&dir.join(&name));
            (name, seen, look)
        })
        .collect()
}

/// Whether `dir` is on NFS or SMB/CIFS, where inotify reports local changes only.
fn network_filesystem(dir: &Path) -> Option<&'static str> {
    let magic = nix::sys::statfs::statfs(dir).ok()?.filesystem_type().0;
    // The magic's integer type differs between targets (and is signed on 32-bit ARM): compare
    // the bits, in hex.
    match format!("{magic:x}").as_str() {
        "6969" => Some("nfs"),
        "ff534d42" | "fe534d42" | "517b" => Some("cifs"),
        _ => None,
    }
}

/// The inotify descriptor, registered with tokio.
#[derive(Debug)]
struct Watch {
    fd: AsyncFd<InotifyFd>,
    /// `None` after the folder was removed, moved or unmounted, until a rescan finds it again.
    wd: Option<WatchDescriptor>,
}

#[derive(Debug)]
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

fn watch_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

impl Watch {
    fn new(dir: &Path) -> Result<Watch, String> {
        tokio::runtime::Handle::try_current().map_err(|_| "not inside a tokio runtime".to_string())?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(|e| match e {
            Errno::EMFILE => format!(
                "{e}: the per-user limit of inotify instances is reached; raise fs.inotify.max_user_instances (sysctl)"
            ),
            _ => e.to_string(),
        })?;
        let wd = add_watch(&inotify, dir)?;
        let fd = register(inotify).map_err(|e| e.to_string())?;
        Ok(Watch { fd, wd: Some(wd) })
    }

    fn unwatch(&mut self) {
        if let Some(wd) = self.wd.take() {
            // Fails if the kernel removed it already (folder deleted): nothing to do then.
            let _ = self.fd.get_ref().0.rm_watch(wd);
        }
    }

    /// Watches `dir` again after it came back.
    fn rewatch(&mut self, dir: &Path) {
        if self.wd.is_none() {
            match add_watch(&self.fd.get_ref().0, dir) {
                Ok(wd) => {
                    tracing::info!(folder = %dir.display(), "folder back: watching it with inotify again");
                    self.wd = Some(wd);
                }
                Err(reason) => tracing::debug!(folder = %dir.display(), %reason, "cannot watch folder yet"),
            }
        }
    }
}

/// Registers the inotify descriptor with tokio's reactor (tokio's safe constructors are
/// deprecated as unsound: they cannot check what they are given).
#[allow(unsafe_code)]
fn register(inotify: Inotify) -> io::Result<AsyncFd<InotifyFd>> {
    // SAFETY: `InotifyFd` owns its descriptor (the `OwnedFd` inside `Inotify`, a private field
    // never moved out or replaced), so it stays open and is the same descriptor for as long as
    // the `AsyncFd` holds it, and `as_raw_fd` always returns it.
    let registered = unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) };
    registered.map_err(io::Error::from)
}

fn add_watch(inotify: &Inotify, dir: &Path) -> Result<WatchDescriptor, String> {
    inotify.add_watch(dir, watch_mask()).map_err(|e| match e {
        Errno::ENOSPC => {
            format!("{e}: the per-user limit of inotify watches is reached; raise fs.inotify.max_user_watches (sysctl)")
        }
        _ => e.to_string(),
    })
}

/// Waits for inotify events and reads what is queued (never returns without a watch).
/// Cancel-safe: events are read only in the poll that returns them.
async fn read_events(watch: Option<&Watch>) -> io::Result<Vec<InotifyEvent>> {
    let Some(watch) = watch else {
        return std::future::pending().await;
    };
    loop {
        let mut guard = watch.fd.readable().await?;
        let mut events = Vec::new();
        for _ in 0..MAX_READS {
            match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                Ok(Ok(batch)) if !batch.is_empty() => events.extend(batch),
                Ok(Ok(_)) => {
                    guard.clear_ready();
                    break;
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                // Would block: readiness is cleared, everything queued is read.
                Err(_) => break,
            }
        }
        if !events.is_empty() {
            return Ok(events);
        }
    }
}

/// What a batch of inotify events asks for.
#[derive(Debug, Default, PartialEq)]
struct Hints {
    /// Files to look at, with what the last event about each said.
    look: HashMap<OsString, Seen>,
    /// Events were lost (queue overflow) or the folder's watch is gone: list it now.
    rescan: bool,
    /// The folder was removed, moved or unmounted: its watch is gone.
    watch_lost: bool,
}

/// Reads `(watch descriptor, mask, name)` events in order; those of another watch than `wd`
/// (a folder moved away, whose watch is being removed) are ignored.
fn hints(
    events: impl IntoIterator<Item = (i32, AddWatchFlags, Option<OsString>)>,
    wd: Option<i32>,
    pattern: &GlobMatcher,
) -> Hints {
    let mut hints = Hints::default();
    for (event_wd, mask, name) in events {
        if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            hints.rescan = true;
            continue;
        }
        if Some(event_wd) != wd {
            continue;
        }
        let gone = AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_UNMOUNT
            | AddWatchFlags::IN_IGNORED;
        if mask.intersects(gone) {
            hints.watch_lost = true;
            hints.rescan = true;
            continue;
        }
        let Some(name) = name else { continue };
        if mask.contains(AddWatchFlags::IN_ISDIR) || !is_candidate(&name, pattern) {
            continue;
        }
        // A delete or a move away also asks for a look: gone, or a new file of that name.
        let seen = match mask.intersects(AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO) {
            true => Seen::Complete,
            false => Seen::Written,
        };
        hints.look.insert(name, seen);
    }
    hints
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// How long a test waits for something that should happen; generous, for a busy machine.
    const DEADLINE: Duration = Duration::from_secs(30);
    /// Rescans in tests that use inotify: they pass without it too, only slower.
    const RESCAN: Duration = Duration::from_secs(2);
    const LONG: Duration = Duration::from_secs(3600);

    fn glob(pattern: &str) -> GlobMatcher {
        globset::Glob::new(pattern).unwrap().compile_matcher()
    }

    async fn next(folder: &mut Folder) -> PathBuf {
        let cancel = CancellationToken::new();
        let next = tokio::time::timeout(DEADLINE, folder.next_ready(&cancel)).await;
        next.expect("a file is handed out within the deadline").expect("not cancelled")
    }

    /// Checks that nothing is handed out for `wait` (absence can only be checked by waiting).
    async fn nothing_for(folder: &mut Folder, wait: Duration) {
        let cancel = CancellationToken::new();
        if let Ok(got) = tokio::time::timeout(wait, folder.next_ready(&cancel)).await {
            panic!("nothing should be handed out, got {got:?}");
        }
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }

    fn set_mtime(path: &Path, secs_ago: u64) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago)).unwrap();
    }

    #[tokio::test]
    async fn a_new_file_is_handed_out_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = Folder::open(dir.path(), glob("*.hl7"), Duration::from_millis(500), RESCAN).unwrap();
        let path = dir.path().join("adt.hl7");
        let written = Instant::now();
        write(&path, b"MSH|^~\\&|\r");
        assert_eq!(next(&mut folder).await, path);
        // Closed by its writer: ready after the quiet time (inotify) or settle (rescans).
        assert!(written.elapsed() >= CLOSE_QUIET);
        folder.done(&path);
        std::fs::remove_file(&path).unwrap();
        // The same name again is a new file.
        write(&path, b"MSH|^~\\&|\r");
        assert_eq!(next(&mut folder).await, path);
    }

    #[tokio::test]
    async fn a_file_written_slowly_is_handed_out_when_it_stops_changing() {
        let dir = tempfile::tempdir().unwrap();
        // Settle far longer than the pauses between pieces: only a stalled machine could make
        // a pause look like the end.
        let mut folder = Folder::open(dir.path(), glob("*.hl7"), Duration::from_secs(10), RESCAN).unwrap();
        let path = dir.path().join("slow.hl7");
        let finished: Arc<Mutex<Option<Instant>>> = Arc::default();
        let writer = {
            let (path, finished) = (path.clone(), finished.clone());
            std::thread::spawn(move || {
                let mut file = std::fs::File::create(&path).unwrap();
                for piece in 0..6 {
                    file.write_all(format!("PID|{piece}\r").as_bytes()).unwrap();
                    file.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                }
                *finished.lock().unwrap() = Some(Instant::now());
                drop(file);
            })
        };
        assert_eq!(next(&mut folder).await, path);
        let handed_out = Instant::now();
        let finished = finished.lock().unwrap().expect("handed out only after the last write");
        assert!(handed_out >= finished);
        assert_eq!(std::fs::read(&path).unwrap().len(), 6 * "PID|0\r".len());
        writer.join().unwrap();
    }

    #[tokio::test]
    async fn partial_names_dotfiles_and_subfolders_are_skipped_and_a_renamed_file_comes_once() {
        let dir = tempfile::tempdir().unwrap();
        let settle = Duration::from_millis(300);
        let mut folder = Folder::open(dir.path(), glob("*"), settle, Duration::from_millis(200)).unwrap();
        std::fs::create_dir(dir.path().join("processed")).unwrap();
        write(&dir.path().join("processed/old.hl7"), b"MSH|");
        write(&dir.path().join(".hidden.hl7"), b"MSH|");
        write(&dir.path().join("export.TMP"), b"MSH|");
        write(&dir.path().join("upload.filepart"), b"MSH|");
        let part = dir.path().join("lab.hl7.part");
        write(&part, b"MSH|");
        // Several settle times and rescans pass: none of those is handed out.
        nothing_for(&mut folder, settle * 4).await;
        let path = dir.path().join("lab.hl7");
        std::fs::rename(&part, &path).unwrap();
        assert_eq!(next(&mut folder).await, path);
        // Still there, rescanned again and again, settled: not handed out a second time.
        nothing_for(&mut folder, settle * 4).await;
    }

    #[tokio::test]
    async fn rescans_find_files_without_inotify() {
        let dir = tempfile::tempdir().unwrap();
        let settle = Duration::from_millis(300);
        let folder = Folder::open(dir.path(), glob("*.hl7"), settle, Duration::from_millis(300)).unwrap();
        let mut folder = folder.rescan_only();
        assert!(!folder.uses_inotify());
        let path = dir.path().join("oru.hl7");
        let written = Instant::now();
        write(&path, b"MSH|^~\\&|\r");
        assert_eq!(next(&mut folder).await, path);
        // Found by a scan and confirmed by a later look: settle has passed.
        assert!(written.elapsed() >= settle);
        // Cancelled: no file, at once.
        let cancel = CancellationToken::new();
        cancel.cancel();
        write(&dir.path().join("next.hl7"), b"MSH|");
        assert_eq!(folder.next_ready(&cancel).await, None);
    }

    #[tokio::test]
    async fn files_waiting_at_start_come_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for (name, secs_ago) in [("b.hl7", 300), ("c.hl7", 100), ("a.hl7", 200), ("d.hl7", 300)] {
            write(&dir.path().join(name), b"MSH|");
            set_mtime(&dir.path().join(name), secs_ago);
        }
        let mut folder = Folder::open(dir.path(), glob("*.hl7"), Duration::from_millis(200), RESCAN).unwrap();
        let mut order = Vec::new();
        for _ in 0..4 {
            let path = next(&mut folder).await;
            order.push(path.file_name().unwrap().to_owned());
            std::fs::remove_file(&path).unwrap();
            folder.done(&path);
        }
        assert_eq!(order, ["b.hl7", "d.hl7", "a.hl7", "c.hl7"]);
    }

    #[tokio::test]
    async fn retry_later_defers_a_file_without_holding_up_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = Folder::open(dir.path(), glob("*.hl7"), Duration::from_millis(200), RESCAN).unwrap();
        let stuck = dir.path().join("stuck.hl7");
        write(&stuck, b"MSH|");
        assert_eq!(next(&mut folder).await, stuck);
        folder.retry_later(&stuck, Instant::now() + LONG);
        // A later file is handed out while the first one waits for its time.
        let fresh = dir.path().join("fresh.hl7");
        write(&fresh, b"MSH|");
        assert_eq!(next(&mut folder).await, fresh);
        folder.done(&fresh);
        std::fs::remove_file(&fresh).unwrap();
        // A file retried soon comes back after its time, not before.
        let flaky = dir.path().join("flaky.hl7");
        write(&flaky, b"MSH|");
        assert_eq!(next(&mut folder).await, flaky);
        let at = Instant::now() + Duration::from_secs(1);
        folder.retry_later(&flaky, at);
        assert_eq!(next(&mut folder).await, flaky);
        assert!(Instant::now() >= at);
    }

    #[tokio::test]
    async fn an_inotify_queue_overflow_triggers_a_rescan() {
        let limit: usize = match std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events") {
            Ok(text) => text.trim().parse().unwrap(),
            Err(_) => return,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut folder = Folder::open(dir.path(), glob("*.hl7"), Duration::from_millis(200), LONG).unwrap();
        // Only inotify (no rescan for an hour) and the rescan an overflow triggers can find them.
        if !folder.uses_inotify() || limit > 100_000 {
            eprintln!("skipped: inotify unavailable, or a queue too long to overflow quickly");
            return;
        }
        // The first scan, before the files come: after it, the next is an hour away.
        while folder.next_rescan <= Instant::now() {
            nothing_for(&mut folder, Duration::from_millis(100)).await;
        }
        // Each file makes three events (create, modify, close); the folder is not read meanwhile.
        let count = limit / 3 + 500;
        for i in 0..count {
            write(&dir.path().join(format!("{i:05}.hl7")), b"MSH|");
        }
        let mut seen = HashSet::new();
        while seen.len() < count {
            let path = next(&mut folder).await;
            assert!(seen.insert(path.clone()), "{path:?} handed out twice");
            // Removed before `done`, as the adapter does: a file still there is found again
            // by the overflow's rescan when that comes after it was handed out (as it does
            // when reading the queue is slow, e.g. under qemu).
            std::fs::remove_file(&path).unwrap();
            folder.done(&path);
        }
        assert!(seen.contains(&dir.path().join(format!("{:05}.hl7", count - 1))));
    }

    #[tokio::test]
    async fn a_folder_removed_and_made_again_is_watched_again() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("inbox");
        std::fs::create_dir(&dir).unwrap();
        let mut folder =
            Folder::open(&dir, glob("*.hl7"), Duration::from_millis(200), Duration::from_millis(300)).unwrap();
        let watched = folder.uses_inotify();
        std::fs::remove_dir(&dir).unwrap();
        // Rescans fail meanwhile, and say so (once).
        let waited = Instant::now();
        while folder.problem.is_none() {
            assert!(waited.elapsed() < DEADLINE, "a failing rescan within the deadline");
            nothing_for(&mut folder, Duration::from_millis(100)).await;
        }
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("after.hl7");
        write(&path, b"MSH|");
        assert_eq!(next(&mut folder).await, path);
        assert_eq!(folder.problem, None);
        assert_eq!(folder.uses_inotify(), watched);
    }

    #[tokio::test]
    async fn opening_fails_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let open = |path: &Path| Folder::open(path, glob("*"), Duration::from_secs(1), LONG).map(|_| ());

        let missing = dir.path().join("inbox");
        let err = open(&missing).unwrap_err();
        assert!(matches!(err, FolderError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("mkdir -p"), "{err}");

        let file = dir.path().join("file.hl7");
        write(&file, b"MSH|");
        let err = open(&file).unwrap_err();
        assert!(matches!(err, FolderError::NotADirectory { .. }), "{err:?}");
        let err = open(&file.join("inbox")).unwrap_err();
        assert!(matches!(err, FolderError::NotADirectory { .. }), "{err:?}");

        // root may do anything: the refusal can only be seen as another user.
        if !nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::PermissionsExt;
            let locked = dir.path().join("locked");
            std::fs::create_dir(&locked).unwrap();
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
            let err = open(&locked).unwrap_err();
            assert!(matches!(err, FolderError::PermissionDenied { .. }), "{err:?}");
            assert!(err.to_string().contains("does the outpost user have rwx on it"), "{err}");
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        open(dir.path()).unwrap();
    }

    #[test]
    fn candidate_names() {
        let hl7 = glob("*.hl7");
        for name in ["a.hl7", "ADT 2024-05-01.hl7", "x.part.hl7"] {
            assert!(is_candidate(name.as_ref(), &hl7), "{name}");
        }
        for name in [".a.hl7", "a.hl7.part", "a.hl7.PART", "a.hl7.tmp", "a.hl7.Tmp", "a.hl7.filepart", "a.txt", "a"] {
            assert!(!is_candidate(name.as_ref(), &hl7), "{name}");
        }
        assert!(is_candidate("readme".as_ref(), &glob("*")));
        assert!(!is_candidate(".part".as_ref(), &glob("*")));
    }

    #[test]
    fn inotify_events_become_hints() {
        let pattern = glob("*.hl7");
        let ev = |mask: AddWatchFlags, name: &str| (1, mask, Some(OsString::from(name)));
        let hints = hints(
            [
                ev(AddWatchFlags::IN_CREATE, "a.hl7"),
                ev(AddWatchFlags::IN_MODIFY, "a.hl7"),
                ev(AddWatchFlags::IN_CLOSE_WRITE, "a.hl7"),
                ev(AddWatchFlags::IN_CLOSE_WRITE, "b.hl7"),
                ev(AddWatchFlags::IN_MODIFY, "b.hl7"),
                ev(AddWatchFlags::IN_MOVED_FROM, "c.hl7.part"),
                ev(AddWatchFlags::IN_MOVED_TO, "c.hl7"),
                ev(AddWatchFlags::IN_DELETE, "d.hl7"),
                ev(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ISDIR, "e.hl7"),
                ev(AddWatchFlags::IN_CREATE, "notes.txt"),
                (7, AddWatchFlags::IN_CREATE, Some("moved-away.hl7".into())),
            ],
            Some(1),
            &pattern,
        );
        let expected: HashMap<OsString, Seen> = [
            ("a.hl7".into(), Seen::Complete),
            ("b.hl7".into(), Seen::Written),
            ("c.hl7".into(), Seen::Complete),
            ("d.hl7".into(), Seen::Written),
        ]
        .into_iter()
        .collect();
        assert_eq!(hints, Hints { look: expected, rescan: false, watch_lost: false });

        let overflow = super::hints([(-1, AddWatchFlags::IN_Q_OVERFLOW, None)], Some(1), &pattern);
        assert_eq!(overflow, Hints { rescan: true, ..Hints::default() });
        for mask in [AddWatchFlags::IN_DELETE_SELF, AddWatchFlags::IN_MOVE_SELF, AddWatchFlags::IN_IGNORED] {
            let lost = super::hints([(1, mask, None)], Some(1), &pattern);
            assert_eq!(lost, Hints { rescan: true, watch_lost: true, ..Hints::default() });
            // The old watch of a folder already known lost says nothing about the new one.
            assert_eq!(super::hints([(1, mask, None)], Some(2), &pattern), Hints::default());
        }
    }
}
