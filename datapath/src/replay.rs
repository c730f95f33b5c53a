//! A worker's plane without sockets: a frame in, the frames a worker would send out. The fuzzer
//! (`fuzz/fuzz_targets/frame.rs`) drives it, so that the code under test is the worker's own
//! [`Plane::handle`] — decide, the flood's variants and copies, the tag edits in UMEM — and not a
//! re-implementation of it.
//!
//! Each [`Replay::run`] checks what the worker tests check (plane.rs): the books balance
//! (Σrx + flood_copies = Σstaged + Σdrops + flood_empty) and every frame goes back to its pool.

use std::sync::Arc;

use crate::counters::{Counter, WorkerCounters};
use crate::fwd::{PortId, Table, PARENT};
use crate::plane::{FrameAddr, Plane};
use crate::pool::Pool;
use crate::xsk::{Area, TX_HEADROOM};
use crate::Error;

/// UMEM chunk size of the replay's areas.
const CHUNK: u32 = 2048;

/// Chunks per UMEM area.
pub const MAX_FRAMES: u32 = 8;

/// The longest frame [`Replay::run`] takes: a chunk behind the receive headroom.
pub const MAX_FRAME: usize = (CHUNK as u64 - TX_HEADROOM) as usize;

/// One frame the worker staged: where it goes and its bytes as they would leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub port: PortId,
    pub bytes: Vec<u8>,
}

/// A plane over two real (unregistered) UMEM areas: the parent's frames arrive in UMEM 0, the
/// endpoints' in UMEM 1 (one endpoint group), as in the worker's tests.
pub struct Replay {
    /// Mapped once: [`Replay::reset`] starts over on them, so an input costs no mmap.
    areas: [Arc<Area>; 2],
    plane: Plane,
    wc: WorkerCounters,
    /// Frames sent by the runs so far (they left the books' `staged` term).
    sent: u64,
}

impl Replay {
    /// `frames` (1 to [`MAX_FRAMES`]) chunks per UMEM; fewer than a flood needs make the worker
    /// count `no_buffer`.
    pub fn new(table: Table, frames: u32) -> Result<Self, Error> {
        let areas = [Arc::new(Area::new(MAX_FRAMES, CHUNK)?), Arc::new(Area::new(MAX_FRAMES, CHUNK)?)];
        let mut replay = Replay { areas, plane: Plane::new(table.clone()), wc: WorkerCounters::default(), sent: 0 };
        replay.reset(table, frames);
        Ok(replay)
    }

    /// Starts over with `table` and `frames` chunks per UMEM (the others are kept out of use as
    /// a pool's reserved frames are), counters at zero.
    pub fn reset(&mut self, table: Table, frames: u32) {
        assert!((1..=MAX_FRAMES).contains(&frames), "{frames} frames per UMEM");
        let ports: Vec<PortId> = std::iter::once(PARENT).chain(table.endpoints().iter().copied()).collect();
        self.plane.table = table;
        for (umem, area) in self.areas.iter().enumerate() {
            self.plane.set_pool(umem as u16, Some(Pool::new(Arc::clone(area), MAX_FRAMES - frames)));
        }
        self.plane.counters.clear();
        for port in ports {
            self.plane.set_counters(port, Some(Default::default()));
        }
        self.wc = WorkerCounters::default();
        self.sent = 0;
    }

    /// The table the plane decides with.
    pub fn table(&self) -> &Table {
        &self.plane.table
    }

    /// Receives `frame` (at most [`MAX_FRAME`] bytes) on `ingress` as the kernel hands it over,
    /// handles it, and sends everything staged. Err when the books or the pools do not balance,
    /// or when there was no frame to receive into.
    pub fn run(&mut self, frame: &[u8], ingress: PortId) -> Result<Vec<Sent>, String> {
        assert!(frame.len() <= MAX_FRAME, "a {}-byte frame does not fit a {CHUNK}-byte chunk", frame.len());
        let umem: u16 = if ingress == PARENT { 0 } else { 1 };
        if self.plane.counters.get(usize::from(ingress)).is_none_or(Option::is_none) {
            // A port the table does not know still has its frame counted as received and dropped.
            self.plane.set_counters(ingress, Some(Default::default()));
        }
        let mut lent = Vec::new();
        self.plane.pool(umem.into()).lend(ingress, 1, &mut lent);
        let Some(&chunk) = lent.first() else { return Err("no free frame to receive into".into()) };
        let addr = FrameAddr::new(umem, chunk + TX_HEADROOM);
        self.plane.pool(umem.into()).receive(addr.off(), ingress);
        // SAFETY: the chunk is ours (lent, then received) and MAX_FRAME fits behind its headroom.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), self.plane.ptr(addr), frame.len()) };
        self.plane.handle(addr, frame.len() as u32, ingress, &self.wc);
        self.check_books()?;
        let mut sent = Vec::with_capacity(self.plane.to_parent.len() + self.plane.to_endpoints.len());
        let to_parent = std::mem::take(&mut self.plane.to_parent);
        for d in &to_parent {
            let at = FrameAddr::new(0, d.addr);
            sent.push(Sent { port: PARENT, bytes: self.bytes(at, d.len) });
            self.plane.unref(at);
        }
        let to_endpoints = std::mem::take(&mut self.plane.to_endpoints);
        for s in &to_endpoints {
            sent.push(Sent { port: s.port, bytes: self.bytes(s.addr, s.len) });
            self.plane.unref(s.addr);
        }
        // Back, emptied, so that the next run stages without allocating as the worker does.
        (self.plane.to_parent, self.plane.to_endpoints) = (to_parent, to_endpoints);
        self.plane.to_parent.clear();
        self.plane.to_endpoints.clear();
        self.sent += sent.len() as u64;
        for (umem, pool) in self.plane.pools.iter().enumerate() {
            let c = pool.as_ref().map(Pool::counts).unwrap_or_default();
            if c.taken != 0 || c.lent != 0 || c.free + c.reserved != c.frames {
                return Err(format!("UMEM {umem}: a frame leaked: {c:?}"));
            }
        }
        Ok(sent)
    }

