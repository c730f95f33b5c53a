//! The namespace lab (gen —veth— dp/eth1 (parent) ; c1 = container), command helpers, and the cleanup
//! registry that guarantees the namespaces and the daemon are removed on every exit path: normal return,
//! error, panic (the workspace builds with panic = "abort", so a panic hook runs the cleanup), and
//! SIGINT/SIGTERM/SIGHUP (a dedicated signal thread; the first signal asks the run to stop and unwind,
//! a second one cleans up at once and exits).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::nlstats::{Link, NsSock};

/// Set by the signal thread on the first SIGINT/SIGTERM/SIGHUP.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted by a signal");
    }
    Ok(())
}

/// Sleeps for `d`, waking early (with an error) when a signal arrived.
pub fn sleep_checked(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

// ---------------------------------------------------------------------------------------------------
// Cleanup registry

struct Registry {
    /// Processes we started (by PID), stopped with SIGTERM then SIGKILL.
    pids: Vec<i32>,
    /// Network namespaces we created (names under /var/run/netns).
    netns: Vec<String>,
    /// Temporary directories we created.
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { pids: Vec::new(), netns: Vec::new(), dirs: Vec::new() });

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn register_pid(pid: i32) {
    registry().pids.push(pid);
}
fn unregister_pid(pid: i32) {
    registry().pids.retain(|&p| p != pid);
}
fn register_netns(name: &str) {
    registry().netns.push(name.to_string());
}
fn register_dir(p: &Path) {
    registry().dirs.push(p.to_path_buf());
}

/// Stops a child process we started (and have not reaped yet): SIGTERM, wait up to `grace`, SIGKILL.
/// Returns the exit status (as from waitpid) if we reaped it.
pub fn stop_pid(pid: i32, grace: Duration) -> Option<i32> {
    // SAFETY: waitpid only writes the local `status`. kill is sent only after a WNOHANG waitpid returned 0, i.e. while
    // `pid` is still our unreaped child, so it cannot reach a process that reused the PID.
    unsafe {
        let mut status = 0;
        // Already exited (or already reaped)?
        let r = libc::waitpid(pid, &mut status, libc::WNOHANG);
        if r == pid {
            unregister_pid(pid);
            return Some(status);
        }
        if r < 0 {
            // ECHILD: reaped elsewhere; the PID may be reused by now, so never signal it.
            unregister_pid(pid);
            return None;
        }
        libc::kill(pid, libc::SIGTERM);
        let end = Instant::now() + grace;
        loop {
            let r = libc::waitpid(pid, &mut status, libc::WNOHANG);
            if r == pid || r < 0 {
                unregister_pid(pid);
                return if r == pid { Some(status) } else { None };
            }
            if Instant::now() >= end {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("xmacvlan bench: pid {pid} ignored SIGTERM for {grace:?}, sending SIGKILL");
        libc::kill(pid, libc::SIGKILL);
        let r = libc::waitpid(pid, &mut status, 0);
        unregister_pid(pid);
        if r == pid {
            Some(status)
        } else {
            None
        }
    }
}

pub fn delete_netns(name: &str) {
    let _ = unblock_in_child(&mut Command::new("ip"))
        .args(["netns", "del", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    registry().netns.retain(|n| n != name);
}

/// Removes everything still registered. Idempotent; safe to call from the panic hook and the signal thread.
pub fn cleanup_all() {
    let (pids, netns, dirs) = {
        let mut r = registry();
        (std::mem::take(&mut r.pids), std::mem::take(&mut r.netns), std::mem::take(&mut r.dirs))
    };
    for pid in pids {
        stop_pid(pid, Duration::from_secs(5));
    }
    // Children first (c1, dp) then gen; deleting a namespace deletes the interfaces in it.
    for ns in netns.iter().rev() {
        delete_netns(ns);
    }
    for d in dirs {
        let _ = fs::remove_dir_all(&d);
    }
}

fn termination_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data (all-zero is a valid value, then emptied by sigemptyset); sigemptyset and
    // sigaddset get a pointer to that local set and valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Children inherit the blocked signal mask through fork/exec (std does not reset it): unblock the
/// termination signals in the child before exec, or the daemon would ignore our SIGTERM.
pub fn unblock_in_child(cmd: &mut Command) -> &mut Command {
    let set = termination_signals();
    // SAFETY: the pre_exec closure runs in the forked child before exec, where only async-signal-safe calls are
    // allowed: it makes one pthread_sigmask call (async-signal-safe) on its own copy of `set`, with a null old-mask
    // pointer, and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            // pthread_sigmask is async-signal-safe.
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        })
    }
}

/// Blocks the termination signals in this (the main) thread before any other thread is spawned, so that
/// every thread inherits the mask, and starts the thread that handles them. Children get them unblocked
/// again (unblock_in_child).
pub fn install_signal_handling() -> Result<()> {
    // SAFETY: pthread_sigmask gets a pointer to the live local `set` and a null old-mask pointer (allowed); in the
    // signal thread, sigwait gets its own copy of the set and the local `sig` to write, both alive for the call.
    unsafe {
        let set = termination_signals();
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(r));
        }
        let set_copy = set;
        thread::Builder::new().name("signals".into()).spawn(move || {
            let set = set_copy;
            let mut count = 0;
            loop {
                let mut sig = 0;
                if libc::sigwait(&set, &mut sig) != 0 {
                    continue;
                }
                count += 1;
                if count == 1 {
                    eprintln!("\nxmacvlan bench: got signal {sig}, stopping and cleaning up (again to force)");
                    INTERRUPTED.store(true, Ordering::SeqCst);
                } else {
                    eprintln!("xmacvlan bench: got signal {sig} again, cleaning up now");
                    cleanup_all();
                    std::process::exit(130);
                }
            }
        })?;
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("xmacvlan bench: panic, cleaning up the lab");
        cleanup_all();
    }));
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Command helpers

