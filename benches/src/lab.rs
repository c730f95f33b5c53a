//! The namespace lab (gen —veth— dp/eth1 (parent) ; c1 = container), command helpers, and the cleanup
//! registry that guarantees the namespaces and the daemon are removed on every exit path: normal return,
//! error, panic (the workspace builds with panic = "abort", so a panic hook runs the cleanup), and
//! SIGINT/SIGTERM/SIGHUP (a dedicated signal thread; the first signal asks the run to stop and unwind,
//! a second one cleans up at once and exits).

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
        eprintln!("xmacvlan-bench: pid {pid} ignored SIGTERM for {grace:?}, sending SIGKILL");
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
                    eprintln!("\nxmacvlan-bench: got signal {sig}, stopping and cleaning up (again to force)");
                    INTERRUPTED.store(true, Ordering::SeqCst);
                } else {
                    eprintln!("xmacvlan-bench: got signal {sig} again, cleaning up now");
                    cleanup_all();
                    std::process::exit(130);
                }
            }
        })?;
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("xmacvlan-bench: panic, cleaning up the lab");
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
pub const CONTAINER_IF: &str = "eth0";
pub const CONTAINER_MAC: [u8; 6] = [0x02, 0x42, 0xc6, 0x12, 0x00, 0x0b];
pub const GEN_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0xfe];
pub const CONTAINER_IP: [u8; 4] = [198, 18, 0, 11];
pub const GEN_IP: [u8; 4] = [198, 18, 0, 254];
pub const SUBNET: &str = "198.18.0.0/24";
pub const NETWORK_NAME: &str = "benchnet";

pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
pub fn ip_str(a: &[u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
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
        eprintln!("xmacvlan-bench: removing stale namespace {name} (pid {pid} is gone)");
        delete_netns(&name);
    }
}

pub struct Lab {
    pub gen: String,
    pub dp: String,
    pub c1: String,
    pub tmp: PathBuf,
    /// Daemon currently running (pid), if any.
    daemon: Option<Child>,
    /// The container's UDP sink socket (--sink socket), if open.
    sink: Option<std::os::fd::OwnedFd>,
    pub daemon_log: PathBuf,
}

impl Lab {
    pub fn create(daemon_log: Option<PathBuf>) -> Result<Lab> {
        let pid = std::process::id();
        let tmp = std::env::temp_dir().join(format!("xmvb-{pid}"));
        let mut lab = Lab {
            gen: format!("{NS_PREFIX}{pid}-gen"),
            dp: format!("{NS_PREFIX}{pid}-dp"),
            c1: format!("{NS_PREFIX}{pid}-c1"),
            daemon_log: daemon_log.unwrap_or_else(|| tmp.join("daemon.log")),
            tmp,
            daemon: None,
            sink: None,
        };
        if lab.tmp.exists() {
            fs::remove_dir_all(&lab.tmp).ok();
        }
        fs::create_dir_all(&lab.tmp).with_context(|| format!("mkdir {}", lab.tmp.display()))?;
        register_dir(&lab.tmp);
        for ns in [lab.gen.clone(), lab.dp.clone(), lab.c1.clone()] {
            ip(&["netns", "add", &ns])?;
            register_netns(&ns);
        }
        lab.build_wire()?;
        Ok(lab)
    }

