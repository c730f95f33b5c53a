//! End-to-end: podman containers on a CNI network in a lab (support::podman), attached to the
//! lab's parent `eth1` by a CNI plugin, as a real client would use it.
//!
//! The same scenario runs with the reference macvlan plugin (containernetworking-plugins; it passes
//! today and shows the checks test the right thing) and with `xmacvlan-cni` against a daemon: two
//! containers get addresses from host-local, the plugin ran in `dp` on namespaces podman made, they
//! ping each other and the wire host both ways, and `podman rm` leaves nothing behind — no link in
//! `dp` but lo and eth1, no namespace in /run/netns, no host-local reservation, no libcni cache entry.
//!
//! Needs root and podman, runc, containernetworking-plugins and busybox-static (`make deps`); run
//! serially (--test-threads=1): each test builds its own lab and removes it.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};
use support::podman::{list_dir, Podman};
use support::*;

const NET: &str = "labnet";
/// host-local hands out addresses from here up (the lab's fixed addresses stay below).
const RANGE_START: &str = "198.18.0.100";

/// The plugin's conflist entry: parent eth1, bridge mode, host-local IPAM with its data in the lab,
/// and `extra` keys (e.g. the daemon's socket) on top.
fn plugin_config(pm: &Podman, plugin_type: &str, extra: Value) -> Value {
    let mut plugin = json!({
        "type": plugin_type,
        "master": "eth1",
        "mode": "bridge",
        "ipam": {
            "type": "host-local",
            "subnet": SUBNET,
            "rangeStart": RANGE_START,
            "dataDir": pm.ipam_dir(),
        },
    });
    for (k, v) in extra.as_object().expect("extra plugin config is a JSON object") {
        plugin[k] = v.clone();
    }
    plugin
}

/// `readlink /proc/self/ns/net` of a process in namespace `ns`, e.g. "net:[4026532246]".
fn ns_id(ns: &Netns) -> String {
    format!("net:[{}]", std::fs::metadata(ns.path()).expect("lab namespace file").ino())
}

/// The last octet of an address of the lab's /24.
fn host_part(ip: &str) -> u32 {
    ip.rsplit('.').next().unwrap().parse().unwrap()
}

fn ping(pm: &Podman, container: &str, ip: &str) {
    let out = pm.exec(container, &["ping", "-c", "1", "-W", "2", ip]);
    assert!(
        out.status.success(),
        "{container} cannot ping {ip}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Addresses host-local holds for `NET` (its dataDir also has `lock` and `last_reserved_ip.0`).
fn reserved(pm: &Podman) -> Vec<String> {
    list_dir(&Path::new(&pm.ipam_dir()).join(NET))
        .into_iter()
        .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
        .collect()
}

/// The scenario, for any plugin that takes the reference macvlan's keys.
fn two_containers_ping_and_leave_nothing(lab: &Lab, pm: &mut Podman, plugin_type: &str, extra: Value) {
    pm.write_conflist(NET, plugin_config(pm, plugin_type, extra));
    let a = pm.run("a", NET);
    let b = pm.run("b", NET);

    // Addresses: from the range, distinct, reserved in the lab's dataDir, on eth0 inside.
    let (ip_a, ip_b) = (pm.ip_of(&a), pm.ip_of(&b));
    assert_ne!(ip_a, ip_b, "both containers got {ip_a}");
    for ip in [&ip_a, &ip_b] {
        assert!(ip.starts_with("198.18.0.") && host_part(ip) >= 100, "{ip} is not from {RANGE_START} up");
    }
    let mut want = vec![ip_a.clone(), ip_b.clone()];
    want.sort();
    assert_eq!(reserved(pm), want, "host-local's reservations");
    for (c, ip) in [(&a, &ip_a), (&b, &ip_b)] {
        let out = pm.exec(c, &["ip", "-4", "-o", "addr", "show", "eth0"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("{ip}/24")), "eth0 of {c} has not {ip}/24: {text}");
    }

    // The namespaces are podman's (not the lab's), one per container, and hold the plugin's eth0.
    let (ns_a, ns_b) = (pm.netns_of(&a), pm.netns_of(&b));
    assert_ne!(ns_a, ns_b, "the containers share a namespace");
    for (ns, ip) in [(&ns_a, &ip_a), (&ns_b, &ip_b)] {
        assert!(ns.starts_with("/run/netns/netns-"), "not a namespace podman made: {ns}");
        let name = ns.trim_start_matches("/run/netns/");
        let text = ok(&["ip", "-n", name, "-4", "-o", "addr", "show", "eth0"]);
        assert!(text.contains(ip.as_str()), "eth0 in {ns} has not {ip}: {text}");
    }

    // The plugin ran in dp (where eth1 is) for each container, with podman's namespace.
    let dp = ns_id(&lab.dp);
    let calls = pm.plugin_calls();
    for (id, ns) in [(&a, &ns_a), (&b, &ns_b)] {
        let add = calls
            .iter()
            .find(|c| c.plugin == plugin_type && c.command == "ADD" && &c.container_id == id)
            .unwrap_or_else(|| panic!("no ADD by {plugin_type} for {id}: {calls:#?}"));
        assert_eq!(add.ran_in, dp, "ADD for {id} did not run in dp ({})", lab.dp.name);
        assert_eq!(&add.netns, ns, "ADD for {id} got another namespace");
        assert_eq!(add.ifname, "eth0");
    }

    // Traffic: container ↔ container, container → wire host, wire host → container.
    ping(pm, &a, &ip_b);
    ping(pm, &b, &ip_a);
    ping(pm, &a, GATEWAY);
    ping(pm, &b, GATEWAY);
    for ip in [&ip_a, &ip_b] {
        lab.wire.ok(&["ping", "-c", "1", "-W", "2", ip]);
    }

    // podman rm: DEL for each, then nothing left.
    pm.rm(&a);
    pm.rm(&b);
    let calls = pm.plugin_calls();
    for id in [&a, &b] {
        assert!(
            calls.iter().any(|c| c.plugin == plugin_type && c.command == "DEL" && &c.container_id == id),
            "no DEL by {plugin_type} for {id}: {calls:#?}"
        );
    }
    assert_eq!(pm.ps(), Vec::<String>::new(), "containers left in podman's storage");
    assert_eq!(lab.dp.links(), ["lo", "eth1"], "links left in dp");
    for ns in [&ns_a, &ns_b] {
        assert!(!Path::new(ns).exists(), "{ns} left behind");
    }
    assert_eq!(reserved(pm), Vec::<String>::new(), "addresses still reserved in host-local's dataDir");
    assert_eq!(pm.cni_cache(), Vec::<String>::new(), "results left in libcni's cache");
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn podman_reference_macvlan() {
    require_root!();
    let lab = Lab::new();
    let mut pm = Podman::new(&lab);
    two_containers_ping_and_leave_nothing(&lab, &mut pm, "macvlan", json!({}));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn podman_xmacvlan() {
    require_root!();
    let lab = Lab::new();
    // Dropped after the containers (locals drop in reverse order): podman rm's DEL needs the daemon.
    let _daemon = Daemon::start(&lab);
    let mut pm = Podman::with_plugin(&lab, Some(Path::new(env!("CARGO_BIN_EXE_xmacvlan-cni"))));
    two_containers_ping_and_leave_nothing(&lab, &mut pm, "xmacvlan-cni", json!({ "socket": lab.socket() }));
    let nets = lab.cli_ok(&["network", "ls", "--format", "json"]);
    assert_eq!(nets.trim(), "[]", "the CNI network went with the last container");
    assert!(lab.dp.xdp_links().is_empty(), "no XDP left on the master");
}
