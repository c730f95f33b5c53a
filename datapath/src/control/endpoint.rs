//! Endpoints in the datapath: adding one (its daemon-side end on the endpoints' tc block, or XDP on
//! it; a socket per worker in a UMEM of its group; the steering entry last), taking one out (detach,
//! then close once its link is gone), the groups whose UMEMs they share (budget.rs), and the tc
//! flood's list.

use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::{sync_sources, Iface, ENDPOINT_RINGS};
use crate::bpf::{self, Prog, TcProg, XdpMode};
use crate::budget::{group_frames, GROUP_SIZE};
use crate::counters::{PortStats, SharedPortCounters};
use crate::domain::Port;
use crate::frame::MacAddr;
use crate::fwd::{self, Mode, PortId, PortInfo, MAX_PORTS};
use crate::guard;
use crate::ipvlan::IpvlanFlag;
use crate::worker::{Command, Reply};
use crate::xsk::{Area, Umem, Xsk, XskMode};
use crate::{Datapath, EndpointSpec, Error, FastPath, NetId};

pub(crate) struct EndpointRec {
    pub iface: Iface,
    pub info: PortInfo,
    pub counters: Vec<SharedPortCounters>,
    pub xsk_mode: XskMode,
    /// Its endpoint group (UMEM id − 1).
    pub group: usize,
    /// Served by this fast path while up.
    pub fast: Option<FastPath>,
    /// The slot's fast-path counters when this endpoint got it (slots are reused).
    pub fast_base: bpf::FastCount,
    /// A veth (a tap is not): the relay can hand it the tc flood's copies.
    pub veth: bool,
    /// An ipvlan endpoint's `ipvlan_ips` keys: its addresses on its port (it has no `macs` keys).
    pub ip_keys: Vec<bpf::IpKey>,
}

impl EndpointRec {
    pub(crate) fn mac_val(&self) -> bpf::MacVal {
        let mut flags = match self.info.mode {
            _ if self.info.ipvlan.is_some() => 0,
            Mode::Source => bpf::MAC_NO_DST | bpf::MAC_REFLECT,
            Mode::Private | Mode::Passthru => bpf::MAC_REFLECT,
            Mode::Vepa => 0,
            Mode::Bridge => bpf::MAC_BRIDGE,
        };
        if self.fast == Some(FastPath::Tc) {
            flags |= bpf::MAC_FAST_TC;
        }
        bpf::MacVal {
            fast_ifindex: if self.fast.is_some() && self.info.up { self.iface.ifindex } else { 0 },
            max_len: self.info.mtu + 14,
            slot: self.iface.slot,
            flags,
        }
    }

    /// Whether the parent program must run for this endpoint's frames from the wire (a parent of
    /// `parent_mtu`): the tc fast path takes an up endpoint's untagged unicast alone, and counts
    /// what it cannot deliver (down, longer than the MTU), but the workers must get tagged frames,
    /// frames for an endpoint off the tc fast path (a tap, `--fast-path off|xdp`), the group frames
    /// reflected to a private/passthru/source endpoint and what a source endpoint lists; and where
    /// the endpoint's MTU is below the parent's, XDP measures each frame before GRO merges them.
    /// An ipvlan endpoint is found by address in both programs (ipvlan_rx, ipvlan_tc), by the same
    /// rules.
    pub(crate) fn needs_steering(&self, parent_mtu: u32) -> bool {
        self.fast != Some(FastPath::Tc)
            || self.info.vlan != 0
            || matches!(self.info.mode, Mode::Source | Mode::Private | Mode::Passthru)
            || self.info.mtu < parent_mtu
    }

    /// The `macs` keys of this endpoint: its MAC, and for passthru the all-zero "any unicast" key;
    /// none for an ipvlan endpoint (found by its `ip_keys`).
    pub(crate) fn mac_keys(&self, parent_ifindex: u32) -> impl Iterator<Item = bpf::MacKey> {
        let macvlan = self.info.ipvlan.is_none();
        let own = macvlan.then(|| bpf::mac_key(parent_ifindex, self.info.vlan, self.info.mac));
        let any = (macvlan && self.info.mode == Mode::Passthru)
            .then(|| bpf::mac_key(parent_ifindex, self.info.vlan, MacAddr::default()));
        own.into_iter().chain(any)
    }
}

