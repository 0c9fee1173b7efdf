//! Directory source: HL7 files dropped into a folder (an EHR export, a scanner workstation) are
//! taken in with the same promise as MLLP: a file is moved or deleted only after every message
//! in it is committed to the journal.
//!
//! Per file, in order (the folder watching, settling and rescans are `folder.rs`'s):
//! 1. read it whole (at most `max_file_size`) and hash it;
//! 2. if the journal already records this file (same source, name and SHA-256), a crash came
//!    between its commit and its move: only the move is left;
//! 3. split it into messages (`hl7::batch`: one message, several, FHS/BHS batches, MLLP-framed),
//!    each an item, byte-exact, with the file's name in its summary; text that is not part of
//!    any message is kept too, as a rejected item, and a file with no HL7 at all is one rejected
//!    item;
//! 4. journal all of them and the file's record (`source_files`) in one transaction
//!    (`Intake::accept_file`): all or none;
//! 5. move the file (into `processed/`, or `move_to`) or delete it. A file with nothing
//!    readable goes to `rejected/` beside it, never back into the loop.
//!
//! So a crash anywhere leaves either nothing of the file in the journal (it is read again) or
//! all of it and its record (only the move is left): never half a file, never a file twice.
//! While a file is taken, its bytes are held twice (the file and its items): a source needs up
//! to twice `max_file_size` of memory.
//!
//! A file that cannot be read or moved (permissions, a share gone) is reported in `status`,
//! escalated, and tried again after `retry_after` without holding up the other files. A
//! journal that refuses (full) leaves the file where it is, to be tried again.
//!
//! File names are logged at debug only: exports name files after patients.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::folder::Folder;
use super::{OpenError, Serving};
use crate::config::{AfterTaken, DirectorySource};
use crate::envelope::Kind;
use crate::hl7::Outcome;
use crate::hl7::batch::{Split, split_messages};
use crate::intake::{Arrival, Intake};
use crate::journal::TakenFile;
use crate::stats::{SourceLink, SourceStats, get};

/// Where files with nothing readable in them are put, beside the taken ones.
const REJECTED_DIR: &str = "rejected";

/// What `status` shows of a directory source beyond the common counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The folder watched.
    pub dir: String,
    pub pattern: String,
    /// Files seen and not yet taken (settling, waiting their turn, or failing).
    pub waiting: u64,
}

pub fn detail(cfg: &DirectorySource, stats: &SourceStats, _link: &SourceLink) -> Detail {
    Detail { dir: cfg.dir.display().to_string(), pattern: cfg.pattern.clone(), waiting: get(&stats.waiting) }
}

/// Checks the folder (and where taken files go) and starts watching it.
pub fn open(name: &str, cfg: &DirectorySource) -> Result<Folder, OpenError> {
    let fail = |message: String| OpenError { name: name.to_string(), message };
    let folder =
        Folder::open(&cfg.dir, cfg.matcher.clone(), cfg.settle, cfg.rescan).map_err(|e| fail(e.to_string()))?;
    for dir in [taken_dir(cfg), Some(cfg.dir.join(REJECTED_DIR))].into_iter().flatten() {
        std::fs::create_dir_all(&dir).map_err(|e| {
            fail(format!(
                "cannot create {} for taken files: {e}; does the outpost user have rwx on {}?",
                dir.display(),
                dir.parent().unwrap_or(&dir).display()
            ))
        })?;
    }
    Ok(folder)
}

/// Where taken files are moved (`None`: they are deleted).
fn taken_dir(cfg: &DirectorySource) -> Option<PathBuf> {
    match &cfg.after {
        AfterTaken::Delete => None,
        AfterTaken::Move(dir) => Some(dir.clone()),
    }
}

/// Takes files until `serving.stop` fires; a file being taken is finished first.
pub async fn serve(name: String, cfg: DirectorySource, mut folder: Folder, serving: Serving) -> Folder {
    let stats = serving.stats.clone();
    tracing::info!(source = %name, dir = %cfg.dir.display(), inotify = folder.uses_inotify(), "watching for files");
    let source = Source { name, cfg: Arc::new(cfg), intake: serving.intake.clone() };
    // Files that could not be taken last time; the source's problem clears once none is left.
    let mut failing: HashSet<PathBuf> = HashSet::new();
    while let Some(path) = folder.next_ready(&serving.stop).await {
        match source.take(&path).await {
            Ok(()) => {
                folder.done(&path);
                if failing.remove(&path) && failing.is_empty() {
                    tracing::info!(source = %source.name, "every file that could not be taken has been taken now");
                    stats.problem(None);
                }
            }
            Err(problem) => {
                let message = problem.to_string();
                tracing::warn!(source = %source.name, "{message}; trying again in {:?}", source.cfg.retry_after);
                tracing::debug!(source = %source.name, file = %path.display(), "the file above");
                stats.problem(Some(message.clone()));
                if problem.escalates() {
                    source.intake.source_problem(&source.name, message);
                }
                failing.insert(path.clone());
                folder.retry_later(&path, Instant::now() + source.cfg.retry_after);
            }
        }
        // A file that vanished while failing (someone removed it) is no longer a problem.
        failing.retain(|p| p.exists());
        if failing.is_empty() {
            stats.problem(None);
        }
        stats.waiting.store(folder.waiting() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::info!(source = %source.name, "stopped watching");
    folder
}

/// Why a file was not taken this time (it stays in the folder and is tried again).
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("a file in {dir} cannot be read: {error}; does the outpost user have read permission on the files there?")]
    Unreadable { dir: String, error: std::io::Error },
    #[error(
        "a file in {dir} is {size} bytes, over max_file_size ({max}); it is left there: split it, or raise max_file_size"
    )]
    TooLarge { dir: String, size: u64, max: u64 },
    #[error("a file's messages cannot be stored now ({0}); it is left in the folder")]
    Journal(String),
    #[error("a taken file cannot be moved out of {dir}: {error}; does the outpost user have rwx on {dir} and on {to}?")]
    Unmovable { dir: String, to: String, error: std::io::Error },
}

