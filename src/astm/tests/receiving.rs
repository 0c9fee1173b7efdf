//! Receiving, fault by fault: what the instrument sends, what we answer, what is kept.

use super::*;
use crate::astm::frame::{FrameEnd, LineEnd, checksum, encode_frame};
use crate::astm::{DiscardReason, FrameProblem, Phase, Rejection};

fn frame(n: u8, text: &[u8]) -> Vec<u8> {
    encode_frame(n, text, FrameEnd::Final)
}

fn etb(n: u8, text: &[u8]) -> Vec<u8> {
    encode_frame(n, text, FrameEnd::Intermediate)
}

/// A session opened: ENQ answered ACK.
fn open(quirks: Quirks) -> Harness {
    let mut h = Harness::new(quirks);
    assert_eq!(h.feed(&[ENQ]), ACK);
    h
}

#[test]
fn bad_checksum_then_good_retransmission_is_stored_once() {
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), ACK);
    let good = frame(2, b"R|1|^^^GLU|5\r");
    let mut bad = good.clone();
    bad[5] ^= 0x01; // a bit flipped on the line
    assert_eq!(h.feed(&bad), NAK);
    assert!(h.has_event(|e| matches!(
        e,
        Event::FrameRejected { why: Rejection::Frame(FrameProblem::BadChecksum { .. }), .. }
    )));
    assert_eq!(h.feed(&good), ACK);
    assert_eq!(h.feed(&frame(3, b"L|1|N\r")), ACK);
    assert_eq!(h.records(), [b"H|\\^&\rR|1|^^^GLU|5\rL|1|N\r".to_vec()]);
}

#[test]
fn lowercase_checksum_is_accepted() {
    let mut h = open(Quirks::default());
    let mut f = frame(1, b"H|\\^&\rL|1|N\r");
    let n = f.len();
    f[n - 4..n - 2].make_ascii_lowercase();
    assert!(f[n - 4..n - 2].iter().any(|b| b.is_ascii_lowercase()), "the test needs a letter in the checksum");
    assert_eq!(h.feed(&f), ACK);
    assert_eq!(h.messages.len(), 1);
}

#[test]
fn frame_number_jump_is_refused() {
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), ACK);
    assert_eq!(h.feed(&frame(3, b"P|1\r")), NAK);
    assert!(h.has_event(
        |e| *e == Event::FrameRejected { number: Some(3), why: Rejection::WrongNumber { expected: 2, got: 3 } }
    ));
    // A first frame numbered other than 1 is refused too.
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&frame(2, b"H|\\^&\r")), NAK);
    assert_eq!(h.feed(&frame(0, b"H|\\^&\r")), NAK);
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), ACK);
}

#[test]
fn repeat_of_the_last_frame_is_acknowledged_and_kept_once() {
    let mut h = open(Quirks::default());
    let f1 = frame(1, b"H|\\^&\r");
    assert_eq!(h.feed(&f1), ACK);
    assert_eq!(h.feed(&f1), ACK, "our ACK was lost; the instrument sent it again");
    assert!(h.has_event(|e| *e == Event::Retransmission { number: 1 }));
    assert_eq!(h.feed(&frame(2, b"L|1|N\r")), ACK);
    assert_eq!(h.records(), [b"H|\\^&\rL|1|N\r".to_vec()]);
}

#[test]
fn frame_numbers_wrap_seven_to_zero() {
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), ACK);
    for i in 2..=17u32 {
        let n = (i % 8) as u8;
        assert_eq!(h.feed(&frame(n, format!("R|{i}\r").as_bytes())), ACK, "frame {i}");
    }
    assert_eq!(h.feed(&frame(2, b"L|1|N\r")), ACK);
    assert_eq!(h.messages.len(), 1);
}

#[test]
fn frame_of_more_than_240_characters_and_restricted_characters_are_refused() {
    let mut h = open(Quirks::default());
    let long = [b"R|1|".as_slice(), &[b'x'; 237], b"\r"].concat();
    assert_eq!(long.len(), 242);
    assert_eq!(h.feed(&frame(1, &long)), NAK);
    assert!(h.has_event(|e| matches!(
        e,
        Event::FrameRejected { why: Rejection::Frame(FrameProblem::TooLong { len: 242, max: 240 }), .. }
    )));
    assert_eq!(h.feed(&frame(1, &long[..240])), ACK, "240 is fine");
    for c in [0x01u8, 0x10, 0x11, 0x14, 0x16] {
        assert_eq!(h.feed(&etb(2, &[b'a', c, b'b'])), NAK, "0x{c:02X}");
    }
    assert!(h.has_event(|e| matches!(
        e,
        Event::FrameRejected { why: Rejection::Frame(FrameProblem::RestrictedCharacter(0x16)), .. }
    )));
    assert_eq!(h.feed(&etb(2, b"ab")), ACK);
}

