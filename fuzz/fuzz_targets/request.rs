//! A control-socket request line as the daemon reads it (`daemon/server.rs`: UTF-8, then
//! `serde_json::from_str::<Envelope>`), then the pure checks the daemon makes on a decoded request
//! before touching the host: `daemon::rules`, `netopts` (`-o key=value`, `eth0.50`), `Ipam` (the
//! subnets, gateways, ranges and aux addresses of `network create`, the addresses of `connect`)
//! and the MACs of `macaddr`.
//!
//! Invariants: a request the daemon decodes encodes (as the client sends it) to a line the daemon
//! decodes to the same request; what the checks accept is within the bounds they state.

#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use xmacvlan_ctl::api::{Envelope, Request};
use xmacvlan_ctl::daemon::rules;
use xmacvlan_ctl::ipam::{Ipam, IpamSpec};
use xmacvlan_ctl::netopts::{split_vlan, NetOpts};
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::Mode;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = String::from_utf8(data.to_vec()) else { return };
    let Ok(env) = serde_json::from_str::<Envelope>(&line) else { return };
    let encoded = serde_json::to_string(&env).expect("a decoded request encodes");
    let back: Envelope = serde_json::from_str(&encoded).unwrap_or_else(|e| panic!("{encoded} does not decode: {e}"));
    assert_eq!(serde_json::to_string(&back).unwrap(), encoded, "the request changed on its way through JSON");

    match &env.request {
        Request::NetworkCreate(c) => {
            let _ = rules::network_name(&c.name, false);
            assert!(rules::network_name(&c.name, true).is_err(), "a taken name is refused");
            let _ = rules::driver(&c.driver);
            if let Ok(opts) = NetOpts::parse(&c.options) {
                assert!(!opts.nodst || opts.mode == Mode::Source);
                assert!(opts.mtu.is_none_or(|m| m >= 68));
                let _ = rules::network_spec(c, &opts, false);
                let _ = rules::network_spec(c, &opts, true);
                if let Some(parent) = &opts.parent {
                    let (link, vlan) = match split_vlan(parent) {
                        Ok(Some((base, vid))) => {
                            assert!(!base.is_empty() && (1..=4094).contains(&vid), "{parent}");
                            assert!(parent.starts_with(base) && parent.len() > base.len() + 1, "{parent}");
                            (base, vid)
                        }
                        Ok(None) => {
                            assert!(!parent.contains('.'));
                            (parent.as_str(), 0)
                        }
                        Err(_) => (parent.as_str(), 0),
                    };
                    let _ = rules::parent_use(parent, link, vlan, &opts, None);
                    let other = rules::Sharing { name: "other", mode: Mode::Passthru };
                    assert!(rules::parent_use(parent, link, vlan, &opts, Some(other)).is_err());
                }
            }
            ipam(&c.ipam);
        }
        Request::Connect(c) => {
            mac(c.mac.as_deref());
            if let Ok(m) = rules::endpoint_mtu(c.mtu, 1500, false, "eth0") {
                assert!(c.mtu.is_none_or(|r| r == m) && (68..=1500).contains(&m));
            }
            let mut pools = Ipam::new(&IpamSpec {
                subnets: vec!["198.18.0.0/24".into(), "2001:db8::/64".into()],
                gateways: vec!["198.18.0.1".into()],
                ip_ranges: vec![],
                aux_addresses: vec!["sw=198.18.0.7".into()],
                ipv6: true,
            })
            .expect("a valid spec");
            allocate(&mut pools, c.ip.as_deref(), c.ip6.as_deref());
        }
        Request::Macaddr { macs, .. } => {
            for m in macs {
                if let Ok(parsed) = MacAddr::from_str(m) {
                    assert_eq!(parsed.to_string().parse::<MacAddr>(), Ok(parsed));
                }
            }
        }
        Request::CniAdd(a) => {
            mac(a.mac.as_deref());
            let _ = Mode::from_str(&a.network.mode);
        }
        Request::CniCheck(c) => mac(c.mac.as_deref()),
        _ => {}
    }
});

/// `--mac-address`: what is accepted is a unicast, non-zero MAC that prints back as given (up to
/// case and separators).
fn mac(given: Option<&str>) {
    if let Ok(Some(m)) = rules::requested_mac(given) {
        assert!(!m.is_multicast() && !m.is_zero());
        assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
    }
}

/// A network's pools: allocation hands out host addresses of a subnet that are not reserved,
/// never the same one twice.
fn ipam(spec: &IpamSpec) {
    let Ok(mut pools) = Ipam::new(spec) else { return };
    if pools.pools.is_empty() {
        return;
    }
    let me = pools.clone();
    assert!(rules::no_pool_overlap("n", &pools, [("n", &me)]).is_err(), "a network overlaps itself");
    let first = allocate(&mut pools, None, None);
    let second = allocate(&mut pools, None, None);
    for a in &first {
        assert!(!second.contains(a), "{a} handed out twice");
    }
    pools.release(&first);
    pools.release(&second);
}

/// Allocates, checks what was handed out and returns it.
fn allocate(pools: &mut Ipam, ip4: Option<&str>, ip6: Option<&str>) -> Vec<xmacvlan_ctl::ipam::Assigned> {
    let Ok(got) = pools.allocate(ip4, ip6) else { return Vec::new() };
    for a in &got {
        let pool = pools.pools.iter().find(|p| p.subnet.contains(&a.ip)).expect("inside a subnet");
        assert_eq!(a.prefix, pool.subnet.prefix_len());
        assert_ne!(Some(a.ip), pool.gateway, "the gateway handed out");
        assert!(!pool.aux.iter().any(|(_, x)| *x == a.ip), "an aux address handed out");
        assert_ne!(a.ip, pool.subnet.network(), "the network address handed out");
        assert!(a.ip.is_ipv6() || a.ip != pool.subnet.broadcast(), "the broadcast address handed out");
    }
    if ip4.is_some() || ip6.is_some() {
        // The same request again finds the requested addresses taken.
        let again = pools.allocate(ip4, ip6);
        assert!(got.is_empty() || again.is_err(), "{got:?} handed out twice: {again:?}");
    }
    got
}
