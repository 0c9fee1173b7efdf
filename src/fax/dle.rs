//! Phase-C data from a Class 2 / 2.0 modem is sent "DLE-stuffed": every data byte equal to DLE
//! (0x10) is doubled, and the page ends with `DLE ETX`. [`Unstuffer`] undoes that as the bytes
//! arrive, in chunks cut anywhere (a DLE may be the last byte of one read and its partner the
//! first of the next).
//!
//! Pairs, as mgetty's `faxrecp.c` (`fax_get_page_data`) and HylaFAX's `faxd/Class20.c++`
//! (`nextByte`) read them:
//! - `DLE DLE` → one DLE of data.
//! - `DLE SUB` → two DLEs of data (Class 2.0's compression of a DLE pair; a Class 2 modem does
//!   not send it, and accepting it there too costs nothing, as mgetty does).
//! - `DLE ETX` → the end of the page. Bytes after it are the modem's responses again.
//! - `DLE` and anything else: not data (the modem doubles every data DLE), so both bytes are
//!   dropped, as mgetty does, and counted ([`Unstuffer::unknown_pairs`]) for the page's report.
//!   HylaFAX's Class 2.0 reader keeps both instead; a dropped pair costs at most a scan line of
//!   an MH page, where a kept one would insert a DLE into the image.
//!
//! No IO and no allocation beyond the caller's output buffer; never panics.

/// Data link escape.
pub const DLE: u8 = 0x10;
/// End of text: `DLE ETX` ends a page.
pub const ETX: u8 = 0x03;
/// Substitute: Class 2.0's `DLE SUB` stands for `DLE DLE` of data.
pub const SUB: u8 = 0x1A;
/// DC1 (XON): the Class 2 (SP-2388-A) receive trigger.
pub const DC1: u8 = 0x11;
/// DC2: the Class 2.0 receive trigger, and the one most Class 2 modems accept too.
pub const DC2: u8 = 0x12;
/// Cancel: aborts a data transfer.
pub const CAN: u8 = 0x18;

/// Streaming DLE unstuffer for one page. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Unstuffer {
    /// The last byte seen was an unpaired DLE.
    pending_dle: bool,
    unknown: u32,
    ended: bool,
}

impl Unstuffer {
    pub fn new() -> Unstuffer {
        Unstuffer::default()
    }

    /// Unstuffs `input`, appending data bytes to `out`. Returns `Some(n)` when `DLE ETX` ended
    /// the page within `input`: `n` bytes of it were the page's (ETX included), the rest is not
    /// page data. Returns `None` when all of `input` was consumed and the page goes on. Once the
    /// page has ended, returns `Some(0)` and takes nothing.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        if self.ended {
            return Some(0);
        }
        out.reserve(input.len());
        let mut start = 0;
        for (i, &b) in input.iter().enumerate() {
            if self.pending_dle {
                self.pending_dle = false;
                match b {
                    DLE => out.push(DLE),
                    SUB => out.extend_from_slice(&[DLE, DLE]),
                    ETX => {
                        self.ended = true;
                        return Some(i + 1);
                    }
                    _ => self.unknown = self.unknown.saturating_add(1),
                }
                start = i + 1;
            } else if b == DLE {
                out.extend_from_slice(&input[start..i]);
                self.pending_dle = true;
                start = i + 1;
            }
        }
        if !self.pending_dle && start < input.len() {
            out.extend_from_slice(&input[start..]);
        }
        None
    }

    /// `DLE DLE`-stuffing of `data` and a closing `DLE ETX`: what a modem sends for a page.
    pub fn stuff(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 2);
        for &b in data {
            out.push(b);
            if b == DLE {
                out.push(DLE);
            }
        }
        out.extend_from_slice(&[DLE, ETX]);
        out
    }

    /// `DLE x` pairs that were neither data nor the end, dropped.
    pub fn unknown_pairs(&self) -> u32 {
        self.unknown
    }

    /// `DLE ETX` has been seen.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_at_once(input: &[u8]) -> (Vec<u8>, Option<usize>, u32) {
        let mut u = Unstuffer::new();
        let mut out = Vec::new();
        let end = u.push(input, &mut out);
        (out, end, u.unknown_pairs())
    }

    #[test]
    fn pairs() {
        assert_eq!(all_at_once(&[1, DLE, DLE, 2]), (vec![1, DLE, 2], None, 0));
        assert_eq!(all_at_once(&[1, DLE, SUB, 2]), (vec![1, DLE, DLE, 2], None, 0));
        assert_eq!(all_at_once(&[1, DLE, ETX, b'O', b'K']), (vec![1], Some(3), 0));
        assert_eq!(all_at_once(&[1, DLE, b'x', 2]), (vec![1, 2], None, 1));
        assert_eq!(all_at_once(&[DLE, DLE, DLE, ETX]), (vec![DLE], Some(4), 0));
    }

    #[test]
    fn every_split_point_gives_the_same_bytes() {
        let input = [0, DLE, DLE, 7, DLE, SUB, DLE, 0x55, 9, DLE, DLE, DLE, ETX, b'\r', b'\n'];
        let (whole, end, unknown) = all_at_once(&input);
        assert_eq!(end, Some(13));
        for cut in 0..=input.len() {
            for cut2 in cut..=input.len() {
                let mut u = Unstuffer::new();
                let mut out = Vec::new();
                let mut consumed = 0;
                for part in [&input[..cut], &input[cut..cut2], &input[cut2..]] {
                    if let Some(n) = u.push(part, &mut out) {
                        consumed += n;
                        break;
                    }
                    consumed += part.len();
                }
                assert_eq!((out.as_slice(), consumed, u.unknown_pairs()), (whole.as_slice(), 13, unknown));
            }
        }
    }

    #[test]
    fn stuff_then_unstuff_is_identity() {
        let data: Vec<u8> = (0..=255u8).chain([DLE, DLE, ETX, SUB]).collect();
        let (out, end, _) = all_at_once(&Unstuffer::stuff(&data));
        assert_eq!(out, data);
        assert!(end.is_some());
    }

    #[test]
    fn after_the_end_nothing_is_taken() {
        let mut u = Unstuffer::new();
        let mut out = Vec::new();
        assert_eq!(u.push(&[DLE, ETX], &mut out), Some(2));
        assert_eq!(u.push(&[1, 2, 3], &mut out), Some(0));
        assert!(out.is_empty() && u.ended());
    }
}
