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
pub mod copytx;
pub mod counters;
pub mod flood;
pub mod frame;
pub mod fwd;
pub mod probe;
mod worker;
pub mod xsk;

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::bpf::{Bpf, Prog, XdpMode, MAX_QUEUES, MAX_SLOTS};
use crate::copytx::CopyTx;
use crate::counters::{PortStats, SharedPortCounters, WorkerCounters, WorkerStats};
use crate::flood::FloodSocket;
use crate::frame::MacAddr;
use crate::fwd::{Mode, PortId, PortInfo, Table, MAX_PORTS, PARENT};
use crate::worker::{Ack, Command, Domain, Port, Worker, ENDPOINT_FILL, PARENT_FILL};
use crate::xsk::{SharedUmem, XskMode, XskPort, PARENT_RX_SIZE, RX_SIZE};

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

impl Error {
    pub(crate) fn xsk(what: &'static str, ifname: &str, e: xdpilone::Errno) -> Self {
        Error::Xsk { what, ifname: ifname.to_string(), cause: std::io::Error::from_raw_os_error(e.get_raw().abs()) }
    }
}

/// Datapath settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// One worker per entry, pinned to that CPU (None = not pinned).
    pub cpus: Vec<Option<usize>>,
    /// UMEM frames per (network, worker); each is 4 KiB of pinned memory.
    pub frames: u32,
    /// Niceness of the worker threads. Where a worker shares its core with the parent's NAPI
    /// thread, equal shares let NAPI redirect frames faster than the worker can forward them, and
    /// the surplus is dropped at the full RX ring after costing NAPI time (receive livelock); a
    /// higher worker priority moves that CPU to forwarding.
    pub nice: i32,
    /// XDP fast path: the parent's program redirects untagged known unicast for an endpoint that is
    /// up, and whose MTU the frame fits, straight to the endpoint's veth (bpf_redirect), skipping
    /// AF_XDP and the worker. Only for endpoints whose far side takes XDP frames
    /// ([`EndpointSpec::fast`]). Everything else keeps the AF_XDP path.
    pub xdp_fast_path: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { cpus: vec![None], frames: 16384, nice: -20, xdp_fast_path: false }
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
    /// Its queues: a veth has one per worker; a tap has one, and workers beyond it transmit to the
    /// tap through a [`copytx::CopyTx`].
    pub queues: u32,
    /// The far side accepts frames redirected in XDP (a veth whose container end has NAPI on:
    /// GRO enabled or an XDP program), so [`Config::xdp_fast_path`] may deliver to it.
    pub fast: bool,
    pub mode: Mode,
    /// Source mode: frames from listed senders go to the copies only.
    pub nodst: bool,
    /// VLAN endpoints: deliver tags with a non-zero PCP as priority tags instead of removing them.
    pub keep_pcp: bool,
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
    fn send(&self, id: usize, cmd: Command) -> Result<(), Error> {
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
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(Error::Worker { worker: id, msg }),
            Err(_) => Err(Error::Worker { worker: id, msg: "did not answer within 10 s".into() }),
        }
    }
}

struct Iface {
    ifindex: u32,
    name: String,
    slot: u32,
    xdp: XdpMode,
}

struct EndpointRec {
    iface: Iface,
    info: PortInfo,
    counters: Vec<SharedPortCounters>,
    xsk_mode: XskMode,
    /// Served by the XDP fast path while up.
    fast: bool,
    /// The slot's fast-path counters when this endpoint got it (slots are reused).
    fast_base: (u64, u64),
}

