//! What a worker does with one received frame: decide, edit the 802.1Q tag, stage it for its
//! destinations. No sockets here (the worker owns them), so all of it runs in unit tests over
//! real UMEM areas.
//!
//! A domain's frames live in several UMEMs: the parent's (id 0: the parent's sockets and the flood
//! socket's landing area) and one per endpoint group (see budget.rs). A [`FrameAddr`] names the
//! UMEM and the offset. Frames for endpoints are staged as messages of the worker's `sendmmsg`
//! batch (the kernel copies them out of any UMEM); frames for the parent go to its AF_XDP TX ring,
//! so they must be in UMEM 0 — a frame from an endpoint group is copied there first.
//!
//! A flood takes one frame per distinct tag edit among its targets, not one per target: every
//! target of an edit shares the frame, holding a reference each (pool.rs).

use crate::counters::{SharedPortCounters, WorkerCounters};
use crate::frame::{self, tag_of, VLAN_HLEN};
use crate::fwd::{decide, Action, DropReason, Edit, Flood, PortId, Table, PARENT};
use crate::pool::Pool;
use crate::xsk::{XdpDesc, TX_HEADROOM};

/// A frame's place: which UMEM of the domain (high 16 bits) and the offset inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameAddr(u64);

impl FrameAddr {
    const SHIFT: u32 = 48;

    #[inline]
    pub fn new(umem: u16, off: u64) -> Self {
        debug_assert!(off < 1 << Self::SHIFT);
        FrameAddr((u64::from(umem) << Self::SHIFT) | off)
    }

    #[inline]
    pub fn umem(self) -> usize {
        (self.0 >> Self::SHIFT) as usize
    }

    #[inline]
    pub fn off(self) -> u64 {
        self.0 & ((1 << Self::SHIFT) - 1)
    }

    #[inline]
    fn moved(self, by: i64) -> Self {
        FrameAddr(self.0.wrapping_add_signed(by))
    }
}

/// A frame staged for an endpoint (a message of the next `sendmmsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Staged {
    pub port: PortId,
    pub addr: FrameAddr,
    pub len: u32,
}

/// Floods have at most this many distinct tag edits among their targets (untagged, popped,
/// priority-tagged towards endpoints; pushed or VID-set towards the wire).
const MAX_VARIANTS: usize = 4;

pub(crate) struct Plane {
    pub table: Table,
    /// By UMEM id; 0 is the parent's.
    pub pools: Vec<Option<Pool>>,
    /// By PortId.
    pub counters: Vec<Option<SharedPortCounters>>,
    /// Frames for the parent's TX ring (offsets in UMEM 0).
    pub to_parent: Vec<XdpDesc>,
    /// Frames for endpoints, in staging order.
    pub to_endpoints: Vec<Staged>,
    /// Scratch: the deliverable targets of the flood being handled, with their edit.
    targets: Vec<(PortId, Edit)>,
}

impl Plane {
    pub fn new(table: Table) -> Self {
        Plane {
            table,
            pools: Vec::new(),
            counters: Vec::new(),
            to_parent: Vec::with_capacity(1024),
            to_endpoints: Vec::with_capacity(4096),
            targets: Vec::with_capacity(64),
        }
    }

    pub fn set_counters(&mut self, id: PortId, c: Option<SharedPortCounters>) {
        let i = usize::from(id);
        if self.counters.len() <= i {
            self.counters.resize(i + 1, None);
        }
        self.counters[i] = c;
    }

    pub fn set_pool(&mut self, umem: u16, pool: Option<Pool>) {
        let i = usize::from(umem);
        if self.pools.len() <= i {
            self.pools.resize_with(i + 1, || None);
        }
        self.pools[i] = pool;
    }

    #[inline]
    pub fn pool(&mut self, umem: usize) -> &mut Pool {
        self.pools[umem].as_mut().expect("frames only come from live UMEMs")
    }

    /// Where the bytes of `addr` are.
    #[inline]
    pub fn ptr(&self, addr: FrameAddr) -> *mut u8 {
        let pool = self.pools[addr.umem()].as_ref().expect("frames only come from live UMEMs");
        // SAFETY: offsets of frames we hold lie inside their UMEM's area.
        unsafe { pool.area().base().add(addr.off() as usize) }
    }

    #[inline]
    pub fn unref(&mut self, addr: FrameAddr) {
        self.pool(addr.umem()).unref(addr.off());
    }

