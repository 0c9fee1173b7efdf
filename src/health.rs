//! Proof of life, for a watchdog: the async runtime schedules tasks and the journal's writer
//! thread takes requests and commits. Cheap enough to run every few seconds: the writer's
//! answer is an empty transaction, which writes nothing and syncs nothing.

use std::time::Duration;

use crate::journal::{Journal, JournalError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error(
        "the journal writer has not answered for {0:?} (a stalled disk or a hung fsync); items cannot be \
         stored; check the disk with `dmesg` and the journal's filesystem"
    )]
    JournalStalled(Duration),
    #[error("the journal writer has stopped")]
    JournalStopped,
    #[error("the journal cannot commit: {0}")]
    JournalFailing(String),
}

/// Checks that the journal writer answers within `within`. Getting an answer at all proves the
/// runtime runs (this is a task on it); a wedged writer or a stalled runtime gives none.
pub async fn check(journal: &Journal, within: Duration) -> Result<(), Unhealthy> {
    match tokio::time::timeout(within, journal.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(JournalError::Closed)) => Err(Unhealthy::JournalStopped),
        Ok(Err(e)) => Err(Unhealthy::JournalFailing(e.to_string())),
        Err(_) => Err(Unhealthy::JournalStalled(within)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Limits;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_blocked_on_the_database_is_reported_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let limits = Limits { uplink_destination: None, max_bytes: 1 << 30, min_free_disk: 0, dedup_window_ms: 60_000 };
        let journal = Journal::open(&path, limits).unwrap();
        assert_eq!(check(&journal, Duration::from_secs(30)).await, Ok(()));

        // Another connection holds the write lock: the writer waits on it (busy timeout), as it
        // would on a disk that does not answer.
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert_eq!(
            check(&journal, Duration::from_millis(300)).await,
            Err(Unhealthy::JournalStalled(Duration::from_millis(300)))
        );
        blocker.execute_batch("ROLLBACK").unwrap();
        drop(blocker);
        // Once the lock is gone the writer answers again (generous: it may still be finishing
        // the request that timed out).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match check(&journal, Duration::from_secs(10)).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("still unhealthy: {e}"),
                Err(_) => {}
            }
        }
        tokio::task::spawn_blocking(move || journal.close()).await.unwrap();
    }
}
