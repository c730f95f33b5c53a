//! A worker: one thread pinned to one core, owning queue `i` of every interface of every network.
//!
//! Per network it keeps a [`Domain`]: the sockets of the parent and the endpoints (sharing one
//! UMEM), its own copy of the forwarding table, a frame pool, and one TX staging batch per port.
//! The loop per domain: reap completions → for each port, receive a batch, decide per frame, stage
//! descriptors on the destination ports, flush every touched TX ring once (one kick per ring) →
//! refill fill rings. Nothing in it allocates, locks or makes a syscall per frame; when idle for a
//! while it sleeps in poll(2) on all its sockets and an eventfd the control plane rings.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use xdpilone::xdp::XdpDesc;

use crate::copytx::CopyTx;
use crate::counters::{SharedPortCounters, WorkerCounters};
use crate::flood::{FloodSocket, Received};
use crate::frame::VLAN_HLEN;
use crate::fwd::{decide, Action, DropReason, Edit, PortId, PortInfo, Table, PARENT};
use crate::xsk::{Area, XskPort, FRAME_SHIFT, FRAME_SIZE, TX_HEADROOM};
use crate::NetId;

/// Descriptors taken from one RX ring per round.
pub const BATCH: u32 = 64;
/// Empty rounds spun before sleeping in poll(2). Short: when the worker shares its core with the
/// parent's NAPI thread (2-core machines), every round it spins is a round NAPI cannot fill the ring.
const SPIN_ROUNDS: u32 = 64;
/// Sleep while idle; short while transmitted frames still await completion (completions do not
/// wake poll(2)), so a pool drained into TX rings never stalls the worker.
const SLEEP_MS: i32 = 100;
const SLEEP_TX_PENDING_MS: i32 = 1;
/// Fill-ring levels: the parent carries most traffic; endpoints get a smaller reserve each.
pub const PARENT_FILL: u32 = 6144;
pub const ENDPOINT_FILL: u32 = 512;

