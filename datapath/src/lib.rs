//! xmacvlan's datapath: kernel macvlan bridge semantics in userspace.
//!
//! An XDP program on each network's parent steers unicast for endpoints into AF_XDP sockets and
//! passes everything else to the host stack; a packet socket on the parent picks broadcast and
//! multicast up again for the endpoints. Workers pinned to cores move descriptors between the
//! sockets of a shared UMEM according to [`fwd::decide`], a pure function of frame and table.
//!
//! [`Datapath`] is the control-plane handle: networks and endpoints are added and removed while the
//! workers run; every change either completes or leaves nothing behind.

pub mod bpf;
pub mod budget;
pub mod counters;
pub mod flood;
pub mod frame;
pub mod fwd;
mod plane;
mod pool;
pub mod probe;
pub mod txbatch;
mod worker;
pub mod xsk;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::bpf::{Bpf, Prog, XdpMode, MAX_QUEUES, MAX_SLOTS};
use crate::budget::{chunk_for_mtu, group_frames, GROUP_SIZE};
use crate::counters::{PortStats, SharedPortCounters, UmemCounters, UmemStats, WorkerCounters, WorkerStats};
use crate::flood::FloodSocket;
use crate::frame::MacAddr;
use crate::fwd::{Mode, PortId, PortInfo, Table, MAX_PORTS, PARENT};
use crate::worker::{Ack, Command, Domain, Port, Reply, Worker};
use crate::xsk::{Area, RingSizes, Umem, Xsk, XskMode};

/// Identifies a network (forwarding domain) across the datapath.
pub type NetId = u32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("BPF {what}: {cause}")]
    Bpf { what: &'static str, cause: libbpf_rs::Error },
    #[error("attaching XDP to {ifname}: {cause}")]
    Attach { ifname: String, cause: libbpf_rs::Error },
    #[error("{ifname} already has an XDP program that xmacvlan did not attach; detach it first")]
    XdpBusy { ifname: String },
    #[error("AF_XDP {what} on '{ifname}': {cause}")]
    Xsk { what: &'static str, ifname: String, cause: std::io::Error },
    #[error("{call}: {cause}")]
    Sys { call: &'static str, cause: std::io::Error },
    #[error("parent {ifname} has {queues} receive queue(s); the daemon runs {workers} worker(s), which needs between {workers} and 64 queues; use --cpus with at most {queues} CPUs")]
    TooFewQueues { ifname: String, queues: u32, workers: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("worker {worker}: {msg}")]
    Worker { worker: usize, msg: String },
}

/// Datapath settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// One worker per entry, pinned to that CPU (None = not pinned).
    pub cpus: Vec<Option<usize>>,
    /// Frames of each parent UMEM (one per network and worker): 2 KiB each where the parent's MTU
    /// allows, else 4 KiB, of pinned memory. Endpoints bring UMEMs of their own (budget.rs).
    pub frames: u32,
    /// Niceness of the worker threads. Where a worker shares its core with the parent's NAPI
    /// thread, equal shares let NAPI redirect frames faster than the worker can forward them, and
    /// the surplus is dropped at the full RX ring after costing NAPI time (receive livelock); a
    /// higher worker priority moves that CPU to forwarding.
    pub nice: i32,
    /// How untagged known unicast from the wire reaches an endpoint that is up and whose MTU the
    /// frame fits (see [`FastPath`]). Everything else takes the AF_XDP path.
    pub fast_path: FastPath,
}

impl Default for Config {
    fn default() -> Self {
        Config { cpus: vec![None], frames: 16384, nice: -20, fast_path: FastPath::Tc }
    }
}

/// The in-kernel shortcut for unicast from the wire to an endpoint: the decision `fwd::decide`
/// makes for such a frame, taken in the kernel's receive path without AF_XDP and a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPath {
    /// Every frame through AF_XDP and a worker.
    Off,
    /// The parent's XDP program redirects to the endpoint's veth (bpf_redirect); the container
    /// end builds the skb in its own NAPI (it needs GRO on: [`EndpointSpec::fast`]).
    Xdp,
    /// The parent's XDP program passes the frame, the kernel builds the skb (GRO merges it), and a
    /// tc program on the parent moves it into the container (bpf_redirect_peer): one pass, as
    /// kernel macvlan's rx_handler. Veth endpoints only.
    Tc,
}

impl FastPath {
    pub fn name(self) -> &'static str {
        match self {
            FastPath::Off => "off",
            FastPath::Xdp => "xdp",
            FastPath::Tc => "tc",
        }
    }
}

impl std::str::FromStr for FastPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(FastPath::Off),
            "xdp" => Ok(FastPath::Xdp),
            "tc" => Ok(FastPath::Tc),
            _ => Err(format!("fast path '{s}' is not one of tc, xdp, off")),
        }
    }
}

/// The interface a network forwards through.
#[derive(Debug, Clone)]
pub struct ParentSpec {
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u32,
    pub rx_queues: u32,
    /// An internal network's anchor: a link of ours that only hosts the UMEM-owning sockets. It
    /// gets no XDP program and no flood socket, and nothing is ever sent to it.
    pub internal: bool,
}

