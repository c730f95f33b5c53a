//! `xmacvlan-cni`: a CNI plugin (spec 0.3.0 – 1.1.0) that makes xmacvlan a drop-in for the
//! reference macvlan plugin. The runtime runs it with the network configuration on stdin and
//! `CNI_*` in the environment; it runs the IPAM plugin itself (like the reference plugin) and asks
//! the running daemon, over its control socket, for everything that touches links or the datapath.
//!
//! Everything in this file is a pure function of its inputs, unit-tested without root: the
//! configuration, the environment, results and their shapes per spec version. `plugin` does the
//! work: the daemon's socket, the IPAM plugin, ADD/DEL/CHECK/STATUS/GC, and [`main`].

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::api::{Attachment, CniIp, CniNetwork, CniRoute};
use crate::netopts::Driver;

mod plugin;

pub use self::plugin::{dispatch, main};

/// The spec versions this plugin speaks (results older than 0.3.0 have another shape).
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The spec's error codes.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const MISSING_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// What the reference plugins return for errors without a code of their own.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: printed to stdout as the spec's error object, with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

pub(crate) type Result<T> = std::result::Result<T, CniError>;

/// `major.minor.patch` as numbers, for comparisons ("0.3.1" < "0.4.0" < "1.0.0").
fn ver(s: &str) -> (u32, u32, u32) {
    let mut it = s.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The network configuration: the reference macvlan plugin's keys plus `socket`; with
/// `"driver": "ipvlan"`, the reference ipvlan plugin's (`mode` l2, l3 or l3s) plus `ipvlan_flag`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub master: Option<String>,
    /// `"driver"`: `macvlan` (the default) or `ipvlan`.
    pub driver: Driver,
    /// A macvlan mode, or with `"driver": "ipvlan"` an ipvlan mode.
    pub mode: String,
    /// `"ipvlan_flag"` (ipvlan only): bridge (the default), private or vepa.
    pub ipvlan_flag: Option<String>,
    pub mtu: u32,
    pub mac: Option<String>,
    pub runtime_mac: Option<String>,
    /// The source guard: `"spoof_check"` (default true), `"ip_guard"` (default false).
    pub spoof_check: bool,
    pub ip_guard: bool,
    /// The `ipam` object as given; its `type` names the plugin.
    pub ipam: Option<Value>,
    pub dns: Option<Value>,
    pub prev_result: Option<Value>,
    pub socket: PathBuf,
    /// GC: `cni.dev/valid-attachments`.
    pub valid: Vec<Attachment>,
    /// The whole configuration, as IPAM plugins get it.
    pub raw: Value,
}

impl NetConf {
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str().filter(|t| !t.is_empty())
    }

    /// The MAC to ask for: runtimeConfig beats CNI_ARGS beats the configuration (as the
    /// reference plugin does).
    pub fn wanted_mac(&self, cni_args: &str) -> Option<String> {
        let from_args = cni_args
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "MAC")
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty());
        self.runtime_mac.clone().or(from_args).or_else(|| self.mac.clone())
    }

    fn network(&self) -> CniNetwork {
        CniNetwork {
            name: self.name.clone(),
            master: self.master.clone(),
            driver: self.driver.name().into(),
            mode: self.mode.clone(),
            ipvlan_flag: self.ipvlan_flag.clone(),
            spoof_check: self.spoof_check,
            ip_guard: self.ip_guard,
        }
    }
}