impl Datapath {
    /// Writes what steers frames from the wire to `ep` (its `macs` or `ipvlan_ips` entries).
    pub(crate) fn set_steering(&self, ep: &EndpointRec, parent_ifindex: u32) -> Result<(), Error> {
        if ep.info.ipvlan.is_some() {
            return self.bpf.set_ipvlan_ips(&ep.ip_keys, ep.mac_val());
        }
        ep.mac_keys(parent_ifindex).try_for_each(|k| self.bpf.set_mac(k, ep.mac_val()))
    }

    pub(crate) fn del_steering(&self, ep: &EndpointRec, parent_ifindex: u32) {
        self.bpf.del_ipvlan_ips(&ep.ip_keys, Some(ep.iface.slot));
        for k in ep.mac_keys(parent_ifindex) {
            self.bpf.del_mac(k, ep.iface.slot);
        }
    }
}

/// An endpoint's socket on one worker, and the UMEM it registered when it was its group's first
/// member there.
type NewSocket = (Xsk, Option<Arc<Area>>);

/// Up to [`GROUP_SIZE`] endpoints whose sockets share one UMEM per worker (see budget.rs).
pub(crate) struct Group {
    members: Vec<PortId>,
    /// Per worker: the UMEM and the member sockets bound to it; None while no member has a
    /// socket on that worker (its UMEM went with the last one).
    workers: Vec<Option<GroupUmem>>,
}

pub(crate) struct GroupUmem {
    area: Arc<Area>,
    socks: Vec<(PortId, Arc<OwnedFd>)>,
}

