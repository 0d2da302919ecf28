//! Tests of `PersistentStorage`: the same behaviour as `MemoryStorage`, durability across
//! reopen, crashes of a real process (SIGKILL), torn and corrupt files, the lock, I/O errors
//! and bounded disk use under append + trim.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use omnipaxos::storage::persistent::{self, PersistentStorage};
use omnipaxos::{Ballot, Entries, MemoryStorage, StopSign, Storage, StorageErrorKind, SyncPolicy};

// ---------------------------------------------------------------------------------------
// helpers

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), tag)
    }

    /// In memory (/dev/shm) when available: for tests that create thousands of files and
    /// need no real disk.
    fn new_fast(tag: &str) -> TempDir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            TempDir::new_in(shm, tag)
        } else {
            TempDir::new(tag)
        }
    }

    fn new_in(base: &Path, tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = base.join(format!(
            "opx-persist-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// xorshift64*: deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn open(dir: &Path, sync: SyncPolicy, seg: usize) -> PersistentStorage {
    match PersistentStorage::open(dir, sync, seg) {
        Ok(s) => s,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

fn entries_of(items: &[Vec<u8>]) -> Entries {
    let mut e = Entries::new();
    for i in items {
        e.push(i);
    }
    e
}

fn read_all(s: &dyn Storage) -> Vec<Vec<u8>> {
    let mut out = Entries::new();
    s.read_entries(s.compacted_idx(), s.log_len(), &mut out)
        .expect("read_entries");
    out.iter().map(|e| e.to_vec()).collect()
}

/// Entry `i` as written by batch `batch`: self-describing and of varying length.
fn entry_bytes(i: u64, batch: u64) -> Vec<u8> {
    let mut r = Rng::new(i ^ (batch << 32));
    let len = r.below(120) as usize;
    let mut v = format!("{i}:{batch}:").into_bytes();
    v.extend((0..len).map(|k| (r.next() as u8).wrapping_add(k as u8)));
    v
}

fn state_summary(s: &dyn Storage) -> (Ballot, Ballot, u64, u64, u64, Option<StopSign>) {
    (
        s.promise(),
        s.accepted_round(),
        s.decided_idx(),
        s.compacted_idx(),
        s.log_len(),
        s.stopsign(),
    )
}

fn assert_same(p: &dyn Storage, m: &dyn Storage, ctx: &str) {
    assert_eq!(state_summary(p), state_summary(m), "{ctx}: state differs");
    assert_eq!(read_all(p), read_all(m), "{ctx}: entries differ");
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        total += if md.is_dir() {
            dir_bytes(&e.path())
        } else {
            md.len().max(md.blocks() * 512)
        };
    }
    total
}

// ---------------------------------------------------------------------------------------
// behaviour: the same as MemoryStorage

#[test]
fn fresh_storage_is_empty_and_reopens_empty() {
    let d = TempDir::new("fresh");
    {
        let mut s = open(d.path(), SyncPolicy::Always, 4096);
        assert_eq!(s.log_len(), 0);
        assert_eq!(s.compacted_idx(), 0);
        assert_eq!(s.decided_idx(), 0);
        assert_eq!(s.promise(), Ballot::default());
        assert_eq!(s.stopsign(), None);
        let mut out = Entries::new();
        s.read_entries(0, 0, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(
            s.read_entries(0, 1, &mut out).unwrap_err().kind,
            StorageErrorKind::OutOfRange
        );
        s.sync_decided().unwrap();
    }
    let s = open(d.path(), SyncPolicy::Always, 4096);
    assert_eq!(s.log_len(), 0);
    // also reachable through the config-level entry point
    drop(s);
    let b = persistent::open(d.path(), SyncPolicy::Never, 4096).unwrap();
    assert_eq!(b.log_len(), 0);
}

#[test]
fn setters_getters_append_read_truncate_trim_and_reopen() {
    let d = TempDir::new("basic");
    let ss = StopSign {
        next_config_id: 2,
        nodes: vec![1, 2, 3],
        metadata: b"meta".to_vec(),
    };
    {
        let mut s = open(d.path(), SyncPolicy::Always, 512);
        let items: Vec<Vec<u8>> = (0..50).map(|i| entry_bytes(i, 1)).collect();
        s.append_entries(&entries_of(&items)).unwrap();
        s.set_promise(Ballot::new(3, 1, 2)).unwrap();
        s.set_accepted_round(Ballot::new(3, 1, 2)).unwrap();
        s.set_decided_idx(40).unwrap();
        s.set_stopsign(Some(ss.clone())).unwrap();
        assert_eq!(read_all(&s), items);
        s.sync_decided().unwrap();
        s.truncate(45).unwrap();
        assert_eq!(s.log_len(), 45);
        s.trim(30).unwrap();
        assert_eq!(s.compacted_idx(), 30);
        let mut out = Entries::new();
        assert_eq!(
            s.read_entries(29, 31, &mut out).unwrap_err().kind,
            StorageErrorKind::OutOfRange
        );
        assert_eq!(
            s.read_entries(44, 46, &mut out).unwrap_err().kind,
            StorageErrorKind::OutOfRange
        );
        assert_eq!(s.trim(46).unwrap_err().kind, StorageErrorKind::OutOfRange);
        s.read_entries(30, 45, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|e| e.to_vec()).collect::<Vec<_>>(),
            items[30..45].to_vec()
        );
        s.sync_decided().unwrap();
    }
    let s = open(d.path(), SyncPolicy::Always, 512);
    assert_eq!(s.log_len(), 45);
    assert_eq!(s.compacted_idx(), 30);
    assert_eq!(s.decided_idx(), 40);
    assert_eq!(s.promise(), Ballot::new(3, 1, 2));
    assert_eq!(s.accepted_round(), Ballot::new(3, 1, 2));
    assert_eq!(s.stopsign(), Some(ss));
    let items: Vec<Vec<u8>> = (30..45).map(|i| entry_bytes(i, 1)).collect();
    assert_eq!(read_all(&s), items);
}

#[test]
fn uncommitted_writes_are_gone_after_reopen() {
    let d = TempDir::new("uncommitted");
    {
        let mut s = open(d.path(), SyncPolicy::Always, 1024);
        s.append_entries(&entries_of(&[b"a".to_vec(), b"b".to_vec()]))
            .unwrap();
        s.set_decided_idx(1).unwrap();
        s.sync_decided().unwrap();
        s.append_entries(&entries_of(&[b"c".to_vec()])).unwrap();
        s.truncate(1).unwrap();
        s.append_entries(&entries_of(&[b"x".to_vec(), b"y".to_vec()]))
            .unwrap();
        s.set_promise(Ballot::new(9, 9, 9)).unwrap();
        s.set_decided_idx(2).unwrap();
        s.trim(1).unwrap();
        assert_eq!(s.log_len(), 3);
        // dropped without commit
    }
    let s = open(d.path(), SyncPolicy::Always, 1024);
    assert_eq!(s.log_len(), 2);
    assert_eq!(s.promise(), Ballot::default());
    assert_eq!(s.decided_idx(), 1);
    assert_eq!(s.compacted_idx(), 0);
    assert_eq!(read_all(&s), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn overwriting_committed_suffix_is_atomic_and_durable() {
    let d = TempDir::new("overwrite");
    let seg = 300; // a few entries per segment: the cut crosses segment boundaries
    {
        let mut s = open(d.path(), SyncPolicy::Always, seg);
        let items: Vec<Vec<u8>> = (0..40).map(|i| entry_bytes(i, 1)).collect();
        s.append_entries(&entries_of(&items)).unwrap();
        s.sync_decided().unwrap();
        // inside the active segment, then across segments, then to an exact boundary
        for (cut, batch) in [(38u64, 2u64), (20, 3), (5, 4), (0, 5)] {
            s.truncate(cut).unwrap();
            let new: Vec<Vec<u8>> = (cut..cut + 12).map(|i| entry_bytes(i, batch)).collect();
            s.append_entries(&entries_of(&new)).unwrap();
            s.set_accepted_round(Ballot::new(batch as u32, 0, 1))
                .unwrap();
            s.sync_decided().unwrap();
            assert_eq!(s.log_len(), cut + 12);
            assert_eq!(read_all(&s)[cut as usize..], new[..]);
        }
        assert!(!d.path().join("redo").exists());
    }
    let s = open(d.path(), SyncPolicy::Always, seg);
    assert_eq!(s.log_len(), 12);
    assert_eq!(s.accepted_round(), Ballot::new(5, 0, 1));
    let want: Vec<Vec<u8>> = (0..12).map(|i| entry_bytes(i, 5)).collect();
    assert_eq!(read_all(&s), want);
}

#[test]
fn appends_after_the_last_commit_survive_only_as_an_intact_prefix() {
    let d = TempDir::new("append-prefix");
    let seg = 400; // a few entries per segment: the appends roll segments
    let items: Vec<Vec<u8>> = (0..40).map(|i| entry_bytes(i, 1)).collect();
    {
        let mut s = open(d.path(), SyncPolicy::Always, seg);
        s.append_entries(&entries_of(&items[..10])).unwrap();
        s.set_decided_idx(10).unwrap();
        s.sync_decided().unwrap();
        // append-only commits write no commit record
        s.append_entries(&entries_of(&items[10..15])).unwrap();
        s.sync_decided().unwrap();
        s.append_entries(&entries_of(&items[15..20])).unwrap();
        s.sync_decided().unwrap();
        // appended, not committed: dropped with the storage
        s.append_entries(&entries_of(&items[20..25])).unwrap();
    }
    {
        let mut s = open(d.path(), SyncPolicy::Always, seg);
        assert_eq!(s.decided_idx(), 10);
        let got = read_all(&s);
        assert!((20..=25).contains(&got.len()), "{}", got.len());
        assert_eq!(got[..], items[..got.len()]);
        s.truncate(20).unwrap();
        // a batch with a state change whose record never reaches the disk (a crash after
        // the log was synced): its appends survive, its state change does not
        s.append_entries(&entries_of(&items[20..32])).unwrap();
        s.set_promise(Ballot::new(4, 0, 1)).unwrap();
        s.debug_fail_record_writes(1);
        assert!(s.sync_decided().is_err());
    }
    {
        let s = open(d.path(), SyncPolicy::Always, seg);
        assert_eq!(s.promise(), Ballot::default());
        assert_eq!(read_all(&s), items[..32].to_vec());
    }
    // a power loss that kept only part of the appended bytes: the log ends at the last
    // intact entry (cut the active segment in the middle of its last entry, then after its
    // first one)
    let last = segment_files(d.path(), "log").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    {
        let s = open(d.path(), SyncPolicy::Always, seg);
        assert_eq!(read_all(&s), items[..31].to_vec());
    }
    // a closed segment of the tail cut short: the later segments go too
    let segs = segment_files(d.path(), "log");
    assert!(segs.len() >= 3);
    let p = &segs[segs.len() - 2];
    let len = fs::metadata(p).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_len(len - 1).unwrap();
    drop(f);
    let mut s = open(d.path(), SyncPolicy::Always, seg);
    let got = read_all(&s);
    assert!((10..31).contains(&got.len()), "{}", got.len());
    assert_eq!(got[..], items[..got.len()]);
    let n = got.len();
    assert_eq!(segment_files(d.path(), "log").len(), segs.len() - 1);
    // and appending goes on from there
    s.append_entries(&entries_of(&items[n..])).unwrap();
    s.sync_decided().unwrap();
    drop(s);
    let s = open(d.path(), SyncPolicy::Always, seg);
    assert_eq!(read_all(&s), items);
}

#[test]
fn overwritten_entries_never_come_back() {
    let seg = 400;
    let old: Vec<Vec<u8>> = (0..30).map(|i| entry_bytes(i, 1)).collect();
    // (keep, new entries, whether the record write fails: a crash between the physical
    // truncation and the record) -- inside the active segment, across segments, a pure cut
    for fail in [false, true] {
        for (keep, n) in [(27u64, 1u64), (10, 5), (3, 0), (12, 18)] {
            let d = TempDir::new("overwrite-gone");
            let new: Vec<Vec<u8>> = (keep..keep + n).map(|i| entry_bytes(i, 2)).collect();
            let mut want = old[..keep as usize].to_vec();
            want.extend(new.iter().cloned());
            {
                let mut s = open(d.path(), SyncPolicy::Always, seg);
                s.append_entries(&entries_of(&old)).unwrap();
                s.sync_decided().unwrap(); // append-only: no record holds the 30 entries
                s.truncate(keep).unwrap();
                s.append_entries(&entries_of(&new)).unwrap();
                if fail {
                    s.debug_fail_record_writes(1);
                    assert!(s.sync_decided().is_err());
                    assert!(d.path().join("redo").exists());
                } else {
                    s.sync_decided().unwrap();
                    // append-only growth after the overwrite
                    s.append_entries(&entries_of(&[entry_bytes(keep + n, 3)]))
                        .unwrap();
                    s.sync_decided().unwrap();
                    want.push(entry_bytes(keep + n, 3));
                }
            }
            let ctx = format!("keep {keep}, {n} new, record fails: {fail}");
            for _ in 0..2 {
                let s = open(d.path(), SyncPolicy::Always, seg);
                assert_eq!(read_all(&s), want, "{ctx}");
                assert!(!d.path().join("redo").exists(), "{ctx}");
            }
        }
    }
}

/// Random operations on MemoryStorage and PersistentStorage side by side; the persistent one
/// is reopened from time to time (after a commit, or without one: then both go back to the
/// last committed state).
fn differential(seed: u64, sync: SyncPolicy, seg: usize, steps: usize) {
    let d = TempDir::new("diff");
    let mut rng = Rng::new(seed);
    let mut p = open(d.path(), sync, seg);
    let mut m = MemoryStorage::new();
    let mut m_committed = m.clone();
    let mut batch = 0u64;
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        match rng.below(14) {
            0..=3 => {
                batch += 1;
                let n = rng.below(8);
                let start = m.log_len();
                let items: Vec<Vec<u8>> =
                    (start..start + n).map(|i| entry_bytes(i, batch)).collect();
                let e = entries_of(&items);
                p.append_entries(&e).unwrap();
                m.append_entries(&e).unwrap();
            }
            4 => {
                let c = m.compacted_idx();
                let len = c + rng.below(m.log_len() - c + 2);
                p.truncate(len).unwrap();
                m.truncate(len).unwrap();
            }
            5 => {
                let hi = m.decided_idx().min(m.log_len());
                let idx = m.compacted_idx() + rng.below(hi.saturating_sub(m.compacted_idx()) + 1);
                p.trim(idx).unwrap();
                m.trim(idx).unwrap();
            }
            6 => {
                let b = Ballot::new(rng.below(5) as u32, rng.below(3) as u32, rng.below(4));
                p.set_promise(b).unwrap();
                m.set_promise(b).unwrap();
                let b = Ballot::new(rng.below(5) as u32, rng.below(3) as u32, rng.below(4));
                p.set_accepted_round(b).unwrap();
                m.set_accepted_round(b).unwrap();
            }
            7 => {
                let idx = m.compacted_idx().max(rng.below(m.log_len() + 1));
                p.set_decided_idx(idx).unwrap();
                m.set_decided_idx(idx).unwrap();
            }
            8 => {
                let ss = if rng.below(2) == 0 {
                    None
                } else {
                    Some(StopSign {
                        next_config_id: rng.below(9) as u32,
                        nodes: (0..rng.below(4)).collect(),
                        metadata: vec![7; rng.below(5) as usize],
                    })
                };
                p.set_stopsign(ss.clone()).unwrap();
                m.set_stopsign(ss).unwrap();
            }
            9 => {
                let len = m.log_len();
                let c = m.compacted_idx();
                let from = rng.below(len + 2);
                let to = from + rng.below(len + 2 - from.min(len + 1));
                let mut a = Entries::new();
                let ra = p.read_entries(from, to, &mut a);
                if from < c || to > len {
                    // (MemoryStorage checks the range before it touches `out`.)
                    let rb = m.read_entries(from, to, &mut Entries::new());
                    assert_eq!(ra.unwrap_err().kind, rb.unwrap_err().kind, "{ctx}");
                    assert!(a.is_empty(), "{ctx}");
                } else {
                    ra.unwrap();
                    let all = read_all(&m);
                    let want = entries_of(&all[(from - c) as usize..(to - c) as usize]);
                    assert_eq!(a, want, "{ctx}: read {from}..{to}");
                }
            }
            10..=11 => {
                p.sync_decided().unwrap();
                m.sync_decided().unwrap();
                m_committed = m.clone();
            }
            12 => {
                p.sync_decided().unwrap();
                m_committed = m.clone();
                drop(p);
                p = open(d.path(), sync, seg);
            }
            _ => {
                drop(p);
                p = open(d.path(), sync, seg);
                m = m_committed.clone();
            }
        }
        assert_same(&p, &m, &ctx);
    }
}

#[test]
fn behaves_like_memory_storage_never_sync() {
    for seed in 1..=6 {
        differential(seed, SyncPolicy::Never, 256, 600);
    }
}

#[test]
fn behaves_like_memory_storage_with_many_messages_per_segment() {
    // Segments of many messages: reads that start inside a segment search its index.
    for seed in 21..=23 {
        differential(seed, SyncPolicy::Never, 1 << 14, 800);
    }
}

#[test]
fn behaves_like_memory_storage_always_sync() {
    differential(99, SyncPolicy::Always, 4096, 300);
}

#[test]
fn commit_without_changes_writes_nothing() {
    let d = TempDir::new("noop");
    let mut s = open(d.path(), SyncPolicy::Always, 4096);
    s.append_entries(&entries_of(&[b"a".to_vec()])).unwrap();
    s.set_promise(Ballot::new(1, 0, 1)).unwrap();
    s.sync_decided().unwrap();
    let state = d.path().join("state");
    let (bytes, ino) = (
        fs::read(&state).unwrap(),
        fs::metadata(&state).unwrap().ino(),
    );
    let syncs = PersistentStorage::debug_sync_calls();
    s.sync_decided().unwrap();
    s.set_promise(Ballot::new(1, 0, 1)).unwrap(); // same value: nothing changed
    s.sync_decided().unwrap();
    assert_eq!(fs::read(&state).unwrap(), bytes);
    assert_eq!(PersistentStorage::debug_sync_calls(), syncs);
    s.set_promise(Ballot::new(2, 0, 1)).unwrap();
    s.sync_decided().unwrap();
    // written in place: same file, same size, new bytes
    let after = fs::read(&state).unwrap();
    assert_ne!(after, bytes);
    assert_eq!(after.len(), bytes.len());
    assert_eq!(fs::metadata(&state).unwrap().ino(), ino);
    // many no-op commits are cheap
    let t = Instant::now();
    for _ in 0..100_000 {
        s.sync_decided().unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn append_and_trim_forever_keeps_disk_bounded() {
    let d = TempDir::new("bounded");
    let seg = 64 * 1024;
    let mut s = open(d.path(), SyncPolicy::Never, seg);
    let payload = vec![0xabu8; 100];
    let mut max_seen = 0;
    let total = 200_000u64;
    let batch = 1000u64;
    let live = 5000u64;
    for b in 0..total / batch {
        let mut e = Entries::with_capacity(batch as usize, batch as usize * 100);
        for _ in 0..batch {
            e.push(&payload);
        }
        s.append_entries(&e).unwrap();
        let len = s.log_len();
        s.set_decided_idx(len).unwrap();
        s.trim(len.saturating_sub(live)).unwrap();
        s.sync_decided().unwrap();
        if b % 10 == 0 {
            max_seen = max_seen.max(dir_bytes(d.path()));
        }
    }
    assert_eq!(s.log_len(), total);
    let live_bytes = live * (100 + 20);
    // the live entries, at most two more segments, and their indexes
    let bound = live_bytes + 3 * seg as u64 + 64 * 1024;
    assert!(max_seen < bound, "disk use {max_seen} > bound {bound}");
    let mut out = Entries::new();
    s.read_entries(total - 10, total, &mut out).unwrap();
    assert!(out.iter().all(|e| e == &payload[..]));
    drop(s);
    let s = open(d.path(), SyncPolicy::Never, seg);
    assert_eq!(s.log_len(), total);
    assert_eq!(s.compacted_idx(), total - live);
    assert_eq!(read_all(&s).len() as u64, live);
}

#[test]
fn entry_larger_than_a_segment_is_refused() {
    let d = TempDir::new("big");
    let mut s = open(d.path(), SyncPolicy::Never, 4096);
    let e = entries_of(&[vec![0u8; 5000]]);
    let err = s.append_entries(&e).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Io);
    assert!(err.message.contains("segment"), "{err}");
    assert_eq!(s.log_len(), 0);
    // A segment holds its 2-byte magic and one message: a 20-byte header, the 12-byte
    // payload prefix, a 4-byte length and the entry.
    let e = entries_of(&[vec![1u8; 4096 - 37]]);
    assert_eq!(s.append_entries(&e).unwrap_err().kind, StorageErrorKind::Io);
    let e = entries_of(&[vec![1u8; 4096 - 38]]);
    s.append_entries(&e).unwrap();
    s.append_entries(&e).unwrap();
    s.sync_decided().unwrap();
    assert_eq!(read_all(&s).len(), 2);
}

#[test]
fn large_batches_of_small_entries_in_a_large_segment() {
    // commitlog grows the index it writes through a memory map by half at most once per
    // append (and panics past that): big batches must be cut to what it can take.
    let d = TempDir::new("big-batches");
    let mut s = open(d.path(), SyncPolicy::Never, 64 << 20);
    let mut want = 0u64;
    for n in [2000u64, 610, 1000, 1000, 5000, 20_000, 1, 100_000, 3] {
        let e = entries_of(&vec![vec![0x11u8; 16]; n as usize]);
        s.append_entries(&e).unwrap();
        s.sync_decided().unwrap();
        want += n;
        assert_eq!(s.log_len(), want);
    }
    let e = entries_of(&vec![Vec::new(); 300_000]);
    s.append_entries(&e).unwrap();
    s.sync_decided().unwrap();
    want += 300_000;
    drop(s);
    let s = open(d.path(), SyncPolicy::Never, 64 << 20);
    assert_eq!(s.log_len(), want);
    let mut out = Entries::new();
    s.read_entries(want - 300_001, want - 299_999, &mut out)
        .unwrap();
    assert_eq!(out.get(0), Some(&[0x11u8; 16][..]));
    assert_eq!(out.get(1), Some(&[][..]));
    // Several entries share a message, and a message stays small even when its entries
    // are empty (their lengths count): walk the segment's messages.
    let seg = segment_files(d.path(), "log").pop().unwrap();
    let bytes = fs::read(seg).unwrap();
    let (mut pos, mut msgs, mut largest) = (2usize, 0u64, 0usize);
    while pos + 20 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        largest = largest.max(size);
        pos += 20 + size;
        msgs += 1;
    }
    assert_eq!(pos, bytes.len());
    assert!(msgs < want / 100, "{msgs} messages for {want} entries");
    assert!(largest <= (64 << 10) + 12, "a message of {largest} bytes");
}

// ---------------------------------------------------------------------------------------
// lock, I/O errors, full disk

#[test]
fn second_open_of_a_held_directory_is_locked() {
    let d = TempDir::new("lock");
    let s = open(d.path(), SyncPolicy::Never, 4096);
    let err = PersistentStorage::open(d.path(), SyncPolicy::Never, 4096)
        .err()
        .expect("second open must fail");
    assert_eq!(err.kind, StorageErrorKind::Locked);
    assert!(err.message.contains("in use"), "{err}");
    // the failed attempt did not disturb the holder's lock
    let err = PersistentStorage::open(d.path(), SyncPolicy::Never, 4096)
        .err()
        .expect("still held");
    assert_eq!(err.kind, StorageErrorKind::Locked);
    drop(s);
    let _again = open(d.path(), SyncPolicy::Never, 4096);
}

#[test]
fn a_forked_child_does_not_keep_the_lock() {
    let d = TempDir::new("fork");
    let s = open(d.path(), SyncPolicy::Never, 4096);
    // A child forked without exec holds copies of every descriptor (a flock would stay
    // held through them); it only sleeps and exits.
    // SAFETY: the child calls only async-signal-safe functions (sleep, _exit).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::sleep(5);
            libc::_exit(0);
        }
    }
    assert!(pid > 0, "fork failed");
    drop(s);
    let reopened = PersistentStorage::open(d.path(), SyncPolicy::Never, 4096);
    // SAFETY: plain syscalls on the child we forked.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    reopened.expect("the lock is free once the storage is dropped");
}

#[test]
fn unwritable_path_is_an_io_error() {
    let d = TempDir::new("unwritable");
    fs::create_dir_all(d.path()).unwrap();
    let file = d.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    let err = PersistentStorage::open(&file.join("store"), SyncPolicy::Always, 4096)
        .err()
        .expect("a path under a regular file cannot be a storage");
    assert_eq!(err.kind, StorageErrorKind::Io);
    assert!(err.message.contains("plain-file"), "{err}");
    let err = PersistentStorage::open(d.path(), SyncPolicy::Always, 10)
        .err()
        .expect("tiny segments are refused");
    assert_eq!(err.kind, StorageErrorKind::Io);
}

#[test]
fn failed_record_write_is_retried_and_a_crash_replays_the_redo() {
    let d = TempDir::new("redo");
    let seg = 400;
    let items: Vec<Vec<u8>> = (0..30).map(|i| entry_bytes(i, 1)).collect();
    let new: Vec<Vec<u8>> = (10..25).map(|i| entry_bytes(i, 2)).collect();
    {
        let mut s = open(d.path(), SyncPolicy::Always, seg);
        s.append_entries(&entries_of(&items)).unwrap();
        s.sync_decided().unwrap();
        // an overwriting batch whose commit record write fails (torn)
        s.debug_fail_record_writes(1);
        s.truncate(10).unwrap();
        s.append_entries(&entries_of(&new)).unwrap();
        s.set_accepted_round(Ballot::new(2, 0, 1)).unwrap();
        assert_eq!(s.sync_decided().unwrap_err().kind, StorageErrorKind::Io);
        assert!(d.path().join("redo").exists());
        // reads still see the batch
        assert_eq!(read_all(&s)[10..], new[..]);
        // "crash": drop without a successful commit
    }
    {
        let mut s = open(d.path(), SyncPolicy::Always, seg);
        assert!(!d.path().join("redo").exists());
        assert_eq!(s.accepted_round(), Ballot::new(2, 0, 1));
        assert_eq!(s.log_len(), 25);
        assert_eq!(read_all(&s)[..10], items[..10]);
        assert_eq!(read_all(&s)[10..], new[..]);
        // a failed plain commit, then a successful retry
        s.debug_fail_record_writes(2);
        s.append_entries(&entries_of(&[b"z".to_vec()])).unwrap();
        s.set_decided_idx(26).unwrap();
        assert!(s.sync_decided().is_err());
        assert!(s.sync_decided().is_err());
        s.sync_decided().unwrap();
        assert_eq!(s.log_len(), 26);
    }
    let s = open(d.path(), SyncPolicy::Always, seg);
    assert_eq!(s.log_len(), 26);
    assert_eq!(s.decided_idx(), 26);
    assert_eq!(read_all(&s)[25], b"z".to_vec());
}

#[test]
fn an_overwrite_inside_a_message_rewrites_its_kept_entries_and_survives_a_crash() {
    // One batch is one message here (a large segment): cutting the log at 10 falls inside
    // it, so the batch that overwrites must also rewrite entries 0..10.
    let d = TempDir::new("redo-mid");
    let seg = 1 << 20;
    let items: Vec<Vec<u8>> = (0..30).map(|i| entry_bytes(i, 1)).collect();
    let more: Vec<Vec<u8>> = (30..40).map(|i| entry_bytes(i, 1)).collect();
    let new: Vec<Vec<u8>> = (10..25).map(|i| entry_bytes(i, 2)).collect();
    {
        let mut s = open(d.path(), SyncPolicy::Always, seg);
        s.append_entries(&entries_of(&items)).unwrap();
        s.sync_decided().unwrap();
        s.append_entries(&entries_of(&more)).unwrap();
        s.sync_decided().unwrap();
        s.debug_fail_record_writes(1);
        s.truncate(10).unwrap();
        s.append_entries(&entries_of(&new)).unwrap();
        s.set_accepted_round(Ballot::new(2, 0, 1)).unwrap();
        assert_eq!(s.sync_decided().unwrap_err().kind, StorageErrorKind::Io);
        assert!(d.path().join("redo").exists());
        assert_eq!(read_all(&s)[..10], items[..10]);
        assert_eq!(read_all(&s)[10..], new[..]);
    }
    {
        let mut s = open(d.path(), SyncPolicy::Always, seg);
        assert!(!d.path().join("redo").exists());
        assert_eq!(s.log_len(), 25);
        assert_eq!(read_all(&s)[..10], items[..10]);
        assert_eq!(read_all(&s)[10..], new[..]);
        // and once more without a failure, cutting inside the rewritten message
        s.truncate(3).unwrap();
        s.append_entries(&entries_of(&[b"x".to_vec()])).unwrap();
        s.sync_decided().unwrap();
        assert_eq!(s.log_len(), 4);
    }
    let s = open(d.path(), SyncPolicy::Always, seg);
    assert_eq!(s.log_len(), 4);
    assert_eq!(read_all(&s)[..3], items[..3]);
    assert_eq!(read_all(&s)[3], b"x".to_vec());
}

#[test]
fn a_torn_record_write_keeps_the_last_commit_and_the_retry_writes_the_same_slot() {
    let d = TempDir::new("torn-record");
    let state = d.path().join("state");
    {
        let mut s = open(d.path(), SyncPolicy::Always, 4096);
        s.append_entries(&entries_of(&[b"a".to_vec(), b"b".to_vec()]))
            .unwrap();
        s.set_promise(Ballot::new(1, 0, 1)).unwrap();
        s.sync_decided().unwrap();
        let durable = fs::read(&state).unwrap();
        s.append_entries(&entries_of(&[b"c".to_vec()])).unwrap();
        s.set_promise(Ballot::new(2, 0, 1)).unwrap();
        // two failed attempts, each tearing the slot it writes: never the current one
        s.debug_fail_record_writes(2);
        assert_eq!(s.sync_decided().unwrap_err().kind, StorageErrorKind::Io);
        assert_eq!(s.sync_decided().unwrap_err().kind, StorageErrorKind::Io);
        let torn = fs::read(&state).unwrap();
        let half = durable.len() / 2;
        let same = |k: usize| durable[k * half..(k + 1) * half] == torn[k * half..(k + 1) * half];
        assert!(same(0) != same(1), "exactly one slot was written");
        // crash
    }
    {
        let mut s = open(d.path(), SyncPolicy::Always, 4096);
        assert_eq!(s.promise(), Ballot::new(1, 0, 1));
        // the failed batch's append may survive (it was synced before the record)
        let got = read_all(&s);
        assert_eq!(got[..2], [b"a".to_vec(), b"b".to_vec()]);
        assert!(
            got.len() <= 3 && got[2..].iter().all(|e| e == b"c"),
            "{got:?}"
        );
        s.truncate(2).unwrap();
        s.append_entries(&entries_of(&[b"c".to_vec()])).unwrap();
        s.set_promise(Ballot::new(2, 0, 1)).unwrap();
        s.debug_fail_record_writes(1);
        assert!(s.sync_decided().is_err());
        s.sync_decided().unwrap();
    }
    let s = open(d.path(), SyncPolicy::Always, 4096);
    assert_eq!(s.promise(), Ballot::new(2, 0, 1));
    assert_eq!(read_all(&s).len(), 3);
}

#[test]
fn an_append_costs_one_fdatasync_and_a_state_update_one() {
    let d = TempDir::new("syncs");
    let mut s = open(d.path(), SyncPolicy::Always, 1 << 20);
    fn cost(s: &mut PersistentStorage) -> u64 {
        let before = PersistentStorage::debug_sync_calls();
        s.sync_decided().unwrap();
        PersistentStorage::debug_sync_calls() - before
    }
    let one = entries_of(&[vec![7u8; 16]]);
    for i in 0..20 {
        s.append_entries(&one).unwrap();
        assert_eq!(cost(&mut s), 1, "append-only commit {i}");
    }
    let batch = entries_of(&vec![vec![8u8; 16]; 1000]);
    s.append_entries(&batch).unwrap();
    assert_eq!(cost(&mut s), 1, "a batch of 1000");
    s.append_entries(&one).unwrap();
    s.set_decided_idx(10).unwrap();
    s.set_accepted_round(Ballot::new(1, 0, 1)).unwrap();
    assert_eq!(cost(&mut s), 2, "entries and state");
    s.set_decided_idx(11).unwrap();
    assert_eq!(cost(&mut s), 1, "decided index");
    s.set_promise(Ballot::new(2, 0, 1)).unwrap();
    assert_eq!(cost(&mut s), 1, "promise");
    s.trim(5).unwrap();
    assert_eq!(cost(&mut s), 1, "trim");
    s.set_stopsign(Some(StopSign {
        next_config_id: 2,
        nodes: vec![1, 2, 3],
        metadata: b"m".to_vec(),
    }))
    .unwrap();
    assert_eq!(cost(&mut s), 1, "stopsign");
    assert_eq!(cost(&mut s), 0, "nothing changed");
    drop(s);
    let mut s = open(d.path(), SyncPolicy::Never, 1 << 20);
    s.append_entries(&one).unwrap();
    s.set_decided_idx(12).unwrap();
    assert_eq!(cost(&mut s), 0, "SyncPolicy::Never");
}

#[test]
fn the_decided_index_is_lazy_and_synced_on_request() {
    let d = TempDir::new("lazy-decided");
    fn cost(s: &mut PersistentStorage, all: bool) -> u64 {
        let before = PersistentStorage::debug_sync_calls();
        if all {
            s.sync_decided().unwrap();
        } else {
            s.commit().unwrap();
        }
        PersistentStorage::debug_sync_calls() - before
    }
    let one = entries_of(&[vec![7u8; 16]]);
    {
        let mut s = open(d.path(), SyncPolicy::Always, 1 << 20);
        assert!(s.commit_waits_for_disk());
        for _ in 0..5 {
            s.append_entries(&one).unwrap();
        }
        s.set_decided_idx(3).unwrap();
        assert_eq!(
            cost(&mut s, false),
            1,
            "appends and the decided index: the log only"
        );
        assert_eq!((s.decided_idx(), s.durable_decided_idx()), (3, 0));
        s.set_decided_idx(4).unwrap();
        assert_eq!(cost(&mut s, false), 0, "only the decided index: lazy");
        assert_eq!(cost(&mut s, true), 1, "sync_decided writes the record");
        assert_eq!((s.decided_idx(), s.durable_decided_idx()), (4, 4));
        s.set_decided_idx(5).unwrap();
        s.set_promise(Ballot::new(3, 0, 2)).unwrap();
        assert_eq!(
            cost(&mut s, false),
            1,
            "a record write carries the decided index"
        );
        assert_eq!(s.durable_decided_idx(), 5);
        s.append_entries(&one).unwrap();
        s.set_decided_idx(6).unwrap();
        s.commit().unwrap();
        assert_eq!((s.decided_idx(), s.durable_decided_idx()), (6, 5));
    }
    // Reopened (as after a crash): the lazy index is lost, the durable one is there, and
    // so is every committed entry.
    let s = open(d.path(), SyncPolicy::Always, 1 << 20);
    assert_eq!(
        (s.decided_idx(), s.durable_decided_idx(), s.log_len()),
        (5, 5, 6)
    );
    assert_eq!(s.promise(), Ballot::new(3, 0, 2));
    assert!(!open(&d.path().join("never"), SyncPolicy::Never, 1 << 20).commit_waits_for_disk());
}

#[test]
fn a_record_larger_than_a_slot_moves_to_a_larger_file_once() {
    let d = TempDir::new("big-record");
    let state = d.path().join("state");
    let big = StopSign {
        next_config_id: 2,
        nodes: (1..=100).collect(),
        metadata: vec![0xab; 10_000],
    };
    {
        let mut s = open(d.path(), SyncPolicy::Always, 4096);
        let small = fs::metadata(&state).unwrap().len();
        s.append_entries(&entries_of(&[b"a".to_vec()])).unwrap();
        s.set_stopsign(Some(big.clone())).unwrap();
        s.sync_decided().unwrap();
        let len = fs::metadata(&state).unwrap().len();
        assert!(len > small && len >= 2 * 10_800, "{small} -> {len}");
        // later records fit: written in place again
        let ino = fs::metadata(&state).unwrap().ino();
        let before = PersistentStorage::debug_sync_calls();
        s.set_decided_idx(1).unwrap();
        s.sync_decided().unwrap();
        assert_eq!(PersistentStorage::debug_sync_calls() - before, 1);
        assert_eq!(fs::metadata(&state).unwrap().ino(), ino);
        assert_eq!(fs::metadata(&state).unwrap().len(), len);
    }
    let mut s = open(d.path(), SyncPolicy::Always, 4096);
    assert_eq!(s.stopsign(), Some(big));
    assert_eq!(s.decided_idx(), 1);
    s.set_stopsign(None).unwrap();
    s.sync_decided().unwrap();
    drop(s);
    let s = open(d.path(), SyncPolicy::Always, 4096);
    assert_eq!(s.stopsign(), None);
    assert_eq!(read_all(&s), vec![b"a".to_vec()]);
}

#[test]
fn commit_record_slots_fall_back_to_the_previous_record() {
    let d = TempDir::new("slots");
    let state = d.path().join("state");
    {
        let mut s = open(d.path(), SyncPolicy::Always, 4096);
        s.append_entries(&entries_of(&[b"a".to_vec(), b"b".to_vec()]))
            .unwrap();
        s.set_promise(Ballot::new(1, 0, 1)).unwrap();
        s.sync_decided().unwrap();
        s.append_entries(&entries_of(&[b"c".to_vec()])).unwrap();
        s.set_promise(Ballot::new(2, 0, 1)).unwrap();
        s.sync_decided().unwrap();
    }
    let pristine = fs::read(&state).unwrap();
    let half = pristine.len() / 2;
    assert!(half >= 4096 && half.is_power_of_two());
    // Which slot holds the newest record? (Each slot starts with a 20-byte frame header,
    // then the sequence number.)
    let seq = |k: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&pristine[k * half + 20..k * half + 28]);
        u64::from_le_bytes(a)
    };
    assert_eq!(seq(0).abs_diff(seq(1)), 1);
    let newest = usize::from(seq(1) > seq(0));
    let older = 1 - newest;

    // the older slot damaged: the newest record, untouched
    let mut b = pristine.clone();
    b[older * half + 25] ^= 0x40;
    fs::write(&state, &b).unwrap();
    let s = open(d.path(), SyncPolicy::Never, 4096);
    assert_eq!((s.promise(), s.log_len()), (Ballot::new(2, 0, 1), 3));
    drop(s);

    // the newest slot torn (a crash while it was written): the previous record; the next
    // commit writes over the torn slot and keeps the previous one
    let mut b = pristine.clone();
    for x in &mut b[newest * half + 20..newest * half + 60] {
        *x = 0;
    }
    fs::write(&state, &b).unwrap();
    {
        // (the entry the torn commit appended follows the previous record's length: it is
        // kept, as after a crash before that record was written)
        let mut s = open(d.path(), SyncPolicy::Always, 4096);
        assert_eq!((s.promise(), s.log_len()), (Ballot::new(1, 0, 1), 3));
        assert_eq!(
            read_all(&s),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        s.set_promise(Ballot::new(3, 0, 1)).unwrap();
        s.sync_decided().unwrap();
    }
    let after = fs::read(&state).unwrap();
    assert_eq!(
        after[older * half..(older + 1) * half],
        pristine[older * half..(older + 1) * half]
    );
    let s = open(d.path(), SyncPolicy::Never, 4096);
    assert_eq!((s.promise(), s.log_len()), (Ballot::new(3, 0, 1), 3));
    drop(s);

    // both slots damaged, a file of the wrong length, a missing file: refused
    for damage in 0..3 {
        let mut b = after.clone();
        match damage {
            0 => {
                b[30] ^= 1;
                b[half + 30] ^= 1;
            }
            1 => b.truncate(half),
            _ => b.extend_from_slice(&[0; 4096]),
        }
        fs::write(&state, &b).unwrap();
        let err = PersistentStorage::open(d.path(), SyncPolicy::Never, 4096)
            .err()
            .expect("damaged state file");
        assert_eq!(err.kind, StorageErrorKind::Corruption, "{err}");
        assert!(err.message.contains("state"), "{err}");
    }
    // a state file of the first (unreleased) single-record format is refused too
    fs::write(&state, &after[..100]).unwrap();
    let err = PersistentStorage::open(d.path(), SyncPolicy::Never, 4096)
        .err()
        .expect("old format");
    assert_eq!(err.kind, StorageErrorKind::Corruption, "{err}");
}

#[test]
fn a_lost_active_index_is_rebuilt_at_opening() {
    // The active index is never fsynced: after a power loss it may hold anything commitlog
    // wrote through its memory map, or nothing.
    let d = TempDir::new("lost-index");
    let items: Vec<Vec<u8>> = (0..30).map(|i| entry_bytes(i, 1)).collect();
    {
        let mut s = open(d.path(), SyncPolicy::Always, 600);
        for chunk in items.chunks(3) {
            s.append_entries(&entries_of(chunk)).unwrap();
            s.sync_decided().unwrap();
        }
    }
    let idx = segment_files(d.path(), "index").pop().unwrap();
    for damage in 0..2 {
        let len = fs::metadata(&idx).unwrap().len() as usize;
        if damage == 0 {
            fs::write(&idx, vec![0u8; len]).unwrap();
        } else {
            fs::write(&idx, b"").unwrap();
        }
        let mut s = open(d.path(), SyncPolicy::Always, 600);
        assert_eq!(read_all(&s), items);
        s.append_entries(&entries_of(&[b"more".to_vec()])).unwrap();
        s.sync_decided().unwrap();
        s.truncate(30).unwrap();
        s.sync_decided().unwrap();
    }
}

#[test]
fn full_disk_is_an_error_not_a_crash() {
    let d = TempDir::new("tmpfs");
    fs::create_dir_all(d.path()).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
        .arg(d.path())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        println!("note: skipping the full-disk test (cannot mount a tmpfs here)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _u = Unmount(d.path());
    let store = d.path().join("store");
    let mut committed = 0u64;
    let err = {
        let mut s = open(&store, SyncPolicy::Always, 64 * 1024);
        let mut batch = 0;
        loop {
            batch += 1;
            let items: Vec<Vec<u8>> = (0..50).map(|_| vec![batch as u8; 500]).collect();
            s.append_entries(&entries_of(&items)).unwrap();
            match s.sync_decided() {
                Ok(()) => committed = s.log_len(),
                Err(e) => {
                    // still usable: reads see everything, committed or not
                    assert_eq!(read_all(&s).len() as u64, s.log_len());
                    assert!(s.sync_decided().is_err());
                    break e;
                }
            }
            assert!(batch < 1000, "the disk never filled up");
        }
    };
    assert_eq!(err.kind, StorageErrorKind::Io, "{err}");
    println!("full disk after {committed} entries: {err}");
    assert!(committed > 0);
    let s = open(&store, SyncPolicy::Always, 64 * 1024);
    assert_eq!(s.log_len(), committed);
    assert_eq!(read_all(&s).len() as u64, committed);
}

// ---------------------------------------------------------------------------------------
// torn and corrupt files

/// Builds a storage of several segments and returns the entries and the length in the commit
/// record; the last two batches (5 entries each, one message each) are appended after that
/// record (their entries follow the record's length in the log, as after a crash before the
/// record of a batch with state changes).
fn build_damage_fixture(dir: &Path, seg: usize) -> (Vec<Vec<u8>>, u64) {
    let items: Vec<Vec<u8>> = (0..60).map(|i| entry_bytes(i, 1)).collect();
    let mut s = open(dir, SyncPolicy::Always, seg);
    s.append_entries(&entries_of(&items[..50])).unwrap();
    s.set_decided_idx(50).unwrap();
    s.sync_decided().unwrap();
    let state = fs::read(dir.join("state")).unwrap();
    s.append_entries(&entries_of(&items[50..55])).unwrap();
    s.commit().unwrap();
    s.append_entries(&entries_of(&items[55..])).unwrap();
    s.set_decided_idx(60).unwrap();
    s.sync_decided().unwrap();
    drop(s);
    // Make the last batch a tail after the record: the commit record says 50 entries.
    fs::write(dir.join("state"), state).unwrap();
    (items, 50)
}

fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("log")).unwrap();
    fs::copy(from.join("state"), to.join("state")).unwrap();
    for e in fs::read_dir(from.join("log")).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, to.join("log").join(p.file_name().unwrap())).unwrap();
    }
}

