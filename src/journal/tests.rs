//! Journal tests against real SQLite files in a temporary directory.

use super::*;
use crate::envelope::{Kind, NewEnvelope, Status, Summary, now_ms};

fn limits() -> Limits {
    Limits { uplink_destination: None, max_bytes: 1 << 30, min_free_disk: 0, dedup_window_ms: 60_000 }
}

fn envelope(control_id: &str, body: &[u8], dests: &[&str]) -> NewEnvelope {
    NewEnvelope {
        source: "src".into(),
        kind: Kind::Hl7v2,
        received_at: now_ms(),
        status: Status::Accepted,
        body: body.to_vec(),
        summary: Summary::new("ADT^A01", control_id),
        charset: Some("utf-8".into()),
        routes: vec!["r".into()],
        destinations: dests.iter().map(|d| d.to_string()).collect(),
        note: None,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn concurrent_inserts_share_commits_and_keep_ids_in_journal_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..16 {
            let j = j.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let body = format!("MSH|{t}-{i}");
                    j.insert(envelope(&format!("{t}-{i}"), body.as_bytes(), &["a"])).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let commits = j.shared().commits.load(Ordering::Relaxed);
        assert_eq!(j.shared().inserts.load(Ordering::Relaxed), 800);
        assert!(commits < 800, "group commit should batch concurrent inserts, got {commits} commits for 800");
        let r = j.reader().unwrap();
        let pending = r.pending("a", 0, 1000).unwrap();
        assert_eq!(pending.len(), 800);
        for w in pending.windows(2) {
            assert!(w[0].seq < w[1].seq);
            assert!(w[0].id < w[1].id, "ids must sort in journal order");
        }
        j.close();
    });
}

#[test]
fn retransmission_is_recognised_and_different_bytes_are_not() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let j = Journal::open(&dir.path().join("j.db"), limits()).unwrap();
        let first = j.insert(envelope("42", b"MSH|same", &["a"])).await.unwrap();
        let again = j.insert(envelope("42", b"MSH|same", &["a"])).await.unwrap();
        let changed = j.insert(envelope("42", b"MSH|other", &["a"])).await.unwrap();
        let Inserted::Stored { id, .. } = &first else { panic!("{first:?}") };
        assert_eq!(again, Inserted::Duplicate { seq: 1, id: id.clone() });
        assert!(matches!(changed, Inserted::Stored { seq: 2, .. }));
        let r = j.reader().unwrap();
        assert_eq!(r.pending("a", 0, 10).unwrap().len(), 2);
        assert_eq!(r.show(id, false).unwrap().unwrap().duplicates, 1);
        j.close();
    });
}

#[test]
fn a_retransmission_is_recognised_after_a_restart_and_within_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        // Sent concurrently, likely in one group commit: still stored once.
        let (a, b) =
            tokio::join!(j.insert(envelope("7", b"MSH|seven", &["a"])), j.insert(envelope("7", b"MSH|seven", &["a"])));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            matches!(
                (&a, &b),
                (Inserted::Stored { .. }, Inserted::Duplicate { .. })
                    | (Inserted::Duplicate { .. }, Inserted::Stored { .. })
            ),
            "{a:?} {b:?}"
        );
        j.close();
    });
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        let again = j.insert(envelope("7", b"MSH|seven", &["a"])).await.unwrap();
        assert!(matches!(again, Inserted::Duplicate { seq: 1, .. }), "{again:?}");
        j.close();
    });
}

#[test]
fn size_cap_evicts_delivered_items_but_refuses_rather_than_drop_undelivered() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let lim = Limits { max_bytes: 1000, ..limits() };
        let j = Journal::open(&dir.path().join("j.db"), lim).unwrap();
        let body = vec![b'x'; 400];
        let Inserted::Stored { seq: s1, .. } = j.insert(envelope("1", &body, &["a"])).await.unwrap() else { panic!() };
        j.insert(envelope("2", &body, &["a"])).await.unwrap();
        // Third does not fit and nothing is delivered: refused.
        let err = j.insert(envelope("3", &body, &["a"])).await.unwrap_err();
        assert!(matches!(err, JournalError::Full { .. }), "{err}");
        assert!(err.is_capacity());
        assert!(err.to_string().contains("journal.max_bytes"));
        // Once the first is delivered it may be evicted to make room.
        j.update(DeliveryUpdate::Delivered { seq: s1, destination: "a".into() }).await.unwrap();
        j.insert(envelope("3", &body, &["a"])).await.unwrap();
        let r = j.reader().unwrap();
        let pending: Vec<i64> = r.pending("a", 0, 10).unwrap().iter().map(|p| p.seq).collect();
        assert_eq!(pending, vec![2, 3]);
        assert!(r.show("1", false).unwrap().is_none(), "the delivered item was evicted");
        assert_eq!(j.shared().stored_bytes.load(Ordering::Relaxed), 800);
        j.close();
    });
}

