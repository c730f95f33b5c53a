//! Start and stop: networks and endpoints brought back from the state file (adopting the links a
//! previous daemon left), networks that follow their parent away and back (hot-plug), and what a
//! clean stop gives back to the host.

use std::net::IpAddr;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use xmacvlan_datapath::frame::MacAddr;

use super::connect::Plan;
use super::ipvlan::{self, IpvlanPlan};
use super::{
    default_routes, open_netns, parse_macs, resolve_parent, Daemon, Endpoint, Endpoints, Network, Owner, Veth,
};
use crate::ipam::{Assigned, Ipam};
use crate::netlink;
use crate::netopts::{Driver, NetOpts};
use crate::state::{EndpointKind, EndpointState, State};

impl Daemon {
    /// Rebuilds networks and endpoints from the state file: XDP is attached again (replacing what
    /// a crashed daemon left), endpoint links that still exist are adopted, missing ones whose
    /// namespace still exists are recreated, the rest are dropped with a message.
    pub(super) async fn restore(&mut self, st: State) -> Result<()> {
        self.next_id = st.next_id.max(1);
        self.rx_vlan_off = st.rx_vlan_off.clone();
        let mut pools = Vec::new();
        for ns in &st.networks {
            pools.push(Ipam::new(&ns.ipam).map_err(|e| anyhow!("network '{}': {e}", ns.name))?);
        }
        let mut changed = false;
        for (ns, ipam) in st.networks.into_iter().zip(pools) {
            let driver: Driver = ns.driver.parse().map_err(|e| anyhow!("state file: network '{}': {e}", ns.name))?;
            // Files from before the options were kept name only the parent and the mode.
            let options = if ns.options.is_empty() && driver == Driver::Macvlan {
                ns.parent
                    .iter()
                    .map(|p| ("parent".to_string(), p.clone()))
                    .chain([("macvlan_mode".to_string(), ns.mode.clone())])
                    .collect()
            } else {
                ns.options.clone()
            };
            let opts =
                NetOpts::parse_for(driver, &options).map_err(|e| anyhow!("state file: network '{}': {e}", ns.name))?;
            let mut net = Network {
                name: ns.name.clone(),
                id: ns.id,
                parent: ns.parent.clone(),
                vlan: 0,
                internal: ns.internal,
                mode: ns.mode.clone(),
                opts,
                options,
                passthru: ns.passthru.clone(),
                spec: ns.ipam.clone(),
                ipam,
                domain: None,
                status: "active".into(),
                endpoints: Endpoints::default(),
                dormant: Vec::new(),
                owner: Owner::from_state(ns.cni, ns.docker),
                reserved: Default::default(),
                docker_name: ns.docker_name.clone(),
            };
            self.next_id = self.next_id.max(ns.id + 1);
            net.dormant = ns.endpoints;
            let name = ns.name.clone();
            self.nets.insert(ns.name, net);
            match self.activate(&name).await {
                Ok(dropped) => changed |= dropped,
                Err(e) => {
                    eprintln!("xmacvlan daemon: network '{name}' stays inactive: {e:#}");
                    self.nets.get_mut(&name).expect("inserted above").status = format!("inactive: {e:#}");
                }
            }
        }
        let adopted: usize = self.nets.values().map(|n| n.endpoints.len()).sum();
        if !self.nets.is_empty() {
            eprintln!("xmacvlan daemon: restored {} network(s), {adopted} endpoint(s)", self.nets.len());
        }
        if changed {
            self.persist()?;
        }
        Ok(())
    }

    /// Removes the links a previous daemon was making when it stopped (killed in the middle of a
    /// connect, before the endpoint was saved, or of the creation of an internal network): those
    /// the intent record names and no network has. A veth goes with its container end.
    pub(super) async fn remove_unsaved(&mut self, pending: Vec<String>) {
        for host in pending {
            let saved = self
                .nets
                .values()
                .any(|n| n.endpoints.iter().any(|e| e.st.host == host) || n.dormant.iter().any(|e| e.host == host))
                || self.domains.values().any(|d| d.anchor && d.link.name == host);
            if saved {
                continue;
            }
            let Ok(Some(link)) = netlink::link_by_name(&self.h, &host).await else { continue };
            let kind = netlink::link_kind(&self.h, link.index).await.ok().flatten();
            if !matches!(kind.as_deref(), Some("veth" | "tun")) {
                eprintln!("xmacvlan daemon: {host} is not a veth or tap; leaving it alone");
                continue;
            }
            match netlink::del_link(&self.h, link.index).await {
                Ok(()) => eprintln!(
                    "xmacvlan daemon: removed {host}: made by a connect that did not finish (the daemon stopped)"
                ),
                Err(e) => eprintln!("xmacvlan daemon: removing {host}, left by an unfinished connect: {e:#}"),
            }
        }
        self.intents.clear();
    }

