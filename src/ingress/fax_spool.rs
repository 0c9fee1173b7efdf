//! Fax spool source: faxes another program received (HylaFAX, which drives the Class 1 modems
//! many current USB modems are, or mgetty-fax), taken from its spool folder once each, the
//! files left exactly where and as they are.
//!
//! - **HylaFAX** (`recvq/`): one multi-page TIFF-F per fax, `fax00012.tif`. faxgetty holds an
//!   exclusive `flock` on the file while it receives (HylaFAX `faxd/FaxRecv.c++`,
//!   `getRecvFile`), so a file we cannot lock shared is still being received and is tried
//!   again after `settle`. The file's bytes are the item's body as they are; HylaFAX puts the
//!   sender's TSI in ImageDescription.
//! - **mgetty** (its incoming folder): one raw G3 file per page, named
//!   `f<n|f><7 hex digits of the call's start><2 characters of the device>[-<sender id>].<NN>`
//!   (mgetty `faxrecp.c`: `n` normal resolution, `f` fine; the sender id with everything but
//!   letters and digits turned into `-`). The pages of one call share the name up to `.NN`;
//!   the call is complete once none of its pages has changed for `settle` (mgetty creates the
//!   next page seconds after the last ends; the default `settle` for mgetty is 30 s). The
//!   pages are put into one TIFF-F (their data unchanged; the bit order and width found by
//!   reading them) as the item's body.
//!
//! Each fax is journaled with its file's (or call's) record in one transaction
//! (`Intake::accept_file`), so a restart recognises what was taken (same source, name and
//! SHA-256) and takes nothing twice; taken files are remembered unchanged and not read again
//! (`Folder::keep`). File names are logged at debug only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::folder::Folder;
use super::{OpenError, Serving};
use crate::config::{FaxSpoolSource, SpoolFormat};
use crate::envelope::Kind;
use crate::fax::document::{FaxDocument, Page};
use crate::fax::g3::{self, BitOrder, Resolution};
use crate::intake::{Arrival, Intake};
use crate::journal::TakenFile;
use crate::stats::{SourceLink, SourceStats, get};

/// What `status` shows of a fax spool beyond the common counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    pub dir: String,
    /// `hylafax` or `mgetty`.
    pub format: String,
    /// Files seen and not yet taken (being received, settling, or failing).
    pub waiting: u64,
}

pub fn detail(cfg: &FaxSpoolSource, stats: &SourceStats, _link: &SourceLink) -> Detail {
    Detail { dir: cfg.dir.display().to_string(), format: format_name(cfg.format).into(), waiting: get(&stats.waiting) }
}

fn format_name(format: SpoolFormat) -> &'static str {
    match format {
        SpoolFormat::Hylafax => "hylafax",
        SpoolFormat::Mgetty => "mgetty",
    }
}

/// The spool's fax files.
fn pattern(format: SpoolFormat) -> &'static str {
    match format {
        SpoolFormat::Hylafax => "fax*.tif",
        SpoolFormat::Mgetty => "f[nf]*.[0-9][0-9]",
    }
}

/// Checks that outpost may read the spool folder and starts watching it.
pub fn open(name: &str, cfg: &FaxSpoolSource) -> Result<Folder, OpenError> {
    let fail = |message: String| OpenError { name: name.to_string(), message };
    let matcher = globset::Glob::new(pattern(cfg.format)).map_err(|e| fail(e.to_string()))?.compile_matcher();
    Folder::open_to_read(&cfg.dir, matcher, cfg.settle, cfg.rescan).map_err(|e| fail(e.to_string()))
}

