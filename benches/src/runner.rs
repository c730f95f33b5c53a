//! Running the tests on one backend, trial by trial: traffic started from the wire or a container,
//! the window measured, the interfaces' and the datapath's counters read and cross-checked.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;

use crate::gen::{GenConfig, Generator, Spread};
use crate::lab::{Backend, Lab};
use crate::search::Search;
use crate::stats::ThreadInfo;
use crate::{
    gen, lab, latency, napi, sender, stats, tcp, Cli, LatencyRun, Rate, Results, Sink, TcpRun, Test, Throughput, Trial,
};

/// Where a load's frames come from.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) enum Source {
    /// The live-frames generator on the wire host, to containers.
    Wire,
    /// The AF_PACKET sender in container 0, to the wire host.
    ContainerToWire,
    /// The AF_PACKET sender in container 0, to container 1.
    ContainerToContainer,
}

#[derive(Clone, Debug)]
pub(crate) struct Load {
    test: Test,
    size: usize,
    rate: Rate,
    spread: usize,
    bcast_per_mille: u32,
    source: Source,
}

pub(crate) enum Traffic {
    Gen(Box<Generator>),
    Send(sender::Sender),
}

impl Traffic {
    fn sent(&self) -> (u64, u64) {
        match self {
            Traffic::Gen(g) => (g.tx_count(), g.tx_bcast()),
            Traffic::Send(s) => (s.sent(), 0),
        }
    }
    fn alive(&self) -> bool {
        match self {
            Traffic::Gen(g) => g.alive(),
            Traffic::Send(s) => s.alive(),
        }
    }
    /// Stops the traffic; for the generator, returns its own kernel time per program run (ns).
    fn finish(&mut self) -> Result<Option<f64>> {
        match self {
            Traffic::Gen(g) => g.finish().map(|s| (s.runs > 0).then_some(s.mean_ns_per_run)),
            Traffic::Send(s) => s.finish().map(|()| None),
        }
    }
}

pub(crate) struct Bench<'a> {
    pub(crate) cli: &'a Cli,
    pub(crate) lab: &'a mut Lab,
    pub(crate) pb: &'a ProgressBar,
    pub(crate) res: &'a mut Results,
    /// The round being run (1-based).
    pub(crate) round: u32,
}

