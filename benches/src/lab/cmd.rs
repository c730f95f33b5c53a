//! Running commands (`ip`, `ethtool`, …) with a deadline, in the lab's namespaces.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use std::{fs, thread};

use anyhow::{anyhow, bail, Context, Result};

use super::{interrupted, register_pid, stop_pid, unblock_in_child, unregister_pid};

pub struct Output {
    pub stdout: String,
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion with a timeout; fails (with its stderr) on a non-zero exit.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let mut child = unblock_in_child(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    let pid = child.id() as i32;
    register_pid(pid);
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let end = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                unregister_pid(pid);
                break st;
            }
            Ok(None) => {}
            Err(e) => {
                unregister_pid(pid);
                return Err(anyhow!("waiting for `{what}`: {e}"));
            }
        }
        if Instant::now() >= end || interrupted() {
            stop_pid(pid, Duration::from_secs(2));
            let why = if interrupted() { "interrupted" } else { "timed out" };
            bail!("`{what}` {why}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    if !status.success() {
        bail!("`{what}` failed ({status}): {}", stderr.trim());
    }
    Ok(Output { stdout })
}

pub(crate) const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> Result<String> {
    Ok(run_cmd(Command::new("ip").args(args), CMD_TIMEOUT)?.stdout)
}

/// `ip netns exec NS ARGS...`
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String> {
    Ok(run_cmd(Command::new("ip").args(["netns", "exec", ns]).args(args), CMD_TIMEOUT)?.stdout)
}

/// Writes a sysctl of the namespace at `ns_path` (from a thread inside it).
pub(crate) fn ns_sysctl(ns_path: &Path, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    crate::napi::in_netns(ns_path, || fs::write(&path, value).with_context(|| format!("writing {path}")))
}