impl Datapath {
    /// Adds an endpoint: its daemon-side veth on the endpoints' tc block (the tc fast path, on a
    /// wire) or XDP on it, a socket per worker in a UMEM of its group, then the MAC in the steering
    /// map (last, so the wire never steers to a half-built endpoint).
    pub fn add_endpoint(&mut self, net: NetId, spec: &EndpointSpec) -> Result<PortId, Error> {
        let workers = self.workers.len();
        let network =
            self.networks.get(&net).ok_or_else(|| Error::Invalid(format!("no network {net} in the datapath")))?;
        let id = (1..MAX_PORTS as PortId).find(|p| !network.endpoints.contains_key(p)).ok_or_else(|| {
            Error::Invalid(format!(
                "parent {} serves {} endpoints, the datapath's limit per parent",
                network.parent.name,
                MAX_PORTS - 1
            ))
        })?;
        let info = PortInfo {
            mac: spec.mac,
            mtu: spec.mtu,
            vlan: spec.vlan,
            up: spec.up,
            mode: spec.mode,
            nodst: spec.nodst,
            keep_pcp: spec.keep_pcp,
            guard: spec.guard,
            ipvlan: spec.ipvlan,
        };
        let addrs: Arc<[IpAddr]> = spec.addrs.iter().copied().collect();
        network.table.check_endpoint(id, &info).map_err(|e| Error::Invalid(e.to_string()))?;
        network.table.check_addresses(id, spec.vlan, &addrs).map_err(|e| Error::Invalid(e.to_string()))?;
        let parent_ifindex = network.parent.ifindex;
        let group = network
            .groups
            .iter()
            .position(|g| g.as_ref().is_some_and(|g| (g.members.len() as u32) < GROUP_SIZE))
            .or_else(|| network.groups.iter().position(Option::is_none))
            .unwrap_or(network.groups.len());

        let fast = match self.cfg.fast_path {
            FastPath::Tc if spec.veth && spec.vlan == 0 => Some(FastPath::Tc),
            FastPath::Xdp if spec.fast && spec.vlan == 0 => Some(FastPath::Xdp),
            _ => None,
        };
        // A tc fast path endpoint's container sends through xmv_endpoint_tc (no XDP program: the
        // container keeps TSO) where the network has a wire, and with it the collector that takes
        // what the workers must decide; the others through xmv_endpoint and AF_XDP.
        // An ipvlan endpoint's container always does where there is a wire: handing a frame to
        // the host stack or its routes is done there (xmv_endpoint_tc), never by the workers.
        let tc_fed = network.tc_flood && (fast == Some(FastPath::Tc) || (spec.ipvlan.is_some() && spec.veth));
        let ipvlan_flags = match spec.ipvlan {
            None => 0,
            Some(ipv) => {
                bpf::EP_IPVLAN
                    | if ipv.mode.routed() { bpf::EP_IPVLAN_ROUTED } else { 0 }
                    | match ipv.flag {
                        IpvlanFlag::Bridge => 0,
                        IpvlanFlag::Private => bpf::EP_IPVLAN_PRIVATE,
                        IpvlanFlag::Vepa => bpf::EP_IPVLAN_VEPA,
                    }
            }
        };
        let ep_port = bpf::EpPort {
            slot: 0,
            parent_ifindex,
            parent_slot: network.parent.slot,
            wire_max_len: network.table.port(fwd::PARENT).map_or(0, |p| p.mtu) + 14,
            collector: self.relay.map_or(0, |r| r.collector),
            flags: bpf::EP_WIRE
                | if spec.mode == Mode::Bridge && spec.ipvlan.is_none() { bpf::EP_BRIDGE } else { 0 }
                | if spec.guard.mac { bpf::EP_MAC_GUARD } else { 0 }
                | if spec.guard.ip { bpf::EP_IP_GUARD } else { 0 }
                | ipvlan_flags,
            mac: spec.mac.0,
            vlan: spec.vlan,
        };
        // xmv_endpoint_tc's IP guard reads the addresses from `guard_ips`; the workers' from
        // their tables.
        let guard_ips: Arc<[IpAddr]> = if tc_fed && spec.guard.ip {
            addrs.iter().copied().chain([IpAddr::V6(guard::link_local(spec.mac))]).collect()
        } else {
            Arc::from([])
        };
        let slot = self.alloc_slot()?;
        let attached = if tc_fed {
            self.bpf
                .clear_stale(spec.ifindex, &spec.name)
                .and_then(|()| self.bpf.set_guard_ips(slot, &guard_ips))
                .and_then(|()| self.bpf.set_ep_port(spec.ifindex, bpf::EpPort { slot, ..ep_port }))
                .and_then(|()| self.bpf.join_block(spec.ifindex, &spec.name))
                .map(|()| (XdpMode::None, Some(TcProg::Endpoint)))
        } else {
            self.bpf.attach(Prog::Endpoint, spec.ifindex, &spec.name).map(|m| (m, None))
        };
        let (xdp, tc) = match attached {
            Ok(a) => a,
            Err(e) => {
                if tc_fed {
                    self.bpf.del_ep_port(spec.ifindex);
                    self.bpf.del_guard_ips(slot, &guard_ips);
                }
                self.free_slot(slot);
                return Err(e);
            }
        };
        let iface = Iface { ifindex: spec.ifindex, name: spec.name.clone(), slot, xdp, tc, guard_ips };
        // A tc-fed endpoint's container frames reach the workers through the collector: no AF_XDP
        // socket of its own (nothing would ever fill it), so no fill-ring frames and no UMEM held.
        let nsock = if tc_fed { 0 } else { workers.min(spec.queues.max(1) as usize) };
        // Sockets first (all or nothing), then the workers.
        let built = (|| -> Result<Vec<NewSocket>, Error> {
            self.bpf.set_slot(spec.ifindex, slot)?;
            let network = &self.networks[&net];
            let mut socks = Vec::new();
            for w in 0..nsock {
                let umem = network.groups.get(group).and_then(Option::as_ref).and_then(|g| g.workers[w].as_ref());
                let (xsk, new) = match umem {
                    Some(gu) => {
                        let with = gu.socks[0].1.clone();
                        let umem = Umem::Share { with: with.as_fd(), area: &gu.area };
                        (Xsk::open(umem, spec.ifindex, w as u32, &spec.name, ENDPOINT_RINGS)?, None)
                    }
                    None => {
                        let area = Arc::new(Area::new(group_frames(), network.chunk).map_err(|e| {
                            Error::Invalid(format!(
                                "{}: no memory for the UMEM of endpoints {}-{} of parent {} ({} KiB): {e}",
                                spec.name,
                                group as u32 * GROUP_SIZE + 1,
                                (group as u32 + 1) * GROUP_SIZE,
                                network.parent.name,
                                group_frames() as usize * network.chunk as usize / 1024
                            ))
                        })?);
                        (
                            Xsk::open(Umem::Register(&area), spec.ifindex, w as u32, &spec.name, ENDPOINT_RINGS)?,
                            Some(area),
                        )
                    }
                };
                self.bpf.set_xsk(slot, w as u32, xsk.fd().as_fd())?;
                socks.push((xsk, new));
            }
            Ok(socks)
        })();
        let socks = match built {
            Ok(s) => s,
            Err(e) => {
                self.undo_iface(&iface);
                return Err(e);
            }
        };
        let umem_id = group as u16 + 1;
        let xsk_mode = socks.first().map_or(XskMode::Copy, |(x, _)| x.mode);
        let mut fds: Vec<Option<Arc<OwnedFd>>> = socks.iter().map(|(x, _)| Some(x.fd().clone())).collect();
        fds.resize(workers, None);
        let mut news: Vec<Option<Arc<Area>>> = socks.iter().map(|(_, a)| a.clone()).collect();
        news.resize(workers, None);
        let mut socks = socks.into_iter().map(|(x, _)| Some(x)).collect::<Vec<_>>();
        socks.resize_with(workers, || None);
        let counters: Vec<SharedPortCounters> = (0..workers).map(|_| SharedPortCounters::default()).collect();
        for (w, sock) in socks.into_iter().enumerate() {
            let port = Port::endpoint(sock, umem_id, spec.ifindex, slot, counters[w].clone());
            let pool = news[w].clone().map(|a| (umem_id, a));
            if let Err(e) = self.workers[w]
                .send(w, Command::AddPort { net, id, info, addrs: addrs.clone(), port: Box::new(port), pool })
            {
                self.unwind_port(net, id, umem_id, (0..=w).map(|v| news[v].is_some()).collect());
                self.undo_iface(&iface);
                return Err(e);
            }
        }
        let network = self.networks.get_mut(&net).expect("checked above");
        if group == network.groups.len() {
            network.groups.push(None);
        }
        let g = network.groups[group].get_or_insert_with(|| Group { members: Vec::new(), workers: Vec::new() });
        g.workers.resize_with(workers, || None);
        g.members.push(id);
        for w in 0..workers {
            if let Some(fd) = &fds[w] {
                match (&mut g.workers[w], &news[w]) {
                    (Some(gu), _) => gu.socks.push((id, fd.clone())),
                    (slot @ None, Some(area)) => {
                        *slot = Some(GroupUmem { area: area.clone(), socks: vec![(id, fd.clone())] })
                    }
                    (None, None) => unreachable!("a socket without a UMEM"),
                }
            }
        }
        network.table.add_endpoint(id, info).expect("checked above");
        network.table.set_addresses(id, addrs).expect("checked above");
        let fast_base = self.bpf.fast_counts(slot);
        let ip_keys = match info.ipvlan {
            Some(_) => spec.addrs.iter().map(|&ip| bpf::IpKey::new(parent_ifindex, spec.vlan, ip)).collect(),
            None => Vec::new(),
        };
        let rec = EndpointRec { iface, info, counters, xsk_mode, group, fast, fast_base, veth: spec.veth, ip_keys };
        let parent = *self.networks[&net].table.port(fwd::PARENT).expect("a table has its parent");
        let steered = if rec.needs_steering(parent.mtu) { self.steer_parent(net) } else { Ok(()) };
        let port = info.ipvlan.filter(|_| self.networks[&net].table.has_wire());
        let ported = steered.and_then(|()| match port {
            Some(ipv) => self.bpf.set_ipvlan_port(
                bpf::PortKey { parent_ifindex, vlan: info.vlan, pad: 0 },
                bpf::IpvlanPort::new(parent.mac, ipv),
            ),
            None => Ok(()),
        });
        if let Err(e) = ported.and_then(|()| self.set_steering(&rec, parent_ifindex)) {
            self.del_steering(&rec, parent_ifindex);
            self.networks.get_mut(&net).expect("exists").endpoints.insert(id, rec);
            self.remove_endpoint(net, id);
            return Err(e);
        }
        self.networks.get_mut(&net).expect("checked above").endpoints.insert(id, rec);
        if let Err(e) = self.sync_floods(net) {
            self.remove_endpoint(net, id);
            return Err(e);
        }
        Ok(id)
    }

