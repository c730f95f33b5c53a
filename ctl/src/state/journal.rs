//! The state journal's records: what changed between two saved states (the store writes a save's
//! records as one JSON line), so that a command costs an append of its own change instead of a
//! rewrite of every network and endpoint.
//!
//! Pure. The contract is `apply(old, diff(old, new)) == new`; the store checks it on every save and
//! rewrites the whole file when it does not hold (a reordering the records cannot express), so a
//! record type missing here costs time, never state.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{EndpointState, NetworkState, State};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// The journal's first line: the generation of the state file its records apply to.
    Start {
        generation: u64,
    },
    /// The state's own fields.
    Meta {
        next_id: u32,
        rx_vlan_off: Vec<String>,
    },
    /// A network created or changed; its endpoints stay as they are (`endpoints` is written empty).
    Network {
        network: NetworkState,
    },
    NetworkGone {
        name: String,
    },
    /// An endpoint of `network` (found by `host`): changed in place, or added after the others.
    Endpoint {
        network: String,
        endpoint: EndpointState,
    },
    EndpointGone {
        network: String,
        host: String,
    },
}

/// A network without its endpoints. Every field is named, so that a field added to
/// [`NetworkState`] has to be thought about here.
fn head(n: &NetworkState) -> NetworkState {
    let NetworkState {
        name,
        id,
        parent,
        internal,
        driver,
        mode,
        options,
        ipam,
        endpoints: _,
        passthru,
        cni,
        docker,
        docker_name,
    } = n;
    NetworkState {
        name: name.clone(),
        id: *id,
        parent: parent.clone(),
        internal: *internal,
        driver: driver.clone(),
        mode: mode.clone(),
        options: options.clone(),
        ipam: ipam.clone(),
        endpoints: Vec::new(),
        passthru: passthru.clone(),
        cni: *cni,
        docker: *docker,
        docker_name: docker_name.clone(),
    }
}

/// The records that turn `old` into `new`.
pub fn diff(old: &State, new: &State) -> Vec<Record> {
    let mut out = Vec::new();
    if old.next_id != new.next_id || old.rx_vlan_off != new.rx_vlan_off {
        out.push(Record::Meta { next_id: new.next_id, rx_vlan_off: new.rx_vlan_off.clone() });
    }
    let before: HashMap<&str, &NetworkState> = old.networks.iter().map(|n| (n.name.as_str(), n)).collect();
    let after: HashSet<&str> = new.networks.iter().map(|n| n.name.as_str()).collect();
    for n in old.networks.iter().filter(|n| !after.contains(n.name.as_str())) {
        out.push(Record::NetworkGone { name: n.name.clone() });
    }
    for n in &new.networks {
        let was = before.get(n.name.as_str()).copied();
        let head = head(n);
        if was.is_none_or(|w| self::head(w) != head) {
            out.push(Record::Network { network: head });
        }
        let old_eps: HashMap<&str, &EndpointState> =
            was.map(|w| w.endpoints.iter().map(|e| (e.host.as_str(), e)).collect()).unwrap_or_default();
        let hosts: HashSet<&str> = n.endpoints.iter().map(|e| e.host.as_str()).collect();
        for e in was.iter().flat_map(|w| &w.endpoints).filter(|e| !hosts.contains(e.host.as_str())) {
            out.push(Record::EndpointGone { network: n.name.clone(), host: e.host.clone() });
        }
        for e in &n.endpoints {
            if old_eps.get(e.host.as_str()) != Some(&e) {
                out.push(Record::Endpoint { network: n.name.clone(), endpoint: e.clone() });
            }
        }
    }
    out
}

