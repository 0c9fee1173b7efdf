//! Every public capture in `tests/data/astm/` through a receiving [`Link`], turn by turn and in
//! chunks of every size from one byte, then read as records; and through the capture decoder.

use super::*;
use crate::astm::decode::{Need, decode};
use crate::astm::frame::{FrameEnd, FrameOptions, FrameParser, LineEnd, Step};
use crate::astm::records::{Message, MessageKind};
use crate::astm::{FrameProblem, NotAstm, Rejection, Shape, classify};

pub(crate) const YUMIZEN: &[u8] = include_bytes!("../../../tests/data/astm/yumizen-h500-session.raw");
pub(crate) const VITROS_QUERY: &[u8] = include_bytes!("../../../tests/data/astm/vitros-3600-host-query.raw");
pub(crate) const VITROS_REPLY: &[u8] = include_bytes!("../../../tests/data/astm/vitros-3600-order-reply.raw");
pub(crate) const ERBA: &[u8] = include_bytes!("../../../tests/data/astm/erba-xl1000-single-frame.raw");
pub(crate) const PENTRA: &[u8] = include_bytes!("../../../tests/data/astm/pentra-xlr-frames.txt");
pub(crate) const COBAS: &[u8] = include_bytes!("../../../tests/data/astm/cobas-c111-etb-frames.txt");
pub(crate) const GENEXPERT: &[u8] = include_bytes!("../../../tests/data/astm/genexpert.txt");
pub(crate) const MINI_VIDAS: &[u8] = include_bytes!("../../../tests/data/astm/mini-vidas-not-astm.txt");

const CHUNKS: [usize; 9] = [1, 2, 3, 5, 7, 11, 64, 240, usize::MAX];

/// Every frame of a wire capture, read strictly.
fn frames(wire: &[u8]) -> Vec<crate::astm::Frame> {
    let mut out = Vec::new();
    for turn in turns(wire).into_iter().filter(|t| t[0] == STX) {
        let mut p = FrameParser::new(FrameOptions::default());
        for &b in &turn[1..] {
            if let Step::Done(f) = p.push(b) {
                out.push(f);
            }
        }
    }
    out
}

/// Plays `wire` at every chunk size and returns the one message it holds (the same each time).
fn one_message(wire: &[u8], quirks: Quirks) -> Vec<u8> {
    let mut seen: Option<Vec<u8>> = None;
    for chunk in CHUNKS {
        let mut h = Harness::new(quirks);
        play(&mut h, wire, chunk);
        assert_eq!(h.messages.len(), 1, "chunk {chunk}: {:?}", h.events);
        let (_, records, complete) = h.messages.remove(0);
        assert!(complete, "chunk {chunk}");
        assert!(!h.has_event(|e| matches!(e, Event::FrameRejected { .. } | Event::Discarded { .. })));
        assert!(h.has_event(|e| matches!(e, Event::SessionEnded { messages: 1, .. })));
        match &seen {
            None => seen = Some(records),
            Some(first) => assert_eq!(&records, first, "chunk {chunk}"),
        }
    }
    seen.unwrap_or_default()
}

#[test]
fn yumizen_h500_whole_session() {
    let frames = frames(YUMIZEN);
    assert_eq!(frames.len(), 125);
    assert!(frames.iter().all(|f| f.is_valid()));
    let numbers: Vec<u8> = frames.iter().filter_map(|f| f.number).collect();
    let expected: Vec<u8> = (1..=125).map(|i| (i % 8) as u8).collect();
    assert_eq!(numbers, expected, "numbers start at 1 and wrap 7 → 0");
    let intermediate: Vec<_> = frames.iter().filter(|f| f.end == Some(FrameEnd::Intermediate)).collect();
    assert_eq!(intermediate.len(), 89);
    assert!(intermediate.iter().all(|f| f.text_len == 240));

    let records = one_message(YUMIZEN, Quirks::default());
    let text: Vec<u8> = frames.iter().flat_map(|f| f.text.clone()).collect();
    assert_eq!(records, text, "records exactly as sent, frames removed");
    let m = Message::parse(&records).unwrap();
    assert_eq!(m.records().len(), 36);
    assert_eq!(m.of_kind(b'M').count(), 4);
    let s = m.summary();
    assert_eq!(s.kind, MessageKind::Results);
    assert_eq!(s.instrument, "H500^906YOXH02459^2.2.0.5");
    assert_eq!(s.sample_ids, ["2021679"]);
    assert_eq!((s.results, s.tests.len(), s.qc), (27, 27, false));
    assert_eq!(&s.tests[..3], ["PCT", "NEU#", "MCV"]);
    assert_eq!(m.values(&"O.3".parse().unwrap()), ["2021679"]);
    assert_eq!(m.values(&"R.3.4".parse().unwrap()).len(), 27);
}

