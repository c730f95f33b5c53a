//! What the soak reports: its samples, books and verdicts (`soak.json`), the row printed per
//! sample, and the closing summary.

use std::collections::BTreeMap;

use serde::Serialize;
use xmacvlan_lab::books::{Accounting, Umem};

use super::probe::Process;
use super::verdict::{Check, Flat};
use super::SoakCli;
use crate::{Env, Trial};

/// One sample of the run.
#[derive(Serialize, Debug, Clone)]
pub struct Sample {
    /// Seconds since the traffic started.
    pub t: f64,
    #[serde(flatten)]
    pub process: Process,
    pub umem: Umem,
    /// The books' running totals (not at rest: frames between a worker's rx and tx are in neither).
    pub inflow: u64,
    pub outflow: u64,
    pub drops: u64,
    /// Delivered so far (tx of present and departed ports).
    pub delivered: u64,
    /// The host's 1-minute load average (other work on the machine lowers the rate).
    pub load1: f64,
    /// Frames offered so far: from the wire (broadcasts among them) and from container 0.
    pub wire_sent: u64,
    pub wire_bcast: u64,
    pub container_sent: u64,
    pub connects: u64,
    pub disconnects: u64,
}

/// The books as judged: the sums (`lab::books::Accounting`, flattened into the same JSON object) and
/// what they come to.
#[derive(Serialize, Debug, Clone)]
pub struct Books {
    pub holds: bool,
    pub inflow: u64,
    pub outflow: u64,
    pub unaccounted: i128,
    #[serde(flatten)]
    pub sums: Accounting,
}

