//! How the CLI shows the daemon's replies: as JSON (`--format json`, every field), or as the line
//! or table a person or a script wants. Long tables on a terminal are shortened ([`summary`]).

use std::collections::HashMap;
use std::io::IsTerminal;

use anyhow::Result;
use serde::Serialize;

use crate::api::reply::{Connected, Disconnected, NetworkInspect, NetworkRemoved, PortStats, SourceMacs, Stats};
use crate::api::{EndpointView, NetworkView};
use crate::summary;

/// How the CLI shows a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Whether stdout is a terminal: tables of many ports are then shortened (see [`summary`]).
pub fn terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Prints a reply as JSON, or as the one line a script or a person wants from it.
fn show<T: Serialize>(v: &T, format: Format, line: impl FnOnce(&T) -> String) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Format::Table => println!("{}", line(v)),
    }
    Ok(())
}

pub fn created(n: &NetworkView, format: Format) -> Result<()> {
    show(n, format, |n| n.name.clone())
}

pub fn connected(c: &Connected, format: Format) -> Result<()> {
    show(c, format, |c| {
        let e = &c.endpoint;
        format!("{} {} {} {}", e.netns.as_deref().unwrap_or("-"), e.ifname, e.ips.join(","), e.mac)
    })
}

pub fn disconnected(d: &Disconnected, format: Format) -> Result<()> {
    show(d, format, |d| d.removed.clone())
}

pub fn source_macs(s: &SourceMacs, format: Format) -> Result<()> {
    show(s, format, |s| format!("{} {}", s.endpoint, s.source_macs.join(",")))
}

pub fn removed(r: &NetworkRemoved, format: Format) -> Result<()> {
    show(r, format, |r| r.removed.clone())
}

/// `format` None: a table on a terminal, JSON otherwise. `all`: every endpoint row of the
/// table, on a terminal too.
pub fn inspect(i: &NetworkInspect, format: Option<Format>, all: bool) -> Result<()> {
    let terminal = terminal();
    let format = format.unwrap_or(if terminal { Format::Table } else { Format::Json });
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(i)?);
        return Ok(());
    }
    let n = &i.network;
    let kv = |k: &str, val: String| println!("{k:<10} {val}");
    kv("Name", n.name.clone());
    kv("Id", n.id.to_string());
    match &n.ipvlan_flag {
        Some(flag) => kv("Driver", format!("{} ({} mode, {flag})", n.driver, n.mode)),
        None => kv("Driver", format!("{} ({} mode)", n.driver, n.mode)),
    }
    kv("Parent", n.parent.clone().unwrap_or_else(|| "none (internal)".into()));
    kv("IPv6", n.ipv6.to_string());
    kv("XDP", n.xdp_mode.clone());
    kv("Status", n.status.clone());
    println!();
    print_table(
        &["SUBNET", "GATEWAY", "IP RANGE", "AUX ADDRESSES"],
        n.subnets.iter().map(|s| {
            vec![
                s.subnet.clone(),
                s.gateway.clone().unwrap_or_else(|| "-".into()),
                s.ip_range.clone().unwrap_or_else(|| "-".into()),
                if s.aux_addresses.is_empty() {
                    "-".into()
                } else {
                    s.aux_addresses.iter().map(|(k, a)| format!("{k}={a}")).collect::<Vec<_>>().join(",")
                },
            ]
        }),
    );
    println!();
    let ports = i.counters.as_ref().map_or(&[][..], |c| c.ports.as_slice());
    let by_name: HashMap<&str, &PortStats> = ports.iter().map(|p| (p.name.as_str(), p)).collect();
    let count =
        |host: &str, f: fn(&PortStats) -> u64| by_name.get(host).map_or_else(|| "-".into(), |p| f(p).to_string());
    // Without counters (the network is not active) there is nothing to choose rows by.
    let whole = summary::whole(n.endpoints.len(), all, terminal) || ports.is_empty();
    let digest = summary::digest(ports, whole);
    // Shortened: the endpoints of the digest's rows (not the parent, which has none), in its order.
    let rows: Vec<&EndpointView> = if whole {
        n.endpoints.iter().collect()
    } else {
        let by_host: HashMap<&str, &EndpointView> = n.endpoints.iter().map(|e| (e.host_ifname.as_str(), e)).collect();
        digest.rows.iter().filter_map(|p| by_host.get(p.name.as_str()).copied()).collect()
    };
    if !whole {
        println!("{}", digest.totals);
    }
    print_table(
        &["KIND", "NETNS", "IFNAME", "HOST IFNAME", "MAC", "IPS", "MTU", "RX", "TX", "DROPS"],
        rows.iter().map(|e| {
            vec![
                e.kind.clone(),
                e.netns
                    .clone()
                    .or_else(|| e.endpoint_id.as_ref().map(|id| format!("docker:{}", &id[..id.len().min(12)])))
                    .unwrap_or_else(|| "-".into()),
                e.ifname.clone(),
                e.host_ifname.clone(),
                e.mac.clone(),
                e.ips.join(","),
                e.mtu.to_string(),
                count(&e.host_ifname, |p| p.rx),
                count(&e.host_ifname, |p| p.tx),
                count(&e.host_ifname, |p| p.drops_total),
            ]
        }),
    );
    if !whole {
        println!(
            "(shown: {}; {} more endpoints: xmacvlan network inspect --all {}, or --format json)",
            digest.shown(),
            n.endpoints.len() - rows.len(),
            n.name
        );
    }
    Ok(())
}

