//! The harness's command line: its options, what they mean, and their validation (bad values are
//! named before anything is set up).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::lab::Backend;
use crate::{lab, online_cpus};

/// What the container does with the frames. Every choice is counted in the container interface's
/// rx_packets; they differ in how much of the container's stack each frame costs on the receiving CPU.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sink {
    /// Ethertype 0x88b5 (local experimental): dropped right after the interface counts it; isolates the
    /// forwarding path. ipvlan finds a container by address: its frames there are IPv4 with a wrong
    /// header checksum instead, dropped by the container's IP layer in its header checks.
    L2,
    /// IPv4/UDP to a bound socket whose tiny receive buffer stays full: IP + UDP lookup + drop.
    Socket,
    /// IPv4/UDP to a closed port: local delivery plus an ICMP port-unreachable attempt per frame.
    ClosedPort,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Test {
    Max,
    Rfc2544,
    Latency,
    Cpu,
    Tcp,
    Container,
    Scaling,
}

/// An offered rate: "max" (as fast as the generator goes) or Mpps.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Rate(pub Option<f64>);

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Rate, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate(None));
        }
        match s.parse::<f64>() {
            Ok(m) if m > 0.0 && m.is_finite() => Ok(Rate(Some(m * 1e6))),
            _ => Err(format!("`{s}`: a rate is `max` or a positive number of Mpps")),
        }
    }
}

impl Rate {
    pub(crate) fn label(self) -> String {
        match self.0 {
            None => "max".into(),
            Some(p) => format!("{:.3}", p / 1e6),
        }
    }
}

