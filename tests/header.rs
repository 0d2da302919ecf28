//! The committed C header is what cbindgen generates from the sources, and its version
//! matches Cargo.toml.
//!
//! build.rs generates the header with the pinned cbindgen and `cbindgen.toml` into
//! `$OUT_DIR/omnipaxos.h` (and refreshes `include/omnipaxos.h` when it differs). This test
//! compares that fresh header with the file in the tree and, in a git checkout, with the
//! committed version: a change to the C API whose regenerated header was not committed
//! fails here.

use std::ffi::CStr;
use std::path::Path;
use std::process::Command;

use omnipaxos::ffi::info::{omnipaxos_version, omnipaxos_wire_version};

/// The header as build.rs generated it for this build.
const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/omnipaxos.h"));

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_in_tree_matches_generated() {
    let path = root().join("include/omnipaxos.h");
    let in_tree = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        in_tree == GENERATED,
        "include/omnipaxos.h differs from the header cbindgen generates: run `cargo build` \
         and commit include/omnipaxos.h"
    );
}

#[test]
fn header_is_committed() {
    // `git diff --exit-code HEAD -- include/omnipaxos.h`: the file in the tree (refreshed by
    // build.rs) must equal the committed one. Skipped outside a git checkout.
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root())
            .args(args)
            .output()
    };
    if let Ok(tracked) = git(&["ls-files", "--error-unmatch", "include/omnipaxos.h"]) {
        let in_repo = git(&["rev-parse", "--git-dir"]).is_ok_and(|o| o.status.success());
        assert!(
            !in_repo || tracked.status.success(),
            "include/omnipaxos.h is not committed (git add include/omnipaxos.h)"
        );
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(root())
        .args([
            "diff",
            "--exit-code",
            "--stat",
            "HEAD",
            "--",
            "include/omnipaxos.h",
        ])
        .output();
    match out {
        Ok(out) if out.status.code() == Some(1) => panic!(
            "include/omnipaxos.h was regenerated but the change is not committed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "skipping the git check (not a git checkout?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("skipping the git check (no git): {e}"),
    }
}

#[test]
fn version_macro_and_function_match_cargo() {
    let version = env!("CARGO_PKG_VERSION");
    let define = format!("#define OMNIPAXOS_VERSION \"{version}\"");
    assert!(GENERATED.contains(&define), "header lacks `{define}`");
    let from_fn = unsafe { CStr::from_ptr(omnipaxos_version()) };
    assert_eq!(from_fn.to_str().unwrap(), version);
    assert_eq!(
        omnipaxos_wire_version(),
        u32::from(omnipaxos::wire::WIRE_VERSION)
    );
}

#[test]
fn header_declares_the_whole_api() {
    for name in [
        "omnipaxos_version(void)",
        "omnipaxos_wire_version(void)",
        "omnipaxos_strerror(omnipaxos_result code)",
        "omnipaxos_last_error(char *buf, size_t cap)",
        "omnipaxos_node_from_hocon_file(",
        "omnipaxos_node_from_hocon_str(",
        "omnipaxos_node_free(",
        "omnipaxos_append(",
        "omnipaxos_append_batch(",
        "omnipaxos_handle_incoming(",
        "omnipaxos_take_outgoing(",
        "omnipaxos_tick(",
        "omnipaxos_election_timeout(",
        "omnipaxos_decided_idx(",
        "omnipaxos_read(",
        "omnipaxos_read_entries(",
        "omnipaxos_read_decided_suffix(",
        "omnipaxos_entries_count(",
        "omnipaxos_entries_first_idx(",
        "omnipaxos_entries_get(",
        "omnipaxos_entries_contiguous(",
        "omnipaxos_entries_free(",
        "omnipaxos_leader(",
        "omnipaxos_pid(",
        "omnipaxos_is_quorum_connected(",
        "omnipaxos_fail_recovery(",
        "omnipaxos_reconnected(",
        "omnipaxos_trim(",
        "omnipaxos_transfer_leadership(",
        "omnipaxos_set_leader_priority(",
        "omnipaxos_reconfigure(",
        "omnipaxos_is_stopped(",
        "omnipaxos_decided_stopsign(",
        "omnipaxos_message_header(",
        "#ifndef OMNIPAXOS_H",
        "extern \"C\" {",
        "typedef struct omnipaxos_node omnipaxos_node;",
        "typedef struct omnipaxos_entries omnipaxos_entries;",
        "OMNIPAXOS_ERR_PANIC = 15,",
        "OMNIPAXOS_ENTRY_TRIMMED = 3,",
    ] {
        assert!(GENERATED.contains(name), "header lacks `{name}`");
    }
}
