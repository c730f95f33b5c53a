//! Intents: the links a command is about to create or remove, recorded durably before it acts. A
//! daemon killed between making a link and saving its endpoint (`connect`), or between saving an
//! endpoint's removal and removing its link (`disconnect`, `rm`), leaves a link no state file
//! names; the next start reads the intent and removes such a link — provably its own (the record
//! says so), with its container end (a veth pair goes as one) — and touches nothing else. A link
//! the state does name is adopted as usual.
//!
//! One command runs at a time: the file holds its links only, written (and synced) before it acts,
//! emptied once it is saved or undone.

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

    /// Records that the links `hosts` are about to be made or removed; durable when this returns.
    pub fn record(&mut self, hosts: &[String]) -> Result<()> {
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
        let lines: String = hosts.iter().map(|h| format!("{h}\n")).collect();
        file.set_len(0)
            .and_then(|()| file.write_all_at(lines.as_bytes(), 0))
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
        a.record(&["xmv0123abcd".into(), "vm0".into()]).unwrap();
        assert_eq!(Intents::new(&dir).pending(), ["xmv0123abcd", "vm0"], "what a restart reads");
        a.record(&["xmv4567ef01".into()]).unwrap();
        assert_eq!(Intents::new(&dir).pending(), ["xmv4567ef01"], "a command's own: the newer replaces them");
        a.clear();
        assert!(Intents::new(&dir).pending().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
