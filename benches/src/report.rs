//! The report: tables with kernel, xmacvlan and ratio columns, and SVG plots (plotters).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::lab::Backend;
use crate::{median, Report, Test, Trial};

fn f3(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into())
}
fn f1(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}
fn ratio(k: Option<f64>, x: Option<f64>) -> String {
    match (k, x) {
        (Some(k), Some(x)) if k > 0.0 => format!("{:.2}", x / k),
        _ => "-".into(),
    }
}

/// A table with left-aligned first column(s) and right-aligned numbers.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new<S: AsRef<str>>(head: &[S]) -> Table {
        Table { head: head.iter().map(|s| s.as_ref().to_string()).collect(), rows: Vec::new() }
    }
    fn row(&mut self, r: Vec<String>) {
        self.rows.push(r);
    }
    fn render(&self, out: &mut String) {
        let mut w: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            cells.iter().enumerate().map(|(i, c)| format!("{c:>width$}", width = w[i])).collect::<Vec<_>>().join("  ")
        };
        let _ = writeln!(out, "{}", line(&self.head));
        for r in &self.rows {
            let _ = writeln!(out, "{}", line(r));
        }
        out.push('\n');
    }
}

fn trials<'a>(r: &'a Report, test: Test) -> impl Iterator<Item = &'a Trial> + 'a {
    r.results.trials.iter().filter(move |t| t.test == test)
}

fn med(r: &Report, test: Test, b: Backend, f: impl Fn(&Trial) -> bool, v: impl Fn(&Trial) -> f64) -> Option<f64> {
    median(trials(r, test).filter(|t| t.backend == b && f(t)).map(v).collect())
}

fn keys<T: PartialEq + Copy>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = Vec::new();
    for k in it {
        if !v.contains(&k) {
            v.push(k);
        }
    }
    v
}

/// The backends of the run, in order.
fn backends(r: &Report) -> Vec<Backend> {
    r.cli.as_ref().map(|c| c.backends.clone()).unwrap_or_else(|| vec![Backend::Kernel, Backend::Xmacvlan])
}

/// Column heads: one per backend (`what` after its name) and a ratio to the kernel for the others.
fn heads(bs: &[Backend], what: &str) -> Vec<String> {
    let mut h: Vec<String> = bs.iter().map(|b| format!("{}{what}", b.name())).collect();
    if bs.contains(&Backend::Kernel) {
        h.extend(bs.iter().filter(|b| b.vs_kernel()).map(|b| format!("{}/k", b.short())));
    }
    h
}

/// Cells for `heads`: each backend's value, then the ratios.
fn cells(bs: &[Backend], get: impl Fn(Backend) -> Option<f64>, fmt: fn(Option<f64>) -> String) -> Vec<String> {
    let mut c: Vec<String> = bs.iter().map(|&b| fmt(get(b))).collect();
    if bs.contains(&Backend::Kernel) {
        c.extend(bs.iter().filter(|b| b.vs_kernel()).map(|&b| ratio(get(Backend::Kernel), get(b))));
    }
    c
}

fn with(mut first: Vec<String>, rest: Vec<String>) -> Vec<String> {
    first.extend(rest);
    first
}