/// Parses and validates stdin. Errors are the spec's: 6 undecodable, 1 unsupported version,
/// 2 unsupported field, 7 invalid value.
pub fn parse_conf(stdin: &[u8]) -> Result<NetConf> {
    let raw: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(code::DECODE, format!("failed to load netconf: {e}")))?;
    let obj =
        raw.as_object().ok_or_else(|| CniError::new(code::DECODE, "failed to load netconf: not a JSON object"))?;
    let s = |k: &str| -> Result<Option<String>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(other) => Err(CniError::new(code::INVALID_CONFIG, format!("\"{k}\" must be a string, not {other}"))),
        }
    };
    let cni_version = s("cniVersion")?.unwrap_or_else(|| "0.1.0".into());
    if !SUPPORTED.contains(&cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("incompatible CNI versions; config is \"{cni_version}\", plugin supports {SUPPORTED:?}"),
        ));
    }
    let name = s("name")?.unwrap_or_default();
    if name.is_empty() {
        return Err(CniError::new(code::INVALID_CONFIG, "the network configuration has no \"name\""));
    }
    if name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("network name \"{name}\" is invalid: use 1-64 letters, digits, '_', '.' or '-'"),
        ));
    }
    let driver = match s("driver")?.as_deref() {
        None | Some("" | "macvlan") => Driver::Macvlan,
        Some("ipvlan") => Driver::Ipvlan,
        Some(d) => {
            return Err(CniError::new(code::INVALID_CONFIG, format!("unknown driver: \"{d}\" (macvlan or ipvlan)")))
        }
    };
    let mode = s("mode")?.unwrap_or_default();
    let mode = match (driver, mode.as_str()) {
        (Driver::Macvlan, "") => "bridge".to_string(),
        (Driver::Macvlan, "bridge" | "private" | "vepa" | "passthru" | "source") => mode,
        (Driver::Macvlan, _) => {
            return Err(CniError::new(code::INVALID_CONFIG, format!("unknown macvlan mode: \"{mode}\"")))
        }
        // The reference ipvlan plugin's modes and default, and its words.
        (Driver::Ipvlan, "") => "l2".to_string(),
        (Driver::Ipvlan, "l2" | "l3" | "l3s") => mode,
        (Driver::Ipvlan, _) => {
            return Err(CniError::new(code::INVALID_CONFIG, format!("unknown ipvlan mode: \"{mode}\"")))
        }
    };
    let ipvlan_flag = match (driver, s("ipvlan_flag")?) {
        (_, None) => (driver == Driver::Ipvlan).then(|| "bridge".to_string()),
        (Driver::Macvlan, Some(f)) => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("\"ipvlan_flag\": \"{f}\" is for \"driver\": \"ipvlan\" (this configuration is macvlan)"),
            ))
        }
        (Driver::Ipvlan, Some(f)) if ["bridge", "private", "vepa"].contains(&f.as_str()) => Some(f),
        (Driver::Ipvlan, Some(f)) => {
            return Err(CniError::new(code::INVALID_CONFIG, format!("unknown ipvlan flag: \"{f}\"")))
        }
    };
    let mtu = match obj.get("mtu") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64() {
            Some(m) if (0..=65535).contains(&m) => m as u32,
            _ => return Err(CniError::new(code::INVALID_CONFIG, format!("invalid MTU {v}, must be [0, master MTU]"))),
        },
    };
    if obj.get("linkInContainer").and_then(Value::as_bool) == Some(true) {
        return Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            "linkInContainer=true is not supported: the daemon makes endpoints on a master in its own namespace",
        ));
    }
    let flag = |k: &str, default: bool| -> Result<bool> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => {
                Err(CniError::new(code::INVALID_CONFIG, format!("\"{k}\" must be true or false, not {other}")))
            }
        }
    };
    let (spoof_check, ip_guard) = (flag("spoof_check", true)?, flag("ip_guard", false)?);
    let runtime_mac = obj
        .get("runtimeConfig")
        .and_then(|r| r.get("mac"))
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let ipam = obj.get("ipam").filter(|v| v.as_object().is_some_and(|o| !o.is_empty())).cloned();
    if let Some(i) = &ipam {
        if !matches!(i.get("type"), Some(Value::String(t)) if !t.is_empty()) {
            return Err(CniError::new(code::INVALID_CONFIG, "\"ipam\" has no \"type\" (the IPAM plugin to run)"));
        }
    }
    let valid = match obj.get("cni.dev/valid-attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                let f = |k| v.get(k).and_then(Value::as_str).map(str::to_string);
                match (f("containerID"), f("ifname")) {
                    (Some(container_id), Some(ifname)) => Ok(Attachment { container_id, ifname }),
                    _ => Err(CniError::new(
                        code::INVALID_CONFIG,
                        format!("cni.dev/valid-attachments: {v} lacks containerID or ifname"),
                    )),
                }
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("cni.dev/valid-attachments must be a list, not {other}"),
            ))
        }
    };
    Ok(NetConf {
        cni_version,
        name,
        master: s("master")?.filter(|m| !m.is_empty()),
        driver,
        mode,
        ipvlan_flag,
        mtu,
        mac: s("mac")?.filter(|m| !m.is_empty()),
        runtime_mac,
        spoof_check,
        ip_guard,
        ipam,
        dns: obj.get("dns").filter(|d| d.as_object().is_some_and(|o| !o.is_empty())).cloned(),
        prev_result: obj.get("prevResult").filter(|p| !p.is_null()).cloned(),
        socket: s("socket")?.map_or_else(|| PathBuf::from(crate::DEFAULT_SOCKET), PathBuf::from),
        valid,
        raw,
    })
}

