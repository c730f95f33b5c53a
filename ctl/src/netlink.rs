//! rtnetlink operations: links, addresses, routes, and work inside another network namespace.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use anyhow::{anyhow, bail, Context, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use xmacvlan_datapath::frame::MacAddr;

/// What the daemon needs to know about a link.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    pub lower_up: bool,
    pub loopback: bool,
    pub ether: bool,
    pub rx_queues: u32,
    pub promisc: bool,
}

impl Link {
    pub fn from_message(m: &LinkMessage) -> Self {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            up: m.header.flags.contains(LinkFlags::Up),
            lower_up: m.header.flags.contains(LinkFlags::LowerUp),
            loopback: m.header.flags.contains(LinkFlags::Loopback)
                || m.header.link_layer_type == LinkLayerType::Loopback,
            ether: m.header.link_layer_type == LinkLayerType::Ether,
            rx_queues: 1,
            promisc: m.header.flags.contains(LinkFlags::Promisc),
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(v) => link.mtu = *v,
                LinkAttribute::NumRxQueues(q) => link.rx_queues = *q,
                LinkAttribute::Address(b) if b.len() == 6 => {
                    link.mac = Some(MacAddr(b.as_slice().try_into().expect("length checked")));
                }
                _ => {}
            }
        }
        link
    }
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| c.get().abs()) == Some(errno))
}

/// A connection in the calling thread's current network namespace.
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().context("opening an rtnetlink socket")?;
    tokio::spawn(conn);
    Ok(handle)
}

pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<Link>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(Link::from_message(&m))),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(anyhow!("looking up link {name}: {e}")),
    }
}

pub async fn link_by_index(h: &Handle, index: u32) -> Result<Option<Link>> {
    let mut s = h.link().get().match_index(index).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(Link::from_message(&m))),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(anyhow!("looking up link #{index}: {e}")),
    }
}

/// Creates a veth pair whose peer is born inside `netns` with its final name, MAC and MTU, so
/// there is no rename step and nothing to undo there if a later step fails.
pub async fn create_veth(
    h: &Handle,
    host: &str,
    peer: &str,
    mac: MacAddr,
    mtu: u32,
    queues: u32,
    netns: &File,
) -> Result<()> {
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer)
        .address(mac.0.to_vec())
        .mtu(mtu)
        .setns_by_fd(netns.as_raw_fd())
        .append_extra_attribute(LinkAttribute::NumTxQueues(queues))
        .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host.to_string())
        .mtu(mtu)
        .append_extra_attribute(LinkAttribute::NumTxQueues(queues))
        .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    h.link().add(msg).execute().await.map_err(|e| {
        if is_errno(&e, libc::EEXIST) {
            anyhow!(
                "an interface named {peer} already exists in that namespace (or {host} here); choose another --ifname"
            )
        } else {
            anyhow!("creating veth pair {host} <-> {peer}: {e}")
        }
    })
}

pub async fn set_up(h: &Handle, index: u32) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| anyhow!("setting link #{index} up: {e}"))
}

/// Sets a link's MAC address (a passthru endpoint's MAC is its parent's, as in the kernel).
pub async fn set_mac(h: &Handle, index: u32, mac: MacAddr) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).address(mac.0.to_vec()).build())
        .execute()
        .await
        .map_err(|e| anyhow!("setting the MAC of link #{index} to {mac}: {e}"))
}

/// Turns promiscuous mode on or off (a passthru parent receives every unicast frame).
pub async fn set_promisc(h: &Handle, index: u32, on: bool) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).promiscuous(on).build())
        .execute()
        .await
        .map_err(|e| anyhow!("setting promiscuous mode {} on link #{index}: {e}", if on { "on" } else { "off" }))
}

/// ARP on or off (`ip link set dev X arp off` sets IFF_NOARP): an ipvlan L3 endpoint resolves
/// no neighbours (and joins no solicited-node groups).
pub async fn set_arp(h: &Handle, index: u32, on: bool) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).arp(on).build())
        .execute()
        .await
        .map_err(|e| anyhow!("setting ARP {} on link #{index}: {e}", if on { "on" } else { "off" }))
}

pub async fn set_down(h: &Handle, index: u32) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).down().build())
        .execute()
        .await
        .map_err(|e| anyhow!("setting link #{index} down: {e}"))
}

/// Deletes a link; one that is already gone is fine.
pub async fn del_link(h: &Handle, index: u32) -> Result<()> {
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(anyhow!("deleting link #{index}: {e}")),
    }
}

