//! File destination: one file per message, written atomically (temporary name, fsync, rename,
//! fsync of the directory) so a reader never sees half a message and a crash leaves none.

use std::io::Write;
use std::path::PathBuf;

use super::DeliveryError;
use crate::config::FileDestination;
use crate::envelope::Kind;

pub(super) struct FileSink {
    cfg: FileDestination,
}

impl FileSink {
    pub(super) fn new(cfg: FileDestination) -> FileSink {
        FileSink { cfg }
    }

    /// Writes `bytes` as `{id}.{extension}`; the extension follows the item's kind unless the
    /// destination sets one.
    pub(super) async fn deliver(&mut self, id: &str, kind: Kind, bytes: Vec<u8>) -> Result<(), DeliveryError> {
        let dir = self.cfg.dir.clone();
        let name = format!("{id}.{}", self.cfg.extension.as_deref().unwrap_or(kind.extension()));
        tokio::task::spawn_blocking(move || write_atomically(dir, &name, &bytes))
            .await
            .map_err(|e| DeliveryError::Local(format!("file writer stopped: {e}")))?
    }
}

fn write_atomically(dir: PathBuf, name: &str, bytes: &[u8]) -> Result<(), DeliveryError> {
    let fail = |what: &str, e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => "; check that the outpost user may write there",
            std::io::ErrorKind::StorageFull => "; the disk is full",
            _ => "",
        };
        DeliveryError::Local(format!("{what} in {}: {e}{hint}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(|e| fail("cannot create the directory", e))?;
    let final_path = dir.join(name);
    if final_path.exists() {
        // Delivered before (the record of it was lost in a crash); the content is the same item.
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| fail("cannot create a file", e))?;
    f.write_all(bytes).map_err(|e| fail("cannot write a file", e))?;
    f.sync_all().map_err(|e| fail("cannot sync a file", e))?;
    drop(f);
    std::fs::rename(&tmp, &final_path).map_err(|e| fail("cannot rename a file", e))?;
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| fail("cannot sync the directory", e))?;
    Ok(())
}
