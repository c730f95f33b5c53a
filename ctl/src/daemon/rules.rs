//! The registry's rules, pure: what a network or an endpoint may be, given what already exists.
//! No host is asked here (the parent's link, a namespace); the callers in `network` and `connect`
//! gather those facts and apply these rules before any side effect, so a refused request leaves
//! nothing behind. Each rule's error names the value it refuses.

use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::Mode;
use xmacvlan_datapath::ipvlan::Ipvlan;

use crate::api::CreateNetwork;
use crate::ipam::Ipam;
use crate::netopts::{Driver, NetOpts};

/// A network's name, as Docker's (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), at most 64 characters, not taken.
pub fn network_name(name: &str, taken: bool) -> Result<()> {
    let first_ok = name.starts_with(|ch: char| ch.is_ascii_alphanumeric());
    if !first_ok || name.len() > 64 || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch)) {
        bail!(
            "network name '{name}' is invalid: a letter or digit, then letters, digits, '_', '.' or '-' (at most 64)"
        );
    }
    if taken {
        bail!("network name '{name}' is already taken");
    }
    Ok(())
}

/// `-d DRIVER`: macvlan or ipvlan.
pub fn driver(driver: &str) -> Result<Driver> {
    driver.parse().map_err(|e: String| anyhow!(e))
}

/// What `network create` asks for, on its own: a parent or `--internal` (not both), a mode an
/// internal network can have, subnets (a CNI network has none: its IPAM plugin decides).
pub fn network_spec(c: &CreateNetwork, opts: &NetOpts, cni: bool) -> Result<()> {
    if c.internal {
        if let Some(p) = &opts.parent {
            bail!("an --internal network has no parent: drop -o parent={p} or --internal");
        }
    }
    if opts.parent.is_none() && opts.mode != Mode::Bridge {
        bail!(
            "macvlan mode '{}' needs a parent: an internal network (no -o parent) only has bridge mode",
            opts.mode.name()
        );
    }
    if c.ipam.subnets.is_empty() && !cni {
        bail!("--subnet is required (e.g. --subnet 198.18.0.0/24; add --ipv6 --subnet 2001:2::/64 for IPv6)");
    }
    Ok(())
}

/// No subnet of the new network `name` overlaps one of another network (Docker's words).
pub fn no_pool_overlap<'a>(
    name: &str,
    ipam: &Ipam,
    others: impl IntoIterator<Item = (&'a str, &'a Ipam)>,
) -> Result<()> {
    for (other, theirs) in others {
        if let Some((mine, t)) = ipam.overlap(theirs) {
            bail!(
                "Pool overlaps with other one on this address space: subnet {mine} of network '{name}' overlaps subnet {t} of network '{other}'"
            );
        }
    }
    Ok(())
}

/// The networks already on the same parent link and VLAN, by name and mode.
pub struct Sharing<'a> {
    pub name: &'a str,
    pub mode: Mode,
}

/// A network on parent `parent` (as the user wrote it; `link` is its lower link, `vlan` its tag):
/// `vlan_pcp=keep` only on a VLAN, and passthru owns its (link, VLAN) alone, as the kernel allows
/// one child per parent in that mode.
pub fn parent_use(parent: &str, link: &str, vlan: u16, opts: &NetOpts, same_parent: Option<Sharing>) -> Result<()> {
    if opts.keep_pcp && vlan == 0 {
        bail!("-o vlan_pcp=keep is for VLAN parents (e.g. {link}.50); {parent} is untagged");
    }
    if let Some(other) = same_parent {
        if opts.mode == Mode::Passthru {
            bail!(
                "cannot use mode passthru, macvlan network {} is already using parent interface {parent}",
                other.name
            );
        }
        if other.mode == Mode::Passthru {
            bail!("cannot use parent interface {parent}: macvlan network {} uses it in passthru mode", other.name);
        }
    }
    Ok(())
}

/// A network already on the same parent link and VLAN, by name and driver (its ipvlan settings,
/// None for macvlan).
pub struct OnPort<'a> {
    pub name: &'a str,
    pub ipvlan: Option<Ipvlan>,
}

