//! xmacvlan's datapath: kernel macvlan's semantics, decided by our own programs and workers.
//!
//! The kernel carries what needs no decision of ours (`bpf/`: tc programs hand known unicast from the
//! wire and a tc-fed container's frames to their target with `bpf_redirect_peer`/`bpf_redirect`, and
//! fan wire broadcasts out); everything else reaches workers pinned to cores, by XDP into AF_XDP
//! sockets or through the collector's packet socket, and they decide it with [`fwd::decide`], a pure
//! function of frame and table, with exact per-port books.
//!
//! Rooms: [`Datapath`] (`control/`) is the control-plane handle — networks and endpoints are added
//! and removed while the workers run, and every change either completes or leaves nothing behind
//! (`control/endpoint.rs`: an endpoint's sockets, maps and attachments; `control/report.rs`: what
//! it reports). The worker's side: `worker.rs` (the
//! loop), `domain.rs` (one forwarding domain's sockets), `plane.rs` (decide, stage, edit tags),
//! `txbatch.rs` (transmit to endpoints), `flood.rs` (the collector's socket), `pool.rs` and
//! `budget.rs` (UMEM frames), `xsk/` (AF_XDP itself). Pure rules: `fwd.rs` (and its `table.rs`), `ipvlan.rs`, `guard.rs`, `frame.rs`. Books:
//! `counters.rs`. `netlink.rs`: raw netlink (the tc block, XDP queries). `probe.rs`: test frames.
//! `replay.rs`: the worker's plane without sockets, for the fuzzer (`fuzz/`).

pub mod bpf;
pub mod budget;
mod control;
pub mod counters;
mod domain;
pub mod flood;
pub mod frame;
pub mod fwd;
pub mod guard;
pub mod ipvlan;
pub mod netlink;
mod plane;
mod pool;
pub mod probe;
pub mod replay;
pub mod table;
pub mod txbatch;
mod worker;
pub mod xsk;

pub use control::endpoint::Detached;
pub use control::report::{KernelPaths, NetworkReport, PortReport, Report};
pub use control::Datapath;

use crate::frame::MacAddr;
use crate::fwd::Mode;

/// Identifies a network (forwarding domain) across the datapath.
pub type NetId = u32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("BPF {what}: {cause}")]
    Bpf { what: &'static str, cause: libbpf_rs::Error },
    #[error("attaching XDP to {ifname}: {cause}")]
    Attach { ifname: String, cause: libbpf_rs::Error },
    #[error("{ifname} already has an XDP program that xmacvlan did not attach; detach it first")]
    XdpBusy { ifname: String },
    #[error("AF_XDP {what} on '{ifname}': {cause}")]
    Xsk { what: &'static str, ifname: String, cause: std::io::Error },
    #[error("{call}: {cause}")]
    Sys { call: &'static str, cause: std::io::Error },
    #[error("parent {ifname} has {queues} receive queue(s); the daemon runs {workers} worker(s), which needs between {workers} and 64 queues; use --cpus with at most {queues} CPUs")]
    TooFewQueues { ifname: String, queues: u32, workers: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("worker {worker}: {msg}")]
    Worker { worker: usize, msg: String },
}

/// Datapath settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// One worker per entry, pinned to that CPU (None = not pinned).
    pub cpus: Vec<Option<usize>>,
    /// Frames of each parent UMEM (one per network and worker): 2 KiB each where the parent's MTU
    /// allows, else 4 KiB, of pinned memory. Endpoints bring UMEMs of their own (budget.rs).
    pub frames: u32,
    /// Niceness of the worker threads. Where a worker shares its core with the parent's NAPI
    /// thread, equal shares let NAPI redirect frames faster than the worker can forward them, and
    /// the surplus is dropped at the full RX ring after costing NAPI time (receive livelock); a
    /// higher worker priority moves that CPU to forwarding.
    pub nice: i32,
    /// How untagged known unicast from the wire reaches an endpoint that is up and whose MTU the
    /// frame fits (see [`FastPath`]). Everything else takes the AF_XDP path.
    pub fast_path: FastPath,
}

impl Default for Config {
    fn default() -> Self {
        Config { cpus: vec![None], frames: 16384, nice: -20, fast_path: FastPath::Tc }
    }
}

/// The in-kernel shortcut for unicast from the wire to an endpoint: the decision `fwd::decide`
/// makes for such a frame, taken in the kernel's receive path without AF_XDP and a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPath {
    /// Every frame through AF_XDP and a worker.
    Off,
    /// The parent's XDP program redirects to the endpoint's veth (bpf_redirect); the container
    /// end builds the skb in its own NAPI (it needs GRO on: [`EndpointSpec::fast`]).
    Xdp,
    /// The parent's XDP program passes the frame, the kernel builds the skb (GRO merges it), and a
    /// tc program on the parent moves it into the container (bpf_redirect_peer): one pass, as
    /// kernel macvlan's rx_handler. Veth endpoints only.
    Tc,
}

impl FastPath {
    pub fn name(self) -> &'static str {
        match self {
            FastPath::Off => "off",
            FastPath::Xdp => "xdp",
            FastPath::Tc => "tc",
        }
    }
}

impl std::str::FromStr for FastPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(FastPath::Off),
            "xdp" => Ok(FastPath::Xdp),
            "tc" => Ok(FastPath::Tc),
            _ => Err(format!("fast path '{s}' is not one of tc, xdp, off")),
        }
    }
}

/// The interface a network forwards through.
#[derive(Debug, Clone)]
pub struct ParentSpec {
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u32,
    pub rx_queues: u32,
    /// An internal network's anchor: a link of ours that only hosts the UMEM-owning sockets. It
    /// gets no XDP program and no flood socket, and nothing is ever sent to it.
    pub internal: bool,
}

/// The daemon-side end of an endpoint's veth pair.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u32,
    pub vlan: u16,
    pub up: bool,
    /// Its queues: a veth has one per worker; a tap has one, so only worker 0 receives from it
    /// (every worker transmits to it, as to any endpoint, through its packet socket).
    pub queues: u32,
    /// A veth (a tap is not): the tc fast path can hand frames to its peer.
    pub veth: bool,
    /// The far side accepts frames redirected in XDP (a veth whose container end has NAPI on:
    /// GRO enabled or an XDP program), so the XDP fast path may deliver to it.
    pub fast: bool,
    pub mode: Mode,
    /// Source mode: frames from listed senders go to the copies only.
    pub nodst: bool,
    /// VLAN endpoints: deliver tags with a non-zero PCP as priority tags instead of removing them.
    pub keep_pcp: bool,
    /// Which sender fields of the container's frames are checked (guard.rs).
    pub guard: guard::Guard,
    /// The endpoint's addresses: the only IP sources its IP guard lets out, and for an ipvlan
    /// endpoint the addresses that find it (its link-local included).
    pub addrs: Vec<std::net::IpAddr>,
    /// An endpoint of an ipvlan port (its `mac` is the parent's), with the port's settings.
    pub ipvlan: Option<ipvlan::Ipvlan>,
}
