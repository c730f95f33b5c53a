//! Docker's remote network driver protocol (libnetwork's "remote" driver), the half that is pure:
//! the requests dockerd sends and what they mean for a network of ours, unit-tested without
//! Docker. The daemon serves it on `/run/docker/plugins/NAME.sock` (`daemon/docker.rs`), framed by
//! [`crate::http`].
//!
//! What dockerd sends (observed with Debian's docker.io 20.10, `../shared/REFERENCE.md` §8): the
//! network by its ID only (never its name), `-o` options under `com.docker.network.generic`, the
//! pools Docker's own IPAM chose; an endpoint with the addresses that IPAM picked; a join with a
//! sandbox that does not exist yet (the interface is made in dockerd's namespace and Docker moves
//! it).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::CreateNetwork;
use crate::ipam::{Assigned, IpamSpec};
use crate::netopts::Driver;

/// The content type of every request and reply.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// Where dockerd looks for plugin `name`'s socket (a fixed directory, not under its exec root).
pub fn socket_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/run/docker/plugins").join(format!("{name}.sock"))
}

/// The option a network's MTU comes in (`-o com.docker.network.driver.mtu=1400`).
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// `CreateNetwork`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetworkRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(default)]
    pub options: Map<String, Value>,
    #[serde(default, rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    #[serde(default, rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// One pool Docker's IPAM gave the network.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    /// `198.18.77.0/24`.
    pub pool: String,
    /// `198.18.77.1/24` (with the pool's prefix length), or empty.
    #[serde(default)]
    pub gateway: String,
    /// name → `ip/len`.
    #[serde(default)]
    pub aux_addresses: Option<BTreeMap<String, String>>,
}

/// `DeleteNetwork`.
#[derive(Debug, Deserialize)]
pub struct NetworkRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// `Leave`, `DeleteEndpoint`, `EndpointOperInfo`, `(Program|Revoke)ExternalConnectivity`.
#[derive(Debug, Deserialize)]
pub struct EndpointRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `CreateEndpoint`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default)]
    pub interface: Option<EndpointInterface>,
}

/// The addresses Docker's IPAM picked for an endpoint, and the MAC given with `--mac-address`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInterface {
    #[serde(default)]
    pub address: String,
    #[serde(default, rename = "AddressIPv6")]
    pub address_ipv6: String,
    #[serde(default)]
    pub mac_address: String,
}

/// `Join`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default)]
    pub sandbox_key: String,
}

/// Our network for Docker's `CreateNetwork`: named by its NetworkID, with the `-o` options as
/// given (Docker's own keys taken out), the pools Docker chose as its subnets (with their gateways
/// and aux addresses: `ls` shows them, and they must not overlap a network of ours), internal
/// (no parent, as Docker's macvlan puts an internal network on a dummy link) when Docker says so.
/// The error names the bad value.
pub fn network_spec(r: &CreateNetworkRequest) -> Result<CreateNetwork, String> {
    let flag = |key: &str| match r.options.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let internal = flag("com.docker.network.internal");
    let mut options = Vec::new();
    if let Some(generic) = r.options.get("com.docker.network.generic") {
        let generic = generic.as_object().ok_or_else(|| format!("driver options are not an object: {generic}"))?;
        for (k, v) in generic {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            // An internal network has no parent (Docker's macvlan ignores it for a dummy link).
            if internal && k == "parent" {
                continue;
            }
            options.push((k.clone(), v));
        }
    }
    let mut ipam = IpamSpec { ipv6: flag("com.docker.network.enable_ipv6"), ..IpamSpec::default() };
    let pools = r.ipv4_data.iter().flatten().chain(r.ipv6_data.iter().flatten());
    for p in pools {
        let subnet: IpNet = p.pool.parse().map_err(|_| format!("pool '{}' is not a subnet", p.pool))?;
        ipam.ipv6 |= subnet.addr().is_ipv6();
        ipam.subnets.push(subnet.to_string());
        if !p.gateway.is_empty() {
            ipam.gateways.push(address(&p.gateway)?.to_string());
        }
        for (name, a) in p.aux_addresses.iter().flatten() {
            ipam.aux_addresses.push(format!("{name}={}", address(a)?));
        }
    }
    // Docker calls the driver by its plugin name (`-d xmacvlan`): Docker's ipvlan options select ipvlan.
    let ipvlan = options.iter().any(|(k, _)| k == "ipvlan_mode" || k == "ipvlan_flag");
    let driver = if ipvlan { Driver::Ipvlan } else { Driver::Macvlan };
    Ok(CreateNetwork { name: r.network_id.clone(), driver: driver.name().into(), ipam, internal, options })
}

/// `ip/len` or `ip` → the address. The error names the value.
fn address(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpNet>()
        .map(|n| n.addr())
        .or_else(|_| s.parse::<IpAddr>())
        .map_err(|_| format!("'{s}' is not an IP address"))
}

