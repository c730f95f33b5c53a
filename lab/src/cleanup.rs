//! Nothing left behind: the registry of what the lab created (processes, namespaces, directories),
//! removed on every exit path. Guards ([`Netns`](crate::Netns), [`DaemonProcess`](crate::DaemonProcess))
//! register themselves and remove their entry when dropped; what is still registered when the
//! process ends abnormally is removed by [`cleanup_all`]. A program that wants that on signals and
//! panics (panic = "abort" runs no destructor) calls [`install_signal_handling`]: a signal thread
//! whose first SIGINT/SIGTERM/SIGHUP asks the run to stop and unwind ([`interrupted`]), and whose
//! second cleans up at once and exits; and a panic hook that cleans up.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use std::{fs, thread};

use anyhow::{bail, Result};

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
pub fn unregister_pid(pid: i32) {
    registry().pids.retain(|&p| p != pid);
}
pub fn register_netns(name: &str) {
    registry().netns.push(name.to_string());
}
pub fn unregister_netns(name: &str) {
    registry().netns.retain(|n| n != name);
}
pub fn register_dir(p: &Path) {
    registry().dirs.push(p.to_path_buf());
}

/// Forgets a directory the lab has removed itself.
pub fn unregister_dir(p: &Path) {
    registry().dirs.retain(|d| d != p);
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
        eprintln!("xmacvlan lab: pid {pid} ignored SIGTERM for {grace:?}, sending SIGKILL");
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
    unregister_netns(name);
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

pub fn termination_signals() -> libc::sigset_t {
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
                    eprintln!("\nxmacvlan lab: got signal {sig}, stopping and cleaning up (again to force)");
                    INTERRUPTED.store(true, Ordering::SeqCst);
                } else {
                    eprintln!("xmacvlan lab: got signal {sig} again, cleaning up now");
                    cleanup_all();
                    std::process::exit(130);
                }
            }
        })?;
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("xmacvlan lab: panic, cleaning up the lab");
        cleanup_all();
    }));
    Ok(())
}

/// Deletes namespaces `<prefix><pid>-*` left behind by a run whose process no longer exists.
pub fn remove_stale_namespaces(prefix: &str) {
    let Ok(rd) = fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
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
        eprintln!("xmacvlan lab: removing stale namespace {name} (pid {pid} is gone)");
        delete_netns(&name);
    }
}
