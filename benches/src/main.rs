//! xmacvlan-bench: wire→container forwarding rate of kernel macvlan (bridge mode) vs xmacvlan, measured
//! in the same namespace lab in the same run.
//!
//! Lab (namespaces `xmvb-<pid>-{gen,dp,c1}`, always removed): gen/gen0 —veth— dp/eth1 (the parent; GRO on,
//! threaded NAPI pinned to --dp-cpu); c1 holds the container interface (eth0, 02:42:c6:12:00:0b,
//! 198.18.0.11/24). The generator runs BPF_PROG_RUN with XDP live frames (XDP_TX out of gen0) on
//! --gen-cpu. Delivered = rx_packets of the container interface over the trial; offered = frames the
//! generator ran in the same window (interpolated between its calls; gen0's ethtool counters
//! tx_queue_0_xdp_xmit + _errors in the JSON are the same thing counted by the driver).
//!
//! The default --sink l2 sends ethertype 0x88b5 so the container's stack drops each frame right after
//! its interface counted it: the figure is the forwarding path's. With IPv4/UDP to a closed port
//! (--sink closed-port) the container's ICMP port-unreachable path (a route lookup per frame before the
//! rate limit) costs ~3/4 of the receiving CPU and the kernel backend drops to ~0.3 Mpps on this kind of
//! machine; --sink socket (a bound UDP socket that never reads) is in between (~0.65 Mpps).

mod gen;
mod lab;
mod napi;
mod stats;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::gen::{GenConfig, Generator};
use crate::lab::Lab;
use crate::stats::{CpuUse, LinkStats, ThreadInfo};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Backend {
    Kernel,
    Xmacvlan,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Xmacvlan => "xmacvlan",
        }
    }
}

/// What the container does with the frames. Every choice is counted in the container interface's
/// rx_packets; they differ in how much of the container's stack each frame costs on the receiving CPU.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Sink {
    /// IPv4/UDP to a closed port: the full local-delivery path plus an ICMP port-unreachable attempt per
    /// frame (its route lookup happens before the rate limit: the most expensive).
    ClosedPort,
    /// IPv4/UDP to a bound, connected socket whose tiny receive buffer stays full: IP + UDP lookup + drop.
    Socket,
    /// Ethertype 0x88b5 (local experimental): dropped right after the interface counts it; isolates the
    /// forwarding path.
    L2,
}

impl Sink {
    fn name(self) -> &'static str {
        match self {
            Sink::ClosedPort => "closed-port",
            Sink::Socket => "socket",
            Sink::L2 => "l2",
        }
    }
}

/// An offered rate: "max" (as fast as the generator goes) or Mpps.
#[derive(Copy, Clone, Debug, PartialEq)]
struct Rate(Option<f64>);

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