fn taken(name: &str, items: u64) -> TakenFile {
    TakenFile { source: "src".into(), name: name.into(), digest: format!("sha256:{name}"), size: 10, items }
}

#[test]
fn a_files_items_and_record_are_stored_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let lim = Limits { max_bytes: 1000, ..limits() };
        let j = Journal::open(&dir.path().join("j.db"), lim).unwrap();
        let body = vec![b'x'; 300];
        // Two items that fit: both stored, in order, with the record.
        let file = vec![envelope("F1", &body, &["a"]), envelope("F2", &body, &["a"])];
        let stored = j.insert_file(file, taken("ok.hl7", 2)).await.unwrap();
        assert!(matches!(stored[..], [Inserted::Stored { seq: 1, .. }, Inserted::Stored { seq: 2, .. }]), "{stored:?}");
        // Two more do not fit: the first of them alone would, but neither is stored, nor the
        // record, and the byte count is as before.
        let file = vec![envelope("F3", &body, &["a"]), envelope("F4", &body, &["a"])];
        let err = j.insert_file(file, taken("big.hl7", 2)).await.unwrap_err();
        assert!(matches!(err, JournalError::Full { .. }), "{err}");
        assert_eq!(j.shared().stored_bytes.load(Ordering::Relaxed), 600);
        // The next item gets the next seq: the refused file's took none.
        let Inserted::Stored { seq, .. } = j.insert(envelope("F5", &body, &["a"])).await.unwrap() else { panic!() };
        assert_eq!(seq, 3);
        let r = j.reader().unwrap();
        assert!(r.file_taken("src", "ok.hl7", "sha256:ok.hl7").unwrap());
        assert!(!r.file_taken("src", "big.hl7", "sha256:big.hl7").unwrap(), "no record for a refused file");
        let pending: Vec<i64> = r.pending("a", 0, 10).unwrap().iter().map(|p| p.seq).collect();
        assert_eq!(pending, vec![1, 2, 3]);
        // A file holding a retransmission of a stored item: recognised inside the file too.
        let again = j.insert_file(vec![envelope("F1", &body, &["a"])], taken("again.hl7", 1)).await.unwrap();
        assert!(matches!(again[..], [Inserted::Duplicate { seq: 1, .. }]), "{again:?}");
        // An empty file is recorded with no item.
        assert!(j.insert_file(Vec::new(), taken("empty.hl7", 0)).await.unwrap().is_empty());
        assert!(r.file_taken("src", "empty.hl7", "sha256:empty.hl7").unwrap());
        drop(r);
        j.close();
    });
}

#[test]
fn an_item_and_its_derived_items_are_stored_together_and_name_each_other() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let lim = Limits { max_bytes: 1000, ..limits() };
        let j = Journal::open(&dir.path().join("j.db"), lim).unwrap();
        let body = vec![b'x'; 300];
        let stored = j
            .insert_linked(
                envelope("L1", &body, &["a"]),
                vec![envelope("D1", &body, &["b"]), envelope("D2", b"y", &["b"])],
            )
            .await
            .unwrap();
        let ids: Vec<String> = stored
            .iter()
            .map(|i| match i {
                Inserted::Stored { id, .. } => id.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        let r = j.reader().unwrap();
        let primary = r.show(&ids[0], false).unwrap().unwrap();
        assert_eq!(primary.summary.fields.get("derived"), Some(&format!("{},{}", ids[1], ids[2])));
        for derived in &ids[1..] {
            let item = r.show(derived, false).unwrap().unwrap();
            assert_eq!(item.summary.fields.get("derived_from"), Some(&ids[0]));
        }
        // The lab message sent again: recognised, and nothing derived is stored twice.
        let again = j.insert_linked(envelope("L1", &body, &["a"]), vec![envelope("D3", &body, &["b"])]).await.unwrap();
        assert!(matches!(again[..], [Inserted::Duplicate { seq: 1, .. }]), "{again:?}");
        // Too big together: none of them is stored.
        let err =
            j.insert_linked(envelope("L2", &body, &["a"]), vec![envelope("D4", &body, &["b"])]).await.unwrap_err();
        assert!(err.is_capacity(), "{err}");
        let Inserted::Stored { seq, .. } = j.insert(envelope("L3", b"z", &["a"])).await.unwrap() else { panic!() };
        assert_eq!(seq, 4, "the refused pair took no seq");
        drop(r);
        j.close();
    });
}

