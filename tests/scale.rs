//! Many endpoints on one parent (issue 14). Past about twenty endpoints on one network with one
//! worker, `connect` kept reporting success while wire broadcasts reached few endpoints or none,
//! the wire host could not ARP containers and new endpoints could not send. These tests grow one
//! network on one parent and check what every endpoint must get at each size, through the CLI and
//! the stats JSON contract only (`support::stats`): whatever the datapath does inside.
//!
//! Endpoint `i` (from 1) lives in namespace `c<i>` with address [`ep_ip`] and MAC [`ep_mac`] on
//! network `scale` (198.18.0.0/22, the wire host 198.18.0.254 is its gateway). The containers have
//! IPv6 off: an eth0 with IPv6 sends DAD, MLD and router solicitations of its own when it comes up,
//! and with N endpoints that is N bursts of N − 1 flood copies before the test has sent anything.
//!
//! Root only (skipped otherwise), but for `stats_checks_follow_the_contract`, which runs the stats
//! checks on hand-made JSON; each root test builds its own lab of namespaces and removes it, also
//! when it fails. Phase timings are printed (`--nocapture`); nothing here asserts on speed.

mod support;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::stats::{accounting, umem};
use support::*;

const NET: &str = "scale";
/// Endpoint addresses 198.18.1.1 – 198.18.3.250 (750 endpoints), clear of the wire host (.0.254)
/// and the parent's own address (.0.253).
const SCALE_SUBNET: &str = "198.18.0.0/22";
/// Waits for the accounting invariant and the UMEM counts (the workers publish periodically).
const SETTLE: Duration = Duration::from_secs(2);

/// Endpoint `i`'s address: 198.18.(1 + (i − 1) / 250).(1 + (i − 1) % 250).
fn ep_ip(i: usize) -> String {
    let [a, b] = ep_octets(i);
    format!("198.18.{a}.{b}")
}

/// Endpoint `i`'s MAC: 02:42 and its IPv4 address, as `connect` would derive it.
fn ep_mac(i: usize) -> [u8; 6] {
    let [a, b] = ep_octets(i);
    [0x02, 0x42, 198, 18, a, b]
}

fn ep_octets(i: usize) -> [u8; 2] {
    assert!((1..=750).contains(&i), "endpoint {i} outside the scale subnet's plan");
    [1 + ((i - 1) / 250) as u8, 1 + ((i - 1) % 250) as u8]
}

