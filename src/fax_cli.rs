//! `outpost fax show` and `outpost fax export`: a received fax, read from the running daemon's
//! journal through its control socket (as `queue show --body` reads an item), described for a
//! tech or written to a file for them to look at. The description is `fax::show`'s (pure);
//! this module does the asking, the printing and the writing.
//!
//! PHI: `show` prints what the summary already holds (the TSI and caller ID, as `queue show`
//! does) and counts, never page content. `export` writes the fax itself, so the file is made
//! mode 0600 and an existing file is replaced only with `--force`.

use std::path::Path;

use base64::Engine;
use serde::Serialize;

use crate::cli::{EX_DATAERR, EX_USAGE};
use crate::control::{client, protocol::*};
use crate::envelope::rfc3339;
use crate::fax::document::FaxDocument;
use crate::fax::show::{FaxReport, describe};
use crate::journal::Item;

/// A fax item and its stored body, or the exit code after saying why not.
fn fetch_fax(socket: &Path, id: &str) -> anyhow::Result<Result<(Item, Vec<u8>), u8>> {
    let data = client::request(socket, &Request::QueueShow { id: id.to_string(), body: true })?;
    let ShownItem { item, body_b64 } = serde_json::from_value(data)?;
    if item.kind != "fax" {
        eprintln!(
            "outpost: item {} is not a fax but a {} item ({}, from {}); `outpost queue show {}` shows it",
            item.id, item.kind, item.item_type, item.source, item.id
        );
        return Ok(Err(EX_DATAERR));
    }
    let Some(b64) = body_b64 else {
        anyhow::bail!("the daemon sent item {} without its body; is it an older outpost?", item.id);
    };
    let body = base64::engine::general_purpose::STANDARD.decode(b64)?;
    Ok(Ok((item, body)))
}

/// `fax show --json`: the item's own fields, then the fax's.
#[derive(Serialize)]
struct Shown<'a> {
    id: &'a str,
    seq: i64,
    source: &'a str,
    received_at: String,
    status: &'a str,
    size: u64,
    #[serde(flatten)]
    fax: &'a FaxReport,
}

pub fn show(socket: &Path, id: &str, json: bool) -> anyhow::Result<u8> {
    let (item, body) = match fetch_fax(socket, id)? {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let report = match describe(&body, &item.summary.fields) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "outpost: fax {} ({}) cannot be read: {e}; `outpost queue show {}` shows what is known of it",
                item.id, item.status, item.id
            );
            return Ok(EX_DATAERR);
        }
    };
    if json {
        let shown = Shown {
            id: &item.id,
            seq: item.seq,
            source: &item.source,
            received_at: rfc3339(item.received_at),
            status: &item.status,
            size: item.size,
            fax: &report,
        };
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(0);
    }
    println!("id           {}", item.id);
    println!("received     {}", rfc3339(item.received_at));
    println!("source       {}", item.source);
    println!("status       {}", item.status);
    println!("size         {} bytes (TIFF)", item.size);
    print!("{report}");
    Ok(0)
}

pub fn export(socket: &Path, id: &str, file: &Path, pdf: bool, force: bool) -> anyhow::Result<u8> {
    if !force && std::fs::symlink_metadata(file).is_ok() {
        eprintln!("outpost: {} exists; give --force to replace it, or name another file", file.display());
        return Ok(EX_USAGE);
    }
    let (item, body) = match fetch_fax(socket, id)? {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let (bytes, what) = if pdf {
        match FaxDocument::from_tiff(&body) {
            Ok(fax) => (fax.to_pdf(), format!("a PDF of {} page(s)", fax.pages.len())),
            Err(e) => {
                eprintln!(
                    "outpost: fax {} cannot be made a PDF: {e}; export its TIFF instead (without --pdf)",
                    item.id
                );
                return Ok(EX_DATAERR);
            }
        }
    } else {
        (body, "the TIFF as stored".to_string())
    };
    match crate::atomic_file::create_private(file, &bytes, force) {
        Ok(()) => {
            println!(
                "wrote {} ({} bytes, {what}) of fax {}; mode 0600: it holds patient data, delete it when done",
                file.display(),
                bytes.len(),
                item.id
            );
            Ok(0)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("outpost: {} exists; give --force to replace it, or name another file", file.display());
            Ok(EX_USAGE)
        }
        Err(e) => anyhow::bail!("cannot write {}: {e}", file.display()),
    }
}