/// Opens `dir` and checks the outcome: either `Corruption`, or a storage of at least
/// `committed` entries and at most `items.len()` (entries appended after the commit record
/// survive as far as they are intact) whose every entry read is either correct or a
/// `Corruption` error. Returns whether it opened.
fn open_checked(dir: &Path, seg: usize, items: &[Vec<u8>], committed: u64, ctx: &str) -> bool {
    let s = match PersistentStorage::open(dir, SyncPolicy::Never, seg) {
        Ok(s) => s,
        Err(e) => {
            assert_eq!(e.kind, StorageErrorKind::Corruption, "{ctx}: {e}");
            return false;
        }
    };
    let committed_min = committed;
    let committed = s.log_len();
    assert!(
        (committed_min..=items.len() as u64).contains(&committed),
        "{ctx}: {committed} entries"
    );
    for i in 0..committed {
        let mut out = Entries::new();
        match s.read_entries(i, i + 1, &mut out) {
            Ok(()) => assert_eq!(out.get(0), Some(&items[i as usize][..]), "{ctx}: entry {i}"),
            Err(e) => assert_eq!(e.kind, StorageErrorKind::Corruption, "{ctx}: {e}"),
        }
    }
    // ranges too (one read call over several entries and segments)
    let mut out = Entries::new();
    if s.read_entries(0, committed, &mut out).is_ok() {
        let got: Vec<Vec<u8>> = out.iter().map(|e| e.to_vec()).collect();
        assert_eq!(got, items[..committed as usize].to_vec(), "{ctx}");
    }
    true
}