/// Kernel macvlan vs xmacvlan in one lab: RFC 2544 throughput, latency, TCP, CPU cost, scaling.
/// `xmacvlan bench soak --help`: the soak (`make soak`), a command of its own.
#[derive(Parser, Debug, Clone)]
#[command(name = "xmacvlan bench", version)]
pub struct Cli {
    /// The xmacvlan binary that runs the daemon (default: the one that ran `xmacvlan bench`, else the
    /// `xmacvlan` next to this program).
    #[arg(long, env = "XMACVLAN_BIN")]
    pub xmacvlan_bin: Option<PathBuf>,
    /// Backends, in the order they are run: kernel macvlan, xmacvlan (a daemon with no tuning
    /// flags: the tc fast path + AF_XDP workers), xmacvlan-xdp (--fast-path xdp), xmacvlan-afxdp
    /// (--fast-path off: every frame through AF_XDP and a worker), tc-floor (not a product: veth
    /// endpoints with tc programs that only redirect, the floor of any tc datapath; no floods), and
    /// xmacvlan-ipvlan (xmacvlan's ipvlan, l2 mode, bridge flag, on a daemon with no tuning flags:
    /// the containers have the parent's MAC and frames reach them by IPv4 address).
    #[arg(long, value_delimiter = ',', default_value = "kernel,xmacvlan,xmacvlan-xdp,xmacvlan-afxdp")]
    pub backends: Vec<Backend>,
    /// Tests to run, in this order.
    #[arg(long, value_delimiter = ',', default_value = "max,rfc2544,latency,cpu,tcp,container,scaling")]
    pub tests: Vec<Test>,
    /// Frame sizes on the wire, FCS included (64..=1518); the veth frame is 4 bytes shorter.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256,512,1024,1280,1518")]
    pub sizes: Vec<usize>,
    /// Seconds per trial window (after the warm-up). RFC 2544 asks for 60 s in publication runs.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Seconds the generator runs before a trial's window opens.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Trials per overload point (`max`, and `scaling`'s unicast spread); the summary takes the median.
    #[arg(long, default_value_t = 1)]
    pub trials: u32,
    /// Visits to every backend in turn: a round sets each backend up and runs every test on it, then
    /// the next round starts over. Every table takes the median over rounds (and trials), so a slow
    /// phase of the host (a neighbour's load, steal) falls on all backends alike instead of on the one
    /// being run; the TCP, container and CPU-cost tests get one sample per round.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// Broadcast share of the generated frames, in percent, for the max and rfc2544 tests (e.g. `0,1,10`).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub bcast_pct: Vec<f64>,
    /// Unicast frames of the max/rfc2544/latency/cpu tests are spread over this many containers.
    #[arg(long, default_value_t = 1)]
    pub spread: usize,
    /// RFC 2544 search: a trial passes when it loses at most this percentage of the frames. RFC 2544
    /// says 0; on a virtual machine whose CPUs the hypervisor steals in millisecond slices, a 256-slot
    /// veth ring overflows at any rate, and a small tolerance gives a usable figure (say so when you
    /// publish it). Every trial records its loss and the steal time.
    #[arg(long, default_value_t = 0.0)]
    pub loss_tolerance: f64,
    /// RFC 2544 search: stop when the gap between the passing and failing rate is this fraction.
    #[arg(long, default_value_t = 0.02)]
    pub resolution: f64,
    /// RFC 2544 search: at most this many trials per frame size.
    #[arg(long, default_value_t = 10)]
    pub search_steps: u32,
    /// Latency: background load as percent of each backend's RFC 2544 throughput.
    #[arg(long, value_delimiter = ',', default_value = "10,50,90")]
    pub latency_loads: Vec<f64>,
    /// Latency: frame sizes probed (each needs its throughput from the rfc2544 test).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub latency_sizes: Vec<usize>,
    /// Latency: probes per second.
    #[arg(long, default_value_t = 5000.0)]
    pub probe_rate: f64,
    /// CPU cost: the fixed offered load, Mpps (64 B frames).
    #[arg(long, default_value = "0.2")]
    pub cost_rate: Rate,
    /// TCP: seconds per iperf3 run.
    #[arg(long, default_value_t = 5.0)]
    pub tcp_duration: f64,
    /// Scaling: endpoint counts, grown in this order.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1024")]
    pub endpoints: Vec<usize>,
    /// Scaling: broadcast frames per second offered for the fan-out cost.
    #[arg(long, default_value_t = 1000.0)]
    pub bcast_rate: f64,
    /// CPU of the generator thread (and of the container-side sender).
    #[arg(long, default_value_t = 0)]
    pub gen_cpu: usize,
    /// CPUs of the datapath under test: the parent's NAPI kthread runs on the first, the xmacvlan
    /// daemon's workers on all of them (`daemon --cpus`).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub dp_cpus: Vec<usize>,
    /// CPU of the applications in the lab: the latency echo responder and prober, iperf3 server and client.
    #[arg(long)]
    pub app_cpu: Option<usize>,
    /// What the containers do with the frames (see the value help).
    #[arg(long, value_enum, default_value_t = Sink::L2)]
    pub sink: Sink,
    /// Frames per BPF_PROG_RUN call. Each call also swaps the XDP dispatcher (two synchronize_rcu, tens
    /// of ms during which nothing is sent), so calls must be long.
    #[arg(long, default_value_t = 1 << 22)]
    pub repeat: u32,
    /// Frames per in-kernel batch of the live-frames test run (1..=256).
    #[arg(long, default_value_t = 64)]
    pub batch_size: u32,
    /// Write report.json (every trial), rate.svg, latency.svg and scaling.svg into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Extra options for `xmacvlan daemon`, e.g. "--busy-poll-us 0" (split on whitespace).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub daemon_args: Option<String>,
    /// Keep the xmacvlan daemon's output in FILE (default: a temporary file, shown on failure).
    #[arg(long, value_name = "FILE")]
    pub daemon_log: Option<PathBuf>,
    /// CI smoke run (about a minute): 64 B only, short trials, every test once; fails if a backend errs or
    /// delivers nothing.
    #[arg(long)]
    pub smoke: bool,
}
pub(crate) fn validate(cli: &mut Cli) -> Result<()> {
    if cli.smoke {
        cli.sizes = vec![64];
        cli.duration = 0.3;
        cli.warmup = 0.1;
        cli.trials = 1;
        cli.rounds = 1;
        cli.search_steps = 4;
        // Stopping waits for the BPF_PROG_RUN call in flight: short calls keep short trials short.
        cli.repeat = cli.repeat.min(1 << 19);
        cli.latency_loads = vec![50.0];
        cli.latency_sizes = vec![64];
        cli.tcp_duration = 1.0;
        cli.endpoints = vec![1, 2];
        cli.bcast_pct = vec![0.0];
        // The smoke checks that everything runs; a latency run needs some throughput to load.
        cli.loss_tolerance = cli.loss_tolerance.max(20.0);
    }
    let bad = |what: String| -> Result<()> { bail!("{what}") };
    if !cli.duration.is_finite() || cli.duration <= 0.0 {
        bad(format!("--duration {}: must be > 0", cli.duration))?;
    }
    if !cli.warmup.is_finite() || cli.warmup < 0.0 {
        bad(format!("--warmup {}: must be >= 0", cli.warmup))?;
    }
    if cli.trials == 0 {
        bad("--trials 0: must be at least 1".into())?;
    }
    if cli.rounds == 0 {
        bad("--rounds 0: must be at least 1".into())?;
    }
    if cli.sizes.is_empty() || cli.backends.is_empty() || cli.tests.is_empty() {
        bad("--sizes, --backends and --tests may not be empty".into())?;
    }
    for &s in cli.sizes.iter().chain(&cli.latency_sizes) {
        if !(64..=1518).contains(&s) {
            bad(format!("frame size {s}: out of range 64..=1518 (wire size with FCS; the parent MTU is 1500)"))?;
        }
    }
    for &p in &cli.bcast_pct {
        if !(0.0..=100.0).contains(&p) {
            bad(format!("--bcast-pct {p}: must be within 0..=100"))?;
        }
    }
    if !(0.0..100.0).contains(&cli.loss_tolerance) {
        bad(format!("--loss-tolerance {}: must be within 0..100 (percent)", cli.loss_tolerance))?;
    }
    for &p in &cli.latency_loads {
        if !(p > 0.0 && p <= 100.0) {
            bad(format!("--latency-loads {p}: must be within (0, 100]"))?;
        }
    }
    for &n in cli.endpoints.iter().chain([&cli.spread]) {
        if n == 0 || n > lab::MAX_ENDPOINTS {
            bad(format!("endpoint count {n}: must be within 1..={}", lab::MAX_ENDPOINTS))?;
        }
    }
    if !(1..=256).contains(&cli.batch_size) {
        bad(format!("--batch-size {}: must be within 1..=256", cli.batch_size))?;
    }
    if cli.repeat < 64 {
        bad(format!("--repeat {}: must be at least 64", cli.repeat))?;
    }
    if !(cli.resolution > 0.0 && cli.resolution < 1.0) {
        bad(format!("--resolution {}: must be within (0, 1)", cli.resolution))?;
    }
    if !(cli.probe_rate >= 1.0 && cli.probe_rate <= 100_000.0) {
        bad(format!("--probe-rate {}: must be within 1..=100000", cli.probe_rate))?;
    }
    if cli.bcast_rate.is_nan() || cli.bcast_rate < 1.0 {
        bad(format!("--bcast-rate {}: must be at least 1", cli.bcast_rate))?;
    }
    if cli.cost_rate.0.is_none() {
        bad("--cost-rate max: the CPU cost is measured at a fixed rate, give Mpps".into())?;
    }
    let ncpu = online_cpus();
    let app = cli.app_cpu.unwrap_or(cli.gen_cpu);
    for (what, c) in [("--gen-cpu", cli.gen_cpu), ("--app-cpu", app)]
        .into_iter()
        .chain(cli.dp_cpus.iter().map(|&c| ("--dp-cpus", c)))
    {
        if c >= ncpu {
            bad(format!("{what} {c}: this machine has {ncpu} CPUs (0..={})", ncpu - 1))?;
        }
    }
    if cli.dp_cpus.is_empty() {
        bad("--dp-cpus may not be empty".into())?;
    }
    if cli.dp_cpus.contains(&cli.gen_cpu) {
        eprintln!("xmacvlan bench: warning: the generator shares CPU {} with the datapath", cli.gen_cpu);
    }
    let mut e = cli.endpoints.clone();
    e.sort_unstable();
    e.dedup();
    cli.endpoints = e;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_settings_are_valid_and_short() {
        let mut cli = Cli::try_parse_from(["xmacvlan bench", "--smoke"]).unwrap();
        validate(&mut cli).unwrap();
        assert_eq!(cli.sizes, vec![64]);
        assert!(cli.duration + cli.warmup <= 1.0);
    }

    #[test]
    fn bad_values_are_named() {
        for (args, needle) in [
            (vec!["--sizes", "60"], "frame size 60"),
            (vec!["--bcast-pct", "150"], "--bcast-pct 150"),
            (vec!["--endpoints", "0"], "endpoint count 0"),
            (vec!["--gen-cpu", "4096"], "--gen-cpu 4096"),
            (vec!["--cost-rate", "max"], "--cost-rate max"),
            (vec!["--rounds", "0"], "--rounds 0"),
        ] {
            let mut cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap();
            let e = validate(&mut cli).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        assert!(Cli::try_parse_from(["x", "--cost-rate", "fast"]).unwrap_err().to_string().contains("`fast`"));
    }
}
