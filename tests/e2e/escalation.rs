//! Escalations: thresholds raise an event once (log at warn, `status`, `tail`) and clear it.

use crate::support::*;

fn escalations(daemon: &Daemon) -> Vec<serde_json::Value> {
    daemon.status()["escalations"].as_array().cloned().unwrap_or_default()
}

fn has(daemon: &Daemon, code: &str, subject: &str) -> bool {
    escalations(daemon).iter().any(|e| e["code"] == code && e["subject"] == subject)
}

#[test]
fn a_stalled_destination_raises_undelivered_and_unreachable_then_clears() {
    let dead = dead_addr();
    let config = single_route_config(
        "[escalation]
undelivered_after = \"1s\"
unreachable_after = \"1s\"
check_interval = \"1s\"",
        dead,
        "",
        "",
    );
    let daemon = Daemon::start(&config);
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("E-1"))), "AA");
    wait_for("both escalations", DEADLINE, || {
        (has(&daemon, "undelivered", "lis") && has(&daemon, "unreachable", "lis")).then_some(())
    });
    let log = daemon.log();
    assert!(log.contains("WARN") && log.contains("escalation"), "escalations are logged at warn");
    assert!(!log.contains("TEST^PATIENT"), "no patient data in the log");
    // Once the destination comes up, both clear.
    let sink = Sink::start_on(&dead.to_string(), SinkMode::Accept);
    wait_for("delivery", DEADLINE, || (sink.count() == 1).then_some(()));
    wait_for("both escalations to clear", DEADLINE, || escalations(&daemon).is_empty().then_some(()));
    assert!(daemon.log().contains("cleared"));
}

#[test]
fn the_journal_above_its_high_water_mark_is_escalated() {
    let dead = dead_addr();
    let config = single_route_config(
        "[journal]
max_bytes = \"4KiB\"
high_water = 0.5

[escalation]
check_interval = \"1s\"",
        dead,
        "",
        "",
    );
    let daemon = Daemon::start(&config);
    let mut client = Client::connect(daemon.addr("ehr"));
    let mut sent = 0;
    while daemon.status()["journal"]["stored_bytes"].as_u64().unwrap() <= 2048 {
        assert_eq!(ack_code(&client.send(&adt(&format!("HW-{sent}")))), "AA");
        sent += 1;
    }
    wait_for("the high-water escalation", DEADLINE, || has(&daemon, "high_water", "journal").then_some(()));
}

#[test]
fn too_little_free_disk_answers_ar_and_says_why() {
    // A free-space floor no disk can meet: the real statvfs check refuses every item.
    let dead = dead_addr();
    let config = single_route_config(
        "[journal]
min_free_disk = \"1000000TiB\"",
        dead,
        "",
        "",
    );
    let daemon = Daemon::start(&config);
    let mut client = Client::connect(daemon.addr("ehr"));
    let ack = client.send(&adt("DF-1"));
    assert_eq!(ack_code(&ack), "AR", "{ack}");
    assert!(ack.contains("disk nearly full"), "{ack}");
    let status = daemon.status();
    assert_eq!(status["journal"]["items"], 0, "nothing stored");
    assert_eq!(status["sources"][0]["refused"], 1);
    assert!(has(&daemon, "journal_full", "journal"), "raised and still active while items are refused");
}

#[test]
fn items_left_for_a_removed_destination_are_escalated_until_it_is_back() {
    let dead = dead_addr();
    let top = "[escalation]\ncheck_interval = \"1s\"";
    let daemon = Daemon::start(&single_route_config(top, dead, "", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("ORPH-1"))), "AA");
    // The destination is renamed: the item still waits for the old name.
    let renamed = single_route_config(top, dead, "", "")
        .replace("name = \"lis\"", "name = \"lis2\"")
        .replace("to = [\"lis\"]", "to = [\"lis2\"]");
    daemon.rewrite_config(&renamed);
    assert_success(&daemon.cli(&["reload"]));
    wait_for("the orphaned escalation", DEADLINE, || has(&daemon, "orphaned", "lis").then_some(()));
    daemon.rewrite_config(&single_route_config(top, dead, "", ""));
    assert_success(&daemon.cli(&["reload"]));
    wait_for("the orphaned escalation to clear", DEADLINE, || (!has(&daemon, "orphaned", "lis")).then_some(()));
}

#[test]
fn free_disk_below_twice_the_floor_raises_low_disk_then_clears() {
    // A real 16 MiB filesystem under the journal; the floor is 5 MiB, so the warning starts
    // below 10 MiB free, while items are still taken.
    let disk = SmallDisk::mount("16m");
    let top = format!(
        "[journal]\npath = \"{}\"\nmin_free_disk = \"5MiB\"\n\n[escalation]\ncheck_interval = \"1s\"",
        disk.path("journal.db").display()
    );
    let daemon = Daemon::start(&single_route_config(&top, dead_addr(), "", ""));
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("LD-1"))), "AA");
    // Something else takes 8 MiB: about 8 MiB stay free.
    std::fs::write(disk.path("filler"), vec![0u8; 8 << 20]).unwrap();
    wait_for("the low_disk escalation", DEADLINE, || has(&daemon, "low_disk", "journal").then_some(()));
    assert_eq!(ack_code(&client.send(&adt("LD-2"))), "AA", "a warning, not yet a refusal");
    std::fs::remove_file(disk.path("filler")).unwrap();
    wait_for("low_disk to clear", DEADLINE, || (!has(&daemon, "low_disk", "journal")).then_some(()));
}

#[test]
fn an_item_matching_an_escalation_rule_raises_it_at_once_naming_the_tests_never_the_values() {
    let sink = Sink::start(SinkMode::Accept);
    let config = single_route_config(
        "[[escalation.rule]]
name = \"critical-result\"
when = { \"OBX-8\" = [\"HH\", \"LL\"] }",
        sink.addr,
        "",
        "",
    );
    let daemon = Daemon::start(&config);
    let mut client = Client::connect(daemon.addr("ehr"));
    // A normal result raises nothing; a critical one raises the rule with the item and its test.
    assert_eq!(ack_code(&client.send(&oru("R-1", "N"))), "AA");
    assert_eq!(ack_code(&client.send(&oru("R-2", "LL"))), "AA");
    let line = wait_for("the rule's escalation in the log", DEADLINE, || {
        daemon.log().lines().find(|l| l.contains("rule critical-result")).map(str::to_string)
    });
    assert!(line.contains("WARN") && line.contains("718-7") && line.contains("ORU^R01"), "{line}");
    assert!(!after_timestamp(&line).contains("7.1") && !line.contains("TEST^PATIENT"), "no value, no patient: {line}");
    assert_eq!(daemon.log().matches("rule critical-result").count(), 1, "only the critical result raises it");
}