#[test]
fn torn_tails_are_dropped_and_torn_committed_data_is_refused() {
    let seg = 700;
    let d = TempDir::new("torn");
    let (items, committed) = build_damage_fixture(d.path(), seg);
    let segs = segment_files(d.path(), "log");
    let idxs = segment_files(d.path(), "index");
    assert!(segs.len() >= 4, "fixture should span several segments");

    // cut the tail after the record in the last segment: recovers with the committed entries
    // and the intact part of the tail
    let last = segs.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    assert!(open_checked(d.path(), seg, &items, committed, "cut tail"));
    {
        let s = open(d.path(), SyncPolicy::Never, seg);
        // The torn last message (the last batch) is dropped, the one before it is kept.
        assert_eq!(s.log_len(), 55, "the torn last message is dropped");
    }
    // reopen again after the repair: appending continues correctly
    {
        let mut s = open(d.path(), SyncPolicy::Always, seg);
        s.truncate(50).unwrap();
        s.append_entries(&entries_of(&items[50..])).unwrap();
        s.sync_decided().unwrap();
    }
    assert!(open_checked(d.path(), seg, &items, 60, "after re-append"));

    // cut every index file by 3 bytes, and delete one: indexes are rebuilt
    let d2 = TempDir::new("torn-index");
    let (items, committed) = build_damage_fixture(d2.path(), seg);
    for p in segment_files(d2.path(), "index") {
        let len = fs::metadata(&p).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 3).unwrap();
    }
    fs::remove_file(&segment_files(d2.path(), "index")[1]).unwrap();
    assert!(open_checked(
        d2.path(),
        seg,
        &items,
        committed,
        "torn indexes"
    ));
    // and once more, now that they are repaired
    assert!(open_checked(
        d2.path(),
        seg,
        &items,
        committed,
        "repaired indexes"
    ));
    drop(idxs);

    // cut committed bytes off a closed segment and off the last committed segment
    for which in 0..2 {
        let d3 = TempDir::new("torn-committed");
        let (items, committed) = build_damage_fixture(d3.path(), seg);
        // commit the tail first so the last segment's end is in the commit record
        {
            let mut s = open(d3.path(), SyncPolicy::Always, seg);
            s.set_decided_idx(61).unwrap();
            s.sync_decided().unwrap();
        }
        let segs = segment_files(d3.path(), "log");
        let p = if which == 0 {
            &segs[0]
        } else {
            segs.last().unwrap()
        };
        let len = fs::metadata(p).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(len - 5).unwrap();
        drop(f);
        let err = PersistentStorage::open(d3.path(), SyncPolicy::Never, seg)
            .err()
            .expect("committed data is missing");
        assert_eq!(err.kind, StorageErrorKind::Corruption, "{err}");
        let _ = (items, committed);
    }

    // a state file of the wrong length, or with both slots damaged, is refused (one
    // damaged slot: see commit_record_slots_fall_back_to_the_previous_record)
    for damage in 0..2 {
        let d4 = TempDir::new("torn-state");
        build_damage_fixture(d4.path(), seg);
        let p = d4.path().join("state");
        let mut b = fs::read(&p).unwrap();
        if damage == 0 {
            b.truncate(b.len() - 1);
        } else {
            let half = b.len() / 2;
            b[30] ^= 1;
            b[half + 30] ^= 1;
        }
        fs::write(&p, b).unwrap();
        let err = PersistentStorage::open(d4.path(), SyncPolicy::Never, seg)
            .err()
            .expect("damaged state");
        assert_eq!(err.kind, StorageErrorKind::Corruption, "{err}");
        assert!(err.message.contains("state"), "{err}");
    }

    // a missing state file next to existing segments is refused, not silently reset
    let d5 = TempDir::new("no-state");
    build_damage_fixture(d5.path(), seg);
    fs::remove_file(d5.path().join("state")).unwrap();
    let err = PersistentStorage::open(d5.path(), SyncPolicy::Never, seg)
        .err()
        .expect("missing state");
    assert_eq!(err.kind, StorageErrorKind::Corruption, "{err}");
}

