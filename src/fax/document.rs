//! A received fax as the fax adapters hand it over: its pages as received and what the session
//! said about it. It becomes the stored body (`to_tiff`, one multi-page TIFF Class F file), an
//! optional PDF for destinations that want one (`to_pdf`), and the envelope summary's fields
//! (`summary_fields`). Pages from a modem (phase-C data after DLE unstuffing), from mgetty's
//! per-page raw G3 files (`Page::new` each) and from HylaFAX's received TIFF files
//! (`FaxDocument::from_tiff`) all end up here; page data is never re-encoded.
//!
//! Identifying data: the TSI (the sender's fax number or ID, as the sender set it) and the
//! caller ID are needed for routing and are the only identifying fields; they go into the
//! summary and the TIFF's ImageDescription, never into logs (callers log counts and names).
//! The PDF carries neither.

use super::g3::{self, BitOrder, PageInfo, Resolution};
use super::{pdf, tiff};

/// One page as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// T.4 1-D data, unchanged.
    pub data: Vec<u8>,
    pub bit_order: BitOrder,
    /// Pixels per line, from the session (DCS) or the file.
    pub width: u32,
    pub resolution: Resolution,
    /// What walking the data found (lines, damaged lines, RTC, fill).
    pub info: PageInfo,
}

impl Page {
    /// A page from received data: its lines are counted and checked here.
    pub fn new(data: Vec<u8>, bit_order: BitOrder, width: u32, resolution: Resolution) -> Page {
        let info = g3::analyze(&data, bit_order, width);
        Page { data, bit_order, width, resolution, info }
    }
}

/// A received fax.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaxDocument {
    pub pages: Vec<Page>,
    /// The sender's TSI (transmitting subscriber identification), trimmed; identifying.
    pub tsi: Option<String>,
    /// The caller ID, if the modem reported one; identifying.
    pub caller_id: Option<String>,
    /// When the call was answered, Unix milliseconds.
    pub received_at: Option<i64>,
    /// The modem's manufacturer and model as it reports them (TIFF Make/Model).
    pub modem_make: Option<String>,
    pub modem_model: Option<String>,
    /// How long the call lasted, in seconds.
    pub duration_secs: Option<u64>,
    /// The hangup reason as the modem dialogue names it (e.g. a Class 2 `+FHS` code).
    pub hangup: Option<String>,
    /// Every page arrived and the call ended normally; false for a partial fax that is kept
    /// anyway (nothing received is thrown away).
    pub complete: bool,
}

/// Why a stored or spooled TIFF cannot be taken as a fax.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FromTiffError {
    #[error(transparent)]
    Tiff(#[from] tiff::TiffError),
    #[error(
        "TIFF page {page} uses compression {compression}, not T.4 1-D (3); outpost keeps faxes as \
         received MH pages: have the fax server keep received faxes as Group 3 1-D"
    )]
    NotOneDimensional { page: usize, compression: u16 },
}