/// A parent (or a VLAN of it) carries macvlan networks or ipvlan networks, never both, as the
/// kernel refuses one kind of child on a device that has the other; its ipvlan networks share one
/// mode and flag, as the children of one kernel ipvlan port do. `ipvlan`: the new network's.
pub fn port_drivers<'a>(
    parent: &str,
    ipvlan: Option<Ipvlan>,
    others: impl IntoIterator<Item = OnPort<'a>>,
) -> Result<()> {
    for other in others {
        match (ipvlan, other.ipvlan) {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                let (mine, theirs) = if ipvlan.is_some() { ("ipvlan", "macvlan") } else { ("macvlan", "ipvlan") };
                bail!(
                    "parent {parent} already carries {theirs} network '{}': a parent (or a VLAN of it) has macvlan or ipvlan networks, not both; put this {mine} network on another parent or VLAN",
                    other.name
                );
            }
            (Some(mine), Some(theirs)) if mine != theirs => bail!(
                "ipvlan network '{}' uses parent {parent} with ipvlan_mode={} ipvlan_flag={}: the ipvlan networks of a parent (or a VLAN of it) share one mode and flag (asked: ipvlan_mode={} ipvlan_flag={})",
                other.name,
                theirs.mode,
                theirs.flag,
                mine.mode,
                mine.flag
            ),
            (Some(_), Some(_)) => {}
        }
    }
    Ok(())
}

/// An ipvlan network in a routed mode (l3, l3s) on parent `parent`: not on a VLAN xmacvlan tags
/// itself (`link`.`vlan`). L3 hands what its endpoints send to the host's routes, out of the
/// host's interface for that VLAN, and such a VLAN has none (this kernel has no 8021q).
pub fn ipvlan_parent(parent: &str, link: &str, vlan: u16, ipvlan: Ipvlan) -> Result<()> {
    if ipvlan.mode.routed() && vlan != 0 {
        bail!(
            "ipvlan_mode={} cannot use the VLAN parent {parent}: L3 routes the endpoints' traffic through the host's interface for VLAN {vlan}, and xmacvlan's VLANs have none (it tags frames itself); use ipvlan_mode=l2, or an untagged parent such as {link}",
            ipvlan.mode
        );
    }
    Ok(())
}

/// An endpoint of ipvlan network `network`: a veth (a tap, `tap`, would be a VM with a MAC of its
/// own), with the parent's MAC (`mac`: the one asked for, refused).
pub fn ipvlan_endpoint(network: &str, tap: Option<&str>, mac: Option<&str>) -> Result<()> {
    if let Some(t) = tap {
        bail!(
            "network '{network}' is an ipvlan network: its endpoints are veths in a namespace, not taps (--tap {t}); a VM needs a MAC of its own, on a macvlan network"
        );
    }
    if let Some(m) = mac {
        bail!("--mac-address {m}: ipvlan endpoints use the parent's MAC (network '{network}' is an ipvlan network)");
    }
    Ok(())
}

/// An address of a new endpoint of an ipvlan port (`port`: its parent as written), which tells
/// its endpoints apart by address: not one another endpoint there has (`used_by`: that endpoint
/// and its network).
pub fn ipvlan_addr_free(ip: IpAddr, port: &str, used_by: Option<(String, &str)>) -> Result<()> {
    if let Some((endpoint, network)) = used_by {
        bail!(
            "address {ip} is already used by the endpoint {endpoint} on network '{network}': the endpoints of ipvlan parent {port} are told apart by address"
        );
    }
    Ok(())
}

/// The most ipvlan endpoints on one parent: the kernel's dev_id range, 1..=0xFFFD.
pub const IPVLAN_DEV_IDS: u16 = 0xFFFD;

/// The `dev_id` of a new ipvlan endpoint on parent link `link` (ipvlan_link_new): the lowest one
/// from 1 that no endpoint there has (`used`). It makes the endpoint's link-local address its own.
pub fn ipvlan_dev_id(link: &str, used: impl IntoIterator<Item = u16>) -> Result<u16> {
    let mut taken: Vec<u16> = used.into_iter().collect();
    taken.sort_unstable();
    taken.dedup();
    let mut id = 1;
    for t in taken {
        if t > id {
            break;
        }
        if t == id {
            id += 1;
        }
    }
    if id > IPVLAN_DEV_IDS {
        bail!("parent {link} has {IPVLAN_DEV_IDS} ipvlan endpoints, as many as the kernel allows on one parent");
    }
    Ok(id)
}

/// An endpoint's MTU: the parent's (`max`) unless asked, and then within 68..=max.
/// `internal`: the limit is the internal network's MTU, else parent `link`'s.
pub fn endpoint_mtu(requested: Option<u32>, max: u32, internal: bool, link: &str) -> Result<u32> {
    match requested {
        None => Ok(max),
        Some(m) if (68..=max).contains(&m) => Ok(m),
        Some(m) if internal => bail!("--mtu {m} is outside 68..={max} (the internal network's MTU)"),
        Some(m) => bail!("--mtu {m} is outside 68..={max} (the parent {link}'s MTU)"),
    }
}

