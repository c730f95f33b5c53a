//! Podman on a CNI network inside a lab: real containers attached by a CNI plugin (the reference
//! `macvlan` from containernetworking-plugins, or ours) to the lab's parent `eth1`.
//!
//! Everything podman, conmon, runc and the plugins write stays in the lab's tmp dir, and nothing is
//! left on the host when [`Podman`] is dropped (also while unwinding from a failed assertion):
//!
//! - podman runs in the lab's `dp` network namespace (`nsenter --net`), so the plugin sees `eth1`.
//!   Not `ip netns exec`: it remounts `/sys` for the namespace, without `/sys/fs/cgroup`, and runc
//!   then fails with "no cgroup mount found in mountinfo";
//! - its own storage (`--root`, `--runroot`, vfs driver, `CONTAINERS_STORAGE_CONF`) and its own
//!   `containers.conf` (`CONTAINERS_CONF`: CNI backend, plugin dir, network config dir, tmp dir,
//!   file locks instead of `/dev/shm/libpod_lock`, file events);
//! - libcni caches every ADD result in `/var/lib/cni/results` and podman 4.3 cannot move that
//!   directory, so podman runs in a mount namespace of its own (kept by a holder process) where a
//!   lab dir is bind-mounted on `/var/lib`. `/run/netns` stays shared with the host there, so the
//!   network namespaces podman creates (`/run/netns/netns-…`) are visible to the host and to a
//!   daemon in `dp`; the mounts holding `/var/lib` and the lab dir are made slaves first, so
//!   nothing mounted in that namespace reaches the host;
//! - runc goes through a wrapper that gives it `--root` in the lab (its state would be in
//!   `/run/runc`);
//! - containers get a cgroup parent named after the lab (`/sys/fs/cgroup/*/<tag>`), removed on drop
//!   (podman leaves the conmon cgroup behind);
//! - every plugin in the plugin dir is a shim that logs its call (verb, the network namespace it
//!   runs in, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME) and execs the real binary: [`Podman::plugin_calls`];
//! - containers run from a busybox root filesystem (busybox-static) with `--rootfs`, runtime runc
//!   and explicit ulimits (crun refuses this machine's cgroup layout; the nofile hard limit is 20000).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

use super::Lab;

/// The CNI spec version of the conflists written here (podman 4.3's libcni and the reference
/// plugins 1.1 both speak it).
pub const CNI_VERSION: &str = "1.0.0";
/// The reference plugins (Debian's containernetworking-plugins).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
const BUSYBOX: &str = "/bin/busybox";

/// One container this guard started.
struct Started {
    id: String,
    name: String,
    /// The network namespace podman made for it (`/run/netns/netns-…`).
    netns: String,
    /// The container's init and its conmon, killed on drop if `podman rm` could not stop them.
    pids: Vec<(i32, &'static str)>,
}

/// One logged plugin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginCall {
    pub plugin: String,
    /// CNI_COMMAND: ADD, DEL, CHECK, VERSION, …
    pub command: String,
    /// The network namespace the plugin ran in, as `readlink /proc/self/ns/net` shows it.
    pub ran_in: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
}

/// Podman for one lab; removes its containers, their namespaces and cgroups, and its storage on drop.
pub struct Podman {
    pub dir: PathBuf,
    dp: String,
    cgroup_parent: String,
    holder: Option<Child>,
    started: Vec<Started>,
}

impl Podman {
    /// Podman with the reference plugins only.
    pub fn new(lab: &Lab) -> Self {
        Self::with_plugin(lab, None)
    }

