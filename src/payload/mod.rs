//! Payload kinds: what the bytes of an item are, and how they are read. This file is the one
//! place that knows the set of kinds; each kind's reading lives in a module of its own.
//!
//! A kind's reader turns the exact bytes received into:
//! - a [`Summary`]: ids and types for logs, the CLI and central, never patient data; its
//!   `item_ref` (the sender's own id, HL7's MSH-10) with the bytes recognises a retransmission;
//! - a view that routing conditions match ([`Parsed::values`]);
//! - or the reason it cannot be read (the item is then kept as rejected).
//!
//! Pure: no IO. Adding a kind: a module here, an arm in each `match` below, its name in
//! [`Kind`].

pub mod astm;
pub mod fax;
pub mod hl7;

use crate::config::{AstmField, Field};
use crate::envelope::{Kind, Summary};
use crate::hl7::Charset;

/// The summary of an item of `kind` that could not be read: the kind's fields, empty (so a
/// consumer sees the same names on every item of a kind).
pub fn unreadable_summary(kind: Kind) -> Summary {
    match kind {
        Kind::Hl7v2 => hl7::empty_summary(),
        Kind::Astm => astm::empty_summary(),
        Kind::Fax => fax::empty_summary(),
    }
}

/// Bytes read as the kind's text (charset chosen), ready to be parsed. Borrows the bytes.
pub enum Decoded<'b> {
    Hl7(crate::hl7::Decoded<'b>),
    /// ASTM records are read as bytes (delimiters and record types are ASCII; values are
    /// decoded as UTF-8, lossily, when read), with the instrument's profile when the source has
    /// one (where its records put things, its critical ranges).
    Astm(&'b [u8], Option<&'b crate::instrument::Profile>),
    /// A fax: a TIFF Class F file, read for its pages and tags.
    Fax(&'b [u8]),
}

/// Reads `body` as `kind`; `charset` overrides what the item declares (a source setting).
pub fn decode(kind: Kind, body: &[u8], charset: Option<Charset>) -> Decoded<'_> {
    decode_from(kind, body, charset, None)
}

/// [`decode`], for an item from an instrument whose profile is known (a lab link's items).
pub fn decode_from<'b>(
    kind: Kind,
    body: &'b [u8],
    charset: Option<Charset>,
    profile: Option<&'b crate::instrument::Profile>,
) -> Decoded<'b> {
    match kind {
        Kind::Hl7v2 => Decoded::Hl7(crate::hl7::decode(body, charset)),
        Kind::Astm => Decoded::Astm(body, profile),
        Kind::Fax => Decoded::Fax(body),
    }
}

impl Decoded<'_> {
    /// The charset the text was read with, as stored with the item (for transforms later).
    pub fn charset(&self) -> Option<Charset> {
        match self {
            Decoded::Hl7(d) => Some(d.charset),
            Decoded::Astm(..) | Decoded::Fax(_) => None,
        }
    }

    /// Parses the item; the error says in words (never content) why it cannot be read.
    pub fn parse(&self) -> Result<Parsed<'_>, Unreadable> {
        match self {
            Decoded::Hl7(d) => Ok(Parsed::Hl7(crate::hl7::Message::parse(&d.text)?)),
            Decoded::Astm(bytes, profile) => {
                Ok(Parsed::Astm(astm::Lab::new(crate::astm::Message::parse(bytes)?, *profile)))
            }
            Decoded::Fax(bytes) => Ok(Parsed::Fax(fax::read(bytes)?)),
        }
    }
}

/// Why an item cannot be read as its kind (it is then kept as rejected, with this as its note).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unreadable {
    #[error(transparent)]
    Hl7(#[from] crate::hl7::Hl7Error),
    #[error(transparent)]
    Astm(#[from] crate::astm::RecordError),
    #[error(transparent)]
    Fax(#[from] fax::NotFax),
}

/// A readable item: its summary and the values routing conditions look at.
// One per item, on the stack for the time it is routed: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Parsed<'d> {
    Hl7(crate::hl7::Message<'d>),
    Astm(astm::Lab<'d>),
    Fax(fax::FaxView),
}

impl Parsed<'_> {
    pub fn summary(&self) -> Summary {
        match self {
            Parsed::Hl7(m) => hl7::summary(m),
            Parsed::Astm(m) => astm::summary(m),
            Parsed::Fax(v) => fax::summary(v),
        }
    }

    /// Adds what the adapter knew of the item (a fax's call: caller id, hangup, ...) to what
    /// routing sees; kinds whose bytes say everything ignore it.
    pub fn add_fields(&mut self, fields: &[(&str, String)]) {
        if let Parsed::Fax(v) = self {
            v.add(fields);
        }
    }

    /// The values `field` designates in this item; none when the field belongs to another
    /// kind (a condition on HL7 fields does not hold for an item of another kind).
    pub fn values(&self, field: &Field) -> Vec<String> {
        match (self, field) {
            (Parsed::Hl7(m), Field::Hl7(path)) => m.values(path),
            (Parsed::Astm(m), Field::Astm(field)) => astm::values(m, field),
            (Parsed::Fax(v), Field::Fax(name)) => v.value(name).map(str::to_string).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// The values `field` designates in each result of the item (HL7: each OBX segment; ASTM:
    /// each R record), when `field` is a result's field; `None` for a field of the item as a
    /// whole. Lists are in the order of [`Parsed::result_tests`].
    pub fn result_values(&self, field: &Field) -> Option<Vec<Vec<String>>> {
        match (self, field) {
            (Parsed::Hl7(m), Field::Hl7(path)) if path.segment == "OBX" && path.occurrence.is_none() => {
                Some(m.values_per_segment(path))
            }
            (Parsed::Astm(m), Field::Astm(AstmField::Path(path))) if path.record == "R" => {
                Some(m.values_per_record(path))
            }
            (Parsed::Astm(m), Field::Astm(AstmField::Test)) => {
                Some(astm::result_tests(m).into_iter().map(|t| vec![t]).collect())
            }
            (Parsed::Astm(m), Field::Astm(AstmField::Critical)) => {
                Some(astm::criticals(m).into_iter().map(|c| c.into_iter().map(str::to_string).collect()).collect())
            }
            _ => None,
        }
    }

    /// The test code of each result (HL7: OBX-3.1; ASTM: R.3's code), empty where it has none.
    pub fn result_tests(&self) -> Vec<String> {
        match self {
            Parsed::Hl7(m) => {
                let path: crate::hl7::FieldPath = match "OBX-3.1".parse() {
                    Ok(p) => p,
                    Err(_) => return Vec::new(),
                };
                m.values_per_segment(&path).into_iter().map(|v| v.into_iter().next().unwrap_or_default()).collect()
            }
            Parsed::Astm(m) => astm::result_tests(m),
            Parsed::Fax(_) => Vec::new(),
        }
    }

    /// Lines the reader could not make sense of and skipped (kept in the bytes, invisible to
    /// routing); worth a note in the log.
    pub fn skipped_lines(&self) -> usize {
        match self {
            Parsed::Hl7(m) => m.skipped_lines(),
            Parsed::Astm(_) | Parsed::Fax(_) => 0,
        }
    }

    /// The HL7 header, for adapters that answer in HL7 (an MLLP ACK mirrors it).
    pub fn hl7_header(&self) -> Option<crate::hl7::Header> {
        match self {
            Parsed::Hl7(m) => Some(m.header()),
            Parsed::Astm(_) | Parsed::Fax(_) => None,
        }
    }
}
