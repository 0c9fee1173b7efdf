//! Fax reception, pure (no IO, no tokio, no clock): the fax modem's AT dialogue and the
//! received document.
//!
//! The modem side, sans IO like `astm/`: `modem.rs` the Class 2 / 2.0 receive state machine,
//! `dle.rs` phase-C DLE unstuffing, `codes.rs` hangup, page status and post-page tables. The
//! document side: `g3` counts and checks a page's T.4 lines, `tiff` writes and reads multi-page
//! TIFF Class F (RFC 2306), `pdf` wraps the same pages in a PDF unchanged, and `document` is
//! what the fax adapters build and store. Page data is kept as received, never re-encoded.

pub mod codes;
pub mod dle;
pub mod document;
pub mod g3;
pub mod modem;
pub mod pdf;
pub mod show;
pub mod tiff;
