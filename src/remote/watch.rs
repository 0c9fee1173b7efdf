//! The watch on a config from central, as a state machine with no IO: what arrives, what the
//! health checks found and the time go in; what to do comes out. The daemon's supervisor does
//! the applying, writing and publishing.
//!
//! At most one config is watched at a time. One that arrives meanwhile waits (the newest
//! wins), and is taken up once the watched one is kept or rolled back.

use tokio::time::Instant;

use super::{ConfigSet, ConfigState, ConfigStatus, hash};
use crate::config::Config;

/// A config from central applied and being watched before it is kept.
#[derive(Debug)]
pub struct Watched {
    pub set: ConfigSet,
    /// What to go back to.
    pub previous: Config,
    /// Unix ms when it was applied (the uplink must have connected after this).
    pub applied_at: i64,
    /// When it is rolled back unless healthy.
    pub deadline: Instant,
    /// Whether applying it restarted the uplink (its reconnection is then part of the check).
    pub uplink_restarted: bool,
}

/// What to do with a config that arrived.
#[derive(Debug, PartialEq)]
pub enum Triage {
    /// The same config already runs: answer with this status again.
    AlreadyRunning(ConfigStatus),
    /// Seen before, and it was rejected or rolled back: answer the same.
    SeenBefore(ConfigStatus),
    /// Check and apply it.
    New(ConfigSet),
    /// Another is being watched; this one waits its turn.
    Queued,
}

/// The verdict of one health check on the watched config.
#[derive(Debug)]
pub enum Verdict {
    /// Everything is up on the new settings: keep it.
    Healthy(Watched),
    /// Its deadline passed with these problems: roll it back.
    Failed(Watched, Vec<String>),
    /// Not yet healthy, and there is time left (or nothing is watched).
    Waiting,
}

#[derive(Debug, Default)]
pub struct RemoteWatch {
    watched: Option<Watched>,
    queued: Option<ConfigSet>,
}

impl RemoteWatch {
    pub fn is_watching(&self) -> bool {
        self.watched.is_some()
    }

    pub fn watched(&self) -> Option<&Watched> {
        self.watched.as_ref()
    }

    /// Decides what to do with a config from central, given the running config's hash and the
    /// last status published.
    pub fn triage(&mut self, set: ConfigSet, running_hash: &str, last: Option<&ConfigStatus>) -> Triage {
        if self.watched.is_some() {
            self.queued = Some(set);
            return Triage::Queued;
        }
        if hash(&set.toml).eq_ignore_ascii_case(running_hash) && set.hash.eq_ignore_ascii_case(running_hash) {
            // A retained desired state, or a repeat: say so again (with the first answer's time).
            let status = match last {
                Some(l) if l.hash == set.hash && l.status == ConfigState::Applied => l.clone(),
                _ => ConfigStatus::new(&set, ConfigState::Applied, Vec::new()),
            };
            return Triage::AlreadyRunning(status);
        }
        if let Some(l) = last
            && l.hash.eq_ignore_ascii_case(&set.hash)
            && matches!(l.status, ConfigState::Rejected | ConfigState::RolledBack)
        {
            return Triage::SeenBefore(l.clone());
        }
        Triage::New(set)
    }

    /// Starts watching an applied config.
    pub fn watch(&mut self, watched: Watched) {
        self.watched = Some(watched);
    }

    /// Judges the watched config on the problems found now.
    pub fn check(&mut self, problems: Vec<String>, now: Instant) -> Verdict {
        match self.watched.take() {
            None => Verdict::Waiting,
            Some(w) if problems.is_empty() => Verdict::Healthy(w),
            Some(w) if now >= w.deadline => Verdict::Failed(w, problems),
            Some(w) => {
                self.watched = Some(w);
                Verdict::Waiting
            }
        }
    }

    /// A local reload replaces whatever central's config was being watched.
    pub fn supersede(&mut self) -> Option<Watched> {
        self.watched.take()
    }

    /// The config that waited while another was watched, once none is.
    pub fn next_queued(&mut self) -> Option<ConfigSet> {
        if self.watched.is_some() { None } else { self.queued.take() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TOML: &str = "[node]\nsite = \"s\"\nid = \"n\"\nstate_dir = \"/tmp/outpost-watch-test\"\n";

    fn set(toml: &str) -> ConfigSet {
        ConfigSet { version: "v2".into(), hash: hash(toml), toml: toml.into(), from: None }
    }

    fn watched(toml: &str, deadline: Instant) -> Watched {
        Watched {
            set: set(toml),
            previous: Config::parse(TOML, "t").unwrap(),
            applied_at: 0,
            deadline,
            uplink_restarted: false,
        }
    }

    #[test]
    fn a_running_config_is_answered_again_and_a_rejected_one_the_same_way() {
        let mut w = RemoteWatch::default();
        let running = hash(TOML);
        assert!(matches!(w.triage(set(TOML), &running, None),
            Triage::AlreadyRunning(s) if s.status == ConfigState::Applied));
        let other = format!("{TOML}# changed\n");
        let rejected = ConfigStatus::new(&set(&other), ConfigState::Rejected, vec!["bad".into()]);
        assert_eq!(w.triage(set(&other), &running, Some(&rejected)), Triage::SeenBefore(rejected.clone()));
        let applying = ConfigStatus::new(&set(&other), ConfigState::Applying, vec![]);
        assert_eq!(w.triage(set(&other), &running, Some(&applying)), Triage::New(set(&other)));
    }

    #[test]
    fn while_one_is_watched_the_newest_arrival_waits() {
        let mut w = RemoteWatch::default();
        let now = Instant::now();
        w.watch(watched("a = 1", now + Duration::from_secs(60)));
        assert_eq!(w.triage(set("b = 1"), "x", None), Triage::Queued);
        assert_eq!(w.triage(set("c = 1"), "x", None), Triage::Queued);
        assert_eq!(w.next_queued(), None, "nothing is taken up while one is watched");
        assert!(matches!(w.check(vec![], now), Verdict::Healthy(_)));
        assert_eq!(w.next_queued().map(|s| s.toml), Some("c = 1".to_string()));
        assert_eq!(w.next_queued(), None);
    }

    #[test]
    fn problems_wait_until_the_deadline_then_roll_back() {
        let mut w = RemoteWatch::default();
        let now = Instant::now();
        w.watch(watched("a = 1", now + Duration::from_secs(60)));
        assert!(matches!(w.check(vec!["source x is down".into()], now), Verdict::Waiting));
        assert!(w.is_watching());
        match w.check(vec!["source x is down".into()], now + Duration::from_secs(60)) {
            Verdict::Failed(f, problems) => {
                assert_eq!(f.set.toml, "a = 1");
                assert_eq!(problems, vec!["source x is down".to_string()]);
            }
            other => panic!("expected a rollback, got {other:?}"),
        }
        assert!(!w.is_watching());
        assert!(matches!(w.check(vec![], now), Verdict::Waiting), "nothing watched");
    }

    #[test]
    fn a_local_reload_supersedes_the_watched_config() {
        let mut w = RemoteWatch::default();
        w.watch(watched("a = 1", Instant::now()));
        assert_eq!(w.supersede().map(|s| s.set.toml), Some("a = 1".into()));
        assert!(!w.is_watching());
    }
}
