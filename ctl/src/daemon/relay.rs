//! The tc flood's relay pair (`xmacvlan0`/`xmacvlan1`, see netlink::create_relay and
//! bpf/xmacvlan.h): the datapath needs it for every network on a wire, so the daemon makes it with
//! the first such network and removes it with the last.

use anyhow::Result;

use super::Daemon;
use crate::netlink;

impl Daemon {
    /// The tc flood's relay pair (netlink::create_relay) exists while a network on a wire does.
    pub(super) async fn ensure_relay(&mut self) -> Result<()> {
        if self.dp().relay().is_some() {
            return Ok(());
        }
        let (relay, collector) = netlink::create_relay(&self.h).await?;
        let set = self.dp().set_relay((relay.index, &relay.name), (collector.index, &collector.name));
        if let Err(e) = set {
            let _ = netlink::del_link(&self.h, relay.index).await;
            return Err(anyhow::Error::new(e).context("attaching the tc flood's relay"));
        }
        Ok(())
    }

    /// At shutdown (the datapath has let go of it): the pair goes, the next start makes it again.
    pub(super) async fn remove_relay(&self) {
        if let Ok(Some(relay)) = netlink::link_by_name(&self.h, netlink::RELAY).await {
            let _ = netlink::del_link(&self.h, relay.index).await;
        }
    }

    /// After a network went: the pair goes with the last network on a wire.
    pub(super) async fn release_relay(&mut self) {
        if self.domains.values().any(|d| !d.anchor) {
            return;
        }
        let cleared = self.dp().clear_relay();
        if let Some(r) = cleared {
            if let Err(e) = netlink::del_link(&self.h, r.relay).await {
                eprintln!("xmacvlan daemon: removing the flood relay {}: {e:#}", netlink::RELAY);
            }
        }
    }
}