/// The `CNI_*` environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl Env {
    pub fn from_process() -> Self {
        let v = |k| std::env::var(k).unwrap_or_default();
        Env {
            command: v("CNI_COMMAND"),
            container_id: v("CNI_CONTAINERID"),
            netns: v("CNI_NETNS"),
            ifname: v("CNI_IFNAME"),
            args: v("CNI_ARGS"),
            path: v("CNI_PATH"),
        }
    }

    /// Code 4 naming every missing variable.
    fn require(&self, names: &[&str]) -> Result<()> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| match *n {
                "CNI_CONTAINERID" => self.container_id.is_empty(),
                "CNI_NETNS" => self.netns.is_empty(),
                "CNI_IFNAME" => self.ifname.is_empty(),
                "CNI_PATH" => self.path.is_empty(),
                _ => false,
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(CniError::new(code::MISSING_ENV, format!("required env variables [{}] missing", missing.join(","))))
        }
    }

    fn attachment(&self) -> Attachment {
        Attachment { container_id: self.container_id.clone(), ifname: self.ifname.clone() }
    }
}

/// What an IPAM plugin handed out, in the current (1.x) shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpamResult {
    pub ips: Vec<CniIp>,
    pub routes: Vec<CniRoute>,
    pub dns: Option<Value>,
}

/// Reads a result of any supported version (0.3.0 onwards share `ips[].address/gateway`).
pub fn parse_result(v: &Value) -> Result<IpamResult> {
    let bad = |what: String| CniError::new(code::DECODE, format!("IPAM result: {what}"));
    let mut out = IpamResult::default();
    for ip in v.get("ips").and_then(Value::as_array).into_iter().flatten() {
        let address = ip.get("address").and_then(Value::as_str).ok_or_else(|| bad(format!("{ip} has no address")))?;
        let address: IpNet = address.parse().map_err(|_| bad(format!("address {address} is not a CIDR")))?;
        let gateway = match ip.get("gateway").and_then(Value::as_str) {
            Some(g) => Some(g.parse::<IpAddr>().map_err(|_| bad(format!("gateway {g} is not an address")))?),
            None => None,
        };
        out.ips.push(CniIp { address, gateway });
    }
    for r in v.get("routes").and_then(Value::as_array).into_iter().flatten() {
        let dst = r.get("dst").and_then(Value::as_str).ok_or_else(|| bad(format!("route {r} has no dst")))?;
        let dst: IpNet = dst.parse().map_err(|_| bad(format!("route dst {dst} is not a CIDR")))?;
        let gw = match r.get("gw").and_then(Value::as_str) {
            Some(g) => Some(g.parse::<IpAddr>().map_err(|_| bad(format!("route gw {g} is not an address")))?),
            None => None,
        };
        out.routes.push(CniRoute { dst: dst.trunc(), gw });
    }
    out.dns = v.get("dns").filter(|d| d.as_object().is_some_and(|o| !o.is_empty())).cloned();
    Ok(out)
}

