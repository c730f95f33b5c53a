//! What the soak reads of the daemon process from /proc: its resident memory and its open
//! descriptors (the two figures that grow when something leaks per endpoint or per frame).

use std::fs;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    /// VmRSS, kB.
    pub rss_kb: u64,
    /// Entries of /proc/PID/fd.
    pub fds: u64,
    pub threads: u64,
}

/// The `kB` value of `field` (e.g. `VmRSS:`) in a /proc/PID/status text.
fn status_value(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|r| r.split_whitespace().next()?.parse().ok())
}

pub fn process(pid: i32) -> Result<Process> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("the daemon (pid {pid})"))?;
    let rss_kb = status_value(&status, "VmRSS:").ok_or_else(|| anyhow!("/proc/{pid}/status has no VmRSS"))?;
    let threads = status_value(&status, "Threads:").unwrap_or(0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(Process { rss_kb, fds, threads })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = "Name:\txmacvlan\nVmRSS:\t   41236 kB\nThreads:\t5\n";
        assert_eq!(status_value(s, "VmRSS:"), Some(41236));
        assert_eq!(status_value(s, "Threads:"), Some(5));
        assert_eq!(status_value(s, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        let p = process(std::process::id() as i32).unwrap();
        assert!(p.rss_kb > 0 && p.fds >= 3 && p.threads >= 1, "{p:?}");
    }
}
