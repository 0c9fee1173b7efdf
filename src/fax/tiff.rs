//! TIFF Class F (TIFF 6.0 with the fax profile of RFC 2306): writing a received fax as one
//! multi-page file, and reading the little we need from one (HylaFAX's received `fax*.tif`, or
//! a stored body).
//!
//! The writer stores each page's bytes as one strip exactly as received and declares their bit
//! order (FillOrder) instead of changing them. Little-endian; every IFD and value at an even
//! (here 4-byte aligned) offset; IFDs chained in page order.
//!
//! The reader is for files we did not write: it accepts either byte order, follows at most
//! [`MAX_PAGES`] IFDs (a loop ends the chain), checks every offset and count against the file's
//! length before it reads, returns strips as slices of the input (it copies no image data), and
//! never panics.

use std::ops::Range;

use super::g3::BitOrder;

/// More IFDs than this are not followed (a fax of this many pages is not a fax).
pub const MAX_PAGES: usize = 1000;
/// More strips per page than this are refused (a page is one strip when we write it; libtiff
/// writes a few).
const MAX_STRIPS: usize = 10_000;

/// One page to write.
#[derive(Debug, Clone, Copy)]
pub struct PageOut<'a> {
    /// The T.4 data as received, written unchanged as the page's one strip.
    pub data: &'a [u8],
    pub bit_order: BitOrder,
    pub width: u32,
    /// Decoded lines, damaged ones included.
    pub length: u32,
    pub x_dpi: u32,
    pub y_dpi: u32,
    /// T4Options: 4 when the EOLs are byte-aligned with fill bits, else 0 (always 1-D).
    pub t4_options: u32,
    pub bad_lines: u32,
    pub consecutive_bad_lines: u32,
}

/// What the file says about the whole fax, repeated in every IFD as TIFF-F asks. Text is
/// written as ASCII (anything else becomes `?`), without NULs.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// ImageDescription: the sender's TSI.
    pub description: Option<String>,
    /// DateTime, `YYYY:MM:DD HH:MM:SS`.
    pub date_time: Option<String>,
    /// Make and Model: the modem's manufacturer and model.
    pub make: Option<String>,
    pub model: Option<String>,
    pub software: Option<String>,
}

// Tags (TIFF 6.0 and RFC 2306).
const NEW_SUBFILE_TYPE: u16 = 254;
const IMAGE_WIDTH: u16 = 256;
const IMAGE_LENGTH: u16 = 257;
const BITS_PER_SAMPLE: u16 = 258;
const COMPRESSION: u16 = 259;
const PHOTOMETRIC: u16 = 262;
const FILL_ORDER: u16 = 266;
const IMAGE_DESCRIPTION: u16 = 270;
const MAKE: u16 = 271;
const MODEL: u16 = 272;
const STRIP_OFFSETS: u16 = 273;
const SAMPLES_PER_PIXEL: u16 = 277;
const ROWS_PER_STRIP: u16 = 278;
const STRIP_BYTE_COUNTS: u16 = 279;
const X_RESOLUTION: u16 = 282;
const Y_RESOLUTION: u16 = 283;
const T4_OPTIONS: u16 = 292;
const RESOLUTION_UNIT: u16 = 296;
const PAGE_NUMBER: u16 = 297;
const SOFTWARE: u16 = 305;
const DATE_TIME: u16 = 306;
const BAD_FAX_LINES: u16 = 326;
const CLEAN_FAX_DATA: u16 = 327;
const CONSECUTIVE_BAD_FAX_LINES: u16 = 328;

// Field types.
const ASCII: u16 = 2;
const SHORT: u16 = 3;
const LONG: u16 = 4;
const RATIONAL: u16 = 5;

/// Compression 3: CCITT T.4 (Group 3).
pub const COMPRESSION_T4: u16 = 3;

enum Value {
    Shorts(Vec<u16>),
    Long(u32),
    Rational(u32, u32),
    Ascii(Vec<u8>),
    /// The page's strip offset, known once the layout is.
    StripOffset,
}

