//! One AF_XDP ring shared with the kernel: a power-of-two array of entries and two free-running
//! u32 indices. One side produces (writes entries, then publishes its index with Release), the
//! other consumes (reads the producer index with Acquire, reads entries, then publishes its own
//! index with Release so the producer may reuse the slots). Each side keeps cached copies of both
//! indices and touches the shared cache lines only when its cache says it must.
//!
//! We produce on the fill and TX rings and consume the RX and completion rings.

use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `struct xdp_desc` (linux/if_xdp.h): an RX or TX descriptor.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}
const _: () = assert!(std::mem::size_of::<XdpDesc>() == 16);

/// `struct xdp_ring_offset` (linux/if_xdp.h): where a ring's fields live in its mapping.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}
const _: () = assert!(std::mem::size_of::<RingOffset>() == 32);

/// `XDP_RING_NEED_WAKEUP`: the kernel wants a syscall before it looks at this ring again.
const NEED_WAKEUP: u32 = 1;

/// The mapping of one ring and raw views into it.
struct Mapped<T> {
    map: NonNull<libc::c_void>,
    map_len: usize,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
    size: u32,
    _t: PhantomData<T>,
}

impl<T> Mapped<T> {
    /// Maps the ring of `size` entries at page offset `pgoff` of the socket `fd`.
    fn new(fd: RawFd, pgoff: u64, off: &RingOffset, size: u32) -> std::io::Result<Self> {
        debug_assert!(size.is_power_of_two());
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: a fresh shared mapping of the socket's ring, checked for MAP_FAILED below; the
        // kernel sized the ring to hold `size` entries after `desc`.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the mapping holds the whole ring at the offsets the kernel reported.
        Ok(unsafe { Self::at(map.cast(), map_len, off, size) })
    }

    /// Views a ring laid out at `base` as `off` says.
    ///
    /// # Safety
    /// `base + off.*` must point into memory that holds the ring's indices, flags and `size`
    /// entries for as long as the view lives; `map_len` is what Drop unmaps (0: nothing).
    unsafe fn at(base: *mut u8, map_len: usize, off: &RingOffset, size: u32) -> Self {
        // SAFETY: per this function's contract, every offset lies inside the memory at `base`.
        let at = |o: u64| NonNull::new(unsafe { base.add(o as usize) }).expect("inside a non-null mapping");
        Mapped {
            map: at(0).cast(),
            map_len,
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            entries: at(off.desc).cast(),
            mask: size - 1,
            size,
            _t: PhantomData,
        }
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping, u32-aligned (kernel layout).
        unsafe { self.producer.as_ref() }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    #[inline]
    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: masked index < size; the entries array holds `size` entries.
        unsafe { self.entries.as_ptr().add((idx & self.mask) as usize) }
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        if self.map_len > 0 {
            // SAFETY: exactly the mapping created in `new`; nothing points into it any more.
            unsafe { libc::munmap(self.map.as_ptr(), self.map_len) };
        }
    }
}

/// A ring we produce into (fill: frame addresses; TX: descriptors).
pub struct ProdRing<T> {
    m: Mapped<T>,
    cached_prod: u32,
    cached_cons: u32,
}

/// A ring we consume from (RX: descriptors; completion: frame addresses).
pub struct ConsRing<T> {
    m: Mapped<T>,
    cached_prod: u32,
    cached_cons: u32,
}

// SAFETY: a ring is a mapping plus cursors; it is used by one thread at a time (the worker that
// owns it) and the kernel synchronises through the atomics.
unsafe impl<T: Send> Send for ProdRing<T> {}
// SAFETY: as for ProdRing.
unsafe impl<T: Send> Send for ConsRing<T> {}

impl<T: Copy> ProdRing<T> {
    pub(crate) fn map(fd: RawFd, pgoff: u64, off: &RingOffset, size: u32) -> std::io::Result<Self> {
        let m = Mapped::new(fd, pgoff, off, size)?;
        let (p, c) = (m.producer().load(Ordering::Relaxed), m.consumer().load(Ordering::Acquire));
        Ok(ProdRing { m, cached_prod: p, cached_cons: c })
    }

    pub fn size(&self) -> u32 {
        self.m.size
    }

    /// Free slots; reads the kernel's consumer index only when the cached view has fewer than `want`.
    #[inline]
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.m.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.m.consumer().load(Ordering::Acquire);
        self.m.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes as many of `items` as fit and publishes them; returns how many went in.
    #[inline]
    pub fn produce(&mut self, items: &[T]) -> u32 {
        let n = self.free(items.len() as u32).min(items.len() as u32);
        for (i, item) in items[..n as usize].iter().enumerate() {
            // SAFETY: slots [cached_prod, cached_prod + n) are free (the kernel consumed them).
            unsafe { self.m.slot(self.cached_prod.wrapping_add(i as u32)).write(*item) };
        }
        if n > 0 {
            self.cached_prod = self.cached_prod.wrapping_add(n);
            self.m.producer().store(self.cached_prod, Ordering::Release);
        }
        n
    }

