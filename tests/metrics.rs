//! `daemon --metrics ADDR` (issue 19): the exposition is scraped over HTTP like Prometheus does and
//! parsed by a real Prometheus parser (python3-prometheus-client, `make deps`), and its counters
//! are the ones `stats` shows. Only loopback or a Unix socket is served.
//!
//! Root only; each test builds its own lab of namespaces and removes it.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

/// `GET PATH` on the metrics socket: the status line and the body.
fn get(socket: &str, path: &str) -> (String, String) {
    let mut s = UnixStream::connect(socket).expect("the metrics socket");
    write!(s, "GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The samples of an exposition as python's prometheus_client parser reads it:
/// `[[name, {labels}, value], …]`. Panics, with the parser's error, when it does not parse.
fn parse(text: &str) -> Vec<(String, Value, f64)> {
    let script = "import json, sys\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
                  print(json.dumps(out))";
    // Debian's python, which has the package (a python3 earlier on the PATH may not).
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (make deps installs python3-prometheus-client)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the exposition does not parse: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    let v: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    v
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn metrics_parse_and_agree_with_stats() {
    require_root!();
    let lab = Lab::new();
    let socket = lab.tmp.join("metrics.sock").to_string_lossy().into_owned();
    let _d = Daemon::start_with(&lab, &["--metrics", &socket]);
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
    attach(&lab, Backend::Xmacvlan, 1, None);
    attach(&lab, Backend::Xmacvlan, 2, None);
    let pinged = lab.wire.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &container_ip(1)]);
    assert!(pinged.status.success());

    let (status, text) = get(&socket, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let samples = parse(&text);
    println!("{} samples in {} bytes", samples.len(), text.len());
    // The ports are the ones `stats` lists, and container 1's counted the three pings sent to it.
    let stats = lab.stats();
    let in_stats: std::collections::BTreeSet<&str> =
        stats["networks"][0]["ports"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    let in_metrics: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|(name, _, _)| name == "xmacvlan_port_up")
        .map(|(_, labels, _)| labels["port"].as_str().unwrap())
        .collect();
    assert_eq!(in_metrics, in_stats);
    let host = lab.port_stats(container_mac(1))["name"].as_str().unwrap().to_string();
    let to_c1 = samples
        .iter()
        .find(|(name, labels, _)| name == "xmacvlan_port_transmitted_frames_total" && labels["port"] == host.as_str())
        .unwrap_or_else(|| panic!("a sample for {host}: {text}"));
    assert!(to_c1.2 >= 3.0 && to_c1.1["network"] == "labnet", "{to_c1:?}");
    let families: std::collections::BTreeSet<&str> = samples.iter().map(|(n, _, _)| n.as_str()).collect();
    for f in [
        "xmacvlan_port_dropped_frames_total",
        "xmacvlan_umem_frames",
        "xmacvlan_worker_loops_total",
        "xmacvlan_fast_path_frames_total",
    ] {
        assert!(families.contains(f), "{f} in {families:?}");
    }
    let (status, _) = get(&socket, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn metrics_are_served_on_loopback_only() {
    require_root!();
    let lab = Lab::new();
    let (status, log) = Daemon::refused(&lab, &["--metrics", "0.0.0.0:9464"]);
    assert!(!status.success());
    assert!(log.contains("--metrics 0.0.0.0:9464: only a loopback address"), "{log}");
    let (_, log) = Daemon::refused(&lab, &["--metrics", "nonsense"]);
    assert!(log.contains("--metrics 'nonsense' is neither"), "{log}");
    assert!(lab.dp.xdp_links().is_empty(), "nothing was set up");
}
