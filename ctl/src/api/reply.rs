//! What the daemon answers, request by request (the `data` of a [`Reply`](super::Reply)), typed
//! for both sides: the daemon builds these and every client reads them. The JSON on the wire is
//! what `--format json` prints; fields a reply gains later are ignored by older readers, and a
//! counter an older daemon does not send reads as 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xmacvlan_datapath::counters::{UmemStats, WorkerStats};

/// `network inspect` / `ls` view of a network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkView {
    pub name: String,
    pub id: u32,
    pub driver: String,
    /// None for an internal network.
    pub parent: Option<String>,
    /// The 802.1Q VLAN of a dotted parent (`eth0.50` → 50); 0 when untagged.
    pub vlan: u16,
    pub internal: bool,
    /// The macvlan mode, or an ipvlan network's ipvlan_mode.
    pub mode: String,
    /// An ipvlan network's ipvlan_flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipvlan_flag: Option<String>,
    /// The other driver options (`nodst`, `vlan_pcp`) as given.
    pub options: Vec<(String, String)>,
    pub ipv6: bool,
    pub subnets: Vec<SubnetView>,
    pub xdp_mode: String,
    /// "active", or why not (e.g. the parent is missing).
    pub status: String,
    pub endpoints: Vec<EndpointView>,
    /// Made by the CNI plugin (and removed with its last attachment).
    #[serde(default)]
    pub cni: bool,
    /// Made by Docker through the network driver: the name is Docker's NetworkID.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub docker: bool,
    /// A Docker network's name, once learnt from dockerd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubnetView {
    pub subnet: String,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub aux_addresses: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// "veth", "tap" or "docker" (a veth Docker moved into a container).
    pub kind: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub host_ifname: String,
    pub mac: String,
    pub ips: Vec<String>,
    pub mtu: u32,
    /// Source mode: the senders whose frames this endpoint gets a copy of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_macs: Vec<String>,
    /// A CNI attachment's container ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// A Docker endpoint's EndpointID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// The endpoint's own source guard, where it differs from its network's options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoof_check: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_guard: Option<bool>,
    /// An ipvlan endpoint's dev_id, and the link-local address it gives it (fe80::/64, from the
    /// parent's MAC with the dev_id in place of ff:fe, as the kernel's addrconf_ifid_eui48).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipvlan_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_local: Option<String>,
}

/// `network inspect`: the network, and its ports' counters while it is active.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkInspect {
    #[serde(flatten)]
    pub network: NetworkView,
    pub counters: Option<NetworkStats>,
}

/// `network rm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRemoved {
    pub removed: String,
}

/// `network connect`, and CNI ADD: the network, and the endpoint as `inspect` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    pub network: String,
    #[serde(flatten)]
    pub endpoint: EndpointView,
}

/// `network disconnect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnected {
    pub network: String,
    /// The namespace (as the endpoint was connected) or the tap's name.
    pub endpoint: String,
    /// The daemon-side interface that went.
    pub removed: String,
}

/// `network macaddr`: a source-mode endpoint's list after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMacs {
    pub network: String,
    pub endpoint: String,
    pub source_macs: Vec<String>,
}

/// CNI DEL: the endpoint removed, if there was one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniDeleted {
    pub network: String,
    pub removed: Option<Disconnected>,
}

/// CNI GC: the attachments removed (their interfaces or namespaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniCollected {
    pub network: String,
    pub removed: Vec<String>,
}

/// CNI STATUS: an ADD could succeed now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniReady {
    pub network: String,
    pub master: String,
    pub vlan: u16,
    pub attachments: usize,
}

/// CNI CHECK: the attachment is as ADD left it, and a probe frame reached it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniChecked {
    pub network: String,
    pub ifname: String,
    pub mac: String,
    pub forwarding: bool,
}

/// `stats`: the workers, the XDP programs, every active network's ports, the ports gone since
/// the daemon started, and the kernel-side paths. Over all of it the accounting invariant holds
/// (README, "Counters"): Σ ports' rx + departed rx + Σ flood copies = Σ tx + departed tx + Σ drops
/// + departed drops + Σ floods to nobody, each port counted once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub workers: Vec<WorkerView>,
    pub xdp: BTreeMap<String, u64>,
    pub networks: Vec<NetworkStats>,
    pub departed: Departed,
    pub fast_path: FastPathView,
}