#[test]
fn flipped_bytes_never_yield_wrong_entries() {
    let seg = 700;
    let pristine = TempDir::new_fast("flip-pristine");
    let (items, committed) = build_damage_fixture(pristine.path(), seg);
    let mut files = segment_files(pristine.path(), "log");
    files.extend(segment_files(pristine.path(), "index"));
    let mut opened = 0;
    let mut refused = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_owned();
        let len = fs::metadata(file).unwrap().len() as usize;
        // every byte of the closed indexes, every fourth byte of the segments (entry sizes
        // vary, so every header field is hit in some entry), a sample of the active index
        let step = if len > 4096 {
            61
        } else if name.to_string_lossy().ends_with(".log") {
            4
        } else {
            1
        };
        let mut pos = 0;
        while pos < len {
            let d = TempDir::new_fast("flip");
            copy_dir(pristine.path(), d.path());
            let p = d.path().join("log").join(&name);
            let mut b = fs::read(&p).unwrap();
            b[pos] ^= 0x5a;
            fs::write(&p, &b).unwrap();
            let ctx = format!("{name:?} byte {pos}");
            if open_checked(d.path(), seg, &items, committed, &ctx) {
                opened += 1;
            } else {
                refused += 1;
            }
            pos += step;
        }
    }
    println!("flipped bytes: {opened} opens recovered or read-checked, {refused} refused");
    assert!(opened > 0 && refused > 0);
}

