//! Networks and their forwarding domains: create and remove, the parent links they share (one
//! domain per parent or internal anchor), MAC checks, passthru's hold on its parent, source mode's
//! sender lists.

use anyhow::{anyhow, bail, Context, Result};
use rtnetlink::Handle;
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::Mode;
use xmacvlan_datapath::ParentSpec;

use super::rules::{self, OnPort, Sharing};
use super::{anchor_name, Daemon, Domain, Endpoint, Endpoints, EpId, Key, Network, Owner};
use crate::api::reply::{NetworkRemoved, SourceMacs};
use crate::api::{CreateNetwork, MacaddrAction, NetworkView};
use crate::ipam::Ipam;
use crate::netopts::NetOpts;
use crate::state::{EndpointKind, EndpointState, PassthruSaved};
use crate::{netlink, netopts};

impl Daemon {
    /// Finds or sets up the forwarding domain of a network: its parent's (shared by every network
    /// on that parent), or a fresh anchor for an internal network.
    pub(super) async fn acquire_domain(&mut self, id: u32, parent: Option<&str>) -> Result<u32> {
        let workers = self.dp().workers() as u32;
        let (link, anchor) = match parent {
            None => {
                let name = anchor_name(id);
                // A crashed daemon may have left the anchor: it holds no state, start afresh.
                if let Some(old) = netlink::link_by_name(&self.h, &name).await? {
                    netlink::del_link(&self.h, old.index).await?;
                }
                // Recorded before it is made, as a connect's veth: if the daemon dies before the
                // network is saved, the next start removes it.
                self.intents.record(std::slice::from_ref(&name)).context("recording the anchor about to be made")?;
                (netlink::create_anchor(&self.h, &name, workers).await?, true)
            }
            Some(pname) => {
                let link = netlink::link_by_name(&self.h, pname)
                    .await?
                    .ok_or_else(|| anyhow!("-o parent interface was not found on the host: {pname}"))?;
                if link.loopback {
                    bail!("loopback interface is not a valid macvlan parent link: {pname}");
                }
                if link.mac.is_none() || !link.ether {
                    bail!("parent {pname} is not an Ethernet interface");
                }
                if let Some(d) = self.domains.get_mut(&link.index) {
                    d.users += 1;
                    return Ok(link.index);
                }
                (link, false)
            }
        };
        let dp = self.next_dp;
        // xmv_parent must see the tags: a parent that strips them on receive would make tagged
        // frames look untagged. Devices that cannot change it (or do not strip) are left as they are.
        let rx_vlan_was_on = !anchor
            && (netlink::disable_rx_vlan_offload(&link.name).unwrap_or_else(|e| {
                eprintln!("xmacvlan daemon: {e:#}");
                false
            }) || self.rx_vlan_off.contains(&link.name));
        let rx_queues = if anchor { workers } else { netlink::active_rx_queues(&link.name).unwrap_or(link.rx_queues) };
        let spec = ParentSpec {
            ifindex: link.index,
            name: link.name.clone(),
            mac: link.mac.unwrap_or_default(),
            mtu: link.mtu,
            rx_queues,
            internal: anchor,
        };
        if !anchor {
            if let Err(e) = self.ensure_relay().await {
                if rx_vlan_was_on {
                    let _ = netlink::enable_rx_vlan_offload(&link.name);
                }
                return Err(e);
            }
        }
        let added = self.dp().add_network(dp, &spec);
        if let Err(e) = added {
            self.release_relay().await;
            if anchor {
                let _ = netlink::del_link(&self.h, link.index).await;
            }
            if rx_vlan_was_on {
                let _ = netlink::enable_rx_vlan_offload(&link.name);
            }
            return Err(anyhow::Error::new(e).context(format!("setting up the datapath on {}", link.name)));
        }
        self.next_dp += 1;
        let key = link.index;
        self.domains.insert(key, Domain { dp, link, users: 1, anchor, rx_vlan_was_on });
        Ok(key)
    }

    pub(super) async fn release_domain(&mut self, key: u32) {
        let Some(d) = self.domains.get_mut(&key) else { return };
        d.users -= 1;
        if d.users > 0 {
            return;
        }
        let d = self.domains.remove(&key).expect("present");
        self.dp().remove_network(d.dp);
        self.release_relay().await;
        if d.rx_vlan_was_on {
            if let Err(e) = netlink::enable_rx_vlan_offload(&d.link.name) {
                eprintln!("xmacvlan daemon: {e:#}");
            }
        }
        if d.anchor {
            if let Err(e) = netlink::del_link(&self.h, d.link.index).await {
                eprintln!("xmacvlan daemon: removing anchor {}: {e:#}", d.link.name);
            }
        }
    }