/// One worker's loop counters (the datapath's own), and its rates over the last second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerView {
    #[serde(flatten)]
    pub counters: WorkerStats,
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub drop_pps: f64,
}

/// One active network's ports (the parent first, unless the network is internal) and UMEM census.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStats {
    pub name: String,
    pub parent: Option<String>,
    pub vlan: u16,
    pub mode: String,
    pub internal: bool,
    pub xdp_mode: String,
    pub ports: Vec<PortStats>,
    pub umem: UmemView,
}

/// A port's counters: what the datapath received from it (rx) and delivered to it (tx), and
/// what it dropped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortStats {
    /// "parent", "endpoint" or "tap".
    pub kind: String,
    /// The daemon-side interface.
    pub name: String,
    pub mac: String,
    pub up: bool,
    pub xsk_mode: String,
    pub rx: u64,
    pub rx_bytes: u64,
    pub tx: u64,
    pub tx_bytes: u64,
    pub drops: BTreeMap<String, u64>,
    pub drops_total: u64,
    pub pcp_stripped: u64,
    pub pcp_kept: u64,
    pub kernel: PortKernel,
    /// An endpoint's or a tap's: where it is (the parent has none).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<PortEndpoint>,
}

impl PortStats {
    pub fn is_parent(&self) -> bool {
        self.kind == "parent"
    }
}

/// What the kernel counted at a port's AF_XDP socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortKernel {
    pub xsk_fill_ring_empty: u64,
}

/// Where an endpoint port is: its namespace (None for a tap), its interface there and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortEndpoint {
    pub netns: Option<String>,
    pub ifname: String,
    #[serde(default)]
    pub ips: Vec<String>,
}

/// A network's UMEM frames by where they are, summed over workers (the datapath's census).
pub type UmemView = UmemStats;

/// The counters of the ports removed since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Departed {
    pub rx: u64,
    pub tx: u64,
    pub drops: BTreeMap<String, u64>,
    pub drops_total: u64,
}

/// What the kernel-side paths (fast paths, tc flood) did, datapath-wide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FastPathView {
    /// `daemon --fast-path`: tc, xdp or off.
    pub mode: String,
    /// Frames the kernel-side paths received: from the wire, and from containers.
    pub rx: u64,
    pub from_containers: u64,
    /// Delivered to endpoints and to the wire.
    pub delivered: u64,
    pub to_wire: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub flood_frames: u64,
    pub flood_copies: u64,
    pub flood_empty: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ports_read_what_any_daemon_sends() {
        // The parent has no place; an endpoint has one (a tap's netns is null); unknown fields are
        // ignored and missing counters read as 0.
        let parent: PortStats =
            serde_json::from_value(json!({ "kind": "parent", "name": "eth1", "rx": 5, "future": { "x": 1 } })).unwrap();
        assert_eq!((parent.rx, parent.tx, parent.endpoint.clone()), (5, 0, None));
        assert!(parent.is_parent());
        let tap: PortStats =
            serde_json::from_value(json!({ "kind": "tap", "name": "vm0", "netns": null, "ifname": "vm0", "ips": [] }))
                .unwrap();
        assert_eq!(tap.endpoint, Some(PortEndpoint { netns: None, ifname: "vm0".into(), ips: vec![] }));
        // And what is written reads back the same, the parent without endpoint fields.
        let v = serde_json::to_value(&parent).unwrap();
        assert!(v.get("netns").is_none() && v.get("ifname").is_none(), "{v}");
        let t = serde_json::to_value(&tap).unwrap();
        assert_eq!(t["netns"], json!(null));
        assert_eq!(serde_json::from_value::<PortStats>(t).unwrap(), tap);
    }

    #[test]
    fn inspect_of_an_inactive_network_has_null_counters() {
        let v = json!({ "name": "n", "id": 1, "driver": "macvlan", "parent": null, "vlan": 0, "internal": true,
            "mode": "bridge", "options": [], "ipv6": false, "subnets": [], "xdp_mode": "none",
            "status": "inactive", "endpoints": [], "cni": false, "counters": null });
        let i: NetworkInspect = serde_json::from_value(v.clone()).unwrap();
        assert!(i.counters.is_none());
        assert_eq!(serde_json::to_value(&i).unwrap(), v);
    }
}