#[test]
fn an_instruments_resend_with_a_new_header_time_is_recognised_and_a_changed_result_is_not() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let j = Journal::open(&dir.path().join("j.db"), limits()).unwrap();
        let astm = |h14: &str, value: &str| NewEnvelope {
            kind: Kind::Astm,
            body: format!("H|\\^&|||AN|||||||P|LIS2-A2|{h14}\rO|1|S1\rR|1|^^^K|{value}\rL|1|N\r").into_bytes(),
            summary: Summary::new("results", "S1"),
            ..envelope("S1", b"", &["a"])
        };
        let first = j.insert(astm("20260101120000", "4.1")).await.unwrap();
        let again = j.insert(astm("20260101120512", "4.1")).await.unwrap();
        assert!(matches!(again, Inserted::Duplicate { seq: 1, .. }), "the header restamped: {first:?} {again:?}");
        let rerun = j.insert(astm("20260101121000", "4.2")).await.unwrap();
        assert!(matches!(rerun, Inserted::Stored { seq: 2, .. }), "{rerun:?}");
        // HL7 senders resend as they sent: a different first line is a different message.
        let hl7 = |msh: &str| envelope("C9", format!("MSH|{msh}\rPID|1\r").as_bytes(), &["a"]);
        j.insert(hl7("a")).await.unwrap();
        assert!(matches!(j.insert(hl7("b")).await.unwrap(), Inserted::Stored { .. }));
        assert!(matches!(j.insert(hl7("b")).await.unwrap(), Inserted::Duplicate { .. }));
        j.close();
    });
}

#[test]
fn only_what_an_acknowledgement_waits_on_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let j = Journal::open(&dir.path().join("j.db"), limits()).unwrap();
        let synced = || j.shared().synced_commits.load(Ordering::Relaxed);
        let commits = || j.shared().commits.load(Ordering::Relaxed);
        let Inserted::Stored { seq, .. } = j.insert(envelope("S1", b"MSH|x", &["a"])).await.unwrap() else { panic!() };
        assert_eq!((commits(), synced()), (1, 1), "an item is synced before its ACK");
        j.update(DeliveryUpdate::Delivered { seq, destination: "a".into() }).await.unwrap();
        j.barrier().await.unwrap();
        j.purge(0, 0).await.unwrap();
        assert_eq!(synced(), 1, "progress, barriers and purges ride without a sync of their own");
        assert!(commits() >= 3);
        // Still committed: a reader sees the progress.
        let r = j.reader().unwrap();
        assert!(r.pending("a", 0, 10).unwrap().is_empty());
        drop(r);
        j.insert(envelope("S2", b"MSH|y", &["a"])).await.unwrap();
        assert_eq!(synced(), 2, "the next item syncs again (and with it what rode before)");
        j.close();
    });
}

#[test]
fn failed_deliveries_keep_attempts_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let j = Journal::open(&dir.path().join("j.db"), limits()).unwrap();
        let Inserted::Stored { seq, id } = j.insert(envelope("1", b"MSH|x", &["a", "b"])).await.unwrap() else {
            panic!()
        };
        for (i, give_up) in [(1, false), (2, true)] {
            j.update(DeliveryUpdate::Failed {
                seq,
                destination: "a".into(),
                error: format!("refused {i}"),
                outcome: "error",
                next_attempt_at: 0,
                give_up,
            })
            .await
            .unwrap();
        }
        j.barrier().await.unwrap();
        let r = j.reader().unwrap();
        let item = r.show(&id, false).unwrap().unwrap();
        assert_eq!(item.attempts.len(), 2);
        let a = item.deliveries.iter().find(|d| d.destination == "a").unwrap();
        assert_eq!((a.state.as_str(), a.attempts), ("failed", 2));
        assert!(r.pending("a", 0, 10).unwrap().is_empty());
        assert_eq!(r.pending("b", 0, 10).unwrap().len(), 1);
        let before = j.head().borrow().rescan;
        assert_eq!(j.retry(RetryTarget { id: Some(id.clone()), destination: None }).await.unwrap(), 1);
        assert_eq!(j.head().borrow().rescan, before + 1);
        assert_eq!(r.pending("a", 0, 10).unwrap().len(), 1);
        j.close();
    });
}

#[test]
fn purge_removes_only_delivered_items_past_retention_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        let Inserted::Stored { seq: s1, .. } = j.insert(envelope("1", b"MSH|1", &["a"])).await.unwrap() else {
            panic!()
        };
        j.insert(envelope("2", b"MSH|2", &["a"])).await.unwrap();
        j.update(DeliveryUpdate::Delivered { seq: s1, destination: "a".into() }).await.unwrap();
        let future = now_ms() + 1000;
        assert_eq!(j.purge(future, 0).await.unwrap(), 1);
        j.close();
    });
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        let r = j.reader().unwrap();
        assert_eq!(r.status_counts().unwrap().envelopes, 1);
        assert_eq!(j.shared().stored_bytes.load(Ordering::Relaxed), 5);
        assert_eq!(j.head().borrow().seq, 2);
        j.close();
    });
}

