//! The driver options of `network create` (`-o key=value`), checked before anything is set up:
//! `parent` (with Docker's dotted VLAN notation `eth0.50`), `macvlan_mode`, `nodst`, `vlan_pcp`;
//! for `-d ipvlan`, `ipvlan_mode` and `ipvlan_flag` (Docker's ipvlan driver's names) instead of
//! `macvlan_mode` and `nodst`. Each driver refuses the other's keys by name.

use std::fmt;
use std::str::FromStr;

use xmacvlan_datapath::fwd::Mode;
pub use xmacvlan_datapath::guard::Guard;
use xmacvlan_datapath::ipvlan::Ipvlan;

/// `-d DRIVER`: what a network's endpoints are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// Each endpoint has a MAC of its own (drivers/net/macvlan.c).
    #[default]
    Macvlan,
    /// Every endpoint has the parent's MAC and is told apart by its IP addresses
    /// (drivers/net/ipvlan).
    Ipvlan,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Macvlan => "macvlan",
            Driver::Ipvlan => "ipvlan",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Driver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "macvlan" => Ok(Driver::Macvlan),
            "ipvlan" => Ok(Driver::Ipvlan),
            _ => Err(format!("driver '{s}' is not supported: -d macvlan or -d ipvlan")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOpts {
    /// The parent as the user wrote it (`eth0`, `eth0.50`); None for an internal network.
    pub parent: Option<String>,
    /// The macvlan mode (bridge for an ipvlan network, whose endpoints the datapath switches by
    /// `ipvlan` instead).
    pub mode: Mode,
    /// An ipvlan network's mode and flag (`ipvlan_mode`, default l2 as Docker's; `ipvlan_flag`,
    /// default bridge); None for a macvlan network.
    pub ipvlan: Option<Ipvlan>,
    /// Source mode: frames from listed senders go to the copies only (kernel `nodst`).
    pub nodst: bool,
    /// VLAN networks: a received tag with a non-zero priority is delivered as a priority tag
    /// (`vlan_pcp=keep`) instead of being removed with the rest of the tag (`strip`, the default).
    pub keep_pcp: bool,
    /// The endpoints' MTU (`com.docker.network.driver.mtu`, Docker's key); the parent's when None.
    pub mtu: Option<u32>,
    /// The endpoints' source guard: `spoof_check` (on unless `off`) and `ip_guard` (off unless
    /// `on`); datapath/src/guard.rs has the rules.
    pub guard: Guard,
}

/// Docker's key for a network's MTU.
pub const MTU: &str = "com.docker.network.driver.mtu";

pub const KNOWN: &str = "parent, macvlan_mode, nodst, vlan_pcp, spoof_check, ip_guard, com.docker.network.driver.mtu";
pub const KNOWN_IPVLAN: &str =
    "parent, ipvlan_mode, ipvlan_flag, vlan_pcp, spoof_check, ip_guard, com.docker.network.driver.mtu";

/// `on`/`off` (or `true`/`false`) of option `key`.
pub fn switch(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("-o {key}={v} is not valid (on or off)")),
    }
}

impl NetOpts {
    /// The options of a macvlan network.
    pub fn parse(options: &[(String, String)]) -> Result<NetOpts, String> {
        NetOpts::parse_for(Driver::Macvlan, options)
    }

