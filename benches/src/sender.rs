//! The container-side generator: a thread inside a container namespace that sends one frame over
//! and over through an AF_PACKET socket on the container's interface, 64 frames per sendmmsg(2),
//! bypassing the qdisc (PACKET_QDISC_BYPASS), as an application that blasts raw frames would.
//!
//! BPF live frames cannot be used here: they leave through the device's ndo_xdp_xmit, which a
//! macvlan child does not have, and both backends must see the same sender.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use xmacvlan_lab::sys::{self, PacketSocket};

const PACKET_QDISC_BYPASS: libc::c_int = 20;
const BATCH: usize = 64;

pub struct Sender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Sender {
    /// Starts sending `frame` out of interface `ifindex` of the namespace at `netns`, from a thread
    /// pinned to `cpu`.
    pub fn start(netns: PathBuf, ifindex: i32, cpu: usize, frame: Vec<u8>) -> Result<Sender> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let (s2, c2) = (stop.clone(), sent.clone());
        let handle = std::thread::Builder::new()
            .name("xmvb-send".into())
            .spawn(move || run(netns, ifindex, cpu, frame, s2, c2, ready_tx))
            .context("spawning the container sender thread")?;
        let mut s = Sender { stop, sent, handle: Some(handle) };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(s),
            Ok(Err(e)) => {
                let _ = s.finish();
                Err(e)
            }
            Err(_) => Err(s.finish().err().unwrap_or_else(|| anyhow!("sender thread ended before it was ready"))),
        }
    }

    /// Frames handed to the kernel so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn alive(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    pub fn finish(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take() {
            Some(h) => h.join().map_err(|_| anyhow!("sender thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn open(netns: &Path, ifindex: i32, cpu: usize) -> Result<PacketSocket> {
    sys::pin(0, cpu).context("pinning the sender thread")?;
    sys::enter_netns(netns)?;
    // Protocol 0: a send-only socket, no copy of received frames is queued to it.
    PacketSocket::open_index(ifindex as u32, 0, &[(libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1)])
        .with_context(|| format!("the sender's packet socket on ifindex {ifindex}"))
}

fn run(
    netns: PathBuf,
    ifindex: i32,
    cpu: usize,
    frame: Vec<u8>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    ready: mpsc::Sender<Result<()>>,
) -> Result<()> {
    let fd = match open(&netns, ifindex, cpu) {
        Ok(fd) => fd,
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e));
            bail!("{msg}");
        }
    };
    let _ = ready.send(Ok(()));
    let mut iov = libc::iovec { iov_base: frame.as_ptr() as *mut libc::c_void, iov_len: frame.len() };
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            // SAFETY: mmsghdr is plain data: all-zero is a valid value (null pointers, zero lengths); msg_iov is set
            // just below.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fd` is the socket we own; `msgs` holds BATCH initialised mmsghdrs (the count passed), each pointing
        // at `iov` (one entry), which points at `frame`'s `frame.len()` bytes. `iov`, `msgs` and `frame` are locals
        // that live, unmoved, for the whole loop; the kernel only reads the frame and writes each msg_len.
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // The device queue is full or the socket's send buffer is: try again.
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                _ => bail!("sendmmsg on ifindex {ifindex}: {e}"),
            }
        }
        sent.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}
