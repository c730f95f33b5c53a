//! `xmacvlan`: the daemon and the docker-network-style CLI that drives it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use xmacvlan_ctl::client::Client;
use xmacvlan_ctl::show::{self, Format};
use xmacvlan_ctl::{api, daemon, ipam, DEFAULT_SOCKET};
use xmacvlan_datapath::FastPath;

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
        /// How untagged unicast from the wire reaches a veth endpoint that is up: `tc` (the
        /// parent's tc program hands the kernel-built skb to the container, bpf_redirect_peer),
        /// `xdp` (the parent's XDP program redirects to the endpoint's veth) or `off` (AF_XDP and a
        /// worker). The workers handle everything else.
        #[arg(long, default_value = "tc", value_parser = ["tc", "xdp", "off"])]
        fast_path: String,
        /// The same as `--fast-path xdp` (kept for scripts of earlier versions).
        #[arg(long, hide = true)]
        xdp_fast_path: bool,
        /// Start without networks if the state file is corrupt or unreadable (it is moved aside
        /// to state.json.unusable-TIME, never overwritten).
        #[arg(long)]
        start_empty: bool,
        /// Also serve Docker's network driver protocol as plugin NAME
        /// (/run/docker/plugins/NAME.sock): `docker network create -d NAME …`.
        #[arg(long, value_name = "NAME")]
        docker_plugin: Option<String>,
        /// Serve the counters for Prometheus (`GET /metrics`) on a loopback IP:PORT
        /// (127.0.0.1:9464) or a Unix socket path. Off by default.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
    },
    /// Manage networks.
    #[command(subcommand)]
    Network(NetCmd),
    /// Per-worker rates and per-port counters. On a terminal, a network with many ports is
    /// summed up: totals, the parent, the ports with drops and the busiest ones.
    Stats {
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
        /// Every port's row, on a terminal too (a pipe and --format json always get every port).
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print a shell completion script, e.g. `xmacvlan completions bash > /etc/bash_completion.d/xmacvlan`.
    Completions { shell: clap_complete::Shell },
    /// Kernel macvlan vs xmacvlan in one lab of namespaces: RFC 2544 throughput, latency, TCP, CPU
    /// cost, scaling (`xmacvlan bench --help` for its options).
    #[command(disable_help_flag = true)]
    Bench {
        /// Options of the benchmark harness.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum NetCmd {
    /// Create a network on a parent interface (or, without one, an internal network).
    Create(CreateArgs),
    /// Connect a network namespace (a name under /var/run/netns, a path, or a PID), or a VM
    /// through a new tap device (--tap).
    Connect(ConnectArgs),
    /// Disconnect an endpoint (its NETNS or tap name) and delete its link.
    Disconnect {
        network: String,
        endpoint: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Source-mode endpoints: the senders whose frames the endpoint gets a copy of (like
    /// `ip link set DEV type macvlan macaddr add|del|set|flush MAC…`).
    Macaddr {
        #[arg(value_enum)]
        action: api::MacaddrAction,
        network: String,
        /// The endpoint: its NETNS (as for connect) or tap name.
        endpoint: String,
        macs: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List networks.
    Ls {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a network's configuration, endpoints and counters: JSON like docker when piped, a
    /// table on a terminal (summed up when there are many endpoints).
    Inspect {
        network: String,
        /// Every endpoint's row, on a terminal too (JSON always has every endpoint).
        #[arg(long)]
        all: bool,
        /// [default: table on a terminal, json otherwise]
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Remove a network.
    Rm {
        network: String,
        /// Also disconnect every endpoint.
        #[arg(long, short)]
        force: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// Driver: macvlan, or ipvlan (every endpoint has the parent's MAC; told apart by address).
    #[arg(short = 'd', long, default_value = "macvlan")]
    driver: String,
    /// Subnet in CIDR form, IPv4 or IPv6; repeat for several.
    #[arg(long = "subnet")]
    subnets: Vec<String>,
    /// Gateway of one of the subnets (external to xmacvlan; the endpoints' default route); one per subnet.
    #[arg(long = "gateway")]
    gateways: Vec<String>,
    /// Allocate only from this sub-range (CIDR) of one of the subnets; one per subnet.
    #[arg(long = "ip-range")]
    ip_ranges: Vec<String>,
    /// Reserve an address: name=IP (never allocated); repeatable.
    #[arg(long = "aux-address")]
    aux_addresses: Vec<String>,
    /// Enable IPv6 (needs an IPv6 --subnet).
    #[arg(long)]
    ipv6: bool,
    /// Endpoints talk only among themselves: no parent, no XDP on any host interface.
    #[arg(long)]
    internal: bool,
    /// Driver options: parent=IFACE, macvlan_mode=bridge; with -d ipvlan, ipvlan_mode=l2|l3|l3s and
    /// ipvlan_flag=bridge|private|vepa instead of macvlan_mode.
    #[arg(short = 'o', long = "opt", value_parser = parse_kv)]
    opts: Vec<(String, String)>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    name: String,
}

#[derive(Args)]
struct ConnectArgs {
    /// IPv4 address (default: the next free one).
    #[arg(long)]
    ip: Option<String>,
    /// IPv6 address (default: the next free one, on an --ipv6 network).
    #[arg(long)]
    ip6: Option<String>,
    /// MAC address (default: 02:42 followed by the IPv4 address).
    #[arg(long = "mac-address")]
    mac: Option<String>,
    /// Interface name inside the namespace.
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Endpoint MTU (default and maximum: the parent's).
    #[arg(long)]
    mtu: Option<u32>,
    /// Create a persistent tap device of this name for a VM instead of a veth into NETNS.
    #[arg(long, conflicts_with = "netns")]
    tap: Option<String>,
    /// Owner (uid) of the tap device, so an unprivileged VM monitor can open it.
    #[arg(long, requires = "tap")]
    owner: Option<u32>,
    /// This endpoint's MAC guard, on or off (default: the network's `-o spoof_check`, on).
    #[arg(long = "spoof-check", value_parser = on_off)]
    spoof_check: Option<bool>,
    /// This endpoint's IP guard, on or off (default: the network's `-o ip_guard`, off).
    #[arg(long = "ip-guard", value_parser = on_off)]
    ip_guard: Option<bool>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    network: String,
    #[arg(required_unless_present = "tap")]
    netns: Option<String>,
}

fn on_off(s: &str) -> Result<bool, String> {
    xmacvlan_ctl::netopts::switch("", s).map_err(|_| format!("'{s}' is not valid (on or off)"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("option '{s}' is not of the form key=value"))
}

/// Replaces this process with `xmacvlan-bench` from this binary's directory, telling it to run this
/// binary's daemon (`XMACVLAN_BIN`). Returns only when that fails.
fn bench(args: Vec<std::ffi::OsString>) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return anyhow::anyhow!("locating this binary: {e}"),
    };
    let harness = me.with_file_name("xmacvlan-bench");
    if !harness.exists() {
        return anyhow::anyhow!(
            "{} is missing: the harness is its own binary, built with `cargo build --release -p xmacvlan-bench` \
             (`make build` builds it)",
            harness.display()
        );
    }
    let mut cmd = std::process::Command::new(&harness);
    cmd.arg0("xmacvlan bench").args(args);
    if std::env::var_os("XMACVLAN_BIN").is_none() {
        cmd.env("XMACVLAN_BIN", &me);
    }
    let e = cmd.exec();
    anyhow::anyhow!("running {}: {e}", harness.display())
}

fn default_cpus() -> Vec<usize> {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    vec![n - 1]
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Bench { args } = cli.cmd {
        // The harness is its own binary (the product does not link its plotting and progress
        // crates); it runs this binary's daemon.
        let e = bench(args);
        eprintln!("xmacvlan bench: {e:#}");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Daemon {
                state_dir,
                cpus,
                worker_nice,
                fast_path,
                xdp_fast_path,
                start_empty,
                docker_plugin,
                metrics,
            } => {
                let cpus = if cpus.is_empty() { default_cpus() } else { cpus };
                let fast_path = if xdp_fast_path {
                    FastPath::Xdp
                } else {
                    fast_path.parse().map_err(|e: String| anyhow::anyhow!(e))?
                };
                let opts = daemon::Options {
                    state_dir,
                    socket: cli.socket,
                    cpus,
                    worker_nice,
                    fast_path,
                    start_empty,
                    docker_plugin,
                    metrics,
                };
                daemon::run(opts).await
            }
            Cmd::Network(n) => {
                let c = Client::new(cli.socket);
                match n {
                    NetCmd::Create(a) => {
                        let ipam = ipam::IpamSpec {
                            subnets: a.subnets,
                            gateways: a.gateways,
                            ip_ranges: a.ip_ranges,
                            aux_addresses: a.aux_addresses,
                            ipv6: a.ipv6,
                        };
                        let req = api::CreateNetwork {
                            name: a.name,
                            driver: a.driver,
                            ipam,
                            internal: a.internal,
                            options: a.opts,
                        };
                        show::created(&c.create(req)?, a.format)
                    }
                    NetCmd::Connect(a) => {
                        let req = api::Connect {
                            network: a.network,
                            netns: a.netns.map(absolutize),
                            tap: a.tap,
                            owner: a.owner,
                            ip: a.ip,
                            ip6: a.ip6,
                            mac: a.mac,
                            ifname: a.ifname,
                            mtu: a.mtu,
                            spoof_check: a.spoof_check,
                            ip_guard: a.ip_guard,
                        };
                        show::connected(&c.connect(req)?, a.format)
                    }
                    NetCmd::Disconnect { network, endpoint, format } => {
                        show::disconnected(&c.disconnect(network, absolutize(endpoint))?, format)
                    }
                    NetCmd::Macaddr { action, network, endpoint, macs, format } => {
                        show::source_macs(&c.macaddr(network, absolutize(endpoint), action, macs)?, format)
                    }
                    NetCmd::Ls { format } => show::ls(&c.ls()?, format),
                    NetCmd::Inspect { network, all, format } => show::inspect(&c.inspect(network)?, format, all),
                    NetCmd::Rm { network, force, format } => show::removed(&c.rm(network, force)?, format),
                }
            }
            Cmd::Stats { watch, all, format } => {
                let c = Client::new(cli.socket);
                loop {
                    show::stats(&c.stats()?, format, watch, all)?;
                    if !watch {
                        break Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            Cmd::Bench { .. } => unreachable!("handled before the runtime starts"),
            Cmd::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut <Cli as clap::CommandFactory>::command(),
                    "xmacvlan",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Cmd, Format, NetCmd};

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn systemd_unit_starts_the_daemon_with_flags_the_cli_accepts() {
        let unit = include_str!("../../contrib/xmacvlan.service");
        let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
        let cli = Cli::try_parse_from(exec.split_whitespace()).unwrap_or_else(|e| panic!("{exec}: {e}"));
        assert!(matches!(cli.cmd, Cmd::Daemon { .. }), "{exec} runs the daemon");
    }

    #[test]
    fn stats_and_inspect_take_all_and_inspect_picks_its_format_by_terminal() {
        let cli = Cli::try_parse_from(["xmacvlan", "stats", "--all"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Stats { all: true, watch: false, .. }));
        let cli = Cli::try_parse_from(["xmacvlan", "network", "inspect", "--all", "n"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Network(NetCmd::Inspect { all: true, format: None, .. })));
        let cli = Cli::try_parse_from(["xmacvlan", "network", "inspect", "--format", "json", "n"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Network(NetCmd::Inspect { all: false, format: Some(Format::Json), .. })));
    }

    #[test]
    fn completions_are_generated_for_every_shell() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "xmacvlan", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("aux-address") && text.contains("start-empty"), "{shell} completion is complete");
        }
    }
}
