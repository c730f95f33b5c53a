//! What the datapath reports: counters per port summed over workers, the workers' own, the
//! kernel-side paths' (fast paths, tc flood), departed ports, and each network's UMEM census.

use super::endpoint::EndpointRec;
use super::Network;
use crate::bpf;
use crate::counters::{PortStats, SharedPortCounters, UmemStats, WorkerStats};
use crate::frame::MacAddr;
use crate::fwd::{self, PortId, PARENT};
use crate::{Datapath, FastPath, NetId};

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
    /// What the frames of the network's UMEMs are doing, summed over workers.
    pub umem: UmemStats,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub workers: Vec<WorkerStats>,
    pub networks: Vec<NetworkReport>,
    /// The XDP programs' own counters, by [`bpf::XDP_STAT_NAMES`].
    pub xdp: Vec<(&'static str, u64)>,
    /// The counters of endpoints removed since the start, so that sums over ports still balance.
    pub departed: PortStats,
    /// The fast path in use, and what the kernel-side paths (fast paths, tc flood) did in total.
    pub fast_path: FastPath,
    pub kernel: KernelPaths,
}

/// What the kernel-side paths did, datapath-wide (past endpoints included). The accounting
/// invariant over ports and workers needs their flood terms: Σrx + Σ flood_copies (workers' and
/// these) = Σtx + Σdrops + Σ flood_empty.
#[derive(Debug, Clone, Default)]
pub struct KernelPaths {
    /// Frames received from parents that no worker saw (Σ ports' rx = Σ workers' rx + this).
    pub rx: u64,
    /// Outcomes at endpoints: delivered (frames, bytes) and not (down, oversize, errors); and
    /// what xmv_endpoint_tc took from containers (rx, lost).
    pub to_endpoints: bpf::FastCount,
    /// What xmv_endpoint_tc sent to the wire (frames, bytes) and could not (oversize).
    pub to_wire: bpf::FastCount,
    /// The tc flood: group frames it fanned out, their extra outcomes, floods without a target.
    pub flood_frames: u64,
    pub flood_copies: u64,
    pub flood_empty: u64,
}

impl Datapath {
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
                        // Frames the kernel-side paths took were received from the parent too,
                        // and what xmv_endpoint_tc sent to the wire was transmitted on it.
                        let mut s = sum(&n.parent_counters);
                        let k = self.kernel_rx(n);
                        s.rx += k.0;
                        s.rx_bytes += k.1;
                        s.add_fast(&self.parent_fast_delta(n));
                        // Frames for the workers that never reached their flood socket.
                        let lost = self.flood_delta(n).lost;
                        s.rx += lost;
                        s.drops[fwd::DropReason::SocketFull as usize] += lost;
                        s
                    },
                },
                umem: n.umem.iter().fold(UmemStats::default(), |mut acc, u| {
                    acc.add(&u.get());
                    acc
                }),
                endpoints: n
                    .endpoints
                    .iter()
                    .map(|(&pid, ep)| PortReport {
                        id: pid,
                        ifname: ep.iface.name.clone(),
                        mac: ep.info.mac,
                        up: ep.info.up,
                        xsk_mode: match ep.fast {
                            Some(FastPath::Tc) => "tc-fast-path",
                            Some(FastPath::Xdp) => "xdp-fast-path",
                            _ => ep.xsk_mode.name(),
                        },
                        stats: {
                            let mut s = sum(&ep.counters);
                            s.add_fast(&self.fast_delta(ep));
                            s
                        },
                    })
                    .collect(),
            })
            .collect();
        let workers = self.workers.iter().enumerate().map(|(i, h)| h.counters.snapshot(i, h.cpu)).collect();
        let xdp = bpf::XDP_STAT_NAMES.iter().copied().zip(self.bpf.xdp_stats()).collect();
        let mut kernel = KernelPaths::default();
        for n in self.networks.values() {
            for f in n.endpoints.values().map(|ep| self.fast_delta(ep)).chain([n.fast_departed]) {
                kernel.to_endpoints.add(&f);
            }
            kernel.to_wire.add(&self.parent_fast_delta(n));
            let fl = self.flood_delta(n);
            kernel.flood_frames += fl.frames;
            kernel.flood_copies += fl.copies();
            kernel.flood_empty += fl.empty;
            kernel.rx += self.kernel_rx(n).0;
        }
        Report { workers, networks, xdp, departed: self.departed.clone(), fast_path: self.cfg.fast_path, kernel }
    }

    /// What the kernel-side paths did for `ep` since it was added.
    pub(crate) fn fast_delta(&self, ep: &EndpointRec) -> bpf::FastCount {
        self.bpf.fast_counts(ep.iface.slot).since(&ep.fast_base)
    }

    /// What xmv_endpoint_tc sent to `n`'s wire (and could not) since the network got its slot.
    fn parent_fast_delta(&self, n: &Network) -> bpf::FastCount {
        self.bpf.fast_counts(n.parent.slot).since(&n.parent_fast_base)
    }

    /// What the tc flood did on `n`'s parent since the network got its slot.
    fn flood_delta(&self, n: &Network) -> bpf::FloodCount {
        let now = self.bpf.flood_counts(n.parent.slot);
        bpf::FloodCount {
            frames: now.frames.wrapping_sub(n.flood_base.frames),
            outcomes: now.outcomes.wrapping_sub(n.flood_base.outcomes),
            empty: now.empty.wrapping_sub(n.flood_base.empty),
            lost: now.lost.wrapping_sub(n.flood_base.lost),
        }
    }

    /// Frames (and bytes) of `n`'s parent that the kernel-side paths handled without a worker:
    /// every outcome at an endpoint is a received frame, but a flood of k targets is one frame
    /// with k outcomes (k − 1 copies; an empty flood is one frame with none), and the outcomes of
    /// containers' frames xmv_endpoint_tc delivered locally came from endpoints (each container
    /// frame it decided has one outcome: at an endpoint, or on the wire).
    fn kernel_rx(&self, n: &Network) -> (u64, u64) {
        let mut out = bpf::FastCount::default();
        for f in n.endpoints.values().map(|ep| self.fast_delta(ep)).chain([n.fast_departed]) {
            out.add(&f);
        }
        let fl = self.flood_delta(n);
        let wire = self.parent_fast_delta(n);
        let local = out.rx.wrapping_sub(wire.outcomes());
        let frames = (out.outcomes() + fl.empty).wrapping_sub(fl.copies()).wrapping_sub(local);
        (not_below_zero(frames), not_below_zero(out.bytes.wrapping_sub(out.local_bytes)))
    }
}

/// The per-CPU counters of different slots are read one after another while frames move: a
/// container's frame may be counted at its sender and not yet at its target, a flood's frame before
/// its outcomes, and a difference of them can come out below zero for a moment (wrapped). Shown as
/// 0 then; the next read, once the outcomes are in, is exact again.
fn not_below_zero(v: u64) -> u64 {
    if (v as i64) < 0 {
        0
    } else {
        v
    }
}