#[test]
fn the_final_ack_waits_until_the_message_is_durable() {
    let mut h = Harness::manual(Quirks::default());
    assert_eq!(h.feed(&[ENQ]), ACK);
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), ACK);
    assert_eq!(h.feed(&frame(2, b"L|1|N\r")), b"", "not before the journal has it");
    let token = h.messages[0].0;
    h.at(5.0);
    assert_eq!(h.tick(), b"");
    assert_eq!(h.durable(token), ACK);
    // Answering twice, or an unknown token, changes nothing.
    assert_eq!(h.durable(token), b"");
    assert_eq!(h.feed(&[EOT]), b"");
    assert!(h.has_event(|e| *e == Event::SessionEnded { frames: 2, messages: 1 }));
    assert_eq!(h.link.phase(), Phase::Idle);
}

#[test]
fn several_messages_in_one_session_and_in_one_frame() {
    let mut h = Harness::manual(Quirks::default());
    h.feed(&[ENQ]);
    // One frame ends the first message and holds the whole second.
    assert_eq!(h.feed(&frame(1, b"H|\\^&\rR|1\rL|1|N\rH|\\^&\rQ|1|^7\rL|1|N\r")), b"");
    assert_eq!(h.messages.len(), 2);
    let (a, b) = (h.messages[0].0, h.messages[1].0);
    assert_eq!(h.durable(b), b"", "the frame is acknowledged once both are durable");
    assert_eq!(h.durable(a), ACK);
    // A third message over two frames in the same session.
    assert_eq!(h.feed(&etb(2, b"H|\\^&\rR|1|^^^A|")), ACK);
    assert_eq!(h.feed(&frame(3, b"1\rL|1|N\r")), b"");
    assert_eq!(h.durable(h.messages[2].0), ACK);
    assert_eq!(h.records()[2], b"H|\\^&\rR|1|^^^A|1\rL|1|N\r");
    h.feed(&[EOT]);
    assert!(h.has_event(|e| *e == Event::SessionEnded { frames: 3, messages: 3 }));
}

#[test]
fn a_refused_message_is_nak_ed_and_handed_over_again_on_retransmission() {
    let mut h = Harness::manual(Quirks::default());
    h.feed(&[ENQ]);
    assert_eq!(h.feed(&etb(1, b"H|\\^&\rR|1|^^^A|")), ACK);
    let last = frame(2, b"1\rL|1|N\r");
    assert_eq!(h.feed(&last), b"");
    assert_eq!(h.refused(h.messages[0].0), NAK);
    assert!(h.has_event(|e| *e == Event::FrameRejected { number: Some(2), why: Rejection::NotStored }));
    // The instrument sends the same frame again: the same whole message is handed over.
    assert_eq!(h.feed(&last), b"");
    assert_eq!(h.messages.len(), 2);
    assert_eq!(h.messages[0].1, h.messages[1].1);
    assert_eq!(h.messages[1].1, b"H|\\^&\rR|1|^^^A|1\rL|1|N\r");
    assert_eq!(h.durable(h.messages[1].0), ACK);
    h.feed(&[EOT]);
    assert!(h.has_event(|e| *e == Event::SessionEnded { frames: 2, messages: 1 }));
}

#[test]
fn enq_is_answered_nak_while_a_message_is_not_yet_durable() {
    let mut h = Harness::manual(Quirks::default());
    h.feed(&[ENQ]);
    h.feed(&frame(1, b"H|\\^&\rL|1|N\r"));
    // The journal is slow; the instrument gives up waiting for our ACK after 15 s.
    h.at(15.0);
    assert_eq!(h.feed(&[EOT]), b"");
    assert!(h.has_event(|e| *e == Event::AckAbandoned { messages: 1 }));
    h.at(25.0);
    assert_eq!(h.feed(&[ENQ]), NAK, "busy");
    assert!(h.has_event(|e| *e == Event::Busy));
    assert_eq!(h.durable(h.messages[0].0), b"", "too late for that frame: no ACK out of turn");
    h.at(35.0);
    assert_eq!(h.feed(&[ENQ]), ACK);
    // The instrument sends the message again; the journal's duplicate check is what catches it.
    h.feed(&frame(1, b"H|\\^&\rL|1|N\r"));
    assert_eq!(h.messages.len(), 2);
}

