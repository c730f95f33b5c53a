//! Lock-free counters. Each (worker, port) pair has its own cache-padded block with exactly one
//! writer, so an increment is a plain load + store (no locked instruction, no shared cache line);
//! the control plane sums the blocks of all workers when asked.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::fwd::DropReason;

/// A counter written by one thread only.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Single-writer add: must only be called from the owning worker.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Per port, from the datapath's point of view: `rx` = received from the port, `tx` = delivered to it.
#[derive(Default, Debug)]
pub struct PortCounters {
    pub rx: Counter,
    pub rx_bytes: Counter,
    pub tx: Counter,
    pub tx_bytes: Counter,
    pub drops: [Counter; DropReason::COUNT],
    /// Frames delivered to this VLAN endpoint whose removed tag carried a non-zero priority (PCP).
    pub pcp_stripped: Counter,
    /// Frames delivered as priority-tagged (VID 0, PCP kept): endpoints with `keep_pcp`.
    pub pcp_kept: Counter,
    /// Times the kernel found this port's fill ring empty (XDP_STATISTICS, refreshed by the
    /// worker). The frames it dropped then are in `drops` (`xsk_rx_dropped`).
    pub xsk_fill_empty: Counter,
}

pub type SharedPortCounters = std::sync::Arc<CachePadded<PortCounters>>;

impl PortCounters {
    #[inline]
    pub fn dropped(&self, reason: DropReason) {
        self.drops[reason as usize].add(1);
    }
}

/// A plain-value copy of [`PortCounters`], summed over workers.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct PortStats {
    pub rx: u64,
    pub rx_bytes: u64,
    pub tx: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
    pub pcp_stripped: u64,
    pub pcp_kept: u64,
    pub xsk_fill_empty: u64,
}

impl PortStats {
    /// Adds what the kernel-side paths delivered to this port, and did not, to its counters; and
    /// at an endpoint what xmv_endpoint_tc took from its container (the frames the collector
    /// refused are received and dropped there).
    pub fn add_fast(&mut self, f: &crate::bpf::FastCount) {
        self.tx += f.frames;
        self.tx_bytes += f.bytes;
        self.rx += f.rx + f.lost;
        self.rx_bytes += f.rx_bytes;
        self.drops[DropReason::SocketFull as usize] += f.lost;
        self.drops[DropReason::DstDown as usize] += f.down;
        self.drops[DropReason::Oversize as usize] += f.oversize;
        self.drops[DropReason::TxError as usize] += f.errors;
        self.drops[DropReason::SpoofedSrc as usize] += f.spoofed_src;
        self.drops[DropReason::SpoofedIp as usize] += f.spoofed_ip;
        self.drops[DropReason::Isolated as usize] += f.isolated;
        self.drops[DropReason::NotRouted as usize] += f.not_routed;
    }

    pub fn add(&mut self, c: &PortCounters) {
        self.rx += c.rx.get();
        self.rx_bytes += c.rx_bytes.get();
        self.tx += c.tx.get();
        self.tx_bytes += c.tx_bytes.get();
        for (sum, d) in self.drops.iter_mut().zip(&c.drops) {
            *sum += d.get();
        }
        self.pcp_stripped += c.pcp_stripped.get();
        self.pcp_kept += c.pcp_kept.get();
        self.xsk_fill_empty += c.xsk_fill_empty.get();
    }

    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another port's totals (a removed port's, kept so the sums still balance).
    pub fn absorb(&mut self, o: &PortStats) {
        self.rx += o.rx;
        self.rx_bytes += o.rx_bytes;
        self.tx += o.tx;
        self.tx_bytes += o.tx_bytes;
        for (sum, d) in self.drops.iter_mut().zip(&o.drops) {
            *sum += d;
        }
        self.pcp_stripped += o.pcp_stripped;
        self.pcp_kept += o.pcp_kept;
        self.xsk_fill_empty += o.xsk_fill_empty;
    }
}

