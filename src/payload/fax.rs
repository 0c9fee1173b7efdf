//! Faxes as a payload kind: the body is a multi-page TIFF Class F (`crate::fax::tiff`), the
//! summary what the file and the call say of it, and routing conditions are on those fields
//! (`"fax.tsi" = "+1 507*"`).
//!
//! The summary names (the uplink contract, docs/mqtt.md): `pages`, `resolution` (`normal`,
//! `fine`, `superfine`), `width` (pixels), `bad_lines` (damaged lines, from the file's
//! BadFaxLines tags), `tsi` (the sending station's id, from ImageDescription); and what the
//! adapter adds from the call: `caller_id`, `complete`, `hangup`, `duration_s`, `modem`, or for a
//! spool `file`. The item's type is `fax`; it has no ref (a call is never sent twice; a spool's
//! files are recognised by their record). The TSI and caller id are telephone numbers or names
//! of the sender: identifying, needed for routing, shown where ids are (the CLI, central), never
//! logged above debug.

use std::collections::BTreeMap;

use crate::envelope::Summary;
use crate::fax::tiff;

/// What routing and the summary see of a fax.
#[derive(Debug, Clone, Default)]
pub struct FaxView {
    fields: BTreeMap<String, String>,
}

/// Why the bytes are not a fax we can read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a fax (TIFF Class F): {0}")]
pub struct NotFax(String);

/// Reads a stored fax's TIFF: its pages and tags, not its image data.
pub fn read(body: &[u8]) -> Result<FaxView, NotFax> {
    let pages = tiff::read(body).map_err(|e| NotFax(e.to_string()))?;
    let first = pages.first().ok_or_else(|| NotFax("it has no page".into()))?;
    let mut fields = BTreeMap::new();
    fields.insert("pages".to_string(), pages.len().to_string());
    let y_dpi = pages.iter().filter_map(|p| p.y_dpi).fold(0.0_f64, f64::max);
    let resolution = match y_dpi {
        y if y >= 300.0 => "superfine",
        y if y >= 150.0 => "fine",
        y if y > 0.0 => "normal",
        _ => "",
    };
    fields.insert("resolution".to_string(), resolution.to_string());
    fields.insert("width".to_string(), first.width.to_string());
    let bad: u64 = pages.iter().filter_map(|p| p.bad_lines).map(u64::from).sum();
    fields.insert("bad_lines".to_string(), bad.to_string());
    let tsi = first.description.as_deref().map(str::trim).unwrap_or_default();
    fields.insert("tsi".to_string(), tsi.to_string());
    Ok(FaxView { fields })
}

impl FaxView {
    /// What the adapter knew of the call or the file (`caller_id`, `complete`, `hangup`, ...):
    /// routing sees these too. The file's own fields win where both have one.
    pub fn add(&mut self, fields: &[(&str, String)]) {
        for (name, value) in fields {
            self.fields.entry(name.to_string()).or_insert_with(|| value.clone());
        }
    }

    /// A field by its name (`tsi`, `pages`, ...).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

pub fn summary(view: &FaxView) -> Summary {
    let mut summary = Summary::new("fax", "");
    for (name, value) in &view.fields {
        summary.set(name, value.clone());
    }
    summary
}

/// The summary of a fax that could not be read: the file's names, empty.
pub fn empty_summary() -> Summary {
    let mut summary = Summary::new("fax", "");
    for name in ["pages", "resolution", "width", "bad_lines", "tsi"] {
        summary.set(name, String::new());
    }
    summary
}

/// The field names a route may use after `fax.`.
pub const FIELDS: &[&str] =
    &["tsi", "caller_id", "pages", "resolution", "width", "bad_lines", "complete", "hangup", "modem", "file"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fax::document::{FaxDocument, Page};
    use crate::fax::g3::{BitOrder, Resolution};

    fn fax() -> Vec<u8> {
        let g3 = include_bytes!("../../tests/data/fax/g3test.g3").to_vec();
        FaxDocument {
            pages: vec![
                Page::new(g3.clone(), BitOrder::MsbFirst, 1728, Resolution::Fine),
                Page::new(g3, BitOrder::MsbFirst, 1728, Resolution::Fine),
            ],
            tsi: Some("+1 507 555 0199".into()),
            complete: true,
            ..FaxDocument::default()
        }
        .to_tiff()
    }

    #[test]
    fn the_summary_comes_from_the_file_and_the_call() {
        let mut view = read(&fax()).unwrap();
        view.add(&[("caller_id", "5075550199".into()), ("pages", "99".into())]);
        let s = summary(&view);
        assert_eq!(s.item_type, "fax");
        assert_eq!(s.fields["pages"], "2", "the file's count wins");
        assert_eq!(s.fields["resolution"], "fine");
        assert_eq!(s.fields["width"], "1728");
        assert_eq!(s.fields["tsi"], "+1 507 555 0199");
        assert_eq!(s.fields["bad_lines"], "322", "g3test.g3 has 161 damaged lines, twice");
        assert_eq!(view.value("caller_id"), Some("5075550199"));
        assert_eq!(empty_summary().fields.len(), 5);
    }

    #[test]
    fn what_is_not_a_fax_says_why() {
        assert!(read(b"MSH|^~\\&|").unwrap_err().to_string().contains("not a fax"));
        let sample = include_bytes!("../../tests/data/fax/fax2d.tif");
        let view = read(sample).unwrap();
        assert_eq!((view.value("pages"), view.value("resolution")), (Some("1"), Some("normal")));
    }
}
