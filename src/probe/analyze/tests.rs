//! The analysis on real captures (`tests/data/astm/`, `src/hl7/testdata/`), on what a wrong baud
//! rate makes of them (their bit streams re-sampled by a simulated UART), on 7-bit data with
//! parity, and on noise.

use super::*;
use crate::astm::tests::samples::{COBAS, ERBA, GENEXPERT, MINI_VIDAS, PENTRA, VITROS_QUERY, VITROS_REPLY, YUMIZEN};

const LAB_ORU: &[u8] = include_bytes!("../../hl7/testdata/lab-oru-r01.hl7");
const ADT: &[u8] = include_bytes!("../../hl7/testdata/adt-a01.hl7");

/// A `.txt` capture (one frame per line, its CR LF replaced by the file's line end) as on the wire: ENQ, each frame
/// with CR LF, EOT.
pub(crate) fn wire_from_lines(text: &[u8]) -> Vec<u8> {
    let mut wire = vec![ENQ];
    for line in text.split(|&b| b == LF) {
        let end = line.iter().rposition(|&b| b != CR).map_or(0, |p| p + 1);
        if end > 0 {
            wire.extend_from_slice(&line[..end]);
            wire.extend_from_slice(b"\r\n");
        }
    }
    wire.push(EOT);
    wire
}

fn heard(bytes: &[u8]) -> Hearing {
    hear(bytes, bytes.len())
}

/// The bytes a UART at `rx_baud` 8N1 delivers for `bytes` sent at `tx_baud` 8N1, back to back
/// (the hardest case: no idle line between characters to resynchronise on). The receiver
/// hunts for a falling edge at 16 samples a bit, checks the start bit at its middle, samples
/// eight data bits and the stop bit at theirs; a stop bit read as 0 is a framing error, which
/// Linux delivers as NUL in raw mode.
fn resample(bytes: &[u8], tx_baud: u32, rx_baud: u32) -> Vec<u8> {
    let mut line = vec![true; 20];
    for &b in bytes {
        line.push(false);
        line.extend((0..8).map(|i| b >> i & 1 == 1));
        line.push(true);
    }
    line.extend([true; 20]);
    let level = |t: f64| line.get(t as usize).copied().unwrap_or(true);
    let bit = f64::from(tx_baud) / f64::from(rx_baud);
    let mut out = Vec::new();
    let mut t = 0.0;
    let end = line.len() as f64;
    while t < end {
        if level(t) {
            t += bit / 16.0;
            continue;
        }
        if level(t + bit / 2.0) {
            t += bit / 2.0;
            continue;
        }
        let mut byte = 0u8;
        for i in 0..8 {
            if level(t + (1.5 + f64::from(i)) * bit) {
                byte |= 1 << i;
            }
        }
        out.push(if level(t + 9.5 * bit) { byte } else { 0x00 });
        t += 9.5 * bit;
    }
    out
}

/// Bit 7 of each byte made its parity: 7 data bits with even (or odd) parity, read as 8N1.
fn with_parity(bytes: &[u8], even: bool) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| {
            let ones_odd = (b & 0x7F).count_ones() % 2 == 1;
            if ones_odd == even { (b & 0x7F) | 0x80 } else { b & 0x7F }
        })
        .collect()
}

#[test]
fn real_captures_are_astm_with_their_instrument_id() {
    let cases: [(&str, Vec<u8>, Option<&str>); 7] = [
        ("yumizen", YUMIZEN.to_vec(), Some("H500^906YOXH02459^2.2.0.5")),
        ("vitros query", VITROS_QUERY.to_vec(), Some("3600796")),
        ("vitros reply", VITROS_REPLY.to_vec(), Some("3600796")),
        ("erba (H.5 empty)", ERBA.to_vec(), None),
        ("pentra", wire_from_lines(PENTRA), Some("ABX")),
        ("cobas", wire_from_lines(COBAS), Some("SENAITE^Roche^c111^4.2.2.1730^1^13147")),
        ("genexpert", wire_from_lines(GENEXPERT), Some(".806149 Happy Hospital^GeneXpert^4.8")),
    ];
    for (name, wire, id) in cases {
        let h = heard(&wire);
        assert_eq!(h.protocol, Protocol::Astm, "{name}: {h:?}");
        assert!(h.is_found(), "{name}");
        assert_eq!(h.instrument.as_deref(), id, "{name}");
        assert_eq!((h.astm.bad_checksums, h.astm.broken_frames), (0, 0), "{name}");
        assert!(h.astm.messages >= 1, "{name}");
        assert_eq!(h.seven_bits, None, "{name}");
    }
    let y = heard(YUMIZEN);
    assert_eq!((y.astm.valid_frames, y.astm.enq, y.astm.eot), (125, 1, 1));
    // The GeneXpert's one long frame needs a quirk, and the probe says so.
    assert_eq!(heard(&wire_from_lines(GENEXPERT)).astm.quirks, ["long_frames"]);
}

