//! `xmacvlan daemon`: owns the datapath, serves the control socket, follows link state.
//!
//! Every command validates everything it can before touching the system, then applies its steps
//! in an order that can be undone; on any failure the steps already taken are undone, so a failed
//! command leaves nothing behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use xmacvlan_datapath::counters::WorkerStats;
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::{DropReason, PortId};
use xmacvlan_datapath::{Config, Datapath, EndpointSpec, NetId, ParentSpec, PortReport};

use crate::api::{self, Connect, CreateNetwork, EndpointView, Envelope, NetworkView, Reply, Request};
use crate::ipam::{derive_mac, Pool};
use crate::netlink::{self, Link};

pub struct Options {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub cpus: Vec<usize>,
    pub worker_nice: i32,
}

struct Endpoint {
    port: PortId,
    netns: String,
    ns_id: (u64, u64),
    ifname: String,
    host: String,
    host_index: u32,
    mac: MacAddr,
    ip: Ipv4Addr,
    mtu: u32,
}

struct Network {
    id: NetId,
    name: String,
    parent: Link,
    mode: String,
    pool: Pool,
    endpoints: Vec<Endpoint>,
}

struct Rates {
    at: Instant,
    workers: Vec<WorkerStats>,
    per_sec: Vec<(f64, f64, f64)>,
}

struct Daemon {
    dp: Datapath,
    h: Handle,
    nets: BTreeMap<String, Network>,
    next_id: NetId,
    rates: Rates,
}

type Shared = Arc<Mutex<Daemon>>;

pub async fn run(opts: Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the daemon needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN): run it with sudo");
    }
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating state dir {}", opts.state_dir.display()))?;
    let listener = bind_socket(&opts.socket).await?;
    let cpus = if opts.cpus.is_empty() { vec![None] } else { opts.cpus.iter().map(|&c| Some(c)).collect() };
    let dp = Datapath::start(Config { cpus, nice: opts.worker_nice, ..Config::default() })
        .context("starting the datapath")?;
    let workers = dp.report().workers;
    let h = netlink::connect()?;
    let daemon: Shared = Arc::new(Mutex::new(Daemon {
        dp,
        h,
        nets: BTreeMap::new(),
        next_id: 1,
        rates: Rates { at: Instant::now(), per_sec: vec![(0.0, 0.0, 0.0); workers.len()], workers },
    }));
    eprintln!(
        "xmacvlan daemon: {} worker(s), listening on {}",
        daemon.lock().await.dp.workers(),
        opts.socket.display()
    );

    tokio::spawn(monitor_links(daemon.clone()));
    tokio::spawn(sample_rates(daemon.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            conn = listener.accept() => {
                let (stream, _) = conn.context("accepting a control connection")?;
                tokio::spawn(serve(daemon.clone(), stream));
            }
        }
    }
    eprintln!("xmacvlan daemon: shutting down");
    let _ = std::fs::remove_file(&opts.socket);
    let mut d = daemon.lock().await;
    d.shutdown().await;
    Ok(())
}

