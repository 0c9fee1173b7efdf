//! Sending: order replies and downloads, with the instrument's answers scripted; and two links
//! talking to each other over a noisy line.

use super::*;
use crate::astm::frame::{FrameEnd, encode_frame, split_message, split_message_packed};
use crate::astm::link::TryFailure;
use crate::astm::{Action, FrameError, Phase};

const REPLY: &[u8] = b"H|\\^&|||OUTPOST\rP|1\rO|1|1068687||^^^GLU|R\rL|1|N\r";

#[test]
fn sends_a_message_frame_by_frame() {
    let mut h = Harness::new(Quirks::default());
    let frames = split_message(REPLY).unwrap();
    assert_eq!(frames.len(), 4);
    let (id, written) = h.send(REPLY);
    assert_eq!(written, [ENQ]);
    assert_eq!(h.link.phase(), Phase::Sending);
    assert_eq!(h.link.next_deadline(), Some(h.t0 + Duration::from_secs(15)));
    for f in &frames {
        assert_eq!(&h.feed(ACK), f);
    }
    assert_eq!(h.feed(ACK), [EOT]);
    assert_eq!(h.sent, [id]);
    assert_eq!((h.link.phase(), h.link.queued(), h.link.next_deadline()), (Phase::Idle, 0, None));
}

#[test]
fn packed_sending_puts_the_records_in_one_e1381_message() {
    let mut h = Harness::new(Quirks { send_packed: true, ..Quirks::default() });
    h.send(REPLY);
    let frame = h.feed(ACK);
    assert_eq!(frame, encode_frame(1, REPLY, FrameEnd::Final));
    assert_eq!(h.feed(ACK), [EOT]);
}

#[test]
fn contention_the_instrument_goes_first_and_we_wait_20_s() {
    let mut h = Harness::new(Quirks::default());
    let (id, written) = h.send(REPLY);
    assert_eq!(written, [ENQ]);
    // The instrument bid at the same time: we yield, without answering that ENQ.
    h.at(0.1);
    assert_eq!(h.feed(&[ENQ]), b"");
    assert!(h.has_event(|e| *e == Event::Contention));
    assert_eq!(h.link.phase(), Phase::Idle);
    assert_eq!(h.link.next_deadline(), Some(h.t0 + Duration::from_secs_f64(20.1)));
    // It bids again 1 s later and sends its message.
    h.at(1.1);
    assert_eq!(h.feed(&[ENQ]), ACK);
    assert_eq!(h.feed(&encode_frame(1, b"H|\\^&\rR|1|^^^A|1\rL|1|N\r", FrameEnd::Final)), ACK);
    h.at(2.0);
    assert_eq!(h.feed(&[EOT]), b"", "not before 20 s");
    assert_eq!(h.messages.len(), 1);
    h.at(20.0);
    assert_eq!(h.tick(), b"");
    h.at(20.1);
    assert_eq!(h.tick(), [ENQ]);
    assert_eq!(h.feed(ACK), split_message(REPLY).unwrap()[0]);
    for _ in 0..4 {
        h.feed(ACK);
    }
    assert_eq!(h.sent, [id]);
}

#[test]
fn we_bid_only_once_the_instruments_session_is_over() {
    let mut h = Harness::new(Quirks::default());
    assert_eq!(h.feed(&[ENQ]), ACK);
    let (_, written) = h.send(REPLY);
    assert!(written.is_empty());
    assert_eq!(h.feed(&encode_frame(1, b"H|\\^&\rQ|1|^1068687||ALL\rL|1|N\r", FrameEnd::Final)), ACK);
    assert_eq!(h.feed(&[EOT]), [ENQ], "the answer follows the query's session");
}

#[test]
fn a_frame_refused_six_times_ends_the_session_and_fails_the_message() {
    let mut h = Harness::new(Quirks::default());
    let (id, _) = h.send(REPLY);
    let first = h.feed(ACK);
    assert_eq!(first, split_message(REPLY).unwrap()[0]);
    for attempt in 1..=5u8 {
        assert_eq!(h.feed(NAK), first, "NAK {attempt}: the same frame again");
        assert!(h.has_event(|e| *e == Event::FrameNaked { number: 1, attempt }));
    }
    assert_eq!(h.feed(NAK), [EOT], "the sixth NAK: give up");
    assert_eq!(h.failed, [(id, SendFailure::FrameRefused { number: 1 })]);
    assert_eq!((h.link.phase(), h.link.queued()), (Phase::Idle, 0));
    assert!(h.failed[0].1.to_string().contains("six times"));
}