/// The daemon-side end of an endpoint's veth pair.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u32,
    pub vlan: u16,
    pub up: bool,
    /// Its queues: a veth has one per worker; a tap has one, so only worker 0 receives from it
    /// (every worker transmits to it, as to any endpoint, through its packet socket).
    pub queues: u32,
    /// A veth (a tap is not): the tc fast path can hand frames to its peer.
    pub veth: bool,
    /// The far side accepts frames redirected in XDP (a veth whose container end has NAPI on:
    /// GRO enabled or an XDP program), so the XDP fast path may deliver to it.
    pub fast: bool,
    pub mode: Mode,
    /// Source mode: frames from listed senders go to the copies only.
    pub nodst: bool,
    /// VLAN endpoints: deliver tags with a non-zero PCP as priority tags instead of removing them.
    pub keep_pcp: bool,
}

/// Ring sizes: deep for the parent's sockets (its NAPI may fill a whole scheduler slice while it
/// shares a core with the worker), shallow for endpoints (their fill ring never holds more than
/// [`budget::ENDPOINT_CAP`], and nothing is transmitted through their AF_XDP sockets).
const PARENT_RINGS: RingSizes = RingSizes { fill: 8192, comp: 2048, rx: 8192, tx: 2048 };
const PARENT_EXTRA_RINGS: RingSizes = RingSizes { fill: 8192, comp: 64, rx: 8192, tx: 0 };
const ENDPOINT_RINGS: RingSizes = RingSizes { fill: 512, comp: 64, rx: 512, tx: 0 };

/// Pinned memory and ring memory an endpoint costs per worker, for documentation and `stats`.
pub fn endpoint_bytes(parent_mtu: u32) -> (u32, usize) {
    (budget::umem_bytes_per_endpoint(chunk_for_mtu(parent_mtu)), ENDPOINT_RINGS.bytes())
}

struct WorkerHandle {
    commands: SyncSender<(Command, Ack)>,
    pending: Arc<AtomicUsize>,
    wake: Arc<OwnedFd>,
    counters: Arc<CachePadded<WorkerCounters>>,
    cpu: Option<usize>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    fn send(&self, id: usize, cmd: Command) -> Result<Reply, Error> {
        let (ack_tx, ack_rx) = sync_channel(1);
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.commands.send((cmd, ack_tx)).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Worker { worker: id, msg: "worker thread is gone".into() });
        }
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(std::os::fd::AsRawFd::as_raw_fd(&*self.wake), (&one as *const u64).cast(), 8) };
        match ack_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(msg)) => Err(Error::Worker { worker: id, msg }),
            Err(RecvTimeoutError::Timeout) => {
                Err(Error::Worker { worker: id, msg: "did not answer within 10 s".into() })
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(Error::Worker { worker: id, msg: "stopped without answering (see the daemon's log)".into() })
            }
        }
    }
}

struct Iface {
    ifindex: u32,
    name: String,
    slot: u32,
    xdp: XdpMode,
    /// Our tc program is attached (the tc fast path's parent).
    tc: bool,
}

struct EndpointRec {
    iface: Iface,
    info: PortInfo,
    counters: Vec<SharedPortCounters>,
    xsk_mode: XskMode,
    /// Its endpoint group (UMEM id − 1).
    group: usize,
    /// Served by this fast path while up.
    fast: Option<FastPath>,
    /// The slot's fast-path counters when this endpoint got it (slots are reused).
    fast_base: bpf::FastCount,
}

impl EndpointRec {
    fn mac_val(&self) -> bpf::MacVal {
        let mut flags = match self.info.mode {
            Mode::Source => bpf::MAC_NO_DST | bpf::MAC_REFLECT,
            Mode::Private | Mode::Passthru => bpf::MAC_REFLECT,
            Mode::Vepa | Mode::Bridge => 0,
        };
        if self.fast == Some(FastPath::Tc) {
            flags |= bpf::MAC_FAST_TC;
        }
        bpf::MacVal {
            fast_ifindex: if self.fast.is_some() && self.info.up { self.iface.ifindex } else { 0 },
            max_len: self.info.mtu + 14,
            slot: self.iface.slot,
            flags,
        }
    }

    /// The `macs` keys of this endpoint: its MAC, and for passthru the all-zero "any unicast" key.
    fn mac_keys(&self, parent_ifindex: u32) -> impl Iterator<Item = bpf::MacKey> {
        let own = bpf::mac_key(parent_ifindex, self.info.vlan, self.info.mac);
        let any = (self.info.mode == Mode::Passthru)
            .then(|| bpf::mac_key(parent_ifindex, self.info.vlan, MacAddr::default()));
        std::iter::once(own).chain(any)
    }
}

/// Up to [`GROUP_SIZE`] endpoints whose sockets share one UMEM per worker (see budget.rs).
struct Group {
    members: Vec<PortId>,
    /// Per worker: the UMEM and the member sockets bound to it; None while no member has a
    /// socket on that worker (its UMEM went with the last one).
    workers: Vec<Option<GroupUmem>>,
}

struct GroupUmem {
    area: Arc<Area>,
    socks: Vec<(PortId, Arc<OwnedFd>)>,
}

struct Network {
    parent: Iface,
    parent_counters: Vec<SharedPortCounters>,
    parent_xsk_mode: XskMode,
    chunk: u32,
    groups: Vec<Option<Group>>,
    umem: Vec<Arc<CachePadded<UmemCounters>>>,
    table: Table,
    endpoints: BTreeMap<PortId, EndpointRec>,
    /// Kernel-side outcomes of endpoints that left: their frames were still received from the parent.
    fast_departed: bpf::FastCount,
    /// The tc flood fans out the parent's wire floods (every parent but an internal anchor).
    tc_flood: bool,
    /// The parent slot's tc flood counters when this network got it (slots are reused).
    flood_base: bpf::FloodCount,
}

