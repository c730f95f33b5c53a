//! The soak's command line (`xmacvlan bench soak …`): its own, because its `--duration` is the whole
//! run where the trial harness's is one trial's window.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use serde::Serialize;

use crate::lab::{self, Backend};
use crate::online_cpus;

/// Ten minutes at 80 % of the default configuration's max rate, with a traffic mix and endpoint
/// churn; then the books (0 frames unaccounted), the daemon's RSS and descriptors (flat) and the
/// UMEM (no frame lost) are checked. Exits 1 if a check fails.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "xmacvlan bench soak", version)]
pub struct SoakCli {
    /// The xmacvlan binary that runs the daemon (default: the one that ran `xmacvlan bench`).
    #[arg(long, env = "XMACVLAN_BIN")]
    pub xmacvlan_bin: Option<PathBuf>,
    /// The configuration soaked (and whose max rate sets the load): `xmacvlan` is a daemon with no
    /// tuning flags (the tc fast path); `xmacvlan-afxdp` sends every frame through AF_XDP and the
    /// workers, which exercises the UMEM; `xmacvlan-xdp` the XDP fast path.
    #[arg(long, value_enum, default_value = "xmacvlan")]
    pub backend: Backend,
    /// Seconds of traffic (phase 2).
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Offered load as a fraction of the max rate measured in phase 1.
    #[arg(long, default_value_t = 0.8)]
    pub rate_fraction: f64,
    /// Seconds of the max-rate measurement's window (phase 1: the harness's `max` test, 64 B).
    #[arg(long, default_value_t = 5.0)]
    pub max_window: f64,
    /// Containers that stay connected for the whole run and receive the wire's unicast; container 0
    /// also sends to container 1 and to the wire. Two more containers take turns being connected
    /// (the churn) and receive their share of the wire's unicast while they are.
    #[arg(long, default_value_t = 4)]
    pub containers: usize,
    /// Broadcast share of the wire's frames, percent.
    #[arg(long, default_value_t = 1.0)]
    pub bcast_pct: f64,
    /// Share of the offered load sent from container 0 (half to container 1, half to the wire),
    /// percent; the rest comes from the wire.
    #[arg(long, default_value_t = 5.0)]
    pub container_pct: f64,
    /// Seconds between two churn steps: each connects the churn container that is out and
    /// disconnects the one that is in.
    #[arg(long, default_value_t = 2.5)]
    pub churn_every: f64,
    /// Seconds between two samples of the daemon (rounded to a whole number of churn steps, taken
    /// halfway between two steps so that every sample sees the same endpoints).
    #[arg(long, default_value_t = 10.0)]
    pub sample_every: f64,
    /// Seconds of warm-up before the reference sample of the flatness checks (capped at a quarter
    /// of --duration).
    #[arg(long, default_value_t = 60.0)]
    pub warmup: f64,
    /// The flatness checks: every sample after the warm-up within this many percent of the
    /// reference sample.
    #[arg(long, default_value_t = 5.0)]
    pub tolerance_pct: f64,
    /// Seconds the counters get to settle after the traffic stops (the books hold only at rest).
    #[arg(long, default_value_t = 10.0)]
    pub settle: f64,
    /// CPU of the generator thread and of the container sender.
    #[arg(long, default_value_t = 0)]
    pub gen_cpu: usize,
    /// CPUs of the datapath: the parent's NAPI kthread on the first, the daemon's workers on all.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub dp_cpus: Vec<usize>,
    /// Extra options for `xmacvlan daemon` (split on whitespace); none: the default configuration.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub daemon_args: Option<String>,
    /// Keep the daemon's output in FILE (default: a temporary file, shown on failure).
    #[arg(long, value_name = "FILE")]
    pub daemon_log: Option<PathBuf>,
    /// Write soak.json (settings, every sample, the checks) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl SoakCli {
    /// The warm-up actually used: --warmup, at most a quarter of the run.
    pub fn warmup_s(&self) -> f64 {
        self.warmup.min(self.duration / 4.0)
    }

    /// Churn steps between two samples (at least one).
    pub fn steps_per_sample(&self) -> u64 {
        (self.sample_every / self.churn_every).round().max(1.0) as u64
    }
}

