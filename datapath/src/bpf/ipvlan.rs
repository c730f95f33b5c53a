//! The ipvlan maps (datapath/src/ipvlan.rs has the rules): `ipvlan_ports`, the (parent, VLAN)s whose
//! endpoints share the parent's MAC, and `ipvlan_ips`, their endpoints' addresses.

use std::net::IpAddr;

use libbpf_rs::{MapCore, MapFlags};

use super::{as_bytes, bpf_err, Bpf, MacVal};
use crate::frame::MacAddr;
use crate::ipvlan::{Ipvlan, IpvlanFlag, IpvlanMode};
use crate::Error;

/// Twin of `struct port_key` in bpf/xmacvlan.h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortKey {
    pub parent_ifindex: u32,
    pub vlan: u16,
    pub pad: u16,
}
const _: () = assert!(std::mem::size_of::<PortKey>() == 8);

/// Twin of `struct ipvlan_port`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpvlanPort {
    /// The parent's MAC.
    pub mac: [u8; 6],
    /// XMV_IPVLAN_L2 | _L3 | _L3S.
    pub mode: u8,
    /// XMV_IPVLAN_BRIDGE | _PRIVATE | _VEPA.
    pub flag: u8,
}
const _: () = assert!(std::mem::size_of::<IpvlanPort>() == 8);

impl IpvlanPort {
    pub fn new(mac: MacAddr, ipv: Ipvlan) -> Self {
        let mode = match ipv.mode {
            IpvlanMode::L2 => 0,
            IpvlanMode::L3 => 1,
            IpvlanMode::L3s => 2,
        };
        let flag = match ipv.flag {
            IpvlanFlag::Bridge => 0,
            IpvlanFlag::Private => 1,
            IpvlanFlag::Vepa => 2,
        };
        IpvlanPort { mac: mac.0, mode, flag }
    }
}

/// Twin of `struct ip_key`: an ipvlan endpoint's address on its port (IPv4 as ::ffff:a.b.c.d).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpKey {
    pub parent_ifindex: u32,
    pub vlan: u16,
    pub pad: u16,
    pub addr: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<IpKey>() == 24);

impl IpKey {
    pub fn new(parent_ifindex: u32, vlan: u16, ip: IpAddr) -> Self {
        let addr = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        IpKey { parent_ifindex, vlan, pad: 0, addr }
    }
}

impl Bpf {
    /// Makes (parent, VLAN) an ipvlan port, or rewrites its settings; counted in `config` so the
    /// parent program looks ports up only while there are some.
    pub fn set_ipvlan_port(&self, key: PortKey, port: IpvlanPort) -> Result<(), Error> {
        let present = matches!(self.ipvlan_ports.lookup(as_bytes(&key), MapFlags::ANY), Ok(Some(_)));
        if !present {
            self.count_in(&self.ipvlan_count, 1)?;
        }
        let r = self.ipvlan_ports.update(as_bytes(&key), as_bytes(&port), MapFlags::ANY);
        if r.is_err() && !present {
            let _ = self.count_in(&self.ipvlan_count, -1);
        }
        r.map_err(bpf_err("update ipvlan_ports"))
    }

    pub fn del_ipvlan_port(&self, key: PortKey) {
        if self.ipvlan_ports.delete(as_bytes(&key)).is_ok() {
            let _ = self.count_in(&self.ipvlan_count, -1);
        }
    }

    /// Points these addresses of an ipvlan port at an endpoint (all or none), and first the
    /// `fast_ports` entry of its slot, as [`Bpf::set_mac`] does.
    pub fn set_ipvlan_ips(&self, keys: &[IpKey], val: MacVal) -> Result<(), Error> {
        let port = if val.flags & super::MAC_FAST_TC != 0 { val.fast_ifindex } else { 0 };
        self.fast_ports
            .update(&val.slot.to_ne_bytes(), &port.to_ne_bytes(), MapFlags::ANY)
            .map_err(bpf_err("update fast_ports"))?;
        for (i, k) in keys.iter().enumerate() {
            if let Err(e) = self.ipvlan_ips.update(as_bytes(k), as_bytes(&val), MapFlags::ANY) {
                self.del_ipvlan_ips(&keys[..i], None);
                return Err(bpf_err("update ipvlan_ips")(e));
            }
        }
        Ok(())
    }

    /// Removes an endpoint's addresses, then (with its slot) clears the slot's `fast_ports` entry.
    pub fn del_ipvlan_ips(&self, keys: &[IpKey], slot: Option<u32>) {
        for k in keys {
            let _ = self.ipvlan_ips.delete(as_bytes(k));
        }
        if let Some(slot) = slot {
            let _ = self.fast_ports.update(&slot.to_ne_bytes(), &0u32.to_ne_bytes(), MapFlags::ANY);
        }
    }
}