    #[inline]
    pub fn count_drop(&self, port: PortId, reason: DropReason, wc: &WorkerCounters) {
        if let Some(Some(c)) = self.counters.get(usize::from(port)) {
            c.dropped(reason);
        }
        wc.dropped.add(1);
    }

    #[inline]
    pub fn count_rx(&self, port: PortId, len: u32, wc: &WorkerCounters) {
        if let Some(Some(c)) = self.counters.get(usize::from(port)) {
            c.rx.add(1);
            c.rx_bytes.add(u64::from(len));
        }
        wc.rx_frames.add(1);
    }

    /// Decides and stages one received frame, which the worker holds with one reference.
    #[inline]
    pub fn handle(&mut self, addr: FrameAddr, len: u32, ingress: PortId, wc: &WorkerCounters) {
        // SAFETY: the kernel (or our flood socket) wrote `len` bytes at `addr` and handed the
        // frame to us; nobody else reads or writes it until we pass it on.
        let frame = unsafe { std::slice::from_raw_parts(self.ptr(addr), len as usize) };
        self.count_rx(ingress, len, wc);
        let tci = tag_of(frame);
        match decide(frame, ingress, &self.table) {
            Action::Forward(port) => {
                let edit = self.table.edit(tci, ingress, port);
                self.deliver(port, edit, addr, len, wc);
            }
            Action::Drop { reason, port } => {
                self.count_drop(port, reason, wc);
                self.unref(addr);
            }
            Action::Flood(flood) => self.flood(&flood, frame.len(), tci, addr, len, ingress, wc),
        }
    }

    /// Stages a frame (one reference, handed over) on `port` after applying `edit` in place.
    #[inline]
    fn deliver(&mut self, port: PortId, edit: Edit, addr: FrameAddr, len: u32, wc: &WorkerCounters) {
        let mut addr = addr;
        if port == PARENT && addr.umem() != 0 {
            // The parent's TX ring takes frames of its own UMEM only.
            match self.copy_to(0, addr, len) {
                Some(copy) => {
                    self.unref(addr);
                    addr = copy;
                }
                None => {
                    self.count_drop(port, DropReason::NoBuffer, wc);
                    self.unref(addr);
                    return;
                }
            }
        }
        let (addr, len) = self.apply(edit, port, addr, len);
        self.stage(port, addr, len);
    }

    #[inline]
    fn stage(&mut self, port: PortId, addr: FrameAddr, len: u32) {
        if port == PARENT {
            self.to_parent.push(XdpDesc { addr: addr.off(), len, options: 0 });
        } else {
            self.to_endpoints.push(Staged { port, addr, len });
        }
    }

    /// Copies the frame at `addr` into a fresh frame of UMEM `umem` (one reference), at the
    /// headroom the kernel would leave.
    fn copy_to(&mut self, umem: usize, addr: FrameAddr, len: u32) -> Option<FrameAddr> {
        let chunk = self.pool(umem).alloc()?;
        let copy = FrameAddr::new(umem as u16, chunk + TX_HEADROOM);
        // SAFETY: `chunk` is a free chunk of at least 2 KiB; the frame fits behind the headroom
        // as it fitted in a chunk of the same or a smaller size; source and destination differ.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(addr), self.ptr(copy), len as usize) };
        Some(copy)
    }

