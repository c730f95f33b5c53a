//! The control socket's server and the daemon's background tasks: accepting clients (one request
//! line, one reply line each; readers answered from the board, commands one at a time), following
//! link state, sampling the workers' rates.
//!
//! No client can stall or starve the others: a request line is at most [`MAX_REQUEST`] bytes and
//! must arrive within [`READ_DEADLINE`]; at most [`MAX_READERS`] connections may be sending theirs
//! at once (a newer one closes the oldest); running out of descriptors closes the older half of
//! those and accepts again (or, with none to close, waits), and never ends the daemon.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use super::board::Board;
use super::dispatch::read;
use super::{Daemon, Key, Shared};
use crate::api::{CodedError, Envelope, Reply};
use crate::netlink::Link;
use crate::{api, netlink};

impl Daemon {
    pub(super) async fn link_event(&mut self, link: &Link, deleted: bool) {
        if self.parent_event(link, deleted).await {
            return;
        }
        let found = self.nets.values().find_map(|n| {
            let dp = self.domains.get(&n.domain?)?.dp;
            let id = n.endpoints.find(&Key::Link(link.index))?;
            n.endpoints.get(id).map(|e| (dp, n.name.clone(), id, e.port, e.label()))
        });
        let Some((dp, net_name, id, port, label)) = found else { return };
        if deleted {
            // The namespace (or the link) went away under us: forget the endpoint.
            eprintln!("xmacvlan daemon: endpoint {label} on '{net_name}' disappeared; disconnecting it");
            self.dp().remove_endpoint(dp, port);
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
            self.post(&net_name);
        } else {
            // Events arrive late and in bursts (a connect sets the host end up before the
            // container end, and the carrier-off event of the first step can come after connect
            // already read carrier on): follow the link as it is now, not as the event saw it.
            let up = match netlink::link_by_index(&self.h, link.index).await {
                Ok(Some(now)) => now.lower_up,
                _ => link.lower_up,
            };
            self.dp().set_endpoint_up(dp, port, up);
        }
    }
}

