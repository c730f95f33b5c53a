//! The board: the networks as the last finished command left them, posted for the readers.
//!
//! `network ls`, `network inspect` and `stats` answer from the board and the datapath's counters,
//! never from the registry itself: a command holds the registry for as long as it runs (removing a
//! network of 200 endpoints takes seconds), and a reader must not wait for it. Every command posts
//! the networks it changed before it replies, so a client reads its own writes; a command still
//! running is not seen until it has finished, as if it had not started.
//!
//! The datapath lives here too, behind a lock of its own that every holder takes for one call
//! at a time: the registry for its changes, the readers for a report, the sampler for the rates.
//! Its calls take microseconds to milliseconds; the longest is a CNI CHECK's probe, which waits
//! up to a second for its frame (`stats` and `inspect` may wait behind it, `ls` never does).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use anyhow::{anyhow, Result};
use xmacvlan_datapath::counters::WorkerStats;
use xmacvlan_datapath::fwd::PortId;
use xmacvlan_datapath::{Datapath, NetId, PortReport, Report};

use super::view::{drops_by_reason, port_stats};
use crate::api::reply::{Departed, FastPathView, NetworkInspect, NetworkStats, PortEndpoint, Stats, WorkerView};
use crate::api::NetworkView;

/// A network as the readers see it: its view, and where its ports' counters are found.
pub(super) struct Posted {
    pub view: NetworkView,
    /// None while the network is inactive.
    pub ports: Option<Ports>,
}

/// A network's ports in the datapath's report.
pub(super) struct Ports {
    /// Its forwarding domain.
    pub dp: NetId,
    /// An internal network's anchor has no parent port to show.
    pub anchor: bool,
    /// Its endpoints, in connect order: port, kind ("endpoint" or "tap"), where it is.
    pub endpoints: Vec<(PortId, &'static str, PortEndpoint)>,
}

/// The workers' rates over the last sampling interval.
struct Rates {
    at: Instant,
    workers: Vec<WorkerStats>,
    /// rx, tx, dropped frames per second, per worker.
    per_sec: Vec<(f64, f64, f64)>,
}

pub(super) struct Board {
    posted: RwLock<BTreeMap<String, Arc<Posted>>>,
    dp: Mutex<Datapath>,
    rates: Mutex<Rates>,
}

impl Board {
    pub fn new(dp: Datapath) -> Self {
        let workers = dp.report().workers;
        let rates = Rates { at: Instant::now(), per_sec: vec![(0.0, 0.0, 0.0); workers.len()], workers };
        Board { posted: RwLock::default(), dp: Mutex::new(dp), rates: Mutex::new(rates) }
    }

    /// The datapath, for one call (never held across an await: the guard is not `Send`).
    pub fn dp(&self) -> MutexGuard<'_, Datapath> {
        self.dp.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts network `name` as it is now, or takes it down (None: it is gone).
    pub fn post(&self, name: &str, now: Option<Posted>) {
        let mut posted = self.posted.write().unwrap_or_else(|e| e.into_inner());
        match now {
            Some(p) => posted.insert(name.to_string(), Arc::new(p)),
            None => posted.remove(name),
        };
    }

    /// Replaces every posted network.
    pub fn post_all(&self, all: BTreeMap<String, Posted>) {
        let all = all.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        *self.posted.write().unwrap_or_else(|e| e.into_inner()) = all;
    }

    /// The posted networks, in name order (the board is not held while they are read).
    fn networks(&self) -> Vec<Arc<Posted>> {
        self.posted.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn ls(&self) -> Vec<NetworkView> {
        self.networks().iter().map(|p| p.view.clone()).collect()
    }

    pub fn inspect(&self, name: &str) -> Result<NetworkInspect> {
        let p = self.posted.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        let p = p.ok_or_else(|| anyhow!("network '{name}' not found"))?;
        let report = self.dp().report();
        Ok(NetworkInspect { network: p.view.clone(), counters: network_stats(&p, &report) })
    }

    pub fn stats(&self) -> Stats {
        let report = self.dp().report();
        let per_sec = self.rates.lock().unwrap_or_else(|e| e.into_inner()).per_sec.clone();
        let workers = report
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (rx, tx, dr) = per_sec.get(i).copied().unwrap_or_default();
                WorkerView { counters: w.clone(), rx_pps: rx.round(), tx_pps: tx.round(), drop_pps: dr.round() }
            })
            .collect();
        let networks = self.networks().iter().filter_map(|n| network_stats(n, &report)).collect();
        let xdp = report.xdp.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let d = &report.departed;
        let departed = Departed { rx: d.rx, tx: d.tx, drops: drops_by_reason(&d.drops), drops_total: d.drops_total() };
        let k = &report.kernel;
        // Received by the kernel-side paths: from the wire, and from containers (xmv_endpoint_tc,
        // the frames its collector refused included).
        let (e, wire) = (&k.to_endpoints, &k.to_wire);
        let fast_path = FastPathView {
            mode: report.fast_path.name().into(),
            rx: k.rx + e.rx + e.lost,
            from_containers: e.rx + e.lost,
            delivered: e.frames + wire.frames,
            to_wire: wire.frames,
            bytes: e.bytes + wire.bytes,
            dropped: e.dropped() + wire.dropped() + e.lost,
            flood_frames: k.flood_frames,
            flood_copies: k.flood_copies,
            flood_empty: k.flood_empty,
        };
        Stats { workers, xdp, networks, departed, fast_path }
    }

    /// Samples the workers' counters: the rates `stats` shows are over the time since the last call.
    pub fn sample(&self) {
        let now = self.dp().report().workers;
        let mut r = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let dt = r.at.elapsed().as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        r.per_sec = now
            .iter()
            .zip(&r.workers)
            .map(|(n, p)| (rate(n.rx_frames, p.rx_frames), rate(n.tx_frames, p.tx_frames), rate(n.dropped, p.dropped)))
            .collect();
        r.workers = now;
        r.at = Instant::now();
    }
}

/// One network's ports and their counters, as `stats` lists them and `inspect` shows them under
/// "counters"; None while the network is inactive. A port the report does not have (yet, or any
/// more: a command is changing the network) is left out.
fn network_stats(n: &Posted, report: &Report) -> Option<NetworkStats> {
    let ports = n.ports.as_ref()?;
    let r = report.networks.iter().find(|r| r.id == ports.dp)?;
    // The domain's ports by id: one lookup per endpoint, not a scan of the domain each.
    let by_port: HashMap<PortId, &PortReport> = r.endpoints.iter().map(|p| (p.id, p)).collect();
    let mut shown = Vec::with_capacity(ports.endpoints.len() + 1);
    if !ports.anchor {
        // Shared by every network on this parent.
        shown.push(port_stats("parent", &r.parent, None));
    }
    for (port, kind, place) in &ports.endpoints {
        if let Some(p) = by_port.get(port) {
            shown.push(port_stats(kind, p, Some(place.clone())));
        }
    }
    let v = &n.view;
    Some(NetworkStats {
        name: v.name.clone(),
        parent: v.parent.clone(),
        vlan: v.vlan,
        mode: v.mode.clone(),
        internal: v.internal,
        xdp_mode: r.xdp_mode.into(),
        ports: shown,
        umem: r.umem,
    })
}