pub struct Output {
    pub stdout: String,
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion with a timeout; fails (with its stderr) on a non-zero exit.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let mut child = unblock_in_child(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    let pid = child.id() as i32;
    register_pid(pid);
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let end = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                unregister_pid(pid);
                break st;
            }
            Ok(None) => {}
            Err(e) => {
                unregister_pid(pid);
                return Err(anyhow!("waiting for `{what}`: {e}"));
            }
        }
        if Instant::now() >= end || interrupted() {
            stop_pid(pid, Duration::from_secs(2));
            let why = if interrupted() { "interrupted" } else { "timed out" };
            bail!("`{what}` {why}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    if !status.success() {
        bail!("`{what}` failed ({status}): {}", stderr.trim());
    }
    Ok(Output { stdout })
}

const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> Result<String> {
    Ok(run_cmd(Command::new("ip").args(args), CMD_TIMEOUT)?.stdout)
}

/// `ip netns exec NS ARGS...`
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String> {
    Ok(run_cmd(Command::new("ip").args(["netns", "exec", ns]).args(args), CMD_TIMEOUT)?.stdout)
}

// ---------------------------------------------------------------------------------------------------
// The lab

pub const GEN_IF: &str = "gen0";
pub const PARENT_IF: &str = "eth1";
/// The container interface's name in every container namespace.
pub const CONTAINER_IF: &str = "eth0";
pub const GEN_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0xfe];
pub const GEN_IP: [u8; 4] = [198, 18, 15, 254];
pub const SUBNET: &str = "198.18.0.0/20";
pub const PREFIX_LEN: u8 = 20;
pub const NETWORK_NAME: &str = "benchnet";
/// Endpoints the lab's addressing has room for (198.18.0.16 ..= 198.18.15.253).
pub const MAX_ENDPOINTS: usize = 4000;

