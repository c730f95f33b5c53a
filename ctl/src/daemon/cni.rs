//! The daemon's half of the CNI plugin (`xmacvlan-cni`): the plugin runs the IPAM plugin and
//! speaks the CNI protocol; the daemon owns networks, links and the datapath, as for the CLI.
//!
//! A CNI network is a daemon network named after the configuration's `name`, made by the first
//! ADD from the configuration's master and mode (no IPAM of ours: the addresses are the IPAM
//! plugin's) and removed with its last attachment. An attachment is an endpoint that remembers
//! the runtime's (container ID, ifname).

use std::os::unix::fs::MetadataExt;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use rtnetlink::Handle;
use xmacvlan_datapath::frame::MacAddr;

use super::{open_netns, resolve_parent, Daemon, EpId, Key, Network, Owner};
use crate::api::reply::{CniChecked, CniCollected, CniDeleted, CniReady, Connected};
use crate::api::{Attachment, CniAdd, CniCheck, CniIp, CniNetwork, CniRoute, CodedError, Connect, CreateNetwork};
use crate::ipam::{Assigned, IpamSpec};
use crate::netlink;
use crate::state::EndpointState;

/// CNI error codes (spec "Error codes").
pub const INVALID_CONFIG: u32 = 7;
pub const UNKNOWN_CONTAINER: u32 = 3;
pub const TRY_AGAIN_LATER: u32 = 11;
pub const NOT_AVAILABLE: u32 = 50;
pub const LIMITED_CONNECTIVITY: u32 = 51;

/// What a CNI ADD brings to `Daemon::connect` instead of asking the network's IPAM.
pub(super) struct CniParts {
    pub attachment: Attachment,
    pub addrs: Vec<Assigned>,
    pub routes: Vec<CniRoute>,
}

/// An error with the CNI error code the plugin answers with.
pub(super) fn coded(code: u32, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CodedError::new(code, msg))
}