/// `--mac-address`: a unicast, non-zero MAC.
pub fn requested_mac(given: Option<&str>) -> Result<Option<MacAddr>> {
    let Some(s) = given else { return Ok(None) };
    let m: MacAddr = s.parse().map_err(|e| anyhow::anyhow!("--mac-address: {e}"))?;
    if m.is_multicast() || m.is_zero() {
        bail!("--mac-address {m} is a multicast or zero address; endpoints need a unicast MAC");
    }
    Ok(Some(m))
}

/// A passthru network has one endpoint (`existing`: the one it has), and an endpoint MAC other
/// than the parent's would change the parent's, which `sharing` (another network on the parent)
/// also uses.
pub fn passthru_endpoint(
    network: &str,
    link: &str,
    existing: Option<String>,
    mac: Option<MacAddr>,
    parent_mac: Option<MacAddr>,
    sharing: Option<&str>,
) -> Result<()> {
    if let Some(e) = existing {
        bail!(
            "network '{network}' is in passthru mode and already has its endpoint {e}: passthru allows one endpoint per parent ({link})"
        );
    }
    if let (Some(_), Some(other)) = (mac.filter(|m| Some(*m) != parent_mac), sharing) {
        bail!(
            "--mac-address would change the MAC of {link}, which network '{other}' also uses; leave it out to take {link}'s MAC"
        );
    }
    Ok(())
}

