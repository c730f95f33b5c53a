//! The daemon's counters in Prometheus' text exposition format (version 0.0.4), as
//! `daemon --metrics ADDR` serves them on `GET /metrics`: rendered from the same [`Stats`] that
//! `xmacvlan stats` shows, so both always agree. Pure: unit-tested here, and parsed by a real
//! Prometheus parser in `tests/metrics.rs`.
//!
//! Names follow Prometheus' conventions: an `xmacvlan_` prefix, base units, `_total` on counters,
//! one metric per quantity with what tells its series apart in labels (network, port, reason).

use std::fmt::Write;

use crate::api::reply::{PortStats, Stats};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: its HELP and TYPE lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family { out }
    }

    /// A sample of `name` (the family's, or the family's with a suffix) with `labels`.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

/// A label value as the text format writes it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Every port of every network, with the labels that name it.
fn ports(s: &Stats) -> impl Iterator<Item = ([(&'static str, &str); 3], &PortStats)> {
    s.networks.iter().flat_map(|n| {
        n.ports
            .iter()
            .map(move |p| ([("network", n.name.as_str()), ("port", p.name.as_str()), ("kind", p.kind.as_str())], p))
    })
}

/// The exposition of `s`.
pub fn render(s: &Stats) -> String {
    let mut out = String::new();
    let o = &mut out;
    type PortCounter = (&'static str, &'static str, fn(&PortStats) -> u64);
    let per_port: [PortCounter; 4] = [
        (
            "xmacvlan_port_received_frames_total",
            "Frames received on a port (from the wire on a parent, from its container on an endpoint).",
            |p| p.rx,
        ),
        ("xmacvlan_port_received_bytes_total", "Bytes received on a port.", |p| p.rx_bytes),
        ("xmacvlan_port_transmitted_frames_total", "Frames transmitted on a port.", |p| p.tx),
        ("xmacvlan_port_transmitted_bytes_total", "Bytes transmitted on a port.", |p| p.tx_bytes),
    ];
    for (name, help, value) in per_port {
        let mut f = Family::new(o, name, "counter", help);
        for (labels, p) in ports(s) {
            f.sample(name, &labels, value(p));
        }
    }
    let name = "xmacvlan_port_dropped_frames_total";
    let mut f = Family::new(o, name, "counter", "Frames a port dropped, by reason.");
    for (labels, p) in ports(s) {
        for (reason, n) in &p.drops {
            let [a, b, c] = labels;
            f.sample(name, &[a, b, c, ("reason", reason)], n);
        }
    }
    let name = "xmacvlan_port_up";
    let mut f = Family::new(o, name, "gauge", "Whether a port is up (its link has carrier).");
    for (labels, p) in ports(s) {
        f.sample(name, &labels, u8::from(p.up));
    }
    let name = "xmacvlan_umem_frames";
    let mut f = Family::new(o, name, "gauge", "UMEM frames of a network's forwarding domain, by where they are.");
    for n in &s.networks {
        let u = &n.umem;
        for (state, v) in [
            ("free", u.free),
            ("flood", u.flood),
            ("parent", u.parent),
            ("endpoints", u.endpoints),
            ("in_flight", u.in_flight),
        ] {
            f.sample(name, &[("network", &n.name), ("state", state)], v);
        }
    }
    type WorkerCounter = (&'static str, &'static str, fn(&crate::api::reply::WorkerView) -> u64);
    let per_worker: [WorkerCounter; 6] = [
        ("xmacvlan_worker_received_frames_total", "Frames a worker took from its sockets.", |w| w.counters.rx_frames),
        ("xmacvlan_worker_transmitted_frames_total", "Frames a worker sent.", |w| w.counters.tx_frames),
        ("xmacvlan_worker_dropped_frames_total", "Frames a worker dropped (every reason).", |w| w.counters.dropped),
        ("xmacvlan_worker_flood_copies_total", "Copies a worker made of flooded frames.", |w| w.counters.flood_copies),
        ("xmacvlan_worker_loops_total", "Rounds of a worker's loop that found work.", |w| w.counters.busy_loops),
        ("xmacvlan_worker_sleeps_total", "Times a worker slept for want of work.", |w| w.counters.idle_sleeps),
    ];
    for (name, help, value) in per_worker {
        let mut f = Family::new(o, name, "counter", help);
        for w in &s.workers {
            f.sample(name, &[("worker", &w.counters.id.to_string())], value(w));
        }
    }
    let fp = &s.fast_path;
    let name = "xmacvlan_fast_path_frames_total";
    let mut f = Family::new(o, name, "counter", "Frames the kernel-side fast path handled, by what became of them.");
    for (what, v) in [
        ("received", fp.rx),
        ("from_containers", fp.from_containers),
        ("delivered", fp.delivered),
        ("to_wire", fp.to_wire),
        ("dropped", fp.dropped),
    ] {
        f.sample(name, &[("mode", &fp.mode), ("what", what)], v);
    }
    let name = "xmacvlan_fast_path_flood_copies_total";
    Family::new(o, name, "counter", "Copies the kernel-side flood made.").sample(
        name,
        &[("mode", &fp.mode)],
        fp.flood_copies,
    );
    let name = "xmacvlan_departed_dropped_frames_total";
    let mut f = Family::new(o, name, "counter", "Frames dropped on ports that are gone since, by reason.");
    for (reason, n) in &s.departed.drops {
        f.sample(name, &[("reason", reason)], n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }

    #[test]
    fn every_sample_follows_its_family_header() {
        let stats: Stats = serde_json::from_value(serde_json::json!({
            "workers": [{ "id": 0, "cpu": 1, "rx_frames": 5, "tx_frames": 4, "dropped": 1, "flood_copies": 0,
                          "flood_empty": 0, "busy_loops": 9, "idle_sleeps": 3, "tx_kicks": 2,
                          "rx_pps": 0.0, "tx_pps": 0.0, "drop_pps": 0.0 }],
            "xdp": {},
            "networks": [{ "name": "lab\"net", "parent": "eth1", "vlan": 0, "mode": "bridge", "internal": false,
                           "xdp_mode": "none",
                           "ports": [{ "kind": "parent", "name": "eth1", "mac": "02:00:00:00:00:01", "up": true,
                                       "xsk_mode": "copy", "rx": 7, "rx_bytes": 700, "tx": 2, "tx_bytes": 200,
                                       "drops": { "no_endpoint": 3 }, "drops_total": 3, "pcp_stripped": 0,
                                       "pcp_kept": 0, "kernel": { "xsk_fill_ring_empty": 0 } }],
                           "umem": { "frames": 10, "free": 6, "flood": 1, "parent": 1, "endpoints": 1, "in_flight": 1,
                                     "umems": 1, "bytes": 40960 } }],
            "departed": { "rx": 0, "tx": 0, "drops": { "no_endpoint": 2 }, "drops_total": 2 },
            "fast_path": { "mode": "tc", "rx": 1, "from_containers": 0, "delivered": 1, "to_wire": 0, "bytes": 64,
                           "dropped": 0, "flood_frames": 0, "flood_copies": 0, "flood_empty": 0 }
        }))
        .expect("a Stats reply");
        let text = render(&stats);
        assert!(
            text.contains(
                "xmacvlan_port_received_frames_total{network=\"lab\\\"net\",port=\"eth1\",kind=\"parent\"} 7\n"
            ),
            "{text}"
        );
        assert!(text.contains("xmacvlan_port_dropped_frames_total{network=\"lab\\\"net\",port=\"eth1\",kind=\"parent\",reason=\"no_endpoint\"} 3\n"));
        assert!(text.contains("xmacvlan_umem_frames{network=\"lab\\\"net\",state=\"free\"} 6\n"));
        assert!(text.contains("xmacvlan_worker_sleeps_total{worker=\"0\"} 3\n"));
        assert!(text.contains("xmacvlan_departed_dropped_frames_total{reason=\"no_endpoint\"} 2\n"));
        // Each family's samples come right after its own HELP and TYPE lines.
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{line}");
            }
        }
    }
}