/// Binds the control socket: root-only (0600), refusing to steal it from a live daemon.
async fn bind_socket(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!("another xmacvlan daemon is already listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn serve(daemon: Shared, stream: UnixStream) {
    // Peer credentials: only root (or the daemon's own user) may drive the datapath.
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let allowed = stream.peer_cred().map(|c| c.uid() == 0 || c.uid() == euid).unwrap_or(false);
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(rd).read_line(&mut line).await.is_err() {
        return;
    }
    let reply = if !allowed {
        failure("permission denied: the control socket is for root only".into())
    } else {
        match serde_json::from_str::<Envelope>(&line) {
            Err(e) => failure(format!("malformed request: {e}")),
            Ok(env) if env.version != api::API_VERSION => failure(format!(
                "API version mismatch: the CLI speaks v{}, this daemon v{}; use the xmacvlan binary that matches the running daemon",
                env.version,
                api::API_VERSION
            )),
            Ok(env) => {
                let mut d = daemon.lock().await;
                match d.handle(env.request).await {
                    Ok(data) => Reply { version: api::API_VERSION, ok: true, error: None, data },
                    Err(e) => failure(format!("{e:#}")),
                }
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = wr.write_all(&out).await;
}

fn failure(msg: String) -> Reply {
    Reply { version: api::API_VERSION, ok: false, error: Some(msg), data: Value::Null }
}

/// Follows link events: the carrier of an endpoint's daemon-side veth mirrors its container side.
async fn monitor_links(daemon: Shared) {
    let (conn, _h, mut msgs) = match rtnetlink::new_multicast_connection(&[MulticastGroup::Link]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xmacvlan daemon: link monitor unavailable: {e}");
            return;
        }
    };
    tokio::spawn(conn);
    while let Some((msg, _)) = msgs.next().await {
        let NetlinkPayload::InnerMessage(inner) = msg.payload else { continue };
        let (link, deleted) = match inner {
            RouteNetlinkMessage::NewLink(m) => (Link::from_message(&m), false),
            RouteNetlinkMessage::DelLink(m) => (Link::from_message(&m), true),
            _ => continue,
        };
        let mut d = daemon.lock().await;
        d.link_event(&link, deleted).await;
    }
}

async fn sample_rates(daemon: Shared) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut d = daemon.lock().await;
        let now = d.dp.report().workers;
        let dt = d.rates.at.elapsed().as_secs_f64().max(1e-3);
        d.rates.per_sec = now
            .iter()
            .zip(&d.rates.workers)
            .map(|(n, p)| {
                let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                (r(n.rx_frames, p.rx_frames), r(n.tx_frames, p.tx_frames), r(n.dropped, p.dropped))
            })
            .collect();
        d.rates.workers = now;
        d.rates.at = Instant::now();
    }
}

/// NETNS → the path to open: a PID, a path, or a name under /var/run/netns.
fn netns_path(spec: &str) -> PathBuf {
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        PathBuf::from(format!("/proc/{spec}/ns/net"))
    } else if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new("/var/run/netns").join(spec)
    }
}

fn open_netns(spec: &str) -> Result<(File, (u64, u64))> {
    let path = netns_path(spec);
    let f = File::open(&path).map_err(|e| anyhow!("network namespace '{spec}' not found ({}: {e})", path.display()))?;
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: ioctl on an fd we own; NS_GET_NSTYPE takes no argument.
    let kind = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        bail!("'{spec}' ({}) is not a network namespace", path.display());
    }
    let meta = f.metadata()?;
    let own = std::fs::metadata("/proc/self/ns/net")?;
    if (meta.dev(), meta.ino()) == (own.dev(), own.ino()) {
        bail!("'{spec}' is the daemon's own network namespace; endpoints go into other namespaces");
    }
    Ok((f, (meta.dev(), meta.ino())))
}

fn host_ifname(net: NetId, ns: (u64, u64)) -> String {
    // Deterministic per (network, namespace), and "connect twice" is refused, so names don't clash.
    let h =
        (u64::from(net).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ns.1.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ ns.0) as u32;
    format!("xmv{h:08x}")
}