impl EndpointRec {
    fn mac_val(&self) -> bpf::MacVal {
        let flags = match self.info.mode {
            Mode::Source => bpf::MAC_NO_DST | bpf::MAC_REFLECT,
            Mode::Private | Mode::Passthru => bpf::MAC_REFLECT,
            Mode::Vepa | Mode::Bridge => 0,
        };
        bpf::MacVal {
            fast_ifindex: if self.fast && self.info.up { self.iface.ifindex } else { 0 },
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

struct Network {
    parent: Iface,
    parent_counters: Vec<SharedPortCounters>,
    parent_xsk_mode: XskMode,
    /// One per worker; the worker holds the rings, we hold the registrations.
    umems: Vec<SharedUmem>,
    table: Table,
    endpoints: BTreeMap<PortId, EndpointRec>,
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
}

#[derive(Debug, Clone)]
pub struct Report {
    pub workers: Vec<WorkerStats>,
    pub networks: Vec<NetworkReport>,
    /// The XDP programs' own counters, by [`bpf::XDP_STAT_NAMES`].
    pub xdp: Vec<(&'static str, u64)>,
}

/// The running datapath.
pub struct Datapath {
    bpf: Bpf,
    cfg: Config,
    workers: Vec<WorkerHandle>,
    networks: BTreeMap<NetId, Network>,
    slots: Vec<bool>,
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
            let worker = Worker::new(id, cpu, counters.clone(), rx, pending.clone(), wake.clone(), cfg.nice);
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
        let i = self
            .slots
            .iter()
            .position(|used| !used)
            .ok_or_else(|| Error::Invalid(format!("all {MAX_SLOTS} interface slots are in use")))?;
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
        let iface = Iface { ifindex: parent.ifindex, name: parent.name.clone(), slot, xdp };
        match self.build_network(id, parent, &iface) {
            Ok(net) => {
                self.networks.insert(id, Network { parent: iface, ..net });
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
        let mut umems = Vec::new();
        let mut domains = Vec::new();
        let mut counters = Vec::new();
        let mut mode = XskMode::Copy;
        if !parent.internal {
            self.bpf.set_slot(iface.ifindex, iface.slot)?;
        }
        let workers = self.workers.len() as u32;
        for w in 0..workers {
            let umem = SharedUmem::new(self.cfg.frames)?;
            // Worker w owns the parent's queues w, w + workers, ...: every queue has a socket, so
            // no steered frame falls back to the host stack for want of one.
            let xsk = XskPort::open(&umem, parent.ifindex, w, &parent.name, true, PARENT_RX_SIZE)?;
            mode = xsk.mode;
            let mut more = Vec::new();
            if parent.internal {
                let c: SharedPortCounters = Default::default();
                counters.push(c.clone());
                let port = Port { xsk, more, counters: c, fill_target: 0, tx_outstanding: 0 };
                domains.push(Domain::new(id, table.clone(), port, umem.area.clone(), None));
                umems.push(umem);
                continue;
            }
            self.bpf.set_xsk(iface.slot, w, xsk.fd())?;
            for q in (w + workers..parent.rx_queues.min(MAX_QUEUES)).step_by(workers as usize) {
                let extra = XskPort::open(&umem, parent.ifindex, q, &parent.name, false, PARENT_RX_SIZE)?;
                self.bpf.set_xsk(iface.slot, q, extra.fd())?;
                more.push(extra);
            }
            let c: SharedPortCounters = Default::default();
            counters.push(c.clone());
            let flood = if w == 0 { Some(FloodSocket::open(parent.ifindex, self.bpf.flood_filter())?) } else { None };
            let port = Port { xsk, more, counters: c, fill_target: PARENT_FILL, tx_outstanding: 0 };
            domains.push(Domain::new(id, table.clone(), port, umem.area.clone(), flood));
            umems.push(umem);
        }
        // Nothing can fail past this point: hand each worker its domain.
        for (w, d) in domains.into_iter().enumerate() {
            self.workers[w].send(w, Command::AddDomain(Box::new(d)))?;
        }
        Ok(Network {
            parent: Iface { ifindex: iface.ifindex, name: iface.name.clone(), slot: iface.slot, xdp: iface.xdp },
            parent_counters: counters,
            parent_xsk_mode: mode,
            umems,
            table,
            endpoints: BTreeMap::new(),
        })
    }

    /// Detaches XDP and clears the maps of an interface we set up.
    fn undo_iface(&mut self, iface: &Iface) {
        for q in 0..MAX_QUEUES {
            self.bpf.del_xsk(iface.slot, q);
        }
        self.bpf.del_slot(iface.ifindex);
        self.bpf.detach(iface.ifindex, iface.xdp);
        self.free_slot(iface.slot);
    }

    /// Removes a network and all its endpoints from the datapath (their links are the caller's).
    pub fn remove_network(&mut self, id: NetId) {
        let Some(ids) = self.networks.get(&id).map(|n| n.endpoints.keys().copied().collect::<Vec<_>>()) else { return };
        for port in ids {
            self.remove_endpoint(id, port);
        }
        for (w, h) in self.workers.iter().enumerate() {
            let _ = h.send(w, Command::RemoveDomain(id));
        }
        if let Some(net) = self.networks.remove(&id) {
            self.undo_iface(&net.parent);
        }
    }

    /// Adds an endpoint: XDP on its daemon-side veth, a socket per worker, then the MAC in the
    /// steering map (last, so the wire never steers to a half-built endpoint).
    pub fn add_endpoint(&mut self, net: NetId, spec: &EndpointSpec) -> Result<PortId, Error> {
        let workers = self.workers.len();
        let network =
            self.networks.get(&net).ok_or_else(|| Error::Invalid(format!("no network {net} in the datapath")))?;
        let id = (1..MAX_PORTS as PortId)
            .find(|p| !network.endpoints.contains_key(p))
            .ok_or_else(|| Error::Invalid(format!("network {net} has {MAX_PORTS} ports already")))?;
        let info = PortInfo {
            mac: spec.mac,
            mtu: spec.mtu,
            vlan: spec.vlan,
            up: spec.up,
            mode: spec.mode,
            nodst: spec.nodst,
            keep_pcp: spec.keep_pcp,
        };
        let mut table = network.table.clone();
        table.add_endpoint(id, info).map_err(|e| Error::Invalid(e.to_string()))?;
        let parent_ifindex = network.parent.ifindex;

        let slot = self.alloc_slot()?;
        let xdp = match self.bpf.attach(Prog::Endpoint, spec.ifindex, &spec.name) {
            Ok(m) => m,
            Err(e) => {
                self.free_slot(slot);
                return Err(e);
            }
        };
        let iface = Iface { ifindex: spec.ifindex, name: spec.name.clone(), slot, xdp };
        let built = (|| -> Result<(Vec<Port>, XskMode), Error> {
            self.bpf.set_slot(spec.ifindex, slot)?;
            let network = &self.networks[&net];
            let mut ports = Vec::new();
            let mut mode = XskMode::Copy;
            for w in 0..workers.min(spec.queues.max(1) as usize) {
                let xsk = XskPort::open(&network.umems[w], spec.ifindex, w as u32, &spec.name, false, RX_SIZE)?;
                mode = xsk.mode;
                self.bpf.set_xsk(slot, w as u32, xsk.fd())?;
                ports.push(Port {
                    xsk,
                    more: Vec::new(),
                    counters: Default::default(),
                    fill_target: ENDPOINT_FILL,
                    tx_outstanding: 0,
                });
            }
            Ok((ports, mode))
        })();
        let (ports, xsk_mode) = match built {
            Ok(b) => b,
            Err(e) => {
                self.undo_iface(&iface);
                return Err(e);
            }
        };
        let mut copies = Vec::new();
        for _ in ports.len()..workers {
            match CopyTx::open(spec.ifindex) {
                Ok(c) => copies.push((c, SharedPortCounters::default())),
                Err(e) => {
                    self.undo_iface(&iface);
                    return Err(Error::Sys { call: "packet socket for copy transmit", cause: e });
                }
            }
        }
        let mut counters: Vec<SharedPortCounters> = ports.iter().map(|p| p.counters.clone()).collect();
        counters.extend(copies.iter().map(|(_, c)| c.clone()));
        let nports = ports.len();
        let commands = ports.into_iter().map(|port| Command::AddPort { net, id, info, port: Box::new(port) }).chain(
            copies.into_iter().map(|(tx, counters)| Command::AddCopyPort { net, id, info, tx: Box::new(tx), counters }),
        );
        debug_assert!(nports <= workers);
        for (w, cmd) in commands.enumerate() {
            if let Err(e) = self.workers[w].send(w, cmd) {
                for (v, h) in self.workers.iter().enumerate().take(w + 1) {
                    let _ = h.send(v, Command::RemovePort { net, id });
                }
                self.undo_iface(&iface);
                return Err(e);
            }
        }
        let fast_base = self.bpf.fast_counts(slot);
        let fast = self.cfg.xdp_fast_path && spec.fast && spec.vlan == 0;
        let rec = EndpointRec { iface, info, counters, xsk_mode, fast, fast_base };
        if let Err(e) = rec.mac_keys(parent_ifindex).try_for_each(|k| self.bpf.set_mac(k, rec.mac_val())) {
            for k in rec.mac_keys(parent_ifindex) {
                self.bpf.del_mac(k);
            }
            for (v, h) in self.workers.iter().enumerate() {
                let _ = h.send(v, Command::RemovePort { net, id });
            }
            self.undo_iface(&rec.iface);
            return Err(e);
        }
        let network = self.networks.get_mut(&net).expect("checked above");
        network.table = table;
        network.endpoints.insert(id, rec);
        Ok(id)
    }

    /// Removes an endpoint; its veth may already be gone.
    pub fn remove_endpoint(&mut self, net: NetId, id: PortId) {
        let Some(network) = self.networks.get_mut(&net) else { return };
        let Some(ep) = network.endpoints.remove(&id) else { return };
        let listed = network.table.sources_of_port(id);
        network.table.remove_endpoint(id);
        for k in ep.mac_keys(network.parent.ifindex) {
            self.bpf.del_mac(k);
        }
        let parent = network.parent.ifindex;
        let vlan = ep.info.vlan;
        let table = network.table.clone();
        self.sync_sources(parent, vlan, &listed, &table);
        for (w, h) in self.workers.iter().enumerate() {
            let _ = h.send(w, Command::RemovePort { net, id });
        }
        self.undo_iface(&ep.iface);
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
        network.table = table.clone();
        let parent = network.parent.ifindex;
        self.sync_sources(parent, vlan, &changed, &table);
        Ok(())
    }

    /// Brings the XDP `sources` map in line with `table` for the given source MACs of `vlan`.
    fn sync_sources(&self, parent: u32, vlan: u16, macs: &[MacAddr], table: &Table) {
        for &m in macs {
            let flags = table.source_listing(vlan, m).map(|nodst| if nodst { bpf::SRC_NODST } else { 0 });
            if let Err(e) = self.bpf.set_source(bpf::mac_key(parent, vlan, m), flags) {
                eprintln!("xmacvlan datapath: {e}");
            }
        }
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
        if ep.fast {
            // Down: the fast path stops and the worker counts what arrives as dst_down.
            for k in ep.mac_keys(network.parent.ifindex) {
                let _ = self.bpf.set_mac(k, ep.mac_val());
            }
        }
        for (w, h) in self.workers.iter().enumerate() {
            let _ = h.send(w, Command::SetUp { net, id, up });
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
                        // Frames the fast path took were received from the parent too.
                        let mut s = sum(&n.parent_counters);
                        for (f, b) in n.endpoints.values().map(|ep| self.fast_delta(ep)) {
                            s.rx += f;
                            s.rx_bytes += b;
                        }
                        s
                    },
                },
                endpoints: n
                    .endpoints
                    .iter()
                    .map(|(&pid, ep)| PortReport {
                        id: pid,
                        ifname: ep.iface.name.clone(),
                        mac: ep.info.mac,
                        up: ep.info.up,
                        xsk_mode: if ep.fast { "xdp-fast-path" } else { ep.xsk_mode.name() },
                        stats: {
                            let mut s = sum(&ep.counters);
                            let (f, b) = self.fast_delta(ep);
                            s.tx += f;
                            s.tx_bytes += b;
                            s
                        },
                    })
                    .collect(),
            })
            .collect();
        let workers = self.workers.iter().enumerate().map(|(i, h)| h.counters.snapshot(i, h.cpu)).collect();
        let xdp = bpf::XDP_STAT_NAMES.iter().copied().zip(self.bpf.xdp_stats()).collect();
        Report { workers, networks, xdp }
    }

    /// What the XDP fast path handed to `ep` since it was added.
    fn fast_delta(&self, ep: &EndpointRec) -> (u64, u64) {
        if !ep.fast {
            return (0, 0);
        }
        let (f, b) = self.bpf.fast_counts(ep.iface.slot);
        (f.wrapping_sub(ep.fast_base.0), b.wrapping_sub(ep.fast_base.1))
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

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}
