//! The control-plane handle, [`Datapath`]: networks (one per parent or internal anchor) and their
//! workers, XDP and tc attachment, slots, source lists, endpoint state, shutdown. Next door, the
//! same handle's other facets: `endpoint` (adding and removing endpoints) and `report` (what the
//! counters say).

pub(crate) mod endpoint;
pub(crate) mod report;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use self::endpoint::{EndpointRec, Group};
use crate::bpf::{self, Bpf, Prog, TcProg, XdpMode, MAX_QUEUES, MAX_SLOTS};
use crate::budget::chunk_for_mtu;
use crate::counters::{PortStats, SharedPortCounters, UmemCounters, WorkerCounters};
use crate::domain::{Domain, Port};
use crate::flood::FloodSocket;
use crate::frame::MacAddr;
use crate::fwd::{self, PortId, Table};
use crate::worker::{Ack, Command, Reply, Worker};
use crate::xsk::{Area, RingSizes, Umem, Xsk, XskMode};
use crate::{probe, Config, Error, FastPath, NetId, ParentSpec};

/// Ring sizes: deep for the parent's sockets (its NAPI may fill a whole scheduler slice while it
/// shares a core with the worker), shallow for endpoints (their fill ring never holds more than
/// [`budget::ENDPOINT_CAP`], and nothing is transmitted through their AF_XDP sockets).
pub(crate) const PARENT_RINGS: RingSizes = RingSizes { fill: 8192, comp: 2048, rx: 8192, tx: 2048 };
pub(crate) const PARENT_EXTRA_RINGS: RingSizes = RingSizes { fill: 8192, comp: 64, rx: 8192, tx: 0 };
pub(crate) const ENDPOINT_RINGS: RingSizes = RingSizes { fill: 512, comp: 64, rx: 512, tx: 0 };

