//! What a run produces, as `report.json` holds it: every trial with its counters, the RFC 2544
//! searches, latency and TCP runs, the environment.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::lab::Backend;
use crate::latency::Latency;
use crate::stats::{CpuUse, ThreadInfo};
use crate::tcp::Tcp;
use crate::{Cli, Test};

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
