//! `xmacvlan bench`: kernel macvlan and xmacvlan measured in one lab, in one invocation, with the
//! same generator, the same sinks and the same CPU placement, reported side by side with ratios.
//!
//! Lab (namespaces `xmvb-<pid>-{gen,dp,c0,c1,…}`, always removed): gen/gen0 —veth— dp/eth1, the
//! parent (GRO on, threaded NAPI pinned to the first --dp-cpus CPU). Container `i` holds eth0 with
//! MAC 02:42:c6:12:00:i and 198.18.0.16+i/20; it is a kernel macvlan bridge child of eth1 or an
//! xmacvlan endpoint on it. The wire host (gen0) is 198.18.15.254.
//!
//! Traffic: BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (XDP_TX out of gen0, paced per frame by the
//! program, destinations spread over endpoints, broadcast mixes), or an AF_PACKET sender inside a
//! container (container → wire, container → container). Delivered = Σ rx_packets of the receiving
//! interfaces (netlink); for xmacvlan the datapath's own per-endpoint counters are the cross-check.
//!
//! Tests (`--tests`): max (forwarding rate under overload), rfc2544 (zero-loss throughput, binary
//! search), latency (UDP request/response at 10/50/90 % of throughput), cpu (CPU seconds per million
//! frames at a fixed load), tcp (iperf3), container (container-sourced traffic), scaling (endpoint
//! count and broadcast fan-out).

mod floor;
mod gen;
pub mod lab;
mod latency;
mod napi;
mod nlstats;
mod report;
mod search;
mod sender;
mod stats;
mod tcp;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::gen::{GenConfig, Generator};
use crate::lab::{Backend, Lab};
use crate::latency::Latency;
use crate::search::Search;
use crate::stats::{CpuUse, ThreadInfo};
use crate::tcp::Tcp;

/// What the container does with the frames. Every choice is counted in the container interface's
/// rx_packets; they differ in how much of the container's stack each frame costs on the receiving CPU.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sink {
    /// Ethertype 0x88b5 (local experimental): dropped right after the interface counts it; isolates the
    /// forwarding path.
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
    fn label(self) -> String {
        match self.0 {
            None => "max".into(),
            Some(p) => format!("{:.3}", p / 1e6),
        }
    }
}