#[test]
fn a_journal_from_before_kind_neutral_summaries_reads_the_same_after_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        schema::create_at(&mut c, 3).unwrap();
        c.execute(
            "INSERT INTO envelopes (seq, id, source, kind, received_at, status, size, message_type, control_id,
                sending_app, sending_facility, version, charset, routes, body)
             VALUES (1, ?1, 'ehr', 'hl7v2', ?2, 'accepted', 5, 'ORU^R01', 'C-OLD', 'EPIC', 'NORTH', '2.5.1',
                'utf-8', '[\"r\"]', x'4d53487c31')",
            rusqlite::params![envelope_id(1000, 1), now_ms()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO deliveries (destination, seq, state, updated_at) VALUES ('lis', 1, 'pending', 1000)",
            [],
        )
        .unwrap();
    }
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        let r = j.reader().unwrap();
        let item = r.show("1", true).unwrap().expect("the old item is still there");
        assert_eq!((item.item_type.as_str(), item.summary.item_ref.as_str()), ("ORU^R01", "C-OLD"));
        let v = serde_json::to_value(&item.summary).unwrap();
        assert_eq!(v["sending_app"], "EPIC");
        assert_eq!(v["sending_facility"], "NORTH");
        assert_eq!(v["version"], "2.5.1");
        assert_eq!(v["control_id"], "C-OLD");
        assert_eq!(item.body.as_deref(), Some(&b"MSH|1"[..]));
        let pending = r.pending("lis", 0, 10).unwrap();
        assert_eq!((pending.len(), pending[0].kind, pending[0].item_ref.as_str()), (1, Kind::Hl7v2, "C-OLD"));
        // A retransmission of the old item is still recognised after the migration.
        let again = NewEnvelope { source: "ehr".into(), body: b"MSH|1".to_vec(), ..envelope("C-OLD", b"", &["lis"]) };
        assert!(matches!(j.insert(again).await.unwrap(), Inserted::Duplicate { seq: 1, .. }));
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
}

#[test]
fn a_journal_belongs_to_the_gateway_that_first_opened_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    Journal::open_for(&path, limits(), "northfield", "gw-01").unwrap().close();
    let err = Journal::open_for(&path, limits(), "northfield", "gw-02").err().expect("another gateway is refused");
    assert!(matches!(err, JournalError::OtherGateway { .. }), "{err}");
    let words = err.to_string();
    assert!(words.contains("northfield/gw-01") && words.contains("northfield/gw-02"), "{words}");
    assert!(words.contains("node.state_dir"), "says what to do: {words}");
    Journal::open_for(&path, limits(), "northfield", "gw-01").unwrap().close();
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Journal::open(&path, limits()).err().unwrap();
    assert!(matches!(err, JournalError::NewerSchema { found: 99, .. }), "{err}");
}

fn uplink_limits() -> Limits {
    Limits { uplink_destination: Some("central".into()), ..limits() }
}

fn stored(i: Inserted) -> (i64, String) {
    match i {
        Inserted::Stored { seq, id } => (seq, id),
        other => panic!("not stored: {other:?}"),
    }
}

#[test]
fn uplink_sequence_counts_only_items_for_central_and_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, uplink_limits()).unwrap();
        let mut ids = Vec::new();
        for i in 0..6 {
            // Every other item goes to central; the others only to a local destination.
            let dests: &[&str] = if i % 2 == 0 { &["central", "lis"] } else { &["lis"] };
            ids.push(stored(j.insert(envelope(&format!("c{i}"), format!("MSH|{i}").as_bytes(), dests)).await.unwrap()));
        }
        let r = j.reader().unwrap();
        let items = r.uplink_pending("central", 0, i64::MAX, 100).unwrap();
        assert_eq!(items.iter().map(|i| i.useq).collect::<Vec<_>>(), vec![1, 2, 3], "contiguous over central's items");
        assert_eq!(
            items.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
            vec![ids[0].1.clone(), ids[2].1.clone(), ids[4].1.clone()]
        );

        // Acknowledged ids are released; a wrong id with a real seq releases nothing.
        let forged = crate::journal::envelope_id(1, ids[2].0);
        assert_eq!(j.acked("central", vec![ids[0].1.clone(), forged, "nonsense".into()]).await.unwrap(), 1);
        assert_eq!(j.acked("central", vec![ids[0].1.clone()]).await.unwrap(), 0, "already released");
        let left = r.uplink_pending("central", 0, i64::MAX, 100).unwrap();
        assert_eq!(left.iter().map(|i| i.useq).collect::<Vec<_>>(), vec![2, 3]);
        let backlog = r.uplink_backlog("central", i64::MAX).unwrap();
        assert_eq!((backlog.items, backlog.first_useq, backlog.last_useq), (2, Some(2), Some(3)));
        // The local destination is untouched by central's acks.
        assert_eq!(r.pending("lis", 0, 100).unwrap().len(), 6);

        // Release and purge everything: numbering still continues above 3 after a restart.
        let rest: Vec<String> = left.iter().map(|i| i.id.clone()).collect();
        j.acked("central", rest).await.unwrap();
        for seq in 1..=6 {
            j.update(DeliveryUpdate::Delivered { seq, destination: "lis".into() }).await.unwrap();
        }
        j.barrier().await.unwrap();
        assert_eq!(j.purge(i64::MAX, i64::MAX).await.unwrap(), 6);
        assert_eq!(j.bump("uplink_session").await.unwrap(), 1);
        assert_eq!(j.bump("uplink_session").await.unwrap(), 2);
        j.close();
    });
    rt().block_on(async {
        let j = Journal::open(&path, uplink_limits()).unwrap();
        let (_, _) = stored(j.insert(envelope("n1", b"MSH|new", &["central"])).await.unwrap());
        let r = j.reader().unwrap();
        assert_eq!(r.uplink_pending("central", 0, i64::MAX, 10).unwrap()[0].useq, 4);
        assert_eq!(j.bump("uplink_session").await.unwrap(), 3, "the session counter survives restarts");
        j.close();
    });
}

