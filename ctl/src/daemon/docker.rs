//! The daemon's half of the Docker network driver (`daemon --docker-plugin NAME`): the plugin
//! socket `/run/docker/plugins/NAME.sock`, and what each call of Docker's remote driver protocol
//! does to the registry (the protocol's shapes are `crate::docker`).
//!
//! A Docker network is a daemon network named by Docker's NetworkID, with the pools Docker's IPAM
//! chose (Docker hands out the addresses). `CreateEndpoint` reserves an endpoint's MAC (the one
//! given with `--mac-address`, else derived from its IPv4 address as Docker does, and answered
//! back); `Join` makes its veth pair with the datapath on our end and the other end, named
//! `xmc…`, in dockerd's namespace, where Docker takes it, moves it into the container and names it
//! `eth…`; `Leave` removes the pair, `DeleteEndpoint` the reservation. Every call is idempotent
//! where Docker may repeat it, saves the state before it answers, and undoes itself when it fails.

use std::collections::BTreeMap;
use std::fs::File;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::Mode;

use super::connect::{Plan, Veth};
use super::endpoints::{Endpoint, Key};
use super::ipvlan::IpvlanPlan;
use super::{random_mac, rules, Daemon, Owner, Shared};
use crate::docker::{self, CreateEndpointRequest, CreateNetworkRequest, EndpointRef, JoinRequest, NetworkRef};
use crate::http;
use crate::ipam::{derive_mac, Assigned};
use crate::state::{EndpointKind, EndpointState};

/// An endpoint Docker created and has not joined yet: what `Join` will make.
#[derive(Debug, Clone)]
pub(super) struct Reserved {
    pub(super) mac: MacAddr,
    pub(super) addrs: Vec<Assigned>,
}

/// The endpoints of a Docker network between `CreateEndpoint` and `DeleteEndpoint`, by EndpointID
/// (kept in memory: a daemon restarted between a `CreateEndpoint` and its `Join`, milliseconds
/// apart, fails the `Join` and Docker rolls the endpoint back).
pub(super) type Reservations = BTreeMap<String, Reserved>;

/// Binds the plugin socket (root only), refusing to take it from a live daemon.
pub(super) async fn bind(name: &str) -> Result<UnixListener> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        bail!("--docker-plugin '{name}' is not a valid plugin name (letters, digits, '_', '.', '-')");
    }
    let path = docker::socket_path(name);
    super::server::bind_socket(&path).await
}

/// Serves the plugin socket: every connection on its own task, its calls one after another.
pub(super) async fn serve(listener: UnixListener, daemon: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(daemon.clone(), stream));
            }
            Err(e) => {
                eprintln!("xmacvlan daemon: accepting a Docker plugin connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(daemon: Shared, stream: UnixStream) {
    let cred = stream.peer_cred().ok();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let allowed = cred.is_some_and(|c| c.uid() == 0 || c.uid() == euid);
    let peer = cred.and_then(|c| c.pid());
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let req = match http::read_request(&mut rd).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(http::BadRequest(msg)) => {
                let _ =
                    http::write_reply(&mut wr, 400, docker::CONTENT_TYPE, docker::error(&msg).to_string().as_bytes())
                        .await;
                return;
            }
        };
        let (status, body) = if !allowed {
            (200, docker::error("permission denied: the plugin socket is for root only"))
        } else if req.method != "POST" {
            (405, docker::error(&format!("{} {}: plugin calls are POSTs", req.method, req.path)))
        } else {
            answer(&daemon, &req.path, &req.body, peer).await
        };
        let written = http::write_reply(&mut wr, status, docker::CONTENT_TYPE, body.to_string().as_bytes()).await;
        if written.is_err() || req.close {
            return;
        }
    }
}

