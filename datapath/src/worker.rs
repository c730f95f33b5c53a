//! A worker: one thread pinned to one core, owning queue `w` of every interface of every network.
//!
//! Per network it keeps a [`Domain`]: the sockets of the parent and of the endpoints, the frame
//! pools of their UMEMs, and a [`Plane`] that decides. A round:
//! 1. reap the parent's TX completions (only the parent transmits through AF_XDP);
//! 2. receive a batch from every socket on the **active list** — sockets that epoll reported
//!    readable and that have not been drained since — decide, stage; top up their fill rings;
//! 3. the flood socket, when readable;
//! 4. flush: the parent's TX ring (one kick), and every frame for any endpoint in one `sendmmsg`.
//!
//! The cost of a round does not depend on how many endpoints exist, only on how many have
//! something to do: readiness comes from one `epoll_wait` per round (edge-triggered: the kernel
//! queues a socket when new frames land in its RX ring), not from scanning every ring. Nothing in
//! a round allocates, locks, or makes a syscall per frame. When idle for a while the worker sleeps
//! in `epoll_wait`, woken by traffic or by the eventfd the control plane rings.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::budget::{self, Reserve, FLOOR, PARENT_FILL};
use crate::counters::{SharedPortCounters, UmemCounters, UmemStats, WorkerCounters};
use crate::flood::{FloodSocket, Received};
use crate::fwd::{DropReason, PortId, PortInfo, Table, PARENT};
use crate::plane::{FrameAddr, Plane};
use crate::pool::Pool;
use crate::txbatch::{Message, PacketTx};
use crate::xsk::{Area, XdpDesc, Xsk};
use crate::NetId;

/// Descriptors taken from one RX ring per round.
pub const BATCH: u32 = 64;
/// Empty rounds spun before sleeping. Short: when the worker shares its core with the parent's
/// NAPI thread (2-core machines), every round it spins is a round NAPI cannot fill the ring.
const SPIN_ROUNDS: u32 = 64;
/// Sleep while idle; short while transmitted frames still await completion (completions do not
/// wake epoll), so frames lent to the TX ring never stall.
const SLEEP_MS: i32 = 100;
const SLEEP_TX_PENDING_MS: i32 = 1;
/// Endpoint messages staged before the round sends them early (bounded memory for big floods).
const FLUSH_AT: usize = 1024;
const COMPLETE_BATCH: u32 = 1024;
/// How often kernel counters are read and fill reserves adjusted.
const EPOCH: Duration = Duration::from_millis(500);
/// Rounds between retries of sockets whose fill ring is below its floor for want of frames.
const SHORT_RETRY: u32 = 16;

/// Epoll tokens: (network << 32) | (port << 16) | socket index; these two are special.
const WAKE_TOKEN: u64 = u64::MAX;
const FLOOD_PORT: u64 = 0xffff;

fn token(net: NetId, port: PortId, sock: usize) -> u64 {
    (u64::from(net) << 32) | (u64::from(port) << 16) | sock as u64
}

/// A message from the control plane; each is acknowledged once applied.
pub(crate) enum Command {
    AddDomain(Box<Domain>),
    /// Stop serving a network; its sockets come back in [`Reply::Domain`] for the control plane
    /// to close.
    RemoveDomain(NetId),
    /// `pool`: a UMEM this worker has no pool for yet (a new endpoint group).
    AddPort {
        net: NetId,
        id: PortId,
        info: PortInfo,
        port: Box<Port>,
        pool: Option<(u16, Arc<Area>)>,
    },
    /// Stop serving a port; its sockets come back in [`Reply::Port`]. Its frames stay lent to the
    /// kernel until [`Command::Reclaim`], sent once those sockets are closed.
    RemovePort {
        net: NetId,
        id: PortId,
    },
    /// The port's sockets are closed: take its frames back; `drop_umem` when it was the UMEM's
    /// last user on this worker.
    Reclaim {
        net: NetId,
        id: PortId,
        umem: u16,
        drop_umem: bool,
    },
    SetUp {
        net: NetId,
        id: PortId,
        up: bool,
    },
    SetSources {
        net: NetId,
        id: PortId,
        macs: Vec<crate::frame::MacAddr>,
    },
    Stop,
}

