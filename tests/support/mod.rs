//! The lab for end-to-end tests: network namespaces this test creates (and always removes), veth
//! pairs between them, a daemon process, raw-socket senders and receivers, and the two backends
//! (kernel macvlan, xmacvlan) behind one interface so the same checks run against both.
//!
//! Addresses come from 198.18.0.0/15 only. Nothing outside the lab's namespaces is touched.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod podman;
pub mod vlan;
pub const BIN: &str = env!("CARGO_BIN_EXE_xmacvlan");
pub const MARK_TYPE: u16 = 0x88b5; // IEEE 802 local experimental EtherType
pub const SUBNET: &str = "198.18.0.0/24";
pub const GATEWAY: &str = "198.18.0.254";
pub const HOST_IP: &str = "198.18.0.253";
pub const PARENT_MTU: u32 = 3000;

/// Skips (passes with a message) when not root: everything here needs CAP_NET_ADMIN and BPF.
#[macro_export]
macro_rules! require_root {
    () => {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: end-to-end tests need root (network namespaces, XDP)");
            return;
        }
    };
}

/// Runs a command, returning its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command given as one whitespace-separated string (no quoting needed for `ip` commands).
pub fn ok_words(cmd: &str) -> String {
    ok(&cmd.split_whitespace().collect::<Vec<_>>())
}

/// A network namespace that is deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Self {
        ok(&["ip", "netns", "add", &name]);
        ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        ok(&full)
    }

    /// rx_packets of an interface in this namespace.
    pub fn rx_packets(&self, ifname: &str) -> u64 {
        let out = ok(&["ip", "-n", &self.name, "-s", "-j", "link", "show", ifname]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets")
    }

    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        let out = ok(&["ip", "-n", &self.name, "-j", "link", "show", ifname]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        parse_mac(v[0]["address"].as_str().expect("address"))
    }

    /// Names of the links in this namespace.
    pub fn links(&self) -> Vec<String> {
        let out = ok(&["ip", "-n", &self.name, "-j", "link", "show"]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap().to_string()).collect()
    }

    /// Links in this namespace with an XDP program attached.
    pub fn xdp_links(&self) -> Vec<String> {
        let out = ok(&["ip", "-n", &self.name, "-d", "-j", "link", "show"]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v.as_array()
            .unwrap()
            .iter()
            .filter(|l| !l["xdp"].is_null())
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(p, 16).expect("hex octet");
    }
    m
}

pub fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// wire (far-end host) —veth— eth1 (the parent, in `dp`) and three empty container namespaces.
pub struct Lab {
    pub tag: String,
    pub containers: Vec<Netns>,
    pub dp: Netns,
    pub wire: Netns,
    pub tmp: PathBuf,
}

impl Lab {
    pub fn new() -> Self {
        Self::with_parent_queues(1)
    }

    /// A lab whose parent (eth1) has `queues` receive and transmit queues, for multi-worker daemons.
    pub fn with_parent_queues(queues: u32) -> Self {
        let tag = format!("xmvt{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let wire = Netns::new(format!("{tag}-wire"));
        let dp = Netns::new(format!("{tag}-dp"));
        let containers = (1..=3).map(|i| Netns::new(format!("{tag}-c{i}"))).collect();
        let tmp = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&tmp).unwrap();
        let end = |name: &str, ns: &str| {
            format!("{name} netns {ns} mtu {PARENT_MTU} numtxqueues {queues} numrxqueues {queues}")
        };
        ok_words(&format!("ip link add {} type veth peer name {}", end("wire0", &wire.name), end("eth1", &dp.name)));
        ok(&["ip", "-n", &wire.name, "addr", "add", &format!("{GATEWAY}/24"), "dev", "wire0"]);
        ok(&["ip", "-n", &dp.name, "addr", "add", &format!("{HOST_IP}/24"), "dev", "eth1"]);
        ok(&["ip", "-n", &wire.name, "link", "set", "wire0", "up"]);
        ok(&["ip", "-n", &dp.name, "link", "set", "eth1", "up"]);
        Lab { tag, containers, dp, wire, tmp }
    }

    pub fn c(&self, i: usize) -> &Netns {
        &self.containers[i - 1]
    }

    pub fn socket(&self) -> String {
        self.tmp.join("x.sock").to_string_lossy().into_owned()
    }

    /// Runs the CLI against this lab's daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        let sock = self.socket();
        let mut full = vec![BIN, "--socket", &sock];
        full.extend_from_slice(args);
        run(&full)
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "xmacvlan {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stats(&self) -> Value {
        serde_json::from_str(&self.cli_ok(&["stats", "--format", "json"])).expect("stats JSON")
    }

    /// The stats object of the endpoint port whose MAC is `mac`.
    pub fn port_stats(&self, mac: [u8; 6]) -> Value {
        let s = self.stats();
        let m = mac_str(mac);
        s["networks"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["mac"] == m.as_str())
            .cloned()
            .expect("port in stats")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
        // Namespaces are removed by their own guards (containers first, by field order).
    }
}

