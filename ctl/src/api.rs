//! The control socket protocol: one JSON request line, one JSON reply line, both versioned.

use serde::{Deserialize, Serialize};

use crate::ipam::IpamSpec;

/// Bumped on any incompatible change; a CLI and a daemon of different versions refuse each other.
pub const API_VERSION: u32 = 3;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    NetworkCreate(CreateNetwork),
    NetworkRm {
        name: String,
        force: bool,
    },
    NetworkLs,
    NetworkInspect {
        name: String,
    },
    Connect(Connect),
    /// `endpoint` is the namespace (as for connect) or a tap's name.
    Disconnect {
        network: String,
        endpoint: String,
    },
    /// The source-MAC allow-list of a source-mode endpoint (kernel `macaddr add|del|set|flush`).
    Macaddr {
        network: String,
        endpoint: String,
        action: MacaddrAction,
        macs: Vec<String>,
    },
    Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MacaddrAction {
    /// Add MACs to the list.
    Add,
    /// Remove MACs from the list.
    Del,
    /// Replace the list.
    Set,
    /// Empty the list.
    Flush,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub ipam: IpamSpec,
    pub internal: bool,
    /// `-o key=value` driver options, in order.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Connect {
    pub network: String,
    /// A veth endpoint in this namespace, as the user wrote it: a name under /var/run/netns, a
    /// path, or a PID. Exactly one of `netns` and `tap` is set.
    pub netns: Option<String>,
    /// A persistent tap device of this name in the daemon's namespace, for a VM.
    pub tap: Option<String>,
    /// Owner (uid) of the tap device.
    pub owner: Option<u32>,
    pub ip: Option<String>,
    pub ip6: Option<String>,
    pub mac: Option<String>,
    pub ifname: String,
    pub mtu: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

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
    pub mode: String,
    /// The other driver options (`nodst`, `vlan_pcp`) as given.
    pub options: Vec<(String, String)>,
    pub ipv6: bool,
    pub subnets: Vec<SubnetView>,
    pub xdp_mode: String,
    /// "active", or why not (e.g. the parent is missing).
    pub status: String,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubnetView {
    pub subnet: String,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub aux_addresses: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointView {
    /// "veth" or "tap".
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
}
