//! The frames of one UMEM and who holds each of them.
//!
//! A frame is in exactly one of these states:
//! - **free**: in the pool's free list;
//! - **lent** to a port: the kernel has it for that port (in its fill ring, in its RX ring, or in
//!   the kernel's own cache behind them). Closing the port's socket ends the kernel's use of it,
//!   so [`Pool::reclaim`] can take back everything lent to a removed port;
//! - **taken** by the worker, with a reference count: one reference per place that will still
//!   read it (a descriptor in the parent's TX ring awaiting its completion, a message of the
//!   pending `sendmmsg` batch, the worker while it decides). The last [`Pool::unref`] frees it.
//!
//! The first `reserved` frames never enter the free list: they are the flood socket's landing
//! area (see flood.rs), handed out by [`Pool::alloc_reserved`] and returned there by `unref`.
//!
//! A flood to n destinations takes one frame with n references instead of n − 1 copies: the
//! kernel copies each transmitted frame anyway in copy mode (AF_XDP TX and packet sockets alike).

use std::sync::Arc;

use crate::fwd::PortId;
use crate::xsk::Area;

/// `holder` values that are not ports.
const FREE: PortId = PortId::MAX;
const TAKEN: PortId = PortId::MAX - 1;

pub(crate) struct Pool {
    area: Arc<Area>,
    free: Vec<u32>,
    reserved_free: Vec<u32>,
    reserved: u32,
    holder: Vec<PortId>,
    refs: Vec<u16>,
    /// Frames in the taken state outside the reserved area.
    taken: u32,
    /// Frames lent, per the port ids seen here (indexed by PortId).
    lent: Vec<u32>,
}

/// What a pool's frames are doing, for `stats` (frames = free + reserved + lent + taken).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounts {
    pub frames: u32,
    pub free: u32,
    pub reserved: u32,
    pub lent: u32,
    pub taken: u32,
}

impl Pool {
    /// A pool over `area` whose first `reserved` frames are kept apart.
    pub fn new(area: Arc<Area>, reserved: u32) -> Self {
        let frames = area.frames();
        assert!(reserved <= frames);
        Pool {
            // Reversed so that low frames are used first (a smaller working set for the caches).
            free: (reserved..frames).rev().collect(),
            reserved_free: (0..reserved).rev().collect(),
            reserved,
            holder: vec![FREE; frames as usize],
            refs: vec![0; frames as usize],
            taken: 0,
            lent: Vec::new(),
            area,
        }
    }

    pub fn area(&self) -> &Arc<Area> {
        &self.area
    }

    #[inline]
    fn index(&self, addr: u64) -> usize {
        (addr >> self.area.shift()) as usize
    }

    #[inline]
    fn chunk_of(&self, i: u32) -> u64 {
        u64::from(i) << self.area.shift()
    }

    pub fn free_frames(&self) -> u32 {
        self.free.len() as u32
    }

    /// Frames lent to `port` (what the kernel holds for it).
    pub fn lent_to(&self, port: PortId) -> u32 {
        self.lent.get(usize::from(port)).copied().unwrap_or(0)
    }

    /// A free frame (its chunk offset), taken with one reference.
    #[inline]
    pub fn alloc(&mut self) -> Option<u64> {
        let i = self.free.pop()?;
        self.holder[i as usize] = TAKEN;
        self.refs[i as usize] = 1;
        self.taken += 1;
        Some(self.chunk_of(i))
    }

    /// A frame of the reserved area, taken with one reference.
    #[inline]
    pub fn alloc_reserved(&mut self) -> Option<u64> {
        let i = self.reserved_free.pop()?;
        self.holder[i as usize] = TAKEN;
        self.refs[i as usize] = 1;
        Some(self.chunk_of(i))
    }

    /// Lends up to `n` free frames to `port`, writing their chunk offsets into `out`.
    #[inline]
    pub fn lend(&mut self, port: PortId, n: u32, out: &mut Vec<u64>) {
        let n = n.min(self.free.len() as u32) as usize;
        let start = self.free.len() - n;
        out.clear();
        for k in start..self.free.len() {
            let i = self.free[k];
            self.holder[i as usize] = port;
            out.push(u64::from(i) << self.area.shift());
        }
        self.free.truncate(start);
        self.add_lent(port, n as u32);
    }

    /// Gives back lent frames the kernel did not take after all (a fill ring with less room).
    pub fn unlend(&mut self, port: PortId, addrs: &[u64]) {
        for &a in addrs {
            let i = self.index(a);
            debug_assert_eq!(self.holder[i], port);
            self.holder[i] = FREE;
            self.free.push(i as u32);
        }
        self.lent[usize::from(port)] -= addrs.len() as u32;
    }

    fn add_lent(&mut self, port: PortId, n: u32) {
        let p = usize::from(port);
        if self.lent.len() <= p {
            self.lent.resize(p + 1, 0);
        }
        self.lent[p] += n;
    }

    /// The kernel handed back a frame lent to `port` (read from its RX ring): the worker takes it
    /// with one reference. `addr` may point anywhere inside the chunk.
    #[inline]
    pub fn receive(&mut self, addr: u64, port: PortId) {
        let i = self.index(addr);
        debug_assert_eq!(self.holder[i], port, "frame {i} came back from a port it was not lent to");
        self.holder[i] = TAKEN;
        self.refs[i] = 1;
        self.lent[usize::from(port)] -= 1;
        self.taken += 1;
    }

    /// Adds `n` references to a taken frame (one per extra reader of a flood).
    #[inline]
    pub fn add_refs(&mut self, addr: u64, n: u16) {
        let i = self.index(addr);
        debug_assert_eq!(self.holder[i], TAKEN);
        self.refs[i] += n;
    }