impl Value {
    fn field_type(&self) -> u16 {
        match self {
            Value::Shorts(_) => SHORT,
            Value::Long(_) | Value::StripOffset => LONG,
            Value::Rational(..) => RATIONAL,
            Value::Ascii(_) => ASCII,
        }
    }

    fn count(&self) -> u32 {
        match self {
            Value::Shorts(v) => v.len() as u32,
            Value::Ascii(v) => v.len() as u32,
            _ => 1,
        }
    }

    fn bytes(&self, strip_offset: u32) -> Vec<u8> {
        match self {
            Value::Shorts(v) => v.iter().flat_map(|s| s.to_le_bytes()).collect(),
            Value::Long(n) => n.to_le_bytes().to_vec(),
            Value::StripOffset => strip_offset.to_le_bytes().to_vec(),
            Value::Rational(n, d) => n.to_le_bytes().into_iter().chain(d.to_le_bytes()).collect(),
            Value::Ascii(v) => v.clone(),
        }
    }
}

fn ascii(text: &str) -> Vec<u8> {
    let mut bytes: Vec<u8> = text.chars().map(|c| if c.is_ascii() && c != '\0' { c as u8 } else { b'?' }).collect();
    bytes.push(0);
    bytes
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The file for `pages`, in order. Page numbers are 0-based as TIFF's PageNumber has them
/// (n of total).
pub fn write(pages: &[PageOut], meta: &Meta) -> Vec<u8> {
    let total = u16::try_from(pages.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(pages.iter().map(|p| p.data.len() + 512).sum::<usize>() + 8);
    out.extend_from_slice(b"II");
    out.extend_from_slice(&42u16.to_le_bytes());
    // The first IFD follows the header.
    out.extend_from_slice(&8u32.to_le_bytes());

    for (index, page) in pages.iter().enumerate() {
        let mut entries: Vec<(u16, Value)> = vec![
            // 2: one page of a multi-page image.
            (NEW_SUBFILE_TYPE, Value::Long(2)),
            (IMAGE_WIDTH, Value::Long(page.width)),
            (IMAGE_LENGTH, Value::Long(page.length)),
            (BITS_PER_SAMPLE, Value::Shorts(vec![1])),
            (COMPRESSION, Value::Shorts(vec![COMPRESSION_T4])),
            // WhiteIsZero.
            (PHOTOMETRIC, Value::Shorts(vec![0])),
            (FILL_ORDER, Value::Shorts(vec![page.bit_order.fill_order()])),
        ];
        let text = |tag, value: &Option<String>| value.as_deref().map(|v| (tag, Value::Ascii(ascii(v))));
        entries.extend(text(IMAGE_DESCRIPTION, &meta.description));
        entries.extend(text(MAKE, &meta.make));
        entries.extend(text(MODEL, &meta.model));
        entries.extend([
            (STRIP_OFFSETS, Value::StripOffset),
            (SAMPLES_PER_PIXEL, Value::Shorts(vec![1])),
            (ROWS_PER_STRIP, Value::Long(page.length)),
            (STRIP_BYTE_COUNTS, Value::Long(u32::try_from(page.data.len()).unwrap_or(u32::MAX))),
            (X_RESOLUTION, Value::Rational(page.x_dpi, 1)),
            (Y_RESOLUTION, Value::Rational(page.y_dpi, 1)),
            (T4_OPTIONS, Value::Long(page.t4_options)),
            // Inches.
            (RESOLUTION_UNIT, Value::Shorts(vec![2])),
            (PAGE_NUMBER, Value::Shorts(vec![u16::try_from(index).unwrap_or(u16::MAX), total])),
        ]);
        entries.extend(text(SOFTWARE, &meta.software));
        entries.extend(text(DATE_TIME, &meta.date_time));
        entries.extend([
            (BAD_FAX_LINES, Value::Long(page.bad_lines)),
            // 0: clean; 2: bad lines present and not regenerated (we keep what was received).
            (CLEAN_FAX_DATA, Value::Shorts(vec![if page.bad_lines == 0 { 0 } else { 2 }])),
            (CONSECUTIVE_BAD_FAX_LINES, Value::Long(page.consecutive_bad_lines)),
        ]);

        // Layout: IFD, its values that do not fit in an entry, the strip, padding to 4.
        let ifd_at = out.len();
        let ifd_len = 2 + entries.len() * 12 + 4;
        let mut extra_at = pad4(ifd_at + ifd_len);
        let mut placed = Vec::with_capacity(entries.len());
        for (_, value) in &entries {
            let len = value.bytes(0).len();
            if len > 4 {
                placed.push(Some(extra_at));
                extra_at += pad4(len);
            } else {
                placed.push(None);
            }
        }
        let strip_at = extra_at;
        let next_ifd = if index + 1 < pages.len() { pad4(strip_at + page.data.len()) } else { 0 };
        let strip_offset = u32::try_from(strip_at).unwrap_or(u32::MAX);

        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for ((tag, value), at) in entries.iter().zip(&placed) {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&value.field_type().to_le_bytes());
            out.extend_from_slice(&value.count().to_le_bytes());
            match at {
                Some(at) => out.extend_from_slice(&u32::try_from(*at).unwrap_or(u32::MAX).to_le_bytes()),
                None => {
                    let mut inline = value.bytes(strip_offset);
                    inline.resize(4, 0);
                    out.extend_from_slice(&inline);
                }
            }
        }
        out.extend_from_slice(&u32::try_from(next_ifd).unwrap_or(u32::MAX).to_le_bytes());
        out.resize(pad4(out.len()), 0);
        for ((_, value), at) in entries.iter().zip(&placed) {
            if at.is_some() {
                let bytes = value.bytes(strip_offset);
                let len = pad4(bytes.len());
                out.extend_from_slice(&bytes);
                out.resize(out.len() + len - bytes.len(), 0);
            }
        }
        debug_assert_eq!(out.len(), strip_at);
        out.extend_from_slice(page.data);
        out.resize(pad4(out.len()), 0);
    }
    out
}

/// Why a file is not a TIFF we can take a fax from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TiffError {
    #[error("not a TIFF file (no II*\\0 or MM\\0* header); is this a fax spool file?")]
    NotTiff,
    #[error("BigTIFF is not read; a fax spool writes classic TIFF")]
    BigTiff,
    #[error("the TIFF file has no pages")]
    NoPages,
    #[error("TIFF page {page}: {what} points past the end of the file (truncated while being written?)")]
    Truncated { page: usize, what: &'static str },
    #[error("TIFF page {page} has no {tag} (tag {number}); the file is not a fax image")]
    Missing { page: usize, tag: &'static str, number: u16 },
    #[error("TIFF page {page}: {what}")]
    Invalid { page: usize, what: &'static str },
}

/// One page as a file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PageIn<'a> {
    pub width: u32,
    pub length: u32,
    /// 3 for T.4; 4 is T.6 (Group 4), which `g3` does not read.
    pub compression: u16,
    pub bit_order: BitOrder,
    /// T4Options (0 when absent): bit 0 2-D, bit 2 fill bits before EOLs.
    pub t4_options: u32,
    /// Pixels per inch (ResolutionUnit 3, centimetres, converted; none when absent or zero).
    pub x_dpi: Option<f64>,
    pub y_dpi: Option<f64>,
    pub page_number: Option<(u16, u16)>,
    pub subfile_type: u32,
    pub description: Option<String>,
    pub date_time: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub bad_lines: Option<u32>,
    /// The page's strips in order, slices of the file.
    pub strips: Vec<&'a [u8]>,
}

impl PageIn<'_> {
    /// The strips as one run of bytes (what a page's T.4 data is when it is one strip).
    pub fn data(&self) -> Vec<u8> {
        self.strips.concat()
    }
}

/// Reads every page's description and strips.
pub fn read(file: &[u8]) -> Result<Vec<PageIn<'_>>, TiffError> {
    let order = match file.get(0..4) {
        Some(b"II*\0") => Order::Little,
        Some(b"MM\0*") => Order::Big,
        Some(b"II+\0") | Some(b"MM\0+") => return Err(TiffError::BigTiff),
        _ => return Err(TiffError::NotTiff),
    };
    let file = File { bytes: file, order };
    let mut pages = Vec::new();
    let mut seen = Vec::new();
    let mut next = file.u32(4).ok_or(TiffError::NotTiff)?;
    while next != 0 && pages.len() < MAX_PAGES && !seen.contains(&next) {
        seen.push(next);
        let page = pages.len();
        let (ifd, following) = file.ifd(next as usize).ok_or(TiffError::Truncated { page, what: "the IFD" })?;
        pages.push(file.page(page, &ifd)?);
        next = following;
    }
    if pages.is_empty() {
        return Err(TiffError::NoPages);
    }
    Ok(pages)
}