#[test]
fn resend_range_includes_acknowledged_items_still_kept() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let j = Journal::open(&dir.path().join("j.db"), uplink_limits()).unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                stored(
                    j.insert(envelope(&format!("r{i}"), format!("MSH|{i}").as_bytes(), &["central"])).await.unwrap(),
                )
                .1,
            );
        }
        j.acked("central", ids[..3].to_vec()).await.unwrap();
        let r = j.reader().unwrap();
        let range = r.uplink_range("central", 2, 4, 0, 100).unwrap();
        assert_eq!(range.iter().map(|i| i.useq).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(r.uplink_one("central", range[0].seq).unwrap().is_none(), "acknowledged: not waiting");
        assert!(r.uplink_one("central", range[2].seq).unwrap().is_some());
        j.close();
    });
}

#[test]
fn events_for_central_keep_the_newest_until_acknowledged_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let event = |i: usize| (format!("E{i:03}"), format!("{{\"n\":{i}}}").into_bytes());
    rt().block_on(async {
        let j = Journal::open(&path, uplink_limits()).unwrap();
        assert_eq!(j.add_events((0..3).map(event).collect(), 5).await.unwrap(), 0);
        // Past the cap the oldest go, and the count says how many.
        assert_eq!(j.add_events((3..7).map(event).collect(), 5).await.unwrap(), 2);
        let kept = j.reader().unwrap().uplink_events(100).unwrap();
        assert_eq!(kept.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["E002", "E003", "E004", "E005", "E006"]);
        assert_eq!(kept[0].1, b"{\"n\":2}");
        // An ack may name items and events together; only events it names are forgotten.
        let item = stored(j.insert(envelope("c1", b"MSH|1", &["central"])).await.unwrap());
        let n = j.acked("central", vec!["E003".into(), item.1.clone(), "E999".into()]).await.unwrap();
        assert_eq!(n, 1, "one item released");
        j.close();
    });
    rt().block_on(async {
        let j = Journal::open(&path, uplink_limits()).unwrap();
        let r = j.reader().unwrap();
        let kept: Vec<String> = r.uplink_events(100).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(kept, ["E002", "E004", "E005", "E006"]);
        assert_eq!(r.status_counts().unwrap().events, 4);
        j.close();
    });
}

#[test]
fn reads_run_off_the_async_threads_and_see_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        j.insert(envelope("1", b"MSH|1", &["a"])).await.unwrap();
        let fresh = j.read(|r| r.pending("a", 0, 10)).await.unwrap();
        assert_eq!(fresh.len(), 1);

        // A shared reader keeps its connection between reads and still sees later commits.
        let shared = j.shared_reader().unwrap();
        assert_eq!(shared.read(|r| r.pending("a", 0, 10)).await.unwrap().len(), 1);
        j.insert(envelope("2", b"MSH|2", &["a"])).await.unwrap();
        assert_eq!(shared.read(|r| r.pending("a", 0, 10)).await.unwrap().len(), 2);

        // The read's own error comes back as it was.
        let failed = shared.read(|_| Err::<(), _>(JournalError::Full { stored: 2, max: 1 })).await;
        assert!(matches!(failed, Err(JournalError::Full { stored: 2, max: 1 })));
        j.close();
    });
}

#[test]
fn items_are_listed_by_delivery_state_or_status() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let j = Journal::open(&dir.path().join("j.db"), limits()).unwrap();
        let (failed, _) = stored(j.insert(envelope("1", b"MSH|1", &["a"])).await.unwrap());
        let (waiting, _) = stored(j.insert(envelope("2", b"MSH|2", &["a"])).await.unwrap());
        let rejected = NewEnvelope { status: Status::Rejected, destinations: vec![], ..envelope("", b"junk", &[]) };
        let (rejected, _) = stored(j.insert(rejected).await.unwrap());
        let give_up = DeliveryUpdate::Failed {
            seq: failed,
            destination: "a".into(),
            error: "refused".into(),
            outcome: "error",
            next_attempt_at: 0,
            give_up: true,
        };
        j.update(give_up).await.unwrap();
        j.barrier().await.unwrap();
        let r = j.reader().unwrap();
        let list = |text: Option<&str>| {
            let state = text.map(|t| StateFilter::parse(t).unwrap());
            r.list(&ItemFilter { state, destination: None, limit: 0 })
                .unwrap()
                .iter()
                .map(|i| i.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(list(None), vec![waiting, failed]);
        assert_eq!(list(Some("failed")), vec![failed]);
        assert_eq!(list(Some("pending")), vec![waiting]);
        assert_eq!(list(Some("rejected")), vec![rejected]);
        assert_eq!(list(Some("all")), vec![rejected, waiting, failed]);
        assert_eq!(StateFilter::parse("accepted"), None);
        let item = r.show(&failed.to_string(), false).unwrap().unwrap();
        assert_eq!(item.deliveries[0].state, DeliveryState::Failed);
        j.close();
    });
}