impl Bench<'_> {
    pub(crate) fn log(&self, msg: String) {
        if self.pb.is_hidden() {
            eprintln!("xmacvlan bench: {msg}");
        } else {
            self.pb.println(format!("xmacvlan bench: {msg}"));
        }
    }

    pub(crate) fn pin_napi(&self) -> Result<Vec<i32>> {
        let dp_path = lab::ns_path(&self.lab.dp.name);
        let ifindex = self.lab.ifindex(&self.lab.dp.name, lab::PARENT_IF)?;
        let napi =
            napi::find_napi_threads(&dp_path, lab::PARENT_IF, ifindex).context("finding the parent's NAPI kthread")?;
        for (pid, comm) in &napi {
            xmacvlan_lab::sys::pin(*pid, self.cli.dp_cpus[0]).with_context(|| format!("pinning {comm} ({pid})"))?;
        }
        Ok(napi.iter().map(|(p, _)| *p).collect())
    }

    pub(crate) fn run_backend(&mut self, backend: Backend) -> Result<()> {
        let cli = self.cli;
        let main_tests: Vec<Test> = cli.tests.iter().copied().filter(|t| *t != Test::Scaling).collect();
        if !main_tests.is_empty() {
            // c0 receives the wire traffic (spread over --spread containers), c1 is the peer of the
            // container → container tests.
            let n = cli.spread.max(2);
            self.pb.set_message(format!("{}: setting up {n} containers", backend.name()));
            self.lab.setup(backend, n)?;
            if cli.sink == Sink::Socket {
                self.lab.open_udp_sink()?;
            }
            let napi = self.pin_napi()?;
            self.log(format!(
                "{}: {n} containers; parent NAPI kthread(s) {napi:?} on CPU {}{}",
                backend.name(),
                cli.dp_cpus[0],
                self.lab.daemon_pid().map(|p| format!("; daemon pid {p}")).unwrap_or_default()
            ));
            for &test in &main_tests {
                lab::check_interrupted()?;
                if let Err(e) = self.run_test(backend, test, &napi) {
                    if lab::interrupted() {
                        return Err(e);
                    }
                    let msg = format!("{} {test:?}: {e:#}", backend.name());
                    self.log(msg.clone());
                    self.res.errors.push(msg);
                }
            }
        }
        if cli.tests.contains(&Test::Scaling) {
            self.scaling(backend)?;
        }
        Ok(())
    }

    fn run_test(&mut self, backend: Backend, test: Test, napi: &[i32]) -> Result<()> {
        let cli = self.cli;
        let wire = |size, rate, bcast_pct: f64| Load {
            test,
            size,
            rate,
            spread: cli.spread,
            bcast_per_mille: (bcast_pct * 10.0).round() as u32,
            source: Source::Wire,
        };
        match test {
            Test::Max => {
                for &size in &cli.sizes {
                    for &pct in &cli.bcast_pct {
                        for _ in 0..cli.trials {
                            self.trial(backend, &wire(size, Rate(None), pct), napi)?;
                        }
                    }
                }
            }
            Test::Rfc2544 => {
                for &size in &cli.sizes {
                    for &pct in &cli.bcast_pct {
                        self.rfc2544(backend, wire(size, Rate(None), pct), napi)?;
                    }
                }
            }
            Test::Latency => {
                for &size in &cli.latency_sizes {
                    let thr = self
                        .res
                        .throughput
                        .iter()
                        .rfind(|t| t.backend == backend && t.size == size && t.bcast_pct == 0.0)
                        .map(|t| t.pps);
                    let Some(thr) = thr.filter(|&t| t > 0.0) else {
                        bail!(
                            "latency at {size} B needs that size's RFC 2544 throughput: run the rfc2544 test with it"
                        );
                    };
                    for &pct in &cli.latency_loads {
                        self.latency(backend, size, pct, thr)?;
                    }
                }
            }
            Test::Cpu => {
                self.trial(backend, &wire(64, cli.cost_rate, 0.0), napi)?;
            }
            Test::Tcp => {
                let (c0, c1) = (self.lab.containers[0].ns.name.clone(), self.lab.containers[1].ns.name.clone());
                let app = cli.app_cpu.unwrap_or(cli.gen_cpu);
                let ip0 = lab::ip_str(&lab::endpoint_ip(0));
                let ip1 = lab::ip_str(&lab::endpoint_ip(1));
                let gen = self.lab.gen.name.clone();
                let paths = [(&c0, &ip0, &gen, "wire", "c0"), (&c1, &ip1, &c0, "c0", "c1")];
                // The smoke only checks that the harness works: one path each.
                for &(server_ns, server_ip, client_ns, from, to) in &paths[..if cli.smoke { 1 } else { 2 }] {
                    self.pb.set_message(format!("{}: TCP {from}→{to}", backend.name()));
                    let t = tcp::run(server_ns, server_ip, app, client_ns, app, cli.tcp_duration, from, to)?;
                    self.log(format!(
                        "{}: TCP {from}→{to}: {:.2} Gbit/s ({} retransmits)",
                        backend.name(),
                        t.gbps,
                        t.retransmits
                    ));
                    self.res.tcp.push(TcpRun { backend, round: self.round, tcp: t });
                    self.pb.inc(1);
                }
            }
            Test::Container => {
                let sources = [Source::ContainerToContainer, Source::ContainerToWire];
                for &source in &sources[..if cli.smoke { 1 } else { 2 }] {
                    let load = Load { test, size: 64, rate: Rate(None), spread: 1, bcast_per_mille: 0, source };
                    self.trial(backend, &load, napi)?;
                }
            }
            Test::Scaling => unreachable!("run by run_backend"),
        }
        Ok(())
    }

    /// RFC 2544 throughput for one size: binary search over paced trials, judged on exact counts.
    fn rfc2544(&mut self, backend: Backend, load: Load, napi: &[i32]) -> Result<()> {
        let pct = load.bcast_per_mille as f64 / 10.0;
        // Start at the overload rate measured for this size if there is one, else at the generator's
        // ceiling on this machine kind.
        let start = self
            .res
            .trials
            .iter()
            .filter(|t| t.test == Test::Max && t.backend == backend && t.size == load.size && t.bcast_pct == pct)
            .map(|t| t.delivered_pps)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            .unwrap_or(8e6);
        let mut s = Search::new(start.max(1e4), self.cli.resolution, self.cli.search_steps);
        let mut n = 0;
        while let Some(rate) = s.next() {
            let t = self.trial(backend, &Load { rate: Rate(Some(rate)), ..load.clone() }, napi)?;
            s.record(rate, t.lost == 0 || t.loss_pct <= self.cli.loss_tolerance);
            n += 1;
        }
        // Steps planned but not needed.
        self.pb.inc((self.cli.search_steps.min(8) as usize).saturating_sub(n) as u64);
        let pps = s.throughput();
        self.log(format!(
            "{}: RFC 2544 throughput at {} B: {:.3} Mpps ({n} trials)",
            backend.name(),
            load.size,
            pps / 1e6
        ));
        self.res.throughput.push(Throughput {
            round: self.round,
            backend,
            size: load.size,
            bcast_pct: pct,
            pps,
            gbps: pps * load.size as f64 * 8.0 / 1e9,
            trials: n,
        });
        Ok(())
    }

    fn latency(&mut self, backend: Backend, size: usize, pct: f64, thr: f64) -> Result<()> {
        let cli = self.cli;
        let rate = thr * pct / 100.0;
        self.pb.set_message(format!("{}: latency at {pct} % of throughput", backend.name()));
        let app = cli.app_cpu.unwrap_or(cli.gen_cpu);
        let c0 = lab::ns_path(&self.lab.containers[0].ns.name);
        let ip0 = std::net::Ipv4Addr::from(lab::endpoint_ip(0));
        let _echo = latency::Responder::start(c0, ip0, app)?;
        let load = Load {
            test: Test::Latency,
            size,
            rate: Rate(Some(rate)),
            spread: cli.spread,
            bcast_per_mille: 0,
            source: Source::Wire,
        };
        let mut traffic = self.start_traffic(backend, &load)?;
        lab::sleep_checked(Duration::from_secs_f64(cli.warmup))?;
        // UDP payload so that the probe frame has `size` bytes on the wire (14 + 20 + 8 + payload + 4 FCS).
        let payload = size.saturating_sub(46).max(18);
        let r = latency::probe(
            lab::ns_path(&self.lab.gen.name),
            std::net::Ipv4Addr::from(lab::GEN_IP),
            ip0,
            app,
            cli.probe_rate,
            Duration::from_secs_f64(cli.duration),
            payload,
        );
        let alive = traffic.alive();
        traffic.finish()?;
        let l = r?;
        if !alive {
            bail!("the generator stopped during the latency run");
        }
        self.log(format!(
            "{}: latency {size} B at {pct} % ({:.3} Mpps): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({}/{} answered)",
            backend.name(),
            rate / 1e6,
            l.p50_us,
            l.p99_us,
            l.p999_us,
            l.probes_answered,
            l.probes_sent
        ));
        self.res.latency.push(LatencyRun {
            backend,
            round: self.round,
            size,
            load_pct: pct,
            load_pps: rate,
            latency: l,
        });
        self.pb.inc(1);
        Ok(())
    }

    fn scaling(&mut self, backend: Backend) -> Result<()> {
        let cli = self.cli;
        let counts = cli.endpoints.clone();
        self.pb.set_message(format!("{}: scaling, setting up {} container(s)", backend.name(), counts[0]));
        self.lab.setup(backend, counts[0])?;
        let napi = self.pin_napi()?;
        for &n in &counts {
            lab::check_interrupted()?;
            if n > self.lab.present {
                self.pb.set_message(format!("{}: growing to {n} containers", backend.name()));
                let t0 = Instant::now();
                self.lab.grow(n)?;
                self.log(format!("{}: {n} containers ready in {:.1} s", backend.name(), t0.elapsed().as_secs_f64()));
            }
            let uni = Load {
                test: Test::Scaling,
                size: 64,
                rate: Rate(None),
                spread: n,
                bcast_per_mille: 0,
                source: Source::Wire,
            };
            for _ in 0..cli.trials {
                self.trial(backend, &uni, &napi)?;
            }
            // The floor does not flood: it has no broadcast fan-out to measure.
            if backend != Backend::TcFloor {
                let bc = Load { rate: Rate(Some(cli.bcast_rate)), spread: 1, bcast_per_mille: 1000, ..uni };
                self.trial(backend, &bc, &napi)?;
            }
        }
        Ok(())
    }

    fn start_traffic(&self, backend: Backend, load: &Load) -> Result<Traffic> {
        let frame = frame(backend, self.cli.sink, load.source, load.size);
        Ok(match load.source {
            Source::Wire => Traffic::Gen(Box::new(Generator::start(GenConfig {
                netns: lab::ns_path(&self.lab.gen.name),
                ifname: lab::GEN_IF.to_string(),
                cpu: self.cli.gen_cpu,
                frame,
                repeat: self.cli.repeat,
                batch_size: self.cli.batch_size,
                rate_pps: load.rate.0,
                n_dst: load.spread as u32,
                spread: if backend.ipvlan() { Spread::Ip } else { Spread::Mac },
                bcast_per_mille: load.bcast_per_mille,
            })?)),
            Source::ContainerToWire | Source::ContainerToContainer => {
                let link = self.lab.container_link(0)?;
                let c0 = lab::ns_path(&self.lab.containers[0].ns.name);
                Traffic::Send(sender::Sender::start(c0, link.ifindex, self.cli.gen_cpu, vec![frame], None)?)
            }
        })
    }

    /// Receiving counters for `source`: Σ rx of the containers, the wire host's rx, or c1's rx.
    fn delivered_now(&self, source: Source) -> Result<(Instant, u64)> {
        match source {
            Source::Wire => self.lab.rx_sum(0..self.lab.present),
            Source::ContainerToWire => self.lab.gen_rx(),
            Source::ContainerToContainer => self.lab.rx_sum(1..2),
        }
    }

    /// One trial: counters, traffic for warm-up + window, drain, counters. Rates come from the window,
    /// loss from the whole run's exact counts.
    fn trial(&mut self, backend: Backend, load: &Load, napi: &[i32]) -> Result<Trial> {
        let cli = self.cli;
        let path = match load.source {
            Source::Wire => "wire→containers",
            Source::ContainerToWire => "c0→wire",
            Source::ContainerToContainer => "c0→c1",
        };
        self.pb.set_message(format!(
            "{} {:?} {path} {} B, rate {}, {} endpoint(s), {:.1} % broadcast",
            backend.name(),
            load.test,
            load.size,
            load.rate.label(),
            self.lab.present,
            load.bcast_per_mille as f64 / 10.0
        ));
        let (_, s0) = self.delivered_now(load.source)?;
        let dp0 = self.lab.datapath_counters()?;
        let mut traffic = self.start_traffic(backend, load)?;
        lab::sleep_checked(Duration::from_secs_f64(cli.warmup))?;
        if !traffic.alive() {
            traffic.finish()?;
            bail!("the traffic source stopped during the warm-up");
        }

        // Window opens: diagnostics first, the delivered counter (the measured one) last.
        let daemon = self.lab.daemon_pid();
        let cpu0 = stats::cpu_times();
        let napi0 = kthreads(napi);
        let dthr0 = daemon.map(stats::process_threads).unwrap_or_default();
        let geth0 = stats::ethtool_stats(&self.lab.gen.name, lab::GEN_IF);
        let peth0 = stats::ethtool_stats(&self.lab.dp.name, lab::PARENT_IF);
        let tx0a = traffic.sent().0;
        let (t0, w0) = self.delivered_now(load.source)?;
        let tx0 = (tx0a + traffic.sent().0) / 2;

        lab::sleep_checked(Duration::from_secs_f64(cli.duration))?;

        let tx1a = traffic.sent().0;
        let (t1, w1) = self.delivered_now(load.source)?;
        let tx1 = (tx1a + traffic.sent().0) / 2;
        let peth1 = stats::ethtool_stats(&self.lab.dp.name, lab::PARENT_IF);
        let geth1 = stats::ethtool_stats(&self.lab.gen.name, lab::GEN_IF);
        let dthr1 = daemon.map(stats::process_threads).unwrap_or_default();
        let napi1 = kthreads(napi);
        let cpu1 = stats::cpu_times();

        let alive = traffic.alive();
        let gen_ns_per_run = traffic.finish()?;
        let (sent, sent_bcast) = traffic.sent();
        if !alive {
            bail!("the traffic source stopped during the trial");
        }
        if let Some(pid) = daemon {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() || stats::process_threads(pid).is_empty() {
                bail!(
                    "the xmacvlan daemon (pid {pid}) died during the trial; log tail:\n{}",
                    self.lab.daemon_log_tail(30)
                );
            }
        }
        // Drain: whatever is still queued gets delivered or dropped (rings hold milliseconds).
        lab::sleep_checked(Duration::from_secs_f64((cli.duration / 2.0).clamp(0.1, 0.3)))?;
        let (_, s1) = self.delivered_now(load.source)?;
        let dp1 = self.lab.datapath_counters()?;

        let dp = match (dp0, dp1) {
            (Some(a), Some(b)) => Some(stats::map_delta(&b, &a)),
            _ => None,
        };
        let fanout = if load.source == Source::Wire { self.lab.present as u64 } else { 1 };
        let expected = (sent - sent_bcast) + sent_bcast * fanout;
        let delivered = s1.wrapping_sub(s0);
        let lost = expected.saturating_sub(delivered);
        let window = (t1 - t0).as_secs_f64();
        let delivered_pps = w1.wrapping_sub(w0) as f64 / window;
        let offered_pps = tx1.saturating_sub(tx0) as f64 / window;
        let cpu_use = stats::cpu_use(&cpu1, &cpu0);
        let tps = stats::clock_ticks_per_sec();
        let dp_busy: f64 = cli
            .dp_cpus
            .iter()
            .filter_map(|c| Some(cpu1.get(c)?.busy.saturating_sub(cpu0.get(c)?.busy) as f64 / tps))
            .sum();
        // The fan-out test's cost is per broadcast frame sent; all others per frame delivered.
        let per = if load.bcast_per_mille == 1000 { offered_pps * window } else { delivered_pps * window };
        let t = Trial {
            test: load.test,
            backend,
            round: self.round,
            size: load.size,
            target_pps: load.rate.0,
            path: path.into(),
            endpoints: self.lab.present,
            spread: load.spread,
            bcast_pct: load.bcast_per_mille as f64 / 10.0,
            window_s: window,
            offered_pps,
            delivered_pps,
            delivered_gbps: delivered_pps * load.size as f64 * 8.0 / 1e9,
            sent,
            sent_bcast,
            expected,
            delivered,
            lost,
            loss_pct: if expected > 0 { 100.0 * lost as f64 / expected as f64 } else { 0.0 },
            datapath_delivered: dp.as_ref().map(|m| {
                let key = if path.ends_with("wire") { "delivered.wire" } else { "delivered" };
                m.get(key).copied().unwrap_or(0)
            }),
            datapath_counters: dp.unwrap_or_default(),
            dp_cpu_busy_s: dp_busy,
            cpu_s_per_mframe: if per > 0.0 { dp_busy / per * 1e6 } else { 0.0 },
            cpu_use,
            napi_threads: stats::threads_delta(&napi1, &napi0),
            daemon_threads: stats::threads_delta(&dthr1, &dthr0),
            parent_ethtool: stats::map_delta(&peth1, &peth0),
            gen_ethtool: stats::map_delta(&geth1, &geth0),
            gen_ns_per_run,
        };
        self.log(format!(
            "{:>8} {:<9} {:<15} {:>4} B rate {:>7}: offered {:.3} Mpps, delivered {:.3} Mpps; run: {} sent, {} lost ({:.3} %){}",
            backend.name(),
            format!("{:?}", load.test).to_lowercase(),
            format!("{path} ×{}", self.lab.present),
            load.size,
            load.rate.label(),
            offered_pps / 1e6,
            delivered_pps / 1e6,
            sent,
            lost,
            t.loss_pct,
            t.datapath_delivered.map(|d| format!("; datapath counted {d}, interfaces {delivered}")).unwrap_or_default()
        ));
        self.pb.inc(1);
        self.res.trials.push(t.clone());
        Ok(t)
    }
}

