//! The xmacvlan daemon of the lab: started per backend, spoken to through its CLI, its counters read
//! for the cross-check, stopped by PID.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use std::{fs, thread};

use anyhow::{anyhow, bail, Context, Result};

use super::{
    check_interrupted, ip_str, ns_path, register_pid, run_cmd, stop_pid, unblock_in_child, unregister_pid, Lab, GEN_IP,
    NETWORK_NAME, PARENT_IF, SUBNET,
};

impl Lab {
    pub(crate) fn client(&self, args: &[&str]) -> Result<String> {
        let bin = self.bin.as_ref().ok_or_else(|| anyhow!("no xmacvlan binary"))?;
        let sock = self.tmp.join("x.sock");
        let mut c = Command::new(bin);
        c.arg("--socket").arg(&sock).args(args);
        run_cmd(&mut c, Duration::from_secs(60))
            .map(|o| o.stdout)
            .map_err(|e| anyhow!("{e}\ndaemon log tail:\n{}", self.daemon_log_tail(40)))
    }

    /// The xmacvlan daemon's counters, flattened: `delivered` (Σ of the endpoints' tx, the datapath's
    /// own count to cross-check the container interfaces'), `delivered.wire` (the parent's tx, the
    /// same for frames to the wire), the parent socket's kernel-side drops,
    /// drop reasons summed over ports, and the workers' loop counters. None for the kernel backend.
    pub fn datapath_counters(&self) -> Result<Option<BTreeMap<String, u64>>> {
        if self.daemon.is_none() {
            return Ok(None);
        }
        let v: serde_json::Value = serde_json::from_str(&self.client(&["stats", "--format", "json"])?)
            .context("parsing `stats --format json`")?;
        let mut m = BTreeMap::new();
        let mut add = |k: String, v: &serde_json::Value| *m.entry(k).or_insert(0) += v.as_u64().unwrap_or(0);
        for w in v["workers"].as_array().into_iter().flatten() {
            for k in ["rx_frames", "tx_frames", "dropped", "tx_kicks", "idle_sleeps", "busy_loops", "flood_copies"] {
                add(format!("worker.{k}"), &w[k]);
            }
        }
        for n in v["networks"].as_array().into_iter().flatten() {
            for p in n["ports"].as_array().into_iter().flatten() {
                let kind = p["kind"].as_str().unwrap_or("");
                if kind == "endpoint" {
                    add("delivered".into(), &p["tx"]);
                }
                if kind == "parent" {
                    add("delivered.wire".into(), &p["tx"]);
                    for (k, c) in p["kernel"].as_object().into_iter().flatten() {
                        add(format!("parent.{k}"), c);
                    }
                }
                for (k, c) in p["drops"].as_object().into_iter().flatten() {
                    add(format!("drops.{k}"), c);
                }
            }
        }
        Ok(Some(m))
    }

    pub(crate) fn start_daemon(&mut self, fast_path: &str) -> Result<()> {
        let bin = self.bin.clone().ok_or_else(|| anyhow!("no xmacvlan binary"))?;
        let sock = self.tmp.join("x.sock");
        let state = self.tmp.join("st");
        let _ = fs::remove_file(&sock);
        let _ = fs::remove_dir_all(&state);
        fs::create_dir_all(&state)?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.daemon_log)
            .with_context(|| format!("opening the daemon log {}", self.daemon_log.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.dp])
            .arg(&bin)
            .arg("daemon")
            .arg("--socket")
            .arg(&sock)
            .arg("--state-dir")
            .arg(&state)
            .args(["--cpus", &self.xmv_cpus])
            .args(&self.daemon_args)
            .args(["--fast-path", fast_path])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a terminal Ctrl-C reaches only us; we stop the daemon ourselves.
            .process_group(0);
        let child = unblock_in_child(&mut cmd).spawn().with_context(|| format!("starting {}", bin.display()))?;
        register_pid(child.id() as i32);
        self.daemon = Some(child);

        // Wait until the control socket accepts.
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            check_interrupted()?;
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait()? {
                let pid = self.daemon.take().unwrap().id() as i32;
                unregister_pid(pid);
                bail!("the xmacvlan daemon exited early ({st}); log tail:\n{}", self.daemon_log_tail(40));
            }
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                break;
            }
            if Instant::now() >= end {
                bail!(
                    "the xmacvlan daemon did not accept on {} within 30 s; log tail:\n{}",
                    sock.display(),
                    self.daemon_log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.client(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            SUBNET,
            "--aux-address",
            &format!("wirehost={}", ip_str(&GEN_IP)),
            "-o",
            &format!("parent={PARENT_IF}"),
            NETWORK_NAME,
        ])?;
        Ok(())
    }

    /// Opens, inside container 0, a UDP socket on the generated frames' port, connected to their source
    /// (so early demux finds it) and with the smallest receive buffer: the queue is full at once and every
    /// further datagram is dropped by the socket layer (UdpRcvbufErrors), an application that never reads.
    pub fn open_udp_sink(&mut self) -> Result<()> {
        let path = ns_path(&self.containers[0].ns);
        let fd = crate::napi::in_netns(&path, || {
            let s = std::net::UdpSocket::bind(("0.0.0.0", crate::gen::UDP_DST_PORT)).context("binding the UDP sink")?;
            let one: libc::c_int = 1;
            // SAFETY: `s` is the bound UDP socket we own for the whole call; the option value points at the local c_int
            // `one` and its size is passed.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &one as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                );
            }
            s.connect((std::net::Ipv4Addr::from(GEN_IP), crate::gen::UDP_SRC_PORT))
                .context("connecting the UDP sink")?;
            Ok(std::os::fd::OwnedFd::from(s))
        })?;
        self.sink = Some(fd);
        Ok(())
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|c| c.id() as i32)
    }

    pub fn daemon_log_tail(&self, lines: usize) -> String {
        let s = fs::read_to_string(&self.daemon_log).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    pub fn stop_daemon(&mut self) {
        if let Some(child) = self.daemon.take() {
            let pid = child.id() as i32;
            match stop_pid(pid, Duration::from_secs(10)) {
                Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
                Some(st) if libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGTERM => {}
                Some(st) => eprintln!(
                    "xmacvlan bench: the xmacvlan daemon (pid {pid}) ended with wait status {st:#x}; log tail:\n{}",
                    self.daemon_log_tail(20)
                ),
                None => {}
            }
        }
    }
}