pub(crate) struct WorkerHandle {
    commands: SyncSender<(Command, Ack)>,
    pending: Arc<AtomicUsize>,
    wake: Arc<OwnedFd>,
    pub counters: Arc<CachePadded<WorkerCounters>>,
    pub cpu: Option<usize>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub(crate) fn send(&self, id: usize, cmd: Command) -> Result<Reply, Error> {
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

pub(crate) struct Iface {
    pub ifindex: u32,
    pub name: String,
    pub slot: u32,
    pub xdp: XdpMode,
    /// Our tc program on its tcx ingress: a parent's (xmv_parent_tc), or a tc-fed endpoint's
    /// (xmv_endpoint_tc).
    pub tc: Option<TcProg>,
    /// The addresses written to `guard_ips` for its slot (a tc-fed endpoint with the IP guard):
    /// removed with the slot, which a later endpoint may get.
    pub guard_ips: Arc<[IpAddr]>,
}

pub(crate) struct Network {
    pub parent: Iface,
    pub parent_counters: Vec<SharedPortCounters>,
    pub parent_xsk_mode: XskMode,
    pub chunk: u32,
    pub groups: Vec<Option<Group>>,
    pub umem: Vec<Arc<CachePadded<UmemCounters>>>,
    pub table: Table,
    pub endpoints: BTreeMap<PortId, EndpointRec>,
    /// Kernel-side outcomes of endpoints that left: their frames were still received from the parent.
    pub fast_departed: bpf::FastCount,
    /// The tc flood fans out the parent's wire floods (every parent but an internal anchor).
    pub tc_flood: bool,
    /// The parent slot's tc flood counters when this network got it (slots are reused).
    pub flood_base: bpf::FloodCount,
    /// The parent slot's fast-path counters when this network got it: what xmv_endpoint_tc sent
    /// to the wire.
    pub parent_fast_base: bpf::FastCount,
}

/// The running datapath.
pub struct Datapath {
    pub(crate) bpf: Bpf,
    pub(crate) cfg: Config,
    pub(crate) workers: Vec<WorkerHandle>,
    pub(crate) networks: BTreeMap<NetId, Network>,
    slots: Vec<bool>,
    pub(crate) departed: PortStats,
    /// The relay pair (xmv_relay_tc on both): the tc flood hands veth endpoints their copies
    /// through it, and the workers their frames. Networks on a wire need it.
    pub(crate) relay: Option<bpf::Relay>,
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
            relay: None,
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

    pub(crate) fn alloc_slot(&mut self) -> Result<u32, Error> {
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

    pub(crate) fn free_slot(&mut self, slot: u32) {
        self.slots[slot as usize] = false;
    }

    /// Attaches the parent program and gives every worker its sockets on the parent.
    pub fn add_network(&mut self, id: NetId, parent: &ParentSpec) -> Result<(), Error> {
        if self.networks.contains_key(&id) {
            return Err(Error::Invalid(format!("network {id} exists in the datapath")));
        }
        let workers = self.workers.len();
        if !parent.internal && self.relay.is_none() {
            return Err(Error::Invalid(
                "the datapath has no relay (Datapath::set_relay) for a network on a wire".into(),
            ));
        }
        if (parent.rx_queues as usize) < workers || parent.rx_queues > MAX_QUEUES {
            return Err(Error::TooFewQueues { ifname: parent.name.clone(), queues: parent.rx_queues, workers });
        }
        let slot = self.alloc_slot()?;
        // With the tc fast path the parent program comes with the first endpoint that needs it
        // (steer_parent); the other modes steer every unicast frame with it from the start.
        let xdp = if parent.internal {
            XdpMode::None
        } else if self.cfg.fast_path == FastPath::Tc {
            if let Err(e) = self.bpf.clear_stale(parent.ifindex, &parent.name) {
                self.free_slot(slot);
                return Err(e);
            }
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
        let mut iface =
            Iface { ifindex: parent.ifindex, name: parent.name.clone(), slot, xdp, tc: None, guard_ips: Arc::from([]) };
        // The tc program fans wire floods out in every mode; in tc mode it also takes unicast.
        if !parent.internal {
            if let Err(e) = self.bpf.attach_tc(TcProg::Parent, parent.ifindex, &parent.name) {
                self.undo_iface(&iface);
                return Err(e);
            }
            iface.tc = Some(TcProg::Parent);
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
                let relay = self.relay.expect("checked in add_network");
                Some(FloodSocket::open(relay.collector, bpf::collect_mark(iface.slot))?)
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
            parent: Iface { name: iface.name.clone(), guard_ips: iface.guard_ips.clone(), ..*iface },
            parent_counters: counters,
            parent_xsk_mode: mode,
            chunk,
            groups: Vec::new(),
            umem: umem_counters,
            table,
            endpoints: BTreeMap::new(),
            fast_departed: bpf::FastCount::default(),
            tc_flood: iface.tc.is_some(),
            flood_base: self.bpf.flood_counts(iface.slot),
            parent_fast_base: self.bpf.fast_counts(iface.slot),
        })
    }

    /// Attaches the parent program to `net`'s parent unless it is there: an endpoint whose frames
    /// from the wire the tc path cannot take alone is coming (see [`EndpointRec::needs_steering`]).
    pub(crate) fn steer_parent(&mut self, net: NetId) -> Result<(), Error> {
        let Datapath { networks, bpf, .. } = self;
        let n = networks.get_mut(&net).ok_or_else(|| Error::Invalid(format!("no network {net}")))?;
        // An internal anchor receives nothing: its endpoints need no steering from it.
        if n.parent.tc.is_some() && n.parent.xdp == XdpMode::None {
            n.parent.xdp = bpf.attach(Prog::Parent, n.parent.ifindex, &n.parent.name)?;
        }
        Ok(())
    }

    /// With the tc fast path, detaches the parent program once no endpoint of `net` needs it: an
    /// XDP program on the parent costs every frame it receives (and takes TSO from a veth's peer).
    pub(crate) fn unsteer_parent_if_idle(&mut self, net: NetId) {
        let Datapath { networks, bpf, cfg, .. } = self;
        let Some(n) = networks.get_mut(&net) else { return };
        let parent_mtu = n.table.port(fwd::PARENT).map_or(0, |p| p.mtu);
        if cfg.fast_path != FastPath::Tc
            || n.parent.xdp == XdpMode::None
            || n.endpoints.values().any(|e| e.needs_steering(parent_mtu))
        {
            return;
        }
        bpf.detach(n.parent.ifindex, n.parent.xdp);
        n.parent.xdp = XdpMode::None;
    }

    /// Detaches XDP and clears the maps of an interface we set up.
    pub(crate) fn undo_iface(&mut self, iface: &Iface) {
        for q in 0..MAX_QUEUES {
            self.bpf.del_xsk(iface.slot, q);
        }
        self.bpf.del_slot(iface.ifindex);
        match iface.tc {
            Some(TcProg::Parent) => {
                self.bpf.detach_tc(TcProg::Parent, iface.ifindex);
                self.bpf.del_flood_list(iface.slot);
            }
            Some(TcProg::Endpoint) => {
                self.bpf.leave_block(iface.ifindex);
                self.bpf.del_ep_port(iface.ifindex);
                self.bpf.del_guard_ips(iface.slot, &iface.guard_ips);
            }
            Some(p) => self.bpf.detach_tc(p, iface.ifindex),
            None => {}
        }
        self.bpf.detach(iface.ifindex, iface.xdp);
        self.free_slot(iface.slot);
    }

    /// Sets the relay pair: two interfaces of the caller's own (the daemon's veth pair
    /// xmacvlan0/xmacvlan1) that nothing else uses, up, with an MTU no frame exceeds.
    /// xmv_relay_tc goes on the tcx ingress of both. Needed before a network on a wire is added.
    pub fn set_relay(&mut self, relay: (u32, &str), collector: (u32, &str)) -> Result<(), Error> {
        self.bpf.attach_tc(TcProg::Relay, relay.0, relay.1)?;
        if let Err(e) = self.bpf.attach_tc(TcProg::Relay, collector.0, collector.1) {
            self.bpf.detach_tc(TcProg::Relay, relay.0);
            return Err(e);
        }
        self.relay = Some(bpf::Relay { relay: relay.0, collector: collector.0 });
        Ok(())
    }

    pub fn relay(&self) -> Option<bpf::Relay> {
        self.relay
    }

    /// Forgets the relay pair once no network on a wire is left (None otherwise); the caller
    /// deletes the pair, and the tc programs on it with it.
    pub fn clear_relay(&mut self) -> Option<bpf::Relay> {
        if self.networks.values().any(|n| n.parent.tc.is_some()) {
            return None;
        }
        self.relay.take()
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
            let parent_ifindex = network.parent.ifindex;
            let _ = self.set_steering(&self.networks[&net].endpoints[&id], parent_ifindex);
        }
        for (w, h) in self.workers.iter().enumerate() {
            let _ = h.send(w, Command::SetUp { net, id, up });
        }
        if let Err(e) = self.sync_floods(net) {
            eprintln!("xmacvlan datapath: {e}");
        }
    }

    /// Whether endpoint `id`'s container may keep its transmit offloads (checksum, TSO): its frames
    /// go through xmv_endpoint_tc, which hands the kernel's skbs on as they are, and the frames it
    /// leaves to the workers get their checksums completed on the way (flood.rs). Otherwise they
    /// reach AF_XDP as bytes and the container must finish its checksums itself.
    pub fn keeps_offloads(&self, net: NetId, id: PortId) -> bool {
        self.networks
            .get(&net)
            .and_then(|n| n.endpoints.get(&id))
            .is_some_and(|ep| ep.iface.tc == Some(TcProg::Endpoint))
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
        // The parent program is there from the start, except with the tc fast path, which
        // attaches it while an endpoint needs it; an internal anchor has neither program.
        let attached = self.bpf.attached_id(n.parent.ifindex, n.parent.xdp);
        let steered = n.parent.xdp != XdpMode::None;
        if (steered && attached != self.bpf.prog_id(Prog::Parent)) || (!steered && n.parent.tc.is_none()) {
            return Err(Error::Invalid(format!(
                "xmacvlan's XDP program is no longer attached to {} (attached: program id {attached})",
                n.parent.name
            )));
        }
        if n.parent.tc.is_some() && !self.bpf.tc_attached(TcProg::Parent, n.parent.ifindex) {
            return Err(Error::Invalid(format!("xmacvlan's tc program is no longer attached to {}", n.parent.name)));
        }
        probe::run(self.bpf.prog(Prog::Parent), n.parent.ifindex, info.mac, vlan, ns, ifname, Duration::from_secs(1))
    }

    pub fn xdp_mode(&self, net: NetId) -> Option<&'static str> {
        self.networks.get(&net).map(|n| n.parent.xdp.name())
    }

    /// Stops the workers and detaches every XDP program we attached.
    pub fn shutdown(&mut self) {
        let nets: Vec<NetId> = self.networks.keys().copied().collect();
        for id in nets {
            self.remove_network(id);
        }
        if let Some(r) = self.relay.take() {
            self.bpf.detach_tc(TcProg::Relay, r.relay);
            self.bpf.detach_tc(TcProg::Relay, r.collector);
        }
        for (w, h) in self.workers.iter_mut().enumerate() {
            let _ = h.send(w, Command::Stop);
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Brings the XDP `sources` map in line with `table` for the given source MACs of `vlan`.
pub(crate) fn sync_sources(bpf: &Bpf, parent: u32, vlan: u16, macs: &[MacAddr], table: &Table) {
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