/// The frame a load of `size` bytes from `source` sends on `backend` with `sink`. On ipvlan every
/// container has the parent's MAC ([`Backend::mac`]) and ipvlan finds the receiving one by its
/// IPv4 address, so where it demuxes — from the wire, and c0 → c1, whose destination MAC is its
/// source — the frame is IPv4 to that container's address. With the `l2` sink its header
/// checksum is wrong: the container's IP layer drops it in its header checks, the nearest IP gets
/// to the l2 frame's "dropped once counted" (ipvlan reads only the address). c0 → wire is
/// switched by MAC on ipvlan too and keeps the sink's frame.
pub(crate) fn frame(backend: Backend, sink: Sink, source: Source, size: usize) -> Vec<u8> {
    // With the IP sinks, c0 → c1 frames carry c1's address: c1 delivers them locally, as the
    // sink says, instead of dropping them as another's.
    let (dst, src, dst_ip) = match source {
        Source::Wire => (backend.mac(0), lab::GEN_MAC, lab::endpoint_ip(0)),
        Source::ContainerToWire => (lab::GEN_MAC, backend.mac(0), lab::endpoint_ip(0)),
        Source::ContainerToContainer => (backend.mac(1), backend.mac(0), lab::endpoint_ip(1)),
    };
    let by_address = backend.ipvlan() && source != Source::ContainerToWire;
    match sink {
        Sink::L2 if by_address => {
            let mut f = gen::build_frame(size, dst, src, lab::GEN_IP, dst_ip);
            gen::spoil_ip_checksum(&mut f);
            f
        }
        Sink::L2 => gen::build_l2_frame(size, dst, src),
        Sink::ClosedPort | Sink::Socket => gen::build_frame(size, dst, src, lab::GEN_IP, dst_ip),
    }
}

