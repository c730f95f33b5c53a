//! The control plane end to end: dual-stack IPAM, shared parents and internal networks, state that
//! survives a clean stop and a `kill -9`, tap endpoints for VMs, and Docker's validation cases, each
//! shown to leave nothing behind.
//!
//! Root only (skipped otherwise); each test builds its own lab of namespaces and removes it.

mod support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const V6_SUBNET: &str = "2001:2::/64";
const V6_GATEWAY: &str = "2001:2::fe";

/// The wire host also gets an IPv6 address (no DAD: it must answer at once).
fn wire_v6(lab: &Lab) {
    ok(&["ip", "-n", &lab.wire.name, "addr", "add", &format!("{V6_GATEWAY}/64"), "dev", "wire0", "nodad"]);
}

fn ping(ns: &Netns, ip: &str) -> bool {
    ns.exec(&["ping", "-c", "1", "-W", "2", ip]).status.success()
}

/// One ping with a short timeout, for polling.
fn ping_fast(ns: &Netns, ip: &str) -> bool {
    ns.exec(&["ping", "-c", "1", "-W", "0.25", ip]).status.success()
}

fn inspect(lab: &Lab, net: &str) -> Value {
    serde_json::from_str(&lab.cli_ok(&["network", "inspect", "--format", "json", net])).expect("inspect JSON")
}

