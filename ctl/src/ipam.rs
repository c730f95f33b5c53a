//! Address management of one network, as `docker network create` configures it: several IPv4 and
//! IPv6 subnets, one gateway each, an optional allocation sub-range each, and reserved auxiliary
//! addresses. All address math is ipnet's.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4AddrRange, Ipv6AddrRange};
use serde::{Deserialize, Serialize};

/// What the user asked for, as given on the command line (and as kept in the state file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamSpec {
    pub subnets: Vec<String>,
    pub gateways: Vec<String>,
    pub ip_ranges: Vec<String>,
    /// `name=IP`, as given to `--aux-address`.
    pub aux_addresses: Vec<String>,
    pub ipv6: bool,
}

/// One subnet with its gateway, allocation range, reserved and used addresses.
#[derive(Debug, Clone)]
pub struct Pool {
    pub subnet: IpNet,
    pub gateway: Option<IpAddr>,
    pub range: Option<IpNet>,
    pub aux: Vec<(String, IpAddr)>,
    used: BTreeSet<IpAddr>,
}

/// A network's pools, IPv4 ones first, each family in the order given.
#[derive(Debug, Clone, Default)]
pub struct Ipam {
    pub pools: Vec<Pool>,
    pub ipv6: bool,
}

/// An address with the prefix length of its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Assigned {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Assigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

impl Pool {
    /// Whether `ip` is a host address of the subnet: not IPv4's network or broadcast address, not
    /// IPv6's subnet-router anycast address.
    fn is_host(&self, ip: IpAddr) -> bool {
        self.subnet.contains(&ip)
            && ip != self.subnet.network()
            && (ip.is_ipv6() || ip != self.subnet.broadcast() || self.subnet.prefix_len() >= 31)
    }

    fn reserved(&self, ip: IpAddr) -> bool {
        Some(ip) == self.gateway || self.aux.iter().any(|(_, a)| *a == ip)
    }

    fn assigned(&self, ip: IpAddr) -> Assigned {
        Assigned { ip, prefix: self.subnet.prefix_len() }
    }

    /// Free addresses of the allocation range in ascending order.
    fn free(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let range = self.range.unwrap_or(self.subnet);
        // Every address of the range: a range's own first and last are fine when they are hosts
        // of the subnet (Docker allocates them too); is_host drops the subnet's special ones.
        let hosts: Box<dyn Iterator<Item = IpAddr>> = match range {
            IpNet::V4(n) => Box::new(Ipv4AddrRange::new(n.network(), n.broadcast()).map(IpAddr::V4)),
            IpNet::V6(n) => Box::new(Ipv6AddrRange::new(n.network(), n.broadcast()).map(IpAddr::V6)),
        };
        hosts.filter(move |ip| self.is_host(*ip) && !self.reserved(*ip) && !self.used.contains(ip))
    }
}

