//! The control socket protocol: one JSON request line, one JSON reply line, both versioned.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; a CLI and a daemon of different versions refuse each other.
pub const API_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    NetworkCreate(CreateNetwork),
    NetworkRm { name: String, force: bool },
    NetworkLs,
    NetworkInspect { name: String },
    Connect(Connect),
    Disconnect { network: String, netns: String },
    Stats,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// `-o key=value` driver options, in order.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Connect {
    pub network: String,
    /// As the user wrote it: a name under /var/run/netns, a path, or a PID.
    pub netns: String,
    pub ip: Option<String>,
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
    pub parent: String,
    pub mode: String,
    pub subnet: String,
    pub gateway: Option<String>,
    pub xdp_mode: String,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointView {
    pub netns: String,
    pub ifname: String,
    pub host_ifname: String,
    pub mac: String,
    pub ips: Vec<String>,
    pub mtu: u32,
}