/// Adds an address; IPv6 ones without duplicate address detection (IFA_F_NODAD), as the IPAM
/// guarantees uniqueness and DAD would hold the address back for a second or more.
pub async fn add_addr(h: &Handle, index: u32, ip: IpAddr, prefix: u8) -> Result<()> {
    let mut req = h.address().add(index, ip, prefix);
    if ip.is_ipv6() {
        req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await.map_err(|e| anyhow!("adding {ip}/{prefix}: {e}"))
}

/// A route to `dst` (a prefix; 0.0.0.0/0 or ::/0 for the default route) out of link `oif`, via
/// `gw` when given.
pub async fn add_route(h: &Handle, dst: IpNet, gw: Option<IpAddr>, oif: u32) -> Result<()> {
    let route = match (dst, gw) {
        (IpNet::V4(d), None) => {
            RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(d.addr(), d.prefix_len()).output_interface(oif)
        }
        (IpNet::V4(d), Some(IpAddr::V4(g))) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(d.addr(), d.prefix_len())
            .gateway(g)
            .output_interface(oif),
        (IpNet::V6(d), None) => {
            let b = RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(d.addr(), d.prefix_len());
            return h
                .route()
                .add(b.output_interface(oif).build())
                .execute()
                .await
                .map_err(|e| anyhow!("adding route {dst}: {e}"));
        }
        (IpNet::V6(d), Some(IpAddr::V6(g))) => {
            let b = RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(d.addr(), d.prefix_len()).gateway(g);
            return h
                .route()
                .add(b.output_interface(oif).build())
                .execute()
                .await
                .map_err(|e| anyhow!("adding route {dst} via {g}: {e}"));
        }
        (_, Some(g)) => bail!("route {dst} via {g}: the gateway is of the other address family"),
    };
    let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
    h.route().add(route.build()).execute().await.map_err(|e| anyhow!("adding route {dst}{via}: {e}"))
}

/// A route of the main table, as CHECK compares it with what ADD reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
}

/// The main table's routes, IPv4 and IPv6.
pub async fn routes(h: &Handle) -> Result<Vec<RouteEntry>> {
    let mut out = Vec::new();
    let dumps = [RouteMessageBuilder::<Ipv4Addr>::new().build(), RouteMessageBuilder::<Ipv6Addr>::new().build()];
    for req in dumps {
        let mut stream = h.route().get(req).execute();
        while let Some(m) = stream.try_next().await.map_err(|e| anyhow!("listing routes: {e}"))? {
            let table = m
                .attributes
                .iter()
                .find_map(|a| if let RouteAttribute::Table(t) = a { Some(*t) } else { None })
                .unwrap_or(u32::from(m.header.table));
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                continue;
            }
            let ip = |a: &RouteAddress| match a {
                RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
                RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
                _ => None,
            };
            let mut dst = None;
            let mut gw = None;
            let mut oif = None;
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(d) => dst = ip(d),
                    RouteAttribute::Gateway(g) => gw = ip(g),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            let len = m.header.destination_prefix_length;
            let dst = match (dst, m.header.address_family) {
                (Some(d), _) => IpNet::new(d, len),
                (None, AddressFamily::Inet) => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0),
                (None, _) => IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0),
            };
            if let Ok(dst) = dst {
                out.push(RouteEntry { dst, gw, oif });
            }
        }
    }
    Ok(out)
}

/// The addresses of link `index`, with their prefix lengths.
pub async fn addrs(h: &Handle, index: u32) -> Result<Vec<IpNet>> {
    let mut out = Vec::new();
    let mut stream = h.address().get().set_link_index_filter(index).execute();
    while let Some(m) = stream.try_next().await.map_err(|e| anyhow!("listing addresses: {e}"))? {
        for a in &m.attributes {
            if let AddressAttribute::Address(ip) = a {
                if let Ok(n) = IpNet::new(*ip, m.header.prefix_len) {
                    out.push(n);
                }
            }
        }
    }
    Ok(out)
}

/// An internal network's anchor: a veth pair of ours (both ends in the daemon's namespace, left
/// down) that hosts the sockets owning the network's UMEMs, like Docker's dummy parent.
pub async fn create_anchor(h: &Handle, name: &str, queues: u32) -> Result<Link> {
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(format!("{name}p"))
        .append_extra_attribute(LinkAttribute::NumTxQueues(queues))
        .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(name.to_string())
        .append_extra_attribute(LinkAttribute::NumTxQueues(queues))
        .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    h.link().add(msg).execute().await.map_err(|e| anyhow!("creating the internal anchor {name}: {e}"))?;
    link_by_name(h, name).await?.ok_or_else(|| anyhow!("anchor {name} vanished right after creation"))
}

/// Name of the tc flood's relay pair (see bpf/xmacvlan.h and datapath/src/flood.rs): a veth pair
/// of ours in the daemon's namespace, `xmacvlan0` (the relay) and `xmacvlan1` (the collector),
/// named apart from the endpoints' `xmv…`.
pub const RELAY: &str = "xmacvlan0";
const COLLECTOR: &str = "xmacvlan1";

