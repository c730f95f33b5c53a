//! A full state directory (ENOSPC): every mutating command either saves its change and reports
//! success, or changes nothing — at runtime and in the file — and reports why; across a restart
//! the daemon brings back exactly what it reported (issue 17).
//!
//! The state directory is a small tmpfs this test mounts on a directory of its own lab and unmounts
//! when done (also on failure). On a full disk a journal line that fits the slack of the journal's
//! last page is still written; the first one that does not fails, and from then on every save is a
//! rewrite of the whole file, which fails too: the test saves until that first failure, then tries
//! every verb. Root only.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::*;
use xmacvlan_ctl::client::Client;

/// A tmpfs mounted at `path` (created), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        ok(&["mount", "-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "xmvt-state", path.to_str().unwrap()]);
        Tmpfs(path)
    }

    /// Fills it: a file that takes every free byte.
    fn fill(&self) {
        let filler = self.0.join("filler");
        // dd stops at ENOSPC and says so: its failure is expected.
        let _ = run(&["dd", "if=/dev/zero", &format!("of={}", filler.display()), "bs=4k"]);
    }

    fn empty(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run(&["umount", "-l", self.0.to_str().unwrap()]);
    }
}

/// What the runtime shows: the networks with their endpoints and source lists, as `ls` has them.
fn runtime(lab: &Lab) -> Value {
    let mut v: Value = serde_json::from_str(&lab.cli_ok(&["network", "ls", "--format", "json"])).unwrap();
    // Only what the state decides (xdp mode and status follow the host).
    for n in v.as_array_mut().unwrap() {
        n.as_object_mut().unwrap().retain(|k, _| ["name", "mode", "endpoints", "subnets"].contains(&k.as_str()));
    }
    v
}

#[test]
#[ignore = "needs root (network namespaces, XDP, a tmpfs mount); `make test` runs it"]
fn a_full_state_directory_changes_nothing_and_a_restart_agrees() {
    require_root!();
    let lab = Lab::new();
    let disk = Tmpfs::mount(lab.state_dir(), "256k");
    let mut d = Daemon::start(&lab);
    let (c1, c2, c3) = (lab.c(1).path(), lab.c(2).path(), lab.c(3).path());
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
    lab.cli_ok(&["network", "connect", "labnet", &c1]);
    lab.cli_ok(&["network", "connect", "labnet", &c2]);
    let src =
        ["network", "create", "--subnet", "198.18.1.0/24", "-o", "parent=eth1", "-o", "macvlan_mode=source", "srcnet"];
    lab.cli_ok(&src);
    lab.cli_ok(&["network", "connect", "srcnet", &c3]);
    lab.cli_ok(&["network", "macaddr", "add", "srcnet", &c3, "02:00:c6:12:00:01"]);
    // The CNI plugin's requests, as it sends them after its IPAM plugin has answered.
    let client = Client::new(lab.socket());
    client.cni_add(cni_request("ctr2", &c2, "198.18.3.2/24")).expect("CNI ADD");

    disk.fill();
    // Edits of the source list until one is not saved: the journal's last page is full.
    let mut saved = 0;
    loop {
        let mac = if saved % 2 == 0 { "02:00:c6:12:00:03" } else { "02:00:c6:12:00:01" };
        let out = lab.cli(&["network", "macaddr", "set", "srcnet", &c3, mac]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("No space left"), "{err}");
            break;
        }
        saved += 1;
        assert!(saved < 1000, "the disk never filled");
    }
    println!("{saved} edits fitted the journal's last page");
    let before = runtime(&lab);
    let links_before = lab.dp.links();
    let cases: [&[&str]; 6] = [
        &["network", "disconnect", "labnet", &c1],
        &["network", "macaddr", "add", "srcnet", &c3, "02:00:c6:12:00:02"],
        &["network", "rm", "--force", "srcnet"],
        &["network", "connect", "--ifname", "eth1", "labnet", &c3],
        &["network", "create", "--subnet", "198.18.2.0/24", "-o", "parent=eth1", "third"],
        &["network", "macaddr", "flush", "srcnet", &c3],
    ];
    for args in cases {
        let out = lab.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        println!("{args:?} on a full disk: {}", err.trim());
        assert!(!out.status.success(), "{args:?} succeeded on a full disk");
        assert!(err.contains("state") && err.contains("No space left"), "{args:?} says why: {err}");
        assert_eq!(runtime(&lab), before, "{args:?} changed the runtime");
        assert_eq!(lab.dp.links(), links_before, "{args:?} changed the links");
    }
    // The CNI plugin's requests (DEL, GC, ADD), as it sends them.
    for what in ["CNI DEL", "CNI GC", "CNI ADD"] {
        let err = match what {
            "CNI DEL" => client.cni_del("cninet".into(), cni_attachment("ctr2")).map(drop),
            "CNI GC" => client.cni_gc("cninet".into(), Vec::new()).map(drop),
            _ => client.cni_add(cni_request("ctr1", &c1, "198.18.3.1/24")).map(drop),
        }
        .expect_err(what)
        .to_string();
        println!("{what} on a full disk: {err}");
        assert!(err.contains("state") && err.contains("No space left"), "{what} says why: {err}");
        assert_eq!(runtime(&lab), before, "{what} changed the runtime");
        assert_eq!(lab.dp.links(), links_before, "{what} changed the links");
    }

    // The file agrees with the runtime: a restart brings back exactly what was reported.
    disk.empty();
    assert!(d.stop(), "clean stop: {}", d.log());
    let mut d = Daemon::start(&lab);
    assert_eq!(runtime(&lab), before, "after a restart");

    // With room again, a disconnect and an rm are saved, and stay done across a restart.
    lab.cli_ok(&["network", "disconnect", "labnet", &c1]);
    lab.cli_ok(&["network", "rm", "--force", "srcnet"]);
    Client::new(lab.socket()).cni_del("cninet".into(), cni_attachment("ctr2")).expect("CNI DEL");
    let after = runtime(&lab);
    assert!(d.stop());
    let _d = Daemon::start(&lab);
    assert_eq!(runtime(&lab), after, "after the second restart");
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(after[0]["endpoints"].as_array().unwrap().len(), 1, "{after}");
}
