//! Waiting between attempts: delays with jitter (so a fleet of gateways does not retry in
//! step) and sleeps that end as soon as their task is cancelled.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// `d` scaled by a random factor in 0.8..1.2 (±20 %).
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.8..1.2))
}

/// Sleeps for `d`; returns true if `cancel` fired first.
pub async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(10)).as_secs_f64();
            assert!((8.0..12.0).contains(&d), "{d}");
        }
    }

    #[tokio::test]
    async fn a_sleep_ends_early_when_cancelled_and_says_so() {
        let cancel = CancellationToken::new();
        assert!(!sleep_or_cancel(Duration::from_millis(10), &cancel).await);
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        });
        let slept = tokio::time::timeout(Duration::from_secs(10), sleep_or_cancel(Duration::from_secs(3600), &cancel));
        assert_eq!(slept.await, Ok(true));
    }
}