    /// Brings inactive network `name` up: its parent resolved, its forwarding domain acquired, its
    /// dormant endpoints adopted (their links made again where they vanished while their namespace
    /// lives). At start, and when a missing parent appears. Whether endpoints were dropped (their
    /// namespace is gone): the state changed. On error the network stays as it was.
    pub(super) async fn activate(&mut self, name: &str) -> Result<bool> {
        let net = &self.nets[name];
        let (id, parent) = (net.id, net.parent.clone());
        let (link, vlan) = match &parent {
            Some(p) => {
                let (link, vlan) = resolve_parent(self.h.clone(), p).await?;
                (Some(link), vlan)
            }
            None => (None, 0),
        };
        let key = self.acquire_domain(id, link.as_deref()).await?;
        let net = self.nets.get_mut(name).expect("exists");
        (net.vlan, net.domain, net.status) = (vlan, Some(key), "active".into());
        let mut dropped = false;
        for ep in std::mem::take(&mut net.dormant) {
            let what = format!("{:?} {}", ep.kind, ep.ifname);
            match self.restore_endpoint(name, ep).await {
                Ok(e) => {
                    let net = self.nets.get_mut(name).expect("exists");
                    for a in e.addrs.iter().filter(|_| net.owner == Owner::Cli) {
                        if let Err(err) = net.ipam.reserve(a) {
                            eprintln!("xmacvlan daemon: network '{name}': {err}");
                        }
                    }
                    net.endpoints.push(e);
                }
                Err(e) => {
                    dropped = true;
                    eprintln!("xmacvlan daemon: network '{name}': dropping endpoint {what}: {e:#}");
                }
            }
        }
        Ok(dropped)
    }

    /// The parent of forwarding domain `key` is gone (unplugged, deleted): its networks go inactive
    /// as at a start without it — endpoints kept, dormant, their links left in place but set down
    /// as at a clean stop (without the datapath's programs, what a container sent would reach this
    /// namespace's stack; its side shows NO-CARRIER meanwhile) — and the domain's datapath network
    /// is released. [`Self::activate`] brings them back when it returns.
    pub(super) async fn parent_gone(&mut self, key: u32) {
        let Some(d) = self.domains.get(&key) else { return };
        let (dp, parent) = (d.dp, d.link.name.clone());
        let names: Vec<String> = self.nets.values().filter(|n| n.domain == Some(key)).map(|n| n.name.clone()).collect();
        for name in names {
            let net = self.nets.get_mut(&name).expect("listed above");
            let ids: Vec<_> = net.endpoints.entries().map(|(id, _)| id).collect();
            let mut hosts = Vec::with_capacity(ids.len());
            for id in ids {
                let e = net.endpoints.remove(id).expect("listed above");
                self.board.dp().remove_endpoint(dp, e.port);
                net.ipam.release(&e.addrs);
                hosts.push((e.host_index, e.st.host.clone()));
                net.dormant.push(e.st);
            }
            for (index, host) in hosts {
                if let Err(err) = netlink::set_down(&self.h, index).await {
                    eprintln!("xmacvlan daemon: setting {host} down: {err:#}");
                }
            }
            net.domain = None;
            net.status = format!("inactive: parent {parent} is gone");
            eprintln!("xmacvlan daemon: network '{name}' is inactive: its parent {parent} is gone");
            self.release_domain(key).await;
        }
    }

