//! Fax spools against the real binary: HylaFAX's `recvq/` (one TIFF per fax, locked while
//! received) and mgetty's incoming folder (one raw G3 file per page), laid out as those
//! programs write them. Each fax is one item, taken once (also across a restart), its files
//! left untouched.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use outpost::fax::document::{FaxDocument, Page};
use outpost::fax::g3::{BitOrder, Resolution};

use crate::support::*;

const G3: &[u8] = include_bytes!("../data/fax/g3test.g3");

/// A fax-spool source `fax` on `{dir}/spool`, everything filed to `{dir}/archive`.
fn config(format: &str) -> String {
    format!(
        "[[source]]\nname = \"fax\"\nkind = \"fax-spool\"\ndir = \"{{dir}}/spool\"\nformat = \"{format}\"\nsettle = \"300ms\"\nrescan = \"1s\"\n\n\
         [[destination]]\nname = \"archive\"\nkind = \"file\"\ndir = \"{{dir}}/archive\"\n\n\
         [[route]]\nname = \"faxes\"\nfrom = [\"fax\"]\nwhen = {{ \"fax.tsi\" = {{ glob = \"+1 507*\" }} }}\nto = [\"archive\"]\n"
    )
}

/// A daemon whose spool folder exists before it starts.
fn daemon(format: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    Daemon::start_in(dir, &config(format))
}

/// A HylaFAX-like received fax: TIFF-F with the TSI in ImageDescription.
fn hylafax_tiff(pages: usize, tsi: &str) -> Vec<u8> {
    FaxDocument {
        pages: (0..pages).map(|_| Page::new(G3.to_vec(), BitOrder::MsbFirst, 1728, Resolution::Fine)).collect(),
        tsi: Some(tsi.into()),
        complete: true,
        ..FaxDocument::default()
    }
    .to_tiff()
}

fn faxes(daemon: &Daemon) -> Vec<Value> {
    let mut all = daemon.items();
    all.retain(|i| i["kind"] == "fax");
    all.reverse();
    all
}

fn wait_faxes(daemon: &Daemon, n: usize) -> Vec<Value> {
    wait_for(&format!("{n} fax item(s)"), DEADLINE, || {
        let f = faxes(daemon);
        (f.len() >= n).then_some(f)
    })
}

fn write_old(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(120)).unwrap();
}

#[test]
fn fax_spool_hylafax_files_are_taken_once_untouched_and_routed_by_tsi() {
    let mut daemon = daemon("hylafax");
    let spool = daemon.path("spool");
    let one = hylafax_tiff(2, "+1 507 555 0199");
    std::fs::write(spool.join("fax00001.tif"), &one).unwrap();
    let item = &wait_faxes(&daemon, 1)[0];
    assert_eq!(daemon.body(item["id"].as_str().unwrap()), one, "the spool's file is the body, byte for byte");
    let shown = daemon.show(item["id"].as_str().unwrap(), false);
    let s = &shown["summary"];
    assert_eq!((s["pages"].as_str(), s["resolution"].as_str()), (Some("2"), Some("fine")), "{s}");
    assert_eq!((s["tsi"].as_str(), s["file"].as_str()), (Some("+1 507 555 0199"), Some("fax00001.tif")));
    assert_eq!(s["bad_lines"], "322", "the pages checked again: g3test.g3 has 161 damaged lines");
    assert_eq!(shown["status"], "accepted", "routed by fax.tsi");
    let archived = daemon.path("archive").join(format!("{}.tif", item["id"].as_str().unwrap()));
    wait_for("the fax filed", DEADLINE, || std::fs::read(&archived).ok().filter(|b| *b == one).map(|_| ()));
    assert_eq!(std::fs::read(spool.join("fax00001.tif")).unwrap(), one, "the spool's file is left as it was");

    // A fax HylaFAX is still receiving (its lock held): left until the lock goes.
    let two_path = spool.join("fax00002.tif");
    let file = std::fs::File::create(&two_path).unwrap();
    let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    std::io::Write::write_all(&mut &*locked, &hylafax_tiff(1, "+44 20 7946 0000")).unwrap();
    wait_for("the daemon to find the fax still locked", DEADLINE, || {
        daemon.log().contains("HylaFAX is still receiving it").then_some(())
    });
    assert_eq!(faxes(&daemon).len(), 1);
    drop(locked);
    let both = wait_faxes(&daemon, 2);
    assert_eq!(both[1]["summary"]["tsi"], "+44 20 7946 0000");
    assert_eq!(daemon.show(both[1]["id"].as_str().unwrap(), false)["status"], "unrouted", "another sender: no route");

    // Restarted, the daemon finds both files again and takes neither twice.
    daemon.terminate();
    daemon.spawn();
    wait_for("the spool looked at again", DEADLINE, || {
        (daemon.log().matches("a fax taken before is left alone").count() >= 2).then_some(())
    });
    assert_eq!(faxes(&daemon).len(), 2);
    let log = daemon.log();
    assert!(!log.lines().any(|l| l.contains(" INFO ") && l.contains("555 0199")), "no TSI at info");
}