pub fn text(r: &Report) -> String {
    let mut o = String::new();
    let e = &r.env;
    let _ = writeln!(
        o,
        "xmacvlan bench {} — {} — kernel {}, {} ({} CPUs)",
        r.version, e.date_utc, e.kernel, e.cpu_model, e.nproc
    );
    let _ = writeln!(o, "placement: {}", r.placement);
    let bs = backends(r);
    if let Some(c) = &r.cli {
        let mut head = format!("sink {:?}; trial window {} s after {} s warm-up", c.sink, c.duration, c.warmup);
        if bs.contains(&Backend::Kernel) {
            for b in bs.iter().filter(|b| b.vs_kernel()) {
                let _ = write!(head, ", {}/k = {} ÷ kernel", b.short(), b.name());
            }
        }
        let _ = writeln!(o, "{head}");
        if let Some(b) = bs.iter().find(|b| b.ipvlan()) {
            let _ = writeln!(
                o,
                "{}: every container has the parent's MAC; frames to one carry its IPv4 address, which ipvlan finds it by{}",
                b.name(),
                if c.sink == crate::Sink::L2 {
                    " (sink l2: IPv4 with a wrong header checksum, dropped by the container's IP header checks; \
                     the others' 0x88b5 frames are dropped as soon as counted)"
                } else {
                    ""
                }
            );
        }
        o.push('\n');
    }
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    if trials(r, Test::Max).next().is_some() {
        let _ = writeln!(
            o,
            "Max forwarding rate under overload (wire → container, generator unpaced), Mpps, median of trials"
        );
        let mut t = Table::new(&with(s(&["size B", "bcast %", "offered"]), heads(&bs, "")));
        for (size, pct) in keys(trials(r, Test::Max).map(|t| (t.size, t.bcast_pct))) {
            let sel = |t: &Trial| t.size == size && t.bcast_pct == pct;
            let off = median(trials(r, Test::Max).filter(|t| sel(t)).map(|t| t.offered_pps / 1e6).collect());
            t.row(with(
                vec![size.to_string(), format!("{pct}"), f3(off)],
                cells(&bs, |b| med(r, Test::Max, b, sel, |t| t.delivered_pps / 1e6), f3),
            ));
        }
        t.render(&mut o);
    }

    if !r.results.throughput.is_empty() {
        let tol = r.cli.as_ref().map_or(0.0, |c| c.loss_tolerance);
        let what = if tol > 0.0 { format!("at most {tol} % of the frames lost") } else { "zero frames lost".into() };
        let _ = writeln!(o, "RFC 2544 throughput (highest offered rate with {what}, binary search), Mpps");
        let mut t = Table::new(&with(s(&["size B", "bcast %"]), heads(&bs, "")));
        for (size, pct) in keys(r.results.throughput.iter().map(|t| (t.size, t.bcast_pct))) {
            let get = |b: Backend| {
                median(
                    r.results
                        .throughput
                        .iter()
                        .filter(|t| t.backend == b && t.size == size && t.bcast_pct == pct)
                        .map(|t| t.pps / 1e6)
                        .collect(),
                )
            };
            t.row(with(vec![size.to_string(), format!("{pct}")], cells(&bs, get, f3)));
        }
        t.render(&mut o);
    }

    if !r.results.latency.is_empty() {
        let _ = writeln!(
            o,
            "Latency, UDP request/response wire host ↔ container 0 under background load, µs (p50 / p99 / p99.9)"
        );
        let mut head = s(&["size B", "load % of thr"]);
        head.extend(bs.iter().map(|b| b.name().to_string()));
        if bs.contains(&Backend::Kernel) {
            head.extend(bs.iter().filter(|b| b.vs_kernel()).map(|b| format!("p99 {}/k", b.short())));
        }
        let mut t = Table::new(&head.iter().map(String::as_str).collect::<Vec<_>>());
        for (size, pct) in keys(r.results.latency.iter().map(|l| (l.size, l.load_pct))) {
            // Each percentile's median over the rounds.
            let get = |b: Backend, q: fn(&crate::latency::Latency) -> f64| {
                median(
                    r.results
                        .latency
                        .iter()
                        .filter(|l| l.backend == b && l.size == size && l.load_pct == pct)
                        .map(|l| q(&l.latency))
                        .collect(),
                )
            };
            let mut row = vec![size.to_string(), format!("{pct}")];
            row.extend(bs.iter().map(|&b| match (get(b, |l| l.p50_us), get(b, |l| l.p99_us), get(b, |l| l.p999_us)) {
                (Some(p50), Some(p99), Some(p999)) => format!("{p50:.0} / {p99:.0} / {p999:.0}"),
                _ => "-".into(),
            }));
            if bs.contains(&Backend::Kernel) {
                let p99 = |b| get(b, |l| l.p99_us);
                row.extend(bs.iter().filter(|b| b.vs_kernel()).map(|&b| ratio(p99(Backend::Kernel), p99(b))));
            }
            t.row(row);
        }
        t.render(&mut o);
    }

    if trials(r, Test::Cpu).next().is_some() {
        let _ = writeln!(
            o,
            "CPU cost at a fixed offered load: CPU seconds the datapath CPU(s) spent per million frames delivered \
             (= µs per frame)"
        );
        let mut t = Table::new(&with(s(&["size B", "offered Mpps"]), heads(&bs, "")));
        for size in keys(trials(r, Test::Cpu).map(|t| t.size)) {
            let sel = |t: &Trial| t.size == size;
            let off = median(trials(r, Test::Cpu).map(|t| t.offered_pps / 1e6).collect());
            t.row(with(
                vec![size.to_string(), f3(off)],
                cells(&bs, |b| med(r, Test::Cpu, b, sel, |t| t.cpu_s_per_mframe), f3),
            ));
        }
        t.render(&mut o);
    }

    if !r.results.tcp.is_empty() {
        let _ = writeln!(o, "TCP throughput (iperf3, one stream), Gbit/s");
        let mut t = Table::new(&with(s(&["path"]), heads(&bs, "")));
        for (from, to) in keys(r.results.tcp.iter().map(|t| (t.tcp.from.as_str(), t.tcp.to.as_str()))) {
            let get = |b: Backend| {
                median(
                    r.results
                        .tcp
                        .iter()
                        .filter(|t| t.backend == b && t.tcp.from == from && t.tcp.to == to)
                        .map(|t| t.tcp.gbps)
                        .collect(),
                )
            };
            t.row(with(vec![format!("{from}→{to}")], cells(&bs, get, f3)));
        }
        t.render(&mut o);
    }

    if trials(r, Test::Container).next().is_some() {
        let _ = writeln!(o, "Container-sourced traffic (AF_PACKET sender in c0, unpaced, 64 B), Mpps delivered");
        let mut t = Table::new(&with(s(&["path"]), heads(&bs, "")));
        for path in keys(trials(r, Test::Container).map(|t| t.path.as_str())) {
            let sel = |t: &Trial| t.path == path;
            t.row(with(
                vec![path.to_string()],
                cells(&bs, |b| med(r, Test::Container, b, sel, |t| t.delivered_pps / 1e6), f3),
            ));
        }
        t.render(&mut o);
    }

    if trials(r, Test::Scaling).next().is_some() {
        let _ = writeln!(o, "Scaling: 64 B unicast spread over N containers (overload), Mpps");
        let mut t = Table::new(&with(s(&["N"]), heads(&bs, "")));
        let ns = keys(trials(r, Test::Scaling).map(|t| t.endpoints));
        for &n in &ns {
            let uni = |t: &Trial| t.endpoints == n && t.bcast_pct == 0.0;
            t.row(with(
                vec![n.to_string()],
                cells(&bs, |b| med(r, Test::Scaling, b, uni, |t| t.delivered_pps / 1e6), f3),
            ));
        }
        t.render(&mut o);
        let fps = median(trials(r, Test::Scaling).filter(|t| t.bcast_pct == 100.0).map(|t| t.offered_pps).collect());
        let _ = writeln!(
            o,
            "Broadcast fan-out to N containers at {} frames/s: copies delivered % and CPU-s per million broadcast frames",
            f1(fps)
        );
        let mut head = s(&["N"]);
        head.extend(bs.iter().map(|b| format!("{} copies %", b.name())));
        head.extend(heads(&bs, " CPU-s/M"));
        let mut t = Table::new(&head.iter().map(String::as_str).collect::<Vec<_>>());
        for &n in &ns {
            let bc = |t: &Trial| t.endpoints == n && t.bcast_pct == 100.0;
            let mut row = vec![n.to_string()];
            row.extend(
                bs.iter().map(|&b| {
                    f1(med(r, Test::Scaling, b, bc, |t| 100.0 * t.delivered as f64 / t.expected.max(1) as f64))
                }),
            );
            row.extend(cells(&bs, |b| med(r, Test::Scaling, b, bc, |t| t.cpu_s_per_mframe), f1));
            t.row(row);
        }
        t.render(&mut o);
    }

    round_spread(r, &bs, &mut o);

    let steal: Vec<f64> = r
        .results
        .trials
        .iter()
        .flat_map(|t| t.cpu_use.iter().filter(|c| r.cli.as_ref().is_some_and(|cli| cli.dp_cpus.contains(&c.cpu))))
        .map(|c| c.steal_pct)
        .collect();
    if let (Some(m), Some(max)) = (median(steal.clone()), steal.iter().copied().reduce(f64::max)) {
        let _ = writeln!(
            o,
            "Hypervisor steal on the datapath CPU(s) during trial windows: median {m:.1} %, max {max:.1} % (frames arriving \
             while the vCPU is away queue in a 256-slot veth ring; longer absences drop them)\n"
        );
    }
    // Cross-check of the xmacvlan datapath's own counters against the container interfaces.
    let checks: Vec<(u64, u64)> = r
        .results
        .trials
        .iter()
        .filter(|t| t.path == "wire→containers")
        .filter_map(|t| t.datapath_delivered.map(|d| (d, t.delivered)))
        .collect();
    if !checks.is_empty() {
        let worst = checks.iter().map(|&(d, i)| d.abs_diff(i)).max().unwrap_or(0);
        let _ = writeln!(
            o,
            "Cross-check: over {} xmacvlan trials the datapath's endpoint counters and the container interfaces' rx_packets \
             differ by at most {worst} frames\n",
            checks.len()
        );
    }
    for e in &r.results.errors {
        let _ = writeln!(o, "error: {e}");
    }
    o
}