/// Applies one record (not [`Record::Start`]). Networks are kept in name order, as the daemon
/// writes them.
pub fn apply(state: &mut State, r: Record) -> Result<(), String> {
    let net = |state: &mut State, name: &str| -> Result<usize, String> {
        state.networks.iter().position(|n| n.name == name).ok_or_else(|| format!("no network '{name}'"))
    };
    match r {
        Record::Start { .. } => return Err("a second start record".into()),
        Record::Meta { next_id, rx_vlan_off } => {
            state.next_id = next_id;
            state.rx_vlan_off = rx_vlan_off;
        }
        Record::Network { network } => match state.networks.iter_mut().find(|n| n.name == network.name) {
            Some(n) => *n = NetworkState { endpoints: std::mem::take(&mut n.endpoints), ..network },
            None => {
                let at = state.networks.iter().position(|n| n.name > network.name).unwrap_or(state.networks.len());
                state.networks.insert(at, network);
            }
        },
        Record::NetworkGone { name } => {
            let i = net(state, &name)?;
            state.networks.remove(i);
        }
        Record::Endpoint { network, endpoint } => {
            let i = net(state, &network)?;
            let eps = &mut state.networks[i].endpoints;
            match eps.iter_mut().find(|e| e.host == endpoint.host) {
                Some(e) => *e = endpoint,
                None => eps.push(endpoint),
            }
        }
        Record::EndpointGone { network, host } => {
            let i = net(state, &network)?;
            let eps = &mut state.networks[i].endpoints;
            let j =
                eps.iter().position(|e| e.host == host).ok_or_else(|| format!("no endpoint {host} in '{network}'"))?;
            eps.remove(j);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::Attachment;
    use crate::ipam::IpamSpec;
    use crate::state::{EndpointKind, PassthruSaved, STATE_VERSION};

    pub(crate) fn endpoint(host: &str) -> EndpointState {
        EndpointState {
            kind: EndpointKind::Veth { netns: format!("/run/netns/{host}"), ns_id: (4, 5) },
            ifname: "eth0".into(),
            host: host.into(),
            mac: "02:42:c6:12:00:02".into(),
            addrs: vec!["198.18.0.2/24".into()],
            mtu: 1500,
            source_macs: Vec::new(),
            cni: None,
            routes: Vec::new(),
            spoof_check: None,
            ip_guard: None,
            ipvlan_id: None,
        }
    }

    pub(crate) fn network(name: &str, hosts: &[&str]) -> NetworkState {
        NetworkState {
            name: name.into(),
            id: 1,
            parent: Some("eth1".into()),
            internal: false,
            driver: "macvlan".into(),
            mode: "bridge".into(),
            options: Vec::new(),
            ipam: IpamSpec { subnets: vec!["198.18.0.0/24".into()], ..Default::default() },
            endpoints: hosts.iter().map(|h| endpoint(h)).collect(),
            passthru: None,
            cni: false,
            docker: false,
            docker_name: None,
        }
    }

    fn state(networks: Vec<NetworkState>) -> State {
        State { version: STATE_VERSION, next_id: 2, networks, rx_vlan_off: Vec::new(), generation: 0 }
    }

    fn replayed(old: &State, new: &State) -> (State, Vec<Record>) {
        let records = diff(old, new);
        let mut s = old.clone();
        for r in records.clone() {
            apply(&mut s, r).unwrap();
        }
        (s, records)
    }

    #[test]
    fn one_command_is_one_record() {
        let old = state(vec![network("a", &["x1", "x2", "x3"])]);
        let mut new = old.clone();
        new.networks[0].endpoints.push(endpoint("x4"));
        let (s, r) = replayed(&old, &new);
        assert_eq!(s, new);
        assert_eq!(r, [Record::Endpoint { network: "a".into(), endpoint: endpoint("x4") }], "connect");

        let mut new = old.clone();
        new.networks[0].endpoints.remove(1);
        let (s, r) = replayed(&old, &new);
        assert_eq!(s, new);
        assert_eq!(r, [Record::EndpointGone { network: "a".into(), host: "x2".into() }], "disconnect");

        let mut new = old.clone();
        new.networks[0].endpoints[2].source_macs.push("02:77:00:00:00:01".into());
        let (s, r) = replayed(&old, &new);
        assert_eq!(s, new, "macaddr: changed in place, the order kept");
        assert_eq!(r.len(), 1);

        assert!(diff(&old, &old).is_empty(), "nothing changed, nothing written");
    }

    #[test]
    fn networks_and_the_states_own_fields() {
        let old = state(vec![network("b", &["y1"]), network("d", &[])]);
        let mut new = old.clone();
        new.networks.insert(0, network("a", &["x1", "x2"]));
        new.networks.insert(2, network("c", &[]));
        new.networks.retain(|n| n.name != "d");
        new.networks[1].passthru = Some(PassthruSaved { mac: Some("02:00:00:00:00:01".into()), promisc: true });
        new.next_id = 7;
        new.rx_vlan_off = vec!["eth1".into()];
        let (s, r) = replayed(&old, &new);
        assert_eq!(s, new, "created networks land in name order");
        assert!(r.contains(&Record::NetworkGone { name: "d".into() }));
        assert!(r.contains(&Record::Meta { next_id: 7, rx_vlan_off: vec!["eth1".into()] }));
        let heads = r.iter().filter(|r| matches!(r, Record::Network { .. })).count();
        assert_eq!(heads, 3, "a, c created; b changed (passthru)");
        assert!(
            r.iter().all(|r| !matches!(r, Record::Network { network } if !network.endpoints.is_empty())),
            "a network record never carries endpoints"
        );
    }

    #[test]
    fn a_changed_network_keeps_its_endpoints() {
        let old = state(vec![network("a", &["x1", "x2"])]);
        let mut new = old.clone();
        new.networks[0].cni = true;
        new.networks[0].endpoints[0].cni = Some(Attachment { container_id: "c".into(), ifname: "eth0".into() });
        let (s, r) = replayed(&old, &new);
        assert_eq!(s, new);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn what_the_records_cannot_express_is_seen() {
        // The daemon never reorders endpoints; if a state did, replaying would not give it back,
        // and the store (which compares) rewrites the file instead.
        let old = state(vec![network("a", &["x1", "x2"])]);
        let mut new = old.clone();
        new.networks[0].endpoints.reverse();
        let (s, _) = replayed(&old, &new);
        assert_ne!(s, new);
    }

    #[test]
    fn records_for_what_is_not_there_are_errors() {
        let mut s = state(vec![network("a", &["x1"])]);
        assert!(apply(&mut s, Record::NetworkGone { name: "zz".into() }).unwrap_err().contains("zz"));
        let e = apply(&mut s, Record::EndpointGone { network: "a".into(), host: "x9".into() }).unwrap_err();
        assert!(e.contains("x9"), "{e}");
        let e = apply(&mut s, Record::Endpoint { network: "q".into(), endpoint: endpoint("x2") }).unwrap_err();
        assert!(e.contains("'q'"), "{e}");
        assert!(apply(&mut s, Record::Start { generation: 1 }).is_err());
    }
}
