//! The resume journal of an import: the units (a time slice, a block, a part of a file) already
//! written, one per line, appended and fsynced as each completes. A rerun skips them; a unit cut
//! short by a crash is sent again, and Amber takes what it already holds as duplicates.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub struct Journal {
    path: PathBuf,
    file: File,
    done: HashSet<String>,
}

impl Journal {
    /// Opens (or creates) the journal at `path`; `fresh` forgets what it held.
    pub fn open(path: &Path, fresh: bool) -> anyhow::Result<Journal> {
        let mut done = HashSet::new();
        if !fresh && path.exists() {
            let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
            for line in BufReader::new(file).lines() {
                done.insert(line?);
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        if fresh {
            file.set_len(0)?;
        }
        Ok(Journal { path: path.to_path_buf(), file, done })
    }

    pub fn is_done(&self, unit: &str) -> bool {
        self.done.contains(unit)
    }

    /// How many units are recorded as done.
    pub fn done_count(&self) -> usize {
        self.done.len()
    }

    /// Records `unit` as written; call it only once Amber acknowledged all of the unit.
    pub fn mark_done(&mut self, unit: &str) -> anyhow::Result<()> {
        debug_assert!(!unit.contains('\n'));
        writeln!(self.file, "{unit}")
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.done.insert(unit.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_done_survive_reopening_and_fresh_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut j = Journal::open(&path, false).unwrap();
        j.mark_done("slice 0").unwrap();
        j.mark_done("slice 1").unwrap();
        drop(j);
        let j = Journal::open(&path, false).unwrap();
        assert!(j.is_done("slice 0") && j.is_done("slice 1") && !j.is_done("slice 2"));
        assert_eq!(j.done_count(), 2);
        let j = Journal::open(&path, true).unwrap();
        assert_eq!(j.done_count(), 0);
        drop(j);
        assert_eq!(Journal::open(&path, false).unwrap().done_count(), 0);
    }
}