    pub(super) async fn restore_endpoint(&mut self, network: &str, st: EndpointState) -> Result<Endpoint> {
        let net = &self.nets[network];
        let dp = self.domains[&net.domain.expect("active network")].dp;
        let o = net.ep_opts().with_guard(st.spoof_check, st.ip_guard);
        let routes = if net.owner == Owner::Cni {
            st.routes.clone()
        } else {
            ipvlan::routes(o.ipvlan, default_routes(&net.ipam.default_gateways()))
        };
        // An ipvlan endpoint keeps its dev_id (and so its link-local address); one saved without
        // (never, by this daemon) gets a free one.
        let dkey = net.domain.expect("active network");
        let ipvlan = match o.ipvlan {
            Some(port) => {
                let dev_id = match st.ipvlan_id {
                    Some(id) => id,
                    None => self.ipvlan_dev_id(dkey)?,
                };
                Some(IpvlanPlan { port, dev_id })
            }
            None => None,
        };
        let mac: MacAddr = st.mac.parse().map_err(|e| anyhow!("MAC {}: {e}", st.mac))?;
        let addrs: Vec<Assigned> = st
            .addrs
            .iter()
            .map(|a| {
                let n: IpNet = a.parse().map_err(|_| anyhow!("address '{a}' is not a CIDR"))?;
                Ok(Assigned { ip: n.addr(), prefix: n.prefix_len() })
            })
            .collect::<Result<_>>()?;
        let ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip).collect();
        let mut existing = netlink::link_by_name(&self.h, &st.host).await?;
        let (port, host_index) = match &st.kind {
            EndpointKind::Veth { netns, ns_id } => {
                if let Some(l) = &existing {
                    if netlink::link_kind(&self.h, l.index).await?.as_deref() != Some("veth") {
                        bail!("{} exists but is not a veth; leaving it alone", st.host);
                    }
                }
                let (ns, id) = open_netns(netns).with_context(|| format!("its namespace {netns} is gone"))?;
                if id != *ns_id {
                    bail!("namespace {netns} is a different one now (was {ns_id:?}, is {id:?})");
                }
                // Made for fewer workers than this daemon runs (--cpus changed): every worker
                // needs a queue, so the pair is made again, with the same name, MAC and addresses.
                if let Some(l) = existing.take_if(|l| l.rx_queues < self.dp().workers() as u32) {
                    eprintln!(
                        "xmacvlan daemon: {} has {} queue(s) for {} workers; recreating it",
                        st.host,
                        l.rx_queues,
                        self.dp().workers()
                    );
                    netlink::del_link(&self.h, l.index).await?;
                }
                let veth =
                    Veth { host: &st.host, ifname: &st.ifname, ns: Some(ns), netns, addrs: &addrs, routes: &routes };
                let plan =
                    Plan { dp, opts: o, mac, mtu: st.mtu, create: existing.is_none(), addrs: ips.clone(), ipvlan };
                self.build_veth(plan, veth).await?
            }
            // Docker moved the other end into a container we are not told of: the pair is adopted
            // while it exists (it goes with the container's namespace), never made again.
            EndpointKind::Docker { .. } => {
                let Some(l) = &existing else { bail!("{} is gone (its container's namespace went)", st.host) };
                if netlink::link_kind(&self.h, l.index).await?.as_deref() != Some("veth") {
                    bail!("{} exists but is not a veth; leaving it alone", st.host);
                }
                // Docker gives the container end back (under the name we made it with) when the
                // container goes; its Leave did not reach us: the endpoint is collected.
                if netlink::link_by_name(&self.h, &st.ifname).await?.is_some() {
                    netlink::del_link(&self.h, l.index).await?;
                    bail!("its container is gone (Docker gave {} back while the daemon was down)", st.ifname);
                }
                let veth = Veth { host: &st.host, ifname: &st.ifname, ns: None, netns: "", addrs: &[], routes: &[] };
                let plan = Plan { dp, opts: o, mac, mtu: st.mtu, create: false, addrs: ips.clone(), ipvlan };
                self.build_veth(plan, veth).await?
            }
            EndpointKind::Tap { owner } => {
                if let Some(l) = &existing {
                    if netlink::link_kind(&self.h, l.index).await?.as_deref() != Some("tun") {
                        bail!("{} exists but is not a tap; leaving it alone", st.host);
                    }
                }
                let plan =
                    Plan { dp, opts: o, mac, mtu: st.mtu, create: existing.is_none(), addrs: ips.clone(), ipvlan };
                self.build_tap(plan, &st.host, *owner).await?
            }
        };
        if !st.source_macs.is_empty() {
            let macs = parse_macs(&st.source_macs)?;
            if let Err(e) = self.dp().set_sources(dp, port, &macs) {
                eprintln!("xmacvlan daemon: {}: restoring its source MACs: {e}", st.host);
            }
        }
        let st = EndpointState { ipvlan_id: ipvlan.map(|i| i.dev_id), ..st };
        Ok(Endpoint { st, port, host_index, mac, addrs })
    }

    /// Clean stop: the workers stop and every XDP program is detached; endpoints stay in place
    /// (and in the state file) for the next start, with their daemon-side ends set down so that,
    /// without XDP, nothing a container sends reaches this namespace's stack (its side shows
    /// NO-CARRIER until the next start). Internal anchors hold nothing and go.
    pub(super) async fn shutdown(&mut self) {
        self.dp().shutdown();
        self.remove_relay().await;
        for e in self.nets.values().flat_map(|n| n.endpoints.iter()) {
            if let Err(err) = netlink::set_down(&self.h, e.host_index).await {
                eprintln!("xmacvlan daemon: setting {} down: {err:#}", e.st.host);
            }
        }
        for d in self.domains.values() {
            if d.anchor {
                let _ = netlink::del_link(&self.h, d.link.index).await;
            } else if d.rx_vlan_was_on {
                // Without XDP the host stack may have its offload back.
                let _ = netlink::enable_rx_vlan_offload(&d.link.name);
            }
        }
    }
}