/// With more than one round: each ratio to the kernel computed within every round (the backends of a
/// round ran minutes apart, not a whole run apart), as min – median – max over the rounds. A ratio
/// whose range is wide was decided by the host's phases, not by the datapath.
fn round_spread(r: &Report, bs: &[Backend], o: &mut String) {
    let rounds = r.cli.as_ref().map_or(1, |c| c.rounds);
    if rounds < 2 || !bs.contains(&Backend::Kernel) {
        return;
    }
    let xs: Vec<Backend> = bs.iter().copied().filter(|b| b.vs_kernel()).collect();
    // (row label, value of a backend in a round)
    type Get<'a> = Box<dyn Fn(Backend, u32) -> Option<f64> + 'a>;
    let mut rows: Vec<(String, Get)> = Vec::new();
    let trial_med = |test: Test, sel: Box<dyn Fn(&Trial) -> bool>, v: fn(&Trial) -> f64| -> Get {
        Box::new(move |b, round| {
            median(trials(r, test).filter(|t| t.backend == b && t.round == round && sel(t)).map(v).collect())
        })
    };
    for (size, pct) in keys(trials(r, Test::Max).map(|t| (t.size, t.bcast_pct))) {
        let sel = Box::new(move |t: &Trial| t.size == size && t.bcast_pct == pct);
        rows.push((format!("max {size} B, {pct} % bcast"), trial_med(Test::Max, sel, |t| t.delivered_pps)));
    }
    if trials(r, Test::Cpu).next().is_some() {
        rows.push((
            "CPU per frame (lower is better)".into(),
            trial_med(Test::Cpu, Box::new(|_| true), |t| t.cpu_s_per_mframe),
        ));
    }
    for (from, to) in keys(r.results.tcp.iter().map(|t| (t.tcp.from.as_str(), t.tcp.to.as_str()))) {
        let get: Get = Box::new(move |b, round| {
            r.results
                .tcp
                .iter()
                .find(|t| t.backend == b && t.round == round && t.tcp.from == from && t.tcp.to == to)
                .map(|t| t.tcp.gbps)
        });
        rows.push((format!("TCP {from}→{to}"), get));
    }
    for path in keys(trials(r, Test::Container).map(|t| t.path.as_str())) {
        let label = format!("container {path}");
        rows.push((label, trial_med(Test::Container, Box::new(move |t: &Trial| t.path == path), |t| t.delivered_pps)));
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(o, "Ratios to the kernel within each of the {rounds} rounds: min – median – max");
    let mut head = vec!["row".to_string()];
    head.extend(xs.iter().map(|b| format!("{}/k", b.short())));
    let mut t = Table::new(&head);
    for (label, get) in &rows {
        let mut row = vec![label.clone()];
        for &b in &xs {
            let mut v: Vec<f64> = (1..=rounds)
                .filter_map(|round| match (get(Backend::Kernel, round), get(b, round)) {
                    (Some(k), Some(x)) if k > 0.0 => Some(x / k),
                    _ => None,
                })
                .collect();
            v.sort_by(f64::total_cmp);
            row.push(match (v.first(), median(v.clone()), v.last()) {
                (Some(lo), Some(m), Some(hi)) => format!("{lo:.2} – {m:.2} – {hi:.2}"),
                _ => "-".into(),
            });
        }
        t.row(row);
    }
    t.render(o);
}

fn color(b: Backend) -> RGBColor {
    match b {
        Backend::Kernel => RGBColor(0x1f, 0x77, 0xb4),
        Backend::Xmacvlan => RGBColor(0xd6, 0x27, 0x28),
        Backend::XmacvlanXdp => RGBColor(0x2c, 0xa0, 0x2c),
        Backend::XmacvlanAfxdp => RGBColor(0xff, 0x7f, 0x0e),
        Backend::TcFloor => RGBColor(0x7f, 0x7f, 0x7f),
        Backend::XmacvlanIpvlan => RGBColor(0x94, 0x67, 0xbd),
    }
}

type Series = (String, RGBColor, bool, Vec<(f64, f64)>);

/// One line chart: `series` are (label, colour, dashed, points).
fn chart(path: &Path, title: &str, xlabel: &str, ylabel: &str, xlog: bool, series: &[Series]) -> Result<()> {
    let pts = series.iter().flat_map(|s| s.3.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(());
    }
    if x0 == x1 {
        x1 = x0 + 1.0;
    }
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    let mut b = ChartBuilder::on(&root);
    b.caption(title, ("sans-serif", 20)).margin(12).x_label_area_size(40).y_label_area_size(60);
    let y = 0.0..(y1 * 1.1).max(1e-9);
    if xlog {
        let mut c = b.build_cartesian_2d((x0.max(1e-3)..x1).log_scale(), y).map_err(|e| err(&e))?;
        c.configure_mesh().x_desc(xlabel).y_desc(ylabel).draw().map_err(|e| err(&e))?;
        for (label, col, dashed, p) in series {
            let style = ShapeStyle::from(col).stroke_width(if *dashed { 1 } else { 2 });
            c.draw_series(LineSeries::new(p.iter().copied(), style))
                .map_err(|e| err(&e))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    } else {
        let mut c = b.build_cartesian_2d(x0..x1, y).map_err(|e| err(&e))?;
        c.configure_mesh().x_desc(xlabel).y_desc(ylabel).draw().map_err(|e| err(&e))?;
        for (label, col, dashed, p) in series {
            let style = ShapeStyle::from(col).stroke_width(if *dashed { 1 } else { 2 });
            c.draw_series(LineSeries::new(p.iter().copied(), style))
                .map_err(|e| err(&e))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            c.draw_series(p.iter().map(|&(x, y)| Circle::new((x, y), 3, col.filled()))).map_err(|e| err(&e))?;
        }
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes rate.svg (rate vs frame size), latency.svg (CDFs) and scaling.svg into `dir`.
pub fn plots(r: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let backends = backends(r);

    let mut rate: Vec<Series> = Vec::new();
    for &b in &backends {
        let mut max: Vec<(f64, f64)> =
            keys(trials(r, Test::Max).filter(|t| t.backend == b && t.bcast_pct == 0.0).map(|t| t.size))
                .into_iter()
                .filter_map(|s| {
                    Some((
                        s as f64,
                        med(r, Test::Max, b, |t| t.size == s && t.bcast_pct == 0.0, |t| t.delivered_pps / 1e6)?,
                    ))
                })
                .collect();
        max.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !max.is_empty() {
            rate.push((format!("{} max (overload)", b.name()), color(b), false, max));
        }
        let mut thr: Vec<(f64, f64)> = r
            .results
            .throughput
            .iter()
            .filter(|t| t.backend == b && t.bcast_pct == 0.0)
            .map(|t| (t.size as f64, t.pps / 1e6))
            .collect();
        thr.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !thr.is_empty() {
            rate.push((format!("{} RFC 2544 throughput", b.name()), color(b), true, thr));
        }
    }
    if !rate.is_empty() {
        let p = dir.join("rate.svg");
        chart(&p, "Wire → container forwarding rate", "frame size (bytes on the wire)", "Mpps", false, &rate)?;
        out.push(p);
    }

    let mut lat: Vec<Series> = Vec::new();
    for l in &r.results.latency {
        let pts: Vec<(f64, f64)> = l.latency.cdf.iter().map(|&(us, q)| (us, q * 100.0)).collect();
        lat.push((
            format!("{} {} B at {} % of throughput", l.backend.name(), l.size, l.load_pct),
            color(l.backend),
            l.load_pct < 50.0,
            pts,
        ));
    }
    if !lat.is_empty() {
        let p = dir.join("latency.svg");
        chart(&p, "Round-trip latency CDF (UDP wire host ↔ container)", "µs (log)", "% of probes ≤", true, &lat)?;
        out.push(p);
    }

    let mut sc: Vec<Series> = Vec::new();
    for &b in &backends {
        let pts: Vec<(f64, f64)> = trials(r, Test::Scaling)
            .filter(|t| t.backend == b && t.bcast_pct == 0.0)
            .map(|t| (t.endpoints as f64, t.delivered_pps / 1e6))
            .collect();
        if !pts.is_empty() {
            sc.push((format!("{} unicast spread", b.name()), color(b), false, pts));
        }
    }
    if !sc.is_empty() {
        let p = dir.join("scaling.svg");
        chart(&p, "64 B overload rate vs endpoint count", "endpoints (log)", "Mpps", true, &sc)?;
        out.push(p);
    }
    Ok(out)
}
