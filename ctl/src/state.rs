//! The daemon's persisted state: what networks and endpoints exist, so a restarted daemon (after a
//! clean stop or a crash) re-adopts them. Written atomically: temp file, fsync, rename, fsync dir.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::api::{Attachment, CniRoute};
use crate::ipam::IpamSpec;

/// Bumped on incompatible changes of the file's layout.
pub const STATE_VERSION: u32 = 1;
const FILE: &str = "state.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub next_id: u32,
    pub networks: Vec<NetworkState>,
    /// Parents whose receive VLAN offload the daemon turned off, to turn back on when they go (a
    /// restarted daemon finds it off and could not tell otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rx_vlan_off: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkState {
    pub name: String,
    pub id: u32,
    /// None for an internal network.
    pub parent: Option<String>,
    pub internal: bool,
    pub mode: String,
    /// Every `-o` driver option as given (parent and mode included); parsed again at restore.
    #[serde(default)]
    pub options: Vec<(String, String)>,
    pub ipam: IpamSpec,
    pub endpoints: Vec<EndpointState>,
    /// A passthru network whose endpoint changed the parent: what to put back when it goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthru: Option<PassthruSaved>,
    /// Made by the CNI plugin (no IPAM of ours; removed with its last attachment).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cni: bool,
}

/// The parent as it was before a passthru endpoint took it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassthruSaved {
    /// Its MAC before the endpoint's --mac-address replaced it; None when unchanged.
    pub mac: Option<String>,
    /// Promiscuous mode was turned on for the endpoint (and goes off with it).
    pub promisc: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndpointKind {
    /// A veth pair: `host` in the daemon's namespace, `ifname` inside `netns`.
    Veth { netns: String, ns_id: (u64, u64) },
    /// A persistent tap device in the daemon's namespace, opened by a VM.
    Tap { owner: Option<u32> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointState {
    #[serde(flatten)]
    pub kind: EndpointKind,
    pub ifname: String,
    pub host: String,
    pub mac: String,
    /// CIDR strings, e.g. 198.18.0.2/24.
    pub addrs: Vec<String>,
    pub mtu: u32,
    /// Source mode: the senders this endpoint gets copies of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_macs: Vec<String>,
    /// A CNI attachment: the runtime's names for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<Attachment>,
    /// A CNI attachment's routes (other endpoints' come from their network's gateways).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<CniRoute>,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating state dir {}", dir.display()))?;
        Ok(Store { dir: dir.to_path_buf() })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The saved state; an empty one when there is no file yet. A file that cannot be read or
    /// parsed is an error naming it, and is left alone.
    pub fn load(&self) -> Result<State> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State { version: STATE_VERSION, next_id: 1, networks: Vec::new(), rx_vlan_off: Vec::new() })
            }
            Err(e) => bail!("state file {} is unreadable: {e}", path.display()),
        };
        let state: State = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("state file {} is corrupt ({e}); it was left as it is", path.display()))?;
        if state.version != STATE_VERSION {
            bail!(
                "state file {} has layout version {}, this daemon reads version {STATE_VERSION}",
                path.display(),
                state.version
            );
        }
        Ok(state)
    }

    /// Moves an unusable state file aside (for --start-empty) and says where it went.
    pub fn set_aside(&self) -> Result<Option<PathBuf>> {
        let path = self.path();
        if !path.exists() {
            return Ok(None);
        }
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let aside = self.dir.join(format!("{FILE}.unusable-{secs}"));
        fs::rename(&path, &aside).with_context(|| format!("moving {} to {}", path.display(), aside.display()))?;
        Ok(Some(aside))
    }

    /// Replaces the state file atomically and durably.
    pub fn save(&self, state: &State) -> Result<()> {
        let path = self.path();
        let tmp = self.dir.join(format!(".{FILE}.tmp"));
        let data = serde_json::to_vec_pretty(state)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&data).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory {}", self.dir.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_reported_and_kept() {
        let dir = std::env::temp_dir().join(format!("xmv-state-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::new(&dir).unwrap();
        assert!(store.load().unwrap().networks.is_empty());
        let st = State {
            version: STATE_VERSION,
            next_id: 3,
            rx_vlan_off: vec!["eth9".into()],
            networks: vec![NetworkState {
                name: "n".into(),
                id: 2,
                parent: Some("eth9".into()),
                internal: false,
                mode: "source".into(),
                options: vec![("parent".into(), "eth9.10".into()), ("macvlan_mode".into(), "source".into())],
                ipam: IpamSpec { subnets: vec!["198.18.0.0/24".into()], ..Default::default() },
                passthru: None,
                cni: true,
                endpoints: vec![EndpointState {
                    kind: EndpointKind::Veth { netns: "/run/netns/a".into(), ns_id: (4, 5) },
                    ifname: "eth0".into(),
                    host: "xmv1".into(),
                    mac: "02:42:c6:12:00:02".into(),
                    addrs: vec!["198.18.0.2/24".into()],
                    mtu: 1500,
                    source_macs: vec!["02:77:00:00:00:01".into()],
                    cni: Some(Attachment { container_id: "c0ffee".into(), ifname: "eth0".into() }),
                    routes: vec![CniRoute {
                        dst: "0.0.0.0/0".parse().unwrap(),
                        gw: Some("198.18.0.1".parse().unwrap()),
                    }],
                }],
            }],
        };
        store.save(&st).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back.next_id, 3);
        assert_eq!(back.networks[0].endpoints[0].kind, st.networks[0].endpoints[0].kind);
        assert_eq!(back.networks[0].options, st.networks[0].options);
        assert!(back.networks[0].cni);
        assert_eq!(back.networks[0].endpoints[0].cni, st.networks[0].endpoints[0].cni);
        assert_eq!(back.networks[0].endpoints[0].routes, st.networks[0].endpoints[0].routes);
        assert_eq!(back.networks[0].endpoints[0].source_macs, st.networks[0].endpoints[0].source_macs);
        fs::write(store.path(), b"{ not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("state.json"), "{e}");
        assert_eq!(fs::read(store.path()).unwrap(), b"{ not json", "a corrupt file is left in place");
        let aside = store.set_aside().unwrap().unwrap();
        assert!(aside.exists() && !store.path().exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
