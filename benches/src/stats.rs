//! Counters: interface statistics (`ip -s -j link`), driver statistics (`ethtool -S`), per-CPU time
//! (/proc/stat) and per-thread placement and CPU time (/proc/PID/task/TID).

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

use crate::lab;

/// `ethtool -S dev` in `ns` as a map (empty when the driver has none).
pub fn ethtool_stats(ns: &str, dev: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    if let Ok(out) = lab::in_ns(ns, &["ethtool", "-S", dev]) {
        for line in out.lines() {
            if let Some((k, v)) = line.trim().split_once(':') {
                if let Ok(v) = v.trim().parse::<u64>() {
                    m.insert(k.trim().to_string(), v);
                }
            }
        }
    }
    m
}

/// after − before, keeping only counters that moved (and dropping identifiers such as peer_ifindex).
pub fn map_delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| !k.ends_with("ifindex"))
        .filter_map(|(k, &a)| {
            let d = a.wrapping_sub(*before.get(k).unwrap_or(&0));
            (d != 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Jiffies of one CPU from /proc/stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// Everything but idle and iowait (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// Time the hypervisor ran something else on this virtual CPU (included in busy).
    pub steal: u64,
    pub total: u64,
}

pub fn cpu_times() -> BTreeMap<usize, CpuTimes> {
    let mut m = BTreeMap::new();
    if let Ok(s) = fs::read_to_string("/proc/stat") {
        for line in s.lines() {
            let mut it = line.split_whitespace();
            let Some(name) = it.next() else { continue };
            let Some(cpu) = name.strip_prefix("cpu").and_then(|c| c.parse::<usize>().ok()) else {
                continue;
            };
            let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
            if v.len() < 8 {
                continue;
            }
            // user nice system idle iowait irq softirq steal (guest* are included in user/nice)
            let total: u64 = v.iter().take(8).sum();
            let idle = v[3] + v[4];
            m.insert(cpu, CpuTimes { busy: total - idle, steal: v[7], total });
        }
    }
    m
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub cpu: usize,
    /// Busy share of the CPU over the window, in percent (user+system+irq+softirq+steal).
    pub busy_pct: f64,
    /// Share the hypervisor took away (steal), in percent.
    pub steal_pct: f64,
}

pub fn cpu_use(after: &BTreeMap<usize, CpuTimes>, before: &BTreeMap<usize, CpuTimes>) -> Vec<CpuUse> {
    after
        .iter()
        .filter_map(|(&cpu, a)| {
            let b = before.get(&cpu)?;
            let dt = a.total.saturating_sub(b.total) as f64;
            (dt > 0.0).then(|| CpuUse {
                cpu,
                busy_pct: 100.0 * a.busy.saturating_sub(b.busy) as f64 / dt,
                steal_pct: 100.0 * a.steal.saturating_sub(b.steal) as f64 / dt,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadInfo {
    pub tid: i32,
    pub comm: String,
    pub cpus_allowed: String,
    /// CPU it last ran on.
    pub last_cpu: Option<u32>,
    /// utime+stime in clock ticks (cumulative; a delta over the trial where reported in a trial).
    pub cpu_ticks: u64,
}

fn parse_stat(stat: &str) -> Option<(u64, u32)> {
    // Fields after "(comm)": state is field 3; utime 14, stime 15, processor 39.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let cpu: u32 = f.get(36)?.parse().ok()?;
    Some((utime + stime, cpu))
}

fn cpus_allowed(status: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn thread_info(pid: i32, tid: i32) -> Option<ThreadInfo> {
    let base = format!("/proc/{pid}/task/{tid}");
    let comm = fs::read_to_string(format!("{base}/comm")).ok()?.trim().to_string();
    let status = fs::read_to_string(format!("{base}/status")).ok()?;
    let stat = fs::read_to_string(format!("{base}/stat")).ok()?;
    let (ticks, cpu) = parse_stat(&stat).unzip();
    Some(ThreadInfo { tid, comm, cpus_allowed: cpus_allowed(&status), last_cpu: cpu, cpu_ticks: ticks.unwrap_or(0) })
}

/// All threads of process `pid`.
pub fn process_threads(pid: i32) -> Vec<ThreadInfo> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            if let Ok(tid) = e.file_name().to_string_lossy().parse::<i32>() {
                if let Some(t) = thread_info(pid, tid) {
                    v.push(t);
                }
            }
        }
    }
    v.sort_by_key(|t| t.tid);
    v
}

/// Same threads with cpu_ticks turned into the delta since `before`.
pub fn threads_delta(after: &[ThreadInfo], before: &[ThreadInfo]) -> Vec<ThreadInfo> {
    after
        .iter()
        .map(|t| {
            let b = before.iter().find(|x| x.tid == t.tid).map(|x| x.cpu_ticks).unwrap_or(0);
            ThreadInfo { cpu_ticks: t.cpu_ticks.saturating_sub(b), ..t.clone() }
        })
        .collect()
}

pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
