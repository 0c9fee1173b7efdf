//! The numbers a Class 2 / Class 2.0 fax modem reports, as tables: hangup codes (`+FHNG` /
//! `+FHS`), post-page response (`+FPTS` / `+FPS`) and post-page message (`+FET`).
//!
//! Where the values come from:
//! - Class 2 (SP-2388-A, EIA-592 draft) reports hangup codes in **decimal**: 0–9 call placement,
//!   10–19 transmit phase A, 20–39 transmit phase B, 40–49 transmit phase C, 50–69 transmit
//!   phase D, 70–89 receive phase B, 90–99 receive phase C, 100–119 receive phase D, 120–255
//!   reserved. As in mgetty's `faxhng.c`, HylaFAX's `faxd/Class2.c++` (`hangupCodes`, column
//!   "2388/90 and 2388-A") and the Rockwell RC336ACX and Multi-Tech MT5634 manuals' tables.
//! - Class 2.0 (TIA/EIA-592) and ITU-T T.32 report them in **hexadecimal** with wider ranges:
//!   00–0F, 10–1F, 20–3F transmit phase B, 40–4F transmit phase C, 50–6F transmit phase D,
//!   70–8F receive phase B, 90–9F receive phase C, A0–BF receive phase D. As in HylaFAX's
//!   third column ("2388-B"), and the Equisys, ZyXEL and Multi-Tech tables. The meanings are the
//!   same, renumbered: Class 2's 100 ("unspecified receive phase D error") is Class 2.0's A0;
//!   Class 2's 94 (bad CRC or frame, ECM) is 2.0's 92.
//! - Post-page responses (T.30 MCF, RTN, RTP, PIN, PIP as 1–5) and post-page messages (MPS,
//!   EOM, EOP as 0–2, the procedure-interrupt forms PRI-MPS, PRI-EOM, PRI-EOP as 3–5) as in
//!   HylaFAX's `libhylafax/class2.h` and mgetty's `fax_lib.h` (`Post_page_messages`). HylaFAX
//!   numbers the PRI forms 4–6 internally (a bit for "interrupt"); on the wire T.32 uses 3–5.

use std::fmt;

/// Which command set a modem speaks. Class 2.1 (T.32) modems speak Class 2.0's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModemClass {
    /// `AT+FCLASS=2`: SP-2388-A, the pre-standard Rockwell-era command set.
    Class2,
    /// `AT+FCLASS=2.0`: TIA/EIA-592.
    Class20,
}

impl ModemClass {
    /// How the modem writes numbers in its reports: Class 2 decimal, Class 2.0 hexadecimal.
    pub fn radix(self) -> u32 {
        match self {
            ModemClass::Class2 => 10,
            ModemClass::Class20 => 16,
        }
    }

    /// What a hangup code means, if the table knows it.
    pub fn hangup_reason(self, code: u16) -> Option<&'static str> {
        let table: &[(u16, &str)] = match self {
            ModemClass::Class2 => CLASS2_HANGUP,
            ModemClass::Class20 => CLASS20_HANGUP,
        };
        table.iter().find(|(c, _)| *c == code).map(|(_, r)| *r)
    }

    /// The phase of the call a hangup code belongs to (its range in the table).
    pub fn hangup_phase(self, code: u16) -> &'static str {
        match (self, code) {
            (ModemClass::Class2, 0..=9) | (ModemClass::Class20, 0x00..=0x0F) => "call placement and termination",
            (ModemClass::Class2, 10..=19) | (ModemClass::Class20, 0x10..=0x1F) => "transmit phase A",
            (ModemClass::Class2, 20..=39) | (ModemClass::Class20, 0x20..=0x3F) => "transmit phase B",
            (ModemClass::Class2, 40..=49) | (ModemClass::Class20, 0x40..=0x4F) => "transmit phase C",
            (ModemClass::Class2, 50..=69) | (ModemClass::Class20, 0x50..=0x6F) => "transmit phase D",
            (ModemClass::Class2, 70..=89) | (ModemClass::Class20, 0x70..=0x8F) => "receive phase B",
            (ModemClass::Class2, 90..=99) | (ModemClass::Class20, 0x90..=0x9F) => "receive phase C",
            (ModemClass::Class2, 100..=119) | (ModemClass::Class20, 0xA0..=0xBF) => "receive phase D",
            _ => "reserved or manufacturer-specific",
        }
    }

    /// How the class writes a hangup code (`+FHNG:100`, `+FHS:A0`).
    pub fn format_code(self, code: u16) -> String {
        match self {
            ModemClass::Class2 => format!("+FHNG:{code}"),
            ModemClass::Class20 => format!("+FHS:{code:02X}"),
        }
    }
}

impl fmt::Display for ModemClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModemClass::Class2 => "Class 2",
            ModemClass::Class20 => "Class 2.0",
        })
    }
}