/// What a command hands back. Sockets come back to the control plane's thread, which closes them
/// (closing waits for an RCU grace period: not in the worker's loop).
pub(crate) enum Reply {
    Done,
    #[allow(dead_code)] // held only to be dropped there
    Port(Box<Port>),
    #[allow(dead_code)] // held only to be dropped there
    Domain(Box<Domain>),
}

pub(crate) type Ack = SyncSender<Result<Reply, String>>;

/// One AF_XDP socket and what the worker knows about it.
pub(crate) struct Sock {
    pub xsk: Xsk,
    /// Frames lent to the kernel for this socket (fill ring, RX ring, the kernel's cache).
    held: u32,
    /// On the domain's active list.
    active: bool,
    /// The kernel's counters at the last look: rx_dropped, rx_ring_full, fill-ring-empty.
    seen: (u64, u64, u64),
}

impl Sock {
    fn new(xsk: Xsk) -> Self {
        Sock { xsk, held: 0, active: false, seen: (0, 0, 0) }
    }
}

/// A port on this worker: its sockets (parent: one per receive queue it owns; endpoint: one, or
/// none for a single-queue tap on workers other than 0), the UMEM they use, its counters.
pub(crate) struct Port {
    pub socks: Vec<Sock>,
    pub umem: u16,
    pub ifindex: u32,
    pub counters: SharedPortCounters,
    reserve: Reserve,
    parent: bool,
    /// On the domain's list of sockets below their floor.
    short: bool,
}

impl Port {
    pub fn parent(socks: Vec<Xsk>, ifindex: u32, counters: SharedPortCounters) -> Self {
        let socks = socks.into_iter().map(Sock::new).collect();
        Port { socks, umem: 0, ifindex, counters, reserve: Reserve::default(), parent: true, short: false }
    }

    pub fn endpoint(sock: Option<Xsk>, umem: u16, ifindex: u32, counters: SharedPortCounters) -> Self {
        let socks = sock.into_iter().map(Sock::new).collect();
        Port { socks, umem, ifindex, counters, reserve: Reserve::default(), parent: false, short: false }
    }

    fn floor(&self) -> u32 {
        if self.parent {
            0
        } else {
            FLOOR
        }
    }
}

/// Moves a socket's `held` and keeps the UMEM's floor deficit (Σ of members' shortfall below
/// their floor) in step.
fn set_held(sock: &mut Sock, floor: u32, deficit: &mut u32, held: u32) {
    *deficit = *deficit + floor.saturating_sub(held) - floor.saturating_sub(sock.held);
    sock.held = held;
}

/// The state of one network on one worker.
pub(crate) struct Domain {
    pub net: NetId,
    // Sockets first: they close before the UMEM areas the pools in `plane` map are unmapped.
    ports: Vec<Option<Port>>,
    flood: Option<FloodSocket>,
    plane: Plane,
    /// By PortId: where `sendmmsg` addresses the port's frames.
    ifindex: Vec<u32>,
    /// By UMEM id: frames owed to floors — members' shortfall below their floor, and a whole
    /// floor for every vacant place of an endpoint group (so early members cannot grow into the
    /// floors of later ones).
    deficit: Vec<u32>,
    /// Sockets with frames waiting in their RX ring: (port, socket index).
    active: Vec<(PortId, u16)>,
    /// Ports with a socket below its floor (or the parent below half its fill) for want of frames.
    short: Vec<PortId>,
    flood_active: bool,
    flood_frames: Vec<u64>,
    flood_rx: Vec<Received>,
    /// Frames in the parent's TX ring awaiting completion.
    parent_tx_out: u32,
    round: u32,
    umem: Arc<CachePadded<UmemCounters>>,
    scratch: Vec<u64>,
    descs: Vec<XdpDesc>,
}

