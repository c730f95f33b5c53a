//! The xmacvlan daemon of the lab: started per backend, spoken to through the control client
//! (`xmacvlan_ctl::client`, as the CLI does), its counters read for the cross-check, stopped by PID.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use xmacvlan_ctl::api;
use xmacvlan_ctl::client::Client;
use xmacvlan_ctl::ipam::IpamSpec;
use xmacvlan_lab::daemon::clean_exit;
use xmacvlan_lab::{sys, DaemonProcess, DaemonSpec};

use super::{
    endpoint_ip, endpoint_mac, ip_str, mac_str, ns_path, Backend, Lab, CONTAINER_IF, GEN_IP, NETWORK_NAME, PARENT_IF,
    SUBNET,
};

impl Lab {
    /// One request to the lab's daemon through the control client; a failure shows the daemon's
    /// log tail.
    pub(crate) fn call<T>(&self, f: impl FnOnce(&Client) -> xmacvlan_ctl::client::Result<T>) -> Result<T> {
        f(&Client::new(self.tmp.join("x.sock")))
            .map_err(|e| anyhow!("{e}\ndaemon log tail:\n{}", self.daemon_log_tail(40)))
    }

    /// The xmacvlan daemon's counters, flattened: `delivered` (Σ of the endpoints' tx, the datapath's
    /// own count to cross-check the container interfaces'), `delivered.wire` (the parent's tx, the
    /// same for frames to the wire), the parent socket's kernel-side drops,
    /// drop reasons summed over ports, and the workers' loop counters. None for the kernel backend.
    pub fn datapath_counters(&self) -> Result<Option<BTreeMap<String, u64>>> {
        if self.daemon.is_none() {
            return Ok(None);
        }
        let stats = self.call(Client::stats)?;
        let mut m = BTreeMap::new();
        let mut add = |k: String, v: u64| *m.entry(k).or_insert(0) += v;
        for w in stats.workers.iter().map(|w| &w.counters) {
            for (k, v) in [
                ("rx_frames", w.rx_frames),
                ("tx_frames", w.tx_frames),
                ("dropped", w.dropped),
                ("tx_kicks", w.tx_kicks),
                ("idle_sleeps", w.idle_sleeps),
                ("busy_loops", w.busy_loops),
                ("flood_copies", w.flood_copies),
            ] {
                add(format!("worker.{k}"), v);
            }
        }
        for p in stats.networks.iter().flat_map(|n| &n.ports) {
            match p.kind.as_str() {
                "endpoint" => add("delivered".into(), p.tx),
                "parent" => {
                    add("delivered.wire".into(), p.tx);
                    add("parent.xsk_fill_ring_empty".into(), p.kernel.xsk_fill_ring_empty);
                }
                _ => {}
            }
            for (k, c) in &p.drops {
                add(format!("drops.{k}"), *c);
            }
        }
        Ok(Some(m))
    }

    /// Connects container `i` (its namespace must exist) to the lab's network through the daemon:
    /// its endpoint `eth0` with the container's MAC and address (on ipvlan no MAC: the daemon gives
    /// every endpoint the parent's, and refuses another). Does not wait for the link.
    pub fn connect_endpoint(&self, i: usize) -> Result<()> {
        let ipvlan = self.active.is_some_and(Backend::ipvlan);
        self.call(|c| {
            c.connect(api::Connect {
                network: NETWORK_NAME.into(),
                netns: Some(self.containers[i].ns.path()),
                tap: None,
                owner: None,
                ip: Some(ip_str(&endpoint_ip(i))),
                ip6: None,
                mac: (!ipvlan).then(|| mac_str(&endpoint_mac(i))),
                ifname: CONTAINER_IF.into(),
                mtu: None,
                spoof_check: None,
                ip_guard: None,
            })
        })?;
        Ok(())
    }

    /// Disconnects container `i`'s endpoint (as `xmacvlan network disconnect` does): the daemon
    /// deletes its link and keeps its counters under `departed`.
    pub fn disconnect_endpoint(&self, i: usize) -> Result<()> {
        let netns = self.containers[i].ns.path();
        self.call(|c| c.disconnect(NETWORK_NAME.into(), netns))?;
        Ok(())
    }

    /// `xmacvlan stats --format json`, as the CLI prints it (the CLI serialises this same reply).
    pub fn stats_json(&self) -> Result<serde_json::Value> {
        let stats = self.call(Client::stats)?;
        Ok(serde_json::to_value(&stats)?)
    }