#[test]
fn frames_ending_lf_alone_are_astm_needing_lf_only() {
    // The .txt captures as stored: each frame ends LF, no CR.
    let h = heard(PENTRA);
    assert_eq!(h.protocol, Protocol::Astm);
    assert_eq!(h.astm.quirks, ["lf_only"]);
}

#[test]
fn bad_checksums_are_counted_and_score_lower() {
    let mut wire = YUMIZEN.to_vec();
    // Corrupt one character of text in three frames (after each of the first three STX).
    let stx: Vec<usize> = wire.iter().enumerate().filter(|(_, b)| **b == STX).map(|(i, _)| i).take(3).collect();
    for i in stx {
        wire[i + 5] ^= 0x01;
    }
    let h = heard(&wire);
    assert_eq!(h.protocol, Protocol::Astm);
    assert_eq!((h.astm.valid_frames, h.astm.bad_checksums), (122, 3));
    assert!(h.score < heard(YUMIZEN).score);
}

#[test]
fn the_mini_vidas_is_readable_text_not_astm_and_says_why() {
    let h = heard(MINI_VIDAS);
    assert_eq!(h.protocol, Protocol::Text);
    assert!(!h.is_found());
    let why = h.not_astm.as_deref().unwrap();
    assert!(why.contains("mini VIDAS"), "{why}");
    // Nothing of what it sent is in the hearing.
    let shown = format!("{h:?} {}", serde_json::to_string(&h).unwrap());
    assert!(!shown.contains("Anti-HBc") && !shown.contains("Positif"), "{shown}");
}

