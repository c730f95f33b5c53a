//! `xmacvlan bench soak` (`make soak`): does the datapath keep its books, its memory and its
//! descriptors over ten minutes of mixed traffic with endpoints coming and going?
//!
//! Phase 1 measures the default configuration's max rate: the harness's `max` test on the
//! `xmacvlan` backend (a daemon with no tuning flags), 64 B frames spread over `--containers`.
//! Phase 2 starts a fresh daemon with the same containers plus two churn containers and, for
//! `--duration`, offers `--rate-fraction` of that rate: from the wire, unicast spread over every
//! container (the churn containers' share included, so ports depart with frames on their way to
//! them) with `--bcast-pct` broadcast; from container 0, `--container-pct` of the load to
//! container 1 and to the wire, with its own source MAC. Every `--churn-every` seconds the churn
//! container that is out is connected and the one that is in is disconnected, through the
//! daemon's control socket as `xmacvlan network connect/disconnect` does. Halfway between two churn
//! steps (so every sample sees the same endpoints), every `--sample-every` seconds, the daemon's
//! RSS and descriptors, the UMEM census and the books are sampled.
//!
//! When the traffic stops and the counters have settled: the books must hold (0 frames
//! unaccounted, departed ports included), RSS and descriptors must be flat after the warm-up
//! (verdict.rs says the rule), and no UMEM frame may be lost: at rest none is held by a worker,
//! and once every endpoint is disconnected none is lent to one. Exits 1 naming each failed check.

mod cli;
mod probe;
mod report;
mod verdict;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use indicatif::ProgressBar;
use xmacvlan_lab::books::{self, Accounting, Umem};

use crate::gen::{self, GenConfig, Generator};
use crate::lab::{self, Lab};
use crate::runner::Bench;
use crate::sender::Sender;
use crate::stats::{ethtool_stats, map_delta};
use crate::{env_info, keep_off, Cli, Results, Trial};
pub use cli::SoakCli;
use report::{print_header, print_row, summary};
pub use report::{Books, Churn, Offered, Sample, SoakReport};
use verdict::{Check, Flat};

/// The churn containers: two slots after the stable containers, one of them connected at a time.
const CHURN_SLOTS: usize = 2;

/// Entry point of `xmacvlan bench soak ARGS` (`args[0]` the program, then the soak's options).
pub fn main_with(args: Vec<OsString>, default_bin: Option<PathBuf>) -> u8 {
    crate::main_of::<SoakCli>("xmacvlan soak", args, |c| c.xmacvlan_bin = c.xmacvlan_bin.take().or(default_bin), run)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("xmacvlan soak: {}", msg.as_ref());
}

fn run(cli: SoakCli, command: Vec<String>) -> Result<bool> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces, BPF_PROG_RUN, XDP)");
    }
    cli::validate(&cli)?;
    let b = cli.xmacvlan_bin.clone().unwrap_or_else(|| PathBuf::from("target/release/xmacvlan"));
    let bin = fs::canonicalize(&b)
        .with_context(|| format!("xmacvlan binary {} not found (pass --xmacvlan-bin or XMACVLAN_BIN)", b.display()))?;
    let xmv_cpus = cli.dp_cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    let mut report = SoakReport {
        tool: "xmacvlan bench soak",
        version: env!("CARGO_PKG_VERSION"),
        command,
        env: env_info(),
        placement: format!(
            "generator and container sender on CPU {}; parent NAPI (threaded) on CPU {}; xmacvlan workers on CPU {}",
            cli.gen_cpu, cli.dp_cpus[0], xmv_cpus
        ),
        settings: cli.clone(),
        warmup_s: cli.warmup_s(),
        max_trial: None,
        offered: Offered::default(),
        churn: Churn::default(),
        wire_gen0: BTreeMap::new(),
        wire_parent: BTreeMap::new(),
        fast_path: serde_json::Value::Null,
        workers_rx: 0,
        samples: Vec::new(),
        umem_start: None,
        umem_rest: None,
        umem_no_endpoints: None,
        books_rest: None,
        books_no_endpoints: None,
        rss_kb: Flat::default(),
        fds: Flat::default(),
        checks: Vec::new(),
        ok: false,
    };

    keep_off(&cli.dp_cpus);
    lab::remove_stale_namespaces(lab::NS_PREFIX);
    {
        let daemon_args: Vec<String> =
            cli.daemon_args.as_deref().unwrap_or("").split_whitespace().map(String::from).collect();
        let mut lab = Lab::create(cli.daemon_log.clone(), Some(bin), xmv_cpus, daemon_args)?;
        let max = measure_max(&cli, &mut lab)?;
        report.offered.max_pps = max.delivered_pps;
        report.offered.max_offered_pps = max.offered_pps;
        report.max_trial = Some(max);
        lab.reset()?;
        soak(&cli, &mut lab, &mut report)?;
        // Lab dropped here: daemon stopped, namespaces deleted.
    }

    report.ok = report.checks.iter().all(|c| c.ok);
    print!("{}", summary(&report));
    if let Some(dir) = &cli.out {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("soak.json");
        fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        log(format!("wrote {}", path.display()));
    }
    Ok(report.ok)
}