    /// Σrx + flood_copies = Σstaged + Σdrops + flood_empty, over this replay's runs so far.
    fn check_books(&self) -> Result<(), String> {
        let per_port = self.plane.counters.iter().flatten();
        let rx: u64 = per_port.clone().map(|c| c.rx.get()).sum();
        let drops: u64 = per_port.map(|c| c.drops.iter().map(Counter::get).sum::<u64>()).sum();
        let staged = (self.plane.to_parent.len() + self.plane.to_endpoints.len()) as u64;
        let (copies, empty) = (self.wc.flood_copies.get(), self.wc.flood_empty.get());
        if rx + copies != self.sent + staged + drops + empty {
            return Err(format!(
                "books: rx {rx} + flood_copies {copies} != sent {} + staged {staged} + drops {drops} + flood_empty {empty}",
                self.sent
            ));
        }
        Ok(())
    }

    fn bytes(&self, at: FrameAddr, len: u32) -> Vec<u8> {
        // SAFETY: a staged frame lies inside its chunk, which holds a reference until unref.
        unsafe { std::slice::from_raw_parts(self.plane.ptr(at), len as usize).to_vec() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MacAddr;
    use crate::fwd::PortInfo;

    const OUTSIDE: [u8; 6] = [0x02, 0x99, 0, 0, 0, 1];

    fn table() -> Table {
        let mut t = Table::new(MacAddr([0x02, 0, 0, 0, 0, 1]), 1500);
        for id in 1..=3u16 {
            let mut info = PortInfo::endpoint(MacAddr([0x02, 0x42, 0, 0, 0, id as u8]), 1500);
            info.vlan = if id == 3 { 10 } else { 0 };
            t.add_endpoint(id, info).unwrap();
        }
        t
    }

    fn broadcast(tci: Option<u16>) -> Vec<u8> {
        let mut f = [[0xff; 6], OUTSIDE].concat();
        if let Some(t) = tci {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&t.to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x06]);
        f.resize(f.len() + 46, 0xa5);
        f
    }

    #[test]
    fn a_flood_comes_out_once_per_target_with_its_edit() {
        let mut r = Replay::new(table(), 4).unwrap();
        let ports = |sent: &[Sent]| sent.iter().map(|s| s.port).collect::<Vec<_>>();
        let sent = r.run(&broadcast(None), PARENT).unwrap();
        assert_eq!(ports(&sent), vec![1, 2]);
        assert!(sent.iter().all(|s| s.bytes == broadcast(None)));
        // VLAN 10 from the wire: popped for endpoint 3.
        let sent = r.run(&broadcast(Some(10)), PARENT).unwrap();
        assert_eq!(ports(&sent), vec![3]);
        assert_eq!(sent[0].bytes, broadcast(None));
        // From endpoint 3: the wire's copy gets the tag pushed.
        let mut from3 = broadcast(None);
        from3[6..12].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 3]);
        let sent = r.run(&from3, 3).unwrap();
        assert_eq!(ports(&sent), vec![PARENT]);
        assert_eq!(&sent[0].bytes[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(sent[0].bytes.len(), from3.len() + 4);
    }

    #[test]
    fn without_a_frame_for_a_copy_the_books_still_balance() {
        let mut t = table();
        let mut keep = PortInfo::endpoint(MacAddr([0x02, 0x42, 0, 0, 0, 4]), 1500);
        (keep.vlan, keep.keep_pcp) = (10, true);
        t.add_endpoint(4, keep).unwrap();
        let mut r = Replay::new(t.clone(), 1).unwrap();
        // PCP 5 on VLAN 10: popped for 3, priority-tagged for 4 — two variants, and the one frame
        // of UMEM 0 is the received one, so 3's copy is a no_buffer drop.
        let f = broadcast(Some((5 << 13) | 10));
        let sent = r.run(&f, PARENT).unwrap();
        assert_eq!(sent.iter().map(|s| s.port).collect::<Vec<_>>(), vec![4]);
        assert_eq!(&sent[0].bytes[12..16], &[0x81, 0x00, 0xa0, 0x00]);
        r.reset(t, 2);
        assert_eq!(r.run(&f, PARENT).unwrap().len(), 2, "with two frames both go out");
        assert_eq!(r.run(&f[..10], 1).unwrap(), vec![], "a runt is dropped and its frame recycled");
    }
}