pub fn validate(cli: &SoakCli) -> Result<()> {
    let bad = |what: String| -> Result<()> { bail!("{what}") };
    let positive = [
        ("--duration", cli.duration),
        ("--max-window", cli.max_window),
        ("--churn-every", cli.churn_every),
        ("--sample-every", cli.sample_every),
        ("--tolerance-pct", cli.tolerance_pct),
        ("--settle", cli.settle),
    ];
    for (what, v) in positive {
        if !(v.is_finite() && v > 0.0) {
            bad(format!("{what} {v}: must be > 0"))?;
        }
    }
    if !(cli.rate_fraction > 0.0 && cli.rate_fraction <= 1.0) {
        bad(format!("--rate-fraction {}: must be within (0, 1]", cli.rate_fraction))?;
    }
    if !(0.0..=100.0).contains(&cli.bcast_pct) {
        bad(format!("--bcast-pct {}: must be within 0..=100", cli.bcast_pct))?;
    }
    if !(0.0..100.0).contains(&cli.container_pct) {
        bad(format!("--container-pct {}: must be within 0..100", cli.container_pct))?;
    }
    if !(cli.warmup.is_finite() && cli.warmup >= 0.0) {
        bad(format!("--warmup {}: must be >= 0", cli.warmup))?;
    }
    // Two churn containers after the stable ones.
    if cli.containers < 2 || cli.containers + 2 > lab::MAX_ENDPOINTS {
        bad(format!("--containers {}: must be within 2..={}", cli.containers, lab::MAX_ENDPOINTS - 2))?;
    }
    if cli.duration < 2.0 * cli.sample_every.max(cli.churn_every) {
        bad(format!(
            "--duration {}: too short for two samples {} s apart (the flatness checks need them)",
            cli.duration, cli.sample_every
        ))?;
    }
    if !cli.backend.is_xmacvlan() {
        bad(format!("--backend {}: the soak checks an xmacvlan daemon's books", cli.backend.name()))?;
    }
    if cli.backend.ipvlan() {
        bad(format!(
            "--backend {}: the soak's frames find their containers by MAC, and ipvlan's share the parent's",
            cli.backend.name()
        ))?;
    }
    let ncpu = online_cpus();
    for (what, c) in std::iter::once(("--gen-cpu", cli.gen_cpu)).chain(cli.dp_cpus.iter().map(|&c| ("--dp-cpus", c))) {
        if c >= ncpu {
            bad(format!("{what} {c}: this machine has {ncpu} CPUs (0..={})", ncpu - 1))?;
        }
    }
    if cli.dp_cpus.is_empty() {
        bad("--dp-cpus may not be empty".into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issues_soak() {
        let cli = SoakCli::try_parse_from(["soak"]).unwrap();
        validate(&cli).unwrap();
        assert_eq!((cli.duration, cli.rate_fraction, cli.bcast_pct), (600.0, 0.8, 1.0));
        assert_eq!(cli.warmup_s(), 60.0);
        assert_eq!(cli.steps_per_sample(), 4);
    }

    #[test]
    fn short_runs_shorten_the_warmup() {
        let cli = SoakCli::try_parse_from(["soak", "--duration", "60"]).unwrap();
        validate(&cli).unwrap();
        assert_eq!(cli.warmup_s(), 15.0);
    }

    #[test]
    fn bad_values_are_named() {
        for (args, needle) in [
            (vec!["--duration", "0"], "--duration 0"),
            (vec!["--duration", "12"], "too short for two samples"),
            (vec!["--rate-fraction", "1.5"], "--rate-fraction 1.5"),
            (vec!["--containers", "1"], "--containers 1"),
            (vec!["--container-pct", "100"], "--container-pct 100"),
            (vec!["--gen-cpu", "4096"], "--gen-cpu 4096"),
            (vec!["--backend", "kernel"], "--backend kernel"),
            (vec!["--backend", "xmacvlan-ipvlan"], "--backend xmacvlan-ipvlan"),
        ] {
            let cli = SoakCli::try_parse_from(std::iter::once("soak").chain(args.iter().copied())).unwrap();
            let e = validate(&cli).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
