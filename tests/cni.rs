//! `xmacvlan-cni` invoked as a container runtime invokes it (stdin configuration, `CNI_*`
//! environment, JSON on stdout), against a running daemon: the reference macvlan plugin's test
//! cases (link made in another namespace, ADD/DEL with host-local, DEL of an unconfigured link,
//! L2 only, ADD/CHECK/DEL at every spec version with CHECK refused below 0.4.0, no master, MAC
//! from CNI_ARGS and from runtimeConfig), and the verbs it leaves as TODO (STATUS, GC).
//!
//! The plugin runs inside the lab's `dp` namespace, where the daemon and its master `eth1` are;
//! IPAM is Debian's host-local (`/usr/lib/cni`) with its data directory in the lab.
//! Root only (skipped otherwise).

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::*;

const PLUGIN: &str = env!("CARGO_BIN_EXE_xmacvlan-cni");
const CNI_PATH: &str = "/usr/lib/cni";

/// What a runtime gets back from one plugin run.
struct Outcome {
    ok: bool,
    out: Value,
}

impl Outcome {
    fn code(&self) -> u64 {
        assert!(!self.ok, "expected an error, got success: {}", self.out);
        self.out["code"].as_u64().unwrap_or_else(|| panic!("an error object with a code: {}", self.out))
    }

    fn msg(&self) -> &str {
        self.out["msg"].as_str().unwrap_or_default()
    }
}

/// The runtime side: a configuration and the environment of one container.
struct Runtime<'a> {
    lab: &'a Lab,
    conf: Value,
    /// CNI_IFNAME.
    ifname: &'a str,
}

impl<'a> Runtime<'a> {
    /// A network `xnet` on master eth1 with host-local on 198.18.0.0/24 (from .100), version `v`.
    fn new(lab: &'a Lab, v: &str) -> Self {
        let data = lab.tmp.join("ipam");
        let conf = json!({
            "cniVersion": v,
            "name": "xnet",
            "type": "xmacvlan-cni",
            "master": "eth1",
            "socket": lab.socket(),
            "ipam": {
                "type": "host-local",
                "dataDir": data,
                "ranges": [[{ "subnet": SUBNET, "rangeStart": "198.18.0.100", "gateway": GATEWAY }]],
                "routes": [{ "dst": "0.0.0.0/0" }]
            }
        });
        Runtime { lab, conf, ifname: "eth0" }
    }

    /// The same configuration with another CNI_IFNAME.
    fn renamed(&self, ifname: &'a str) -> Self {
        Runtime { lab: self.lab, conf: self.conf.clone(), ifname }
    }

    fn l2_only(mut self) -> Self {
        self.conf.as_object_mut().unwrap().remove("ipam");
        self
    }

    fn with(mut self, key: &str, v: Value) -> Self {
        self.conf[key] = v;
        self
    }

    fn without(mut self, key: &str) -> Self {
        self.conf.as_object_mut().unwrap().remove(key);
        self
    }

    /// Runs the plugin for `cmd` on container `id` with netns `netns` and `CNI_ARGS` `args`.
    fn invoke_with(&self, cmd: &str, conf: &Value, id: &str, netns: &str, args: &str) -> Outcome {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.lab.dp.name, PLUGIN])
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", CNI_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running the plugin");
        child.stdin.take().unwrap().write_all(&serde_json::to_vec(conf).unwrap()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{cmd}: stdout is not JSON ({e}): {text}"))
        };
        if !out.status.success() {
            eprintln!("{cmd} → {v}");
        }
        Outcome { ok: out.status.success(), out: v }
    }

    fn invoke(&self, cmd: &str, c: &Netns) -> Outcome {
        self.invoke_with(cmd, &self.conf, &c.name, &c.path(), "")
    }

    fn add(&self, c: &Netns) -> Value {
        let r = self.invoke("ADD", c);
        assert!(r.ok, "ADD failed: {}", r.out);
        r.out
    }

    /// CHECK with the ADD result as prevResult.
    fn check(&self, c: &Netns, prev: &Value) -> Outcome {
        let mut conf = self.conf.clone();
        conf["prevResult"] = prev.clone();
        self.invoke_with("CHECK", &conf, &c.name, &c.path(), "")
    }

    fn del(&self, c: &Netns) {
        let r = self.invoke("DEL", c);
        assert!(r.ok, "DEL failed: {}", r.out);
    }
}