impl Daemon {
    pub(super) async fn cni_add(&mut self, a: CniAdd) -> Result<Connected> {
        if a.attachment.container_id.is_empty() {
            return Err(coded(INVALID_CONFIG, "CNI_CONTAINERID is empty"));
        }
        if self.find_attachment(&a.network.name, &a.attachment).is_some() {
            return Err(coded(
                INVALID_CONFIG,
                format!(
                    "container {} already has interface {} on network '{}'",
                    a.attachment.container_id, a.attachment.ifname, a.network.name
                ),
            ));
        }
        if let Err(e) = open_netns(&a.netns) {
            return Err(coded(UNKNOWN_CONTAINER, format!("{e:#}")));
        }
        let made = !self.nets.contains_key(&a.network.name);
        let master_mtu = self.cni_network(&a.network).await?;
        let name = a.network.name.clone();
        let refused = if a.mtu > master_mtu {
            Some(format!("invalid MTU {}, must be [0, master MTU({master_mtu})]", a.mtu))
        } else {
            a.mac.as_ref().and_then(|m| match m.parse::<MacAddr>() {
                Err(e) => Some(format!("invalid args {m} for MAC addr: {e}")),
                Ok(mac) if mac.is_multicast() || mac.is_zero() => Some(format!(
                    "invalid args {m} for MAC addr: a multicast or zero address; an interface needs a unicast MAC"
                )),
                Ok(_) => None,
            })
        };
        if let Some(msg) = refused {
            if made {
                let _ = self.remove(&name, true).await;
            }
            return Err(coded(INVALID_CONFIG, msg));
        }
        let parts = CniParts {
            attachment: a.attachment.clone(),
            addrs: a.ips.iter().map(|ip| Assigned { ip: ip.address.addr(), prefix: ip.address.prefix_len() }).collect(),
            routes: a.routes.clone(),
        };
        let c = Connect {
            network: name.clone(),
            netns: Some(a.netns.clone()),
            tap: None,
            owner: None,
            ip: None,
            ip6: None,
            mac: a.mac.clone(),
            ifname: a.attachment.ifname.clone(),
            mtu: (a.mtu != 0).then_some(a.mtu),
            spoof_check: Some(a.network.spoof_check),
            ip_guard: Some(a.network.ip_guard),
        };
        match self.connect(c, Some(parts)).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if made {
                    let _ = self.remove(&name, true).await;
                }
                Err(e)
            }
        }
    }

    /// Before a DEL or GC acts: records the links of the attachments it will remove (those `keep`
    /// refuses) and saves the state it will leave, without them (and without the network, when
    /// they are its last: it goes with its last attachment). Nothing is removed unless this
    /// succeeds, so a DEL or GC whose state cannot be saved changes nothing.
    pub(super) fn save_cni_removal(&mut self, network: &str, keep: impl Fn(&Option<Attachment>) -> bool) -> Result<()> {
        let Some(n) = self.nets.get(network) else { return Ok(()) };
        let cni = n.owner == Owner::Cni;
        let hosts: Vec<String> = n
            .endpoints
            .iter()
            .map(|e| &e.st)
            .chain(&n.dormant)
            .filter(|e| !keep(&e.cni))
            .map(|e| e.host.clone())
            .collect();
        self.intents.record(&hosts).context("recording the attachments' links failed")?;
        self.persist_with(|s| {
            for n in s.networks.iter_mut().filter(|n| n.name == network) {
                n.endpoints.retain(|e| keep(&e.cni));
            }
            if cni {
                s.networks.retain(|n| n.name != network || !n.endpoints.is_empty());
            }
        })
        .context("the state file could not be updated")
    }

    /// Removes an attachment; none (or no network) is success, as DEL must be idempotent.
    pub(super) async fn cni_del(&mut self, network: &str, att: &Attachment) -> Result<CniDeleted> {
        let mut removed = None;
        if let Some(id) = self.find_attachment(network, att) {
            removed = Some(self.disconnect_at(network, id).await?);
        } else if let Some(n) = self.nets.get_mut(network) {
            let (gone, kept) = std::mem::take(&mut n.dormant).into_iter().partition(|e| e.cni.as_ref() == Some(att));
            n.dormant = kept;
            let gone: Vec<EndpointState> = gone;
            self.remove_dormant(network, &gone).await;
        }
        self.drop_if_unused(network).await;
        Ok(CniDeleted { network: network.to_string(), removed })
    }

    /// Removes every attachment of `network` that is not in `valid`.
    pub(super) async fn cni_gc(&mut self, network: &str, valid: &[Attachment]) -> Result<CniCollected> {
        let Some(n) = self.nets.get_mut(network) else {
            return Ok(CniCollected { network: network.to_string(), removed: Vec::new() });
        };
        if n.owner != Owner::Cni {
            return Err(coded(
                INVALID_CONFIG,
                format!("network '{network}' was made with `xmacvlan network create`, not by the CNI plugin"),
            ));
        }
        let keep = |a: &Option<Attachment>| a.as_ref().is_some_and(|a| valid.contains(a));
        let (kept, gone): (Vec<EndpointState>, Vec<EndpointState>) =
            std::mem::take(&mut n.dormant).into_iter().partition(|e| keep(&e.cni));
        n.dormant = kept;
        let mut removed: Vec<String> = gone.iter().map(|e| e.ifname.clone()).collect();
        let doomed: Vec<(EpId, String)> =
            n.endpoints.entries().filter(|(_, e)| !keep(&e.st.cni)).map(|(id, e)| (id, e.label())).collect();
        self.remove_dormant(network, &gone).await;
        for (id, label) in doomed {
            self.disconnect_at(network, id).await?;
            removed.push(label);
        }
        self.drop_if_unused(network).await;
        Ok(CniCollected { network: network.to_string(), removed })
    }

    /// Whether an ADD could succeed now: the master is there, up, and the network (if any) is
    /// active. 50 when nothing is attached yet, 51 when attachments lose connectivity.
    pub(super) async fn cni_status(&mut self, network: &str, master: Option<&str>) -> Result<CniReady> {
        let net = self.nets.get(network);
        let code = if net.is_some_and(|n| !n.endpoints.is_empty()) { LIMITED_CONNECTIVITY } else { NOT_AVAILABLE };
        let master = match master {
            Some(m) => m.to_string(),
            None => default_route_link(self.h.clone()).await.map_err(|e| coded(code, format!("{e:#}")))?,
        };
        let (link, vlan) = resolve_parent(self.h.clone(), &master)
            .await
            .map_err(|e| coded(code, format!("master {master}: {e:#}")))?;
        let l = netlink::link_by_name(&self.h, &link)
            .await?
            .ok_or_else(|| coded(code, format!("master {link} was not found on the host")))?;
        if !l.lower_up {
            return Err(coded(code, format!("master {link} has no carrier (it is down or unplugged)")));
        }
        if let Some(n) = net {
            if n.domain.is_none() {
                return Err(coded(code, format!("network '{network}' is {}", n.status)));
            }
        }
        Ok(CniReady { network: network.to_string(), master, vlan, attachments: net.map_or(0, |n| n.endpoints.len()) })
    }

    /// Verifies an attachment against what ADD reported: the network's master and mode, the
    /// interface in the container (name, MAC, up, addresses, routes) and that the datapath
    /// forwards to it (a probe frame injected at the parent's XDP hook arrives in the container).
    pub(super) async fn cni_check(&mut self, c: CniCheck) -> Result<CniChecked> {
        let name = &c.network.name;
        let net =
            self.nets.get(name).ok_or_else(|| coded(UNKNOWN_CONTAINER, format!("network '{name}' does not exist")))?;
        let id = self.find_attachment(name, &c.attachment).ok_or_else(|| {
            coded(
                UNKNOWN_CONTAINER,
                format!(
                    "container {} has no interface {} on network '{name}'",
                    c.attachment.container_id, c.attachment.ifname
                ),
            )
        })?;
        let want_master = match &c.network.master {
            Some(m) => m.clone(),
            None => default_route_link(self.h.clone()).await?,
        };
        if net.parent.as_deref() != Some(want_master.as_str()) || settings_of(net) != settings(&c.network) {
            bail!(
                "network '{name}' is on master {} in {}; the config says master {want_master}, {}",
                net.parent.as_deref().unwrap_or("-"),
                settings_of(net),
                settings(&c.network)
            );
        }
        let dkey = net.domain.ok_or_else(|| anyhow!("network '{name}' is {}", net.status))?;
        let ep = net.endpoints.get(id).expect("found above");
        let (mac, ifname, port) = (ep.mac, ep.st.ifname.clone(), ep.port);
        match ep.netns() {
            Some(ns) if same_file(ns, &c.netns) => {}
            other => {
                bail!("sandbox in prevResult {} doesn't match the attachment's netns {}", c.netns, other.unwrap_or("-"))
            }
        }
        if let Some(m) = &c.mac {
            let want: MacAddr = m.parse().map_err(|e| anyhow!("prevResult MAC {m}: {e}"))?;
            if want != mac {
                bail!("interface {ifname} MAC {want} in prevResult doesn't match the endpoint's {mac}");
            }
        }
        let (ns, _) = open_netns(&c.netns).map_err(|e| coded(UNKNOWN_CONTAINER, format!("{e:#}")))?;
        let (ips, routes) = (c.ips.clone(), c.routes.clone());
        let ifn = ifname.clone();
        netlink::in_netns(
            ns.try_clone()?,
            move |h| async move { check_in_container(&h, &ifn, mac, &ips, &routes).await },
        )
        .await?;
        let dp = self.domains[&dkey].dp;
        let vlan = self.nets[name].vlan;
        self.dp().probe(dp, port, vlan, ns, &ifname).map_err(|e| {
            anyhow!("the datapath does not forward to {ifname} of container {}: {e}", c.attachment.container_id)
        })?;
        Ok(CniChecked { network: name.clone(), ifname, mac: mac.to_string(), forwarding: true })
    }

    /// Makes the network of a CNI configuration on first use, or checks that it is the same one.
    /// Returns its master's MTU.
    async fn cni_network(&mut self, n: &CniNetwork) -> Result<u32> {
        let master = match &n.master {
            Some(m) => m.clone(),
            None => default_route_link(self.h.clone()).await.map_err(|e| coded(INVALID_CONFIG, format!("{e:#}")))?,
        };
        if let Some(net) = self.nets.get(&n.name) {
            if net.owner != Owner::Cni {
                return Err(coded(
                    INVALID_CONFIG,
                    format!(
                        "network '{}' exists and was made with `xmacvlan network create`; give the CNI network a name of its own",
                        n.name
                    ),
                ));
            }
            if net.parent.as_deref() != Some(master.as_str()) || settings_of(net) != settings(n) {
                return Err(coded(
                    INVALID_CONFIG,
                    format!(
                        "CNI network '{}' is on master {} in {} (made by an earlier ADD); this config says master {master}, {}: the attachments of a network share its master and mode",
                        n.name,
                        net.parent.as_deref().unwrap_or("-"),
                        settings_of(net),
                        settings(n)
                    ),
                ));
            }
            let dkey =
                net.domain.ok_or_else(|| coded(TRY_AGAIN_LATER, format!("network '{}' is {}", n.name, net.status)))?;
            return Ok(self.domains[&dkey].link.mtu);
        }
        let mut options = vec![("parent".into(), master)];
        if n.driver == "ipvlan" {
            options.push(("ipvlan_mode".into(), n.mode.clone()));
            options.extend(n.ipvlan_flag.iter().map(|f| ("ipvlan_flag".to_string(), f.clone())));
        } else {
            options.push(("macvlan_mode".into(), n.mode.clone()));
        }
        options.push(("spoof_check".into(), if n.spoof_check { "on" } else { "off" }.into()));
        options.push(("ip_guard".into(), if n.ip_guard { "on" } else { "off" }.into()));
        let c = CreateNetwork {
            name: n.name.clone(),
            driver: n.driver.clone(),
            ipam: IpamSpec::default(),
            internal: false,
            options,
        };
        self.create_network(c, Owner::Cni).await.map_err(|e| coded(INVALID_CONFIG, format!("{e:#}")))?;
        let net = &self.nets[&n.name];
        Ok(self.domains[&net.domain.expect("just made")].link.mtu)
    }

    fn find_attachment(&self, network: &str, att: &Attachment) -> Option<EpId> {
        self.nets.get(network)?.endpoints.find(&Key::Attachment(att.clone()))
    }

    /// A CNI network goes with its last attachment.
    pub(super) async fn drop_if_unused(&mut self, network: &str) {
        if self
            .nets
            .get(network)
            .is_some_and(|n| n.owner == Owner::Cni && n.endpoints.is_empty() && n.dormant.is_empty())
        {
            if let Err(e) = self.remove(network, true).await {
                eprintln!("xmacvlan daemon: removing the unused CNI network '{network}': {e:#}");
            }
        }
    }
}