impl Domain {
    /// A network served through `parent`'s sockets, which use (and the first of which registered)
    /// the UMEM `area0`; `flood` lands in its reserved area.
    pub fn new(
        net: NetId,
        table: Table,
        parent: Port,
        area0: Arc<Area>,
        flood: Option<FloodSocket>,
        umem: Arc<CachePadded<UmemCounters>>,
    ) -> Self {
        let mut plane = Plane::new(table);
        let reserved = if flood.is_some() { budget::FLOOD_FRAMES } else { 0 };
        plane.set_pool(0, Some(Pool::new(area0, reserved)));
        plane.set_counters(PARENT, Some(parent.counters.clone()));
        let mut d = Domain {
            net,
            ports: Vec::new(),
            flood,
            plane,
            ifindex: vec![parent.ifindex],
            deficit: vec![0],
            active: Vec::with_capacity(64),
            short: Vec::new(),
            flood_active: true,
            flood_frames: Vec::with_capacity(crate::flood::BATCH),
            flood_rx: Vec::with_capacity(crate::flood::BATCH),
            parent_tx_out: 0,
            round: 0,
            umem,
            scratch: Vec::with_capacity(budget::PARENT_FILL as usize),
            descs: Vec::with_capacity(BATCH as usize),
        };
        d.install(PARENT, parent);
        d
    }

    /// Puts a port in place: its sockets on the active list (frames may be waiting already) and
    /// their fill rings topped up.
    fn install(&mut self, id: PortId, port: Port) {
        let idx = usize::from(id);
        if self.ports.len() <= idx {
            self.ports.resize_with(idx + 1, || None);
            self.ifindex.resize(idx + 1, 0);
        }
        if self.deficit.len() <= usize::from(port.umem) {
            self.deficit.resize(usize::from(port.umem) + 1, 0);
        }
        self.ifindex[idx] = port.ifindex;
        self.plane.set_counters(id, Some(port.counters.clone()));
        // A new member takes a vacant place, whose floor was owed already.
        let n = port.socks.len();
        self.ports[idx] = Some(port);
        for s in 0..n {
            self.activate(id, s);
            self.refill(id, s, false);
        }
    }

    fn activate(&mut self, id: PortId, s: usize) {
        if let Some(Some(port)) = self.ports.get_mut(usize::from(id)) {
            if let Some(sock) = port.socks.get_mut(s) {
                if !sock.active && sock.xsk.rx.is_some() {
                    sock.active = true;
                    self.active.push((id, s as u16));
                }
            }
        }
    }

    fn add_port(
        &mut self,
        id: PortId,
        info: PortInfo,
        port: Port,
        pool: Option<(u16, Arc<Area>)>,
    ) -> Result<(), String> {
        self.plane.table.add_endpoint(id, info).map_err(|e| e.to_string())?;
        if let Some((umem, area)) = pool {
            self.plane.set_pool(umem, Some(Pool::new(area, 0)));
            if self.deficit.len() <= usize::from(umem) {
                self.deficit.resize(usize::from(umem) + 1, 0);
            }
            self.deficit[usize::from(umem)] = budget::GROUP_SIZE * FLOOR;
        }
        self.install(id, port);
        Ok(())
    }

    /// Takes a port out of service and returns it (its sockets still open, its frames still lent).
    fn remove_port(&mut self, id: PortId) -> Option<Port> {
        self.plane.table.remove_endpoint(id);
        let mut port = self.ports.get_mut(usize::from(id))?.take()?;
        self.active.retain(|&(p, _)| p != id);
        self.short.retain(|&p| p != id);
        let floor = port.floor();
        let deficit = &mut self.deficit[usize::from(port.umem)];
        for sock in &mut port.socks {
            // Its place is vacant again and owed a whole floor (its lent frames come back with
            // Reclaim).
            *deficit += floor - floor.saturating_sub(sock.held);
            sock.held = 0;
        }
        self.plane.set_counters(id, None);
        self.ifindex[usize::from(id)] = 0;
        Some(port)
    }

    fn reclaim(&mut self, id: PortId, umem: u16, drop_umem: bool) {
        if let Some(Some(pool)) = self.plane.pools.get_mut(usize::from(umem)) {
            pool.reclaim(id);
            if drop_umem {
                debug_assert_eq!(pool.counts().taken, 0);
                self.plane.set_pool(umem, None);
                self.deficit[usize::from(umem)] = 0;
            }
        }
        self.publish();
    }