    /// The options of a network of `driver`.
    pub fn parse_for(driver: Driver, options: &[(String, String)]) -> Result<NetOpts, String> {
        let ipvlan = driver == Driver::Ipvlan;
        let mut o = NetOpts {
            parent: None,
            mode: Mode::Bridge,
            ipvlan: ipvlan.then(Ipvlan::default),
            nodst: false,
            keep_pcp: false,
            mtu: None,
            guard: Guard::DEFAULT,
        };
        for (k, v) in options {
            match (k.as_str(), &mut o.ipvlan) {
                ("macvlan_mode" | "nodst", Some(_)) => {
                    return Err(format!(
                        "-o {k} is a macvlan option, not valid with -d ipvlan (it takes ipvlan_mode and ipvlan_flag)"
                    ))
                }
                ("ipvlan_mode" | "ipvlan_flag", None) => {
                    return Err(format!("-o {k} is an ipvlan option, not valid with -d macvlan (use -d ipvlan)"))
                }
                ("ipvlan_mode", Some(i)) => {
                    i.mode = v.parse()?;
                    continue;
                }
                ("ipvlan_flag", Some(i)) => {
                    i.flag = v.parse()?;
                    continue;
                }
                _ => {}
            }
            match k.as_str() {
                "parent" if v.is_empty() => {
                    return Err("-o parent= is empty: name an interface, or leave it out for an internal network".into())
                }
                "parent" => o.parent = Some(v.clone()),
                "macvlan_mode" => o.mode = v.parse()?,
                "nodst" => {
                    o.nodst = match v.as_str() {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("-o nodst={v} is not a boolean (true or false)")),
                    }
                }
                "vlan_pcp" => {
                    o.keep_pcp = match v.as_str() {
                        "strip" => false,
                        "keep" => true,
                        _ => return Err(format!("-o vlan_pcp={v} is not valid (strip or keep)")),
                    }
                }
                "spoof_check" => o.guard.mac = switch(k, v)?,
                "ip_guard" => o.guard.ip = switch(k, v)?,
                MTU => match v.parse::<u32>() {
                    Ok(m) if m >= 68 => o.mtu = Some(m),
                    _ => return Err(format!("-o {MTU}={v} is not a valid MTU (68 or more)")),
                },
                other => {
                    let known = if ipvlan { KNOWN_IPVLAN } else { KNOWN };
                    return Err(format!("unknown driver option '{other}' (known: {known})"));
                }
            }
        }
        if o.nodst && o.mode != Mode::Source {
            return Err(format!("-o nodst is for macvlan_mode=source, not {}", o.mode.name()));
        }
        Ok(o)
    }
}

