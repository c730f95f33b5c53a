//! The source guard: what a container may write in the sender fields of its frames.
//!
//! Kernel macvlan trusts its children: a container may send with another container's (or the
//! gateway's) source MAC, or answer ARP for an address that is not its own, and the wire hosts and
//! the other containers believe it. This is the macvlan that doesn't. Two checks, per endpoint:
//! - MAC ([`Guard::mac`], `spoof_check`, on by default): the Ethernet source is the endpoint's own
//!   MAC. Anything else — another's, or a group address — is dropped as `spoofed_src`.
//! - IP ([`Guard::ip`], `ip_guard`, off by default): the sender fields of IPv4, IPv6, ARP and ND
//!   name the endpoint — the source address is one of its addresses ([`allowed`]), ARP's sender
//!   hardware and protocol addresses are its own, and so are ND's link-layer address options and
//!   a neighbour advertisement's target. Dropped as `spoofed_ip`. Other EtherTypes are not IP and
//!   pass; a frame that claims to be IP but is too short to show its sender cannot be checked
//!   and is dropped.
//!
//! Group source MACs are invalid from anyone (IEEE 802: the group bit is for destinations): they
//! are dropped as `spoofed_src` with either guard off too, and from the wire
//! ([`crate::fwd::decide`]) — the one place where `spoof_check=off` differs from kernel macvlan.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::frame::{MacAddr, ETHERTYPE_VLAN, ETH_HLEN};
use crate::fwd::DropReason;

/// Which of an endpoint's sender fields are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guard {
    /// The source MAC is the endpoint's (`spoof_check`).
    pub mac: bool,
    /// The IP/ARP/ND sender fields are the endpoint's addresses (`ip_guard`).
    pub ip: bool,
}

impl Guard {
    /// The default: MAC guard on, IP guard off.
    pub const DEFAULT: Guard = Guard { mac: true, ip: false };
    /// Kernel macvlan's behaviour: nothing checked.
    pub const OFF: Guard = Guard { mac: false, ip: false };
}

impl Default for Guard {
    fn default() -> Self {
        Guard::DEFAULT
    }
}

const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 extension headers walked to reach an ICMPv6 header: hop-by-hop, routing, destination options.
const EXT_HEADERS: [u8; 3] = [0, 43, 60];
/// Tags a container's frame may carry before its payload (a priority tag, a tag of its own).
const MAX_TAGS: usize = 2;
/// Extension headers walked before giving up on a frame.
const MAX_EXT: usize = 4;

/// Checks a container's frame against its endpoint's guard: `mac` is the endpoint's MAC, `addrs`
/// its addresses. `Ok` when the frame may be forwarded.
#[inline]
pub fn check(frame: &[u8], guard: Guard, mac: MacAddr, addrs: &[IpAddr]) -> Result<(), DropReason> {
    if let Some(src) = frame.get(6..12) {
        if src[0] & 1 != 0 || (guard.mac && src != mac.0) {
            return Err(DropReason::SpoofedSrc);
        }
    }
    if guard.ip {
        check_ip(frame, mac, addrs).map_err(|()| DropReason::SpoofedIp)?;
    }
    Ok(())
}

/// Whether `ip` may be the source of a frame of the endpoint with `mac` and `addrs`: one of its
/// addresses, its EUI-64 link-local address (fe80::/64 from its MAC, what a container's kernel
/// makes by default), or the unspecified address (DHCP discovery, ARP probes, duplicate address
/// detection).
pub fn allowed(ip: IpAddr, mac: MacAddr, addrs: &[IpAddr]) -> bool {
    ip.is_unspecified() || addrs.contains(&ip) || ip == IpAddr::V6(link_local(mac))
}

/// The EUI-64 link-local address of `mac` (RFC 4291 appendix A): fe80::, the MAC with ff:fe in
/// its middle and the universal/local bit flipped.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    let mut b = [0u8; 16];
    b[0] = 0xfe;
    b[1] = 0x80;
    b[8..16].copy_from_slice(&[m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from(b)
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn v4_at(buf: &[u8], at: usize) -> Option<IpAddr> {
    let b: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(b)))
}

fn v6_at(buf: &[u8], at: usize) -> Option<IpAddr> {
    let b: [u8; 16] = buf.get(at..at + 16)?.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(b)))
}