    /// Rewrites the tc flood's list of `net` from its endpoints (untagged, every mode but source).
    pub(crate) fn sync_floods(&self, net: NetId) -> Result<(), Error> {
        let Some(n) = self.networks.get(&net) else { return Ok(()) };
        if !n.tc_flood {
            return Ok(());
        }
        let relay = self.relay.expect("a network on a wire has the relay (add_network)");
        let (members, peers) = flood_members(n.endpoints.values());
        self.bpf.set_flood_list(n.parent.slot, &members, peers, relay)
    }

    /// Takes a half-added port back out of the first workers (sockets closed by the drop of what
    /// they return, then their frames reclaimed).
    fn unwind_port(&mut self, net: NetId, id: PortId, umem: u16, new_umem: Vec<bool>) {
        let mut back = Vec::new();
        for (w, h) in self.workers.iter().enumerate().take(new_umem.len()) {
            back.push(h.send(w, Command::RemovePort { net, id }));
        }
        drop(back);
        for (w, h) in self.workers.iter().enumerate().take(new_umem.len()) {
            drop(h.send(w, Command::Reclaim { net, id, umem, drop_umem: new_umem[w] }));
        }
    }

    /// Removes an endpoint; its veth may already be gone.
    pub fn remove_endpoint(&mut self, net: NetId, id: PortId) {
        if let Some(c) = self.detach_endpoint(net, id) {
            self.close(vec![c]);
        }
    }