/// An endpoint's addresses (`ip/len`, IPv4 then IPv6) as Docker's IPAM gave them.
pub fn endpoint_addresses(i: &EndpointInterface) -> Result<Vec<Assigned>, String> {
    [&i.address, &i.address_ipv6]
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(|a| {
            let n: IpNet = a.parse().map_err(|_| format!("endpoint address '{a}' is not ip/len"))?;
            Ok(Assigned { ip: n.addr(), prefix: n.prefix_len() })
        })
        .collect()
}

/// Where dockerd (command line `cmdline`, NUL-separated as in /proc/PID/cmdline) serves its API:
/// its first `-H`/`--host unix://PATH`, else Docker's default socket.
pub fn api_socket(cmdline: &[u8]) -> PathBuf {
    let args: Vec<&str> = cmdline.split(|&b| b == 0).filter_map(|a| std::str::from_utf8(a).ok()).collect();
    let mut hosts = Vec::new();
    for (i, a) in args.iter().enumerate() {
        match *a {
            "-H" | "--host" => hosts.extend(args.get(i + 1).copied()),
            _ => hosts.extend(a.strip_prefix("-H=").or_else(|| a.strip_prefix("--host="))),
        }
    }
    hosts
        .into_iter()
        .find_map(|h| h.strip_prefix("unix://"))
        .map_or_else(|| PathBuf::from("/var/run/docker.sock"), PathBuf::from)
}

/// The name in dockerd's answer to `GET /networks/ID` (HTTP/1.0: the body is the rest of the
/// stream); None unless it is a 200 with a JSON body naming it.
pub fn network_name(response: &[u8]) -> Option<String> {
    let status = response.split(|&b| b == b'\n').next()?;
    if !status.starts_with(b"HTTP/1.") || !std::str::from_utf8(status).ok()?.contains(" 200 ") {
        return None;
    }
    let at = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let body: Value = serde_json::from_slice(&response[at + 4..]).ok()?;
    body.get("Name")?.as_str().map(str::to_string)
}

/// The reply to a failed call: Docker shows `Error response from daemon: remote: MSG`.
pub fn error(msg: &str) -> Value {
    json!({ "Err": msg })
}

/// `Plugin.Activate`.
pub fn activated() -> Value {
    json!({ "Implements": ["NetworkDriver"] })
}

/// `NetworkDriver.GetCapabilities`: a local driver, as Docker's macvlan.
pub fn capabilities() -> Value {
    json!({ "Scope": "local", "ConnectivityScope": "local" })
}

/// The reply to `Join`: the interface `src` Docker moves into the container and names `eth…`,
/// and the gateways of the network (none, and no gateway service, for an internal network).
pub fn joined(src: &str, gateway: Option<IpAddr>, gateway6: Option<IpAddr>, internal: bool) -> Value {
    let mut v = json!({ "InterfaceName": { "SrcName": src, "DstPrefix": "eth" } });
    if let Some(g) = gateway {
        v["Gateway"] = json!(g.to_string());
    }
    if let Some(g) = gateway6 {
        v["GatewayIPv6"] = json!(g.to_string());
    }
    if internal || (gateway.is_none() && gateway6.is_none()) {
        // Otherwise Docker adds docker_gwbridge and a default route through it.
        v["DisableGatewayService"] = json!(true);
    }
    v
}