/// Container `i`'s MAC: 02:42:c6:12 followed by `i` in two bytes. The generator counts through
/// these in the last two bytes to spread frames across endpoints.
pub fn endpoint_mac(i: usize) -> [u8; 6] {
    [0x02, 0x42, 0xc6, 0x12, (i >> 8) as u8, (i & 0xff) as u8]
}

/// Container `i`'s address: 198.18.0.16 + i.
pub fn endpoint_ip(i: usize) -> [u8; 4] {
    (u32::from_be_bytes([198, 18, 0, 16]) + i as u32).to_be_bytes()
}

pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
pub fn ip_str(a: &[u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Kernel macvlan children (bridge mode).
    Kernel,
    /// xmacvlan as a daemon started without tuning flags runs it: known unicast from the wire
    /// through the tc fast path (bpf_redirect_peer), everything else through AF_XDP and a worker.
    Xmacvlan,
    /// xmacvlan with `daemon --fast-path xdp`: known unicast from the wire redirected in XDP.
    #[value(name = "xmacvlan-xdp")]
    #[serde(rename = "xmacvlan-xdp")]
    XmacvlanXdp,
    /// xmacvlan with `daemon --fast-path off`: every frame through AF_XDP and a worker.
    #[value(name = "xmacvlan-afxdp")]
    #[serde(rename = "xmacvlan-afxdp")]
    XmacvlanAfxdp,
    /// Not a product: the floor of any tc datapath on veth endpoints (bpf/floor.bpf.c) — veth
    /// endpoints set up as xmacvlan's, and tc programs that do nothing but find the destination
    /// container and redirect (no counters, modes, floods, state or MTU checks). What xmacvlan
    /// pays above it is its own work; what this pays above kernel macvlan is the veth design's.
    #[value(name = "tc-floor")]
    #[serde(rename = "tc-floor")]
    TcFloor,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Xmacvlan => "xmacvlan",
            Backend::XmacvlanXdp => "xmacvlan-xdp",
            Backend::XmacvlanAfxdp => "xmacvlan-afxdp",
            Backend::TcFloor => "tc-floor",
        }
    }

    /// The daemon's `--fast-path` for this backend (None: no daemon).
    pub fn fast_path(self) -> Option<&'static str> {
        match self {
            Backend::Kernel | Backend::TcFloor => None,
            Backend::Xmacvlan => Some("tc"),
            Backend::XmacvlanXdp => Some("xdp"),
            Backend::XmacvlanAfxdp => Some("off"),
        }
    }

    /// Column prefix in tables.
    pub fn short(self) -> &'static str {
        match self {
            Backend::Kernel => "k",
            Backend::Xmacvlan => "x",
            Backend::XmacvlanXdp => "xdp",
            Backend::XmacvlanAfxdp => "afxdp",
            Backend::TcFloor => "floor",
        }
    }

    /// Run by an xmacvlan daemon.
    pub fn is_xmacvlan(self) -> bool {
        self.fast_path().is_some()
    }

    /// Gets a ratio column against kernel macvlan.
    pub fn vs_kernel(self) -> bool {
        self != Backend::Kernel
    }
}

pub const NS_PREFIX: &str = "xmvb-";

/// Deletes namespaces `xmvb-<pid>-*` left behind by a bench run whose process no longer exists.
pub fn remove_stale_namespaces() {
    let Ok(rd) = fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("xmacvlan bench: removing stale namespace {name} (pid {pid} is gone)");
        delete_netns(&name);
    }
}

/// Writes a sysctl of the namespace at `ns_path` (from a thread inside it).
fn ns_sysctl(ns_path: &Path, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    crate::napi::in_netns(ns_path, || fs::write(&path, value).with_context(|| format!("writing {path}")))
}

/// One container: its namespace and a netlink socket inside it.
pub struct Container {
    pub ns: String,
    pub sock: NsSock,
}