/// What the frames of one domain's UMEMs are doing on one worker, published by the worker
/// (see pool.rs): frames = free + flood + parent + endpoints + in_flight.
#[derive(Default, Debug)]
pub struct UmemCounters {
    pub frames: Counter,
    pub free: Counter,
    pub flood: Counter,
    pub parent: Counter,
    pub endpoints: Counter,
    pub in_flight: Counter,
    /// UMEMs (the parent's and one per endpoint group) and their pinned bytes.
    pub umems: Counter,
    pub bytes: Counter,
}

impl UmemCounters {
    pub fn set(&self, v: &UmemStats) {
        for (c, x) in [
            (&self.frames, v.frames),
            (&self.free, v.free),
            (&self.flood, v.flood),
            (&self.parent, v.parent),
            (&self.endpoints, v.endpoints),
            (&self.in_flight, v.in_flight),
            (&self.umems, v.umems),
            (&self.bytes, v.bytes),
        ] {
            c.0.store(x, Relaxed);
        }
    }

    pub fn get(&self) -> UmemStats {
        UmemStats {
            frames: self.frames.get(),
            free: self.free.get(),
            flood: self.flood.get(),
            parent: self.parent.get(),
            endpoints: self.endpoints.get(),
            in_flight: self.in_flight.get(),
            umems: self.umems.get(),
            bytes: self.bytes.get(),
        }
    }
}

/// A plain-value copy of [`UmemCounters`], summed over workers: where a network's UMEM frames are,
/// `frames = free + flood + parent + endpoints + in_flight` ([`UmemStats::balanced`]).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(default))]
pub struct UmemStats {
    pub frames: u64,
    pub free: u64,
    pub flood: u64,
    pub parent: u64,
    pub endpoints: u64,
    pub in_flight: u64,
    pub umems: u64,
    pub bytes: u64,
}

impl UmemStats {
    pub fn add(&mut self, o: &UmemStats) {
        self.frames += o.frames;
        self.free += o.free;
        self.flood += o.flood;
        self.parent += o.parent;
        self.endpoints += o.endpoints;
        self.in_flight += o.in_flight;
        self.umems += o.umems;
        self.bytes += o.bytes;
    }

    /// The frames that are somewhere.
    pub fn accounted(&self) -> u64 {
        self.free + self.flood + self.parent + self.endpoints + self.in_flight
    }

    /// Every frame is somewhere, and there are frames.
    pub fn balanced(&self) -> bool {
        self.frames > 0 && self.frames == self.accounted()
    }
}

impl std::fmt::Display for UmemStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frames {} {} free {} + flood {} + parent {} + endpoints {} + in_flight {}",
            self.frames,
            if self.balanced() { "=" } else { "≠" },
            self.free,
            self.flood,
            self.parent,
            self.endpoints,
            self.in_flight
        )
    }
}

/// Per worker totals.
#[derive(Default, Debug)]
pub struct WorkerCounters {
    pub rx_frames: Counter,
    pub tx_frames: Counter,
    pub dropped: Counter,
    /// Extra copies made for floods: frames out = frames in + flood_copies − drops.
    pub flood_copies: Counter,
    /// Floods that found no target at all: rx + flood_copies = tx + drops + flood_empty.
    pub flood_empty: Counter,
    /// Loop iterations that found work, and times the worker went to sleep in poll().
    pub busy_loops: Counter,
    pub idle_sleeps: Counter,
    /// sendto() kicks issued (one per TX batch per socket at most).
    pub tx_kicks: Counter,
}

#[derive(Default, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(default))]
pub struct WorkerStats {
    pub id: usize,
    pub cpu: Option<usize>,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub dropped: u64,
    pub flood_copies: u64,
    pub flood_empty: u64,
    pub busy_loops: u64,
    pub idle_sleeps: u64,
    pub tx_kicks: u64,
}

impl WorkerCounters {
    pub fn snapshot(&self, id: usize, cpu: Option<usize>) -> WorkerStats {
        WorkerStats {
            id,
            cpu,
            rx_frames: self.rx_frames.get(),
            tx_frames: self.tx_frames.get(),
            dropped: self.dropped.get(),
            flood_copies: self.flood_copies.get(),
            flood_empty: self.flood_empty.get(),
            busy_loops: self.busy_loops.get(),
            idle_sleeps: self.idle_sleeps.get(),
            tx_kicks: self.tx_kicks.get(),
        }
    }
}