/// Kernel macvlan vs xmacvlan in one lab: RFC 2544 throughput, latency, TCP, CPU cost, scaling.
#[derive(Parser, Debug, Clone)]
#[command(name = "xmacvlan bench", version)]
pub struct Cli {
    /// The xmacvlan binary that runs the daemon (default: the one that ran `xmacvlan bench`, else the
    /// `xmacvlan` next to this program).
    #[arg(long, env = "XMACVLAN_BIN")]
    pub xmacvlan_bin: Option<PathBuf>,
    /// Backends, in the order they are run: kernel macvlan, xmacvlan (a daemon with no tuning
    /// flags: the tc fast path + AF_XDP workers), xmacvlan-xdp (--fast-path xdp), xmacvlan-afxdp
    /// (--fast-path off: every frame through AF_XDP and a worker), and tc-floor (not a product: veth
    /// endpoints with tc programs that only redirect, the floor of any tc datapath; no floods).
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

#[derive(Serialize, Debug, Clone)]
pub struct Trial {
    pub test: Test,
    pub backend: Backend,
    /// The round (1-based, `--rounds`) the trial ran in.
    pub round: u32,
    /// Bytes on the wire incl. FCS (the veth frame is 4 bytes shorter).
    pub size: usize,
    /// Target offered rate (None = unpaced).
    pub target_pps: Option<f64>,
    /// Where the frames come from and go: "wire→containers", "c0→wire", "c0→c1".
    pub path: String,
    /// Containers served by the backend, and how many the unicast frames were spread over.
    pub endpoints: usize,
    pub spread: usize,
    pub bcast_pct: f64,
    /// The measurement window (after the warm-up) and the rates in it.
    pub window_s: f64,
    pub offered_pps: f64,
    pub delivered_pps: f64,
    pub delivered_gbps: f64,
    /// Whole run (warm-up + window + drain): frames sent, deliveries expected (broadcasts count once
    /// per container), delivered, lost. Zero loss is judged on these exact counts.
    pub sent: u64,
    pub sent_bcast: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub loss_pct: f64,
    /// Deliveries the xmacvlan datapath counted on its endpoints over the whole run (cross-check).
    pub datapath_delivered: Option<u64>,
    /// The xmacvlan daemon's counters that moved over the whole run (parent socket's kernel drops,
    /// drop reasons, worker loop counters).
    pub datapath_counters: BTreeMap<String, u64>,
    /// CPU seconds the datapath CPUs were busy in the window, per million frames delivered
    /// (per million broadcast frames sent in the fan-out test).
    pub dp_cpu_busy_s: f64,
    pub cpu_s_per_mframe: f64,
    pub cpu_use: Vec<CpuUse>,
    pub napi_threads: Vec<ThreadInfo>,
    pub daemon_threads: Vec<ThreadInfo>,
    pub parent_ethtool: BTreeMap<String, u64>,
    pub gen_ethtool: BTreeMap<String, u64>,
    /// The live-frames generator's own kernel time per program run (sent or paced out), ns.
    pub gen_ns_per_run: Option<f64>,
}

#[derive(Serialize, Debug, Clone)]
pub struct LatencyRun {
    pub backend: Backend,
    pub round: u32,
    pub size: usize,
    pub load_pct: f64,
    pub load_pps: f64,
    pub latency: Latency,
}

#[derive(Serialize, Debug, Clone)]
pub struct TcpRun {
    pub backend: Backend,
    pub round: u32,
    #[serde(flatten)]
    pub tcp: Tcp,
}

#[derive(Serialize, Debug, Clone)]
pub struct Throughput {
    pub backend: Backend,
    pub round: u32,
    pub size: usize,
    pub bcast_pct: f64,
    pub pps: f64,
    pub gbps: f64,
    pub trials: usize,
}

#[derive(Serialize, Debug)]
pub struct Env {
    pub kernel: String,
    pub cpu_model: String,
    pub nproc: usize,
    pub ticks_per_sec: f64,
    pub unix_time: u64,
    pub date_utc: String,
}

#[derive(Serialize, Debug, Default)]
pub struct Results {
    pub trials: Vec<Trial>,
    pub throughput: Vec<Throughput>,
    pub latency: Vec<LatencyRun>,
    pub tcp: Vec<TcpRun>,
    pub errors: Vec<String>,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub command: Vec<String>,
    pub env: Env,
    pub placement: String,
    #[serde(skip)]
    pub cli: Option<Cli>,
    pub results: Results,
}

/// Entry point of the `xmacvlan-bench` binary (which `xmacvlan bench ARGS` runs). `default_bin` is
/// the xmacvlan binary to run the daemon with when neither `--xmacvlan-bin` nor `XMACVLAN_BIN` names
/// one. Returns the exit status: 0 ok, 1 failed, 130 interrupted.
pub fn main_with(args: Vec<OsString>, default_bin: Option<PathBuf>) -> u8 {
    let mut cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if cli.xmacvlan_bin.is_none() {
        cli.xmacvlan_bin = default_bin;
    }
    if let Err(e) = lab::install_signal_handling() {
        eprintln!("xmacvlan bench: error: {e:#}");
        return 1;
    }
    let command = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let r = run(cli, command);
    lab::cleanup_all();
    match r {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("xmacvlan bench: error: {e:#}");
            if lab::interrupted() {
                130
            } else {
                1
            }
        }
    }
}

fn env_info() -> Env {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let unix_time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Env { kernel, cpu_model, nproc, ticks_per_sec: stats::clock_ticks_per_sec(), unix_time, date_utc: utc(unix_time) }
}

