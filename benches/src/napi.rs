//! Finds the threaded-NAPI kthread(s) of the parent interface and pins them.
//!
//! Several namespaces on the machine may have an `eth1` (the kthreads are all called `napi/eth1-<id>`),
//! so the NAPI ids are asked from the kernel's `netdev` generic-netlink family inside the dp namespace
//! (NETDEV_CMD_NAPI_GET filtered by ifindex; its answer also carries the kthread PID). Only if that fails
//! do we fall back to scanning /proc for a unique `napi/<dev>-*` thread.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use xmacvlan_lab::netlink::{attrs, Msg, Netlink};
use xmacvlan_lab::sys;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_NAPI_GET: u8 = 11;
const NETDEV_A_NAPI_IFINDEX: u16 = 1;
const NETDEV_A_NAPI_ID: u16 = 2;
const NETDEV_A_NAPI_PID: u16 = 4;

#[derive(Debug, Clone)]
pub struct NapiInfo {
    pub id: u32,
    pub pid: Option<i32>,
}

/// A generic netlink request to `family`: genlmsghdr (command, version 1) and the attributes.
fn genl_msg(family: u16, flags: libc::c_int, cmd: u8, attrs: &[(u16, &[u8])]) -> Msg {
    let mut m = Msg::new(family, flags);
    m.put(&[cmd, 1, 0, 0]);
    for (t, d) in attrs {
        m.attr(*t, d);
    }
    m
}

fn u32_of(d: &[u8]) -> Option<u32> {
    d.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The attributes of a generic netlink answer (after its 4-byte genlmsghdr).
fn genl_attrs(body: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    attrs(body.get(4..).unwrap_or_default())
}

fn query_napi(ifindex: u32) -> Result<Vec<NapiInfo>> {
    let nl = Netlink::open(libc::NETLINK_GENERIC)?.with_timeout(std::time::Duration::from_secs(2))?;
    let seq = nl.send(genl_msg(GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")]))?;
    let mut family = None;
    nl.answers(seq, false, |_, body| {
        for (t, d) in genl_attrs(body) {
            if t == CTRL_ATTR_FAMILY_ID && d.len() >= 2 {
                family = Some(u16::from_ne_bytes([d[0], d[1]]));
            }
        }
    })
    .context("resolving the `netdev` generic netlink family")?;
    let family = family.ok_or_else(|| anyhow!("no `netdev` generic netlink family (kernel too old?)"))?;

    let msg =
        genl_msg(family, libc::NLM_F_DUMP, NETDEV_CMD_NAPI_GET, &[(NETDEV_A_NAPI_IFINDEX, &ifindex.to_ne_bytes())]);
    let seq = nl.send(msg)?;
    let mut out = Vec::new();
    nl.answers(seq, true, |_, body| {
        let (mut idx, mut id, mut pid) = (None, None, None);
        for (t, d) in genl_attrs(body) {
            match t {
                NETDEV_A_NAPI_IFINDEX => idx = u32_of(d),
                NETDEV_A_NAPI_ID => id = u32_of(d),
                NETDEV_A_NAPI_PID => pid = u32_of(d).map(|p| p as i32),
                _ => {}
            }
        }
        if let (Some(i), Some(id)) = (idx, id) {
            if i == ifindex {
                out.push(NapiInfo { id, pid });
            }
        }
    })
    .context("NETDEV_CMD_NAPI_GET")?;
    Ok(out)
}

pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_string())
}

/// The NAPI kthreads of `dev` (ifindex `ifindex` inside the namespace at `ns_path`).
pub fn find_napi_threads(ns_path: &Path, dev: &str, ifindex: u32) -> Result<Vec<(i32, String)>> {
    match sys::in_netns(ns_path, || query_napi(ifindex)).map_err(anyhow::Error::from).and_then(|r| r) {
        Ok(v) => {
            let mut out = Vec::new();
            for n in &v {
                let pid = n.pid.or_else(|| scan_proc(&format!("napi/{dev}-{}", n.id)).into_iter().next());
                if let Some(pid) = pid {
                    out.push((pid, comm(pid).unwrap_or_default()));
                }
            }
            if out.is_empty() {
                bail!(
                    "the kernel reports {} NAPI instance(s) for {dev} but no NAPI kthread (is threaded NAPI on?)",
                    v.len()
                );
            }
            Ok(out)
        }
        Err(e) => {
            let prefix = format!("napi/{dev}-");
            let pids = scan_proc_prefix(&prefix);
            if pids.len() == 1 {
                eprintln!(
                    "xmacvlan-bench: warning: netlink NAPI lookup failed ({e:#}); using the only {prefix}* kthread"
                );
                Ok(pids.into_iter().map(|p| (p, comm(p).unwrap_or_default())).collect())
            } else {
                Err(e.context(format!("and {} {prefix}* kthreads exist, cannot tell which is ours", pids.len())))
            }
        }
    }
}

fn scan_proc(exact: &str) -> Vec<i32> {
    scan(|c| c == exact)
}
fn scan_proc_prefix(prefix: &str) -> Vec<i32> {
    scan(|c| c.starts_with(prefix))
}
fn scan(pred: impl Fn(&str) -> bool) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
                if comm(pid).is_some_and(|c| pred(&c)) {
                    v.push(pid);
                }
            }
        }
    }
    v
}
