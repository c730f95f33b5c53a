//! The datapath's books, read from `xmacvlan stats --format json`: the end-to-end tests check them
//! after a scenario, the bench's soak after ten minutes of traffic and churn, with the same code.
//!
//! - the accounting invariant over every distinct port, the ports removed since the daemon started
//!   (`departed`) and the workers ([`accounting`]):
//!   `Σ rx + departed.rx + Σ flood_copies = Σ tx + departed.tx + Σ drops_total + departed.drops_total
//!   + Σ flood_empty` (flood terms: the workers' and the tc flood's, `fast_path`), each port once
//!   (the parent appears in every network on it), and per port `drops_total = Σ drops`;
//! - a network's UMEM identity, `frames = free + flood + parent + endpoints + in_flight` (counts
//!   summed over workers; [`umem`]).
//!
//! A field the contract requires and the JSON lacks is an `Err` that names it, never a panic.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::Value;

/// The terms of the accounting invariant, summed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Accounting {
    /// Distinct ports summed (by name).
    pub ports: usize,
    pub rx: u64,
    pub tx: u64,
    pub drops: u64,
    pub departed_rx: u64,
    pub departed_tx: u64,
    pub departed_drops: u64,
    pub flood_copies: u64,
    pub flood_empty: u64,
    /// Drops by reason over present and departed ports (reasons with no drop left out).
    pub drop_reasons: BTreeMap<String, u64>,
    /// Ports (or `departed`) whose `drops_total` is not the sum of their `drops`.
    pub inconsistent: Vec<String>,
}

impl Accounting {
    /// Frames that entered: received from ports (present and departed) and flood copies made.
    pub fn inflow(&self) -> u64 {
        self.rx + self.departed_rx + self.flood_copies
    }

    /// Frames that left: delivered, dropped (present and departed ports) or floods to nobody.
    pub fn outflow(&self) -> u64 {
        self.tx + self.departed_tx + self.drops + self.departed_drops + self.flood_empty
    }

    pub fn holds(&self) -> bool {
        self.inflow() == self.outflow() && self.inconsistent.is_empty()
    }

    /// `no_buffer 20, dst_down 1`, or `none`.
    pub fn reasons(&self) -> String {
        if self.drop_reasons.is_empty() {
            return "none".into();
        }
        self.drop_reasons.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ")
    }

    fn add(&mut self, t: &Terms, departed: bool) {
        if departed {
            self.departed_rx += t.rx;
            self.departed_tx += t.tx;
            self.departed_drops += t.drops_total;
        } else {
            self.rx += t.rx;
            self.tx += t.tx;
            self.drops += t.drops_total;
        }
        for (r, n) in t.drops.iter().filter(|(_, n)| **n > 0) {
            *self.drop_reasons.entry(r.clone()).or_default() += n;
        }
        if t.drops.values().sum::<u64>() != t.drops_total {
            self.inconsistent.push(format!(
                "{}: drops_total {} but its drops sum to {}",
                t.at,
                t.drops_total,
                t.drops.values().sum::<u64>()
            ));
        }
    }
}

impl fmt::Display for Accounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in {} (rx {} + departed rx {} + flood_copies {}) {} out {} (tx {} + departed tx {} + drops {} + \
             departed drops {} + flood_empty {}) over {} ports; drops by reason: {}",
            self.inflow(),
            self.rx,
            self.departed_rx,
            self.flood_copies,
            if self.inflow() == self.outflow() { "=" } else { "≠" },
            self.outflow(),
            self.tx,
            self.departed_tx,
            self.drops,
            self.departed_drops,
            self.flood_empty,
            self.ports,
            self.reasons()
        )?;
        if !self.inconsistent.is_empty() {
            write!(f, "; inconsistent: {}", self.inconsistent.join("; "))?;
        }
        Ok(())
    }
}

/// One port's (or `departed`'s) counters.
struct Terms {
    at: String,
    rx: u64,
    tx: u64,
    drops_total: u64,
    drops: BTreeMap<String, u64>,
}

fn count(v: &Value, field: &str, at: &str) -> Result<u64, String> {
    match v.get(field) {
        Some(n) => n.as_u64().ok_or_else(|| format!("{at}.{field} is not a count: {n}")),
        None => Err(format!("{at} lacks `{field}`")),
    }
}

fn terms(v: &Value, at: &str) -> Result<Terms, String> {
    let drops = v
        .get("drops")
        .ok_or_else(|| format!("{at} lacks `drops`"))?
        .as_object()
        .ok_or_else(|| format!("{at}.drops is not an object of reasons"))?
        .iter()
        .map(|(r, n)| n.as_u64().map(|n| (r.clone(), n)).ok_or_else(|| format!("{at}.drops.{r} is not a count: {n}")))
        .collect::<Result<_, _>>()?;
    Ok(Terms {
        at: at.to_string(),
        rx: count(v, "rx", at)?,
        tx: count(v, "tx", at)?,
        drops_total: count(v, "drops_total", at)?,
        drops,
    })
}

