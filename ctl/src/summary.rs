//! What a terminal shows of a network with many ports: totals, and the few rows that matter — the
//! parent, the ports that drop frames, the busiest ones — instead of one row per endpoint, so that
//! `stats` and `network inspect` stay readable with a thousand endpoints. Piped output, `--all`
//! and `--format json` still get every row.
//!
//! Pure, over a network's ports as the daemon reports them (`stats`' `networks[].ports`,
//! `inspect`'s `counters.ports`).

use crate::api::reply::PortStats;

/// Up to this many rows a table is shown whole, on a terminal too.
pub const WHOLE_TABLE_ROWS: usize = 20;
/// Ports with drops shown, the most dropping first.
pub const TOP_DROPS: usize = 5;
/// Busiest ports (received + delivered frames) shown, the busiest first.
pub const TOP_TRAFFIC: usize = 10;

/// Whether a table of `rows` rows is printed whole: with `--all`, when stdout is not a terminal
/// (scripts and pagers get what they always got), or when it is short anyway.
pub fn whole(rows: usize, all: bool, terminal: bool) -> bool {
    all || !terminal || rows <= WHOLE_TABLE_ROWS
}

/// A network's endpoints (veths and taps; not the parent) added up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub endpoints: usize,
    pub up: usize,
    pub down: usize,
    pub rx: u64,
    pub tx: u64,
    pub drops: u64,
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} endpoints ({} up, {} down): rx {}, tx {}, drops {}",
            self.endpoints, self.up, self.down, self.rx, self.tx, self.drops
        )
    }
}

/// The rows a terminal shows of a network's ports.
#[derive(Debug, PartialEq)]
pub struct Digest<'a> {
    pub totals: Totals,
    /// In order: the parent, the ports with drops (most first), the busiest of the others (most
    /// first, idle ones never). Every port in the daemon's order when the table is whole.
    pub rows: Vec<&'a PortStats>,
    /// How many ports are left out.
    pub hidden: usize,
    /// Of the rows, how many are there for their drops (after the parent).
    pub dropping: usize,
}

impl Digest<'_> {
    /// Which endpoints a shortened table shows, in words.
    pub fn shown(&self) -> String {
        let busy = self.rows.iter().filter(|p| !p.is_parent()).count() - self.dropping;
        match (self.dropping, busy) {
            (0, 0) => "no endpoint has traffic or drops".into(),
            (d, 0) => format!("the {d} with drops"),
            (0, b) => format!("the {b} busiest"),
            (d, b) => format!("the {d} with drops and the {b} busiest"),
        }
    }
}

/// A port's dropped frames: `drops_total`, or the sum over `drops` by reason when that is larger
/// (a reply that lacks the total).
pub fn drops(p: &PortStats) -> u64 {
    p.drops_total.max(p.drops.values().sum())
}

fn traffic(p: &PortStats) -> u64 {
    p.rx.saturating_add(p.tx)
}

