//! Intake and delivery through the real binary.

use std::collections::HashSet;

use crate::support::*;

#[test]
fn concurrent_stream_arrives_everywhere_byte_identical_and_in_order() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let addr = daemon.addr("ehr");
    const CONNS: usize = 8;
    const PER_CONN: usize = 250;
    let threads: Vec<_> = (0..CONNS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut sent = Vec::new();
                for i in 0..PER_CONN {
                    let msg = adt(&format!("C{c}-{i:04}"));
                    let ack = client.send(&msg);
                    assert_eq!(ack_code(&ack), "AA", "{ack}");
                    assert_eq!(ack_control_id(&ack), format!("C{c}-{i:04}"));
                    sent.push(msg);
                }
                sent
            })
        })
        .collect();
    let sent: Vec<Vec<Vec<u8>>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let total = CONNS * PER_CONN;

    wait_for("every message at the sink", DEADLINE, || (sink.count() >= total).then_some(()));
    let received = sink.messages();
    assert_eq!(received.len(), total, "no duplicates without crashes");
    // Per connection, the sink saw that connection's messages in the order they were sent.
    for (c, msgs) in sent.iter().enumerate() {
        let prefix = format!("C{c}-");
        let seen: Vec<&Vec<u8>> = received.iter().filter(|m| field(m, 10).starts_with(&prefix)).collect();
        assert_eq!(seen.len(), msgs.len());
        for (a, b) in seen.iter().zip(msgs) {
            assert_eq!(*a, b, "byte-identical and in order");
        }
    }
    let archive = daemon.path("archive");
    wait_for("every message in the archive", DEADLINE, || (files_in(&archive).len() >= total).then_some(()));
    let all_sent: HashSet<Vec<u8>> = sent.into_iter().flatten().collect();
    let files: HashSet<Vec<u8>> = files_in(&archive).iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(files, all_sent);
    // File names sort in journal order, so the archive is in arrival order as well.
    let status = daemon.status();
    let lis = status["destinations"].as_array().unwrap().iter().find(|d| d["name"] == "lis").unwrap().clone();
    assert_eq!(lis["pending"], 0);
    assert_eq!(status["sources"][0]["received"], total as u64);
}

#[test]
fn ack_mirrors_the_message_header() {
    let sink = Sink::start(SinkMode::Accept);
    let daemon = Daemon::start(&basic_config(sink.addr));
    let mut client = Client::connect(daemon.addr("ehr"));
    let ack = client.send(&adt("HDR-1"));
    let msh: Vec<&str> = ack.split('\r').next().unwrap().split('|').collect();
    assert_eq!(&msh[2..6], &["LIS", "LAB", "EHR", "CLINIC"], "MSH-3/4 and 5/6 swapped: {ack}");
    assert!(msh[8].starts_with("ACK"), "{ack}");
    assert_eq!(msh[10], "P");
    assert_eq!(msh[11], "2.5");
    assert_eq!(ack_code(&ack), "AA");
    assert_eq!(ack_control_id(&ack), "HDR-1");
}

#[test]
fn kill_9_during_a_stream_loses_nothing_acknowledged() {
    kill_9_cycles(Vec::new());
}

/// The kill -9 cycles with every sync 2 ms slower (the slow-sync shim, as on a gateway's SD
/// card): synced intake commits and unsynced progress commits interleave differently, and
/// nothing acknowledged may be lost.
#[test]
fn kill_9_during_a_stream_on_slow_syncs_loses_nothing_acknowledged() {
    if crate::slowsync::slowsync_unavailable("kill_9_during_a_stream_on_slow_syncs_loses_nothing_acknowledged") {
        return;
    }
    let counters = tempfile::tempdir().unwrap();
    let counts = counters.path().join("syncs");
    kill_9_cycles(crate::slowsync::slowsync_env(2000, &counts));
    let synced = crate::slowsync::Counts::read(&counts).get(crate::slowsync::Slot::WalCommit);
    assert!(synced > 0, "the shim slowed and counted the daemon's commits: {synced}");
}