    fn build_wire(&mut self) -> Result<()> {
        let (gen, dp, c1) = (self.gen.clone(), self.dp.clone(), self.c1.clone());
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
        for ns in [&gen, &dp, &c1] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &gen, "link", "set", GEN_IF, "address", &mac_str(&GEN_MAC), "mtu", "1500", "up"])?;
        ip(&["-n", &dp, "link", "set", PARENT_IF, "mtu", "1500", "up"])?;
        // NAPI on the parent so that it accepts the frames XDP_TX'd by the generator veth.
        in_ns(&dp, &["ethtool", "-K", PARENT_IF, "gro", "on"])?;
        in_ns(&dp, &["sh", "-c", &format!("echo 1 > /sys/class/net/{PARENT_IF}/threaded")])?;
        Ok(())
    }

    pub fn ns_path(&self, ns: &str) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{ns}"))
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

    /// Non-loopback interfaces in the container namespace.
    pub fn container_links(&self) -> Result<Vec<String>> {
        let out = ip(&["-n", &self.c1, "-j", "link", "show"])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -j link` output")?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.get("ifname").and_then(|n| n.as_str()).map(str::to_string))
                    .filter(|n| n != "lo")
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Brings the lab back to "wire only": no container interface, no XDP program on the parent, no daemon.
    pub fn reset(&mut self) -> Result<()> {
        self.sink = None;
        self.stop_daemon();
        for l in self.container_links()? {
            ip(&["-n", &self.c1, "link", "del", "dev", &l]).ok();
        }
        // Only our own parent, in our own namespace.
        ip(&["-n", &self.dp, "link", "set", "dev", PARENT_IF, "xdp", "off"]).ok();
        Ok(())
    }

    /// Kernel backend: a macvlan bridge-mode child of eth1, moved into c1 as eth0.
    pub fn setup_kernel(&mut self) -> Result<String> {
        self.reset()?;
        let (dp, c1) = (self.dp.clone(), self.c1.clone());
        ip(&["-n", &dp, "link", "add", "link", PARENT_IF, "name", "mv0", "type", "macvlan", "mode", "bridge"])?;
        ip(&["-n", &dp, "link", "set", "dev", "mv0", "netns", &c1])?;
        ip(&["-n", &c1, "link", "set", "dev", "mv0", "name", CONTAINER_IF])?;
        ip(&["-n", &c1, "link", "set", "dev", CONTAINER_IF, "address", &mac_str(&CONTAINER_MAC)])?;
        ip(&["-n", &c1, "addr", "add", &format!("{}/24", ip_str(&CONTAINER_IP)), "dev", CONTAINER_IF])?;
        ip(&["-n", &c1, "link", "set", "dev", CONTAINER_IF, "up"])?;
        Ok(CONTAINER_IF.to_string())
    }

    /// xmacvlan backend: start the daemon in dp, create the network, connect c1. Returns the container
    /// interface name.
    pub fn setup_xmacvlan(&mut self, bin: &Path, cpus: &str) -> Result<String> {
        self.reset()?;
        let sock = self.tmp.join("x.sock");
        let state = self.tmp.join("st");
        let _ = fs::remove_file(&sock);
        let _ = fs::remove_dir_all(&state);
        fs::create_dir_all(&state)?;
        let log = fs::File::create(&self.daemon_log)
            .with_context(|| format!("creating the daemon log {}", self.daemon_log.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.dp])
            .arg(bin)
            .arg("daemon")
            .arg("--socket")
            .arg(&sock)
            .arg("--state-dir")
            .arg(&state)
            .args(["--cpus", cpus])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a terminal Ctrl-C reaches only us; we stop the daemon ourselves.
            .process_group(0);
        eprintln!("xmacvlan-bench: starting `{}` (log {})", describe(&cmd), self.daemon_log.display());
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

        let sock_s = sock.to_string_lossy().into_owned();
        let client = |args: &[&str]| -> Result<String> {
            let mut c = Command::new(bin);
            c.args(["--socket", &sock_s]).args(args);
            run_cmd(&mut c, Duration::from_secs(60)).map(|o| o.stdout)
        };
        client(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            SUBNET,
            "-o",
            &format!("parent={PARENT_IF}"),
            NETWORK_NAME,
        ])
        .map_err(|e| anyhow!("{e}\ndaemon log tail:\n{}", self.daemon_log_tail(40)))?;
        let c1_path = self.ns_path(&self.c1).to_string_lossy().into_owned();
        client(&[
            "network",
            "connect",
            "--ip",
            &ip_str(&CONTAINER_IP),
            "--mac-address",
            &mac_str(&CONTAINER_MAC),
            NETWORK_NAME,
            &c1_path,
        ])
        .map_err(|e| anyhow!("{e}\ndaemon log tail:\n{}", self.daemon_log_tail(40)))?;

        // The endpoint: eth0 if present, else the only non-lo interface. Wait until it is up.
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            check_interrupted()?;
            let links = self.container_links()?;
            let name = if links.iter().any(|l| l == CONTAINER_IF) {
                Some(CONTAINER_IF.to_string())
            } else if links.len() == 1 {
                Some(links[0].clone())
            } else {
                None
            };
            if let Some(name) = name {
                let out = ip(&["-n", &self.c1, "-j", "link", "show", "dev", &name])?;
                let v: serde_json::Value = serde_json::from_str(&out)?;
                let up = v[0]["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"));
                let mac = v[0]["address"].as_str().unwrap_or("").to_string();
                if up {
                    if mac != mac_str(&CONTAINER_MAC) {
                        eprintln!(
                            "xmacvlan-bench: warning: container interface {name} has MAC {mac}, expected {}",
                            mac_str(&CONTAINER_MAC)
                        );
                    }
                    return Ok(name);
                }
            }
            if Instant::now() >= end {
                bail!("no container interface came up in {} after `network connect` (links: {links:?})", self.c1);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens, inside the container, a UDP socket on the generated frames' port, connected to their source
    /// (so early demux finds it) and with the smallest receive buffer: the queue is full at once and every
    /// further datagram is dropped by the socket layer (UdpRcvbufErrors), an application that never reads.
    pub fn open_udp_sink(&mut self) -> Result<()> {
        let path = self.ns_path(&self.c1);
        let fd = crate::napi::in_netns(&path, || {
            let s = std::net::UdpSocket::bind(("0.0.0.0", crate::gen::UDP_DST_PORT)).context("binding the UDP sink")?;
            let one: libc::c_int = 1;
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
                    "xmacvlan-bench: the xmacvlan daemon (pid {pid}) ended with wait status {st:#x}; log tail:\n{}",
                    self.daemon_log_tail(20)
                ),
                None => {}
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.sink = None;
        self.stop_daemon();
        for ns in [&self.c1, &self.dp, &self.gen] {
            delete_netns(ns);
        }
        let _ = fs::remove_dir_all(&self.tmp);
        registry().dirs.retain(|d| d != &self.tmp);
    }
}