/// Wire→container forwarding rate: kernel macvlan (bridge) vs xmacvlan, same lab, same run.
#[derive(Parser, Debug)]
#[command(name = "xmacvlan-bench", version)]
struct Cli {
    /// The xmacvlan binary (relative paths are taken from the current directory).
    #[arg(long, env = "XMACVLAN_BIN", default_value = "../target/release/xmacvlan")]
    xmacvlan_bin: PathBuf,
    /// Seconds per trial (measured after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds before each trial's window opens (the generator already runs).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Frame sizes on the wire, FCS included (64..=1518); the veth frame is 4 bytes shorter.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    sizes: Vec<usize>,
    /// Offered rates: `max` (unpaced: the generator overloads the parent) and/or Mpps values (paced by the
    /// generator's program), e.g. `max,0.1,0.2,0.5`.
    #[arg(long, value_delimiter = ',', default_value = "max")]
    rates: Vec<Rate>,
    /// CPU of the generator thread.
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// CPU of the parent's NAPI kthread (and, by default, of the xmacvlan daemon: `daemon --cpus`).
    #[arg(long, default_value_t = 1)]
    dp_cpu: usize,
    /// `--cpus` passed to the xmacvlan daemon (default: --dp-cpu).
    #[arg(long)]
    xmv_cpus: Option<String>,
    /// Backends, in the order they are run. [default: kernel,xmacvlan]
    #[arg(long, value_delimiter = ',')]
    backends: Option<Vec<Backend>>,
    /// What the container does with the frames (see the value help).
    #[arg(long, value_enum, default_value_t = Sink::L2)]
    sink: Sink,
    /// Trials per (backend, size); the summary uses the median.
    #[arg(long, default_value_t = 3)]
    trials: u32,
    /// Frames per BPF_PROG_RUN call. Each call also swaps the XDP dispatcher (two synchronize_rcu, tens
    /// of ms during which nothing is sent), so calls must be long: 1<<22 keeps the generator ~97 % busy.
    #[arg(long, default_value_t = 1 << 22)]
    repeat: u32,
    /// Frames per in-kernel batch of the live-frames test run (1..=256).
    #[arg(long, default_value_t = 64)]
    batch_size: u32,
    /// Write every trial, the placement and the environment as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep the xmacvlan daemon's output in FILE (default: a temporary file, shown on failure).
    #[arg(long, value_name = "FILE")]
    daemon_log: Option<PathBuf>,
    /// Quick check for CI: one 1 s trial (0.5 s warm-up) per size, both backends; fails if a backend errs or
    /// delivers nothing.
    #[arg(long)]
    smoke: bool,
}

#[derive(Serialize, Debug, Clone)]
struct Trial {
    backend: Backend,
    /// Bytes on the wire incl. FCS.
    size: usize,
    /// Bytes of the frame the generator sends (no FCS on veth).
    frame_len: usize,
    /// Target offered rate (None = unpaced).
    target_pps: Option<f64>,
    trial: u32,
    container_if: String,
    duration_s: f64,
    offered_frames: u64,
    offered_pps: f64,
    delivered_frames: u64,
    delivered_pps: f64,
    /// delivered_pps × size × 8.
    delivered_gbps: f64,
    loss_pct: f64,
    container: LinkStats,
    parent: LinkStats,
    /// `ethtool -S` counters of gen0 / eth1 that moved during the trial.
    gen_ethtool: BTreeMap<String, u64>,
    parent_ethtool: BTreeMap<String, u64>,
    /// Offered frames estimated from the generator's per-call progress (a cross-check of offered_frames,
    /// which is the program's own tx_count sampled next to the container counter).
    offered_frames_interpolated: u64,
    /// The generator's own kernel time per program run (BPF_PROG_RUN duration).
    gen_ns_per_run: f64,
    /// Program runs (sent + paced out) in all, warm-up included, and BPF_PROG_RUN calls.
    gen_runs: u64,
    gen_calls: u64,
    cpu_use: Vec<CpuUse>,
    /// cpu_ticks are deltas over the trial (ticks_per_sec in the report's environment).
    napi_threads: Vec<ThreadInfo>,
    daemon_threads: Vec<ThreadInfo>,
}

#[derive(Serialize, Debug)]
struct SizeSummary {
    size: usize,
    target_pps: Option<f64>,
    kernel_pps: Option<f64>,
    xmacvlan_pps: Option<f64>,
    /// xmacvlan / kernel.
    ratio: Option<f64>,
}

#[derive(Serialize, Debug)]
struct Env {
    kernel: String,
    cpu_model: String,
    nproc: usize,
    ticks_per_sec: f64,
    unix_time: u64,
}

#[derive(Serialize, Debug)]
struct Config {
    duration_s: f64,
    warmup_s: f64,
    sizes: Vec<usize>,
    rates_pps: Vec<Option<f64>>,
    backends: Vec<Backend>,
    trials: u32,
    gen_cpu: usize,
    dp_cpu: usize,
    xmv_cpus: String,
    sink: Sink,
    repeat: u32,
    batch_size: u32,
    xmacvlan_bin: Option<String>,
    xmacvlan_version: Option<String>,
    smoke: bool,
}

