//! A zero-copy view of an Ethernet II header with an optional 802.1Q tag, and the tag's edits in
//! place (pop, push, set the VID) that the workers apply.
//!
//! Contract (as in smoltcp's `wire`): once [`Ethernet::parse`] returned `Ok`, no accessor panics.

use std::{fmt, str::FromStr};

/// Byte ranges of the Ethernet header.
mod field {
    use std::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const VLAN_TCI: Range<usize> = 14..16;
    pub const HEADER_LEN: usize = 14;
    pub const VLAN_HEADER_LEN: usize = 18;
}

pub const ETH_HLEN: usize = field::HEADER_LEN;
pub const VLAN_HLEN: usize = 4;
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Group bit: broadcast and multicast.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The inverse of [`MacAddr::to_u64`] (the high 16 bits are ignored).
    #[inline]
    pub fn from_u64(x: u64) -> Self {
        let b = x.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The address as the low 48 bits of a u64 (network byte order, first octet highest).
    #[inline]
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address '{0}': expected six hex octets like 02:42:c6:12:00:0a")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            // Hex digits only: from_str_radix would also take a sign ("+2").
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// Why a frame could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than an Ethernet header.
    Runt,
    /// EtherType 0x8100 without room for the tag.
    TruncatedVlan,
}

/// A checked view of an Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct Ethernet<'a> {
    buf: &'a [u8],
    tagged: bool,
}

