//! `xmacvlan daemon`: owns the datapath, serves the control socket, follows link state.
//!
//! Every command validates everything it can before touching the system, then applies its steps
//! in an order that can be undone; on any failure the steps already taken are undone, so a failed
//! command leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use ipnet::IpNet;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use xmacvlan_datapath::counters::WorkerStats;
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::{DropReason, Mode, PortId};
use xmacvlan_datapath::{Config, Datapath, EndpointSpec, FastPath, NetId, ParentSpec, PortReport, Report};

mod cni;
mod endpoints;
mod relay;

use self::cni::CniParts;
use self::endpoints::{Endpoint, Endpoints, EpId, Key};
use crate::api::{
    self, CniRoute, CodedError, Connect, CreateNetwork, EndpointView, Envelope, MacaddrAction, NetworkView, Reply,
    Request, SubnetView,
};
use crate::ipam::{derive_mac, Assigned, Ipam, IpamSpec};
use crate::netlink::{self, Link};
use crate::netopts::{self, NetOpts};
use crate::state::{EndpointKind, EndpointState, NetworkState, PassthruSaved, State, Store, STATE_VERSION};

pub struct Options {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub cpus: Vec<usize>,
    pub worker_nice: i32,
    /// Config::fast_path.
    pub fast_path: FastPath,
    /// Start without networks when the state file is unusable (it is moved aside, not deleted).
    pub start_empty: bool,
}

struct Network {
    name: String,
    id: u32,
    /// As the user wrote it (`eth0`, `eth0.50`).
    parent: Option<String>,
    /// 802.1Q VLAN on the parent link (0 = untagged): `eth0.50` without a link of that name.
    vlan: u16,
    internal: bool,
    mode: String,
    opts: NetOpts,
    /// The `-o` options as given, for the state file.
    options: Vec<(String, String)>,
    /// Passthru: what the endpoint changed on the parent.
    passthru: Option<PassthruSaved>,
    spec: IpamSpec,
    ipam: Ipam,
    /// Key of its forwarding domain in `Daemon::domains`; None while inactive.
    domain: Option<u32>,
    /// "active", or why the network is not (it could not be set up at restore).
    status: String,
    endpoints: Endpoints,
    /// Endpoints of an inactive network, kept as saved.
    dormant: Vec<EndpointState>,
    /// Made by the CNI plugin: no IPAM of ours, removed with its last attachment.
    cni: bool,
}

impl Network {
    fn ep_opts(&self) -> EpOpts {
        EpOpts { vlan: self.vlan, mode: self.opts.mode, nodst: self.opts.nodst, keep_pcp: self.opts.keep_pcp }
    }

    /// An endpoint: a tap by name; a namespace by identity when it still exists, else by the name
    /// it was connected with.
    fn find_endpoint(&self, endpoint: &str) -> Result<EpId> {
        let ns_id = open_netns(endpoint).ok().map(|(_, id)| id);
        self.endpoints.find_named(endpoint, ns_id).ok_or_else(|| {
            anyhow!("'{endpoint}' is not connected to network '{}' (give its NETNS or tap name)", self.name)
        })
    }
}

/// What an endpoint inherits from its network.
#[derive(Debug, Clone, Copy)]
struct EpOpts {
    vlan: u16,
    mode: Mode,
    nodst: bool,
    keep_pcp: bool,
}

/// One datapath forwarding domain: a parent link with every network on it (macvlan children of
/// one parent form one L2 domain, whatever Docker network they belong to), or an internal
/// network's anchor.
struct Domain {
    dp: NetId,
    link: Link,
    users: usize,
    anchor: bool,
    /// We turned the parent's receive VLAN offload off (and turn it back on when it goes).
    rx_vlan_was_on: bool,
}

struct Rates {
    at: Instant,
    workers: Vec<WorkerStats>,
    per_sec: Vec<(f64, f64, f64)>,
}

struct Daemon {
    dp: Datapath,
    h: Handle,
    store: Store,
    nets: BTreeMap<String, Network>,
    domains: BTreeMap<u32, Domain>,
    next_id: u32,
    next_dp: NetId,
    /// Parents the state file says we turned receive VLAN offload off on (see Domain).
    rx_vlan_off: Vec<String>,
    rates: Rates,
}

type Shared = Arc<Mutex<Daemon>>;

pub async fn run(opts: Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the daemon needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN): run it with sudo");
    }
    let mut store = Store::new(&opts.state_dir)?;
    // Everything the file says is checked before anything is set up, so a bad file stops the start
    // (or, with --start-empty, is moved aside) with nothing attached or created.
    let checked = store.load().and_then(|st| {
        for ns in &st.networks {
            Ipam::new(&ns.ipam)
                .map_err(|e| anyhow!("state file {}: network '{}': {e}", store.path().display(), ns.name))?;
        }
        Ok(st)
    });
    let saved = match checked {
        Ok(s) => s,
        Err(e) if opts.start_empty => {
            let aside = store.set_aside()?;
            eprintln!(
                "xmacvlan daemon: {e:#}\nxmacvlan daemon: starting empty as asked (--start-empty); the old file is at {}",
                aside.map_or_else(|| "(none)".into(), |p| p.display().to_string())
            );
            State::default()
        }
        Err(e) => bail!("{e:#}\nfix or move the file, or start with --start-empty to begin without networks"),
    };
    refuse_if_live(&opts.socket).await?;
    let cpus = if opts.cpus.is_empty() { vec![None] } else { opts.cpus.iter().map(|&c| Some(c)).collect() };
    let dp = Datapath::start(Config { cpus, nice: opts.worker_nice, fast_path: opts.fast_path, ..Config::default() })
        .context("starting the datapath")?;
    let workers = dp.report().workers;
    let h = netlink::connect()?;
    let mut d = Daemon {
        dp,
        h,
        store,
        nets: BTreeMap::new(),
        domains: BTreeMap::new(),
        next_id: 1,
        next_dp: 1,
        rx_vlan_off: Vec::new(),
        rates: Rates { at: Instant::now(), per_sec: vec![(0.0, 0.0, 0.0); workers.len()], workers },
    };
    d.restore(saved).await?;
    // Listening only now: a client that can connect finds the restored networks in place.
    let listener = bind_socket(&opts.socket).await?;
    let daemon: Shared = Arc::new(Mutex::new(d));
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
    eprintln!("xmacvlan daemon: shutting down (endpoints stay for the next start)");
    let _ = std::fs::remove_file(&opts.socket);
    let mut d = daemon.lock().await;
    d.shutdown().await;
    Ok(())
}

/// Refuses to start next to a live daemon on the same socket.
async fn refuse_if_live(path: &Path) -> Result<()> {
    if path.exists() && UnixStream::connect(path).await.is_ok() {
        bail!("another xmacvlan daemon is already listening on {}", path.display());
    }
    Ok(())
}

