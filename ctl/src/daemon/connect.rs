//! Endpoints: `connect` (a veth pair or a tap, addresses, routes, the datapath's port) with its
//! rollback, and `disconnect`. An ipvlan endpoint's extras are in `ipvlan`.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::{Mode, PortId};
use xmacvlan_datapath::ipvlan::Ipvlan;
use xmacvlan_datapath::{EndpointSpec, NetId};

use super::cni::{coded, INVALID_CONFIG};
use super::ipvlan::{self, IpvlanPlan};
use super::rules;
use super::view::endpoint_view;
use super::{host_ifname, open_netns, random_mac, valid_ifname, CniParts, Daemon, Endpoint, EpId, EpOpts, Key, Owner};
use crate::api::reply::{Connected, Disconnected};
use crate::api::{CniRoute, Connect};
use crate::ipam::{derive_mac, Assigned};
use crate::netlink;
use crate::state::{EndpointKind, EndpointState};

impl Daemon {
    /// Connects an endpoint. `cni`: a CNI attachment with the addresses and routes its IPAM
    /// plugin gave (the network's own IPAM is not asked).
    pub(super) async fn connect(&mut self, c: Connect, cni: Option<CniParts>) -> Result<Connected> {
        // A request the rules refuse is an invalid value (CNI code 7), whoever sent it.
        let Checked { dkey, dp, target, mtu, requested_mac, passthru, parent_mac, ipvlan } =
            self.check_connect(&c, cni.is_some()).await.map_err(|e| coded(INVALID_CONFIG, format!("{e:#}")))?;
        let o = self.nets[&c.network].ep_opts().with_guard(c.spoof_check, c.ip_guard);
        let net = self.nets.get_mut(&c.network).expect("checked above");
        let (addrs, routes) = match &cni {
            Some(p) => (p.addrs.clone(), p.routes.clone()),
            None => {
                let addrs = net.ipam.allocate(c.ip.as_deref(), c.ip6.as_deref()).map_err(|e| anyhow!(e))?;
                (addrs, ipvlan::routes(o.ipvlan, default_routes(&net.ipam.default_gateways())))
            }
        };
        let ipvlan = match ipvlan.map(|port| self.ipvlan_endpoint(port, dkey, o.vlan, &addrs)).transpose() {
            Ok(i) => i,
            Err(e) => {
                self.nets.get_mut(&c.network).expect("exists").ipam.release(&addrs);
                return Err(coded(INVALID_CONFIG, format!("{e:#}")));
            }
        };
        let mac = match (passthru, requested_mac) {
            _ if ipvlan.is_some() => parent_mac.expect("checked with the rules"),
            (_, Some(m)) => m,
            (true, None) => parent_mac.expect("a parent link has a MAC"),
            // CNI: random, as the kernel gives a macvlan child (a MAC derived from an address
            // another node's host-local may also hand out would clash on the wire).
            (false, None) if cni.is_some() => random_mac(),
            (false, None) => derive_mac(&addrs).map_or_else(random_mac, MacAddr),
        };
        // An ipvlan endpoint has its parent's MAC, shared by every endpoint of the port.
        let mac_free = if ipvlan.is_some() { Ok(()) } else { self.check_mac(mac, dkey, o.vlan, passthru) };
        if let Err(e) = mac_free {
            self.nets.get_mut(&c.network).expect("exists").ipam.release(&addrs);
            return Err(coded(INVALID_CONFIG, format!("{e:#}")));
        }
        if passthru {
            if let Err(e) = self.take_parent(&c.network, dkey, mac).await {
                self.nets.get_mut(&c.network).expect("exists").ipam.release(&addrs);
                return Err(e);
            }
        }
        let net_id = self.nets[&c.network].id;
        let plan = Plan { dp, opts: o, mac, mtu, create: true, addrs: addrs.iter().map(|a| a.ip).collect(), ipvlan };
        let host = match &target {
            Target::Veth { ns_id, .. } => host_ifname(net_id, *ns_id),
            Target::Tap { name, .. } => name.clone(),
        };
        // Recorded before it is made: a crash from here on leaves a link the next start removes.
        let built = match self.intents.record(std::slice::from_ref(&host)) {
            Err(e) => Err(e.context("the endpoint was not connected: recording the link about to be made")),
            Ok(()) => match &target {
                Target::Veth { ns, netns, .. } => {
                    let veth = Veth {
                        host: &host,
                        ifname: &c.ifname,
                        ns: Some(ns.try_clone()?),
                        netns,
                        addrs: &addrs,
                        routes: &routes,
                    };
                    self.build_veth(plan, veth).await.map(|b| (b, host.clone()))
                }
                Target::Tap { name, owner } => self.build_tap(plan, name, *owner).await.map(|b| (b, name.clone())),
            },
        };
        let net = self.nets.get_mut(&c.network).expect("exists");
        let ((port, host_index), host) = match built {
            Ok(b) => b,
            Err(e) => {
                net.ipam.release(&addrs);
                if passthru {
                    self.give_back_parent(&c.network).await;
                }
                return Err(e);
            }
        };
        let (kind, ifname) = match target {
            Target::Veth { ns_id, netns, .. } => (EndpointKind::Veth { netns, ns_id }, c.ifname.clone()),
            Target::Tap { name, owner } => (EndpointKind::Tap { owner }, name),
        };
        let st = EndpointState {
            kind,
            ifname,
            host,
            mac: mac.to_string(),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
            mtu,
            source_macs: Vec::new(),
            routes: if cni.is_some() { routes } else { Vec::new() },
            cni: cni.map(|p| p.attachment),
            spoof_check: c.spoof_check,
            ip_guard: c.ip_guard,
            ipvlan_id: ipvlan.map(|i| i.dev_id),
        };
        let ep = Endpoint { st, port, host_index, mac, addrs };
        let v = Connected { network: c.network.clone(), endpoint: endpoint_view(&ep.st) };
        net.endpoints.push(ep);
        Ok(v)
    }

