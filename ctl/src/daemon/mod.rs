//! `xmacvlan daemon`: owns the datapath, serves the control socket, follows link state.
//!
//! Every command validates everything it can before touching the system, then applies its steps
//! in an order that can be undone; on any failure the steps already taken are undone, so a failed
//! command leaves nothing behind.
//!
//! This room holds the registry (networks, forwarding domains, the daemon itself), start-up and
//! saving; the rest of the daemon lives next door:
//! - `dispatch`: a request to the registry (which method, what is saved when, what is posted);
//! - `server`: the control socket (a request line, a reply line), the link monitor, the rate sampler;
//! - `network`: create/remove, the forwarding domains networks share, MAC checks, passthru's parent,
//!   source mode's sender lists;
//! - `connect`: endpoints (veth or tap, addresses, routes, the datapath's port), their rollback, and
//!   disconnect; `ipvlan`: what an ipvlan endpoint adds (the parent's MAC, its dev_id and
//!   link-local address, NOARP and gateway-less routes in L3); `endpoints`: a network's endpoints behind one index of every key they are found by;
//! - `restore`: the state file brought back at start, and a clean stop;
//! - `rules`: the registry's rules, pure (names, specs, pools, parent sharing, MTUs, MACs,
//!   passthru): `network` and `connect` gather the host's facts and apply them before any side
//!   effect (public, so that the fuzzer runs them on decoded requests);
//! - `view`: what `ls`, `inspect` and `stats` answer (the typed replies of `api::reply`), and
//!   `board`: where they read it, the networks as the last finished command left them (a reader
//!   never waits for a command in progress);
//! - `cni`: the daemon's half of the CNI plugin; `docker`: of the Docker network driver;
//!   `metrics`: the Prometheus endpoint; `relay`: the flood relay's veth pair.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rtnetlink::Handle;
use tokio::sync::Mutex;
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::Mode;
use xmacvlan_datapath::guard::Guard;
use xmacvlan_datapath::ipvlan::Ipvlan;
use xmacvlan_datapath::{Config, Datapath, FastPath, NetId};

mod board;
mod cni;
mod connect;
mod dispatch;
mod docker;
mod endpoints;
mod ipvlan;
mod metrics;
mod network;
mod relay;
mod restore;
/// Public for the fuzzer (`fuzz/fuzz_targets/request.rs`): the checks a decoded request meets first.
pub mod rules;
mod server;
mod view;

use self::board::Board;
use self::cni::CniParts;
use self::connect::{default_routes, Veth};
use self::endpoints::{Endpoint, Endpoints, EpId, Key};
use self::network::{parse_macs, resolve_parent};
use self::server::{bind_socket, monitor_links, refuse_if_live, sample_rates, serve, SharedReaders};
use crate::ipam::{Ipam, IpamSpec};
use crate::netlink::{self, Link};
use crate::netopts::{Driver, NetOpts};
use crate::state::intent::Intents;
use crate::state::{EndpointState, NetworkState, PassthruSaved, State, Store, STATE_VERSION};

pub struct Options {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub cpus: Vec<usize>,
    pub worker_nice: i32,
    /// Config::fast_path.
    pub fast_path: FastPath,
    /// Start without networks when the state file is unusable (it is moved aside, not deleted).
    pub start_empty: bool,
    /// Serve Docker's remote network driver protocol as this plugin name
    /// (`/run/docker/plugins/NAME.sock`).
    pub docker_plugin: Option<String>,
    /// Serve the counters for Prometheus here (a loopback IP:PORT or a Unix socket path).
    pub metrics: Option<String>,
}

/// Who made a network, and so who attaches endpoints to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// `xmacvlan network create`: our IPAM, endpoints by `network connect`.
    Cli,
    /// The CNI plugin's first ADD: addresses from the runtime's IPAM plugin, endpoints by ADD,
    /// removed with the last one.
    Cni,
    /// Docker's `CreateNetwork` (named by its NetworkID): addresses from Docker's IPAM, endpoints
    /// by `Join`.
    Docker,
}

impl Owner {
    fn from_state(cni: bool, docker: bool) -> Owner {
        match (cni, docker) {
            (true, _) => Owner::Cni,
            (_, true) => Owner::Docker,
            _ => Owner::Cli,
        }
    }
}

