//! The lab that xmacvlan's end-to-end tests (`tests/`) and its benchmark harness (`benches/`) both
//! build on: network namespaces this process creates and always removes, veth pairs between them,
//! kernel macvlan children, the xmacvlan daemon as a child process, packet sockets, and the
//! registry that removes all of it on every way out.
//!
//! | module | holds |
//! |---|---|
//! | [`sys`] | the OS layer: syscall results, `setns` onto a thread, packet sockets, ioctls, sysctls, CPU pinning |
//! | [`cmd`] | commands (`ip`, `ethtool`, …) with a deadline, and `ip -batch` |
//! | [`netlink`] | the datapath's raw netlink, and a socket opened inside a namespace (link counters of many namespaces, generic netlink) |
//! | [`netns`] | [`Netns`], a namespace deleted when dropped; many made and removed in one batch |
//! | [`topology`] | the links a lab is made of: a veth wire between two namespaces, kernel macvlan children |
//! | [`daemon`] | [`DaemonProcess`], the xmacvlan daemon run inside a lab namespace, stopped by its PID |
//! | [`docker`] | [`Dockerd`], a private Docker daemon inside a lab namespace, and a busybox image without a registry |
//! | [`cleanup`] | the registry of what was created, removed on return, panic and SIGINT/SIGTERM/SIGHUP |
//! | [`books`] | the datapath's books from `xmacvlan stats --format json`: the accounting invariant, the UMEM census |
//!
//! Everything is built inside namespaces the lab creates; nothing in the caller's namespace is touched.
//! Addresses come from 198.18.0.0/15 and 2001:2::/48 (the callers choose them).

pub mod books;
pub mod cleanup;
pub mod cmd;
pub mod daemon;
pub mod docker;
pub mod netlink;
pub mod netns;
pub mod sys;
pub mod topology;

pub use daemon::{DaemonProcess, DaemonSpec};
pub use docker::Dockerd;
pub use netns::{ns_path, Netns};

/// `02:42:c6:12:00:10` for `[0x02, 0x42, 0xc6, 0x12, 0x00, 0x10]`.
pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The six octets of `aa:bb:cc:dd:ee:ff`; None when `s` is not one.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = [0x02, 0x42, 0xc6, 0x12, 0x0f, 0xa0];
        assert_eq!(mac_str(&m), "02:42:c6:12:0f:a0");
        assert_eq!(parse_mac("02:42:c6:12:0f:a0"), Some(m));
        assert_eq!(parse_mac("02:42:c6:12:0f"), None);
        assert_eq!(parse_mac("02:42:c6:12:0f:a0:00"), None);
        assert_eq!(parse_mac("02:42:c6:12:0f:zz"), None);
    }
}