#[test]
fn no_reply_to_a_frame_ends_the_session_and_the_message_is_tried_again() {
    let mut h = Harness::new(Quirks::default());
    h.send(REPLY);
    let frames = split_message(REPLY).unwrap();
    assert_eq!(h.feed(ACK), frames[0]);
    assert_eq!(h.feed(ACK), frames[1]);
    h.at(14.9);
    assert_eq!(h.tick(), b"");
    h.at(15.0);
    assert_eq!(h.tick(), [EOT]);
    assert!(h.has_event(|e| *e == Event::NoReply { frame: Some(2) }));
    assert_eq!(h.link.next_deadline(), Some(h.t0 + Duration::from_secs(25)));
    h.at(25.0);
    assert_eq!(h.tick(), [ENQ]);
    assert_eq!(h.feed(ACK), frames[0], "from the start, frame number 1");
}

#[test]
fn enq_refused_or_unanswered_is_retried_then_given_up() {
    let mut h = Harness::new(Quirks::default());
    let (id, _) = h.send(REPLY);
    let mut t = 0.0;
    for _ in 0..5 {
        assert_eq!(h.feed(NAK), b"");
        t += 10.0;
        h.at(t);
        assert_eq!(h.tick(), [ENQ]);
    }
    assert_eq!(h.feed(NAK), b"");
    assert!(h.has_event(|e| *e == Event::EnqRefused));
    assert_eq!(h.failed, [(id, SendFailure::GaveUp { tries: 6, last: TryFailure::Busy })]);
    h.at(t + 100.0);
    assert_eq!(h.tick(), b"", "given up: no more bids");

    let mut h = Harness::new(Quirks::default());
    h.send(REPLY);
    h.at(15.0);
    assert_eq!(h.tick(), [EOT]);
    assert!(h.has_event(|e| *e == Event::NoReply { frame: None }));
}

#[test]
fn receiver_interrupt_is_honoured_and_the_message_sent_again_later() {
    let mut h = Harness::new(Quirks::default());
    let (id, _) = h.send(REPLY);
    let frames = split_message(REPLY).unwrap();
    assert_eq!(h.feed(ACK), frames[0]);
    assert_eq!(h.feed(&[EOT]), [EOT], "EOT instead of ACK: we stop");
    assert!(h.has_event(|e| *e == Event::Interrupted { id }));
    // The instrument sends what it had to send.
    h.at(1.0);
    assert_eq!(h.feed(&[ENQ]), ACK);
    assert_eq!(h.feed(&encode_frame(1, b"H|\\^&\rR|1|^^^A|1\rL|1|N\r", FrameEnd::Final)), ACK);
    assert_eq!(h.feed(&[EOT]), b"");
    h.at(15.0);
    assert_eq!(h.tick(), [ENQ]);
    for f in &frames {
        assert_eq!(&h.feed(ACK), f);
    }
    assert_eq!(h.feed(ACK), [EOT]);
    assert_eq!(h.sent, [id]);

    // On the last frame, the interrupt is an ACK too: the message is sent.
    let mut h = Harness::new(Quirks::default());
    let (id, _) = h.send(b"H|\\^&\rL|1|N\r");
    h.feed(ACK);
    h.feed(ACK);
    assert_eq!(h.feed(&[EOT]), [EOT]);
    assert_eq!(h.sent, [id]);
}

#[test]
fn unsendable_records_are_refused_at_once() {
    let mut link = Link::new(Timers::default(), Quirks::default());
    let now = Instant::now();
    assert_eq!(link.send(b"H|\\^&\rP|1|a\nb\r", now), Err(FrameError::RestrictedCharacter { record: 2, code: LF }));
    assert_eq!(link.send(b"", now), Err(FrameError::Empty));
    assert_eq!(link.poll_action(), None);
}