pub(crate) fn kthreads(pids: &[i32]) -> Vec<ThreadInfo> {
    pids.iter().filter_map(|&p| stats::thread_info(p, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::ip_checksum_ok;
    use crate::lab::{endpoint_ip, endpoint_mac, GEN_IP, GEN_MAC, PARENT_MAC};

    const IPV: Backend = Backend::XmacvlanIpvlan;
    const SINKS: [Sink; 3] = [Sink::L2, Sink::Socket, Sink::ClosedPort];

    fn is_ipv4(f: &[u8]) -> bool {
        f[12..14] == [0x08, 0x00]
    }

    #[test]
    fn ipvlan_frames_from_the_wire_go_to_the_parents_mac_and_the_endpoints_address() {
        for sink in SINKS {
            let f = frame(IPV, sink, Source::Wire, 64);
            assert_eq!(f.len(), 60);
            assert_eq!((f[..6].to_vec(), f[6..12].to_vec()), (PARENT_MAC.to_vec(), GEN_MAC.to_vec()), "{sink:?}");
            assert!(is_ipv4(&f), "{sink:?}: ipvlan demuxes by address");
            assert_eq!(f[30..34], endpoint_ip(0), "{sink:?}");
            // The IP sinks' frames reach the container's UDP; l2's stop at its IP header checks.
            assert_eq!(ip_checksum_ok(&f), sink != Sink::L2, "{sink:?}");
        }
    }

    #[test]
    fn ipvlan_container_frames_carry_the_parents_mac_and_c1s_address() {
        for sink in SINKS {
            let f = frame(IPV, sink, Source::ContainerToContainer, 64);
            // Destination MAC = source MAC = the parent's: ipvlan switches it by address.
            assert_eq!((f[..6].to_vec(), f[6..12].to_vec()), (PARENT_MAC.to_vec(), PARENT_MAC.to_vec()), "{sink:?}");
            assert!(is_ipv4(&f) && f[30..34] == endpoint_ip(1), "{sink:?}");
            assert_eq!(ip_checksum_ok(&f), sink != Sink::L2, "{sink:?}");
            // To the wire: the parent's MAC as the source (the guard drops any other), by MAC.
            let w = frame(IPV, sink, Source::ContainerToWire, 64);
            assert_eq!((w[..6].to_vec(), w[6..12].to_vec()), (GEN_MAC.to_vec(), PARENT_MAC.to_vec()), "{sink:?}");
            let want = match sink {
                Sink::L2 => gen::build_l2_frame(64, GEN_MAC, PARENT_MAC),
                _ => gen::build_frame(64, GEN_MAC, PARENT_MAC, GEN_IP, endpoint_ip(0)),
            };
            assert_eq!(w, want, "{sink:?}: as the other backends' but for the source MAC");
        }
    }

    #[test]
    fn macvlan_backends_address_containers_by_their_own_macs() {
        for b in [Backend::Kernel, Backend::Xmacvlan, Backend::XmacvlanXdp, Backend::XmacvlanAfxdp, Backend::TcFloor] {
            let l2 = |s| frame(b, Sink::L2, s, 64);
            assert_eq!(l2(Source::Wire), gen::build_l2_frame(64, endpoint_mac(0), GEN_MAC));
            assert_eq!(l2(Source::ContainerToWire), gen::build_l2_frame(64, GEN_MAC, endpoint_mac(0)));
            assert_eq!(l2(Source::ContainerToContainer), gen::build_l2_frame(64, endpoint_mac(1), endpoint_mac(0)));
            let c = frame(b, Sink::Socket, Source::ContainerToContainer, 64);
            assert!(c[..6] == endpoint_mac(1) && c[30..34] == endpoint_ip(1) && ip_checksum_ok(&c));
        }
    }
}
