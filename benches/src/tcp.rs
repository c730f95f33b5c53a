//! TCP throughput with iperf3: a one-off server (`-s -1`) in one namespace, a client with JSON
//! output in another, each pinned with `-A`. iperf3 is installed with apt when it is missing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::lab::{self, run_cmd};

#[derive(Debug, Clone, Serialize)]
pub struct Tcp {
    pub from: String,
    pub to: String,
    pub duration_s: f64,
    pub gbps: f64,
    pub retransmits: u64,
}

fn have_iperf3() -> bool {
    Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure `iperf3` can be run: installs the Debian package when it is missing.
pub fn ensure_iperf3() -> Result<()> {
    if have_iperf3() {
        return Ok(());
    }
    eprintln!("xmacvlan bench: iperf3 is missing, installing it with apt-get");
    let apt = |args: &[&str]| {
        run_cmd(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive"), Duration::from_secs(300))
    };
    if apt(&["install", "-y", "-qq", "iperf3"]).is_err() {
        apt(&["update", "-qq"]).context("apt-get update")?;
        apt(&["install", "-y", "-qq", "iperf3"]).context("apt-get install iperf3")?;
    }
    if !have_iperf3() {
        bail!("iperf3 is still not runnable after installing it");
    }
    Ok(())
}

/// Runs one iperf3 test from `client_ns` to the server at `server_ip` in `server_ns`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    server_ns: &str,
    server_ip: &str,
    server_cpu: usize,
    client_ns: &str,
    client_cpu: usize,
    duration: f64,
    from: &str,
    to: &str,
) -> Result<Tcp> {
    let port = "5201";
    let mut server = Command::new("ip");
    server
        .args(["netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip, "-p", port])
        .args(["-A", &server_cpu.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = lab::unblock_in_child(&mut server).spawn().context("starting the iperf3 server")?;
    let spid = child.id() as i32;
    lab::register_pid(spid);
    let result = (|| {
        let secs = format!("{}", duration.max(1.0).round() as u64);
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let out = run_cmd(
                Command::new("ip")
                    .args(["netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", port, "-J", "-t", &secs])
                    .args(["-A", &client_cpu.to_string()]),
                Duration::from_secs_f64(duration + 30.0),
            );
            match out.and_then(|o| parse(&o.stdout, from, to)) {
                // The server may not listen yet.
                Err(e) if Instant::now() < end && format!("{e:#}").contains("refused") => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                r => return r,
            }
        }
    })();
    lab::stop_pid(spid, Duration::from_secs(2));
    result
}

pub fn parse(json: &str, from: &str, to: &str) -> Result<Tcp> {
    let v: serde_json::Value = serde_json::from_str(json).context("parsing iperf3 -J output")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {e}");
    }
    let end = &v["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3 JSON has no end.sum_received"))?;
    Ok(Tcp {
        from: from.into(),
        to: to.into(),
        duration_s: end["sum_received"]["seconds"].as_f64().unwrap_or(0.0),
        gbps: bps / 1e9,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_iperf3_json() {
        let j = r#"{"start":{},"end":{"sum_sent":{"seconds":5.0,"bits_per_second":1.1e10,"retransmits":3},
                    "sum_received":{"seconds":5.0,"bits_per_second":1.0e10}}}"#;
        let t = super::parse(j, "wire", "c0").unwrap();
        assert_eq!(t.gbps, 10.0);
        assert_eq!(t.retransmits, 3);
        assert!(super::parse(r#"{"error":"unable to connect"}"#, "a", "b").unwrap_err().to_string().contains("unable"));
    }
}
