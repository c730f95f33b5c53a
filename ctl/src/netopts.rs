//! The driver options of `network create` (`-o key=value`), checked before anything is set up:
//! `parent` (with Docker's dotted VLAN notation `eth0.50`), `macvlan_mode`, `nodst`, `vlan_pcp`.

use xmacvlan_datapath::fwd::Mode;
pub use xmacvlan_datapath::guard::Guard;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOpts {
    /// The parent as the user wrote it (`eth0`, `eth0.50`); None for an internal network.
    pub parent: Option<String>,
    pub mode: Mode,
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

/// `on`/`off` (or `true`/`false`) of option `key`.
pub fn switch(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("-o {key}={v} is not valid (on or off)")),
    }
}

impl NetOpts {
    pub fn parse(options: &[(String, String)]) -> Result<NetOpts, String> {
        let mut o = NetOpts {
            parent: None,
            mode: Mode::Bridge,
            nodst: false,
            keep_pcp: false,
            mtu: None,
            guard: Guard::DEFAULT,
        };
        for (k, v) in options {
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
                other => return Err(format!("unknown driver option '{other}' (known: {KNOWN})")),
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
}