/// Phase 1: the harness's `max` test on the soaked configuration, 64 B, spread over the stable
/// containers.
fn measure_max(cli: &SoakCli, lab: &mut Lab) -> Result<Trial> {
    let (dur, n, g) = (cli.max_window.to_string(), cli.containers.to_string(), cli.gen_cpu.to_string());
    let dp = cli.dp_cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    let mut bench_cli = Cli::try_parse_from([
        "xmacvlan bench",
        "--backends",
        cli.backend.name(),
        "--tests",
        "max",
        "--sizes",
        "64",
        "--duration",
        &dur,
        "--spread",
        &n,
        "--gen-cpu",
        &g,
        "--dp-cpus",
        &dp,
    ])
    .map_err(|e| anyhow!("the max test's options: {e}"))?;
    crate::cli::validate(&mut bench_cli)?;
    log(format!("phase 1: the max rate of the default configuration (64 B over {n} containers, {dur} s)"));
    let pb = ProgressBar::hidden();
    let mut res = Results::default();
    let mut b = Bench { cli: &bench_cli, lab, pb: &pb, res: &mut res, round: 1 };
    b.run_backend(cli.backend)?;
    if let Some(e) = res.errors.first() {
        bail!("phase 1 (max rate): {e}");
    }
    let t = res.trials.pop().ok_or_else(|| anyhow!("phase 1 (max rate) ran no trial"))?;
    if t.delivered_pps <= 0.0 {
        bail!("phase 1 (max rate): nothing was delivered");
    }
    log(format!("phase 1: max {:.3} Mpps delivered (offered {:.3} Mpps)", t.delivered_pps / 1e6, t.offered_pps / 1e6));
    Ok(t)
}

/// The traffic sources of phase 2.
struct Traffic {
    gen: Generator,
    sender: Option<Sender>,
}

impl Traffic {
    fn sent(&self) -> (u64, u64, u64) {
        (self.gen.tx_count(), self.gen.tx_bcast(), self.sender.as_ref().map_or(0, Sender::sent))
    }

    /// Why the traffic is not what it should be, if it is not.
    fn broken(&self) -> Option<&'static str> {
        if !self.gen.alive() {
            Some("the wire generator stopped")
        } else if self.sender.as_ref().is_some_and(|s| !s.alive()) {
            Some("the container sender stopped")
        } else {
            None
        }
    }

    fn finish(&mut self) -> Result<()> {
        let g = self.gen.finish().map(|_| ());
        let s = self.sender.as_mut().map_or(Ok(()), Sender::finish);
        g.and(s)
    }
}

/// The churn: slot `a` is in, slot `b` out; a step connects `b`, waits for its link, disconnects
/// `a`, and swaps them.
struct Turns {
    in_: usize,
    out: usize,
}