/// The addresses of the endpoint in `netns` (by the namespace string it was connected with).
fn endpoint_ips(lab: &Lab, net: &str, netns: &str) -> Vec<String> {
    let v = inspect(lab, net);
    let ep = v["endpoints"].as_array().unwrap().iter().find(|e| e["netns"] == netns).cloned().expect("endpoint");
    ep["ips"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn dual_stack_ipam_and_neighbour_discovery_through_the_datapath() {
    require_root!();
    let lab = Lab::new();
    wire_v6(&lab);
    let _d = Daemon::start(&lab);
    lab.cli_ok(&[
        "network",
        "create",
        "--subnet",
        SUBNET,
        "--gateway",
        GATEWAY,
        "--ip-range",
        "198.18.0.32/28",
        "--aux-address",
        "router=198.18.0.32",
        "--ipv6",
        "--subnet",
        V6_SUBNET,
        "--gateway",
        V6_GATEWAY,
        "-o",
        "parent=eth1",
        "dual",
    ]);
    let (c1, c2) = (lab.c(1).name.clone(), lab.c(2).name.clone());
    lab.cli_ok(&["network", "connect", "dual", &c1]);
    lab.cli_ok(&["network", "connect", "--ip6", "2001:2::77", "dual", &c2]);
    // The range's first address is reserved (aux), so c1 gets .33; the IPv6 gateway is ::fe, so
    // ::1 is free.
    assert_eq!(endpoint_ips(&lab, "dual", &c1), ["198.18.0.33/24", "2001:2::1/64"]);
    assert_eq!(endpoint_ips(&lab, "dual", &c2), ["198.18.0.34/24", "2001:2::77/64"]);
    // The very first packets need neighbour discovery (multicast solicitations) through the
    // datapath in both directions, and no DAD delay: one try each, no warm-up.
    assert!(ping(lab.c(1), "2001:2::77"), "container to container over IPv6");
    assert!(ping(lab.c(2), V6_GATEWAY), "container to wire over IPv6");
    assert!(lab.wire.exec(&["ping", "-c", "1", "-W", "2", "2001:2::1"]).status.success(), "wire to container (IPv6)");
    assert!(ping(lab.c(1), "198.18.0.34"), "container to container over IPv4");
    assert!(ping(lab.c(1), GATEWAY), "container to wire over IPv4");
    // Default routes point at the gateways of both families.
    let routes = lab.c(1).ok(&["ip", "-6", "route", "show", "default"]);
    assert!(routes.contains(V6_GATEWAY), "IPv6 default route: {routes}");
    // Disconnect releases both addresses: the next connect gets them again.
    lab.cli_ok(&["network", "disconnect", "dual", &c1]);
    lab.cli_ok(&["network", "connect", "dual", &c1]);
    assert_eq!(endpoint_ips(&lab, "dual", &c1), ["198.18.0.33/24", "2001:2::1/64"]);
    lab.cli_ok(&["network", "rm", "--force", "dual"]);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn networks_share_a_parent_and_internal_networks_stay_internal() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let (c1, c2, c3) = (lab.c(1).name.clone(), lab.c(2).name.clone(), lab.c(3).name.clone());
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "-o", "parent=eth1", "front"]);
    lab.cli_ok(&["network", "create", "--subnet", "198.18.1.0/24", "-o", "parent=eth1", "back"]);
    lab.cli_ok(&["network", "create", "--internal", "--subnet", "198.19.0.0/24", "priv"]);
    lab.cli_ok(&["network", "connect", "--ip", "198.18.0.11", "front", &c1]);
    lab.cli_ok(&["network", "connect", "--ip", "198.18.1.12", "back", &c2]);
    lab.cli_ok(&["network", "connect", "--ifname", "eth1", "--ip", "198.19.0.11", "priv", &c1]);
    lab.cli_ok(&["network", "connect", "--ip", "198.19.0.13", "priv", &c3]);

    // Both networks on eth1 reach the wire, through one XDP program.
    assert!(ping(lab.c(1), GATEWAY));
    ok(&["ip", "-n", &lab.wire.name, "addr", "add", "198.18.1.254/24", "dev", "wire0"]);
    assert!(ping(lab.c(2), "198.18.1.254"));
    // The internal network works among its endpoints...
    assert!(ping(lab.c(3), "198.19.0.11"), "internal endpoints reach each other");
    // ...and nothing of it reaches the wire: a broadcast ARP for the wire's address stays unanswered.
    let arp = lab.c(3).exec(&["arping", "-c", "2", "-w", "2", "-i", "eth0", GATEWAY]);
    assert!(!arp.status.success(), "an internal endpoint got an answer from the wire");
    // The endpoints on the wire's networks meet tc (xmv_endpoint_tc), the internal network's XDP;
    // never is a program on the internal anchor, and XDP on the parent only while an endpoint
    // needs it (none here: the tc fast path takes all their unicast alone).
    // With every frame through AF_XDP, XDP is on the parent and every endpoint.
    let xdp = lab.dp.xdp_links();
    assert_eq!(xdp.contains(&"eth1".to_string()), forced_userspace(), "{xdp:?}");
    assert!(!xdp.iter().any(|l| l.starts_with("xmvi")), "an internal anchor has XDP: {xdp:?}");
    let tc = lab.dp.block_links();
    if forced_userspace() {
        assert_eq!((xdp.len(), tc.len()), (5, 0), "the parent and four endpoints: {xdp:?}, tc on {tc:?}");
    } else {
        assert_eq!(xdp.len(), 2, "the internal network's two endpoints: {xdp:?}");
        assert_eq!(tc.len(), 2, "the wire networks' two endpoints: {tc:?}");
    }
    assert!(tc.iter().all(|l| !xdp.contains(l)), "one program per endpoint: {tc:?} {xdp:?}");
    let v = inspect(&lab, "priv");
    assert_eq!(v["internal"], true);
    assert_eq!(v["parent"], Value::Null);

    // Removing one network on a shared parent keeps the other working.
    lab.cli_ok(&["network", "rm", "--force", "back"]);
    assert!(ping(lab.c(1), GATEWAY), "the other network on eth1 still forwards");
    lab.cli_ok(&["network", "rm", "--force", "front"]);
    lab.cli_ok(&["network", "rm", "--force", "priv"]);
    assert_eq!(lab.dp.links(), ["lo", "eth1"], "everything the daemon created is gone");
    assert!(lab.dp.xdp_links().is_empty());
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn state_survives_kill9_and_clean_stop() {
    require_root!();
    let lab = Lab::new();
    let mut d = Daemon::start(&lab);
    let (c1, c2, c3) = (lab.c(1).name.clone(), lab.c(2).name.clone(), lab.c(3).name.clone());
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "pub"]);
    lab.cli_ok(&["network", "create", "--internal", "--subnet", "198.19.0.0/24", "priv"]);
    lab.cli_ok(&["network", "connect", "pub", &c1]);
    // An MTU below the parent's puts XDP on the parent too (the restart must re-adopt it).
    lab.cli_ok(&["network", "connect", "--mtu", "1500", "pub", &c2]);
    lab.cli_ok(&["network", "connect", "priv", &c3]);
    lab.cli_ok(&["network", "connect", "--ifname", "eth1", "priv", &c1]);
    let ls_before = lab.cli_ok(&["network", "ls", "--format", "json"]);
    let links_before = sorted(lab.dp.links());
    let c2_ip = endpoint_ips(&lab, "pub", &c2)[0].split('/').next().unwrap().to_string();
    assert!(ping(lab.c(1), &c2_ip));

    // Traffic is running (a ping every 10 ms) when the daemon dies.
    let flood = std::process::Command::new("ip")
        .args(["netns", "exec", &c1, "ping", "-q", "-i", "0.01", "-w", "30", GATEWAY])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let flood = ChildGuard(flood);
    std::thread::sleep(Duration::from_millis(300));
    d.kill9();
    // (parent and the internal network's two endpoints: XDP; the wire network's two: tc; with
    // every frame through AF_XDP, XDP on all five)
    let (want_xdp, want_tc) = if forced_userspace() { (5, 0) } else { (3, 2) };
    assert_eq!(lab.dp.xdp_links().len(), want_xdp, "kill -9 leaves the XDP programs attached");
    assert_eq!(lab.dp.block_links().len(), want_tc, "kill -9 leaves the tc programs attached");
    let restarted = Instant::now();
    let mut d = Daemon::start(&lab);
    let back = within(Duration::from_secs(2).saturating_sub(restarted.elapsed()), || {
        ping_fast(lab.c(1), GATEWAY) && ping_fast(lab.c(1), &c2_ip)
    });
    let log = d.log();
    assert!(back.is_some(), "forwarding resumed within 2 s of the restart; daemon log:\n{log}\n{}", lab.stats());
    eprintln!("forwarding resumed {:?} after the restart began", restarted.elapsed());
    assert!(ping(lab.c(3), "198.19.0.2"), "the internal network works again (c3 to c1)");
    let xdp = lab.dp.xdp_links();
    assert_eq!(xdp.iter().filter(|l| *l == "eth1").count(), 1, "exactly one XDP program on the parent");
    assert_eq!(xdp.len(), want_xdp, "one XDP program per parent and XDP-fed endpoint, no more: {xdp:?}");
    let tc = lab.dp.block_links();
    assert_eq!(tc.len(), want_tc, "one tc program per tc-fed endpoint, no more: {tc:?}");
    assert!(tc.iter().all(|l| !xdp.contains(l)), "never both on one endpoint: {tc:?} {xdp:?}");
    assert_eq!(sorted(lab.dp.links()), links_before, "endpoints re-adopted: no extra or missing links");
    assert_eq!(lab.cli_ok(&["network", "ls", "--format", "json"]), ls_before, "same networks and endpoints");
    drop(flood);

    // A clean stop detaches XDP and leaves the endpoints for the next start.
    let gone = Netns::new(format!("{}-gone", lab.tag));
    lab.cli_ok(&["network", "connect", "pub", &gone.name]);
    assert!(d.stop(), "exit 0 on SIGTERM");
    assert!(lab.dp.xdp_links().is_empty(), "no XDP after a clean stop: {:?}", lab.dp.xdp_links());
    let tc = lab.dp.block_links();
    assert!(tc.is_empty(), "no tc program after a clean stop: {tc:?}");
    assert!(lab.c(1).links().contains(&"eth0".to_string()), "endpoints stay after a clean stop");
    let up: Vec<String> = serde_json::from_str::<Value>(&lab.dp.ok(&["ip", "-j", "link", "show", "up"]))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().filter(|n| n.starts_with("xmv")).map(str::to_string))
        .collect();
    assert!(up.is_empty(), "daemon-side ends are down while no XDP guards them: {up:?}");
    // While the daemon is down, c2's link vanishes (it is recreated at the next start) and a
    // namespace goes away altogether (its endpoint is dropped).
    lab.c(2).ok(&["ip", "link", "del", "eth0"]);
    drop(gone);
    let _d = Daemon::start(&lab);
    assert!(within(Duration::from_secs(2), || ping_fast(lab.c(1), &c2_ip)).is_some(), "c2's endpoint was recreated");
    let v = inspect(&lab, "pub");
    let spaces: Vec<&str> = v["endpoints"].as_array().unwrap().iter().map(|e| e["netns"].as_str().unwrap()).collect();
    assert_eq!(spaces, [c1.as_str(), c2.as_str()], "the endpoint of the deleted namespace was dropped");
    lab.cli_ok(&["network", "rm", "--force", "pub"]);
    lab.cli_ok(&["network", "rm", "--force", "priv"]);
    assert_eq!(lab.dp.links(), ["lo", "eth1"]);
}