/// Splits Docker's dotted parent notation: `eth0.50` is VLAN 50 on `eth0`. None when the name has
/// no dot. The caller first checks whether an interface of the whole name exists (a kernel with
/// 8021q may have made one): then it is a plain parent and this is not called.
pub fn split_vlan(name: &str) -> Result<Option<(&str, u16)>, String> {
    let Some((base, vid)) = name.rsplit_once('.') else { return Ok(None) };
    if base.is_empty() || vid.is_empty() {
        return Err(format!(
            "required interface name format is name.vlan_id, e.g. eth0.10 for VLAN 10; instead received: {name}"
        ));
    }
    // Digits only: parse() would also take a sign ("eth0.+50").
    let vid: u64 = vid.bytes().all(|b| b.is_ascii_digit()).then(|| vid.parse().ok()).flatten().ok_or_else(|| {
        format!("unable to parse a valid vlan id from '{vid}' in -o parent={name} (e.g. eth0.10 for VLAN 10)")
    })?;
    if !(1..=4094).contains(&vid) {
        return Err(format!("vlan id must be between 1-4094, received: {vid} (-o parent={name})"));
    }
    Ok(Some((base, vid as u16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> Result<NetOpts, String> {
        NetOpts::parse(&kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn dotted_parents_are_vlans_and_bad_ones_name_the_value() {
        assert_eq!(split_vlan("eth0"), Ok(None));
        assert_eq!(split_vlan("eth0.50"), Ok(Some(("eth0", 50))));
        assert_eq!(split_vlan("br.lan.7"), Ok(Some(("br.lan", 7))));
        assert_eq!(split_vlan("eth0.1"), Ok(Some(("eth0", 1))));
        assert_eq!(split_vlan("eth0.4094"), Ok(Some(("eth0", 4094))));
        for (bad, says) in [
            ("eth0.0", "received: 0"),
            ("eth0.4095", "received: 4095"),
            ("eth0.99999999999999999999", "'99999999999999999999'"),
            ("eth0.", "received: eth0."),
            (".10", "received: .10"),
            ("eth0.abc", "'abc'"),
            ("eth0.-1", "'-1'"),
            ("eth0.+50", "'+50'"),
        ] {
            let e = split_vlan(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(split_vlan("eth0.4095").unwrap_err().starts_with("vlan id must be between 1-4094"));
    }

    #[test]
    fn options_are_checked_together() {
        let o = opts(&[("parent", "eth0.50"), ("macvlan_mode", "source"), ("nodst", "true"), ("vlan_pcp", "keep")])
            .unwrap();
        assert_eq!((o.mode, o.nodst, o.keep_pcp, o.parent.as_deref()), (Mode::Source, true, true, Some("eth0.50")));
        assert_eq!(opts(&[]).unwrap().mode, Mode::Bridge);
        assert_eq!(opts(&[]).unwrap().guard, Guard { mac: true, ip: false }, "the MAC guard is on by default");
        let g = opts(&[("spoof_check", "off"), ("ip_guard", "on")]).unwrap().guard;
        assert_eq!(g, Guard { mac: false, ip: true });
        for (kv, says) in [
            (vec![("macvlan_mode", "l2")], "requested macvlan mode 'l2' is not valid"),
            (vec![("nodst", "true")], "nodst is for macvlan_mode=source"),
            (vec![("macvlan_mode", "source"), ("nodst", "yes")], "-o nodst=yes"),
            (vec![("vlan_pcp", "copy")], "-o vlan_pcp=copy"),
            (vec![("parent", "")], "-o parent= is empty"),
            (vec![("mtu", "9000")], "unknown driver option 'mtu'"),
            (vec![("spoof_check", "no")], "-o spoof_check=no is not valid (on or off)"),
            (vec![("ip_guard", "")], "-o ip_guard= is not valid"),
        ] {
            let e = opts(&kv).unwrap_err();
            assert!(e.contains(says), "{kv:?}: {e}");
        }
    }

    fn ipvlan(kv: &[(&str, &str)]) -> Result<NetOpts, String> {
        NetOpts::parse_for(Driver::Ipvlan, &kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn drivers_are_macvlan_and_ipvlan() {
        assert_eq!("macvlan".parse(), Ok(Driver::Macvlan));
        assert_eq!("ipvlan".parse(), Ok(Driver::Ipvlan));
        assert_eq!(Driver::Ipvlan.to_string(), "ipvlan");
        let e = "bridge".parse::<Driver>().unwrap_err();
        assert!(e.contains("driver 'bridge' is not supported"), "{e}");
    }

    #[test]
    fn ipvlan_takes_its_mode_and_flag_and_defaults_to_l2_bridge() {
        use xmacvlan_datapath::ipvlan::{IpvlanFlag, IpvlanMode};
        assert_eq!(ipvlan(&[]).unwrap().ipvlan, Some(Ipvlan { mode: IpvlanMode::L2, flag: IpvlanFlag::Bridge }));
        assert_eq!(opts(&[]).unwrap().ipvlan, None, "a macvlan network has no ipvlan settings");
        let o = ipvlan(&[("parent", "eth1.50"), ("ipvlan_mode", "l3s"), ("ipvlan_flag", "vepa"), ("vlan_pcp", "keep")])
            .unwrap();
        assert_eq!(o.ipvlan, Some(Ipvlan { mode: IpvlanMode::L3s, flag: IpvlanFlag::Vepa }));
        assert_eq!((o.mode, o.keep_pcp), (Mode::Bridge, true), "vlan_pcp is a VLAN's, valid for both drivers");
        let o = ipvlan(&[("ipvlan_mode", "l3"), ("ipvlan_flag", "private"), ("spoof_check", "off")]).unwrap();
        assert_eq!(o.ipvlan, Some(Ipvlan { mode: IpvlanMode::L3, flag: IpvlanFlag::Private }));
        assert!(!o.guard.mac);
        for (kv, says) in [
            (vec![("ipvlan_mode", "l4")], "requested ipvlan mode 'l4' is not valid"),
            (vec![("ipvlan_mode", "bridge")], "requested ipvlan mode 'bridge' is not valid"),
            (vec![("ipvlan_flag", "passthru")], "requested ipvlan flag 'passthru' is not valid"),
            (vec![("macvlan_mode", "bridge")], "-o macvlan_mode is a macvlan option, not valid with -d ipvlan"),
            (vec![("nodst", "true")], "-o nodst is a macvlan option, not valid with -d ipvlan"),
            (vec![("mode", "l2")], "unknown driver option 'mode' (known: parent, ipvlan_mode"),
        ] {
            let e = ipvlan(&kv).unwrap_err();
            assert!(e.contains(says), "{kv:?}: {e}");
        }
        for key in ["ipvlan_mode", "ipvlan_flag"] {
            let e = opts(&[(key, "l2")]).unwrap_err();
            assert!(e.contains(&format!("-o {key} is an ipvlan option, not valid with -d macvlan")), "{e}");
        }
    }
}
