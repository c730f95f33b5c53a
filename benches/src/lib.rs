//! `xmacvlan bench`: kernel macvlan and xmacvlan measured in one lab, in one invocation, with the
//! same generator, the same sinks and the same CPU placement, reported side by side with ratios.
//!
//! Lab (namespaces `xmvb-<pid>-{gen,dp,c0,c1,…}`, always removed): gen/gen0 —veth— dp/eth1, the
//! parent (GRO on, threaded NAPI pinned to the first --dp-cpus CPU). Container `i` holds eth0 with
//! MAC 02:42:c6:12:00:i and 198.18.0.16+i/20; it is a kernel macvlan bridge child of eth1 or an
//! xmacvlan endpoint on it — or an xmacvlan ipvlan endpoint, with the parent's MAC
//! 02:00:c6:12:00:fd, whose frames find it by address. The wire host (gen0) is 198.18.15.254.
//!
//! Traffic: BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (XDP_TX out of gen0, paced per frame by the
//! program, destinations spread over endpoints — by MAC, on ipvlan by IPv4 address —, broadcast mixes), or an AF_PACKET sender inside a
//! container (container → wire, container → container). Delivered = Σ rx_packets of the receiving
//! interfaces (netlink); for xmacvlan the datapath's own per-endpoint counters are the cross-check.
//!
//! Tests (`--tests`): max (forwarding rate under overload), rfc2544 (zero-loss throughput, binary
//! search), latency (UDP request/response at 10/50/90 % of throughput), cpu (CPU seconds per million
//! frames at a fixed load), tcp (iperf3), container (container-sourced traffic), scaling (endpoint
//! count and broadcast fan-out). `xmacvlan bench soak` is apart (`soak`, `make soak`): ten minutes
//! of mixed traffic and endpoint churn, then the books, memory, descriptors and UMEM checked.
//!
//! Rooms: `cli` (options and their validation), this file (the run: rounds × backends, the report
//! written), `runner` (one backend's tests, trial by trial), `results` (what report.json holds),
//! `report` (tables and plots), `lab` (namespaces, backends, the daemon), traffic (`gen`: the
//! live-frames generator, `sender`: a container's sender), `floor` (the tc-floor backend's
//! programs), readings of the host (`stats`, `nlstats`, `napi`), and `latency`, `tcp`, `search`.

mod cli;
mod floor;
mod gen;
pub mod lab;
mod latency;
mod napi;
mod nlstats;
mod report;
mod results;
mod runner;
mod search;
mod sender;
mod soak;
mod stats;
mod tcp;

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::validate;
use crate::lab::{Backend, Lab};
use crate::runner::Bench;

pub use crate::cli::{Cli, Rate, Sink, Test};
pub use crate::results::{Env, LatencyRun, Report, Results, TcpRun, Throughput, Trial};

/// Entry point of the `xmacvlan-bench` binary (which `xmacvlan bench ARGS` runs). `default_bin` is
/// the xmacvlan binary to run the daemon with when neither `--xmacvlan-bin` nor `XMACVLAN_BIN` names
/// one. Returns the exit status: 0 ok, 1 failed, 130 interrupted.
pub fn main_with(args: Vec<OsString>, default_bin: Option<PathBuf>) -> u8 {
    if args.get(1).is_some_and(|a| a == "soak") {
        let mut rest = args;
        rest.remove(1);
        rest[0] = "xmacvlan bench soak".into();
        return soak::main_with(rest, default_bin);
    }
    main_of::<Cli>("xmacvlan bench", args, |c| c.xmacvlan_bin = c.xmacvlan_bin.take().or(default_bin), run)
}

/// A harness command from its arguments to its exit status: `args` parsed as `C` (`set_bin` fills
/// in the default daemon binary), signals handled, `run`, then every lab it made removed. 0 ok, 1
/// failed, 2 bad usage, 130 interrupted.
pub(crate) fn main_of<C: Parser>(
    what: &str,
    args: Vec<OsString>,
    set_bin: impl FnOnce(&mut C),
    run: impl FnOnce(C, Vec<String>) -> Result<bool>,
) -> u8 {
    let mut cli = match C::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    set_bin(&mut cli);
    if let Err(e) = lab::install_signal_handling() {
        eprintln!("{what}: error: {e:#}");
        return 1;
    }
    let command = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let r = run(cli, command);
    lab::cleanup_all();
    match r {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("{what}: error: {e:#}");
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
    lab::remove_stale_namespaces(lab::NS_PREFIX);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_400_000), "2026-11-23 02:13 UTC");
    }
}