/// Counters of one port, summed over workers.
#[derive(Debug, Clone)]
pub struct PortReport {
    pub id: PortId,
    pub ifname: String,
    pub mac: MacAddr,
    pub up: bool,
    pub xsk_mode: &'static str,
    pub stats: PortStats,
}

#[derive(Debug, Clone)]
pub struct NetworkReport {
    pub id: NetId,
    pub xdp_mode: &'static str,
    pub parent: PortReport,
    pub endpoints: Vec<PortReport>,
    /// What the frames of the network's UMEMs are doing, summed over workers.
    pub umem: UmemStats,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub workers: Vec<WorkerStats>,
    pub networks: Vec<NetworkReport>,
    /// The XDP programs' own counters, by [`bpf::XDP_STAT_NAMES`].
    pub xdp: Vec<(&'static str, u64)>,
    /// The counters of endpoints removed since the start, so that sums over ports still balance.
    pub departed: PortStats,
    /// The fast path in use, and what the kernel-side paths (fast paths, tc flood) did in total.
    pub fast_path: FastPath,
    pub kernel: KernelPaths,
}

/// What the kernel-side paths did, datapath-wide (past endpoints included). The accounting
/// invariant over ports and workers needs their flood terms: Σrx + Σ flood_copies (workers' and
/// these) = Σtx + Σdrops + Σ flood_empty.
#[derive(Debug, Clone, Default)]
pub struct KernelPaths {
    /// Frames received from parents that no worker saw (Σ ports' rx = Σ workers' rx + this).
    pub rx: u64,
    /// Outcomes at endpoints: delivered (frames, bytes) and not (down, oversize, errors).
    pub to_endpoints: bpf::FastCount,
    /// The tc flood: group frames it fanned out, their extra outcomes, floods without a target.
    pub flood_frames: u64,
    pub flood_copies: u64,
    pub flood_empty: u64,
}

/// The running datapath.
pub struct Datapath {
    bpf: Bpf,
    cfg: Config,
    workers: Vec<WorkerHandle>,
    networks: BTreeMap<NetId, Network>,
    slots: Vec<bool>,
    departed: PortStats,
}

impl Datapath {
    /// Loads the XDP programs and starts one pinned worker per configured CPU.
    pub fn start(cfg: Config) -> Result<Self, Error> {
        if cfg.cpus.is_empty() || cfg.cpus.len() > MAX_QUEUES as usize {
            return Err(Error::Invalid(format!(
                "between 1 and {MAX_QUEUES} workers are supported, got {}",
                cfg.cpus.len()
            )));
        }
        let bpf = Bpf::load()?;
        let mut dp = Datapath {
            bpf,
            cfg: cfg.clone(),
            workers: Vec::new(),
            networks: BTreeMap::new(),
            slots: vec![false; MAX_SLOTS as usize],
            departed: PortStats::default(),
        };
        for (id, &cpu) in cfg.cpus.iter().enumerate() {
            // SAFETY: plain eventfd(2); checked below.
            let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if raw < 0 {
                return Err(Error::Sys { call: "eventfd", cause: std::io::Error::last_os_error() });
            }
            // SAFETY: a fresh fd we own.
            let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
            let (tx, rx) = sync_channel(64);
            let pending = Arc::new(AtomicUsize::new(0));
            let counters = Arc::new(CachePadded::new(WorkerCounters::default()));
            let worker = Worker::new(id, cpu, counters.clone(), rx, pending.clone(), wake.clone(), cfg.nice)?;
            let thread = std::thread::Builder::new()
                .name(format!("xmv-worker-{id}"))
                .spawn(move || worker.run())
                .map_err(|e| Error::Sys { call: "spawn worker", cause: e })?;
            dp.workers.push(WorkerHandle { commands: tx, pending, wake, counters, cpu, thread: Some(thread) });
        }
        Ok(dp)
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    fn alloc_slot(&mut self) -> Result<u32, Error> {
        let Some(i) = self.slots.iter().position(|used| !used) else {
            let endpoints: usize = self.networks.values().map(|n| n.endpoints.len()).sum();
            return Err(Error::Invalid(format!(
                "all {MAX_SLOTS} datapath slots are in use ({endpoints} endpoints and {} parents or anchors): \
                 disconnect something first",
                self.networks.len()
            )));
        };
        self.slots[i] = true;
        Ok(i as u32)
    }

    fn free_slot(&mut self, slot: u32) {
        self.slots[slot as usize] = false;
    }

    /// Attaches the parent program and gives every worker its sockets on the parent.
    pub fn add_network(&mut self, id: NetId, parent: &ParentSpec) -> Result<(), Error> {
        if self.networks.contains_key(&id) {
            return Err(Error::Invalid(format!("network {id} exists in the datapath")));
        }
        let workers = self.workers.len();
        if (parent.rx_queues as usize) < workers || parent.rx_queues > MAX_QUEUES {
            return Err(Error::TooFewQueues { ifname: parent.name.clone(), queues: parent.rx_queues, workers });
        }
        let slot = self.alloc_slot()?;
        let xdp = if parent.internal {
            XdpMode::None
        } else {
            match self.bpf.attach(Prog::Parent, parent.ifindex, &parent.name) {
                Ok(mode) => mode,
                Err(e) => {
                    self.free_slot(slot);
                    return Err(e);
                }
            }
        };
        let mut iface = Iface { ifindex: parent.ifindex, name: parent.name.clone(), slot, xdp, tc: false };
        // The tc program fans wire floods out in every mode; in tc mode it also takes unicast.
        if !parent.internal {
            if let Err(e) = self.bpf.attach_tc(parent.ifindex, &parent.name) {
                self.undo_iface(&iface);
                return Err(e);
            }
            iface.tc = true;
        }
        match self.build_network(id, parent, &iface) {
            Ok(net) => {
                self.networks.insert(id, Network { parent: iface, ..net });
                if let Err(e) = self.sync_floods(id) {
                    self.remove_network(id);
                    return Err(e);
                }
                Ok(())
            }
            Err(e) => {
                self.undo_iface(&iface);
                Err(e)
            }
        }
    }

    fn build_network(&mut self, id: NetId, parent: &ParentSpec, iface: &Iface) -> Result<Network, Error> {
        let table = if parent.internal { Table::internal(parent.mac) } else { Table::new(parent.mac, parent.mtu) };
        let chunk = chunk_for_mtu(parent.mtu);
        let mut domains = Vec::new();
        let mut counters = Vec::new();
        let mut umem_counters = Vec::new();
        let mut mode = XskMode::Copy;
        if !parent.internal {
            self.bpf.set_slot(iface.ifindex, iface.slot)?;
        }
        let workers = self.workers.len() as u32;
        for w in 0..workers {
            let area = Arc::new(Area::new(self.cfg.frames, chunk)?);
            // Worker w owns the parent's queues w, w + workers, ...: every queue has a socket, so
            // no steered frame falls back to the host stack for want of one.
            let main = Xsk::open(Umem::Register(&area), parent.ifindex, w, &parent.name, PARENT_RINGS)?;
            mode = main.mode;
            let mut socks = vec![main];
            if !parent.internal {
                for q in (w + workers..parent.rx_queues.min(MAX_QUEUES)).step_by(workers as usize) {
                    let with = socks[0].fd().clone();
                    let umem = Umem::Share { with: with.as_fd(), area: &area };
                    socks.push(Xsk::open(umem, parent.ifindex, q, &parent.name, PARENT_EXTRA_RINGS)?);
                }
                for (k, s) in socks.iter().enumerate() {
                    let q = w + k as u32 * workers;
                    self.bpf.set_xsk(iface.slot, q, s.fd().as_fd())?;
                }
            }
            let c: SharedPortCounters = Default::default();
            counters.push(c.clone());
            let flood = if w == 0 && !parent.internal {
                Some(FloodSocket::open(parent.ifindex, self.bpf.flood_filter())?)
            } else {
                None
            };
            let u = Arc::new(CachePadded::new(UmemCounters::default()));
            umem_counters.push(u.clone());
            let port = Port::parent(socks, parent.ifindex, c);
            domains.push(Domain::new(id, table.clone(), port, area, flood, u));
        }
        // Nothing can fail past this point but a worker: hand each worker its domain.
        for (w, d) in domains.into_iter().enumerate() {
            if let Err(e) = self.workers[w].send(w, Command::AddDomain(Box::new(d))) {
                for (v, h) in self.workers.iter().enumerate().take(w) {
                    drop(h.send(v, Command::RemoveDomain(id)));
                }
                return Err(e);
            }
        }
        Ok(Network {
            parent: Iface { name: iface.name.clone(), ..*iface },
            parent_counters: counters,
            parent_xsk_mode: mode,
            chunk,
            groups: Vec::new(),
            umem: umem_counters,
            table,
            endpoints: BTreeMap::new(),
            fast_departed: bpf::FastCount::default(),
            tc_flood: iface.tc,
            flood_base: self.bpf.flood_counts(iface.slot),
        })
    }

    /// Detaches XDP and clears the maps of an interface we set up.
    fn undo_iface(&mut self, iface: &Iface) {
        for q in 0..MAX_QUEUES {
            self.bpf.del_xsk(iface.slot, q);
        }
        self.bpf.del_slot(iface.ifindex);
        if iface.tc {
            self.bpf.detach_tc(iface.ifindex);
            self.bpf.del_flood_list(iface.ifindex);
        }
        self.bpf.detach(iface.ifindex, iface.xdp);
        self.free_slot(iface.slot);
    }

    /// Removes a network and all its endpoints from the datapath (their links are the caller's).
    pub fn remove_network(&mut self, id: NetId) {
        let Some(ids) = self.networks.get(&id).map(|n| n.endpoints.keys().copied().collect::<Vec<_>>()) else { return };
        let detached = ids.into_iter().filter_map(|port| self.detach_endpoint(id, port)).collect();
        self.close(detached);
        if let Some(net) = self.networks.remove(&id) {
            self.undo_iface(&net.parent);
            // The workers hand back their domains; dropping them closes the sockets.
            for (w, h) in self.workers.iter().enumerate() {
                drop(h.send(w, Command::RemoveDomain(id)));
            }
        }
    }

    /// Adds an endpoint: XDP on its daemon-side veth, a socket per worker in a UMEM of its group,
    /// then the MAC in the steering map (last, so the wire never steers to a half-built endpoint).
    pub fn add_endpoint(&mut self, net: NetId, spec: &EndpointSpec) -> Result<PortId, Error> {
        let workers = self.workers.len();
        let network =
            self.networks.get(&net).ok_or_else(|| Error::Invalid(format!("no network {net} in the datapath")))?;
        let id = (1..MAX_PORTS as PortId).find(|p| !network.endpoints.contains_key(p)).ok_or_else(|| {
            Error::Invalid(format!(
                "parent {} serves {} endpoints, the datapath's limit per parent",
                network.parent.name,
                MAX_PORTS - 1
            ))
        })?;
        let info = PortInfo {
            mac: spec.mac,
            mtu: spec.mtu,
            vlan: spec.vlan,
            up: spec.up,
            mode: spec.mode,
            nodst: spec.nodst,
            keep_pcp: spec.keep_pcp,
        };
        network.table.check_endpoint(id, &info).map_err(|e| Error::Invalid(e.to_string()))?;
        let parent_ifindex = network.parent.ifindex;
        let group = network
            .groups
            .iter()
            .position(|g| g.as_ref().is_some_and(|g| (g.members.len() as u32) < GROUP_SIZE))
            .or_else(|| network.groups.iter().position(Option::is_none))
            .unwrap_or(network.groups.len());

        let slot = self.alloc_slot()?;
        let xdp = match self.bpf.attach(Prog::Endpoint, spec.ifindex, &spec.name) {
            Ok(m) => m,
            Err(e) => {
                self.free_slot(slot);
                return Err(e);
            }
        };
        let iface = Iface { ifindex: spec.ifindex, name: spec.name.clone(), slot, xdp, tc: false };
        let nsock = workers.min(spec.queues.max(1) as usize);
        // Sockets first (all or nothing), then the workers.
        let built = (|| -> Result<Vec<(Xsk, Option<Arc<Area>>)>, Error> {
            self.bpf.set_slot(spec.ifindex, slot)?;
            let network = &self.networks[&net];
            let mut socks = Vec::new();
            for w in 0..nsock {
                let umem = network.groups.get(group).and_then(Option::as_ref).and_then(|g| g.workers[w].as_ref());
                let (xsk, new) = match umem {
                    Some(gu) => {
                        let with = gu.socks[0].1.clone();
                        let umem = Umem::Share { with: with.as_fd(), area: &gu.area };
                        (Xsk::open(umem, spec.ifindex, w as u32, &spec.name, ENDPOINT_RINGS)?, None)
                    }
                    None => {
                        let area = Arc::new(Area::new(group_frames(), network.chunk).map_err(|e| {
                            Error::Invalid(format!(
                                "{}: no memory for the UMEM of endpoints {}-{} of parent {} ({} KiB): {e}",
                                spec.name,
                                group as u32 * GROUP_SIZE + 1,
                                (group as u32 + 1) * GROUP_SIZE,
                                network.parent.name,
                                group_frames() as usize * network.chunk as usize / 1024
                            ))
                        })?);
                        (
                            Xsk::open(Umem::Register(&area), spec.ifindex, w as u32, &spec.name, ENDPOINT_RINGS)?,
                            Some(area),
                        )
                    }
                };
                self.bpf.set_xsk(slot, w as u32, xsk.fd().as_fd())?;
                socks.push((xsk, new));
            }
            Ok(socks)
        })();
        let socks = match built {
            Ok(s) => s,
            Err(e) => {
                self.undo_iface(&iface);
                return Err(e);
            }
        };
        let umem_id = group as u16 + 1;
        let xsk_mode = socks.first().map_or(XskMode::Copy, |(x, _)| x.mode);
        let mut fds: Vec<Option<Arc<OwnedFd>>> = socks.iter().map(|(x, _)| Some(x.fd().clone())).collect();
        fds.resize(workers, None);
        let mut news: Vec<Option<Arc<Area>>> = socks.iter().map(|(_, a)| a.clone()).collect();
        news.resize(workers, None);
        let mut socks = socks.into_iter().map(|(x, _)| Some(x)).collect::<Vec<_>>();
        socks.resize_with(workers, || None);
        let counters: Vec<SharedPortCounters> = (0..workers).map(|_| SharedPortCounters::default()).collect();
        for (w, sock) in socks.into_iter().enumerate() {
            let port = Port::endpoint(sock, umem_id, spec.ifindex, counters[w].clone());
            let pool = news[w].clone().map(|a| (umem_id, a));
            if let Err(e) = self.workers[w].send(w, Command::AddPort { net, id, info, port: Box::new(port), pool }) {
                self.unwind_port(net, id, umem_id, (0..=w).map(|v| news[v].is_some()).collect());
                self.undo_iface(&iface);
                return Err(e);
            }
        }
        let network = self.networks.get_mut(&net).expect("checked above");
        if group == network.groups.len() {
            network.groups.push(None);
        }
        let g = network.groups[group].get_or_insert_with(|| Group { members: Vec::new(), workers: Vec::new() });
        g.workers.resize_with(workers, || None);
        g.members.push(id);
        for w in 0..workers {
            if let Some(fd) = &fds[w] {
                match (&mut g.workers[w], &news[w]) {
                    (Some(gu), _) => gu.socks.push((id, fd.clone())),
                    (slot @ None, Some(area)) => {
                        *slot = Some(GroupUmem { area: area.clone(), socks: vec![(id, fd.clone())] })
                    }
                    (None, None) => unreachable!("a socket without a UMEM"),
                }
            }
        }
        network.table.add_endpoint(id, info).expect("checked above");
        let fast_base = self.bpf.fast_counts(slot);
        let fast = match self.cfg.fast_path {
            FastPath::Tc if spec.veth && spec.vlan == 0 => Some(FastPath::Tc),
            FastPath::Xdp if spec.fast && spec.vlan == 0 => Some(FastPath::Xdp),
            _ => None,
        };
        let rec = EndpointRec { iface, info, counters, xsk_mode, group, fast, fast_base };
        if let Err(e) = rec.mac_keys(parent_ifindex).try_for_each(|k| self.bpf.set_mac(k, rec.mac_val())) {
            for k in rec.mac_keys(parent_ifindex) {
                self.bpf.del_mac(k);
            }
            self.networks.get_mut(&net).expect("exists").endpoints.insert(id, rec);
            self.remove_endpoint(net, id);
            return Err(e);
        }
        self.networks.get_mut(&net).expect("checked above").endpoints.insert(id, rec);
        if let Err(e) = self.sync_floods(net) {
            self.remove_endpoint(net, id);
            return Err(e);
        }
        Ok(id)
    }

    /// Rewrites the tc flood's list of `net` from its endpoints (untagged, every mode but source).
    fn sync_floods(&self, net: NetId) -> Result<(), Error> {
        let Some(n) = self.networks.get(&net) else { return Ok(()) };
        if !n.tc_flood {
            return Ok(());
        }
        let members: Vec<bpf::FloodMember> = n
            .endpoints
            .values()
            .filter(|ep| ep.info.vlan == 0 && ep.info.mode != Mode::Source)
            .map(|ep| bpf::FloodMember {
                ifindex: ep.iface.ifindex,
                max_len: ep.info.mtu + 14,
                slot: ep.iface.slot,
                up: u32::from(ep.info.up),
            })
            .collect();
        self.bpf.set_flood_list(n.parent.ifindex, &members)
    }

    /// Takes a half-added port back out of the first workers (sockets closed by the drop of what
    /// they return, then their frames reclaimed).
    fn unwind_port(&mut self, net: NetId, id: PortId, umem: u16, new_umem: Vec<bool>) {
        let mut back = Vec::new();
        for (w, h) in self.workers.iter().enumerate().take(new_umem.len()) {
            back.push(h.send(w, Command::RemovePort { net, id }));
        }
        drop(back);
        for (w, h) in self.workers.iter().enumerate().take(new_umem.len()) {
            drop(h.send(w, Command::Reclaim { net, id, umem, drop_umem: new_umem[w] }));
        }
    }

    /// Removes an endpoint; its veth may already be gone.
    pub fn remove_endpoint(&mut self, net: NetId, id: PortId) {
        if let Some(c) = self.detach_endpoint(net, id) {
            self.close(vec![c]);
        }
    }

    /// Takes an endpoint out of service: out of the steering and forwarding tables, its XDP
    /// program detached, the workers no longer serving its sockets. The sockets stay open in the
    /// returned [`Detached`] until [`Datapath::close`]: closing a socket still bound to its veth
    /// waits for an RCU grace period, while deleting the veth first unbinds it on the way (so a
    /// caller that deletes the link closes after that, for free).
    pub fn detach_endpoint(&mut self, net: NetId, id: PortId) -> Option<Detached> {
        let network = self.networks.get_mut(&net)?;
        let ep = network.endpoints.remove(&id)?;
        let listed = network.table.sources_of_port(id);
        network.table.remove_endpoint(id);
        for k in ep.mac_keys(network.parent.ifindex) {
            self.bpf.del_mac(k);
        }
        sync_sources(&self.bpf, network.parent.ifindex, ep.info.vlan, &listed, &network.table);
        // Nothing steers to its sockets any more; the workers stop serving them and hand them back.
        self.undo_iface(&ep.iface);
        let mut sockets = Vec::new();
        for (w, h) in self.workers.iter().enumerate() {
            sockets.push(h.send(w, Command::RemovePort { net, id }).ok());
        }
        let mut stats = PortStats::default();
        for c in &ep.counters {
            stats.add(c);
        }
        let f = self.fast_delta(&ep);
        add_fast(&mut stats, &f);
        self.departed.absorb(&stats);
        if let Err(e) = self.sync_floods(net) {
            eprintln!("xmacvlan datapath: {e}");
        }
        let network = self.networks.get_mut(&net).expect("exists");
        network.fast_departed.add(&f);
        let mut refs = Vec::new();
        let mut drop_umem = vec![false; self.workers.len()];
        if let Some(g) = network.groups.get_mut(ep.group).and_then(Option::as_mut) {
            g.members.retain(|&m| m != id);
            for (w, gu) in g.workers.iter_mut().enumerate() {
                if let Some(u) = gu {
                    refs.extend(u.socks.iter().filter(|&&(m, _)| m == id).map(|(_, fd)| fd.clone()));
                    u.socks.retain(|&(m, _)| m != id);
                    if u.socks.is_empty() {
                        *gu = None;
                        drop_umem[w] = true;
                    }
                }
            }
            if g.members.is_empty() {
                network.groups[ep.group] = None;
            }
        }
        Some(Detached { net, id, umem: ep.group as u16 + 1, drop_umem, sockets, refs })
    }

    /// Closes detached endpoints' sockets — many at once, so their RCU grace periods overlap —
    /// and then lets the workers take back the frames the kernel held for them.
    pub fn close(&mut self, detached: Vec<Detached>) {
        let mut reclaims = Vec::new();
        let mut holders = Vec::new();
        for d in detached {
            reclaims.push((d.net, d.id, d.umem, d.drop_umem));
            holders.push((d.sockets, d.refs));
        }
        close_in_parallel(holders);
        for (net, id, umem, drop_umem) in reclaims {
            for (w, h) in self.workers.iter().enumerate() {
                drop(h.send(w, Command::Reclaim { net, id, umem, drop_umem: drop_umem[w] }));
            }
        }
    }

    /// Replaces the source-MAC allow-list of a source-mode endpoint (kernel `macaddr set`).
    pub fn set_sources(&mut self, net: NetId, id: PortId, macs: &[MacAddr]) -> Result<(), Error> {
        let network =
            self.networks.get_mut(&net).ok_or_else(|| Error::Invalid(format!("no network {net} in the datapath")))?;
        let vlan = network
            .endpoints
            .get(&id)
            .map(|ep| ep.info.vlan)
            .ok_or_else(|| Error::Invalid(format!("no port {id} in network {net}")))?;
        let mut table = network.table.clone();
        let changed = table.set_sources(id, macs).map_err(|e| Error::Invalid(e.to_string()))?;
        // Workers first, then the XDP map: a frame steered by the new map always finds the list.
        for (w, h) in self.workers.iter().enumerate() {
            h.send(w, Command::SetSources { net, id, macs: macs.to_vec() })?;
        }
        let network = self.networks.get_mut(&net).expect("checked above");
        network.table = table;
        sync_sources(&self.bpf, network.parent.ifindex, vlan, &changed, &network.table);
        Ok(())
    }

    /// Tells the workers whether the endpoint's container side is up.
    pub fn set_endpoint_up(&mut self, net: NetId, id: PortId, up: bool) {
        let Some(network) = self.networks.get_mut(&net) else { return };
        let Some(ep) = network.endpoints.get_mut(&id) else { return };
        if ep.info.up == up {
            return;
        }
        ep.info.up = up;
        network.table.set_up(id, up);
        if ep.fast.is_some() {
            // Down: the fast path stops and the worker counts what arrives as dst_down.
            for k in ep.mac_keys(network.parent.ifindex) {
                let _ = self.bpf.set_mac(k, ep.mac_val());
            }
        }
        for (w, h) in self.workers.iter().enumerate() {
            let _ = h.send(w, Command::SetUp { net, id, up });
        }
        if let Err(e) = self.sync_floods(net) {
            eprintln!("xmacvlan datapath: {e}");
        }
    }

    /// XDP attach mode of a network's parent.
    /// Proves that network `net` forwards to endpoint `port`: a frame for its MAC, injected at the
    /// parent's XDP hook, must arrive on `ifname` in `ns` within a second (see [`probe`]).
    pub fn probe(&self, net: NetId, port: PortId, vlan: u16, ns: std::fs::File, ifname: &str) -> Result<(), Error> {
        let n = self.networks.get(&net).ok_or_else(|| Error::Invalid(format!("no network {net}")))?;
        let info =
            n.table.port(port).ok_or_else(|| Error::Invalid(format!("port {port} is not in the forwarding table")))?;
        if !info.up {
            return Err(Error::Invalid("the endpoint is down in the forwarding table".into()));
        }
        let attached = self.bpf.attached_id(n.parent.ifindex, n.parent.xdp);
        if n.parent.xdp == XdpMode::None || attached != self.bpf.prog_id(Prog::Parent) {
            return Err(Error::Invalid(format!(
                "xmacvlan's XDP program is no longer attached to {} (attached: program id {attached})",
                n.parent.name
            )));
        }
        if n.parent.tc && !self.bpf.tc_attached(n.parent.ifindex) {
            return Err(Error::Invalid(format!("xmacvlan's tc program is no longer attached to {}", n.parent.name)));
        }
        probe::run(self.bpf.prog(Prog::Parent), n.parent.ifindex, info.mac, vlan, ns, ifname, Duration::from_secs(1))
    }

    pub fn xdp_mode(&self, net: NetId) -> Option<&'static str> {
        self.networks.get(&net).map(|n| n.parent.xdp.name())
    }