/// The daemon, running inside the lab's `dp` namespace; stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub stderr: PathBuf,
}

impl Lab {
    /// The daemon's state directory (kept across daemon restarts within one lab).
    pub fn state_dir(&self) -> PathBuf {
        self.tmp.join("state")
    }
}

impl Daemon {
    pub fn start(lab: &Lab) -> Self {
        Self::start_with(lab, &[])
    }

    fn spawn(lab: &Lab, extra: &[&str]) -> (Child, PathBuf) {
        let stderr = lab.tmp.join("daemon.log");
        // Appended: a restarted daemon's log follows the previous one's.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&stderr).unwrap();
        // One worker on CPU 1 unless the caller says otherwise.
        let cpus: &[&str] = if extra.contains(&"--cpus") { &[] } else { &["--cpus", "1"] };
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.dp.name, BIN, "daemon", "--socket", &lab.socket()])
            .args(cpus)
            .arg("--state-dir")
            .arg(lab.state_dir())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning the daemon");
        (child, stderr)
    }

    /// Runs the daemon expecting it to refuse to start; returns its exit status and log.
    pub fn refused(lab: &Lab, extra: &[&str]) -> (std::process::ExitStatus, String) {
        let (mut child, stderr) = Self::spawn(lab, extra);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, std::fs::read_to_string(&stderr).unwrap_or_default());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon did not refuse to start: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would: nothing is cleaned up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals only the process we spawned, by its PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    pub fn start_with(lab: &Lab, extra: &[&str]) -> Self {
        let (child, stderr) = Self::spawn(lab, extra);
        let mut d = Daemon { child: Some(child), stderr };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::os::unix::net::UnixStream::connect(lab.socket()).is_ok() {
                return d;
            }
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited early ({status}): {}", std::fs::read_to_string(&d.stderr).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "daemon did not listen within 15 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait; returns whether it exited with status 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        // SAFETY: signals only the process we spawned, by its PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a container is attached to the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Kernel,
    Xmacvlan,
}

/// Container i gets MAC 02:42:c6:12:00:1i and address 198.18.0.1i.
pub fn container_mac(i: usize) -> [u8; 6] {
    [0x02, 0x42, 0xc6, 0x12, 0x00, 0x10 + i as u8]
}

pub fn container_ip(i: usize) -> String {
    format!("198.18.0.{}", 10 + i)
}

