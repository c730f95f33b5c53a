//! [`DaemonProcess`]: the xmacvlan daemon run inside a lab namespace (`ip netns exec NS xmacvlan
//! daemon …`) with its log appended to a file, waited for until its control socket accepts, and
//! stopped by its PID: SIGTERM, a grace period, SIGKILL — or SIGKILL at once, as a crash would.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cleanup::{check_interrupted, register_pid, unblock_in_child, unregister_pid};

/// How to start a daemon.
pub struct DaemonSpec<'a> {
    /// The `xmacvlan` binary.
    pub bin: &'a Path,
    /// The namespace it runs in (its parent interfaces are there).
    pub netns: &'a str,
    pub socket: &'a Path,
    pub state_dir: &'a Path,
    /// Appended to: a restarted daemon's log follows the previous one's.
    pub log: &'a Path,
    /// Further `daemon` arguments (`--cpus 1`, `--fast-path off`, …).
    pub args: &'a [String],
    /// In a process group of its own: a terminal's Ctrl-C then reaches only the caller, which stops
    /// the daemon itself (a harness with signal handling). Without it the daemon shares the
    /// caller's group and a Ctrl-C ends both (a test run).
    pub own_process_group: bool,
}

/// A running daemon, stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
pub struct DaemonProcess {
    child: Option<Child>,
    pid: i32,
    socket: PathBuf,
    log: PathBuf,
}

impl DaemonProcess {
    /// Starts the daemon; it may still be starting when this returns ([`DaemonProcess::wait_listening`]).
    pub fn spawn(spec: &DaemonSpec) -> Result<DaemonProcess> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log)
            .with_context(|| format!("opening the daemon log {}", spec.log.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", spec.netns])
            .arg(spec.bin)
            .arg("daemon")
            .arg("--socket")
            .arg(spec.socket)
            .arg("--state-dir")
            .arg(spec.state_dir)
            .args(spec.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if spec.own_process_group {
            cmd.process_group(0);
        }
        let child = unblock_in_child(&mut cmd)
            .spawn()
            .with_context(|| format!("starting {} in {}", spec.bin.display(), spec.netns))?;
        let pid = child.id() as i32;
        register_pid(pid);
        Ok(DaemonProcess { child: Some(child), pid, socket: spec.socket.to_path_buf(), log: spec.log.to_path_buf() })
    }

    /// [`DaemonProcess::spawn`], then [`DaemonProcess::wait_listening`].
    pub fn start(spec: &DaemonSpec, timeout: Duration) -> Result<DaemonProcess> {
        let mut d = Self::spawn(spec)?;
        d.wait_listening(timeout)?;
        Ok(d)
    }

    /// Waits until the control socket accepts a connection. Fails, with the log's tail, when the
    /// daemon exits first or `timeout` passes.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            if let Some(status) = self.try_wait()? {
                bail!("the xmacvlan daemon exited early ({status}); log tail:\n{}", self.log_tail(40));
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!(
                    "the xmacvlan daemon did not accept on {} within {timeout:?}; log tail:\n{}",
                    self.socket.display(),
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the daemon to exit on its own (one expected to refuse to start); its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= end {
                self.kill9();
                bail!("the xmacvlan daemon was still running after {timeout:?}; log:\n{}", self.log_tail(40));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its exit status if it has exited (and is reaped now).
    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else { return Err(anyhow!("the daemon was already stopped")) };
        let status = child.try_wait().context("waiting for the daemon")?;
        if status.is_some() {
            self.child = None;
            unregister_pid(self.pid);
        }
        Ok(status)
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL. The exit status, None if it was stopped
    /// before. A daemon ended by our SIGTERM counts as a clean stop ([`clean_exit`]).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) to the child we spawned and have not reaped (`child` still owns it), so the
        // PID cannot have been reused.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let end = Instant::now() + grace;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    eprintln!(
                        "xmacvlan lab: the daemon (pid {}) ignored SIGTERM for {grace:?}, sending SIGKILL",
                        self.pid
                    );
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Err(_) => break None,
            }
        };
        unregister_pid(self.pid);
        status
    }

    /// SIGKILL and reap, as a crash would end it: nothing is cleaned up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            unregister_pid(self.pid);
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether it is still running (an exit is noticed, and reaped, here).
    pub fn running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the daemon's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }
}

/// Exited with status 0, or ended by the SIGTERM that [`DaemonProcess::stop`] sends.
pub fn clean_exit(status: ExitStatus) -> bool {
    status.success() || status.signal() == Some(libc::SIGTERM)
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}