    /// Everything about a connect that the rules decide, before anything is taken or made.
    async fn check_connect(&self, c: &Connect, cni: bool) -> Result<Checked> {
        let net = self.net(&c.network)?;
        match (net.owner, cni) {
            (Owner::Cni, false) => bail!(
                "network '{}' belongs to the CNI plugin (addresses come from the runtime's IPAM): attach containers through the runtime",
                c.network
            ),
            (Owner::Docker, _) => bail!(
                "network '{}' belongs to Docker (addresses come from Docker's IPAM): use `docker network connect`",
                c.network
            ),
            _ => {}
        }
        let Some(dkey) = net.domain else { bail!("network '{}' is {}", c.network, net.status) };
        if net.opts.ipvlan.is_some() {
            rules::ipvlan_endpoint(&c.network, c.tap.as_deref(), c.mac.as_deref())?;
        }
        let dom = &self.domains[&dkey];
        let (dp, max_mtu, link_name) = (dom.dp, dom.link.mtu, dom.link.name.clone());
        let target = match (&c.netns, &c.tap) {
            (Some(spec), None) => {
                if c.owner.is_some() {
                    bail!("--owner is for --tap endpoints only");
                }
                let (ns, ns_id) = open_netns(spec)?;
                if let Some(e) = net.endpoints.find(&Key::Netns(ns_id)).and_then(|id| net.endpoints.get(id)) {
                    bail!("namespace '{spec}' is already connected to network '{}' (as {})", c.network, e.st.ifname);
                }
                if !valid_ifname(&c.ifname) {
                    bail!(
                        "--ifname '{}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)",
                        c.ifname
                    );
                }
                Target::Veth { ns, ns_id, netns: spec.clone() }
            }
            (None, Some(tap)) => {
                if !valid_ifname(tap) {
                    bail!("--tap '{tap}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
                }
                if netlink::link_by_name(&self.h, tap).await?.is_some() {
                    bail!("--tap {tap}: an interface of that name exists already");
                }
                Target::Tap { name: tap.clone(), owner: c.owner }
            }
            (Some(_), Some(_)) => bail!("give either a NETNS or --tap NAME, not both"),
            (None, None) => bail!("give the NETNS to connect, or --tap NAME for a VM"),
        };
        let mtu = rules::endpoint_mtu(c.mtu.or(net.opts.mtu), max_mtu, net.internal, &link_name)?;
        // Validate the MAC before taking addresses, so a bad MAC leaves the pools untouched.
        let requested_mac = rules::requested_mac(c.mac.as_deref())?;
        let passthru = net.opts.mode == Mode::Passthru;
        let parent_mac = match net.opts.ipvlan {
            Some(_) => Some(self.ipvlan_mac(dkey)?),
            None => dom.link.mac,
        };
        if passthru {
            // Like the kernel, a passthru endpoint with a MAC of its own changes the parent's; that
            // would pull the parent from under the other networks on it.
            let sharing = self.nets.values().find(|n| n.domain == Some(dkey) && n.name != c.network);
            let existing = net.endpoints.first().map(|e| e.label());
            rules::passthru_endpoint(
                &c.network,
                &link_name,
                existing,
                requested_mac,
                parent_mac,
                sharing.map(|n| n.name.as_str()),
            )?;
        }
        Ok(Checked { dkey, dp, target, mtu, requested_mac, passthru, parent_mac, ipvlan: net.opts.ipvlan })
    }

    /// Creates (or, `create` false, adopts) an endpoint's veth pair, attaches the datapath and
    /// configures the container side; undoes what it did on failure.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn build_veth(&mut self, plan: Plan, v: Veth<'_>) -> Result<(PortId, u32)> {
        let Plan { dp, opts: o, mac, mtu, create, addrs: mut guard_addrs, ipvlan } = plan;
        guard_addrs.extend(ipvlan.map(|i| IpAddr::V6(i.link_local(mac))));
        let (addrs, routes) = (v.addrs, v.routes);
        let workers = self.dp().workers() as u32;
        let host = v.host.to_string();
        if create {
            let ns = v.ns.as_ref().ok_or_else(|| anyhow!("{host}: no namespace to make its peer in"))?;
            netlink::create_veth(&self.h, &host, v.ifname, mac, mtu, workers, ns).await?;
        }
        let link = netlink::link_by_name(&self.h, &host)
            .await?
            .ok_or_else(|| anyhow!("veth {host} vanished right after creation"))?;
        let mut port = None;
        let steps = async {
            netlink::disable_ipv6(&host)?;
            // NAPI on the container end (GRO on, for created and adopted endpoints alike), TSO off
            // on ours: the XDP fast path redirects into the veth, which the container end only
            // accepts with NAPI, and what we transmit to it (the workers' copies, the tc flood's
            // clones) then queues on that end's own ring instead of the CPU's shared backlog of
            // 1000 frames, which a broadcast to more endpoints than that overflowed.
            netlink::disable_tso(&host)?;
            let fast = match &v.ns {
                Some(ns) => {
                    let ifname = v.ifname.to_string();
                    match netlink::in_netns(ns.try_clone()?, move |_| async move { netlink::enable_gro(&ifname) }).await
                    {
                        Ok(()) => true,
                        Err(e) => {
                            eprintln!(
                                "xmacvlan: {}: NAPI (GRO) could not be turned on, no XDP fast path: {e:#}",
                                v.ifname
                            );
                            false
                        }
                    }
                }
                // Turned on when it was made; a device keeps it across namespaces.
                None => true,
            };
            // Our program first (XDP, or tc for the tc fast path), then up: an adopted link (down
            // since a clean stop) never passes a frame to the host stack.
            let spec = EndpointSpec {
                ifindex: link.index,
                name: host.clone(),
                mac,
                mtu,
                vlan: o.vlan,
                up: false,
                queues: workers,
                veth: true,
                fast,
                mode: o.mode,
                nodst: o.nodst,
                keep_pcp: o.keep_pcp,
                guard: o.guard,
                ipvlan: ipvlan.map(|i| i.port),
                addrs: guard_addrs.clone(),
            };
            let id = self.dp().add_endpoint(dp, &spec).with_context(|| format!("attaching the datapath to {host}"))?;
            port = Some(id);
            netlink::set_up(&self.h, link.index).await?;
            if create {
                let (ifname, addrs, routes) = (v.ifname.to_string(), addrs.to_vec(), routes.to_vec());
                let offloads = self.dp().keeps_offloads(dp, id);
                let ns = v.ns.as_ref().expect("checked when the pair was made").try_clone()?;
                netlink::in_netns(ns, move |h| async move {
                    let l = netlink::link_by_name(&h, &ifname)
                        .await?
                        .ok_or_else(|| anyhow!("{ifname} is missing in the namespace"))?;
                    if !offloads {
                        netlink::disable_tx_checksum(&ifname)?;
                    }
                    if let Some(i) = ipvlan {
                        ipvlan::configure(&h, l.index, &ifname, i, mac).await?;
                    }
                    for a in &addrs {
                        netlink::add_addr(&h, l.index, a.ip, a.prefix).await?;
                    }
                    netlink::set_up(&h, l.index).await?;
                    if let Some(lo) = netlink::link_by_name(&h, "lo").await? {
                        netlink::set_up(&h, lo.index).await?;
                    }
                    for r in routes.iter().filter(|r| addrs.iter().any(|a| a.ip.is_ipv6() == r.dst.addr().is_ipv6())) {
                        netlink::add_route(&h, r.dst, r.gw, l.index).await?;
                    }
                    Ok(())
                })
                .await
                .with_context(|| format!("configuring {} in namespace '{}'", v.ifname, v.netns))?;
            }
            anyhow::Ok(())
        }
        .await;
        self.finish_endpoint(dp, port, steps, link.index, create).await
    }

