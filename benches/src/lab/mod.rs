//! The bench's lab, on the shared one (`xmacvlan-lab`: namespaces, commands, cleanup, daemon
//! process): gen —veth— dp/eth1 (the parent); containers c0, c1, … whose interfaces are kernel
//! macvlan children of eth1, xmacvlan endpoints on it (macvlan or ipvlan), or the tc-floor's
//! veths. Next door: `daemon` (the xmacvlan daemon of the lab, its network and counters).

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
pub use xmacvlan_lab::cleanup::*;
pub use xmacvlan_lab::cmd::*;
use xmacvlan_lab::topology::{self, End, MacvlanChild};
pub use xmacvlan_lab::{mac_str, ns_path};
use xmacvlan_lab::{sys, DaemonProcess, Netns};

use crate::nlstats::{Link, NsSock};

mod daemon;

/// Every namespace of a bench run is named `xmvb-<pid>-…`: a later run removes those of a run
/// whose process is gone.
pub const NS_PREFIX: &str = "xmvb-";

// ---------------------------------------------------------------------------------------------------
// The lab

pub const GEN_IF: &str = "gen0";
pub const PARENT_IF: &str = "eth1";
/// The parent's MAC, set when the wire is built: every ipvlan endpoint has it.
pub const PARENT_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0xfd];
/// The container interface's name in every container namespace.
pub const CONTAINER_IF: &str = "eth0";
pub const GEN_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0xfe];
pub const GEN_IP: [u8; 4] = [198, 18, 15, 254];
pub const SUBNET: &str = "198.18.0.0/20";
pub const PREFIX_LEN: u8 = 20;
pub const NETWORK_NAME: &str = "benchnet";
/// Endpoints the lab's addressing has room for (198.18.0.16 ..= 198.18.15.253).
pub const MAX_ENDPOINTS: usize = 4000;

/// Container `i`'s MAC: 02:42:c6:12 followed by `i` in two bytes. The generator counts through
/// these in the last two bytes to spread frames across endpoints (except on ipvlan, where every
/// endpoint has [`PARENT_MAC`]: see [`Backend::mac`]).
pub fn endpoint_mac(i: usize) -> [u8; 6] {
    [0x02, 0x42, 0xc6, 0x12, (i >> 8) as u8, (i & 0xff) as u8]
}

/// Container `i`'s address: 198.18.0.16 + i. On ipvlan the generator counts through these in the
/// last two bytes.
pub fn endpoint_ip(i: usize) -> [u8; 4] {
    (u32::from_be_bytes([198, 18, 0, 16]) + i as u32).to_be_bytes()
}