#[test]
fn fax_spool_mgetty_pages_of_one_call_are_one_fax() {
    let daemon = daemon("mgetty");
    let spool = daemon.path("spool");
    // mgetty's long names: fine resolution, the call's id and device, the sender's id with
    // everything but letters and digits made `-`.
    write_old(&spool.join("ff1a2b3c4S0-1-507-555-0100.01"), G3);
    let reversed: Vec<u8> = G3.iter().map(|b| b.reverse_bits()).collect();
    write_old(&spool.join("ff1a2b3c4S0-1-507-555-0100.02"), &reversed);
    // Another call, normal resolution, no sender id.
    write_old(&spool.join("fn1a2b3d0S0.01"), G3);
    let items = wait_faxes(&daemon, 2);
    let call = items.iter().find(|i| i["summary"]["pages"] == "2").expect("the two-page call");
    let s = &call["summary"];
    assert_eq!((s["resolution"].as_str(), s["tsi"].as_str()), (Some("fine"), Some("1 507 555 0100")), "{s}");
    assert_eq!(s["file"], "ff1a2b3c4S0-1-507-555-0100");
    let body = daemon.body(call["id"].as_str().unwrap());
    let pages = outpost::fax::tiff::read(&body).unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].data(), G3, "page data as mgetty stored it");
    assert_eq!(pages[1].data(), reversed);
    assert_eq!(
        (pages[0].bit_order, pages[1].bit_order),
        (BitOrder::MsbFirst, BitOrder::LsbFirst),
        "each page's order found"
    );
    let other = items.iter().find(|i| i["summary"]["pages"] == "1").unwrap();
    assert_eq!(other["summary"]["resolution"], "normal");
    assert_eq!(std::fs::read(spool.join("fn1a2b3d0S0.01")).unwrap(), G3, "left untouched");
    // The call's other page file is kept with it: nothing waits in the spool, no third item.
    wait_for("no page file left waiting", DEADLINE, || {
        (daemon.status()["sources"][0]["waiting"].as_u64() == Some(0)).then_some(())
    });
    assert_eq!(faxes(&daemon).len(), 2);
}

#[test]
fn fax_spool_a_file_that_is_not_a_fax_is_kept_as_rejected() {
    let daemon = daemon("hylafax");
    std::fs::write(daemon.path("spool").join("fax00009.tif"), b"not a tiff at all").unwrap();
    let item = &wait_faxes(&daemon, 1)[0];
    assert_eq!(item["status"], "rejected");
    let shown = daemon.show(item["id"].as_str().unwrap(), false);
    assert!(shown["note"].as_str().unwrap_or_default().contains("not a fax"), "{shown}");
}
