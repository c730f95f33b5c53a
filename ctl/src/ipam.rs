//! Address management for one IPv4 subnet: validation and next-free allocation.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A validated subnet with its gateway and the addresses in use.
#[derive(Debug, Clone)]
pub struct Pool {
    pub subnet: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    used: BTreeSet<Ipv4Addr>,
}

impl Pool {
    /// Parses `--subnet` and `--gateway`, naming the bad value on error.
    pub fn new(subnet: &str, gateway: Option<&str>) -> Result<Self, String> {
        let net: Ipv4Net = subnet.parse().map_err(|_| {
            if subnet.contains(':') {
                format!("subnet '{subnet}': IPv6 subnets are not supported yet; give an IPv4 CIDR like 198.18.0.0/24")
            } else {
                format!("subnet '{subnet}' is not an IPv4 CIDR like 198.18.0.0/24")
            }
        })?;
        if net.prefix_len() > 30 {
            return Err(format!(
                "subnet '{subnet}' is too small: a /{} has no room for hosts (at most /30)",
                net.prefix_len()
            ));
        }
        if net.trunc() != net {
            return Err(format!("subnet '{subnet}' has host bits set; did you mean {}?", net.trunc()));
        }
        let gateway = match gateway {
            None => None,
            Some(g) => {
                let ip: Ipv4Addr = g.parse().map_err(|_| format!("gateway '{g}' is not an IPv4 address"))?;
                if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() {
                    return Err(format!("gateway {ip} is not a host address of subnet {net}"));
                }
                Some(ip)
            }
        };
        Ok(Pool { subnet: net, gateway, used: BTreeSet::new() })
    }

    /// Takes `--ip` when given (checked), else the lowest free host address.
    pub fn allocate(&mut self, requested: Option<&str>) -> Result<Ipv4Addr, String> {
        let ip = match requested {
            Some(s) => {
                let ip: Ipv4Addr = s.parse().map_err(|_| format!("--ip '{s}' is not an IPv4 address"))?;
                if !self.subnet.contains(&ip) {
                    return Err(format!("--ip {ip} is outside subnet {}", self.subnet));
                }
                if ip == self.subnet.network() || ip == self.subnet.broadcast() {
                    return Err(format!("--ip {ip} is the network or broadcast address of {}", self.subnet));
                }
                if Some(ip) == self.gateway {
                    return Err(format!("--ip {ip} is the gateway of {}", self.subnet));
                }
                if self.used.contains(&ip) {
                    return Err(format!("--ip {ip} is already in use on this network"));
                }
                ip
            }
            None => self
                .subnet
                .hosts()
                .find(|ip| Some(*ip) != self.gateway && !self.used.contains(ip))
                .ok_or_else(|| format!("ipv4 pool is empty: every address of {} is in use", self.subnet))?,
        };
        self.used.insert(ip);
        Ok(ip)
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

/// Docker's derived MAC: 02:42 followed by the IPv4 address.
pub fn derive_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_skips_network_gateway_broadcast_and_used() {
        let mut p = Pool::new("198.18.0.0/29", Some("198.18.0.1")).unwrap();
        let got: Vec<_> = (0..5).map(|_| p.allocate(None).unwrap().to_string()).collect();
        assert_eq!(got, ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5", "198.18.0.6"]);
        assert!(p.allocate(None).unwrap_err().contains("pool is empty"));
        p.release("198.18.0.4".parse().unwrap());
        assert_eq!(p.allocate(None).unwrap().to_string(), "198.18.0.4");
    }

    #[test]
    fn bad_values_are_named() {
        for (subnet, gw, needle) in [
            ("198.18.0.0/33", None, "198.18.0.0/33"),
            ("banana", None, "banana"),
            ("198.18.0.1/24", None, "host bits"),
            ("198.18.0.0/24", Some("198.19.0.1"), "198.19.0.1"),
            ("198.18.0.0/24", Some("198.18.0.255"), "198.18.0.255"),
        ] {
            let e = Pool::new(subnet, gw).unwrap_err();
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
        let mut p = Pool::new("198.18.0.0/24", Some("198.18.0.1")).unwrap();
        assert!(p.allocate(Some("198.19.0.9")).unwrap_err().contains("outside"));
        assert!(p.allocate(Some("198.18.0.1")).unwrap_err().contains("gateway"));
        assert!(p.allocate(Some("198.18.0.0")).unwrap_err().contains("network"));
        p.allocate(Some("198.18.0.9")).unwrap();
        assert!(p.allocate(Some("198.18.0.9")).unwrap_err().contains("in use"));
    }

    #[test]
    fn docker_style_mac() {
        assert_eq!(derive_mac("198.18.0.11".parse().unwrap()), [0x02, 0x42, 198, 18, 0, 11]);
    }
}
