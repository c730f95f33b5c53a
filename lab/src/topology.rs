//! The links a lab is made of, created directly in the lab's namespaces (never in the caller's):
//! the wire, a veth pair between the wire host's namespace and the parent's, and kernel macvlan
//! children of the parent, each born in its container's namespace.

use std::fmt::Write;

use anyhow::{bail, Context, Result};

use crate::cmd::ip_batch;
use crate::mac_str;

/// One end of a veth pair: its namespace and name.
#[derive(Clone, Copy, Debug)]
pub struct End<'a> {
    pub netns: &'a str,
    pub ifname: &'a str,
}

/// The wire: a veth pair with both ends created in their namespaces, `mtu` and `queues` receive and
/// transmit queues on each end, left down (the caller sets addresses, offloads, then up).
pub fn veth_pair(a: End, b: End, mtu: u32, queues: u32) -> Result<()> {
    let end = |e: End| format!("{} netns {} mtu {mtu} numtxqueues {queues} numrxqueues {queues}", e.ifname, e.netns);
    let script = format!("link add {} type veth peer name {}\n", end(a), end(b));
    run_batch(None, &script)
        .with_context(|| format!("creating the veth pair {}/{} – {}/{}", a.netns, a.ifname, b.netns, b.ifname))
}

/// A kernel macvlan child of `parent` (in namespace `parent_ns`).
#[derive(Clone, Debug)]
pub struct MacvlanChild<'a> {
    /// The container namespace it is born in, and its name there.
    pub netns: &'a str,
    pub ifname: &'a str,
    pub mac: [u8; 6],
    /// None: the parent's.
    pub mtu: Option<u32>,
    /// `bridge`, `vepa`, `private`, `passthru`, `source`.
    pub mode: &'a str,
}

/// Creates `children` of `parent` with one `ip -batch` in `parent_ns`, each directly in its
/// container's namespace (down, without addresses).
pub fn macvlan_children(parent_ns: &str, parent: &str, children: &[MacvlanChild]) -> Result<()> {
    let mut script = String::new();
    for c in children {
        let _ = write!(script, "link add link {parent} name {} address {}", c.ifname, mac_str(&c.mac));
        if let Some(mtu) = c.mtu {
            let _ = write!(script, " mtu {mtu}");
        }
        let _ = writeln!(script, " netns {} type macvlan mode {}", c.netns, c.mode);
    }
    run_batch(Some(parent_ns), &script)
        .with_context(|| format!("creating {} macvlan children of {parent} in {parent_ns}", children.len()))
}

/// Runs an `ip -batch` script (in `netns` if given) that must succeed as a whole.
pub fn run_batch(netns: Option<&str>, script: &str) -> Result<()> {
    if script.is_empty() {
        return Ok(());
    }
    let out = ip_batch(netns, script, false).context("running ip -batch")?;
    if !out.status.success() {
        bail!("ip -batch failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
