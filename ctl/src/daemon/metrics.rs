//! `daemon --metrics ADDR`: the counters for Prometheus on `GET /metrics` (`crate::metrics` renders
//! them), on a loopback address or a Unix socket only (they name the host's networks and ports).
//! Off by default. A scrape reads the board and the datapath's counters like `stats` does: it
//! never waits for a command in progress.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, UnixListener};

use super::board::Board;
use super::server::bind_socket;
use crate::{http, metrics};

pub(super) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds ADDR: a Unix socket path (root only, like the control socket), or a loopback
/// `IP:PORT`. The error names the value.
pub(super) async fn bind(addr: &str) -> Result<Listener> {
    if addr.starts_with('/') {
        return Ok(Listener::Unix(bind_socket(Path::new(addr)).await?));
    }
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| anyhow::anyhow!("--metrics '{addr}' is neither IP:PORT (127.0.0.1:9464) nor a socket path"))?;
    if !sa.ip().is_loopback() {
        bail!("--metrics {addr}: only a loopback address (127.0.0.1, [::1]) or a Unix socket path is served");
    }
    Ok(Listener::Tcp(TcpListener::bind(sa).await.with_context(|| format!("binding --metrics {addr}"))?))
}

/// Serves scrapes, each connection on its own task.
pub(super) async fn serve(listener: Listener, board: Arc<Board>) {
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| tokio::spawn(scrape(s, board.clone()))),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| tokio::spawn(scrape(s, board.clone()))),
        };
        if let Err(e) = accepted {
            eprintln!("xmacvlan daemon: accepting a metrics connection: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn scrape<S: AsyncRead + AsyncWrite + Unpin>(stream: S, board: Arc<Board>) {
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    loop {
        let (status, close, body) = match http::read_request(&mut rd).await {
            Ok(None) => return,
            Err(http::BadRequest(msg)) => (400, true, msg),
            Ok(Some(r)) if r.method == "GET" && r.path == "/metrics" => (200, r.close, metrics::render(&board.stats())),
            Ok(Some(r)) => (404, r.close, format!("{} {}: this endpoint serves GET /metrics\n", r.method, r.path)),
        };
        let written = http::write_reply(&mut wr, status, metrics::CONTENT_TYPE, body.as_bytes()).await;
        if written.is_err() || close {
            return;
        }
    }
}