// ---------------------------------------------------------------------------------------
// crashes of a real process

const CHILD_ENV: &str = "OPX_PERSIST_CRASH_DIR";
const CHILD_SYNC_ENV: &str = "OPX_PERSIST_CRASH_SYNC";
const CRASH_SEG: usize = 2048;

/// The child side of `sigkill_at_random_moments_loses_nothing_committed`: not a test on its
/// own (returns at once unless the parent set the environment variable).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let sync = match std::env::var(CHILD_SYNC_ENV).as_deref() {
        Ok("never") => SyncPolicy::Never,
        _ => SyncPolicy::Always,
    };
    let mut s = open(Path::new(&dir), sync, CRASH_SEG);
    let mut batch = u64::from(s.promise().n);
    loop {
        batch += 1;
        let mut rng = Rng::new(batch);
        let len = s.log_len();
        let c = s.compacted_idx();
        let keep = if rng.below(3) == 0 {
            len.saturating_sub(1 + rng.below(30)).max(c)
        } else {
            len
        };
        let n = 1 + rng.below(60);
        let trim = if rng.below(4) == 0 {
            keep.saturating_sub(200).max(c)
        } else {
            c
        };
        println!("begin {batch} {keep} {n} {trim}");
        s.truncate(keep).unwrap();
        let items: Vec<Vec<u8>> = (keep..keep + n).map(|i| entry_bytes(i, batch)).collect();
        s.append_entries(&entries_of(&items)).unwrap();
        s.set_promise(Ballot::new(batch as u32, 0, 1)).unwrap();
        s.set_decided_idx(keep + n).unwrap();
        s.trim(trim).unwrap();
        s.sync_decided().unwrap();
        println!("committed {batch}");
        if rng.below(2) == 0 {
            // an append-only commit (no commit record)
            let len = s.log_len();
            let m = 1 + rng.below(40);
            println!("append {batch} {len} {m}");
            let items: Vec<Vec<u8>> = (len..len + m).map(|i| entry_bytes(i, batch)).collect();
            s.append_entries(&entries_of(&items)).unwrap();
            s.sync_decided().unwrap();
            println!("appended {batch}");
        }
    }
}

