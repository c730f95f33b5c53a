//! The daemon's persisted state: what networks and endpoints exist, so a restarted daemon (after a
//! clean stop or a crash) re-adopts them.
//!
//! Two files in the state directory. `state.json` holds the whole state and is only ever replaced
//! atomically (temp file, fsync, rename, fsync of the directory). `state.journal` holds what changed
//! since (see [`journal`]): a command appends its records — one line, so that a crash keeps all of
//! them or none — and fsyncs before it reports success, so a command costs the size of its change,
//! not of every network and endpoint. A line torn by a crash was never acknowledged and is dropped;
//! once the journal outgrows the state file, the state file is rewritten and the journal started
//! again. Each state file has a generation and the journal
//! names the one it continues, so a journal left over from before a rewrite is never replayed.

pub mod intent;
mod journal;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use self::journal::Record;
use crate::api::{Attachment, CniRoute};
use crate::ipam::IpamSpec;

/// Bumped on incompatible changes of the file's layout. 2: the journal (a daemon that reads only
/// version 1 would not replay it, so it refuses the file instead). Version 1 files are read.
pub const STATE_VERSION: u32 = 2;
const FILE: &str = "state.json";
const JOURNAL: &str = "state.journal";
/// The journal is compacted into the state file once it is larger than the state file, and not
/// before it reaches this size.
const JOURNAL_MIN: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub next_id: u32,
    pub networks: Vec<NetworkState>,
    /// Parents whose receive VLAN offload the daemon turned off, to turn back on when they go (a
    /// restarted daemon finds it off and could not tell otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rx_vlan_off: Vec<String>,
    /// Which journal continues this file (see the module doc).
    #[serde(default)]
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkState {
    pub name: String,
    pub id: u32,
    /// None for an internal network.
    pub parent: Option<String>,
    pub internal: bool,
    /// `macvlan` or `ipvlan` (`-d`); files from before ipvlan have none: macvlan.
    #[serde(default = "macvlan", skip_serializing_if = "is_macvlan")]
    pub driver: String,
    /// The macvlan mode, or an ipvlan network's ipvlan_mode (shown by `ls`; the options decide).
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
    /// Made by Docker through the network driver (named by its NetworkID; Docker's IPAM hands out
    /// the addresses).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub docker: bool,
    /// A Docker network's name, once learnt from dockerd (Docker never tells a driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_name: Option<String>,
}

fn macvlan() -> String {
    "macvlan".into()
}