/// Endpoints as compact ranges: `c2-c21, c25`.
fn ranges(idx: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut k = 0;
    while k < idx.len() {
        let mut j = k;
        while j + 1 < idx.len() && idx[j + 1] == idx[j] + 1 {
            j += 1;
        }
        out.push(if j == k { format!("c{}", idx[k]) } else { format!("c{}-c{}", idx[k], idx[j]) });
        k = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A lab with `n` container namespaces (IPv6 off), a daemon with the lab's default single worker,
/// and the network [`NET`] on the parent eth1.
fn scale_lab(n: usize) -> (Lab, Daemon) {
    let lab = Lab::with_containers(n);
    in_each_netns(&lab.containers, |_| write_sysctl_here("net/ipv6/conf/default/disable_ipv6", "1"));
    // The wire host keeps 198.18.0.254/24 and reaches the rest of the /22 on the same link.
    ok(&["ip", "-n", &lab.wire.name, "route", "add", SCALE_SUBNET, "dev", "wire0"]);
    let d = Daemon::start(&lab);
    lab.cli_ok(&["network", "create", "--subnet", SCALE_SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", NET]);
    (lab, d)
}

/// Runs `f(i)` for every `i` in `range` on `threads` threads; returns the errors, in `i` order.
fn on_threads(
    range: RangeInclusive<usize>,
    threads: usize,
    f: impl Fn(usize) -> Result<(), String> + Sync,
) -> Vec<String> {
    let next = AtomicUsize::new(*range.start());
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i > *range.end() {
                    return;
                }
                if let Err(e) = f(i) {
                    errors.lock().unwrap().push((i, e));
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap();
    errors.sort();
    errors.into_iter().map(|(_, e)| e).collect()
}

/// Runs one CLI command per endpoint of `range`, `threads` at a time; panics naming the failures.
fn cli_each(lab: &Lab, range: RangeInclusive<usize>, threads: usize, args: impl Fn(usize) -> Vec<String> + Sync) {
    let errors = on_threads(range, threads, |i| {
        let a = args(i);
        let out = lab.cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("xmacvlan {a:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    });
    assert!(errors.is_empty(), "{} commands failed, the first: {:?}", errors.len(), &errors[..errors.len().min(3)]);
}

fn connect(lab: &Lab, range: RangeInclusive<usize>, threads: usize) {
    cli_each(lab, range, threads, |i| {
        let (ip, mac) = (ep_ip(i), mac_str(ep_mac(i)));
        argv(&["network", "connect", "--ip", &ip, "--mac-address", &mac, NET, &lab.c(i).name])
    });
}

fn disconnect(lab: &Lab, range: RangeInclusive<usize>, threads: usize) {
    cli_each(lab, range, threads, |i| argv(&["network", "disconnect", NET, &lab.c(i).name]));
}

/// One check's outcome: a short table cell, and what went wrong.
struct Check {
    cell: String,
    failure: Option<String>,
}

impl Check {
    fn from(r: Result<String, String>) -> Self {
        match r {
            Ok(cell) => Check { cell, failure: None },
            Err(e) => Check { cell: "FAIL".into(), failure: Some(e) },
        }
    }
}

/// One marked broadcast from the wire host must reach every endpoint (capture sockets `socks`,
/// endpoint i at `socks[i - 1]`) exactly once.
fn broadcast_reaches_each_once(wire: &RawSocket, wire_mac: [u8; 6], socks: &[RawSocket]) -> Check {
    let k = marker();
    wire.send(&frame(BROADCAST, wire_mac, &k, 60));
    let counts = count_marked_each(socks, &k, Duration::from_secs(2), Duration::from_millis(200));
    let n = counts.len();
    let none: Vec<usize> = (1..=n).filter(|i| counts[i - 1] == 0).collect();
    let more: Vec<usize> = (1..=n).filter(|i| counts[i - 1] > 1).collect();
    let once = n - none.len() - more.len();
    let cell = format!("{once}/{n} once");
    if once == n {
        return Check { cell, failure: None };
    }
    Check {
        failure: Some(format!(
            "one wire broadcast reached {once} of {n} endpoints exactly once; none reached {}; more than once {}",
            ranges(&none),
            ranges(&more)
        )),
        cell,
    }
}

/// The wire host's neighbour table: address → MAC, for entries with a MAC.
fn wire_neighbours(lab: &Lab) -> HashMap<String, String> {
    let out = ok(&["ip", "-j", "-n", &lab.wire.name, "neigh", "show", "dev", "wire0"]);
    let v: Value = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).expect("ip -j neigh");
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["dst"].as_str()?.to_string(), e["lladdr"].as_str()?.to_string())))
        .collect()
}

/// The wire host, its neighbour table flushed, pings endpoints `idx` (all at once): each address
/// must be resolved by ARP to the endpoint's MAC, and answer.
fn wire_resolves_and_pings(lab: &Lab, idx: &[usize]) -> Check {
    ok(&["ip", "-n", &lab.wire.name, "neigh", "flush", "dev", "wire0"]);
    let outs = exec_all(idx.iter().map(|&i| (&lab.wire, argv(&["ping", "-c", "1", "-W", "3", &ep_ip(i)]))));
    let neigh = wire_neighbours(lab);
    let unresolved: Vec<usize> =
        idx.iter().copied().filter(|&i| neigh.get(&ep_ip(i)) != Some(&mac_str(ep_mac(i)))).collect();
    let silent: Vec<usize> = idx.iter().zip(&outs).filter(|(_, o)| !o.status.success()).map(|(&i, _)| i).collect();
    let n = idx.len();
    let cell = format!("ARP {}/{n} ping {}/{n}", n - unresolved.len(), n - silent.len());
    if unresolved.is_empty() && silent.is_empty() {
        return Check { cell, failure: None };
    }
    Check {
        failure: Some(format!(
            "the wire host resolved {} of {n} endpoints by ARP (not: {}) and {} of {n} answered its ping (not: {})",
            n - unresolved.len(),
            ranges(&unresolved),
            n - silent.len(),
            ranges(&silent)
        )),
        cell,
    }
}

/// Every endpoint of `idx` pings the wire host (all at once).
fn endpoints_ping_wire(lab: &Lab, idx: &[usize]) -> Check {
    let outs = exec_all(idx.iter().map(|&i| (lab.c(i), argv(&["ping", "-c", "1", "-W", "3", GATEWAY]))));
    let silent: Vec<usize> = idx.iter().zip(&outs).filter(|(_, o)| !o.status.success()).map(|(&i, _)| i).collect();
    let n = idx.len();
    let cell = format!("{}/{n}", n - silent.len());
    if silent.is_empty() {
        return Check { cell, failure: None };
    }
    Check {
        failure: Some(format!("{} of {n} endpoints could not ping the wire host: {}", silent.len(), ranges(&silent))),
        cell,
    }
}

/// The accounting invariant, read until it holds (up to [`SETTLE`]).
fn accounting_holds(lab: &Lab) -> Check {
    Check::from(lab.wait_accounting(SETTLE).map(|a| format!("holds, drops: {}", a.reasons())))
}

/// Prints each phase's duration as it ends.
struct Phases {
    start: Instant,
    last: Instant,
}

impl Phases {
    fn new() -> Self {
        let now = Instant::now();
        Phases { start: now, last: now }
    }

    fn done(&mut self, what: &str) {
        let now = Instant::now();
        println!("  {:>7.2} s  {what}", (now - self.last).as_secs_f64());
        self.last = now;
    }

    fn total(&self) -> Duration {
        self.start.elapsed()
    }
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn endpoint_counts_that_broke_the_pool() {
    require_root!();
    const STEPS: [usize; 5] = [20, 21, 22, 23, 30];
    let mut phases = Phases::new();
    let (lab, _d) = scale_lab(STEPS[STEPS.len() - 1]);
    let wire = RawSocket::open_protocol(&lab.wire, "wire0", MARK_TYPE);
    let wire_mac = lab.wire.mac("wire0");
    phases.done("lab, daemon, network");
    let mut socks: Vec<RawSocket> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut table: Vec<String> = Vec::new();
    for n in STEPS {
        let have = socks.len();
        connect(&lab, have + 1..=n, 1);
        socks.extend(RawSocket::open_each(&lab.containers[have..n], "eth0", MARK_TYPE));
        let all: Vec<usize> = (1..=n).collect();
        let checks = [
            ("wire broadcast", broadcast_reaches_each_once(&wire, wire_mac, &socks)),
            ("wire host -> endpoints", wire_resolves_and_pings(&lab, &all)),
            ("endpoints -> wire host", endpoints_ping_wire(&lab, &all)),
            ("accounting", accounting_holds(&lab)),
        ];
        let row = format!(
            "{n:>9}  {:<14} {:<22} {:<16} {}",
            checks[0].1.cell, checks[1].1.cell, checks[2].1.cell, checks[3].1.cell
        );
        println!("{row}");
        table.push(row);
        for (what, c) in checks {
            if let Some(f) = c.failure {
                println!("           {what}: {f}");
                failures.push(format!("{n} endpoints, {what}: {f}"));
            }
        }
        phases.done(&format!("{} endpoint(s) connected, {n} checked", n - have));
    }
    println!(
        "\nendpoints on one network, one worker\n{:>9}  {:<14} {:<22} {:<16} accounting\n{}",
        "endpoints",
        "wire broadcast",
        "wire host -> eps",
        "eps -> wire host",
        table.join("\n")
    );
    println!("total {:.1} s", phases.total().as_secs_f64());
    assert!(failures.is_empty(), "{} checks failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn many_endpoints_on_one_network() {
    require_root!();
    const N: usize = 512;
    // CLI processes at a time: the daemon still serialises its work; this overlaps process starts.
    const CLI_THREADS: usize = 4;
    let mut phases = Phases::new();
    let (lab, d) = scale_lab(N);
    let wire = RawSocket::open_protocol(&lab.wire, "wire0", MARK_TYPE);
    let wire_mac = lab.wire.mac("wire0");
    phases.done(&format!("{N} namespaces, daemon, network"));
    connect(&lab, 1..=N, CLI_THREADS);
    phases.done(&format!("{N} connects ({CLI_THREADS} CLI processes at a time)"));
    let socks = RawSocket::open_each(&lab.containers, "eth0", MARK_TYPE);
    phases.done(&format!("{N} capture sockets (one thread)"));

    let mut failures: Vec<String> = Vec::new();
    let mut record = |what: &str, c: Check| {
        println!("           {what}: {}", c.failure.as_deref().unwrap_or(&c.cell));
        if let Some(f) = c.failure {
            failures.push(format!("{what}: {f}"));
        }
    };
    record("wire broadcast", broadcast_reaches_each_once(&wire, wire_mac, &socks));
    phases.done("one wire broadcast");
    record("wire host -> last endpoint", wire_resolves_and_pings(&lab, &[N]));
    phases.done("ARP and ping of the last endpoint");
    record(&format!("accounting with {N} endpoints"), accounting_holds(&lab));
    let before = lab.wait_umem(NET, SETTLE, |_| true);
    record(&format!("umem with {N} endpoints"), Check::from(before.map(|u| u.to_string())));
    phases.done("accounting and umem");

    disconnect(&lab, 1..=N, CLI_THREADS);
    phases.done(&format!("{N} disconnects ({CLI_THREADS} CLI processes at a time)"));
    let after = lab.wait_umem(NET, SETTLE, |u| u.endpoints == 0);
    record(
        "umem after every endpoint is disconnected",
        Check::from(after.map(|u| u.to_string()).map_err(|e| format!("not every endpoint frame came back: {e}"))),
    );
    record("accounting after the disconnects", accounting_holds(&lab));
    phases.done("umem and accounting after the disconnects");

    drop(socks);
    phases.done(&format!("{N} capture sockets closed"));
    drop(d);
    phases.done("daemon stopped");
    drop(lab);
    phases.done("lab removed");
    println!("total {:.1} s", phases.total().as_secs_f64());
    assert!(failures.is_empty(), "{} checks failed:\n{}", failures.len(), failures.join("\n"));
}

/// The checks themselves, on JSON shaped as the contract says: the parent listed in two networks
/// counts once, departed ports count, a missing field or a port whose `drops_total` disagrees with
/// its `drops` fails by name. No root needed.
#[test]
fn stats_checks_follow_the_contract() {
    let port = |kind: &str, name: &str, rx: u64, tx: u64, drops: Value| {
        let total: u64 = drops.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
        json!({ "kind": kind, "name": name, "mac": "02:42:c6:12:00:01", "up": true, "rx": rx, "tx": tx,
                "drops": drops, "drops_total": total })
    };
    let parent = port("parent", "eth1", 10, 3, json!({ "no_endpoint": 0 }));
    let umem_a = json!({ "frames": 100, "free": 50, "flood": 10, "parent": 30, "endpoints": 8, "in_flight": 2 });
    let mut s = json!({
        "workers": [{ "rx_frames": 15, "tx_frames": 18, "dropped": 1, "flood_copies": 5, "flood_empty": 1 }],
        "networks": [
            { "name": "a", "umem": umem_a,
              "ports": [parent, port("endpoint", "xmv1", 2, 8, json!({ "no_buffer": 1, "dst_down": 0 }))] },
            { "name": "b", "ports": [parent, port("endpoint", "xmv2", 3, 9, json!({}))] },
        ],
        "departed": { "rx": 4, "tx": 3, "drops_total": 1, "drops": { "dst_down": 1 } },
        "fast_path": { "mode": "tc", "flood_copies": 2, "flood_empty": 0 },
    });
    // in: rx 10 + 2 + 3, departed 4, copies 5 + 2 = 26; out: tx 3 + 8 + 7 + 2, departed 3 + 1, drops 1,
    // empty 1 = 26.
    let a = accounting(&s).unwrap();
    assert!(a.holds(), "{a}");
    assert_eq!((a.ports, a.inflow()), (3, 26), "{a}");
    assert_eq!(a.reasons(), "dst_down 1, no_buffer 1");
    let u = umem(&s, "a").unwrap();
    assert!(u.balanced(), "{u}");
    assert_eq!(u.endpoints, 8);
    assert!(umem(&s, "b").unwrap_err().contains("network 'b' lacks `umem`"));

    s["networks"][1]["ports"][1]["tx"] = json!(8);
    assert!(!accounting(&s).unwrap().holds(), "one frame unaccounted for");
    s["networks"][1]["ports"][1]["drops_total"] = json!(1);
    let a = accounting(&s).unwrap();
    assert!(!a.holds() && a.to_string().contains("port xmv2: drops_total 1 but its drops sum to 0"), "{a}");
    s["networks"][0]["umem"]["free"] = json!(49);
    assert!(!umem(&s, "a").unwrap().balanced());
    s.as_object_mut().unwrap().remove("departed");
    let e = accounting(&s).unwrap_err();
    assert!(e.contains("the top-level `departed` object"), "{e}");
    s["networks"][0]["ports"][1].as_object_mut().unwrap().remove("rx");
    let e = accounting(&s).unwrap_err();
    assert!(e.contains("port xmv1 lacks `rx`"), "{e}");
}