/// "YYYY-MM-DD HH:MM UTC" from Unix seconds (civil-from-days, Howard Hinnant's algorithm).
fn utc(t: u64) -> String {
    let days = (t / 86400) as i64;
    let (h, m) = ((t % 86400) / 3600, (t % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

fn online_cpus() -> usize {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn validate(cli: &mut Cli) -> Result<()> {
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

fn run(mut cli: Cli, command: Vec<String>) -> Result<bool> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces, BPF_PROG_RUN, XDP)");
    }
    validate(&mut cli)?;
    let bin = if cli.backends.iter().any(|b| b.is_xmacvlan()) {
        let b = cli.xmacvlan_bin.clone().unwrap_or_else(|| PathBuf::from("target/release/xmacvlan"));
        Some(fs::canonicalize(&b).with_context(|| {
            format!(
                "xmacvlan binary {} not found (run `xmacvlan bench`, pass --xmacvlan-bin or XMACVLAN_BIN, or \
                 --backends kernel)",
                b.display()
            )
        })?)
    } else {
        None
    };
    if cli.tests.contains(&Test::Tcp) {
        tcp::ensure_iperf3()?;
    }
    let env = env_info();
    let app_cpu = cli.app_cpu.unwrap_or(cli.gen_cpu);
    let xmv_cpus = cli.dp_cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    let placement = format!(
        "generator and container sender on CPU {}; parent NAPI (threaded) on CPU {}; xmacvlan workers on CPU {}; \
         latency prober/responder and iperf3 on CPU {}",
        cli.gen_cpu, cli.dp_cpus[0], xmv_cpus, app_cpu
    );
    let mut report = Report {
        tool: "xmacvlan bench",
        version: env!("CARGO_PKG_VERSION"),
        command,
        env,
        placement,
        cli: Some(cli.clone()),
        results: Results::default(),
    };

    keep_off(&cli.dp_cpus);
    lab::remove_stale_namespaces();
    let pb = progress(&cli);
    {
        let daemon_args = cli.daemon_args.as_deref().unwrap_or("").split_whitespace().map(String::from).collect();
        let mut lab = Lab::create(cli.daemon_log.clone(), bin, xmv_cpus, daemon_args)?;
        let mut b = Bench { cli: &cli, lab: &mut lab, pb: &pb, res: &mut report.results, round: 1 };
        for round in 1..=cli.rounds {
            b.round = round;
            if cli.rounds > 1 {
                b.log(format!("round {round} of {}", cli.rounds));
            }
            for &backend in &cli.backends {
                lab::check_interrupted()?;
                if let Err(e) = b.run_backend(backend) {
                    if lab::interrupted() {
                        return Err(e);
                    }
                    let msg = format!("{}: {e:#}", backend.name());
                    b.log(format!("backend {msg}"));
                    b.res.errors.push(msg);
                }
                if let Err(e) = b.lab.reset() {
                    b.res.errors.push(format!("resetting the lab after {}: {e:#}", backend.name()));
                }
            }
        }
        // Lab dropped here: daemon stopped, namespaces deleted.
    }
    pb.finish_and_clear();

    print!("{}", report::text(&report));
    let mut ok = report.results.errors.is_empty();
    if cli.smoke {
        for t in &report.results.trials {
            if t.delivered == 0 {
                let msg = format!("smoke: {} delivered nothing ({:?}, {})", t.backend.name(), t.test, t.path);
                eprintln!("xmacvlan bench: {msg}");
                report.results.errors.push(msg);
                ok = false;
            }
        }
        for &b in &cli.backends {
            if !report.results.trials.iter().any(|t| t.backend == b) {
                eprintln!("xmacvlan bench: smoke: {} ran no trial", b.name());
                ok = false;
            }
        }
    }
    if let Some(dir) = &cli.out {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("report.json");
        fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        for f in report::plots(&report, dir)? {
            eprintln!("xmacvlan bench: wrote {}", f.display());
        }
        eprintln!("xmacvlan bench: wrote {}", path.display());
    }
    if cli.smoke {
        println!("smoke: {}", if ok { "ok" } else { "FAILED" });
    }
    Ok(ok)
}

/// Keeps this process, and everything it starts (ip, ethtool, the daemon's control thread), off the
/// datapath CPUs: on a 2-core machine a stray `ip` on the NAPI core delays NAPI by milliseconds,
/// long enough to overflow a 256-frame veth ring and fail a zero-loss trial. Threads that belong
/// elsewhere pin themselves.
fn keep_off(dp_cpus: &[usize]) {
    let n = online_cpus();
    // SAFETY: `set` is a zeroed cpu_set_t on our stack (all-zero is the empty set); CPU_SET indexes its bit array with
    // bounds checks, and sched_setaffinity gets its address and its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let mut any = false;
        for c in (0..n).filter(|c| !dp_cpus.contains(c)) {
            libc::CPU_SET(c, &mut set);
            any = true;
        }
        if any && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "xmacvlan bench: warning: cannot keep off the datapath CPUs: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn progress(cli: &Cli) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} trials  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let per_backend = cli.tests.iter().map(|t| match t {
        Test::Max => cli.sizes.len() * cli.bcast_pct.len() * cli.trials as usize,
        Test::Rfc2544 => cli.sizes.len() * cli.bcast_pct.len() * cli.search_steps.min(8) as usize,
        Test::Latency => cli.latency_sizes.len() * cli.latency_loads.len(),
        Test::Cpu => 1,
        Test::Tcp | Test::Container => {
            if cli.smoke {
                1
            } else {
                2
            }
        }
        Test::Scaling => cli.endpoints.len() * (cli.trials as usize + 1),
    });
    // The floor has no broadcast fan-out trial.
    let no_flood = if cli.tests.contains(&Test::Scaling) && cli.backends.contains(&Backend::TcFloor) {
        cli.endpoints.len()
    } else {
        0
    };
    pb.set_length(((per_backend.sum::<usize>() * cli.backends.len() - no_flood) * cli.rounds as usize) as u64);
    pb
}

