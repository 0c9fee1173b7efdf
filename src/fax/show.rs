//! What `outpost fax show` says of a stored fax: its pages as the TIFF describes them and as
//! walking their lines finds them (width, lines, resolution, damaged lines, bit order, coding),
//! and what the call said (TSI, caller ID, complete or not, hangup,
//! duration, modem) from the item's summary. Pure: the stored body and the summary's fields
//! in, a [`FaxReport`] out.
//!
//! No page content: counts and tags only. The TSI and caller ID are identifying; they are shown
//! because the summary already holds them (`queue show` shows them too), and nothing else of
//! the sender is.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::g3::{self, BitOrder, Resolution};
use super::tiff::{self, COMPRESSION_T4, TiffError};

/// A stored fax, described.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaxReport {
    pub pages: Vec<PageReport>,
    /// Damaged lines over all pages.
    pub bad_lines: u64,
    /// The sending station's id (TSI) as the sender set it; identifying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsi: Option<String>,
    /// The caller ID the modem reported; identifying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    /// Every page arrived and the call ended normally (none: the adapter did not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// Why the call ended, as the modem dialogue named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hangup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// The modem that received it, or the spool file it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageReport {
    /// 1-based.
    pub page: usize,
    /// Pixels per line.
    pub width: u32,
    /// Lines, damaged ones included.
    pub lines: u32,
    /// `normal`, `fine` or `superfine`.
    pub resolution: &'static str,
    /// Lines per inch, as the file declares it (none when it does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y_dpi: Option<f64>,
    /// Damaged lines (for a page we cannot walk, the file's BadFaxLines, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_lines: Option<u32>,
    /// The longest run of damaged lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_bad_lines: Option<u32>,
    /// `lsb-first` (TIFF FillOrder 2) or `msb-first` (FillOrder 1).
    pub bit_order: &'static str,
    /// `T.4 1-D` (what outpost reads), `T.4 2-D`, `T.6`, or the TIFF compression number.
    pub compression: String,
    /// Bytes of page data.
    pub bytes: usize,
}

/// Describes the stored fax `body` with the item's summary `fields`.
pub fn describe(body: &[u8], fields: &BTreeMap<String, String>) -> Result<FaxReport, TiffError> {
    let read = tiff::read(body)?;
    let pages: Vec<PageReport> = read.iter().enumerate().map(|(i, page)| page_report(i + 1, page)).collect();
    let bad_lines = pages.iter().filter_map(|p| p.bad_lines).map(u64::from).sum();
    let text = |name: &str| fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()).map(String::from);
    Ok(FaxReport {
        pages,
        bad_lines,
        // The summary's TSI (the adapter's) first, else the file's.
        tsi: text("tsi")
            .or_else(|| read[0].description.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(String::from)),
        caller_id: text("caller_id"),
        complete: text("complete").and_then(|c| c.parse().ok()),
        hangup: text("hangup"),
        duration_s: text("duration_s").and_then(|d| d.parse().ok()),
        modem: text("modem"),
        file: text("file"),
    })
}

fn page_report(number: usize, page: &tiff::PageIn<'_>) -> PageReport {
    let data = page.data();
    let one_dimensional = page.compression == COMPRESSION_T4 && page.t4_options & 1 == 0;
    let compression = match (page.compression, one_dimensional) {
        (COMPRESSION_T4, true) => "T.4 1-D".to_string(),
        (COMPRESSION_T4, false) => "T.4 2-D".to_string(),
        (4, _) => "T.6".to_string(),
        (other, _) => format!("TIFF compression {other}"),
    };
    let resolution = Resolution::from_y_dpi(page.y_dpi.unwrap_or(98.0)).as_str();
    let bit_order = match page.bit_order {
        BitOrder::LsbFirst => "lsb-first",
        BitOrder::MsbFirst => "msb-first",
    };
    let mut report = PageReport {
        page: number,
        width: page.width,
        lines: page.length,
        resolution,
        y_dpi: page.y_dpi,
        bad_lines: page.bad_lines,
        consecutive_bad_lines: None,
        bit_order,
        compression,
        bytes: data.len(),
    };
    if one_dimensional {
        // The file's counts are not trusted: the lines are walked again.
        let info = g3::analyze(&data, page.bit_order, page.width);
        report.lines = info.lines;
        report.bad_lines = Some(info.bad_lines);
        report.consecutive_bad_lines = Some(info.consecutive_bad_max);
    }
    report
}