/// The ADD result in the configuration's version: 0.3.x/0.4.0 IPs carry `version`, 1.1.0
/// interfaces carry `mtu`.
pub fn render_result(version: &str, iface: &Value, ipam: &IpamResult, conf_dns: Option<&Value>) -> Value {
    let old = ver(version) < (1, 0, 0);
    let mut intf = Map::new();
    for k in ["name", "mac", "sandbox"] {
        if let Some(v) = iface.get(k) {
            intf.insert(k.into(), v.clone());
        }
    }
    if ver(version) >= (1, 1, 0) {
        if let Some(m) = iface.get("mtu") {
            intf.insert("mtu".into(), m.clone());
        }
    }
    let ips: Vec<Value> = ipam
        .ips
        .iter()
        .map(|ip| {
            let mut o = json!({ "address": ip.address.to_string(), "interface": 0 });
            if let Some(g) = ip.gateway {
                o["gateway"] = json!(g.to_string());
            }
            if old {
                o["version"] = json!(if ip.address.addr().is_ipv4() { "4" } else { "6" });
            }
            o
        })
        .collect();
    let routes: Vec<Value> = ipam
        .routes
        .iter()
        .map(|r| match r.gw {
            Some(g) => json!({ "dst": r.dst.to_string(), "gw": g.to_string() }),
            None => json!({ "dst": r.dst.to_string() }),
        })
        .collect();
    let mut out = json!({ "cniVersion": version, "interfaces": [Value::Object(intf)] });
    if !ips.is_empty() {
        out["ips"] = json!(ips);
    }
    if !routes.is_empty() {
        out["routes"] = json!(routes);
    }
    // The configuration's dns wins over the IPAM plugin's, as in the reference plugin.
    if let Some(d) = conf_dns.or(ipam.dns.as_ref()) {
        out["dns"] = d.clone();
    }
    out
}

/// CHECK's view of prevResult: the interface called `ifname` in `netns`, with its MAC, and the
/// addresses and routes ADD reported for it.
pub fn expected(prev: &Value, ifname: &str, netns: &str) -> Result<(Option<String>, IpamResult)> {
    let interfaces = prev.get("interfaces").and_then(Value::as_array).cloned().unwrap_or_default();
    let found = interfaces.iter().enumerate().find(|(_, i)| {
        i.get("name").and_then(Value::as_str) == Some(ifname) && i.get("sandbox").and_then(Value::as_str) == Some(netns)
    });
    let Some((idx, intf)) = found else {
        let sandbox = interfaces
            .iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some(ifname))
            .and_then(|i| i.get("sandbox").and_then(Value::as_str))
            .unwrap_or("");
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("sandbox in prevResult {sandbox} doesn't match configured netns: {netns}"),
        ));
    };
    let mut r = parse_result(prev)?;
    // Keep the addresses of this interface (or of none in particular).
    let all = prev.get("ips").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut keep = all.iter().map(|ip| ip.get("interface").and_then(Value::as_u64).is_none_or(|i| i as usize == idx));
    r.ips.retain(|_| keep.next().unwrap_or(true));
    Ok((intf.get("mac").and_then(Value::as_str).map(str::to_string), r))
}

/// VERSION's answer.
pub fn version_result(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str).map(str::to_string))
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| SUPPORTED[SUPPORTED.len() - 1].to_string());
    json!({ "cniVersion": asked, "supportedVersions": SUPPORTED })
}

