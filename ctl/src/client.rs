//! The CLI side of the control socket, and how replies are shown.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::api::{self, Envelope, NetworkView, Reply, Request};
use crate::summary;

/// How the CLI shows a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Whether stdout is a terminal: tables of many ports are then shortened (see [`summary`]).
fn terminal() -> bool {
    std::io::stdout().is_terminal()
}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: PathBuf) -> Self {
        Client { socket }
    }

    async fn call(&self, request: Request) -> Result<Value> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            anyhow!(
                "no xmacvlan daemon is listening on {} ({e}); start one with `sudo xmacvlan daemon` \
                 (or point --socket / XMACVLAN_SOCKET at the one you started)",
                self.socket.display()
            )
        })?;
        let (rd, mut wr) = stream.into_split();
        let mut line = serde_json::to_vec(&Envelope { version: api::API_VERSION, request })?;
        line.push(b'\n');
        wr.write_all(&line).await.context("sending the request")?;
        let mut answer = String::new();
        BufReader::new(rd).read_line(&mut answer).await.context("reading the daemon's reply")?;
        let reply: Reply = serde_json::from_str(&answer).with_context(|| {
            format!("the daemon's reply is not understood (is it a different xmacvlan version?): {answer:?}")
        })?;
        if reply.version != api::API_VERSION {
            bail!("the daemon speaks API v{}, this CLI v{}: use matching versions", reply.version, api::API_VERSION);
        }
        if !reply.ok {
            bail!("{}", reply.error.unwrap_or_else(|| "the daemon reported an unspecified error".into()));
        }
        Ok(reply.data)
    }

    /// Prints a reply as JSON, or as the one line a script or a person wants from it.
    fn show(v: &Value, format: Format, line: impl FnOnce(&Value) -> String) -> Result<()> {
        match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(v)?),
            Format::Table => println!("{}", line(v)),
        }
        Ok(())
    }

    pub async fn create(&self, c: api::CreateNetwork, format: Format) -> Result<()> {
        let v = self.call(Request::NetworkCreate(c)).await?;
        Self::show(&v, format, |v| v["name"].as_str().unwrap_or_default().to_string())
    }

    pub async fn connect(&self, c: api::Connect, format: Format) -> Result<()> {
        let v = self.call(Request::Connect(c)).await?;
        Self::show(&v, format, |v| {
            let ips: Vec<&str> =
                v["ips"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            format!(
                "{} {} {} {}",
                v["netns"].as_str().unwrap_or("-"),
                v["ifname"].as_str().unwrap_or(""),
                ips.join(","),
                v["mac"].as_str().unwrap_or("")
            )
        })
    }

    pub async fn disconnect(&self, network: String, endpoint: String, format: Format) -> Result<()> {
        let v = self.call(Request::Disconnect { network, endpoint }).await?;
        Self::show(&v, format, |v| v["removed"].as_str().unwrap_or_default().to_string())
    }

    pub async fn macaddr(
        &self,
        network: String,
        endpoint: String,
        action: api::MacaddrAction,
        macs: Vec<String>,
        format: Format,
    ) -> Result<()> {
        let v = self.call(Request::Macaddr { network, endpoint, action, macs }).await?;
        Self::show(&v, format, |v| {
            let macs: Vec<&str> =
                v["source_macs"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            format!("{} {}", v["endpoint"].as_str().unwrap_or_default(), macs.join(","))
        })
    }

    pub async fn rm(&self, name: String, force: bool, format: Format) -> Result<()> {
        let v = self.call(Request::NetworkRm { name, force }).await?;
        Self::show(&v, format, |v| v["removed"].as_str().unwrap_or_default().to_string())
    }

    /// `format` None: a table on a terminal, JSON otherwise. `all`: every endpoint row of the
    /// table, on a terminal too.
    pub async fn inspect(&self, name: String, format: Option<Format>, all: bool) -> Result<()> {
        let v = self.call(Request::NetworkInspect { name }).await?;
        let terminal = terminal();
        let format = format.unwrap_or(if terminal { Format::Table } else { Format::Json });
        if format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        let counters = v["counters"].clone();
        let n: NetworkView = serde_json::from_value(v)?;
        let kv = |k: &str, val: String| println!("{k:<10} {val}");
        kv("Name", n.name.clone());
        kv("Id", n.id.to_string());
        kv("Driver", format!("{} ({} mode)", n.driver, n.mode));
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
        let ports = counters["ports"].as_array().map_or(&[][..], Vec::as_slice);
        let by_name: HashMap<&str, &Value> = ports.iter().filter_map(|p| Some((p["name"].as_str()?, p))).collect();
        let count = |host: &str, key: &str| by_name.get(host).map_or_else(|| "-".into(), |p| num(&p[key]));
        // Without counters (the network is not active) there is nothing to choose rows by.
        let whole = summary::whole(n.endpoints.len(), all, terminal) || ports.is_empty();
        let digest = summary::digest(ports, whole);
        // Shortened: the endpoints of the digest's rows (not the parent, which has none), in its order.
        let rows: Vec<&api::EndpointView> = if whole {
            n.endpoints.iter().collect()
        } else {
            let by_host: HashMap<&str, &api::EndpointView> =
                n.endpoints.iter().map(|e| (e.host_ifname.as_str(), e)).collect();
            digest.rows.iter().filter_map(|p| by_host.get(p["name"].as_str()?).copied()).collect()
        };
        if !whole {
            println!("{}", digest.totals);
        }
        print_table(
            &["KIND", "NETNS", "IFNAME", "HOST IFNAME", "MAC", "IPS", "MTU", "RX", "TX", "DROPS"],
            rows.iter().map(|e| {
                vec![
                    e.kind.clone(),
                    e.netns.clone().unwrap_or_else(|| "-".into()),
                    e.ifname.clone(),
                    e.host_ifname.clone(),
                    e.mac.clone(),
                    e.ips.join(","),
                    e.mtu.to_string(),
                    count(&e.host_ifname, "rx"),
                    count(&e.host_ifname, "tx"),
                    count(&e.host_ifname, "drops_total"),
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

    pub async fn ls(&self, format: Format) -> Result<()> {
        let v = self.call(Request::NetworkLs).await?;
        if format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        let nets: Vec<NetworkView> = serde_json::from_value(v)?;
        let rows = nets.iter().map(|n| {
            vec![
                n.id.to_string(),
                n.name.clone(),
                format!("{}/{}", n.driver, n.mode),
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

    /// `all`: every port row, on a terminal too.
    pub async fn stats(&self, watch: bool, format: Format, all: bool) -> Result<()> {
        let terminal = terminal();
        loop {
            let v = self.call(Request::Stats).await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string(&v)?);
            } else {
                if watch {
                    print!("\x1b[2J\x1b[H");
                }
                print_stats(&v, all, terminal);
            }
            if !watch {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

fn num(v: &Value) -> String {
    v.as_u64().map(|n| n.to_string()).or_else(|| v.as_f64().map(|f| format!("{f:.0}"))).unwrap_or_else(|| "-".into())
}

fn print_stats(v: &Value, all: bool, terminal: bool) {
    let empty = vec![];
    let workers = v["workers"].as_array().unwrap_or(&empty);
    print_table(
        &["WORKER", "CPU", "RX/s", "TX/s", "DROP/s", "RX", "TX", "DROPPED", "KICKS", "SLEEPS"],
        workers.iter().map(|w| {
            vec![
                num(&w["id"]),
                w["cpu"].as_u64().map_or("-".into(), |c| c.to_string()),
                num(&w["rx_pps"]),
                num(&w["tx_pps"]),
                num(&w["drop_pps"]),
                num(&w["rx_frames"]),
                num(&w["tx_frames"]),
                num(&w["dropped"]),
                num(&w["tx_kicks"]),
                num(&w["idle_sleeps"]),
            ]
        }),
    );
    for n in v["networks"].as_array().unwrap_or(&empty) {
        println!();
        println!(
            "network {} on {} (XDP {})",
            n["name"].as_str().unwrap_or(""),
            n["parent"].as_str().unwrap_or("(internal)"),
            n["xdp_mode"].as_str().unwrap_or("")
        );
        let ports = n["ports"].as_array().unwrap_or(&empty);
        let digest = summary::digest(ports, summary::whole(ports.len(), all, terminal));
        if digest.hidden > 0 {
            println!("{}", digest.totals);
        }
        print_table(
            &["PORT", "NETNS", "IFNAME", "MAC", "UP", "XSK", "RX", "TX", "DROPS"],
            digest.rows.iter().map(|p| {
                let drops = p["drops"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(_, c)| c.as_u64() != Some(0))
                            .map(|(k, c)| format!("{k}={c}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "0".into());
                vec![
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["netns"].as_str().unwrap_or("-").to_string(),
                    p["ifname"].as_str().unwrap_or("-").to_string(),
                    p["mac"].as_str().unwrap_or("").to_string(),
                    if p["up"].as_bool() == Some(true) { "up".into() } else { "down".into() },
                    p["xsk_mode"].as_str().unwrap_or("").to_string(),
                    num(&p["rx"]),
                    num(&p["tx"]),
                    drops,
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
