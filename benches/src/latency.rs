//! Round-trip latency between the wire host and a container: UDP request/response. A responder in
//! the container echoes every datagram; a prober in the generator namespace sends one datagram per
//! interval carrying its send time (CLOCK_MONOTONIC, one clock for both ends: same machine) and
//! records `now - sent` of every echo in an HdrHistogram (ns, 3 significant digits).
//!
//! Both threads run SCHED_FIFO on the application CPU, so they preempt the generator's busy loop
//! within one of its batches and the figure is the network path's, not the scheduler's.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

pub const ECHO_PORT: u16 = 7;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub probes_sent: u64,
    pub probes_answered: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// (latency µs, fraction of probes at or below it), for CDF plots.
    pub cdf: Vec<(f64, f64)>,
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec on our stack that clock_gettime writes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn enter(netns: &Path, cpu: usize) -> Result<()> {
    xmacvlan_lab::sys::pin(0, cpu)?;
    xmacvlan_lab::sys::enter_netns(netns)?;
    // Wake on time: the default 50 µs timer slack would be half a probe interval.
    // SAFETY: PR_SET_TIMERSLACK takes its value as an integer, not a pointer, and changes only this thread's timer
    // slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let p = libc::sched_param { sched_priority: 10 };
    // SAFETY: `p` is a live sched_param on our stack; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
        eprintln!(
            "xmacvlan bench: warning: SCHED_FIFO refused ({}); latency includes scheduling",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The echo responder, running until dropped.
pub struct Responder {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    pub fn start(netns: PathBuf, ip: Ipv4Addr, cpu: usize) -> Result<Responder> {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
        let handle = std::thread::Builder::new().name("xmvb-echo".into()).spawn(move || {
            let sock = match enter(&netns, cpu).and_then(|()| {
                let s = UdpSocket::bind(SocketAddrV4::new(ip, ECHO_PORT)).context("binding the echo responder")?;
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
                Ok(s)
            }) {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        })?;
        rx.recv().map_err(|_| anyhow!("echo responder ended before it was ready"))??;
        Ok(Responder { stop, handle: Some(handle) })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends `rate` probes per second for `duration` from `src` to the responder at `dst` and returns
/// the round-trip distribution. `payload` pads each probe to the frame size under test.
pub fn probe(
    netns: PathBuf,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    cpu: usize,
    rate: f64,
    duration: Duration,
    payload: usize,
) -> Result<Latency> {
    std::thread::scope(|s| {
        s.spawn(move || -> Result<Latency> {
            enter(&netns, cpu)?;
            let sock = UdpSocket::bind(SocketAddrV4::new(src, 0)).context("binding the prober")?;
            sock.connect(SocketAddrV4::new(dst, ECHO_PORT)).context("connecting the prober")?;
            let rsock = sock.try_clone()?;
            rsock.set_read_timeout(Some(Duration::from_millis(20)))?;
            let done = AtomicBool::new(false);
            let sent = std::sync::atomic::AtomicU64::new(0);
            let hist = std::thread::scope(|s2| {
                let receiver = s2.spawn(|| -> Result<Histogram<u64>> {
                    enter(&netns, cpu)?;
                    let mut h = Histogram::<u64>::new_with_bounds(100, 10_000_000_000, 3)?;
                    let mut buf = [0u8; 2048];
                    let mut quiet_since: Option<Instant> = None;
                    loop {
                        match rsock.recv(&mut buf) {
                            Ok(n) if n >= 8 => {
                                let t = u64::from_ne_bytes(buf[..8].try_into().unwrap());
                                h.saturating_record(now_ns().saturating_sub(t).max(100));
                                quiet_since = None;
                            }
                            _ => {
                                if done.load(Ordering::Relaxed) {
                                    // Late echoes get 100 ms after the last probe.
                                    let q = *quiet_since.get_or_insert_with(Instant::now);
                                    if q.elapsed() > Duration::from_millis(100) {
                                        return Ok(h);
                                    }
                                }
                            }
                        }
                    }
                });
                let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
                let mut buf = vec![0u8; payload.max(8)];
                let start = Instant::now();
                let mut next = start;
                while start.elapsed() < duration && !crate::lab::interrupted() {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep(next - now);
                    }
                    next += interval;
                    buf[..8].copy_from_slice(&now_ns().to_ne_bytes());
                    if sock.send(&buf).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.store(true, Ordering::Relaxed);
                receiver.join().map_err(|_| anyhow!("latency receiver panicked"))?
            })?;
            Ok(summarize(&hist, sent.load(Ordering::Relaxed)))
        })
        .join()
        .map_err(|_| anyhow!("latency prober panicked"))?
    })
}

pub fn summarize(h: &Histogram<u64>, sent: u64) -> Latency {
    let us = |ns: u64| ns as f64 / 1e3;
    let mut cdf = Vec::new();
    if !h.is_empty() {
        for v in h.iter_quantiles(2) {
            cdf.push((us(v.value_iterated_to()), v.quantile_iterated_to()));
        }
    }
    Latency {
        probes_sent: sent,
        probes_answered: h.len(),
        min_us: us(h.min()),
        p50_us: us(h.value_at_quantile(0.5)),
        p90_us: us(h.value_at_quantile(0.9)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
        mean_us: h.mean() / 1e3,
        cdf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_cdf() {
        let mut h = Histogram::<u64>::new_with_bounds(100, 10_000_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let l = summarize(&h, 1000);
        assert_eq!(l.probes_answered, 1000);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{}", l.p50_us);
        assert!((l.p99_us - 990.0).abs() < 1.0, "{}", l.p99_us);
        assert!(l.cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(l.cdf.last().unwrap().1, 1.0);
    }
}
