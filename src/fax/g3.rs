//! One received fax page as T.4 one-dimensional (modified Huffman, MH) data: its lines counted
//! and checked, never re-encoded.
//!
//! The page is walked EOL by EOL (an EOL is eleven or more 0 bits then a 1; fill bits before it
//! merge into the run of zeros), so a damaged line costs that line and no more: the next EOL
//! resynchronises. Each stretch between two EOLs is decoded with the `fax` crate's MH code
//! tables and is a good line when its runs add up to exactly the page width with nothing but
//! zeros after them. Six EOLs in a row (five empty stretches after a line) are the RTC that ends
//! the page; what follows it is not looked at. Garbage, truncated pages and pages that are not
//! MH at all give bad lines, never a panic; the work is linear in the input and allocates
//! nothing from it.
//!
//! Two-dimensional (MR) pages are not decoded here: their 2-D lines count as bad.

use std::convert::Infallible;

use fax::{BitReader, maps};

/// The order of the bits in each byte of the page data.
///
/// T.4 sends the first bit of the code first. Modems and files store that first bit either as
/// the byte's most significant bit (what the `fax` crate and PDF's CCITT filter read) or as its
/// least significant bit (Class 2/2.0 modems by default, TIFF's FillOrder 2, HylaFAX's files).
/// Changing one to the other reverses each byte's bits: a reorder, never a re-encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOrder {
    /// The first bit is the byte's bit 7 (TIFF FillOrder 1).
    MsbFirst,
    /// The first bit is the byte's bit 0 (TIFF FillOrder 2).
    LsbFirst,
}

impl BitOrder {
    /// TIFF's FillOrder for data in this order.
    pub fn fill_order(self) -> u16 {
        match self {
            BitOrder::MsbFirst => 1,
            BitOrder::LsbFirst => 2,
        }
    }

    /// The order a TIFF FillOrder declares (anything but 2 is 1, its default).
    pub fn from_fill_order(fill_order: u16) -> BitOrder {
        if fill_order == 2 { BitOrder::LsbFirst } else { BitOrder::MsbFirst }
    }
}

/// The vertical resolution of a T.4 page (the horizontal one is 204 dpi, 8 pixels per mm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// 3.85 lines per mm, 98 dpi.
    Normal,
    /// 7.7 lines per mm, 196 dpi.
    Fine,
    /// 15.4 lines per mm, 391 dpi.
    Superfine,
}

impl Resolution {
    /// Horizontal pixels per inch: 204 for every T.4 resolution.
    pub fn x_dpi(self) -> u32 {
        204
    }

    /// Lines per inch.
    pub fn y_dpi(self) -> u32 {
        match self {
            Resolution::Normal => 98,
            Resolution::Fine => 196,
            Resolution::Superfine => 391,
        }
    }

    /// The resolution with the nearest lines per inch (a file's 100 or 200 dpi included).
    pub fn from_y_dpi(dpi: f64) -> Resolution {
        if dpi < 147.0 {
            Resolution::Normal
        } else if dpi < 294.0 {
            Resolution::Fine
        } else {
            Resolution::Superfine
        }
    }

    /// The word for summaries: `normal`, `fine` or `superfine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Normal => "normal",
            Resolution::Fine => "fine",
            Resolution::Superfine => "superfine",
        }
    }
}

/// What walking a page found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageInfo {
    /// Lines on the page, damaged ones included: a decoder shows every line it meets, so this
    /// is the page's ImageLength.
    pub lines: u32,
    /// Lines whose runs do not add up to the width, or that hold a bit pattern that is no MH
    /// code, or that the data ends inside.
    pub bad_lines: u32,
    /// The width the lines were checked against, in pixels.
    pub width: u32,
    /// The longest run of consecutive bad lines (TIFF-F's ConsecutiveBadFaxLines).
    pub consecutive_bad_max: u32,
    /// The page ends in RTC (six EOLs): it was received to its end.
    pub has_rtc: bool,
    /// Every line-ending EOL ends on a byte boundary (fill bits before it where needed): TIFF's
    /// T4Options bit 2, "EOLs byte-aligned". False when there are no lines.
    pub eols_byte_aligned: bool,
}

impl PageInfo {
    /// The page has no damaged line.
    pub fn is_clean(&self) -> bool {
        self.bad_lines == 0
    }
}

/// Reverses the bits of every byte: LSB-first data as MSB-first, and back.
pub fn reverse_bits(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| b.reverse_bits()).collect()
}

