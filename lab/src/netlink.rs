//! Raw netlink for the lab's hot reads (interface counters of a thousand namespaces, generic
//! netlink for NAPI threads): the datapath's own netlink layer ([`xmacvlan_datapath::netlink`]),
//! and a socket opened inside a namespace.

use std::io;
use std::path::Path;
use std::time::Duration;

pub use xmacvlan_datapath::netlink::{attrs, Msg, Netlink, NLMSG_DONE, NLMSG_ERROR};

use crate::sys;

/// A netlink socket of `protocol` opened inside the namespace at `path` (it stays bound to it),
/// whose receives give up after two seconds.
pub fn open_in(path: &Path, protocol: libc::c_int) -> io::Result<Netlink> {
    sys::in_netns(path, || Netlink::open(protocol).and_then(|n| n.with_timeout(Duration::from_secs(2))))?
        .map_err(|e| sys::context(e, format!("a netlink socket in {}", path.display())))
}
