//! Which line settings `outpost probe` tries on a serial port, in which order, and the words a
//! tech pins one with (`--baud 9600 --line 7E1`). Pure.
//!
//! The baud rates, most common on analyzers first: 9600, 19200, 38400, 57600, 115200, then the
//! slower 4800, 2400, 1200. Each is listened to at 8N1 only, because 8N1 hears more than itself:
//! a character of 7E1, 7O1 (start, 7 data bits, parity, stop) is ten bits like one of 8N1, so
//! read as 8N1 its parity arrives as bit 7, which the analysis recognises and clears
//! ([`super::analyze`]); and a second stop bit (8N2, 7E2, 7O2) is idle line to a receiver
//! expecting one. Only 8E1 and 8O1 (eleven bits, the parity bit where 8N1 expects the stop
//! bit) need their own listening: pin them with `--line`.

use std::time::Duration;

use crate::serial::Settings;
use crate::serial_line::{DataBits, FlowControl, Parity, StopBits};

/// The baud rates tried, in order.
pub const BAUDS: [u32; 8] = [9600, 19200, 38400, 57600, 115200, 4800, 2400, 1200];

/// The rates a port may be pinned to (the profiles' and sources' own list).
pub const KNOWN_BAUDS: [u32; 9] = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400];

/// Data bits, parity and stop bits: `8N1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
}

impl Line {
    pub const EIGHT_N_ONE: Line = Line { data_bits: DataBits::Eight, parity: Parity::None, stop_bits: StopBits::One };

    /// The settings for `port` at `baud` with this line, no flow control (a passive listener
    /// hears the same with or without it).
    pub fn settings(self, port: &std::path::Path, baud: u32) -> Settings {
        Settings {
            port: port.to_path_buf(),
            baud,
            data_bits: self.data_bits,
            parity: self.parity,
            stop_bits: self.stop_bits,
            flow_control: FlowControl::None,
        }
    }
}

impl std::str::FromStr for Line {
    type Err = String;

    /// `8N1`, `7E1`, `7o2` …: data bits (7 or 8), parity (N, E, O), stop bits (1 or 2).
    fn from_str(s: &str) -> Result<Line, String> {
        let bad = || format!("{s:?} is not a line setting; write data bits, parity and stop bits, like 8N1 or 7E1");
        let b = s.trim().as_bytes();
        if b.len() != 3 {
            return Err(bad());
        }
        let data_bits = match b[0] {
            b'7' => DataBits::Seven,
            b'8' => DataBits::Eight,
            _ => return Err(bad()),
        };
        let parity = match b[1].to_ascii_uppercase() {
            b'N' => Parity::None,
            b'E' => Parity::Even,
            b'O' => Parity::Odd,
            _ => return Err(bad()),
        };
        let stop_bits = match b[2] {
            b'1' => StopBits::One,
            b'2' => StopBits::Two,
            _ => return Err(bad()),
        };
        Ok(Line { data_bits, parity, stop_bits })
    }
}

/// The settings to listen at on `port`, in order: the pinned baud and line, or the
/// [`BAUDS`] at 8N1 (the line pinned alone: every baud at that line; the baud pinned alone: 8N1).
pub fn candidates(port: &std::path::Path, baud: Option<u32>, line: Option<Line>) -> Vec<Settings> {
    let line = line.unwrap_or(Line::EIGHT_N_ONE);
    match baud {
        Some(b) => vec![line.settings(port, b)],
        None => BAUDS.iter().map(|&b| line.settings(port, b)).collect(),
    }
}

/// A baud rate a tech typed, checked against the rates ports and profiles know.
pub fn baud(s: &str) -> Result<u32, String> {
    let known = || KNOWN_BAUDS.map(|b| b.to_string()).join(", ");
    match s.trim().parse::<u32>() {
        Ok(b) if KNOWN_BAUDS.contains(&b) => Ok(b),
        _ => Err(format!("{s:?} is not a baud rate outpost uses; one of {}", known())),
    }
}

/// A duration as a tech types it: `10s`, `500ms`, `2m`, or seconds alone (`30`). From 100 ms
/// to a day.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a duration; write it like 10s, 500ms or 2m");
    let (number, unit) = t.find(|c: char| !c.is_ascii_digit()).map_or((t, ""), |i| t.split_at(i));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d < Duration::from_millis(100) || d > Duration::from_secs(86_400) {
        return Err(format!("{s:?}: give between 100ms and 24h"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn lines_read_as_a_tech_writes_them() {
        assert_eq!("8N1".parse::<Line>(), Ok(Line::EIGHT_N_ONE));
        let l: Line = "7e2".parse().unwrap();
        assert_eq!((l.data_bits, l.parity, l.stop_bits), (DataBits::Seven, Parity::Even, StopBits::Two));
        assert_eq!("7O1".parse::<Line>().unwrap().parity, Parity::Odd);
        for bad in ["", "8N", "9N1", "8X1", "8N3", "8N1 "] {
            if bad == "8N1 " {
                assert!(bad.parse::<Line>().is_ok(), "surrounding blanks are forgiven");
                continue;
            }
            assert!(bad.parse::<Line>().unwrap_err().contains("like 8N1"), "{bad:?}");
        }
    }

    #[test]
    fn the_cycle_starts_at_9600_8n1_and_a_pin_is_kept() {
        let port = Path::new("/dev/ttyUSB0");
        let all = candidates(port, None, None);
        let lines: Vec<String> = all.iter().map(|s| s.line()).collect();
        assert_eq!(
            lines,
            ["9600 8N1", "19200 8N1", "38400 8N1", "57600 8N1", "115200 8N1", "4800 8N1", "2400 8N1", "1200 8N1"]
        );
        let pinned = candidates(port, Some(2400), Some("7E1".parse().unwrap()));
        assert_eq!(pinned.iter().map(|s| s.line()).collect::<Vec<_>>(), ["2400 7E1"]);
        assert_eq!(candidates(port, None, Some("8E1".parse().unwrap())).len(), BAUDS.len());
    }

    #[test]
    fn bauds_and_durations() {
        assert_eq!(baud("9600"), Ok(9600));
        assert!(baud("9601").unwrap_err().contains("19200"));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("10 parsecs").is_err());
        assert!(duration("1ms").unwrap_err().contains("100ms"));
        assert!(duration("").is_err());
    }
}