/// Five rounds of: four connections streaming, the daemon killed at a point that varies,
/// started again. Every acknowledged message is delivered afterwards.
fn kill_9_cycles(env: Vec<(String, String)>) {
    let sink = Sink::start(SinkMode::Accept);
    let mut daemon = Daemon::start_with_env(tempfile::tempdir().unwrap(), &basic_config(sink.addr), env);
    let mut acked: Vec<String> = Vec::new();
    let mut seq = 0usize;
    for round in 0..5 {
        let addr = daemon.addr("ehr");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let sender = std::thread::spawn(move || {
            let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
            let mut i = 0usize;
            loop {
                let id = format!("K{round}-{:05}", seq + i);
                let c = &mut clients[i % 4];
                match c.try_send(&adt(&id)) {
                    Some(ack) if ack_code(&ack) == "AA" => {
                        if tx.send(id).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
                i += 1;
            }
        });
        // Let some messages through, then kill at a point that varies by round.
        let want = 50 + round * 37;
        let mut got = 0;
        while got < want {
            acked.push(rx.recv_timeout(DEADLINE).expect("acks while the daemon runs"));
            got += 1;
        }
        daemon.kill9();
        let _ = sender.join();
        while let Ok(id) = rx.try_recv() {
            acked.push(id);
        }
        seq += 100_000;
        daemon.spawn();
    }
    let expected: HashSet<String> = acked.iter().cloned().collect();
    assert_eq!(expected.len(), acked.len());
    wait_for("every acknowledged message delivered after the restarts", DEADLINE, || {
        let seen: HashSet<String> = sink.messages().iter().map(|m| field(m, 10)).collect();
        expected.is_subset(&seen).then_some(())
    });
    let delivered = sink.messages();
    let distinct: HashSet<String> = delivered.iter().map(|m| field(m, 10)).collect();
    let duplicates = delivered.len() - distinct.len();
    eprintln!(
        "kill -9 x5: {} acknowledged, {} delivered, {} duplicate deliveries",
        acked.len(),
        delivered.len(),
        duplicates
    );
    // Duplicates come only from deliveries whose record had not been committed when the process
    // died: a handful per crash, never a replay of everything delivered before.
    assert!(duplicates <= 5 * 100, "{duplicates} duplicates");
    assert!(distinct.iter().all(|id| id.starts_with('K')), "only what was sent is delivered");
}

/// A progress record that never became durable (the daemon dies after its destination took an
/// item and before it recorded that; on a gateway, a power cut between an unsynced progress
/// commit and the next synced one does the same): the item is delivered again after the
/// restart, and the destination, another outpost, recognises and counts the duplicate. It is
/// never skipped.
#[test]
fn a_lost_progress_record_means_the_item_is_delivered_again_never_skipped() {
    // The destination: a second outpost, which counts retransmissions.
    let downstream = Daemon::start(&single_route_config("", dead_addr(), "", ""));
    // One destination only: the failpoint fires at the first delivery of any destination.
    let mut daemon = Daemon::start_with_env(
        tempfile::tempdir().unwrap(),
        &single_route_config("", downstream.addr("ehr"), "", ""),
        vec![("OUTPOST_FAILPOINT".into(), outpost::failpoint::ABORT_AFTER_DELIVERY.into())],
    );
    let mut client = Client::connect(daemon.addr("ehr"));
    assert_eq!(ack_code(&client.send(&adt("LOST-1"))), "AA");
    // Delivered downstream, then the daemon dies before recording it.
    let mut child = daemon.child.take().expect("running");
    let status = wait_for("the daemon to abort at the failpoint", DEADLINE, || child.try_wait().ok().flatten());
    assert!(!status.success(), "{status:?}");
    let received = |d: &Daemon| d.status()["sources"][0]["received"].as_u64();
    assert_eq!(received(&downstream), Some(1));
    // Restarted without the failpoint: the item is still pending, and goes again.
    daemon.env.clear();
    daemon.spawn();
    wait_for("the retransmission recognised downstream", DEADLINE, || {
        (downstream.status()["sources"][0]["duplicates"].as_u64() == Some(1)).then_some(())
    });
    assert_eq!(received(&downstream), Some(1), "stored once downstream");
    wait_for("the item delivered", DEADLINE, || {
        let items = daemon.items();
        (items.len() == 1 && items[0]["deliveries"][0]["state"] == "delivered").then_some(())
    });
}