impl Daemon {
    /// A parent that went (its networks go inactive) or a link whose name an inactive network
    /// waits for as its parent (they come back). Whether the event was about a parent.
    async fn parent_event(&mut self, link: &Link, deleted: bool) -> bool {
        if deleted {
            if !self.domains.get(&link.index).is_some_and(|d| !d.anchor && d.link.name == link.name) {
                return false;
            }
            self.parent_gone(link.index).await;
        } else {
            let waiting: Vec<String> = self
                .nets
                .values()
                .filter(|n| n.domain.is_none())
                .filter(|n| {
                    n.parent.as_deref().is_some_and(|p| p == link.name || p.starts_with(&format!("{}.", link.name)))
                })
                .map(|n| n.name.clone())
                .collect();
            if waiting.is_empty() {
                return false;
            }
            for name in waiting {
                match self.activate(&name).await {
                    Ok(_) => eprintln!("xmacvlan daemon: network '{name}' is active again: {} is back", link.name),
                    Err(e) => {
                        eprintln!("xmacvlan daemon: network '{name}' stays inactive: {e:#}");
                        if let Some(n) = self.nets.get_mut(&name) {
                            n.status = format!("inactive: {e:#}");
                        }
                    }
                }
            }
        }
        if let Err(e) = self.persist() {
            eprintln!("xmacvlan daemon: {e:#}");
        }
        self.post_all();
        true
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

/// The longest request line taken; a longer one is refused unread (the biggest real request, a CNI
/// GC listing thousands of attachments, is far below).
pub(super) const MAX_REQUEST: usize = 1 << 20;
/// How long a client may take to send its request line.
pub(super) const READ_DEADLINE: Duration = Duration::from_secs(5);
/// How long a client may take to read its reply.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections still sending their request at once; a newer one closes the oldest of them.
pub(super) const MAX_READERS: usize = 256;
/// The longest error message quoted from the request decoder (it may quote the request).
const MAX_QUOTED: usize = 200;

/// The connections still sending their request, oldest first. There are at most [`MAX_READERS`]:
/// a new connection closes the oldest one, so clients that connect and send nothing (or half a
/// line) can neither hold the daemon's descriptors nor lock out a client that has a request.
#[derive(Default)]
pub(super) struct Readers {
    next: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

pub(super) type SharedReaders = Arc<std::sync::Mutex<Readers>>;

impl Readers {
    /// Admits a new connection: its id and the signal that it was closed for a newer one.
    fn admit(&mut self) -> (u64, oneshot::Receiver<()>) {
        if self.waiting.len() >= MAX_READERS {
            if let Some((_, oldest)) = self.waiting.pop_front() {
                let _ = oldest.send(());
            }
        }
        let id = self.next;
        self.next += 1;
        let (tx, rx) = oneshot::channel();
        self.waiting.push_back((id, tx));
        (id, rx)
    }

    /// Out of descriptors: closes the older half of the connections still sending their request
    /// (at least one), so that the connections waiting to be accepted, a client with a request
    /// among them, get descriptors. How many were closed.
    pub(super) fn shed(&mut self) -> usize {
        let n = self.waiting.len().div_ceil(2);
        for (_, oldest) in self.waiting.drain(..n) {
            let _ = oldest.send(());
        }
        n
    }

    /// Connection `id` has sent its request (or is gone).
    fn done(&mut self, id: u64) {
        self.waiting.retain(|(i, _)| *i != id);
    }
}

/// Reads one request line of at most [`MAX_REQUEST`] bytes (a last line without its newline is
/// taken too). The error is what the client is told.
async fn read_request(rd: &mut OwnedReadHalf) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut r = BufReader::new(rd.take(MAX_REQUEST as u64 + 1));
    r.read_until(b'\n', &mut buf).await.map_err(|e| format!("reading the request: {e}"))?;
    if buf.len() > MAX_REQUEST {
        return Err(format!("request refused: longer than {MAX_REQUEST} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "request refused: not UTF-8".to_string())
}

pub(super) async fn serve(daemon: Shared, board: Arc<Board>, readers: SharedReaders, stream: UnixStream) {
    // Peer credentials: only root (or the daemon's own user) may drive the datapath.
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let allowed = stream.peer_cred().map(|c| c.uid() == 0 || c.uid() == euid).unwrap_or(false);
    let (mut rd, mut wr) = stream.into_split();
    let (id, evicted) = readers.lock().unwrap_or_else(|e| e.into_inner()).admit();
    let line = tokio::select! {
        r = tokio::time::timeout(READ_DEADLINE, read_request(&mut rd)) => {
            r.unwrap_or_else(|_| Err(format!("request refused: no complete line within {} s", READ_DEADLINE.as_secs())))
        }
        _ = evicted => Err(format!(
            "closed: more than {MAX_READERS} connections were sending requests, and this one was the oldest"
        )),
    };
    readers.lock().unwrap_or_else(|e| e.into_inner()).done(id);
    let reply = match line {
        Ok(line) if line.is_empty() => return,
        Err(msg) => failure(msg),
        Ok(_) if !allowed => failure("permission denied: the control socket is for root only".into()),
        Ok(line) => match serde_json::from_str::<Envelope>(&line) {
            Err(e) => failure(format!("malformed request: {}", quote(&e.to_string()))),
            Ok(env) if env.version != api::API_VERSION => failure(format!(
                "API version mismatch: the CLI speaks v{}, this daemon v{}; use the xmacvlan binary that matches the running daemon",
                env.version,
                api::API_VERSION
            )),
            Ok(env) => {
                // A reader answers from the board; a command waits for the registry.
                let answer = match read(&board, &env.request) {
                    Some(answer) => answer,
                    None => {
                        let mut d = daemon.lock().await;
                        // A client that gave up while the command waited for its turn (a CNI
                        // plugin past its deadline, which has given its addresses back) is not
                        // answered with a change it will never hear of.
                        if hung_up(&rd) {
                            return;
                        }
                        d.handle(env.request).await
                    }
                };
                match answer {
                    Ok(data) => Reply { version: api::API_VERSION, ok: true, error: None, data, code: None },
                    Err(e) => {
                        let code = e.downcast_ref::<CodedError>().map(|c| c.code);
                        Reply { code, ..failure(format!("{e:#}")) }
                    }
                }
            }
        },
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = tokio::time::timeout(WRITE_DEADLINE, wr.write_all(&out)).await;
}

/// Whether the client has closed its connection (POLLHUP: both directions shut; a client that
/// only shut down its sending side after its request, as `socat` does, still waits for the reply).
fn hung_up(rd: &OwnedReadHalf) -> bool {
    let mut p = libc::pollfd { fd: rd.as_ref().as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: poll reads and writes the one pollfd given, and returns at once (timeout 0).
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLHUP != 0
}

/// At most [`MAX_QUOTED`] characters of `s`.
fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
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

pub(super) async fn sample_rates(board: Arc<Board>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        board.sample();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_reader_closes_the_oldest_when_all_places_are_taken() {
        let mut r = Readers::default();
        let mut first: Vec<_> = (0..MAX_READERS).map(|_| r.admit()).collect();
        assert!(first.iter_mut().all(|(_, rx)| rx.try_recv().is_err()), "none closed while there is room");
        // One has sent its request: its place is free again.
        r.done(first[5].0);
        let (_, mut newest) = r.admit();
        assert!(first.iter_mut().all(|(_, rx)| rx.try_recv().is_err()), "a freed place is used first");
        // Full again: the next one closes the oldest still waiting (0), then the next oldest (1).
        let _ = r.admit();
        assert!(first[0].1.try_recv().is_ok(), "the oldest is closed");
        let _ = r.admit();
        assert!(first[1].1.try_recv().is_ok());
        assert!(first[2].1.try_recv().is_err() && newest.try_recv().is_err());
        assert_eq!(r.waiting.len(), MAX_READERS);
        // Out of descriptors: the older half goes, oldest first.
        assert_eq!(r.shed(), MAX_READERS / 2);
        // Waiting were 2, 3, 4, then 6 on (0 and 1 closed, 5 done): the half ends at 2 + half.
        let half = MAX_READERS / 2;
        assert!(first[2].1.try_recv().is_ok() && first[2 + half].1.try_recv().is_ok());
        assert!(first[3 + half].1.try_recv().is_err());
        assert_eq!(r.waiting.len(), MAX_READERS / 2);
        let mut r = Readers::default();
        assert_eq!(r.shed(), 0, "nothing to close");
        let (_, mut only) = r.admit();
        assert_eq!(r.shed(), 1, "at least one");
        assert!(only.try_recv().is_ok());
    }

    #[test]
    fn quoted_errors_are_bounded() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(1000);
        let q = quote(&long);
        assert_eq!(q.chars().count(), MAX_QUOTED + 1, "{MAX_QUOTED} characters and an ellipsis");
        assert!(q.ends_with('…'));
    }
}
