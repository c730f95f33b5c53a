//! What an ipvlan endpoint needs beyond a macvlan one (drivers/net/ipvlan/ipvlan_main.c): the
//! parent's MAC (internal network: the anchor's), a `dev_id` unique on the parent link that makes
//! its IPv6 link-local address its own (every endpoint shares the MAC, so EUI-64 alone would give
//! them all the parent's), and in the routed modes (l3, l3s) a NOARP interface whose default
//! routes go out of it without a gateway, as Docker's ipvlan L3 sets them. The rules deciding
//! whether an endpoint may be made are in `rules`; this module gathers their facts and sets the
//! container side up.

use std::net::{IpAddr, Ipv6Addr};

use anyhow::{anyhow, Result};
use rtnetlink::Handle;
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::ipvlan::Ipvlan;

use super::endpoints::Key;
use super::{rules, Daemon};
use crate::api::CniRoute;
use crate::ipam::Assigned;
use crate::netlink;

/// An ipvlan endpoint's port settings and its dev_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IpvlanPlan {
    pub(super) port: Ipvlan,
    pub(super) dev_id: u16,
}

impl IpvlanPlan {
    /// Its link-local address, with `mac` (the parent's).
    pub(super) fn link_local(&self, mac: MacAddr) -> Ipv6Addr {
        link_local(mac, self.dev_id)
    }
}

