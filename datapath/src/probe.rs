//! A probe that a network forwards to an endpoint, for CNI CHECK: a frame addressed to the
//! endpoint is injected at the parent's XDP hook (BPF_PROG_RUN with live frames, as if the parent
//! had received it: nothing is sent on the wire) and must arrive on the endpoint's interface in
//! its namespace, through whatever path it takes (AF_XDP worker or the XDP fast path).

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bpf::{XdpMd, BPF_F_TEST_XDP_LIVE_FRAMES};
use crate::frame::MacAddr;
use crate::Error;

/// IEEE 802 local experimental ethertype: a container's stack ignores it.
pub const PROBE_ETHERTYPE: u16 = 0x88b5;
/// The probe's sender: locally administered, "xmv" in the middle.
pub const PROBE_SRC: MacAddr = MacAddr([0x02, 0x78, 0x6d, 0x76, 0x00, 0x01]);
const MAGIC: &[u8; 8] = b"xmvprobe";

/// The probe frame for `dst` on `vlan` (0 = untagged), carrying `nonce`.
pub fn frame(dst: MacAddr, vlan: u16, nonce: u64) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&PROBE_SRC.0);
    if vlan != 0 {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vlan.to_be_bytes());
    }
    f.extend_from_slice(&PROBE_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&nonce.to_be_bytes());
    f.resize(f.len().max(60), 0);
    f
}

fn sys(call: &'static str) -> Error {
    Error::Sys { call, cause: std::io::Error::last_os_error() }
}

/// Runs `prog` (the parent's XDP program) on a probe frame for `dst` on `vlan` as if `ifindex`
/// had received it on queue 0, and waits up to `wait` for it on `ifname` inside `ns`.
pub fn run(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    dst: MacAddr,
    vlan: u16,
    ns: File,
    ifname: &str,
    wait: Duration,
) -> Result<(), Error> {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let frame = frame(dst, vlan, t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32);
    // Magic and nonce, wherever the tag puts them; the listener looks for both.
    let at = frame.windows(MAGIC.len()).position(|w| w == MAGIC).expect("frame() writes the magic");
    let nonce: [u8; 16] = frame[at..at + 16].try_into().expect("magic and nonce are 16 bytes");
    let (ready_tx, ready_rx) = mpsc::channel();
    let ifname_owned = ifname.to_string();
    let listener = std::thread::Builder::new()
        .name("xmv-probe".into())
        .spawn(move || listen(ns, &ifname_owned, nonce, wait, ready_tx))
        .map_err(|cause| Error::Sys { call: "spawning the probe listener", cause })?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = listener.join();
            return Err(e);
        }
        Err(_) => return Err(Error::Invalid("the probe listener died".into())),
    }
    let ctx = XdpMd { data_end: frame.len() as u32, ingress_ifindex: ifindex, ..Default::default() };
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: frame.as_ptr().cast(),
        data_size_in: frame.len() as u32,
        ctx_in: (&ctx as *const XdpMd).cast(),
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        repeat: 1,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..Default::default()
    };
    // SAFETY: data_in and ctx_in point to live buffers of the given sizes for the call's duration.
    let r = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if r != 0 {
        // Let the listener time out; its result no longer matters.
        let _ = listener.join();
        return Err(Error::Sys {
            call: "BPF_PROG_RUN of the parent program (live frames)",
            cause: std::io::Error::from_raw_os_error(-r),
        });
    }
    listener.join().map_err(|_| Error::Invalid("the probe listener panicked".into()))?
}

/// In `ns`: a packet socket on `ifname` for the probe ethertype; reports readiness, then waits for
/// a frame carrying `nonce`.
fn listen(
    ns: File,
    ifname: &str,
    nonce: [u8; 16],
    wait: Duration,
    ready: mpsc::Sender<Result<(), Error>>,
) -> Result<(), Error> {
    let setup = || -> Result<File, Error> {
        // SAFETY: setns on an open namespace fd; affects this thread only (which ends here).
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(sys("setns into the endpoint's namespace"));
        }
        let name = std::ffi::CString::new(ifname).map_err(|_| Error::Invalid(format!("bad ifname {ifname:?}")))?;
        // SAFETY: plain syscalls on values we own.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(Error::Invalid(format!("no interface {ifname} in the endpoint's namespace")));
        }
        let proto = PROBE_ETHERTYPE.to_be();
        // SAFETY: socket(2); the fd is owned by the File below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
        if fd < 0 {
            return Err(sys("socket(AF_PACKET)"));
        }
        // SAFETY: fd is a fresh socket nobody else owns.
        let sock = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: sll is a valid sockaddr_ll of the given size.
        let r = unsafe {
            libc::bind(fd, (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
        };
        if r != 0 {
            return Err(sys("bind(AF_PACKET) to the endpoint"));
        }
        Ok(sock)
    };
    let sock = match setup() {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let msg = e.to_string();
            let _ = ready.send(Err(e));
            return Err(Error::Invalid(msg));
        }
    };
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Invalid(format!(
                "a probe frame injected at the parent did not reach {ifname} within {wait:?}"
            )));
        }
        let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        if n <= 0 {
            continue;
        }
        // SAFETY: buf is writable for its length.
        let len = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if len > 0 && buf[..len as usize].windows(16).any(|w| w == nonce) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_frames_are_tagged_on_vlans_and_carry_the_nonce() {
        let dst = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 2]);
        let f = frame(dst, 0, 7);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[12..14], &PROBE_ETHERTYPE.to_be_bytes());
        assert_eq!(&f[14..22], MAGIC);
        let t = frame(dst, 50, 7);
        assert_eq!(&t[12..16], &[0x81, 0x00, 0x00, 50]);
        assert_eq!(&t[16..18], &PROBE_ETHERTYPE.to_be_bytes());
        assert_eq!(&t[26..34], &7u64.to_be_bytes());
    }
}
