//! The container-side generator: a thread inside a container namespace that sends its frames (one,
//! or several in turn) over and over through an AF_PACKET socket on the container's interface, up to
//! 64 frames per sendmmsg(2), bypassing the qdisc (PACKET_QDISC_BYPASS), as an application that
//! blasts raw frames would. Unpaced by default; with a rate (the soak's container-sourced share) it
//! sleeps between batches of about half a millisecond's frames.
//!
//! BPF live frames cannot be used here: they leave through the device's ndo_xdp_xmit, which a
//! macvlan child does not have, and both backends must see the same sender.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// Starts sending `frames` in turn out of interface `ifindex` of the namespace at `netns`, from a
    /// thread pinned to `cpu`, at `rate_pps` frames per second (None: as fast as it goes).
    pub fn start(
        netns: PathBuf,
        ifindex: i32,
        cpu: usize,
        frames: Vec<Vec<u8>>,
        rate_pps: Option<f64>,
    ) -> Result<Sender> {
        if frames.is_empty() {
            bail!("the container sender needs at least one frame");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let (s2, c2) = (stop.clone(), sent.clone());
        let handle = std::thread::Builder::new()
            .name("xmvb-send".into())
            .spawn(move || run(netns, ifindex, cpu, frames, rate_pps, s2, c2, ready_tx))
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

/// Frames per sendmmsg at `rate_pps`: about half a millisecond's worth (a sleep is that coarse),
/// 1..=BATCH; BATCH unpaced.
fn batch_for(rate_pps: Option<f64>) -> usize {
    match rate_pps {
        Some(r) => ((r / 2000.0) as usize).clamp(1, BATCH),
        None => BATCH,
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    netns: PathBuf,
    ifindex: i32,
    cpu: usize,
    frames: Vec<Vec<u8>>,
    rate_pps: Option<f64>,
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
    let mut iovs: Vec<libc::iovec> =
        frames.iter().map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() }).collect();
    let n_iov = iovs.len();
    let batch = batch_for(rate_pps);
    let mut msgs: Vec<libc::mmsghdr> = (0..batch)
        .map(|i| {
            // SAFETY: mmsghdr is plain data: all-zero is a valid value (null pointers, zero lengths); msg_iov is set
            // just below.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut iovs[i % n_iov];
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // Paced: frame k is due at `t0 + k / rate`; after a stall (descheduled, a full device queue) the
    // schedule restarts instead of catching up with a burst.
    let mut t0 = Instant::now();
    let mut due = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(r) = rate_pps {
            let at = t0 + Duration::from_secs_f64(due as f64 / r);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            } else if now - at > Duration::from_millis(10) {
                t0 = now;
                due = 0;
            }
        }
        // SAFETY: `fd` is the socket we own; `msgs` holds `batch` initialised mmsghdrs (the count passed), each
        // pointing at one entry of `iovs`, which point at the frames' bytes. `iovs`, `msgs` and `frames` are locals
        // that live, unmoved, for the whole loop; the kernel only reads the frames and writes each msg_len.
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), batch as u32, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // The device queue is full or the socket's send buffer is: try again.
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                _ => bail!("sendmmsg on ifindex {ifindex}: {e}"),
            }
        }
        due += n as u64;
        sent.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_half_a_millisecond_of_frames() {
        assert_eq!(batch_for(None), BATCH);
        assert_eq!(batch_for(Some(100.0)), 1);
        assert_eq!(batch_for(Some(40_000.0)), 20);
        assert_eq!(batch_for(Some(10e6)), BATCH);
    }
}