    pub fn report(&self) -> Report {
        let sum = |cs: &[SharedPortCounters]| {
            let mut s = PortStats::default();
            for c in cs {
                s.add(c);
            }
            s
        };
        let networks = self
            .networks
            .iter()
            .map(|(&id, n)| NetworkReport {
                id,
                xdp_mode: n.parent.xdp.name(),
                parent: PortReport {
                    id: PARENT,
                    ifname: n.parent.name.clone(),
                    mac: n.table.port(PARENT).map(|p| p.mac).unwrap_or_default(),
                    up: true,
                    xsk_mode: n.parent_xsk_mode.name(),
                    stats: {
                        // Frames the kernel-side paths took were received from the parent too.
                        let mut s = sum(&n.parent_counters);
                        let k = self.kernel_rx(n);
                        s.rx += k.0;
                        s.rx_bytes += k.1;
                        s
                    },
                },
                umem: n.umem.iter().fold(UmemStats::default(), |mut acc, u| {
                    acc.add(&u.get());
                    acc
                }),
                endpoints: n
                    .endpoints
                    .iter()
                    .map(|(&pid, ep)| PortReport {
                        id: pid,
                        ifname: ep.iface.name.clone(),
                        mac: ep.info.mac,
                        up: ep.info.up,
                        xsk_mode: match ep.fast {
                            Some(FastPath::Tc) => "tc-fast-path",
                            Some(FastPath::Xdp) => "xdp-fast-path",
                            _ => ep.xsk_mode.name(),
                        },
                        stats: {
                            let mut s = sum(&ep.counters);
                            add_fast(&mut s, &self.fast_delta(ep));
                            s
                        },
                    })
                    .collect(),
            })
            .collect();
        let workers = self.workers.iter().enumerate().map(|(i, h)| h.counters.snapshot(i, h.cpu)).collect();
        let xdp = bpf::XDP_STAT_NAMES.iter().copied().zip(self.bpf.xdp_stats()).collect();
        let mut kernel = KernelPaths::default();
        for n in self.networks.values() {
            for f in n.endpoints.values().map(|ep| self.fast_delta(ep)).chain([n.fast_departed]) {
                kernel.to_endpoints.add(&f);
            }
            let fl = self.flood_delta(n);
            kernel.flood_frames += fl.frames;
            kernel.flood_copies += fl.copies;
            kernel.flood_empty += fl.empty;
            kernel.rx += self.kernel_rx(n).0;
        }
        Report { workers, networks, xdp, departed: self.departed.clone(), fast_path: self.cfg.fast_path, kernel }
    }

