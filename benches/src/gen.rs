//! The traffic generator: BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES of an XDP program that returns
//! XDP_TX, from a thread that has entered the generator namespace (so the ctx's ingress_ifindex is gen0
//! there) and is pinned to the generator CPU. Every frame leaves through gen0 onto the veth "wire".
//! Optionally paced by the program itself (see bpf/gen_tx.bpf.c); its tx_count is the offered count.

use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::OpenObject;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/gen_tx.skel.rs"));
}
use skel::{GenTxSkel, GenTxSkelBuilder};
use xmacvlan_datapath::bpf::{XdpMd, BPF_F_TEST_XDP_LIVE_FRAMES};

pub struct GenConfig {
    pub netns: PathBuf,
    pub ifname: String,
    pub cpu: usize,
    pub frame: Vec<u8>,
    /// Frames per BPF_PROG_RUN call (sent or, when paced, dropped by the program).
    pub repeat: u32,
    /// Frames per batch inside the kernel (the live-frames mode's NAPI-like batch; max 256).
    pub batch_size: u32,
    /// Target rate in frames per second; None = as fast as possible.
    pub rate_pps: Option<f64>,
    /// Unicast frames cycle through this many destination MACs: the frame's own plus the next
    /// `n_dst - 1` (counting in the last two bytes).
    pub n_dst: u32,
    /// Broadcast frames per 1000 sent.
    pub bcast_per_mille: u32,
}

pub struct Generator {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<GenSummary>>>,
    /// The loaded program; it outlives the thread that runs it (Drop joins the thread first).
    skel: GenTxSkel<'static>,
}

#[derive(Debug, Clone, Default)]
pub struct GenSummary {
    /// Program runs (sent + paced-out frames).
    pub runs: u64,
    /// Mean kernel-reported time per program run (ns), i.e. the generator's own cost.
    pub mean_ns_per_run: f64,
}

impl Generator {
    pub fn start(cfg: GenConfig) -> Result<Generator> {
        // Loaded here (loading does not depend on the network namespace) so that this thread can read
        // the program's tx_count while the generator thread runs it. The OpenObject must outlive the
        // skeleton: one small leak per trial.
        let open_object: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = GenTxSkelBuilder::default().open(open_object).context("opening the generator BPF object")?;
        let interval = match cfg.rate_pps {
            Some(r) if r > 0.0 => (1e9 / r).round().max(1.0) as u64,
            _ => 0,
        };
        let ro = open.maps.rodata_data.as_deref_mut().ok_or_else(|| anyhow!("generator BPF object has no .rodata"))?;
        let dst = cfg.frame.get(..6).ok_or_else(|| anyhow!("generator frame shorter than a MAC"))?;
        ro.interval_ns = interval;
        ro.dst_hi32 = u32::from_be_bytes([dst[0], dst[1], dst[2], dst[3]]);
        ro.dst_lo16 = u32::from(u16::from_be_bytes([dst[4], dst[5]]));
        ro.n_dst = cfg.n_dst.max(1);
        ro.bcast_per_mille = cfg.bcast_per_mille.min(1000);
        let skel = open.load().context("loading the generator XDP program")?;
        if skel.maps.bss_data.is_none() {
            bail!("generator BPF object has no mmapable .bss");
        }
        let prog_fd = skel.progs.gen_tx.as_fd().as_raw_fd();

        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let s2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("xmvb-gen".into())
            .spawn(move || run(cfg, prog_fd, s2, ready_tx))
            .context("spawning the generator thread")?;
        let mut g = Generator { stop, handle: Some(handle), skel };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(g),
            Ok(Err(e)) => {
                let _ = g.finish();
                Err(e)
            }
            Err(_) => Err(g.finish().err().unwrap_or_else(|| anyhow!("generator thread ended before it was ready"))),
        }
    }

    /// Frames sent so far (the program's own counter, read from its mmap'd .bss).
    pub fn tx_count(&self) -> u64 {
        let p = &self.skel.maps.bss_data.as_deref().unwrap().tx_count as *const u64;
        unsafe { std::ptr::read_volatile(p) }
    }

    /// Broadcast frames among them.
    pub fn tx_bcast(&self) -> u64 {
        let p = &self.skel.maps.bss_data.as_deref().unwrap().tx_bcast as *const u64;
        unsafe { std::ptr::read_volatile(p) }
    }

    /// False once the generator thread has ended (an error in a call ends it early).
    pub fn alive(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    pub fn finish(&mut self) -> Result<GenSummary> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take() {
            Some(h) => h.join().map_err(|_| anyhow!("generator thread panicked"))?,
            None => Ok(GenSummary::default()),
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn run(cfg: GenConfig, prog_fd: i32, stop: Arc<AtomicBool>, ready: mpsc::Sender<Result<()>>) -> Result<GenSummary> {
    let setup = || -> Result<XdpMd> {
        crate::napi::pin(0, cfg.cpu).context("pinning the generator thread")?;
        let f = fs::File::open(&cfg.netns).with_context(|| format!("open {}", cfg.netns.display()))?;
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({}): {}", cfg.netns.display(), std::io::Error::last_os_error());
        }
        let name = std::ffi::CString::new(cfg.ifname.clone())?;
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {} in {}", cfg.ifname, cfg.netns.display());
        }
        Ok(XdpMd { data_end: cfg.frame.len() as u32, ingress_ifindex: ifindex, ..Default::default() })
    };
    let ctx = match setup() {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e));
            bail!("{msg}");
        }
    };

    let one_call = |repeat: u32| -> Result<u32> {
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: cfg.frame.as_ptr() as *const _,
            data_size_in: cfg.frame.len() as u32,
            ctx_in: &ctx as *const XdpMd as *const _,
            ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
            repeat: repeat as i32,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: cfg.batch_size,
            ..Default::default()
        };
        let r = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut opts) };
        if r != 0 {
            let e = std::io::Error::from_raw_os_error(-r);
            bail!("BPF_PROG_RUN (XDP live frames, {} B frame, batch {}): {e}", cfg.frame.len(), cfg.batch_size);
        }
        Ok(opts.duration)
    };

    // A first small call tells setup errors (EINVAL on ctx, ENOTSUPP on old kernels) before we say "ready".
    let mut runs = 0u64;
    let mut ns_weighted = 0f64;
    match one_call(64) {
        Ok(d) => {
            runs += 64;
            ns_weighted += d as f64 * 64.0;
            let _ = ready.send(Ok(()));
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e));
            bail!("{msg}");
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let d = one_call(cfg.repeat)?;
        runs += cfg.repeat as u64;
        ns_weighted += d as f64 * cfg.repeat as f64;
    }
    Ok(GenSummary { runs, mean_ns_per_run: if runs > 0 { ns_weighted / runs as f64 } else { 0.0 } })
}

