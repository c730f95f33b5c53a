//! The OS layer: every raw system call the lab makes goes through here, so that each `unsafe` and
//! each error message is written once. Errors name what they were about (the interface, the
//! namespace path, the option).
//!
//! A network namespace is a property of a thread: [`in_netns`] runs a closure on a thread of its
//! own that joined the namespace, and whatever that closure opens (a packet socket, a netlink
//! socket, a tap) stays in that namespace for good, whichever thread uses it later.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// `rc` as a result: a negative return is `errno`, with `what` in front of its message.
pub fn check(rc: libc::c_int, what: impl FnOnce() -> String) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(context(io::Error::last_os_error(), what()))
    } else {
        Ok(rc)
    }
}

/// `e` with `what` in front of its message (the kind kept: callers still match on it).
pub fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A new socket, owned.
pub fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory arguments; the result is checked before it is owned.
    let fd = check(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) }, || {
        format!("socket({domain}, {ty}, {protocol})")
    })?;
    // SAFETY: `fd` is the descriptor just returned; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// setsockopt(2) with a plain value (`c_int`, `timeval`, …).
pub fn setsockopt<T: Copy>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: T) -> io::Result<()> {
    // SAFETY: the option value is a live local of the size passed; `fd` is open for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, || format!("setsockopt(level {level}, option {name})")).map(drop)
}

/// The index of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c =
        CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("interface {name:?}")))?;
    // SAFETY: `c` is a NUL-terminated string alive across the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(context(io::Error::last_os_error(), format!("no interface {name}"))),
        i => Ok(i),
    }
}

/// Moves the calling thread into the network namespace at `path` (setns(2) moves only this thread).
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let f = File::open(path).map_err(|e| context(e, format!("network namespace {}", path.display())))?;
    // SAFETY: setns on an open namespace file that lives across the call; it changes the calling
    // thread only.
    check(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, || format!("setns into {}", path.display()))
        .map(drop)
}

/// Runs `f` on a thread of its own that first joined the network namespace at `path`, and returns
/// what `f` returns. The caller's thread stays where it is. A panic in `f` is raised again here.
pub fn in_netns<T: Send>(path: impl AsRef<Path>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let path = path.as_ref();
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(path)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Runs `f` once per namespace path, in order, on one thread that joins each in turn: for hundreds
/// of namespaces one thread, not one each. Results in the order given.
pub fn in_each_netns<P: AsRef<Path> + Sync, T: Send>(
    paths: &[P],
    mut f: impl FnMut(&P) -> T + Send,
) -> io::Result<Vec<T>> {
    std::thread::scope(|s| {
        s.spawn(|| {
            paths
                .iter()
                .map(|p| {
                    enter_netns(p.as_ref())?;
                    Ok(f(p))
                })
                .collect()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// sched_setaffinity(pid, {cpu}), as `taskset -pc CPU PID`; pid 0 is the calling thread.
pub fn pin(pid: i32, cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET bounds-checks its index, and
    // sched_setaffinity reads the set of the size passed.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    check(rc, || format!("sched_setaffinity({pid}, cpu {cpu})")).map(drop)
}

/// Sets interface `ifname` of the calling thread's namespace up (SIOCSIFFLAGS; no process).
pub fn set_link_up(ifname: &str) -> io::Result<()> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("interface name {ifname} is too long")));
    }
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: an all-zero ifreq is valid (empty name, zero flags).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, which lives across both calls; the
    // flags member of the union is the one these ioctls use.
    unsafe {
        check(libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req), || format!("SIOCGIFFLAGS {ifname}"))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req), || format!("SIOCSIFFLAGS {ifname} up"))?;
    }
    Ok(())
}

/// Writes a sysctl of the calling thread's network namespace (/proc/sys/net follows the namespace of
/// the thread that opens it). `key` is a path below /proc/sys (`net/ipv6/conf/eth1.50/…`) or, without
/// a slash, the dotted form (`net.ipv6.conf.all.disable_ipv6`).
pub fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    let rel = if key.contains('/') { key.to_string() } else { key.replace('.', "/") };
    let path = format!("/proc/sys/{rel}");
    std::fs::write(&path, value).map_err(|e| context(e, format!("writing {value} to {path}")))
}