    /// One round (see the module doc). Returns how many frames it received.
    fn poll(&mut self, wc: &WorkerCounters, tx: &mut PacketTx) -> u32 {
        self.round = self.round.wrapping_add(1);
        if self.parent_tx_out > 0 {
            self.reap();
        }
        let mut work = 0;
        let mut i = 0;
        while i < self.active.len() {
            let (id, s) = self.active[i];
            let (got, drained) = self.receive(id, usize::from(s), wc, tx);
            work += got;
            if drained {
                if let Some(Some(port)) = self.ports.get_mut(usize::from(id)) {
                    port.socks[usize::from(s)].active = false;
                }
                self.active.swap_remove(i);
            } else {
                i += 1;
            }
        }
        if self.flood_active {
            work += self.receive_floods(wc, tx);
        }
        self.flush(wc, tx);
        if !self.short.is_empty() && self.round % SHORT_RETRY == 0 {
            self.retry_short();
        }
        work
    }

    /// Receives a batch from one socket. Returns (frames, whether its RX ring is now empty).
    fn receive(&mut self, id: PortId, s: usize, wc: &WorkerCounters, tx: &mut PacketTx) -> (u32, bool) {
        let Some(Some(port)) = self.ports.get_mut(usize::from(id)) else { return (0, true) };
        let floor = port.floor();
        let umem = port.umem;
        let Some(sock) = port.socks.get_mut(s) else { return (0, true) };
        let Some(rx) = sock.xsk.rx.as_mut() else { return (0, true) };
        self.descs.clear();
        let descs = &mut self.descs;
        let n = rx.consume(BATCH, |d| descs.push(d));
        // A fresh look at the producer index once the cached view is empty: frames published
        // after it come with a new epoll event.
        let drained = rx.available(1) == 0;
        if n == 0 {
            return (0, drained);
        }
        set_held(sock, floor, &mut self.deficit[usize::from(umem)], sock.held - n);
        port.reserve.used += n;
        for k in 0..self.descs.len() {
            let d = self.descs[k];
            self.plane.pool(usize::from(umem)).receive(d.addr, id);
            self.plane.handle(FrameAddr::new(umem, d.addr), d.len, id, wc);
            if self.plane.to_endpoints.len() >= FLUSH_AT {
                self.flush(wc, tx);
            }
        }
        self.refill(id, s, true);
        (n, drained)
    }

    /// Tops up one socket's fill ring as far as its reserve and the pool allow. `after_rx`: the
    /// socket just gave frames back (the reserve learns from how low it ran).
    fn refill(&mut self, id: PortId, s: usize, after_rx: bool) {
        let Some(Some(port)) = self.ports.get_mut(usize::from(id)) else { return };
        let umem = usize::from(port.umem);
        let floor = port.floor();
        let Some(pool) = self.plane.pools.get_mut(umem).and_then(Option::as_mut) else { return };
        let sock = &mut port.socks[s];
        let deficit = &mut self.deficit[umem];
        let (grant, satisfied_at) = if port.parent {
            (budget::parent_grant(sock.held, PARENT_FILL, pool.free_frames()), PARENT_FILL / 2)
        } else {
            if after_rx {
                port.reserve.on_refill(sock.held);
            }
            (port.reserve.grant(sock.held, pool.free_frames(), *deficit), floor)
        };
        if grant > 0 {
            pool.lend(id, grant, &mut self.scratch);
            let n = sock.xsk.fill.produce(&self.scratch) as usize;
            if n < self.scratch.len() {
                pool.unlend(id, &self.scratch[n..]);
            }
            set_held(sock, floor, deficit, sock.held + n as u32);
            if n > 0 && sock.xsk.fill.needs_wakeup() {
                sock.xsk.wake_fill();
            }
        }
        if sock.held < satisfied_at && !port.short {
            port.short = true;
            self.short.push(id);
        }
    }