impl Turns {
    fn step(&mut self, lab: &Lab, churn: &mut Churn) -> Result<()> {
        let t = Instant::now();
        lab.connect_endpoint(self.out).with_context(|| format!("connecting container {}", self.out))?;
        lab.wait_up(self.out..self.out + 1)?;
        churn.connects += 1;
        churn.connect_ms_max = churn.connect_ms_max.max(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        lab.disconnect_endpoint(self.in_).with_context(|| format!("disconnecting container {}", self.in_))?;
        churn.disconnects += 1;
        churn.disconnect_ms_max = churn.disconnect_ms_max.max(t.elapsed().as_secs_f64() * 1e3);
        std::mem::swap(&mut self.in_, &mut self.out);
        Ok(())
    }
}

/// Polls the daemon's stats until `done` accepts what `read` makes of them, up to `limit`; the
/// last reading either way.
fn settle<T>(
    lab: &Lab,
    limit: Duration,
    read: impl Fn(&serde_json::Value) -> Result<T, String>,
    done: impl Fn(&T) -> bool,
) -> Result<Result<T, String>> {
    let end = Instant::now() + limit;
    loop {
        let r = read(&lab.stats_json()?);
        if r.as_ref().is_ok_and(&done) || Instant::now() >= end {
            return Ok(r);
        }
        lab::sleep_checked(Duration::from_millis(100))?;
    }
}

/// Phase 2.
fn soak(cli: &SoakCli, lab: &mut Lab, report: &mut SoakReport) -> Result<()> {
    let n = cli.containers;
    let (a, b) = (n, n + 1);
    log(format!("phase 2: a fresh daemon, containers c0..c{} connected, c{a} and c{b} taking turns", n - 1));
    lab.setup(cli.backend, n)?;
    lab.ensure_containers(n + CHURN_SLOTS)?;
    lab.connect_endpoint(a)?;
    lab.wait_up(a..a + 1)?;
    {
        let pb = ProgressBar::hidden();
        let mut res = Results::default();
        let dp = cli.dp_cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        let bench_cli =
            Cli::try_parse_from(["xmacvlan bench", "--gen-cpu", &cli.gen_cpu.to_string(), "--dp-cpus", &dp])?;
        let napi = Bench { cli: &bench_cli, lab: &mut *lab, pb: &pb, res: &mut res, round: 1 }.pin_napi()?;
        log(format!("parent NAPI kthread(s) {napi:?} on CPU {}", cli.dp_cpus[0]));
    }
    let pid = lab.daemon_pid().ok_or_else(|| anyhow!("no daemon"))?;
    let net = lab::NETWORK_NAME;
    lab::sleep_checked(Duration::from_secs(2))?;
    report.umem_start = Some(books::umem(&lab.stats_json()?, net).map_err(|e| anyhow!(e))?);

    let o = &mut report.offered;
    o.target_pps = o.max_pps * cli.rate_fraction;
    o.container_target_pps = o.target_pps * cli.container_pct / 100.0;
    o.wire_target_pps = o.target_pps - o.container_target_pps;
    log(format!(
        "phase 2: {:.0} s at {:.3} Mpps ({} × max): wire {:.3} Mpps ({} % broadcast) over {} destinations, container \
         c0 {:.3} Mpps to c1 and the wire; churn every {} s; daemon pid {pid}",
        cli.duration,
        o.target_pps / 1e6,
        cli.rate_fraction,
        o.wire_target_pps / 1e6,
        cli.bcast_pct,
        n + CHURN_SLOTS,
        o.container_target_pps / 1e6,
        cli.churn_every
    ));
    let wire0 = (ethtool_stats(&lab.gen.name, lab::GEN_IF), ethtool_stats(&lab.dp.name, lab::PARENT_IF));
    let gen = Generator::start(GenConfig {
        netns: lab::ns_path(&lab.gen.name),
        ifname: lab::GEN_IF.to_string(),
        cpu: cli.gen_cpu,
        frame: gen::build_l2_frame(64, lab::endpoint_mac(0), lab::GEN_MAC),
        // Shorter calls than the trials': stopping waits for the call in flight.
        repeat: 1 << 20,
        batch_size: 64,
        rate_pps: Some(o.wire_target_pps),
        n_dst: (n + CHURN_SLOTS) as u32,
        // A macvlan network (the CLI refuses ipvlan): every container has a MAC of its own.
        spread: gen::Spread::Mac,
        bcast_per_mille: (cli.bcast_pct * 10.0).round() as u32,
    })?;
    let sender = if o.container_target_pps >= 1.0 {
        let src = lab::endpoint_mac(0);
        let frames =
            vec![gen::build_l2_frame(64, lab::endpoint_mac(1), src), gen::build_l2_frame(64, lab::GEN_MAC, src)];
        let link = lab.container_link(0)?;
        let c0 = lab::ns_path(&lab.containers[0].ns.name);
        Some(Sender::start(c0, link.ifindex, cli.gen_cpu, frames, Some(o.container_target_pps))?)
    } else {
        None
    };
    let mut traffic = Traffic { gen, sender };
    let t0 = Instant::now();
    let mut turns = Turns { in_: a, out: b };
    let mut failure: Option<String> = None;
    let mut k: u64 = 0;
    print_header();
    // The first sample as the traffic starts: the figures' start.
    let first = sample(lab, pid, net, t0, traffic.sent(), &report.churn)?;
    print_row(&first, None);
    let mut last = Some(first.clone());
    report.samples.push(first);

    let step = Duration::from_secs_f64(cli.churn_every);
    let per_sample = cli.steps_per_sample();
    loop {
        k += 1;
        // Churn step k at k × step; the sample of step k halfway to the next one.
        let step_at = t0 + step * k as u32;
        if step_at >= t0 + Duration::from_secs_f64(cli.duration) {
            break;
        }
        sleep_until(step_at)?;
        if let Err(e) = turns.step(lab, &mut report.churn) {
            let msg = format!("churn step {k}: {e:#}");
            report.churn.errors.push(msg.clone());
            failure = Some(msg);
            break;
        }
        if let Some(why) = traffic.broken() {
            failure = Some(why.to_string());
            break;
        }
        if k % per_sample == 0 {
            sleep_until(step_at + step / 2)?;
            let s = sample(lab, pid, net, t0, traffic.sent(), &report.churn)?;
            print_row(&s, last.as_ref());
            last = Some(s.clone());
            report.samples.push(s);
        }
    }
    let traffic_s = t0.elapsed().as_secs_f64();
    let alive = traffic.broken();
    let finished = traffic.finish();
    let (wire_sent, wire_bcast, container_sent) = traffic.sent();
    report.wire_gen0 = map_delta(&ethtool_stats(&lab.gen.name, lab::GEN_IF), &wire0.0);
    report.wire_parent = map_delta(&ethtool_stats(&lab.dp.name, lab::PARENT_IF), &wire0.1);
    let o = &mut report.offered;
    (o.traffic_s, o.wire_sent, o.wire_bcast, o.container_sent) = (traffic_s, wire_sent, wire_bcast, container_sent);
    o.offered_pps = (wire_sent + container_sent) as f64 / traffic_s;
    log(format!(
        "traffic stopped after {traffic_s:.0} s: {wire_sent} frames from the wire ({wire_bcast} broadcast), \
         {container_sent} from c0: {:.3} Mpps offered (target {:.3})",
        o.offered_pps / 1e6,
        o.target_pps / 1e6
    ));

    // At rest: the books, the UMEM with endpoints, then every endpoint out and both again.
    let limit = Duration::from_secs_f64(cli.settle);
    let rest = process_alive(pid).then(|| probe::process(pid)).transpose()?;
    let books_rest = settle(lab, limit, books::accounting, Accounting::holds)?;
    let umem_rest = settle(lab, limit, |s| books::umem(s, net), |u| verdict::umem_at_rest(u).is_ok())?;
    let stats = lab.stats_json()?;
    report.fast_path = stats["fast_path"].clone();

    report.workers_rx =
        stats["workers"].as_array().map_or(0, |w| w.iter().filter_map(|w| w["rx_frames"].as_u64()).sum());
    let present = (0..n).chain([turns.in_]).collect::<Vec<_>>();
    let mut departures = Ok(());
    for &i in &present {
        departures = departures.and(lab.disconnect_endpoint(i));
    }
    let umem_gone = settle(lab, limit, |s| books::umem(s, net), |u| verdict::umem_without_endpoints(u).is_ok())?;
    let books_gone = settle(lab, limit, books::accounting, Accounting::holds)?;

    // The verdict.
    let checks = &mut report.checks;
    let run_ok = failure.is_none() && alive.is_none() && finished.is_ok() && departures.is_ok();
    let mut problems: Vec<String> = failure.into_iter().chain(alive.map(String::from)).collect();
    if let Err(e) = &finished {
        problems.push(format!("stopping the traffic: {e:#}"));
    }
    if let Err(e) = &departures {
        problems.push(format!("disconnecting the endpoints at the end: {e:#}"));
    }
    checks.push(Check::new(
        "the run completed",
        run_ok && report.churn.connects > 0,
        if run_ok {
            format!(
                "{traffic_s:.0} s of traffic; {} connects and {} disconnects during it, then {} at the end",
                report.churn.connects,
                report.churn.disconnects,
                present.len()
            )
        } else {
            problems.join("; ")
        },
    ));
    checks.push(verdict::books("at rest after the traffic", &books_rest));
    checks.push(verdict::books("after every endpoint departed", &books_gone));
    let warm = cli.warmup_s();
    let rss: Vec<(f64, u64)> = report.samples.iter().map(|s| (s.t, s.process.rss_kb)).collect();
    let fds: Vec<(f64, u64)> = report.samples.iter().map(|s| (s.t, s.process.fds)).collect();
    let (c, f) = verdict::flat("daemon RSS", "kB", &rss, warm, cli.tolerance_pct);
    checks.push(c);
    report.rss_kb = f;
    let (c, f) = verdict::flat("daemon descriptors", "fds", &fds, warm, cli.tolerance_pct);
    checks.push(c);
    report.fds = f;
    let unbalanced: Vec<String> =
        report.samples.iter().filter(|s| !s.umem.balanced()).map(|s| format!("at {:.0} s: {}", s.t, s.umem)).collect();
    let umem_check = |name: &str, u: &Result<Umem, String>, rule: fn(&Umem) -> Result<(), String>| {
        let r = u.as_ref().map_err(Clone::clone).and_then(|u| rule(u).map(|()| u.to_string()));
        Check::new(name, r.is_ok(), r.unwrap_or_else(|e| e))
    };
    checks.push(Check::new(
        "UMEM census balanced in every sample",
        unbalanced.is_empty() && !report.samples.is_empty(),
        if unbalanced.is_empty() { format!("{} samples", report.samples.len()) } else { unbalanced.join("; ") },
    ));
    checks.push(umem_check("no UMEM frame held at rest", &umem_rest, verdict::umem_at_rest));
    checks.push(umem_check("no UMEM frame lent to a departed endpoint", &umem_gone, verdict::umem_without_endpoints));
    report.books_rest = books_rest.as_ref().ok().map(Books::from);
    report.books_no_endpoints = books_gone.as_ref().ok().map(Books::from);
    report.umem_rest = umem_rest.ok();
    report.umem_no_endpoints = umem_gone.ok();
    if let Some(p) = rest {
        log(format!("daemon at rest: RSS {} kB, {} descriptors, {} threads", p.rss_kb, p.fds, p.threads));
    }
    if !report.checks.iter().all(|c| c.ok) {
        log(format!("daemon log tail:\n{}", lab.daemon_log_tail(30)));
    }
    Ok(())
}

fn load1() -> f64 {
    fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

fn process_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn sleep_until(at: Instant) -> Result<()> {
    lab::sleep_checked(at.saturating_duration_since(Instant::now()))
}

/// `sent`: the traffic sources' counts (wire, its broadcasts, container).
fn sample(lab: &Lab, pid: i32, net: &str, t0: Instant, sent: (u64, u64, u64), churn: &Churn) -> Result<Sample> {
    // /proc first: the stats request below is a connection the daemon is serving.
    let process =
        probe::process(pid).with_context(|| format!("the daemon died; log tail:\n{}", lab.daemon_log_tail(30)))?;
    let t = t0.elapsed().as_secs_f64();
    let (wire_sent, wire_bcast, container_sent) = sent;
    let stats = lab.stats_json()?;
    let umem = books::umem(&stats, net).map_err(|e| anyhow!(e))?;
    let a = books::accounting(&stats).map_err(|e| anyhow!(e))?;
    Ok(Sample {
        t,
        process,
        umem,
        inflow: a.inflow(),
        outflow: a.outflow(),
        drops: a.drops + a.departed_drops,
        delivered: a.tx + a.departed_tx,
        load1: load1(),
        wire_sent,
        wire_bcast,
        container_sent,
        connects: churn.connects,
        disconnects: churn.disconnects,
    })
}
