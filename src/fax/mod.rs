//! Fax: receiving faxes from a modem (the AT dialogue) and keeping them as documents. The
//! document side is pure (no IO, no tokio, no clock): `g3` counts and checks a page's T.4 lines,
//! `tiff` writes and reads multi-page TIFF Class F (RFC 2306), `pdf` wraps the same pages in a
//! PDF unchanged, and `document` is what the fax adapters build and store. Page data is kept as
//! received, never re-encoded.

pub mod document;
pub mod g3;
pub mod pdf;
pub mod tiff;