/// Whether `fd` has something to read within `timeout` (poll(2); an interrupted wait says no).
pub fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, alive across the call.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// An AF_PACKET socket bound to one interface (of the namespace of the thread that opened it).
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

/// Where a received frame was going, from `sockaddr_ll.sll_pkttype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketType(pub u8);

impl PacketType {
    /// A frame this host sent on the interface (seen by ETH_P_ALL sockets), not one it received.
    pub fn outgoing(self) -> bool {
        self.0 == libc::PACKET_OUTGOING
    }
}

impl PacketSocket {
    /// Opens a socket on interface `ifname` of the calling thread's namespace, receiving frames of
    /// `protocol` (an EtherType, `ETH_P_ALL` for every frame, 0 for none: a socket that only sends).
    /// `options` (level, name, value) are set before the bind, so no frame arrives without them.
    ///
    /// The socket is created with protocol 0 and bound with `protocol`: created with it, its hook
    /// would be live at once (every interface's frames) and bind would replace it after a
    /// synchronize_net(), a grace period per socket.
    pub fn open(ifname: &str, protocol: u16, options: &[(libc::c_int, libc::c_int, libc::c_int)]) -> io::Result<Self> {
        Self::open_index(ifindex(ifname)?, protocol, options).map_err(|e| context(e, format!("interface {ifname}")))
    }

    /// [`PacketSocket::open`] on the interface with index `ifindex`.
    pub fn open_index(
        ifindex: u32,
        protocol: u16,
        options: &[(libc::c_int, libc::c_int, libc::c_int)],
    ) -> io::Result<Self> {
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        for &(level, name, value) in options {
            setsockopt(fd.as_fd(), level, name, value)?;
        }
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a live sockaddr_ll of the size passed; `fd` is our socket.
        let rc = unsafe {
            libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of_val(&sll) as u32)
        };
        check(rc, || format!("binding a packet socket to ifindex {ifindex}"))?;
        Ok(PacketSocket { fd, ifindex })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends `frame` as written (its Ethernet header included).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sends from a live buffer of the length passed, on our socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != frame.len() => Err(io::Error::other(format!("short send: {n} of {}", frame.len()))),
            _ => Ok(()),
        }
    }

    /// Reads one queued frame into `buf` without blocking: its length and where it was going.
    /// `WouldBlock` when nothing is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, PacketType)> {
        // SAFETY: an all-zero sockaddr_ll is valid; recvfrom fills it in.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut flen = std::mem::size_of_val(&from) as libc::socklen_t;
        // SAFETY: the buffer and the address live across the call, with the lengths given.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut flen,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize, PacketType(from.sll_pkttype)))
    }

    /// Whether a frame is queued within `timeout`.
    pub fn readable(&self, timeout: Duration) -> bool {
        readable(self.fd.as_fd(), timeout)
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_failed() {
        let e = check(-1, || "opening the thing".into()).unwrap_err();
        assert!(e.to_string().starts_with("opening the thing: "), "{e}");
        let e = ifindex("no-such-if0").unwrap_err();
        assert!(e.to_string().contains("no-such-if0"), "{e}");
        let e = enter_netns(Path::new("/nonexistent/netns")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/netns"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_panic_in_the_namespace_thread_reaches_the_caller() {
        // /proc/self/ns/net is the caller's own namespace: joining it needs no privilege beyond
        // CAP_SYS_ADMIN, which a non-root run lacks; either way the closure's panic must surface.
        let r = std::panic::catch_unwind(|| in_netns("/proc/self/ns/net", || panic!("inside")));
        match r {
            Err(p) => assert_eq!(p.downcast_ref::<&str>(), Some(&"inside")),
            Ok(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
            Ok(Ok(())) => unreachable!("the closure panics"),
        }
    }
}