/// The reply to one call: 200 with its result (or `{"Err": …}`), 404 for a call we do not know.
async fn answer(daemon: &Shared, path: &str, body: &[u8], peer: Option<i32>) -> (u16, Value) {
    let call = path.strip_prefix("/NetworkDriver.").unwrap_or(path);
    let reply = match call {
        "/Plugin.Activate" => Ok(docker::activated()),
        "GetCapabilities" => Ok(docker::capabilities()),
        // Nothing of ours to program or report: the datapath forwards by MAC, with no port
        // mappings.
        "EndpointOperInfo" => Ok(json!({ "Value": {} })),
        "ProgramExternalConnectivity" | "RevokeExternalConnectivity" | "DiscoverNew" | "DiscoverDelete" => {
            Ok(json!({}))
        }
        "CreateNetwork" | "DeleteNetwork" | "CreateEndpoint" | "Join" | "Leave" | "DeleteEndpoint" => {
            let reply = daemon.lock().await.docker_call(call, body, peer).await;
            // By its first Join a network is Docker's to describe: learn its name beside us.
            if let (true, Some(pid), Ok(r)) = (call == "Join" && reply.is_ok(), peer, decode::<NetworkRef>(call, body))
            {
                tokio::spawn(learn_name(daemon.clone(), pid, r.network_id));
            }
            reply
        }
        _ => return (404, docker::error(&format!("unknown call {path}"))),
    };
    (200, reply.unwrap_or_else(|e| docker::error(&format!("{e:#}"))))
}

