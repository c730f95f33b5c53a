//! A parent that goes away and comes back (issue 17): kernel macvlan children follow their lower
//! device; xmacvlan's networks go `inactive` while it is gone (endpoints kept) and forward again
//! when an interface of the same name returns, without a restart. The time from the parent's
//! return to the first answered ping is printed (`--nocapture`).
//!
//! Root only; each test builds its own lab of namespaces and removes it.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use xmacvlan_lab::topology::{self, End};

fn status(lab: &Lab) -> String {
    let v: Value = serde_json::from_str(&lab.cli_ok(&["network", "ls", "--format", "json"])).unwrap();
    v[0]["status"].as_str().unwrap().to_string()
}

fn endpoints(lab: &Lab) -> usize {
    let v: Value = serde_json::from_str(&lab.cli_ok(&["network", "inspect", "--format", "json", "labnet"])).unwrap();
    v["endpoints"].as_array().unwrap().len()
}

/// Whether `ifname` in `ns` has carrier (LOWER_UP).
fn carrier(ns: &Netns, ifname: &str) -> bool {
    let v: Value = serde_json::from_str(&ok(&["ip", "-n", &ns.name, "-j", "link", "show", ifname])).unwrap();
    v[0]["flags"].as_array().unwrap().iter().any(|f| f == "LOWER_UP")
}

fn ping(ns: &Netns, ip: &str, wait: &str) -> bool {
    ns.exec(&["ping", "-c", "1", "-W", wait, ip]).status.success()
}

/// The wire as the lab made it: wire0 (the wire host) —veth— eth1 (the parent), addressed and up.
fn plug_wire(lab: &Lab) {
    let (w, p) = (End { netns: &lab.wire.name, ifname: "wire0" }, End { netns: &lab.dp.name, ifname: "eth1" });
    topology::veth_pair(w, p, PARENT_MTU, 1).unwrap_or_else(|e| panic!("{e:#}"));
    ok(&["ip", "-n", &lab.wire.name, "addr", "add", &format!("{GATEWAY}/24"), "dev", "wire0"]);
    ok(&["ip", "-n", &lab.dp.name, "addr", "add", &format!("{HOST_IP}/24"), "dev", "eth1"]);
    ok(&["ip", "-n", &lab.wire.name, "link", "set", "wire0", "up"]);
    ok(&["ip", "-n", &lab.dp.name, "link", "set", "eth1", "up"]);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn a_parent_unplugged_and_plugged_back_forwards_again_without_a_restart() {
    require_root!();
    let lab = Lab::new();
    let mut d = Daemon::start(&lab);
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
    attach(&lab, Backend::Xmacvlan, 1, None);
    attach(&lab, Backend::Xmacvlan, 2, None);
    let c1 = container_ip(1);
    assert!(ping(&lab.wire, &c1, "2"), "forwarding before the unplug");

    // Unplugged: the parent is deleted (its wire with it).
    ok(&["ip", "-n", &lab.dp.name, "link", "del", "eth1"]);
    let gone = within(Duration::from_secs(5), || status(&lab).starts_with("inactive"));
    println!("network inactive {gone:?} after the parent went: {}", status(&lab));
    assert!(gone.is_some(), "ls shows the network inactive: {}", status(&lab));
    assert!(status(&lab).contains("eth1"), "and says why: {}", status(&lab));
    assert_eq!(endpoints(&lab), 2, "endpoints are kept");
    // Out of the datapath, so set down as at a clean stop: nothing a container sends reaches the
    // daemon namespace's stack, and the container sees why its frames stop (NO-CARRIER).
    assert!(!carrier(lab.c(1), "eth0"), "the container's interface has no carrier while the parent is gone");
    let out = lab.cli(&["network", "rm", "labnet"]);
    assert!(!out.status.success(), "an inactive network's endpoints count as connected");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&lab.c(1).path()), "and are named");

    // Plugged back: an interface of the same name (a new ifindex), the same wire.
    plug_wire(&lab);
    let back = Instant::now();
    let resumed = within(Duration::from_secs(10), || ping(&lab.wire, &c1, "0.25"));
    let active = within(Duration::from_secs(5), || status(&lab) == "active");
    // The wire host's first ARP request may go out before the daemon has attached again: its
    // retry comes a second later (retrans_time_ms).
    println!(
        "pings resumed {:?} after the parent's return; the network was active by then ({active:?})",
        back.elapsed()
    );
    assert!(resumed.is_some(), "forwarding resumed: {}; log:\n{}", status(&lab), d.log());
    assert!(back.elapsed() < Duration::from_secs(2), "within 2 s of the parent's return: {:?}", back.elapsed());
    assert_eq!(status(&lab), "active");
    assert_eq!(endpoints(&lab), 2);
    assert!(ping(lab.c(1), &container_ip(2), "2"), "endpoint to endpoint too");
    assert!(carrier(lab.c(1), "eth0"));

    // And the state says so: a restart finds the same.
    assert!(d.stop(), "clean stop: {}", d.log());
    let _d = Daemon::start(&lab);
    assert_eq!(status(&lab), "active");
    assert!(ping(&lab.wire, &c1, "2"), "after a restart");
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn an_inactive_network_removed_takes_its_endpoints_links_along() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
    attach(&lab, Backend::Xmacvlan, 1, None);
    ok(&["ip", "-n", &lab.dp.name, "link", "del", "eth1"]);
    assert!(within(Duration::from_secs(5), || status(&lab).starts_with("inactive")).is_some());
    assert!(lab.dp.links().iter().any(|l| l.starts_with("xmv")), "the endpoint's link is kept meanwhile");
    lab.cli_ok(&["network", "rm", "--force", "labnet"]);
    assert!(!lab.dp.links().iter().any(|l| l.starts_with("xmv")), "gone with the network: {:?}", lab.dp.links());
    assert!(lab.c(1).links().iter().all(|l| l == "lo"), "the container end too: {:?}", lab.c(1).links());
}