    fn retry_short(&mut self) {
        let short = std::mem::take(&mut self.short);
        for &id in &short {
            let Some(Some(port)) = self.ports.get_mut(usize::from(id)) else { continue };
            port.short = false;
            for s in 0..port.socks.len() {
                self.refill(id, s, false);
            }
        }
        // `refill` re-listed those still short.
        let mut short = short;
        short.clear();
        if self.short.is_empty() {
            self.short = short;
        }
    }

    /// Frees the frames whose transmission on the parent completed.
    fn reap(&mut self) {
        let Some(Some(parent)) = self.ports.get_mut(usize::from(PARENT)) else { return };
        let Some(pool) = self.plane.pools.get_mut(0).and_then(Option::as_mut) else { return };
        let n = parent.socks[0].xsk.comp.consume(COMPLETE_BATCH, |addr| {
            pool.unref(addr);
        });
        self.parent_tx_out -= n;
    }

    /// Receives a batch from the flood socket into the reserved area of UMEM 0 and handles it.
    fn receive_floods(&mut self, wc: &WorkerCounters, tx: &mut PacketTx) -> u32 {
        let Some(fs) = self.flood.as_mut() else {
            self.flood_active = false;
            return 0;
        };
        let pool = self.plane.pool(0);
        self.flood_frames.clear();
        while self.flood_frames.len() < crate::flood::BATCH {
            match pool.alloc_reserved() {
                Some(f) => self.flood_frames.push(f),
                None => break,
            }
        }
        let (base, chunk) = (pool.area().base(), pool.area().chunk() as usize);
        self.flood_rx.clear();
        // SAFETY: the frames were just taken from the reserved area, so nobody else uses them.
        let n = unsafe { fs.recv(base, chunk, &self.flood_frames, &mut self.flood_rx) };
        if n < self.flood_frames.len() {
            self.flood_active = false;
        }
        for &f in &self.flood_frames[n..] {
            self.plane.pool(0).unref(f);
        }
        for k in 0..self.flood_rx.len() {
            let r = self.flood_rx[k];
            let addr = FrameAddr::new(0, r.offset);
            if r.truncated {
                // Larger than a UMEM chunk: counted, never forwarded cut short.
                self.plane.count_rx(PARENT, r.len, wc);
                self.plane.count_drop(PARENT, DropReason::Oversize, wc);
                self.plane.unref(addr);
                continue;
            }
            self.plane.handle(addr, r.len, PARENT, wc);
            if self.plane.to_endpoints.len() >= FLUSH_AT {
                self.flush(wc, tx);
            }
        }
        n as u32
    }

    /// Sends what the round staged: the parent's TX ring (one kick) and one `sendmmsg` for every
    /// endpoint.
    fn flush(&mut self, wc: &WorkerCounters, tx: &mut PacketTx) {
        let plane = &mut self.plane;
        if !plane.to_parent.is_empty() {
            let ring = self.ports.first_mut().and_then(Option::as_mut).and_then(|p| p.socks.first_mut());
            let sent = match ring {
                Some(sock) => match sock.xsk.tx.as_mut() {
                    Some(ring) => {
                        let n = ring.produce(&plane.to_parent);
                        if n > 0 && ring.needs_wakeup() {
                            sock.xsk.kick_tx();
                            wc.tx_kicks.add(1);
                        }
                        n as usize
                    }
                    None => 0,
                },
                None => 0,
            };
            self.parent_tx_out += sent as u32;
            if let Some(Some(c)) = plane.counters.first() {
                c.tx.add(sent as u64);
                c.tx_bytes.add(plane.to_parent[..sent].iter().map(|d| u64::from(d.len)).sum());
            }
            wc.tx_frames.add(sent as u64);
            for k in sent..plane.to_parent.len() {
                let d = plane.to_parent[k];
                plane.count_drop(PARENT, DropReason::TxRingFull, wc);
                plane.unref(FrameAddr::new(0, d.addr));
            }
            plane.to_parent.clear();
        }
        if !plane.to_endpoints.is_empty() {
            let ifindex = &self.ifindex;
            let msgs = plane.to_endpoints.iter().map(|s| Message {
                ifindex: ifindex[usize::from(s.port)],
                data: plane.ptr(s.addr),
                len: s.len,
            });
            // SAFETY: staged frames are held (a reference each) until released below.
            let results = unsafe { tx.send(msgs) };
            for (k, &r) in results.iter().enumerate() {
                let s = plane.to_endpoints[k];
                if r == 0 {
                    if let Some(Some(c)) = plane.counters.get(usize::from(s.port)) {
                        c.tx.add(1);
                        c.tx_bytes.add(u64::from(s.len));
                    }
                    wc.tx_frames.add(1);
                } else {
                    let reason = match r {
                        libc::ENETDOWN | libc::ENXIO | libc::ENODEV => DropReason::DstDown,
                        libc::EMSGSIZE => DropReason::Oversize,
                        libc::EAGAIN | libc::ENOBUFS => DropReason::TxRingFull,
                        _ => DropReason::TxError,
                    };
                    plane.count_drop(s.port, reason, wc);
                }
                plane.unref(s.addr);
            }
            plane.to_endpoints.clear();
        }
    }

