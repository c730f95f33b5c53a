//! What `network ls|inspect` and `stats` show: views of networks and their ports, read from the
//! daemon's registry and the datapath's report.

use std::collections::HashMap;

use serde_json::{json, Value};
use xmacvlan_datapath::fwd::{DropReason, PortId};
use xmacvlan_datapath::{PortReport, Report};

use super::{Daemon, Network};
use crate::api::{EndpointView, NetworkView, SubnetView};

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
            endpoints: n
                .endpoints
                .iter()
                .map(|e| EndpointView {
                    kind: if e.netns().is_some() { "veth" } else { "tap" }.into(),
                    netns: e.netns().map(str::to_string),
                    ifname: e.st.ifname.clone(),
                    host_ifname: e.st.host.clone(),
                    mac: e.mac.to_string(),
                    ips: e.addrs.iter().map(|a| a.to_string()).collect(),
                    mtu: e.st.mtu,
                    source_macs: e.st.source_macs.clone(),
                    container_id: e.st.cni.as_ref().map(|a| a.container_id.clone()),
                })
                .collect(),
            cni: n.cni,
        }
    }

    pub(super) fn stats_json(&self) -> Value {
        let report = self.dp.report();
        let workers: Vec<Value> = report
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (rx, tx, dr) = self.rates.per_sec.get(i).copied().unwrap_or_default();
                json!({ "id": w.id, "cpu": w.cpu, "rx_frames": w.rx_frames, "tx_frames": w.tx_frames, "dropped": w.dropped,
                    "flood_copies": w.flood_copies, "flood_empty": w.flood_empty, "busy_loops": w.busy_loops,
                    "idle_sleeps": w.idle_sleeps, "tx_kicks": w.tx_kicks,
                    "rx_pps": rx.round(), "tx_pps": tx.round(), "drop_pps": dr.round() })
            })
            .collect();
        let networks: Vec<Value> = self.nets.values().filter_map(|n| self.network_stats(n, &report)).collect();
        let xdp: serde_json::Map<String, Value> = report.xdp.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let d = &report.departed;
        let drops: serde_json::Map<String, Value> =
            DropReason::ALL.iter().map(|r| (r.name().to_string(), json!(d.drops[*r as usize]))).collect();
        let departed = json!({ "rx": d.rx, "tx": d.tx, "drops": drops, "drops_total": d.drops_total() });
        let k = &report.kernel;
        // Received by the kernel-side paths: from the wire, and from containers (xmv_endpoint_tc,
        // the frames its collector refused included).
        let (e, wire) = (&k.to_endpoints, &k.to_wire);
        let fast = json!({ "mode": report.fast_path.name(), "rx": k.rx + e.rx + e.lost,
            "from_containers": e.rx + e.lost, "delivered": e.frames + wire.frames, "to_wire": wire.frames,
            "bytes": e.bytes + wire.bytes, "dropped": e.dropped() + wire.dropped() + e.lost,
            "flood_frames": k.flood_frames, "flood_copies": k.flood_copies, "flood_empty": k.flood_empty });
        json!({ "workers": workers, "xdp": xdp, "networks": networks, "departed": departed, "fast_path": fast })
    }

    /// One network's ports and their counters, as `stats` lists them and `inspect` shows them
    /// under "counters"; None while the network is inactive.
    pub(super) fn network_stats(&self, n: &Network, report: &Report) -> Option<Value> {
        let dom = self.domains.get(&n.domain?)?;
        let r = report.networks.iter().find(|r| r.id == dom.dp)?;
        // The domain's ports by id: one lookup per endpoint, not a scan of the domain each.
        let by_port: HashMap<PortId, &PortReport> = r.endpoints.iter().map(|p| (p.id, p)).collect();
        let mut ports = Vec::with_capacity(n.endpoints.len() + 1);
        if !dom.anchor {
            // Shared by every network on this parent.
            ports.push(port_json("parent", &r.parent));
        }
        for e in n.endpoints.iter() {
            if let Some(p) = by_port.get(&e.port) {
                let mut v = port_json(if e.netns().is_some() { "endpoint" } else { "tap" }, p);
                v["netns"] = json!(e.netns());
                v["ifname"] = json!(e.st.ifname);
                v["ips"] = json!(e.st.addrs);
                ports.push(v);
            }
        }
        let u = &r.umem;
        let umem = json!({ "frames": u.frames, "free": u.free, "flood": u.flood, "parent": u.parent,
            "endpoints": u.endpoints, "in_flight": u.in_flight, "umems": u.umems, "bytes": u.bytes });
        Some(
            json!({ "name": n.name, "parent": n.parent, "vlan": n.vlan, "mode": n.mode, "internal": n.internal, "xdp_mode": r.xdp_mode, "ports": ports, "umem": umem }),
        )
    }
}

/// A port's counters in `stats`.
pub(super) fn port_json(kind: &str, p: &PortReport) -> Value {
    let drops: serde_json::Map<String, Value> =
        DropReason::ALL.iter().map(|r| (r.name().to_string(), json!(p.stats.drops[*r as usize]))).collect();
    json!({ "kind": kind, "name": p.ifname, "mac": p.mac.to_string(), "up": p.up, "xsk_mode": p.xsk_mode,
        "rx": p.stats.rx, "rx_bytes": p.stats.rx_bytes, "tx": p.stats.tx, "tx_bytes": p.stats.tx_bytes,
        "drops": drops, "drops_total": p.stats.drops_total(),
        "pcp_stripped": p.stats.pcp_stripped, "pcp_kept": p.stats.pcp_kept,
        "kernel": { "xsk_fill_ring_empty": p.stats.xsk_fill_empty } })
}