/// Attaches container `i` with the given backend (`mtu` None = the parent's).
pub fn attach(lab: &Lab, backend: Backend, i: usize, mtu: Option<u32>) {
    let mac = mac_str(container_mac(i));
    let ip = container_ip(i);
    let c = lab.c(i);
    match backend {
        Backend::Kernel => {
            let tmp = format!("mv{i}");
            let mtu = mtu.unwrap_or(PARENT_MTU).to_string();
            ok(&[
                "ip",
                "-n",
                &lab.dp.name,
                "link",
                "add",
                "link",
                "eth1",
                "name",
                &tmp,
                "mtu",
                &mtu,
                "type",
                "macvlan",
                "mode",
                "bridge",
            ]);
            ok(&["ip", "-n", &lab.dp.name, "link", "set", &tmp, "netns", &c.name]);
            ok(&["ip", "-n", &c.name, "link", "set", &tmp, "name", "eth0", "address", &mac]);
            ok(&["ip", "-n", &c.name, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ok(&["ip", "-n", &c.name, "link", "set", "eth0", "up"]);
        }
        Backend::Xmacvlan => {
            let path = c.path();
            let mtu_s = mtu.map(|m| m.to_string());
            let mut args = vec!["network", "connect", "--ip", &ip, "--mac-address", &mac];
            if let Some(m) = &mtu_s {
                args.extend_from_slice(&["--mtu", m]);
            }
            args.extend_from_slice(&["labnet", &path]);
            lab.cli_ok(&args);
        }
    }
}

/// An AF_PACKET socket bound to one interface of one namespace (the socket keeps that namespace).
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSocket {
    /// Receives every frame on the interface (ETH_P_ALL): such a tap sees what arrives before an
    /// rx_handler (macvlan, a bridge) takes it.
    pub fn open(ns: &Netns, ifname: &str) -> Self {
        Self::open_protocol(ns, ifname, libc::ETH_P_ALL as u16)
    }

    /// Receives only frames of `ethertype` that the interface's own stack gets: a protocol handler
    /// runs after rx_handlers and XDP, so this sees what the host receives on that interface.
    pub fn open_protocol(ns: &Netns, ifname: &str, ethertype: u16) -> Self {
        let path = ns.path();
        let ifname = ifname.to_string();
        std::thread::spawn(move || {
            let nsf = File::open(&path).expect("netns file");
            // SAFETY: setns on this short-lived thread only; the socket created after it lives in
            // the namespace for good.
            assert_eq!(unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            let cname = std::ffi::CString::new(ifname.clone()).unwrap();
            // SAFETY: plain libc calls with valid arguments; results checked.
            unsafe {
                let ifindex = libc::if_nametoindex(cname.as_ptr()) as i32;
                assert!(ifindex > 0, "no interface {ifname} in {path}");
                let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, ethertype.to_be() as i32);
                assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
                let fd = OwnedFd::from_raw_fd(raw);
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = ethertype.to_be();
                sll.sll_ifindex = ifindex;
                let rc = libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of_val(&sll) as u32,
                );
                assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
                RawSocket { fd, ifindex }
            }
        })
        .join()
        .expect("raw socket thread")
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: sends from a live buffer on our socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "send: {}", std::io::Error::last_os_error());
    }

    /// Frames received (not our own outgoing ones) carrying `marker`, until `wait` passes.
    pub fn collect(&self, marker: &[u8; 8], wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return got;
            }
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) } <= 0 {
                continue;
            }
            // SAFETY: a zeroed sockaddr_ll and buffers that live across the call.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut flen = std::mem::size_of_val(&from) as u32;
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut flen,
                )
            };
            if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let f = &buf[..n as usize];
            if f.windows(8).any(|w| w == marker) {
                got.push(f.to_vec());
            }
        }
    }
}

/// A marked test frame: dst, src, EtherType 0x88b5 (or `ethertype`), marker, padding to `len`.
pub fn frame(dst: [u8; 6], src: [u8; 6], marker: &[u8; 8], len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(60));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&MARK_TYPE.to_be_bytes());
    f.extend_from_slice(marker);
    f.resize(len.max(60), 0x5a);
    f
}

static MARKS: AtomicUsize = AtomicUsize::new(1);

/// A marker unique within this test process.
pub fn marker() -> [u8; 8] {
    let n = MARKS.fetch_add(1, Ordering::Relaxed) as u32;
    let p = std::process::id();
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&p.to_be_bytes());
    m[4..].copy_from_slice(&n.to_be_bytes());
    m
}

pub const BROADCAST: [u8; 6] = [0xff; 6];
pub const OUTSIDE: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x99];
