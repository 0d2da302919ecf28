//! Wire-format properties that need a whole test binary: allocation accounting (a counting
//! global allocator) and HOCON files on disk.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use omnipaxos::config::hocon;
use omnipaxos::messages::{Ballot, Body, Message, PaxosMessage};
use omnipaxos::wire::{decode, encode, HEADER_LEN, WIRE_VERSION};
use omnipaxos::{DecodeError, Entries};

/// Counts the allocations of the current thread (tests run on several threads at once).
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f`; returns its result, the number of allocations and the largest one.
fn counted<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    ALLOCS.with(|c| c.set(0));
    LARGEST.with(|c| c.set(0));
    let r = f();
    (r, ALLOCS.with(Cell::get), LARGEST.with(Cell::get))
}

fn batch(n: usize, size: usize) -> Entries {
    let mut e = Entries::with_capacity(n, n * size);
    for i in 0..n {
        e.push(&vec![i as u8; size]);
    }
    e
}

fn accept_decide(entries: Entries) -> Message {
    Message {
        from: 1,
        to: 2,
        body: Body::Paxos(PaxosMessage::AcceptDecide {
            n: Ballot::new(7, 0, 1),
            start_idx: 12_345,
            entries,
            decided_idx: 12_000,
        }),
    }
}

/// The start of an AcceptDecide message, up to its entry bytes.
fn accept_decide_prefix() -> Vec<u8> {
    let mut b = omnipaxos::wire::MAGIC.to_vec();
    b.push(WIRE_VERSION);
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    // Body::Paxos, PaxosMessage::AcceptDecide, ballot (1, 0, 1), start_idx 0.
    b.extend_from_slice(&[1, 4, 1, 0, 1, 0]);
    b
}

fn varint_u64(v: u64) -> Vec<u8> {
    let mut b = vec![253];
    b.extend_from_slice(&v.to_le_bytes());
    b
}

#[test]
fn no_allocation_per_entry() {
    let m = accept_decide(batch(1000, 16));
    let mut out = Vec::new();
    let ((), allocs, _) = counted(|| encode(1, &m, &mut out));
    assert!(allocs <= 1, "encode made {allocs} allocations");
    // Into a buffer that already has room: none at all.
    let mut reused = Vec::with_capacity(64 << 10);
    let ((), allocs, _) = counted(|| encode(1, &m, &mut reused));
    assert_eq!(allocs, 0);
    let (r, allocs, _) = counted(|| decode(&out, 1 << 20));
    assert_eq!(r.unwrap().1, m);
    // Entry bytes, entry offsets (grown by doubling), nothing per entry.
    assert!(allocs <= 16, "decode made {allocs} allocations");
}

#[test]
fn forged_lengths_do_not_allocate_what_they_claim() {
    for claim in [1u64 << 60, u64::MAX, 1 << 40, 1 << 30] {
        // Entry bytes.
        let mut b = accept_decide_prefix();
        b.extend_from_slice(&varint_u64(claim));
        b.extend_from_slice(&[7; 100]);
        let (r, _, largest) = counted(|| decode(&b, 1 << 20));
        assert!(matches!(r, Err(DecodeError::Malformed(_))), "{r:?}");
        assert!(
            largest <= 1024,
            "allocated {largest} bytes for a {} byte message",
            b.len()
        );
        // Entry offsets: serde's bounded pre-allocation caps them at 1 MiB.
        let mut b = accept_decide_prefix();
        b.push(0);
        b.extend_from_slice(&varint_u64(claim));
        b.extend_from_slice(&[7; 100]);
        let (r, _, largest) = counted(|| decode(&b, 1 << 20));
        assert!(matches!(r, Err(DecodeError::Malformed(_))), "{r:?}");
        assert!(largest <= (1 << 20) + 1024, "allocated {largest} bytes");
    }
}

#[test]
fn too_large_is_rejected_without_work() {
    let big = vec![0u8; 1 << 16];
    let (r, allocs, _) = counted(|| decode(&big, 1 << 10));
    assert!(matches!(
        r,
        Err(DecodeError::TooLarge {
            len: 65536,
            max: 1024
        })
    ));
    assert_eq!(allocs, 0);
    let (r, allocs, _) = counted(|| decode(&big[..HEADER_LEN - 1], 1 << 10));
    assert!(matches!(r, Err(DecodeError::Malformed(_))));
    // (the error's message only)
    assert!(allocs <= 2, "{allocs} allocations");
}

/// Throughput of the batch path; run with
/// `cargo test --release --test wire_hocon -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_batch_encode_decode() {
    for (n, size) in [(1000usize, 16usize), (1000, 256), (10, 16)] {
        let m = accept_decide(batch(n, size));
        let mut out = Vec::with_capacity(1 << 20);
        let rounds = 20_000;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            out.clear();
            encode(1, std::hint::black_box(&m), &mut out);
        }
        let enc = t.elapsed() / rounds;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(decode(std::hint::black_box(&out), 1 << 30).unwrap());
        }
        let dec = t.elapsed() / rounds;
        println!(
            "{n} x {size} B: {} bytes on the wire, encode {enc:?}, decode {dec:?} per message",
            out.len()
        );
    }
}

#[test]
fn hocon_file_round_trip() {
    let dir = std::env::temp_dir().join(format!("omnipaxos-hocon-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node2.conf");
    std::fs::write(
        &path,
        "{\n    config_id: 1,\n    pid: 2,\n    peers: [1, 3],\n    log_file_path: \"/omnipaxos/logs\"\n}\n",
    )
    .unwrap();
    let c = hocon::from_file(&path).unwrap();
    assert_eq!(c.pid, 2);
    assert_eq!(c.peers, vec![1, 3]);
    assert_eq!(
        c.log_file_path.as_deref(),
        Some(std::path::Path::new("/omnipaxos/logs"))
    );

    // Includes are refused, with a clear message (an included file would escape the
    // limits this file is checked against).
    std::fs::write(
        dir.join("common.conf"),
        "peers: [1, 3]\nleader_priority = 4\n",
    )
    .unwrap();
    let inc = dir.join("with_include.conf");
    std::fs::write(&inc, "include \"common.conf\"\npid = 2\n").unwrap();
    let e = hocon::from_file(&inc).unwrap_err();
    assert!(e.message.contains("`include` is not supported"), "{e}");

    // Errors in a file name the file.
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "pid = two\npeers = [1]\n").unwrap();
    let e = hocon::from_file(&bad).unwrap_err();
    assert_eq!(e.key, "pid");
    assert!(e.message.contains(&bad.display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