/// gen —veth— dp/eth1 (the parent) and containers c0, c1, … whose interfaces are either kernel
/// macvlan children of eth1 or xmacvlan endpoints on it.
pub struct Lab {
    pub gen: String,
    pub dp: String,
    pub gen_sock: NsSock,
    pub dp_sock: NsSock,
    pub containers: Vec<Container>,
    /// The backend set up now, and how many containers it serves.
    pub active: Option<Backend>,
    pub present: usize,
    pub tmp: PathBuf,
    pid: u32,
    daemon: Option<Child>,
    bin: Option<PathBuf>,
    xmv_cpus: String,
    daemon_args: Vec<String>,
    sink: Option<std::os::fd::OwnedFd>,
    /// The tc-floor backend's programs while it is set up.
    floor: Option<crate::floor::Floor>,
    pub daemon_log: PathBuf,
}

impl Lab {
    pub fn create(
        daemon_log: Option<PathBuf>,
        bin: Option<PathBuf>,
        xmv_cpus: String,
        daemon_args: Vec<String>,
    ) -> Result<Lab> {
        let pid = std::process::id();
        let tmp = std::env::temp_dir().join(format!("xmvb-{pid}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).ok();
        }
        fs::create_dir_all(&tmp).with_context(|| format!("mkdir {}", tmp.display()))?;
        register_dir(&tmp);
        let gen = format!("{NS_PREFIX}{pid}-gen");
        let dp = format!("{NS_PREFIX}{pid}-dp");
        for ns in [&gen, &dp] {
            ip(&["netns", "add", ns])?;
            register_netns(ns);
        }
        let mut lab = Lab {
            gen_sock: NsSock::open(&ns_path(&gen))?,
            dp_sock: NsSock::open(&ns_path(&dp))?,
            gen,
            dp,
            containers: Vec::new(),
            active: None,
            present: 0,
            daemon_log: daemon_log.unwrap_or_else(|| tmp.join("daemon.log")),
            tmp,
            pid,
            daemon: None,
            bin,
            xmv_cpus,
            daemon_args,
            sink: None,
            floor: None,
        };
        lab.build_wire()?;
        Ok(lab)
    }

    fn build_wire(&mut self) -> Result<()> {
        let (gen, dp) = (self.gen.clone(), self.dp.clone());
        for ns in [&gen, &dp] {
            // No IPv6: router solicitations and MLD reports would be extra frames in the counts.
            ns_sysctl(&ns_path(ns), "net.ipv6.conf.all.disable_ipv6", "1")?;
            ns_sysctl(&ns_path(ns), "net.ipv6.conf.default.disable_ipv6", "1")?;
        }
        // The veth pair is created inside the gen namespace and its peer is born in dp: nothing touches
        // the host's namespace.
        ip(&[
            "-n",
            &gen,
            "link",
            "add",
            GEN_IF,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
            "type",
            "veth",
            "peer",
            "name",
            PARENT_IF,
            "netns",
            &dp,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
        ])?;
        for ns in [&gen, &dp] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &gen, "link", "set", GEN_IF, "address", &mac_str(&GEN_MAC), "mtu", "1500", "up"])?;
        ip(&["-n", &gen, "addr", "add", &format!("{}/{PREFIX_LEN}", ip_str(&GEN_IP)), "dev", GEN_IF])?;
        ip(&["-n", &dp, "link", "set", PARENT_IF, "mtu", "1500", "up"])?;
        // The wire host sends finished frames, as a host behind a real NIC does: with checksum offload
        // a veth passes TCP/UDP checksums as "to be done" (and 64 KB TSO frames) in skb metadata, which
        // kernel macvlan carries along but an XDP/AF_XDP datapath, seeing only bytes, cannot.
        in_ns(&gen, &["ethtool", "-K", GEN_IF, "tx", "off"])?;
        // NAPI on the parent so that it accepts the frames XDP_TX'd by the generator veth.
        in_ns(&dp, &["ethtool", "-K", PARENT_IF, "gro", "on"])?;
        // sysfs shows a namespace's devices only when mounted from it: `ip netns exec` does that.
        in_ns(&dp, &["sh", "-c", &format!("echo 1 > /sys/class/net/{PARENT_IF}/threaded")])?;
        Ok(())
    }

    /// Creates container namespaces up to `n`.
    fn ensure_containers(&mut self, n: usize) -> Result<()> {
        while self.containers.len() < n {
            let ns = format!("{NS_PREFIX}{}-c{}", self.pid, self.containers.len());
            ip(&["netns", "add", &ns])?;
            register_netns(&ns);
            ns_sysctl(&ns_path(&ns), "net.ipv6.conf.all.disable_ipv6", "1")?;
            ns_sysctl(&ns_path(&ns), "net.ipv6.conf.default.disable_ipv6", "1")?;
            let sock = NsSock::open(&ns_path(&ns))?;
            self.containers.push(Container { ns, sock });
        }
        Ok(())
    }

    pub fn ifindex(&self, ns: &str, dev: &str) -> Result<u32> {
        let out = ip(&["-n", ns, "-j", "link", "show", "dev", dev])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -j link` output")?;
        v.get(0)
            .and_then(|l| l.get("ifindex"))
            .and_then(|i| i.as_u64())
            .map(|i| i as u32)
            .ok_or_else(|| anyhow!("no ifindex for {dev} in {ns}"))
    }

    /// The interface of container `i`.
    pub fn container_link(&self, i: usize) -> Result<Link> {
        let c = &self.containers[i];
        let links = c.sock.links()?;
        links.into_iter().next().ok_or_else(|| anyhow!("container namespace {} has no interface", c.ns))
    }

    /// Σ rx_packets of the interfaces of containers `range`, and when it was read (the middle of the
    /// reads).
    pub fn rx_sum(&self, range: std::ops::Range<usize>) -> Result<(Instant, u64)> {
        let t0 = Instant::now();
        let mut sum = 0u64;
        for c in &self.containers[range] {
            sum += c.sock.links()?.iter().map(|l| l.rx_packets).sum::<u64>();
        }
        let t1 = Instant::now();
        Ok((t0 + (t1 - t0) / 2, sum))
    }

    /// rx_packets of the generator's interface (frames that reached the wire host).
    pub fn gen_rx(&self) -> Result<(Instant, u64)> {
        let t0 = Instant::now();
        let v = self.gen_sock.links()?.iter().find(|l| l.name == GEN_IF).map(|l| l.rx_packets).unwrap_or(0);
        let t1 = Instant::now();
        Ok((t0 + (t1 - t0) / 2, v))
    }

    /// Brings the lab back to "wire only": no container interface, no XDP on the parent, no daemon.
    pub fn reset(&mut self) -> Result<()> {
        self.sink = None;
        self.floor = None;
        self.stop_daemon();
        for c in &self.containers {
            for l in c.sock.links()? {
                c.sock.del_link(l.ifindex)?;
            }
        }
        // Only our own parent, in our own namespace.
        ip(&["-n", &self.dp, "link", "set", "dev", PARENT_IF, "xdp", "off"]).ok();
        self.active = None;
        self.present = 0;
        Ok(())
    }

    /// Sets `backend` up from scratch with `n` containers.
    pub fn setup(&mut self, backend: Backend, n: usize) -> Result<()> {
        self.reset()?;
        if backend.is_xmacvlan() {
            self.start_daemon(backend.fast_path().unwrap_or("tc"))?;
        }
        self.active = Some(backend);
        self.grow(n)
    }

    /// Adds containers on the active backend until `n` are served.
    pub fn grow(&mut self, n: usize) -> Result<()> {
        if n > MAX_ENDPOINTS {
            bail!("{n} endpoints: the lab's addressing has room for {MAX_ENDPOINTS}");
        }
        let backend = self.active.ok_or_else(|| anyhow!("no backend set up"))?;
        self.ensure_containers(n)?;
        let from = self.present;
        match backend {
            Backend::Kernel => {
                // One `ip -batch` creates every child directly in its container namespace.
                let mut batch = String::new();
                for i in from..n {
                    batch += &format!(
                        "link add link {PARENT_IF} name {CONTAINER_IF} address {} netns {} type macvlan mode bridge\n",
                        mac_str(&endpoint_mac(i)),
                        self.containers[i].ns
                    );
                }
                if !batch.is_empty() {
                    let f = self.tmp.join("kernel.batch");
                    fs::write(&f, batch)?;
                    run_cmd(Command::new("ip").args(["-n", &self.dp, "-batch"]).arg(&f), Duration::from_secs(120))?;
                }
                for i in from..n {
                    let ns = self.containers[i].ns.clone();
                    let f = self.tmp.join("c.batch");
                    fs::write(
                        &f,
                        format!(
                            "addr add {}/{PREFIX_LEN} dev {CONTAINER_IF}\nlink set {CONTAINER_IF} up\n",
                            ip_str(&endpoint_ip(i))
                        ),
                    )?;
                    run_cmd(Command::new("ip").args(["-n", &ns, "-batch"]).arg(&f), CMD_TIMEOUT)?;
                }
            }
            Backend::TcFloor => self.grow_floor(from, n)?,
            Backend::Xmacvlan | Backend::XmacvlanXdp | Backend::XmacvlanAfxdp => {
                for i in from..n {
                    let path = ns_path(&self.containers[i].ns).to_string_lossy().into_owned();
                    self.client(&[
                        "network",
                        "connect",
                        "--ip",
                        &ip_str(&endpoint_ip(i)),
                        "--mac-address",
                        &mac_str(&endpoint_mac(i)),
                        NETWORK_NAME,
                        &path,
                    ])?;
                    check_interrupted()?;
                }
            }
        }
        self.present = n;
        self.wait_up(from..n)?;
        // Static neighbours between the wire host and the first two containers (the latency and
        // TCP peers): no ARP exchange in any measurement.
        for i in from..n.min(2) {
            let (ip_i, mac_i) = (ip_str(&endpoint_ip(i)), mac_str(&endpoint_mac(i)));
            ip(&["-n", &self.gen, "neigh", "replace", &ip_i, "lladdr", &mac_i, "dev", GEN_IF, "nud", "permanent"])?;
            let ns = &self.containers[i].ns;
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &ip_str(&GEN_IP),
                "lladdr",
                &mac_str(&GEN_MAC),
                "dev",
                CONTAINER_IF,
                "nud",
                "permanent",
            ])?;
            for j in (0..n.min(2)).filter(|&j| j != i) {
                let (ip_j, mac_j) = (ip_str(&endpoint_ip(j)), mac_str(&endpoint_mac(j)));
                ip(&["-n", ns, "neigh", "replace", &ip_j, "lladdr", &mac_j, "dev", CONTAINER_IF, "nud", "permanent"])?;
                let nsj = &self.containers[j].ns;
                ip(&["-n", nsj, "neigh", "replace", &ip_i, "lladdr", &mac_i, "dev", CONTAINER_IF, "nud", "permanent"])?;
            }
        }
        Ok(())
    }

    /// The tc-floor backend's containers `from..n`: veth pairs set up as the daemon sets up a tc-fed
    /// endpoint's (the lab-side end `fl<i>` without TSO, GRO on the container's end), programs on.
    fn grow_floor(&mut self, from: usize, n: usize) -> Result<()> {
        let dp_path = ns_path(&self.dp);
        if self.floor.is_none() {
            let parent = self.ifindex(&self.dp, PARENT_IF)?;
            self.floor = Some(crate::floor::Floor::new(&dp_path, parent)?);
        }
        for i in from..n {
            let host = format!("fl{i}");
            let (ns, mac) = (self.containers[i].ns.clone(), endpoint_mac(i));
            ip(&[
                "-n",
                &self.dp,
                "link",
                "add",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                CONTAINER_IF,
                "netns",
                &ns,
                "address",
                &mac_str(&mac),
            ])?;
            in_ns(&self.dp, &["ethtool", "-K", &host, "tso", "off"])?;
            in_ns(&ns, &["ethtool", "-K", CONTAINER_IF, "gro", "on"])?;
            let ifindex = self.ifindex(&self.dp, &host)?;
            self.floor.as_mut().expect("set above").add(&dp_path, mac, ifindex)?;
            ip(&["-n", &self.dp, "link", "set", &host, "up"])?;
            let f = self.tmp.join("c.batch");
            fs::write(
                &f,
                format!(
                    "addr add {}/{PREFIX_LEN} dev {CONTAINER_IF}\nlink set {CONTAINER_IF} up\nlink set lo up\n",
                    ip_str(&endpoint_ip(i))
                ),
            )?;
            run_cmd(Command::new("ip").args(["-n", &ns, "-batch"]).arg(&f), CMD_TIMEOUT)?;
            check_interrupted()?;
        }
        Ok(())
    }

    /// Waits until the interfaces of containers `range` are up with their MACs.
    fn wait_up(&self, range: std::ops::Range<usize>) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(20);
        for i in range {
            loop {
                check_interrupted()?;
                let l = self.container_link(i).ok();
                if l.as_ref().is_some_and(|l| l.up) {
                    break;
                }
                if Instant::now() >= end {
                    bail!("container {} has no interface up ({l:?})", self.containers[i].ns);
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn client(&self, args: &[&str]) -> Result<String> {
        let bin = self.bin.as_ref().ok_or_else(|| anyhow!("no xmacvlan binary"))?;
        let sock = self.tmp.join("x.sock");
        let mut c = Command::new(bin);
        c.arg("--socket").arg(&sock).args(args);
        run_cmd(&mut c, Duration::from_secs(60))
            .map(|o| o.stdout)
            .map_err(|e| anyhow!("{e}\ndaemon log tail:\n{}", self.daemon_log_tail(40)))
    }

    /// The xmacvlan daemon's counters, flattened: `delivered` (Σ of the endpoints' tx, the datapath's
    /// own count to cross-check the container interfaces'), `delivered.wire` (the parent's tx, the
    /// same for frames to the wire), the parent socket's kernel-side drops,
    /// drop reasons summed over ports, and the workers' loop counters. None for the kernel backend.
    pub fn datapath_counters(&self) -> Result<Option<BTreeMap<String, u64>>> {
        if self.daemon.is_none() {
            return Ok(None);
        }
        let v: serde_json::Value = serde_json::from_str(&self.client(&["stats", "--format", "json"])?)
            .context("parsing `stats --format json`")?;
        let mut m = BTreeMap::new();
        let mut add = |k: String, v: &serde_json::Value| *m.entry(k).or_insert(0) += v.as_u64().unwrap_or(0);
        for w in v["workers"].as_array().into_iter().flatten() {
            for k in ["rx_frames", "tx_frames", "dropped", "tx_kicks", "idle_sleeps", "busy_loops", "flood_copies"] {
                add(format!("worker.{k}"), &w[k]);
            }
        }
        for n in v["networks"].as_array().into_iter().flatten() {
            for p in n["ports"].as_array().into_iter().flatten() {
                let kind = p["kind"].as_str().unwrap_or("");
                if kind == "endpoint" {
                    add("delivered".into(), &p["tx"]);
                }
                if kind == "parent" {
                    add("delivered.wire".into(), &p["tx"]);
                    for (k, c) in p["kernel"].as_object().into_iter().flatten() {
                        add(format!("parent.{k}"), c);
                    }
                }
                for (k, c) in p["drops"].as_object().into_iter().flatten() {
                    add(format!("drops.{k}"), c);
                }
            }
        }
        Ok(Some(m))
    }

    fn start_daemon(&mut self, fast_path: &str) -> Result<()> {
        let bin = self.bin.clone().ok_or_else(|| anyhow!("no xmacvlan binary"))?;
        let sock = self.tmp.join("x.sock");
        let state = self.tmp.join("st");
        let _ = fs::remove_file(&sock);
        let _ = fs::remove_dir_all(&state);
        fs::create_dir_all(&state)?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.daemon_log)
            .with_context(|| format!("opening the daemon log {}", self.daemon_log.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.dp])
            .arg(&bin)
            .arg("daemon")
            .arg("--socket")
            .arg(&sock)
            .arg("--state-dir")
            .arg(&state)
            .args(["--cpus", &self.xmv_cpus])
            .args(&self.daemon_args)
            .args(["--fast-path", fast_path])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a terminal Ctrl-C reaches only us; we stop the daemon ourselves.
            .process_group(0);
        let child = unblock_in_child(&mut cmd).spawn().with_context(|| format!("starting {}", bin.display()))?;
        register_pid(child.id() as i32);
        self.daemon = Some(child);

        // Wait until the control socket accepts.
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            check_interrupted()?;
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait()? {
                let pid = self.daemon.take().unwrap().id() as i32;
                unregister_pid(pid);
                bail!("the xmacvlan daemon exited early ({st}); log tail:\n{}", self.daemon_log_tail(40));
            }
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                break;
            }
            if Instant::now() >= end {
                bail!(
                    "the xmacvlan daemon did not accept on {} within 30 s; log tail:\n{}",
                    sock.display(),
                    self.daemon_log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.client(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            SUBNET,
            "--aux-address",
            &format!("wirehost={}", ip_str(&GEN_IP)),
            "-o",
            &format!("parent={PARENT_IF}"),
            NETWORK_NAME,
        ])?;
        Ok(())
    }

    /// Opens, inside container 0, a UDP socket on the generated frames' port, connected to their source
    /// (so early demux finds it) and with the smallest receive buffer: the queue is full at once and every
    /// further datagram is dropped by the socket layer (UdpRcvbufErrors), an application that never reads.
    pub fn open_udp_sink(&mut self) -> Result<()> {
        let path = ns_path(&self.containers[0].ns);
        let fd = crate::napi::in_netns(&path, || {
            let s = std::net::UdpSocket::bind(("0.0.0.0", crate::gen::UDP_DST_PORT)).context("binding the UDP sink")?;
            let one: libc::c_int = 1;
            // SAFETY: `s` is the bound UDP socket we own for the whole call; the option value points at the local c_int
            // `one` and its size is passed.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &one as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                );
            }
            s.connect((std::net::Ipv4Addr::from(GEN_IP), crate::gen::UDP_SRC_PORT))
                .context("connecting the UDP sink")?;
            Ok(std::os::fd::OwnedFd::from(s))
        })?;
        self.sink = Some(fd);
        Ok(())
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|c| c.id() as i32)
    }

    pub fn daemon_log_tail(&self, lines: usize) -> String {
        let s = fs::read_to_string(&self.daemon_log).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    pub fn stop_daemon(&mut self) {
        if let Some(child) = self.daemon.take() {
            let pid = child.id() as i32;
            match stop_pid(pid, Duration::from_secs(10)) {
                Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
                Some(st) if libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGTERM => {}
                Some(st) => eprintln!(
                    "xmacvlan bench: the xmacvlan daemon (pid {pid}) ended with wait status {st:#x}; log tail:\n{}",
                    self.daemon_log_tail(20)
                ),
                None => {}
            }
        }
    }
}

pub fn ns_path(ns: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/netns/{ns}"))
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.sink = None;
        self.stop_daemon();
        for c in self.containers.iter().rev() {
            delete_netns(&c.ns);
        }
        for ns in [&self.dp, &self.gen] {
            delete_netns(ns);
        }
        let _ = fs::remove_dir_all(&self.tmp);
        registry().dirs.retain(|d| d != &self.tmp);
    }
}
