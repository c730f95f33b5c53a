//! One network on one worker: its ports' sockets, the pools of its UMEMs, the plane that decides,
//! and one round of work over the sockets on its active list (see worker.rs for the loop around
//! it). Fill rings are topped up per the budget (budget.rs); frames for endpoints leave through the
//! worker's packet socket (txbatch.rs), frames for the wire through the parent's TX ring.

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

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
/// Endpoint messages staged before the round sends them early (bounded memory for big floods).
const FLUSH_AT: usize = 1024;
const COMPLETE_BATCH: u32 = 1024;
/// Rounds between retries of sockets whose fill ring is below its floor for want of frames.
const SHORT_RETRY: u32 = 16;

/// Epoll tokens: (network << 32) | (port << 16) | socket index; the flood socket's port is this.
pub(crate) const FLOOD_PORT: u64 = 0xffff;

pub(crate) fn token(net: NetId, port: PortId, sock: usize) -> u64 {
    (u64::from(net) << 32) | (u64::from(port) << 16) | sock as u64
}

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
    /// Its datapath slot (an endpoint's: how a container frame collected for the workers names it).
    slot: u32,
    pub counters: SharedPortCounters,
    reserve: Reserve,
    parent: bool,
    /// On the domain's list of sockets below their floor.
    short: bool,
}

impl Port {
    pub fn parent(socks: Vec<Xsk>, ifindex: u32, counters: SharedPortCounters) -> Self {
        let socks = socks.into_iter().map(Sock::new).collect();
        Port { socks, umem: 0, ifindex, slot: 0, counters, reserve: Reserve::default(), parent: true, short: false }
    }

    pub fn endpoint(sock: Option<Xsk>, umem: u16, ifindex: u32, slot: u32, counters: SharedPortCounters) -> Self {
        let socks = sock.into_iter().map(Sock::new).collect();
        Port { socks, umem, ifindex, slot, counters, reserve: Reserve::default(), parent: false, short: false }
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
    pub(crate) plane: Plane,
    /// By PortId: where `sendmmsg` addresses the port's frames.
    ifindex: Vec<u32>,
    /// By datapath slot: the endpoint that has it (PARENT: none), for the container frames
    /// xmv_endpoint_tc collects for the workers.
    by_slot: Vec<PortId>,
    /// By UMEM id: frames owed to floors — members' shortfall below their floor, and a whole
    /// floor for every vacant place of an endpoint group (so early members cannot grow into the
    /// floors of later ones).
    deficit: Vec<u32>,
    /// Sockets with frames waiting in their RX ring: (port, socket index).
    active: Vec<(PortId, u16)>,
    /// Ports with a socket below its floor (or the parent below half its fill) for want of frames.
    pub(crate) short: Vec<PortId>,
    pub(crate) flood_active: bool,
    flood_frames: Vec<u64>,
    flood_rx: Vec<Received>,
    /// Frames in the parent's TX ring awaiting completion.
    pub(crate) parent_tx_out: u32,
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
            by_slot: Vec::new(),
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
        if !port.parent {
            let slot = port.slot as usize;
            if self.by_slot.len() <= slot {
                self.by_slot.resize(slot + 1, PARENT);
            }
            self.by_slot[slot] = id;
        }
        self.plane.set_counters(id, Some(port.counters.clone()));
        // A new member takes a vacant place, whose floor was owed already.
        let n = port.socks.len();
        self.ports[idx] = Some(port);
        for s in 0..n {
            self.activate(id, s);
            self.refill(id, s, false);
        }
    }

    pub(crate) fn activate(&mut self, id: PortId, s: usize) {
        if let Some(Some(port)) = self.ports.get_mut(usize::from(id)) {
            if let Some(sock) = port.socks.get_mut(s) {
                if !sock.active && sock.xsk.rx.is_some() {
                    sock.active = true;
                    self.active.push((id, s as u16));
                }
            }
        }
    }

    pub(crate) fn add_port(
        &mut self,
        id: PortId,
        info: PortInfo,
        addrs: Arc<[IpAddr]>,
        port: Port,
        pool: Option<(u16, Arc<Area>)>,
    ) -> Result<(), String> {
        self.plane.table.add_endpoint(id, info).map_err(|e| e.to_string())?;
        if let Err(e) = self.plane.table.set_addresses(id, addrs) {
            self.plane.table.remove_endpoint(id);
            return Err(e.to_string());
        }
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
    pub(crate) fn remove_port(&mut self, id: PortId) -> Option<Port> {
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
        if let Some(p) = self.by_slot.get_mut(port.slot as usize).filter(|p| **p == id) {
            *p = PARENT;
        }
        Some(port)
    }

    pub(crate) fn reclaim(&mut self, id: PortId, umem: u16, drop_umem: bool) {
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
    pub(crate) fn poll(&mut self, wc: &WorkerCounters, tx: &mut PacketTx) -> u32 {
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
            // A container's frame (xmv_endpoint_tc): received from its endpoint, if it is still here.
            let ingress = match r.from_slot {
                None => PARENT,
                Some(slot) => match self.by_slot.get(slot as usize) {
                    Some(&id) if id != PARENT => id,
                    _ => {
                        self.plane.count_rx(PARENT, r.len, wc);
                        self.plane.count_drop(PARENT, DropReason::NoEndpoint, wc);
                        self.plane.unref(addr);
                        continue;
                    }
                },
            };
            if r.truncated {
                // Larger than a UMEM chunk, or several frames in one (GSO): counted, never
                // forwarded cut short.
                self.plane.count_rx(ingress, r.len, wc);
                self.plane.count_drop(ingress, DropReason::Oversize, wc);
                self.plane.unref(addr);
                continue;
            }
            self.plane.handle(addr, r.len, ingress, wc);
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
    pub(crate) fn refresh(&mut self, wc: &WorkerCounters) {
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
    pub(crate) fn publish(&self) {
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

    pub(crate) fn fds(&self) -> impl Iterator<Item = (RawFd, u64)> + '_ {
        let net = self.net;
        let socks = self.ports.iter().enumerate().flat_map(move |(id, p)| {
            p.iter().flat_map(move |p| {
                p.socks.iter().enumerate().map(move |(s, sock)| (sock.xsk.raw_fd(), token(net, id as PortId, s)))
            })
        });
        socks.chain(self.flood.iter().map(move |f| (f.raw_fd(), (u64::from(net) << 32) | (FLOOD_PORT << 16))))
    }
}