#[derive(Serialize, Debug)]
struct Report {
    tool: &'static str,
    version: &'static str,
    env: Env,
    config: Config,
    trials: Vec<Trial>,
    summary: Vec<SizeSummary>,
    errors: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = lab::install_signal_handling() {
        eprintln!("xmacvlan-bench: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let r = real_main(cli);
    lab::cleanup_all();
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xmacvlan-bench: error: {e:#}");
            if lab::interrupted() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
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
    Env { kernel, cpu_model, nproc, ticks_per_sec: stats::clock_ticks_per_sec(), unix_time }
}

fn online_cpus() -> usize {
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn real_main(mut cli: Cli) -> Result<bool> {
    let backends = cli.backends.clone().unwrap_or_else(|| vec![Backend::Kernel, Backend::Xmacvlan]);
    if cli.smoke {
        cli.duration = 1.0;
        cli.warmup = 0.5;
        cli.trials = 1;
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces, BPF_PROG_RUN, XDP)");
    }
    if !cli.duration.is_finite() || cli.duration <= 0.0 || !cli.warmup.is_finite() || cli.warmup < 0.0 {
        bail!("--duration must be > 0 and --warmup >= 0");
    }
    if cli.trials == 0 {
        bail!("--trials must be at least 1");
    }
    if cli.sizes.is_empty() {
        bail!("--sizes is empty");
    }
    for &s in &cli.sizes {
        if !(64..=1518).contains(&s) {
            bail!("frame size {s} out of range 64..=1518 (wire size with FCS; the parent MTU is 1500)");
        }
    }
    if !(1..=256).contains(&cli.batch_size) {
        bail!("--batch-size must be in 1..=256");
    }
    if cli.repeat < 64 {
        bail!("--repeat must be at least 64");
    }
    let ncpu = online_cpus();
    for (what, c) in [("--gen-cpu", cli.gen_cpu), ("--dp-cpu", cli.dp_cpu)] {
        if c >= ncpu {
            bail!("{what} {c}: this machine has {ncpu} CPUs");
        }
    }
    if cli.gen_cpu == cli.dp_cpu {
        eprintln!("xmacvlan-bench: warning: generator and NAPI share CPU {}", cli.gen_cpu);
    }
    let xmv_cpus = cli.xmv_cpus.clone().unwrap_or_else(|| cli.dp_cpu.to_string());

    let mut bin = None;
    let mut bin_version = None;
    if backends.contains(&Backend::Xmacvlan) {
        let p = fs::canonicalize(&cli.xmacvlan_bin).with_context(|| {
            format!(
                "xmacvlan binary {} not found (build it with `cargo build --release`, or pass --xmacvlan-bin / XMACVLAN_BIN, \
                 or run only --backends kernel)",
                cli.xmacvlan_bin.display()
            )
        })?;
        bin_version = lab::run_cmd(std::process::Command::new(&p).arg("--version"), Duration::from_secs(5))
            .ok()
            .map(|o| o.stdout.trim().to_string());
        bin = Some(p);
    }

    let env = env_info();
    let config = Config {
        duration_s: cli.duration,
        warmup_s: cli.warmup,
        sizes: cli.sizes.clone(),
        rates_pps: cli.rates.iter().map(|r| r.0).collect(),
        backends: backends.clone(),
        trials: cli.trials,
        gen_cpu: cli.gen_cpu,
        dp_cpu: cli.dp_cpu,
        xmv_cpus: xmv_cpus.clone(),
        sink: cli.sink,
        repeat: cli.repeat,
        batch_size: cli.batch_size,
        xmacvlan_bin: bin.as_ref().map(|p| p.display().to_string()),
        xmacvlan_version: bin_version,
        smoke: cli.smoke,
    };

    lab::remove_stale_namespaces();
    let mut trials = Vec::new();
    let mut errors = Vec::new();
    {
        let mut lab = Lab::create(cli.daemon_log.clone())?;
        eprintln!("xmacvlan-bench: lab {} / {} / {} ready", lab.gen, lab.dp, lab.c1);
        for &backend in &backends {
            lab::check_interrupted()?;
            match run_backend(&mut lab, &cli, backend, bin.as_deref(), &xmv_cpus, &mut trials) {
                Ok(()) => {}
                Err(e) if lab::interrupted() => return Err(e),
                Err(e) => {
                    let msg = format!("{}: {e:#}", backend.name());
                    eprintln!("xmacvlan-bench: backend {msg}");
                    errors.push(msg);
                }
            }
            if let Err(e) = lab.reset() {
                errors.push(format!("resetting the lab after {}: {e:#}", backend.name()));
            }
        }
        // Lab dropped here: daemon stopped, namespaces deleted.
    }

    let mut summary: Vec<SizeSummary> = Vec::new();
    for &size in &cli.sizes {
        for rate in &cli.rates {
            let med = |b: Backend| {
                median(
                    trials
                        .iter()
                        .filter(|t: &&Trial| t.backend == b && t.size == size && t.target_pps == rate.0)
                        .map(|t| t.delivered_pps)
                        .collect(),
                )
            };
            let (k, x) = (med(Backend::Kernel), med(Backend::Xmacvlan));
            let ratio = match (k, x) {
                (Some(k), Some(x)) if k > 0.0 => Some(x / k),
                _ => None,
            };
            summary.push(SizeSummary { size, target_pps: rate.0, kernel_pps: k, xmacvlan_pps: x, ratio });
        }
    }

    print_table(&env, &config, &trials, &summary, &errors);

    let mut ok = errors.is_empty();
    if cli.smoke {
        for t in &trials {
            if t.delivered_frames == 0 {
                errors.push(format!("smoke: {} delivered nothing at {} B", t.backend.name(), t.size));
                ok = false;
            }
        }
        for &b in &backends {
            if !trials.iter().any(|t| t.backend == b) {
                ok = false;
            }
        }
    }
    let report =
        Report { tool: "xmacvlan-bench", version: env!("CARGO_PKG_VERSION"), env, config, trials, summary, errors };
    if let Some(path) = &cli.json {
        let s = serde_json::to_string_pretty(&report)?;
        fs::write(path, s + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("xmacvlan-bench: wrote {}", path.display());
    }
    if cli.smoke {
        println!("smoke: {}", if ok { "ok" } else { "FAILED" });
    }
    Ok(ok)
}

/// Sets `backend` up in the lab, pins the parent's NAPI kthread and runs every size × trial.
fn run_backend(
    lab: &mut Lab,
    cli: &Cli,
    backend: Backend,
    bin: Option<&Path>,
    xmv_cpus: &str,
    out: &mut Vec<Trial>,
) -> Result<()> {
    eprintln!("xmacvlan-bench: setting up {}", backend.name());
    let cif = match backend {
        Backend::Kernel => lab.setup_kernel()?,
        Backend::Xmacvlan => lab.setup_xmacvlan(bin.expect("checked in real_main"), xmv_cpus)?,
    };
    if cli.sink == Sink::Socket {
        lab.open_udp_sink()?;
    }
    let dp_path = lab.ns_path(&lab.dp);
    let parent_ifindex = lab.ifindex(&lab.dp, lab::PARENT_IF)?;
    let napi = napi::find_napi_threads(&dp_path, lab::PARENT_IF, parent_ifindex)
        .context("finding the parent's NAPI kthread")?;
    for (pid, comm) in &napi {
        napi::pin(*pid, cli.dp_cpu).with_context(|| format!("pinning {comm} ({pid})"))?;
    }
    eprintln!(
        "xmacvlan-bench: {}: container interface {cif}; NAPI {} pinned to CPU {}{}",
        backend.name(),
        napi.iter().map(|(p, c)| format!("{c} (pid {p})")).collect::<Vec<_>>().join(", "),
        cli.dp_cpu,
        lab.daemon_pid().map(|p| format!("; daemon pid {p}, --cpus {xmv_cpus}")).unwrap_or_default(),
    );
    let napi_pids: Vec<i32> = napi.iter().map(|(p, _)| *p).collect();
    for &size in &cli.sizes {
        for &rate in &cli.rates {
            for trial in 1..=cli.trials {
                lab::check_interrupted()?;
                let t = run_trial(lab, cli, backend, size, rate, trial, &cif, &napi_pids)?;
                eprintln!(
                "xmacvlan-bench: {:>8} {:>4} B rate {} #{}: offered {:.3} Mpps, delivered {:.3} Mpps ({:.1} % loss)",
                backend.name(),
                size,
                rate.label(),
                trial,
                t.offered_pps / 1e6,
                t.delivered_pps / 1e6,
                t.loss_pct
            );
                out.push(t);
            }
        }
    }
    Ok(())
}

fn kthreads(pids: &[i32]) -> Vec<ThreadInfo> {
    pids.iter().filter_map(|&p| stats::thread_info(p, p)).collect()
}

#[allow(clippy::too_many_arguments)]
fn run_trial(
    lab: &Lab,
    cli: &Cli,
    backend: Backend,
    size: usize,
    rate: Rate,
    trial: u32,
    cif: &str,
    napi_pids: &[i32],
) -> Result<Trial> {
    let frame = match cli.sink {
        Sink::L2 => gen::build_l2_frame(size, lab::CONTAINER_MAC, lab::GEN_MAC),
        Sink::ClosedPort | Sink::Socket => {
            gen::build_frame(size, lab::CONTAINER_MAC, lab::GEN_MAC, lab::GEN_IP, lab::CONTAINER_IP)
        }
    };
    let frame_len = frame.len();
    let mut g = Generator::start(GenConfig {
        netns: lab.ns_path(&lab.gen),
        ifname: lab::GEN_IF.to_string(),
        cpu: cli.gen_cpu,
        frame,
        repeat: cli.repeat,
        batch_size: cli.batch_size,
        rate_pps: rate.0,
    })?;
    lab::sleep_checked(Duration::from_secs_f64(cli.warmup))?;
    if !g.alive() {
        g.finish()?;
        bail!("the generator stopped during the warm-up");
    }

    // Window opens: diagnostics first, the container counter (the measured one) last.
    let daemon = lab.daemon_pid();
    let cpu0 = stats::cpu_times();
    let napi0 = kthreads(napi_pids);
    let dthr0 = daemon.map(stats::process_threads).unwrap_or_default();
    let geth0 = stats::ethtool_stats(&lab.gen, lab::GEN_IF);
    let peth0 = stats::ethtool_stats(&lab.dp, lab::PARENT_IF);
    let (_, parent0) = stats::link_stats(&lab.dp, lab::PARENT_IF)?;
    // The program's tx_count read on both sides of the container sample, averaged: the same instant.
    let tx0a = g.tx_count();
    let (t0, c0) = stats::link_stats(&lab.c1, cif)?;
    let tx0 = (tx0a + g.tx_count()) / 2;

    lab::sleep_checked(Duration::from_secs_f64(cli.duration))?;

    // Window closes: the container counter first.
    let tx1a = g.tx_count();
    let (t1, c1) = stats::link_stats(&lab.c1, cif)?;
    let tx1 = (tx1a + g.tx_count()) / 2;
    let (_, parent1) = stats::link_stats(&lab.dp, lab::PARENT_IF)?;
    let peth1 = stats::ethtool_stats(&lab.dp, lab::PARENT_IF);
    let geth1 = stats::ethtool_stats(&lab.gen, lab::GEN_IF);
    let dthr1 = daemon.map(stats::process_threads).unwrap_or_default();
    let napi1 = kthreads(napi_pids);
    let cpu1 = stats::cpu_times();

    let alive = g.alive();
    // After finish(): the call in flight at t1 has recorded its end, so t1 is inside the progress records.
    let summary = g.finish()?;
    let offered_interp = g.frames_at(t1).saturating_sub(g.frames_at(t0));
    let offered = tx1.saturating_sub(tx0);
    if !alive {
        bail!("the generator stopped during the trial");
    }
    if let Some(pid) = daemon {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() || stats::process_threads(pid).is_empty() {
            bail!("the xmacvlan daemon (pid {pid}) died during the trial; log tail:\n{}", lab.daemon_log_tail(30));
        }
    }

    let dur = (t1 - t0).as_secs_f64();
    let container = c1.delta(&c0);
    let delivered = container.rx_packets;
    let offered_pps = offered as f64 / dur;
    let delivered_pps = delivered as f64 / dur;
    let loss_pct =
        if offered > 0 { 100.0 * (offered as f64 - delivered as f64).max(0.0) / offered as f64 } else { 0.0 };
    let cpu_use: Vec<CpuUse> = stats::cpu_use(&cpu1, &cpu0);
    Ok(Trial {
        backend,
        size,
        frame_len,
        target_pps: rate.0,
        trial,
        container_if: cif.to_string(),
        duration_s: dur,
        offered_frames: offered,
        offered_pps,
        delivered_frames: delivered,
        delivered_pps,
        delivered_gbps: delivered_pps * size as f64 * 8.0 / 1e9,
        loss_pct,
        container,
        parent: parent1.delta(&parent0),
        gen_ethtool: stats::map_delta(&geth1, &geth0),
        parent_ethtool: stats::map_delta(&peth1, &peth0),
        offered_frames_interpolated: offered_interp,
        gen_ns_per_run: summary.mean_ns_per_run,
        gen_runs: summary.runs,
        gen_calls: summary.calls,
        cpu_use,
        napi_threads: stats::threads_delta(&napi1, &napi0),
        daemon_threads: stats::threads_delta(&dthr1, &dthr0),
    })
}

fn print_table(env: &Env, cfg: &Config, trials: &[Trial], summary: &[SizeSummary], errors: &[String]) {
    println!(
        "xmacvlan-bench {}: wire→container, kernel {}, {} ({} CPUs); generator CPU {}, parent NAPI CPU {}, xmacvlan --cpus {}; \
         sink {}; {} s trials after {} s warm-up",
        env!("CARGO_PKG_VERSION"),
        env.kernel,
        env.cpu_model,
        env.nproc,
        cfg.gen_cpu,
        cfg.dp_cpu,
        cfg.xmv_cpus,
        cfg.sink.name(),
        cfg.duration_s,
        cfg.warmup_s
    );
    println!("(target: offered rate asked of the generator, Mpps; max = unpaced; medians below)");
    println!();
    println!(
        "{:>5}  {:>7}  {:<9} {:>5}  {:>12}  {:>14}  {:>7}  {:>7}  {:>9}  {:>8}",
        "size", "target", "backend", "trial", "offered Mpps", "delivered Mpps", "Gbps", "loss %", "gen CPU%", "dp CPU%"
    );
    for t in trials {
        let busy = |cpu: usize| {
            t.cpu_use.iter().find(|c| c.cpu == cpu).map(|c| format!("{:.0}", c.busy_pct)).unwrap_or_else(|| "-".into())
        };
        println!(
            "{:>5}  {:>7}  {:<9} {:>5}  {:>12.3}  {:>14.3}  {:>7.2}  {:>7.1}  {:>9}  {:>8}",
            t.size,
            Rate(t.target_pps).label(),
            t.backend.name(),
            t.trial,
            t.offered_pps / 1e6,
            t.delivered_pps / 1e6,
            t.delivered_gbps,
            t.loss_pct,
            busy(cfg.gen_cpu),
            busy(cfg.dp_cpu)
        );
    }
    println!();
    println!(
        "{:>5}  {:>7}  {:>12}  {:>14}  {:>16}",
        "size", "target", "kernel Mpps", "xmacvlan Mpps", "xmacvlan/kernel"
    );
    let f = |v: Option<f64>, scale: f64| v.map(|x| format!("{:.3}", x / scale)).unwrap_or_else(|| "-".into());
    for s in summary {
        println!(
            "{:>5}  {:>7}  {:>12}  {:>14}  {:>16}",
            s.size,
            Rate(s.target_pps).label(),
            f(s.kernel_pps, 1e6),
            f(s.xmacvlan_pps, 1e6),
            f(s.ratio, 1.0)
        );
    }
    for e in errors {
        println!("error: {e}");
    }
}
