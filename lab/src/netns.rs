//! [`Netns`]: a named network namespace (`ip netns add`) that is deleted when dropped, and kept in
//! the cleanup registry while it lives so that a run ended by a signal or a panic removes it too.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cleanup::{delete_netns, register_netns, unregister_netns};
use crate::cmd::{ip_batch, CMD_TIMEOUT};
use crate::sys;

/// The path of the named namespace `name` (what `setns` and the daemon's `connect` take).
pub fn ns_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/netns/{name}"))
}

/// A network namespace this process created; deleted (with every interface in it) when dropped.
pub struct Netns {
    pub name: String,
    /// False once [`Netns::remove_all`] deleted it: Drop has nothing left to do.
    exists: bool,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub fn create(name: impl Into<String>) -> Result<Netns> {
        let name = name.into();
        crate::cmd::run_cmd(Command::new("ip").args(["netns", "add", &name]), CMD_TIMEOUT)?;
        register_netns(&name);
        let ns = Netns { name, exists: true };
        sys::in_netns(ns.path(), || sys::set_link_up("lo"))
            .and_then(|r| r)
            .with_context(|| format!("setting lo up in {}", ns.name))?;
        Ok(ns)
    }

    /// Creates the namespaces `names` with one `ip -batch` and sets their loopbacks up from one
    /// thread: hundreds take a fraction of a second, where [`Netns::create`] costs a process each.
    /// On failure none of them is left.
    pub fn create_many(names: impl IntoIterator<Item = String>) -> Result<Vec<Netns>> {
        let all: Vec<Netns> = names.into_iter().map(|name| Netns { name, exists: true }).collect();
        for n in &all {
            register_netns(&n.name);
        }
        let script: String = all.iter().map(|n| format!("netns add {}\n", n.name)).collect();
        let out = ip_batch(None, &script, false).context("running ip -batch")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            Netns::remove_all(all);
            bail!("ip -batch 'netns add …' failed: {}", err.trim());
        }
        let paths: Vec<String> = all.iter().map(Netns::path).collect();
        let up = sys::in_each_netns(&paths, |_| sys::set_link_up("lo"))
            .and_then(|r| r.into_iter().collect::<std::io::Result<Vec<()>>>());
        if let Err(e) = up {
            Netns::remove_all(all);
            return Err(e).context("setting lo up in the new namespaces");
        }
        Ok(all)
    }

    /// Deletes the namespaces with one `ip -force -batch` (an already missing one is no error).
    pub fn remove_all(all: Vec<Netns>) {
        let mut all = all;
        let script: String = all.iter().filter(|n| n.exists).map(|n| format!("netns del {}\n", n.name)).collect();
        if !script.is_empty() {
            let _ = ip_batch(None, &script, true);
        }
        for n in &mut all {
            unregister_netns(&n.name);
            n.exists = false;
        }
    }

    /// `/var/run/netns/NAME`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.exists {
            delete_netns(&self.name);
        }
    }
}