    /// What the kernel-side paths did for `ep` since it was added.
    fn fast_delta(&self, ep: &EndpointRec) -> bpf::FastCount {
        self.bpf.fast_counts(ep.iface.slot).since(&ep.fast_base)
    }

    /// What the tc flood did on `n`'s parent since the network got its slot.
    fn flood_delta(&self, n: &Network) -> bpf::FloodCount {
        let now = self.bpf.flood_counts(n.parent.slot);
        bpf::FloodCount {
            frames: now.frames.wrapping_sub(n.flood_base.frames),
            copies: now.copies.wrapping_sub(n.flood_base.copies),
            empty: now.empty.wrapping_sub(n.flood_base.empty),
        }
    }

    /// Frames (and bytes) of `n`'s parent that the kernel-side paths handled without a worker:
    /// every outcome at an endpoint is a received frame, but a flood of k targets is one frame
    /// with k outcomes (k − 1 copies; an empty flood is one frame with none).
    fn kernel_rx(&self, n: &Network) -> (u64, u64) {
        let mut out = bpf::FastCount::default();
        for f in n.endpoints.values().map(|ep| self.fast_delta(ep)).chain([n.fast_departed]) {
            out.add(&f);
        }
        let fl = self.flood_delta(n);
        ((out.frames + out.dropped() + fl.empty).wrapping_sub(fl.copies), out.bytes)
    }