/// What a CNI configuration says of its network besides the master: "mode bridge" (macvlan),
/// "ipvlan mode l3 (private)".
fn settings(n: &CniNetwork) -> String {
    match n.driver.as_str() {
        "ipvlan" => format!("ipvlan mode {} ({})", n.mode, n.ipvlan_flag.as_deref().unwrap_or("bridge")),
        _ => format!("mode {}", n.mode),
    }
}

/// The same of a network of the registry.
fn settings_of(net: &Network) -> String {
    match net.opts.ipvlan {
        Some(i) => format!("ipvlan mode {} ({})", i.mode, i.flag),
        None => format!("mode {}", net.mode),
    }
}

/// The interface of the default route (IPv4 first), the reference plugin's master when the
/// configuration names none.
async fn default_route_link(h: Handle) -> Result<String> {
    let routes = netlink::routes(&h).await?;
    let oif = routes
        .iter()
        .filter(|r| r.dst.prefix_len() == 0)
        .min_by_key(|r| r.dst.addr().is_ipv6())
        .and_then(|r| r.oif)
        .ok_or_else(|| anyhow!("no master given and no default route to take it from"))?;
    let link = netlink::link_by_index(&h, oif)
        .await?
        .ok_or_else(|| anyhow!("the default route's interface #{oif} vanished"))?;
    Ok(link.name)
}

