//! Recognising retransmissions without a random-access index on disk.
//!
//! A sender that did not get its ACK sends the same message again, usually within seconds. To
//! answer it without storing the item twice, the writer remembers the most recent items by
//! (source, control id): the last [`CAPACITY`] items, and none older than the dedup window.
//! A hit is confirmed against the journal (same source, control id and bytes), so a hash
//! collision costs one lookup, never a wrong answer. The memory is rebuilt from the journal at
//! start, so a retransmission after a crash is recognised too.
//!
//! An index on (source, control_id) in SQLite would do the same for any window, but it puts a
//! random page into every commit (control ids from 32 senders are 32 places in the tree), which
//! costs about a third of intake throughput. At clinic volumes [`CAPACITY`] items are hours.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// Items remembered at most (about 1.5 MiB).
pub const CAPACITY: usize = 32 * 1024;

#[derive(Default)]
pub struct Recent {
    /// key → (seq, received_at) of the newest item with that key.
    by_key: HashMap<u64, (i64, i64)>,
    /// (received_at, key, seq) in journal order, for expiry.
    order: VecDeque<(i64, u64, i64)>,
}

pub fn key(source: &str, control_id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    control_id.hash(&mut h);
    h.finish()
}

impl Recent {
    /// The seq of the newest remembered item with this key, received at or after `since`.
    pub fn candidate(&self, key: u64, since: i64) -> Option<i64> {
        self.by_key.get(&key).filter(|(_, at)| *at >= since).map(|(seq, _)| *seq)
    }

    pub fn remember(&mut self, key: u64, seq: i64, received_at: i64) {
        self.by_key.insert(key, (seq, received_at));
        self.order.push_back((received_at, key, seq));
        while self.order.len() > CAPACITY {
            self.forget_oldest();
        }
    }

    /// Drops entries received before `before`.
    pub fn expire(&mut self, before: i64) {
        while self.order.front().is_some_and(|(at, _, _)| *at < before) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, key, seq)) = self.order.pop_front()
            && self.by_key.get(&key).is_some_and(|(s, _)| *s == seq)
        {
            self.by_key.remove(&key);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_newest_and_forgets_by_age_and_count() {
        let mut r = Recent::default();
        let k = key("ehr", "42");
        r.remember(k, 1, 1000);
        assert_eq!(r.candidate(k, 0), Some(1));
        assert_eq!(r.candidate(k, 1001), None, "outside the window");
        r.remember(k, 2, 2000);
        assert_eq!(r.candidate(k, 0), Some(2));
        r.expire(1500);
        assert_eq!(r.candidate(k, 0), Some(2), "the newer entry survives expiry of the older");
        r.expire(2500);
        assert_eq!(r.candidate(k, 0), None);
        for i in 0..(CAPACITY as i64 + 10) {
            r.remember(key("ehr", &i.to_string()), i, 3000);
        }
        assert_eq!(r.len(), CAPACITY);
        assert_eq!(r.candidate(key("ehr", "0"), 0), None, "the oldest fell out");
        assert!(r.candidate(key("ehr", &(CAPACITY as i64).to_string()), 0).is_some());
        assert_ne!(key("a", "bc"), key("ab", "c"));
    }
}
