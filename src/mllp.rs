//! MLLP framing (`0x0B` message `0x1C 0x0D`), sans IO.
//!
//! [`Decoder`] is fed whatever bytes arrive and yields complete frames in order. It never holds
//! more than `max_message_size` bytes of one message: a larger message is skipped to its end
//! and reported as [`Frame::Oversized`] with its first bytes kept, so that the caller can still
//! answer it with a negative ACK naming its control id. Bytes outside a frame are counted and
//! dropped (reported as [`Frame::Discarded`], never their content).

pub const START: u8 = 0x0B;
pub const END: u8 = 0x1C;
pub const CR: u8 = 0x0D;

/// How many leading bytes of an oversized message are kept to read its MSH segment.
pub const OVERSIZED_HEAD: usize = 8 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete message (the bytes between the start and end markers).
    Message(Vec<u8>),
    /// A message larger than the limit; `head` holds its first bytes, `size` its full length.
    Oversized { head: Vec<u8>, size: usize },
    /// Bytes dropped: outside any frame, or an unterminated frame cut short by a new start block.
    Discarded { bytes: usize, unterminated: bool },
}

#[derive(Debug)]
enum State {
    Outside { garbage: usize },
    Inside { buf: Vec<u8>, end_seen: bool },
    Skipping { head: Vec<u8>, size: usize, end_seen: bool },
}

#[derive(Debug)]
pub struct Decoder {
    max: usize,
    state: State,
}

impl Decoder {
    pub fn new(max_message_size: usize) -> Self {
        Decoder { max: max_message_size, state: State::Outside { garbage: 0 } }
    }

    /// True while a message has started but not ended (used to report truncated input at EOF).
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Outside { .. })
    }

    /// Bytes held for a partial frame.
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Outside { .. } => 0,
            State::Inside { buf, .. } => buf.len(),
            State::Skipping { size, .. } => *size,
        }
    }

    /// Feeds bytes; appends every complete frame to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        while !data.is_empty() {
            match &mut self.state {
                State::Outside { garbage } => match data.iter().position(|&b| b == START) {
                    Some(i) => {
                        *garbage += i;
                        if *garbage > 0 {
                            out.push(Frame::Discarded { bytes: *garbage, unterminated: false });
                        }
                        self.state = State::Inside { buf: Vec::new(), end_seen: false };
                        data = &data[i + 1..];
                    }
                    None => {
                        *garbage += data.len();
                        data = &[];
                    }
                },
                State::Inside { buf, end_seen } => {
                    if *end_seen {
                        // Accept FS CR; a bare FS followed by anything else also ends the frame
                        // (some senders omit the CR), and that byte is processed outside.
                        let frame = std::mem::take(buf);
                        if data[0] == CR {
                            data = &data[1..];
                        }
                        out.push(Frame::Message(frame));
                        self.state = State::Outside { garbage: 0 };
                        continue;
                    }
                    match data.iter().position(|&b| b == END || b == START) {
                        Some(i) if data[i] == START => {
                            // A new start before the end: the previous frame never ended.
                            let lost = buf.len() + i;
                            out.push(Frame::Discarded { bytes: lost, unterminated: true });
                            self.state = State::Inside { buf: Vec::new(), end_seen: false };
                            data = &data[i + 1..];
                        }
                        Some(i) => {
                            if buf.len() + i > self.max {
                                self.start_skipping(&data[..i]);
                                self.set_end_seen();
                            } else {
                                buf.extend_from_slice(&data[..i]);
                                *end_seen = true;
                            }
                            data = &data[i + 1..];
                        }
                        None => {
                            if buf.len() + data.len() > self.max {
                                self.start_skipping(data);
                            } else {
                                buf.extend_from_slice(data);
                            }
                            data = &[];
                        }
                    }
                }
                State::Skipping { head, size, end_seen } => {
                    if *end_seen {
                        if data[0] == CR {
                            data = &data[1..];
                        }
                        let head = std::mem::take(head);
                        out.push(Frame::Oversized { head, size: *size });
                        self.state = State::Outside { garbage: 0 };
                        continue;
                    }
                    match data.iter().position(|&b| b == END) {
                        Some(i) => {
                            *size += i;
                            *end_seen = true;
                            data = &data[i + 1..];
                        }
                        None => {
                            *size += data.len();
                            data = &[];
                        }
                    }
                }
            }
        }
    }

    /// Ends input. A frame ended by FS without CR is completed; an unterminated frame is
    /// reported as discarded.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        match std::mem::replace(&mut self.state, State::Outside { garbage: 0 }) {
            State::Outside { garbage } if garbage > 0 => {
                out.push(Frame::Discarded { bytes: garbage, unterminated: false })
            }
            State::Outside { .. } => {}
            State::Inside { buf, end_seen: true } => out.push(Frame::Message(buf)),
            State::Inside { buf, end_seen: false } => {
                out.push(Frame::Discarded { bytes: buf.len(), unterminated: true })
            }
            State::Skipping { head, size, end_seen: true } => out.push(Frame::Oversized { head, size }),
            State::Skipping { size, .. } => out.push(Frame::Discarded { bytes: size, unterminated: true }),
        }
    }

    fn start_skipping(&mut self, more: &[u8]) {
        if let State::Inside { buf, .. } = &mut self.state {
            let mut head = std::mem::take(buf);
            let size = head.len() + more.len();
            head.extend_from_slice(&more[..more.len().min(OVERSIZED_HEAD.saturating_sub(head.len()))]);
            head.truncate(OVERSIZED_HEAD);
            head.shrink_to_fit();
            self.state = State::Skipping { head, size, end_seen: false };
        }
    }

    fn set_end_seen(&mut self) {
        if let State::Skipping { end_seen, .. } = &mut self.state {
            *end_seen = true;
        }
    }
}

