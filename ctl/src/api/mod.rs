//! The control socket protocol: one JSON request line, one JSON reply line, both versioned. The
//! requests are here; what each one answers is in [`reply`], typed, for the daemon that writes it
//! and every client that reads it (the CLI, the CNI plugin, the bench, the tests).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ipam::IpamSpec;

pub mod reply;

pub use reply::{EndpointView, NetworkView, SubnetView};

/// Bumped on any incompatible change; a CLI and a daemon of different versions refuse each other.
pub const API_VERSION: u32 = 4;

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
    /// CNI ADD: the network (made on first use), then a veth endpoint with the addresses and
    /// routes the IPAM plugin gave.
    CniAdd(CniAdd),
    /// CNI DEL: removes the attachment if there is one (success when there is none).
    CniDel {
        network: String,
        attachment: Attachment,
    },
    /// CNI CHECK: the endpoint is as ADD left it and the datapath forwards to it.
    CniCheck(CniCheck),
    /// CNI STATUS: whether an ADD on this network could succeed now.
    CniStatus {
        network: String,
        master: Option<String>,
    },
    /// CNI GC: removes the network's attachments that are not in `valid`.
    CniGc {
        network: String,
        valid: Vec<Attachment>,
    },
}

/// One CNI attachment, as the runtime names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// An address for the container interface, with its subnet's prefix length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniIp {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route in the container, out of its interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniRoute {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// The network a CNI configuration describes, as the daemon makes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniNetwork {
    /// The CNI network name (the daemon network's name).
    pub name: String,
    /// None: the interface of the default route.
    pub master: Option<String>,
    /// `macvlan` (also when absent: older plugins send none) or `ipvlan`.
    #[serde(default = "macvlan", skip_serializing_if = "is_macvlan")]
    pub driver: String,
    /// A macvlan mode name (`bridge` when the config has none), or an ipvlan mode (`l2` when none).
    pub mode: String,
    /// An ipvlan network's flag (`bridge` when the config has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipvlan_flag: Option<String>,
    /// The attachment's source guard (`"spoof_check"`, default true; `"ip_guard"`, default false).
    #[serde(default = "yes")]
    pub spoof_check: bool,
    #[serde(default)]
    pub ip_guard: bool,
}

fn yes() -> bool {
    true
}

fn macvlan() -> String {
    "macvlan".into()
}

fn is_macvlan(d: &str) -> bool {
    d == "macvlan"
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniAdd {
    pub network: CniNetwork,
    pub attachment: Attachment,
    /// CNI_NETNS: a path.
    pub netns: String,
    /// 0 = the master's.
    pub mtu: u32,
    pub mac: Option<String>,
    pub ips: Vec<CniIp>,
    pub routes: Vec<CniRoute>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniCheck {
    pub network: CniNetwork,
    pub attachment: Attachment,
    pub netns: String,
    /// From prevResult: the interface's MAC, addresses and routes.
    pub mac: Option<String>,
    pub ips: Vec<CniIp>,
    pub routes: Vec<CniRoute>,
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
    /// The endpoint's own source guard, where it differs from its network's (`-o spoof_check`,
    /// `-o ip_guard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoof_check: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_guard: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
    /// For CNI requests: the spec's error code that fits the failure (7 bad configuration, 3
    /// unknown container, 11 try again later, 50/51 not available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
}

/// An error with a CNI error code, as the daemon returns it for CNI requests.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct CodedError {
    pub code: u32,
    pub msg: String,
}

impl CodedError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CodedError { code, msg: msg.into() }
    }
}