    /// Creates (or adopts) a persistent tap for a VM and attaches the datapath to it. Its carrier
    /// is on while a VM has it open; until then frames for it count as `dst_down`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn build_tap(&mut self, plan: Plan, name: &str, owner: Option<u32>) -> Result<(PortId, u32)> {
        let Plan { dp, opts: o, mac, mtu, create, addrs: guard_addrs, ipvlan: _ } = plan;
        if create {
            netlink::create_tap(name, owner)?;
        }
        let link = netlink::link_by_name(&self.h, name)
            .await?
            .ok_or_else(|| anyhow!("tap {name} vanished right after creation"))?;
        let mut port = None;
        let steps = async {
            netlink::set_mtu(&self.h, link.index, mtu).await?;
            netlink::disable_ipv6(name)?;
            // A tap has one queue: worker 0 receives from it; every worker transmits to it (datapath::txbatch).
            let spec = EndpointSpec {
                ifindex: link.index,
                name: name.to_string(),
                mac,
                mtu,
                vlan: o.vlan,
                up: false,
                queues: 1,
                veth: false,
                fast: false,
                mode: o.mode,
                nodst: o.nodst,
                keep_pcp: o.keep_pcp,
                guard: o.guard,
                // Refused on an ipvlan network (rules::ipvlan_endpoint): a VM has a MAC of its own.
                ipvlan: None,
                addrs: guard_addrs.clone(),
            };
            port =
                Some(self.dp().add_endpoint(dp, &spec).with_context(|| format!("attaching the datapath to {name}"))?);
            netlink::set_up(&self.h, link.index).await?;
            anyhow::Ok(())
        }
        .await;
        self.finish_endpoint(dp, port, steps, link.index, create).await
    }

    /// The end of building an endpoint: on failure undo what was done (the datapath port, and the
    /// link if we created it); on success start from the link's carrier (the link monitor follows
    /// it from here on).
    pub(super) async fn finish_endpoint(
        &mut self,
        dp: NetId,
        port: Option<PortId>,
        steps: Result<()>,
        index: u32,
        create: bool,
    ) -> Result<(PortId, u32)> {
        if let Err(e) = steps {
            let detached = port.and_then(|p| self.dp().detach_endpoint(dp, p));
            if create {
                let _ = netlink::del_link(&self.h, index).await;
            }
            self.dp().close(detached.into_iter().collect());
            return Err(e);
        }
        let port = port.expect("set when steps succeed");
        let up = netlink::link_by_index(&self.h, index).await.ok().flatten().is_some_and(|l| l.lower_up);
        self.dp().set_endpoint_up(dp, port, up);
        Ok((port, index))
    }

    pub(super) async fn disconnect(&mut self, network: &str, endpoint: &str) -> Result<Disconnected> {
        let net = self.nets.get(network).ok_or_else(|| anyhow!("network '{network}' not found"))?;
        let id = net.find_endpoint(endpoint)?;
        self.disconnect_at(network, id).await
    }

    /// Disconnects endpoint `id` of `network` (both exist) saving first, as every removing command
    /// does: its link is recorded, the state without it saved, and only then is it removed. `what`
    /// names the command in the log.
    pub(super) async fn disconnect_saved(&mut self, network: &str, id: EpId, what: &str) -> Result<Disconnected> {
        let host = self.nets[network].endpoints.get(id).expect("the caller found it").st.host.clone();
        self.intents
            .record(std::slice::from_ref(&host))
            .context("the endpoint was not disconnected: recording its link failed")?;
        self.persist_with(|s| {
            for n in s.networks.iter_mut().filter(|n| n.name == network) {
                n.endpoints.retain(|e| e.host != host);
            }
        })
        .context("the endpoint was not disconnected: the state file could not be updated")?;
        let v = self.disconnect_at(network, id).await?;
        self.persist_after(what);
        Ok(v)
    }

    /// Removes endpoint `id` of `network` (both exist).
    pub(super) async fn disconnect_at(&mut self, network: &str, id: EpId) -> Result<Disconnected> {
        let net = &self.nets[network];
        let dp = net.domain.and_then(|k| self.domains.get(&k)).map(|d| d.dp);
        let net = self.nets.get_mut(network).expect("checked above");
        let ep = net.endpoints.remove(id).expect("the caller found it");
        net.ipam.release(&ep.addrs);
        let detached = dp.and_then(|dp| self.dp().detach_endpoint(dp, ep.port));
        self.give_back_parent(network).await;
        // Deleting the link first unbinds the endpoint's sockets on the way, so closing them
        // afterwards does not wait for an RCU grace period of its own.
        let deleted = netlink::del_link(&self.h, ep.host_index).await;
        self.dp().close(detached.into_iter().collect());
        deleted?;
        Ok(Disconnected { network: network.to_string(), endpoint: ep.label(), removed: ep.st.host.clone() })
    }
}