    pub(super) async fn create(&mut self, c: CreateNetwork) -> Result<NetworkView> {
        self.create_network(c, Owner::Cli).await
    }

    /// `owner`: who makes it (a CNI network has no subnets: its IPAM plugin hands out addresses).
    pub(super) async fn create_network(&mut self, c: CreateNetwork, owner: Owner) -> Result<NetworkView> {
        rules::network_name(&c.name, self.nets.contains_key(&c.name))?;
        let driver = rules::driver(&c.driver)?;
        let opts = NetOpts::parse_for(driver, &c.options).map_err(|e| anyhow!(e))?;
        rules::network_spec(&c, &opts, owner == Owner::Cni)?;
        let parent = opts.parent.clone();
        let ipam = Ipam::new(&c.ipam).map_err(|e| anyhow!(e))?;
        rules::no_pool_overlap(&c.name, &ipam, self.nets.values().map(|n| (n.name.as_str(), &n.ipam)))?;
        let (link, vlan) = match &parent {
            Some(p) => {
                let (link, vlan) = resolve_parent(self.h.clone(), p).await?;
                (Some(link), vlan)
            }
            None => (None, 0),
        };
        if let (Some(p), Some(link)) = (&parent, &link) {
            let l = netlink::link_by_name(&self.h, link).await?;
            let ln = l.as_ref().map(|l| l.index);
            let same_parent = |n: &&Network| n.vlan == vlan && n.domain.is_some() && n.domain == ln;
            rules::port_drivers(
                p,
                opts.ipvlan,
                self.nets.values().filter(same_parent).map(|n| OnPort { name: &n.name, ipvlan: n.opts.ipvlan }),
            )?;
            if let Some(i) = opts.ipvlan {
                rules::ipvlan_parent(p, link, vlan, i)?;
            }
            let other = self.nets.values().find(same_parent).map(|n| Sharing { name: &n.name, mode: n.opts.mode });
            rules::parent_use(p, link, vlan, &opts, other)?;
            if let (Some(m), Some(l)) = (opts.mtu, &l) {
                // The endpoints' MTU cannot exceed their parent's, as for a kernel macvlan child.
                rules::endpoint_mtu(Some(m), l.mtu, false, link).map_err(|_| {
                    anyhow!("-o {}={m} is larger than the MTU of the parent {link} ({})", netopts::MTU, l.mtu)
                })?;
            }
        }
        let id = self.next_id;
        let domain = self.acquire_domain(id, link.as_deref()).await?;
        self.next_id += 1;
        let net = Network {
            name: c.name.clone(),
            id,
            internal: parent.is_none(),
            parent,
            vlan,
            mode: opts.ipvlan.map_or(opts.mode.name(), |i| i.mode.name()).to_string(),
            options: c.options.clone(),
            opts,
            passthru: None,
            spec: c.ipam,
            ipam,
            domain: Some(domain),
            status: "active".into(),
            endpoints: Endpoints::default(),
            dormant: Vec::new(),
            owner,
            reserved: Default::default(),
            docker_name: None,
        };
        let v = self.view(&net);
        self.nets.insert(c.name, net);
        Ok(v)
    }

    /// Whether network `name` may be removed: it exists, and has no endpoints unless `force`.
    pub(super) fn removable(&self, name: &str, force: bool) -> Result<()> {
        let net = self.net(name)?;
        if (!net.endpoints.is_empty() || !net.dormant.is_empty()) && !force {
            // An inactive network's endpoints (dormant) count as connected too.
            let dormant = net.dormant.iter().map(|e| match &e.kind {
                EndpointKind::Veth { netns, .. } => netns.clone(),
                EndpointKind::Tap { .. } => format!("tap {}", e.host),
                EndpointKind::Docker { endpoint_id } => format!("Docker endpoint {endpoint_id}"),
            });
            let list: Vec<String> = net.endpoints.iter().map(Endpoint::label).chain(dormant).collect();
            bail!("network '{name}' has connected endpoints: {}; disconnect them or use --force", list.join(", "));
        }
        if net.owner == Owner::Docker && !force {
            bail!("network '{name}' belongs to Docker: remove it with `docker network rm` (or --force)");
        }
        Ok(())
    }