impl FaxDocument {
    /// Each page as the writers take it.
    fn pages_out(&self) -> Vec<tiff::PageOut<'_>> {
        self.pages
            .iter()
            .map(|page| tiff::PageOut {
                data: &page.data,
                bit_order: page.bit_order,
                width: page.width,
                length: page.info.lines,
                x_dpi: page.resolution.x_dpi(),
                y_dpi: page.resolution.y_dpi(),
                t4_options: if page.info.eols_byte_aligned { 4 } else { 0 },
                bad_lines: page.info.bad_lines,
                consecutive_bad_lines: page.info.consecutive_bad_max,
            })
            .collect()
    }

    /// The stored body: one TIFF Class F file, each page's bytes as received.
    pub fn to_tiff(&self) -> Vec<u8> {
        let pages = self.pages_out();
        let meta = tiff::Meta {
            description: self.tsi.clone(),
            date_time: self.received_at.map(tiff_date_time),
            make: self.modem_make.clone(),
            model: self.modem_model.clone(),
            software: Some(format!("outpost {}", env!("CARGO_PKG_VERSION"))),
        };
        tiff::write(&pages, &meta)
    }

    /// The same pages as a PDF (see `pdf`).
    pub fn to_pdf(&self) -> Vec<u8> {
        let pages = self.pages_out();
        let created = self.received_at.map(pdf_date);
        pdf::write(&pages, created.as_deref())
    }

    /// A fax from a TIFF file: HylaFAX's received `fax*.tif`, or a body stored by `to_tiff`.
    /// Its pages are counted and checked again (a file's BadFaxLines is not trusted); the TSI
    /// is the first page's ImageDescription (HylaFAX writes the TSI there too), the time and
    /// modem are the file's. A file is complete as far as its pages go: a partial fax is
    /// marked by whoever knows (the spool's log, the modem dialogue).
    pub fn from_tiff(file: &[u8]) -> Result<FaxDocument, FromTiffError> {
        let read = tiff::read(file)?;
        let mut pages = Vec::with_capacity(read.len());
        for (index, page) in read.iter().enumerate() {
            if page.compression != tiff::COMPRESSION_T4 || page.t4_options & 1 != 0 {
                return Err(FromTiffError::NotOneDimensional { page: index, compression: page.compression });
            }
            let resolution = Resolution::from_y_dpi(page.y_dpi.unwrap_or(98.0));
            pages.push(Page::new(page.data(), page.bit_order, page.width, resolution));
        }
        let first = read.first();
        let text = |value: Option<&Option<String>>| {
            value.and_then(|v| v.as_deref()).map(str::trim).filter(|t| !t.is_empty()).map(String::from)
        };
        Ok(FaxDocument {
            pages,
            tsi: text(first.map(|p| &p.description)),
            received_at: first.and_then(|p| p.date_time.as_deref()).and_then(parse_tiff_date_time),
            modem_make: text(first.map(|p| &p.make)),
            modem_model: text(first.map(|p| &p.model)),
            complete: true,
            ..FaxDocument::default()
        })
    }

    /// The envelope summary's fields: counts, the resolution, how the call went, and the TSI
    /// and caller ID (identifying, needed for routing). Absent values are left out.
    pub fn summary_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("pages", self.pages.len().to_string()),
            ("bad_lines", self.pages.iter().map(|p| u64::from(p.info.bad_lines)).sum::<u64>().to_string()),
            ("complete", self.complete.to_string()),
        ];
        // The finest resolution of any page (pages of one fax normally share one).
        if let Some(resolution) = self.pages.iter().map(|p| p.resolution).max_by_key(|r| r.y_dpi()) {
            fields.push(("resolution", resolution.as_str().to_string()));
        }
        let optional = [
            ("tsi", self.tsi.clone()),
            ("caller_id", self.caller_id.clone()),
            ("duration_s", self.duration_secs.map(|d| d.to_string())),
            ("hangup", self.hangup.clone()),
        ];
        fields.extend(optional.into_iter().filter_map(|(name, value)| value.map(|v| (name, v))));
        fields
    }
}

/// Unix ms as TIFF's DateTime, `YYYY:MM:DD HH:MM:SS`, in UTC (TIFF has no zone; outpost keeps
/// times in UTC).
fn tiff_date_time(ms: i64) -> String {
    let d = crate::envelope::hl7_timestamp(ms);
    format!("{}:{}:{} {}:{}:{}", &d[0..4], &d[4..6], &d[6..8], &d[8..10], &d[10..12], &d[12..14])
}

/// Unix ms as a PDF date, `D:YYYYMMDDHHmmSSZ`.
fn pdf_date(ms: i64) -> String {
    format!("D:{}Z", &crate::envelope::hl7_timestamp(ms)[..14])
}