pub fn ip_str(a: &[u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Kernel macvlan children (bridge mode).
    Kernel,
    /// xmacvlan as a daemon started without tuning flags runs it: known unicast from the wire
    /// through the tc fast path (bpf_redirect_peer), everything else through AF_XDP and a worker.
    Xmacvlan,
    /// xmacvlan with `daemon --fast-path xdp`: known unicast from the wire redirected in XDP.
    #[value(name = "xmacvlan-xdp")]
    #[serde(rename = "xmacvlan-xdp")]
    XmacvlanXdp,
    /// xmacvlan with `daemon --fast-path off`: every frame through AF_XDP and a worker.
    #[value(name = "xmacvlan-afxdp")]
    #[serde(rename = "xmacvlan-afxdp")]
    XmacvlanAfxdp,
    /// Not a product: the floor of any tc datapath on veth endpoints (bpf/floor.bpf.c) — veth
    /// endpoints set up as xmacvlan's, and tc programs that do nothing but find the destination
    /// container and redirect (no counters, modes, floods, state or MTU checks). What xmacvlan
    /// pays above it is its own work; what this pays above kernel macvlan is the veth design's.
    #[value(name = "tc-floor")]
    #[serde(rename = "tc-floor")]
    TcFloor,
    /// xmacvlan's ipvlan on a daemon without tuning flags (the tc fast path): the network is
    /// `-d ipvlan -o ipvlan_mode=l2 -o ipvlan_flag=bridge` on the same parent, every endpoint has
    /// the parent's MAC and is found by its IP address. Frames to and from an endpoint carry the
    /// parent's MAC and, where ipvlan demuxes, the endpoint's address.
    #[value(name = "xmacvlan-ipvlan")]
    #[serde(rename = "xmacvlan-ipvlan")]
    XmacvlanIpvlan,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Xmacvlan => "xmacvlan",
            Backend::XmacvlanXdp => "xmacvlan-xdp",
            Backend::XmacvlanAfxdp => "xmacvlan-afxdp",
            Backend::TcFloor => "tc-floor",
            Backend::XmacvlanIpvlan => "xmacvlan-ipvlan",
        }
    }

    /// The daemon's `--fast-path` for this backend (None: no daemon).
    pub fn fast_path(self) -> Option<&'static str> {
        match self {
            Backend::Kernel | Backend::TcFloor => None,
            Backend::Xmacvlan | Backend::XmacvlanIpvlan => Some("tc"),
            Backend::XmacvlanXdp => Some("xdp"),
            Backend::XmacvlanAfxdp => Some("off"),
        }
    }

    /// Column prefix in tables.
    pub fn short(self) -> &'static str {
        match self {
            Backend::Kernel => "k",
            Backend::Xmacvlan => "x",
            Backend::XmacvlanXdp => "xdp",
            Backend::XmacvlanAfxdp => "afxdp",
            Backend::TcFloor => "floor",
            Backend::XmacvlanIpvlan => "ipv",
        }
    }

    /// Run by an xmacvlan daemon.
    pub fn is_xmacvlan(self) -> bool {
        self.fast_path().is_some()
    }

    /// Endpoints share the parent's MAC and are told apart by IP address (ipvlan).
    pub fn ipvlan(self) -> bool {
        self == Backend::XmacvlanIpvlan
    }

    /// The MAC that frames to and from container `i` carry: its own ([`endpoint_mac`]), or on
    /// ipvlan the parent's, which every endpoint has (the source guard drops any other source).
    pub fn mac(self, i: usize) -> [u8; 6] {
        if self.ipvlan() {
            PARENT_MAC
        } else {
            endpoint_mac(i)
        }
    }

    /// Gets a ratio column against kernel macvlan.
    pub fn vs_kernel(self) -> bool {
        self != Backend::Kernel
    }
}

/// One container: its namespace and a netlink socket inside it.
pub struct Container {
    pub ns: Netns,
    pub sock: NsSock,
}

/// gen —veth— dp/eth1 (the parent) and containers c0, c1, … whose interfaces are either kernel
/// macvlan children of eth1 or xmacvlan endpoints on it.
pub struct Lab {
    pub gen: Netns,
    pub dp: Netns,
    pub gen_sock: NsSock,
    pub dp_sock: NsSock,
    pub containers: Vec<Container>,
    /// The backend set up now, and how many containers it serves.
    pub active: Option<Backend>,
    pub present: usize,
    pub tmp: PathBuf,
    pid: u32,
    daemon: Option<DaemonProcess>,
    bin: Option<PathBuf>,
    xmv_cpus: String,
    daemon_args: Vec<String>,
    sink: Option<std::os::fd::OwnedFd>,
    /// The tc-floor backend's programs while it is set up.
    floor: Option<crate::floor::Floor>,
    pub daemon_log: PathBuf,
}