#[test]
fn a_lost_connection_keeps_the_message_queued() {
    let mut h = Harness::new(Quirks::default());
    h.send(REPLY);
    h.feed(ACK);
    h.link.disconnected(h.now);
    h.drain();
    assert_eq!((h.link.phase(), h.link.queued()), (Phase::Idle, 1));
    assert_eq!(h.link.next_deadline(), Some(h.t0 + Duration::from_secs(10)));
    h.at(10.0);
    assert_eq!(h.tick(), [ENQ]);
}

/// Random H…L messages with records of any length (some over several frames), any printable
/// character, any delimiter.
fn random_message(x: &mut u64) -> Vec<u8> {
    let mut next = || {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    };
    let mut out = b"H|\\^&|||INSTR\r".to_vec();
    for _ in 0..next() % 12 {
        out.push([b'P', b'O', b'R', b'C', b'M', b'Q'][(next() % 6) as usize]);
        out.push(b'|');
        let len = [0, 5, 239, 240, 241, 480, 700][(next() % 7) as usize] + (next() % 3) as usize;
        out.extend((0..len).map(|_| (next() % 95) as u8 + 0x20));
        out.push(b'\r');
    }
    out.extend_from_slice(b"L|1|N\r");
    out
}

/// Two links on one line: `a` sends, `b` receives (and journals at once). Frames from `a` are
/// corrupted now and then (`noise` in 1000); reads arrive in random chunks.
fn loopback(records: &[u8], quirks: Quirks, noise: u64, x: &mut u64) -> (Vec<(Vec<u8>, bool)>, Vec<Action>) {
    let now = Instant::now();
    let mut a = Link::new(Timers::default(), quirks);
    let mut b = Link::new(Timers::default(), Quirks::default());
    let mut received = Vec::new();
    let mut outcomes = Vec::new();
    a.send(records, now).expect("sendable");
    loop {
        let mut progressed = false;
        while let Some(action) = a.poll_action() {
            match action {
                Action::Write(mut bytes) => {
                    *x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    if bytes.len() > 8 && (*x >> 20) % 1000 < noise {
                        let i = 2 + (*x >> 40) as usize % (bytes.len() - 7);
                        bytes[i] = if bytes[i] == b'#' { b'$' } else { b'#' };
                    }
                    let chunk = ((*x >> 33) % 50 + 1) as usize;
                    for c in bytes.chunks(chunk) {
                        b.receive(c, now);
                    }
                    progressed = true;
                }
                other @ (Action::Sent { .. } | Action::SendFailed { .. }) => outcomes.push(other),
                _ => {}
            }
        }
        while let Some(action) = b.poll_action() {
            match action {
                Action::Write(bytes) => {
                    a.receive(&bytes, now);
                    progressed = true;
                }
                Action::Message { token, records, complete } => {
                    received.push((records, complete));
                    b.durable(token, now);
                    progressed = true;
                }
                _ => {}
            }
        }
        if !progressed {
            break;
        }
    }
    assert_eq!((a.phase(), b.phase()), (Phase::Idle, Phase::Idle));
    (received, outcomes)
}

#[test]
fn random_messages_arrive_identical_over_a_noisy_line() {
    let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
    let mut failed = 0;
    for round in 0..300 {
        let records = random_message(&mut x);
        let quirks = Quirks { send_packed: round % 2 == 1, ..Quirks::default() };
        let noise = [0, 0, 100, 300, 600][round % 5];
        let (received, outcomes) = loopback(&records, quirks, noise, &mut x);
        match &outcomes[..] {
            [Action::Sent { .. }] => assert_eq!(received, [(records.clone(), true)], "round {round}"),
            // Six corrupted sends of one frame: given up. The receiver keeps the whole records
            // it acknowledged, as an incomplete message; never a partial record.
            [Action::SendFailed { why: SendFailure::FrameRefused { .. }, .. }] => {
                assert!(noise >= 300, "round {round}");
                failed += 1;
                for (got, complete) in &received {
                    assert!(!complete && records.starts_with(got) && got.ends_with(b"\r"), "round {round}");
                }
            }
            other => panic!("round {round}: {other:?}"),
        }
        let frames = if quirks.send_packed { split_message_packed(&records) } else { split_message(&records) };
        assert!(frames.unwrap().iter().all(|f| f.len() <= 247), "round {round}");
    }
    assert!(failed > 0, "the noisiest line makes some sends fail");
}