    /// Podman with the reference plugins and `plugin` (its file name is the conflist "type").
    pub fn with_plugin(lab: &Lab, plugin: Option<&Path>) -> Self {
        let dir = lab.tmp.join("podman");
        // The guard exists before anything is set up, so that a failure half-way still cleans up.
        let mut p =
            Podman { dir, dp: lab.dp.name.clone(), cgroup_parent: lab.tag.clone(), holder: None, started: vec![] };
        for d in ["root", "runroot", "tmp", "net.d", "cni-bin", "ipam", "varlib", "runc", "bin"] {
            std::fs::create_dir_all(p.dir.join(d)).unwrap();
        }
        p.install_plugins(plugin);
        p.make_rootfs();
        p.write_configs();
        p.start_holder();
        p
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).to_string_lossy().into_owned()
    }

    /// host-local's `dataDir` for conflists: its reservations are files `<dataDir>/<network>/<ip>`.
    pub fn ipam_dir(&self) -> String {
        self.path("ipam")
    }

    /// What libcni cached (`/var/lib/cni/results` inside podman's mount namespace).
    pub fn cni_cache(&self) -> Vec<String> {
        list_dir(&self.dir.join("varlib/cni/results"))
    }

    /// A shim per plugin: log the call, then exec the real binary (stdin, the config, passes through).
    fn install_plugins(&self, extra: Option<&Path>) {
        let mut real: Vec<PathBuf> = std::fs::read_dir(REFERENCE_PLUGINS)
            .expect("containernetworking-plugins (/usr/lib/cni) is not installed")
            .map(|e| e.unwrap().path())
            .collect();
        if let Some(bin) = extra {
            assert!(bin.is_file(), "CNI plugin {} does not exist (not built?)", bin.display());
            real.push(bin.to_path_buf());
        }
        let log = self.path("plugin-calls.log");
        for bin in real {
            let name = bin.file_name().unwrap().to_string_lossy().into_owned();
            let shim = self.dir.join("cni-bin").join(&name);
            let script = format!(
                "#!/bin/sh\necho \"{name} $CNI_COMMAND $(readlink /proc/self/ns/net) $CNI_CONTAINERID $CNI_NETNS \
                 $CNI_IFNAME\" >> {log}\nexec {} \"$@\"\n",
                bin.display()
            );
            write_executable(&shim, &script);
        }
    }

    /// Every plugin call so far, in order (VERSION calls included: podman validates its conflists).
    pub fn plugin_calls(&self) -> Vec<PluginCall> {
        let text = std::fs::read_to_string(self.dir.join("plugin-calls.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let at = |i: usize| f.get(i).copied().unwrap_or("").to_string();
                PluginCall {
                    plugin: at(0),
                    command: at(1),
                    ran_in: at(2),
                    container_id: at(3),
                    netns: at(4),
                    ifname: at(5),
                }
            })
            .collect()
    }

    /// bin/busybox from busybox-static and a symlink per applet (`busybox --list-full`), plus the
    /// directories and files runc and podman mount over.
    fn make_rootfs(&self) {
        let root = self.dir.join("rootfs");
        for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "var"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("busybox-static (/bin/busybox) is not installed");
        let list = super::ok(&[BUSYBOX, "--list-full"]);
        for applet in list.lines().filter(|a| !a.is_empty() && *a != "bin/busybox") {
            let _ = symlink("/bin/busybox", root.join(applet));
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    }

    fn write_configs(&self) {
        let d = |rel: &str| self.path(rel);
        let conf = format!(
            r#"[containers]
default_sysctls = []

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{netd}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{tmp}/events.log"
tmp_dir = "{tmp}"
lock_type = "file"
static_dir = "{root}/libpod"
volume_path = "{root}/volumes"
runtime = "runc"

[engine.runtimes]
runc = ["{runc}"]
"#,
            plugins = d("cni-bin"),
            netd = d("net.d"),
            tmp = d("tmp"),
            root = d("root"),
            runc = d("bin/runc"),
        );
        std::fs::write(self.dir.join("containers.conf"), conf).unwrap();
        let storage =
            format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n", d("root"), d("runroot"));
        std::fs::write(self.dir.join("storage.conf"), storage).unwrap();
        let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("runc is not installed");
        write_executable(&self.dir.join("bin/runc"), &format!("#!/bin/sh\nexec {runc} --root {} \"$@\"\n", d("runc")));
    }

    /// The process that keeps podman's mount namespace: `/var/lib` is the lab's `varlib` there.
    /// It dies with the test thread (PR_SET_PDEATHSIG) if the test is killed before the drop.
    fn start_holder(&mut self) {
        let script = r#"set -e
mount --make-slave "$(findmnt -no TARGET -T /var/lib)"
mount --make-slave "$(findmnt -no TARGET -T "$2")"
mount --bind "$1" /var/lib
echo ready
exec sleep infinity"#;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "unchanged", "sh", "-c", script, "holder"])
            .arg(self.dir.join("varlib"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawning unshare");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("podman's mount namespace could not be set up: {err}");
        }
        self.holder = Some(child);
    }

    /// `podman …` in the lab's `dp` network namespace and podman's mount namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let holder = self.holder.as_ref().expect("podman's mount namespace is gone");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", holder.id()))
            .arg(format!("--net=/run/netns/{}", self.dp))
            .arg("podman")
            .args(["--root", &self.path("root"), "--runroot", &self.path("runroot"), "--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .stdin(Stdio::null());
        cmd
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap_or_else(|e| panic!("running podman {args:?}: {e}"))
    }

    /// A podman command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `<name>.conflist` with one plugin: `plugin` is its JSON object ("type", its keys, "ipam").
    pub fn write_conflist(&self, name: &str, plugin: Value) {
        let list = json!({ "cniVersion": CNI_VERSION, "name": name, "plugins": [plugin] });
        let path = self.dir.join("net.d").join(format!("{name}.conflist"));
        std::fs::write(path, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    }

    /// Starts container `name` (`sleep 3600`, detached) on `network`; returns its id. With NET_RAW for
    /// busybox's ping (Debian's default capability set drops it). Containers started otherwise
    /// than here need `--cgroup-parent /<lab tag>` too, or podman makes `/libpod_parent` on the host.
    pub fn run(&mut self, name: &str, network: &str) -> String {
        let cgroup_parent = format!("/{}", self.cgroup_parent);
        let rootfs = self.path("rootfs");
        let args = [
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--cgroup-parent",
            &cgroup_parent,
            "--cap-add",
            "NET_RAW",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            // A flag, not an option: the first argument is the rootfs, then the command.
            "--rootfs",
            &rootfs,
            "sleep",
            "3600",
        ];
        let id = self.ok(&args).trim().to_string();
        let v = self.inspect(&id);
        let pid = |key: &str| v["State"][key].as_i64().unwrap_or(0) as i32;
        self.started.push(Started {
            id: id.clone(),
            name: name.to_string(),
            netns: v["NetworkSettings"]["SandboxKey"].as_str().unwrap_or("").to_string(),
            pids: vec![(pid("Pid"), "sleep"), (pid("ConmonPid"), "conmon")],
        });
        id
    }

    /// `podman inspect` of one container.
    pub fn inspect(&self, container: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", container])).expect("podman inspect JSON");
        v[0].clone()
    }

    /// The container's IPv4 address on its (only) network, as podman got it from the plugin.
    pub fn ip_of(&self, container: &str) -> String {
        let v = self.inspect(container);
        let nets = v["NetworkSettings"]["Networks"].as_object().expect("NetworkSettings.Networks");
        assert_eq!(nets.len(), 1, "{container} is on one network: {nets:?}");
        let ip = nets.values().next().unwrap()["IPAddress"].as_str().unwrap_or("").to_string();
        assert!(!ip.is_empty(), "{container} got no IPv4 address: {nets:?}");
        ip
    }

    /// The network namespace podman made for a container this guard started.
    pub fn netns_of(&self, container: &str) -> String {
        self.find(container).map(|s| s.netns.clone()).unwrap_or_else(|| panic!("{container} not started here"))
    }

    fn find(&self, container: &str) -> Option<&Started> {
        self.started.iter().find(|s| s.id == container || s.name == container)
    }

    pub fn exec(&self, container: &str, args: &[&str]) -> Output {
        let mut full = vec!["exec", container];
        full.extend_from_slice(args);
        self.podman(&full)
    }

    /// `podman rm -f` (no grace period: `sleep` as PID 1 ignores SIGTERM), which must succeed.
    pub fn rm(&mut self, container: &str) {
        self.ok(&["rm", "-f", "-t", "0", container]);
        self.started.retain(|s| s.id != container && s.name != container);
    }

    /// Ids of every container in this podman's storage.
    pub fn ps(&self) -> Vec<String> {
        self.ok(&["ps", "-a", "-q", "--no-trunc"]).lines().map(str::to_string).collect()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if self.holder.is_some() {
            let ids: Vec<&str> = self.started.iter().map(|s| s.id.as_str()).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-i", "-t", "0"];
                args.extend(ids);
                report(self.podman(&args));
            }
            // Also what a failed `podman run` created: this storage is the lab's alone.
            report(self.podman(&["rm", "-a", "-f", "-t", "0"]));
        }
        for s in &self.started {
            for &(pid, comm) in &s.pids {
                // Only if podman could not stop it, and only if that PID is still ours.
                let alive = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if pid > 0 && alive.trim() == comm {
                    // SAFETY: signals one process this guard started (through podman), by PID.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if s.netns.starts_with("/run/netns/netns-") && Path::new(&s.netns).exists() {
                let c = std::ffi::CString::new(s.netns.as_str()).unwrap();
                // SAFETY: unmounts a namespace file podman made for this guard's container.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                let _ = std::fs::remove_file(&s.netns);
            }
        }
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        unmount_under(&self.dir);
        remove_cgroups(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn report(out: Output) {
    if !out.status.success() {
        eprintln!("podman cleanup: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// File names in a directory (none if it does not exist).
pub fn list_dir(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    let mut v: Vec<String> = rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Unmounts (lazily) every mount at or below `dir` in this mount namespace, deepest first.
fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> =
        info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| Path::new(m).starts_with(dir)).collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let c = std::ffi::CString::new(m).unwrap();
        // SAFETY: unmounts a mount point inside the lab's own directory.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Removes the cgroup `/<name>` and everything below it in every hierarchy (v1 controllers and v2).
fn remove_cgroups(name: &str) {
    let base = Path::new("/sys/fs/cgroup");
    let mut roots = vec![base.join(name)];
    if let Ok(rd) = std::fs::read_dir(base) {
        roots.extend(rd.filter_map(|e| e.ok()).map(|e| e.path().join(name)));
    }
    for r in roots.iter().filter(|r| r.is_dir()) {
        remove_cgroup_tree(r);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