/// The link-local address the kernel gives an ipvlan slave (addrconf_ifid_eui48): fe80::/64 with
/// the MAC's EUI-64 interface identifier, where a non-zero `dev_id` takes the place of ff:fe and
/// the universal/local bit is left as it is ("the interface identifier has local scope").
pub(super) fn link_local(mac: MacAddr, dev_id: u16) -> Ipv6Addr {
    let m = mac.0;
    let [hi, lo] = dev_id.to_be_bytes();
    let eui = if dev_id == 0 {
        [m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
    } else {
        [m[0], m[1], m[2], hi, lo, m[3], m[4], m[5]]
    };
    let mut b = [0u8; 16];
    b[..2].copy_from_slice(&[0xfe, 0x80]);
    b[8..].copy_from_slice(&eui);
    Ipv6Addr::from(b)
}

/// The routes of an endpoint of a network whose default routes are `routes` (via its gateways):
/// in a routed mode they leave the interface without a gateway (it resolves no neighbours; the
/// host routes what it sends).
pub(super) fn routes(ipvlan: Option<Ipvlan>, routes: Vec<CniRoute>) -> Vec<CniRoute> {
    match ipvlan {
        Some(i) if i.mode.routed() => routes.into_iter().map(|r| CniRoute { gw: None, ..r }).collect(),
        _ => routes,
    }
}

/// Sets the container interface `index` (`ifname`, down, in the calling thread's namespace) up as
/// an ipvlan endpoint: NOARP in a routed mode; no kernel-made IPv6 address, and the link-local of
/// its dev_id instead (where it has IPv6).
pub(super) async fn configure(h: &Handle, index: u32, ifname: &str, plan: IpvlanPlan, mac: MacAddr) -> Result<()> {
    if plan.port.mode.routed() {
        netlink::set_arp(h, index, false).await?;
    }
    if netlink::no_addr_gen(ifname)? {
        netlink::add_addr(h, index, IpAddr::V6(plan.link_local(mac)), 64).await?;
    }
    Ok(())
}

impl Daemon {
    /// A new endpoint of ipvlan `port` on forwarding domain `dkey`, VLAN `vlan`, with `addrs`: its
    /// addresses are no other endpoint's there, and it gets the lowest free dev_id.
    pub(super) fn ipvlan_endpoint(&self, port: Ipvlan, dkey: u32, vlan: u16, addrs: &[Assigned]) -> Result<IpvlanPlan> {
        self.ipvlan_addrs_free(dkey, vlan, &addrs.iter().map(|a| a.ip).collect::<Vec<_>>(), None)?;
        Ok(IpvlanPlan { port, dev_id: self.ipvlan_dev_id(dkey)? })
    }

    /// The dev_id of a new ipvlan endpoint on forwarding domain `dkey`'s link: the lowest free one
    /// among the endpoints of every network there.
    pub(super) fn ipvlan_dev_id(&self, dkey: u32) -> Result<u16> {
        let used = self
            .nets
            .values()
            .filter(|n| n.domain == Some(dkey))
            .flat_map(|n| n.endpoints.iter())
            .filter_map(|e| e.st.ipvlan_id);
        rules::ipvlan_dev_id(&self.domains[&dkey].link.name, used)
    }

    /// No address of `addrs` is another endpoint's on the ipvlan port (`dkey`, `vlan`), whatever
    /// its network; Docker's endpoints created and not joined yet count too, except `docker`
    /// (the one asking again).
    pub(super) fn ipvlan_addrs_free(&self, dkey: u32, vlan: u16, addrs: &[IpAddr], docker: Option<&str>) -> Result<()> {
        let port = self.nets.values().filter(|n| n.domain == Some(dkey) && n.vlan == vlan);
        for &ip in addrs {
            let used_by = port.clone().find_map(|n| {
                let joined = n.endpoints.find(&Key::Addr(ip)).and_then(|id| n.endpoints.get(id)).map(|e| e.label());
                let reserved = || {
                    let mut others = n.reserved.iter().filter(|(id, _)| Some(id.as_str()) != docker);
                    others
                        .find(|(_, r)| r.addrs.iter().any(|a| a.ip == ip))
                        .map(|(id, _)| format!("Docker endpoint {id}"))
                };
                joined.or_else(reserved).map(|e| (e, n.name.as_str()))
            });
            let dom = &self.domains[&dkey];
            let parent = match vlan {
                0 => dom.link.name.clone(),
                v => format!("{}.{v}", dom.link.name),
            };
            rules::ipvlan_addr_free(ip, &parent, used_by)?;
        }
        Ok(())
    }

    /// The MAC of an ipvlan endpoint on forwarding domain `dkey`: its link's.
    pub(super) fn ipvlan_mac(&self, dkey: u32) -> Result<MacAddr> {
        let link = &self.domains[&dkey].link;
        link.mac.ok_or_else(|| anyhow!("{} has no MAC for its ipvlan endpoints", link.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmacvlan_datapath::ipvlan::{IpvlanFlag, IpvlanMode};

    #[test]
    fn link_locals_are_the_kernels_with_the_dev_id_in_place_of_fffe() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        // dev_id 0: plain EUI-64, U/L bit flipped (what the parent itself has).
        assert_eq!(link_local(mac, 0), "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap());
        assert_eq!(link_local(mac, 1), "fe80::5254:0:112:3456".parse::<Ipv6Addr>().unwrap());
        assert_eq!(link_local(mac, 0x1234), "fe80::5254:12:3412:3456".parse::<Ipv6Addr>().unwrap());
        assert_eq!(link_local(mac, 0xfffd), "fe80::5254:ff:fd12:3456".parse::<Ipv6Addr>().unwrap());
        let all: std::collections::HashSet<_> = (0..=0xfffd).map(|id| link_local(mac, id)).collect();
        assert_eq!(all.len(), 0xfffe, "one per dev_id, and none is the parent's");
        let plan = IpvlanPlan { port: Ipvlan::default(), dev_id: 1 };
        assert_eq!(plan.link_local(mac), link_local(mac, 1));
    }

    #[test]
    fn routed_modes_route_out_of_the_interface_without_a_gateway() {
        let gw = |g: &str| CniRoute { dst: "0.0.0.0/0".parse().unwrap(), gw: Some(g.parse().unwrap()) };
        let given =
            vec![gw("198.18.0.1"), CniRoute { dst: "::/0".parse().unwrap(), gw: Some("2001:2::1".parse().unwrap()) }];
        assert_eq!(routes(None, given.clone()), given, "macvlan");
        assert_eq!(routes(Some(Ipvlan::default()), given.clone()), given, "l2 keeps the gateways");
        for mode in [IpvlanMode::L3, IpvlanMode::L3s] {
            let r = routes(Some(Ipvlan { mode, flag: IpvlanFlag::Private }), given.clone());
            assert_eq!(
                r.iter().map(|r| (r.dst, r.gw)).collect::<Vec<_>>(),
                [("0.0.0.0/0".parse().unwrap(), None), ("::/0".parse().unwrap(), None)]
            );
        }
    }
}
