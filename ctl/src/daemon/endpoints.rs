//! A network's endpoints: kept in the order they were connected (views, the state file and error
//! messages list them in that order) and found by every key the daemon looks them up by — the
//! datapath port, the daemon-side link, the namespace, the name `disconnect` takes, the MAC, the
//! CNI attachment, an address (an ipvlan port's endpoints are told apart by it) — through one index, so that a command or a link event costs O(log n) in the
//! number of endpoints instead of a scan each (or a scan per endpoint, as `stats` did).
//!
//! Pure bookkeeping: no netlink, no datapath. The keys of an endpoint never change while it is
//! registered (only its source-MAC list does, through [`Endpoints::source_macs_mut`]), which is
//! what keeps the index exact.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::PortId;

use crate::api::Attachment;
use crate::ipam::Assigned;
use crate::state::{EndpointKind, EndpointState};

pub(super) struct Endpoint {
    pub st: EndpointState,
    pub port: PortId,
    pub host_index: u32,
    pub mac: MacAddr,
    pub addrs: Vec<Assigned>,
}

impl Endpoint {
    pub fn netns(&self) -> Option<&str> {
        match &self.st.kind {
            EndpointKind::Veth { netns, .. } => Some(netns),
            EndpointKind::Tap { .. } | EndpointKind::Docker { .. } => None,
        }
    }

    /// How error messages name it: the namespace of a veth endpoint, "tap NAME" for a tap.
    pub fn label(&self) -> String {
        match &self.st.kind {
            EndpointKind::Veth { netns, .. } => format!("{netns} ({})", self.st.ifname),
            EndpointKind::Tap { .. } => format!("tap {}", self.st.ifname),
            EndpointKind::Docker { endpoint_id } => format!("Docker endpoint {endpoint_id}"),
        }
    }

    /// Every key it is found by.
    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        let (ns, name) = match &self.st.kind {
            EndpointKind::Veth { netns, ns_id } => (Some(Key::Netns(*ns_id)), Key::Name(netns.clone())),
            EndpointKind::Tap { .. } => (None, Key::Name(self.st.ifname.clone())),
            EndpointKind::Docker { endpoint_id } => (None, Key::Name(endpoint_id.clone())),
        };
        [
            Some(Key::Port(self.port)),
            Some(Key::Link(self.host_index)),
            ns,
            Some(name),
            Some(Key::Mac(self.mac)),
            self.st.cni.clone().map(Key::Attachment),
        ]
        .into_iter()
        .flatten()
        .chain(self.addrs.iter().map(|a| Key::Addr(a.ip)))
    }
}

/// An endpoint's place in its network: increasing with every connect, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct EpId(u64);

/// What an endpoint is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// Its datapath port.
    Port(PortId),
    /// Its daemon-side link (veth end or tap), by index.
    Link(u32),
    /// A veth endpoint's namespace, by identity (device, inode).
    Netns((u64, u64)),
    /// The name `disconnect` takes: a veth endpoint's NETNS as given to connect, a tap's name.
    Name(String),
    Mac(MacAddr),
    /// A CNI attachment's (container ID, ifname).
    Attachment(Attachment),
    /// One of its addresses (not its ipvlan link-local, which its dev_id keeps unique).
    Addr(IpAddr),
}

#[derive(Default)]
pub(super) struct Endpoints {
    next: u64,
    by_id: BTreeMap<EpId, Endpoint>,
    /// Key → the endpoints that have it, first connected first. Most keys are unique (the daemon
    /// refuses a second endpoint with the same namespace, MAC or attachment); names and MACs read
    /// back from a state file need not be, and a lookup then finds the first, as a scan did.
    index: HashMap<Key, BTreeSet<EpId>>,
}