/// Totals over `ports`, and the rows to print: all of them when `whole`, else the parent, up to
/// [`TOP_DROPS`] ports with drops and up to [`TOP_TRAFFIC`] of the busiest others. Ties keep the
/// daemon's order.
pub fn digest(ports: &[PortStats], whole: bool) -> Digest<'_> {
    let mut totals = Totals::default();
    for p in ports.iter().filter(|p| !p.is_parent()) {
        totals.endpoints += 1;
        if p.up {
            totals.up += 1;
        } else {
            totals.down += 1;
        }
        totals.rx += p.rx;
        totals.tx += p.tx;
        totals.drops += drops(p);
    }
    if whole {
        return Digest { totals, rows: ports.iter().collect(), hidden: 0, dropping: 0 };
    }
    let mut rows: Vec<&PortStats> = ports.iter().filter(|p| p.is_parent()).collect();
    let endpoints: Vec<(usize, &PortStats)> = ports.iter().enumerate().filter(|(_, p)| !p.is_parent()).collect();
    let mut dropping: Vec<(usize, &PortStats)> = endpoints.iter().copied().filter(|(_, p)| drops(p) > 0).collect();
    dropping.sort_by_key(|(i, p)| (std::cmp::Reverse(drops(p)), *i));
    dropping.truncate(TOP_DROPS);
    let mut busy: Vec<(usize, &PortStats)> =
        endpoints.iter().copied().filter(|(i, p)| traffic(p) > 0 && !dropping.iter().any(|(j, _)| j == i)).collect();
    busy.sort_by_key(|(i, p)| (std::cmp::Reverse(traffic(p)), *i));
    busy.truncate(TOP_TRAFFIC);
    let n_dropping = dropping.len();
    rows.extend(dropping.into_iter().chain(busy).map(|(_, p)| p));
    Digest { totals, hidden: ports.len() - rows.len(), rows, dropping: n_dropping }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// A port as the daemon's JSON has it.
    fn read(v: Value) -> PortStats {
        serde_json::from_value(v).expect("a port")
    }

    fn port(name: &str, up: bool, rx: u64, tx: u64, drops: u64) -> PortStats {
        read(json!({ "kind": "endpoint", "name": name, "up": up, "rx": rx, "tx": tx,
                "drops": { "dst_down": drops }, "drops_total": drops }))
    }

    /// A parent and `n` idle endpoints, every third one down.
    fn network(n: usize) -> Vec<PortStats> {
        let mut ports =
            vec![read(json!({ "kind": "parent", "name": "eth1", "up": true, "rx": 5, "tx": 7, "drops_total": 1 }))];
        ports.extend((0..n).map(|i| port(&format!("xmv{i}"), i % 3 != 0, 0, 0, 0)));
        ports
    }

    fn names<'a>(d: &'a Digest<'_>) -> Vec<&'a str> {
        d.rows.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn short_tables_pipes_and_all_are_whole() {
        assert!(whole(WHOLE_TABLE_ROWS, false, true), "a short table on a terminal");
        assert!(!whole(WHOLE_TABLE_ROWS + 1, false, true), "a long one on a terminal is shortened");
        assert!(whole(1025, true, true), "--all");
        assert!(whole(1025, false, false), "not a terminal");
        let ports = network(1024);
        let d = digest(&ports, true);
        assert_eq!(d.rows.len(), 1025);
        assert_eq!(d.hidden, 0);
        assert!(d.rows.iter().zip(&ports).all(|(a, b)| std::ptr::eq(*a, b)), "in the daemon's order");
    }

    #[test]
    fn totals_count_endpoints_not_the_parent() {
        let mut ports = network(9);
        ports[2] = port("xmv1", true, 10, 20, 3);
        ports.push(read(json!({ "kind": "tap", "name": "vm0", "up": false, "rx": 1, "tx": 2, "drops": { "dst_down": 4, "no_buffer": 5 } })));
        let d = digest(&ports, false);
        assert_eq!(d.totals, Totals { endpoints: 10, up: 6, down: 4, rx: 11, tx: 22, drops: 12 });
        assert_eq!(d.totals.to_string(), "10 endpoints (6 up, 4 down): rx 11, tx 22, drops 12");
    }

    #[test]
    fn an_idle_network_shows_only_the_parent() {
        let ports = network(1024);
        let d = digest(&ports, false);
        assert_eq!(names(&d), ["eth1"]);
        assert_eq!(d.hidden, 1024);
        assert_eq!(d.totals.endpoints, 1024);
        assert_eq!(d.totals.down, 342);
        assert_eq!(d.shown(), "no endpoint has traffic or drops");
    }

    #[test]
    fn ports_with_drops_come_first_then_the_busiest() {
        let mut ports = network(1024);
        // Eight ports drop (more than are shown), twelve are busy (more than are shown); the one
        // that drops most is also the busiest of all: it is listed once, with the drops.
        for (i, d) in [(100, 3), (200, 50), (300, 1), (400, 50), (500, 7), (600, 2), (700, 9)] {
            ports[i] = port(&format!("drop{i}"), true, 0, 0, d);
        }
        for i in 1..=12u64 {
            let at = 10 * i as usize + 5;
            ports[at] = port(&format!("busy{i}"), true, i * 100, i, 0);
        }
        ports[900] = port("both", true, 1_000_000, 0, 60);
        let d = digest(&ports, false);
        assert_eq!(
            names(&d),
            [
                "eth1", // the parent
                "both", "drop200", "drop400", "drop700", "drop500", // most drops first, ties in order
                "busy12", "busy11", "busy10", "busy9", "busy8", "busy7", "busy6", "busy5", "busy4", "busy3",
            ]
        );
        assert_eq!(d.rows.len(), 1 + TOP_DROPS + TOP_TRAFFIC);
        assert_eq!(d.dropping, TOP_DROPS);
        assert_eq!(d.hidden, 1025 - 16);
        assert_eq!(d.totals.drops, 3 + 50 + 1 + 50 + 7 + 2 + 9 + 60);
        assert_eq!(d.shown(), "the 5 with drops and the 10 busiest");
    }

    #[test]
    fn a_port_that_drops_and_is_busy_is_not_shown_twice() {
        let mut ports = network(30);
        ports[5] = port("both", true, 1000, 1000, 2);
        ports[6] = port("busy", true, 10, 0, 0);
        let d = digest(&ports, false);
        assert_eq!(names(&d), ["eth1", "both", "busy"]);
        assert_eq!(d.dropping, 1);
        assert_eq!(d.shown(), "the 1 with drops and the 1 busiest");
    }

    #[test]
    fn unknown_fields_and_missing_counters_are_tolerated() {
        // What other versions of the daemon may send: new drop reasons, new objects, no
        // drops_total, counters absent.
        let ports = vec![
            read(json!({ "kind": "parent", "name": "eth1", "umem": { "frames": 16384 } })),
            read(
                json!({ "kind": "endpoint", "name": "a", "up": true, "rx": 4, "drops": { "new_reason": 2, "dst_down": 1 } }),
            ),
            read(json!({ "name": "b", "departed": {} })),
            read(json!({ "kind": "endpoint", "name": "c", "up": true, "tx": 9 })),
        ];
        let d = digest(&ports, false);
        assert_eq!(names(&d), ["eth1", "a", "c"]);
        assert_eq!(d.totals, Totals { endpoints: 3, up: 2, down: 1, rx: 4, tx: 9, drops: 3 });
        assert_eq!(digest(&[], false), Digest { totals: Totals::default(), rows: vec![], hidden: 0, dropping: 0 });
    }
}
