//! What `network ls|inspect` and `stats` show: views of networks and their ports, made from the
//! daemon's registry and posted on the board (`board`), and the datapath's port counters as shown.

use std::collections::BTreeMap;

use xmacvlan_datapath::fwd::DropReason;
use xmacvlan_datapath::PortReport;

use super::board::{Ports, Posted};
use super::ipvlan;
use super::{Daemon, Network, Owner};
use crate::api::reply::{PortEndpoint, PortKernel, PortStats};
use crate::api::{EndpointView, NetworkView, SubnetView};
use crate::state::{EndpointKind, EndpointState};

impl Daemon {
    pub(super) fn view(&self, n: &Network) -> NetworkView {
        let dom = n.domain.and_then(|k| self.domains.get(&k));
        NetworkView {
            name: n.name.clone(),
            id: n.id,
            driver: n.driver().name().into(),
            parent: n.parent.clone(),
            vlan: n.vlan,
            internal: n.internal,
            mode: n.mode.clone(),
            ipvlan_flag: n.opts.ipvlan.map(|i| i.flag.name().to_string()),
            options: n
                .options
                .iter()
                .filter(|(k, _)| !["parent", "macvlan_mode", "ipvlan_mode", "ipvlan_flag"].contains(&k.as_str()))
                .cloned()
                .collect(),
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
            xdp_mode: dom.and_then(|d| self.dp().xdp_mode(d.dp)).unwrap_or("none").into(),
            status: n.status.clone(),
            // An inactive network's endpoints are dormant (kept for when it comes back): listed too.
            endpoints: n.endpoints.iter().map(|e| &e.st).chain(&n.dormant).map(endpoint_view).collect(),
            cni: n.owner == Owner::Cni,
            docker: n.owner == Owner::Docker,
            docker_name: n.docker_name.clone(),
        }
    }

    /// Network `n` as the board shows it (see `board`).
    pub(super) fn posted(&self, n: &Network) -> Posted {
        let dom = n.domain.and_then(|k| self.domains.get(&k));
        let ports = dom.map(|d| Ports {
            dp: d.dp,
            anchor: d.anchor,
            endpoints: n
                .endpoints
                .iter()
                .map(|e| {
                    let place = PortEndpoint {
                        netns: e.netns().map(str::to_string),
                        ifname: e.st.ifname.clone(),
                        ips: e.st.addrs.clone(),
                    };
                    let kind = if matches!(e.st.kind, EndpointKind::Tap { .. }) { "tap" } else { "endpoint" };
                    (e.port, kind, place)
                })
                .collect(),
        });
        Posted { view: self.view(n), ports }
    }

    /// Posts network `name` as it is now (or takes it down: it is gone).
    pub(super) fn post(&self, name: &str) {
        self.board.post(name, self.nets.get(name).map(|n| self.posted(n)));
    }

    /// Posts every network as it is now.
    pub(super) fn post_all(&self) {
        self.board.post_all(self.nets.iter().map(|(k, n)| (k.clone(), self.posted(n))).collect());
    }
}

/// An endpoint as `ls` and `inspect` list it, from what the state keeps of it.
pub(super) fn endpoint_view(st: &EndpointState) -> EndpointView {
    let (kind, netns, endpoint_id) = match &st.kind {
        EndpointKind::Veth { netns, .. } => ("veth", Some(netns.clone()), None),
        EndpointKind::Tap { .. } => ("tap", None, None),
        EndpointKind::Docker { endpoint_id } => ("docker", None, Some(endpoint_id.clone())),
    };
    EndpointView {
        kind: kind.into(),
        netns,
        ifname: st.ifname.clone(),
        host_ifname: st.host.clone(),
        mac: st.mac.clone(),
        ips: st.addrs.clone(),
        mtu: st.mtu,
        source_macs: st.source_macs.clone(),
        container_id: st.cni.as_ref().map(|a| a.container_id.clone()),
        endpoint_id,
        spoof_check: st.spoof_check,
        ip_guard: st.ip_guard,
        ipvlan_id: st.ipvlan_id,
        link_local: st.ipvlan_id.zip(st.mac.parse().ok()).map(|(id, mac)| ipvlan::link_local(mac, id).to_string()),
    }
}

/// Drop counts by reason name, every reason listed.
pub(super) fn drops_by_reason(drops: &[u64]) -> BTreeMap<String, u64> {
    DropReason::ALL.iter().map(|r| (r.name().to_string(), drops[*r as usize])).collect()
}

/// A port's counters in `stats`.
pub(super) fn port_stats(kind: &str, p: &PortReport, endpoint: Option<PortEndpoint>) -> PortStats {
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