/// Kills a child process we started when dropped (by its PID).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A parent program a killed daemon left behind goes when the restarted daemon needs none: it would
/// steer by the dead daemon's maps.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn a_stale_parent_program_goes_when_nothing_needs_it() {
    require_root!();
    let lab = Lab::new();
    let mut d = Daemon::start_with(&lab, &["--fast-path", "tc"]);
    let (c1, c2) = (lab.c(1).name.clone(), lab.c(2).name.clone());
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "pub"]);
    lab.cli_ok(&["network", "connect", "pub", &c1]);
    lab.cli_ok(&["network", "connect", "--mtu", "1500", "pub", &c2]);
    assert!(lab.dp.xdp_links().contains(&"eth1".to_string()), "{:?}", lab.dp.xdp_links());
    d.kill9();
    // The endpoint that needed it goes with its namespace while the daemon is down.
    ok(&["ip", "netns", "del", &c2]);
    let _d = Daemon::start_with(&lab, &["--fast-path", "tc"]);
    assert!(!lab.dp.xdp_links().contains(&"eth1".to_string()), "stale program left: {:?}", lab.dp.xdp_links());
    assert!(ping(lab.c(1), GATEWAY), "c1 forwards through tc alone");
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn corrupt_state_is_reported_and_kept() {
    require_root!();
    let lab = Lab::new();
    std::fs::create_dir_all(lab.state_dir()).unwrap();
    let file = lab.state_dir().join("state.json");
    std::fs::write(&file, b"{\"version\": 1, \"networks\": [ oops").unwrap();
    let (status, log) = Daemon::refused(&lab, &[]);
    assert!(!status.success());
    assert!(log.contains("corrupt") && log.contains(&file.display().to_string()), "names the file: {log}");
    assert!(log.contains("--start-empty"), "says how to go on: {log}");
    assert_eq!(std::fs::read(&file).unwrap(), b"{\"version\": 1, \"networks\": [ oops", "left as it was");

    // Well-formed JSON with a bad value: refused too, before anything is attached.
    let bad = r#"{"version":1,"next_id":2,"networks":[{"name":"n","id":1,"parent":"eth1","internal":false,
        "mode":"bridge","ipam":{"subnets":["banana"],"gateways":[],"ip_ranges":[],"aux_addresses":[],"ipv6":false},
        "endpoints":[]}]}"#;
    std::fs::write(&file, bad).unwrap();
    let (status, log) = Daemon::refused(&lab, &[]);
    assert!(!status.success());
    assert!(log.contains("banana") && log.contains("--start-empty"), "{log}");
    assert!(lab.dp.xdp_links().is_empty(), "nothing attached for a refused state file");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), bad, "left as it was");

    let _d = Daemon::start_with(&lab, &["--start-empty"]);
    assert_eq!(lab.cli_ok(&["network", "ls", "--format", "json"]).trim(), "[]");
    let aside: Vec<_> = std::fs::read_dir(lab.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("state.json.unusable-"))
        .collect();
    assert_eq!(aside.len(), 1, "the unusable file was moved aside");
    assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), bad);
}