impl Endpoints {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// In connection order.
    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.by_id.values()
    }

    /// In connection order.
    pub fn entries(&self) -> impl Iterator<Item = (EpId, &Endpoint)> {
        self.by_id.iter().map(|(&id, e)| (id, e))
    }

    pub fn first(&self) -> Option<&Endpoint> {
        self.by_id.values().next()
    }

    pub fn get(&self, id: EpId) -> Option<&Endpoint> {
        self.by_id.get(&id)
    }

    /// The one field that changes while an endpoint is connected (`network macaddr`).
    pub fn source_macs_mut(&mut self, id: EpId) -> Option<&mut Vec<String>> {
        self.by_id.get_mut(&id).map(|e| &mut e.st.source_macs)
    }

    /// Registers an endpoint after every one connected before it.
    pub fn push(&mut self, e: Endpoint) -> EpId {
        let id = EpId(self.next);
        self.next += 1;
        for k in e.keys() {
            self.index.entry(k).or_default().insert(id);
        }
        self.by_id.insert(id, e);
        id
    }

    pub fn remove(&mut self, id: EpId) -> Option<Endpoint> {
        let e = self.by_id.remove(&id)?;
        for k in e.keys() {
            if let Some(ids) = self.index.get_mut(&k) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.index.remove(&k);
                }
            }
        }
        Some(e)
    }

    /// The first connected endpoint with this key.
    pub fn find(&self, key: &Key) -> Option<EpId> {
        self.index.get(key).and_then(|ids| ids.first().copied())
    }

    /// What `disconnect` and `macaddr` mean by ENDPOINT: a tap by name; a namespace by identity
    /// (`ns_id`, when it could be opened) or by the name it was connected with — the first
    /// connected endpoint that matches either.
    pub fn find_named(&self, name: &str, ns_id: Option<(u64, u64)>) -> Option<EpId> {
        let by_ns = ns_id.and_then(|id| self.find(&Key::Netns(id)));
        let by_name = self.find(&Key::Name(name.to_string()));
        by_ns.into_iter().chain(by_name).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(n: u16, netns: &str, ns_id: u64) -> Endpoint {
        Endpoint {
            st: EndpointState {
                kind: EndpointKind::Veth { netns: netns.into(), ns_id: (4, ns_id) },
                ifname: "eth0".into(),
                host: format!("xmv{n:08x}"),
                mac: String::new(),
                addrs: Vec::new(),
                mtu: 1500,
                source_macs: Vec::new(),
                cni: None,
                routes: Vec::new(),
                spoof_check: None,
                ip_guard: None,
                ipvlan_id: None,
            },
            port: n,
            host_index: 100 + u32::from(n),
            mac: MacAddr([2, 0x42, 0, 0, (n >> 8) as u8, n as u8]),
            addrs: Vec::new(),
        }
    }

    fn tap(n: u16, name: &str) -> Endpoint {
        let mut e = veth(n, "", 0);
        e.st.kind = EndpointKind::Tap { owner: None };
        e.st.ifname = name.into();
        e
    }

    #[test]
    fn every_key_finds_the_endpoint_and_order_is_connection_order() {
        let mut eps = Endpoints::default();
        let a = eps.push(veth(3, "/run/netns/a", 10));
        let mut cni = veth(1, "/run/netns/b", 11);
        cni.st.cni = Some(Attachment { container_id: "c0ffee".into(), ifname: "eth0".into() });
        let b = eps.push(cni);
        let t = eps.push(tap(2, "vm0"));
        assert_eq!(eps.len(), 3);
        assert_eq!(eps.iter().map(|e| e.port).collect::<Vec<_>>(), [3, 1, 2], "connection order, not port order");
        assert_eq!(eps.find(&Key::Port(1)), Some(b));
        assert_eq!(eps.find(&Key::Link(103)), Some(a));
        assert_eq!(eps.find(&Key::Netns((4, 11))), Some(b));
        assert_eq!(eps.find(&Key::Mac(MacAddr([2, 0x42, 0, 0, 0, 2]))), Some(t));
        let att = Attachment { container_id: "c0ffee".into(), ifname: "eth0".into() };
        assert_eq!(eps.find(&Key::Attachment(att)), Some(b));
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        assert_eq!(eps.find(&Key::Addr(ip)), None);
        let mut with_addr = veth(4, "/run/netns/c", 12);
        with_addr.addrs = vec![Assigned { ip, prefix: 24 }];
        let c = eps.push(with_addr);
        assert_eq!(eps.find(&Key::Addr(ip)), Some(c));
        eps.remove(c);
        assert_eq!(eps.find(&Key::Addr(ip)), None);
        assert_eq!(eps.find_named("vm0", None), Some(t), "a tap by its name");
        assert_eq!(eps.find_named("/run/netns/a", None), Some(a), "a namespace by the name it was connected with");
        assert_eq!(eps.find_named("/proc/42/ns/net", Some((4, 11))), Some(b), "or by identity");
        assert_eq!(eps.find_named("nope", Some((9, 9))), None);
        assert_eq!(eps.find(&Key::Port(9)), None);
    }

    #[test]
    fn removal_forgets_every_key_and_leaves_the_rest_in_order() {
        let mut eps = Endpoints::default();
        let ids: Vec<EpId> = (1..=100).map(|n| eps.push(veth(n, &format!("ns{n}"), u64::from(n)))).collect();
        for &id in ids.iter().step_by(2) {
            let e = eps.remove(id).expect("registered");
            assert_eq!(eps.find(&Key::Port(e.port)), None);
            assert_eq!(eps.find(&Key::Link(e.host_index)), None);
            assert_eq!(eps.find(&Key::Mac(e.mac)), None);
            assert_eq!(eps.find_named(e.netns().unwrap(), Some((4, u64::from(e.port)))), None);
        }
        assert!(eps.remove(ids[0]).is_none(), "removed once");
        assert_eq!(eps.len(), 50);
        assert!(eps.iter().map(|e| e.port).eq((2..=100).step_by(2)));
        assert_eq!(eps.find(&Key::Port(50)), Some(ids[49]));
        // A new endpoint may take a freed port and MAC; it comes last.
        let again = eps.push(veth(1, "ns1", 1));
        assert_eq!(eps.find(&Key::Port(1)), Some(again));
        assert_eq!(eps.iter().last().map(|e| e.port), Some(1));
        for id in eps.entries().map(|(id, _)| id).collect::<Vec<_>>() {
            eps.remove(id);
        }
        assert!(eps.is_empty() && eps.index.is_empty(), "no key outlives its endpoint");
    }

    #[test]
    fn shared_names_and_macs_find_the_first_connected() {
        // A state file may hold what connect would refuse: the first one wins, as with a scan.
        let mut eps = Endpoints::default();
        let first = eps.push(veth(1, "same", 1));
        let second = eps.push(veth(2, "same", 2));
        let shared_mac = tap(3, "same");
        let mac = shared_mac.mac;
        let third = eps.push(Endpoint { mac: MacAddr([2, 0x42, 0, 0, 0, 1]), ..shared_mac });
        assert_eq!(eps.find_named("same", None), Some(first));
        assert_eq!(eps.find_named("same", Some((4, 2))), Some(first), "the first of either match");
        assert_eq!(eps.find(&Key::Mac(MacAddr([2, 0x42, 0, 0, 0, 1]))), Some(first));
        eps.remove(first);
        assert_eq!(eps.find_named("same", None), Some(second));
        assert_eq!(eps.find(&Key::Mac(MacAddr([2, 0x42, 0, 0, 0, 1]))), Some(third));
        assert_eq!(eps.find(&Key::Mac(mac)), None);
    }

    #[test]
    fn source_macs_are_the_editable_field() {
        let mut eps = Endpoints::default();
        let id = eps.push(veth(1, "a", 1));
        eps.source_macs_mut(id).expect("registered").push("02:77:00:00:00:01".into());
        assert_eq!(eps.get(id).map(|e| e.st.source_macs.len()), Some(1));
        assert_eq!(eps.find(&Key::Port(1)), Some(id), "keys unaffected");
    }
}