/// Class 2 `+FHNG` codes, decimal.
pub const CLASS2_HANGUP: &[(u16, &str)] = &[
    (0, "normal and proper end of connection"),
    (1, "ring detect without successful handshake"),
    (2, "call aborted, from +FK or AN"),
    (3, "no loop current"),
    (4, "ringback detected, no answer (timeout)"),
    (5, "ringback detected, answer without CED"),
    (10, "unspecified phase A error"),
    (11, "no answer (T.30 T1 timeout)"),
    (20, "unspecified transmit phase B error"),
    (21, "remote cannot receive or send"),
    (22, "COMREC error in transmit phase B"),
    (23, "COMREC invalid command received"),
    (24, "RSPREC error"),
    (25, "DCS sent three times without response"),
    (26, "DIS/DTC received 3 times; DCS not recognized"),
    (27, "failure to train at 2400 bit/s or +FMINSP value"),
    (28, "RSPREC invalid response received"),
    (40, "unspecified transmit phase C error"),
    (41, "unspecified image format error"),
    (42, "image conversion error"),
    (43, "DTE to DCE data underflow"),
    (44, "unrecognized transparent data command"),
    (45, "image error, line length wrong"),
    (46, "image error, page length wrong"),
    (47, "image error, wrong compression code"),
    (50, "unspecified transmit phase D error"),
    (51, "RSPREC error"),
    (52, "no response to MPS repeated 3 times"),
    (53, "invalid response to MPS"),
    (54, "no response to EOP repeated 3 times"),
    (55, "invalid response to EOP"),
    (56, "no response to EOM repeated 3 times"),
    (57, "invalid response to EOM"),
    (58, "unable to continue after PIN or PIP"),
    (70, "unspecified receive phase B error"),
    (71, "RSPREC error"),
    (72, "COMREC error"),
    (73, "T.30 T2 timeout, expected page not received"),
    (74, "T.30 T1 timeout after EOM received"),
    (90, "unspecified receive phase C error"),
    (91, "missing EOL after 5 seconds"),
    (93, "DCE to DTE buffer overflow"),
    (94, "bad CRC or frame (ECM or BFT modes)"),
    (100, "unspecified receive phase D error"),
    (101, "RSPREC invalid response received"),
    (102, "COMREC invalid response received"),
    (103, "unable to continue after PIN or PIP"),
];

/// Class 2.0 / T.32 `+FHS` codes, written here in hex as the modem does.
pub const CLASS20_HANGUP: &[(u16, &str)] = &[
    (0x00, "normal and proper end of connection"),
    (0x01, "ring detect without successful handshake"),
    (0x02, "call aborted, from +FKS or <CAN>"),
    (0x03, "no loop current"),
    (0x04, "ringback detected, no answer (timeout)"),
    (0x05, "ringback detected, answer without CED"),
    (0x10, "unspecified phase A error"),
    (0x11, "no answer (T.30 T1 timeout)"),
    (0x20, "unspecified transmit phase B error"),
    (0x21, "remote cannot receive or send"),
    (0x22, "COMREC error in transmit phase B"),
    (0x23, "COMREC invalid command received"),
    (0x24, "RSPREC error"),
    (0x25, "DCS sent three times without response"),
    (0x26, "DIS/DTC received 3 times; DCS not recognized"),
    (0x27, "failure to train at 2400 bit/s or +FMS value"),
    (0x28, "RSPREC invalid response received"),
    (0x40, "unspecified transmit phase C error"),
    (0x41, "unspecified image format error"),
    (0x42, "image conversion error"),
    (0x43, "DTE to DCE data underflow"),
    (0x44, "unrecognized transparent data command"),
    (0x45, "image error, line length wrong"),
    (0x46, "image error, page length wrong"),
    (0x47, "image error, wrong compression code"),
    (0x50, "unspecified transmit phase D error"),
    (0x51, "RSPREC error"),
    (0x52, "no response to MPS repeated 3 times"),
    (0x53, "invalid response to MPS"),
    (0x54, "no response to EOP repeated 3 times"),
    (0x55, "invalid response to EOP"),
    (0x56, "no response to EOM repeated 3 times"),
    (0x57, "invalid response to EOM"),
    (0x58, "unable to continue after PIN or PIP"),
    (0x70, "unspecified receive phase B error"),
    (0x71, "RSPREC error"),
    (0x72, "COMREC error"),
    (0x73, "T.30 T2 timeout, expected page not received"),
    (0x74, "T.30 T1 timeout after EOM received"),
    (0x90, "unspecified receive phase C error"),
    (0x91, "missing EOL after 5 seconds"),
    (0x92, "bad CRC or frame (ECM mode)"),
    (0x93, "DCE to DTE buffer overflow"),
    (0xA0, "unspecified receive phase D error"),
    (0xA1, "RSPREC invalid response received"),
    (0xA2, "COMREC invalid response received"),
    (0xA3, "unable to continue after PIN or PIP"),
    // Agere's proprietary code, from HylaFAX's table.
    (0xE0, "command or signal 10 s timeout (Agere)"),
];