/// Opens the tap `name` in namespace `ns` as a VM monitor would (IFF_TAP | IFF_NO_PI).
fn open_tap(ns: &Netns, name: &str) -> OwnedFd {
    in_netns(&ns.path(), || {
        // SAFETY: open/ioctl with valid arguments, results checked.
        unsafe {
            let raw = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK);
            assert!(raw >= 0, "open /dev/net/tun: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(raw);
            let mut req = [0u8; 40];
            req[..name.len()].copy_from_slice(name.as_bytes());
            req[16..18].copy_from_slice(&(0x0002u16 | 0x1000).to_ne_bytes());
            assert_eq!(libc::ioctl(fd.as_raw_fd(), 0x4004_54ca, req.as_mut_ptr()), 0, "TUNSETIFF {name}");
            fd
        }
    })
}

/// Reads frames from the tap until `want` accepts one, up to `wait`.
fn read_until(fd: &OwnedFd, wait: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < end {
        // SAFETY: reads into a live buffer from our nonblocking fd.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 && want(&buf[..n as usize]) {
            return Some(buf[..n as usize].to_vec());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn ipv4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"xmacvlan tap ping");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn tap_endpoint_for_a_vm_answers_arp_and_ping() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    tap_scenario(&lab);
}

/// With two workers the tap's single queue belongs to worker 0; the container's replies are made to
/// leave on its queue 1 (XPS), so worker 1 must reach the tap through its copy-transmit socket.
/// With every frame through AF_XDP (`--fast-path off`): by default a container's frames for a tap
/// reach the workers through the collector, which worker 0 serves.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn tap_endpoint_with_two_workers() {
    require_root!();
    let lab = Lab::with_parent_queues(2);
    let _d = Daemon::start_with(&lab, &["--cpus", "0,1", "--fast-path", "off"]);
    tap_scenario(&lab);
}