/// `Err` when a sender field is not the endpoint's, or cannot be read.
fn check_ip(frame: &[u8], mac: MacAddr, addrs: &[IpAddr]) -> Result<(), ()> {
    let ok = |ip: Option<IpAddr>| match ip {
        Some(ip) if allowed(ip, mac, addrs) => Ok(()),
        _ => Err(()),
    };
    let mut at = ETH_HLEN - 2;
    let mut ethertype = u16_at(frame, at).ok_or(())?;
    for _ in 0..MAX_TAGS {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        at += 4;
        ethertype = u16_at(frame, at).ok_or(())?;
    }
    let l3 = at + 2;
    match ethertype {
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => Err(()),
        ETHERTYPE_IPV4 => ok(v4_at(frame, l3 + 12)),
        ETHERTYPE_ARP => {
            // Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4; sha at 8, spa at 14.
            let arp = frame.get(l3..l3 + 28).ok_or(())?;
            if arp[0..6] != [0, 1, 0x08, 0x00, 6, 4] || arp[8..14] != mac.0 {
                return Err(());
            }
            ok(v4_at(arp, 14))
        }
        ETHERTYPE_IPV6 => {
            ok(v6_at(frame, l3 + 8))?;
            check_nd(frame, l3, mac, addrs)
        }
        _ => Ok(()),
    }
}