    /// Entries published and not yet taken by the kernel (a fresh read of its index).
    #[inline]
    pub fn queued(&mut self) -> u32 {
        self.cached_cons = self.m.consumer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// The entries the kernel has not taken, oldest first (a fresh read of its index).
    pub fn unconsumed(&mut self) -> impl Iterator<Item = T> + '_ {
        let from = self.m.consumer().load(Ordering::Acquire);
        let n = self.cached_prod.wrapping_sub(from);
        // SAFETY: slots in [from, cached_prod) hold entries we wrote and the kernel has not read.
        (0..n).map(move |i| unsafe { self.m.slot(from.wrapping_add(i)).read() })
    }

    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: the flags word lies in our live mapping.
        unsafe { self.m.flags.as_ref() }.load(Ordering::Relaxed) & NEED_WAKEUP != 0
    }
}

impl<T: Copy> ConsRing<T> {
    pub(crate) fn map(fd: RawFd, pgoff: u64, off: &RingOffset, size: u32) -> std::io::Result<Self> {
        let m = Mapped::new(fd, pgoff, off, size)?;
        let (p, c) = (m.producer().load(Ordering::Acquire), m.consumer().load(Ordering::Relaxed));
        Ok(ConsRing { m, cached_prod: p, cached_cons: c })
    }

    /// Entries ready to read, at most `max`; reads the kernel's producer index only when the
    /// cached view is empty.
    #[inline]
    pub fn available(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n == 0 {
            self.cached_prod = self.m.producer().load(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        n.min(max)
    }

    /// Reads up to `max` entries, hands each to `f` in order, then releases their slots to the
    /// kernel. Returns how many were read.
    #[inline]
    pub fn consume(&mut self, max: u32, mut f: impl FnMut(T)) -> u32 {
        let n = self.available(max);
        for i in 0..n {
            // SAFETY: slots [cached_cons, cached_cons + n) were published by the kernel (Acquire
            // on its producer index above) and are ours until we release them.
            f(unsafe { self.m.slot(self.cached_cons.wrapping_add(i)).read() });
        }
        if n > 0 {
            self.cached_cons = self.cached_cons.wrapping_add(n);
            self.m.consumer().store(self.cached_cons, Ordering::Release);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring laid out as the kernel lays it out, in plain memory, with `size` entries.
    fn fake<T>(size: u32) -> (Vec<u64>, RingOffset) {
        let off = RingOffset { producer: 0, consumer: 64, desc: 192, flags: 128 };
        let bytes = off.desc as usize + size as usize * std::mem::size_of::<T>();
        (vec![0u64; bytes.div_ceil(8)], off)
    }

    fn view<T>(mem: &mut [u64], off: &RingOffset, size: u32) -> Mapped<T> {
        // SAFETY: `fake` sized `mem` for the ring; it outlives the view in each test; map_len 0:
        // nothing to unmap.
        unsafe { Mapped::at(mem.as_mut_ptr().cast(), 0, off, size) }
    }

    #[test]
    fn producer_fills_until_the_consumer_frees_slots_and_wraps() {
        let (mut mem, off) = fake::<u64>(4);
        let mut p =
            ProdRing { m: view::<u64>(&mut mem, &off, 4), cached_prod: u32::MAX - 1, cached_cons: u32::MAX - 1 };
        p.m.producer().store(u32::MAX - 1, Ordering::Relaxed);
        p.m.consumer().store(u32::MAX - 1, Ordering::Relaxed);
        assert_eq!(p.produce(&[1, 2, 3, 4, 5]), 4, "four slots, the fifth waits");
        assert_eq!(p.m.producer().load(Ordering::Relaxed), 2, "index wrapped past u32::MAX");
        assert_eq!(p.produce(&[5]), 0);
        assert_eq!(p.unconsumed().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        // The kernel takes two.
        p.m.consumer().store(0, Ordering::Release);
        assert_eq!(p.queued(), 2);
        assert_eq!(p.produce(&[5, 6, 7]), 2);
        assert_eq!(p.unconsumed().collect::<Vec<_>>(), vec![3, 4, 5, 6]);
    }

    #[test]
    fn consumer_reads_what_was_published_and_releases_it() {
        let (mut mem, off) = fake::<XdpDesc>(8);
        let mut c = ConsRing { m: view::<XdpDesc>(&mut mem, &off, 8), cached_prod: 0, cached_cons: 0 };
        for i in 0..3u32 {
            // SAFETY: test memory laid out as a ring of 8 entries.
            unsafe { c.m.slot(i).write(XdpDesc { addr: u64::from(i) * 4096, len: 60 + i, options: 0 }) };
        }
        assert_eq!(c.available(64), 0, "nothing published yet");
        c.m.producer().store(3, Ordering::Release);
        let mut got = Vec::new();
        assert_eq!(c.consume(2, |d| got.push(d.len)), 2);
        assert_eq!(c.m.consumer().load(Ordering::Relaxed), 2);
        assert_eq!(c.consume(64, |d| got.push(d.len)), 1);
        assert_eq!(got, vec![60, 61, 62]);
        assert_eq!(c.consume(64, |_| unreachable!()), 0);
    }
}