/// XDP packets received on queue `q` of the daemon-side veth of the endpoint in `netns`.
fn host_queue_packets(lab: &Lab, net: &str, netns: &str, q: u32) -> u64 {
    let v = inspect(lab, net);
    let host = v["endpoints"].as_array().unwrap().iter().find(|e| e["netns"] == netns).unwrap()["host_ifname"]
        .as_str()
        .unwrap()
        .to_string();
    let stats = lab.dp.ok(&["ethtool", "-S", &host]);
    let key = format!("rx_queue_{q}_xdp_packets:");
    stats.lines().find_map(|l| l.trim().strip_prefix(&key)).map(|n| n.trim().parse().unwrap()).unwrap_or(0)
}

fn tap_scenario(lab: &Lab) {
    let c1 = lab.c(1).name.clone();
    let two_workers = lab.stats()["workers"].as_array().unwrap().len() == 2;
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "vms"]);
    lab.cli_ok(&["network", "connect", "--ip", "198.18.0.11", "vms", &c1]);
    let out: Value = serde_json::from_str(&lab.cli_ok(&[
        "network",
        "connect",
        "--tap",
        "vm0",
        "--owner",
        "4242",
        "--ip",
        "198.18.0.50",
        "--format",
        "json",
        "vms",
    ]))
    .unwrap();
    let vm_mac = parse_mac(out["mac"].as_str().unwrap());
    assert_eq!(out["kind"], "tap");
    let owner = lab.dp.ok(&["cat", "/sys/class/net/vm0/owner"]);
    assert_eq!(owner.trim(), "4242", "tap owned by the given uid");
    assert!(lab.dp.xdp_links().contains(&"vm0".to_string()));

    if two_workers {
        // Everything c1 sends leaves on its queue 1 (tx-0 serves no CPU), i.e. reaches worker 1.
        lab.c(1).ok(&[
            "sh",
            "-c",
            "echo 0 > /sys/class/net/eth0/queues/tx-0/xps_cpus; echo 3 > /sys/class/net/eth0/queues/tx-1/xps_cpus",
        ]);
    }
    let queue0_before = host_queue_packets(lab, "vms", &c1, 0);
    let tap = open_tap(&lab.dp, "vm0");
    let c1_ip = ipv4("198.18.0.11");
    let vm_ip = ipv4("198.18.0.50");
    // ARP request from the "VM" for c1's address.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&vm_mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&vm_mac);
    arp.extend_from_slice(&vm_ip);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&c1_ip);
    // The carrier comes up when the tap is opened; the daemon follows it asynchronously.
    let reply = within(Duration::from_secs(3), || {
        // SAFETY: writes a live buffer to our tap fd.
        unsafe { libc::write(tap.as_raw_fd(), arp.as_ptr().cast(), arp.len()) };
        read_until(&tap, Duration::from_millis(300), |f| {
            f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2] && f[28..32] == c1_ip
        })
        .is_some()
    });
    assert!(reply.is_some(), "ARP reply from the container through the tap");
    let c1_mac = container_mac_of(lab, 1);
    let req = echo_request(c1_mac, vm_mac, vm_ip, c1_ip);
    // SAFETY: as above.
    unsafe { libc::write(tap.as_raw_fd(), req.as_ptr().cast(), req.len()) };
    let echo = read_until(&tap, Duration::from_millis(300), |f| {
        f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0 && f[26..30] == c1_ip
    });
    assert!(echo.is_some(), "ICMP echo reply from the container through the tap");
    if two_workers {
        let q0 = host_queue_packets(lab, "vms", &c1, 0);
        assert_eq!(q0, queue0_before, "c1's replies all came in on queue 1, so worker 1 sent them to the tap by copy");
        assert!(host_queue_packets(lab, "vms", &c1, 1) >= 2);
    }
    drop(tap);

    // Disconnect removes the tap.
    lab.cli_ok(&["network", "disconnect", "vms", "vm0"]);
    assert!(!lab.dp.links().contains(&"vm0".to_string()));
    lab.cli_ok(&["network", "rm", "--force", "vms"]);
}