/// What the parent knows: which batch wrote each entry.
#[derive(Clone, Default)]
struct Model {
    batch: u64,
    writer: Vec<u64>,
    compacted: u64,
    /// The decided index the last committed batch set (its log length).
    decided: u64,
}

impl Model {
    fn apply(&mut self, b: (u64, u64, u64, u64)) {
        let (batch, keep, n, trim) = b;
        self.writer.truncate(keep as usize);
        self.writer.extend((0..n).map(|_| batch));
        self.compacted = self.compacted.max(trim);
        self.batch = batch;
        self.decided = keep + n;
    }

    /// An append-only commit of `n` entries by `batch`.
    fn append(&mut self, batch: u64, n: u64) {
        self.writer.extend((0..n).map(|_| batch));
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_committed() {
    let d = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(0xC0FFEE ^ u64::from(std::process::id()));
    let rounds = 30;
    let mut kills_mid_batch = 0;
    let mut prefix_rounds = 0;
    let mut locked_seen = false;
    for round in 0..rounds {
        let sync = if round % 2 == 1 { "never" } else { "always" };
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, d.path())
            .env(CHILD_SYNC_ENV, sync)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of batches (sometimes right away, during recovery).
        let target = if round == 0 { 5 } else { rng.below(25) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut lines = Vec::new();
        let mut seen = 0;
        while seen < target && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    if l.contains("committed ") {
                        seen += 1;
                    }
                    lines.push(l);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if round == 0 && seen > 0 {
            // the child holds the directory: another process cannot open it
            let err = PersistentStorage::open(d.path(), SyncPolicy::Never, CRASH_SEG)
                .err()
                .expect("the child holds the lock");
            assert_eq!(err.kind, StorageErrorKind::Locked, "{err}");
            assert!(err.message.contains(&child.id().to_string()), "{err}");
            locked_seen = true;
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the child stopped by itself ({status}); its output: {lines:?}"
        );
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        eprintln!(
            "round {round}: {:?} after spawn, {} lines",
            started.elapsed(),
            lines.len()
        );

        // Replay the child's report into the model.
        let mut in_flight = None;
        let mut append_in_flight = false;
        for l in &lines {
            // (the harness prints "test crash_child ... " before the first line)
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w
                .iter()
                .position(|t| ["begin", "committed", "append", "appended"].contains(t))
                .unwrap_or(w.len());
            let w = &w[at..];
            match w.first() {
                Some(&"begin") => {
                    let v: Vec<u64> = w[1..].iter().map(|x| x.parse().unwrap()).collect();
                    in_flight = Some((v[0], v[1], v[2], v[3]));
                }
                Some(&"append") => {
                    let v: Vec<u64> = w[1..].iter().map(|x| x.parse().unwrap()).collect();
                    assert_eq!(v[1], model.writer.len() as u64, "round {round}");
                    in_flight = Some((v[0], v[1], v[2], model.compacted));
                    append_in_flight = true;
                }
                Some(&"appended") => {
                    let f = in_flight.take().unwrap();
                    assert!(append_in_flight);
                    append_in_flight = false;
                    model.append(f.0, f.2);
                }
                Some(&"committed") => {
                    let b: u64 = w[1].parse().unwrap();
                    let f = in_flight
                        .take()
                        .unwrap_or_else(|| panic!("round {round}: no begin line: {lines:?}"));
                    assert!(!append_in_flight);
                    assert_eq!(f.0, b);
                    model.apply(f);
                }
                _ => {}
            }
        }

        // Reopen: the disk holds the last reported batch, or the one in flight; when it
        // holds the last reported one, the log may go on with a prefix of the entries the
        // batch in flight appended (never of entries it was to overwrite).
        let s = open(d.path(), SyncPolicy::Never, CRASH_SEG);
        let on_disk = u64::from(s.promise().n);
        if on_disk != model.batch {
            assert!(!append_in_flight, "round {round}");
            let f = in_flight.unwrap_or_else(|| {
                panic!(
                    "round {round}: disk has batch {on_disk}, last committed {}",
                    model.batch
                )
            });
            assert_eq!(on_disk, f.0, "round {round}: lost a committed batch");
            model.apply(f);
            kills_mid_batch += 1;
        } else if let Some((batch, keep, n, _)) = in_flight {
            let len = model.writer.len() as u64;
            let extra = s.log_len().saturating_sub(len);
            assert!(
                extra == 0 || (keep == len && extra <= n),
                "round {round}: {extra} entries after the committed {len} (batch in flight \
                 {batch} kept {keep} and appended {n})"
            );
            if extra > 0 {
                prefix_rounds += 1;
            }
            model.append(batch, extra);
        }
        assert_eq!(s.log_len(), model.writer.len() as u64, "round {round}");
        assert_eq!(s.compacted_idx(), model.compacted, "round {round}");
        assert_eq!(s.decided_idx(), model.decided, "round {round}");
        let mut out = Entries::new();
        s.read_entries(model.compacted, s.log_len(), &mut out)
            .unwrap();
        for (k, e) in out.iter().enumerate() {
            let i = model.compacted + k as u64;
            assert_eq!(
                e,
                &entry_bytes(i, model.writer[i as usize])[..],
                "round {round}: entry {i}"
            );
        }
    }
    println!(
        "{rounds} kills, model at batch {}, {} entries; {kills_mid_batch} kills found the \
         in-flight batch committed, {prefix_rounds} found a prefix of its appends",
        model.batch,
        model.writer.len()
    );
    assert!(model.batch > 20, "the children made too little progress");
    assert!(locked_seen);
}

// ---------------------------------------------------------------------------------------
// a cluster of nodes on persistent storage, crashed and restarted from disk

struct DiskNode {
    dir: PathBuf,
    node: Option<omnipaxos::OmniPaxos>,
}

fn start_node(pid: u64, dir: &Path, session: u64, recover: bool) -> omnipaxos::OmniPaxos {
    let config = omnipaxos::Config {
        config_id: 3,
        pid,
        peers: (1..=3).filter(|&p| p != pid).collect(),
        election_tick_timeout: 10,
        resend_tick_timeout: 3,
        storage: omnipaxos::StorageConfig::Persistent {
            path: dir.to_path_buf(),
            sync: SyncPolicy::Never,
            segment_bytes: 4096,
        },
        ..omnipaxos::Config::default()
    };
    let storage = omnipaxos::storage::open(&config.storage).expect("open storage");
    let mut node = omnipaxos::OmniPaxos::with_session(config, storage, session).expect("node");
    if recover {
        node.fail_recovery().expect("fail_recovery");
    }
    node
}

#[test]
fn cluster_on_persistent_storage_survives_node_crashes() {
    let root = TempDir::new("cluster");
    let mut rng = Rng::new(7);
    let mut nodes: Vec<DiskNode> = (1..=3u64)
        .map(|pid| {
            let dir = root.path().join(format!("node{pid}"));
            let node = Some(start_node(pid, &dir, pid, false));
            DiskNode { dir, node }
        })
        .collect();
    let mut session = 10;
    let mut in_flight: Vec<omnipaxos::Message> = Vec::new();
    let mut chosen: Vec<Option<Vec<u8>>> = Vec::new();
    let mut last_decided = [0u64; 3];
    let mut proposed = 0u64;
    let mut crashes = 0;
    for tick in 0..4000u64 {
        // deliver what was sent last tick
        for m in std::mem::take(&mut in_flight) {
            let to = (m.to - 1) as usize;
            if let Some(n) = nodes[to].node.as_mut() {
                n.handle_incoming(m).expect("handle_incoming");
            }
        }
        for (i, dn) in nodes.iter_mut().enumerate() {
            let Some(n) = dn.node.as_mut() else { continue };
            n.tick().expect("tick");
            if tick % 2 == 0 && tick < 3500 {
                let p = format!("entry-{proposed}").into_bytes();
                if n.append(&p).is_ok() {
                    proposed += 1;
                }
            }
            if tick % 97 == 0 && n.is_accepting_leader() {
                let _ = n.trim(None);
            }
            let mut out = Vec::new();
            n.take_outgoing(&mut out).expect("take_outgoing");
            in_flight.extend(out);
            // invariants: decided never goes back while a node runs (after a restart it may
            // be lower until the leader tells the node again: it is lazily durable), decided
            // logs agree, and a decided entry never changes
            let decided = n.decided_idx().expect("decided_idx");
            assert!(
                decided >= last_decided[i],
                "node {} decided went back",
                i + 1
            );
            let from = last_decided[i].max(n.compacted_idx());
            let mut e = Entries::new();
            n.read_decided_suffix(from, &mut e).expect("read decided");
            for (k, bytes) in e.iter().enumerate() {
                let idx = from as usize + k;
                // (entries trimmed everywhere before any node was read stay unknown)
                if chosen.len() <= idx {
                    chosen.resize(idx + 1, None);
                }
                match &chosen[idx] {
                    Some(c) => assert_eq!(c, bytes, "node {} entry {idx}", i + 1),
                    None => chosen[idx] = Some(bytes.to_vec()),
                }
            }
            last_decided[i] = decided;
        }
        // crash one node now and then (dropping it loses everything not committed), restart
        // crashed nodes a little later from their directory
        if tick % 40 == 20 && tick < 3600 {
            let victim = rng.below(3) as usize;
            if let Some(n) = nodes[victim].node.take() {
                n.debug_crash();
                crashes += 1;
                last_decided[victim] = 0;
            }
        }
        if tick % 40 == 35 {
            for (i, dn) in nodes.iter_mut().enumerate() {
                if dn.node.is_none() {
                    session += 1;
                    dn.node = Some(start_node(i as u64 + 1, &dn.dir, session, true));
                }
            }
        }
    }
    println!(
        "{crashes} crashes, {proposed} proposed, {} decided, decided per node {last_decided:?}",
        chosen.len()
    );
    assert!(crashes > 50);
    assert!(chosen.len() > 500, "too little progress: {}", chosen.len());
    assert!(last_decided.iter().all(|&d| d + 50 >= chosen.len() as u64));
}

// ---------------------------------------------------------------------------------------
// throughput (ignored: run with `cargo test --release --test persistent_storage --
// --ignored --nocapture`)

/// Runs `raw` and `op` in turn for about `budget` and returns the rate of each (operations
/// per second of the time spent in it): interleaved, so that a load on the disk that comes
/// and goes weighs on both alike.
fn rates(budget: Duration, mut raw: impl FnMut(u64), mut op: impl FnMut(u64)) -> (f64, f64) {
    let t = Instant::now();
    let (mut t_raw, mut t_op) = (Duration::ZERO, Duration::ZERO);
    let mut n = 0u64;
    while n < 3 || t.elapsed() < budget {
        let a = Instant::now();
        raw(n);
        let b = Instant::now();
        op(n);
        t_raw += b - a;
        t_op += b.elapsed();
        n += 1;
    }
    (
        n as f64 / t_raw.as_secs_f64(),
        n as f64 / t_op.as_secs_f64(),
    )
}

/// Commits per second under `SyncPolicy::Always` (single 16-byte entries, batches of 1000,
/// state-only updates), each next to a raw write + fdatasync loop in the same directory
/// (the system temporary directory, or `OPX_BENCH_DIR`; `OPX_BENCH_MS` per figure), and
/// `MemoryStorage` for scale.
#[test]
#[ignore]
fn bench_commit_rates() {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let base = std::env::var_os("OPX_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let budget = Duration::from_millis(
        std::env::var("OPX_BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
    );
    let d = TempDir::new_in(&base, "bench");
    fs::create_dir_all(d.path()).unwrap();
    println!("directory: {}", d.path().display());
    let report = |what: &str, unit: &str, (raw, op): (f64, f64)| {
        println!(
            "{what:<36} {op:>8.0} {unit:<10} raw fdatasync {raw:>6.0}/s: one costs {:.2} \
             raw fdatasyncs",
            raw / op
        );
    };

    // raw: append 36 bytes (a 16-byte entry and its header) + fdatasync, as a log append
    // does; overwrite 128 bytes in place + fdatasync, as a commit record write does
    let mut append = fs::File::create(d.path().join("raw-append")).unwrap();
    let mut raw_append = |_| {
        append.write_all(&[7u8; 36]).unwrap();
        append.sync_data().unwrap();
    };
    let inplace = fs::File::create(d.path().join("raw-inplace")).unwrap();
    inplace.write_all_at(&[0u8; 8192], 0).unwrap();
    inplace.sync_all().unwrap();
    let mut raw_inplace = |i: u64| {
        inplace
            .write_all_at(&[i as u8; 128], (i % 2) * 4096)
            .unwrap();
        inplace.sync_data().unwrap();
    };

    let mut s = open(&d.path().join("store"), SyncPolicy::Always, 64 << 20);
    let one = entries_of(&[vec![0x5a; 16]]);
    let r = rates(budget, &mut raw_append, |_| {
        s.append_entries(&one).unwrap();
        s.sync_decided().unwrap();
    });
    report("single 16 B entry append + commit", "commits/s", r);
    let batch = entries_of(&vec![vec![0x5a; 16]; 1000]);
    let r = rates(budget, &mut raw_append, |_| {
        s.append_entries(&batch).unwrap();
        s.sync_decided().unwrap();
    });
    report("1000 x 16 B batch append + commit", "commits/s", r);
    println!("{:<36} {:>8.0} entries/s", "", r.1 * 1000.0);
    let r = rates(budget, &mut raw_inplace, |i| {
        s.set_decided_idx(s.log_len() - (i % 2)).unwrap();
        s.sync_decided().unwrap();
    });
    report("state-only commit (decided index)", "commits/s", r);
    drop(s);

    // the same batches without fsyncs: what the rest of a commit costs
    let mut s = open(&d.path().join("store-never"), SyncPolicy::Never, 64 << 20);
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget / 4 {
        s.append_entries(&batch).unwrap();
        s.sync_decided().unwrap();
        n += 1;
    }
    let r = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "{:<36} {r:>8.0} commits/s  ({:.0} entries/s)",
        "the same, SyncPolicy::Never",
        r * 1000.0
    );
    drop(s);

    let mut m = MemoryStorage::new();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget {
        m.append_entries(&batch).unwrap();
        m.sync_decided().unwrap();
        if m.log_len() > 10_000_000 {
            m = MemoryStorage::new();
        }
        n += 1;
    }
    let r = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "{:<36} {r:>8.0} commits/s  ({:.0} entries/s)",
        "MemoryStorage 1000 x 16 B batches",
        r * 1000.0
    );
}

#[test]
fn reads_of_recent_entries_follow_truncations_and_reach_back_to_disk() {
    let d = TempDir::new("recent");
    let mut s = open(d.path(), SyncPolicy::Never, 1 << 20);
    let mut model = MemoryStorage::new();
    // 12 MiB of 1 KiB entries: more than the in-memory recent entries hold.
    for round in 0..120u64 {
        let batch: Vec<Vec<u8>> = (0..100)
            .map(|i| entry_bytes(round * 100 + i, 0).repeat(1000)[..1000].to_vec())
            .collect();
        let e = entries_of(&batch);
        s.append_entries(&e).unwrap();
        model.append_entries(&e).unwrap();
        s.commit().unwrap();
        if round % 17 == 5 {
            // overwrite a committed suffix, read before and after the commit
            let cut = s.log_len() - 150;
            s.truncate(cut).unwrap();
            model.truncate(cut).unwrap();
            let e = entries_of(&[b"new-a".to_vec(), b"new-b".to_vec()]);
            s.append_entries(&e).unwrap();
            model.append_entries(&e).unwrap();
            assert_same(&s, &model, &format!("round {round}, before the commit"));
            s.commit().unwrap();
            assert_same(&s, &model, &format!("round {round}, after the commit"));
        }
        let len = s.log_len();
        for from in [0, len / 2, len.saturating_sub(1000), len.saturating_sub(3)] {
            let (mut a, mut b) = (Entries::new(), Entries::new());
            s.read_entries(from, len, &mut a).unwrap();
            model.read_entries(from, len, &mut b).unwrap();
            assert!(a == b, "round {round}: entries {from}..{len} differ");
        }
    }
    drop(s);
    let s = open(d.path(), SyncPolicy::Never, 1 << 20);
    assert_same(&s, &model, "reopened");
}

#[test]
fn a_directory_of_an_older_format_version_is_refused_by_name() {
    let d = TempDir::new("old-format");
    {
        let mut s = open(d.path(), SyncPolicy::Never, 4096);
        s.append_entries(&entries_of(&[b"a".to_vec()])).unwrap();
        s.set_promise(Ballot::new(1, 0, 1)).unwrap();
        s.commit().unwrap();
    }
    // Both slots of the state file claim format version 1 (a message per entry).
    let p = d.path().join("state");
    let mut b = fs::read(&p).unwrap();
    let half = b.len() / 2;
    for at in [0, half] {
        b[at + 8..at + 12].copy_from_slice(&1u32.to_le_bytes());
    }
    fs::write(&p, b).unwrap();
    let err = PersistentStorage::open(d.path(), SyncPolicy::Never, 4096)
        .err()
        .expect("an old format is refused");
    assert_eq!(err.kind, StorageErrorKind::Corruption, "{err}");
    assert!(err.message.contains("format version 1"), "{err}");
}