/// Rows in `deliveries` (exceptions only, since schema 9).
fn delivery_rows(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0)).unwrap()
}

fn waiting(r: &Reader, dest: &str) -> u64 {
    r.status_counts().unwrap().destinations.iter().find(|d| d.0 == dest).map(|d| d.1).unwrap_or(0)
}

fn state_of(r: &Reader, seq: i64, dest: &str) -> (DeliveryState, u32) {
    let item = r.show(&seq.to_string(), false).unwrap().unwrap();
    let d = item.deliveries.iter().find(|d| d.destination == dest).unwrap();
    (d.state, d.attempts)
}

#[test]
fn an_item_delivered_at_once_leaves_no_row_and_its_destinations_cursor_tells_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        for i in 1..=3 {
            j.insert(envelope(&format!("d{i}"), format!("MSH|{i}").as_bytes(), &["a", "b"])).await.unwrap();
        }
        for seq in 1..=2 {
            j.update(DeliveryUpdate::Delivered { seq, destination: "a".into() }).await.unwrap();
        }
        j.barrier().await.unwrap();
        let r = j.reader().unwrap();
        assert_eq!(delivery_rows(&path), 0, "nothing but the items and a cursor is written");
        assert_eq!(state_of(&r, 1, "a"), (DeliveryState::Delivered, 1));
        assert_eq!(state_of(&r, 3, "a"), (DeliveryState::Pending, 0));
        assert_eq!(state_of(&r, 1, "b"), (DeliveryState::Pending, 0));
        assert_eq!(r.pending("a", 0, 10).unwrap().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(r.pending("b", 0, 10).unwrap().len(), 3);
        assert_eq!((waiting(&r, "a"), waiting(&r, "b")), (1, 3));
        let listed = |state| {
            let filter = ItemFilter { state, destination: Some("a".into()), limit: 10 };
            r.list(&filter).unwrap().iter().map(|i| i.seq).collect::<Vec<_>>()
        };
        assert_eq!(listed(Some(StateFilter::Delivery(DeliveryState::Delivered))), vec![2, 1]);
        assert_eq!(listed(None), vec![3]);
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
    rt().block_on(async {
        // Counted again at the next start, from the cursors.
        let j = Journal::open(&path, limits()).unwrap();
        let r = j.reader().unwrap();
        assert_eq!((waiting(&r, "a"), waiting(&r, "b")), (1, 3));
        j.update(DeliveryUpdate::Delivered { seq: 3, destination: "a".into() }).await.unwrap();
        for seq in 1..=3 {
            j.update(DeliveryUpdate::Delivered { seq, destination: "b".into() }).await.unwrap();
        }
        j.barrier().await.unwrap();
        assert_eq!((waiting(&r, "a"), waiting(&r, "b")), (0, 0));
        assert_eq!(j.purge(i64::MAX, i64::MAX).await.unwrap(), 3);
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
    rt().block_on(async {
        // Everything purged: a new item still comes after the cursors, so it waits.
        let j = Journal::open(&path, limits()).unwrap();
        let (seq, _) = stored(j.insert(envelope("d4", b"MSH|4", &["a"])).await.unwrap());
        assert!(seq > 3, "seq {seq} went back behind the cursor");
        let r = j.reader().unwrap();
        assert_eq!(r.pending("a", 0, 10).unwrap().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![seq]);
        assert_eq!(waiting(&r, "a"), 1);
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
}

#[test]
fn a_failed_attempt_makes_a_row_and_a_row_wins_over_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        for i in 1..=3 {
            j.insert(envelope(&format!("f{i}"), format!("MSH|{i}").as_bytes(), &["a"])).await.unwrap();
        }
        let failed = |seq, give_up| DeliveryUpdate::Failed {
            seq,
            destination: "a".into(),
            error: "refused".into(),
            outcome: "error",
            next_attempt_at: 0,
            give_up,
        };
        j.update(failed(1, false)).await.unwrap();
        j.barrier().await.unwrap();
        let r = j.reader().unwrap();
        assert_eq!(delivery_rows(&path), 1);
        assert_eq!(state_of(&r, 1, "a"), (DeliveryState::Pending, 1));
        assert_eq!(r.pending("a", 0, 10).unwrap()[0].attempts, 1, "the worker sees the attempts made");
        assert_eq!(waiting(&r, "a"), 3, "one by its row, two by the cursor");
        j.update(DeliveryUpdate::Delivered { seq: 1, destination: "a".into() }).await.unwrap();
        j.update(DeliveryUpdate::Delivered { seq: 2, destination: "a".into() }).await.unwrap();
        j.update(failed(3, true)).await.unwrap();
        j.insert(envelope("f4", b"MSH|4", &["a"])).await.unwrap();
        j.update(DeliveryUpdate::Delivered { seq: 4, destination: "a".into() }).await.unwrap();
        j.barrier().await.unwrap();
        assert_eq!(state_of(&r, 1, "a"), (DeliveryState::Delivered, 2));
        assert_eq!(state_of(&r, 2, "a"), (DeliveryState::Delivered, 1));
        assert_eq!(state_of(&r, 3, "a"), (DeliveryState::Failed, 1), "behind the cursor, its row still says failed");
        assert_eq!(state_of(&r, 4, "a"), (DeliveryState::Delivered, 1));
        assert!(r.pending("a", 0, 10).unwrap().is_empty());
        let counts = r.status_counts().unwrap();
        assert_eq!(counts.destinations.iter().find(|d| d.0 == "a").map(|d| (d.1, d.2)), Some((0, 1)));
        assert_eq!(j.purge(i64::MAX, i64::MAX).await.unwrap(), 3, "the dead letter is kept");
        assert_eq!(j.retry(RetryTarget::default()).await.unwrap(), 1);
        assert_eq!(r.pending("a", 0, 10).unwrap().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3]);
        // A late failure report for an item the cursor has passed changes nothing.
        j.insert(envelope("f5", b"MSH|5", &["a"])).await.unwrap();
        j.update(DeliveryUpdate::Delivered { seq: 5, destination: "a".into() }).await.unwrap();
        j.update(failed(5, false)).await.unwrap();
        j.barrier().await.unwrap();
        assert_eq!(state_of(&r, 5, "a"), (DeliveryState::Delivered, 1));
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
}

#[test]
fn central_acknowledging_out_of_order_moves_the_cursor_over_contiguous_items_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, uplink_limits()).unwrap();
        let mut ids = vec![String::new()];
        for i in 1..=5 {
            let dests: &[&str] = if i == 3 { &["lis"] } else { &["central", "lis"] };
            ids.push(
                stored(j.insert(envelope(&format!("u{i}"), format!("MSH|{i}").as_bytes(), dests)).await.unwrap()).1,
            );
        }
        let r = j.reader().unwrap();
        let waiting_seqs =
            || r.uplink_pending("central", 0, i64::MAX, 10).unwrap().iter().map(|i| i.seq).collect::<Vec<_>>();
        assert_eq!(j.acked("central", vec![ids[2].clone(), ids[4].clone()]).await.unwrap(), 2);
        assert_eq!(waiting_seqs(), vec![1, 5]);
        assert_eq!(delivery_rows(&path), 2, "acknowledged ahead of item 1: kept as rows");
        assert_eq!(waiting(&r, "central"), 2);
        assert_eq!(j.acked("central", vec![ids[1].clone()]).await.unwrap(), 1);
        assert_eq!(waiting_seqs(), vec![5]);
        assert_eq!(delivery_rows(&path), 0, "the cursor passed them (item 3 is not central's)");
        assert_eq!(state_of(&r, 4, "central"), (DeliveryState::Delivered, 1));
        let backlog = r.uplink_backlog("central", i64::MAX).unwrap();
        assert_eq!(
            (backlog.items, backlog.first_useq, backlog.last_useq, backlog.last_seq),
            (1, Some(4), Some(4), Some(5))
        );
        // A resend by number reads items acknowledged or not, still in the journal.
        let range = r.uplink_range("central", 2, 4, 0, 100).unwrap();
        assert_eq!(range.iter().map(|i| (i.seq, i.useq)).collect::<Vec<_>>(), vec![(2, 2), (4, 3), (5, 4)]);
        assert_eq!(j.acked("central", vec![ids[5].clone(), ids[5].clone()]).await.unwrap(), 1, "once");
        assert!(waiting_seqs().is_empty());
        assert_eq!(waiting(&r, "central"), 0);
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
}