fn container_mac_of(lab: &Lab, i: usize) -> [u8; 6] {
    lab.c(i).mac("eth0")
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn docker_validation_cases_are_refused_by_name_and_leave_nothing() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let (c1, c2) = (lab.c(1).name.clone(), lab.c(2).name.clone());
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "pub"]);
    lab.cli_ok(&["network", "create", "--subnet", "198.18.9.0/30", "-o", "parent=eth1", "tiny"]);
    lab.cli_ok(&["network", "connect", "--ip", "198.18.0.11", "pub", &c1]);
    lab.cli_ok(&["network", "connect", "--ifname", "eth1", "tiny", &c1]);
    lab.cli_ok(&["network", "connect", "--ifname", "eth1", "tiny", &c2]);
    let used_mac = mac_str(lab.c(1).mac("eth0"));
    // The state is the file and its journal (what changed since the file was written).
    let state_files = [lab.state_dir().join("state.json"), lab.state_dir().join("state.journal")];
    let read_state = || state_files.iter().map(|f| std::fs::read(f).unwrap()).collect::<Vec<_>>();
    let c3 = lab.c(3).name.clone();
    // One readable command line per case (no argument contains a space).
    let create = "network create --subnet 198.19.0.0/24";
    let cases: Vec<(String, &str)> = vec![
        (format!("{create} -o parent=nope0 n2"), "nope0"),
        (format!("{create} -o parent=lo n2"), "loopback"),
        (format!("{create} -o parent=eth1 -o macvlan_mode=bridgey n2"), "'bridgey' is not valid"),
        (format!("{create} --gateway 198.20.0.1 -o parent=eth1 n2"), "gateway 198.20.0.1"),
        (format!("{create} --ip-range 198.19.1.0/25 -o parent=eth1 n2"), "ip-range 198.19.1.0/25"),
        (format!("{create} --aux-address a=198.20.0.9 -o parent=eth1 n2"), "a=198.20.0.9"),
        (format!("{create} --aux-address a=198.19.0.9 --aux-address b=198.19.0.9 -o parent=eth1 n2"), "b=198.19.0.9"),
        ("network create --subnet 198.18.0.128/25 -o parent=eth1 n2".into(), "network 'pub'"),
        ("network create --subnet 198.18.0.128/25 -o parent=eth1 n2".into(), "198.18.0.128/25"),
        (format!("network create --subnet {V6_SUBNET} -o parent=eth1 n2"), "--ipv6"),
        ("network create --internal --subnet 198.19.0.0/24 -o parent=eth1 n2".into(), "--internal"),
        (format!("{create} -o parent=eth1 ."), "network name '.' is invalid"),
        (format!("{create} -o parent=eth1 .."), "network name '..' is invalid"),
        (format!("{create} -o parent=eth1 _n2"), "network name '_n2' is invalid"),
        (format!("network connect tiny {c3}"), "ipv4 pool is empty"),
        (format!("network connect --ip6 2001:2::5 pub {c2}"), "2001:2::5"),
        (format!("network connect --ip6 2001:2::5 pub {c2}"), "no IPv6"),
        (format!("network connect --mac-address {used_mac} pub {c2}"), &used_mac),
        (format!("network connect --mtu 3001 pub {c2}"), "3001"),
        ("network connect --tap eth1 pub".into(), "eth1"),
        ("network connect --tap way-too-long-tap-name pub".into(), "way-too-long-tap-name"),
        ("network rm pub".into(), &c1),
        // VLAN parents (Docker's dotted notation) and the other macvlan modes.
        (format!("{create} -o parent=eth1.0 n2"), "received: 0"),
        (format!("{create} -o parent=eth1.4095 n2"), "vlan id must be between 1-4094, received: 4095"),
        (format!("{create} -o parent=eth1.10x n2"), "'10x'"),
        (format!("{create} -o parent=eth1. n2"), "eth1."),
        (format!("{create} -o parent=.10 n2"), ".10"),
        (format!("{create} -o parent=nope0.10 n2"), "nope0"),
        (format!("{create} -o parent=eth1 -o macvlan_mode=passthru n2"), "macvlan network pub is already using"),
        (format!("{create} -o parent=eth1 -o nodst=true n2"), "nodst is for macvlan_mode=source"),
        (format!("{create} -o parent=eth1 -o macvlan_mode=source -o nodst=maybe n2"), "nodst=maybe"),
        (format!("{create} -o parent=eth1 -o vlan_pcp=keep n2"), "vlan_pcp=keep"),
        (format!("{create} -o parent=eth1.7 -o vlan_pcp=copy n2"), "vlan_pcp=copy"),
        (format!("{create} --internal -o macvlan_mode=vepa n2"), "'vepa' needs a parent"),
        (format!("network macaddr add pub {c1} 02:00:c6:12:00:51"), "source MAC lists are for macvlan_mode=source"),
    ];
    let cases: Vec<(Vec<&str>, &str)> = cases.iter().map(|(c, n)| (c.split_whitespace().collect(), *n)).collect();
    let ls_before = lab.cli_ok(&["network", "ls", "--format", "json"]);
    let links_before = sorted(lab.dp.links());
    let state_before = read_state();
    let c_links: Vec<_> = (1..=3).map(|i| lab.c(i).links()).collect();
    for (args, needle) in &cases {
        let out = lab.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: error {err:?} should name {needle:?}");
        assert_eq!(lab.cli_ok(&["network", "ls", "--format", "json"]), ls_before, "{args:?} changed the networks");
        assert_eq!(sorted(lab.dp.links()), links_before, "{args:?} left links behind");
        assert!(read_state() == state_before, "{args:?} changed the state file or its journal");
        for i in 1..=3 {
            assert_eq!(lab.c(i).links(), c_links[i - 1], "{args:?} left links in container {i}");
        }
    }
    // A CLI of another API version gets a clear message (raw request with version 1).
    let mut s = std::os::unix::net::UnixStream::connect(lab.socket()).unwrap();
    use std::io::{BufRead, Write};
    s.write_all(b"{\"version\":1,\"request\":{\"op\":\"network_ls\"}}\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.contains("API version mismatch") && line.contains("v1"), "{line}");
}