    /// Starts the daemon `backend` runs on and creates the lab's network on it.
    pub(crate) fn start_daemon(&mut self, backend: Backend) -> Result<()> {
        let fast_path = backend.fast_path().ok_or_else(|| anyhow!("{} runs no xmacvlan daemon", backend.name()))?;
        let bin = self.bin.clone().ok_or_else(|| anyhow!("no xmacvlan binary"))?;
        let sock = self.tmp.join("x.sock");
        let state = self.tmp.join("st");
        let _ = fs::remove_file(&sock);
        let _ = fs::remove_dir_all(&state);
        fs::create_dir_all(&state)?;
        let mut args = vec!["--cpus".to_string(), self.xmv_cpus.clone()];
        args.extend(self.daemon_args.iter().cloned());
        args.extend(["--fast-path".to_string(), fast_path.to_string()]);
        let spec = DaemonSpec {
            bin: &bin,
            netns: &self.dp.name,
            socket: &sock,
            state_dir: &state,
            log: &self.daemon_log,
            args: &args,
            // A terminal's Ctrl-C reaches only the bench, which stops the daemon itself.
            own_process_group: true,
        };
        self.daemon = Some(DaemonProcess::start(&spec, Duration::from_secs(30))?);
        self.call(|c| c.create(network(backend)))?;
        Ok(())
    }

    /// Opens, inside container 0, a UDP socket on the generated frames' port, connected to their source
    /// (so early demux finds it) and with the smallest receive buffer: the queue is full at once and every
    /// further datagram is dropped by the socket layer (UdpRcvbufErrors), an application that never reads.
    pub fn open_udp_sink(&mut self) -> Result<()> {
        let path = ns_path(&self.containers[0].ns.name);
        let fd = sys::in_netns(&path, || -> Result<std::os::fd::OwnedFd> {
            let s = std::net::UdpSocket::bind(("0.0.0.0", crate::gen::UDP_DST_PORT)).context("binding the UDP sink")?;
            // The kernel rounds it up to its minimum.
            sys::setsockopt(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 1 as libc::c_int)?;
            s.connect((std::net::Ipv4Addr::from(GEN_IP), crate::gen::UDP_SRC_PORT))
                .context("connecting the UDP sink")?;
            Ok(std::os::fd::OwnedFd::from(s))
        })??;
        self.sink = Some(fd);
        Ok(())
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(DaemonProcess::pid)
    }

    pub fn daemon_log_tail(&self, lines: usize) -> String {
        let s = fs::read_to_string(&self.daemon_log).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    pub fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            match d.stop(Duration::from_secs(10)) {
                Some(st) if !clean_exit(st) => eprintln!(
                    "xmacvlan bench: the xmacvlan daemon (pid {}) ended with {st}; log tail:\n{}",
                    d.pid(),
                    self.daemon_log_tail(20)
                ),
                _ => {}
            }
        }
    }
}

/// The lab's network on `backend`'s daemon, as `xmacvlan network create` sends it: on the parent
/// eth1, the wire host's address kept out of the pool; macvlan (each endpoint its own MAC), or
/// `-d ipvlan -o ipvlan_mode=l2 -o ipvlan_flag=bridge` (the parent's MAC for all, told apart by
/// address, switched among themselves by it).
pub(crate) fn network(backend: Backend) -> api::CreateNetwork {
    let ipam = IpamSpec {
        subnets: vec![SUBNET.into()],
        aux_addresses: vec![format!("wirehost={}", ip_str(&GEN_IP))],
        ..IpamSpec::default()
    };
    let mut options = vec![("parent".to_string(), PARENT_IF.to_string())];
    let driver = if backend.ipvlan() {
        options.extend([("ipvlan_mode".into(), "l2".into()), ("ipvlan_flag".into(), "bridge".into())]);
        "ipvlan"
    } else {
        "macvlan"
    };
    api::CreateNetwork { name: NETWORK_NAME.into(), driver: driver.into(), ipam, internal: false, options }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ipvlan_backend_creates_an_l2_bridge_ipvlan_network_on_the_same_parent() {
        let n = network(Backend::XmacvlanIpvlan);
        assert_eq!(n.driver, "ipvlan");
        let o = |k: &str| n.options.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!((o("parent"), o("ipvlan_mode"), o("ipvlan_flag")), (Some(PARENT_IF), Some("l2"), Some("bridge")));
        for b in [Backend::Xmacvlan, Backend::XmacvlanXdp, Backend::XmacvlanAfxdp] {
            let m = network(b);
            assert_eq!(m.driver, "macvlan");
            assert_eq!(m.options, [("parent".to_string(), PARENT_IF.to_string())], "{}", b.name());
        }
        assert_eq!(n.ipam.subnets, network(Backend::Xmacvlan).ipam.subnets);
    }
}
