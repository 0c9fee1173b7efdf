//! The log under a burst: items are logged one by one only at debug, a summary of counts comes
//! at info, and per-item escalations are throttled and counted, so that journald's rate limit
//! (10,000 lines in 30 s, after which it drops every line of the service) is never reached by
//! traffic and a warning is never hidden by it.

use crate::support::*;

const UNROUTED: &str = r#"
[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "archive"
kind = "file"
dir = "archive"

[[route]]
name = "never"
from = ["ehr"]
when = { "MSH-9.1" = "ZZZ" }
to = ["archive"]
"#;

/// The items each summary line reports received (`in the last 1 s: 300 received, ...`).
fn summarised(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("in the last ")?..];
            let rest = &rest[rest.find(": ")? + 2..];
            rest.split(" received").next()?.trim().parse().ok()
        })
        .collect()
}

#[test]
fn a_burst_of_items_is_summarised_at_info_and_its_escalations_throttled() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("OUTPOST_LOG".to_string(), "info".to_string())];
    let daemon = Daemon::start_opts(dir, "log_summary = \"1s\"", UNROUTED, env);
    let mut client = Client::connect(daemon.addr("ehr"));
    for i in 0..N {
        assert_eq!(ack_code(&client.send(&adt(&format!("BURST-{i}")))), "AA");
    }

    // The summary accounts for every item (over one or more summaries).
    wait_for("summaries adding up to every item", DEADLINE, || {
        let received: u64 = summarised(&daemon.log()).iter().sum();
        (received == N as u64).then_some(())
    });
    // Each unrouted item raised an escalation: a few were logged one by one, the rest counted in
    // a warning that says how many.
    let (logged, suppressed) = wait_for("every escalation logged or counted", DEADLINE, || {
        let log = daemon.log();
        let logged = log.lines().filter(|l| l.contains("escalation:") && l.contains("matched no route")).count() as u64;
        let suppressed: u64 = log
            .lines()
            .filter(|l| l.contains("more `unrouted` escalations"))
            .filter_map(|l| l.split("count=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        (logged + suppressed == N as u64).then_some((logged, suppressed))
    });
    assert!(logged <= 20, "at most ten a minute are logged one by one: {logged}");
    assert!(suppressed >= (N - 20) as u64);

    // No per-item line at info: the log stays small however many items come.
    let log = daemon.log();
    assert!(!log.lines().any(|l| l.contains("BURST-") || (l.contains(" received") && l.contains("id="))), "{log}");
    assert!(log.lines().count() < 60, "{} lines for {N} items:\n{log}", log.lines().count());
}