/// Source lists, VLAN networks and a passthru parent are part of the state: after `kill -9` and
/// a restart the daemon forwards by them again; the list's edit errors name the bad value.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn modes_vlans_and_source_lists_survive_a_restart() {
    require_root!();
    let lab = Lab::new();
    let mut d = Daemon::start(&lab);
    let (c1, c2) = (lab.c(1).path(), lab.c(2).path());
    let sender = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x51];
    let s = mac_str(sender);
    lab.cli_ok(&[
        "network",
        "create",
        "--subnet",
        "198.18.1.0/24",
        "-o",
        "parent=eth1",
        "-o",
        "macvlan_mode=source",
        "src",
    ]);
    lab.cli_ok(&[
        "network",
        "create",
        "--subnet",
        "198.18.10.0/24",
        "-o",
        "parent=eth1.10",
        "-o",
        "vlan_pcp=keep",
        "v10",
    ]);
    // A parent that moves tags out of the frame before XDP runs would hide every VLAN from it.
    let rx_vlan = || lab.dp.ok(&["ethtool", "-k", "eth1"]).lines().any(|l| l.trim() == "rx-vlan-offload: on");
    assert!(!rx_vlan(), "the daemon turned the parent's receive VLAN offload off");
    lab.cli_ok(&["network", "connect", "--mac-address", &mac_str(container_mac(1)), "src", &c1]);
    lab.cli_ok(&["network", "connect", "--mac-address", &mac_str(container_mac(2)), "v10", &c2]);
    lab.cli_ok(&["network", "macaddr", "add", "src", &c1, &s]);
    for (args, needle) in [
        (
            vec!["network", "macaddr", "del", "src", &c1, "02:00:c6:12:00:52"],
            "02:00:c6:12:00:52 is not in the source MAC list",
        ),
        (vec!["network", "macaddr", "add", "src", &c1, "01:00:5e:00:00:01"], "01:00:5e:00:00:01 is a multicast"),
        (vec!["network", "macaddr", "add", "src", &c1, "02:00:c6:12:00"], "'02:00:c6:12:00'"),
        (vec!["network", "macaddr", "add", "src", &c1, "+2:00:c6:12:00:52"], "'+2:00:c6:12:00:52'"),
        (vec!["network", "macaddr", "flush", "src", &c1, &s], "flush takes no MAC"),
        (vec!["network", "macaddr", "add", "src", &c1], "at least one MAC"),
        (vec!["network", "macaddr", "add", "src", &c2, &s], "is not connected to network 'src'"),
    ] {
        let out = lab.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{args:?}: {err}");
    }
    // `set` keeps each MAC once, in the order given (the fuzzer found `set A B A` saved A twice).
    let other = "02:00:c6:12:00:53";
    lab.cli_ok(&["network", "macaddr", "set", "src", &c1, &s, other, &s]);
    assert_eq!(inspect(&lab, "src")["endpoints"][0]["source_macs"], serde_json::json!([s, other]));
    lab.cli_ok(&["network", "macaddr", "set", "src", &c1, &s]);
    d.kill9();
    let _d = Daemon::start(&lab);
    let src = inspect(&lab, "src");
    assert_eq!(src["mode"], "source");
    assert_eq!(src["endpoints"][0]["source_macs"], serde_json::json!([s]));
    let v10 = inspect(&lab, "v10");
    assert_eq!((v10["parent"].as_str(), v10["vlan"].as_u64()), (Some("eth1.10"), Some(10)));
    assert_eq!(v10["options"], serde_json::json!([["vlan_pcp", "keep"]]));

    // The listed sender's frame to an unknown MAC reaches c1 (and the host); a tagged frame for
    // c2 on VLAN 10 reaches c2.
    let wire = RawSocket::open(&lab.wire, "wire0");
    let (t1, t2) = (RawSocket::open(lab.c(1), "eth0"), RawSocket::open(lab.c(2), "eth0"));
    let k = marker();
    wire.send(&frame(OUTSIDE, sender, &k, 60));
    assert_eq!(t1.collect(&k, Duration::from_millis(500)).len(), 1, "source copy after the restart");
    let k = marker();
    let mut tagged = frame(container_mac(2), lab.wire.mac("wire0"), &k, 64);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    wire.send(&tagged);
    // (Tag removal itself is checked in tests/vlan.rs, which reads PACKET_AUXDATA.)
    assert_eq!(t2.collect(&k, Duration::from_millis(500)).len(), 1, "VLAN 10 frame after the restart");
    lab.cli_ok(&["network", "rm", "--force", "src"]);
    lab.cli_ok(&["network", "rm", "--force", "v10"]);
    assert!(rx_vlan(), "receive VLAN offload is back on (a veth has it on) when the parent's last network goes");
}