/// `Join`'s answer for an ipvlan L3 endpoint: no gateway; a default route out of the interface
/// (`RouteType` 1, connected) per family it has one in (`v4`, `v6`), as Docker's ipvlan L3 gives.
pub fn joined_routed(src: &str, v4: bool, v6: bool) -> Value {
    let mut v = json!({ "InterfaceName": { "SrcName": src, "DstPrefix": "eth" }, "DisableGatewayService": true });
    let routes: Vec<Value> = [(v4, "0.0.0.0/0"), (v6, "::/0")]
        .into_iter()
        .filter(|(has, _)| *has)
        .map(|(_, dst)| json!({ "Destination": dst, "RouteType": 1 }))
        .collect();
    if !routes.is_empty() {
        v["StaticRoutes"] = json!(routes);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(v: Value) -> CreateNetworkRequest {
        serde_json::from_value(v).expect("a CreateNetwork request")
    }

    #[test]
    fn a_network_as_docker_sends_it() {
        // As dockerd 20.10 sent it for `docker network create -d xmacvlan --subnet 198.18.77.0/24
        // --gateway 198.18.77.1 --aux-address a=198.18.77.5 -o parent=eth1.50 -o macvlan_mode=bridge`.
        let r = create(json!({
            "NetworkID": "4f1c0e",
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": { "parent": "eth1.50", "macvlan_mode": "bridge" }
            },
            "IPv4Data": [{ "AddressSpace": "LocalDefault", "Pool": "198.18.77.0/24", "Gateway": "198.18.77.1/24",
                           "AuxAddresses": { "a": "198.18.77.5/24" } }],
            "IPv6Data": []
        }));
        let c = network_spec(&r).unwrap();
        assert_eq!(c.name, "4f1c0e");
        assert!(!c.internal && !c.ipam.ipv6);
        assert_eq!(
            c.options,
            [("macvlan_mode".to_string(), "bridge".to_string()), ("parent".to_string(), "eth1.50".to_string())]
        );
        assert_eq!(c.ipam.subnets, ["198.18.77.0/24"]);
        assert_eq!(c.ipam.gateways, ["198.18.77.1"]);
        assert_eq!(c.ipam.aux_addresses, ["a=198.18.77.5"]);
        assert_eq!(c.driver, "macvlan");
    }

    #[test]
    fn dockers_ipvlan_options_select_ipvlan() {
        // `docker network create -d xmacvlan -o parent=eth1 -o ipvlan_mode=l3 ...`
        for generic in [json!({ "parent": "eth1", "ipvlan_mode": "l3" }), json!({ "ipvlan_flag": "private" })] {
            let r = create(json!({
                "NetworkID": "iv",
                "Options": { "com.docker.network.generic": generic },
                "IPv4Data": [{ "Pool": "198.18.79.0/24", "Gateway": "198.18.79.1/24" }]
            }));
            let c = network_spec(&r).unwrap();
            assert_eq!(c.driver, "ipvlan", "{generic}");
        }
        let v = joined_routed("xmc1", true, true);
        assert_eq!(
            v["StaticRoutes"],
            json!([{ "Destination": "0.0.0.0/0", "RouteType": 1 }, { "Destination": "::/0", "RouteType": 1 }])
        );
        assert!(v.get("Gateway").is_none() && v.get("GatewayIPv6").is_none());
        assert_eq!(v["DisableGatewayService"], json!(true));
        assert!(joined_routed("xmc1", false, false).get("StaticRoutes").is_none(), "internal: no routes");
    }

    #[test]
    fn internal_dual_stack_and_bad_values() {
        let r = create(json!({
            "NetworkID": "n",
            "Options": { "com.docker.network.internal": true, "com.docker.network.enable_ipv6": true,
                         "com.docker.network.generic": { "parent": "eth1", "com.docker.network.driver.mtu": "1400" } },
            "IPv4Data": [{ "Pool": "198.18.78.0/24", "Gateway": "198.18.78.1/24" }],
            "IPv6Data": [{ "Pool": "2001:2:0:78::/64", "Gateway": "2001:2:0:78::1/64" }]
        }));
        let c = network_spec(&r).unwrap();
        assert!(c.internal && c.ipam.ipv6);
        assert_eq!(c.options, [(MTU_OPTION.to_string(), "1400".to_string())], "no parent for an internal network");
        assert_eq!(c.ipam.subnets, ["198.18.78.0/24", "2001:2:0:78::/64"]);
        assert_eq!(c.ipam.gateways, ["198.18.78.1", "2001:2:0:78::1"]);
        // Null lists (as Go marshals an empty slice) are no pools.
        let c = network_spec(&create(json!({ "NetworkID": "n", "IPv4Data": null, "IPv6Data": null }))).unwrap();
        assert!(c.ipam.subnets.is_empty());
        let e = network_spec(&create(json!({ "NetworkID": "n", "IPv4Data": [{ "Pool": "nonsense" }] })));
        assert_eq!(e.unwrap_err(), "pool 'nonsense' is not a subnet");
    }

    #[test]
    fn dockerds_api_socket_and_a_networks_name() {
        assert_eq!(api_socket(b"dockerd\0--data-root\0/d\0"), PathBuf::from("/var/run/docker.sock"));
        assert_eq!(api_socket(b"dockerd\0-H\0tcp://0.0.0.0:2375\0-H\0unix:///x/d.sock\0"), PathBuf::from("/x/d.sock"));
        assert_eq!(api_socket(b"dockerd\0--host=unix:///y.sock\0"), PathBuf::from("/y.sock"));
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Name\":\"pub_net\",\"Id\":\"4f\"}\n";
        assert_eq!(network_name(ok).as_deref(), Some("pub_net"));
        assert_eq!(network_name(b"HTTP/1.0 404 Not Found\r\n\r\n{\"message\":\"no\"}"), None);
        assert_eq!(network_name(b"HTTP/1.0 200 OK\r\n\r\nnot json"), None);
    }

    #[test]
    fn endpoint_addresses_and_replies() {
        let i: EndpointInterface = serde_json::from_value(
            json!({ "Address": "198.18.77.2/24", "AddressIPv6": "2001:2:0:77::2/64", "MacAddress": "" }),
        )
        .unwrap();
        let a = endpoint_addresses(&i).unwrap();
        assert_eq!(a.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["198.18.77.2/24", "2001:2:0:77::2/64"]);
        let bad = EndpointInterface { address: "198.18.77.2".into(), ..Default::default() };
        assert_eq!(endpoint_addresses(&bad).unwrap_err(), "endpoint address '198.18.77.2' is not ip/len");
        let j = joined("xmc0", Some("198.18.77.1".parse().unwrap()), None, false);
        assert_eq!(j, json!({ "InterfaceName": { "SrcName": "xmc0", "DstPrefix": "eth" }, "Gateway": "198.18.77.1" }));
        let j = joined("xmc0", None, None, true);
        assert_eq!(j["DisableGatewayService"], true);
        assert_eq!(error("bad"), json!({ "Err": "bad" }));
    }
}