impl Lab {
    pub fn create(
        daemon_log: Option<PathBuf>,
        bin: Option<PathBuf>,
        xmv_cpus: String,
        daemon_args: Vec<String>,
    ) -> Result<Lab> {
        let pid = std::process::id();
        let tmp = std::env::temp_dir().join(format!("xmvb-{pid}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).ok();
        }
        fs::create_dir_all(&tmp).with_context(|| format!("mkdir {}", tmp.display()))?;
        register_dir(&tmp);
        let gen = Netns::create(format!("{NS_PREFIX}{pid}-gen"))?;
        let dp = Netns::create(format!("{NS_PREFIX}{pid}-dp"))?;
        let mut lab = Lab {
            gen_sock: NsSock::open(&ns_path(&gen.name))?,
            dp_sock: NsSock::open(&ns_path(&dp.name))?,
            gen,
            dp,
            containers: Vec::new(),
            active: None,
            present: 0,
            daemon_log: daemon_log.unwrap_or_else(|| tmp.join("daemon.log")),
            tmp,
            pid,
            daemon: None,
            bin,
            xmv_cpus,
            daemon_args,
            sink: None,
            floor: None,
        };
        lab.build_wire()?;
        Ok(lab)
    }

    fn build_wire(&mut self) -> Result<()> {
        let (gen, dp) = (self.gen.name.clone(), self.dp.name.clone());
        for ns in [&gen, &dp] {
            no_ipv6(ns)?;
        }
        // Both ends are born in their namespaces: nothing touches the host's namespace.
        topology::veth_pair(End { netns: &gen, ifname: GEN_IF }, End { netns: &dp, ifname: PARENT_IF }, 1500, 1)?;
        ip(&["-n", &gen, "link", "set", GEN_IF, "address", &mac_str(&GEN_MAC), "up"])?;
        ip(&["-n", &gen, "addr", "add", &format!("{}/{PREFIX_LEN}", ip_str(&GEN_IP)), "dev", GEN_IF])?;
        ip(&["-n", &dp, "link", "set", PARENT_IF, "address", &mac_str(&PARENT_MAC), "up"])?;
        // The wire host sends finished frames, as a host behind a real NIC does: with checksum offload
        // a veth passes TCP/UDP checksums as "to be done" (and 64 KB TSO frames) in skb metadata, which
        // kernel macvlan carries along but an XDP/AF_XDP datapath, seeing only bytes, cannot.
        in_ns(&gen, &["ethtool", "-K", GEN_IF, "tx", "off"])?;
        // NAPI on the parent so that it accepts the frames XDP_TX'd by the generator veth.
        in_ns(&dp, &["ethtool", "-K", PARENT_IF, "gro", "on"])?;
        // sysfs shows a namespace's devices only when mounted from it: `ip netns exec` does that.
        in_ns(&dp, &["sh", "-c", &format!("echo 1 > /sys/class/net/{PARENT_IF}/threaded")])?;
        Ok(())
    }

    /// Creates container namespaces up to `n`.
    pub(crate) fn ensure_containers(&mut self, n: usize) -> Result<()> {
        while self.containers.len() < n {
            let ns = Netns::create(format!("{NS_PREFIX}{}-c{}", self.pid, self.containers.len()))?;
            no_ipv6(&ns.name)?;
            let sock = NsSock::open(&ns_path(&ns.name))?;
            self.containers.push(Container { ns, sock });
        }
        Ok(())
    }

    pub fn ifindex(&self, ns: &str, dev: &str) -> Result<u32> {
        let out = ip(&["-n", ns, "-j", "link", "show", "dev", dev])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -j link` output")?;
        v.get(0)
            .and_then(|l| l.get("ifindex"))
            .and_then(|i| i.as_u64())
            .map(|i| i as u32)
            .ok_or_else(|| anyhow!("no ifindex for {dev} in {ns}"))
    }

    /// The interface of container `i`.
    pub fn container_link(&self, i: usize) -> Result<Link> {
        let c = &self.containers[i];
        let links = c.sock.links()?;
        links.into_iter().next().ok_or_else(|| anyhow!("container namespace {} has no interface", c.ns.name))
    }

    /// Σ rx_packets of the interfaces of containers `range`, and when it was read (the middle of the
    /// reads).
    pub fn rx_sum(&self, range: std::ops::Range<usize>) -> Result<(Instant, u64)> {
        let t0 = Instant::now();
        let mut sum = 0u64;
        for c in &self.containers[range] {
            sum += c.sock.links()?.iter().map(|l| l.rx_packets).sum::<u64>();
        }
        let t1 = Instant::now();
        Ok((t0 + (t1 - t0) / 2, sum))
    }

    /// rx_packets of the generator's interface (frames that reached the wire host).
    pub fn gen_rx(&self) -> Result<(Instant, u64)> {
        let t0 = Instant::now();
        let v = self.gen_sock.links()?.iter().find(|l| l.name == GEN_IF).map(|l| l.rx_packets).unwrap_or(0);
        let t1 = Instant::now();
        Ok((t0 + (t1 - t0) / 2, v))
    }

    /// Brings the lab back to "wire only": no container interface, no XDP on the parent, no daemon.
    pub fn reset(&mut self) -> Result<()> {
        self.sink = None;
        self.floor = None;
        self.stop_daemon();
        for c in &self.containers {
            for l in c.sock.links()? {
                c.sock.del_link(l.ifindex)?;
            }
        }
        // Only our own parent, in our own namespace.
        ip(&["-n", &self.dp.name, "link", "set", "dev", PARENT_IF, "xdp", "off"]).ok();
        self.active = None;
        self.present = 0;
        Ok(())
    }

    /// Sets `backend` up from scratch with `n` containers.
    pub fn setup(&mut self, backend: Backend, n: usize) -> Result<()> {
        self.reset()?;
        if backend.is_xmacvlan() {
            self.start_daemon(backend)?;
        }
        self.active = Some(backend);
        self.grow(n)
    }

    /// Adds containers on the active backend until `n` are served.
    pub fn grow(&mut self, n: usize) -> Result<()> {
        if n > MAX_ENDPOINTS {
            bail!("{n} endpoints: the lab's addressing has room for {MAX_ENDPOINTS}");
        }
        let backend = self.active.ok_or_else(|| anyhow!("no backend set up"))?;
        self.ensure_containers(n)?;
        let from = self.present;
        match backend {
            Backend::Kernel => {
                // One `ip -batch` creates every child directly in its container namespace.
                let children: Vec<MacvlanChild> = (from..n)
                    .map(|i| MacvlanChild {
                        netns: &self.containers[i].ns.name,
                        ifname: CONTAINER_IF,
                        mac: endpoint_mac(i),
                        mtu: None,
                        mode: "bridge",
                    })
                    .collect();
                topology::macvlan_children(&self.dp.name, PARENT_IF, &children)?;
                for i in from..n {
                    self.address_container(i)?;
                }
            }
            Backend::TcFloor => self.grow_floor(from, n)?,
            Backend::Xmacvlan | Backend::XmacvlanXdp | Backend::XmacvlanAfxdp | Backend::XmacvlanIpvlan => {
                for i in from..n {
                    self.connect_endpoint(i)?;
                    check_interrupted()?;
                }
            }
        }
        self.present = n;
        self.wait_up(from..n)?;
        // Static neighbours between the wire host and the first two containers (the latency and
        // TCP peers): no ARP exchange in any measurement. On ipvlan a container's MAC is the parent's.
        for i in from..n.min(2) {
            let (ip_i, mac_i) = (ip_str(&endpoint_ip(i)), mac_str(&backend.mac(i)));
            ip(&[
                "-n",
                &self.gen.name,
                "neigh",
                "replace",
                &ip_i,
                "lladdr",
                &mac_i,
                "dev",
                GEN_IF,
                "nud",
                "permanent",
            ])?;
            let ns = &self.containers[i].ns.name;
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &ip_str(&GEN_IP),
                "lladdr",
                &mac_str(&GEN_MAC),
                "dev",
                CONTAINER_IF,
                "nud",
                "permanent",
            ])?;
            for j in (0..n.min(2)).filter(|&j| j != i) {
                let (ip_j, mac_j) = (ip_str(&endpoint_ip(j)), mac_str(&backend.mac(j)));
                ip(&["-n", ns, "neigh", "replace", &ip_j, "lladdr", &mac_j, "dev", CONTAINER_IF, "nud", "permanent"])?;
                let nsj = &self.containers[j].ns.name;
                ip(&["-n", nsj, "neigh", "replace", &ip_i, "lladdr", &mac_i, "dev", CONTAINER_IF, "nud", "permanent"])?;
            }
        }
        Ok(())
    }

    /// The tc-floor backend's containers `from..n`: veth pairs set up as the daemon sets up a tc-fed
    /// endpoint's (the lab-side end `fl<i>` without TSO, GRO on the container's end), programs on.
    fn grow_floor(&mut self, from: usize, n: usize) -> Result<()> {
        let dp_path = ns_path(&self.dp.name);
        let dp = self.dp.name.clone();
        if self.floor.is_none() {
            let parent = self.ifindex(&dp, PARENT_IF)?;
            self.floor = Some(crate::floor::Floor::new(&dp_path, parent)?);
        }
        for i in from..n {
            let host = format!("fl{i}");
            let (ns, mac) = (self.containers[i].ns.name.clone(), endpoint_mac(i));
            ip(&[
                "-n",
                &dp,
                "link",
                "add",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                CONTAINER_IF,
                "netns",
                &ns,
                "address",
                &mac_str(&mac),
            ])?;
            in_ns(&dp, &["ethtool", "-K", &host, "tso", "off"])?;
            in_ns(&ns, &["ethtool", "-K", CONTAINER_IF, "gro", "on"])?;
            let ifindex = self.ifindex(&dp, &host)?;
            self.floor.as_mut().expect("set above").add(&dp_path, mac, ifindex)?;
            ip(&["-n", &dp, "link", "set", &host, "up"])?;
            self.address_container(i)?;
            check_interrupted()?;
        }
        Ok(())
    }

    /// Container `i`'s interface (made by the kernel or tc-floor backend) gets its address and goes up.
    fn address_container(&self, i: usize) -> Result<()> {
        let script = format!(
            "addr add {}/{PREFIX_LEN} dev {CONTAINER_IF}\nlink set {CONTAINER_IF} up\n",
            ip_str(&endpoint_ip(i))
        );
        topology::run_batch(Some(&self.containers[i].ns.name), &script)
    }

    /// Waits until the interfaces of containers `range` are up with their MACs.
    pub(crate) fn wait_up(&self, range: std::ops::Range<usize>) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(20);
        for i in range {
            loop {
                check_interrupted()?;
                let l = self.container_link(i).ok();
                if l.as_ref().is_some_and(|l| l.up) {
                    break;
                }
                if Instant::now() >= end {
                    bail!("container {} has no interface up ({l:?})", self.containers[i].ns.name);
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

/// No IPv6 in namespace `ns`: router solicitations and MLD reports would be extra frames in the counts.
fn no_ipv6(ns: &str) -> Result<()> {
    sys::in_netns(ns_path(ns), || {
        sys::write_sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        sys::write_sysctl("net.ipv6.conf.default.disable_ipv6", "1")
    })??;
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.sink = None;
        self.stop_daemon();
        // The namespaces go with their guards: the containers, then dp and gen.
        self.containers.clear();
        let _ = fs::remove_dir_all(&self.tmp);
        unregister_dir(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn the_ipvlan_backend_is_named_and_addressed_by_the_parents_mac() {
        let b = Backend::from_str("xmacvlan-ipvlan", false).unwrap();
        assert_eq!(b, Backend::XmacvlanIpvlan);
        assert_eq!((b.name(), b.short(), b.fast_path()), ("xmacvlan-ipvlan", "ipv", Some("tc")));
        assert_eq!(serde_json::to_value(b).unwrap(), "xmacvlan-ipvlan");
        assert!(b.is_xmacvlan() && b.vs_kernel() && b.ipvlan());
        assert_eq!([b.mac(0), b.mac(1), b.mac(3999)], [PARENT_MAC; 3]);
        for b in Backend::value_variants().iter().filter(|b| !b.ipvlan()) {
            assert_eq!([b.mac(0), b.mac(258)], [endpoint_mac(0), endpoint_mac(258)], "{}", b.name());
            assert_eq!(Backend::from_str(b.name(), false).as_ref(), Ok(b));
        }
        // Every name, short name and MAC in the lab is one thing's only.
        let names: std::collections::HashSet<_> = Backend::value_variants().iter().map(|b| b.short()).collect();
        assert_eq!(names.len(), Backend::value_variants().len());
        assert!(GEN_MAC != PARENT_MAC && (0..MAX_ENDPOINTS).all(|i| endpoint_mac(i) != PARENT_MAC));
    }
}