/// UDP destination port of the generated frames (discard; closed in the container unless --sink socket).
pub const UDP_DST_PORT: u16 = 9;
/// UDP source port of the generated frames.
pub const UDP_SRC_PORT: u16 = 9999;

/// A frame of `wire_size` bytes on the wire (FCS included; veth carries none, so the frame is 4 bytes
/// shorter): Ethernet + IPv4 (valid header checksum) + UDP (no checksum) to the container's address.
pub fn build_frame(wire_size: usize, dst: [u8; 6], src: [u8; 6], src_ip: [u8; 4], dst_ip: [u8; 4]) -> Vec<u8> {
    let len = wire_size - 4;
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&src_ip);
    ip[16..20].copy_from_slice(&dst_ip);
    let mut sum = 0u32;
    for c in ip.chunks(2) {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&UDP_SRC_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&UDP_DST_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    // UDP checksum 0 = none (allowed over IPv4). Payload: a recognisable pattern.
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = (i & 0xff) as u8;
    }
    f
}

/// A frame of `wire_size` bytes on the wire with the IEEE "local experimental" ethertype 0x88b5: the
/// container's interface counts it in rx_packets and its stack drops it at once (no protocol handler).
pub fn build_l2_frame(wire_size: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; wire_size - 4];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    for (i, b) in f[14..].iter_mut().enumerate() {
        *b = (i & 0xff) as u8;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let f = build_frame(
            64,
            [2, 0x42, 0xc6, 0x12, 0, 0xb],
            [2, 0, 0xc6, 0x12, 0, 0xfe],
            [198, 18, 0, 254],
            [198, 18, 0, 11],
        );
        assert_eq!(f.len(), 60);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 46);
        // Header checksum verifies to 0xffff.
        let mut sum = 0u32;
        for c in f[14..34].chunks(2) {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 26);
        assert_eq!(build_frame(1518, [0; 6], [0; 6], [0; 4], [0; 4]).len(), 1514);
    }
}