    /// Stops the workers and detaches every XDP program we attached.
    pub fn shutdown(&mut self) {
        let nets: Vec<NetId> = self.networks.keys().copied().collect();
        for id in nets {
            self.remove_network(id);
        }
        for (w, h) in self.workers.iter_mut().enumerate() {
            let _ = h.send(w, Command::Stop);
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// An endpoint out of service whose sockets are still open (see [`Datapath::detach_endpoint`]).
pub struct Detached {
    net: NetId,
    id: PortId,
    umem: u16,
    drop_umem: Vec<bool>,
    /// What the workers handed back (their halves of the sockets).
    sockets: Vec<Option<Reply>>,
    /// The control plane's references to the same sockets.
    refs: Vec<Arc<OwnedFd>>,
}

/// Drops `items` (closing the sockets they hold) on several threads at once: each close of a
/// bound AF_XDP socket waits for an RCU grace period, and concurrent waits share one.
fn close_in_parallel<T: Send>(items: Vec<T>) {
    const THREADS: usize = 32;
    if items.len() <= 1 {
        drop(items);
        return;
    }
    let per = items.len().div_ceil(THREADS);
    let mut items = items;
    std::thread::scope(|s| {
        while !items.is_empty() {
            let chunk: Vec<T> = items.drain(..per.min(items.len())).collect();
            s.spawn(move || drop(chunk));
        }
    });
}

/// Adds what the kernel-side paths delivered to an endpoint, and did not, to its counters.
fn add_fast(s: &mut PortStats, f: &bpf::FastCount) {
    s.tx += f.frames;
    s.tx_bytes += f.bytes;
    s.drops[fwd::DropReason::DstDown as usize] += f.down;
    s.drops[fwd::DropReason::Oversize as usize] += f.oversize;
    s.drops[fwd::DropReason::TxError as usize] += f.errors;
}

/// Brings the XDP `sources` map in line with `table` for the given source MACs of `vlan`.
fn sync_sources(bpf: &Bpf, parent: u32, vlan: u16, macs: &[MacAddr], table: &Table) {
    for &m in macs {
        let flags = table.source_listing(vlan, m).map(|nodst| if nodst { bpf::SRC_NODST } else { 0 });
        if let Err(e) = bpf.set_source(bpf::mac_key(parent, vlan, m), flags) {
            eprintln!("xmacvlan datapath: {e}");
        }
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}