/// Neighbour discovery from the IPv6 header at `l3`: its link-layer address options are the
/// endpoint's MAC, and an advertisement's target is one of its addresses.
fn check_nd(frame: &[u8], l3: usize, mac: MacAddr, addrs: &[IpAddr]) -> Result<(), ()> {
    let mut next = *frame.get(l3 + 6).ok_or(())?;
    let mut at = l3 + 40;
    for _ in 0..MAX_EXT {
        if !EXT_HEADERS.contains(&next) {
            break;
        }
        let ext = frame.get(at..at + 2).ok_or(())?;
        next = ext[0];
        at += (usize::from(ext[1]) + 1) * 8;
    }
    if EXT_HEADERS.contains(&next) {
        return Err(());
    }
    if next != IPPROTO_ICMPV6 {
        return Ok(());
    }
    let icmp = frame.get(at..).ok_or(())?;
    let options = match icmp.first().ok_or(())? {
        133 => 8,  // router solicitation
        134 => 16, // router advertisement
        135 => 24, // neighbour solicitation
        136 => {
            // Neighbour advertisement: the address it claims.
            match v6_at(icmp, 8) {
                Some(t) if !t.is_unspecified() && allowed(t, mac, addrs) => 24,
                _ => return Err(()),
            }
        }
        137 => 40, // redirect
        _ => return Ok(()),
    };
    let mut opts = icmp.get(options..).ok_or(())?;
    while !opts.is_empty() {
        let (kind, len) = (opts[0], usize::from(*opts.get(1).ok_or(())?) * 8);
        if len == 0 || len > opts.len() {
            return Err(());
        }
        // Source (1) and target (2) link-layer address.
        if (kind == 1 || kind == 2) && (len < 8 || opts[2..8] != mac.0) {
            return Err(());
        }
        opts = &opts[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 0x0a]);
    const OTHER: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 0x0b]);
    const GW: MacAddr = MacAddr([0x02, 0x00, 0, 0, 0, 0x01]);
    const IP_GUARD: Guard = Guard { mac: true, ip: true };

    fn addrs() -> Vec<IpAddr> {
        vec!["198.18.0.10".parse().unwrap(), "2001:2::a".parse().unwrap()]
    }

    fn eth(src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(src: [u8; 4]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&[198, 18, 15, 254]);
        ip.extend_from_slice(&[0; 8]);
        ip
    }

    fn arp(op: u8, sha: MacAddr, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, op];
        a.extend_from_slice(&sha.0);
        a.extend_from_slice(&spa);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&tpa);
        a
    }

    fn ipv6(src: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[next, 255]);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(payload);
        ip
    }

    /// A neighbour advertisement for `target` with a target link-layer address option `tlla`.
    fn na(target: Ipv6Addr, tlla: MacAddr) -> Vec<u8> {
        let mut icmp = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
        icmp.extend_from_slice(&target.octets());
        icmp.extend_from_slice(&[2, 1]);
        icmp.extend_from_slice(&tlla.0);
        icmp
    }

    #[test]
    fn mac_guard_wants_the_endpoints_own_source() {
        let f = eth(ME, 0x88b5, &[0; 46]);
        assert_eq!(check(&f, Guard::DEFAULT, ME, &[]), Ok(()));
        assert_eq!(check(&eth(OTHER, 0x88b5, &[0; 46]), Guard::DEFAULT, ME, &[]), Err(DropReason::SpoofedSrc));
        assert_eq!(
            check(&eth(MacAddr::BROADCAST, 0x88b5, &[0; 46]), Guard::DEFAULT, ME, &[]),
            Err(DropReason::SpoofedSrc)
        );
        assert_eq!(check(&eth(OTHER, 0x88b5, &[0; 46]), Guard::OFF, ME, &[]), Ok(()), "spoof_check=off");
        let group = MacAddr([0x03, 0, 0, 0, 0, 1]);
        assert_eq!(
            check(&eth(group, 0x88b5, &[0; 46]), Guard::OFF, ME, &[]),
            Err(DropReason::SpoofedSrc),
            "from anyone"
        );
    }

    #[test]
    fn ipv4_and_arp_senders_are_checked() {
        let a = addrs();
        assert_eq!(check(&eth(ME, ETHERTYPE_IPV4, &ipv4([198, 18, 0, 10])), IP_GUARD, ME, &a), Ok(()));
        assert_eq!(check(&eth(ME, ETHERTYPE_IPV4, &ipv4([0, 0, 0, 0])), IP_GUARD, ME, &a), Ok(()), "DHCP");
        assert_eq!(
            check(&eth(ME, ETHERTYPE_IPV4, &ipv4([198, 18, 0, 11])), IP_GUARD, ME, &a),
            Err(DropReason::SpoofedIp)
        );
        assert_eq!(check(&eth(ME, ETHERTYPE_IPV4, &ipv4([198, 18, 0, 11])), Guard::DEFAULT, ME, &a), Ok(()));
        // A reply claiming the gateway's address, or carrying another sender MAC.
        let reply = |sha, spa| eth(ME, ETHERTYPE_ARP, &arp(2, sha, spa, [198, 18, 15, 254]));
        assert_eq!(check(&reply(ME, [198, 18, 0, 10]), IP_GUARD, ME, &a), Ok(()));
        assert_eq!(check(&reply(ME, [198, 18, 0, 1]), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        assert_eq!(check(&reply(GW, [198, 18, 0, 10]), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        let probe = eth(ME, ETHERTYPE_ARP, &arp(1, ME, [0; 4], [198, 18, 0, 10]));
        assert_eq!(check(&probe, IP_GUARD, ME, &a), Ok(()), "ARP probe");
        // Too short to show the sender: not checkable.
        assert_eq!(check(&eth(ME, ETHERTYPE_ARP, &[0, 1, 8, 0, 6, 4]), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        assert_eq!(check(&eth(ME, ETHERTYPE_IPV4, &[0x45; 12]), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        // Other EtherTypes are not IP.
        assert_eq!(check(&eth(ME, 0x88cc, &[0; 46]), IP_GUARD, ME, &a), Ok(()));
    }

    #[test]
    fn tags_are_looked_through() {
        let a = addrs();
        let mut tagged = eth(ME, ETHERTYPE_VLAN, &[0xa0, 0]);
        tagged.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        tagged.extend_from_slice(&ipv4([198, 18, 0, 11]));
        assert_eq!(check(&tagged, IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        let mut triple = eth(ME, ETHERTYPE_VLAN, &[0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3]);
        triple.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        triple.extend_from_slice(&ipv4([198, 18, 0, 10]));
        assert_eq!(check(&triple, IP_GUARD, ME, &a), Err(DropReason::SpoofedIp), "three tags: not checkable");
    }

    #[test]
    fn ipv6_and_neighbour_discovery_senders_are_checked() {
        let a = addrs();
        let mine: Ipv6Addr = "2001:2::a".parse().unwrap();
        let theirs: Ipv6Addr = "2001:2::b".parse().unwrap();
        let ll = link_local(ME);
        assert_eq!(ll, "fe80::42:c6ff:fe12:a".parse::<Ipv6Addr>().unwrap());
        let v6 = |src, next, p: &[u8]| eth(ME, ETHERTYPE_IPV6, &ipv6(src, next, p));
        assert_eq!(check(&v6(mine, 17, &[0; 8]), IP_GUARD, ME, &a), Ok(()));
        assert_eq!(check(&v6(ll, 17, &[0; 8]), IP_GUARD, ME, &a), Ok(()));
        assert_eq!(check(&v6(link_local(OTHER), 17, &[0; 8]), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        assert_eq!(check(&v6(theirs, 17, &[0; 8]), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        // Advertisements: the target and the target link-layer address are the endpoint's.
        assert_eq!(check(&v6(ll, 58, &na(mine, ME)), IP_GUARD, ME, &a), Ok(()));
        assert_eq!(check(&v6(ll, 58, &na(theirs, ME)), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        assert_eq!(check(&v6(ll, 58, &na(mine, OTHER)), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        // Behind a hop-by-hop header, too.
        let mut hbh = vec![58, 0, 5, 2, 0, 0, 1, 0];
        hbh.extend_from_slice(&na(theirs, ME));
        assert_eq!(check(&v6(ll, 0, &hbh), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        // A solicitation from DAD (unspecified source, no option) about anyone is fine; its source
        // link-layer option must be ours.
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&theirs.octets());
        assert_eq!(check(&v6(Ipv6Addr::UNSPECIFIED, 58, &ns), IP_GUARD, ME, &a), Ok(()));
        ns.extend_from_slice(&[1, 1]);
        ns.extend_from_slice(&OTHER.0);
        assert_eq!(check(&v6(mine, 58, &ns), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
        // A zero-length option is malformed.
        let mut bad = na(mine, ME);
        bad[25] = 0;
        assert_eq!(check(&v6(ll, 58, &bad), IP_GUARD, ME, &a), Err(DropReason::SpoofedIp));
    }
}