    /// Drops one reference; the last one frees the frame. Returns whether it was freed.
    #[inline]
    pub fn unref(&mut self, addr: u64) -> bool {
        let i = self.index(addr);
        debug_assert_eq!(self.holder[i], TAKEN, "frame {i} released while not taken (double free?)");
        debug_assert!(self.refs[i] > 0);
        self.refs[i] -= 1;
        if self.refs[i] > 0 {
            return false;
        }
        self.holder[i] = FREE;
        if (i as u32) < self.reserved {
            self.reserved_free.push(i as u32);
        } else {
            self.taken -= 1;
            self.free.push(i as u32);
        }
        true
    }

    /// Takes back every frame lent to `port`, whose socket was just closed. Returns how many.
    pub fn reclaim(&mut self, port: PortId) -> u32 {
        let mut n = 0;
        for (i, h) in self.holder.iter_mut().enumerate() {
            if *h == port {
                *h = FREE;
                self.free.push(i as u32);
                n += 1;
            }
        }
        if let Some(l) = self.lent.get_mut(usize::from(port)) {
            debug_assert_eq!(*l, n, "lent count of port {port} out of step");
            *l = 0;
        }
        n
    }

    pub fn counts(&self) -> PoolCounts {
        PoolCounts {
            frames: self.area.frames(),
            free: self.free.len() as u32,
            reserved: self.reserved,
            lent: self.lent.iter().sum(),
            taken: self.taken,
        }
    }

    /// Frames with a holder state different from free, for tests: (lent, taken incl. reserved).
    #[cfg(test)]
    fn census(&self) -> (u32, u32) {
        let lent = self.holder.iter().filter(|&&h| h != FREE && h != TAKEN).count() as u32;
        let taken = self.holder.iter().filter(|&&h| h == TAKEN).count() as u32;
        (lent, taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(frames: u32, reserved: u32) -> Pool {
        Pool::new(Arc::new(Area::new(frames, 2048).unwrap()), reserved)
    }

    /// Every frame is in exactly one state and the counters agree with the holder table.
    fn check(p: &Pool) {
        let c = p.counts();
        let reserved_in_use = p.reserved - p.reserved_free.len() as u32;
        assert_eq!(c.frames, c.free + c.reserved + c.lent + c.taken, "{c:?}");
        let (lent, taken) = p.census();
        assert_eq!(lent, c.lent);
        assert_eq!(taken, c.taken + reserved_in_use);
    }

    #[test]
    fn lend_receive_unref_round_trip() {
        let mut p = pool(16, 0);
        let mut out = Vec::new();
        p.lend(3, 4, &mut out);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|&a| a < 4 * 2048), "low frames first: {out:?}");
        assert_eq!(p.lent_to(3), 4);
        check(&p);
        p.receive(out[1] + 256, 3);
        assert_eq!(p.lent_to(3), 3);
        assert_eq!(p.counts().taken, 1);
        assert!(p.unref(out[1] + 300), "one reference: freed");
        check(&p);
        assert_eq!(p.counts().free, 13);
    }

    #[test]
    fn flood_frame_is_freed_by_its_last_reader_only() {
        let mut p = pool(8, 0);
        let f = p.alloc().unwrap();
        p.add_refs(f, 1023); // 1024 destinations
        for _ in 0..1023 {
            assert!(!p.unref(f));
        }
        check(&p);
        assert_eq!(p.counts().taken, 1);
        assert!(p.unref(f));
        assert_eq!(p.counts(), PoolCounts { frames: 8, free: 8, reserved: 0, lent: 0, taken: 0 });
    }

    #[test]
    #[should_panic(expected = "double free")]
    #[cfg(debug_assertions)]
    fn a_second_release_is_caught() {
        let mut p = pool(4, 0);
        let f = p.alloc().unwrap();
        p.unref(f);
        p.unref(f);
    }

    #[test]
    fn reclaim_returns_exactly_what_a_port_held() {
        let mut p = pool(32, 0);
        let mut a = Vec::new();
        let mut b = Vec::new();
        p.lend(1, 5, &mut a);
        p.lend(2, 7, &mut b);
        p.receive(a[0], 1); // the worker holds one of port 1's frames (e.g. staged elsewhere)
        assert_eq!(p.reclaim(1), 4);
        assert_eq!(p.lent_to(1), 0);
        assert_eq!(p.lent_to(2), 7);
        check(&p);
        p.unref(a[0]);
        assert_eq!(p.counts().free, 32 - 7);
        check(&p);
    }

    #[test]
    fn reserved_frames_stay_apart() {
        let mut p = pool(8, 2);
        let mut out = Vec::new();
        p.lend(1, 100, &mut out);
        assert_eq!(out.len(), 6, "only unreserved frames are lent");
        assert!(p.alloc().is_none());
        let r = p.alloc_reserved().unwrap();
        assert!(r < 2 * 2048);
        p.add_refs(r, 2);
        assert!(!p.unref(r));
        assert!(!p.unref(r));
        assert!(p.unref(r));
        assert!(p.alloc().is_none(), "a reserved frame goes back to the reserved area");
        check(&p);
    }

    #[test]
    fn unlend_gives_back_what_the_ring_refused() {
        let mut p = pool(8, 0);
        let mut out = Vec::new();
        p.lend(4, 6, &mut out);
        p.unlend(4, &out[2..]);
        assert_eq!(p.lent_to(4), 2);
        assert_eq!(p.counts().free, 6);
        check(&p);
    }
}