/// Walks an MH page of `width` pixels whose bytes are in `order`, counting and checking its
/// lines. Any input is accepted.
pub fn analyze(data: &[u8], order: BitOrder, width: u32) -> PageInfo {
    let bits = Bits { data, order };
    let total = bits.len();
    let mut walk = Walk { info: PageInfo { width, ..PageInfo::default() }, bad_run: 0, aligned: true };

    // The stretch of bits since the previous EOL, and how many empty stretches (EOLs in a row)
    // came after the last line.
    let mut start = 0u64;
    let mut empty_in_row = 0u32;
    let mut zeros = 0u64;
    let mut pos = 0u64;
    while pos < total {
        if !bits.get(pos) {
            zeros += 1;
            pos += 1;
            continue;
        }
        if zeros < 11 {
            zeros = 0;
            pos += 1;
            continue;
        }
        // An EOL ends at `pos`: the stretch before it is [start, pos - 11), its trailing zeros
        // being fill or the line's last code.
        let end = pos - 11;
        zeros = 0;
        pos += 1;
        let eol_aligned = pos.is_multiple_of(8);
        if bits.all_zero(start, end) {
            // Before the page's first line (the EOL that starts a page), or inside the RTC.
            if walk.info.lines > 0 {
                empty_in_row += 1;
                if empty_in_row >= 5 {
                    walk.info.has_rtc = true;
                    break;
                }
            } else {
                walk.aligned &= eol_aligned;
            }
        } else {
            empty_in_row = 0;
            walk.line(&bits, start, end);
            walk.aligned &= eol_aligned;
        }
        start = pos;
    }
    // A last line with no EOL after it (a TIFF strip whose encoder puts EOLs before lines), or
    // the end of a truncated page.
    if !walk.info.has_rtc && !bits.all_zero(start, total) {
        walk.line(&bits, start, total);
    }
    walk.info.eols_byte_aligned = walk.aligned && walk.info.lines > 0;
    walk.info
}

struct Walk {
    info: PageInfo,
    bad_run: u32,
    aligned: bool,
}

impl Walk {
    fn line(&mut self, bits: &Bits, start: u64, end: u64) {
        self.info.lines = self.info.lines.saturating_add(1);
        if line_is_good(bits, start, end, self.info.width) {
            self.bad_run = 0;
        } else {
            self.info.bad_lines = self.info.bad_lines.saturating_add(1);
            self.bad_run = self.bad_run.saturating_add(1);
            self.info.consecutive_bad_max = self.info.consecutive_bad_max.max(self.bad_run);
        }
    }
}

/// Decodes the runs in [start, end): white first, then alternating, each a chain of make-up
/// codes closed by a terminating code (< 64). Good when they add up to exactly `width` and only
/// zero (fill) bits follow, as T.4 has it. (libtiff and HylaFAX stop reading a line at its width
/// and skip what follows; here stray bits after the width make the line bad, which is also
/// what shows a session width that is not the page's.)
fn line_is_good(bits: &Bits, start: u64, end: u64, width: u32) -> bool {
    let mut reader = Stretch { bits, pos: start, end };
    let mut a0: u32 = 0;
    let mut white = true;
    // Every line has at least one run, even a zero-width one.
    let mut runs = 0u32;
    while a0 < width || runs == 0 {
        loop {
            let before = reader.pos;
            let code = if white { maps::white::decode(&mut reader) } else { maps::black::decode(&mut reader) };
            let Some(run) = code else { return false };
            if reader.pos > end || reader.pos == before {
                return false;
            }
            a0 = match a0.checked_add(u32::from(run)) {
                Some(a) if a <= width => a,
                _ => return false,
            };
            if run < 64 {
                break;
            }
        }
        runs += 1;
        white = !white;
    }
    bits.all_zero(reader.pos, end)
}

/// The page's bits in transmission order, whatever the byte order.
struct Bits<'a> {
    data: &'a [u8],
    order: BitOrder,
}

impl Bits<'_> {
    fn len(&self) -> u64 {
        self.data.len() as u64 * 8
    }

    /// Bit `pos` (false past the end).
    fn get(&self, pos: u64) -> bool {
        let Some(&byte) = usize::try_from(pos / 8).ok().and_then(|i| self.data.get(i)) else { return false };
        let bit = (pos % 8) as u32;
        match self.order {
            BitOrder::MsbFirst => byte & (0x80 >> bit) != 0,
            BitOrder::LsbFirst => byte & (1 << bit) != 0,
        }
    }

    fn all_zero(&self, start: u64, end: u64) -> bool {
        (start..end.min(self.len())).all(|pos| !self.get(pos))
    }
}

