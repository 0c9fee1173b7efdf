//! A received fax as a PDF 1.4 document, for destinations whose document import wants PDF.
//!
//! Each page is one image XObject whose stream is the page's T.4 data as received, decoded by
//! the reader with PDF's own CCITTFaxDecode filter: `/K 0` (one-dimensional MH), `/EndOfLine
//! true` (the data has EOLs; readers find each EOL by searching for it, which also skips the
//! fill bits before byte-aligned EOLs, so `/EncodedByteAlign` stays at its default, false),
//! `/BlackIs1 false` (0 bits are white, as T.4 has it), `/Columns` and `/Rows`, and
//! `/DamagedRowsBeforeError` set to the page's damaged lines so that a reader draws a damaged
//! page instead of failing on it. PDF's filter reads the first bit of each byte as the most
//! significant one, so LSB-first pages are bit-reversed byte by byte: a reorder, not a
//! re-encoding. The page is sized from its pixels and resolution (1728 pixels at 204 dpi are
//! 8.47 inches).
//!
//! The document carries no sender identity: its Info dictionary names the producer and the
//! time of receipt only.

use std::fmt::Write as _;

use super::g3::{BitOrder, reverse_bits};

/// One page to write: the same description the TIFF writer takes.
pub use super::tiff::PageOut;

/// The document for `pages`. `created` is the time of receipt as a PDF date
/// (`D:YYYYMMDDHHmmSSZ`), if known.
pub fn write(pages: &[PageOut], created: Option<&str>) -> Vec<u8> {
    let mut pdf = Pdf { out: Vec::new(), offsets: Vec::new() };
    pdf.out.extend_from_slice(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n");

    // Objects: 1 catalog, 2 page tree, 3 info, then per page n: 4+3n page, 5+3n content,
    // 6+3n image.
    let page_id = |n: usize| 4 + 3 * n;
    pdf.object(1, b"<< /Type /Catalog /Pages 2 0 R >>");
    let kids: Vec<String> = (0..pages.len()).map(|n| format!("{} 0 R", page_id(n))).collect();
    pdf.object(2, format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len()).as_bytes());
    let mut info = String::from("<< /Producer (outpost)");
    if let Some(created) = created.filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-':".contains(&b))) {
        let _ = write!(info, " /CreationDate ({created})");
    }
    info.push_str(" >>");
    pdf.object(3, info.as_bytes());

    for (n, page) in pages.iter().enumerate() {
        let id = page_id(n);
        // Points: 72 a inch. A resolution of 0 would divide by zero: take T.4's.
        let w = f64::from(page.width) * 72.0 / f64::from(if page.x_dpi == 0 { 204 } else { page.x_dpi });
        let h = f64::from(page.length) * 72.0 / f64::from(if page.y_dpi == 0 { 98 } else { page.y_dpi });
        pdf.object(
            id,
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w:.2} {h:.2}] \
                 /Resources << /XObject << /Im0 {} 0 R >> >> /Contents {} 0 R >>",
                id + 2,
                id + 1
            )
            .as_bytes(),
        );
        let content = format!("q {w:.2} 0 0 {h:.2} 0 0 cm /Im0 Do Q\n");
        pdf.stream(id + 1, "", content.as_bytes());
        let dict = format!(
            "/Type /XObject /Subtype /Image /Width {width} /Height {length} /ColorSpace /DeviceGray \
             /BitsPerComponent 1 /Filter /CCITTFaxDecode /DecodeParms << /K 0 /Columns {width} \
             /Rows {length} /EndOfLine true /BlackIs1 false /DamagedRowsBeforeError {bad} >> ",
            width = page.width,
            length = page.length,
            bad = page.bad_lines,
        );
        match page.bit_order {
            BitOrder::MsbFirst => pdf.stream(id + 2, &dict, page.data),
            BitOrder::LsbFirst => pdf.stream(id + 2, &dict, &reverse_bits(page.data)),
        }
    }

    let xref_at = pdf.out.len();
    let size = pdf.offsets.len() + 1;
    let mut xref = format!("xref\n0 {size}\n0000000000 65535 f\r\n");
    pdf.offsets.sort_unstable();
    for (_, offset) in &pdf.offsets {
        let _ = write!(xref, "{offset:010} 00000 n\r\n");
    }
    let _ = write!(xref, "trailer\n<< /Size {size} /Root 1 0 R /Info 3 0 R >>\nstartxref\n{xref_at}\n%%EOF\n");
    pdf.out.extend_from_slice(xref.as_bytes());
    pdf.out
}

