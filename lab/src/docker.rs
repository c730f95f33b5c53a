//! [`Dockerd`]: a private Docker daemon inside a lab namespace, for the tests of the Docker network
//! driver: its own data root, exec root and API socket under a directory of the lab, no iptables,
//! no bridge, no forwarding, and its configuration kept out of /etc/docker. It is entered with
//! `nsenter --net` (not `ip netns exec`, whose fresh /sys hides the cgroup mounts dockerd needs),
//! stopped by its PID, and its mounts (it bind-mounts its data root onto itself) are undone.
//!
//! Images come from no registry: [`Dockerd::import_busybox`] imports a root filesystem of the
//! host's busybox-static and its applets.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cleanup::{register_pid, stop_pid, unblock_in_child};
use crate::cmd::{describe, run_cmd};
use crate::netns::ns_path;

/// docker.io's client, of the same version as its dockerd.
const CLIENT: &str = "/usr/bin/docker";

/// How long a `docker` command may take (a `docker run` takes about half a second here).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);

/// A running dockerd, stopped (and its mounts undone) when dropped.
pub struct Dockerd {
    child: Option<Child>,
    pid: i32,
    dir: PathBuf,
    socket: PathBuf,
}

impl Dockerd {
    /// Starts dockerd in namespace `netns` with everything of its own under `dir` (created, or
    /// kept from an earlier one: a restart), and waits until it answers (at most 30 s). `extra`:
    /// further dockerd arguments (`--live-restore`).
    pub fn start(netns: &str, dir: &Path, extra: &[&str]) -> Result<Dockerd> {
        for sub in ["data", "exec"] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let config = dir.join("daemon.json");
        let key = dir.join("key.json");
        fs::write(&config, format!(r#"{{"deprecated-key-path": "{}"}}"#, key.display()))?;
        let socket = dir.join("docker.sock");
        let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("dockerd.log"))?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", ns_path(netns).display()))
            .arg("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--config-file")
            .arg(&config)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"])
            .args(["--bridge=none", "--userland-proxy=false"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = unblock_in_child(&mut cmd).spawn().context("starting dockerd (is docker.io installed?)")?;
        let pid = child.id() as i32;
        register_pid(pid);
        let mut d = Dockerd { child: Some(child), pid, dir: dir.to_path_buf(), socket };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("dockerd exited at start ({status}); log tail:\n{}", d.log_tail(30));
            }
            if d.socket.exists() && d.docker(&["info", "--format", "{{.ID}}"]).is_ok() {
                return Ok(d);
            }
            if Instant::now() >= end {
                bail!("dockerd did not answer within 30 s; log tail:\n{}", d.log_tail(30));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `docker ARGS` against this dockerd: its stdout, or the error with its stderr. The
    /// client is docker.io's own (/usr/bin/docker), of dockerd's API version: a newer one on the
    /// PATH refuses some flags of older daemons (`--mac-address` per network needs API 1.44).
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let client = if Path::new(CLIENT).exists() { CLIENT } else { "docker" };
        let mut cmd = Command::new(client);
        cmd.arg("-H").arg(format!("unix://{}", self.socket.display())).args(args);
        Ok(run_cmd(&mut cmd, DOCKER_TIMEOUT)?.stdout)
    }

    /// Imports image `name`: the host's busybox-static as /bin/busybox, with a link per applet.
    pub fn import_busybox(&self, name: &str) -> Result<()> {
        let root = self.dir.join("rootfs");
        let bin = root.join("bin");
        fs::create_dir_all(&bin)?;
        fs::copy("/bin/busybox", bin.join("busybox")).context("copying /bin/busybox (busybox-static)")?;
        let list = run_cmd(Command::new("/bin/busybox").arg("--list"), DOCKER_TIMEOUT)?;
        for applet in list.stdout.split_whitespace().filter(|a| *a != "busybox") {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
        let tar = root.with_extension("tar");
        run_cmd(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg("."), DOCKER_TIMEOUT)?;
        let tar_path = tar.to_string_lossy().into_owned();
        self.docker(&["import", &tar_path, name])?;
        Ok(())
    }

    /// The last `lines` lines of dockerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops dockerd (SIGTERM: it stops its containers and containerd; SIGKILL after 30 s) and
    /// undoes its mounts under the directory. Once: the directory may serve a new dockerd next.
    pub fn stop(&mut self) {
        if self.child.take().is_none() {
            return;
        }
        stop_pid(self.pid, Duration::from_secs(30));
        // Its own bind mount of the data root, and any left under it (mount points of
        // containers it could not unmount).
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let mut cmd = Command::new("umount");
            cmd.args(["-l", m]);
            if let Err(e) = run_cmd(&mut cmd, DOCKER_TIMEOUT) {
                eprintln!("xmacvlan lab: {}: {e:#}", describe(&cmd));
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}