    /// Takes an endpoint out of service: out of the steering and forwarding tables, its XDP
    /// program detached, the workers no longer serving its sockets. The sockets stay open in the
    /// returned [`Detached`] until [`Datapath::close`]: closing a socket still bound to its veth
    /// waits for an RCU grace period, while deleting the veth first unbinds it on the way (so a
    /// caller that deletes the link closes after that, for free).
    pub fn detach_endpoint(&mut self, net: NetId, id: PortId) -> Option<Detached> {
        let network = self.networks.get_mut(&net)?;
        let ep = network.endpoints.remove(&id)?;
        let listed = network.table.sources_of_port(id);
        network.table.remove_endpoint(id);
        if ep.info.ipvlan.is_some() && network.table.ipvlan(ep.info.vlan).is_none() {
            self.bpf.del_ipvlan_port(bpf::PortKey {
                parent_ifindex: network.parent.ifindex,
                vlan: ep.info.vlan,
                pad: 0,
            });
        }
        let parent_ifindex = network.parent.ifindex;
        self.del_steering(&ep, parent_ifindex);
        let network = self.networks.get_mut(&net).expect("exists");
        sync_sources(&self.bpf, network.parent.ifindex, ep.info.vlan, &listed, &network.table);
        self.unsteer_parent_if_idle(net);
        // No flood copy is made for it any more.
        if let Err(e) = self.sync_floods(net) {
            eprintln!("xmacvlan datapath: {e}");
        }
        // Nothing steers to its sockets any more; the workers stop serving them and hand them back.
        self.undo_iface(&ep.iface);
        let mut sockets = Vec::new();
        for (w, h) in self.workers.iter().enumerate() {
            sockets.push(h.send(w, Command::RemovePort { net, id }).ok());
        }
        let mut stats = PortStats::default();
        for c in &ep.counters {
            stats.add(c);
        }
        let f = self.fast_delta(&ep);
        stats.add_fast(&f);
        self.departed.absorb(&stats);
        let network = self.networks.get_mut(&net).expect("exists");
        network.fast_departed.add(&f);
        let mut refs = Vec::new();
        let mut drop_umem = vec![false; self.workers.len()];
        if let Some(g) = network.groups.get_mut(ep.group).and_then(Option::as_mut) {
            g.members.retain(|&m| m != id);
            for (w, gu) in g.workers.iter_mut().enumerate() {
                if let Some(u) = gu {
                    refs.extend(u.socks.iter().filter(|&&(m, _)| m == id).map(|(_, fd)| fd.clone()));
                    u.socks.retain(|&(m, _)| m != id);
                    if u.socks.is_empty() {
                        *gu = None;
                        drop_umem[w] = true;
                    }
                }
            }
            if g.members.is_empty() {
                network.groups[ep.group] = None;
            }
        }
        Some(Detached { net, id, umem: ep.group as u16 + 1, drop_umem, sockets, refs })
    }

    /// Closes detached endpoints' sockets — many at once, so their RCU grace periods overlap —
    /// and then lets the workers take back the frames the kernel held for them.
    pub fn close(&mut self, detached: Vec<Detached>) {
        let mut reclaims = Vec::new();
        let mut holders = Vec::new();
        for d in detached {
            reclaims.push((d.net, d.id, d.umem, d.drop_umem));
            holders.push((d.sockets, d.refs));
        }
        close_in_parallel(holders);
        for (net, id, umem, drop_umem) in reclaims {
            for (w, h) in self.workers.iter().enumerate() {
                drop(h.send(w, Command::Reclaim { net, id, umem, drop_umem: drop_umem[w] }));
            }
        }
    }
}