#[test]
fn yumizen_as_a_byte_stream_in_any_chunks() {
    // On TCP the reads cut anywhere. Only the message's last frame waits for our ACK (durable),
    // so the instrument sends nothing after it until then: cut the stream there.
    let last_frame = YUMIZEN.len() - 1;
    let mut x: u64 = 0x0123_4567_89AB_CDEF;
    for _ in 0..20 {
        let mut h = Harness::new(Quirks::default());
        let mut written = Vec::new();
        let mut i = 0;
        while i < last_frame {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = ((x >> 33) % 700 + 1) as usize;
            let end = (i + n).min(last_frame);
            written.extend(h.feed(&YUMIZEN[i..end]));
            i = end;
        }
        assert!(h.feed(&YUMIZEN[last_frame..]).is_empty());
        assert_eq!(written, vec![crate::astm::ctrl::ACK; 126], "ENQ and 125 frames");
        assert_eq!(h.messages.len(), 1);
    }
}

#[test]
fn erba_xl1000_backtick_repeat_delimiter() {
    let records = one_message(ERBA, Quirks::default());
    let m = Message::parse(&records).unwrap();
    assert_eq!(m.delimiters().repeat, b'`');
    assert_eq!(m.records().len(), 6);
    let s = m.summary();
    assert_eq!(
        (s.sample_ids.as_slice(), s.tests.as_slice(), s.results),
        (["1044041".to_string()].as_slice(), ["DBILL".to_string()].as_slice(), 1)
    );
    assert_eq!(m.values(&"R.5".parse().unwrap()), ["mg/dl"]);
}

#[test]
fn vitros_3600_host_query() {
    let records = one_message(VITROS_QUERY, Quirks::default());
    let m = Message::parse(&records).unwrap();
    let s = m.summary();
    assert_eq!((s.kind, s.instrument.as_str(), s.version.as_str()), (MessageKind::Query, "3600796", "LIS2-A"));
    let q = &m.queries()[0];
    assert_eq!(q.specimen_ids, ["1068687"]);
    assert_eq!(q.tests, ["ALL"]);
    assert_eq!(q.status, "O");
    assert!(!q.is_cancel());
}