    /// Reads the kernel's per-socket counters into the ports' books (frames it dropped before we
    /// saw them are received-and-dropped under a named reason), lets reserves learn, and
    /// publishes the UMEM census. A syscall per socket: once per epoch.
    fn refresh(&mut self, wc: &WorkerCounters) {
        for port in self.ports.iter_mut().flatten() {
            let c = &port.counters;
            for sock in &mut port.socks {
                let Some(st) = sock.xsk.statistics() else { continue };
                let dropped = st.rx_dropped.wrapping_sub(sock.seen.0);
                let full = st.rx_ring_full.wrapping_sub(sock.seen.1);
                let empty = st.rx_fill_ring_empty_descs.wrapping_sub(sock.seen.2);
                sock.seen = (st.rx_dropped, st.rx_ring_full, st.rx_fill_ring_empty_descs);
                c.rx.add(dropped + full);
                c.drops[DropReason::XskRxDropped as usize].add(dropped);
                c.drops[DropReason::XskRxRingFull as usize].add(full);
                c.xsk_fill_empty.add(empty);
                wc.rx_frames.add(dropped + full);
                wc.dropped.add(dropped + full);
            }
            if !port.parent {
                port.reserve.on_epoch();
            }
        }
        if let (Some(fs), Some(Some(c))) = (&self.flood, self.plane.counters.first()) {
            let lost = fs.take_drops();
            c.rx.add(lost);
            c.drops[DropReason::SocketFull as usize].add(lost);
            wc.rx_frames.add(lost);
            wc.dropped.add(lost);
        }
        self.publish();
    }

    /// Publishes what this domain's frames are doing (for `stats`).
    fn publish(&self) {
        let mut s = UmemStats::default();
        for pool in self.plane.pools.iter().flatten() {
            let c = pool.counts();
            s.frames += u64::from(c.frames);
            s.free += u64::from(c.free);
            s.flood += u64::from(c.reserved);
            s.in_flight += u64::from(c.taken);
            s.endpoints += u64::from(c.lent);
            s.umems += 1;
            s.bytes += pool.area().bytes() as u64;
        }
        let parent = self.plane.pools.first().and_then(Option::as_ref).map_or(0, |p| p.lent_to(PARENT));
        s.parent = u64::from(parent);
        s.endpoints -= u64::from(parent);
        self.umem.set(&s);
    }

    fn fds(&self) -> impl Iterator<Item = (RawFd, u64)> + '_ {
        let net = self.net;
        let socks = self.ports.iter().enumerate().flat_map(move |(id, p)| {
            p.iter().flat_map(move |p| {
                p.socks.iter().enumerate().map(move |(s, sock)| (sock.xsk.raw_fd(), token(net, id as PortId, s)))
            })
        });
        socks.chain(self.flood.iter().map(move |f| (f.raw_fd(), (u64::from(net) << 32) | (FLOOD_PORT << 16))))
    }
}

