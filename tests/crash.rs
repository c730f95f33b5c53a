//! The daemon killed (SIGKILL) in the middle of a burst of connects, disconnects, CNI ADDs and DELs
//! (a CNI network comes with its first attachment and goes with its last) and, every third round,
//! a network's removal and re-creation and an internal network's creation and removal, at random
//! points, round after round (issue 17): after each restart the links are exactly what the state
//! names — no daemon-side veth nobody knows, no anchor of no network, no container left with an
//! interface the daemon does not know — and every namespace can be connected and attached again.
//! The seed is printed; XMACVLAN_CRASH_SEED replays a run.
//!
//! Root only; the test builds its own lab of namespaces and removes it.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::*;
use xmacvlan_ctl::client::Client;

const CONTAINERS: usize = 10;
const ROUNDS: usize = 20;

/// xorshift64*: enough randomness for kill delays, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The namespaces the daemon lists as connected to `network`, and their daemon-side links (none
/// while the network does not exist).
fn listed(lab: &Lab, network: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let out = lab.cli(&["network", "inspect", "--format", "json", network]);
    if !out.status.success() {
        return Default::default();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let eps = v["endpoints"].as_array().unwrap();
    let netns = eps.iter().map(|e| e["netns"].as_str().unwrap().to_string()).collect();
    let hosts = eps.iter().map(|e| e["host_ifname"].as_str().unwrap().to_string()).collect();
    (netns, hosts)
}

/// Container `i`'s CNI attachment: its container ID, and the address its IPAM plugin gave.
fn cni_id(i: usize) -> String {
    format!("ctr{i}")
}

fn cni_ip(i: usize) -> String {
    format!("198.18.3.{}/24", i + 1)
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn a_daemon_killed_mid_connect_leaves_nothing_behind_after_its_restart() {
    require_root!();
    let seed = std::env::var("XMACVLAN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("seed {seed} (XMACVLAN_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let lab = Lab::with_containers(CONTAINERS);
    let mut d = Daemon::start(&lab);
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
    let paths: Vec<String> = (1..=CONTAINERS).map(|i| lab.c(i).path()).collect();
    let mut orphans_seen = 0;
    for round in 0..ROUNDS {
        // A burst of connects and disconnects (each namespace toggled), the daemon killed during it.
        // A connect takes a few ms: most kills land inside the burst, some inside a connect.
        let recreate = round % 3 == 1;
        let delay = Duration::from_millis(rng.below(if recreate { 120 } else { 60 }));
        let socket = lab.socket();
        let (connected, _) = listed(&lab, "labnet");
        let (attached, _) = listed(&lab, "cninet");
        let burst = std::thread::spawn({
            let paths = paths.clone();
            move || {
                let x = |args: &[&str]| {
                    let mut full = vec![BIN, "--socket", &socket];
                    full.extend_from_slice(args);
                    let _ = run(&full);
                };
                let client = Client::new(&socket);
                if recreate {
                    // An internal network: its anchor is a link of its own.
                    x(&["network", "create", "--internal", "--subnet", "198.18.4.0/24", "inet"]);
                    x(&["network", "rm", "inet"]);
                }
                for (i, p) in paths.iter().enumerate() {
                    let verb = if connected.contains(p) { "disconnect" } else { "connect" };
                    x(&["network", verb, "labnet", p]);
                    // The CNI plugin's half, as it asks the daemon.
                    let _ = if attached.contains(p) {
                        client.cni_del("cninet".into(), cni_attachment(&cni_id(i))).map(drop)
                    } else {
                        client.cni_add(cni_request(&cni_id(i), p, &cni_ip(i))).map(drop)
                    };
                }
                if recreate {
                    x(&["network", "rm", "--force", "labnet"]);
                    x(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
                    for p in &paths[..3] {
                        x(&["network", "connect", "labnet", p]);
                    }
                }
            }
        });
        std::thread::sleep(delay);
        d.kill9();
        burst.join().unwrap();
        let leftover = lab.dp.links();
        d = Daemon::start(&lab);

        // Links == state: the daemon-side veths are the listed ones, and a container has an
        // interface exactly when it is listed.
        let (netns, mut hosts) = listed(&lab, "labnet");
        let (cni_netns, cni_hosts) = listed(&lab, "cninet");
        hosts.extend(cni_hosts);
        // Endpoint veths are `xmv` and 8 hex digits (the anchor and relay links are named otherwise).
        let veth = |l: &String| l.len() == 11 && l.starts_with("xmv") && l[3..].bytes().all(|b| b.is_ascii_hexdigit());
        let ours: BTreeSet<String> = lab.dp.links().into_iter().filter(veth).collect();
        orphans_seen += leftover.iter().filter(|l| veth(l) && !hosts.contains(*l)).count();
        assert_eq!(ours, hosts, "round {round} (killed after {delay:?}): daemon-side veths are the listed ones");
        for (i, p) in paths.iter().enumerate() {
            let links = lab.c(i + 1).links();
            let has = |name: &str| links.iter().any(|l| l == name);
            assert_eq!(
                has("eth0"),
                netns.contains(p),
                "round {round} (killed after {delay:?}): container {} eth0",
                i + 1
            );
            assert_eq!(
                has("net1"),
                cni_netns.contains(p),
                "round {round} (killed after {delay:?}): container {} net1",
                i + 1
            );
        }
        // An internal network's anchor is there exactly while the network is.
        if lab.cli(&["network", "inspect", "inet"]).status.success() {
            lab.cli_ok(&["network", "rm", "inet"]);
        }
        let anchors: Vec<String> = lab.dp.links().into_iter().filter(|l| l.starts_with("xmvi")).collect();
        assert!(anchors.is_empty(), "round {round} (killed after {delay:?}): anchors of no network: {anchors:?}");
        // Every namespace can be connected: connect the rest, then disconnect all for the next round.
        if lab.cli(&["network", "inspect", "labnet"]).status.code() != Some(0) {
            lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
        }
        let client = Client::new(lab.socket());
        for (i, p) in paths.iter().enumerate() {
            if !netns.contains(p) {
                lab.cli_ok(&["network", "connect", "labnet", p]);
            }
            if !cni_netns.contains(p) {
                let add = client.cni_add(cni_request(&cni_id(i), p, &cni_ip(i)));
                add.unwrap_or_else(|e| panic!("round {round}: CNI ADD of container {}: {e}", i + 1));
            }
        }
        for (i, p) in paths.iter().enumerate() {
            lab.cli_ok(&["network", "disconnect", "labnet", p]);
            client.cni_del("cninet".into(), cni_attachment(&cni_id(i))).expect("CNI DEL");
        }
        // Half the rounds start from all connected and attached (the burst disconnects and
        // deletes), half from none.
        if round % 2 == 0 {
            for (i, p) in paths.iter().enumerate() {
                lab.cli_ok(&["network", "connect", "labnet", p]);
                client.cni_add(cni_request(&cni_id(i), p, &cni_ip(i))).expect("CNI ADD");
            }
        }
    }
    println!("{ROUNDS} rounds; links the killed daemons left unsaved, removed at their restart: {orphans_seen}");
}