#[test]
fn receiver_timeout_discards_the_unfinished_message() {
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), ACK);
    h.at(10.0);
    assert_eq!(h.feed(&frame(2, b"R|1|^^^A|1\r")), ACK);
    assert_eq!(h.link.next_deadline(), Some(h.t0 + Duration::from_secs(40)));
    h.at(39.9);
    h.tick();
    assert_eq!(h.link.phase(), Phase::Receiving);
    h.at(40.0);
    assert_eq!(h.tick(), b"");
    assert_eq!(h.link.phase(), Phase::Idle);
    assert!(h.has_event(|e| *e == Event::Discarded { bytes: 17, why: DiscardReason::ReceiveTimeout }));
    assert!(h.messages.is_empty());
    assert_eq!(h.link.next_deadline(), None);
    // The next session starts clean, at frame 1.
    assert_eq!(h.feed(&[ENQ]), ACK);
    assert_eq!(h.feed(&frame(1, b"H|\\^&\rL|1|N\r")), ACK);
    assert_eq!(h.records(), [b"H|\\^&\rL|1|N\r".to_vec()]);
}

#[test]
fn eot_right_after_enq_is_a_keep_alive() {
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&[EOT]), b"");
    assert_eq!(h.events, [Event::KeepAlive]);
    assert_eq!(h.link.phase(), Phase::Idle);
    assert_eq!(h.feed(&[ENQ, EOT, ENQ, EOT]), [ACK, ACK].concat());
}

#[test]
fn eot_in_the_middle_of_an_e1381_message_discards_it() {
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), ACK);
    assert_eq!(h.feed(&etb(2, b"R|1|^^^A|")), ACK);
    h.feed(&[EOT]);
    assert!(h.has_event(|e| *e == Event::Discarded { bytes: 15, why: DiscardReason::SenderAborted }));
    assert!(h.messages.is_empty());
}

#[test]
fn eot_after_complete_records_without_l_hands_them_over_incomplete() {
    let mut h = open(Quirks::default());
    h.feed(&frame(1, b"H|\\^&\r"));
    h.feed(&frame(2, b"R|1|^^^A|1\r"));
    h.feed(&[EOT]);
    assert_eq!(h.messages.len(), 1);
    assert_eq!(h.messages[0].1, b"H|\\^&\rR|1|^^^A|1\r");
    assert!(!h.messages[0].2, "incomplete");
    // Records before any H, and a message cut short by the next H, are handed over too.
    let mut h = open(Quirks::default());
    h.feed(&frame(1, b"P|1\r"));
    h.feed(&frame(2, b"H|\\^&\rR|1\r"));
    h.feed(&frame(3, b"H|\\^&\rL|1|N\r"));
    h.feed(&[EOT]);
    let got: Vec<(Vec<u8>, bool)> = h.messages.iter().map(|m| (m.1.clone(), m.2)).collect();
    assert_eq!(
        got,
        [(b"P|1\r".to_vec(), false), (b"H|\\^&\rR|1\r".to_vec(), false), (b"H|\\^&\rL|1|N\r".to_vec(), true)]
    );
}

#[test]
fn a_message_over_the_size_limit_is_refused_until_eot() {
    let mut h = Harness::new(Quirks::default());
    h.link = Link::new(Timers::default(), Quirks::default()).with_max_message_size(20);
    h.feed(&[ENQ]);
    assert_eq!(h.feed(&frame(1, b"H|\\^&\rP|1\r")), ACK);
    assert_eq!(h.feed(&frame(2, b"R|1|^^^A|12345\r")), NAK);
    assert!(h.has_event(|e| *e == Event::Discarded { bytes: 10, why: DiscardReason::TooLarge }));
    assert_eq!(h.feed(&frame(2, b"R|1|^^^A|12345\r")), NAK, "the retransmission too");
    assert_eq!(h.feed(&frame(2, b"L|1\r")), NAK, "and everything until EOT");
    h.feed(&[EOT]);
    assert!(h.messages.is_empty());
    h.feed(&[ENQ]);
    assert_eq!(h.feed(&frame(1, b"H|\\^&\rL|1|N\r")), ACK, "the next session is fine");
}