fn is_macvlan(d: &str) -> bool {
    d == "macvlan"
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
    /// A veth pair made for Docker's `Join`: `host` in the daemon's namespace, the other end
    /// (`ifname` as made) moved by Docker into a container whose namespace we are not told.
    Docker { endpoint_id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The endpoint's own source guard, where `connect` (or the CNI configuration) gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoof_check: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_guard: Option<bool>,
    /// An ipvlan endpoint's dev_id (1..=0xFFFD, unique on its parent link): its IPv6 link-local
    /// address is made from the parent's MAC and it, as the kernel makes an ipvlan slave's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipvlan_id: Option<u16>,
}

pub struct Store {
    dir: PathBuf,
    /// What the two files hold, once this store wrote them: None until the first save (which
    /// rewrites the state file) and after a failed one.
    saved: Option<Saved>,
    /// The generation of the state file on disk.
    generation: u64,
}

/// The files as this store last wrote them.
struct Saved {
    state: State,
    journal: File,
    journal_len: u64,
    file_len: u64,
}

impl Store {
    pub fn new(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating state dir {}", dir.display()))?;
        Ok(Store { dir: dir.to_path_buf(), saved: None, generation: 0 })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// The saved state (the state file and the journal's records for it); an empty one when there
    /// is no file yet. A file that cannot be read or parsed is an error naming it, and is left alone.
    pub fn load(&mut self) -> Result<State> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State { version: STATE_VERSION, next_id: 1, ..State::default() })
            }
            Err(e) => bail!("state file {} is unreadable: {e}", path.display()),
        };
        let mut state = parse(&text).map_err(|e| anyhow!("state file {} {e}", path.display()))?;
        self.generation = state.generation;
        let jpath = self.journal_path();
        let journal = match fs::read(&jpath) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(state),
            Err(e) => bail!("state journal {} is unreadable: {e}", jpath.display()),
        };
        replay(&mut state, &journal)
            .map_err(|e| anyhow!("state journal {} is corrupt ({e}); it was left as it is", jpath.display()))?;
        Ok(state)
    }

    /// Moves an unusable state file and its journal aside (for --start-empty) and says where the
    /// state file went.
    pub fn set_aside(&self) -> Result<Option<PathBuf>> {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let jpath = self.journal_path();
        if jpath.exists() {
            let aside = self.dir.join(format!("{JOURNAL}.unusable-{secs}"));
            fs::rename(&jpath, &aside).with_context(|| format!("moving {} to {}", jpath.display(), aside.display()))?;
        }
        let path = self.path();
        if !path.exists() {
            return Ok(None);
        }
        let aside = self.dir.join(format!("{FILE}.unusable-{secs}"));
        fs::rename(&path, &aside).with_context(|| format!("moving {} to {}", path.display(), aside.display()))?;
        Ok(Some(aside))
    }

    /// Makes `state` the saved state, durably, before returning: as journal records when the
    /// change since the last save can be expressed so, else by rewriting the state file.
    pub fn save(&mut self, mut state: State) -> Result<()> {
        state.version = STATE_VERSION;
        let Some(mut saved) = self.saved.take() else { return self.rewrite(state) };
        if saved.journal_len > saved.file_len.max(JOURNAL_MIN) {
            return self.rewrite(state);
        }
        state.generation = self.generation;
        let records = journal::diff(&saved.state, &state);
        if records.is_empty() {
            self.saved = Some(saved);
            return Ok(());
        }
        let mut line = serde_json::to_vec(&records)?;
        line.push(b'\n');
        // What a restart would read back must be `state` itself; if the records cannot say it (they
        // never reorder), the whole file says it.
        for r in records {
            if journal::apply(&mut saved.state, r).is_err() {
                return self.rewrite(state);
            }
        }
        if saved.state != state {
            return self.rewrite(state);
        }
        let jpath = self.journal_path();
        // On failure `saved` is dropped: the next save rewrites everything, so a partly written
        // record is never followed by others.
        saved
            .journal
            .write_all(&line)
            .and_then(|()| saved.journal.sync_data())
            .with_context(|| format!("appending to {}", jpath.display()))?;
        saved.journal_len += line.len() as u64;
        self.saved = Some(saved);
        Ok(())
    }

    /// Replaces the state file with `state` (the next generation) and starts an empty journal
    /// for it.
    fn rewrite(&mut self, mut state: State) -> Result<()> {
        self.saved = None;
        state.generation = self.generation + 1;
        let data = serde_json::to_vec_pretty(&state)?;
        let path = self.path();
        let tmp = self.dir.join(format!(".{FILE}.tmp"));
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
        self.sync_dir()?;
        self.generation = state.generation;
        // A crash from here until the journal's first line is on disk leaves a journal that names
        // an older generation, or none: either way it is not replayed, and the file says it all.
        let jpath = self.journal_path();
        let mut start = serde_json::to_vec(&Record::Start { generation: state.generation })?;
        start.push(b'\n');
        let mut journal = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&jpath)
            .with_context(|| format!("writing {}", jpath.display()))?;
        journal
            .write_all(&start)
            .and_then(|()| journal.sync_all())
            .with_context(|| format!("writing {}", jpath.display()))?;
        self.sync_dir()?;
        self.saved = Some(Saved { state, journal, journal_len: start.len() as u64, file_len: data.len() as u64 });
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory {}", self.dir.display()))
    }
}

/// Why a state file's text is not a state (the message follows the file's name).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("is corrupt ({0}); it was left as it is")]
    Corrupt(serde_json::Error),
    #[error("has layout version {0}, this daemon reads versions 1 to {STATE_VERSION}")]
    Version(u32),
}

/// The state file's text as [`Store::load`] reads it, before the journal: JSON of a layout
/// version this daemon reads. Pure, so that the fuzzer (`fuzz/fuzz_targets/state.rs`) runs what
/// a starting daemon runs on whatever it finds on disk.
pub fn parse(text: &str) -> Result<State, ParseError> {
    let state: State = serde_json::from_str(text).map_err(ParseError::Corrupt)?;
    if !(1..=STATE_VERSION).contains(&state.version) {
        return Err(ParseError::Version(state.version));
    }
    Ok(state)
}

