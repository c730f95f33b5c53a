//! Finds the threaded-NAPI kthread(s) of the parent interface and pins them.
//!
//! Several namespaces on the machine may have an `eth1` (the kthreads are all called `napi/eth1-<id>`),
//! so the NAPI ids are asked from the kernel's `netdev` generic-netlink family inside the dp namespace
//! (NETDEV_CMD_NAPI_GET filtered by ifindex; its answer also carries the kthread PID). Only if that fails
//! do we fall back to scanning /proc for a unique `napi/<dev>-*` thread.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_NAPI_GET: u8 = 11;
const NETDEV_A_NAPI_IFINDEX: u16 = 1;
const NETDEV_A_NAPI_ID: u16 = 2;
const NETDEV_A_NAPI_PID: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

#[derive(Debug, Clone)]
pub struct NapiInfo {
    pub id: u32,
    pub pid: Option<i32>,
}

/// Runs `f` on a scratch thread that has entered the network namespace at `ns_path`.
pub fn in_netns<T: Send>(ns_path: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = fs::File::open(ns_path).with_context(|| format!("open {}", ns_path.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: `file` is an open namespace file moved into this thread, alive across the call; setns moves only
            // this scratch thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(anyhow!("setns({}): {}", ns_path.display(), std::io::Error::last_os_error()));
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("netns helper thread panicked"))?
    })
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn genl_msg(ty: u16, flags: u16, seq: u32, cmd: u8, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b.extend_from_slice(&[cmd, 1, 0, 0]);
    for (t, d) in attrs {
        push_attr(&mut b, *t, d);
    }
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&ty.to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    b
}

pub(crate) fn attrs(mut p: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while p.len() >= 4 {
        let len = u16::from_ne_bytes([p[0], p[1]]) as usize;
        let ty = u16::from_ne_bytes([p[2], p[3]]) & 0x3fff;
        if len < 4 || len > p.len() {
            break;
        }
        v.push((ty, &p[4..len]));
        let adv = (len + 3) & !3;
        p = &p[adv.min(p.len())..];
    }
    v
}

fn u32_of(d: &[u8]) -> Option<u32> {
    d.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

struct Nl(OwnedFd);

impl Nl {
    fn open() -> Result<Nl> {
        // SAFETY: socket(2) with constant arguments; the result is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_GENERIC) };
        if fd < 0 {
            bail!("netlink socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is the fresh socket just returned (checked above) and nothing else owns it.
        let nl = Nl(unsafe { OwnedFd::from_raw_fd(fd) });
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        // SAFETY: `fd` is the socket owned by `nl`, open for the call; the option value points at the local `tv` and
        // its size is passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(nl)
    }

    fn send(&self, msg: &[u8]) -> Result<()> {
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value (nl_pid 0: the kernel).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `self.0` is our open netlink socket; `msg` is a live slice and its length is passed; `sa` is a live
        // sockaddr_nl and its size is passed.
        let r = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            bail!("netlink send: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives messages of request `seq` until DONE (dump) or the first reply (non-dump); calls `f` with
    /// the genetlink payload (after the 4-byte genl header) of each.
    fn recv_all(&self, seq: u32, dump: bool, mut f: impl FnMut(&[u8])) -> Result<()> {
        recv_msgs(self.0.as_raw_fd(), seq, dump, |_, body| {
            if body.len() >= 4 {
                f(&body[4..]);
            }
        })
    }
}

/// Receives the netlink messages answering request `seq` on `fd` and calls `f(type, body)` for each
/// until NLMSG_DONE (a dump) or after the first (not a dump). An NLMSG_ERROR with an error code ends
/// it with that error; one with code 0 (an ack) ends it successfully.
pub(crate) fn recv_msgs(fd: i32, seq: u32, dump: bool, mut f: impl FnMut(u16, &[u8])) -> Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: `buf` is a live Vec of `buf.len()` bytes, the length passed, which recv writes; `fd` is a netlink
        // socket the caller holds open for the call.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n < 0 {
            bail!("netlink recv: {}", std::io::Error::last_os_error());
        }
        let mut p = &buf[..n as usize];
        while p.len() >= 16 {
            let len = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]) as usize;
            let ty = u16::from_ne_bytes([p[4], p[5]]);
            let mseq = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
            if len < 16 || len > p.len() {
                bail!("malformed netlink message");
            }
            let body = &p[16..len];
            p = &p[((len + 3) & !3).min(p.len())..];
            if mseq != seq {
                continue;
            }
            match ty {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let err = body.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                    if err != 0 {
                        bail!("netlink error: {}", std::io::Error::from_raw_os_error(-err));
                    }
                    return Ok(());
                }
                _ => {
                    f(ty, body);
                    if !dump {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn query_napi(ifindex: u32) -> Result<Vec<NapiInfo>> {
    let nl = Nl::open()?;
    let mut name = b"netdev".to_vec();
    name.push(0);
    nl.send(&genl_msg(
        GENL_ID_CTRL,
        libc::NLM_F_REQUEST as u16,
        1,
        CTRL_CMD_GETFAMILY,
        &[(CTRL_ATTR_FAMILY_NAME, name)],
    ))?;
    let mut family = None;
    nl.recv_all(1, false, |payload| {
        for (t, d) in attrs(payload) {
            if t == CTRL_ATTR_FAMILY_ID && d.len() >= 2 {
                family = Some(u16::from_ne_bytes([d[0], d[1]]));
            }
        }
    })
    .context("resolving the `netdev` generic netlink family")?;
    let family = family.ok_or_else(|| anyhow!("no `netdev` generic netlink family (kernel too old?)"))?;

    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    nl.send(&genl_msg(
        family,
        flags,
        2,
        NETDEV_CMD_NAPI_GET,
        &[(NETDEV_A_NAPI_IFINDEX, ifindex.to_ne_bytes().to_vec())],
    ))?;
    let mut out = Vec::new();
    nl.recv_all(2, true, |payload| {
        let (mut idx, mut id, mut pid) = (None, None, None);
        for (t, d) in attrs(payload) {
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
    match in_netns(ns_path, || query_napi(ifindex)) {
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

/// sched_setaffinity(pid, {cpu}) — the same as `taskset -pc CPU PID`.
pub fn pin(pid: i32, cpu: usize) -> Result<()> {
    // SAFETY: `set` is a zeroed cpu_set_t on our stack (all-zero is the empty set); CPU_SET indexes its bit array with
    // bounds checks, and sched_setaffinity gets its address and its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity({pid}, cpu {cpu}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