#[test]
fn stray_bytes_are_counted_not_kept() {
    let mut h = Harness::new(Quirks::default());
    assert_eq!(h.feed(b"\r\n\x06junk"), b"");
    assert_eq!(h.events, [Event::Stray { bytes: 7 }]);
    h.events.clear();
    h.feed(&[ENQ]);
    h.feed(&[&frame(1, b"H|\\^&\rL|1|N\r")[..], b"\r\n"].concat());
    h.feed(&[EOT]);
    assert!(h.has_event(|e| *e == Event::Stray { bytes: 2 }));
    // A frame outside a session is stray too, and is not answered.
    h.events.clear();
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), b"");
    assert!(h.has_event(|e| matches!(e, Event::Stray { .. })));
}

#[test]
fn a_frame_cut_by_eot_or_enq_then_the_byte_counts() {
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r")), ACK);
    assert_eq!(h.feed(b"\x022R|1|^^^A"), b"");
    assert_eq!(h.feed(&[EOT]), b"");
    assert!(h.has_event(|e| *e == Event::FrameCut { bytes: 9 }));
    assert!(h.has_event(|e| matches!(e, Event::SessionEnded { .. })));
    // ENQ in a session: the instrument started over. The new session is answered.
    let mut h = open(Quirks::default());
    h.feed(&frame(1, b"H|\\^&\r"));
    assert_eq!(h.feed(&[ENQ]), ACK);
    assert!(h.has_event(|e| *e == Event::Discarded { bytes: 6, why: DiscardReason::Restarted }));
    assert_eq!(h.feed(&frame(1, b"H|\\^&\rL|1|N\r")), ACK);
}

#[test]
fn a_frame_before_our_ack_of_the_last_is_ignored() {
    let mut h = Harness::manual(Quirks::default());
    h.feed(&[ENQ]);
    let last = frame(1, b"H|\\^&\rL|1|N\r");
    assert_eq!(h.feed(&last), b"");
    assert_eq!(h.feed(&last), b"", "impatient retransmission: still one ACK, when durable");
    assert!(h.has_event(|e| *e == Event::FrameWhileHeld { number: Some(1) }));
    assert_eq!(h.messages.len(), 1);
    assert_eq!(h.durable(h.messages[0].0), ACK);
}

#[test]
fn disconnection_discards_what_was_unfinished() {
    let mut h = open(Quirks::default());
    h.feed(&frame(1, b"H|\\^&\r"));
    h.link.disconnected(h.now);
    h.drain();
    assert!(h.has_event(|e| *e == Event::Discarded { bytes: 6, why: DiscardReason::Disconnected }));
    assert_eq!(h.link.phase(), Phase::Idle);
}

// ---- quirks ----

/// A frame as an instrument with a quirk sends it: `number` None for no frame number, the
/// checksum (from what is sent) then `line_end`.
fn quirky(number: Option<u8>, text: &[u8], end: u8, line_end: &[u8]) -> Vec<u8> {
    let mut body: Vec<u8> = number.map(|n| b'0' + n).into_iter().collect();
    body.extend_from_slice(text);
    body.push(end);
    let sum = checksum(&body);
    [&[STX], body.as_slice(), format!("{sum:02X}").as_bytes(), line_end].concat()
}

#[test]
fn quirk_no_frame_numbers() {
    let f1 = quirky(None, b"H|\\^&\r", 0x03, b"\r\n");
    let f2 = quirky(None, b"L|1|N\r", 0x03, b"\r\n");
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&f1), NAK, "refused without the quirk");
    let mut h = open(Quirks { no_frame_numbers: true, ..Quirks::default() });
    assert_eq!(h.feed(&f1), ACK);
    assert_eq!(h.feed(&f2), ACK);
    assert_eq!(h.records(), [b"H|\\^&\rL|1|N\r".to_vec()]);
}