fn ping(ns: &Netns, ip: &str) -> bool {
    ns.exec(&["ping", "-c", "1", "-W", "2", ip]).status.success()
}

/// The addresses host-local has handed out (a file named after each address in its data
/// directory, next to `lock` and `last_reserved_ip.0`).
fn leases(lab: &Lab) -> Vec<String> {
    let dir = lab.tmp.join("ipam").join("xnet");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn networks(lab: &Lab) -> Vec<Value> {
    let out = lab.cli_ok(&["network", "ls", "--format", "json"]);
    serde_json::from_str::<Value>(&out).unwrap().as_array().cloned().unwrap_or_default()
}

/// host-local is this suite's IPAM: `make deps` installs it; without it the tests fail, not skip.
fn require_host_local() {
    assert!(
        Path::new(CNI_PATH).join("host-local").is_file(),
        "host-local is missing in {CNI_PATH}: apt install containernetworking-plugins (make deps)"
    );
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn add_del_with_host_local_in_another_namespace() {
    require_root!();
    require_host_local();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let rt = Runtime::new(&lab, "1.0.0");
    let (c1, c2) = (lab.c(1), lab.c(2));
    let r1 = rt.add(c1);
    let r2 = rt.add(c2);

    // The result: the interface in the container's namespace, the lease, the route.
    assert_eq!(r1["cniVersion"], "1.0.0");
    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(r1["interfaces"][0]["sandbox"], c1.path().as_str());
    assert_eq!(r1["ips"][0]["address"], "198.18.0.100/24");
    assert_eq!(r1["ips"][0]["gateway"], GATEWAY);
    assert_eq!(r1["ips"][0]["interface"], 0);
    assert_eq!(r1["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(r2["ips"][0]["address"], "198.18.0.101/24");
    assert_eq!(mac_str(c1.mac("eth0")), r1["interfaces"][0]["mac"].as_str().unwrap(), "the MAC reported is the link's");
    assert_eq!(leases(&lab), ["198.18.0.100", "198.18.0.101"]);
    let route = c1.ok(&["ip", "-4", "route", "show", "default"]);
    assert!(route.contains(&format!("via {GATEWAY} dev eth0")), "default route in the container: {route}");

    // The daemon made the network on the first ADD; both containers reach each other and the wire.
    let nets = networks(&lab);
    assert_eq!(nets.len(), 1);
    assert_eq!((nets[0]["name"].as_str(), nets[0]["cni"].as_bool()), (Some("xnet"), Some(true)));
    assert_eq!(nets[0]["endpoints"].as_array().unwrap().len(), 2);
    assert!(ping(c1, "198.18.0.101"), "container to container");
    assert!(ping(c2, GATEWAY), "container to a host on the wire");
    let out = lab.cli(&["network", "connect", "xnet", &lab.c(3).path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("belongs to the CNI plugin"),
        "the CLI leaves CNI networks alone: {err}"
    );

    // DEL releases the lease first and removes the link; the last DEL removes the network.
    rt.del(c1);
    assert!(!c1.links().contains(&"eth0".to_string()), "eth0 is gone from the container");
    assert_eq!(leases(&lab), ["198.18.0.101"]);
    rt.del(c2);
    assert!(leases(&lab).is_empty(), "every lease is released");
    assert!(networks(&lab).is_empty(), "the CNI network goes with its last attachment");
    assert_eq!(lab.dp.links(), ["lo", "eth1"], "nothing is left on the host side");
    assert!(lab.dp.xdp_links().is_empty(), "XDP is detached from the master");
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn del_is_idempotent_for_unconfigured_and_vanished_links() {
    require_root!();
    require_host_local();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let rt = Runtime::new(&lab, "1.0.0");
    // DEL of a container that was never added, twice.
    rt.del(lab.c(1));
    rt.del(lab.c(1));
    // DEL after the namespace is gone (a runtime that cleans up late), and with no netns at all.
    let gone = Netns::new(format!("{}-gone", lab.tag));
    rt.add(&gone);
    let (id, path) = (gone.name.clone(), gone.path());
    drop(gone);
    let r = rt.invoke_with("DEL", &rt.conf, &id, &path, "");
    assert!(r.ok, "DEL with the namespace gone: {}", r.out);
    let r = rt.invoke_with("DEL", &rt.conf, &id, "", "");
    assert!(r.ok, "DEL without CNI_NETNS: {}", r.out);
    assert!(leases(&lab).is_empty(), "the lease is released even though the namespace was gone");
    assert!(networks(&lab).is_empty());
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn l2_only_without_ipam() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let rt = Runtime::new(&lab, "1.0.0").l2_only();
    let r = rt.add(lab.c(1));
    assert_eq!(r.get("ips"), None, "no IPAM, no addresses: {r}");
    let c = lab.c(1);
    let addrs = c.ok(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.trim().is_empty(), "no IPv4 address on an L2-only link: {addrs}");
    assert!(c.ok(&["ip", "link", "show", "eth0"]).contains("state UP"), "the link is up");
    let mac = c.mac("eth0");
    assert_eq!(mac[0] & 0x03, 0x02, "a random locally administered unicast MAC: {}", mac_str(mac));
    // Frames flow: one from the wire to the container's MAC arrives.
    let rx = RawSocket::open(c, "eth0");
    let tx = RawSocket::open(&lab.wire, "wire0");
    let m = marker();
    tx.send(&frame(mac, lab.wire.mac("wire0"), &m, 60));
    assert_eq!(rx.collect(&m, std::time::Duration::from_secs(1)).len(), 1, "the frame reached the L2-only endpoint");
    rt.del(c);
    assert!(networks(&lab).is_empty());
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn add_check_del_at_every_spec_version() {
    require_root!();
    require_host_local();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let rt = Runtime::new(&lab, v);
        let c = lab.c(1);
        let r = rt.add(c);
        assert_eq!(r["cniVersion"], v);
        let old = v.starts_with("0.");
        assert_eq!(r["ips"][0].get("version").is_some(), old, "{v}: ips carry \"version\" before 1.0.0: {r}");
        assert_eq!(r["interfaces"][0].get("mtu").is_some(), v == "1.1.0", "{v}: interface mtu from 1.1.0: {r}");
        let chk = rt.check(c, &r);
        if old && v != "0.4.0" {
            assert_eq!(chk.code(), 1, "{v}: CHECK is refused below 0.4.0");
            assert_eq!(chk.msg(), "config version does not allow CHECK");
        } else {
            assert!(chk.ok, "{v}: CHECK of a fresh attachment: {}", chk.out);
        }
        rt.del(c);
        assert!(networks(&lab).is_empty(), "{v}: DEL leaves nothing");
    }
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn check_sees_what_changed_in_the_container_and_in_the_datapath() {
    require_root!();
    require_host_local();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let rt = Runtime::new(&lab, "1.1.0");
    let c = lab.c(1);
    let r = rt.add(c);
    assert!(rt.check(c, &r).ok);

    // A prevResult that does not match what is there.
    let mut wrong = r.clone();
    wrong["interfaces"][0]["mac"] = json!("02:00:00:00:00:99");
    assert!(rt.check(c, &wrong).msg().contains("MAC 02:00:00:00:00:99"), "a wrong MAC is named");
    let mut wrong = r.clone();
    wrong["interfaces"][0]["sandbox"] = json!("/var/run/netns/elsewhere");
    assert!(rt.check(c, &wrong).msg().contains("doesn't match configured netns"));

    // The container lost its address, then its route.
    c.ok(&["ip", "addr", "del", "198.18.0.100/24", "dev", "eth0"]);
    let e = rt.check(c, &r);
    assert!(e.msg().contains("lacks address 198.18.0.100/24"), "{}", e.out);
    c.ok(&["ip", "addr", "add", "198.18.0.100/24", "dev", "eth0"]);
    assert!(rt.check(c, &r).msg().contains("route 0.0.0.0/0"), "the default route went with the address");
    c.ok(&["ip", "route", "add", "default", "via", GATEWAY, "dev", "eth0"]);
    assert!(rt.check(c, &r).ok, "repaired");

    // The datapath no longer forwards to it: the container end is down, so the probe frame
    // injected at the master's XDP hook cannot arrive.
    c.ok(&["ip", "link", "set", "eth0", "down"]);
    let e = rt.check(c, &r);
    assert!(!e.ok && e.msg().contains("eth0 is down"), "{}", e.out);
    c.ok(&["ip", "link", "set", "eth0", "up"]);
    c.ok(&["ip", "route", "replace", "default", "via", GATEWAY, "dev", "eth0"]);
    assert!(rt.check(c, &r).ok);
    // The probe (EtherType 0x88b5, "xmvprobe") reaches the container and nothing reaches the wire.
    let in_container = RawSocket::open_protocol(c, "eth0", MARK_TYPE);
    let on_wire = RawSocket::open_protocol(&lab.wire, "wire0", MARK_TYPE);
    assert!(rt.check(c, &r).ok);
    let wait = std::time::Duration::from_millis(300);
    assert_eq!(in_container.collect(b"xmvprobe", wait).len(), 1, "CHECK's probe frame arrived in the container");
    assert!(on_wire.collect(b"xmvprobe", wait).is_empty(), "nothing was sent on the wire");
    rt.del(c);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn no_master_takes_the_default_route_interface() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let rt = Runtime::new(&lab, "1.0.0").l2_only().without("master");
    let e = rt.invoke("ADD", lab.c(1));
    assert_eq!(e.code(), 7);
    assert!(e.msg().contains("no default route"), "{}", e.out);
    lab.dp.ok(&["ip", "route", "add", "default", "via", GATEWAY, "dev", "eth1"]);
    rt.add(lab.c(1));
    let nets = networks(&lab);
    assert_eq!(nets[0]["parent"], "eth1", "the default route's interface is the master");
    rt.del(lab.c(1));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn mac_from_cni_args_and_from_runtime_config() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let rt = Runtime::new(&lab, "1.0.0").l2_only();
    let c = lab.c(1);
    let r = rt.invoke_with("ADD", &rt.conf, &c.name, &c.path(), "IgnoreUnknown=1;MAC=02:00:c6:12:00:01");
    assert!(r.ok, "{}", r.out);
    assert_eq!(mac_str(c.mac("eth0")), "02:00:c6:12:00:01");
    assert_eq!(r.out["interfaces"][0]["mac"], "02:00:c6:12:00:01");
    rt.del(c);

    // runtimeConfig (capability "mac") wins over CNI_ARGS and the configuration.
    let rt = rt.with("mac", json!("02:00:c6:12:00:03")).with("runtimeConfig", json!({ "mac": "02:00:c6:12:00:02" }));
    let r = rt.invoke_with("ADD", &rt.conf, &c.name, &c.path(), "MAC=02:00:c6:12:00:01");
    assert!(r.ok, "{}", r.out);
    assert_eq!(mac_str(c.mac("eth0")), "02:00:c6:12:00:02");
    rt.del(c);
    let bad = Runtime::new(&lab, "1.0.0").l2_only().with("mac", json!("02:zz"));
    let e = bad.invoke("ADD", c);
    assert_eq!(e.code(), 7);
    assert!(e.msg().contains("02:zz"), "{}", e.out);
    assert!(networks(&lab).is_empty(), "a refused ADD leaves no network behind");
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn errors_are_the_specs() {
    require_root!();
    let lab = Lab::new();
    let c = lab.c(1);
    // No daemon: try again later, and the IPAM lease is not kept.
    require_host_local();
    let rt = Runtime::new(&lab, "1.0.0");
    let e = rt.invoke("ADD", c);
    assert_eq!(e.code(), 11);
    assert!(e.msg().contains("daemon is not running"), "{}", e.out);
    assert!(leases(&lab).is_empty(), "the lease is given back when the daemon cannot be reached");
    let _d = Daemon::start(&lab);
    let rt = rt.l2_only();
    let e = rt.clone_with("master", json!("eth9")).invoke("ADD", c);
    assert_eq!(e.code(), 7);
    assert!(e.msg().contains("eth9"), "the missing master is named: {}", e.out);
    let e = rt.clone_with("mode", json!("turbo")).invoke("ADD", c);
    assert_eq!((e.code(), e.msg()), (7, "unknown macvlan mode: \"turbo\""));
    let e = rt.clone_with("mtu", json!(9000)).invoke("ADD", c);
    assert_eq!((e.code(), e.msg()), (7, "invalid MTU 9000, must be [0, master MTU(3000)]"));
    let e = rt.clone_with("cniVersion", json!("0.2.0")).invoke("ADD", c);
    assert_eq!(e.code(), 1);
    let e = rt.clone_with("linkInContainer", json!(true)).invoke("ADD", c);
    assert_eq!(e.code(), 2);
    assert!(e.msg().contains("linkInContainer"));
    let e = rt.invoke_with("ADD", &json!("not a config"), &c.name, &c.path(), "");
    assert_eq!(e.code(), 6);
    let e = rt.invoke_with("ADD", &rt.conf, &c.name, "", "");
    assert_eq!((e.code(), e.msg()), (4, "required env variables [CNI_NETNS] missing"));
    let e = rt.invoke_with("ADD", &rt.conf, &c.name, "/var/run/netns/no-such-ns", "");
    assert_eq!(e.code(), 3, "an unknown container namespace: {}", e.out);
    let e = rt.invoke_with("SING", &rt.conf, &c.name, &c.path(), "");
    assert_eq!(e.code(), 4);
    let v = rt.invoke_with("VERSION", &json!({ "cniVersion": "1.0.0" }), "", "", "");
    assert_eq!(v.out["supportedVersions"], json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
    // What the daemon's rules refuse is an invalid value too (7), named: an interface name, a MAC
    // another attachment of the L2 domain has.
    let e = rt.renamed("eth0/x").invoke("ADD", c);
    assert!(e.code() == 7 && e.msg().contains("'eth0/x' is not a valid interface name"), "{}", e.out);
    let mac = "IgnoreUnknown=1;MAC=02:00:c6:12:00:07";
    assert!(rt.invoke_with("ADD", &rt.conf, &c.name, &c.path(), mac).ok);
    let c2 = lab.c(2);
    let e = rt.invoke_with("ADD", &rt.conf, &c2.name, &c2.path(), mac);
    assert!(e.code() == 7 && e.msg().contains("02:00:c6:12:00:07"), "{}", e.out);
    rt.del(c);
    assert!(networks(&lab).is_empty(), "refused ADDs leave nothing behind");
    assert_eq!(lab.dp.links(), ["lo", "eth1"]);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn status_and_gc() {
    require_root!();
    let lab = Lab::new();
    let rt = Runtime::new(&lab, "1.1.0").l2_only();
    let st = rt.invoke_with("STATUS", &rt.conf, "", "", "");
    assert_eq!(st.code(), 50, "no daemon: not available");
    let mut d = Daemon::start(&lab);
    assert!(rt.invoke_with("STATUS", &rt.conf, "", "", "").ok);
    let e = rt.clone_with("master", json!("eth9"));
    let e = e.invoke_with("STATUS", &e.conf, "", "", "");
    assert_eq!(e.code(), 50);
    assert!(e.msg().contains("eth9"), "{}", e.out);
    let old = rt.clone_with("cniVersion", json!("1.0.0"));
    assert_eq!(old.invoke_with("STATUS", &old.conf, "", "", "").code(), 1);

    // Two attachments; GC with one of them valid removes the other.
    rt.add(lab.c(1));
    rt.add(lab.c(2));
    lab.wire.ok(&["ip", "link", "set", "wire0", "down"]);
    let e = rt.invoke_with("STATUS", &rt.conf, "", "", "");
    assert_eq!(e.code(), 51, "the master lost its carrier with attachments on it: {}", e.out);
    lab.wire.ok(&["ip", "link", "set", "wire0", "up"]);
    let gc = rt.clone_with("cni.dev/valid-attachments", json!([{ "containerID": lab.c(2).name, "ifname": "eth0" }]));
    let r = gc.invoke_with("GC", &gc.conf, "", "", "");
    assert!(r.ok, "{}", r.out);
    assert!(!lab.c(1).links().contains(&"eth0".to_string()), "the stale attachment is gone");
    assert!(lab.c(2).links().contains(&"eth0".to_string()), "the valid one stays");
    assert_eq!(networks(&lab)[0]["endpoints"].as_array().unwrap().len(), 1);

    // The attachment survives a daemon crash: DEL after a restart finds it.
    d.kill9();
    let _d = Daemon::start(&lab);
    let nets = networks(&lab);
    assert_eq!(nets[0]["endpoints"][0]["container_id"], lab.c(2).name.as_str());
    rt.del(lab.c(2));
    assert!(networks(&lab).is_empty());
    let gc = rt.clone_with("cni.dev/valid-attachments", json!([]));
    assert!(gc.invoke_with("GC", &gc.conf, "", "", "").ok, "GC of a network with nothing left");
}

impl Runtime<'_> {
    fn clone_with(&self, key: &str, v: Value) -> Self {
        Runtime { lab: self.lab, conf: self.conf.clone(), ifname: self.ifname }.with(key, v)
    }
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn check_probes_vlan_masters_and_the_xdp_fast_path() {
    require_root!();
    let lab = Lab::new();
    // VLAN 50 on eth1 (no 8021q here: the datapath tags), the probe goes in tagged.
    let d = Daemon::start(&lab);
    let rt = Runtime::new(&lab, "1.1.0").l2_only().with("master", json!("eth1.50")).with("name", json!("v50"));
    let r = rt.add(lab.c(1));
    let nets = networks(&lab);
    assert_eq!((nets[0]["parent"].as_str(), nets[0]["vlan"].as_u64()), (Some("eth1.50"), Some(50)));
    assert!(rt.check(lab.c(1), &r).ok, "CHECK on a VLAN network");
    // Tagged frames need the master's XDP program (the tc fast path takes untagged ones alone).
    // Someone detached it: steering is gone, CHECK says so.
    lab.dp.ok(&["ip", "link", "set", "dev", "eth1", "xdp", "off"]);
    let e = rt.check(lab.c(1), &r);
    assert!(e.msg().contains("no longer attached to eth1"), "{}", e.out);
    rt.del(lab.c(1));
    drop(d);

    // With the XDP fast path the probe is redirected into the veth by the XDP program itself.
    let _d = Daemon::start_with(&lab, &["--xdp-fast-path"]);
    let rt = Runtime::new(&lab, "1.1.0").l2_only();
    let r = rt.add(lab.c(2));
    let rx = RawSocket::open_protocol(lab.c(2), "eth0", MARK_TYPE);
    assert!(rt.check(lab.c(2), &r).ok, "CHECK with the fast path");
    let fast = lab.stats()["networks"][0]["ports"].to_string();
    assert_eq!(rx.collect(b"xmvprobe", std::time::Duration::from_millis(300)).len(), 1, "the probe arrived: {fast}");
    rt.del(lab.c(2));
    assert!(networks(&lab).is_empty());
}

/// The reference ipvlan plugin's configuration (`"driver": "ipvlan"` picks it; `"mode"` as that
/// plugin's): both containers get the master's MAC, reach each other and the wire, and the wire
/// knows both addresses at the master's MAC; an unknown mode is the spec's code 7; DEL leaves
/// nothing.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn ipvlan_as_the_reference_ipvlan_plugin() {
    require_root!();
    require_host_local();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let rt = Runtime::new(&lab, "1.0.0").with("driver", json!("ipvlan")).with("mode", json!("l2"));
    let (c1, c2) = (lab.c(1), lab.c(2));
    let r1 = rt.add(c1);
    rt.add(c2);
    let master = lab.dp.mac("eth1");
    assert_eq!((c1.mac("eth0"), c2.mac("eth0")), (master, master), "ipvlan endpoints have the master's MAC");
    assert_eq!(r1["interfaces"][0]["mac"], mac_str(master).as_str());
    assert!(ping(c1, "198.18.0.101"), "container to container");
    assert!(ping(c1, GATEWAY) && ping(c2, GATEWAY), "containers to a host on the wire");
    for ip in ["198.18.0.100", "198.18.0.101"] {
        let neigh = lab.wire.ok(&["ip", "neigh", "show", ip, "dev", "wire0"]);
        assert!(neigh.contains(&mac_str(master)), "the wire knows {ip} at the master's MAC: {neigh}");
    }
    let bad = Runtime::new(&lab, "1.0.0").with("driver", json!("ipvlan")).with("mode", json!("l4"));
    let r = bad.invoke("ADD", lab.c(3));
    assert_eq!(r.code(), 7, "{}", r.out);
    assert!(r.msg().contains("l4"), "the error names the mode: {}", r.msg());
    rt.del(c1);
    rt.del(c2);
    assert!(networks(&lab).is_empty(), "the CNI network goes with its last attachment");
    assert_eq!(lab.dp.links(), ["lo", "eth1"], "nothing is left on the host side");
}