    /// Removes network `name` saving first, as every removing command does: its endpoints' links
    /// (dormant ones too) and an internal network's anchor are recorded, the state without it is
    /// saved, and only then is anything removed. `what` names the command in the log.
    pub(super) async fn remove_saved(&mut self, name: &str, force: bool, what: &str) -> Result<NetworkRemoved> {
        self.removable(name, force)?;
        let n = &self.nets[name];
        let anchor = n.domain.and_then(|k| self.domains.get(&k)).filter(|d| d.anchor);
        let links: Vec<String> = n
            .endpoints
            .iter()
            .map(|e| e.st.host.clone())
            .chain(n.dormant.iter().map(|e| e.host.clone()))
            .chain(anchor.map(|d| d.link.name.clone()))
            .collect();
        self.intents.record(&links).context("network was not removed: recording its links failed")?;
        self.persist_with(|s| s.networks.retain(|n| n.name != name))
            .with_context(|| format!("network '{name}' was not removed: the state file could not be updated"))?;
        let v = self.remove(name, force).await?;
        self.persist_after(what);
        Ok(v)
    }

    pub(super) async fn remove(&mut self, name: &str, force: bool) -> Result<NetworkRemoved> {
        self.removable(name, force)?;
        let net = self.net(name)?;
        let ids: Vec<EpId> = net.endpoints.entries().map(|(id, _)| id).collect();
        for id in ids {
            self.disconnect_at(name, id).await?;
        }
        let net = self.nets.remove(name).expect("checked above");
        if let Some(k) = net.domain {
            self.release_domain(k).await;
        }
        // An inactive network's endpoints are out of the datapath; their links go with it.
        self.remove_dormant(name, &net.dormant).await;
        Ok(NetworkRemoved { removed: name.to_string() })
    }

    /// Removes the links of dormant endpoints (out of the datapath: an inactive network's) that
    /// are being forgotten; a failure is logged, as the endpoints are gone from the state either way.
    pub(super) async fn remove_dormant(&self, network: &str, dormant: &[EndpointState]) {
        for e in dormant {
            if let Ok(Some(l)) = netlink::link_by_name(&self.h, &e.host).await {
                if let Err(err) = netlink::del_link(&self.h, l.index).await {
                    eprintln!("xmacvlan daemon: removing {} of network '{network}': {err:#}", e.host);
                }
            }
        }
    }

    /// A MAC may be used once per VLAN of an L2 domain, and never be the parent's own (except by
    /// a passthru endpoint, which takes it).
    pub(super) fn check_mac(&self, mac: MacAddr, dkey: u32, vlan: u16, passthru: bool) -> Result<()> {
        let used_by = self.nets.values().filter(|n| n.domain == Some(dkey) && n.vlan == vlan).find_map(|n| {
            let e = n.endpoints.find(&Key::Mac(mac)).and_then(|id| n.endpoints.get(id))?;
            Some((e.label(), n.name.as_str()))
        });
        let dom = &self.domains[&dkey];
        let parent = (!dom.anchor).then_some((dom.link.name.as_str(), dom.link.mac));
        rules::mac_free(mac, used_by, parent, passthru)
    }

    /// Passthru: the parent goes promiscuous (it takes every unicast frame) and, when the endpoint
    /// has a MAC of its own, takes that MAC (macvlan_set_mac_address); both are recorded so that
    /// [`Self::give_back_parent`] restores them, also after a daemon restart.
    pub(super) async fn take_parent(&mut self, network: &str, dkey: u32, mac: MacAddr) -> Result<()> {
        let link =
            netlink::link_by_index(&self.h, dkey).await?.ok_or_else(|| anyhow!("the parent (link #{dkey}) is gone"))?;
        let mut saved = PassthruSaved { mac: None, promisc: false };
        if !link.promisc {
            netlink::set_promisc(&self.h, link.index, true).await?;
            saved.promisc = true;
        }
        if link.mac != Some(mac) {
            if let Err(e) = netlink::set_mac(&self.h, link.index, mac).await {
                if saved.promisc {
                    let _ = netlink::set_promisc(&self.h, link.index, false).await;
                }
                return Err(e);
            }
            saved.mac = link.mac.map(|m| m.to_string());
            if let Some(d) = self.domains.get_mut(&dkey) {
                d.link.mac = Some(mac);
            }
        }
        self.nets.get_mut(network).expect("caller checked").passthru = Some(saved);
        Ok(())
    }

