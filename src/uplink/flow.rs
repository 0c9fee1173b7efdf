//! The item flow of one link session: which journaled items go up next, how many may wait for
//! central's acknowledgement at once, and what is sent again.
//!
//! Two lanes share a window of `max_in_flight` unacknowledged items. *Live* items (journaled
//! after the flow started) go first, as they come. *Historical* items (the backlog from before)
//! are replayed behind them at `replay_rate` per second and may hold at most nine tenths of the
//! window, so a fresh result is never stuck behind a day of backlog. Each lane walks the journal in
//! order with a cursor; nothing is marked in the journal until central acknowledges (the
//! journal is the only queue: a new session simply starts again from what is unacknowledged).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::Uplink;
use crate::journal::{JournalError, SharedReader, UplinkItem};

use super::contract::{Topics, item_payloads};
use super::outbox::Outbox;

/// Items read from the journal at a time, per lane.
const FETCH: usize = 256;

#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub at: Instant,
    pub historical: bool,
}

/// A resend central asked for (`cmd/resend`): items by uplink sequence number, delivered or
/// not, replayed as historical.
#[derive(Debug)]
struct Resend {
    from_useq: i64,
    to_useq: i64,
    cursor: i64,
    done: bool,
}

pub struct Flow {
    dest: String,
    pub session: i64,
    max_in_flight: usize,
    ack_timeout: Duration,
    replay_rate: f64,
    max_payload: usize,
    topics: Topics,
    /// Items with a journal seq up to here were journaled before the flow began: historical.
    pub live_from: i64,
    live_cursor: i64,
    live: VecDeque<UplinkItem>,
    hist_cursor: i64,
    hist_done: bool,
    hist: VecDeque<UplinkItem>,
    resend: Option<Resend>,
    resend_items: VecDeque<UplinkItem>,
    in_flight: BTreeMap<i64, Sent>,
    hist_in_flight: usize,
    tokens: f64,
    refilled: Instant,
}

/// What one pump did, for the counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pumped {
    pub items: u64,
}

