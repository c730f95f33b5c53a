//! Interface counters of many namespaces, read fast: one NETLINK_ROUTE socket per namespace
//! (`xmacvlan_lab::netlink`), opened once from a thread that entered it, then an RTM_GETLINK dump
//! per read from any thread. Summing 1024 containers' rx_packets this way takes milliseconds, where
//! `ip -s link` per namespace would take seconds.

use std::path::Path;

use anyhow::{Context, Result};
use xmacvlan_lab::netlink::{self, attrs, Msg, Netlink};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const IFLA_IFNAME: u16 = 3;
const IFLA_STATS64: u16 = 23;
const IFF_UP: u32 = 1;
const IFF_LOOPBACK: u32 = 8;

/// One interface as a dump reports it.
#[derive(Debug, Clone, Default)]
pub struct Link {
    pub ifindex: i32,
    pub name: String,
    pub up: bool,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
}

/// A NETLINK_ROUTE socket bound to one network namespace.
pub struct NsSock(Netlink);

impl NsSock {
    /// Opens the socket inside the namespace at `ns_path`.
    pub fn open(ns_path: &Path) -> Result<NsSock> {
        Ok(NsSock(netlink::open_in(ns_path, libc::NETLINK_ROUTE)?))
    }

    /// An RTM_*LINK request for interface `ifindex` (0: all).
    fn request(ty: u16, flags: libc::c_int, ifindex: i32) -> Msg {
        // ifinfomsg: family, pad, type, index, flags, change.
        let mut ifinfo = [0u8; 16];
        ifinfo[0] = libc::AF_UNSPEC as u8;
        ifinfo[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        let mut m = Msg::new(ty, flags);
        m.put(&ifinfo);
        m
    }

    /// Every interface of the namespace but loopback.
    pub fn links(&self) -> Result<Vec<Link>> {
        let seq = self.0.send(Self::request(RTM_GETLINK, libc::NLM_F_DUMP, 0))?;
        let mut out = Vec::new();
        self.0
            .answers(seq, true, |ty, body| {
                if ty != RTM_NEWLINK || body.len() < 16 {
                    return;
                }
                let ifindex = i32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
                let flags = u32::from_ne_bytes([body[8], body[9], body[10], body[11]]);
                if flags & IFF_LOOPBACK != 0 {
                    return;
                }
                let mut l = Link { ifindex, up: flags & IFF_UP != 0, ..Default::default() };
                for (t, d) in attrs(&body[16..]) {
                    match t {
                        IFLA_IFNAME => {
                            l.name = String::from_utf8_lossy(d.split(|&b| b == 0).next().unwrap_or(d)).into()
                        }
                        IFLA_STATS64 if d.len() >= 64 => {
                            let u = |i: usize| u64::from_ne_bytes(d[i * 8..i * 8 + 8].try_into().unwrap());
                            l.rx_packets = u(0);
                            l.tx_packets = u(1);
                            l.rx_dropped = u(6);
                        }
                        _ => {}
                    }
                }
                out.push(l);
            })
            .context("RTM_GETLINK dump")?;
        Ok(out)
    }

    /// Deletes interface `ifindex` (a veth takes its peer along); one already gone is no error.
    pub fn del_link(&self, ifindex: i32) -> Result<()> {
        match self.0.ack(Self::request(RTM_DELLINK, 0, ifindex)) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => Err(e).context(format!("deleting interface {ifindex}")),
            _ => Ok(()),
        }
    }
}