#[test]
fn quirk_line_end_lf_and_cr_cr() {
    for (line_end, bytes) in [(LineEnd::Lf, b"\n".as_slice()), (LineEnd::CrCr, b"\r\r")] {
        let f = quirky(Some(1), b"H|\\^&\rL|1|N\r", 0x03, bytes);
        let mut h = open(Quirks::default());
        assert_eq!(h.feed(&f), NAK, "{line_end:?} refused without the quirk");
        let mut h = open(Quirks { line_end, ..Quirks::default() });
        assert_eq!(h.feed_chunked(&f, 1), ACK, "{line_end:?}");
        assert_eq!(h.messages.len(), 1);
        // The standard line end still works.
        assert_eq!(h.feed(&frame(2, b"H|\\^&\rL|1|N\r")), ACK);
    }
    // Empty records (CR CR inside the text) need no quirk.
    let mut h = open(Quirks::default());
    assert_eq!(h.feed(&frame(1, b"H|\\^&\r\rR|1\r\rL|1|N\r\r")), ACK);
    let m = crate::astm::Message::parse(&h.messages[0].1).unwrap();
    assert_eq!(m.records().len(), 3);
}

#[test]
fn quirk_missing_cr_before_etx() {
    let f1 = quirky(Some(1), b"H|\\^&", 0x03, b"\r\n");
    let f2 = quirky(Some(2), b"R|1|^^^A|1", 0x03, b"\r\n");
    let f3 = quirky(Some(3), b"L|1|N", 0x03, b"\r\n");
    let mut h = open(Quirks { missing_cr_before_etx: true, ..Quirks::default() });
    for f in [&f1, &f2, &f3] {
        assert_eq!(h.feed(f), ACK);
    }
    assert_eq!(h.records(), [b"H|\\^&\rR|1|^^^A|1\rL|1|N\r".to_vec()]);
    // Without it, records run together, and the link says so.
    let mut h = open(Quirks::default());
    for f in [&f1, &f2, &f3] {
        h.feed(f);
    }
    assert!(h.has_event(|e| *e == Event::RecordWithoutCr));
    h.feed(&[EOT]);
    assert_eq!(h.records(), [b"H|\\^&R|1|^^^A|1L|1|N\r".to_vec()]);
}

#[test]
fn quirk_no_etx() {
    let frames = [etb(1, b"H|\\^&\r"), etb(2, b"R|1|^^^A|1\r"), etb(3, b"R|2|^^^B|2")];
    let mut h = open(Quirks { no_etx: true, ..Quirks::default() });
    for f in &frames {
        assert_eq!(h.feed(f), ACK);
    }
    h.feed(&[EOT]);
    assert_eq!(h.records(), [b"H|\\^&\rR|1|^^^A|1\rR|2|^^^B|2\r".to_vec()]);
    // With an L record, the ETB frame that holds it ends the message, and waits for durable.
    let mut h = Harness::manual(Quirks { no_etx: true, ..Quirks::default() });
    h.feed(&[ENQ]);
    assert_eq!(h.feed(&etb(1, b"H|\\^&\rL|1|N\r")), b"");
    assert_eq!(h.durable(h.messages[0].0), ACK);
    // Without the quirk, EOT after ETB is an abort.
    let mut h = open(Quirks::default());
    for f in &frames {
        h.feed(f);
    }
    h.feed(&[EOT]);
    assert!(h.messages.is_empty());
}

#[test]
fn never_panics_and_stays_bounded_on_arbitrary_bytes() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let alphabet = [ENQ, EOT, STX, 0x03, 0x17, 0x06, 0x15, b'\r', b'\n', b'1', b'2', b'H', b'|', b'L', b'A', b'F'];
    for round in 0..300 {
        let quirks = Quirks {
            no_frame_numbers: round % 5 == 1,
            line_end: [LineEnd::CrLf, LineEnd::Lf, LineEnd::CrCr][round % 3],
            missing_cr_before_etx: round % 2 == 0,
            no_etx: round % 7 == 0,
            long_frames: round % 4 == 0,
            send_packed: false,
        };
        let mut h = Harness::new(quirks);
        h.auto_durable = round % 3 != 0;
        h.link = Link::new(Timers::default(), quirks).with_max_message_size(4096);
        for step in 0..400 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = (x >> 58) as usize + 1;
            let bytes: Vec<u8> = (0..n).map(|i| alphabet[((x >> (i % 50)) % 16) as usize]).collect();
            h.feed(&bytes);
            if step % 50 == 0 {
                h.at(step as f64);
                h.tick();
            }
            if round % 3 == 0 && step % 9 == 0 {
                let pending: Vec<Token> = h.messages.iter().map(|m| m.0).collect();
                for t in pending {
                    if x.is_multiple_of(2) {
                        h.durable(t)
                    } else {
                        h.refused(t)
                    };
                }
            }
            assert!(h.messages.iter().all(|m| m.1.len() <= 4096 + 1));
        }
    }
}