/// A line's stretch as the `fax` crate's code tables read it. Past its end it reads zeros, as
/// the EOL that follows would give, so a last code shorter than a table's look-ahead decodes;
/// the caller refuses a code that ends past the stretch.
struct Stretch<'a, 'b> {
    bits: &'b Bits<'a>,
    pos: u64,
    end: u64,
}

impl BitReader for Stretch<'_, '_> {
    type Error = Infallible;

    fn peek(&self, bits: u8) -> Option<u16> {
        if bits > 16 {
            return None;
        }
        let mut value = 0u16;
        for i in 0..u64::from(bits) {
            let at = self.pos + i;
            value = (value << 1) | u16::from(at < self.end && self.bits.get(at));
        }
        Some(value)
    }

    fn consume(&mut self, bits: u8) -> Result<(), Infallible> {
        self.pos += u64::from(bits);
        Ok(())
    }

    fn bits_to_byte_boundary(&self) -> u8 {
        ((8 - self.pos % 8) % 8) as u8
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const G3TEST: &[u8] = include_bytes!("../../tests/data/fax/g3test.g3");

    /// Bits written first-bit-first as text ("0001 1" → bits), packed MSB-first.
    fn pack(text: &str) -> Vec<u8> {
        let bits: Vec<bool> = text.chars().filter(|c| *c == '0' || *c == '1').map(|c| c == '1').collect();
        bits.chunks(8)
            .map(|chunk| chunk.iter().enumerate().fold(0u8, |byte, (i, &b)| byte | (u8::from(b) << (7 - i))))
            .collect()
    }

    const EOL: &str = "000000000001";

    fn page(lines: &[&str], rtc: bool) -> Vec<u8> {
        let mut text = String::from(EOL);
        for line in lines {
            text.push_str(line);
            text.push_str(EOL);
        }
        if rtc {
            for _ in 0..5 {
                text.push_str(EOL);
            }
        }
        pack(&text)
    }

    // Width 16: white 4 (1011), black 4 (011), white 8 (10011).
    const LINE16: &str = "1011 011 10011";

    /// A clean MH page: `rows` lines of `width` pixels, each a list of run lengths (white
    /// first), encoded with the `fax` crate's code tables, EOL first, RTC last.
    pub(crate) fn encode_page(width: u32, rows: &[Vec<u32>]) -> Vec<u8> {
        let mut text = String::from(EOL);
        for runs in rows {
            assert_eq!(runs.iter().sum::<u32>(), width);
            for (i, &run) in runs.iter().enumerate() {
                let encode = if i % 2 == 0 { maps::white::encode } else { maps::black::encode };
                let mut rest = run;
                let mut codes = Vec::new();
                while rest >= 2560 + 64 {
                    codes.push(2560);
                    rest -= 2560;
                }
                if rest >= 64 {
                    codes.push(rest / 64 * 64);
                }
                codes.push(rest % 64);
                for code in codes {
                    let bits = encode(code as u16).expect("a run the MH tables have");
                    text.push_str(&format!("{:0width$b}", bits.data, width = usize::from(bits.len)));
                }
            }
            text.push_str(EOL);
        }
        for _ in 0..5 {
            text.push_str(EOL);
        }
        pack(&text)
    }

    /// Rows of varied runs (all widths of codes, make-ups and the extended make-ups included).
    pub(crate) fn varied_rows(width: u32, count: u32) -> Vec<Vec<u32>> {
        (0..count)
            .map(|row| {
                let mut runs = Vec::new();
                let mut left = width;
                let mut step = row;
                while left > 0 {
                    step = step.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let run = (step >> 16) % if runs.is_empty() { 2000 } else { 200 };
                    let run = run.min(left);
                    runs.push(run);
                    left -= run;
                }
                runs
            })
            .collect()
    }

    #[test]
    fn a_clean_page_agrees_with_the_fax_crates_decoder() {
        let page = encode_page(1728, &varied_rows(1728, 300));
        let info = analyze(&page, BitOrder::MsbFirst, 1728);
        assert_eq!(
            info,
            PageInfo {
                lines: 300,
                bad_lines: 0,
                width: 1728,
                consecutive_bad_max: 0,
                has_rtc: true,
                eols_byte_aligned: false
            }
        );
        let mut decoded = 0u32;
        let mut full_width = 0u32;
        fax::decoder::decode_g3(page.iter().copied(), |transitions| {
            decoded += 1;
            full_width += u32::from(transitions.last() == Some(&1728));
        });
        assert_eq!((decoded, full_width), (300, 300));
        assert_eq!(analyze(&reverse_bits(&page), BitOrder::LsbFirst, 1728), info);
    }

    /// g3test.g3 is a real received page with transmission damage: 1101 lines between its
    /// first EOL and its RTC, 161 of them damaged (16 identical lines stop at pixel 164; others
    /// run past the width, hold no valid code, or have stray bits after the width, like the
    /// first line; libtiff's fax2tiff reports
    /// "Bad code word" at line 180, x 1528, where this walk finds line 180 ending at 1528).
    /// libtiff (and the `fax` crate's decoder, which takes any 9 zeros at a code boundary for
    /// an EOL) count 1103 rows: they cut two damaged lines in two or read past the RTC.
    #[test]
    fn g3test_page_is_1101_lines_161_damaged() {
        let info = analyze(G3TEST, BitOrder::MsbFirst, 1728);
        assert_eq!(
            info,
            PageInfo {
                lines: 1101,
                bad_lines: 161,
                width: 1728,
                consecutive_bad_max: 14,
                has_rtc: true,
                eols_byte_aligned: false
            }
        );
    }

    #[test]
    fn g3test_bit_reversed_read_lsb_first_is_the_same() {
        let reversed = reverse_bits(G3TEST);
        assert_eq!(analyze(&reversed, BitOrder::LsbFirst, 1728), analyze(G3TEST, BitOrder::MsbFirst, 1728));
        // Read in the wrong order it is almost nothing but damage.
        let wrong = analyze(&reversed, BitOrder::MsbFirst, 1728);
        assert!(wrong.bad_lines * 10 > wrong.lines * 9, "{wrong:?}");
    }

    #[test]
    fn the_wrong_width_makes_the_lines_bad() {
        let info = analyze(G3TEST, BitOrder::MsbFirst, 1000);
        assert_eq!((info.lines, info.bad_lines), (1101, 1101));
        let clean = encode_page(1728, &varied_rows(1728, 20));
        assert_eq!(analyze(&clean, BitOrder::MsbFirst, 2048).bad_lines, 20);
    }

    #[test]
    fn small_pages() {
        let info = analyze(&page(&[LINE16, LINE16], true), BitOrder::MsbFirst, 16);
        assert_eq!((info.lines, info.bad_lines, info.has_rtc), (2, 0, true));

        // Make-up codes: white 64 (11011) + white 0 (00110101), then black 0 ends nothing: a
        // line of 64 white pixels.
        let info = analyze(&page(&["11011 00110101"], true), BitOrder::MsbFirst, 64);
        assert_eq!((info.lines, info.bad_lines), (1, 0));

        // A run too long for the width, and a line too short.
        let info = analyze(&page(&[LINE16, "1011 011", LINE16, "10011 10011 10011"], true), BitOrder::MsbFirst, 16);
        assert_eq!((info.lines, info.bad_lines, info.consecutive_bad_max), (4, 2, 1));

        // A bit pattern no white code starts with (0000 0011 is only in EOLs and long black
        // codes), then a good line: the EOL resynchronises.
        let info = analyze(&page(&["0000 0011 1", LINE16], true), BitOrder::MsbFirst, 16);
        assert_eq!((info.lines, info.bad_lines), (2, 1));
    }

    #[test]
    fn fill_bits_before_eols_are_byte_aligned_and_good() {
        // Each line padded with zeros so that its EOL ends on a byte boundary.
        let mut text = String::from("0000" /* fill */);
        text.push_str(EOL);
        for _ in 0..3 {
            let used = LINE16.chars().filter(|c| !c.is_whitespace()).count() + 12;
            text.push_str(LINE16);
            text.push_str(&"0".repeat((8 - used % 8) % 8));
            text.push_str(EOL);
        }
        let info = analyze(&pack(&text), BitOrder::MsbFirst, 16);
        assert_eq!((info.lines, info.bad_lines, info.has_rtc, info.eols_byte_aligned), (3, 0, false, true));
        let unaligned = analyze(&page(&[LINE16, LINE16], true), BitOrder::MsbFirst, 16);
        assert!(!unaligned.eols_byte_aligned);
    }

    #[test]
    fn a_last_line_without_eol_counts() {
        // EOLs before lines, none after the last (libtiff's strips without RTC).
        let text = format!("{EOL}{LINE16}{EOL}{LINE16}");
        let info = analyze(&pack(&text), BitOrder::MsbFirst, 16);
        assert_eq!((info.lines, info.bad_lines, info.has_rtc), (2, 0, false));
    }

    #[test]
    fn truncated_pages_count_what_they_have() {
        let whole = analyze(G3TEST, BitOrder::MsbFirst, 1728);
        for cut in [0, 1, 2, 100, 1000, 25_000, G3TEST.len() - 20] {
            let info = analyze(&G3TEST[..cut], BitOrder::MsbFirst, 1728);
            assert!(!info.has_rtc, "cut at {cut}");
            assert!(info.lines <= whole.lines && info.bad_lines <= whole.bad_lines + 1, "cut at {cut}: {info:?}");
        }
        // A clean page cut anywhere: the lines before the cut good, the one cut through bad.
        let clean = encode_page(1728, &varied_rows(1728, 100));
        for cut in [clean.len() / 3, clean.len() / 2 + 1, clean.len() - 8] {
            let info = analyze(&clean[..cut], BitOrder::MsbFirst, 1728);
            assert!(info.bad_lines <= 1 && info.lines > 30, "cut at {cut}: {info:?}");
        }
        assert_eq!(analyze(&[], BitOrder::MsbFirst, 1728), PageInfo { width: 1728, ..PageInfo::default() });
    }

    #[test]
    fn corrupted_bytes_cost_only_their_lines() {
        let clean = encode_page(1728, &varied_rows(1728, 200));
        let mut damaged = clean.clone();
        // Three short bursts of noise in the page.
        let len = clean.len();
        for at in [len / 5, len / 2, len * 4 / 5] {
            damaged[at..at + 3].copy_from_slice(&[0x5a, 0xa5, 0xff]);
        }
        let info = analyze(&damaged, BitOrder::MsbFirst, 1728);
        assert!(info.bad_lines >= 3 && info.bad_lines <= 6, "{info:?}");
        assert!(info.consecutive_bad_max <= 2, "{info:?}");
        assert!(info.lines.abs_diff(200) <= 3, "{info:?}");
        assert!(info.has_rtc);

        let mut damaged = G3TEST.to_vec();
        damaged[20_000..20_004].copy_from_slice(&[0xff, 0x5a, 0xa5, 0xff]);
        let info = analyze(&damaged, BitOrder::MsbFirst, 1728);
        assert!(info.lines.abs_diff(1101) <= 2 && info.bad_lines.abs_diff(161) <= 2, "{info:?}");
    }

    #[test]
    fn random_bytes_never_panic() {
        // A fixed xorshift stream: reproducible noise of many lengths, both orders and a few
        // widths (0 and absurd ones included).
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300 {
            let len = (next() % 3000) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 {
                // Sparse noise has long zero runs: many EOLs, many short stretches.
                data.iter_mut().for_each(|b| *b &= (next() as u8) & (next() as u8));
            }
            for (order, width) in [(BitOrder::MsbFirst, 1728), (BitOrder::LsbFirst, 16), (BitOrder::MsbFirst, 0)] {
                let info = analyze(&data, order, width);
                assert!(info.bad_lines <= info.lines && info.consecutive_bad_max <= info.bad_lines);
            }
            let _ = analyze(&data, BitOrder::MsbFirst, u32::MAX);
        }
        // Splices of the real page with noise.
        for cut in [7, 333, 4096, 40_000] {
            let mut data = G3TEST[..cut].to_vec();
            data.extend((0..500).map(|_| next() as u8));
            data.extend_from_slice(&G3TEST[cut..]);
            let info = analyze(&data, BitOrder::MsbFirst, 1728);
            assert!(info.lines >= 1095 && info.has_rtc, "{info:?}");
        }
    }

    #[test]
    fn resolutions() {
        assert_eq!(Resolution::from_y_dpi(98.0), Resolution::Normal);
        assert_eq!(Resolution::from_y_dpi(100.0), Resolution::Normal);
        assert_eq!(Resolution::from_y_dpi(196.0), Resolution::Fine);
        assert_eq!(Resolution::from_y_dpi(391.0), Resolution::Superfine);
        assert_eq!(BitOrder::from_fill_order(2), BitOrder::LsbFirst);
        assert_eq!(BitOrder::from_fill_order(0), BitOrder::MsbFirst);
    }
}