    /// Undoes [`Self::take_parent`]: the parent's own MAC back, promiscuous mode off if we set it.
    pub(super) async fn give_back_parent(&mut self, network: &str) {
        let Some(net) = self.nets.get_mut(network) else { return };
        let (Some(saved), Some(dkey)) = (net.passthru.take(), net.domain) else { return };
        if let Some(mac) = saved.mac.as_deref().and_then(|m| m.parse::<MacAddr>().ok()) {
            match netlink::set_mac(&self.h, dkey, mac).await {
                Ok(()) => {
                    if let Some(d) = self.domains.get_mut(&dkey) {
                        d.link.mac = Some(mac);
                    }
                }
                Err(e) => eprintln!("xmacvlan daemon: restoring the parent's MAC: {e:#}"),
            }
        }
        if saved.promisc {
            if let Err(e) = netlink::set_promisc(&self.h, dkey, false).await {
                eprintln!("xmacvlan daemon: {e:#}");
            }
        }
    }

    /// `network macaddr`: edits the allow-list of a source-mode endpoint.
    pub(super) async fn macaddr(
        &mut self,
        network: &str,
        endpoint: &str,
        action: MacaddrAction,
        macs: &[String],
    ) -> Result<SourceMacs> {
        let net = self.net(network)?;
        if net.opts.mode != Mode::Source {
            bail!(
                "network '{network}' is in {} mode: source MAC lists are for macvlan_mode=source",
                net.opts.mode.name()
            );
        }
        let Some(dkey) = net.domain else { bail!("network '{network}' is {}", net.status) };
        let id = net.find_endpoint(endpoint)?;
        let ep = net.endpoints.get(id).expect("found");
        let given = parse_macs(macs)?;
        if let Some(m) = given.iter().find(|m| m.is_multicast() || m.is_zero()) {
            bail!("{m} is a multicast or zero address; a source MAC is a sender's unicast address");
        }
        match (action, given.is_empty()) {
            (MacaddrAction::Flush, false) => bail!("macaddr flush takes no MAC addresses"),
            (MacaddrAction::Add | MacaddrAction::Del, true) => {
                bail!("macaddr {action:?} needs at least one MAC address")
            }
            _ => {}
        }
        let (port, label) = (ep.port, ep.label());
        let mut list = parse_macs(&ep.st.source_macs)?;
        match action {
            MacaddrAction::Add => {
                for m in given {
                    if !list.contains(&m) {
                        list.push(m);
                    }
                }
            }
            MacaddrAction::Del => {
                for m in &given {
                    if !list.contains(m) {
                        bail!("{m} is not in the source MAC list of {label}");
                    }
                }
                list.retain(|m| !given.contains(m));
            }
            MacaddrAction::Set => {
                // Each MAC once, in the order given (`set A B A` is `set A B`).
                list.clear();
                for m in given {
                    if !list.contains(&m) {
                        list.push(m);
                    }
                }
            }
            MacaddrAction::Flush => list.clear(),
        }
        // The new list is saved before the datapath gets it: a list that cannot be saved changes
        // nothing, and what is saved is what the next start applies.
        let (strings, host) = (list.iter().map(MacAddr::to_string).collect::<Vec<_>>(), ep.st.host.clone());
        self.persist_with(|s| {
            let ep = s.networks.iter_mut().filter(|n| n.name == network).flat_map(|n| &mut n.endpoints);
            for e in ep.filter(|e| e.host == host) {
                e.source_macs = strings.clone();
            }
        })
        .context("the list is unchanged: the state file could not be updated")?;
        let dp = self.domains[&dkey].dp;
        self.dp().set_sources(dp, port, &list)?;
        let net = self.nets.get_mut(network).expect("checked above");
        let listed = net.endpoints.source_macs_mut(id).expect("found above");
        *listed = list.iter().map(MacAddr::to_string).collect();
        Ok(SourceMacs { network: network.to_string(), endpoint: label, source_macs: listed.clone() })
    }
}

pub(super) fn parse_macs(macs: &[String]) -> Result<Vec<MacAddr>> {
    macs.iter().map(|m| m.parse::<MacAddr>().map_err(|e| anyhow!(e))).collect()
}

/// The link and VLAN of `-o parent=NAME`: an interface of that name (a real VLAN sub-interface
/// included) is a plain parent; otherwise `base.VID` is VLAN VID on `base`.
pub(super) async fn resolve_parent(h: Handle, pname: &str) -> Result<(String, u16)> {
    if netlink::link_by_name(&h, pname).await?.is_some() {
        return Ok((pname.to_string(), 0));
    }
    match netopts::split_vlan(pname).map_err(|e| anyhow!(e))? {
        None => bail!("-o parent interface was not found on the host: {pname}"),
        Some((base, vid)) => {
            if netlink::link_by_name(&h, base).await?.is_none() {
                bail!("-o parent interface was not found on the host: {base} (VLAN {vid} of -o parent={pname})");
            }
            Ok((base.to_string(), vid))
        }
    }
}