impl fmt::Display for FaxReport {
    /// The lines after the item's own (id, source, received): the sender, the call, the pages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        writeln!(f, "tsi          {}", or_none(&self.tsi))?;
        writeln!(f, "caller id    {}", or_none(&self.caller_id))?;
        let state = match self.complete {
            Some(true) => "complete",
            Some(false) => "INCOMPLETE (kept as received: pages may be missing)",
            None => "not reported",
        };
        writeln!(f, "call         {state}")?;
        if let Some(hangup) = &self.hangup {
            writeln!(f, "hangup       {hangup}")?;
        }
        if let Some(d) = self.duration_s {
            writeln!(f, "duration     {d} s")?;
        }
        if let Some(modem) = &self.modem {
            writeln!(f, "modem        {modem}")?;
        }
        if let Some(file) = &self.file {
            writeln!(f, "file         {file}")?;
        }
        writeln!(f, "pages        {}, {} bad line(s)", self.pages.len(), self.bad_lines)?;
        writeln!(
            f,
            "{:>4}  {:>5}  {:>5}  {:<10} {:>5}  {:<9}  {:<8}  END",
            "PAGE", "WIDTH", "LINES", "RESOLUTION", "BAD", "BIT ORDER", "CODING"
        )?;
        for p in &self.pages {
            let bad = p.bad_lines.map_or_else(|| "?".to_string(), |b| b.to_string());
            writeln!(
                f,
                "{:>4}  {:>5}  {:>5}  {:<10} {:>5}  {:<9}  {}",
                p.page, p.width, p.lines, p.resolution, bad, p.bit_order, p.compression
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fax::document::{FaxDocument, Page};

    const G3: &[u8] = include_bytes!("../../tests/data/fax/g3test.g3");

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_modem_fax_with_its_call() {
        let body = FaxDocument {
            pages: vec![
                Page::new(G3.to_vec(), BitOrder::MsbFirst, 1728, Resolution::Fine),
                Page::new(g3::reverse_bits(G3), BitOrder::LsbFirst, 1728, Resolution::Normal),
            ],
            tsi: Some("+41 44 555 12 34".into()),
            complete: false,
            ..FaxDocument::default()
        }
        .to_tiff();
        let summary = fields(&[
            ("tsi", "+41 44 555 12 34"),
            ("caller_id", "0445551234"),
            ("complete", "false"),
            ("hangup", "+FHS:02 call aborted from +FK or <CAN>"),
            ("duration_s", "74"),
        ]);
        let r = describe(&body, &summary).unwrap();
        assert_eq!(r.pages.len(), 2);
        assert_eq!(r.bad_lines, 322);
        assert_eq!((r.complete, r.duration_s), (Some(false), Some(74)));
        let p = &r.pages[0];
        assert_eq!((p.page, p.width, p.lines, p.resolution, p.bit_order), (1, 1728, 1101, "fine", "msb-first"));
        assert_eq!((p.bad_lines, p.compression.as_str()), (Some(161), "T.4 1-D"));
        assert_eq!(r.pages[1].bit_order, "lsb-first");
        assert_eq!(r.pages[1].resolution, "normal");
        let text = r.to_string();
        assert!(text.contains("caller id    0445551234"), "{text}");
        assert!(text.contains("INCOMPLETE"), "{text}");
        assert!(text.contains("hangup       +FHS:02"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().starts_with(&["1", "1728", "1101", "fine", "161"])),
            "{text}"
        );
    }

    #[test]
    fn a_spooled_fax_names_its_file_and_takes_the_tsi_from_it() {
        let body = include_bytes!("../../tests/data/fax/fax2d.tif");
        let r = describe(body, &fields(&[("file", "fax00001.tif"), ("complete", "true"), ("tsi", "")])).unwrap();
        assert_eq!((r.pages.len(), r.bad_lines, r.complete), (1, 0, Some(true)));
        assert_eq!((r.pages[0].lines, r.pages[0].width, r.pages[0].resolution), (1082, 1728, "normal"));
        assert_eq!(r.file.as_deref(), Some("fax00001.tif"));
        assert_eq!(r.tsi, None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["pages"][0]["bit_order"], "lsb-first");
        assert!(json.get("caller_id").is_none());
    }

    #[test]
    fn a_2d_page_is_described_from_its_tags() {
        let page = Page::new(G3.to_vec(), BitOrder::MsbFirst, 1728, Resolution::Fine);
        let mut body = FaxDocument { pages: vec![page], ..FaxDocument::default() }.to_tiff();
        // T4Options bit 0: 2-D coding. Find tag 292 in the first IFD (little-endian, as we
        // write) and set its value's bit.
        let ifd = u32::from_le_bytes([body[4], body[5], body[6], body[7]]) as usize;
        let count = u16::from_le_bytes([body[ifd], body[ifd + 1]]) as usize;
        let entry = (0..count).map(|i| ifd + 2 + i * 12).find(|&e| body[e..e + 2] == 292u16.to_le_bytes()).unwrap();
        body[entry + 8] |= 1;
        let r = describe(&body, &BTreeMap::new()).unwrap();
        let p = &r.pages[0];
        assert_eq!((p.compression.as_str(), p.consecutive_bad_lines, p.bad_lines), ("T.4 2-D", None, Some(161)));
        assert_eq!(p.lines, 1101, "the file's ImageLength");
    }

    #[test]
    fn what_is_not_a_tiff_says_so() {
        assert_eq!(describe(b"MSH|^~\\&|", &BTreeMap::new()), Err(TiffError::NotTiff));
    }
}
