//! Intents: the link a `connect` is about to create, recorded durably before it is created. A
//! daemon killed between creating the link and saving the endpoint leaves a link no state file
//! names; the next start reads the intent and removes that link — provably its own (the record
//! says so), with its container end (a veth pair goes as one) — and touches nothing else.
//!
//! One connect runs at a time, so the file holds at most one name: written (and synced) before the
//! link is made, emptied once the connect is saved or undone.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const FILE: &str = "intent";

pub struct Intents {
    path: PathBuf,
    file: Option<File>,
}

impl Intents {
    pub fn new(dir: &Path) -> Self {
        Intents { path: dir.join(FILE), file: None }
    }

    /// Records that the link `host` is about to be created; durable when this returns.
    pub fn record(&mut self, host: &str) -> Result<()> {
        let path = &self.path;
        let file = match &mut self.file {
            Some(f) => f,
            slot => slot.insert(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
        };
        let line = format!("{host}\n");
        file.set_len(0)
            .and_then(|()| file.write_all_at(line.as_bytes(), 0))
            .and_then(|()| file.sync_data())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The connect ended (saved, or undone): nothing is pending. Not synced: a crash that
    /// brings the name back finds it in the state file, and leaves it alone.
    pub fn clear(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.set_len(0);
        }
    }

    /// The links a previous daemon was about to create when it stopped.
    pub fn pending(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .map(|s| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_outlives_its_writer_until_cleared() {
        let dir = std::env::temp_dir().join(format!("xmv-intent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Intents::new(&dir).pending().is_empty(), "no file: nothing pending");
        let mut a = Intents::new(&dir);
        a.record("xmv0123abcd").unwrap();
        assert_eq!(Intents::new(&dir).pending(), ["xmv0123abcd"], "what a restart reads");
        a.record("vm0").unwrap();
        assert_eq!(Intents::new(&dir).pending(), ["vm0"], "one at a time: the newer replaces it");
        a.clear();
        assert!(Intents::new(&dir).pending().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