/// Two paths naming the same file (a netns given as /run/netns/x or /var/run/netns/x).
fn same_file(a: &str, b: &str) -> bool {
    a == b
        || match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
            _ => false,
        }
}

/// CHECK inside the container: the link, its MAC and state, every address and route of
/// prevResult.
async fn check_in_container(h: &Handle, ifname: &str, mac: MacAddr, ips: &[CniIp], routes: &[CniRoute]) -> Result<()> {
    let l = netlink::link_by_name(h, ifname).await?.ok_or_else(|| anyhow!("container interface {ifname} not found"))?;
    if l.mac != Some(mac) {
        bail!("interface {ifname} has MAC {}, the endpoint {mac}", l.mac.map_or("none".into(), |m| m.to_string()));
    }
    if !l.up {
        bail!("interface {ifname} is down");
    }
    let have = netlink::addrs(h, l.index).await?;
    for ip in ips {
        if !have.contains(&ip.address) {
            bail!("interface {ifname} lacks address {} (it has: {})", ip.address, list(&have));
        }
    }
    let table = netlink::routes(h).await?;
    for r in routes {
        if !table.iter().any(|t| t.dst == r.dst && (r.gw.is_none() || t.gw == r.gw) && t.oif == Some(l.index)) {
            let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            bail!("route {}{via} dev {ifname} is missing in the container", r.dst);
        }
    }
    Ok(())
}

fn list(v: &[IpNet]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