impl Flow {
    pub fn new(dest: &str, session: i64, cfg: &Uplink, topics: Topics, head_seq: i64) -> Flow {
        Flow {
            dest: dest.to_string(),
            session,
            max_in_flight: cfg.max_in_flight.max(1),
            ack_timeout: cfg.ack_timeout,
            replay_rate: f64::from(cfg.replay_rate),
            // Room for the topic and MQTT's own header.
            max_payload: cfg.max_packet_size.saturating_sub(topics.root.len() + 128).max(1024),
            topics,
            live_from: head_seq,
            live_cursor: head_seq,
            live: VecDeque::new(),
            hist_cursor: 0,
            hist_done: false,
            hist: VecDeque::new(),
            resend: None,
            resend_items: VecDeque::new(),
            in_flight: BTreeMap::new(),
            hist_in_flight: 0,
            // A little burst at the start, then the rate.
            tokens: 1.0,
            refilled: Instant::now(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Asks for items `from..=to` (uplink sequence numbers) to be sent again.
    pub fn resend(&mut self, from_useq: i64, to_useq: i64) {
        self.resend = Some(Resend { from_useq, to_useq, cursor: 0, done: false });
        self.resend_items.clear();
    }

    /// Items were given to this destination behind the lanes' cursors (unrouted items routed
    /// again): walk the journal again from the start, as backlog, skipping what is in flight.
    pub fn rescan(&mut self) {
        if let Some(first) = self.live.front() {
            self.live_cursor = first.seq - 1;
        }
        self.live.clear();
        self.live_from = self.live_cursor;
        self.hist_cursor = 0;
        self.hist_done = false;
        self.hist.clear();
    }

    /// Central acknowledged `seq` (the journal releases it separately). Returns the item's id
    /// if it was waiting.
    pub fn acked(&mut self, seq: i64) -> Option<Sent> {
        let sent = self.in_flight.remove(&seq)?;
        if sent.historical {
            self.hist_in_flight = self.hist_in_flight.saturating_sub(1);
        }
        Some(sent)
    }

    /// Sends what may be sent now: live items first, then historical ones as the rate allows.
    pub async fn pump(
        &mut self,
        reader: &SharedReader,
        head_seq: i64,
        out: &mut Outbox,
    ) -> Result<Pumped, JournalError> {
        let mut done = Pumped::default();
        self.refill();
        // A tenth of the window is kept for live items, so a fresh result never waits behind
        // the backlog for room.
        let hist_share = self.max_in_flight.saturating_sub((self.max_in_flight / 10).max(1)).max(1);
        while out.ready() && self.in_flight.len() < self.max_in_flight {
            if let Some(item) = self.next_live(reader, head_seq).await? {
                self.send(item, false, out);
                done.items += 1;
                continue;
            }
            if self.tokens < 1.0 || self.hist_in_flight >= hist_share {
                break;
            }
            let item = match self.next_resend(reader).await? {
                Some(item) => Some(item),
                None => self.next_hist(reader).await?,
            };
            let Some(item) = item else { break };
            self.tokens -= 1.0;
            self.send(item, true, out);
            done.items += 1;
        }
        Ok(done)
    }

    /// Sends again items central has not acknowledged within `ack_timeout`. Returns the seqs
    /// re-sent (the caller records the missed acknowledgement).
    pub async fn resend_overdue(&mut self, reader: &SharedReader, out: &mut Outbox) -> Result<Vec<i64>, JournalError> {
        let now = Instant::now();
        let overdue: Vec<i64> = self
            .in_flight
            .iter()
            .filter(|(_, s)| now.duration_since(s.at) >= self.ack_timeout)
            .map(|(seq, _)| *seq)
            .take(FETCH)
            .collect();
        let mut resent = Vec::new();
        for seq in overdue {
            if !out.ready() {
                break;
            }
            let dest = self.dest.clone();
            match reader.read(move |r| r.uplink_one(&dest, seq)).await? {
                Some(item) => {
                    let historical = self.in_flight.get(&seq).is_some_and(|s| s.historical);
                    self.publish(&item, historical, out);
                    if let Some(s) = self.in_flight.get_mut(&seq) {
                        s.at = Instant::now();
                    }
                    resent.push(seq);
                }
                // Acknowledged in the meantime (or purged): nothing to wait for.
                None => {
                    self.acked(seq);
                }
            }
        }
        Ok(resent)
    }

    fn refill(&mut self) {
        let now = Instant::now();
        // At most a tenth of a second's worth at once (and never more than the window).
        let burst = (self.replay_rate / 10.0).clamp(1.0, self.max_in_flight as f64);
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.replay_rate).min(burst);
        self.refilled = now;
    }

    fn send(&mut self, item: UplinkItem, historical: bool, out: &mut Outbox) {
        self.publish(&item, historical, out);
        if historical {
            self.hist_in_flight += 1;
        }
        if let Some(prev) = self.in_flight.insert(item.seq, Sent { id: item.id, at: Instant::now(), historical })
            && prev.historical
        {
            self.hist_in_flight = self.hist_in_flight.saturating_sub(1);
        }
    }

    fn publish(&self, item: &UplinkItem, historical: bool, out: &mut Outbox) {
        let topic = self.topics.msg(&item.source);
        for payload in item_payloads(item, self.session, historical, self.max_payload) {
            out.push(topic.clone(), rumqttc::QoS::AtLeastOnce, false, payload);
        }
    }

    async fn next_live(&mut self, reader: &SharedReader, head_seq: i64) -> Result<Option<UplinkItem>, JournalError> {
        if self.live.is_empty() && self.live_cursor < head_seq {
            let (dest, after) = (self.dest.clone(), self.live_cursor);
            // Up to the synced head: an uplink number, once published, is never given again.
            let items = reader.read(move |r| r.uplink_pending(&dest, after, head_seq, FETCH)).await?;
            // Everything up to the head we were told of has been looked at (items that came in
            // during the read may be in the batch already; later ones are above the head).
            self.live_cursor = match items.last() {
                Some(last) if items.len() == FETCH => last.seq,
                Some(last) => last.seq.max(head_seq),
                None => head_seq,
            };
            self.live.extend(items);
        }
        Ok(self.live.pop_front())
    }

    async fn next_hist(&mut self, reader: &SharedReader) -> Result<Option<UplinkItem>, JournalError> {
        if self.hist.is_empty() && !self.hist_done {
            let (dest, after, upto) = (self.dest.clone(), self.hist_cursor, self.live_from);
            let items = reader.read(move |r| r.uplink_pending(&dest, after, upto, FETCH)).await?;
            if items.len() < FETCH {
                self.hist_done = true;
            }
            if let Some(last) = items.last() {
                self.hist_cursor = last.seq;
            }
            // Skip what is already waiting for an acknowledgement (sent live or re-sent).
            self.hist.extend(items.into_iter().filter(|i| !self.in_flight.contains_key(&i.seq)));
        }
        Ok(self.hist.pop_front())
    }

    async fn next_resend(&mut self, reader: &SharedReader) -> Result<Option<UplinkItem>, JournalError> {
        let Some(r) = self.resend.as_mut() else { return Ok(None) };
        if self.resend_items.is_empty() && !r.done {
            let (dest, from, to, after) = (self.dest.clone(), r.from_useq, r.to_useq, r.cursor);
            let items = reader.read(move |rd| rd.uplink_range(&dest, from, to, after, FETCH)).await?;
            if items.len() < FETCH {
                r.done = true;
            }
            if let Some(last) = items.last() {
                r.cursor = last.seq;
            }
            self.resend_items.extend(items);
        }
        let next = self.resend_items.pop_front();
        if next.is_none() && self.resend.as_ref().is_some_and(|r| r.done) {
            self.resend = None;
        }
        Ok(next)
    }
}