#[test]
fn a_journal_from_schema_8_keeps_every_delivery_state_and_uplink_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        schema::create_at(&mut c, 8).unwrap();
        for seq in 1..=4i64 {
            c.execute(
                "INSERT INTO envelopes (seq, id, source, kind, received_at, status, size, item_type, item_ref, summary, body)
                 VALUES (?1, ?2, 'ehr', 'hl7v2', ?3, 'accepted', 5, 'ORU^R01', ?4, '{}', x'4d53487c31')",
                rusqlite::params![seq, envelope_id(1000, seq), now_ms(), format!("old{seq}")],
            )
            .unwrap();
        }
        for (seq, dest, state, useq) in [
            (1, "lis", "delivered", None),
            (1, "central", "delivered", Some(1)),
            (2, "lis", "failed", None),
            (2, "central", "pending", Some(2)),
            (3, "lis", "in_flight", None),
            (4, "lis", "pending", None),
        ] {
            c.execute(
                "INSERT INTO deliveries (destination, seq, state, updated_at, useq) VALUES (?1, ?2, ?3, 1000, ?4)",
                rusqlite::params![dest, seq, state, useq],
            )
            .unwrap();
        }
        c.execute("INSERT INTO attempts (seq, destination, at, outcome, error) VALUES (2, 'lis', 1, 'nak', 'AE')", [])
            .unwrap();
    }
    rt().block_on(async {
        let j = Journal::open(&path, uplink_limits()).unwrap();
        let r = j.reader().unwrap();
        assert_eq!(state_of(&r, 1, "lis").0, DeliveryState::Delivered);
        assert_eq!(state_of(&r, 2, "lis").0, DeliveryState::Failed);
        assert_eq!(r.show("2", false).unwrap().unwrap().attempts.len(), 1, "attempts kept with their item");
        assert_eq!(r.pending("lis", 0, 10).unwrap().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3, 4]);
        let up = r.uplink_pending("central", 0, i64::MAX, 10).unwrap();
        assert_eq!(up.iter().map(|i| (i.seq, i.useq)).collect::<Vec<_>>(), vec![(2, 2)]);
        // New items go on from there: seq, uplink number, and no rows.
        let (seq, _) = stored(j.insert(envelope("n1", b"MSH|n1", &["central", "lis"])).await.unwrap());
        assert_eq!(seq, 5);
        let up = r.uplink_pending("central", 0, i64::MAX, 10).unwrap();
        assert_eq!(up.iter().map(|i| (i.seq, i.useq)).collect::<Vec<_>>(), vec![(2, 2), (5, 3)]);
        assert_eq!(waiting(&r, "lis"), 3);
        for seq in [3, 4, 5] {
            j.update(DeliveryUpdate::Delivered { seq, destination: "lis".into() }).await.unwrap();
        }
        j.barrier().await.unwrap();
        assert_eq!(waiting(&r, "lis"), 0);
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
}

