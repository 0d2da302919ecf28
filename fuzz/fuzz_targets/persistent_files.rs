//! Persistent storage under arbitrary operations, then arbitrary damage to its files.
//!
//! The input drives a `PersistentStorage` (small segments, so that batches span several of
//! them) and a `MemoryStorage` model through appends, truncations, trims, state changes
//! and commits; the storage is closed; then up to three files are damaged (cut short, a
//! byte flipped, or deleted) and the directory is opened again. Opening must never panic:
//! it gives a clear error (`Corruption` or `Io`) or a storage whose log is no longer than
//! the committed model's and whose every entry reads back either as the model's entry or
//! as a `Corruption` error, never as other bytes. Without damage it must reopen to exactly
//! the committed model.
#![no_main]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use omnipaxos::storage::persistent::PersistentStorage;
use omnipaxos::{Entries, MemoryStorage, Storage, StorageErrorKind, SyncPolicy};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.byte()?) << 8 | u16::from(self.byte()?))
    }
}

fn entry(i: u64, salt: u8) -> Vec<u8> {
    let mut e = i.to_le_bytes().to_vec();
    e.resize(8 + (i as usize * 7 + salt as usize) % 40, salt);
    e
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![dir.join("state")];
    if let Ok(rd) = fs::read_dir(dir.join("log")) {
        let mut logs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        logs.sort();
        v.extend(logs);
    }
    v
}

fn read_all(s: &dyn Storage) -> Vec<Option<Vec<u8>>> {
    (s.compacted_idx()..s.log_len())
        .map(|i| {
            let mut out = Entries::new();
            match s.read_entries(i, i + 1, &mut out) {
                Ok(()) => Some(out.get(0).expect("one entry").to_vec()),
                Err(e) => {
                    assert_eq!(e.kind, StorageErrorKind::Corruption, "read {i}: {e}");
                    None
                }
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    common::quiet_caught_panics();
    let mut input = Input(data);
    let dir = std::env::temp_dir().join(format!("opx-fuzz-files-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let seg = [256usize, 700, 4096][input.byte().unwrap_or(0) as usize % 3];
    let mut p = PersistentStorage::open(&dir, SyncPolicy::Never, seg).expect("fresh directory");
    let mut m = MemoryStorage::new();
    let mut committed = m.clone();
    let mut salt = 0u8;
    // Operations until a zero byte (or the input) ends them.
    while let Some(op) = input.byte() {
        if op == 0 {
            break;
        }
        let arg = u64::from(input.byte().unwrap_or(0));
        match op % 6 {
            0 | 1 => {
                salt = salt.wrapping_add(1);
                let start = m.log_len();
                let mut e = Entries::new();
                for i in start..start + arg % 40 {
                    e.push(&entry(i, salt));
                }
                p.append_entries(&e).unwrap();
                m.append_entries(&e).unwrap();
            }
            2 => {
                let c = m.compacted_idx();
                let len = c + arg % (m.log_len() - c + 1);
                p.truncate(len).unwrap();
                m.truncate(len).unwrap();
            }
            3 => {
                m.set_decided_idx(m.log_len()).unwrap();
                p.set_decided_idx(m.log_len()).unwrap();
                let c = m.compacted_idx();
                let idx = c + arg % (m.log_len() - c + 1);
                p.trim(idx).unwrap();
                m.trim(idx).unwrap();
            }
            4 => {
                let b = omnipaxos::Ballot::new(arg as u32, 0, 1);
                p.set_promise(b).unwrap();
                m.set_promise(b).unwrap();
            }
            _ => {
                p.sync_decided().unwrap();
                m.sync_decided().unwrap();
                committed = m.clone();
            }
        }
    }
    drop(p);
    let want: Vec<Option<Vec<u8>>> = read_all(&committed);

    // Damage: (file, kind, position) triples.
    let mut damaged = false;
    for _ in 0..3 {
        let (Some(f), Some(kind), Some(pos)) = (input.byte(), input.byte(), input.u16()) else {
            break;
        };
        let all = files(&dir);
        let path = &all[f as usize % all.len()];
        let Ok(mut bytes) = fs::read(path) else {
            continue;
        };
        match kind % 3 {
            0 if !bytes.is_empty() => {
                bytes.truncate(pos as usize % bytes.len());
                fs::write(path, &bytes).unwrap();
            }
            1 if !bytes.is_empty() => {
                let at = pos as usize % bytes.len();
                bytes[at] ^= 1 << (kind % 8);
                fs::write(path, &bytes).unwrap();
            }
            2 => {
                let _ = fs::remove_file(path);
            }
            _ => continue,
        }
        damaged = true;
    }

    match PersistentStorage::open(&dir, SyncPolicy::Never, seg) {
        Err(e) => {
            assert!(damaged, "undamaged storage failed to open: {e}");
            assert!(
                matches!(e.kind, StorageErrorKind::Corruption | StorageErrorKind::Io),
                "{e}"
            );
        }
        Ok(s) => {
            let got = read_all(&s);
            if damaged {
                assert!(s.log_len() <= committed.log_len(), "the log grew");
                let c = s.compacted_idx().max(committed.compacted_idx());
                for i in c..s.log_len() {
                    let g = &got[(i - s.compacted_idx()) as usize];
                    let w = &want[(i - committed.compacted_idx()) as usize];
                    assert!(g.is_none() || g == w, "entry {i}: wrong bytes");
                }
            } else {
                assert_eq!(s.log_len(), committed.log_len());
                assert_eq!(s.compacted_idx(), committed.compacted_idx());
                assert_eq!(got, want);
                assert_eq!(s.promise(), committed.promise());
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
});
