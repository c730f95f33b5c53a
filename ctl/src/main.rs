//! `xmacvlan`: the daemon and the docker-network-style CLI that drives it.

mod api;
mod client;
mod daemon;
mod ipam;
mod netlink;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_SOCKET: &str = "/run/xmacvlan/xmacvlan.sock";

#[derive(Parser)]
#[command(name = "xmacvlan", version, about = "Userspace macvlan: XDP + AF_XDP datapath with kernel macvlan semantics")]
struct Cli {
    /// Control socket of the daemon.
    #[arg(long, global = true, env = "XMACVLAN_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the datapath and the control socket in the foreground.
    Daemon {
        /// Where the daemon keeps its state.
        #[arg(long, default_value = "/var/lib/xmacvlan")]
        state_dir: PathBuf,
        /// CPUs to pin one worker each to, e.g. 1 or 0,1 (default: one worker on the last CPU).
        #[arg(long, value_delimiter = ',')]
        cpus: Vec<usize>,
        /// Niceness of the worker threads (-20..=19): high priority keeps a worker that shares its
        /// core with the parent's NAPI thread from being starved by it.
        #[arg(long, default_value_t = -20, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
        worker_nice: i32,
    },
    /// Manage networks.
    #[command(subcommand)]
    Network(NetCmd),
    /// Per-worker rates and per-port counters.
    Stats {
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum NetCmd {
    /// Create a network on a parent interface.
    Create(CreateArgs),
    /// Connect a network namespace (a name under /var/run/netns, a path, or a PID).
    Connect(ConnectArgs),
    /// Disconnect a namespace and delete its endpoint.
    Disconnect { network: String, netns: String },
    /// List networks.
    Ls {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a network's configuration, endpoints and counters (JSON by default, like docker).
    Inspect {
        network: String,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Remove a network.
    Rm {
        network: String,
        /// Also disconnect every endpoint.
        #[arg(long, short)]
        force: bool,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// Driver (only macvlan).
    #[arg(short = 'd', long, default_value = "macvlan")]
    driver: String,
    /// IPv4 subnet in CIDR form.
    #[arg(long)]
    subnet: Option<String>,
    /// Gateway of the subnet (external to xmacvlan; used as the endpoints' default route).
    #[arg(long)]
    gateway: Option<String>,
    /// Driver options: parent=IFACE, macvlan_mode=bridge.
    #[arg(short = 'o', long = "opt", value_parser = parse_kv)]
    opts: Vec<(String, String)>,
    name: String,
}

#[derive(Args)]
struct ConnectArgs {
    /// IPv4 address (default: the next free one).
    #[arg(long)]
    ip: Option<String>,
    /// MAC address (default: 02:42 followed by the IPv4 address).
    #[arg(long = "mac-address")]
    mac: Option<String>,
    /// Interface name inside the namespace.
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Endpoint MTU (default and maximum: the parent's).
    #[arg(long)]
    mtu: Option<u32>,
    network: String,
    netns: String,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("option '{s}' is not of the form key=value"))
}

fn default_cpus() -> Vec<usize> {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    vec![n - 1]
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Daemon { state_dir, cpus, worker_nice } => {
                let cpus = if cpus.is_empty() { default_cpus() } else { cpus };
                daemon::run(daemon::Options { state_dir, socket: cli.socket, cpus, worker_nice }).await
            }
            Cmd::Network(n) => {
                let c = client::Client::new(cli.socket);
                match n {
                    NetCmd::Create(a) => {
                        c.create(api::CreateNetwork {
                            name: a.name,
                            driver: a.driver,
                            subnet: a.subnet,
                            gateway: a.gateway,
                            options: a.opts,
                        })
                        .await
                    }
                    NetCmd::Connect(a) => {
                        c.connect(api::Connect {
                            network: a.network,
                            netns: absolutize(a.netns),
                            ip: a.ip,
                            mac: a.mac,
                            ifname: a.ifname,
                            mtu: a.mtu,
                        })
                        .await
                    }
                    NetCmd::Disconnect { network, netns } => c.disconnect(network, absolutize(netns)).await,
                    NetCmd::Ls { format } => c.ls(format).await,
                    NetCmd::Inspect { network, format } => c.inspect(network, format).await,
                    NetCmd::Rm { network, force } => c.rm(network, force).await,
                }
            }
            Cmd::Stats { watch, format } => client::Client::new(cli.socket).stats(watch, format).await,
        }
    });
    if let Err(e) = result {
        eprintln!("xmacvlan: {e:#}");
        std::process::exit(1);
    }
}

/// A relative path (with a '/') is made absolute: the daemon does not share our working directory.
fn absolutize(ns: String) -> String {
    if ns.contains('/') && !ns.starts_with('/') {
        if let Ok(cwd) = std::env::current_dir() {
            return cwd.join(&ns).to_string_lossy().into_owned();
        }
    }
    ns
}
