//! What `network ls|inspect` and `stats` show: views of networks and their ports, read from the
//! daemon's registry and the datapath's report.

use std::collections::{BTreeMap, HashMap};

use xmacvlan_datapath::fwd::{DropReason, PortId};
use xmacvlan_datapath::{PortReport, Report};

use super::{Daemon, Network};
use crate::api::reply::{Departed, FastPathView, NetworkStats, PortEndpoint, PortKernel, PortStats, Stats, WorkerView};
use crate::api::{EndpointView, NetworkView, SubnetView};
use crate::state::{EndpointKind, EndpointState};

impl Daemon {
    pub(super) fn view(&self, n: &Network) -> NetworkView {
        let dom = n.domain.and_then(|k| self.domains.get(&k));
        NetworkView {
            name: n.name.clone(),
            id: n.id,
            driver: "macvlan".into(),
            parent: n.parent.clone(),
            vlan: n.vlan,
            internal: n.internal,
            mode: n.mode.clone(),
            options: n.options.iter().filter(|(k, _)| k != "parent" && k != "macvlan_mode").cloned().collect(),
            ipv6: n.ipam.ipv6,
            subnets: n
                .ipam
                .pools
                .iter()
                .map(|p| SubnetView {
                    subnet: p.subnet.to_string(),
                    gateway: p.gateway.map(|g| g.to_string()),
                    ip_range: p.range.map(|r| r.to_string()),
                    aux_addresses: p.aux.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
                })
                .collect(),
            xdp_mode: dom.and_then(|d| self.dp.xdp_mode(d.dp)).unwrap_or("none").into(),
            status: n.status.clone(),
            // An inactive network's endpoints are dormant (kept for when it comes back): listed too.
            endpoints: n.endpoints.iter().map(|e| &e.st).chain(&n.dormant).map(endpoint_view).collect(),
            cni: n.cni,
        }
    }

    pub(super) fn stats(&self) -> Stats {
        let report = self.dp.report();
        let workers = report
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (rx, tx, dr) = self.rates.per_sec.get(i).copied().unwrap_or_default();
                WorkerView { counters: w.clone(), rx_pps: rx.round(), tx_pps: tx.round(), drop_pps: dr.round() }
            })
            .collect();
        let networks = self.nets.values().filter_map(|n| self.network_stats(n, &report)).collect();
        let xdp = report.xdp.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let d = &report.departed;
        let departed = Departed { rx: d.rx, tx: d.tx, drops: drops_by_reason(&d.drops), drops_total: d.drops_total() };
        let k = &report.kernel;
        // Received by the kernel-side paths: from the wire, and from containers (xmv_endpoint_tc,
        // the frames its collector refused included).
        let (e, wire) = (&k.to_endpoints, &k.to_wire);
        let fast_path = FastPathView {
            mode: report.fast_path.name().into(),
            rx: k.rx + e.rx + e.lost,
            from_containers: e.rx + e.lost,
            delivered: e.frames + wire.frames,
            to_wire: wire.frames,
            bytes: e.bytes + wire.bytes,
            dropped: e.dropped() + wire.dropped() + e.lost,
            flood_frames: k.flood_frames,
            flood_copies: k.flood_copies,
            flood_empty: k.flood_empty,
        };
        Stats { workers, xdp, networks, departed, fast_path }
    }

    /// One network's ports and their counters, as `stats` lists them and `inspect` shows them
    /// under "counters"; None while the network is inactive.
    pub(super) fn network_stats(&self, n: &Network, report: &Report) -> Option<NetworkStats> {
        let dom = self.domains.get(&n.domain?)?;
        let r = report.networks.iter().find(|r| r.id == dom.dp)?;
        // The domain's ports by id: one lookup per endpoint, not a scan of the domain each.
        let by_port: HashMap<PortId, &PortReport> = r.endpoints.iter().map(|p| (p.id, p)).collect();
        let mut ports = Vec::with_capacity(n.endpoints.len() + 1);
        if !dom.anchor {
            // Shared by every network on this parent.
            ports.push(port_stats("parent", &r.parent, None));
        }
        for e in n.endpoints.iter() {
            if let Some(p) = by_port.get(&e.port) {
                let place = PortEndpoint {
                    netns: e.netns().map(str::to_string),
                    ifname: e.st.ifname.clone(),
                    ips: e.st.addrs.clone(),
                };
                ports.push(port_stats(if e.netns().is_some() { "endpoint" } else { "tap" }, p, Some(place)));
            }
        }
        Some(NetworkStats {
            name: n.name.clone(),
            parent: n.parent.clone(),
            vlan: n.vlan,
            mode: n.mode.clone(),
            internal: n.internal,
            xdp_mode: r.xdp_mode.into(),
            ports,
            umem: r.umem,
        })
    }
}

/// An endpoint as `ls` and `inspect` list it, from what the state keeps of it.
pub(super) fn endpoint_view(st: &EndpointState) -> EndpointView {
    let netns = match &st.kind {
        EndpointKind::Veth { netns, .. } => Some(netns.clone()),
        EndpointKind::Tap { .. } => None,
    };
    EndpointView {
        kind: if netns.is_some() { "veth" } else { "tap" }.into(),
        netns,
        ifname: st.ifname.clone(),
        host_ifname: st.host.clone(),
        mac: st.mac.clone(),
        ips: st.addrs.clone(),
        mtu: st.mtu,
        source_macs: st.source_macs.clone(),
        container_id: st.cni.as_ref().map(|a| a.container_id.clone()),
    }
}

/// Drop counts by reason name, every reason listed.
fn drops_by_reason(drops: &[u64]) -> BTreeMap<String, u64> {
    DropReason::ALL.iter().map(|r| (r.name().to_string(), drops[*r as usize])).collect()
}

/// A port's counters in `stats`.
fn port_stats(kind: &str, p: &PortReport, endpoint: Option<PortEndpoint>) -> PortStats {
    PortStats {
        kind: kind.into(),
        name: p.ifname.clone(),
        mac: p.mac.to_string(),
        up: p.up,
        xsk_mode: p.xsk_mode.into(),
        rx: p.stats.rx,
        rx_bytes: p.stats.rx_bytes,
        tx: p.stats.tx,
        tx_bytes: p.stats.tx_bytes,
        drops: drops_by_reason(&p.stats.drops),
        drops_total: p.stats.drops_total(),
        pcp_stripped: p.stats.pcp_stripped,
        pcp_kept: p.stats.pcp_kept,
        kernel: PortKernel { xsk_fill_ring_empty: p.stats.xsk_fill_empty },
        endpoint,
    }
}