/// A MAC is used once per VLAN of an L2 domain (`used_by`: the endpoint and network that have it
/// there), and is never the parent's own, except by a passthru endpoint, which takes it.
pub fn mac_free(
    mac: MacAddr,
    used_by: Option<(String, &str)>,
    parent: Option<(&str, Option<MacAddr>)>,
    passthru: bool,
) -> Result<()> {
    if let Some((endpoint, network)) = used_by {
        bail!("MAC {mac} is already used by the endpoint {endpoint} on network '{network}'");
    }
    if let Some((link, parent_mac)) = parent {
        if !passthru && parent_mac == Some(mac) {
            bail!("MAC {mac} is the parent {link}'s own address");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::IpamSpec;
    use crate::netopts::Guard;
    use xmacvlan_datapath::ipvlan::{IpvlanFlag, IpvlanMode};

    fn create(name: &str, internal: bool, subnets: &[&str]) -> CreateNetwork {
        CreateNetwork {
            name: name.into(),
            driver: "macvlan".into(),
            ipam: IpamSpec { subnets: subnets.iter().map(|s| s.to_string()).collect(), ..IpamSpec::default() },
            internal,
            options: vec![],
        }
    }

    fn opts(parent: Option<&str>, mode: Mode) -> NetOpts {
        NetOpts {
            parent: parent.map(str::to_string),
            mode,
            nodst: false,
            keep_pcp: false,
            ipvlan: None,
            mtu: None,
            guard: Guard::DEFAULT,
        }
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", r.expect_err("refused"))
    }

    #[test]
    fn names_are_checked_and_unique() {
        network_name("lab-net_1.a", false).unwrap();
        assert!(err(network_name("", false)).contains("'' is invalid"));
        assert!(err(network_name("a b", false)).contains("'a b' is invalid"));
        for bad in [".", "..", "-n", "_n", ".hidden"] {
            assert!(err(network_name(bad, false)).contains(&format!("'{bad}' is invalid")), "{bad}");
        }
        network_name("9.n-_", false).expect("a digit first");
        assert!(err(network_name(&"n".repeat(65), false)).contains("is invalid"));
        assert_eq!(err(network_name("taken", true)), "network name 'taken' is already taken");
    }

    #[test]
    fn a_network_is_a_parent_or_internal_and_has_subnets() {
        let c = create("n", false, &["198.18.0.0/24"]);
        network_spec(&c, &opts(Some("eth1"), Mode::Vepa), false).unwrap();
        assert_eq!(driver("macvlan").unwrap(), Driver::Macvlan);
        assert_eq!(driver("ipvlan").unwrap(), Driver::Ipvlan);
        assert!(err(driver("bridge")).contains("driver 'bridge' is not supported: -d macvlan or -d ipvlan"));
        let ipvlan_internal = NetOpts { ipvlan: Some(Ipvlan::default()), ..opts(None, Mode::Bridge) };
        network_spec(&create("n", true, &["198.18.0.0/24"]), &ipvlan_internal, false)
            .expect("an internal ipvlan network");
        let internal = create("n", true, &["198.18.0.0/24"]);
        assert!(err(network_spec(&internal, &opts(Some("eth1"), Mode::Bridge), false)).contains("-o parent=eth1"));
        assert!(
            err(network_spec(&internal, &opts(None, Mode::Private), false)).contains("mode 'private' needs a parent")
        );
        let bare = create("n", false, &[]);
        assert!(err(network_spec(&bare, &opts(Some("eth1"), Mode::Bridge), false)).contains("--subnet is required"));
        network_spec(&bare, &opts(Some("eth1"), Mode::Bridge), true).expect("a CNI network has no subnets");
    }

    #[test]
    fn pools_do_not_overlap() {
        let spec = |s: &str| IpamSpec { subnets: vec![s.into()], ..IpamSpec::default() };
        let a = Ipam::new(&spec("198.18.0.0/24")).unwrap();
        let b = Ipam::new(&spec("198.18.1.0/24")).unwrap();
        let wide = Ipam::new(&spec("198.18.0.0/16")).unwrap();
        no_pool_overlap("a", &a, [("b", &b)]).unwrap();
        let e = err(no_pool_overlap("new", &wide, [("b", &b)]));
        assert!(e.contains("198.18.0.0/16 of network 'new' overlaps subnet 198.18.1.0/24 of network 'b'"), "{e}");
    }

    #[test]
    fn passthru_owns_its_parent_and_pcp_needs_a_vlan() {
        let bridge = opts(Some("eth1"), Mode::Bridge);
        parent_use("eth1", "eth1", 0, &bridge, Some(Sharing { name: "other", mode: Mode::Bridge })).unwrap();
        let pt = opts(Some("eth1"), Mode::Passthru);
        parent_use("eth1", "eth1", 0, &pt, None).unwrap();
        assert!(err(parent_use("eth1", "eth1", 0, &pt, Some(Sharing { name: "o", mode: Mode::Bridge })))
            .contains("cannot use mode passthru, macvlan network o"));
        assert!(err(parent_use("eth1", "eth1", 0, &bridge, Some(Sharing { name: "o", mode: Mode::Passthru })))
            .contains("uses it in passthru mode"));
        let keep = NetOpts { keep_pcp: true, ..opts(Some("eth1"), Mode::Bridge) };
        parent_use("eth1.50", "eth1", 50, &keep, None).unwrap();
        assert!(err(parent_use("eth1", "eth1", 0, &keep, None))
            .contains("vlan_pcp=keep is for VLAN parents (e.g. eth1.50)"));
    }

    #[test]
    fn endpoint_mtu_macs_and_passthru() {
        assert_eq!(endpoint_mtu(None, 1500, false, "eth1").unwrap(), 1500);
        assert_eq!(endpoint_mtu(Some(68), 1500, false, "eth1").unwrap(), 68);
        assert!(err(endpoint_mtu(Some(1501), 1500, false, "eth1")).contains("the parent eth1's MTU"));
        assert!(err(endpoint_mtu(Some(67), 9000, true, "-")).contains("68..=9000 (the internal network's MTU)"));

        assert_eq!(requested_mac(None).unwrap(), None);
        let m = requested_mac(Some("02:42:c6:12:00:11")).unwrap().unwrap();
        assert!(err(requested_mac(Some("01:00:5e:00:00:01"))).contains("multicast or zero"));
        assert!(err(requested_mac(Some("00:00:00:00:00:00"))).contains("multicast or zero"));
        assert!(err(requested_mac(Some("nope"))).starts_with("--mac-address: "));

        let parent: MacAddr = "02:00:c6:12:00:fe".parse().unwrap();
        mac_free(m, None, Some(("eth1", Some(parent))), false).unwrap();
        assert!(err(mac_free(m, Some(("ns1".into(), "n")), None, false))
            .contains("used by the endpoint ns1 on network 'n'"));
        assert!(err(mac_free(parent, None, Some(("eth1", Some(parent))), false)).contains("the parent eth1's own"));
        mac_free(parent, None, Some(("eth1", Some(parent))), true).expect("passthru takes the parent's MAC");

        passthru_endpoint("p", "eth1", None, Some(m), Some(parent), None).unwrap();
        passthru_endpoint("p", "eth1", None, Some(parent), Some(parent), Some("other")).expect("the parent's own MAC");
        assert!(err(passthru_endpoint("p", "eth1", Some("ns1".into()), None, Some(parent), None))
            .contains("already has its endpoint ns1"));
        assert!(err(passthru_endpoint("p", "eth1", None, Some(m), Some(parent), Some("other")))
            .contains("would change the MAC of eth1, which network 'other' also uses"));
    }

    fn iv(mode: IpvlanMode, flag: IpvlanFlag) -> Option<Ipvlan> {
        Some(Ipvlan { mode, flag })
    }

    #[test]
    fn a_parent_carries_macvlan_or_ipvlan_and_one_ipvlan_setting() {
        let l2 = iv(IpvlanMode::L2, IpvlanFlag::Bridge);
        let mac = |name| OnPort { name, ipvlan: None };
        let ip = |name, ipvlan| OnPort { name, ipvlan };
        port_drivers("eth1", None, [mac("m1"), mac("m2")]).unwrap();
        port_drivers("eth1", l2, [ip("i1", l2), ip("i2", l2)]).expect("the same mode and flag");
        port_drivers("eth1", l2, []).unwrap();
        let e = err(port_drivers("eth1.50", l2, [mac("m1")]));
        assert!(e.contains("parent eth1.50 already carries macvlan network 'm1'"), "{e}");
        assert!(e.contains("put this ipvlan network on another parent or VLAN"), "{e}");
        let e = err(port_drivers("eth1", None, [ip("i1", l2)]));
        assert!(e.contains("parent eth1 already carries ipvlan network 'i1'"), "{e}");
        let e = err(port_drivers("eth1", iv(IpvlanMode::L3, IpvlanFlag::Bridge), [ip("i1", l2)]));
        assert!(e.contains("ipvlan network 'i1' uses parent eth1 with ipvlan_mode=l2 ipvlan_flag=bridge"), "{e}");
        assert!(e.contains("(asked: ipvlan_mode=l3 ipvlan_flag=bridge)"), "{e}");
        let e = err(port_drivers("eth1", iv(IpvlanMode::L2, IpvlanFlag::Private), [ip("i1", l2)]));
        assert!(e.contains("ipvlan_flag=bridge: the ipvlan networks of a parent"), "{e}");
    }

    #[test]
    fn routed_ipvlan_is_refused_on_a_vlan_of_ours() {
        for mode in [IpvlanMode::L3, IpvlanMode::L3s] {
            let e = err(ipvlan_parent("eth1.50", "eth1", 50, Ipvlan { mode, flag: IpvlanFlag::Bridge }));
            assert!(e.contains(&format!("ipvlan_mode={mode} cannot use the VLAN parent eth1.50")), "{e}");
            assert!(e.contains("use ipvlan_mode=l2, or an untagged parent such as eth1"), "{e}");
            ipvlan_parent("eth1", "eth1", 0, Ipvlan { mode, flag: IpvlanFlag::Private }).expect("untagged");
        }
        ipvlan_parent("eth1.50", "eth1", 50, Ipvlan::default()).expect("l2 on a VLAN");
    }

    #[test]
    fn ipvlan_endpoints_are_veths_with_the_parents_mac_and_addresses_of_their_own() {
        ipvlan_endpoint("iv", None, None).unwrap();
        let e = err(ipvlan_endpoint("iv", Some("vm0"), None));
        assert!(e.contains("network 'iv' is an ipvlan network: its endpoints are veths"), "{e}");
        assert!(e.contains("(--tap vm0)"), "{e}");
        let e = err(ipvlan_endpoint("iv", None, Some("02:42:c6:12:00:11")));
        assert!(e.contains("--mac-address 02:42:c6:12:00:11: ipvlan endpoints use the parent's MAC"), "{e}");

        let ip: IpAddr = "198.18.0.5".parse().unwrap();
        ipvlan_addr_free(ip, "eth1", None).unwrap();
        let e = err(ipvlan_addr_free(ip, "eth1.50", Some(("ns1 (eth0)".into(), "other"))));
        assert!(e.contains("address 198.18.0.5 is already used by the endpoint ns1 (eth0) on network 'other'"), "{e}");
        assert!(e.contains("ipvlan parent eth1.50"), "{e}");
    }

    #[test]
    fn dev_ids_are_the_lowest_free_from_one() {
        assert_eq!(ipvlan_dev_id("eth1", []).unwrap(), 1);
        assert_eq!(ipvlan_dev_id("eth1", [1, 2, 3]).unwrap(), 4);
        assert_eq!(ipvlan_dev_id("eth1", [3, 1, 1]).unwrap(), 2, "a hole is reused");
        assert_eq!(ipvlan_dev_id("eth1", [2, 3]).unwrap(), 1);
        assert_eq!(ipvlan_dev_id("eth1", 1..=0xFFFC).unwrap(), 0xFFFD);
        let e = err(ipvlan_dev_id("eth1", 1..=0xFFFD));
        assert!(e.contains("parent eth1 has 65533 ipvlan endpoints"), "{e}");
    }
}