struct Network {
    name: String,
    id: u32,
    /// As the user wrote it (`eth0`, `eth0.50`).
    parent: Option<String>,
    /// 802.1Q VLAN on the parent link (0 = untagged): `eth0.50` without a link of that name.
    vlan: u16,
    internal: bool,
    mode: String,
    opts: NetOpts,
    /// The `-o` options as given, for the state file.
    options: Vec<(String, String)>,
    /// Passthru: what the endpoint changed on the parent.
    passthru: Option<PassthruSaved>,
    spec: IpamSpec,
    ipam: Ipam,
    /// Key of its forwarding domain in `Daemon::domains`; None while inactive.
    domain: Option<u32>,
    /// "active", or why the network is not (it could not be set up at restore).
    status: String,
    endpoints: Endpoints,
    /// Endpoints of an inactive network, kept as saved.
    dormant: Vec<EndpointState>,
    owner: Owner,
    /// Docker's endpoints created and not joined yet.
    reserved: docker::Reservations,
    /// A Docker network's name, once learnt.
    docker_name: Option<String>,
}

impl Network {
    fn ep_opts(&self) -> EpOpts {
        EpOpts {
            vlan: self.vlan,
            mode: self.opts.mode,
            nodst: self.opts.nodst,
            keep_pcp: self.opts.keep_pcp,
            guard: self.opts.guard,
            ipvlan: self.opts.ipvlan,
        }
    }

    fn driver(&self) -> Driver {
        if self.opts.ipvlan.is_some() {
            Driver::Ipvlan
        } else {
            Driver::Macvlan
        }
    }

    /// An endpoint: a tap by name; a namespace by identity when it still exists, else by the name
    /// it was connected with.
    fn find_endpoint(&self, endpoint: &str) -> Result<EpId> {
        let ns_id = open_netns(endpoint).ok().map(|(_, id)| id);
        self.endpoints.find_named(endpoint, ns_id).ok_or_else(|| {
            anyhow!("'{endpoint}' is not connected to network '{}' (give its NETNS or tap name)", self.name)
        })
    }
}

/// What an endpoint inherits from its network.
#[derive(Debug, Clone, Copy)]
struct EpOpts {
    vlan: u16,
    mode: Mode,
    nodst: bool,
    keep_pcp: bool,
    guard: Guard,
    /// An ipvlan network's port settings.
    ipvlan: Option<Ipvlan>,
}

impl EpOpts {
    /// With the endpoint's own source guard (`connect --spoof-check/--ip-guard`), where it has one.
    fn with_guard(self, spoof_check: Option<bool>, ip_guard: Option<bool>) -> EpOpts {
        let guard = Guard { mac: spoof_check.unwrap_or(self.guard.mac), ip: ip_guard.unwrap_or(self.guard.ip) };
        EpOpts { guard, ..self }
    }
}

/// One datapath forwarding domain: a parent link with every network on it (macvlan children of
/// one parent form one L2 domain, whatever Docker network they belong to), or an internal
/// network's anchor.
struct Domain {
    dp: NetId,
    link: Link,
    users: usize,
    anchor: bool,
    /// We turned the parent's receive VLAN offload off (and turn it back on when it goes).
    rx_vlan_was_on: bool,
}

struct Daemon {
    /// The link a connect is about to create (see `state::intent`).
    intents: Intents,
    /// The datapath (see `dp`) and what the readers see.
    board: Arc<Board>,
    h: Handle,
    store: Store,
    nets: BTreeMap<String, Network>,
    domains: BTreeMap<u32, Domain>,
    next_id: u32,
    next_dp: NetId,
    /// Parents the state file says we turned receive VLAN offload off on (see Domain).
    rx_vlan_off: Vec<String>,
}

type Shared = Arc<Mutex<Daemon>>;