#[test]
fn vitros_order_reply_is_what_build_order_reply_builds() {
    use crate::astm::{Order, ReplyHeader, build_order_reply};
    // The capture is that LIS's own frame, without ENQ and EOT; a link reads it all the same.
    let wire = [&[ENQ], VITROS_REPLY, &[EOT]].concat();
    let mut h = Harness::new(Quirks::default());
    play(&mut h, &wire, 1);
    assert_eq!(h.messages.len(), 1);
    // Its records 2-4 start with a digit (`4L|1|N`), so no L ends it: handed over at EOT.
    let (_, captured, complete) = h.messages.remove(0);
    assert!(!complete);
    let types: Vec<String> = Message::parse(&captured)
        .unwrap()
        .records()
        .iter()
        .map(|r| String::from_utf8_lossy(r.type_id()).into_owned())
        .collect();
    assert_eq!(types, ["H", "2P", "3O", "4L"]);
    let without_digits: Vec<u8> = captured
        .split(|&b| b == b'\r')
        .filter(|r| !r.is_empty())
        .flat_map(|r| {
            let r = if r[0].is_ascii_digit() { &r[1..] } else { r };
            [r, b"\r"].concat()
        })
        .collect();
    let theirs = Message::parse(&without_digits).unwrap();

    let mut order = Order::new("1068687", vec!["1.0000+002+1.0".into()]);
    order.specimen_descriptor = "5".into();
    let ours = build_order_reply(&ReplyHeader::new("LIS", "3600796", "20201121111002"), &[order]).unwrap();
    let ours = Message::parse(&ours).unwrap();
    for path in ["H.2", "O.2", "O.3", "O.5", "O.5.4", "O.6", "O.12", "O.16", "O.26", "L.2", "L.3"] {
        let p = path.parse().unwrap();
        assert_eq!(ours.values(&p), theirs.values(&p), "{path}");
    }
    let types = |m: &Message| m.records().iter().map(|r| r.kind()).collect::<Vec<_>>();
    assert_eq!(types(&ours), types(&theirs));
    // Sent as that LIS sent it (one frame) with send_packed, or one frame per record.
    let packed = crate::astm::split_message_packed(
        &build_order_reply(&ReplyHeader::new("LIS", "3600796", "20201121111002"), &[Order::new("1068687", vec![])])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(packed.len(), 1);
}

#[test]
fn pentra_xlr_one_record_per_frame() {
    let wire = wire_from_lines(PENTRA);
    assert_eq!(frames(&wire).len(), 28);
    let records = one_message(&wire, Quirks::default());
    let m = Message::parse(&records).unwrap();
    let s = m.summary();
    assert_eq!(s.sample_ids, ["S1234"]);
    assert_eq!((s.results, s.tests.len()), (21, 21));
    assert_eq!(s.tests[0], "WBC");
    assert_eq!(m.values(&"R.3.5".parse().unwrap())[0], "804-5", "LOINC in R.3.5");
    assert_eq!(m.values(&"R.7".parse().unwrap()), ["L", "HH"]);
    let shown = format!("{s} {s:?}");
    assert!(!shown.contains("Mohale") && !shown.contains("19771201"), "{shown}");
}

#[test]
fn pentra_as_stored_needs_line_end_lf() {
    // The file's frames end with LF alone: refused as they are, accepted by the quirk.
    let as_stored = [&[ENQ], PENTRA, &[EOT]].concat();
    let mut h = Harness::new(Quirks::default());
    let first_frame = turns(&as_stored)[1];
    assert_eq!(h.feed(&[ENQ]), ACK);
    assert_eq!(h.feed(first_frame), NAK);
    assert!(h.has_event(|e| matches!(e, Event::FrameRejected { why: Rejection::Frame(FrameProblem::BadTrailer), .. })));
    let lf = Quirks { line_end: LineEnd::Lf, ..Quirks::default() };
    let records = one_message(&as_stored, lf);
    assert_eq!(records, one_message(&wire_from_lines(PENTRA), Quirks::default()));
}

#[test]
fn cobas_c111_cr_etb_per_record() {
    let wire = wire_from_lines(COBAS);
    let f = frames(&wire);
    let ends: Vec<_> = f.iter().map(|f| f.end.unwrap()).collect();
    assert_eq!(ends.iter().filter(|e| **e == FrameEnd::Intermediate).count(), 6);
    assert_eq!(ends.last(), Some(&FrameEnd::Final));
    let records = one_message(&wire, Quirks::default());
    let m = Message::parse(&records).unwrap();
    assert_eq!(m.records().len(), 7);
    let s = m.summary();
    assert_eq!(s.instrument, "SENAITE^Roche^c111^4.2.2.1730^1^13147");
    assert_eq!(
        (s.sample_ids.as_slice(), s.tests.as_slice()),
        (["T20 10134GA D28".to_string()].as_slice(), ["413".to_string()].as_slice())
    );
}

#[test]
fn genexpert_over_long_frame_is_refused_unless_its_quirk_is_set() {
    let wire = wire_from_lines(GENEXPERT);
    let mut h = Harness::new(Quirks::default());
    let frame = turns(&wire)[1];
    assert_eq!(h.feed(&[ENQ]), ACK);
    // The instrument tries six times, then gives up with EOT; nothing is kept.
    for chunk in [1, 7, 100, 240, 5000, 3, 64] {
        assert_eq!(h.feed_chunked(frame, chunk), NAK);
    }
    assert!(h.has_event(|e| matches!(
        e,
        Event::FrameRejected { number: Some(1), why: Rejection::Frame(FrameProblem::TooLong { len: 4332, max: 240 }) }
    )));
    h.feed(&[EOT]);
    assert!(h.messages.is_empty());

    let records = one_message(&wire, Quirks { long_frames: true, ..Quirks::default() });
    let m = Message::parse(&records).unwrap();
    assert_eq!((m.delimiters().repeat, m.delimiters().escape), (b'@', Some(b'\\')));
    let s = m.summary();
    assert_eq!(s.instrument, ".806149 Happy Hospital^GeneXpert^4.8");
    assert_eq!(s.sample_ids, ["PR25A137"]);
    assert_eq!((s.records, s.results), (91, 84));
    assert_eq!(s.tests, ["Xpert", "Trace", "RIF"]);
    let shown = format!("{s} {s:?}");
    assert!(!shown.contains("John") && !shown.contains("Sardani"), "{shown}");
}

#[test]
fn mini_vidas_is_refused_clearly() {
    // No ENQ: every byte is stray, nothing is answered, nothing kept.
    let mut h = Harness::new(Quirks::default());
    assert!(h.feed(MINI_VIDAS).is_empty());
    assert!(h.messages.is_empty());
    assert_eq!(h.events, [Event::Stray { bytes: MINI_VIDAS.len() }]);
    // Even inside a session its block is no frame.
    let mut h = Harness::new(Quirks::default());
    assert_eq!(h.feed(&[ENQ]), ACK);
    assert_eq!(h.feed(MINI_VIDAS), NAK);
    assert!(h.has_event(|e| matches!(e, Event::FrameRejected { why: Rejection::Frame(FrameProblem::NoEnd), .. })));
    // The classifier and the decoder say why, quoting nothing.
    let e = classify(MINI_VIDAS).unwrap_err();
    assert!(matches!(e, NotAstm::NoValidFrame { blocks: 1, first: FrameProblem::NoEnd }), "{e:?}");
    let text = decode(MINI_VIDAS).unwrap_err().to_string();
    assert!(text.contains("none is a valid frame") && text.contains("no H record"), "{text}");
    assert!(!text.contains("Anti-HBc") && !text.contains("Positif"), "{text}");
}

#[test]
fn every_astm_sample_classifies() {
    for (name, bytes) in [
        ("yumizen", YUMIZEN),
        ("vitros query", VITROS_QUERY),
        ("vitros reply", VITROS_REPLY),
        ("erba", ERBA),
        ("pentra", PENTRA),
        ("cobas", COBAS),
        ("genexpert", GENEXPERT),
    ] {
        assert!(matches!(classify(bytes), Ok(Shape::Framed { .. })), "{name}: {:?}", classify(bytes));
    }
}

#[test]
fn decoder_reports_each_capture_and_masks_phi() {
    let r = decode(YUMIZEN).unwrap();
    assert_eq!((r.frames().count(), r.frames().filter(|f| f.problem.is_none()).count()), (125, 125));
    assert!(r.needs.is_empty());
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].records.len(), 36);
    let text = r.to_string();
    assert!(text.contains("125 frame(s), 125 valid") && text.contains("frame 0 ETB   240 chars"), "{text}");
    assert!(!text.contains("HISTOGRAM") && !text.contains("|4.55|"), "M contents and values masked");

    let r = decode(PENTRA).unwrap();
    assert_eq!(r.needs, [Need::LineEnd(LineEnd::Lf)]);
    let text = r.to_string();
    assert!(!text.contains("Mohale") && !text.contains("19771201") && !text.contains("|8.5|"), "{text}");
    assert!(r.render(true).to_string().contains("Mohale^Rita"));

    let r = decode(GENEXPERT).unwrap();
    assert!(r.needs.contains(&Need::LongFrames) && r.needs.contains(&Need::NoLineEnd), "{:?}", r.needs);
    assert_eq!(r.messages[0].records.len(), 91);
    let text = r.to_string();
    assert!(!text.contains("John Doe") && !text.contains("Sardani") && !text.contains("NOT DETECTED"), "{text}");

    let r = decode(COBAS).unwrap();
    assert_eq!(r.frames().filter(|f| f.end == Some(FrameEnd::Intermediate)).count(), 6);
    let r = decode(ERBA).unwrap();
    assert_eq!(r.messages[0].summary.as_ref().map(|s| s.results), Some(1));
}