/// A network's name in a table: a Docker network's is its NetworkID, shown as Docker shows IDs
/// (the first 12 digits), after its Docker name once that is known.
fn shown_name(n: &NetworkView) -> String {
    let id = || format!("docker:{}", &n.name[..n.name.len().min(12)]);
    match (n.docker, &n.docker_name) {
        (true, Some(name)) => format!("{name} ({})", id()),
        (true, None) => id(),
        (false, _) => n.name.clone(),
    }
}

pub fn ls(nets: &[NetworkView], format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(nets)?);
        return Ok(());
    }
    let rows = nets.iter().map(|n| {
        vec![
            n.id.to_string(),
            shown_name(n),
            match &n.ipvlan_flag {
                Some(flag) => format!("{}/{}/{flag}", n.driver, n.mode),
                None => format!("{}/{}", n.driver, n.mode),
            },
            n.parent.clone().unwrap_or_else(|| "(internal)".into()),
            n.subnets.iter().map(|s| s.subnet.as_str()).collect::<Vec<_>>().join(","),
            n.xdp_mode.clone(),
            n.endpoints.len().to_string(),
            n.status.clone(),
        ]
    });
    print_table(&["ID", "NAME", "DRIVER", "PARENT", "SUBNETS", "XDP", "ENDPOINTS", "STATUS"], rows);
    Ok(())
}

/// One `stats` reply; `watch` clears the screen first. `all`: every port row, on a terminal too.
pub fn stats(s: &Stats, format: Format, watch: bool, all: bool) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    if watch {
        print!("\x1b[2J\x1b[H");
    }
    print_table(
        &["WORKER", "CPU", "RX/s", "TX/s", "DROP/s", "RX", "TX", "DROPPED", "KICKS", "SLEEPS"],
        s.workers.iter().map(|v| {
            let w = &v.counters;
            vec![
                w.id.to_string(),
                w.cpu.map_or("-".into(), |c| c.to_string()),
                format!("{:.0}", v.rx_pps),
                format!("{:.0}", v.tx_pps),
                format!("{:.0}", v.drop_pps),
                w.rx_frames.to_string(),
                w.tx_frames.to_string(),
                w.dropped.to_string(),
                w.tx_kicks.to_string(),
                w.idle_sleeps.to_string(),
            ]
        }),
    );
    let terminal = terminal();
    for n in &s.networks {
        println!();
        println!("network {} on {} (XDP {})", n.name, n.parent.as_deref().unwrap_or("(internal)"), n.xdp_mode);
        let digest = summary::digest(&n.ports, summary::whole(n.ports.len(), all, terminal));
        if digest.hidden > 0 {
            println!("{}", digest.totals);
        }
        print_table(
            &["PORT", "NETNS", "IFNAME", "MAC", "UP", "XSK", "RX", "TX", "DROPS"],
            digest.rows.iter().map(|p| {
                let drops: Vec<String> =
                    p.drops.iter().filter(|(_, c)| **c != 0).map(|(k, c)| format!("{k}={c}")).collect();
                let place = p.endpoint.as_ref();
                vec![
                    p.name.clone(),
                    place.and_then(|e| e.netns.clone()).unwrap_or_else(|| "-".into()),
                    place.map_or_else(|| "-".into(), |e| e.ifname.clone()),
                    p.mac.clone(),
                    if p.up { "up" } else { "down" }.into(),
                    p.xsk_mode.clone(),
                    p.rx.to_string(),
                    p.tx.to_string(),
                    if drops.is_empty() { "0".into() } else { drops.join(",") },
                ]
            }),
        );
        if digest.hidden > 0 {
            println!(
                "(shown: the parent, {}; {} more ports: xmacvlan stats --all, or --format json)",
                digest.shown(),
                digest.hidden
            );
        }
    }
    println!("\n(rx = frames the datapath received from a port, tx = frames it delivered to it)");
    Ok(())
}

fn print_table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}
