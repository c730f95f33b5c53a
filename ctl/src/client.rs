//! The one client of the control socket: a request line out, a reply line back, the reply's data
//! read as the type [`api::reply`] says it is. The CLI, the CNI plugin, the bench and the tests all
//! talk to the daemon through it. Blocking, with a deadline on every exchange: a daemon that does
//! not answer is an error that says so, never a hung caller.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::api::reply::{
    CniChecked, CniCollected, CniDeleted, CniReady, Connected, Disconnected, NetworkInspect, NetworkRemoved,
    SourceMacs, Stats,
};
use crate::api::{self, Attachment, CniAdd, CniCheck, Envelope, NetworkView, Reply, Request};

/// How long one exchange may take unless the caller says otherwise: a connect or a network
/// removal with many endpoints takes seconds, never this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(
        "no xmacvlan daemon is listening on {} ({source}); start one with `sudo xmacvlan daemon` \
         (or point --socket / XMACVLAN_SOCKET at the one you started)", socket.display()
    )]
    NoDaemon { socket: PathBuf, source: std::io::Error },
    #[error("talking to the xmacvlan daemon at {}: {source}", socket.display())]
    Io { socket: PathBuf, source: std::io::Error },
    #[error("the daemon's reply is not understood (is it a different xmacvlan version?): {0}")]
    Decode(String),
    #[error("the daemon speaks API v{daemon}, this client v{}: use matching versions", api::API_VERSION)]
    Version { daemon: u32 },
    /// The daemon refused the request; `code` is the CNI error code it chose, for CNI requests.
    #[error("{msg}")]
    Refused { msg: String, code: Option<u32> },
}

pub type Result<T, E = CallError> = std::result::Result<T, E>;

pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client { socket: socket.into(), timeout: DEFAULT_TIMEOUT }
    }

    /// Every exchange (the request written, the reply read) within `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `request` and reads its reply's data as a `T`.
    pub fn call<T: DeserializeOwned>(&self, request: Request) -> Result<T> {
        let stream = UnixStream::connect(&self.socket)
            .map_err(|source| CallError::NoDaemon { socket: self.socket.clone(), source })?;
        let io = |source| CallError::Io { socket: self.socket.clone(), source };
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut line = serde_json::to_vec(&Envelope { version: api::API_VERSION, request })
            .map_err(|e| CallError::Decode(e.to_string()))?;
        line.push(b'\n');
        (&stream).write_all(&line).map_err(io)?;
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
        if answer.is_empty() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection without a reply",
            )));
        }
        let reply: Reply = serde_json::from_str(&answer).map_err(|e| CallError::Decode(format!("{e}: {answer:?}")))?;
        if reply.version != api::API_VERSION {
            return Err(CallError::Version { daemon: reply.version });
        }
        if !reply.ok {
            let msg = reply.error.unwrap_or_else(|| "the daemon reported an unspecified error".into());
            return Err(CallError::Refused { msg, code: reply.code });
        }
        serde_json::from_value(reply.data).map_err(|e| CallError::Decode(e.to_string()))
    }

    pub fn create(&self, c: api::CreateNetwork) -> Result<NetworkView> {
        self.call(Request::NetworkCreate(c))
    }

    pub fn rm(&self, name: String, force: bool) -> Result<NetworkRemoved> {
        self.call(Request::NetworkRm { name, force })
    }

    pub fn ls(&self) -> Result<Vec<NetworkView>> {
        self.call(Request::NetworkLs)
    }

    pub fn inspect(&self, name: String) -> Result<NetworkInspect> {
        self.call(Request::NetworkInspect { name })
    }

    pub fn connect(&self, c: api::Connect) -> Result<Connected> {
        self.call(Request::Connect(c))
    }

    pub fn disconnect(&self, network: String, endpoint: String) -> Result<Disconnected> {
        self.call(Request::Disconnect { network, endpoint })
    }

    pub fn macaddr(
        &self,
        network: String,
        endpoint: String,
        action: api::MacaddrAction,
        macs: Vec<String>,
    ) -> Result<SourceMacs> {
        self.call(Request::Macaddr { network, endpoint, action, macs })
    }

    pub fn stats(&self) -> Result<Stats> {
        self.call(Request::Stats)
    }

    pub fn cni_add(&self, a: CniAdd) -> Result<Connected> {
        self.call(Request::CniAdd(a))
    }

    pub fn cni_del(&self, network: String, attachment: Attachment) -> Result<CniDeleted> {
        self.call(Request::CniDel { network, attachment })
    }

    pub fn cni_check(&self, c: CniCheck) -> Result<CniChecked> {
        self.call(Request::CniCheck(c))
    }

    pub fn cni_status(&self, network: String, master: Option<String>) -> Result<CniReady> {
        self.call(Request::CniStatus { network, master })
    }

    pub fn cni_gc(&self, network: String, valid: Vec<Attachment>) -> Result<CniCollected> {
        self.call(Request::CniGc { network, valid })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A daemon stand-in on a socket in a fresh temporary directory: answers each connection with
    /// `answer` (or nothing, when None: it reads the request and then keeps the connection open).
    fn stand_in(answer: Option<String>) -> (PathBuf, std::thread::JoinHandle<()>) {
        let dir =
            std::env::temp_dir().join(format!("xmv-client-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = String::new();
            BufReader::new(&s).read_line(&mut req).unwrap();
            assert!(req.contains("\"op\":\"stats\""), "{req}");
            match answer {
                Some(a) => s.write_all(a.as_bytes()).unwrap(),
                None => std::thread::sleep(Duration::from_millis(500)),
            }
        });
        (path, h)
    }

    #[test]
    fn a_reply_is_read_as_its_type() {
        let line = format!(
            "{{\"version\":{},\"ok\":true,\"data\":{{\"workers\":[{{\"id\":0,\"rx_frames\":7}}],\"networks\":[]}}}}\n",
            api::API_VERSION
        );
        let (path, h) = stand_in(Some(line));
        let s = Client::new(&path).stats().unwrap();
        let w = &s.workers[0].counters;
        assert_eq!((s.workers.len(), w.rx_frames, w.tx_frames), (1, 7, 0));
        h.join().unwrap();
    }

    #[test]
    fn refusals_versions_silence_and_absence_are_errors_that_say_so() {
        let refused = format!(
            "{{\"version\":{},\"ok\":false,\"error\":\"network 'x' not found\",\"code\":3}}\n",
            api::API_VERSION
        );
        let (path, h) = stand_in(Some(refused));
        match Client::new(&path).stats() {
            Err(CallError::Refused { msg, code: Some(3) }) => assert_eq!(msg, "network 'x' not found"),
            other => panic!("{other:?}"),
        }
        h.join().unwrap();

        let (path, h) = stand_in(Some("{\"version\":1,\"ok\":true,\"data\":null}\n".into()));
        let e = Client::new(&path).stats().unwrap_err();
        assert!(matches!(e, CallError::Version { daemon: 1 }), "{e:?}");
        assert!(e.to_string().contains("API v1"), "{e}");
        h.join().unwrap();

        let (path, h) = stand_in(None);
        let e = Client::new(&path).with_timeout(Duration::from_millis(100)).stats().unwrap_err();
        assert!(matches!(e, CallError::Io { .. }), "a silent daemon times out: {e:?}");
        h.join().unwrap();

        let gone = std::env::temp_dir().join("xmv-client-no-such-dir/x.sock");
        let e = Client::new(&gone).stats().unwrap_err();
        assert!(matches!(e, CallError::NoDaemon { .. }) && e.to_string().contains("xmv-client-no-such-dir"), "{e}");
    }
}