/// Binds the control socket: root-only (0600), refusing to steal it from a live daemon.
async fn bind_socket(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    refuse_if_live(path).await?;
    if path.exists() {
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
                    Ok(data) => Reply { version: api::API_VERSION, ok: true, error: None, data, code: None },
                    Err(e) => {
                        let code = e.downcast_ref::<CodedError>().map(|c| c.code);
                        Reply { code, ..failure(format!("{e:#}")) }
                    }
                }
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = wr.write_all(&out).await;
}

fn failure(msg: String) -> Reply {
    Reply { version: api::API_VERSION, ok: false, error: Some(msg), data: Value::Null, code: None }
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

fn host_ifname(net: u32, ns: (u64, u64)) -> String {
    // Deterministic per (network, namespace), and "connect twice" is refused, so names don't clash.
    let h =
        (u64::from(net).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ns.1.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ ns.0) as u32;
    format!("xmv{h:08x}")
}

/// The anchor link of internal network `id` (its peer is the same name with a "p").
fn anchor_name(id: u32) -> String {
    format!("xmvi{id:x}")
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains(['/', ' ', ':']) && name != "." && name != ".."
}

impl Daemon {
    async fn handle(&mut self, req: Request) -> Result<Value> {
        match req {
            Request::NetworkCreate(c) => {
                let name = c.name.clone();
                let v = self.create(c).await?;
                if let Err(e) = self.persist() {
                    let _ = self.remove(&name, true).await;
                    return Err(e.context(format!("network '{name}' was not created")));
                }
                Ok(v)
            }
            Request::NetworkRm { name, force } => {
                let v = self.remove(&name, force).await?;
                self.persist().context("the network is removed, but the state file could not be updated")?;
                Ok(v)
            }
            Request::NetworkLs => {
                Ok(serde_json::to_value(self.nets.values().map(|n| self.view(n)).collect::<Vec<_>>())?)
            }
            Request::NetworkInspect { name } => {
                let n = self.net(&name)?;
                let mut v = serde_json::to_value(self.view(n))?;
                v["counters"] = self.network_stats(n, &self.dp.report()).unwrap_or(Value::Null);
                Ok(v)
            }
            Request::Connect(c) => {
                let (network, key) = (c.network.clone(), c.tap.clone().or(c.netns.clone()).unwrap_or_default());
                let v = self.connect(c, None).await?;
                if let Err(e) = self.persist() {
                    let _ = self.disconnect(&network, &key).await;
                    return Err(e.context("the endpoint was not connected"));
                }
                Ok(v)
            }
            Request::Disconnect { network, endpoint } => {
                let v = self.disconnect(&network, &endpoint).await?;
                self.persist().context("the endpoint is removed, but the state file could not be updated")?;
                Ok(v)
            }
            Request::Macaddr { network, endpoint, action, macs } => {
                let v = self.macaddr(&network, &endpoint, action, &macs).await?;
                self.persist().context("the list is changed, but the state file could not be updated")?;
                Ok(v)
            }
            Request::Stats => Ok(self.stats_json()),
            Request::CniAdd(a) => {
                let (network, att) = (a.network.name.clone(), a.attachment.clone());
                let v = self.cni_add(a).await?;
                if let Err(e) = self.persist() {
                    let _ = self.cni_del(&network, &att).await;
                    return Err(e.context("the attachment was not made"));
                }
                Ok(v)
            }
            Request::CniDel { network, attachment } => {
                let v = self.cni_del(&network, &attachment).await?;
                self.persist().context("the attachment is removed, but the state file could not be updated")?;
                Ok(v)
            }
            Request::CniCheck(c) => self.cni_check(c).await,
            Request::CniStatus { network, master } => self.cni_status(&network, master.as_deref()).await,
            Request::CniGc { network, valid } => {
                let v = self.cni_gc(&network, &valid).await?;
                self.persist().context("the attachments are removed, but the state file could not be updated")?;
                Ok(v)
            }
        }
    }

    fn net(&self, name: &str) -> Result<&Network> {
        self.nets.get(name).ok_or_else(|| anyhow!("network '{name}' not found"))
    }

    fn snapshot(&self) -> State {
        State {
            rx_vlan_off: self.domains.values().filter(|d| d.rx_vlan_was_on).map(|d| d.link.name.clone()).collect(),
            version: STATE_VERSION,
            // The store's business.
            generation: 0,
            next_id: self.next_id,
            networks: self
                .nets
                .values()
                .map(|n| NetworkState {
                    name: n.name.clone(),
                    id: n.id,
                    parent: n.parent.clone(),
                    internal: n.internal,
                    mode: n.mode.clone(),
                    options: n.options.clone(),
                    ipam: n.spec.clone(),
                    endpoints: n.endpoints.iter().map(|e| e.st.clone()).chain(n.dormant.iter().cloned()).collect(),
                    passthru: n.passthru.clone(),
                    cni: n.cni,
                })
                .collect(),
        }
    }

    /// Saves the state (durably: see `state.rs`); every successful change goes through here
    /// before it is reported.
    fn persist(&mut self) -> Result<()> {
        let snapshot = self.snapshot();
        self.store.save(snapshot).context("saving the state file")
    }

    fn view(&self, n: &Network) -> NetworkView {
        let dom = n.domain.and_then(|k| self.domains.get(&k));
        NetworkView {
            name: n.name.clone(),
            id: n.id,
            driver: "macvlan".into(),
            parent: n.parent.clone(),
            vlan: n.vlan,
            internal: n.internal,
            mode: n.mode.clone(),
            options: n.options.iter().filter(|(k, _)| k != "parent" && k != "macvlan_mode").cloned().collect(),
            ipv6: n.ipam.ipv6,
            subnets: n
                .ipam
                .pools
                .iter()
                .map(|p| SubnetView {
                    subnet: p.subnet.to_string(),
                    gateway: p.gateway.map(|g| g.to_string()),
                    ip_range: p.range.map(|r| r.to_string()),
                    aux_addresses: p.aux.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
                })
                .collect(),
            xdp_mode: dom.and_then(|d| self.dp.xdp_mode(d.dp)).unwrap_or("none").into(),
            status: n.status.clone(),
            endpoints: n
                .endpoints
                .iter()
                .map(|e| EndpointView {
                    kind: if e.netns().is_some() { "veth" } else { "tap" }.into(),
                    netns: e.netns().map(str::to_string),
                    ifname: e.st.ifname.clone(),
                    host_ifname: e.st.host.clone(),
                    mac: e.mac.to_string(),
                    ips: e.addrs.iter().map(|a| a.to_string()).collect(),
                    mtu: e.st.mtu,
                    source_macs: e.st.source_macs.clone(),
                    container_id: e.st.cni.as_ref().map(|a| a.container_id.clone()),
                })
                .collect(),
            cni: n.cni,
        }
    }

    /// Rebuilds networks and endpoints from the state file: XDP is attached again (replacing what
    /// a crashed daemon left), endpoint links that still exist are adopted, missing ones whose
    /// namespace still exists are recreated, the rest are dropped with a message.
    async fn restore(&mut self, st: State) -> Result<()> {
        self.next_id = st.next_id.max(1);
        self.rx_vlan_off = st.rx_vlan_off.clone();
        let mut pools = Vec::new();
        for ns in &st.networks {
            pools.push(Ipam::new(&ns.ipam).map_err(|e| anyhow!("network '{}': {e}", ns.name))?);
        }
        let mut changed = false;
        for (ns, ipam) in st.networks.into_iter().zip(pools) {
            // Files from before the options were kept name only the parent and the mode.
            let options = if ns.options.is_empty() {
                ns.parent
                    .iter()
                    .map(|p| ("parent".to_string(), p.clone()))
                    .chain([("macvlan_mode".to_string(), ns.mode.clone())])
                    .collect()
            } else {
                ns.options.clone()
            };
            let opts = NetOpts::parse(&options).map_err(|e| anyhow!("state file: network '{}': {e}", ns.name))?;
            let mut net = Network {
                name: ns.name.clone(),
                id: ns.id,
                parent: ns.parent.clone(),
                vlan: 0,
                internal: ns.internal,
                mode: ns.mode.clone(),
                opts,
                options,
                passthru: ns.passthru.clone(),
                spec: ns.ipam.clone(),
                ipam,
                domain: None,
                status: "active".into(),
                endpoints: Endpoints::default(),
                dormant: Vec::new(),
                cni: ns.cni,
            };
            self.next_id = self.next_id.max(ns.id + 1);
            let link = match net.parent.clone() {
                Some(p) => resolve_parent(self.h.clone(), &p).await.map(|(link, vlan)| {
                    net.vlan = vlan;
                    Some(link)
                }),
                None => Ok(None),
            };
            match async { self.acquire_domain(net.id, link?.as_deref()).await }.await {
                Ok(k) => net.domain = Some(k),
                Err(e) => {
                    eprintln!("xmacvlan daemon: network '{}' stays inactive: {e:#}", ns.name);
                    net.status = format!("inactive: {e:#}");
                    net.dormant = ns.endpoints;
                    self.nets.insert(ns.name, net);
                    continue;
                }
            }
            self.nets.insert(ns.name.clone(), net);
            for ep in ns.endpoints {
                let what = format!("{:?} {}", ep.kind, ep.ifname);
                match self.restore_endpoint(&ns.name, ep).await {
                    Ok(e) => {
                        let net = self.nets.get_mut(&ns.name).expect("inserted above");
                        for a in e.addrs.iter().filter(|_| !net.cni) {
                            if let Err(err) = net.ipam.reserve(a) {
                                eprintln!("xmacvlan daemon: network '{}': {err}", ns.name);
                            }
                        }
                        net.endpoints.push(e);
                    }
                    Err(e) => {
                        changed = true;
                        eprintln!("xmacvlan daemon: network '{}': dropping endpoint {what}: {e:#}", ns.name);
                    }
                }
            }
        }
        let adopted: usize = self.nets.values().map(|n| n.endpoints.len()).sum();
        if !self.nets.is_empty() {
            eprintln!("xmacvlan daemon: restored {} network(s), {adopted} endpoint(s)", self.nets.len());
        }
        if changed {
            self.persist()?;
        }
        Ok(())
    }

    async fn restore_endpoint(&mut self, network: &str, st: EndpointState) -> Result<Endpoint> {
        let net = &self.nets[network];
        let dp = self.domains[&net.domain.expect("active network")].dp;
        let o = net.ep_opts();
        let routes = if net.cni { st.routes.clone() } else { default_routes(&net.ipam.default_gateways()) };
        let mac: MacAddr = st.mac.parse().map_err(|e| anyhow!("MAC {}: {e}", st.mac))?;
        let addrs: Vec<Assigned> = st
            .addrs
            .iter()
            .map(|a| {
                let n: IpNet = a.parse().map_err(|_| anyhow!("address '{a}' is not a CIDR"))?;
                Ok(Assigned { ip: n.addr(), prefix: n.prefix_len() })
            })
            .collect::<Result<_>>()?;
        let mut existing = netlink::link_by_name(&self.h, &st.host).await?;
        let (port, host_index) = match &st.kind {
            EndpointKind::Veth { netns, ns_id } => {
                if let Some(l) = &existing {
                    if netlink::link_kind(&self.h, l.index).await?.as_deref() != Some("veth") {
                        bail!("{} exists but is not a veth; leaving it alone", st.host);
                    }
                }
                let (ns, id) = open_netns(netns).with_context(|| format!("its namespace {netns} is gone"))?;
                if id != *ns_id {
                    bail!("namespace {netns} is a different one now (was {ns_id:?}, is {id:?})");
                }
                // Made for fewer workers than this daemon runs (--cpus changed): every worker
                // needs a queue, so the pair is made again, with the same name, MAC and addresses.
                if let Some(l) = existing.take_if(|l| l.rx_queues < self.dp.workers() as u32) {
                    eprintln!(
                        "xmacvlan daemon: {} has {} queue(s) for {} workers; recreating it",
                        st.host,
                        l.rx_queues,
                        self.dp.workers()
                    );
                    netlink::del_link(&self.h, l.index).await?;
                }
                let veth = Veth { host: &st.host, ifname: &st.ifname, ns, netns };
                self.build_veth(dp, o, veth, mac, st.mtu, &addrs, &routes, existing.is_none()).await?
            }
            EndpointKind::Tap { owner } => {
                if let Some(l) = &existing {
                    if netlink::link_kind(&self.h, l.index).await?.as_deref() != Some("tun") {
                        bail!("{} exists but is not a tap; leaving it alone", st.host);
                    }
                }
                self.build_tap(dp, o, &st.host, *owner, mac, st.mtu, existing.is_none()).await?
            }
        };
        if !st.source_macs.is_empty() {
            let macs = parse_macs(&st.source_macs)?;
            if let Err(e) = self.dp.set_sources(dp, port, &macs) {
                eprintln!("xmacvlan daemon: {}: restoring its source MACs: {e}", st.host);
            }
        }
        Ok(Endpoint { st, port, host_index, mac, addrs })
    }

    /// Finds or sets up the forwarding domain of a network: its parent's (shared by every network
    /// on that parent), or a fresh anchor for an internal network.
    async fn acquire_domain(&mut self, id: u32, parent: Option<&str>) -> Result<u32> {
        let workers = self.dp.workers() as u32;
        let (link, anchor) = match parent {
            None => {
                let name = anchor_name(id);
                // A crashed daemon may have left the anchor: it holds no state, start afresh.
                if let Some(old) = netlink::link_by_name(&self.h, &name).await? {
                    netlink::del_link(&self.h, old.index).await?;
                }
                (netlink::create_anchor(&self.h, &name, workers).await?, true)
            }
            Some(pname) => {
                let link = netlink::link_by_name(&self.h, pname)
                    .await?
                    .ok_or_else(|| anyhow!("-o parent interface was not found on the host: {pname}"))?;
                if link.loopback {
                    bail!("loopback interface is not a valid macvlan parent link: {pname}");
                }
                if link.mac.is_none() || !link.ether {
                    bail!("parent {pname} is not an Ethernet interface");
                }
                if let Some(d) = self.domains.get_mut(&link.index) {
                    d.users += 1;
                    return Ok(link.index);
                }
                (link, false)
            }
        };
        let dp = self.next_dp;
        // xmv_parent must see the tags: a parent that strips them on receive would make tagged
        // frames look untagged. Devices that cannot change it (or do not strip) are left as they are.
        let rx_vlan_was_on = !anchor
            && (netlink::disable_rx_vlan_offload(&link.name).unwrap_or_else(|e| {
                eprintln!("xmacvlan daemon: {e:#}");
                false
            }) || self.rx_vlan_off.contains(&link.name));
        let rx_queues = if anchor { workers } else { netlink::active_rx_queues(&link.name).unwrap_or(link.rx_queues) };
        let spec = ParentSpec {
            ifindex: link.index,
            name: link.name.clone(),
            mac: link.mac.unwrap_or_default(),
            mtu: link.mtu,
            rx_queues,
            internal: anchor,
        };
        if !anchor {
            if let Err(e) = self.ensure_relay().await {
                if rx_vlan_was_on {
                    let _ = netlink::enable_rx_vlan_offload(&link.name);
                }
                return Err(e);
            }
        }
        if let Err(e) = self.dp.add_network(dp, &spec) {
            self.release_relay().await;
            if anchor {
                let _ = netlink::del_link(&self.h, link.index).await;
            }
            if rx_vlan_was_on {
                let _ = netlink::enable_rx_vlan_offload(&link.name);
            }
            return Err(anyhow::Error::new(e).context(format!("setting up the datapath on {}", link.name)));
        }
        self.next_dp += 1;
        let key = link.index;
        self.domains.insert(key, Domain { dp, link, users: 1, anchor, rx_vlan_was_on });
        Ok(key)
    }

    async fn release_domain(&mut self, key: u32) {
        let Some(d) = self.domains.get_mut(&key) else { return };
        d.users -= 1;
        if d.users > 0 {
            return;
        }
        let d = self.domains.remove(&key).expect("present");
        self.dp.remove_network(d.dp);
        self.release_relay().await;
        if d.rx_vlan_was_on {
            if let Err(e) = netlink::enable_rx_vlan_offload(&d.link.name) {
                eprintln!("xmacvlan daemon: {e:#}");
            }
        }
        if d.anchor {
            if let Err(e) = netlink::del_link(&self.h, d.link.index).await {
                eprintln!("xmacvlan daemon: removing anchor {}: {e:#}", d.link.name);
            }
        }
    }

    async fn create(&mut self, c: CreateNetwork) -> Result<Value> {
        self.create_network(c, false).await
    }

    /// `cni`: made by the CNI plugin, without subnets (its IPAM plugin hands out addresses).
    async fn create_network(&mut self, c: CreateNetwork, cni: bool) -> Result<Value> {
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
        let opts = NetOpts::parse(&c.options).map_err(|e| anyhow!(e))?;
        let parent = opts.parent.clone();
        if c.internal {
            if let Some(p) = &parent {
                bail!("an --internal network has no parent: drop -o parent={p} or --internal");
            }
        }
        if parent.is_none() && opts.mode != Mode::Bridge {
            bail!(
                "macvlan mode '{}' needs a parent: an internal network (no -o parent) only has bridge mode",
                opts.mode.name()
            );
        }
        if c.ipam.subnets.is_empty() && !cni {
            bail!("--subnet is required (e.g. --subnet 198.18.0.0/24; add --ipv6 --subnet 2001:2::/64 for IPv6)");
        }
        let ipam = Ipam::new(&c.ipam).map_err(|e| anyhow!(e))?;
        for n in self.nets.values() {
            if let Some((mine, theirs)) = ipam.overlap(&n.ipam) {
                bail!(
                    "Pool overlaps with other one on this address space: subnet {mine} of network '{}' overlaps subnet {theirs} of network '{}'",
                    c.name,
                    n.name
                );
            }
        }
        let (link, vlan) = match &parent {
            Some(p) => {
                let (link, vlan) = resolve_parent(self.h.clone(), p).await?;
                (Some(link), vlan)
            }
            None => (None, 0),
        };
        if let (Some(p), Some(link)) = (&parent, &link) {
            if opts.keep_pcp && vlan == 0 {
                bail!("-o vlan_pcp=keep is for VLAN parents (e.g. {link}.50); {p} is untagged");
            }
            // Passthru owns its (link, VLAN): like the kernel, one child per parent.
            let ln = netlink::link_by_name(&self.h, link).await?.map(|l| l.index);
            let same_parent = |n: &&Network| n.vlan == vlan && n.domain.is_some() && n.domain == ln;
            if let Some(other) = self.nets.values().find(same_parent) {
                if opts.mode == Mode::Passthru {
                    bail!(
                        "cannot use mode passthru, macvlan network {} is already using parent interface {p}",
                        other.name
                    );
                }
                if other.opts.mode == Mode::Passthru {
                    bail!("cannot use parent interface {p}: macvlan network {} uses it in passthru mode", other.name);
                }
            }
        }
        let id = self.next_id;
        let domain = self.acquire_domain(id, link.as_deref()).await?;
        self.next_id += 1;
        let net = Network {
            name: c.name.clone(),
            id,
            internal: parent.is_none(),
            parent,
            vlan,
            mode: opts.mode.name().to_string(),
            options: c.options.clone(),
            opts,
            passthru: None,
            spec: c.ipam,
            ipam,
            domain: Some(domain),
            status: "active".into(),
            endpoints: Endpoints::default(),
            dormant: Vec::new(),
            cni,
        };
        let v = serde_json::to_value(self.view(&net))?;
        self.nets.insert(c.name, net);
        Ok(v)
    }

    async fn remove(&mut self, name: &str, force: bool) -> Result<Value> {
        let net = self.net(name)?;
        if !net.endpoints.is_empty() && !force {
            let list: Vec<String> = net.endpoints.iter().map(Endpoint::label).collect();
            bail!("network '{name}' has connected endpoints: {}; disconnect them or use --force", list.join(", "));
        }
        let ids: Vec<EpId> = net.endpoints.entries().map(|(id, _)| id).collect();
        for id in ids {
            self.disconnect_at(name, id).await?;
        }
        let net = self.nets.remove(name).expect("checked above");
        if let Some(k) = net.domain {
            self.release_domain(k).await;
        }
        Ok(json!({ "removed": name }))
    }

    /// Connects an endpoint. `cni`: a CNI attachment with the addresses and routes its IPAM
    /// plugin gave (the network's own IPAM is not asked).
    async fn connect(&mut self, c: Connect, cni: Option<CniParts>) -> Result<Value> {
        let net = self.net(&c.network)?;
        if net.cni && cni.is_none() {
            bail!(
                "network '{}' belongs to the CNI plugin (addresses come from the runtime's IPAM): attach containers through the runtime",
                c.network
            );
        }
        let Some(dkey) = net.domain else { bail!("network '{}' is {}", c.network, net.status) };
        let dom = &self.domains[&dkey];
        let (dp, max_mtu, link_name) = (dom.dp, dom.link.mtu, dom.link.name.clone());
        let target = match (&c.netns, &c.tap) {
            (Some(spec), None) => {
                if c.owner.is_some() {
                    bail!("--owner is for --tap endpoints only");
                }
                let (ns, ns_id) = open_netns(spec)?;
                if let Some(e) = net.endpoints.find(&Key::Netns(ns_id)).and_then(|id| net.endpoints.get(id)) {
                    bail!("namespace '{spec}' is already connected to network '{}' (as {})", c.network, e.st.ifname);
                }
                if !valid_ifname(&c.ifname) {
                    bail!(
                        "--ifname '{}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)",
                        c.ifname
                    );
                }
                Target::Veth { ns, ns_id, netns: spec.clone() }
            }
            (None, Some(tap)) => {
                if !valid_ifname(tap) {
                    bail!("--tap '{tap}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
                }
                if netlink::link_by_name(&self.h, tap).await?.is_some() {
                    bail!("--tap {tap}: an interface of that name exists already");
                }
                Target::Tap { name: tap.clone(), owner: c.owner }
            }
            (Some(_), Some(_)) => bail!("give either a NETNS or --tap NAME, not both"),
            (None, None) => bail!("give the NETNS to connect, or --tap NAME for a VM"),
        };
        let mtu = match c.mtu {
            None => max_mtu,
            Some(m) if (68..=max_mtu).contains(&m) => m,
            Some(m) if self.nets[&c.network].internal => {
                bail!("--mtu {m} is outside 68..={max_mtu} (the internal network's MTU)")
            }
            Some(m) => bail!("--mtu {m} is outside 68..={max_mtu} (the parent {link_name}'s MTU)"),
        };
        // Validate the MAC before taking addresses, so a bad MAC leaves the pools untouched.
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
        let passthru = net.opts.mode == Mode::Passthru;
        let parent_mac = dom.link.mac;
        if passthru {
            if let Some(e) = net.endpoints.first() {
                bail!(
                    "network '{}' is in passthru mode and already has its endpoint {}: passthru allows one endpoint per parent ({link_name})",
                    c.network,
                    e.label()
                );
            }
            // Like the kernel, a passthru endpoint with a MAC of its own changes the parent's; that
            // would pull the parent from under the other networks on it.
            if requested_mac.is_some() && requested_mac != parent_mac {
                if let Some(other) = self.nets.values().find(|n| n.domain == Some(dkey) && n.name != c.network) {
                    bail!(
                        "--mac-address would change the MAC of {link_name}, which network '{}' also uses; leave it out to take {link_name}'s MAC",
                        other.name
                    );
                }
            }
        }
        let o = net.ep_opts();
        let net = self.nets.get_mut(&c.network).expect("checked above");
        let (addrs, routes) = match &cni {
            Some(p) => (p.addrs.clone(), p.routes.clone()),
            None => {
                let addrs = net.ipam.allocate(c.ip.as_deref(), c.ip6.as_deref()).map_err(|e| anyhow!(e))?;
                (addrs, default_routes(&net.ipam.default_gateways()))
            }
        };
        let mac = match (passthru, requested_mac) {
            (_, Some(m)) => m,
            (true, None) => parent_mac.expect("a parent link has a MAC"),
            // CNI: random, as the kernel gives a macvlan child (a MAC derived from an address
            // another node's host-local may also hand out would clash on the wire).
            (false, None) if cni.is_some() => random_mac(),
            (false, None) => derive_mac(&addrs).map_or_else(random_mac, MacAddr),
        };
        if let Err(e) = self.check_mac(mac, dkey, o.vlan, passthru) {
            self.nets.get_mut(&c.network).expect("exists").ipam.release(&addrs);
            return Err(e);
        }
        if passthru {
            if let Err(e) = self.take_parent(&c.network, dkey, mac).await {
                self.nets.get_mut(&c.network).expect("exists").ipam.release(&addrs);
                return Err(e);
            }
        }
        let net_id = self.nets[&c.network].id;
        let built = match &target {
            Target::Veth { ns, ns_id, netns } => {
                let host = host_ifname(net_id, *ns_id);
                let veth = Veth { host: &host, ifname: &c.ifname, ns: ns.try_clone()?, netns };
                self.build_veth(dp, o, veth, mac, mtu, &addrs, &routes, true).await.map(|b| (b, host))
            }
            Target::Tap { name, owner } => {
                self.build_tap(dp, o, name, *owner, mac, mtu, true).await.map(|b| (b, name.clone()))
            }
        };
        let net = self.nets.get_mut(&c.network).expect("exists");
        let ((port, host_index), host) = match built {
            Ok(b) => b,
            Err(e) => {
                net.ipam.release(&addrs);
                if passthru {
                    self.give_back_parent(&c.network).await;
                }
                return Err(e);
            }
        };
        let (kind, ifname) = match target {
            Target::Veth { ns_id, netns, .. } => (EndpointKind::Veth { netns, ns_id }, c.ifname.clone()),
            Target::Tap { name, owner } => (EndpointKind::Tap { owner }, name),
        };
        let st = EndpointState {
            kind,
            ifname,
            host,
            mac: mac.to_string(),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
            mtu,
            source_macs: Vec::new(),
            routes: if cni.is_some() { routes } else { Vec::new() },
            cni: cni.map(|p| p.attachment),
        };
        let ep = Endpoint { st, port, host_index, mac, addrs };
        let v = json!({ "network": c.network, "kind": if ep.netns().is_some() { "veth" } else { "tap" },
            "netns": ep.netns(), "ifname": ep.st.ifname, "host_ifname": ep.st.host, "mac": ep.mac.to_string(),
            "ips": ep.st.addrs, "mtu": ep.st.mtu });
        net.endpoints.push(ep);
        Ok(v)
    }

    /// A MAC may be used once per VLAN of an L2 domain, and never be the parent's own (except by
    /// a passthru endpoint, which takes it).
    fn check_mac(&self, mac: MacAddr, dkey: u32, vlan: u16, passthru: bool) -> Result<()> {
        for n in self.nets.values().filter(|n| n.domain == Some(dkey) && n.vlan == vlan) {
            if let Some(e) = n.endpoints.find(&Key::Mac(mac)).and_then(|id| n.endpoints.get(id)) {
                bail!("MAC {mac} is already used by the endpoint {} on network '{}'", e.label(), n.name);
            }
        }
        let dom = &self.domains[&dkey];
        if !dom.anchor && !passthru && dom.link.mac == Some(mac) {
            bail!("MAC {mac} is the parent {}'s own address", dom.link.name);
        }
        Ok(())
    }

    /// Passthru: the parent goes promiscuous (it takes every unicast frame) and, when the endpoint
    /// has a MAC of its own, takes that MAC (macvlan_set_mac_address); both are recorded so that
    /// [`Self::give_back_parent`] restores them, also after a daemon restart.
    async fn take_parent(&mut self, network: &str, dkey: u32, mac: MacAddr) -> Result<()> {
        let link =
            netlink::link_by_index(&self.h, dkey).await?.ok_or_else(|| anyhow!("the parent (link #{dkey}) is gone"))?;
        let mut saved = PassthruSaved { mac: None, promisc: false };
        if !link.promisc {
            netlink::set_promisc(&self.h, link.index, true).await?;
            saved.promisc = true;
        }
        if link.mac != Some(mac) {
            if let Err(e) = netlink::set_mac(&self.h, link.index, mac).await {
                if saved.promisc {
                    let _ = netlink::set_promisc(&self.h, link.index, false).await;
                }
                return Err(e);
            }
            saved.mac = link.mac.map(|m| m.to_string());
            if let Some(d) = self.domains.get_mut(&dkey) {
                d.link.mac = Some(mac);
            }
        }
        self.nets.get_mut(network).expect("caller checked").passthru = Some(saved);
        Ok(())
    }

    /// Undoes [`Self::take_parent`]: the parent's own MAC back, promiscuous mode off if we set it.
    async fn give_back_parent(&mut self, network: &str) {
        let Some(net) = self.nets.get_mut(network) else { return };
        let (Some(saved), Some(dkey)) = (net.passthru.take(), net.domain) else { return };
        if let Some(mac) = saved.mac.as_deref().and_then(|m| m.parse::<MacAddr>().ok()) {
            match netlink::set_mac(&self.h, dkey, mac).await {
                Ok(()) => {
                    if let Some(d) = self.domains.get_mut(&dkey) {
                        d.link.mac = Some(mac);
                    }
                }
                Err(e) => eprintln!("xmacvlan daemon: restoring the parent's MAC: {e:#}"),
            }
        }
        if saved.promisc {
            if let Err(e) = netlink::set_promisc(&self.h, dkey, false).await {
                eprintln!("xmacvlan daemon: {e:#}");
            }
        }
    }

    /// `network macaddr`: edits the allow-list of a source-mode endpoint.
    async fn macaddr(
        &mut self,
        network: &str,
        endpoint: &str,
        action: MacaddrAction,
        macs: &[String],
    ) -> Result<Value> {
        let net = self.net(network)?;
        if net.opts.mode != Mode::Source {
            bail!(
                "network '{network}' is in {} mode: source MAC lists are for macvlan_mode=source",
                net.opts.mode.name()
            );
        }
        let Some(dkey) = net.domain else { bail!("network '{network}' is {}", net.status) };
        let id = net.find_endpoint(endpoint)?;
        let ep = net.endpoints.get(id).expect("found");
        let given = parse_macs(macs)?;
        if let Some(m) = given.iter().find(|m| m.is_multicast() || m.is_zero()) {
            bail!("{m} is a multicast or zero address; a source MAC is a sender's unicast address");
        }
        match (action, given.is_empty()) {
            (MacaddrAction::Flush, false) => bail!("macaddr flush takes no MAC addresses"),
            (MacaddrAction::Add | MacaddrAction::Del, true) => {
                bail!("macaddr {action:?} needs at least one MAC address")
            }
            _ => {}
        }
        let (port, label) = (ep.port, ep.label());
        let mut list = parse_macs(&ep.st.source_macs)?;
        match action {
            MacaddrAction::Add => {
                for m in given {
                    if !list.contains(&m) {
                        list.push(m);
                    }
                }
            }
            MacaddrAction::Del => {
                for m in &given {
                    if !list.contains(m) {
                        bail!("{m} is not in the source MAC list of {label}");
                    }
                }
                list.retain(|m| !given.contains(m));
            }
            MacaddrAction::Set => {
                list = given;
                list.dedup();
            }
            MacaddrAction::Flush => list.clear(),
        }
        let dp = self.domains[&dkey].dp;
        self.dp.set_sources(dp, port, &list)?;
        let net = self.nets.get_mut(network).expect("checked above");
        let listed = net.endpoints.source_macs_mut(id).expect("found above");
        *listed = list.iter().map(MacAddr::to_string).collect();
        Ok(json!({ "network": network, "endpoint": label, "source_macs": listed }))
    }

    /// Creates (or, `create` false, adopts) an endpoint's veth pair, attaches the datapath and
    /// configures the container side; undoes what it did on failure.
    #[allow(clippy::too_many_arguments)]
    async fn build_veth(
        &mut self,
        dp: NetId,
        o: EpOpts,
        v: Veth<'_>,
        mac: MacAddr,
        mtu: u32,
        addrs: &[Assigned],
        routes: &[CniRoute],
        create: bool,
    ) -> Result<(PortId, u32)> {
        let workers = self.dp.workers() as u32;
        let host = v.host.to_string();
        if create {
            netlink::create_veth(&self.h, &host, v.ifname, mac, mtu, workers, &v.ns).await?;
        }
        let link = netlink::link_by_name(&self.h, &host)
            .await?
            .ok_or_else(|| anyhow!("veth {host} vanished right after creation"))?;
        let mut port = None;
        let steps = async {
            netlink::disable_ipv6(&host)?;
            // NAPI on the container end (GRO on, for created and adopted endpoints alike), TSO off
            // on ours: the XDP fast path redirects into the veth, which the container end only
            // accepts with NAPI, and what we transmit to it (the workers' copies, the tc flood's
            // clones) then queues on that end's own ring instead of the CPU's shared backlog of
            // 1000 frames, which a broadcast to more endpoints than that overflowed.
            netlink::disable_tso(&host)?;
            let fast = {
                let ifname = v.ifname.to_string();
                match netlink::in_netns(v.ns.try_clone()?, move |_| async move { netlink::enable_gro(&ifname) }).await {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("xmacvlan: {}: NAPI (GRO) could not be turned on, no XDP fast path: {e:#}", v.ifname);
                        false
                    }
                }
            };
            // Our program first (XDP, or tc for the tc fast path), then up: an adopted link (down
            // since a clean stop) never passes a frame to the host stack.
            let spec = EndpointSpec {
                ifindex: link.index,
                name: host.clone(),
                mac,
                mtu,
                vlan: o.vlan,
                up: false,
                queues: workers,
                veth: true,
                fast,
                mode: o.mode,
                nodst: o.nodst,
                keep_pcp: o.keep_pcp,
            };
            let id = self.dp.add_endpoint(dp, &spec).with_context(|| format!("attaching the datapath to {host}"))?;
            port = Some(id);
            netlink::set_up(&self.h, link.index).await?;
            if create {
                let (ifname, addrs, routes) = (v.ifname.to_string(), addrs.to_vec(), routes.to_vec());
                let offloads = self.dp.keeps_offloads(dp, id);
                netlink::in_netns(v.ns.try_clone()?, move |h| async move {
                    let l = netlink::link_by_name(&h, &ifname)
                        .await?
                        .ok_or_else(|| anyhow!("{ifname} is missing in the namespace"))?;
                    if !offloads {
                        netlink::disable_tx_checksum(&ifname)?;
                    }
                    for a in &addrs {
                        netlink::add_addr(&h, l.index, a.ip, a.prefix).await?;
                    }
                    netlink::set_up(&h, l.index).await?;
                    if let Some(lo) = netlink::link_by_name(&h, "lo").await? {
                        netlink::set_up(&h, lo.index).await?;
                    }
                    for r in routes.iter().filter(|r| addrs.iter().any(|a| a.ip.is_ipv6() == r.dst.addr().is_ipv6())) {
                        netlink::add_route(&h, r.dst, r.gw, l.index).await?;
                    }
                    Ok(())
                })
                .await
                .with_context(|| format!("configuring {} in namespace '{}'", v.ifname, v.netns))?;
            }
            anyhow::Ok(())
        }
        .await;
        self.finish_endpoint(dp, port, steps, link.index, create).await
    }

    /// Creates (or adopts) a persistent tap for a VM and attaches the datapath to it. Its carrier
    /// is on while a VM has it open; until then frames for it count as `dst_down`.
    #[allow(clippy::too_many_arguments)]
    async fn build_tap(
        &mut self,
        dp: NetId,
        o: EpOpts,
        name: &str,
        owner: Option<u32>,
        mac: MacAddr,
        mtu: u32,
        create: bool,
    ) -> Result<(PortId, u32)> {
        if create {
            netlink::create_tap(name, owner)?;
        }
        let link = netlink::link_by_name(&self.h, name)
            .await?
            .ok_or_else(|| anyhow!("tap {name} vanished right after creation"))?;
        let mut port = None;
        let steps = async {
            netlink::set_mtu(&self.h, link.index, mtu).await?;
            netlink::disable_ipv6(name)?;
            // A tap has one queue: worker 0 receives from it; every worker transmits to it (datapath::txbatch).
            let spec = EndpointSpec {
                ifindex: link.index,
                name: name.to_string(),
                mac,
                mtu,
                vlan: o.vlan,
                up: false,
                queues: 1,
                veth: false,
                fast: false,
                mode: o.mode,
                nodst: o.nodst,
                keep_pcp: o.keep_pcp,
            };
            port = Some(self.dp.add_endpoint(dp, &spec).with_context(|| format!("attaching the datapath to {name}"))?);
            netlink::set_up(&self.h, link.index).await?;
            anyhow::Ok(())
        }
        .await;
        self.finish_endpoint(dp, port, steps, link.index, create).await
    }

    /// The end of building an endpoint: on failure undo what was done (the datapath port, and the
    /// link if we created it); on success start from the link's carrier (the link monitor follows
    /// it from here on).
    async fn finish_endpoint(
        &mut self,
        dp: NetId,
        port: Option<PortId>,
        steps: Result<()>,
        index: u32,
        create: bool,
    ) -> Result<(PortId, u32)> {
        if let Err(e) = steps {
            let detached = port.and_then(|p| self.dp.detach_endpoint(dp, p));
            if create {
                let _ = netlink::del_link(&self.h, index).await;
            }
            self.dp.close(detached.into_iter().collect());
            return Err(e);
        }
        let port = port.expect("set when steps succeed");
        let up = netlink::link_by_index(&self.h, index).await.ok().flatten().is_some_and(|l| l.lower_up);
        self.dp.set_endpoint_up(dp, port, up);
        Ok((port, index))
    }

    async fn disconnect(&mut self, network: &str, endpoint: &str) -> Result<Value> {
        let net = self.nets.get(network).ok_or_else(|| anyhow!("network '{network}' not found"))?;
        let id = net.find_endpoint(endpoint)?;
        self.disconnect_at(network, id).await
    }

    /// Removes endpoint `id` of `network` (both exist).
    async fn disconnect_at(&mut self, network: &str, id: EpId) -> Result<Value> {
        let net = &self.nets[network];
        let dp = net.domain.and_then(|k| self.domains.get(&k)).map(|d| d.dp);
        let net = self.nets.get_mut(network).expect("checked above");
        let ep = net.endpoints.remove(id).expect("the caller found it");
        net.ipam.release(&ep.addrs);
        let detached = dp.and_then(|dp| self.dp.detach_endpoint(dp, ep.port));
        self.give_back_parent(network).await;
        // Deleting the link first unbinds the endpoint's sockets on the way, so closing them
        // afterwards does not wait for an RCU grace period of its own.
        let deleted = netlink::del_link(&self.h, ep.host_index).await;
        self.dp.close(detached.into_iter().collect());
        deleted?;
        Ok(json!({ "network": network, "endpoint": ep.label(), "removed": ep.st.host }))
    }

    async fn link_event(&mut self, link: &Link, deleted: bool) {
        let found = self.nets.values().find_map(|n| {
            let dp = self.domains.get(&n.domain?)?.dp;
            let id = n.endpoints.find(&Key::Link(link.index))?;
            n.endpoints.get(id).map(|e| (dp, n.name.clone(), id, e.port, e.label()))
        });
        let Some((dp, net_name, id, port, label)) = found else { return };
        if deleted {
            // The namespace (or the link) went away under us: forget the endpoint.
            eprintln!("xmacvlan daemon: endpoint {label} on '{net_name}' disappeared; disconnecting it");
            self.dp.remove_endpoint(dp, port);
            if let Some(n) = self.nets.get_mut(&net_name) {
                if let Some(ep) = n.endpoints.remove(id) {
                    n.ipam.release(&ep.addrs);
                }
            }
            self.give_back_parent(&net_name).await;
            self.drop_if_unused(&net_name).await;
            if let Err(e) = self.persist() {
                eprintln!("xmacvlan daemon: {e:#}");
            }
        } else {
            // Events arrive late and in bursts (a connect sets the host end up before the
            // container end, and the carrier-off event of the first step can come after connect
            // already read carrier on): follow the link as it is now, not as the event saw it.
            let up = match netlink::link_by_index(&self.h, link.index).await {
                Ok(Some(now)) => now.lower_up,
                _ => link.lower_up,
            };
            self.dp.set_endpoint_up(dp, port, up);
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
        let networks: Vec<Value> = self.nets.values().filter_map(|n| self.network_stats(n, &report)).collect();
        let xdp: serde_json::Map<String, Value> = report.xdp.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let d = &report.departed;
        let drops: serde_json::Map<String, Value> =
            DropReason::ALL.iter().map(|r| (r.name().to_string(), json!(d.drops[*r as usize]))).collect();
        let departed = json!({ "rx": d.rx, "tx": d.tx, "drops": drops, "drops_total": d.drops_total() });
        let k = &report.kernel;
        // Received by the kernel-side paths: from the wire, and from containers (xmv_endpoint_tc,
        // the frames its collector refused included).
        let (e, wire) = (&k.to_endpoints, &k.to_wire);
        let fast = json!({ "mode": report.fast_path.name(), "rx": k.rx + e.rx + e.lost,
            "from_containers": e.rx + e.lost, "delivered": e.frames + wire.frames, "to_wire": wire.frames,
            "bytes": e.bytes + wire.bytes, "dropped": e.dropped() + wire.dropped() + e.lost,
            "flood_frames": k.flood_frames, "flood_copies": k.flood_copies, "flood_empty": k.flood_empty });
        json!({ "workers": workers, "xdp": xdp, "networks": networks, "departed": departed, "fast_path": fast })
    }

    /// One network's ports and their counters, as `stats` lists them and `inspect` shows them
    /// under "counters"; None while the network is inactive.
    fn network_stats(&self, n: &Network, report: &Report) -> Option<Value> {
        let dom = self.domains.get(&n.domain?)?;
        let r = report.networks.iter().find(|r| r.id == dom.dp)?;
        // The domain's ports by id: one lookup per endpoint, not a scan of the domain each.
        let by_port: HashMap<PortId, &PortReport> = r.endpoints.iter().map(|p| (p.id, p)).collect();
        let mut ports = Vec::with_capacity(n.endpoints.len() + 1);
        if !dom.anchor {
            // Shared by every network on this parent.
            ports.push(port_json("parent", &r.parent));
        }
        for e in n.endpoints.iter() {
            if let Some(p) = by_port.get(&e.port) {
                let mut v = port_json(if e.netns().is_some() { "endpoint" } else { "tap" }, p);
                v["netns"] = json!(e.netns());
                v["ifname"] = json!(e.st.ifname);
                v["ips"] = json!(e.st.addrs);
                ports.push(v);
            }
        }
        let u = &r.umem;
        let umem = json!({ "frames": u.frames, "free": u.free, "flood": u.flood, "parent": u.parent,
            "endpoints": u.endpoints, "in_flight": u.in_flight, "umems": u.umems, "bytes": u.bytes });
        Some(
            json!({ "name": n.name, "parent": n.parent, "vlan": n.vlan, "mode": n.mode, "internal": n.internal, "xdp_mode": r.xdp_mode, "ports": ports, "umem": umem }),
        )
    }

    /// Clean stop: the workers stop and every XDP program is detached; endpoints stay in place
    /// (and in the state file) for the next start, with their daemon-side ends set down so that,
    /// without XDP, nothing a container sends reaches this namespace's stack (its side shows
    /// NO-CARRIER until the next start). Internal anchors hold nothing and go.
    async fn shutdown(&mut self) {
        self.dp.shutdown();
        self.remove_relay().await;
        for e in self.nets.values().flat_map(|n| n.endpoints.iter()) {
            if let Err(err) = netlink::set_down(&self.h, e.host_index).await {
                eprintln!("xmacvlan daemon: setting {} down: {err:#}", e.st.host);
            }
        }
        for d in self.domains.values() {
            if d.anchor {
                let _ = netlink::del_link(&self.h, d.link.index).await;
            } else if d.rx_vlan_was_on {
                // Without XDP the host stack may have its offload back.
                let _ = netlink::enable_rx_vlan_offload(&d.link.name);
            }
        }
    }
}

/// A port's counters in `stats`.
fn port_json(kind: &str, p: &PortReport) -> Value {
    let drops: serde_json::Map<String, Value> =
        DropReason::ALL.iter().map(|r| (r.name().to_string(), json!(p.stats.drops[*r as usize]))).collect();
    json!({ "kind": kind, "name": p.ifname, "mac": p.mac.to_string(), "up": p.up, "xsk_mode": p.xsk_mode,
        "rx": p.stats.rx, "rx_bytes": p.stats.rx_bytes, "tx": p.stats.tx, "tx_bytes": p.stats.tx_bytes,
        "drops": drops, "drops_total": p.stats.drops_total(),
        "pcp_stripped": p.stats.pcp_stripped, "pcp_kept": p.stats.pcp_kept,
        "kernel": { "xsk_fill_ring_empty": p.stats.xsk_fill_empty } })
}

/// Where a new endpoint goes.
enum Target {
    Veth { ns: File, ns_id: (u64, u64), netns: String },
    Tap { name: String, owner: Option<u32> },
}

/// The veth pair of an endpoint: `host` here, `ifname` inside `ns`.
struct Veth<'a> {
    host: &'a str,
    ifname: &'a str,
    ns: File,
    netns: &'a str,
}

fn parse_macs(macs: &[String]) -> Result<Vec<MacAddr>> {
    macs.iter().map(|m| m.parse::<MacAddr>().map_err(|e| anyhow!(e))).collect()
}

/// The link and VLAN of `-o parent=NAME`: an interface of that name (a real VLAN sub-interface
/// included) is a plain parent; otherwise `base.VID` is VLAN VID on `base`.
async fn resolve_parent(h: Handle, pname: &str) -> Result<(String, u16)> {
    if netlink::link_by_name(&h, pname).await?.is_some() {
        return Ok((pname.to_string(), 0));
    }
    match netopts::split_vlan(pname).map_err(|e| anyhow!(e))? {
        None => bail!("-o parent interface was not found on the host: {pname}"),
        Some((base, vid)) => {
            if netlink::link_by_name(&h, base).await?.is_none() {
                bail!("-o parent interface was not found on the host: {base} (VLAN {vid} of -o parent={pname})");
            }
            Ok((base.to_string(), vid))
        }
    }
}

/// The default routes via the network's gateways (one per family).
fn default_routes(gateways: &[IpAddr]) -> Vec<CniRoute> {
    gateways
        .iter()
        .map(|&g| {
            let any = if g.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
            CniRoute { dst: IpNet::new(any, 0).expect("prefix 0 is valid"), gw: Some(g) }
        })
        .collect()
}

/// A random locally administered unicast MAC: for CNI attachments (as the kernel gives macvlan
/// children) and for endpoints without an IPv4 address to derive one from.
fn random_mac() -> MacAddr {
    let mut b = [0u8; 6];
    // SAFETY: getrandom(2) writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // No entropy yet (early boot): time and PID are unique enough for one host.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let x = (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40);
        b.copy_from_slice(&x.to_le_bytes()[..6]);
    }
    b[0] = (b[0] & 0xfc) | 0x02;
    MacAddr(b)
}
