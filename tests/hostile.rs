//! Clients that try to stall or kill the daemon (issue 17): a FIFO given as a namespace, a request
//! line held half-sent, a 100 MB line, thousands of idle connections at a descriptor limit of
//! 1 024, and at one too small for them; and a legitimate command that takes seconds. Through all of it the daemon stays up and another
//! client's `network ls` answers; the latencies are printed (`--nocapture`), the checks are that
//! nothing waits for a deadline it should not (seconds, not milliseconds: no timing claim here).
//!
//! Root only; each test builds its own lab of namespaces and removes it.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;
use xmacvlan_ctl::api;
use xmacvlan_ctl::client::Client;

/// Longer than any answer of an unstalled daemon, shorter than the daemon's 5 s read deadline: a
/// client that waited this long waited for someone else's request.
const NOT_STALLED: Duration = Duration::from_secs(2);

fn lab_with_network() -> (Lab, Daemon) {
    let lab = Lab::new();
    let d = Daemon::start(&lab);
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
    (lab, d)
}

/// `network ls` through the control client, timed.
fn timed_ls(lab: &Lab) -> Duration {
    let t = Instant::now();
    let nets = Client::new(lab.socket()).with_timeout(Duration::from_secs(30)).ls().expect("ls answers");
    assert_eq!(nets.len(), 1);
    t.elapsed()
}

/// The daemon's resident memory, from /proc.
fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's status");
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Reads one reply line from a raw connection (within `wait`).
fn reply_line(s: &UnixStream, wait: Duration) -> String {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn a_fifo_for_a_namespace_fails_fast_and_blocks_nobody() {
    require_root!();
    let (lab, _d) = lab_with_network();
    let fifo = lab.tmp.join("not-a-namespace");
    ok(&["mkfifo", fifo.to_str().unwrap()]);
    let fifo = fifo.to_str().unwrap().to_string();
    std::thread::scope(|s| {
        let t = Instant::now();
        // `timeout`: a regression would hang here for good.
        let conn =
            s.spawn(|| run(&["timeout", "30", BIN, "--socket", &lab.socket(), "network", "connect", "labnet", &fifo]));
        let ls = timed_ls(&lab);
        let out = conn.join().unwrap();
        let took = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        println!("connect to a FIFO refused in {took:?}; another client's ls meanwhile: {ls:?}");
        assert_eq!(out.status.code(), Some(1), "refused, not timed out: {err}");
        assert!(err.contains(&fifo) && err.contains("is not a network namespace"), "names the path: {err}");
        assert!(took < NOT_STALLED && ls < NOT_STALLED, "nobody waited: connect {took:?}, ls {ls:?}");
    });
    // The CNI plugin's ADD on the same path: refused fast, as an unknown container (code 3).
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"cninet","type":"xmacvlan-cni","master":"eth1","socket":"{}"}}"#,
        lab.socket()
    );
    let t = Instant::now();
    let out = cni_add(&lab, &conf, &fifo);
    println!("CNI ADD with a FIFO for CNI_NETNS answered in {:?}: {out}", t.elapsed());
    let v: serde_json::Value = serde_json::from_str(&out).expect("a CNI error");
    assert!(v["code"] == 3 && v["msg"].as_str().unwrap().contains(&fifo), "{out}");
    assert!(t.elapsed() < NOT_STALLED);
    // A multicast MAC is an invalid value (code 7), not an internal error.
    let conf = conf.replace(r#""socket""#, r#""mac":"01:00:5e:00:00:01","socket""#);
    let out = cni_add(&lab, &conf, &lab.c(1).path());
    println!("CNI ADD with a multicast mac: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("a CNI error");
    assert!(v["code"] == 7 && v["msg"].as_str().unwrap().contains("01:00:5e:00:00:01"), "{out}");
}

/// Runs the CNI plugin's ADD (no IPAM) with `conf` for namespace `netns` in the lab's daemon
/// namespace; its stdout.
fn cni_add(lab: &Lab, conf: &str, netns: &str) -> String {
    let plugin = env!("CARGO_BIN_EXE_xmacvlan-cni");
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.dp.name, "timeout", "30", plugin])
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "hostile1")
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the CNI plugin");
    child.stdin.take().unwrap().write_all(conf.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn a_held_half_request_and_a_huge_line_stall_nobody() {
    require_root!();
    let (lab, d) = lab_with_network();
    // Half a request, never finished.
    let mut half = UnixStream::connect(lab.socket()).unwrap();
    half.write_all(b"{\"version\":4,\"request\":").unwrap();
    let ls = timed_ls(&lab);
    println!("ls while a half request is held: {ls:?}");
    assert!(ls < NOT_STALLED, "{ls:?}");
    let line = reply_line(&half, Duration::from_secs(10));
    println!("the half request's connection got: {}", line.trim());
    assert!(line.contains("no complete line within 5 s"), "{line}");

    // 100 MB without a newline: refused after the first MiB, without growing the daemon.
    let before = rss_kib(d.pid());
    let mut big = UnixStream::connect(lab.socket()).unwrap();
    let reader = big.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        while sent < 100 << 20 {
            match big.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break,
            }
        }
        sent
    });
    let line = reply_line(&reader, Duration::from_secs(20));
    let sent = writer.join().unwrap();
    let after = rss_kib(d.pid());
    let ls = timed_ls(&lab);
    println!(
        "100 MB line: refused after {} MiB were written; daemon RSS {before} → {after} KiB; ls after: {ls:?}",
        sent >> 20
    );
    assert!(line.contains("longer than 1048576 bytes") && line.len() < 400, "{line}");
    assert!(after < before + 16 * 1024, "RSS grew by {} KiB", after.saturating_sub(before));
    assert!(ls < NOT_STALLED);
}