impl Problem {
    /// A full journal is escalated by intake already.
    fn escalates(&self) -> bool {
        !matches!(self, Problem::Journal(_))
    }
}

struct Source {
    name: String,
    cfg: Arc<DirectorySource>,
    intake: Arc<Intake>,
}

impl Source {
    fn dir(&self) -> String {
        self.cfg.dir.display().to_string()
    }

    async fn take(&self, path: &Path) -> Result<(), Problem> {
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let size =
            tokio::fs::metadata(path).await.map_err(|error| Problem::Unreadable { dir: self.dir(), error })?.len();
        if size > self.cfg.max_file_size {
            return Err(Problem::TooLarge { dir: self.dir(), size, max: self.cfg.max_file_size });
        }
        let bytes = tokio::fs::read(path).await.map_err(|error| Problem::Unreadable { dir: self.dir(), error })?;
        let digest = crate::config::bytes_hash(&bytes);
        let (source, name, d) = (self.name.clone(), file_name.clone(), digest.clone());
        let seen = self.intake.journal().read(move |r| r.file_taken(&source, &name, &d)).await;
        if seen.map_err(|e| Problem::Journal(e.to_string()))? {
            tracing::info!(source = %self.name, "a file taken before a restart is moved now (its items were already stored)");
            return self.finish(path, &file_name, true).await;
        }
        let arrivals = self.arrivals(&bytes, &file_name);
        let taken = TakenFile {
            source: self.name.clone(),
            name: file_name.clone(),
            digest,
            size,
            items: arrivals.len() as u64,
        };
        let receipts = self.intake.accept_file(arrivals, taken).await.map_err(|e| Problem::Journal(e.to_string()))?;
        // Readable: at least one item was HL7 it could read (stored now or before); a file of
        // nothing readable goes to rejected/. An empty file counts as readable: nothing in it
        // is lost by moving it on.
        let readable = receipts.is_empty() || receipts.iter().any(|r| r.outcome == Outcome::Stored);
        self.finish(path, &file_name, readable).await
    }

    /// The items of a file, byte-exact, in file order: its messages, any text outside them, or
    /// the whole file when it holds no HL7.
    fn arrivals(&self, bytes: &[u8], file_name: &str) -> Vec<Arrival> {
        let pieces: Vec<std::ops::Range<usize>> = match split_messages(bytes) {
            Split::Empty => {
                tracing::info!(source = %self.name, "an empty file: nothing to take");
                Vec::new()
            }
            Split::NotHl7 => std::iter::once(0..bytes.len()).collect(),
            Split::Hl7(contents) => {
                for b in &contents.batches {
                    if let Some((declared, found)) = b.count_mismatch() {
                        tracing::warn!(source = %self.name, declared, found, "a batch's BTS count does not match its messages; all found are taken");
                    }
                }
                if let Some(m) = contents.mllp.filter(|m| m.unterminated > 0) {
                    tracing::warn!(source = %self.name, frames = m.unterminated, "a file holds MLLP frames without an end byte; their messages are taken as they are");
                }
                if !contents.stray.is_empty() {
                    tracing::warn!(source = %self.name, pieces = contents.stray.len(), "a file holds text outside any message; it is kept as rejected item(s)");
                }
                let mut all = contents.messages;
                all.extend(contents.stray);
                all.sort_by_key(|r| r.start);
                all
            }
        };
        pieces
            .into_iter()
            .map(|range| {
                let mut arrival = Arrival::new(&self.name, Kind::Hl7v2, self.cfg.charset, bytes[range].to_vec());
                arrival.fields.push(("file", file_name.to_string()));
                arrival
            })
            .collect()
    }

    /// Moves (or deletes) a taken file; one with nothing readable goes to `rejected/`.
    async fn finish(&self, path: &Path, file_name: &str, readable: bool) -> Result<(), Problem> {
        let to = match (readable, taken_dir(&self.cfg)) {
            (false, _) => Some(self.cfg.dir.join(REJECTED_DIR)),
            (true, dir) => dir,
        };
        let (path, file_name) = (path.to_path_buf(), file_name.to_string());
        let moved = tokio::task::spawn_blocking(move || match &to {
            None => std::fs::remove_file(&path).map_err(|e| (String::from("(deleted)"), e)),
            Some(dir) => move_into(&path, dir, &file_name).map_err(|e| (dir.display().to_string(), e)),
        })
        .await
        .map_err(|e| Problem::Unmovable {
            dir: self.dir(),
            to: "?".into(),
            error: std::io::Error::other(e),
        })?;
        moved.map_err(|(to, error)| Problem::Unmovable { dir: self.dir(), to, error })
    }
}

/// Renames `path` into `dir`, under its own name or, if that is taken there, with `.1`, `.2`...
/// added, so an export that reuses file names never overwrites an earlier one. Syncs `dir` so
/// the move survives a power cut.
fn move_into(path: &Path, dir: &Path, file_name: &str) -> std::io::Result<()> {
    let mut target = dir.join(file_name);
    let mut n = 0;
    while target.exists() {
        n += 1;
        target = dir.join(format!("{file_name}.{n}"));
    }
    std::fs::rename(path, &target)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