impl From<&Accounting> for Books {
    fn from(a: &Accounting) -> Books {
        Books {
            holds: a.holds(),
            inflow: a.inflow(),
            outflow: a.outflow(),
            unaccounted: a.inflow() as i128 - a.outflow() as i128,
            sums: a.clone(),
        }
    }
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Churn {
    pub connects: u64,
    pub disconnects: u64,
    /// The slowest connect (until the container's link is up) and disconnect, ms.
    pub connect_ms_max: f64,
    pub disconnect_ms_max: f64,
    pub errors: Vec<String>,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Offered {
    /// Phase 1: the max test's delivered rate (the reference) and what it offered.
    pub max_pps: f64,
    pub max_offered_pps: f64,
    pub target_pps: f64,
    pub wire_target_pps: f64,
    pub container_target_pps: f64,
    /// Phase 2, over the traffic's whole duration.
    pub traffic_s: f64,
    pub wire_sent: u64,
    pub wire_bcast: u64,
    pub container_sent: u64,
    pub offered_pps: f64,
}

/// soak.json.
#[derive(Serialize, Debug)]
pub struct SoakReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub command: Vec<String>,
    pub env: Env,
    pub placement: String,
    pub settings: SoakCli,
    pub warmup_s: f64,
    pub max_trial: Option<Trial>,
    pub offered: Offered,
    pub churn: Churn,
    /// The veth wire over the traffic (ethtool -S deltas): gen0 hands frames to the parent's
    /// ring (`xdp_xmit`) or finds it full (`xdp_xmit_errors`: lost before the datapath); the
    /// parent receives them (`xdp_packets`, veth's count of frames that came by XDP transmit).
    pub wire_gen0: BTreeMap<String, u64>,
    pub wire_parent: BTreeMap<String, u64>,
    /// At rest: the kernel-side paths' counters (`fast_path`) and the frames the workers received.
    pub fast_path: serde_json::Value,
    pub workers_rx: u64,

    pub samples: Vec<Sample>,
    /// UMEM before the traffic, at rest after it, and after every endpoint was disconnected.
    pub umem_start: Option<Umem>,
    pub umem_rest: Option<Umem>,
    pub umem_no_endpoints: Option<Umem>,
    /// The books at rest after the traffic, and after every endpoint was disconnected.
    pub books_rest: Option<Books>,
    pub books_no_endpoints: Option<Books>,
    pub rss_kb: Flat,
    pub fds: Flat,
    pub checks: Vec<Check>,
    pub ok: bool,
}

pub(super) fn print_header() {
    println!(
        "{:>5} {:>8} {:>4} {:>3} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>5} {:>5}",
        "t s",
        "RSS kB",
        "fds",
        "thr",
        "UMEM free",
        "in use",
        "offered",
        "dp in",
        "deliv",
        "drop/s",
        "in-out",
        "load",
        "churn"
    );
    println!(
        "      (offered, dp in = the books' inflow, deliv: Mpps since the last sample; in-out: the books' running gap)"
    );
}

pub(super) fn print_row(s: &Sample, prev: Option<&Sample>) {
    // No rates in the first row: nothing to take them over.
    let d = |f: fn(&Sample) -> u64| prev.map_or(f64::NAN, |p| (f(s) - f(p)) as f64 / (s.t - p.t).max(1e-9));
    println!(
        "{:>5.0} {:>8} {:>4} {:>3} {:>9} {:>7} {:>7.3} {:>7.3} {:>7.3} {:>7.0} {:>6} {:>5.2} {:>5}",
        s.t,
        s.process.rss_kb,
        s.process.fds,
        s.process.threads,
        s.umem.free,
        s.umem.frames - s.umem.free,
        d(|x| x.wire_sent + x.container_sent) / 1e6,
        d(|x| x.inflow) / 1e6,
        d(|x| x.delivered) / 1e6,
        d(|x| x.drops),
        s.inflow as i128 - s.outflow as i128,
        s.load1,
        s.connects
    );
}

/// Σ of the counters whose name ends with `suffix` (one per queue).
pub(super) fn sum_of(m: &BTreeMap<String, u64>, suffix: &str) -> u64 {
    m.iter().filter(|(k, _)| k.ends_with(suffix)).map(|(_, v)| v).sum()
}

/// The summary: the figures, then each check.
pub(super) fn summary(r: &SoakReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nxmacvlan soak — {} — {} ({} CPUs), kernel {}",
        r.env.date_utc, r.env.cpu_model, r.env.nproc, r.env.kernel
    );
    let _ = writeln!(o, "{}", r.placement);
    let of = &r.offered;
    let rows: Vec<(String, String)> = vec![
        (
            "max rate (phase 1, 64 B)".into(),
            format!("{:.3} Mpps delivered ({:.3} offered)", of.max_pps / 1e6, of.max_offered_pps / 1e6),
        ),
        (
            "target".into(),
            format!(
                "{:.3} Mpps ({} × max): wire {:.3}, container {:.3}",
                of.target_pps / 1e6,
                r.settings.rate_fraction,
                of.wire_target_pps / 1e6,
                of.container_target_pps / 1e6
            ),
        ),
        (
            "offered".into(),
            format!(
                "{:.3} Mpps over {:.0} s: {} wire frames ({} broadcast), {} from c0",
                of.offered_pps / 1e6,
                of.traffic_s,
                of.wire_sent,
                of.wire_bcast,
                of.container_sent
            ),
        ),
        (
            "wire (veth) to the parent".into(),
            format!(
                "{} handed to the parent's ring, {} refused (ring full: lost before the datapath); the parent \
                 received {}",
                sum_of(&r.wire_gen0, "_xdp_xmit"),
                sum_of(&r.wire_gen0, "_xdp_xmit_errors"),
                sum_of(&r.wire_parent, "_xdp_packets")
            ),
        ),
        (
            "paths (at rest)".into(),
            format!(
                "kernel fast path received {} from the wire and {} from containers; the workers received {}",
                r.fast_path["rx"].as_u64().unwrap_or(0),
                r.fast_path["from_containers"].as_u64().unwrap_or(0),
                r.workers_rx
            ),
        ),
        (
            "churn".into(),
            format!(
                "{} connects, {} disconnects (slowest {:.0} ms / {:.0} ms)",
                r.churn.connects, r.churn.disconnects, r.churn.connect_ms_max, r.churn.disconnect_ms_max
            ),
        ),
        (
            "books at rest".into(),
            r.books_rest.as_ref().map_or("-".into(), |b| {
                format!(
                    "in {} out {} (unaccounted {}); delivered {}, dropped {}",
                    b.inflow,
                    b.outflow,
                    b.unaccounted,
                    b.sums.tx + b.sums.departed_tx,
                    b.sums.drops + b.sums.departed_drops
                )
            }),
        ),
        (
            "drops by reason".into(),
            r.books_no_endpoints.as_ref().or(r.books_rest.as_ref()).map_or("-".into(), |b| b.sums.reasons()),
        ),
        (
            "daemon RSS kB".into(),
            format!(
                "start {} end {} min {} max {}; after warm-up {}..{} (reference {})",
                r.rss_kb.start,
                r.rss_kb.end,
                r.rss_kb.min,
                r.rss_kb.max,
                r.rss_kb.judged_min,
                r.rss_kb.judged_max,
                r.rss_kb.reference
            ),
        ),
        (
            "daemon descriptors".into(),
            format!(
                "start {} end {} min {} max {}; after warm-up {}..{} (reference {})",
                r.fds.start, r.fds.end, r.fds.min, r.fds.max, r.fds.judged_min, r.fds.judged_max, r.fds.reference
            ),
        ),
        ("UMEM before".into(), r.umem_start.map_or("-".into(), |u| u.to_string())),
        ("UMEM at rest".into(), r.umem_rest.map_or("-".into(), |u| u.to_string())),
        ("UMEM, no endpoints".into(), r.umem_no_endpoints.map_or("-".into(), |u| u.to_string())),
    ];
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (k, v) in rows {
        let _ = writeln!(o, "  {k:<w$}  {v}");
    }
    let _ = writeln!(
        o,
        "flatness rule: the first sample at or after the warm-up ({:.0} s) is the reference; every later sample must be \
         within ±{} % of it",
        r.warmup_s, r.settings.tolerance_pct
    );
    for c in &r.checks {
        let _ = writeln!(o, "  [{}] {}: {}", if c.ok { "ok" } else { "FAILED" }, c.name, c.detail);
    }
    let failed: Vec<&str> = r.checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    let _ = writeln!(
        o,
        "soak: {}",
        if failed.is_empty() { "ok".to_string() } else { format!("FAILED: {}", failed.join("; ")) }
    );
    o
}