/// Raises this process's soft descriptor limit to its hard limit (the test holds thousands).
fn raise_own_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the local `lim`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// Sets the daemon's descriptor limit (soft and hard) from outside, as a unit file would.
fn limit_daemon(pid: i32, n: u64) {
    ok(&["prlimit", "--pid", &pid.to_string(), &format!("--nofile={n}:{n}")]);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn idle_connections_neither_kill_the_daemon_nor_lock_others_out() {
    require_root!();
    let (lab, mut d) = lab_with_network();
    assert!(raise_own_nofile() > 4096, "the test needs room for its own 2 000 connections");
    let pid = d.pid();
    let log = lab.tmp.join("daemon.log");

    // At systemd's default of 1 024 descriptors: 2 000 connections that never send anything.
    limit_daemon(pid, 1024);
    let idle: Vec<UnixStream> = (0..2000).map(|_| UnixStream::connect(lab.socket()).expect("connect")).collect();
    let ls = timed_ls(&lab);
    let fds = open_fds(pid);
    println!("2000 idle connections at NOFILE 1024: daemon holds {fds} descriptors; ls: {ls:?}");
    assert!(d.alive(), "the daemon is up: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(ls < NOT_STALLED, "{ls:?}");
    assert!(fds < 1024, "{fds} descriptors");
    drop(idle);

    // Fewer descriptors than places for waiting clients: accepting fails (EMFILE). The daemon
    // closes the older idle connections to make room, goes on, and answers the client with a
    // request behind them (without waiting for their 5 s deadline).
    limit_daemon(pid, 128);
    let idle: Vec<UnixStream> = (0..1000).map(|_| UnixStream::connect(lab.socket()).expect("connect")).collect();
    let ls = timed_ls(&lab);
    println!("1000 idle connections at NOFILE 128: ls answered after {ls:?}");
    assert!(d.alive(), "the daemon survived running out of descriptors");
    assert!(ls < Duration::from_secs(5), "not after the idle connections' deadline: {ls:?}");
    drop(idle);
    let ls = timed_ls(&lab);
    assert!(ls < NOT_STALLED, "{ls:?}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("Too many open files") && text.contains("retrying"), "EMFILE was met and waited out: {text}");
    assert!(Path::new(&lab.socket()).exists());
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn readers_do_not_wait_for_a_slow_command() {
    require_root!();
    // Removing a network of 100 endpoints takes seconds (each veth goes with its namespace's
    // share of an RCU grace period); `ls`, `inspect` and `stats` meanwhile answer at once, with
    // the network as it was before the removal began.
    const N: usize = 100;
    let lab = Lab::with_containers(N);
    let _d = Daemon::start(&lab);
    lab.cli_ok(&["network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, "-o", "parent=eth1", "labnet"]);
    lab.cli_ok(&["network", "create", "--subnet", "198.18.1.0/24", "-o", "parent=eth1", "other"]);
    let client = Client::new(lab.socket()).with_timeout(Duration::from_secs(60));
    for i in 1..=N {
        client.connect(connect("labnet", &lab.c(i).path())).unwrap_or_else(|e| panic!("connect c{i}: {e:#}"));
    }
    let endpoints = || lab.dp.links().iter().filter(|l| l.starts_with("xmv") && l.len() == 11).count();
    assert_eq!(endpoints(), N);
    std::thread::scope(|s| {
        let t = Instant::now();
        let rm = s.spawn(|| Client::new(lab.socket()).with_timeout(Duration::from_secs(120)).rm("labnet".into(), true));
        // The removal has begun once its first endpoint link is gone.
        within(Duration::from_secs(30), || endpoints() < N).expect("the removal begins");
        let began = t.elapsed();
        let (ls, nets) = timed(|| client.ls().expect("ls answers"));
        let (inspect, seen) = timed(|| client.inspect("labnet".into()).expect("inspect answers"));
        let (stats, _) = timed(|| client.stats().expect("stats answers"));
        let left = endpoints();
        // Two commands wait for the removal: one whose client gives up (closes) before its turn,
        // which is then not carried out, and one whose client only shuts down its sending side
        // (as `socat` does), which is answered.
        let request = |netns: String| {
            let env =
                api::Envelope { version: api::API_VERSION, request: api::Request::Connect(connect("other", &netns)) };
            let mut line = serde_json::to_vec(&env).unwrap();
            line.push(b'\n');
            let mut s = UnixStream::connect(lab.socket()).unwrap();
            s.write_all(&line).unwrap();
            s
        };
        drop(request(lab.c(1).path()));
        let half = request(lab.c(2).path());
        half.shutdown(std::net::Shutdown::Write).unwrap();
        rm.join().unwrap().expect("the removal succeeds");
        let took = t.elapsed();
        println!(
            "rm of {N} endpoints: {took:?} (began after {began:?}); meanwhile ls {ls:?}, inspect {inspect:?}, \
             stats {stats:?}, with {left} endpoint links still to remove"
        );
        assert!(left > 0, "the readers answered while the removal was still running");
        let labnet = nets.iter().find(|n| n.name == "labnet");
        assert!(labnet.is_some_and(|n| n.endpoints.len() == N), "ls shows the network as it was: {nets:?}");
        assert_eq!(seen.network.endpoints.len(), N);
        let answer = reply_line(&half, Duration::from_secs(30));
        assert!(answer.contains(r#""ok":true"#), "the half-closed client is answered: {answer}");
    });
    let other = client.inspect("other".into()).unwrap().network.endpoints;
    let netns: Vec<_> = other.iter().map(|e| e.netns.clone().unwrap()).collect();
    assert_eq!(netns, [lab.c(2).path()], "the command of the client that gave up was not carried out");
    // Once it has answered, readers see it done.
    assert_eq!(client.ls().unwrap().len(), 1);
    assert!(client.inspect("labnet".into()).is_err());
}

/// A connect of `netns` to `network`, as the CLI sends it.
fn connect(network: &str, netns: &str) -> api::Connect {
    api::Connect {
        network: network.into(),
        netns: Some(netns.into()),
        tap: None,
        owner: None,
        ip: None,
        ip6: None,
        mac: None,
        ifname: "eth0".into(),
        mtu: None,
        spoof_check: None,
        ip_guard: None,
    }
}

/// `f`'s answer and how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed(), v)
}