pub(crate) struct Worker {
    pub id: usize,
    pub cpu: Option<usize>,
    pub counters: Arc<CachePadded<WorkerCounters>>,
    pub commands: Receiver<(Command, Ack)>,
    pub pending: Arc<AtomicUsize>,
    pub wake: Arc<OwnedFd>,
    /// Scheduling niceness of the worker thread (see [`crate::Config::nice`]).
    pub nice: i32,
    domains: Vec<Domain>,
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
    tx: PacketTx,
}

impl Worker {
    pub fn new(
        id: usize,
        cpu: Option<usize>,
        counters: Arc<CachePadded<WorkerCounters>>,
        commands: Receiver<(Command, Ack)>,
        pending: Arc<AtomicUsize>,
        wake: Arc<OwnedFd>,
        nice: i32,
    ) -> Result<Self, crate::Error> {
        // SAFETY: plain epoll_create1; checked below and owned.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(crate::Error::Sys { call: "epoll_create1", cause: std::io::Error::last_os_error() });
        }
        // SAFETY: a fresh fd we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        let tx = PacketTx::open().map_err(|cause| crate::Error::Sys { call: "packet socket for transmit", cause })?;
        let w = Worker {
            id,
            cpu,
            counters,
            commands,
            pending,
            wake,
            nice,
            domains: Vec::new(),
            epoll,
            // SAFETY: epoll_event is plain data.
            events: vec![unsafe { std::mem::zeroed() }; 256],
            tx,
        };
        w.watch(w.wake.as_raw_fd(), WAKE_TOKEN)
            .map_err(|cause| crate::Error::Sys { call: "epoll_ctl (eventfd)", cause })?;
        Ok(w)
    }

    fn watch(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: token };
        // SAFETY: registers a live fd with our epoll instance; `ev` is a valid epoll_event.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn unwatch(&self, fd: RawFd) {
        // SAFETY: deregisters an fd (still open: the caller holds it); errors mean not registered.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    fn watch_domain(&self, d: &Domain) -> Result<(), String> {
        for (fd, t) in d.fds() {
            self.watch(fd, t).map_err(|e| format!("epoll_ctl: {e}"))?;
        }
        Ok(())
    }

    pub fn run(mut self) {
        if let Some(cpu) = self.cpu {
            core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        }
        if self.nice != 0 {
            // SAFETY: setpriority on this thread's own id (Linux: PRIO_PROCESS with a tid is per
            // thread); failure only leaves the default priority.
            unsafe {
                let tid = libc::gettid();
                if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, self.nice) != 0 {
                    eprintln!(
                        "xmv-worker-{}: setpriority({}) failed: {}",
                        self.id,
                        self.nice,
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
        let mut idle = 0u32;
        let mut last_epoch = Instant::now();
        loop {
            if self.pending.load(Ordering::Acquire) > 0 && !self.apply_commands() {
                return;
            }
            self.harvest(0);
            let mut work = 0;
            for d in &mut self.domains {
                work += d.poll(&self.counters, &mut self.tx);
            }
            if work > 0 {
                self.counters.busy_loops.add(1);
                idle = 0;
                if self.counters.busy_loops.get() & 0x3ff == 0 {
                    self.maybe_refresh(&mut last_epoch);
                }
                continue;
            }
            idle += 1;
            if idle < SPIN_ROUNDS {
                std::hint::spin_loop();
                continue;
            }
            idle = 0;
            self.maybe_refresh(&mut last_epoch);
            self.counters.idle_sleeps.add(1);
            let pending = self.domains.iter().any(|d| d.parent_tx_out > 0 || !d.short.is_empty());
            self.harvest(if pending { SLEEP_TX_PENDING_MS } else { SLEEP_MS });
        }
    }

    /// Waits up to `timeout_ms` for readiness and puts every readable socket on its domain's
    /// active list.
    fn harvest(&mut self, timeout_ms: i32) {
        // SAFETY: `events` is a live, writable array of the length given.
        let n = unsafe {
            libc::epoll_wait(self.epoll.as_raw_fd(), self.events.as_mut_ptr(), self.events.len() as i32, timeout_ms)
        };
        for k in 0..n.max(0) as usize {
            let t = self.events[k].u64;
            if t == WAKE_TOKEN {
                self.drain_wake();
                continue;
            }
            let (net, port, sock) = ((t >> 32) as NetId, (t >> 16) & 0xffff, (t & 0xffff) as usize);
            let Some(d) = self.domains.iter_mut().find(|d| d.net == net) else { continue };
            if port == FLOOD_PORT {
                d.flood_active = true;
            } else {
                d.activate(port as PortId, sock);
            }
        }
    }

    fn maybe_refresh(&mut self, last: &mut Instant) {
        if last.elapsed() >= EPOCH {
            *last = Instant::now();
            for d in &mut self.domains {
                d.refresh(&self.counters);
            }
        }
    }

    fn drain_wake(&self) {
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a u64 from a non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
    }

    /// Applies queued commands; false when told to stop.
    fn apply_commands(&mut self) -> bool {
        while let Ok((cmd, ack)) = self.commands.try_recv() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            let result = match cmd {
                Command::Stop => {
                    let _ = ack.send(Ok(Reply::Done));
                    return false;
                }
                Command::AddDomain(d) => match self.watch_domain(&d) {
                    Ok(()) => {
                        d.publish();
                        self.domains.push(*d);
                        Ok(Reply::Done)
                    }
                    Err(e) => {
                        for (fd, _) in d.fds() {
                            self.unwatch(fd);
                        }
                        Err(e)
                    }
                },
                Command::RemoveDomain(net) => match self.domains.iter().position(|d| d.net == net) {
                    Some(i) => {
                        let d = self.domains.swap_remove(i);
                        for (fd, _) in d.fds() {
                            self.unwatch(fd);
                        }
                        Ok(Reply::Domain(Box::new(d)))
                    }
                    None => Ok(Reply::Done),
                },
                Command::AddPort { net, id, info, port, pool } => {
                    let tokens: Vec<(RawFd, u64)> =
                        port.socks.iter().enumerate().map(|(s, k)| (k.xsk.raw_fd(), token(net, id, s))).collect();
                    match self.domains.iter_mut().find(|d| d.net == net) {
                        Some(d) => match d.add_port(id, info, *port, pool) {
                            Ok(()) => {
                                let watched = tokens.iter().try_for_each(|&(fd, t)| self.watch(fd, t));
                                match watched {
                                    Ok(()) => Ok(Reply::Done),
                                    Err(e) => {
                                        for &(fd, _) in &tokens {
                                            self.unwatch(fd);
                                        }
                                        // Hand the sockets back; the control plane undoes the rest.
                                        let d = self.domains.iter_mut().find(|d| d.net == net).expect("just used");
                                        let _ = d.remove_port(id);
                                        Err(format!("epoll_ctl: {e}"))
                                    }
                                }
                            }
                            Err(e) => Err(e),
                        },
                        None => Err(format!("worker {} has no network {net}", self.id)),
                    }
                }
                Command::RemovePort { net, id } => {
                    let port = self.domains.iter_mut().find(|d| d.net == net).and_then(|d| d.remove_port(id));
                    match port {
                        Some(p) => {
                            for sock in &p.socks {
                                self.unwatch(sock.xsk.raw_fd());
                            }
                            Ok(Reply::Port(Box::new(p)))
                        }
                        None => Ok(Reply::Done),
                    }
                }
                Command::Reclaim { net, id, umem, drop_umem } => {
                    if let Some(d) = self.domains.iter_mut().find(|d| d.net == net) {
                        d.reclaim(id, umem, drop_umem);
                    }
                    Ok(Reply::Done)
                }
                Command::SetUp { net, id, up } => {
                    if let Some(d) = self.domains.iter_mut().find(|d| d.net == net) {
                        d.plane.table.set_up(id, up);
                    }
                    Ok(Reply::Done)
                }
                Command::SetSources { net, id, macs } => match self.domains.iter_mut().find(|d| d.net == net) {
                    Some(d) => d.plane.table.set_sources(id, &macs).map(|_| Reply::Done).map_err(|e| e.to_string()),
                    None => Err(format!("worker {} has no network {net}", self.id)),
                },
            };
            let _ = ack.send(result);
        }
        true
    }
}