    /// Accounting: a flood with n candidate targets has n outcomes (each delivered or counted as a
    /// drop) for one received frame: `flood_copies` counts the n − 1 extra outcomes, `flood_empty`
    /// the floods without any candidate.
    #[allow(clippy::too_many_arguments)]
    fn flood(
        &mut self,
        flood: &Flood,
        frame_len: usize,
        tci: Option<u16>,
        addr: FrameAddr,
        len: u32,
        ingress: PortId,
        wc: &WorkerCounters,
    ) {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        let mut candidates = 0u64;
        for t in self.table.flood_targets(flood) {
            candidates += 1;
            match self.table.check_delivery(t, frame_len, usize::from(flood.hlen)) {
                Ok(()) => targets.push((t, self.table.edit(tci, ingress, t))),
                Err(reason) => self.count_drop(t, reason, wc),
            }
        }
        if candidates == 0 {
            wc.flood_empty.add(1);
        } else {
            wc.flood_copies.add(candidates - 1);
        }
        // One frame per variant: (edit, needs a copy in UMEM 0 because the target is the parent).
        let mut variants: [(Edit, bool, u16); MAX_VARIANTS] = [(Edit::None, false, 0); MAX_VARIANTS];
        let mut nv = 0;
        for &(t, e) in &targets {
            let key = (e, t == PARENT && addr.umem() != 0);
            match variants[..nv].iter_mut().find(|v| (v.0, v.1) == key) {
                Some(v) => v.2 += 1,
                None if nv < MAX_VARIANTS => {
                    variants[nv] = (key.0, key.1, 1);
                    nv += 1;
                }
                None => unreachable!("a flood has at most {MAX_VARIANTS} distinct edits"),
            }
        }
        // The received frame carries the last variant that may stay in its UMEM; every other
        // variant is a copy, made before the original's tag is edited.
        let own = variants[..nv].iter().rposition(|v| !v.1);
        for (vi, &(edit, to_umem0, count)) in variants[..nv].iter().enumerate() {
            if Some(vi) == own {
                continue;
            }
            let umem = if to_umem0 { 0 } else { addr.umem() };
            let Some(copy) = self.copy_to(umem, addr, len).or_else(|| self.copy_to(0, addr, len)) else {
                for &(t, _) in
                    targets.iter().filter(|&&(t, e)| (e, t == PARENT && addr.umem() != 0) == (edit, to_umem0))
                {
                    self.count_drop(t, DropReason::NoBuffer, wc);
                }
                continue;
            };
            self.stage_variant(&targets, (edit, to_umem0), copy, len, count, addr.umem());
        }
        match own {
            Some(vi) => {
                let (edit, to_umem0, count) = variants[vi];
                self.stage_variant(&targets, (edit, to_umem0), addr, len, count, addr.umem());
            }
            None => self.unref(addr),
        }
        self.targets = targets;
    }

    /// Edits `frame` (holding one reference) for a variant and stages it on each of its targets.
    fn stage_variant(
        &mut self,
        targets: &[(PortId, Edit)],
        key: (Edit, bool),
        frame: FrameAddr,
        len: u32,
        count: u16,
        src_umem: usize,
    ) {
        let first = targets.iter().find(|&&(t, e)| (e, t == PARENT && src_umem != 0) == key).map(|&(t, _)| t);
        let Some(first) = first else { return };
        let (at, len) = self.apply(key.0, first, frame, len);
        if count > 1 {
            self.pool(at.umem()).add_refs(at.off(), count - 1);
        }
        for &(t, _) in targets.iter().filter(|&&(t, e)| (e, t == PARENT && src_umem != 0) == key) {
            self.stage(t, at, len);
        }
    }