/// A connect the rules allow: where, what, with which MTU and MAC.
struct Checked {
    dkey: u32,
    dp: NetId,
    target: Target,
    mtu: u32,
    requested_mac: Option<MacAddr>,
    passthru: bool,
    /// The parent's MAC (an ipvlan network's: its endpoints', checked present).
    parent_mac: Option<MacAddr>,
    ipvlan: Option<Ipvlan>,
}

/// Where a new endpoint goes.
pub(super) enum Target {
    Veth { ns: File, ns_id: (u64, u64), netns: String },
    Tap { name: String, owner: Option<u32> },
}

/// What an endpoint is to become, whatever its kind: in which forwarding domain, with its network's
/// options, its MAC and MTU, and whether its links are created (connect) or adopted (restore).
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) dp: NetId,
    pub(super) opts: EpOpts,
    pub(super) mac: MacAddr,
    pub(super) mtu: u32,
    pub(super) create: bool,
    /// The endpoint's addresses: what its IP guard lets it send from.
    pub(super) addrs: Vec<IpAddr>,
    /// An ipvlan endpoint: its port and dev_id (its link-local address joins `addrs`).
    pub(super) ipvlan: Option<IpvlanPlan>,
}

/// The veth pair of an endpoint: `host` here, `ifname` inside `ns`, with the addresses and routes
/// its container end gets.
pub(super) struct Veth<'a> {
    pub(super) host: &'a str,
    pub(super) ifname: &'a str,
    /// The namespace of the container end; None when it is not known (a Docker endpoint adopted
    /// at start: Docker moved it into a container), and it was configured when it was made.
    pub(super) ns: Option<File>,
    pub(super) netns: &'a str,
    pub(super) addrs: &'a [Assigned],
    pub(super) routes: &'a [CniRoute],
}

/// The default routes via the network's gateways (one per family).
pub(super) fn default_routes(gateways: &[IpAddr]) -> Vec<CniRoute> {
    gateways
        .iter()
        .map(|&g| {
            let any = if g.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
            CniRoute { dst: IpNet::new(any, 0).expect("prefix 0 is valid"), gw: Some(g) }
        })
        .collect()
}