/// Asks dockerd (process `pid`) the name of network `id`, which Docker never tells a driver, and
/// records it (`ls` shows it). Runs beside the registry, not under it: dockerd answers its API
/// while it waits for a driver, and a dockerd that does not answer within 2 s leaves the name
/// unknown until the network's next Join.
async fn learn_name(daemon: Shared, pid: i32, id: String) {
    if daemon.lock().await.nets.get(&id).is_none_or(|n| n.docker_name.is_some()) {
        return;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return };
    let socket = docker::api_socket(&cmdline);
    let ask = async {
        let mut s = UnixStream::connect(&socket).await?;
        s.write_all(format!("GET /networks/{id} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes()).await?;
        let mut answer = Vec::new();
        s.take(1 << 20).read_to_end(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let Ok(Ok(answer)) = tokio::time::timeout(std::time::Duration::from_secs(2), ask).await else { return };
    let Some(name) = docker::network_name(&answer) else { return };
    let mut d = daemon.lock().await;
    let Some(n) = d.nets.get_mut(&id) else { return };
    n.docker_name = Some(name);
    d.persist_after("learning a Docker network's name");
    d.post(&id);
}

fn decode<T: DeserializeOwned>(call: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| anyhow!("{call}: malformed request: {e}"))
}

/// `xmv…` (ours) and `xmc…` (the container's, in dockerd's namespace until Docker moves it): an
/// endpoint's two link names, from its network and EndpointID.
fn link_names(net: u32, endpoint_id: &str) -> (String, String) {
    // FNV-1a over the ID, mixed with the network: stable across restarts, 32 bits like connect's.
    let mut h: u32 = 0x811c_9dc5 ^ net.wrapping_mul(0x9e37_79b9);
    for b in endpoint_id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (format!("xmv{h:08x}"), format!("xmc{h:08x}"))
}

impl Daemon {
    /// One call that changes the registry; its reply. The networks it touched are posted for
    /// the readers, and the links it recorded are accounted for, whatever the outcome.
    async fn docker_call(&mut self, call: &str, body: &[u8], peer: Option<i32>) -> Result<Value> {
        let network = serde_json::from_slice::<NetworkRef>(body).ok().map(|r| r.network_id);
        let reply = match call {
            "CreateNetwork" => self.docker_create_network(decode(call, body)?).await,
            "DeleteNetwork" => self.docker_delete_network(decode(call, body)?).await,
            "CreateEndpoint" => self.docker_create_endpoint(decode(call, body)?).await,
            "Join" => self.docker_join(decode(call, body)?, peer).await,
            "Leave" => self.docker_leave(&decode(call, body)?).await,
            "DeleteEndpoint" => self.docker_delete_endpoint(decode(call, body)?).await,
            _ => unreachable!("answer() passes only these"),
        };
        self.intents.clear();
        if let Some(n) = network {
            self.post(&n);
        }
        reply
    }

    /// A network of Docker's, by NetworkID.
    fn docker_net(&self, id: &str) -> Result<&super::Network> {
        let n = self.nets.get(id).ok_or_else(|| anyhow!("network {id} is not known to xmacvlan"))?;
        if n.owner != Owner::Docker {
            bail!("network {id} was not made by Docker");
        }
        Ok(n)
    }

    async fn docker_create_network(&mut self, r: CreateNetworkRequest) -> Result<Value> {
        if self.nets.get(&r.network_id).is_some_and(|n| n.owner == Owner::Docker) {
            return Ok(json!({}));
        }
        let c = docker::network_spec(&r).map_err(|e| anyhow!(e))?;
        let name = c.name.clone();
        self.create_network(c, Owner::Docker).await?;
        if let Err(e) = self.persist() {
            let _ = self.remove(&name, true).await;
            return Err(e.context("the network was not created"));
        }
        Ok(json!({}))
    }

    async fn docker_delete_network(&mut self, r: NetworkRef) -> Result<Value> {
        if self.docker_net(&r.network_id).is_err() {
            return Ok(json!({}));
        }
        // Docker refuses to remove a network with endpoints; any left (a Leave we missed) go too.
        self.remove_saved(&r.network_id, true, "DeleteNetwork").await?;
        Ok(json!({}))
    }

    async fn docker_create_endpoint(&mut self, r: CreateEndpointRequest) -> Result<Value> {
        let net = self.docker_net(&r.network_id)?;
        let i = r.interface.unwrap_or_default();
        let addrs = docker::endpoint_addresses(&i).map_err(|e| anyhow!(e))?;
        let given = rules::requested_mac((!i.mac_address.is_empty()).then_some(i.mac_address.as_str()))?;
        let dkey = net.domain.ok_or_else(|| anyhow!("network {} is {}", r.network_id, net.status))?;
        if net.opts.ipvlan.is_some() {
            // The parent's MAC, for every endpoint; its addresses are what tells it apart.
            rules::ipvlan_endpoint(&r.network_id, None, given.map(|m| m.to_string()).as_deref())?;
            let ips: Vec<_> = addrs.iter().map(|a| a.ip).collect();
            self.ipvlan_addrs_free(dkey, net.vlan, &ips, Some(&r.endpoint_id))?;
            let mac = self.ipvlan_mac(dkey)?;
            let net = self.nets.get_mut(&r.network_id).expect("found above");
            net.reserved.insert(r.endpoint_id, Reserved { mac, addrs });
            return Ok(json!({ "Interface": { "MacAddress": mac.to_string() } }));
        }
        let passthru = net.opts.mode == Mode::Passthru;
        let dom = &self.domains[&dkey];
        if passthru {
            let existing = net.endpoints.first().map(|e| e.label()).or_else(|| net.reserved.keys().next().cloned());
            let sharing = self.nets.values().find(|n| n.domain == Some(dkey) && n.name != r.network_id);
            rules::passthru_endpoint(
                &r.network_id,
                &dom.link.name,
                existing,
                given,
                dom.link.mac,
                sharing.map(|n| n.name.as_str()),
            )?;
        }
        let mac = match (given, passthru) {
            (Some(m), _) => m,
            (None, true) => dom.link.mac.expect("a parent link has a MAC"),
            (None, false) => derive_mac(&addrs).map_or_else(random_mac, MacAddr),
        };
        self.check_mac(mac, dkey, net.vlan, passthru)?;
        if let Some((other, _)) =
            self.nets.values().filter(|n| n.domain == Some(dkey) && n.vlan == net.vlan).find_map(|n| {
                n.reserved.iter().find(|(id, e)| e.mac == mac && **id != r.endpoint_id).map(|(id, _)| (id, n))
            })
        {
            bail!("MAC {mac} is already taken by Docker endpoint {other}");
        }
        let net = self.nets.get_mut(&r.network_id).expect("found above");
        net.reserved.insert(r.endpoint_id, Reserved { mac, addrs });
        // Docker takes a MAC we chose; one it gave must not be answered (it would roll back).
        Ok(if given.is_some() { json!({}) } else { json!({ "Interface": { "MacAddress": mac.to_string() } }) })
    }

    async fn docker_join(&mut self, r: JoinRequest, peer: Option<i32>) -> Result<Value> {
        let net = self.docker_net(&r.network_id)?;
        let (host, src) = link_names(net.id, &r.endpoint_id);
        let reply = |net: &super::Network| {
            let gws = net.ipam.default_gateways();
            let gw = |v6: bool| gws.iter().copied().find(|g| g.is_ipv6() == v6);
            // ipvlan L3: default routes out of the interface, no gateway (Docker's ipvlan L3).
            if net.opts.ipvlan.is_some_and(|i| i.mode.routed()) {
                let any = |v6: bool| gw(v6).is_some() && !net.internal;
                return docker::joined_routed(&src, any(false), any(true));
            }
            docker::joined(&src, gw(false), gw(true), net.internal)
        };
        if net.endpoints.find(&Key::Name(r.endpoint_id.clone())).is_some() {
            return Ok(reply(net));
        }
        let res = net.reserved.get(&r.endpoint_id).cloned().ok_or_else(|| {
            anyhow!(
                "endpoint {} was not created on network {} (or the daemon restarted since)",
                r.endpoint_id,
                r.network_id
            )
        })?;
        let pid = peer.ok_or_else(|| anyhow!("Join: the caller's process is unknown (no SO_PEERCRED)"))?;
        let ns_path = format!("/proc/{pid}/ns/net");
        let ns = File::open(&ns_path).with_context(|| format!("opening dockerd's network namespace {ns_path}"))?;
        let dkey = net.domain.ok_or_else(|| anyhow!("network {} is {}", r.network_id, net.status))?;
        let dom = &self.domains[&dkey];
        let mtu = rules::endpoint_mtu(net.opts.mtu, dom.link.mtu, net.internal, &dom.link.name)?;
        let (o, passthru, dp) = (net.ep_opts(), net.opts.mode == Mode::Passthru, dom.dp);
        let ipvlan = match o.ipvlan {
            Some(port) => Some(IpvlanPlan { port, dev_id: self.ipvlan_dev_id(dkey)? }),
            None => None,
        };
        for name in [&host, &src] {
            if crate::netlink::link_by_name(&self.h, name).await?.is_some() {
                bail!("an interface named {name} exists already in the daemon's namespace");
            }
        }
        if passthru {
            self.take_parent(&r.network_id, dkey, res.mac).await?;
        }
        let built = match self.intents.record(std::slice::from_ref(&host)) {
            Err(e) => Err(e.context("the endpoint was not joined: recording the link about to be made")),
            Ok(()) => {
                let veth = Veth { host: &host, ifname: &src, ns: Some(ns), netns: "dockerd", addrs: &[], routes: &[] };
                self.build_veth(
                    Plan {
                        dp,
                        opts: o,
                        mac: res.mac,
                        mtu,
                        create: true,
                        addrs: res.addrs.iter().map(|a| a.ip).collect(),
                        ipvlan,
                    },
                    veth,
                )
                .await
            }
        };
        let (port, host_index) = match built {
            Ok(b) => b,
            Err(e) => {
                if passthru {
                    self.give_back_parent(&r.network_id).await;
                }
                return Err(e);
            }
        };
        let st = EndpointState {
            kind: EndpointKind::Docker { endpoint_id: r.endpoint_id.clone() },
            ifname: src.clone(),
            host: host.clone(),
            mac: res.mac.to_string(),
            addrs: res.addrs.iter().map(|a| a.to_string()).collect(),
            mtu,
            source_macs: Vec::new(),
            cni: None,
            routes: Vec::new(),
            spoof_check: None,
            ip_guard: None,
            ipvlan_id: ipvlan.map(|i| i.dev_id),
        };
        let net = self.nets.get_mut(&r.network_id).expect("found above");
        net.endpoints.push(Endpoint { st, port, host_index, mac: res.mac, addrs: res.addrs });
        if let Err(e) = self.persist() {
            let id = self.nets[&r.network_id].endpoints.find(&Key::Name(r.endpoint_id.clone())).expect("just added");
            let _ = self.disconnect_at(&r.network_id, id).await;
            return Err(e.context("the endpoint was not joined"));
        }
        Ok(reply(&self.nets[&r.network_id]))
    }

    async fn docker_leave(&mut self, r: &EndpointRef) -> Result<Value> {
        let Ok(net) = self.docker_net(&r.network_id) else { return Ok(json!({})) };
        let Some(id) = net.endpoints.find(&Key::Name(r.endpoint_id.clone())) else { return Ok(json!({})) };
        self.disconnect_saved(&r.network_id, id, "Leave").await?;
        Ok(json!({}))
    }

    async fn docker_delete_endpoint(&mut self, r: EndpointRef) -> Result<Value> {
        // Joined still (Docker could not reach us for its Leave): leave first.
        self.docker_leave(&r).await?;
        if let Some(n) = self.nets.get_mut(&r.network_id) {
            n.reserved.remove(&r.endpoint_id);
        }
        Ok(json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_are_stable_distinct_and_short() {
        let (h, c) = link_names(3, "8a3f0c");
        assert_eq!((h.len(), c.len()), (11, 11));
        assert_eq!(&h[3..], &c[3..]);
        assert_eq!(link_names(3, "8a3f0c"), (h.clone(), c));
        assert_ne!(link_names(4, "8a3f0c").0, h, "another network");
        assert_ne!(link_names(3, "8a3f0d").0, h, "another endpoint");
    }
}
