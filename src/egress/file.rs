//! File destination: one file per message, written atomically (temporary name, fsync, rename,
//! fsync of the directory) so a reader never sees half a message and a crash leaves none.
//!
//! Items are written as the journal keeps them, except fax items in a destination with
//! `fax_format = "pdf"`: those become a PDF of the same pages (`FaxDocument::to_pdf`, the page
//! data unchanged) named `.pdf`, made here on the copy being delivered; the journal keeps the
//! TIFF.

use std::io::Write;
use std::path::PathBuf;

use super::DeliveryError;
use crate::config::{FaxFormat, FileDestination};
use crate::envelope::Kind;
use crate::fax::document::FaxDocument;

pub(super) struct FileSink {
    cfg: FileDestination,
}

impl FileSink {
    pub(super) fn new(cfg: FileDestination) -> FileSink {
        FileSink { cfg }
    }

    /// Writes the item as `{id}.{extension}` (see [`output`]).
    pub(super) async fn deliver(&mut self, id: &str, kind: Kind, bytes: Vec<u8>) -> Result<(), DeliveryError> {
        let dir = self.cfg.dir.clone();
        let cfg = self.cfg.clone();
        let id = id.to_string();
        // Making a PDF walks every page: off the async threads, with the write.
        tokio::task::spawn_blocking(move || {
            let (bytes, extension) = output(&cfg, kind, bytes)?;
            write_atomically(dir, &format!("{id}.{extension}"), &bytes)
        })
        .await
        .map_err(|e| DeliveryError::Local(format!("file writer stopped: {e}")))?
    }
}

/// What the destination writes for an item of `kind`, and the file's extension: the bytes as
/// they are, named by the destination's `extension` or else the kind's; or, for a fax in a
/// `fax_format = "pdf"` destination, its PDF, named `.pdf`. A fax that cannot be read as one
/// fails for good (retrying will not change its bytes); its TIFF stays in the journal.
pub(super) fn output(cfg: &FileDestination, kind: Kind, bytes: Vec<u8>) -> Result<(Vec<u8>, String), DeliveryError> {
    if kind == Kind::Fax && cfg.fax_format == FaxFormat::Pdf {
        let fax = FaxDocument::from_tiff(&bytes).map_err(|e| {
            DeliveryError::Permanent(format!(
                "the fax cannot be made a PDF: {e}; its TIFF is kept (outpost fax export ID FILE writes it)"
            ))
        })?;
        return Ok((fax.to_pdf(), "pdf".to_string()));
    }
    let extension = cfg.extension.clone().unwrap_or_else(|| kind.extension().to_string());
    Ok((bytes, extension))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(extension: Option<&str>, fax_format: FaxFormat) -> FileDestination {
        FileDestination { dir: "/x".into(), extension: extension.map(String::from), fax_format }
    }

    const FAX: &[u8] = include_bytes!("../../tests/data/fax/fax2d.tif");

    #[test]
    fn faxes_are_written_as_stored_by_default() {
        let (bytes, extension) = output(&destination(None, FaxFormat::Tiff), Kind::Fax, FAX.to_vec()).unwrap();
        assert_eq!((bytes.as_slice(), extension.as_str()), (FAX, "tif"));
        let (_, extension) = output(&destination(Some("tiff"), FaxFormat::Tiff), Kind::Fax, FAX.to_vec()).unwrap();
        assert_eq!(extension, "tiff");
    }

    #[test]
    fn a_pdf_destination_writes_faxes_as_pdf_and_nothing_else() {
        let pdf = destination(Some("txt"), FaxFormat::Pdf);
        let (bytes, extension) = output(&pdf, Kind::Fax, FAX.to_vec()).unwrap();
        assert_eq!(extension, "pdf");
        assert!(bytes.starts_with(b"%PDF-1.4"));
        assert_eq!(String::from_utf8_lossy(&bytes).matches("/CCITTFaxDecode").count(), 1);
        // Another kind's item is written as it is, under the destination's extension.
        let hl7 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r".to_vec();
        let (bytes, extension) = output(&pdf, Kind::Hl7v2, hl7.clone()).unwrap();
        assert_eq!((bytes, extension.as_str()), (hl7, "txt"));
    }

    #[test]
    fn a_fax_that_is_no_fax_fails_for_good() {
        let e = output(&destination(None, FaxFormat::Pdf), Kind::Fax, b"not a tiff".to_vec()).unwrap_err();
        assert!(matches!(&e, DeliveryError::Permanent(m) if m.contains("fax export")), "{e}");
    }
}