/// The post-page response the modem gave the sender for a page (`+FPTS:` / `+FPS:`'s first
/// value; T.30's MCF, RTN, RTP, PIN, PIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStatus {
    /// 1, MCF: page good.
    Good,
    /// 2, RTN: page bad, retrain requested (the sender may send it again).
    BadRetrain,
    /// 3, RTP: page good, retrain requested.
    GoodRetrain,
    /// 4, PIN: page bad, procedure interrupt.
    BadInterrupt,
    /// 5, PIP: page good, procedure interrupt.
    GoodInterrupt,
    /// A value outside 1–5.
    Other(u8),
    /// The modem said nothing about the page (no `+FPS` before `+FET` and `OK`).
    Unreported,
}

impl PageStatus {
    pub fn from_code(code: u8) -> PageStatus {
        match code {
            1 => PageStatus::Good,
            2 => PageStatus::BadRetrain,
            3 => PageStatus::GoodRetrain,
            4 => PageStatus::BadInterrupt,
            5 => PageStatus::GoodInterrupt,
            n => PageStatus::Other(n),
        }
    }

    /// The modem judged the page good (MCF, RTP, PIP).
    pub fn is_good(self) -> bool {
        matches!(self, PageStatus::Good | PageStatus::GoodRetrain | PageStatus::GoodInterrupt)
    }
}

impl fmt::Display for PageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageStatus::Good => f.write_str("good (MCF)"),
            PageStatus::BadRetrain => f.write_str("bad, retrain requested (RTN)"),
            PageStatus::GoodRetrain => f.write_str("good, retrain requested (RTP)"),
            PageStatus::BadInterrupt => f.write_str("bad, procedure interrupt (PIN)"),
            PageStatus::GoodInterrupt => f.write_str("good, procedure interrupt (PIP)"),
            PageStatus::Other(n) => write!(f, "unknown page status {n}"),
            PageStatus::Unreported => f.write_str("not reported by the modem"),
        }
    }
}

/// What the sender said after a page (`+FET:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostPage {
    /// 0 MPS (or 3 PRI-MPS): another page of the same document follows.
    MorePages,
    /// 1 EOM (or 4 PRI-EOM): this document ends, another follows (back to phase B).
    EndOfDocument,
    /// 2 EOP (or 5 PRI-EOP): the last page; the sender will hang up.
    EndOfProcedure,
    /// A value outside 0–5.
    Other(u8),
    /// The call ended before the sender said.
    Unreported,
}

impl PostPage {
    /// The message and whether it came with a procedure interrupt (PRI-).
    pub fn from_code(code: u8) -> (PostPage, bool) {
        match code {
            0 => (PostPage::MorePages, false),
            1 => (PostPage::EndOfDocument, false),
            2 => (PostPage::EndOfProcedure, false),
            3 => (PostPage::MorePages, true),
            4 => (PostPage::EndOfDocument, true),
            5 => (PostPage::EndOfProcedure, true),
            n => (PostPage::Other(n), false),
        }
    }
}

impl fmt::Display for PostPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostPage::MorePages => f.write_str("more pages (MPS)"),
            PostPage::EndOfDocument => f.write_str("end of document (EOM)"),
            PostPage::EndOfProcedure => f.write_str("end of procedure (EOP)"),
            PostPage::Other(n) => write!(f, "unknown post-page message {n}"),
            PostPage::Unreported => f.write_str("not reported"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_meaning_renumbered() {
        let pairs = [(0, 0x00), (11, 0x11), (70, 0x70), (73, 0x73), (90, 0x90), (100, 0xA0), (103, 0xA3)];
        for (c2, c20) in pairs {
            assert_eq!(ModemClass::Class2.hangup_reason(c2), ModemClass::Class20.hangup_reason(c20), "{c2}");
            assert_eq!(ModemClass::Class2.hangup_phase(c2), ModemClass::Class20.hangup_phase(c20), "{c2}");
        }
        assert_eq!(ModemClass::Class2.hangup_phase(100), "receive phase D");
        assert_eq!(ModemClass::Class20.hangup_phase(0x64), "transmit phase D", "0x64 is 100 read as hex");
        assert_eq!(ModemClass::Class20.format_code(0xA0), "+FHS:A0");
        assert_eq!(ModemClass::Class2.format_code(100), "+FHNG:100");
    }

    #[test]
    fn tables_are_sorted_and_unique() {
        for table in [CLASS2_HANGUP, CLASS20_HANGUP] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn page_status_and_post_page_values() {
        assert!(PageStatus::from_code(1).is_good());
        assert!(!PageStatus::from_code(2).is_good());
        assert!(PageStatus::from_code(3).is_good());
        assert_eq!(PageStatus::from_code(4), PageStatus::BadInterrupt);
        assert_eq!(PageStatus::from_code(5), PageStatus::GoodInterrupt);
        assert_eq!(PostPage::from_code(2), (PostPage::EndOfProcedure, false));
        assert_eq!(PostPage::from_code(3), (PostPage::MorePages, true));
        assert_eq!(PostPage::from_code(9), (PostPage::Other(9), false));
    }
}