struct Pdf {
    out: Vec<u8>,
    /// (object number, byte offset), one per object written; the numbers run 1..=n.
    offsets: Vec<(usize, usize)>,
}

impl Pdf {
    fn object(&mut self, id: usize, body: &[u8]) {
        self.offsets.push((id, self.out.len()));
        self.out.extend_from_slice(format!("{id} 0 obj\n").as_bytes());
        self.out.extend_from_slice(body);
        self.out.extend_from_slice(b"\nendobj\n");
    }

    fn stream(&mut self, id: usize, dict: &str, data: &[u8]) {
        self.offsets.push((id, self.out.len()));
        self.out.extend_from_slice(format!("{id} 0 obj\n<< {dict}/Length {} >>\nstream\n", data.len()).as_bytes());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\nendstream\nendobj\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fax::g3::{self, tests::G3TEST};

    fn page(data: &[u8], bit_order: BitOrder, y_dpi: u32) -> PageOut<'_> {
        crate::fax::tiff::tests::g3test_page(bit_order, y_dpi, data)
    }

    fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
    }

    /// Objects by number, from the xref table that startxref points at: every offset must
    /// point at `n 0 obj`. Returns each object's bytes up to its `endobj`.
    fn objects(pdf: &[u8]) -> Vec<Vec<u8>> {
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        let text = String::from_utf8_lossy(pdf);
        let tail = &text[text.rfind("startxref\n").expect("startxref")..];
        let xref_at: usize = tail.lines().nth(1).expect("offset").parse().expect("a number");
        assert!(tail.ends_with("%%EOF\n"));
        assert_eq!(&pdf[xref_at..xref_at + 5], b"xref\n");
        let table = String::from_utf8_lossy(&pdf[xref_at..]);
        let mut lines = table.split('\n');
        lines.next();
        let header: Vec<usize> = lines.next().expect("subsection").split(' ').map(|n| n.parse().expect("n")).collect();
        assert_eq!(header[0], 0);
        let trailer_size = &table[table.rfind("/Size ").expect("size") + 6..];
        assert_eq!(trailer_size.split(' ').next().expect("n").parse::<usize>().expect("n"), header[1]);
        (0..header[1])
            .map(|n| {
                // Each entry is exactly 20 bytes.
                let at = xref_at + 5 + format!("0 {}\n", header[1]).len() + n * 20;
                let entry = &pdf[at..at + 20];
                assert!(entry.ends_with(b"\r\n"));
                if n == 0 {
                    assert_eq!(entry, b"0000000000 65535 f\r\n");
                    return Vec::new();
                }
                assert_eq!(&entry[10..18], b" 00000 n");
                let offset: usize = std::str::from_utf8(&entry[..10]).expect("ascii").parse().expect("offset");
                let head = format!("{n} 0 obj\n");
                assert_eq!(&pdf[offset..offset + head.len()], head.as_bytes(), "object {n}");
                let end = find(pdf, b"endobj\n", offset).expect("endobj");
                pdf[offset..end].to_vec()
            })
            .collect()
    }

    fn stream_of(object: &[u8]) -> &[u8] {
        let text = String::from_utf8_lossy(object);
        let length: usize =
            text[text.find("/Length ").expect("length") + 8..].split(' ').next().expect("n").parse().expect("a number");
        let start = find(object, b"stream\n", 0).expect("stream") + 7;
        assert_eq!(&object[start + length..], b"\nendstream\n");
        &object[start..start + length]
    }

    #[test]
    fn structure_and_image_streams() {
        let reversed = g3::reverse_bits(G3TEST);
        let pages = [
            page(G3TEST, BitOrder::MsbFirst, 98),
            page(&reversed, BitOrder::LsbFirst, 196),
            page(G3TEST, BitOrder::MsbFirst, 98),
        ];
        let pdf = write(&pages, Some("D:20261123185012Z"));
        let objects = objects(&pdf);
        assert_eq!(objects.len(), 1 + 3 + 3 * 3);
        let text = |n: usize| String::from_utf8_lossy(&objects[n]).into_owned();
        assert!(text(1).contains("/Type /Catalog /Pages 2 0 R"));
        assert!(text(2).contains("/Kids [4 0 R 7 0 R 10 0 R] /Count 3"));
        assert!(text(3).contains("/CreationDate (D:20261123185012Z)"));
        // 1728 px at 204 dpi is 609.88 pt; 1101 lines at 98 dpi 808.90 pt, at 196 dpi 404.45.
        assert!(text(4).contains("/MediaBox [0 0 609.88 808.90]"), "{}", text(4));
        assert!(text(7).contains("/MediaBox [0 0 609.88 404.45]"), "{}", text(7));
        for (n, page) in pages.iter().enumerate() {
            let image = &objects[6 + 3 * n];
            let dict = String::from_utf8_lossy(&image[..find(image, b"stream\n", 0).expect("stream")]).into_owned();
            for parameter in [
                "/Filter /CCITTFaxDecode",
                "/K 0 /Columns 1728 /Rows 1101 /EndOfLine true /BlackIs1 false /DamagedRowsBeforeError 161",
                "/Width 1728 /Height 1101",
                "/BitsPerComponent 1",
            ] {
                assert!(dict.contains(parameter), "{parameter} in {dict}");
            }
            // The stream is the page as received, MSB-first: LSB-first pages bit-reversed.
            assert_eq!(stream_of(image), G3TEST, "page {n}");
            // The content draws the image over the whole page.
            let height = if page.y_dpi == 196 { "404.45" } else { "808.90" };
            assert_eq!(stream_of(&objects[5 + 3 * n]), format!("q 609.88 0 0 {height} 0 0 cm /Im0 Do Q\n").as_bytes());
        }
    }

    /// qpdf (Debian package qpdf; scripts/test installs it) checks the structure as an
    /// independent reader: header, xref, objects, stream lengths, page tree.
    #[test]
    fn qpdf_finds_nothing_wrong() {
        let reversed = g3::reverse_bits(G3TEST);
        let pdf = write(&[page(G3TEST, BitOrder::MsbFirst, 98), page(&reversed, BitOrder::LsbFirst, 196)], None);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fax.pdf");
        std::fs::write(&path, &pdf).expect("write");
        let output = match std::process::Command::new("qpdf").arg("--check").arg(&path).output() {
            Ok(output) => output,
            Err(e) => panic!("qpdf: {e}; install Debian's qpdf (scripts/test installs what the tests need)"),
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("No syntax or stream encoding errors found"), "{stdout}");
    }

    #[test]
    fn no_pages_and_odd_values_still_make_a_document() {
        let empty = write(&[], None);
        assert_eq!(objects(&empty).len(), 4);
        let odd = PageOut {
            data: &[],
            bit_order: BitOrder::LsbFirst,
            width: 0,
            length: 0,
            x_dpi: 0,
            y_dpi: 0,
            t4_options: 0,
            bad_lines: 0,
            consecutive_bad_lines: 0,
        };
        let pdf = write(&[odd], Some("D:2026) /Evil (x"));
        let objects = objects(&pdf);
        assert!(!String::from_utf8_lossy(&objects[3]).contains("Evil"));
    }
}
