//! The control socket's server and the daemon's background tasks: accepting clients (one request
//! line, one reply line each), following link state, sampling the workers' rates.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{Daemon, Key, Shared};
use crate::api::{CodedError, Envelope, Reply};
use crate::netlink::Link;
use crate::{api, netlink};

impl Daemon {
    pub(super) async fn link_event(&mut self, link: &Link, deleted: bool) {
        let found = self.nets.values().find_map(|n| {
            let dp = self.domains.get(&n.domain?)?.dp;
            let id = n.endpoints.find(&Key::Link(link.index))?;
            n.endpoints.get(id).map(|e| (dp, n.name.clone(), id, e.port, e.label()))
        });
        let Some((dp, net_name, id, port, label)) = found else { return };
        if deleted {
            // The namespace (or the link) went away under us: forget the endpoint.
            eprintln!("xmacvlan daemon: endpoint {label} on '{net_name}' disappeared; disconnecting it");
            self.dp.remove_endpoint(dp, port);
            if let Some(n) = self.nets.get_mut(&net_name) {
                if let Some(ep) = n.endpoints.remove(id) {
                    n.ipam.release(&ep.addrs);
                }
            }
            self.give_back_parent(&net_name).await;
            self.drop_if_unused(&net_name).await;
            if let Err(e) = self.persist() {
                eprintln!("xmacvlan daemon: {e:#}");
            }
        } else {
            // Events arrive late and in bursts (a connect sets the host end up before the
            // container end, and the carrier-off event of the first step can come after connect
            // already read carrier on): follow the link as it is now, not as the event saw it.
            let up = match netlink::link_by_index(&self.h, link.index).await {
                Ok(Some(now)) => now.lower_up,
                _ => link.lower_up,
            };
            self.dp.set_endpoint_up(dp, port, up);
        }
    }
}

/// Refuses to start next to a live daemon on the same socket.
pub(super) async fn refuse_if_live(path: &Path) -> Result<()> {
    if path.exists() && UnixStream::connect(path).await.is_ok() {
        bail!("another xmacvlan daemon is already listening on {}", path.display());
    }
    Ok(())
}

/// Binds the control socket: root-only (0600), refusing to steal it from a live daemon.
pub(super) async fn bind_socket(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    refuse_if_live(path).await?;
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub(super) async fn serve(daemon: Shared, stream: UnixStream) {
    // Peer credentials: only root (or the daemon's own user) may drive the datapath.
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let allowed = stream.peer_cred().map(|c| c.uid() == 0 || c.uid() == euid).unwrap_or(false);
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(rd).read_line(&mut line).await.is_err() {
        return;
    }
    let reply = if !allowed {
        failure("permission denied: the control socket is for root only".into())
    } else {
        match serde_json::from_str::<Envelope>(&line) {
            Err(e) => failure(format!("malformed request: {e}")),
            Ok(env) if env.version != api::API_VERSION => failure(format!(
                "API version mismatch: the CLI speaks v{}, this daemon v{}; use the xmacvlan binary that matches the running daemon",
                env.version,
                api::API_VERSION
            )),
            Ok(env) => {
                let mut d = daemon.lock().await;
                match d.handle(env.request).await {
                    Ok(data) => Reply { version: api::API_VERSION, ok: true, error: None, data, code: None },
                    Err(e) => {
                        let code = e.downcast_ref::<CodedError>().map(|c| c.code);
                        Reply { code, ..failure(format!("{e:#}")) }
                    }
                }
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = wr.write_all(&out).await;
}

pub(super) fn failure(msg: String) -> Reply {
    Reply { version: api::API_VERSION, ok: false, error: Some(msg), data: Value::Null, code: None }
}

/// Follows link events: the carrier of an endpoint's daemon-side veth mirrors its container side.
pub(super) async fn monitor_links(daemon: Shared) {
    let (conn, _h, mut msgs) = match rtnetlink::new_multicast_connection(&[MulticastGroup::Link]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xmacvlan daemon: link monitor unavailable: {e}");
            return;
        }
    };
    tokio::spawn(conn);
    while let Some((msg, _)) = msgs.next().await {
        let NetlinkPayload::InnerMessage(inner) = msg.payload else { continue };
        let (link, deleted) = match inner {
            RouteNetlinkMessage::NewLink(m) => (Link::from_message(&m), false),
            RouteNetlinkMessage::DelLink(m) => (Link::from_message(&m), true),
            _ => continue,
        };
        let mut d = daemon.lock().await;
        d.link_event(&link, deleted).await;
    }
}

pub(super) async fn sample_rates(daemon: Shared) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut d = daemon.lock().await;
        let now = d.dp.report().workers;
        let dt = d.rates.at.elapsed().as_secs_f64().max(1e-3);
        d.rates.per_sec = now
            .iter()
            .zip(&d.rates.workers)
            .map(|(n, p)| {
                let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                (r(n.rx_frames, p.rx_frames), r(n.tx_frames, p.tx_frames), r(n.dropped, p.dropped))
            })
            .collect();
        d.rates.workers = now;
        d.rates.at = Instant::now();
    }
}
