//! `kind = "file"` destinations: one file per item in a directory (`egress/file.rs`); fax items
//! as their TIFF or, with `fax_format = "pdf"`, as a PDF.

use std::path::Path;

use super::{Parts, delivery};
use crate::config::values::{choice, path, string};
use crate::config::walk::{Checker, Tbl, Val};
use crate::config::{DestinationKind, FaxFormat, FileDestination};

pub(super) fn read(ck: &mut Checker, t: &Tbl<'_, '_>, state_dir: &Path) -> Option<Parts> {
    let dir = t.req(ck, "dir", "dir = \"archive\"", |ck, v| path(ck, v).map(|p| state_dir.join(p)));
    let extension = t.opt(ck, "extension", None, |ck, v| extension(ck, v).map(Some));
    let fax_format = t.opt(
        ck,
        "fax_format",
        FaxFormat::Tiff,
        choice(&[("tiff", FaxFormat::Tiff), ("pdf", FaxFormat::Pdf)], "fax format"),
    );
    let delivery = delivery(ck, t);
    let file = FileDestination { dir: dir?, extension: extension?, fax_format: fax_format? };
    let (retry, transforms) = delivery?;
    Some(Parts { kind: DestinationKind::File(file), retry, transforms })
}

fn extension(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    let why = if s.is_empty() {
        Some("it is empty".to_string())
    } else if let Some(rest) = s.strip_prefix('.') {
        Some(format!("write it without the dot: {rest:?}"))
    } else if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Some("use only letters, digits, '-' and '_'".to_string())
    } else {
        None
    };
    if let Some(why) = why {
        v.invalid(ck, format!("{s:?} is not a file extension: {why}; e.g. \"hl7\""));
        return None;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, DestinationKind, FaxFormat};

    fn parse(destination: &str) -> Result<Config, String> {
        let toml = format!(
            "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/srv/x\"\n[[destination]]\nname = \"ehr-docs\"\nkind = \"file\"\n{destination}\n"
        );
        Config::parse(&toml, "t").map_err(|e| e.to_string())
    }

    fn fax_format(c: &Config) -> FaxFormat {
        match &c.destinations[0].kind {
            DestinationKind::File(f) => f.fax_format,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn faxes_are_tiff_unless_pdf_is_asked_for() {
        assert_eq!(fax_format(&parse("dir = \"docs\"").unwrap()), FaxFormat::Tiff);
        assert_eq!(fax_format(&parse("dir = \"docs\"\nfax_format = \"tiff\"").unwrap()), FaxFormat::Tiff);
        assert_eq!(fax_format(&parse("dir = \"docs\"\nfax_format = \"pdf\"").unwrap()), FaxFormat::Pdf);
        let e = parse("dir = \"docs\"\nfax_format = \"PDF/A\"").unwrap_err();
        assert!(e.contains("unknown fax format \"PDF/A\"") && e.contains("\"tiff\" or \"pdf\""), "{e}");
    }

    #[test]
    fn fax_format_belongs_to_file_destinations() {
        let toml = "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/srv/x\"\n[[destination]]\nname = \"lis\"\n\
                    kind = \"mllp\"\nconnect = \"10.0.0.1:2575\"\nfax_format = \"pdf\"\n";
        let e = Config::parse(toml, "t").unwrap_err().to_string();
        assert!(e.contains("fax_format") && e.contains("kind = \"file\""), "{e}");
    }
}