/// An endpoint out of service whose sockets are still open (see [`Datapath::detach_endpoint`]).
pub struct Detached {
    net: NetId,
    id: PortId,
    umem: u16,
    drop_umem: Vec<bool>,
    /// What the workers handed back (their halves of the sockets).
    sockets: Vec<Option<Reply>>,
    /// The control plane's references to the same sockets.
    refs: Vec<Arc<OwnedFd>>,
}

/// Drops `items` (closing the sockets they hold) on several threads at once: each close of a
/// bound AF_XDP socket waits for an RCU grace period, and concurrent waits share one.
fn close_in_parallel<T: Send>(items: Vec<T>) {
    const THREADS: usize = 32;
    if items.len() <= 1 {
        drop(items);
        return;
    }
    let per = items.len().div_ceil(THREADS);
    let mut items = items;
    std::thread::scope(|s| {
        while !items.is_empty() {
            let chunk: Vec<T> = items.drain(..per.min(items.len())).collect();
            s.spawn(move || drop(chunk));
        }
    });
}

/// The tc flood's list for a parent's endpoints: every untagged one but source mode, the veths
/// first (their count is the second value: the relay serves them), then the rest (taps).
/// An endpoint of an L3/L3S ipvlan port: no broadcast or multicast reaches it.
fn routed(ep: &EndpointRec) -> bool {
    ep.info.ipvlan.is_some_and(|i| i.mode.routed())
}

fn flood_members<'a>(endpoints: impl Iterator<Item = &'a EndpointRec>) -> (Vec<bpf::FloodMember>, usize) {
    let member = |ep: &EndpointRec| bpf::FloodMember {
        ifindex: ep.iface.ifindex,
        max_len: ep.info.mtu + 14,
        slot: ep.iface.slot,
        flags: if ep.info.up { bpf::FLOOD_UP } else { 0 },
    };
    let (peers, others): (Vec<&EndpointRec>, Vec<&EndpointRec>) =
        endpoints.filter(|ep| ep.info.vlan == 0 && ep.info.mode != Mode::Source && !routed(ep)).partition(|ep| ep.veth);
    let n = peers.len();
    (peers.into_iter().chain(others).map(member).collect(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ifindex: u32, veth: bool, vlan: u16, mode: Mode, up: bool) -> EndpointRec {
        EndpointRec {
            iface: Iface {
                ifindex,
                name: format!("if{ifindex}"),
                slot: ifindex + 100,
                xdp: bpf::XdpMode::Native,
                tc: None,
                guard_ips: Arc::from([]),
            },
            info: PortInfo {
                mac: MacAddr([2, 0, 0, 0, 0, ifindex as u8]),
                mtu: 1500,
                vlan,
                up,
                mode,
                nodst: false,
                keep_pcp: false,
                guard: crate::guard::Guard::DEFAULT,
                ipvlan: None,
            },
            counters: Vec::new(),
            xsk_mode: XskMode::Copy,
            group: 0,
            fast: None,
            fast_base: bpf::FastCount::default(),
            veth,
            ip_keys: Vec::new(),
        }
    }

    fn endpoints() -> Vec<EndpointRec> {
        vec![
            rec(1, false, 0, Mode::Bridge, true), // a tap
            rec(2, true, 0, Mode::Bridge, true),
            rec(3, true, 5, Mode::Bridge, true),   // tagged: the workers flood it
            rec(4, true, 0, Mode::Source, true),   // source mode: never a flood target
            rec(5, true, 0, Mode::Private, false), // down: listed, the program counts it
            rec(6, false, 0, Mode::Vepa, true),    // a tap
        ]
    }

    #[test]
    fn flood_list_puts_veths_first_and_leaves_out_tagged_and_source() {
        let eps = endpoints();
        let (members, peers) = flood_members(eps.iter());
        let ifs: Vec<u32> = members.iter().map(|m| m.ifindex).collect();
        assert_eq!(ifs, [2, 5, 1, 6]);
        assert_eq!(peers, 2);
        assert_eq!(members[0], bpf::FloodMember { ifindex: 2, max_len: 1514, slot: 102, flags: bpf::FLOOD_UP });
        assert_eq!(members[1].flags, 0);
    }

    #[test]
    fn flood_list_of_no_endpoints_is_empty() {
        let (members, peers) = flood_members(std::iter::empty());
        assert!(members.is_empty());
        assert_eq!(peers, 0);
    }
}