impl Daemon {
    async fn handle(&mut self, req: Request) -> Result<Value> {
        match req {
            Request::NetworkCreate(c) => self.create(c).await,
            Request::NetworkRm { name, force } => self.remove(&name, force).await,
            Request::NetworkLs => {
                Ok(serde_json::to_value(self.nets.values().map(|n| self.view(n)).collect::<Vec<_>>())?)
            }
            Request::NetworkInspect { name } => {
                let n = self.net(&name)?;
                let mut v = serde_json::to_value(self.view(n))?;
                v["counters"] = self.stats_json()["networks"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["name"] == name.as_str()).cloned())
                    .unwrap_or(Value::Null);
                Ok(v)
            }
            Request::Connect(c) => self.connect(c).await,
            Request::Disconnect { network, netns } => self.disconnect(&network, &netns).await,
            Request::Stats => Ok(self.stats_json()),
        }
    }

    fn net(&self, name: &str) -> Result<&Network> {
        self.nets.get(name).ok_or_else(|| anyhow!("network '{name}' not found"))
    }

    fn view(&self, n: &Network) -> NetworkView {
        NetworkView {
            name: n.name.clone(),
            id: n.id,
            driver: "macvlan".into(),
            parent: n.parent.name.clone(),
            mode: n.mode.clone(),
            subnet: n.pool.subnet.to_string(),
            gateway: n.pool.gateway.map(|g| g.to_string()),
            xdp_mode: self.dp.xdp_mode(n.id).unwrap_or("none").into(),
            endpoints: n
                .endpoints
                .iter()
                .map(|e| EndpointView {
                    netns: e.netns.clone(),
                    ifname: e.ifname.clone(),
                    host_ifname: e.host.clone(),
                    mac: e.mac.to_string(),
                    ips: vec![format!("{}/{}", e.ip, n.pool.subnet.prefix_len())],
                    mtu: e.mtu,
                })
                .collect(),
        }
    }

    async fn create(&mut self, c: CreateNetwork) -> Result<Value> {
        if c.name.is_empty()
            || c.name.len() > 64
            || !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
        {
            bail!("network name '{}' is invalid: use 1-64 letters, digits, '_', '.' or '-'", c.name);
        }
        if self.nets.contains_key(&c.name) {
            bail!("network name '{}' is already taken", c.name);
        }
        if c.driver != "macvlan" {
            bail!("driver '{}' is not supported: only -d macvlan", c.driver);
        }
        let mut parent = None;
        let mut mode = "bridge".to_string();
        for (k, v) in &c.options {
            match k.as_str() {
                "parent" => parent = Some(v.clone()),
                "macvlan_mode" => mode = v.clone(),
                other => bail!("unknown driver option '{other}' (known: parent, macvlan_mode)"),
            }
        }
        match mode.as_str() {
            "bridge" => {}
            "private" | "vepa" | "passthru" | "source" => {
                bail!("macvlan mode '{mode}' is valid but not implemented yet; only bridge is supported")
            }
            _ => bail!("requested macvlan mode '{mode}' is not valid (bridge, private, vepa, passthru, source)"),
        }
        let subnet =
            c.subnet.as_deref().ok_or_else(|| anyhow!("--subnet is required (e.g. --subnet 198.18.0.0/24)"))?;
        let pool = Pool::new(subnet, c.gateway.as_deref()).map_err(|e| anyhow!(e))?;
        for n in self.nets.values() {
            if n.pool.subnet.contains(&pool.subnet.network()) || pool.subnet.contains(&n.pool.subnet.network()) {
                bail!("subnet {} overlaps subnet {} of network '{}'", pool.subnet, n.pool.subnet, n.name);
            }
        }
        let pname = parent
            .ok_or_else(|| anyhow!("-o parent=IFACE is required (networks without a parent are not supported yet)"))?;
        let link = netlink::link_by_name(&self.h, &pname)
            .await?
            .ok_or_else(|| anyhow!("-o parent interface was not found on the host: {pname}"))?;
        if link.loopback {
            bail!("loopback interface is not a valid macvlan parent link: {pname}");
        }
        let Some(mac) = link.mac.filter(|_| link.ether) else {
            bail!("parent {pname} is not an Ethernet interface");
        };
        if let Some(n) = self.nets.values().find(|n| n.parent.index == link.index) {
            bail!("parent {pname} is already used by network '{}' (one network per parent for now)", n.name);
        }
        let id = self.next_id;
        let rx_queues = netlink::active_rx_queues(&pname).unwrap_or(link.rx_queues);
        let spec = ParentSpec { ifindex: link.index, name: pname.clone(), mac, mtu: link.mtu, rx_queues };
        self.dp.add_network(id, &spec).with_context(|| format!("setting up the datapath on {pname}"))?;
        self.next_id += 1;
        let net = Network { id, name: c.name.clone(), parent: link, mode, pool, endpoints: Vec::new() };
        let v = serde_json::to_value(self.view(&net))?;
        self.nets.insert(c.name, net);
        Ok(v)
    }

    async fn remove(&mut self, name: &str, force: bool) -> Result<Value> {
        let net = self.net(name)?;
        if !net.endpoints.is_empty() && !force {
            let list: Vec<String> = net.endpoints.iter().map(|e| format!("{} ({})", e.netns, e.ifname)).collect();
            bail!("network '{name}' has connected endpoints: {}; disconnect them or use --force", list.join(", "));
        }
        let specs: Vec<String> = net.endpoints.iter().map(|e| e.netns.clone()).collect();
        for ns in specs {
            self.disconnect(name, &ns).await?;
        }
        let net = self.nets.remove(name).expect("checked above");
        self.dp.remove_network(net.id);
        Ok(json!({ "removed": name }))
    }

    async fn connect(&mut self, c: Connect) -> Result<Value> {
        let workers = self.dp.workers() as u32;
        let net = self.nets.get(&c.network).ok_or_else(|| anyhow!("network '{}' not found", c.network))?;
        let (ns, ns_id) = open_netns(&c.netns)?;
        if let Some(e) = net.endpoints.iter().find(|e| e.ns_id == ns_id) {
            bail!("namespace '{}' is already connected to network '{}' (as {})", c.netns, c.network, e.ifname);
        }
        if c.ifname.is_empty() || c.ifname.len() > 15 || c.ifname.contains(['/', ' ', ':']) {
            bail!("--ifname '{}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)", c.ifname);
        }
        let mtu = match c.mtu {
            None => net.parent.mtu,
            Some(m) if (68..=net.parent.mtu).contains(&m) => m,
            Some(m) => bail!("--mtu {m} is outside 68..={} (the parent {}'s MTU)", net.parent.mtu, net.parent.name),
        };
        // Validate the MAC before taking an address, so a bad MAC leaves the pool untouched.
        let requested_mac = match &c.mac {
            None => None,
            Some(s) => {
                let m: MacAddr = s.parse().map_err(|e| anyhow!("--mac-address: {e}"))?;
                if m.is_multicast() || m.is_zero() {
                    bail!("--mac-address {m} is a multicast or zero address; endpoints need a unicast MAC");
                }
                Some(m)
            }
        };
        let net = self.nets.get_mut(&c.network).expect("checked above");
        let ip = net.pool.allocate(c.ip.as_deref()).map_err(|e| anyhow!(e))?;
        let mac = requested_mac.unwrap_or(MacAddr(derive_mac(ip)));
        let in_use =
            self.nets.values().flat_map(|n| n.endpoints.iter().map(move |e| (n, e))).find(|(_, e)| e.mac == mac);
        let parent_mac = self.nets[&c.network].parent.mac;
        if let Some((n, e)) = in_use {
            let (n, ns) = (n.name.clone(), e.netns.clone());
            self.nets.get_mut(&c.network).expect("exists").pool.release(ip);
            bail!("MAC {mac} is already used by the endpoint in '{ns}' on network '{n}'");
        }
        if Some(mac) == parent_mac {
            self.nets.get_mut(&c.network).expect("exists").pool.release(ip);
            bail!("MAC {mac} is the parent's own address");
        }

        let result = self.build_endpoint(&c, ns, ns_id, ip, mac, mtu, workers).await;
        let net = self.nets.get_mut(&c.network).expect("exists");
        match result {
            Ok(ep) => {
                let v = json!({ "network": c.network, "netns": ep.netns, "ifname": ep.ifname, "host_ifname": ep.host,
                    "mac": ep.mac.to_string(), "ip": format!("{}/{}", ep.ip, net.pool.subnet.prefix_len()), "mtu": ep.mtu });
                net.endpoints.push(ep);
                Ok(v)
            }
            Err(e) => {
                net.pool.release(ip);
                Err(e)
            }
        }
    }

    /// Creates the veth pair, attaches the datapath, configures the container side; undoes all of it
    /// on failure.
    #[allow(clippy::too_many_arguments)]
    async fn build_endpoint(
        &mut self,
        c: &Connect,
        ns: File,
        ns_id: (u64, u64),
        ip: Ipv4Addr,
        mac: MacAddr,
        mtu: u32,
        workers: u32,
    ) -> Result<Endpoint> {
        let net = &self.nets[&c.network];
        let (net_id, prefix, gateway) = (net.id, net.pool.subnet.prefix_len(), net.pool.gateway);
        let host = host_ifname(net_id, ns_id);
        netlink::create_veth(&self.h, &host, &c.ifname, mac, mtu, workers, &ns).await?;
        let link = match netlink::link_by_name(&self.h, &host).await {
            Ok(Some(l)) => l,
            other => {
                // The pair exists by name only; find and delete it best-effort.
                bail!("veth {host} vanished right after creation: {:?}", other.err());
            }
        };
        let mut port = None;
        let steps = async {
            netlink::disable_ipv6(&host)?;
            netlink::set_up(&self.h, link.index).await?;
            let spec = EndpointSpec { ifindex: link.index, name: host.clone(), mac, mtu, vlan: 0, up: false };
            port =
                Some(self.dp.add_endpoint(net_id, &spec).with_context(|| format!("attaching the datapath to {host}"))?);
            let ifname = c.ifname.clone();
            let ns_clone = ns.try_clone()?;
            netlink::in_netns(ns_clone, move |h| async move {
                let l = netlink::link_by_name(&h, &ifname)
                    .await?
                    .ok_or_else(|| anyhow!("{ifname} is missing in the namespace"))?;
                netlink::add_addr(&h, l.index, ip.into(), prefix).await?;
                netlink::set_up(&h, l.index).await?;
                if let Some(lo) = netlink::link_by_name(&h, "lo").await? {
                    netlink::set_up(&h, lo.index).await?;
                }
                if let Some(gw) = gateway {
                    netlink::add_default_route(&h, gw).await?;
                }
                Ok(())
            })
            .await
            .with_context(|| format!("configuring {} in namespace '{}'", c.ifname, c.netns))?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = steps {
            if let Some(p) = port {
                self.dp.remove_endpoint(net_id, p);
            }
            let _ = netlink::del_link(&self.h, link.index).await;
            return Err(e);
        }
        let port = port.expect("set when steps succeed");
        // The container side is up now; the carrier of our side says so too (the link monitor
        // keeps following it from here on).
        let up = netlink::link_by_index(&self.h, link.index).await.ok().flatten().is_some_and(|l| l.lower_up);
        self.dp.set_endpoint_up(net_id, port, up);
        Ok(Endpoint {
            port,
            netns: c.netns.clone(),
            ns_id,
            ifname: c.ifname.clone(),
            host,
            host_index: link.index,
            mac,
            ip,
            mtu,
        })
    }

    async fn disconnect(&mut self, network: &str, netns: &str) -> Result<Value> {
        let net = self.nets.get_mut(network).ok_or_else(|| anyhow!("network '{network}' not found"))?;
        // Match by namespace identity when it still exists, else by the name it was connected with.
        let ns_id = open_netns(netns).ok().map(|(_, id)| id);
        let pos = net
            .endpoints
            .iter()
            .position(|e| Some(e.ns_id) == ns_id || e.netns == netns)
            .ok_or_else(|| anyhow!("namespace '{netns}' is not connected to network '{network}'"))?;
        let ep = net.endpoints.remove(pos);
        net.pool.release(ep.ip);
        let id = net.id;
        self.dp.remove_endpoint(id, ep.port);
        netlink::del_link(&self.h, ep.host_index).await?;
        Ok(json!({ "network": network, "netns": ep.netns, "removed": ep.host }))
    }

    async fn link_event(&mut self, link: &Link, deleted: bool) {
        let found = self.nets.values().find_map(|n| {
            n.endpoints
                .iter()
                .find(|e| e.host_index == link.index)
                .map(|e| (n.id, n.name.clone(), e.port, e.netns.clone()))
        });
        let Some((net_id, net_name, port, netns)) = found else { return };
        if deleted {
            // The namespace (or the link) went away under us: forget the endpoint.
            eprintln!("xmacvlan daemon: endpoint in '{netns}' on '{net_name}' disappeared; disconnecting it");
            self.dp.remove_endpoint(net_id, port);
            if let Some(n) = self.nets.get_mut(&net_name) {
                if let Some(pos) = n.endpoints.iter().position(|e| e.port == port) {
                    let ep = n.endpoints.remove(pos);
                    n.pool.release(ep.ip);
                }
            }
        } else {
            self.dp.set_endpoint_up(net_id, port, link.lower_up);
        }
    }

    fn stats_json(&self) -> Value {
        let report = self.dp.report();
        let workers: Vec<Value> = report
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (rx, tx, dr) = self.rates.per_sec.get(i).copied().unwrap_or_default();
                json!({ "id": w.id, "cpu": w.cpu, "rx_frames": w.rx_frames, "tx_frames": w.tx_frames, "dropped": w.dropped,
                    "flood_copies": w.flood_copies, "flood_empty": w.flood_empty, "busy_loops": w.busy_loops,
                    "idle_sleeps": w.idle_sleeps, "tx_kicks": w.tx_kicks,
                    "rx_pps": rx.round(), "tx_pps": tx.round(), "drop_pps": dr.round() })
            })
            .collect();
        let port_json = |kind: &str, p: &PortReport| {
            let drops: serde_json::Map<String, Value> =
                DropReason::ALL.iter().map(|r| (r.name().to_string(), json!(p.stats.drops[*r as usize]))).collect();
            json!({ "kind": kind, "name": p.ifname, "mac": p.mac.to_string(), "up": p.up, "xsk_mode": p.xsk_mode,
                "rx": p.stats.rx, "rx_bytes": p.stats.rx_bytes, "tx": p.stats.tx, "tx_bytes": p.stats.tx_bytes,
                "drops": drops, "drops_total": p.stats.drops_total(),
                "kernel": { "xsk_rx_dropped": p.stats.xsk_rx_dropped, "xsk_rx_ring_full": p.stats.xsk_rx_ring_full,
                            "xsk_fill_ring_empty": p.stats.xsk_fill_empty } })
        };
        let networks: Vec<Value> = self
            .nets
            .values()
            .filter_map(|n| {
                let r = report.networks.iter().find(|r| r.id == n.id)?;
                let mut ports = vec![port_json("parent", &r.parent)];
                for e in &n.endpoints {
                    if let Some(p) = r.endpoints.iter().find(|p| p.id == e.port) {
                        let mut v = port_json("endpoint", p);
                        v["netns"] = json!(e.netns);
                        v["ifname"] = json!(e.ifname);
                        v["ips"] = json!([e.ip.to_string()]);
                        ports.push(v);
                    }
                }
                Some(json!({ "name": n.name, "parent": n.parent.name, "xdp_mode": r.xdp_mode, "ports": ports }))
            })
            .collect();
        let xdp: serde_json::Map<String, Value> = report.xdp.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({ "workers": workers, "xdp": xdp, "networks": networks })
    }

    /// Clean stop: endpoints this daemon created are removed (no state survives a restart yet),
    /// then the workers stop and every XDP program is detached.
    async fn shutdown(&mut self) {
        let names: Vec<String> = self.nets.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.remove(&name, true).await {
                eprintln!("xmacvlan daemon: removing network '{name}': {e:#}");
            }
        }
        self.dp.shutdown();
    }
}