/// Takes faxes until `serving.stop` fires.
pub async fn serve(name: String, cfg: FaxSpoolSource, mut folder: Folder, serving: Serving) -> Folder {
    let stats = serving.stats.clone();
    tracing::info!(source = %name, dir = %cfg.dir.display(), format = format_name(cfg.format), "watching a fax spool");
    let spool = Spool { name, cfg: Arc::new(cfg), intake: serving.intake.clone() };
    let mut failing = 0usize;
    while let Some(path) = folder.next_ready(&serving.stop).await {
        match spool.take(&path).await {
            Ok(files) => {
                for f in files.iter().chain(std::iter::once(&path)) {
                    folder.keep(f);
                }
                if failing > 0 {
                    failing = 0;
                    stats.problem(None);
                }
            }
            Err(Problem::NotYet(why)) => {
                tracing::debug!(source = %spool.name, file = %path.display(), why, "not complete yet");
                folder.retry_later(&path, Instant::now() + spool.cfg.settle);
            }
            Err(problem) => {
                let message = problem.to_string();
                tracing::warn!(source = %spool.name, "{message}; trying again in {:?}", spool.cfg.retry_after);
                tracing::debug!(source = %spool.name, file = %path.display(), "the file above");
                stats.problem(Some(message.clone()));
                if problem.escalates() {
                    spool.intake.source_problem(&spool.name, message);
                }
                failing += 1;
                folder.retry_later(&path, Instant::now() + spool.cfg.retry_after);
            }
        }
        stats.waiting.store(folder.waiting() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::info!(source = %spool.name, "stopped watching the fax spool");
    folder
}

#[derive(Debug, thiserror::Error)]
enum Problem {
    /// Still being received: looked at again after `settle`, not a problem.
    #[error("not complete yet: {0}")]
    NotYet(&'static str),
    #[error("a fax in {dir} cannot be read: {error}; does the outpost user have read permission on the files there?")]
    Unreadable { dir: String, error: std::io::Error },
    #[error("a fax in {dir} is {size} bytes, over max_fax_size ({max}); it is left there: raise max_fax_size")]
    TooLarge { dir: String, size: u64, max: u64 },
    #[error("a fax cannot be stored now ({0}); it is taken later")]
    Journal(String),
}

impl Problem {
    /// A full journal is escalated by intake already.
    fn escalates(&self) -> bool {
        !matches!(self, Problem::Journal(_) | Problem::NotYet(_))
    }
}

struct Spool {
    name: String,
    cfg: Arc<FaxSpoolSource>,
    intake: Arc<Intake>,
}

/// One fax as the spool has it: the item's body and where it came from.
struct Fax {
    /// The record's name: the file (HylaFAX) or the call's name without `.NN` (mgetty).
    name: String,
    body: Vec<u8>,
    digest: String,
    size: u64,
    fields: Vec<(&'static str, String)>,
    /// Every file it is made of.
    files: Vec<PathBuf>,
}

impl Spool {
    fn dir(&self) -> String {
        self.cfg.dir.display().to_string()
    }

    /// Takes the fax `path` belongs to, unless it was taken before; returns its files.
    async fn take(&self, path: &Path) -> Result<Vec<PathBuf>, Problem> {
        let (path, cfg) = (path.to_path_buf(), self.cfg.clone());
        let fax = tokio::task::spawn_blocking(move || match cfg.format {
            SpoolFormat::Hylafax => read_hylafax(&path, &cfg),
            SpoolFormat::Mgetty => read_mgetty(&path, &cfg),
        })
        .await
        .map_err(|e| Problem::Unreadable { dir: self.dir(), error: std::io::Error::other(e) })??;
        let (source, name, d) = (self.name.clone(), fax.name.clone(), fax.digest.clone());
        let seen = self.intake.journal().read(move |r| r.file_taken(&source, &name, &d)).await;
        if seen.map_err(|e| Problem::Journal(e.to_string()))? {
            tracing::debug!(source = %self.name, "a fax taken before is left alone");
            return Ok(fax.files);
        }
        let mut arrival = Arrival::new(&self.name, Kind::Fax, None, fax.body);
        arrival.fields = fax.fields;
        arrival.fields.push(("file", fax.name.clone()));
        let taken =
            TakenFile { source: self.name.clone(), name: fax.name, digest: fax.digest, size: fax.size, items: 1 };
        let receipts =
            self.intake.accept_file(vec![arrival], taken).await.map_err(|e| Problem::Journal(e.to_string()))?;
        if let Some(id) = receipts.first().and_then(|r| r.id.clone()) {
            tracing::info!(source = %self.name, item_id = %id, "fax taken from the spool");
        }
        Ok(fax.files)
    }
}

/// A HylaFAX `recvq/faxNNNNN.tif`, once faxgetty has let go of it.
fn read_hylafax(path: &Path, cfg: &FaxSpoolSource) -> Result<Fax, Problem> {
    let dir = || cfg.dir.display().to_string();
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|error| Problem::Unreadable { dir: dir(), error })?;
    // faxgetty holds LOCK_EX while it receives; a shared lock we get means it is done. Held
    // while we read.
    let mut file: Box<dyn Read> = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(locked) => Box::new(LockedFile(locked)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(Problem::NotYet("HylaFAX is still receiving it")),
        // A filesystem without flock (some network shares): the settle time has to do.
        Err((file, _)) => Box::new(file),
    };
    let size = std::fs::metadata(path).map_err(|error| Problem::Unreadable { dir: dir(), error })?.len();
    if size > cfg.max_fax_size {
        return Err(Problem::TooLarge { dir: dir(), size, max: cfg.max_fax_size });
    }
    let mut body = Vec::with_capacity(size as usize);
    file.read_to_end(&mut body).map_err(|error| Problem::Unreadable { dir: dir(), error })?;
    drop(file);
    let mut fields = Vec::new();
    match FaxDocument::from_tiff(&body) {
        // The pages checked again (the file's own counts are the receiver's word).
        Ok(doc) => fields.extend(doc.summary_fields().into_iter().filter(|(n, _)| *n == "bad_lines")),
        Err(e) => tracing::info!(reason = %e, "a spooled fax's pages cannot be checked; it is kept as it is"),
    }
    fields.push(("complete", "true".into()));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Fax { name, digest: crate::config::bytes_hash(&body), size, body, fields, files: vec![path.to_path_buf()] })
}

/// A spool file under our shared lock (released when dropped).
struct LockedFile(nix::fcntl::Flock<std::fs::File>);

impl std::io::Read for LockedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// The call an mgetty page file belongs to: its name without `.NN`, the resolution letter, and
/// the sender id in the name (dashes for what was not a letter or digit), if any.
fn mgetty_call(file_name: &str) -> Option<(String, Resolution, Option<String>)> {
    let (call, page) = file_name.rsplit_once('.')?;
    if page.len() != 2 || !page.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut chars = call.chars();
    let resolution = match (chars.next(), chars.next()) {
        (Some('f'), Some('n')) => Resolution::Normal,
        (Some('f'), Some('f')) => Resolution::Fine,
        _ => return None,
    };
    // f + n/f + 7 hex digits + 2 device characters, then `-sender` with long names.
    let sender = call.get(11..).and_then(|rest| rest.strip_prefix('-')).filter(|s| !s.is_empty());
    Some((call.to_string(), resolution, sender.map(|s| s.replace('-', " "))))
}

/// Every page of the call `path` belongs to, once none has changed for `settle`, as one TIFF.
fn read_mgetty(path: &Path, cfg: &FaxSpoolSource) -> Result<Fax, Problem> {
    let dir = || cfg.dir.display().to_string();
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some((call, resolution, sender)) = mgetty_call(&file_name) else {
        return Err(Problem::Unreadable {
            dir: dir(),
            error: std::io::Error::other("a file named like a fax page is not one of mgetty's"),
        });
    };
    let mut pages: Vec<(String, PathBuf)> = Vec::new();
    let listing = std::fs::read_dir(&cfg.dir).map_err(|error| Problem::Unreadable { dir: dir(), error })?;
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut size = 0u64;
    for entry in listing.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((c, _, _)) = mgetty_call(&name)
            && c == call
        {
            let meta = entry.metadata().map_err(|error| Problem::Unreadable { dir: dir(), error })?;
            newest = newest.max(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
            size += meta.len();
            pages.push((name, entry.path()));
        }
    }
    if newest.elapsed().unwrap_or(Duration::ZERO) < cfg.settle {
        return Err(Problem::NotYet("mgetty may still be writing a page of this call"));
    }
    if size > cfg.max_fax_size {
        return Err(Problem::TooLarge { dir: dir(), size, max: cfg.max_fax_size });
    }
    pages.sort();
    let mut all = Vec::with_capacity(size as usize);
    let mut doc = FaxDocument {
        tsi: sender,
        received_at: Some(crate::envelope::now_ms()),
        complete: true,
        ..FaxDocument::default()
    };
    for (_, page) in &pages {
        let data = std::fs::read(page).map_err(|error| Problem::Unreadable { dir: dir(), error })?;
        all.extend_from_slice(&data);
        let (order, width) = best_reading(&data);
        doc.pages.push(Page::new(data, order, width, resolution));
    }
    let fields = doc.summary_fields().into_iter().filter(|(n, _)| matches!(*n, "complete" | "bad_lines")).collect();
    Ok(Fax {
        name: call,
        body: doc.to_tiff(),
        digest: crate::config::bytes_hash(&all),
        size,
        fields,
        files: pages.into_iter().map(|(_, p)| p).collect(),
    })
}

/// The bit order and page width under which a raw page reads with the most good lines
/// (mgetty stores the data as the modem delivered it, in either order; senders send A4 mostly).
fn best_reading(data: &[u8]) -> (BitOrder, u32) {
    let mut best = (BitOrder::MsbFirst, 1728, 0u32);
    for order in [BitOrder::MsbFirst, BitOrder::LsbFirst] {
        for width in [1728, 2048, 2432] {
            let info = g3::analyze(data, order, width);
            let good = info.lines.saturating_sub(info.bad_lines);
            if good > best.2 {
                best = (order, width, good);
            }
        }
    }
    (best.0, best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mgetty_names_give_the_call_the_resolution_and_the_sender() {
        let (call, res, sender) = mgetty_call("ff1a2b3c4S0-49-89-1234567.02").unwrap();
        assert_eq!(
            (call.as_str(), res, sender.as_deref()),
            ("ff1a2b3c4S0-49-89-1234567", Resolution::Fine, Some("49 89 1234567"))
        );
        let (call, res, sender) = mgetty_call("fn1a2b3c4S0.01").unwrap();
        assert_eq!((call.as_str(), res, sender), ("fn1a2b3c4S0", Resolution::Normal, None));
        for not in ["fax00001.tif", "fx1a2b3c4S0.01", "fn1a2b3c4S0.1", "fn1a2b3c4S0.0a", "readme"] {
            assert!(mgetty_call(not).is_none(), "{not}");
        }
    }

    #[test]
    fn a_page_is_read_in_the_order_it_decodes_in() {
        let g3 = include_bytes!("../../tests/data/fax/g3test.g3");
        assert_eq!(best_reading(g3), (BitOrder::MsbFirst, 1728));
        let reversed: Vec<u8> = g3.iter().map(|b| b.reverse_bits()).collect();
        assert_eq!(best_reading(&reversed), (BitOrder::LsbFirst, 1728));
    }
}