impl Ipam {
    /// Validates a spec the way Docker does: every gateway, range and aux address must fall in
    /// exactly one of the subnets; subnets must not overlap; IPv6 needs `--ipv6`.
    pub fn new(spec: &IpamSpec) -> Result<Self, String> {
        let mut pools: Vec<Pool> = Vec::new();
        for s in &spec.subnets {
            let net: IpNet =
                s.parse().map_err(|_| format!("subnet '{s}' is not a CIDR like 198.18.0.0/24 or 2001:2::/64"))?;
            if net.trunc() != net {
                return Err(format!("subnet '{s}' has host bits set; did you mean {}?", net.trunc()));
            }
            let max = if net.addr().is_ipv4() { 30 } else { 127 };
            if net.prefix_len() > max {
                return Err(format!(
                    "subnet '{s}' is too small: a /{} has no room for hosts (at most /{max})",
                    net.prefix_len()
                ));
            }
            if net.addr().is_ipv6() && !spec.ipv6 {
                return Err(format!("subnet '{s}' is IPv6, but the network is not: add --ipv6"));
            }
            if let Some(p) =
                pools.iter().find(|p| p.subnet.contains(&net.network()) || net.contains(&p.subnet.network()))
            {
                return Err(format!("subnets {} and {net} overlap; each address must belong to one subnet", p.subnet));
            }
            pools.push(Pool { subnet: net, gateway: None, range: None, aux: Vec::new(), used: BTreeSet::new() });
        }
        if spec.ipv6 && !pools.iter().any(|p| p.subnet.addr().is_ipv6()) {
            return Err("--ipv6 needs an IPv6 --subnet (e.g. --subnet 2001:2::/64)".into());
        }
        let owner = |pools: &[Pool], ip: IpAddr, what: &str, value: &str| -> Result<usize, String> {
            pools.iter().position(|p| p.subnet.contains(&ip)).ok_or_else(|| {
                let subnets: Vec<String> = pools.iter().map(|p| p.subnet.to_string()).collect();
                format!("{what} {value} is outside every subnet of the network ({})", subnets.join(", "))
            })
        };
        for g in &spec.gateways {
            let ip: IpAddr = g.parse().map_err(|_| format!("gateway '{g}' is not an IP address"))?;
            let i = owner(&pools, ip, "gateway", g)?;
            let p = &mut pools[i];
            if !p.is_host(ip) {
                return Err(format!("gateway {ip} is not a host address of subnet {}", p.subnet));
            }
            if let Some(other) = p.gateway {
                return Err(format!("subnet {} has two gateways, {other} and {ip}; give one per subnet", p.subnet));
            }
            p.gateway = Some(ip);
        }
        for r in &spec.ip_ranges {
            let range: IpNet = r.parse().map_err(|_| format!("ip-range '{r}' is not a CIDR like 198.18.0.128/25"))?;
            let p = pools
                .iter_mut()
                .find(|p| p.subnet.contains(&range))
                .ok_or_else(|| format!("ip-range {r} is not inside any subnet of the network"))?;
            if p.range.is_some() {
                return Err(format!("subnet {} has two ip-ranges; give one per subnet", p.subnet));
            }
            p.range = Some(range.trunc());
        }
        for a in &spec.aux_addresses {
            let (name, value) = a
                .split_once('=')
                .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("aux-address '{a}' is not of the form name=IP"))?;
            let ip: IpAddr = value.parse().map_err(|_| format!("aux-address '{a}': '{value}' is not an IP address"))?;
            let i = owner(&pools, ip, "aux-address", a)?;
            if let Some((n, _)) = pools.iter().flat_map(|p| &p.aux).find(|(n, x)| n == name || *x == ip) {
                return Err(format!(
                    "aux-address '{a}' duplicates aux-address '{n}' (names and addresses must be unique)"
                ));
            }
            if !pools[i].is_host(ip) {
                return Err(format!("aux-address {ip} is not a host address of subnet {}", pools[i].subnet));
            }
            pools[i].aux.push((name.to_string(), ip));
        }
        pools.sort_by_key(|p| p.subnet.addr().is_ipv6());
        Ok(Ipam { pools, ipv6: spec.ipv6 })
    }

    pub fn subnets(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.pools.iter().map(|p| p.subnet)
    }

    /// The first pair of overlapping subnets between two networks, if any.
    pub fn overlap(&self, other: &Ipam) -> Option<(IpNet, IpNet)> {
        self.subnets()
            .flat_map(|a| other.subnets().map(move |b| (a, b)))
            .find(|(a, b)| a.contains(&b.network()) || b.contains(&a.network()))
    }

    fn has_family(&self, v6: bool) -> bool {
        self.pools.iter().any(|p| p.subnet.addr().is_ipv6() == v6)
    }

    /// One address per family the network has: the requested one (checked), or the lowest free
    /// one of the first pool with room. All or nothing: on error nothing stays taken.
    pub fn allocate(&mut self, ip4: Option<&str>, ip6: Option<&str>) -> Result<Vec<Assigned>, String> {
        let mut out = Vec::new();
        for (v6, requested, flag) in [(false, ip4, "--ip"), (true, ip6, "--ip6")] {
            let r = match requested {
                Some(s) => self.take(v6, s, flag),
                None if self.has_family(v6) => self.next_free(v6),
                None => continue,
            };
            match r {
                Ok(a) => out.push(a),
                Err(e) => {
                    self.release(&out);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn take(&mut self, v6: bool, s: &str, flag: &str) -> Result<Assigned, String> {
        let ip: IpAddr = s.parse().map_err(|_| format!("{flag} '{s}' is not an IP address"))?;
        if ip.is_ipv6() != v6 {
            return Err(format!(
                "{flag} {ip} is an {} address; {flag} takes {}",
                family(&ip),
                if v6 { "IPv6" } else { "IPv4" }
            ));
        }
        if !self.has_family(v6) {
            return Err(if v6 {
                format!("--ip6 {ip}: the network has no IPv6 (create it with --ipv6 and an IPv6 --subnet)")
            } else {
                format!("--ip {ip}: the network has no IPv4 subnet")
            });
        }
        let p = self
            .pools
            .iter_mut()
            .find(|p| p.subnet.contains(&ip))
            .ok_or_else(|| format!("{flag} {ip} is outside every subnet of the network"))?;
        if !p.is_host(ip) {
            return Err(format!("{flag} {ip} is the network or broadcast address of {}", p.subnet));
        }
        if Some(ip) == p.gateway {
            return Err(format!("{flag} {ip} is the gateway of {}", p.subnet));
        }
        if let Some((name, _)) = p.aux.iter().find(|(_, a)| *a == ip) {
            return Err(format!("{flag} {ip} is reserved as aux-address '{name}'"));
        }
        if !p.used.insert(ip) {
            return Err(format!("{flag} {ip} is already in use on this network"));
        }
        Ok(p.assigned(ip))
    }

    fn next_free(&mut self, v6: bool) -> Result<Assigned, String> {
        let mut empty = Vec::new();
        for p in self.pools.iter_mut().filter(|p| p.subnet.addr().is_ipv6() == v6) {
            let next = p.free().next();
            if let Some(ip) = next {
                p.used.insert(ip);
                return Ok(p.assigned(ip));
            }
            empty.push(p.range.unwrap_or(p.subnet).to_string());
        }
        Err(format!(
            "{} pool is empty: every address of {} is in use or reserved",
            if v6 { "ipv6" } else { "ipv4" },
            empty.join(", ")
        ))
    }

    /// Marks addresses as used again (restoring state): they must fit the pools.
    pub fn reserve(&mut self, a: &Assigned) -> Result<(), String> {
        let p = self
            .pools
            .iter_mut()
            .find(|p| p.subnet.contains(&a.ip))
            .ok_or_else(|| format!("address {a} is outside every subnet of the network"))?;
        if !p.used.insert(a.ip) {
            return Err(format!("address {a} is used twice"));
        }
        Ok(())
    }

    pub fn release(&mut self, addrs: &[Assigned]) {
        for a in addrs {
            for p in &mut self.pools {
                p.used.remove(&a.ip);
            }
        }
    }

    /// The default-route gateways, one per family at most (the first pool's that has one).
    pub fn default_gateways(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for g in self.pools.iter().filter_map(|p| p.gateway) {
            if !out.iter().any(|o| o.is_ipv6() == g.is_ipv6()) {
                out.push(g);
            }
        }
        out
    }
}

/// Docker's derived MAC: 02:42 followed by the IPv4 address, or by the last four bytes of the IPv6
/// address on an IPv6-only network.
pub fn derive_mac(addrs: &[Assigned]) -> Option<[u8; 6]> {
    let tail = addrs.iter().find(|a| a.ip.is_ipv4()).or(addrs.first()).map(|a| match a.ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => v6.octets()[12..].try_into().expect("4 bytes"),
    })?;
    Some([0x02, 0x42, tail[0], tail[1], tail[2], tail[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnets: &[&str], gateways: &[&str], ranges: &[&str], aux: &[&str], ipv6: bool) -> IpamSpec {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        IpamSpec { subnets: v(subnets), gateways: v(gateways), ip_ranges: v(ranges), aux_addresses: v(aux), ipv6 }
    }

    fn ips(a: &[Assigned]) -> Vec<String> {
        a.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn allocation_skips_network_gateway_aux_broadcast_and_used() {
        let mut m = Ipam::new(&spec(&["198.18.0.0/29"], &["198.18.0.1"], &[], &["sw=198.18.0.3"], false)).unwrap();
        let got: Vec<String> = (0..4).map(|_| ips(&m.allocate(None, None).unwrap()).join(",")).collect();
        assert_eq!(got, ["198.18.0.2/29", "198.18.0.4/29", "198.18.0.5/29", "198.18.0.6/29"]);
        assert!(m.allocate(None, None).unwrap_err().contains("ipv4 pool is empty"));
        m.release(&[Assigned { ip: "198.18.0.5".parse().unwrap(), prefix: 29 }]);
        assert_eq!(ips(&m.allocate(None, None).unwrap()), ["198.18.0.5/29"]);
    }

    #[test]
    fn dual_stack_range_and_second_subnet() {
        let mut m = Ipam::new(&spec(
            &["2001:2::/64", "198.18.0.0/30", "198.18.1.0/24"],
            &["2001:2::1", "198.18.1.1"],
            &["198.18.1.128/30"],
            &[],
            true,
        ))
        .unwrap();
        // IPv4 pools first, in order given; the /30 has two hosts, then the range of the /24.
        let all: Vec<String> = (0..6).map(|_| ips(&m.allocate(None, None).unwrap()).join(" ")).collect();
        assert_eq!(
            all,
            [
                "198.18.0.1/30 2001:2::2/64",
                "198.18.0.2/30 2001:2::3/64",
                "198.18.1.128/24 2001:2::4/64",
                "198.18.1.129/24 2001:2::5/64",
                "198.18.1.130/24 2001:2::6/64",
                "198.18.1.131/24 2001:2::7/64"
            ]
        );
        let e = m.allocate(None, None).unwrap_err();
        assert!(e.contains("ipv4 pool is empty") && e.contains("198.18.1.128/30"), "{e}");
        // The failed allocation took nothing: the next IPv6 address is still free.
        assert_eq!(ips(&m.allocate(Some("198.18.1.77"), None).unwrap()), ["198.18.1.77/24", "2001:2::8/64"]);
        assert_eq!(
            ips(&m.allocate(Some("198.18.1.78"), Some("2001:2::99")).unwrap()),
            ["198.18.1.78/24", "2001:2::99/64"]
        );
    }

    #[test]
    fn bad_specs_are_named() {
        for (s, needle) in [
            (spec(&["198.18.0.0/33"], &[], &[], &[], false), "198.18.0.0/33"),
            (spec(&["banana"], &[], &[], &[], false), "banana"),
            (spec(&["198.18.0.1/24"], &[], &[], &[], false), "host bits"),
            (spec(&["198.18.0.0/24"], &["198.19.0.1"], &[], &[], false), "gateway 198.19.0.1 is outside"),
            (spec(&["198.18.0.0/24"], &["198.18.0.255"], &[], &[], false), "198.18.0.255"),
            (spec(&["198.18.0.0/24"], &[], &["198.18.1.0/25"], &[], false), "ip-range 198.18.1.0/25"),
            (spec(&["198.18.0.0/24"], &[], &[], &["a=198.19.0.1"], false), "aux-address a=198.19.0.1"),
            (spec(&["198.18.0.0/24"], &[], &[], &["a=198.18.0.9", "b=198.18.0.9"], false), "duplicates"),
            (spec(&["198.18.0.0/24"], &[], &[], &["a=198.18.0.9", "a=198.18.0.8"], false), "duplicates"),
            (spec(&["198.18.0.0/24"], &[], &[], &["nonsense"], false), "nonsense"),
            (spec(&["198.18.0.0/24", "198.18.0.128/25"], &[], &[], &[], false), "overlap"),
            (spec(&["2001:2::/64"], &[], &[], &[], false), "--ipv6"),
            (spec(&["198.18.0.0/24"], &[], &[], &[], true), "IPv6 --subnet"),
        ] {
            let e = Ipam::new(&s).unwrap_err();
            assert!(e.contains(needle), "{e:?} should mention {needle}");
        }
    }

    #[test]
    fn bad_requests_are_named_and_take_nothing() {
        let mut m = Ipam::new(&spec(&["198.18.0.0/24"], &["198.18.0.1"], &[], &["sw=198.18.0.7"], false)).unwrap();
        for (ip4, ip6, needle) in [
            (Some("198.19.0.9"), None, "outside"),
            (Some("198.18.0.1"), None, "gateway"),
            (Some("198.18.0.0"), None, "network or broadcast"),
            (Some("198.18.0.7"), None, "aux-address 'sw'"),
            (Some("2001:2::1"), None, "IPv6 address"),
            (None, Some("2001:2::5"), "no IPv6"),
            (Some("x"), None, "'x'"),
        ] {
            let e = m.allocate(ip4, ip6).unwrap_err();
            assert!(e.contains(needle), "{e:?} should mention {needle}");
        }
        assert_eq!(ips(&m.allocate(Some("198.18.0.9"), None).unwrap()), ["198.18.0.9/24"]);
        assert!(m.allocate(Some("198.18.0.9"), None).unwrap_err().contains("in use"));
        assert_eq!(ips(&m.allocate(None, None).unwrap()), ["198.18.0.2/24"]);
    }

    #[test]
    fn overlap_between_networks() {
        let a = Ipam::new(&spec(&["198.18.0.0/24"], &[], &[], &[], false)).unwrap();
        let b = Ipam::new(&spec(&["198.18.1.0/24", "198.18.0.128/25"], &[], &[], &[], false)).unwrap();
        assert_eq!(a.overlap(&b).map(|(x, y)| format!("{x} {y}")).as_deref(), Some("198.18.0.0/24 198.18.0.128/25"));
    }

    #[test]
    fn docker_style_mac() {
        let a = |s: &str, p| Assigned { ip: s.parse().unwrap(), prefix: p };
        assert_eq!(derive_mac(&[a("2001:2::5", 64), a("198.18.0.11", 24)]), Some([0x02, 0x42, 198, 18, 0, 11]));
        assert_eq!(derive_mac(&[a("2001:2::a:b", 64)]), Some([0x02, 0x42, 0, 0x0a, 0, 0x0b]));
        assert_eq!(derive_mac(&[]), None);
    }
}
