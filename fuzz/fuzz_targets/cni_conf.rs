//! The CNI plugin's stdin: `cni::parse_conf` (the network configuration every command reads),
//! `cni::version_result` (VERSION's answer), and the results it reads: a `prevResult` through
//! `cni::expected` (CHECK), and the input itself as an IPAM plugin's result (`parse_result`).
//!
//! Invariants: an accepted configuration is within the bounds `parse_conf` states; VERSION always
//! answers a supported version; a result ADD renders (`render_result`) reads back as the same
//! addresses, routes and DNS, which CHECK relies on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use xmacvlan_ctl::cni::{self, parse_result, render_result, SUPPORTED};

fuzz_target!(|data: &[u8]| {
    let v = cni::version_result(data);
    let asked = v["cniVersion"].as_str().expect("VERSION names a version");
    assert!(SUPPORTED.contains(&asked), "VERSION answered {asked}");

    if let Ok(conf) = cni::parse_conf(data) {
        assert!(SUPPORTED.contains(&conf.cni_version.as_str()));
        assert!((1..=64).contains(&conf.name.len()), "name {:?}", conf.name);
        assert!(conf.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
        assert!(["bridge", "private", "vepa", "passthru", "source"].contains(&conf.mode.as_str()));
        assert!(conf.mtu <= 65535);
        assert!(conf.master.as_deref() != Some("") && conf.mac.as_deref() != Some(""));
        assert_eq!(conf.ipam.is_some(), conf.ipam_type().is_some(), "an ipam object names its plugin");
        let _ = conf.wanted_mac("IgnoreUnknown=1;MAC=02:42:c6:12:00:0a");
        if let Some(prev) = &conf.prev_result {
            if let Ok((_, r)) = cni::expected(prev, "eth0", "/var/run/netns/fuzz") {
                round_trip(&conf.cni_version, &r);
            }
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        if let Ok(r) = parse_result(&v) {
            for version in SUPPORTED {
                round_trip(version, &r);
            }
        }
    }
});

/// ADD's result in `version`, read back.
fn round_trip(version: &str, r: &cni::IpamResult) {
    let iface = json!({ "name": "eth0", "mac": "02:42:c6:12:00:0a", "sandbox": "/var/run/netns/fuzz", "mtu": 1500 });
    let rendered = render_result(version, &iface, r, None);
    let back = parse_result(&rendered).unwrap_or_else(|e| panic!("{rendered} does not read back: {e:?}"));
    assert_eq!(&back, r, "result in {version} changed: {rendered}");
}