/// Wraps a message in MLLP framing.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.push(END);
    out.push(CR);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut d = Decoder::new(max);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn frames_split_at_every_byte_boundary() {
        let wire = [encode(b"MSH|one"), encode(b"MSH|two")].concat();
        for cut in 0..wire.len() {
            let frames = decode_all(1024, &[&wire[..cut], &wire[cut..]]);
            assert_eq!(
                frames,
                vec![Frame::Message(b"MSH|one".to_vec()), Frame::Message(b"MSH|two".to_vec())],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_between_frames_is_counted_not_kept() {
        let wire = [b"junk".as_slice(), &encode(b"MSH|a"), b"\r\n", &encode(b"MSH|b"), b"xx"].concat();
        let frames = decode_all(1024, &[&wire]);
        assert_eq!(
            frames,
            vec![
                Frame::Discarded { bytes: 4, unterminated: false },
                Frame::Message(b"MSH|a".to_vec()),
                Frame::Discarded { bytes: 2, unterminated: false },
                Frame::Message(b"MSH|b".to_vec()),
                Frame::Discarded { bytes: 2, unterminated: false },
            ]
        );
    }

    #[test]
    fn oversized_message_is_skipped_with_its_head_and_the_stream_recovers() {
        let big = vec![b'x'; 5000];
        let wire = [encode(&big), encode(b"MSH|next")].concat();
        for chunk in [1usize, 7, 100, 10_000] {
            let mut d = Decoder::new(1000);
            let mut out = Vec::new();
            for c in wire.chunks(chunk) {
                d.push(c, &mut out);
                assert!(d.buffered() <= 5000 && (!matches!(d.state, State::Inside { .. }) || d.buffered() <= 1000));
            }
            assert_eq!(out.len(), 2, "chunk {chunk}");
            match &out[0] {
                Frame::Oversized { head, size } => {
                    assert_eq!(*size, 5000);
                    assert!(head.len() <= OVERSIZED_HEAD && head.iter().all(|&b| b == b'x'));
                }
                other => panic!("expected oversized, got {other:?}"),
            }
            assert_eq!(out[1], Frame::Message(b"MSH|next".to_vec()));
        }
    }

    #[test]
    fn unterminated_frame_then_new_start() {
        let wire = [b"\x0bMSH|lost".as_slice(), &encode(b"MSH|ok")].concat();
        let frames = decode_all(1024, &[&wire]);
        assert_eq!(frames, vec![Frame::Discarded { bytes: 8, unterminated: true }, Frame::Message(b"MSH|ok".to_vec())]);
        let frames = decode_all(1024, &[b"\x0bMSH|cut"]);
        assert_eq!(frames, vec![Frame::Discarded { bytes: 7, unterminated: true }]);
    }

    #[test]
    fn end_block_without_cr_is_accepted() {
        let frames = decode_all(1024, &[b"\x0bMSH|a\x1c\x0bMSH|b\x1c"]);
        assert_eq!(frames, vec![Frame::Message(b"MSH|a".to_vec()), Frame::Message(b"MSH|b".to_vec())]);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            let mut d = Decoder::new(64);
            let mut out = Vec::new();
            let len = (x % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    [START, END, CR, b'M', b'|', (x >> 33) as u8][((x >> 40) % 6) as usize]
                })
                .collect();
            for c in bytes.chunks(((x >> 50) % 17 + 1) as usize) {
                d.push(c, &mut out);
            }
            d.finish(&mut out);
            for f in &out {
                if let Frame::Message(m) = f {
                    assert!(m.len() <= 64);
                }
            }
        }
    }
}