/// Reads the accounting invariant's terms from `xmacvlan stats --format json`, each distinct port
/// (by `name`) once. `Err` lists what the contract requires and the JSON lacks (the first few
/// places), with the sum of what is there.
pub fn accounting(stats: &Value) -> Result<Accounting, String> {
    let mut a = Accounting::default();
    let mut missing: Vec<String> = Vec::new();
    match stats.get("workers").and_then(Value::as_array) {
        None => missing.push("the top-level `workers` array".into()),
        Some(workers) => {
            for (i, w) in workers.iter().enumerate() {
                let at = format!("workers[{i}]");
                match (count(w, "flood_copies", &at), count(w, "flood_empty", &at)) {
                    (Ok(c), Ok(e)) => {
                        a.flood_copies += c;
                        a.flood_empty += e;
                    }
                    (c, e) => missing.extend(c.err().into_iter().chain(e.err())),
                }
            }
        }
    }
    // The tc flood fans out in the kernel: its floods' extra outcomes are not any worker's.
    match stats.get("fast_path") {
        None => missing.push("the top-level `fast_path` object".into()),
        Some(f) => match (count(f, "flood_copies", "fast_path"), count(f, "flood_empty", "fast_path")) {
            (Ok(c), Ok(e)) => {
                a.flood_copies += c;
                a.flood_empty += e;
            }
            (c, e) => missing.extend(c.err().into_iter().chain(e.err())),
        },
    }
    let mut seen = HashSet::new();
    match stats.get("networks").and_then(Value::as_array) {
        None => missing.push("the top-level `networks` array".into()),
        Some(nets) => {
            for (i, n) in nets.iter().enumerate() {
                let Some(ports) = n.get("ports").and_then(Value::as_array) else {
                    missing.push(format!("networks[{i}].ports"));
                    continue;
                };
                for (j, p) in ports.iter().enumerate() {
                    let Some(name) = p.get("name").and_then(Value::as_str) else {
                        missing.push(format!("networks[{i}].ports[{j}] lacks `name`"));
                        continue;
                    };
                    // The parent is listed in every network on it: once.
                    if seen.insert(name.to_string()) {
                        match terms(p, &format!("port {name}")) {
                            Ok(t) => a.add(&t, false),
                            Err(e) => missing.push(e),
                        }
                    }
                }
            }
        }
    }
    a.ports = seen.len();
    match stats.get("departed") {
        None => missing.push(
            "the top-level `departed` object (rx, tx, drops_total, drops: counters of the ports removed since \
             the daemon started)"
                .into(),
        ),
        Some(d) => match terms(d, "departed") {
            Ok(t) => a.add(&t, true),
            Err(e) => missing.push(e),
        },
    }
    if missing.is_empty() {
        return Ok(a);
    }
    let more = missing.len().saturating_sub(4);
    missing.truncate(4);
    let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
    Err(format!(
        "stats JSON lacks what the accounting contract requires: {}{more}; what is there sums to: {a}",
        missing.join("; ")
    ))
}

/// A network's UMEM frames by where they are, summed over workers (`networks[i].umem`): the
/// reply's own type, with its identity ([`Umem::balanced`]).
pub use xmacvlan_datapath::counters::UmemStats as Umem;

/// Reads network `network`'s `umem` object from `xmacvlan stats --format json`. `Err` names what
/// is missing.
pub fn umem(stats: &Value, network: &str) -> Result<Umem, String> {
    let nets = stats.get("networks").and_then(Value::as_array).ok_or("stats JSON lacks the `networks` array")?;
    let n = nets
        .iter()
        .find(|n| n.get("name").and_then(Value::as_str) == Some(network))
        .ok_or_else(|| format!("stats JSON has no network '{network}'"))?;
    let at = format!("network '{network}'");
    let u = n.get("umem").ok_or_else(|| {
        format!(
            "stats JSON: {at} lacks `umem` (frames, free, flood, parent, endpoints, in_flight, summed over workers)"
        )
    })?;
    let at = format!("{at}: umem");
    Ok(Umem {
        frames: count(u, "frames", &at)?,
        free: count(u, "free", &at)?,
        flood: count(u, "flood", &at)?,
        parent: count(u, "parent", &at)?,
        endpoints: count(u, "endpoints", &at)?,
        in_flight: count(u, "in_flight", &at)?,
        ..Umem::default()
    })
}
