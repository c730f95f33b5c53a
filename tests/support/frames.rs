//! Hand-made test frames carrying a marker: ARP, IPv4/UDP and IPv6/UDP. Their checksums are left
//! 0: a receiving stack drops them, the captures see them.

use std::net::{Ipv4Addr, Ipv6Addr};

/// An Ethernet/IPv4 ARP frame (`op` 1 request, 2 reply), padded with `mark`.
pub fn arp(dst: [u8; 6], src: [u8; 6], op: u8, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4], mark: &[u8; 8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, op]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.extend_from_slice(mark);
    f.resize(60, 0);
    f
}

/// An IPv4/UDP frame from `src_ip` to `dst_ip` carrying `mark`.
pub fn udp(dst: [u8; 6], src: [u8; 6], src_ip: [u8; 4], dst_ip: [u8; 4], mark: &[u8; 8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src_ip);
    f.extend_from_slice(&dst_ip);
    f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, 0, 16, 0, 0]);
    f.extend_from_slice(mark);
    f.resize(60, 0);
    f
}

/// An IPv6/UDP frame from `src_ip` to `dst_ip` carrying `mark`.
pub fn udp6(dst: [u8; 6], src: [u8; 6], src_ip: Ipv6Addr, dst_ip: Ipv6Addr, mark: &[u8; 8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(78);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, 17, 64]);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&dst_ip.octets());
    f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, 0, 16, 0, 0]);
    f.extend_from_slice(mark);
    f
}

pub fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap_or_else(|e| panic!("{s}: {e}")).octets()
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}