/// Creates the relay pair afresh (one a killed daemon left behind is deleted first): up, IPv6 off
/// (it has nothing to say on any link), the largest MTU a veth takes, so that any frame fits.
/// Returns (relay, collector).
pub async fn create_relay(h: &Handle) -> Result<(Link, Link)> {
    if let Some(old) = link_by_name(h, RELAY).await? {
        del_link(h, old.index).await?;
    }
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new().name(COLLECTOR.to_string()).mtu(RELAY_MTU).build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(RELAY.to_string())
        .mtu(RELAY_MTU)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    h.link().add(msg).execute().await.map_err(|e| anyhow!("creating the flood relay {RELAY}: {e}"))?;
    let mut links = Vec::new();
    for name in [RELAY, COLLECTOR] {
        disable_ipv6(name)?;
        let link = link_by_name(h, name).await?.ok_or_else(|| anyhow!("{name} vanished right after creation"))?;
        set_up(h, link.index).await?;
        links.push(link);
    }
    let collector = links.pop().expect("two links");
    Ok((links.pop().expect("two links"), collector))
}

/// A veth's largest MTU (ETH_MAX_MTU).
const RELAY_MTU: u32 = 65535;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct TunReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates a persistent tap device (single queue, no packet info), optionally owned by `owner`
/// so an unprivileged VM monitor may open it.
pub fn create_tap(name: &str, owner: Option<u32>) -> Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: open(2) with a constant path; the fd is owned below.
    let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("opening /dev/net/tun");
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = TunReq { name: [0; libc::IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let ioctl = |what: &str, cmd: libc::c_ulong, arg: libc::c_ulong| -> Result<()> {
        // SAFETY: TUN ioctls on our fd; TUNSETIFF reads the live ifreq, the others take integers.
        if unsafe { libc::ioctl(fd.as_raw_fd(), cmd, arg) } < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("tap {name}: {what}"));
        }
        Ok(())
    };
    ioctl("TUNSETIFF", TUNSETIFF, &mut req as *mut TunReq as libc::c_ulong)?;
    if let Some(uid) = owner {
        ioctl("TUNSETOWNER", TUNSETOWNER, libc::c_ulong::from(uid))?;
    }
    ioctl("TUNSETPERSIST", TUNSETPERSIST, 1)
}

pub async fn set_mtu(h: &Handle, index: u32, mtu: u32) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
        .map_err(|e| anyhow!("setting the MTU of link #{index} to {mtu}: {e}"))
}

/// The kind of a link (IFLA_INFO_KIND: "veth", "tun", ...), when it has one.
pub async fn link_kind(h: &Handle, index: u32) -> Result<Option<String>> {
    let mut s = h.link().get().match_index(index).execute();
    let Some(m) = s.try_next().await.map_err(|e| anyhow!("looking up link #{index}: {e}"))? else { return Ok(None) };
    for a in &m.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos {
                if let LinkInfo::Kind(k) = i {
                    return Ok(Some(k.to_string()));
                }
            }
        }
    }
    Ok(None)
}

/// Runs `f` with an rtnetlink handle inside the network namespace `ns`, on a dedicated thread that
/// never returns to any pool (its namespace is changed for good).
pub async fn in_netns<T, F, Fut>(ns: File, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("xmv-netns".into())
        .spawn(move || {
            let run = || -> Result<T> {
                // SAFETY: setns(2) on an open namespace fd; affects only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error()).context("entering the network namespace");
                }
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async move {
                    let h = connect()?;
                    f(h).await
                })
            };
            let _ = tx.send(run());
        })
        .context("spawning a netns thread")?;
    rx.await.map_err(|_| anyhow!("the netns thread died"))?
}

/// Disables IPv6 on a daemon-side link so the host stack never talks into an endpoint by itself.
pub fn disable_ipv6(ifname: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    match std::fs::write(&path, "1") {
        Ok(()) => Ok(()),
        // A kernel without IPv6 has nothing to disable.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("writing {path}")),
    }
}

/// Turns TX checksum offload (and with it TSO/GSO, which depend on it) off on `ifname` in the
/// calling thread's namespace (ETHTOOL_STXCSUM). A veth normally leaves the checksum of locally
/// sent TCP/UDP to "hardware" (CHECKSUM_PARTIAL); frames that reach XDP and AF_XDP are raw bytes,
/// so the container end of an endpoint must put the real checksum in before sending.
/// No IPv6 address made by the kernel on `ifname` (`addr_gen_mode` 1, none), in the calling
/// thread's namespace, before the link goes up. False when `ifname` has no IPv6 (a kernel
/// without it, or `disable_ipv6` set there): no address is to be added then.
pub fn no_addr_gen(ifname: &str) -> Result<bool> {
    let conf = format!("/proc/sys/net/ipv6/conf/{ifname}");
    match std::fs::read_to_string(format!("{conf}/disable_ipv6")) {
        Ok(v) if v.trim() != "0" => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {conf}/disable_ipv6")),
    }
    let path = format!("{conf}/addr_gen_mode");
    std::fs::write(&path, "1").with_context(|| format!("writing {path}"))?;
    Ok(true)
}