pub async fn run(opts: Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the daemon needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN): run it with sudo");
    }
    raise_nofile();
    let mut store = Store::new(&opts.state_dir)?;
    // Everything the file says is checked before anything is set up, so a bad file stops the start
    // (or, with --start-empty, is moved aside) with nothing attached or created.
    let checked = store.load().and_then(|st| {
        for ns in &st.networks {
            Ipam::new(&ns.ipam)
                .map_err(|e| anyhow!("state file {}: network '{}': {e}", store.path().display(), ns.name))?;
        }
        Ok(st)
    });
    let saved = match checked {
        Ok(s) => s,
        Err(e) if opts.start_empty => {
            let aside = store.set_aside()?;
            eprintln!(
                "xmacvlan daemon: {e:#}\nxmacvlan daemon: starting empty as asked (--start-empty); the old file is at {}",
                aside.map_or_else(|| "(none)".into(), |p| p.display().to_string())
            );
            State::default()
        }
        Err(e) => bail!("{e:#}\nfix or move the file, or start with --start-empty to begin without networks"),
    };
    refuse_if_live(&opts.socket).await?;
    // Bound before anything is set up: a bad name, or a live daemon on it, stops the start here.
    let plugin = match &opts.docker_plugin {
        Some(name) => Some((name.clone(), docker::bind(name).await?)),
        None => None,
    };
    let scrapes = match &opts.metrics {
        Some(addr) => Some((addr.clone(), metrics::bind(addr).await?)),
        None => None,
    };
    let cpus = if opts.cpus.is_empty() { vec![None] } else { opts.cpus.iter().map(|&c| Some(c)).collect() };
    let dp = Datapath::start(Config { cpus, nice: opts.worker_nice, fast_path: opts.fast_path, ..Config::default() })
        .context("starting the datapath")?;
    let h = netlink::connect()?;
    let intents = Intents::new(&opts.state_dir);
    let unsaved = intents.pending();
    let mut d = Daemon {
        intents,
        board: Arc::new(Board::new(dp)),
        h,
        store,
        nets: BTreeMap::new(),
        domains: BTreeMap::new(),
        next_id: 1,
        next_dp: 1,
        rx_vlan_off: Vec::new(),
    };
    d.restore(saved).await?;
    d.remove_unsaved(unsaved).await;
    d.post_all();
    let board = d.board.clone();
    // Listening only now: a client that can connect finds the restored networks in place.
    let listener = bind_socket(&opts.socket).await?;
    let daemon: Shared = Arc::new(Mutex::new(d));
    eprintln!("xmacvlan daemon: {} worker(s), listening on {}", board.dp().workers(), opts.socket.display());

    // dockerd's calls wait in the plugin socket's backlog until the registry is restored.
    let plugin = plugin.map(|(name, listener)| {
        let path = crate::docker::socket_path(&name);
        eprintln!("xmacvlan daemon: Docker network driver '{name}' on {}", path.display());
        tokio::spawn(docker::serve(listener, daemon.clone()));
        path
    });
    if let Some((addr, listener)) = scrapes {
        eprintln!("xmacvlan daemon: metrics on {addr} (GET /metrics)");
        tokio::spawn(metrics::serve(listener, board.clone()));
    }
    tokio::spawn(monitor_links(daemon.clone()));
    tokio::spawn(sample_rates(board.clone()));

    let readers = SharedReaders::default();
    let mut last_accept_warning = None;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    tokio::spawn(serve(daemon.clone(), board.clone(), readers.clone(), stream));
                }
                // Out of descriptors (EMFILE, ENFILE) or memory: close the older half of the
                // connections that have not sent their request yet and let their tasks end, or,
                // with none, wait for descriptors. The datapath forwards whatever happens here; the
                // daemon never ends for it.
                Err(e) => {
                    let shed = readers.lock().unwrap_or_else(|e| e.into_inner()).shed();
                    if last_accept_warning.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10)) {
                        eprintln!(
                            "xmacvlan daemon: accepting a control connection: {e}; closed {shed} connection(s) \
                             that had sent nothing yet, retrying"
                        );
                        last_accept_warning = Some(Instant::now());
                    }
                    let pause = if shed > 0 { 2 } else { 50 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            },
        }
    }
    eprintln!("xmacvlan daemon: shutting down (endpoints stay for the next start)");
    let _ = std::fs::remove_file(&opts.socket);
    if let Some(p) = plugin {
        let _ = std::fs::remove_file(p);
    }
    let mut d = daemon.lock().await;
    d.shutdown().await;
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard one: every endpoint holds descriptors
/// (README, Limits), and systemd's default soft limit is 1 024.
fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the local `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let soft = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            eprintln!("xmacvlan daemon: open descriptors: soft limit raised from {soft} to {}", lim.rlim_max);
        }
    }
}

/// NETNS → the path to open: a PID, a path, or a name under /var/run/netns.
fn netns_path(spec: &str) -> PathBuf {
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        PathBuf::from(format!("/proc/{spec}/ns/net"))
    } else if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new("/var/run/netns").join(spec)
    }
}

/// Opens the network namespace `spec` names. Never blocks: opened non-blocking (a FIFO at that path
/// would otherwise wait for a writer while every other client waits for the daemon), and anything
/// that is not a network namespace file is refused by name.
fn open_netns(spec: &str) -> Result<(File, (u64, u64))> {
    let path = netns_path(spec);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| anyhow!("network namespace '{spec}' not found ({}: {e})", path.display()))?;
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: ioctl on an fd we own; NS_GET_NSTYPE takes no argument.
    let kind = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        bail!("'{spec}' ({}) is not a network namespace", path.display());
    }
    let meta = f.metadata()?;
    let own = std::fs::metadata("/proc/self/ns/net")?;
    if (meta.dev(), meta.ino()) == (own.dev(), own.ino()) {
        bail!("'{spec}' is the daemon's own network namespace; endpoints go into other namespaces");
    }
    Ok((f, (meta.dev(), meta.ino())))
}

fn host_ifname(net: u32, ns: (u64, u64)) -> String {
    // Deterministic per (network, namespace), and "connect twice" is refused, so names don't clash.
    let h =
        (u64::from(net).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ns.1.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ ns.0) as u32;
    format!("xmv{h:08x}")
}

/// The anchor link of internal network `id` (its peer is the same name with a "p").
fn anchor_name(id: u32) -> String {
    format!("xmvi{id:x}")
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains(['/', ' ', ':']) && name != "." && name != ".."
}

impl Daemon {
    /// The datapath, for one call.
    fn dp(&self) -> std::sync::MutexGuard<'_, Datapath> {
        self.board.dp()
    }

    fn net(&self, name: &str) -> Result<&Network> {
        self.nets.get(name).ok_or_else(|| anyhow!("network '{name}' not found"))
    }

    fn snapshot(&self) -> State {
        State {
            rx_vlan_off: self.domains.values().filter(|d| d.rx_vlan_was_on).map(|d| d.link.name.clone()).collect(),
            version: STATE_VERSION,
            // The store's business.
            generation: 0,
            next_id: self.next_id,
            networks: self
                .nets
                .values()
                .map(|n| NetworkState {
                    name: n.name.clone(),
                    id: n.id,
                    parent: n.parent.clone(),
                    internal: n.internal,
                    driver: n.driver().name().to_string(),
                    mode: n.mode.clone(),
                    options: n.options.clone(),
                    ipam: n.spec.clone(),
                    endpoints: n.endpoints.iter().map(|e| e.st.clone()).chain(n.dormant.iter().cloned()).collect(),
                    passthru: n.passthru.clone(),
                    cni: n.owner == Owner::Cni,
                    docker: n.owner == Owner::Docker,
                    docker_name: n.docker_name.clone(),
                })
                .collect(),
        }
    }

    /// Saves the state (durably: see `state.rs`); every successful change goes through here
    /// before it is reported.
    fn persist(&mut self) -> Result<()> {
        self.persist_with(|_| {})
    }

    /// Saves the state as `change` makes it from the registry's: what a removing command will leave,
    /// saved before it touches the host, so that one whose state cannot be saved changes nothing.
    fn persist_with(&mut self, change: impl FnOnce(&mut State)) -> Result<()> {
        let mut snapshot = self.snapshot();
        change(&mut snapshot);
        self.store.save(snapshot).context("saving the state file")
    }

    /// Saves the state after a command whose change was saved before it acted: only what acting
    /// changed besides (a passthru parent given back) is left to record, and a failure here
    /// undoes nothing; it is reported in the log.
    fn persist_after(&mut self, what: &str) {
        if let Err(e) = self.persist() {
            eprintln!("xmacvlan daemon: {what} is done and saved; recording what followed from it failed: {e:#}");
        }
    }
}

/// A random locally administered unicast MAC: for CNI attachments (as the kernel gives macvlan
/// children) and for endpoints without an IPv4 address to derive one from.
fn random_mac() -> MacAddr {
    let mut b = [0u8; 6];
    // SAFETY: getrandom(2) writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // No entropy yet (early boot): time and PID are unique enough for one host.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let x = (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40);
        b.copy_from_slice(&x.to_le_bytes()[..6]);
    }
    b[0] = (b[0] & 0xfc) | 0x02;
    MacAddr(b)
}