#[test]
fn hl7_over_mllp_and_unframed_with_the_sender() {
    let framed: Vec<u8> = [crate::mllp::encode(LAB_ORU), crate::mllp::encode(ADT)].concat();
    let h = heard(&framed);
    assert_eq!(h.protocol, Protocol::Hl7Mllp);
    assert_eq!(h.hl7.messages, 2);
    let oru = crate::hl7::Message::parse(std::str::from_utf8(LAB_ORU).unwrap()).unwrap().summary();
    let expect = [oru.sending_application.as_str(), oru.sending_facility.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    assert_eq!(h.instrument.as_deref(), Some(expect.as_str()));
    assert_eq!(h.hl7.version.as_deref(), Some(oru.version.as_str()));

    let raw = heard(&[LAB_ORU, b"\r", ADT].concat());
    assert_eq!((raw.protocol, raw.hl7.messages), (Protocol::Hl7, 2));
    assert!(raw.score < h.score);

    // No patient data from the PID segment.
    let text = std::str::from_utf8(LAB_ORU).unwrap();
    let pid = text.split('\r').find(|s| s.starts_with("PID")).unwrap();
    let name = pid.split('|').nth(5).unwrap().split('^').next().unwrap();
    assert!(name.len() > 2);
    let shown = format!("{h:?} {}", serde_json::to_string(&h).unwrap());
    assert!(!shown.contains(name), "{name} in {shown}");
}

#[test]
fn enq_after_enq_is_an_astm_sender_waiting_for_the_host() {
    let h = heard(&[ENQ, ENQ, EOT, ENQ]);
    assert_eq!(h.protocol, Protocol::AstmBidding);
    assert!(h.is_found());
    assert_eq!(h.astm.enq, 3);
    // One ENQ is not enough to tell from a stray byte.
    assert!(!heard(&[ENQ]).is_found());
}

#[test]
fn silence_noise_and_text() {
    assert_eq!(heard(b"").protocol, Protocol::Silence);
    assert_eq!(hear(b"", 0).score, 0);
    // Random bytes, about half with the high bit set.
    let mut x: u32 = 0x2545_F491;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let h = heard(&noise);
    assert_eq!(h.protocol, Protocol::Garbled);
    assert!(h.signs.high_bit > 0.4 && h.signs.parity.is_none(), "{:?}", h.signs);
    assert_eq!(heard(b"Printed report, page 1\r\n").protocol, Protocol::Text);
}

/// The heart of baud detection: a capture sent at one rate and received at each rate of the
/// cycle reads as ASTM at the sender's rate only, and that setting scores best.
#[test]
fn a_capture_sent_at_one_baud_reads_as_astm_only_at_that_baud() {
    let captures: [(&str, Vec<u8>); 3] =
        [("yumizen", YUMIZEN.to_vec()), ("pentra", wire_from_lines(PENTRA)), ("vitros", VITROS_QUERY.to_vec())];
    for (name, wire) in &captures {
        for tx in [9600, 19200, 2400, 115200] {
            let mut scores = Vec::new();
            for rx in crate::probe::plan::BAUDS {
                let h = heard(&resample(wire, tx, rx));
                if rx == tx {
                    assert_eq!(h.protocol, Protocol::Astm, "{name} at {tx}: {h:?}");
                    assert_eq!(h.astm.bad_checksums, 0);
                } else {
                    assert!(!h.is_found(), "{name} sent at {tx} found at {rx}: {:?}", h.protocol);
                    assert!(h.instrument.is_none());
                }
                scores.push((rx, h.score));
            }
            let best = scores.iter().max_by_key(|(_, s)| *s).unwrap();
            assert_eq!(best.0, tx, "{name}: {scores:?}");
        }
    }
}

#[test]
fn a_wrong_baud_shows_its_signs() {
    // A receiver too slow for the sender: framing errors (NUL) and high-bit bytes.
    let slow = heard(&resample(YUMIZEN, 38400, 4800));
    assert_eq!(slow.protocol, Protocol::Garbled);
    assert!(slow.signs.nul_or_ff > 0.2, "{:?}", slow.signs);
    // Too fast: a character becomes several, mostly with the high bit set.
    let fast = heard(&resample(YUMIZEN, 1200, 9600));
    assert!(!fast.is_found());
    assert!(fast.signs.high_bit > 0.3 || fast.signs.nul_or_ff > 0.3, "{:?}", fast.signs);
    assert!(fast.signs.clean < 0.6, "{:?}", fast.signs);
}

#[test]
fn seven_bits_with_parity_are_read_and_named() {
    for (even, word) in [(true, ParityWord::Even), (false, ParityWord::Odd)] {
        for wire in [YUMIZEN.to_vec(), wire_from_lines(COBAS)] {
            let bytes = with_parity(&wire, even);
            assert_eq!(heard(&bytes.iter().map(|b| b & 0x7F).collect::<Vec<_>>()).seven_bits, None);
            let h = heard(&bytes);
            assert_eq!(h.signs.parity, Some(word));
            assert_eq!((h.protocol, h.seven_bits), (Protocol::Astm, Some(word)), "{word:?}");
            assert!(h.instrument.is_some());
        }
    }
    // 8-bit data is not mistaken for parity: a latin-1 HL7 message has high-bit bytes of both
    // parities.
    let latin1 = include_bytes!("../../hl7/testdata/chem-report-8859-1.hl7");
    assert_eq!(heard(&crate::mllp::encode(latin1)).seven_bits, None);
}

#[test]
fn seven_bit_parity_needs_enough_bytes_with_the_high_bit() {
    assert_eq!(signs(&with_parity(b"H|\\^&", true)).parity, None, "too few bytes");
    // Text whose characters all have even parity already shows no high bit: it reads as it is.
    let even_only: Vec<u8> = b"AAAAcccc".repeat(10);
    assert_eq!(signs(&even_only).parity, None);
}

#[test]
fn the_bytes_beyond_the_kept_are_counted() {
    assert_eq!(hear(YUMIZEN, YUMIZEN.len() + 1000).bytes, YUMIZEN.len() + 1000);
}