/// Applies a journal to the state file it continues: after its start line, one line per save,
/// each a JSON array of records. A last line without its newline was torn by a crash before the
/// command was acknowledged and is ignored (all of it); a journal for another generation of the
/// file is left over from before a rewrite and ignored whole.
pub fn replay(state: &mut State, journal: &[u8]) -> Result<(), String> {
    let Some(end) = journal.iter().rposition(|&b| b == b'\n') else { return Ok(()) };
    let complete = std::str::from_utf8(&journal[..end]).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut lines = complete.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    let Some((_, first)) = lines.next() else { return Ok(()) };
    match serde_json::from_str::<Record>(first).map_err(|e| format!("line 1: {e}"))? {
        Record::Start { generation } if generation == state.generation => {}
        Record::Start { .. } => return Ok(()),
        _ => return Err("line 1: not a start record".into()),
    }
    for (n, line) in lines {
        let records: Vec<Record> = serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        for r in records {
            journal::apply(state, r).map_err(|e| format!("line {n}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_reported_and_kept() {
        let dir = std::env::temp_dir().join(format!("xmv-state-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut store = Store::new(&dir).unwrap();
        assert!(store.load().unwrap().networks.is_empty());
        let st = State {
            version: STATE_VERSION,
            generation: 0,
            next_id: 3,
            rx_vlan_off: vec!["eth9".into()],
            networks: vec![NetworkState {
                name: "n".into(),
                id: 2,
                parent: Some("eth9".into()),
                internal: false,
                driver: "macvlan".into(),
                mode: "source".into(),
                options: vec![("parent".into(), "eth9.10".into()), ("macvlan_mode".into(), "source".into())],
                ipam: IpamSpec { subnets: vec!["198.18.0.0/24".into()], ..Default::default() },
                passthru: None,
                cni: true,
                docker: false,
                docker_name: None,
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
                    spoof_check: Some(false),
                    ip_guard: Some(true),
                    ipvlan_id: None,
                }],
            }],
        };
        store.save(st.clone()).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back.next_id, 3);
        assert_eq!(back.networks[0].endpoints[0].kind, st.networks[0].endpoints[0].kind);
        assert_eq!(back.networks[0].options, st.networks[0].options);
        assert!(back.networks[0].cni);
        assert_eq!(back.networks[0].endpoints[0].cni, st.networks[0].endpoints[0].cni);
        assert_eq!(back.networks[0].endpoints[0].routes, st.networks[0].endpoints[0].routes);
        assert_eq!(back.networks[0].endpoints[0].source_macs, st.networks[0].endpoints[0].source_macs);
        assert_eq!(back.networks, st.networks, "every field, the new ones included");
        fs::write(store.path(), b"{ not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("state.json"), "{e}");
        assert_eq!(fs::read(store.path()).unwrap(), b"{ not json", "a corrupt file is left in place");
        let aside = store.set_aside().unwrap().unwrap();
        assert!(aside.exists() && !store.path().exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    use self::journal::tests::{endpoint, network};

    /// A directory of its own, removed when the test ends.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let d = std::env::temp_dir().join(format!("xmv-state-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// What a restarted daemon reads, compared without the file's own bookkeeping.
    fn reread(dir: &Path) -> State {
        let mut s = Store::new(dir).unwrap().load().unwrap();
        s.generation = 0;
        s
    }

    fn plain(mut s: State) -> State {
        s.version = STATE_VERSION;
        s.generation = 0;
        s
    }

    /// xorshift64: the same "random" commands on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn every_save_reads_back_and_a_command_appends_only_its_change() {
        let dir = Dir::new("journal");
        let mut store = Store::new(&dir.0).unwrap();
        let mut st = State { version: STATE_VERSION, next_id: 1, ..State::default() };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut hosts, mut appends) = (0, 0);
        for step in 0..1000 {
            let before = fs::metadata(store.journal_path()).map(|m| m.len()).ok();
            let generation = store.generation;
            let n = st.networks.len();
            match rng.below(100) {
                // Mostly connects and disconnects, as at scale.
                0..=59 if n > 0 => {
                    hosts += 1;
                    st.networks[rng.below(n)].endpoints.push(endpoint(&format!("xmv{hosts}")));
                }
                60..=84 if n > 0 => {
                    let net = &mut st.networks[rng.below(n)];
                    if !net.endpoints.is_empty() {
                        let i = rng.below(net.endpoints.len());
                        net.endpoints.remove(i);
                    }
                }
                85..=89 if n > 0 => {
                    let net = &mut st.networks[rng.below(n)];
                    if let Some(e) = net.endpoints.last_mut() {
                        e.source_macs.push(format!("02:77:00:00:00:{:02x}", step % 256));
                    }
                }
                90..=92 if n > 0 => {
                    let i = rng.below(n);
                    st.networks[i].passthru = Some(PassthruSaved { mac: None, promisc: step % 2 == 0 });
                }
                93 if n > 3 => {
                    let i = rng.below(n);
                    st.networks.remove(i);
                }
                94..=95 => st.rx_vlan_off = vec![format!("eth{}", step % 3)],
                _ => {
                    st.next_id += 1;
                    let name = format!("net{:03}", rng.below(1000));
                    if !st.networks.iter().any(|x| x.name == name) {
                        let at = st.networks.iter().position(|x| x.name > name).unwrap_or(st.networks.len());
                        st.networks.insert(at, network(&name, &[]));
                    }
                }
            }
            store.save(st.clone()).unwrap();
            assert_eq!(reread(&dir.0), plain(st.clone()), "step {step}: what a restart reads");
            let after = fs::metadata(store.journal_path()).unwrap().len();
            if let (Some(b), true) = (before, store.generation == generation) {
                appends += 1;
                assert!(after - b < 1024, "step {step}: one command, one short record ({} bytes)", after - b);
            }
        }
        let endpoints: usize = st.networks.iter().map(|n| n.endpoints.len()).sum();
        assert!(endpoints > 200, "a state of some size ({endpoints} endpoints)");
        assert!(store.generation > 2, "the journal was compacted into the file ({} times)", store.generation - 1);
        assert!(appends > 950, "nearly every save was an append ({appends})");
    }

    #[test]
    fn a_torn_record_is_dropped_and_a_journal_older_than_the_file_is_ignored() {
        let dir = Dir::new("torn");
        let mut store = Store::new(&dir.0).unwrap();
        let one =
            State { version: STATE_VERSION, next_id: 2, networks: vec![network("a", &["x1"])], ..State::default() };
        store.save(one.clone()).unwrap();
        let mut two = one.clone();
        two.networks[0].endpoints.push(endpoint("x2"));
        store.save(two.clone()).unwrap();
        // A crash in the middle of the next append: the command was never acknowledged.
        let mut j = OpenOptions::new().append(true).open(store.journal_path()).unwrap();
        j.write_all(br#"[{"op":"endpoint","network":"a","endpoint":{"kind":"ve"#).unwrap();
        assert_eq!(reread(&dir.0), plain(two.clone()));
        // The restarted daemon's first save rewrites the file and starts a clean journal.
        let mut restarted = Store::new(&dir.0).unwrap();
        let loaded = restarted.load().unwrap();
        let mut three = loaded.clone();
        three.networks[0].endpoints.push(endpoint("x3"));
        restarted.save(three.clone()).unwrap();
        let mut four = three.clone();
        four.networks[0].endpoints.remove(0);
        restarted.save(four.clone()).unwrap();
        assert_eq!(reread(&dir.0), plain(four.clone()));

        // A crash after a rewrite of the file but before the journal was started again: the old
        // journal (for the previous generation) must not be replayed on the new file.
        let old_journal = fs::read(restarted.journal_path()).unwrap();
        let mut five = four.clone();
        five.networks[0].endpoints.clear();
        restarted.rewrite(five.clone()).unwrap();
        fs::write(restarted.journal_path(), &old_journal).unwrap();
        assert_eq!(reread(&dir.0), plain(five));
        // An empty journal (truncated, its first line not yet written) is no journal.
        fs::write(restarted.journal_path(), b"").unwrap();
        assert_eq!(reread(&dir.0).networks[0].endpoints.len(), 0);
    }

    #[test]
    fn a_commands_records_are_kept_all_or_none() {
        let dir = Dir::new("all-or-none");
        let mut store = Store::new(&dir.0).unwrap();
        let one =
            State { version: STATE_VERSION, next_id: 2, networks: vec![network("a", &["x1"])], ..State::default() };
        store.save(one.clone()).unwrap();
        // `network create`: the network and the next id, two records in one line.
        let mut two = one.clone();
        two.networks.push(network("b", &[]));
        two.next_id = 3;
        store.save(two.clone()).unwrap();
        let text = fs::read(store.journal_path()).unwrap();
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 2, "the start line and one line for the command");
        assert_eq!(reread(&dir.0), plain(two));
        // Torn anywhere before its newline (here: just before it), the line is dropped whole.
        fs::write(store.journal_path(), &text[..text.len() - 1]).unwrap();
        assert_eq!(reread(&dir.0), plain(one));
    }

    #[test]
    fn a_corrupt_journal_is_reported_and_kept_and_set_aside_with_the_file() {
        let dir = Dir::new("corrupt-journal");
        let mut store = Store::new(&dir.0).unwrap();
        let one =
            State { version: STATE_VERSION, next_id: 2, networks: vec![network("a", &["x1"])], ..State::default() };
        store.save(one.clone()).unwrap();
        let mut two = one.clone();
        two.networks[0].endpoints.push(endpoint("x2"));
        store.save(two).unwrap();
        let mut text = fs::read_to_string(store.journal_path()).unwrap();
        text.push_str("{ not a record }\n");
        fs::write(store.journal_path(), &text).unwrap();
        let e = format!("{:#}", Store::new(&dir.0).unwrap().load().unwrap_err());
        assert!(e.contains("state.journal") && e.contains("corrupt") && e.contains("line 3"), "{e}");
        assert_eq!(fs::read_to_string(store.journal_path()).unwrap(), text, "left in place");
        // A record for something the file does not have is corrupt too.
        fs::write(
            store.journal_path(),
            format!("{}\n{}\n", text.lines().next().unwrap(), r#"[{"op":"network_gone","name":"zz"}]"#),
        )
        .unwrap();
        let e = format!("{:#}", Store::new(&dir.0).unwrap().load().unwrap_err());
        assert!(e.contains("line 2") && e.contains("zz"), "{e}");
        let aside = store.set_aside().unwrap().unwrap();
        assert!(aside.exists() && !store.path().exists() && !store.journal_path().exists());
        let moved: Vec<String> = fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.starts_with("state.journal.unusable-"))
            .collect();
        assert_eq!(moved.len(), 1, "the journal went aside with the file");
    }

    #[test]
    fn files_of_layout_version_1_are_read_and_later_versions_refused() {
        let dir = Dir::new("v1");
        fs::create_dir_all(&dir.0).unwrap();
        let v1 = r#"{"version":1,"next_id":2,"networks":[{"name":"n","id":1,"parent":"eth1","internal":false,
            "mode":"bridge","ipam":{"subnets":["198.18.0.0/24"],"gateways":[],"ip_ranges":[],"aux_addresses":[],
            "ipv6":false},"endpoints":[]}]}"#;
        fs::write(dir.0.join(FILE), v1).unwrap();
        let mut store = Store::new(&dir.0).unwrap();
        let st = store.load().unwrap();
        assert_eq!(st.networks[0].name, "n");
        store.save(st).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.contains(&format!("\"version\": {STATE_VERSION}")), "{text}");
        fs::write(store.path(), text.replace(&format!("\"version\": {STATE_VERSION}"), "\"version\": 99")).unwrap();
        let e = Store::new(&dir.0).unwrap().load().unwrap_err().to_string();
        assert!(e.contains("version 99"), "{e}");
    }

    #[test]
    fn an_ipvlan_network_and_its_dev_ids_round_trip_and_old_files_are_macvlan() {
        let dir = Dir::new("ipvlan");
        let mut store = Store::new(&dir.0).unwrap();
        let mut net = network("iv", &["xmv1", "xmv2"]);
        net.driver = "ipvlan".into();
        net.mode = "l3".into();
        net.options = vec![("parent".into(), "eth1".into()), ("ipvlan_mode".into(), "l3".into())];
        net.endpoints[0].ipvlan_id = Some(1);
        net.endpoints[1].ipvlan_id = Some(2);
        let st = State {
            version: STATE_VERSION,
            next_id: 2,
            networks: vec![net, network("m", &["xmv3"])],
            ..State::default()
        };
        store.save(st.clone()).unwrap();
        assert_eq!(plain(reread(&dir.0)), plain(st.clone()));
        let text = fs::read_to_string(store.path()).unwrap();
        assert_eq!(text.matches("\"driver\"").count(), 1, "only the ipvlan network names its driver: {text}");
        assert_eq!(text.matches("\"ipvlan_id\"").count(), 2, "{text}");
        // A later change goes through the journal and reads back the same.
        let mut changed = st.clone();
        changed.networks[0].endpoints[1].ipvlan_id = Some(3);
        store.save(changed.clone()).unwrap();
        assert_eq!(plain(reread(&dir.0)), plain(changed));
        // A file from before ipvlan: no driver, no ipvlan_id.
        let old = r#"{"version":2,"next_id":2,"networks":[{"name":"n","id":1,"parent":"eth1","internal":false,
            "mode":"bridge","ipam":{"subnets":["198.18.0.0/24"],"gateways":[],"ip_ranges":[],"aux_addresses":[],
            "ipv6":false},"endpoints":[{"kind":"veth","netns":"a","ns_id":[1,2],"ifname":"eth0","host":"xmv9",
            "mac":"02:42:c6:12:00:02","addrs":["198.18.0.2/24"],"mtu":1500}]}]}"#;
        fs::remove_file(store.journal_path()).ok();
        fs::write(store.path(), old).unwrap();
        let st = Store::new(&dir.0).unwrap().load().unwrap();
        assert_eq!((st.networks[0].driver.as_str(), st.networks[0].endpoints[0].ipvlan_id), ("macvlan", None));
    }
}