/// Where a load's frames come from.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Source {
    /// The live-frames generator on the wire host, to containers.
    Wire,
    /// The AF_PACKET sender in container 0, to the wire host.
    ContainerToWire,
    /// The AF_PACKET sender in container 0, to container 1.
    ContainerToContainer,
}

#[derive(Clone, Debug)]
struct Load {
    test: Test,
    size: usize,
    rate: Rate,
    spread: usize,
    bcast_per_mille: u32,
    source: Source,
}

enum Traffic {
    Gen(Box<Generator>),
    Send(sender::Sender),
}

impl Traffic {
    fn sent(&self) -> (u64, u64) {
        match self {
            Traffic::Gen(g) => (g.tx_count(), g.tx_bcast()),
            Traffic::Send(s) => (s.sent(), 0),
        }
    }
    fn alive(&self) -> bool {
        match self {
            Traffic::Gen(g) => g.alive(),
            Traffic::Send(s) => s.alive(),
        }
    }
    /// Stops the traffic; for the generator, returns its own kernel time per program run (ns).
    fn finish(&mut self) -> Result<Option<f64>> {
        match self {
            Traffic::Gen(g) => g.finish().map(|s| (s.runs > 0).then_some(s.mean_ns_per_run)),
            Traffic::Send(s) => s.finish().map(|()| None),
        }
    }
}

struct Bench<'a> {
    cli: &'a Cli,
    lab: &'a mut Lab,
    pb: &'a ProgressBar,
    res: &'a mut Results,
    /// The round being run (1-based).
    round: u32,
}