/// A message from the control plane; each is acknowledged once applied.
pub(crate) enum Command {
    AddDomain(Box<Domain>),
    RemoveDomain(NetId),
    AddPort {
        net: NetId,
        id: PortId,
        info: PortInfo,
        port: Box<Port>,
    },
    /// An endpoint this worker has no AF_XDP socket for (see [`crate::copytx`]).
    AddCopyPort {
        net: NetId,
        id: PortId,
        info: PortInfo,
        tx: Box<CopyTx>,
        counters: SharedPortCounters,
    },
    RemovePort {
        net: NetId,
        id: PortId,
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

pub(crate) type Ack = SyncSender<Result<(), String>>;

/// The sockets of one port and its counters. `xsk` receives and transmits; `more` are sockets on
/// further receive queues of the same interface (a parent with more queues than workers).
pub(crate) struct Port {
    pub xsk: XskPort,
    pub more: Vec<XskPort>,
    pub counters: SharedPortCounters,
    pub fill_target: u32,
    /// Frames in this port's TX ring whose completion has not been reaped yet.
    pub tx_outstanding: u64,
}

impl Port {
    fn sockets(&self) -> impl Iterator<Item = &XskPort> {
        std::iter::once(&self.xsk).chain(&self.more)
    }

    fn sockets_mut(&mut self) -> impl Iterator<Item = &mut XskPort> {
        std::iter::once(&mut self.xsk).chain(&mut self.more)
    }
}

/// Owner of every UMEM frame: free, or lent to a port (its fill ring, RX ring or TX ring).
struct FramePool {
    free: Vec<u32>,
    owner: Vec<PortId>,
}

const FREE: PortId = PortId::MAX;

impl FramePool {
    fn new(frames: u32) -> Self {
        // Reversed so that low frames are used first (a smaller working set for the caches).
        FramePool { free: (0..frames).rev().collect(), owner: vec![FREE; frames as usize] }
    }

    #[inline]
    fn alloc(&mut self) -> Option<u64> {
        self.free.pop().map(|i| u64::from(i) << FRAME_SHIFT)
    }

    /// Returns the frame holding `addr` (any address inside it) to the pool.
    #[inline]
    fn release(&mut self, addr: u64) {
        let i = (addr >> FRAME_SHIFT) as usize;
        self.owner[i] = FREE;
        self.free.push(i as u32);
    }

    #[inline]
    fn lend(&mut self, addr: u64, port: PortId) {
        self.owner[(addr >> FRAME_SHIFT) as usize] = port;
    }

    /// Takes back every frame lent to a port whose socket was just closed.
    fn reclaim(&mut self, port: PortId) {
        for (i, o) in self.owner.iter_mut().enumerate() {
            if *o == port {
                *o = FREE;
                self.free.push(i as u32);
            }
        }
    }
}

/// Everything the per-frame decision touches, apart from the rings.
struct Plane {
    table: Table,
    pool: FramePool,
    /// Indexed by PortId: staged TX descriptors and the counters of each port.
    stage: Vec<Vec<XdpDesc>>,
    counters: Vec<Option<SharedPortCounters>>,
    /// Indexed by PortId: how to reach an endpoint this worker has no AF_XDP socket for.
    copy_tx: Vec<Option<CopyTx>>,
    /// Ports with something staged, in staging order.
    dirty: Vec<PortId>,
    targets: Vec<PortId>,
    area: Arc<Area>,
}

impl Plane {
    fn ensure_port(&mut self, id: PortId) {
        let need = usize::from(id) + 1;
        if self.stage.len() < need {
            self.stage.resize_with(need, || Vec::with_capacity(BATCH as usize));
            self.counters.resize(need, None);
            self.copy_tx.resize_with(need, || None);
        }
    }

    #[inline]
    fn count_drop(&self, port: PortId, reason: DropReason, wc: &WorkerCounters) {
        if let Some(Some(c)) = self.counters.get(usize::from(port)) {
            c.dropped(reason);
        }
        wc.dropped.add(1);
    }

    #[inline]
    fn count_rx(&self, port: PortId, len: u32, wc: &WorkerCounters) {
        if let Some(Some(c)) = self.counters.get(usize::from(port)) {
            c.rx.add(1);
            c.rx_bytes.add(u64::from(len));
        }
        wc.rx_frames.add(1);
    }

    #[inline]
    fn stage_on(&mut self, port: PortId, addr: u64, len: u32) {
        let s = &mut self.stage[usize::from(port)];
        if s.is_empty() {
            self.dirty.push(port);
        }
        s.push(XdpDesc { addr, len, options: 0 });
        self.pool.lend(addr, port);
    }

    /// Decides and stages one received frame at UMEM offset `addr`.
    #[inline]
    fn handle(&mut self, addr: u64, len: u32, ingress: PortId, wc: &WorkerCounters) {
        let base = self.area.base();
        // SAFETY: the kernel (or our flood socket) wrote `len` bytes at `addr` inside the area and
        // handed the frame to us; nobody else touches it until we pass the descriptor on.
        let frame = unsafe { std::slice::from_raw_parts(base.add(addr as usize), len as usize) };
        self.count_rx(ingress, len, wc);
        let tci = tag_of(frame);
        match decide(frame, ingress, &self.table) {
            Action::Forward(port) => self.deliver(port, ingress, tci, addr, len),
            Action::Drop { reason, port } => {
                self.count_drop(port, reason, wc);
                self.pool.release(addr);
            }
            Action::Flood(flood) => {
                // Accounting: a flood with n candidate targets has n outcomes (each delivered or
                // counted as a drop) for one received frame: `flood_copies` counts the n - 1 extra
                // outcomes, `flood_empty` the floods without any candidate.
                self.targets.clear();
                let mut candidates = 0u64;
                for t in self.table.flood_targets(&flood) {
                    candidates += 1;
                    match self.table.check_delivery(t, frame.len(), usize::from(flood.hlen)) {
                        Ok(()) => self.targets.push(t),
                        Err(reason) => self.count_drop(t, reason, wc),
                    }
                }
                if candidates == 0 {
                    wc.flood_empty.add(1);
                } else {
                    wc.flood_copies.add(candidates - 1);
                }
                let Some(&last) = self.targets.last() else {
                    self.pool.release(addr);
                    return;
                };
                // Copies first, from the frame as received; the original goes to the last target
                // (its tag is edited in place, so it must be the last reader).
                for k in 0..self.targets.len() - 1 {
                    let t = self.targets[k];
                    let Some(copy) = self.pool.alloc() else {
                        self.count_drop(t, DropReason::NoBuffer, wc);
                        continue;
                    };
                    let dst = copy + TX_HEADROOM;
                    // SAFETY: `copy` is a free chunk of FRAME_SIZE bytes; TX_HEADROOM + len fits as
                    // len ≤ the receive chunk size; source and destination are different chunks.
                    unsafe {
                        std::ptr::copy_nonoverlapping(frame.as_ptr(), base.add(dst as usize), len as usize);
                    }
                    self.deliver(t, ingress, tci, dst, len);
                }
                self.deliver(last, ingress, tci, addr, len);
            }
        }
    }

    /// Stages a frame on `port` after the 802.1Q edit the way from `ingress` asks for.
    #[inline]
    fn deliver(&mut self, port: PortId, ingress: PortId, tci: Option<u16>, addr: u64, len: u32) {
        let edit = self.table.edit(tci, ingress, port);
        let (addr, len) = if edit == Edit::None { (addr, len) } else { self.apply(edit, port, addr, len) };
        self.stage_on(port, addr, len);
    }

    /// Edits the tag of the frame at `addr` in place (the payload never moves: the 12 MAC bytes
    /// do) and returns where the frame now starts and its length.
    #[inline]
    fn apply(&mut self, edit: Edit, port: PortId, mut addr: u64, len: u32) -> (u64, u32) {
        let base = self.area.base();
        let counters = self.counters.get(usize::from(port)).and_then(Option::as_ref);
        // SAFETY (all arms): the frame is `len` ≥ 14 bytes (18 when tagged: decide parsed it) at
        // `addr` in a chunk this worker owns; every access stays inside that chunk (see Push).
        unsafe {
            let p = base.add(addr as usize);
            match edit {
                Edit::None => (addr, len),
                Edit::Pop => {
                    if *p.add(14) & 0xe0 != 0 {
                        if let Some(c) = counters {
                            c.pcp_stripped.add(1);
                        }
                    }
                    std::ptr::copy(p, p.add(VLAN_HLEN), 12);
                    (addr + VLAN_HLEN as u64, len - VLAN_HLEN as u32)
                }
                Edit::PriorityTag => {
                    *p.add(14) &= 0xf0;
                    *p.add(15) = 0;
                    if let Some(c) = counters {
                        c.pcp_kept.add(1);
                    }
                    (addr, len)
                }
                Edit::SetVid(vid) => {
                    *p.add(14) = (*p.add(14) & 0xf0) | (vid >> 8) as u8;
                    *p.add(15) = vid as u8;
                    (addr, len)
                }
                Edit::Push(vid) => {
                    let mut p = p;
                    if addr & (u64::from(FRAME_SIZE) - 1) < VLAN_HLEN as u64 {
                        // No headroom (never the case for frames the kernel or we wrote, which
                        // start TX_HEADROOM into their chunk): move the frame back instead.
                        std::ptr::copy(p, p.add(VLAN_HLEN), len as usize);
                        p = p.add(VLAN_HLEN);
                        addr += VLAN_HLEN as u64;
                    }
                    let q = p.sub(VLAN_HLEN);
                    std::ptr::copy(p, q, 12);
                    let t = vid.to_be_bytes();
                    std::ptr::copy_nonoverlapping([0x81, 0x00, t[0], t[1]].as_ptr(), q.add(12), VLAN_HLEN);
                    (addr - VLAN_HLEN as u64, len + VLAN_HLEN as u32)
                }
            }
        }
    }
}

/// The TCI of a frame's 802.1Q tag, None when untagged (or too short to carry one).
#[inline]
fn tag_of(frame: &[u8]) -> Option<u16> {
    match frame {
        [_, _, _, _, _, _, _, _, _, _, _, _, 0x81, 0x00, hi, lo, _, _, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// The state of one network on one worker.
pub(crate) struct Domain {
    pub net: NetId,
    ports: Vec<Option<Port>>,
    plane: Plane,
    flood: Option<FloodSocket>,
    flood_frames: Vec<u64>,
    flood_rx: Vec<Received>,
    /// Rounds to skip the flood socket after it was found empty: its recvmmsg is a syscall, which
    /// an idle check should not cost every round.
    flood_backoff: u32,
}

const FLOOD_BACKOFF: u32 = 7;

impl Domain {
    pub fn new(net: NetId, table: Table, parent: Port, area: Arc<Area>, flood: Option<FloodSocket>) -> Self {
        let frames = area.frames();
        let mut plane = Plane {
            table,
            pool: FramePool::new(frames),
            stage: Vec::new(),
            counters: Vec::new(),
            copy_tx: Vec::new(),
            dirty: Vec::with_capacity(64),
            targets: Vec::with_capacity(64),
            area,
        };
        plane.ensure_port(PARENT);
        plane.counters[usize::from(PARENT)] = Some(parent.counters.clone());
        let flood_n = crate::flood::BATCH;
        Domain {
            net,
            ports: vec![Some(parent)],
            plane,
            flood,
            flood_frames: Vec::with_capacity(flood_n),
            flood_rx: Vec::with_capacity(flood_n),
            flood_backoff: 0,
        }
    }

    fn add_port(&mut self, id: PortId, info: PortInfo, port: Port) -> Result<(), String> {
        self.plane.table.add_endpoint(id, info).map_err(|e| e.to_string())?;
        self.plane.ensure_port(id);
        let idx = usize::from(id);
        if self.ports.len() <= idx {
            self.ports.resize_with(idx + 1, || None);
        }
        self.plane.counters[idx] = Some(port.counters.clone());
        self.plane.targets.reserve(self.ports.len());
        self.ports[idx] = Some(port);
        Ok(())
    }

    fn add_copy_port(
        &mut self,
        id: PortId,
        info: PortInfo,
        tx: CopyTx,
        counters: SharedPortCounters,
    ) -> Result<(), String> {
        self.plane.table.add_endpoint(id, info).map_err(|e| e.to_string())?;
        self.plane.ensure_port(id);
        let idx = usize::from(id);
        self.plane.counters[idx] = Some(counters);
        self.plane.copy_tx[idx] = Some(tx);
        Ok(())
    }

    fn remove_port(&mut self, id: PortId) {
        self.plane.table.remove_endpoint(id);
        if let Some(slot) = self.plane.copy_tx.get_mut(usize::from(id)) {
            *slot = None;
        }
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            // Closing the socket ends the kernel's use of every frame lent to it.
            *slot = None;
            self.plane.pool.reclaim(id);
        }
        self.plane.counters[usize::from(id)] = None;
    }

    /// One round over all ports. Returns how many frames it moved.
    fn poll(&mut self, wc: &WorkerCounters) -> u32 {
        let mut work = 0;
        let Domain { ports, plane, .. } = self;

        // Only `xsk` of a port transmits, so only its completion ring has entries.
        for port in ports.iter_mut().flatten() {
            let mut done = port.xsk.cq.complete(COMPLETE_BATCH);
            while let Some(addr) = done.read() {
                plane.pool.release(addr);
                port.tx_outstanding -= 1;
            }
            done.release();
        }

        for i in 0..ports.len() {
            let Some(port) = ports[i].as_mut() else { continue };
            let mut got = 0;
            for xsk in port.sockets_mut() {
                let mut rx = xsk.rx.receive(BATCH);
                got += rx.capacity();
                while let Some(desc) = rx.read() {
                    plane.handle(desc.addr, desc.len, i as PortId, wc);
                }
                rx.release();
            }
            if got > 0 {
                work += got;
                flush(ports, plane, wc);
            }
        }

        if self.flood_backoff > 0 {
            self.flood_backoff -= 1;
        } else if let Some(fs) = self.flood.as_mut() {
            self.flood_frames.clear();
            while self.flood_frames.len() < crate::flood::BATCH {
                match self.plane.pool.alloc() {
                    Some(f) => self.flood_frames.push(f),
                    None => break,
                }
            }
            self.flood_rx.clear();
            // SAFETY: the frames were just taken from the free pool, so nobody else uses them.
            let n =
                unsafe { fs.recv(self.plane.area.base(), FRAME_SIZE as usize, &self.flood_frames, &mut self.flood_rx) };
            for &f in &self.flood_frames[n..] {
                self.plane.pool.release(f);
            }
            for r in &self.flood_rx {
                if r.truncated {
                    // Larger than a UMEM chunk: counted, never forwarded cut short.
                    self.plane.count_rx(PARENT, r.len, wc);
                    self.plane.count_drop(PARENT, DropReason::Oversize, wc);
                    self.plane.pool.release(r.offset);
                    continue;
                }
                self.plane.handle(r.offset, r.len, PARENT, wc);
            }
            if n > 0 {
                work += n as u32;
                flush(&mut self.ports, &mut self.plane, wc);
            } else {
                self.flood_backoff = FLOOD_BACKOFF;
            }
        }

        let Domain { ports, plane, .. } = self;
        for (i, port) in ports.iter_mut().enumerate() {
            let Some(port) = port else { continue };
            let target = port.fill_target;
            for xsk in port.sockets_mut() {
                refill(xsk, target, &mut plane.pool, i as PortId);
            }
        }
        work
    }

    /// Refreshes the kernel's per-socket drop counters (a syscall per socket: called rarely).
    fn refresh_kernel_stats(&self) {
        for port in self.ports.iter().flatten() {
            let (mut dropped, mut ring_full, mut fill_empty) = (0, 0, 0);
            for (d, r, f) in port.sockets().filter_map(XskPort::kernel_stats) {
                dropped += d;
                ring_full += r;
                fill_empty += f;
            }
            let c = &port.counters;
            c.xsk_rx_dropped.add(dropped.wrapping_sub(c.xsk_rx_dropped.get()));
            c.xsk_rx_ring_full.add(ring_full.wrapping_sub(c.xsk_rx_ring_full.get()));
            c.xsk_fill_empty.add(fill_empty.wrapping_sub(c.xsk_fill_empty.get()));
        }
    }

    fn poll_fds(&self, out: &mut Vec<libc::pollfd>) {
        for xsk in self.ports.iter().flatten().flat_map(Port::sockets) {
            out.push(libc::pollfd { fd: xsk.raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        if let Some(fs) = &self.flood {
            out.push(libc::pollfd { fd: fs.raw_fd(), events: libc::POLLIN, revents: 0 });
        }
    }
}

const COMPLETE_BATCH: u32 = 256;

/// Tops a fill ring up to `target` frames from the pool once it fell below half of that.
#[inline]
fn refill(xsk: &mut XskPort, target: u32, pool: &mut FramePool, owner: PortId) {
    let have = xsk.fq.pending();
    if have >= target / 2 {
        return;
    }
    let want = (target - have).min(pool.free.len() as u32);
    let mut fill = xsk.fq.fill(want);
    let n = fill.capacity() as usize;
    let start = pool.free.len() - n;
    for &f in &pool.free[start..] {
        pool.owner[f as usize] = owner;
    }
    let written = fill.insert(pool.free[start..].iter().map(|&f| u64::from(f) << FRAME_SHIFT));
    fill.commit();
    drop(fill);
    debug_assert_eq!(written as usize, n);
    pool.free.truncate(start);
    if xsk.fq.needs_wakeup() {
        xsk.fq.wake();
    }
}

/// Moves every staged batch into its TX ring: one insert + commit and at most one kick per ring.
fn flush(ports: &mut [Option<Port>], plane: &mut Plane, wc: &WorkerCounters) {
    for di in 0..plane.dirty.len() {
        let p = plane.dirty[di];
        let idx = usize::from(p);
        let staged = std::mem::take(&mut plane.stage[idx]);
        let sent = match ports.get_mut(idx).and_then(Option::as_mut) {
            Some(port) => {
                let mut tx = port.xsk.tx.transmit(staged.len() as u32);
                let sent = tx.insert(staged.iter().copied()) as usize;
                tx.commit();
                drop(tx);
                if sent > 0 {
                    let bytes: u64 = staged[..sent].iter().map(|d| u64::from(d.len)).sum();
                    port.counters.tx.add(sent as u64);
                    port.tx_outstanding += sent as u64;
                    port.counters.tx_bytes.add(bytes);
                    wc.tx_frames.add(sent as u64);
                    if port.xsk.tx.needs_wakeup() {
                        port.xsk.tx.wake();
                        wc.tx_kicks.add(1);
                    }
                }
                sent
            }
            None => match plane.copy_tx.get_mut(idx).and_then(Option::as_mut) {
                Some(copy) => {
                    // SAFETY: staged descriptors describe frames the worker received into the area.
                    let sent = unsafe { copy.send(plane.area.base(), &staged) };
                    // The kernel copied them during the call: free at once.
                    for d in &staged[..sent] {
                        plane.pool.release(d.addr);
                    }
                    if let Some(Some(c)) = plane.counters.get(idx) {
                        c.tx.add(sent as u64);
                        c.tx_bytes.add(staged[..sent].iter().map(|d| u64::from(d.len)).sum());
                    }
                    wc.tx_frames.add(sent as u64);
                    sent
                }
                None => 0,
            },
        };
        let reachable =
            ports.get(idx).is_some_and(Option::is_some) || plane.copy_tx.get(idx).is_some_and(Option::is_some);
        let reason = if reachable { DropReason::TxRingFull } else { DropReason::NoEndpoint };
        for d in &staged[sent..] {
            plane.count_drop(p, reason, wc);
            plane.pool.release(d.addr);
        }
        let mut staged = staged;
        staged.clear();
        plane.stage[idx] = staged;
    }
    plane.dirty.clear();
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
    pollfds: Vec<libc::pollfd>,
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
    ) -> Self {
        Worker { id, cpu, counters, commands, pending, wake, nice, domains: Vec::new(), pollfds: Vec::new() }
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
        self.rebuild_pollfds();
        let mut idle = 0u32;
        let mut last_stats = Instant::now();
        loop {
            if self.pending.load(Ordering::Acquire) > 0 && !self.apply_commands() {
                return;
            }
            let mut work = 0;
            for d in &mut self.domains {
                work += d.poll(&self.counters);
            }
            if work > 0 {
                self.counters.busy_loops.add(1);
                idle = 0;
                if self.counters.busy_loops.get() & 0xffff == 0 {
                    self.maybe_refresh(&mut last_stats);
                }
                continue;
            }
            idle += 1;
            if idle < SPIN_ROUNDS {
                std::hint::spin_loop();
                continue;
            }
            idle = 0;
            self.maybe_refresh(&mut last_stats);
            self.counters.idle_sleeps.add(1);
            for p in &mut self.pollfds {
                p.revents = 0;
            }
            let pending = self.domains.iter().any(|d| d.ports.iter().flatten().any(|p| p.tx_outstanding > 0));
            let timeout = if pending { SLEEP_TX_PENDING_MS } else { SLEEP_MS };
            // SAFETY: pollfds is a live array of initialised pollfd structs of the given length.
            unsafe { libc::poll(self.pollfds.as_mut_ptr(), self.pollfds.len() as libc::nfds_t, timeout) };
            self.drain_wake();
        }
    }

    fn maybe_refresh(&self, last: &mut Instant) {
        if last.elapsed() >= Duration::from_millis(500) {
            *last = Instant::now();
            for d in &self.domains {
                d.refresh_kernel_stats();
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
                    self.domains.clear();
                    let _ = ack.send(Ok(()));
                    return false;
                }
                Command::AddDomain(d) => {
                    self.domains.push(*d);
                    Ok(())
                }
                Command::RemoveDomain(net) => {
                    self.domains.retain(|d| d.net != net);
                    Ok(())
                }
                Command::AddPort { net, id, info, port } => match self.domain(net) {
                    Some(d) => d.add_port(id, info, *port),
                    None => Err(format!("worker {} has no network {net}", self.id)),
                },
                Command::AddCopyPort { net, id, info, tx, counters } => match self.domain(net) {
                    Some(d) => d.add_copy_port(id, info, *tx, counters),
                    None => Err(format!("worker {} has no network {net}", self.id)),
                },
                Command::RemovePort { net, id } => {
                    if let Some(d) = self.domain(net) {
                        d.remove_port(id);
                    }
                    Ok(())
                }
                Command::SetUp { net, id, up } => {
                    if let Some(d) = self.domain(net) {
                        d.plane.table.set_up(id, up);
                    }
                    Ok(())
                }
                Command::SetSources { net, id, macs } => match self.domain(net) {
                    Some(d) => d.plane.table.set_sources(id, &macs).map(|_| ()).map_err(|e| e.to_string()),
                    None => Err(format!("worker {} has no network {net}", self.id)),
                },
            };
            let _ = ack.send(result);
        }
        self.rebuild_pollfds();
        true
    }

    fn domain(&mut self, net: NetId) -> Option<&mut Domain> {
        self.domains.iter_mut().find(|d| d.net == net)
    }

    fn rebuild_pollfds(&mut self) {
        self.pollfds.clear();
        self.pollfds.push(libc::pollfd { fd: self.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for d in &self.domains {
            d.poll_fds(&mut self.pollfds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MacAddr;

    const A: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 0x0c]);

    /// A plane with parent 0 and endpoints 1 (A), 2 (B), 3 (C) over a real (unregistered) area.
    fn plane(frames: u32) -> Plane {
        let mut table = Table::new(MacAddr([0x02, 0, 0, 0, 0, 1]), 1500);
        let mut p = Plane {
            table: Table::new(MacAddr::default(), 0),
            pool: FramePool::new(frames),
            stage: Vec::new(),
            counters: Vec::new(),
            copy_tx: Vec::new(),
            dirty: Vec::new(),
            targets: Vec::new(),
            area: Arc::new(Area::new(frames).unwrap()),
        };
        for (id, mac) in [(1, A), (2, B), (3, C)] {
            table.add_endpoint(id, PortInfo::endpoint(mac, 1500)).unwrap();
        }
        for id in 0..4 {
            p.ensure_port(id);
            p.counters[usize::from(id)] = Some(Default::default());
        }
        p.table = table;
        p
    }

    /// Writes a frame into a fresh chunk as the kernel would, returning its offset and length.
    fn receive(p: &mut Plane, dst: MacAddr, src: MacAddr, len: usize, port: PortId) -> (u64, u32) {
        let chunk = p.pool.alloc().expect("a free frame");
        p.pool.lend(chunk, port);
        let addr = chunk + TX_HEADROOM;
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        // SAFETY: the chunk is ours and FRAME_SIZE bytes long.
        unsafe { std::ptr::copy_nonoverlapping(f.as_ptr(), p.area.base().add(addr as usize), len) };
        (addr, len as u32)
    }

    fn staged(p: &Plane, port: PortId) -> usize {
        p.stage[usize::from(port)].len()
    }

    /// Σrx + flood_copies = Σtx(staged) + Σdrops + flood_empty, and no frame leaks from the pool.
    fn check_accounting(p: &Plane, wc: &WorkerCounters, frames: u32) {
        let rx: u64 = p.counters.iter().flatten().map(|c| c.rx.get()).sum();
        let drops: u64 = p.counters.iter().flatten().map(|c| c.drops.iter().map(Counter::get).sum::<u64>()).sum();
        let staged: u64 = p.stage.iter().map(|s| s.len() as u64).sum();
        assert_eq!(rx + wc.flood_copies.get(), staged + drops + wc.flood_empty.get());
        let lent = p.pool.owner.iter().filter(|&&o| o != FREE).count();
        assert_eq!(lent + p.pool.free.len(), frames as usize, "every frame is free or lent exactly once");
        assert_eq!(lent as u64, staged, "only staged frames are out of the pool here");
    }

    use crate::counters::Counter;

    #[test]
    fn unicast_moves_the_descriptor_without_copy() {
        let mut p = plane(64);
        let wc = WorkerCounters::default();
        let (addr, len) = receive(&mut p, B, A, 60, 1);
        p.handle(addr, len, 1, &wc);
        assert_eq!(p.stage[2][0].addr, addr, "same descriptor, no copy");
        assert_eq!(p.pool.owner[(addr >> FRAME_SHIFT) as usize], 2);
        assert_eq!(p.dirty, vec![2]);
        check_accounting(&p, &wc, 64);
    }

    #[test]
    fn flood_copies_for_all_but_the_last_target() {
        let mut p = plane(64);
        let wc = WorkerCounters::default();
        let (addr, len) = receive(&mut p, MacAddr::BROADCAST, B, 60, 2);
        p.handle(addr, len, 2, &wc);
        // Endpoint broadcast: A, C and the wire; never back to B.
        assert_eq!((staged(&p, 1), staged(&p, 2), staged(&p, 3), staged(&p, PARENT)), (1, 0, 1, 1));
        assert_eq!(wc.flood_copies.get(), 2);
        assert_eq!(p.stage[usize::from(PARENT)][0].addr, addr, "the original goes to the last target");
        let copy = p.stage[1][0];
        // SAFETY: both ranges are inside the area and were written above / by handle().
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(p.area.base().add(addr as usize), 60),
                std::slice::from_raw_parts(p.area.base().add(copy.addr as usize), 60),
            )
        };
        assert_eq!(a, b);
        check_accounting(&p, &wc, 64);
    }

    #[test]
    fn flood_out_of_frames_counts_no_buffer_and_down_targets_count_dst_down() {
        let mut p = plane(2);
        p.table.set_up(3, false);
        let wc = WorkerCounters::default();
        let (addr, len) = receive(&mut p, MacAddr::BROADCAST, B, 60, 2);
        // One frame left in the pool: targets A (copy), C (down), parent (original).
        let spare = p.pool.alloc().unwrap();
        p.handle(addr, len, 2, &wc);
        let dropped =
            |port: PortId, r: DropReason| p.counters[usize::from(port)].as_ref().unwrap().drops[r as usize].get();
        assert_eq!(dropped(1, DropReason::NoBuffer), 1);
        assert_eq!(dropped(3, DropReason::DstDown), 1);
        assert_eq!(staged(&p, PARENT), 1);
        p.pool.release(spare);
        check_accounting(&p, &wc, 2);
    }

    #[test]
    fn bad_frames_are_dropped_counted_and_recycled() {
        let mut p = plane(8);
        let wc = WorkerCounters::default();
        let (addr, _) = receive(&mut p, A, B, 60, 1);
        p.handle(addr, 10, 1, &wc);
        let (addr, _) = receive(&mut p, A, OUTSIDE, 1600, PARENT);
        p.handle(addr, 1600, PARENT, &wc);
        let c = |port: usize| p.counters[port].as_ref().unwrap();
        assert_eq!(c(1).drops[DropReason::Runt as usize].get(), 1);
        assert_eq!(c(1).drops[DropReason::Oversize as usize].get(), 1);
        assert_eq!(wc.dropped.get(), 2);
        check_accounting(&p, &wc, 8);
    }

    const OUTSIDE: MacAddr = MacAddr([0x02, 0x99, 0, 0, 0, 1]);

    fn bytes(p: &Plane, d: XdpDesc) -> Vec<u8> {
        // SAFETY: staged descriptors point into the area.
        unsafe { std::slice::from_raw_parts(p.area.base().add(d.addr as usize), d.len as usize).to_vec() }
    }

    /// Writes `f` into a fresh chunk as received on `port`.
    fn receive_bytes(p: &mut Plane, f: &[u8], port: PortId) -> (u64, u32) {
        let chunk = p.pool.alloc().expect("a free frame");
        p.pool.lend(chunk, port);
        let addr = chunk + TX_HEADROOM;
        // SAFETY: the chunk is ours and FRAME_SIZE bytes long.
        unsafe { std::ptr::copy_nonoverlapping(f.as_ptr(), p.area.base().add(addr as usize), f.len()) };
        (addr, f.len() as u32)
    }

    #[test]
    fn vlan_tags_are_popped_towards_endpoints_and_pushed_towards_the_wire() {
        let mut p = plane(16);
        for (id, last) in [(4u16, 0x41u8), (5, 0x51)] {
            let mut info = PortInfo::endpoint(MacAddr([0x02, 0x42, 0, 0, 0, last]), 1500);
            info.vlan = 10;
            info.keep_pcp = id == 5;
            p.table.add_endpoint(id, info).unwrap();
            p.ensure_port(id);
            p.counters[usize::from(id)] = Some(Default::default());
        }
        let wc = WorkerCounters::default();
        let payload = [0xabu8; 46];
        let tagged = |dst: [u8; 6], tci: u16| {
            let mut f = Vec::new();
            f.extend_from_slice(&dst);
            f.extend_from_slice(&OUTSIDE.0);
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&tci.to_be_bytes());
            f.extend_from_slice(&[0x88, 0xb5]);
            f.extend_from_slice(&payload);
            f
        };
        // Wire → VLAN 10 endpoint, PCP 5: popped, counted as stripped.
        let f = tagged([0x02, 0x42, 0, 0, 0, 0x41], (5 << 13) | 10);
        let (addr, len) = receive_bytes(&mut p, &f, PARENT);
        p.handle(addr, len, PARENT, &wc);
        let got = bytes(&p, p.stage[4][0]);
        assert_eq!(got.len(), f.len() - 4);
        assert_eq!(&got[..12], &f[..12]);
        assert_eq!(&got[12..], &f[16..], "EtherType and payload untouched");
        assert_eq!(p.counters[4].as_ref().unwrap().pcp_stripped.get(), 1);
        // Broadcast on VLAN 10, PCP 5: endpoint 4 gets it popped, endpoint 5 (keep) priority-tagged.
        let f = tagged([0xff; 6], (5 << 13) | 10);
        let (addr, len) = receive_bytes(&mut p, &f, PARENT);
        p.handle(addr, len, PARENT, &wc);
        assert_eq!(staged(&p, 1) + staged(&p, 2) + staged(&p, 3), 0, "untagged endpoints get nothing");
        let popped = bytes(&p, p.stage[4][1]);
        assert_eq!(&popped[12..], &f[16..]);
        let kept = bytes(&p, p.stage[5][0]);
        assert_eq!(&kept[12..16], &[0x81, 0x00, 0xa0, 0x00], "VID 0, PCP 5");
        assert_eq!(&kept[16..], &f[16..]);
        assert_eq!(p.counters[5].as_ref().unwrap().pcp_kept.get(), 1);
        // Endpoint 4 → wire: tag VID 10 pushed; a priority tag from the container gets VID 10.
        let (addr, len) = receive(&mut p, OUTSIDE, MacAddr([0x02, 0x42, 0, 0, 0, 0x41]), 60, 4);
        let sent = bytes(&p, XdpDesc { addr, len, options: 0 });
        p.handle(addr, len, 4, &wc);
        let out = bytes(&p, p.stage[0][0]);
        assert_eq!(out.len(), 64);
        assert_eq!(&out[..12], &sent[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(&out[16..], &sent[12..]);
        let mut prio = tagged(OUTSIDE.0, 3 << 13);
        prio[6..12].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 0x41]);
        let (addr, len) = receive_bytes(&mut p, &prio, 4);
        p.handle(addr, len, 4, &wc);
        let out = bytes(&p, p.stage[0][1]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x60, 0x0a]);
        assert_eq!(out.len(), prio.len());
        check_accounting(&p, &wc, 16);
    }

    #[test]
    fn reclaim_returns_everything_a_port_held() {
        let mut pool = FramePool::new(16);
        let held: Vec<u64> = (0..5).map(|_| pool.alloc().unwrap()).collect();
        for &f in &held[..3] {
            pool.lend(f, 7);
        }
        for &f in &held[3..] {
            pool.lend(f, 8);
        }
        pool.reclaim(7);
        assert_eq!(pool.free.len(), 14);
        assert_eq!(pool.owner.iter().filter(|&&o| o == 8).count(), 2);
    }
}