#[derive(Clone, Copy)]
enum Order {
    Little,
    Big,
}

struct File<'a> {
    bytes: &'a [u8],
    order: Order,
}

/// One IFD entry: tag, type, count, and where its value is (inline or at its offset).
struct Entry {
    tag: u16,
    field_type: u16,
    count: u32,
    value: Range<usize>,
}

impl<'a> File<'a> {
    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self.order {
            Order::Little => u16::from_le_bytes(b),
            Order::Big => u16::from_be_bytes(b),
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self.order {
            Order::Little => u32::from_le_bytes(b),
            Order::Big => u32::from_be_bytes(b),
        })
    }

    /// The entries of the IFD at `at` and the offset of the next IFD. Entries whose values lie
    /// outside the file are kept with an empty range (reading them fails where they are needed).
    fn ifd(&self, at: usize) -> Option<(Vec<Entry>, u32)> {
        let count = usize::from(self.u16(at)?);
        let start = at.checked_add(2)?;
        let end = start.checked_add(count * 12)?;
        // The entries themselves must be in the file: the count is then bounded by its size.
        self.bytes.get(start..end.checked_add(4)?)?;
        let entries = (0..count)
            .filter_map(|i| {
                let e = start + i * 12;
                let field_type = self.u16(e + 2)?;
                let count = self.u32(e + 4)?;
                let size = match field_type {
                    1 | 2 | 6 | 7 => 1,
                    3 | 8 => 2,
                    4 | 9 | 11 | 13 => 4,
                    5 | 10 | 12 => 8,
                    _ => 0,
                };
                let len = (count as usize).checked_mul(size)?;
                let value = if len <= 4 {
                    e + 8..e + 8 + len
                } else {
                    let offset = self.u32(e + 8)? as usize;
                    match offset.checked_add(len) {
                        Some(end) if end <= self.bytes.len() => offset..end,
                        _ => 0..0,
                    }
                };
                Some(Entry { tag: self.u16(e)?, field_type, count, value })
            })
            .collect();
        Some((entries, self.u32(end)?))
    }

    /// An entry's unsigned integers (BYTE, SHORT or LONG), at most `max` of them.
    fn uints(&self, entry: &Entry, max: usize) -> Option<Vec<u32>> {
        let n = (entry.count as usize).min(max);
        let at = entry.value.start;
        if entry.value.is_empty() && entry.count > 0 {
            return None;
        }
        (0..n)
            .map(|i| match entry.field_type {
                1 => self.bytes.get(at + i).map(|&b| u32::from(b)),
                3 => self.u16(at + i * 2).map(u32::from),
                4 => self.u32(at + i * 4),
                _ => None,
            })
            .collect()
    }

    fn rational(&self, entry: &Entry) -> Option<f64> {
        if entry.field_type != RATIONAL || entry.value.is_empty() {
            return self.uints(entry, 1)?.first().map(|&n| f64::from(n));
        }
        let (n, d) = (self.u32(entry.value.start)?, self.u32(entry.value.start + 4)?);
        (d != 0 && n != 0).then(|| f64::from(n) / f64::from(d))
    }

    fn text(&self, entry: &Entry) -> Option<String> {
        if entry.field_type != ASCII {
            return None;
        }
        let bytes = self.bytes.get(entry.value.clone())?;
        let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    fn page(&self, page: usize, ifd: &[Entry]) -> Result<PageIn<'a>, TiffError> {
        let find = |tag| ifd.iter().find(|e| e.tag == tag);
        let one = |tag| find(tag).and_then(|e| self.uints(e, 1)).and_then(|v| v.first().copied());
        let required = |tag, name| one(tag).ok_or(TiffError::Missing { page, tag: name, number: tag });
        let width = required(IMAGE_WIDTH, "ImageWidth")?;
        let length = required(IMAGE_LENGTH, "ImageLength")?;
        let compression = one(COMPRESSION).unwrap_or(1);
        let compression = u16::try_from(compression).map_err(|_| TiffError::Invalid { page, what: "Compression" })?;
        let strips = |tag, name| {
            let entry = find(tag).ok_or(TiffError::Missing { page, tag: name, number: tag })?;
            if entry.count as usize > MAX_STRIPS {
                return Err(TiffError::Invalid { page, what: "more strips than a fax page has" });
            }
            self.uints(entry, MAX_STRIPS).ok_or(TiffError::Truncated { page, what: name })
        };
        let offsets = strips(STRIP_OFFSETS, "StripOffsets")?;
        let counts = strips(STRIP_BYTE_COUNTS, "StripByteCounts")?;
        if offsets.len() != counts.len() {
            return Err(TiffError::Invalid { page, what: "StripOffsets and StripByteCounts differ in number" });
        }
        let strips = offsets
            .iter()
            .zip(&counts)
            .map(|(&offset, &count)| {
                let start = offset as usize;
                start
                    .checked_add(count as usize)
                    .and_then(|end| self.bytes.get(start..end))
                    .ok_or(TiffError::Truncated { page, what: "a strip" })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Centimetres (3) to inches; none (1) or inches (2) as they are.
        let per_inch = if one(RESOLUTION_UNIT) == Some(3) { 2.54 } else { 1.0 };
        let dpi = |tag| find(tag).and_then(|e| self.rational(e)).map(|r| r * per_inch);
        let page_number = find(PAGE_NUMBER).and_then(|e| self.uints(e, 2)).and_then(|v| match v[..] {
            [n, total] => Some((u16::try_from(n).ok()?, u16::try_from(total).ok()?)),
            _ => None,
        });
        let text = |tag| find(tag).and_then(|e| self.text(e));
        Ok(PageIn {
            width,
            length,
            compression,
            bit_order: BitOrder::from_fill_order(one(FILL_ORDER).and_then(|f| u16::try_from(f).ok()).unwrap_or(1)),
            t4_options: one(T4_OPTIONS).unwrap_or(0),
            x_dpi: dpi(X_RESOLUTION),
            y_dpi: dpi(Y_RESOLUTION),
            page_number,
            subfile_type: one(NEW_SUBFILE_TYPE).unwrap_or(0),
            description: text(IMAGE_DESCRIPTION),
            date_time: text(DATE_TIME),
            make: text(MAKE),
            model: text(MODEL),
            bad_lines: one(BAD_FAX_LINES),
            strips,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fax::g3::{self, tests::G3TEST};

    const G3TEST_TIF: &[u8] = include_bytes!("../../tests/data/fax/g3test.tif");
    const FAX2D_TIF: &[u8] = include_bytes!("../../tests/data/fax/fax2d.tif");

    /// A page of `data` (a 1728-pixel MH page such as g3test.g3) as the writers take it.
    pub(crate) fn g3test_page(bit_order: BitOrder, y_dpi: u32, data: &[u8]) -> PageOut<'_> {
        let info = g3::analyze(data, bit_order, 1728);
        PageOut {
            data,
            bit_order,
            width: 1728,
            length: info.lines,
            x_dpi: 204,
            y_dpi,
            t4_options: if info.eols_byte_aligned { 4 } else { 0 },
            bad_lines: info.bad_lines,
            consecutive_bad_lines: info.consecutive_bad_max,
        }
    }

    fn meta() -> Meta {
        Meta {
            description: Some("+41 44 555 12 34".into()),
            date_time: Some("2026:11:23 18:50:12".into()),
            make: Some("USRobotics".into()),
            model: Some("Courier V.Everything".into()),
            software: Some("outpost 0.1.0".into()),
        }
    }

    /// Lines the `fax` crate's decoder finds in a strip (MSB-first after reversing LSB-first).
    fn fax_crate_lines(strip: &[u8], order: BitOrder) -> u32 {
        let data = if order == BitOrder::LsbFirst { g3::reverse_bits(strip) } else { strip.to_vec() };
        let mut lines = 0;
        fax::decoder::decode_g3(data.into_iter(), |_| lines += 1);
        lines
    }

    #[test]
    fn written_files_read_back_with_the_tiff_crate() {
        let reversed = g3::reverse_bits(G3TEST);
        for (count, y_dpi) in [(1, 98), (2, 196), (3, 98)] {
            // Pages alternately as received MSB-first and LSB-first.
            let pages: Vec<PageOut> = (0..count)
                .map(|i| {
                    if i % 2 == 0 {
                        g3test_page(BitOrder::MsbFirst, y_dpi, G3TEST)
                    } else {
                        g3test_page(BitOrder::LsbFirst, y_dpi, &reversed)
                    }
                })
                .collect();
            let file = write(&pages, &meta());

            use ::tiff::decoder::Decoder;
            use ::tiff::tags::Tag;
            let mut decoder = Decoder::new(std::io::Cursor::new(&file)).expect("the tiff crate opens it");
            for (index, page) in pages.iter().enumerate() {
                if index > 0 {
                    assert!(decoder.more_images());
                    decoder.next_image().expect("next page");
                }
                assert_eq!(decoder.dimensions().expect("dimensions"), (1728, 1101));
                let tag = |decoder: &mut Decoder<_>, tag| decoder.get_tag_u32(tag).expect("tag");
                assert_eq!(tag(&mut decoder, Tag::Compression), 3);
                assert_eq!(tag(&mut decoder, Tag::FillOrder), u32::from(page.bit_order.fill_order()));
                assert_eq!(tag(&mut decoder, Tag::PhotometricInterpretation), 0);
                assert_eq!(tag(&mut decoder, Tag::NewSubfileType), 2);
                assert_eq!(tag(&mut decoder, Tag::ResolutionUnit), 2);
                assert_eq!(tag(&mut decoder, Tag::Unknown(326)), 161);
                assert_eq!(tag(&mut decoder, Tag::Unknown(327)), 2);
                assert_eq!(tag(&mut decoder, Tag::Unknown(328)), 14);
                use ::tiff::decoder::ifd::Value;
                assert_eq!(decoder.get_tag(Tag::XResolution).expect("x"), Value::Rational(204, 1));
                assert_eq!(decoder.get_tag(Tag::YResolution).expect("y"), Value::Rational(y_dpi, 1));
                assert_eq!(decoder.get_tag_u16_vec(Tag::Unknown(297)).expect("page"), [index as u16, count as u16]);
                assert_eq!(decoder.get_tag_ascii_string(Tag::ImageDescription).expect("tsi"), "+41 44 555 12 34");
                assert_eq!(decoder.get_tag_ascii_string(Tag::DateTime).expect("time"), "2026:11:23 18:50:12");
                assert_eq!(decoder.get_tag_ascii_string(Tag::Make).expect("make"), "USRobotics");
                // The strip, where the tiff crate says it is, is the page's bytes unchanged,
                // and the fax crate decodes it.
                let offsets = decoder.get_tag_u32_vec(Tag::StripOffsets).expect("offsets");
                let counts = decoder.get_tag_u32_vec(Tag::StripByteCounts).expect("counts");
                assert_eq!((offsets.len(), counts.len()), (1, 1));
                assert_eq!(offsets[0] % 4, 0);
                let strip = &file[offsets[0] as usize..][..counts[0] as usize];
                assert_eq!(strip, page.data);
                assert_eq!(fax_crate_lines(strip, page.bit_order), 1103, "the fax crate's count, see g3.rs");
            }
            assert!(!decoder.more_images());

            // Our reader reads the same.
            let read_back = read(&file).expect("our reader");
            assert_eq!(read_back.len(), count);
            for (index, (back, page)) in read_back.iter().zip(&pages).enumerate() {
                assert_eq!((back.width, back.length, back.compression), (1728, 1101, 3));
                assert_eq!((back.x_dpi, back.y_dpi), (Some(204.0), Some(f64::from(y_dpi))));
                assert_eq!(back.bit_order, page.bit_order);
                assert_eq!(back.page_number, Some((index as u16, count as u16)));
                assert_eq!(back.description.as_deref(), Some("+41 44 555 12 34"));
                assert_eq!(back.bad_lines, Some(161));
                assert_eq!(back.strips, [page.data]);
            }
        }
    }

    #[test]
    fn a_clean_page_without_fill_declares_t4_options_0() {
        let page = g3::tests::encode_page(1728, &g3::tests::varied_rows(1728, 10));
        let info = g3::analyze(&page, BitOrder::MsbFirst, 1728);
        let mut out = g3test_page(BitOrder::MsbFirst, 98, &page);
        out.t4_options = if info.eols_byte_aligned { 4 } else { 0 };
        let file = write(&[out], &Meta::default());
        let back = read(&file).expect("read");
        assert_eq!((back[0].t4_options, back[0].length, back[0].bad_lines), (0, 10, Some(0)));
        assert_eq!(back[0].description, None);
    }

    #[test]
    fn libtiffs_g3test_tif() {
        let pages = read(G3TEST_TIF).expect("read");
        assert_eq!(pages.len(), 1);
        let page = &pages[0];
        assert_eq!((page.width, page.length, page.compression, page.t4_options), (1728, 1103, 3, 0));
        assert_eq!((page.x_dpi, page.y_dpi), (Some(204.0), Some(98.0)));
        assert_eq!(page.bit_order, BitOrder::LsbFirst);
        // fax2tiff numbers pages from 1 (TIFF 6.0 says 0; we write 0-based).
        assert_eq!(page.page_number, Some((1, 1)));
        // fax2tiff decoded the damaged page and encoded it again: its 1103 lines are clean.
        let info = g3::analyze(&page.data(), page.bit_order, page.width);
        assert_eq!((info.lines, info.bad_lines), (1103, 0));
        // The fax crate's decoder drops a last line that no EOL follows (fax2tiff writes EOLs
        // before lines and no RTC).
        assert_eq!(fax_crate_lines(&page.data(), page.bit_order), 1102);
    }

    #[test]
    fn libtiffs_fax2d_tif() {
        let pages = read(FAX2D_TIF).expect("read");
        assert_eq!(pages.len(), 1);
        let page = &pages[0];
        assert_eq!((page.width, page.length, page.compression, page.t4_options), (1728, 1082, 3, 4));
        assert_eq!((page.x_dpi, page.y_dpi), (Some(204.0), Some(98.0)));
        assert_eq!(page.bit_order, BitOrder::LsbFirst);
        assert_eq!(page.bad_lines, Some(0));
        let info = g3::analyze(&page.data(), page.bit_order, page.width);
        assert_eq!((info.lines, info.bad_lines, info.eols_byte_aligned), (1082, 0, true));
    }

    #[test]
    fn big_endian_files_read_too() {
        // The header and one IFD by hand, big-endian: width 16, length 1, one 2-byte strip.
        let mut file = b"MM\0*".to_vec();
        file.extend_from_slice(&8u32.to_be_bytes());
        let entries: [(u16, u16, u32, u32); 5] = [
            (IMAGE_WIDTH, LONG, 1, 16),
            (IMAGE_LENGTH, SHORT, 1, 1 << 16),
            (COMPRESSION, SHORT, 1, 3 << 16),
            (STRIP_OFFSETS, LONG, 1, 8 + 2 + 5 * 12 + 4),
            (STRIP_BYTE_COUNTS, LONG, 1, 2),
        ];
        file.extend_from_slice(&(entries.len() as u16).to_be_bytes());
        for (tag, t, count, value) in entries {
            file.extend_from_slice(&tag.to_be_bytes());
            file.extend_from_slice(&t.to_be_bytes());
            file.extend_from_slice(&count.to_be_bytes());
            file.extend_from_slice(&value.to_be_bytes());
        }
        file.extend_from_slice(&0u32.to_be_bytes());
        file.extend_from_slice(&[0xab, 0xcd]);
        let pages = read(&file).expect("read");
        assert_eq!((pages[0].width, pages[0].length, pages[0].compression), (16, 1, 3));
        assert_eq!(pages[0].strips, [&[0xab, 0xcd][..]]);
        assert_eq!(pages[0].bit_order, BitOrder::MsbFirst);
    }

    #[test]
    fn bad_files_are_refused_not_panicked_on() {
        assert_eq!(read(b""), Err(TiffError::NotTiff));
        assert_eq!(read(b"%PDF-1.4"), Err(TiffError::NotTiff));
        assert_eq!(read(b"II+\0\x08\0\0\0"), Err(TiffError::BigTiff));
        assert_eq!(read(b"II*\0\0\0\0\0"), Err(TiffError::NoPages));
        assert_eq!(read(b"II*\0\xff\xff\xff\xff"), Err(TiffError::Truncated { page: 0, what: "the IFD" }));

        // An IFD chain that loops on itself is read once.
        let mut looped = write(&[g3test_page(BitOrder::MsbFirst, 98, G3TEST)], &meta());
        let ifd_count = u16::from_le_bytes([looped[8], looped[9]]) as usize;
        let next_at = 8 + 2 + ifd_count * 12;
        looped[next_at..next_at + 4].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(read(&looped).map(|p| p.len()), Ok(1));

        // Every truncation, and every byte of the header and IFD overwritten, of a real file.
        for cut in 0..600 {
            let _ = read(&FAX2D_TIF[..cut]);
        }
        for cut in (600..FAX2D_TIF.len()).step_by(97) {
            let _ = read(&FAX2D_TIF[..cut]);
        }
        let file = write(&[g3test_page(BitOrder::MsbFirst, 98, &G3TEST[..64])], &meta());
        for at in 0..file.len().min(400) {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut damaged = file.clone();
                damaged[at] = byte;
                if let Ok(pages) = read(&damaged) {
                    for page in pages {
                        let _ = g3::analyze(&page.data(), page.bit_order, page.width);
                    }
                }
            }
        }
        // A strip count from an untrusted file is not allocated for.
        let mut huge = file.clone();
        let at = find_entry(&huge, STRIP_OFFSETS);
        huge[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read(&huge).is_err());
    }

    fn find_entry(file: &[u8], tag: u16) -> usize {
        let count = u16::from_le_bytes([file[8], file[9]]) as usize;
        (0..count).map(|i| 10 + i * 12).find(|&e| u16::from_le_bytes([file[e], file[e + 1]]) == tag).expect("tag")
    }
}