    /// Edits the tag of the frame at `addr` in place (the payload never moves: the 12 MAC bytes
    /// do; `frame.rs` has the edits) and returns where the frame now starts and its length. Counts
    /// PCP on `port`.
    #[inline]
    fn apply(&mut self, edit: Edit, port: PortId, addr: FrameAddr, len: u32) -> (FrameAddr, u32) {
        if edit == Edit::None {
            return (addr, len);
        }
        let p = self.ptr(addr);
        let n = len as usize;
        let counters = self.counters.get(usize::from(port)).and_then(Option::as_ref);
        // A push writes VLAN_HLEN bytes in front of the frame.
        let room = if matches!(edit, Edit::Push(_)) { VLAN_HLEN } else { 0 };
        debug_assert!(room == 0 || addr.off() & 0xff >= VLAN_HLEN as u64 || addr.off() & 0x7ff >= VLAN_HLEN as u64);
        // SAFETY: the frame is `len` ≥ 14 bytes (18 when tagged: decide parsed it) at `addr` in a
        // chunk this worker holds, and nothing else reads or writes it while the worker edits it;
        // frames start TX_HEADROOM (or, after a pop, more) into their chunk, so the `room` bytes in
        // front are inside the chunk too.
        let buf = unsafe { std::slice::from_raw_parts_mut(p.sub(room), room + n) };
        let (at, n) = match edit {
            Edit::None => (room, n),
            Edit::Pop => {
                if frame::pcp(buf) != 0 {
                    if let Some(c) = counters {
                        c.pcp_stripped.add(1);
                    }
                }
                frame::pop_tag(buf, 0, n)
            }
            Edit::PriorityTag => {
                frame::set_vid(buf, 0);
                if let Some(c) = counters {
                    c.pcp_kept.add(1);
                }
                (0, n)
            }
            Edit::SetVid(vid) => {
                frame::set_vid(buf, vid);
                (0, n)
            }
            Edit::Push(vid) => frame::push_tag(buf, room, n, frame::ETHERTYPE_VLAN, vid),
        };
        (addr.moved(at as i64 - room as i64), n as u32)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::counters::Counter;
    use crate::frame::MacAddr;
    use crate::fwd::PortInfo;
    use crate::xsk::Area;

    const A: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 0x0c]);
    const OUTSIDE: MacAddr = MacAddr([0x02, 0x99, 0, 0, 0, 1]);

    /// A plane with parent 0 (UMEM 0) and endpoints 1 (A), 2 (B), 3 (C) whose frames arrive in
    /// UMEM 1 (their group), both real (unregistered) areas.
    fn plane(frames: u32) -> Plane {
        let mut table = Table::new(MacAddr([0x02, 0, 0, 0, 0, 1]), 1500);
        for (id, mac) in [(1, A), (2, B), (3, C)] {
            table.add_endpoint(id, PortInfo::endpoint(mac, 1500)).unwrap();
        }
        let mut p = Plane::new(table);
        p.set_pool(0, Some(Pool::new(Arc::new(Area::new(frames, 2048).unwrap()), 0)));
        p.set_pool(1, Some(Pool::new(Arc::new(Area::new(frames, 2048).unwrap()), 0)));
        for id in 0..4 {
            p.set_counters(id, Some(Default::default()));
        }
        p
    }

    fn umem_of(port: PortId) -> u16 {
        if port == PARENT {
            0
        } else {
            1
        }
    }

    /// Writes `f` into a frame lent to `port` and takes it back as the kernel would hand it over.
    fn receive_bytes(p: &mut Plane, f: &[u8], port: PortId) -> (FrameAddr, u32) {
        let umem = umem_of(port);
        let mut lent = Vec::new();
        p.pool(umem.into()).lend(port, 1, &mut lent);
        let addr = FrameAddr::new(umem, lent[0] + TX_HEADROOM);
        p.pool(umem.into()).receive(addr.off(), port);
        // SAFETY: the chunk is ours and 2 KiB long.
        unsafe { std::ptr::copy_nonoverlapping(f.as_ptr(), p.ptr(addr), f.len()) };
        (addr, f.len() as u32)
    }

    fn receive(p: &mut Plane, dst: MacAddr, src: MacAddr, len: usize, port: PortId) -> (FrameAddr, u32) {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        receive_bytes(p, &f, port)
    }

    fn bytes(p: &Plane, addr: FrameAddr, len: u32) -> Vec<u8> {
        // SAFETY: staged frames lie inside their area.
        unsafe { std::slice::from_raw_parts(p.ptr(addr), len as usize).to_vec() }
    }

    fn staged(p: &Plane, port: PortId) -> Vec<Staged> {
        if port == PARENT {
            p.to_parent.iter().map(|d| Staged { port, addr: FrameAddr::new(0, d.addr), len: d.len }).collect()
        } else {
            p.to_endpoints.iter().copied().filter(|s| s.port == port).collect()
        }
    }

    /// Sends everything staged the way the worker does (every staged reference released once)
    /// and checks that every frame came back to its pool.
    fn transmit_all(p: &mut Plane) {
        let parent: Vec<XdpDesc> = p.to_parent.drain(..).collect();
        for d in parent {
            p.unref(FrameAddr::new(0, d.addr));
        }
        let eps: Vec<Staged> = p.to_endpoints.drain(..).collect();
        for s in eps {
            p.unref(s.addr);
        }
        for pool in p.pools.iter().flatten() {
            let c = pool.counts();
            assert_eq!(c.taken, 0, "a frame leaked: {c:?}");
            assert_eq!(c.free, c.frames, "{c:?}");
        }
    }

    /// Σrx + flood_copies = Σstaged + Σdrops + flood_empty.
    fn check_accounting(p: &Plane, wc: &WorkerCounters) {
        let rx: u64 = p.counters.iter().flatten().map(|c| c.rx.get()).sum();
        let drops: u64 = p.counters.iter().flatten().map(|c| c.drops.iter().map(Counter::get).sum::<u64>()).sum();
        let staged = (p.to_parent.len() + p.to_endpoints.len()) as u64;
        assert_eq!(rx + wc.flood_copies.get(), staged + drops + wc.flood_empty.get());
    }

    #[test]
    fn unicast_moves_the_frame_without_copy() {
        let mut p = plane(64);
        let wc = WorkerCounters::default();
        let (addr, len) = receive(&mut p, B, A, 60, 1);
        p.handle(addr, len, 1, &wc);
        assert_eq!(staged(&p, 2), vec![Staged { port: 2, addr, len }], "same frame, no copy");
        check_accounting(&p, &wc);
        transmit_all(&mut p);
    }

    #[test]
    fn endpoint_to_wire_is_copied_into_the_parents_umem() {
        let mut p = plane(64);
        let wc = WorkerCounters::default();
        let (addr, len) = receive(&mut p, OUTSIDE, A, 60, 1);
        let sent = bytes(&p, addr, len);
        p.handle(addr, len, 1, &wc);
        let out = staged(&p, PARENT);
        assert_eq!(out.len(), 1);
        assert_eq!(bytes(&p, out[0].addr, out[0].len), sent);
        assert_eq!(p.pools[1].as_ref().unwrap().counts().taken, 0, "the endpoint's frame went back");
        check_accounting(&p, &wc);
        transmit_all(&mut p);
    }

    #[test]
    fn flood_shares_one_frame_among_its_endpoints() {
        let mut p = plane(64);
        let wc = WorkerCounters::default();
        // Wire broadcast: A, B, C get the frame as received — one frame, three references.
        let (addr, len) = receive(&mut p, MacAddr::BROADCAST, OUTSIDE, 60, PARENT);
        p.handle(addr, len, PARENT, &wc);
        for port in 1..4 {
            assert_eq!(staged(&p, port), vec![Staged { port, addr, len }]);
        }
        assert_eq!(wc.flood_copies.get(), 2);
        assert_eq!(p.pools[0].as_ref().unwrap().counts().taken, 1, "no copies");
        check_accounting(&p, &wc);
        transmit_all(&mut p);
    }

    #[test]
    fn endpoint_broadcast_shares_among_siblings_and_copies_once_for_the_wire() {
        let mut p = plane(64);
        let wc = WorkerCounters::default();
        let (addr, len) = receive(&mut p, MacAddr::BROADCAST, B, 60, 2);
        let sent = bytes(&p, addr, len);
        p.handle(addr, len, 2, &wc);
        // Never back to B; A and C share the received frame; the wire gets a copy in UMEM 0.
        assert_eq!((staged(&p, 1).len(), staged(&p, 2).len(), staged(&p, 3).len()), (1, 0, 1));
        assert_eq!(staged(&p, 1)[0].addr, addr);
        assert_eq!(staged(&p, 3)[0].addr, addr);
        let wire = staged(&p, PARENT);
        assert_eq!(bytes(&p, wire[0].addr, wire[0].len), sent);
        assert_eq!(wc.flood_copies.get(), 2);
        check_accounting(&p, &wc);
        transmit_all(&mut p);
    }

    #[test]
    fn a_shared_frame_survives_until_its_last_reference() {
        let mut p = plane(8);
        let wc = WorkerCounters::default();
        let (addr, len) = receive(&mut p, MacAddr::BROADCAST, OUTSIDE, 60, PARENT);
        p.handle(addr, len, PARENT, &wc);
        // Two of three messages sent; the frame is still taken (the third may still be read).
        let eps: Vec<Staged> = p.to_endpoints.drain(..).collect();
        p.unref(eps[0].addr);
        p.unref(eps[1].addr);
        assert_eq!(p.pools[0].as_ref().unwrap().counts().taken, 1);
        // The third one failed (a full send buffer): counted and released — then it is free.
        p.count_drop(eps[2].port, DropReason::TxRingFull, &wc);
        p.unref(eps[2].addr);
        assert_eq!(p.pools[0].as_ref().unwrap().counts().taken, 0);
        assert_eq!(p.counters[3].as_ref().unwrap().drops[DropReason::TxRingFull as usize].get(), 1);
    }

    #[test]
    fn no_frame_for_the_wire_copy_counts_no_buffer() {
        let mut p = plane(1);
        p.table.set_up(3, false);
        let wc = WorkerCounters::default();
        let spare = p.pool(0).alloc().unwrap(); // UMEM 0 is now empty
        let (addr, len) = receive(&mut p, MacAddr::BROADCAST, B, 60, 2);
        p.handle(addr, len, 2, &wc);
        let dropped =
            |port: PortId, r: DropReason| p.counters[usize::from(port)].as_ref().unwrap().drops[r as usize].get();
        assert_eq!(dropped(PARENT, DropReason::NoBuffer), 1);
        assert_eq!(dropped(3, DropReason::DstDown), 1);
        assert_eq!(staged(&p, 1).len(), 1);
        check_accounting(&p, &wc);
        p.pool(0).unref(spare);
        transmit_all(&mut p);
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
        check_accounting(&p, &wc);
        transmit_all(&mut p);
    }

    #[test]
    fn vlan_tags_are_popped_towards_endpoints_and_pushed_towards_the_wire() {
        let mut p = plane(16);
        for (id, last) in [(4u16, 0x41u8), (5, 0x51)] {
            let mut info = PortInfo::endpoint(MacAddr([0x02, 0x42, 0, 0, 0, last]), 1500);
            info.vlan = 10;
            info.keep_pcp = id == 5;
            p.table.add_endpoint(id, info).unwrap();
            p.set_counters(id, Some(Default::default()));
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
        let s = staged(&p, 4)[0];
        let got = bytes(&p, s.addr, s.len);
        assert_eq!(got.len(), f.len() - 4);
        assert_eq!(&got[..12], &f[..12]);
        assert_eq!(&got[12..], &f[16..], "EtherType and payload untouched");
        assert_eq!(p.counters[4].as_ref().unwrap().pcp_stripped.get(), 1);
        // Broadcast on VLAN 10, PCP 5: endpoint 4 gets it popped, endpoint 5 (keep) priority-tagged:
        // two variants, so one copy.
        let f = tagged([0xff; 6], (5 << 13) | 10);
        let (addr, len) = receive_bytes(&mut p, &f, PARENT);
        p.handle(addr, len, PARENT, &wc);
        assert_eq!(
            staged(&p, 1).len() + staged(&p, 2).len() + staged(&p, 3).len(),
            0,
            "untagged endpoints get nothing"
        );
        let popped = staged(&p, 4)[1];
        assert_eq!(&bytes(&p, popped.addr, popped.len)[12..], &f[16..]);
        let kept = staged(&p, 5)[0];
        let kept = bytes(&p, kept.addr, kept.len);
        assert_eq!(&kept[12..16], &[0x81, 0x00, 0xa0, 0x00], "VID 0, PCP 5");
        assert_eq!(&kept[16..], &f[16..]);
        assert_eq!(p.counters[5].as_ref().unwrap().pcp_kept.get(), 1);
        // Endpoint 4 → wire: tag VID 10 pushed; a priority tag from the container gets VID 10.
        let (addr, len) = receive(&mut p, OUTSIDE, MacAddr([0x02, 0x42, 0, 0, 0, 0x41]), 60, 4);
        let sent = bytes(&p, addr, len);
        p.handle(addr, len, 4, &wc);
        let out = staged(&p, PARENT)[0];
        let out = bytes(&p, out.addr, out.len);
        assert_eq!(out.len(), 64);
        assert_eq!(&out[..12], &sent[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(&out[16..], &sent[12..]);
        let mut prio = tagged(OUTSIDE.0, 3 << 13);
        prio[6..12].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 0x41]);
        let (addr, len) = receive_bytes(&mut p, &prio, 4);
        p.handle(addr, len, 4, &wc);
        let out = staged(&p, PARENT)[1];
        let out = bytes(&p, out.addr, out.len);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x60, 0x0a]);
        assert_eq!(out.len(), prio.len());
        check_accounting(&p, &wc);
        transmit_all(&mut p);
    }

    #[test]
    fn a_broadcast_to_a_thousand_endpoints_takes_one_frame() {
        let mut table = Table::new(MacAddr([0x02, 0, 0, 0, 0, 1]), 1500);
        for id in 1..=1024u16 {
            table
                .add_endpoint(id, PortInfo::endpoint(MacAddr::from_u64(0x0242_0000_0000 | u64::from(id)), 1500))
                .unwrap();
        }
        let mut p = Plane::new(table);
        p.set_pool(0, Some(Pool::new(Arc::new(Area::new(4, 2048).unwrap()), 0)));
        for id in 0..=1024 {
            p.set_counters(id, Some(Default::default()));
        }
        let wc = WorkerCounters::default();
        let (addr, len) = receive(&mut p, MacAddr::BROADCAST, OUTSIDE, 60, PARENT);
        p.handle(addr, len, PARENT, &wc);
        assert_eq!(p.to_endpoints.len(), 1024);
        assert!(p.to_endpoints.iter().all(|s| s.addr == addr));
        assert_eq!(p.pools[0].as_ref().unwrap().counts().taken, 1);
        check_accounting(&p, &wc);
        transmit_all(&mut p);
    }
}