/// Leftover check for tests: keys of a JSON object.
#[cfg(test)]
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: Value) -> Value {
        let mut c = json!({ "cniVersion": "1.0.0", "name": "xnet", "type": "xmacvlan-cni", "master": "eth1" });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn parse(v: Value) -> Result<NetConf> {
        parse_conf(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn configuration_errors_carry_the_spec_codes() {
        assert_eq!(parse_conf(b"{not json").unwrap_err().code, code::DECODE);
        let e = parse(conf(json!({ "cniVersion": "0.2.0" }))).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        assert!(e.msg.contains("\"0.2.0\""), "{}", e.msg);
        let e = parse(conf(json!({ "mode": "fast" }))).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (code::INVALID_CONFIG, "unknown macvlan mode: \"fast\""));
        assert_eq!(parse(conf(json!({ "mtu": -1 }))).unwrap_err().code, code::INVALID_CONFIG);
        assert_eq!(parse(conf(json!({ "linkInContainer": true }))).unwrap_err().code, code::UNSUPPORTED_FIELD);
        assert_eq!(parse(conf(json!({ "name": "" }))).unwrap_err().code, code::INVALID_CONFIG);
        assert_eq!(
            parse(conf(json!({ "ipam": { "subnet": "198.18.0.0/24" } }))).unwrap_err().code,
            code::INVALID_CONFIG
        );
        assert_eq!(parse(conf(json!({ "master": 5 }))).unwrap_err().code, code::INVALID_CONFIG);
        let e = parse(conf(json!({ "spoof_check": "off" }))).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (code::INVALID_CONFIG, "\"spoof_check\" must be true or false, not \"off\"")
        );
    }

    #[test]
    fn ipvlan_is_the_reference_ipvlan_plugins_keys_with_driver_ipvlan() {
        let ipvlan = |extra: Value| {
            let mut c = conf(json!({ "driver": "ipvlan" }));
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            parse(c)
        };
        let c = ipvlan(json!({})).unwrap();
        assert_eq!((c.driver, c.mode.as_str(), c.ipvlan_flag.as_deref()), (Driver::Ipvlan, "l2", Some("bridge")));
        let n = ipvlan(json!({ "mode": "l3s", "ipvlan_flag": "private", "mtu": 1400 })).unwrap().network();
        assert_eq!((n.driver.as_str(), n.mode.as_str(), n.ipvlan_flag.as_deref()), ("ipvlan", "l3s", Some("private")));
        let c = parse(conf(json!({}))).unwrap();
        assert_eq!((c.driver, c.ipvlan_flag), (Driver::Macvlan, None), "macvlan by default");
        for (extra, says) in [
            (json!({ "mode": "bridge" }), "unknown ipvlan mode: \"bridge\""),
            (json!({ "mode": "l4" }), "unknown ipvlan mode: \"l4\""),
            (json!({ "ipvlan_flag": "passthru" }), "unknown ipvlan flag: \"passthru\""),
            (json!({ "linkInContainer": true }), "linkInContainer=true is not supported"),
        ] {
            let e = ipvlan(extra.clone()).unwrap_err();
            assert!(e.msg.contains(says), "{extra}: {}", e.msg);
            assert!(matches!(e.code, code::INVALID_CONFIG | code::UNSUPPORTED_FIELD), "{extra}: {}", e.code);
        }
        let e = parse(conf(json!({ "mode": "l2" }))).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (code::INVALID_CONFIG, "unknown macvlan mode: \"l2\""));
        let e = parse(conf(json!({ "ipvlan_flag": "private" }))).unwrap_err();
        assert!(e.code == code::INVALID_CONFIG && e.msg.contains("is for \"driver\": \"ipvlan\""), "{}", e.msg);
        let e = parse(conf(json!({ "driver": "bridge" }))).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (code::INVALID_CONFIG, "unknown driver: \"bridge\" (macvlan or ipvlan)"));
    }

    #[test]
    fn the_source_guard_goes_to_the_daemon() {
        let c = parse(conf(json!({}))).unwrap();
        assert_eq!((c.spoof_check, c.ip_guard), (true, false), "the MAC guard is on by default");
        let n = parse(conf(json!({ "spoof_check": false, "ip_guard": true }))).unwrap().network();
        assert_eq!((n.spoof_check, n.ip_guard), (false, true));
    }

    #[test]
    fn defaults_and_the_mac_precedence_of_the_reference_plugin() {
        let c = parse(conf(json!({}))).unwrap();
        assert_eq!((c.mode.as_str(), c.mtu, c.socket.to_str().unwrap()), ("bridge", 0, crate::DEFAULT_SOCKET));
        assert_eq!(c.ipam, None);
        let c = parse(conf(json!({ "mac": "02:00:00:00:00:01" }))).unwrap();
        assert_eq!(c.wanted_mac("").as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(c.wanted_mac("IgnoreUnknown=1;MAC=02:00:00:00:00:02").as_deref(), Some("02:00:00:00:00:02"));
        let c = parse(conf(json!({ "mac": "02:00:00:00:00:01", "runtimeConfig": { "mac": "02:00:00:00:00:03" } })))
            .unwrap();
        assert_eq!(c.wanted_mac("MAC=02:00:00:00:00:02").as_deref(), Some("02:00:00:00:00:03"));
        let c = parse(conf(json!({ "master": "" }))).unwrap();
        assert_eq!(c.master, None, "an empty master means the default route's interface");
    }

    #[test]
    fn results_take_the_shape_of_the_configured_version() {
        let ipam = parse_result(&json!({
            "cniVersion": "1.0.0",
            "ips": [{ "address": "198.18.0.100/24", "gateway": "198.18.0.1" }, { "address": "2001:2::100/64" }],
            "routes": [{ "dst": "0.0.0.0/0", "gw": "198.18.0.1" }],
            "dns": { "nameservers": ["198.18.0.53"] }
        }))
        .unwrap();
        assert_eq!(ipam.ips.len(), 2);
        let iface = json!({ "name": "eth0", "mac": "02:42:c6:12:00:64", "sandbox": "/run/netns/c1", "mtu": 1500 });
        let old = render_result("0.3.1", &iface, &ipam, None);
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert_eq!(old["interfaces"][0].get("mtu"), None);
        let new = render_result("1.1.0", &iface, &ipam, None);
        assert_eq!(new["ips"][0].get("version"), None);
        assert_eq!(new["ips"][0]["interface"], 0);
        assert_eq!(new["interfaces"][0]["mtu"], 1500);
        assert_eq!(new["routes"][0]["gw"], "198.18.0.1");
        assert_eq!(new["dns"]["nameservers"][0], "198.18.0.53");
        let l2 = render_result("1.0.0", &iface, &IpamResult::default(), None);
        assert_eq!(keys(&l2), ["cniVersion", "interfaces"]);
    }

    #[test]
    fn check_finds_its_interface_in_prev_result() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{ "name": "eth0", "mac": "02:42:c6:12:00:64", "sandbox": "/run/netns/c1" }],
            "ips": [{ "address": "198.18.0.100/24", "interface": 0 }, { "address": "198.18.9.9/24", "interface": 3 }],
            "routes": [{ "dst": "0.0.0.0/0", "gw": "198.18.0.1" }]
        });
        let (mac, r) = expected(&prev, "eth0", "/run/netns/c1").unwrap();
        assert_eq!(mac.as_deref(), Some("02:42:c6:12:00:64"));
        assert_eq!(r.ips.len(), 1, "addresses of other interfaces are not ours");
        assert_eq!(r.routes.len(), 1);
        let e = expected(&prev, "eth0", "/run/netns/other").unwrap_err();
        assert_eq!(e.msg, "sandbox in prevResult /run/netns/c1 doesn't match configured netns: /run/netns/other");
    }

    #[test]
    fn valid_attachments_and_missing_environment() {
        let c = parse(conf(json!({ "cniVersion": "1.1.0",
            "cni.dev/valid-attachments": [{ "containerID": "a", "ifname": "eth0" }] })))
        .unwrap();
        assert_eq!(c.valid, vec![Attachment { container_id: "a".into(), ifname: "eth0".into() }]);
        let env = Env { command: "ADD".into(), ifname: "eth0".into(), ..Env::default() };
        let e = env.require(&["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (code::MISSING_ENV, "required env variables [CNI_CONTAINERID,CNI_NETNS] missing")
        );
        let v = version_result(br#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), SUPPORTED.len());
    }
}
