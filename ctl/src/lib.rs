//! The control plane of xmacvlan: the daemon, its control-socket protocol (`api`) and the one
//! client of it (`client`), how the CLI shows replies (`show`), and the CNI plugin. Two binaries use it: `xmacvlan` (daemon + CLI, `main.rs`) and `xmacvlan-cni`
//! (`cni_main.rs`).

pub mod api;
pub mod client;
pub mod cni;
pub mod daemon;
pub mod docker;
pub mod http;
pub mod ipam;
pub mod metrics;
pub mod netlink;
pub mod netopts;
pub mod show;
pub mod state;
pub mod summary;

/// Where the daemon listens unless told otherwise (`--socket`, `XMACVLAN_SOCKET`, the CNI
/// config's `socket`).
pub const DEFAULT_SOCKET: &str = "/run/xmacvlan/xmacvlan.sock";