/// TIFF's DateTime back to Unix ms, read as UTC; none when it is not `YYYY:MM:DD HH:MM:SS`.
fn parse_tiff_date_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b':' || b[7] != b':' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm), the inverse of the envelope's.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hour * 3600 + minute * 60 + second) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fax::g3::tests::G3TEST;

    fn fax() -> FaxDocument {
        FaxDocument {
            pages: vec![
                Page::new(G3TEST.to_vec(), BitOrder::MsbFirst, 1728, Resolution::Normal),
                Page::new(g3::reverse_bits(G3TEST), BitOrder::LsbFirst, 1728, Resolution::Fine),
            ],
            tsi: Some("+41 44 555 12 34".into()),
            caller_id: Some("0445551234".into()),
            received_at: Some(1_795_459_812_000),
            modem_make: Some("USRobotics".into()),
            modem_model: Some("Courier".into()),
            duration_secs: Some(74),
            hangup: Some("0".into()),
            complete: true,
        }
    }

    #[test]
    fn summary_fields() {
        assert_eq!(
            fax().summary_fields(),
            [
                ("pages", "2".to_string()),
                ("bad_lines", "322".to_string()),
                ("complete", "true".to_string()),
                ("resolution", "fine".to_string()),
                ("tsi", "+41 44 555 12 34".to_string()),
                ("caller_id", "0445551234".to_string()),
                ("duration_s", "74".to_string()),
                ("hangup", "0".to_string()),
            ]
        );
        let empty = FaxDocument::default().summary_fields();
        assert_eq!(empty, [("pages", "0".into()), ("bad_lines", "0".into()), ("complete", "false".into())]);
    }

    #[test]
    fn the_stored_tiff_reads_back_as_the_same_fax() {
        let fax = fax();
        let file = fax.to_tiff();
        let back = FaxDocument::from_tiff(&file).expect("our own file");
        assert_eq!(back.pages, fax.pages);
        assert_eq!(back.tsi, fax.tsi);
        assert_eq!(back.received_at, fax.received_at);
        assert_eq!((back.modem_make, back.modem_model), (fax.modem_make.clone(), fax.modem_model.clone()));
        let pages = tiff::read(&file).expect("read");
        assert_eq!(pages[0].date_time.as_deref(), Some("2026:11:23 18:50:12"));
        assert_eq!(pages[1].y_dpi, Some(196.0));
    }

    #[test]
    fn the_pdf_has_one_image_per_page() {
        let pdf = fax().to_pdf();
        let text = String::from_utf8_lossy(&pdf);
        assert_eq!(text.matches("/Filter /CCITTFaxDecode").count(), 2);
        assert!(text.contains("/CreationDate (D:20261123185012Z)"));
        assert!(!text.contains("555"), "no TSI or caller ID in the PDF");
    }

    #[test]
    fn hylafax_like_files() {
        // libtiff's files: one page each, LSB-first.
        let fax = FaxDocument::from_tiff(include_bytes!("../../tests/data/fax/fax2d.tif")).expect("fax2d");
        assert_eq!(fax.pages.len(), 1);
        let page = &fax.pages[0];
        assert_eq!((page.width, page.resolution, page.bit_order), (1728, Resolution::Normal, BitOrder::LsbFirst));
        assert_eq!((page.info.lines, page.info.bad_lines, page.info.eols_byte_aligned), (1082, 0, true));
        // Written again, the page is the same bytes, T4Options 4 kept.
        let file = fax.to_tiff();
        let again = tiff::read(&file).expect("read").remove(0);
        assert_eq!((again.t4_options, again.length), (4, 1082));
        assert_eq!(again.data(), page.data);

        let fax = FaxDocument::from_tiff(include_bytes!("../../tests/data/fax/g3test.tif")).expect("g3test");
        assert_eq!(fax.pages[0].info.lines, 1103);
        assert_eq!(fax.tsi, None);
    }

    #[test]
    fn files_that_are_not_1d_faxes_are_refused() {
        let mut file = fax().to_tiff();
        // Compression 4 (Group 4) on the first page.
        let count = u16::from_le_bytes([file[8], file[9]]) as usize;
        let at = (0..count).map(|i| 10 + i * 12).find(|&e| file[e..e + 2] == 259u16.to_le_bytes()).expect("tag");
        file[at + 8] = 4;
        assert_eq!(FaxDocument::from_tiff(&file), Err(FromTiffError::NotOneDimensional { page: 0, compression: 4 }));
        assert!(matches!(FaxDocument::from_tiff(b"junk"), Err(FromTiffError::Tiff(tiff::TiffError::NotTiff))));
    }

    #[test]
    fn dates() {
        assert_eq!(tiff_date_time(0), "1970:01:01 00:00:00");
        assert_eq!(parse_tiff_date_time("1970:01:01 00:00:00"), Some(0));
        for ms in [1_795_459_812_000, 951_782_400_000 /* 2000-02-29 */, 4_102_444_799_000] {
            assert_eq!(parse_tiff_date_time(&tiff_date_time(ms)), Some(ms));
        }
        for bad in ["", "2026:13:01 00:00:00", "2026-11-22 15:43:32", "2026:11:22 15:43", "20é6:11:22 15:43:32"] {
            assert_eq!(parse_tiff_date_time(bad), None, "{bad}");
        }
        assert_eq!(pdf_date(0), "D:19700101000000Z");
    }
}