#[test]
fn progress_held_back_for_a_commit_to_ride_in_is_committed_on_its_own_soon_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, limits()).unwrap();
        let (seq, _) = stored(j.insert(envelope("p1", b"MSH|p1", &["a"])).await.unwrap());
        let commits = j.shared().commits.load(Ordering::Relaxed);
        j.update(DeliveryUpdate::Delivered { seq, destination: "a".into() }).await.unwrap();
        // Nothing else happens: the writer's own timer commits it.
        let r = j.reader().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !r.pending("a", 0, 10).unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the delivery was never committed");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(j.shared().commits.load(Ordering::Relaxed), commits + 1);
        assert_eq!(waiting(&r, "a"), 0);
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
    rt().block_on(async {
        // And what is held back at close is committed before the writer stops.
        let j = Journal::open(&path, limits()).unwrap();
        let (seq, _) = stored(j.insert(envelope("p2", b"MSH|p2", &["a"])).await.unwrap());
        j.update(DeliveryUpdate::Delivered { seq, destination: "a".into() }).await.unwrap();
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
        let j = Journal::open(&path, limits()).unwrap();
        assert!(j.reader().unwrap().pending("a", 0, 10).unwrap().is_empty());
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
}

#[test]
fn acknowledgements_far_apart_are_looked_up_one_by_one_and_release_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    rt().block_on(async {
        let j = Journal::open(&path, uplink_limits()).unwrap();
        let first = stored(j.insert(envelope("far-0", b"MSH|far-0", &["central"])).await.unwrap());
        for i in 0..1100 {
            j.insert(envelope(&format!("lis-{i}"), format!("MSH|lis-{i}").as_bytes(), &["lis"])).await.unwrap();
        }
        let last = stored(j.insert(envelope("far-1", b"MSH|far-1", &["central"])).await.unwrap());
        // The last first: it waits as a row until the first is acknowledged.
        assert_eq!(j.acked("central", vec![last.1.clone(), crate::journal::envelope_id(1, last.0)]).await.unwrap(), 1);
        assert_eq!(delivery_rows(&path), 1);
        assert_eq!(j.acked("central", vec![first.1.clone(), last.1.clone()]).await.unwrap(), 1);
        let r = j.reader().unwrap();
        assert!(r.uplink_pending("central", 0, i64::MAX, 10).unwrap().is_empty());
        assert_eq!(waiting(&r, "central"), 0);
        assert_eq!(delivery_rows(&path), 0, "the cursor passed both");
        drop(r);
        tokio::task::spawn_blocking(move || j.close()).await.unwrap();
    });
}
