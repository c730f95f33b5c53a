//! Running commands (`ip`, `ethtool`, …) with a deadline, in the lab's namespaces; `ip -batch` for
//! the many-at-once cases.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cleanup::{interrupted, register_pid, stop_pid, unblock_in_child, unregister_pid};

pub struct Output {
    pub stdout: String,
}

pub fn describe(cmd: &Command) -> String {
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

pub const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> Result<String> {
    Ok(run_cmd(Command::new("ip").args(args), CMD_TIMEOUT)?.stdout)
}

/// `ip netns exec NS ARGS...`
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String> {
    Ok(run_cmd(Command::new("ip").args(["netns", "exec", ns]).args(args), CMD_TIMEOUT)?.stdout)
}

/// Runs `ip -batch -` on `script` (one command per line, without the leading `ip`), in namespace
/// `netns` if given (`ip -n NETNS`); with `force` it goes on past failing lines (`-force`). Returns
/// the output; the caller judges the status.
pub fn ip_batch(netns: Option<&str>, script: &str, force: bool) -> std::io::Result<std::process::Output> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    if force {
        cmd.arg("-force");
    }
    let mut child = unblock_in_child(&mut cmd)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    // Written from a thread of its own while the output is read: a long script's errors could
    // otherwise fill the stderr pipe while ip waits for its stdin.
    thread::scope(|s| {
        s.spawn(move || stdin.write_all(script.as_bytes()));
        child.wait_with_output()
    })
}
