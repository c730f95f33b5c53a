//! The forwarding table of one domain (one parent and its endpoints): ports and their settings,
//! the (VLAN, MAC) index macvlan finds endpoints by, the (VLAN, address) index ipvlan finds them by,
//! source-mode lists, passthru endpoints, and the tag edit between two ports. Each worker owns a
//! copy; the control plane sends updates. [`crate::fwd::decide`] reads it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use crate::frame::MacAddr;
use crate::fwd::{DropReason, Edit, Flood, Mode, PortId, PortInfo, PARENT};
use crate::ipvlan::{self, Ipvlan};

/// Hashes a (VLAN, MAC) key packed into a u64; MACs are already well spread in their low bytes.
#[derive(Default)]
pub struct MacHasher(u64);

impl Hasher for MacHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        let h = (x ^ (x >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

type MacMap<V> = HashMap<u64, V, BuildHasherDefault<MacHasher>>;

#[inline]
fn key(vlan: u16, mac: MacAddr) -> u64 {
    (u64::from(vlan) << 48) | mac.to_u64()
}

/// The forwarding table of one domain. Each worker owns a copy; the control plane sends updates.
#[derive(Debug, Clone)]
pub struct Table {
    macs: MacMap<PortId>,
    /// Source MAC → the source-mode endpoints listing it (same VLAN).
    sources: MacMap<Vec<PortId>>,
    /// VLAN → its passthru endpoint.
    passthru: Vec<(u16, PortId)>,
    ports: Vec<Option<PortInfo>>,
    /// Endpoints in port order, for floods.
    endpoints: Vec<PortId>,
    /// False for an internal network: no wire behind the parent port, so unknown unicast from an
    /// endpoint is dropped and floods stay among the endpoints.
    wire: bool,
    /// Port → its addresses, for the IP guard (empty for ports without one).
    addrs: Vec<Arc<[IpAddr]>>,
    /// (VLAN, address) → the ipvlan endpoint that has it.
    ips: HashMap<(u16, IpAddr), PortId>,
    /// The ipvlan ports: VLAN → settings and how many endpoints it has.
    ipvlans: Vec<(u16, Ipvlan, u32)>,
}

/// The table refused an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("port id {0} is out of range or already in use")]
    BadPort(PortId),
    #[error("MAC {0} on VLAN {1} is already used by port {2}")]
    MacInUse(MacAddr, u16, PortId),
    #[error("VLAN {0} already has a passthru endpoint (port {1}); passthru allows one endpoint per parent")]
    PassthruTaken(u16, PortId),
    #[error("port {0} is not a source-mode endpoint")]
    NotSource(PortId),
    #[error("address {0} on VLAN {1} is already used by port {2}")]
    AddrInUse(IpAddr, u16, PortId),
    #[error("VLAN {0} of this parent has {1} endpoints; macvlan and ipvlan endpoints cannot share a VLAN")]
    KindTaken(u16, &'static str),
    #[error("VLAN {0} of this parent is an ipvlan port in mode {1} {2}; its endpoints all share it")]
    IpvlanSettings(u16, ipvlan::IpvlanMode, ipvlan::IpvlanFlag),
}

impl Table {
    pub fn new(parent_mac: MacAddr, parent_mtu: u32) -> Self {
        let parent = PortInfo { mtu: parent_mtu, ..PortInfo::endpoint(parent_mac, 0) };
        Table {
            macs: MacMap::default(),
            sources: MacMap::default(),
            passthru: Vec::new(),
            ports: vec![Some(parent)],
            endpoints: Vec::new(),
            wire: true,
            addrs: Vec::new(),
            ips: HashMap::new(),
            ipvlans: Vec::new(),
        }
    }

    /// The table of an internal network (Docker's `--internal` / no parent): endpoints only.
    pub fn internal(anchor_mac: MacAddr) -> Self {
        Table { wire: false, ..Table::new(anchor_mac, 0) }
    }

    pub fn has_wire(&self) -> bool {
        self.wire
    }

    /// Whether [`Table::add_endpoint`] would accept this endpoint (without changing anything).
    pub fn check_endpoint(&self, id: PortId, info: &PortInfo) -> Result<(), TableError> {
        if id == PARENT || self.ports.get(usize::from(id)).is_some_and(Option::is_some) {
            return Err(TableError::BadPort(id));
        }
        match (info.ipvlan, self.ipvlan(info.vlan)) {
            (Some(mine), Some(port)) if mine != port => {
                return Err(TableError::IpvlanSettings(info.vlan, port.mode, port.flag))
            }
            (Some(_), None) if self.macs.keys().any(|&k| (k >> 48) as u16 == info.vlan) => {
                return Err(TableError::KindTaken(info.vlan, "macvlan"))
            }
            (None, Some(_)) => return Err(TableError::KindTaken(info.vlan, "ipvlan")),
            _ => {}
        }
        if info.ipvlan.is_some() {
            return Ok(());
        }
        if let Some(&other) = self.macs.get(&key(info.vlan, info.mac)) {
            return Err(TableError::MacInUse(info.mac, info.vlan, other));
        }
        if info.mode == Mode::Passthru {
            if let Some(other) = self.passthru(info.vlan) {
                return Err(TableError::PassthruTaken(info.vlan, other));
            }
        }
        Ok(())
    }

    pub fn add_endpoint(&mut self, id: PortId, info: PortInfo) -> Result<(), TableError> {
        self.check_endpoint(id, &info)?;
        let idx = usize::from(id);
        if info.mode == Mode::Passthru {
            self.passthru.push((info.vlan, id));
        }
        if self.ports.len() <= idx {
            self.ports.resize(idx + 1, None);
        }
        self.ports[idx] = Some(info);
        match info.ipvlan {
            Some(ipv) => match self.ipvlans.iter_mut().find(|(v, ..)| *v == info.vlan) {
                Some((_, _, n)) => *n += 1,
                None => self.ipvlans.push((info.vlan, ipv, 1)),
            },
            None => {
                self.macs.insert(key(info.vlan, info.mac), id);
            }
        }
        let pos = self.endpoints.partition_point(|&p| p < id);
        self.endpoints.insert(pos, id);
        Ok(())
    }

    pub fn remove_endpoint(&mut self, id: PortId) -> Option<PortInfo> {
        let info = self.ports.get_mut(usize::from(id))?.take()?;
        if info.ipvlan.is_some() {
            self.ips.retain(|_, p| *p != id);
            if let Some(i) = self.ipvlans.iter().position(|(v, ..)| *v == info.vlan) {
                self.ipvlans[i].2 -= 1;
                if self.ipvlans[i].2 == 0 {
                    self.ipvlans.swap_remove(i);
                }
            }
        } else {
            self.macs.remove(&key(info.vlan, info.mac));
        }
        self.endpoints.retain(|&p| p != id);
        self.passthru.retain(|&(_, p)| p != id);
        if let Some(a) = self.addrs.get_mut(usize::from(id)) {
            *a = Arc::from([]);
        }
        self.sources.retain(|_, list| {
            list.retain(|&p| p != id);
            !list.is_empty()
        });
        Some(info)
    }

    /// Whether [`Table::set_addresses`] would accept these addresses for endpoint `id` of `vlan`:
    /// an ipvlan endpoint's must be no other endpoint's of its port.
    pub fn check_addresses(&self, id: PortId, vlan: u16, addrs: &[IpAddr]) -> Result<(), TableError> {
        match addrs.iter().find_map(|&ip| self.ip_owner(vlan, ip).filter(|&p| p != id).map(|p| (ip, p))) {
            Some((ip, p)) if self.ipvlan(vlan).is_some() => Err(TableError::AddrInUse(ip, vlan, p)),
            _ => Ok(()),
        }
    }

    /// The addresses of endpoint `id`: what its IP guard allows (besides its link-local and the
    /// unspecified address, see [`guard::allowed`]), and for an ipvlan endpoint what finds it.
    pub fn set_addresses(&mut self, id: PortId, addrs: Arc<[IpAddr]>) -> Result<(), TableError> {
        let info = self.port(id).copied();
        if let Some(info) = info.filter(|i| i.ipvlan.is_some()) {
            self.check_addresses(id, info.vlan, &addrs)?;
            self.ips.retain(|_, p| *p != id);
            self.ips.extend(addrs.iter().map(|&ip| ((info.vlan, ip), id)));
        }
        let idx = usize::from(id);
        if self.addrs.len() <= idx {
            self.addrs.resize(idx + 1, Arc::from([]));
        }
        self.addrs[idx] = addrs;
        Ok(())
    }

    /// The ipvlan endpoint of `vlan` that has address `ip`.
    #[inline]
    pub fn ip_owner(&self, vlan: u16, ip: IpAddr) -> Option<PortId> {
        if self.ips.is_empty() {
            return None;
        }
        self.ips.get(&(vlan, ip)).copied()
    }

    /// The settings of `vlan`'s ipvlan port, if it is one (it has ipvlan endpoints).
    #[inline]
    pub fn ipvlan(&self, vlan: u16) -> Option<Ipvlan> {
        self.ipvlans.iter().find(|(v, ..)| *v == vlan).map(|&(_, ipv, _)| ipv)
    }

    #[inline]
    pub fn addresses(&self, id: PortId) -> &[IpAddr] {
        self.addrs.get(usize::from(id)).map_or(&[], |a| a)
    }

    pub fn set_up(&mut self, id: PortId, up: bool) {
        if let Some(Some(p)) = self.ports.get_mut(usize::from(id)) {
            p.up = up;
        }
    }

    /// Replaces the allow-list of source-mode endpoint `id`. Returns the (VLAN, MAC) keys whose
    /// listing changed, for the XDP map.
    pub fn set_sources(&mut self, id: PortId, macs: &[MacAddr]) -> Result<Vec<MacAddr>, TableError> {
        let info = *self.port(id).ok_or(TableError::BadPort(id))?;
        if info.mode != Mode::Source {
            return Err(TableError::NotSource(id));
        }
        let mut changed: Vec<MacAddr> = self.sources_of_port(id);
        self.sources.retain(|_, list| {
            list.retain(|&p| p != id);
            !list.is_empty()
        });
        for &m in macs {
            let list = self.sources.entry(key(info.vlan, m)).or_default();
            if !list.contains(&id) {
                let pos = list.partition_point(|&p| p < id);
                list.insert(pos, id);
            }
            if !changed.contains(&m) {
                changed.push(m);
            }
        }
        Ok(changed)
    }

    /// The source MACs endpoint `id` lists.
    pub fn sources_of_port(&self, id: PortId) -> Vec<MacAddr> {
        let mut out: Vec<MacAddr> = self
            .sources
            .iter()
            .filter(|(_, list)| list.contains(&id))
            .map(|(&k, _)| MacAddr::from_u64(k & 0xffff_ffff_ffff))
            .collect();
        out.sort();
        out
    }

    /// Whether any endpoint lists `src` on `vlan`, and whether one of them has `nodst`.
    #[inline]
    pub fn source_listing(&self, vlan: u16, src: MacAddr) -> Option<bool> {
        if self.sources.is_empty() {
            return None;
        }
        let list = self.sources.get(&key(vlan, src))?;
        Some(list.iter().any(|&p| self.port(p).is_some_and(|i| i.nodst)))
    }

    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortInfo> {
        self.ports.get(usize::from(id)).and_then(Option::as_ref)
    }

    /// The endpoint using `mac` on `vlan`, whatever its mode.
    #[inline]
    pub fn lookup(&self, vlan: u16, mac: MacAddr) -> Option<PortId> {
        self.macs.get(&key(vlan, mac)).copied()
    }

    /// The passthru endpoint of `vlan`, if any.
    #[inline]
    pub fn passthru(&self, vlan: u16) -> Option<PortId> {
        self.passthru.iter().find(|&&(v, _)| v == vlan).map(|&(_, p)| p)
    }

    #[inline]
    pub(crate) fn mode(&self, id: PortId) -> Option<Mode> {
        self.port(id).map(|p| p.mode)
    }

    pub fn endpoints(&self) -> &[PortId] {
        &self.endpoints
    }

    /// Whether a frame of `len` bytes with an L2 header of `hlen` may go to `port`.
    #[inline]
    pub fn check_delivery(&self, port: PortId, len: usize, hlen: usize) -> Result<(), DropReason> {
        self.port(port).map_or(Err(DropReason::NoEndpoint), |p| p.admits(len, hlen))
    }

    /// Every port a flood reaches (see [`Flood`]). Delivery checks (down, MTU) are the caller's,
    /// per target.
    #[inline]
    pub fn flood_targets(&self, f: &Flood) -> impl Iterator<Item = PortId> + '_ {
        let listed: &[PortId] =
            if f.sources { self.sources.get(&key(f.vlan, f.src)).map_or(&[], Vec::as_slice) } else { &[] };
        let (vlan, modes, exclude) = (f.vlan, f.modes, f.exclude);
        listed
            .iter()
            .copied()
            .chain(self.endpoints.iter().copied().filter(move |&p| {
                p != exclude && modes != 0 && self.port(p).is_some_and(|i| i.vlan == vlan && modes & i.mode.bit() != 0)
            }))
            .chain(f.also)
            .chain((f.wire && self.wire).then_some(PARENT))
    }

    /// How the tag of a frame (`tci`, None when untagged) changes from `ingress` to `target`.
    #[inline]
    pub fn edit(&self, tci: Option<u16>, ingress: PortId, target: PortId) -> Edit {
        if ingress == PARENT {
            match (tci, self.port(target)) {
                (Some(t), Some(p)) if p.vlan != 0 && target != PARENT => {
                    if p.keep_pcp && t & 0xe000 != 0 {
                        Edit::PriorityTag
                    } else {
                        Edit::Pop
                    }
                }
                _ => Edit::None,
            }
        } else if target == PARENT {
            match self.port(ingress).map(|p| p.vlan) {
                Some(vlan) if vlan != 0 => match tci {
                    Some(t) if t & 0x0fff == 0 => Edit::SetVid(vlan),
                    _ => Edit::Push(vlan),
                },
                _ => Edit::None,
            }
        } else {
            Edit::None
        }
    }
}