impl<'a> Ethernet<'a> {
    /// Checks the lengths once; every accessor below is then infallible.
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        if buf.len() < field::HEADER_LEN {
            return Err(ParseError::Runt);
        }
        let tagged = u16::from_be_bytes([buf[12], buf[13]]) == ETHERTYPE_VLAN;
        if tagged && buf.len() < field::VLAN_HEADER_LEN {
            return Err(ParseError::TruncatedVlan);
        }
        Ok(Ethernet { buf, tagged })
    }

    #[inline]
    pub fn dst(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf[field::DESTINATION]);
        MacAddr(m)
    }

    #[inline]
    pub fn src(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf[field::SOURCE]);
        MacAddr(m)
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.buf[field::ETHERTYPE.start], self.buf[field::ETHERTYPE.start + 1]])
    }

    /// The EtherType of the payload: after the tag when tagged.
    #[inline]
    pub fn inner_ethertype(&self) -> u16 {
        let at = self.header_len() - 2;
        u16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    #[inline]
    pub fn is_tagged(&self) -> bool {
        self.tagged
    }

    /// VLAN id of the 802.1Q tag (0 when untagged or priority-tagged).
    #[inline]
    pub fn vlan(&self) -> u16 {
        if self.tagged {
            u16::from_be_bytes([self.buf[field::VLAN_TCI.start], self.buf[field::VLAN_TCI.start + 1]]) & 0x0fff
        } else {
            0
        }
    }

    /// The whole tag control information (PCP, DEI, VID) of the 802.1Q tag; 0 when untagged.
    #[inline]
    pub fn tci(&self) -> u16 {
        if self.tagged {
            u16::from_be_bytes([self.buf[field::VLAN_TCI.start], self.buf[field::VLAN_TCI.start + 1]])
        } else {
            0
        }
    }

    /// Length of the L2 header, tag included.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.tagged {
            field::VLAN_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The TCI of a frame's 802.1Q tag; None when untagged or too short to carry one (no parse: the
/// per-frame fast check).
#[inline]
pub fn tag_of(frame: &[u8]) -> Option<u16> {
    match frame {
        [_, _, _, _, _, _, _, _, _, _, _, _, 0x81, 0x00, hi, lo, _, _, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

// 802.1Q tag edits in place. The frame is `buf[at..at + len]`; the payload never moves, the 12 MAC
// bytes do, so a push needs VLAN_HLEN bytes of room in front of the frame. Each returns where the
// frame now starts and its length. They panic on a frame too short for the edit (the callers have
// parsed it) or a push without room — never in the workers, whose frames have both.

/// Takes the 802.1Q tag out of a tagged frame.
#[inline]
pub fn pop_tag(buf: &mut [u8], at: usize, len: usize) -> (usize, usize) {
    assert!(len >= field::VLAN_HEADER_LEN, "pop_tag: a {len}-byte frame has no tag");
    buf.copy_within(at..at + 12, at + VLAN_HLEN);
    (at + VLAN_HLEN, len - VLAN_HLEN)
}

/// Puts a tag (`tpid`, `tci`) between the source MAC and the EtherType.
#[inline]
pub fn push_tag(buf: &mut [u8], at: usize, len: usize, tpid: u16, tci: u16) -> (usize, usize) {
    assert!(at >= VLAN_HLEN && len >= 12, "push_tag: no room in front of the frame at {at}");
    let start = at - VLAN_HLEN;
    buf.copy_within(at..at + 12, start);
    buf[start + 12..start + 14].copy_from_slice(&tpid.to_be_bytes());
    buf[start + 14..start + 16].copy_from_slice(&tci.to_be_bytes());
    (start, len + VLAN_HLEN)
}

/// Sets a tagged frame's VID, keeping its PCP and DEI (VID 0 makes it a priority tag).
#[inline]
pub fn set_vid(frame: &mut [u8], vid: u16) {
    frame[14] = (frame[14] & 0xf0) | ((vid >> 8) as u8 & 0x0f);
    frame[15] = vid as u8;
}

/// A tagged frame's priority code point.
#[inline]
pub fn pcp(frame: &[u8]) -> u8 {
    frame[14] >> 5
}

#[cfg(test)]
mod tests {
    use super::*;

    static UNTAGGED: [u8; 20] = [
        0x02, 0x42, 0xc6, 0x12, 0x00, 0x0a, // dst
        0x02, 0x00, 0xc6, 0x12, 0x00, 0xfe, // src
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x14, 0x00, 0x00,
    ];

    static TAGGED: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, //
        0x02, 0x00, 0xc6, 0x12, 0x00, 0xfe, //
        0x81, 0x00, 0xa0, 0x32, // PCP 5, VID 50
        0x08, 0x06,
    ];

    #[test]
    fn deconstruct_untagged() {
        let f = Ethernet::parse(&UNTAGGED).unwrap();
        assert_eq!(f.dst(), MacAddr([0x02, 0x42, 0xc6, 0x12, 0x00, 0x0a]));
        assert_eq!(f.src().to_string(), "02:00:c6:12:00:fe");
        assert_eq!(f.ethertype(), 0x0800);
        assert!(!f.is_tagged());
        assert_eq!(f.vlan(), 0);
        assert_eq!(f.header_len(), 14);
        assert!(!f.dst().is_multicast());
    }

    #[test]
    fn deconstruct_tagged() {
        let f = Ethernet::parse(&TAGGED).unwrap();
        assert!(f.is_tagged());
        assert_eq!(f.vlan(), 50, "PCP bits must not leak into the VLAN id");
        assert_eq!(f.tci() >> 13, 5);
        assert_eq!(f.header_len(), 18);
        assert!(f.dst().is_multicast());
    }

    #[test]
    fn short_frames_are_errors_not_panics() {
        for len in 0..14 {
            assert_eq!(Ethernet::parse(&UNTAGGED[..len]).unwrap_err(), ParseError::Runt);
        }
        for len in 14..18 {
            assert_eq!(Ethernet::parse(&TAGGED[..len]).unwrap_err(), ParseError::TruncatedVlan);
        }
    }

    #[test]
    fn tag_edits_move_the_macs_never_the_payload() {
        // Room for a push in front, as a UMEM chunk's headroom gives.
        let mut buf = [0u8; 4 + 20];
        buf[4..].copy_from_slice(&UNTAGGED);
        let (at, len) = push_tag(&mut buf, 4, 20, ETHERTYPE_VLAN, 0xa032);
        assert_eq!((at, len), (0, 24));
        assert_eq!(&buf[..12], &UNTAGGED[..12]);
        assert_eq!(&buf[12..16], &[0x81, 0x00, 0xa0, 0x32]);
        assert_eq!(&buf[16..], &UNTAGGED[12..], "payload in place");
        assert_eq!(tag_of(&buf), Some(0xa032));
        assert_eq!(pcp(&buf), 5);
        set_vid(&mut buf, 10);
        assert_eq!(tag_of(&buf), Some(0xa00a), "PCP kept");
        set_vid(&mut buf, 0);
        assert_eq!(tag_of(&buf), Some(0xa000), "a priority tag");
        let (at, len) = pop_tag(&mut buf, at, len);
        assert_eq!((at, len), (4, 20));
        assert_eq!(&buf[4..], &UNTAGGED[..], "popped back to the frame it was");
        assert_eq!(tag_of(&buf[4..]), None);
    }

    #[test]
    fn tag_of_needs_a_whole_tag() {
        assert_eq!(tag_of(&TAGGED), Some(0xa032));
        assert_eq!(tag_of(&TAGGED[..17]), None, "too short for tag and EtherType");
        assert_eq!(tag_of(&UNTAGGED), None);
    }

    #[test]
    #[should_panic(expected = "no room")]
    fn a_push_without_room_is_refused() {
        let mut f = UNTAGGED;
        push_tag(&mut f, 0, 20, ETHERTYPE_VLAN, 1);
    }

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "02:42:C6:12:00:0a".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:c6:12:00:0a");
        assert_eq!(m.to_u64(), 0x0242_c612_000a);
        for bad in [
            "",
            "02:42:c6:12:00",
            "02:42:c6:12:00:0a:01",
            "02:42:zz:12:00:0a",
            "002:42:c6:12:00:0a",
            "+2:42:c6:12:00:0a",
        ] {
            let e = bad.parse::<MacAddr>().unwrap_err();
            assert!(e.to_string().contains(bad), "error names the value: {e}");
        }
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_multicast());
    }
}