impl Bench<'_> {
    fn log(&self, msg: String) {
        if self.pb.is_hidden() {
            eprintln!("xmacvlan bench: {msg}");
        } else {
            self.pb.println(format!("xmacvlan bench: {msg}"));
        }
    }

    fn pin_napi(&self) -> Result<Vec<i32>> {
        let dp_path = lab::ns_path(&self.lab.dp);
        let ifindex = self.lab.ifindex(&self.lab.dp, lab::PARENT_IF)?;
        let napi =
            napi::find_napi_threads(&dp_path, lab::PARENT_IF, ifindex).context("finding the parent's NAPI kthread")?;
        for (pid, comm) in &napi {
            napi::pin(*pid, self.cli.dp_cpus[0]).with_context(|| format!("pinning {comm} ({pid})"))?;
        }
        Ok(napi.iter().map(|(p, _)| *p).collect())
    }

    fn run_backend(&mut self, backend: Backend) -> Result<()> {
        let cli = self.cli;
        let main_tests: Vec<Test> = cli.tests.iter().copied().filter(|t| *t != Test::Scaling).collect();
        if !main_tests.is_empty() {
            // c0 receives the wire traffic (spread over --spread containers), c1 is the peer of the
            // container → container tests.
            let n = cli.spread.max(2);
            self.pb.set_message(format!("{}: setting up {n} containers", backend.name()));
            self.lab.setup(backend, n)?;
            if cli.sink == Sink::Socket {
                self.lab.open_udp_sink()?;
            }
            let napi = self.pin_napi()?;
            self.log(format!(
                "{}: {n} containers; parent NAPI kthread(s) {napi:?} on CPU {}{}",
                backend.name(),
                cli.dp_cpus[0],
                self.lab.daemon_pid().map(|p| format!("; daemon pid {p}")).unwrap_or_default()
            ));
            for &test in &main_tests {
                lab::check_interrupted()?;
                if let Err(e) = self.run_test(backend, test, &napi) {
                    if lab::interrupted() {
                        return Err(e);
                    }
                    let msg = format!("{} {test:?}: {e:#}", backend.name());
                    self.log(msg.clone());
                    self.res.errors.push(msg);
                }
            }
        }
        if cli.tests.contains(&Test::Scaling) {
            self.scaling(backend)?;
        }
        Ok(())
    }

    fn run_test(&mut self, backend: Backend, test: Test, napi: &[i32]) -> Result<()> {
        let cli = self.cli;
        let wire = |size, rate, bcast_pct: f64| Load {
            test,
            size,
            rate,
            spread: cli.spread,
            bcast_per_mille: (bcast_pct * 10.0).round() as u32,
            source: Source::Wire,
        };
        match test {
            Test::Max => {
                for &size in &cli.sizes {
                    for &pct in &cli.bcast_pct {
                        for _ in 0..cli.trials {
                            self.trial(backend, &wire(size, Rate(None), pct), napi)?;
                        }
                    }
                }
            }
            Test::Rfc2544 => {
                for &size in &cli.sizes {
                    for &pct in &cli.bcast_pct {
                        self.rfc2544(backend, wire(size, Rate(None), pct), napi)?;
                    }
                }
            }
            Test::Latency => {
                for &size in &cli.latency_sizes {
                    let thr = self
                        .res
                        .throughput
                        .iter()
                        .rfind(|t| t.backend == backend && t.size == size && t.bcast_pct == 0.0)
                        .map(|t| t.pps);
                    let Some(thr) = thr.filter(|&t| t > 0.0) else {
                        bail!(
                            "latency at {size} B needs that size's RFC 2544 throughput: run the rfc2544 test with it"
                        );
                    };
                    for &pct in &cli.latency_loads {
                        self.latency(backend, size, pct, thr)?;
                    }
                }
            }
            Test::Cpu => {
                self.trial(backend, &wire(64, cli.cost_rate, 0.0), napi)?;
            }
            Test::Tcp => {
                let (c0, c1) = (self.lab.containers[0].ns.clone(), self.lab.containers[1].ns.clone());
                let app = cli.app_cpu.unwrap_or(cli.gen_cpu);
                let ip0 = lab::ip_str(&lab::endpoint_ip(0));
                let ip1 = lab::ip_str(&lab::endpoint_ip(1));
                let gen = self.lab.gen.clone();
                let paths = [(&c0, &ip0, &gen, "wire", "c0"), (&c1, &ip1, &c0, "c0", "c1")];
                // The smoke only checks that the harness works: one path each.
                for &(server_ns, server_ip, client_ns, from, to) in &paths[..if cli.smoke { 1 } else { 2 }] {
                    self.pb.set_message(format!("{}: TCP {from}→{to}", backend.name()));
                    let t = tcp::run(server_ns, server_ip, app, client_ns, app, cli.tcp_duration, from, to)?;
                    self.log(format!(
                        "{}: TCP {from}→{to}: {:.2} Gbit/s ({} retransmits)",
                        backend.name(),
                        t.gbps,
                        t.retransmits
                    ));
                    self.res.tcp.push(TcpRun { backend, round: self.round, tcp: t });
                    self.pb.inc(1);
                }
            }
            Test::Container => {
                let sources = [Source::ContainerToContainer, Source::ContainerToWire];
                for &source in &sources[..if cli.smoke { 1 } else { 2 }] {
                    let load = Load { test, size: 64, rate: Rate(None), spread: 1, bcast_per_mille: 0, source };
                    self.trial(backend, &load, napi)?;
                }
            }
            Test::Scaling => unreachable!("run by run_backend"),
        }
        Ok(())
    }

    /// RFC 2544 throughput for one size: binary search over paced trials, judged on exact counts.
    fn rfc2544(&mut self, backend: Backend, load: Load, napi: &[i32]) -> Result<()> {
        let pct = load.bcast_per_mille as f64 / 10.0;
        // Start at the overload rate measured for this size if there is one, else at the generator's
        // ceiling on this machine kind.
        let start = self
            .res
            .trials
            .iter()
            .filter(|t| t.test == Test::Max && t.backend == backend && t.size == load.size && t.bcast_pct == pct)
            .map(|t| t.delivered_pps)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            .unwrap_or(8e6);
        let mut s = Search::new(start.max(1e4), self.cli.resolution, self.cli.search_steps);
        let mut n = 0;
        while let Some(rate) = s.next() {
            let t = self.trial(backend, &Load { rate: Rate(Some(rate)), ..load.clone() }, napi)?;
            s.record(rate, t.lost == 0 || t.loss_pct <= self.cli.loss_tolerance);
            n += 1;
        }
        // Steps planned but not needed.
        self.pb.inc((self.cli.search_steps.min(8) as usize).saturating_sub(n) as u64);
        let pps = s.throughput();
        self.log(format!(
            "{}: RFC 2544 throughput at {} B: {:.3} Mpps ({n} trials)",
            backend.name(),
            load.size,
            pps / 1e6
        ));
        self.res.throughput.push(Throughput {
            round: self.round,
            backend,
            size: load.size,
            bcast_pct: pct,
            pps,
            gbps: pps * load.size as f64 * 8.0 / 1e9,
            trials: n,
        });
        Ok(())
    }

    fn latency(&mut self, backend: Backend, size: usize, pct: f64, thr: f64) -> Result<()> {
        let cli = self.cli;
        let rate = thr * pct / 100.0;
        self.pb.set_message(format!("{}: latency at {pct} % of throughput", backend.name()));
        let app = cli.app_cpu.unwrap_or(cli.gen_cpu);
        let c0 = lab::ns_path(&self.lab.containers[0].ns);
        let ip0 = std::net::Ipv4Addr::from(lab::endpoint_ip(0));
        let _echo = latency::Responder::start(c0, ip0, app)?;
        let mut traffic = self.start_traffic(&Load {
            test: Test::Latency,
            size,
            rate: Rate(Some(rate)),
            spread: cli.spread,
            bcast_per_mille: 0,
            source: Source::Wire,
        })?;
        lab::sleep_checked(Duration::from_secs_f64(cli.warmup))?;
        // UDP payload so that the probe frame has `size` bytes on the wire (14 + 20 + 8 + payload + 4 FCS).
        let payload = size.saturating_sub(46).max(18);
        let r = latency::probe(
            lab::ns_path(&self.lab.gen),
            std::net::Ipv4Addr::from(lab::GEN_IP),
            ip0,
            app,
            cli.probe_rate,
            Duration::from_secs_f64(cli.duration),
            payload,
        );
        let alive = traffic.alive();
        traffic.finish()?;
        let l = r?;
        if !alive {
            bail!("the generator stopped during the latency run");
        }
        self.log(format!(
            "{}: latency {size} B at {pct} % ({:.3} Mpps): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({}/{} answered)",
            backend.name(),
            rate / 1e6,
            l.p50_us,
            l.p99_us,
            l.p999_us,
            l.probes_answered,
            l.probes_sent
        ));
        self.res.latency.push(LatencyRun {
            backend,
            round: self.round,
            size,
            load_pct: pct,
            load_pps: rate,
            latency: l,
        });
        self.pb.inc(1);
        Ok(())
    }

    fn scaling(&mut self, backend: Backend) -> Result<()> {
        let cli = self.cli;
        let counts = cli.endpoints.clone();
        self.pb.set_message(format!("{}: scaling, setting up {} container(s)", backend.name(), counts[0]));
        self.lab.setup(backend, counts[0])?;
        let napi = self.pin_napi()?;
        for &n in &counts {
            lab::check_interrupted()?;
            if n > self.lab.present {
                self.pb.set_message(format!("{}: growing to {n} containers", backend.name()));
                let t0 = Instant::now();
                self.lab.grow(n)?;
                self.log(format!("{}: {n} containers ready in {:.1} s", backend.name(), t0.elapsed().as_secs_f64()));
            }
            let uni = Load {
                test: Test::Scaling,
                size: 64,
                rate: Rate(None),
                spread: n,
                bcast_per_mille: 0,
                source: Source::Wire,
            };
            for _ in 0..cli.trials {
                self.trial(backend, &uni, &napi)?;
            }
            // The floor does not flood: it has no broadcast fan-out to measure.
            if backend != Backend::TcFloor {
                let bc = Load { rate: Rate(Some(cli.bcast_rate)), spread: 1, bcast_per_mille: 1000, ..uni };
                self.trial(backend, &bc, &napi)?;
            }
        }
        Ok(())
    }

    fn frame(&self, load: &Load) -> Vec<u8> {
        let (dst, src) = match load.source {
            Source::Wire => (lab::endpoint_mac(0), lab::GEN_MAC),
            Source::ContainerToWire => (lab::GEN_MAC, lab::endpoint_mac(0)),
            Source::ContainerToContainer => (lab::endpoint_mac(1), lab::endpoint_mac(0)),
        };
        match self.cli.sink {
            Sink::L2 => gen::build_l2_frame(load.size, dst, src),
            Sink::ClosedPort | Sink::Socket => gen::build_frame(load.size, dst, src, lab::GEN_IP, lab::endpoint_ip(0)),
        }
    }

    fn start_traffic(&self, load: &Load) -> Result<Traffic> {
        let frame = self.frame(load);
        Ok(match load.source {
            Source::Wire => Traffic::Gen(Box::new(Generator::start(GenConfig {
                netns: lab::ns_path(&self.lab.gen),
                ifname: lab::GEN_IF.to_string(),
                cpu: self.cli.gen_cpu,
                frame,
                repeat: self.cli.repeat,
                batch_size: self.cli.batch_size,
                rate_pps: load.rate.0,
                n_dst: load.spread as u32,
                bcast_per_mille: load.bcast_per_mille,
            })?)),
            Source::ContainerToWire | Source::ContainerToContainer => {
                let link = self.lab.container_link(0)?;
                let c0 = lab::ns_path(&self.lab.containers[0].ns);
                Traffic::Send(sender::Sender::start(c0, link.ifindex, self.cli.gen_cpu, frame)?)
            }
        })
    }

    /// Receiving counters for `source`: Σ rx of the containers, the wire host's rx, or c1's rx.
    fn delivered_now(&self, source: Source) -> Result<(Instant, u64)> {
        match source {
            Source::Wire => self.lab.rx_sum(0..self.lab.present),
            Source::ContainerToWire => self.lab.gen_rx(),
            Source::ContainerToContainer => self.lab.rx_sum(1..2),
        }
    }

    /// One trial: counters, traffic for warm-up + window, drain, counters. Rates come from the window,
    /// loss from the whole run's exact counts.
    fn trial(&mut self, backend: Backend, load: &Load, napi: &[i32]) -> Result<Trial> {
        let cli = self.cli;
        let path = match load.source {
            Source::Wire => "wire→containers",
            Source::ContainerToWire => "c0→wire",
            Source::ContainerToContainer => "c0→c1",
        };
        self.pb.set_message(format!(
            "{} {:?} {path} {} B, rate {}, {} endpoint(s), {:.1} % broadcast",
            backend.name(),
            load.test,
            load.size,
            load.rate.label(),
            self.lab.present,
            load.bcast_per_mille as f64 / 10.0
        ));
        let (_, s0) = self.delivered_now(load.source)?;
        let dp0 = self.lab.datapath_counters()?;
        let mut traffic = self.start_traffic(load)?;
        lab::sleep_checked(Duration::from_secs_f64(cli.warmup))?;
        if !traffic.alive() {
            traffic.finish()?;
            bail!("the traffic source stopped during the warm-up");
        }

        // Window opens: diagnostics first, the delivered counter (the measured one) last.
        let daemon = self.lab.daemon_pid();
        let cpu0 = stats::cpu_times();
        let napi0 = kthreads(napi);
        let dthr0 = daemon.map(stats::process_threads).unwrap_or_default();
        let geth0 = stats::ethtool_stats(&self.lab.gen, lab::GEN_IF);
        let peth0 = stats::ethtool_stats(&self.lab.dp, lab::PARENT_IF);
        let tx0a = traffic.sent().0;
        let (t0, w0) = self.delivered_now(load.source)?;
        let tx0 = (tx0a + traffic.sent().0) / 2;

        lab::sleep_checked(Duration::from_secs_f64(cli.duration))?;

        let tx1a = traffic.sent().0;
        let (t1, w1) = self.delivered_now(load.source)?;
        let tx1 = (tx1a + traffic.sent().0) / 2;
        let peth1 = stats::ethtool_stats(&self.lab.dp, lab::PARENT_IF);
        let geth1 = stats::ethtool_stats(&self.lab.gen, lab::GEN_IF);
        let dthr1 = daemon.map(stats::process_threads).unwrap_or_default();
        let napi1 = kthreads(napi);
        let cpu1 = stats::cpu_times();

        let alive = traffic.alive();
        let gen_ns_per_run = traffic.finish()?;
        let (sent, sent_bcast) = traffic.sent();
        if !alive {
            bail!("the traffic source stopped during the trial");
        }
        if let Some(pid) = daemon {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() || stats::process_threads(pid).is_empty() {
                bail!(
                    "the xmacvlan daemon (pid {pid}) died during the trial; log tail:\n{}",
                    self.lab.daemon_log_tail(30)
                );
            }
        }
        // Drain: whatever is still queued gets delivered or dropped (rings hold milliseconds).
        lab::sleep_checked(Duration::from_secs_f64((cli.duration / 2.0).clamp(0.1, 0.3)))?;
        let (_, s1) = self.delivered_now(load.source)?;
        let dp1 = self.lab.datapath_counters()?;

        let dp = match (dp0, dp1) {
            (Some(a), Some(b)) => Some(stats::map_delta(&b, &a)),
            _ => None,
        };
        let fanout = if load.source == Source::Wire { self.lab.present as u64 } else { 1 };
        let expected = (sent - sent_bcast) + sent_bcast * fanout;
        let delivered = s1.wrapping_sub(s0);
        let lost = expected.saturating_sub(delivered);
        let window = (t1 - t0).as_secs_f64();
        let delivered_pps = w1.wrapping_sub(w0) as f64 / window;
        let offered_pps = tx1.saturating_sub(tx0) as f64 / window;
        let cpu_use = stats::cpu_use(&cpu1, &cpu0);
        let tps = stats::clock_ticks_per_sec();
        let dp_busy: f64 = cli
            .dp_cpus
            .iter()
            .filter_map(|c| Some(cpu1.get(c)?.busy.saturating_sub(cpu0.get(c)?.busy) as f64 / tps))
            .sum();
        // The fan-out test's cost is per broadcast frame sent; all others per frame delivered.
        let per = if load.bcast_per_mille == 1000 { offered_pps * window } else { delivered_pps * window };
        let t = Trial {
            test: load.test,
            backend,
            round: self.round,
            size: load.size,
            target_pps: load.rate.0,
            path: path.into(),
            endpoints: self.lab.present,
            spread: load.spread,
            bcast_pct: load.bcast_per_mille as f64 / 10.0,
            window_s: window,
            offered_pps,
            delivered_pps,
            delivered_gbps: delivered_pps * load.size as f64 * 8.0 / 1e9,
            sent,
            sent_bcast,
            expected,
            delivered,
            lost,
            loss_pct: if expected > 0 { 100.0 * lost as f64 / expected as f64 } else { 0.0 },
            datapath_delivered: dp.as_ref().map(|m| {
                let key = if path.ends_with("wire") { "delivered.wire" } else { "delivered" };
                m.get(key).copied().unwrap_or(0)
            }),
            datapath_counters: dp.unwrap_or_default(),
            dp_cpu_busy_s: dp_busy,
            cpu_s_per_mframe: if per > 0.0 { dp_busy / per * 1e6 } else { 0.0 },
            cpu_use,
            napi_threads: stats::threads_delta(&napi1, &napi0),
            daemon_threads: stats::threads_delta(&dthr1, &dthr0),
            parent_ethtool: stats::map_delta(&peth1, &peth0),
            gen_ethtool: stats::map_delta(&geth1, &geth0),
            gen_ns_per_run,
        };
        self.log(format!(
            "{:>8} {:<9} {:<15} {:>4} B rate {:>7}: offered {:.3} Mpps, delivered {:.3} Mpps; run: {} sent, {} lost ({:.3} %){}",
            backend.name(),
            format!("{:?}", load.test).to_lowercase(),
            format!("{path} ×{}", self.lab.present),
            load.size,
            load.rate.label(),
            offered_pps / 1e6,
            delivered_pps / 1e6,
            sent,
            lost,
            t.loss_pct,
            t.datapath_delivered.map(|d| format!("; datapath counted {d}, interfaces {delivered}")).unwrap_or_default()
        ));
        self.pb.inc(1);
        self.res.trials.push(t.clone());
        Ok(t)
    }
}

fn kthreads(pids: &[i32]) -> Vec<ThreadInfo> {
    pids.iter().filter_map(|&p| stats::thread_info(p, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_400_000), "2026-11-23 02:13 UTC");
    }

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