pub fn disable_tx_checksum(ifname: &str) -> Result<()> {
    ethtool_set(ifname, ETHTOOL_STXCSUM, 0).with_context(|| format!("turning TX checksum offload off on {ifname}"))
}

/// Turns TSO off on `ifname` in the calling thread's namespace (ETHTOOL_STSO). Frames an
/// endpoint's daemon-side end transmits (the workers' copies, the tc flood's clones) reach the
/// container end's NAPI ring only when the sending end has no TSO (veth_skb_is_eligible_for_gro);
/// otherwise they queue on the CPU's shared backlog, which a flood to a thousand endpoints overflows.
pub fn disable_tso(ifname: &str) -> Result<()> {
    ethtool_set(ifname, ETHTOOL_STSO, 0).with_context(|| format!("turning TSO off on {ifname}"))
}

/// Turns GRO on for `ifname` in the calling thread's namespace (ETHTOOL_SGRO): a veth end with GRO
/// has NAPI, and only then accepts frames redirected to its peer in XDP.
pub fn enable_gro(ifname: &str) -> Result<()> {
    ethtool_set(ifname, ETHTOOL_SGRO, 1).with_context(|| format!("turning GRO on for {ifname}"))
}

/// Turns receive VLAN offload off on a parent (legacy ETHTOOL_GFLAGS/SFLAGS, ETH_FLAG_RXVLAN =
/// NETIF_F_HW_VLAN_CTAG_RX): a NIC that moves 802.1Q tags into its descriptors before XDP runs hides
/// every frame's VLAN from xmv_parent, which would then steer tagged frames as untagged ones.
/// Returns whether it was on (and so is ours to turn back on); a device without it is fine.
pub fn disable_rx_vlan_offload(ifname: &str) -> Result<bool> {
    let flags =
        ethtool_value(ifname, ETHTOOL_GFLAGS, 0).with_context(|| format!("reading the offload flags of {ifname}"))?;
    if flags & ETH_FLAG_RXVLAN == 0 {
        return Ok(false);
    }
    ethtool_set(ifname, ETHTOOL_SFLAGS, flags & !ETH_FLAG_RXVLAN)
        .with_context(|| format!("turning receive VLAN offload (rxvlan) off on {ifname}"))?;
    Ok(true)
}

/// Undoes [`disable_rx_vlan_offload`].
pub fn enable_rx_vlan_offload(ifname: &str) -> Result<()> {
    let flags =
        ethtool_value(ifname, ETHTOOL_GFLAGS, 0).with_context(|| format!("reading the offload flags of {ifname}"))?;
    ethtool_set(ifname, ETHTOOL_SFLAGS, flags | ETH_FLAG_RXVLAN)
        .with_context(|| format!("turning receive VLAN offload (rxvlan) back on on {ifname}"))
}

const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_RXVLAN: u32 = 1 << 8;

fn ethtool_set(ifname: &str, cmd: u32, data: u32) -> Result<()> {
    ethtool_value(ifname, cmd, data).map(drop)
}

/// SIOCETHTOOL with a `struct ethtool_value` command; returns the value the kernel left in it.
fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> Result<u32> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if ifname.len() >= libc::IFNAMSIZ {
        bail!("interface name '{ifname}' is too long");
    }
    let mut v = EthtoolValue { cmd, data };
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: &mut v, _pad: [0; 16] };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: a datagram socket only used for this ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for SIOCETHTOOL");
    }
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_value.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req as *mut IfReq) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(err.into());
    }
    Ok(v.data)
}

/// The number of receive queues in use (ETHTOOL_GCHANNELS: rx + combined), which can be lower
/// than the IFLA_NUM_RX_QUEUES netlink reports (a veth allocates one per CPU and uses one).
/// None when the driver does not say.
pub fn active_rx_queues(ifname: &str) -> Option<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut EthtoolChannels,
        _pad: [u8; 16],
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if ifname.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut ch = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: &mut ch, _pad: [0; 16] };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: a datagram socket only used for this ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_channels.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req as *mut IfReq) };
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    let n = ch.rx_count + ch.combined_count;
    (rc == 0 && n > 0).then_some(n)
}
