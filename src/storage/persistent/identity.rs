//! The identity file: which node a storage directory belongs to.
//!
//! ```text
//! <path>/identity   written once, when the first node is created on the directory
//! ```
//!
//! It records the node's pid, its configuration (`config_id` and the sorted set of every
//! server's pid) and a random storage id fixed when it was written, as checksummed text a
//! human can read. Every later node created on the directory must have the same pid and
//! configuration, or it is refused with [`StorageErrorKind::Mismatch`] naming both: one
//! acceptor's promises and log served as another's (two configuration files with swapped
//! paths, say) would break Paxos' safety. A directory written by a version that had no
//! identity file gets one the first time a node opens it.

use std::fmt::Write as _;
use std::path::Path;

use super::fsutil::{read_optional, remove_optional, write_atomic};
use crate::errors::{StorageError, StorageErrorKind};
use crate::storage::StorageIdentity;

/// The file's name in the storage directory.
pub(super) const IDENTITY_FILE: &str = "identity";
const FORMAT: u64 = 1;

/// The identity recorded in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Recorded {
    pub(super) storage_id: u64,
    pub(super) id: StorageIdentity,
}

fn encode(r: &Recorded) -> Vec<u8> {
    let mut s = String::from(
        "# libomnipaxos storage identity: the node this directory belongs to. Do not edit;\n\
         # remove this file only to give the directory (its log and promises) to another node.\n",
    );
    let nodes: Vec<String> = r.id.nodes.iter().map(u64::to_string).collect();
    let _ = write!(
        s,
        "format = {FORMAT}\nstorage_id = {:016x}\npid = {}\nconfig_id = {}\nnodes = {}\n",
        r.storage_id,
        r.id.pid,
        r.id.config_id,
        nodes.join(" ")
    );
    let crc = crc32c::crc32c(s.as_bytes());
    let _ = writeln!(s, "crc32c = {crc:08x}");
    s.into_bytes()
}

fn decode(bytes: &[u8], path: &Path) -> Result<Recorded, StorageError> {
    let bad = |what: &str| {
        StorageError::new(
            StorageErrorKind::Corruption,
            format!(
                "the storage identity file {} is damaged ({what}); it names the node this \
                 directory belongs to",
                path.display()
            ),
        )
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text"))?;
    let crc_at = text.rfind("crc32c = ").ok_or_else(|| bad("no checksum"))?;
    let crc_text = text[crc_at + "crc32c = ".len()..].trim_end();
    let crc = u32::from_str_radix(crc_text, 16).map_err(|_| bad("unreadable checksum"))?;
    if crc != crc32c::crc32c(&bytes[..crc_at]) {
        return Err(bad("its checksum does not match"));
    }
    let (mut format, mut storage_id, mut pid, mut config_id, mut nodes) =
        (None, None, None, None, None);
    for line in text[..crc_at].lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once(" = ")
            .ok_or_else(|| bad("a line is not `key = value`"))?;
        match k {
            "format" => format = v.parse::<u64>().ok(),
            "storage_id" => storage_id = u64::from_str_radix(v, 16).ok(),
            "pid" => pid = v.parse::<u64>().ok(),
            "config_id" => config_id = v.parse::<u32>().ok(),
            "nodes" => {
                nodes = v
                    .split_whitespace()
                    .map(str::parse::<u64>)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
            }
            _ => return Err(bad(&format!("unknown key `{k}`"))),
        }
    }
    if format != Some(FORMAT) {
        return Err(StorageError::new(
            StorageErrorKind::Corruption,
            format!(
                "the storage identity file {} has format {}, this build reads format {FORMAT}",
                path.display(),
                format.map_or("?".to_string(), |f| f.to_string())
            ),
        ));
    }
    match (storage_id, pid, config_id, nodes) {
        (Some(storage_id), Some(pid), Some(config_id), Some(nodes)) => Ok(Recorded {
            storage_id,
            id: StorageIdentity {
                pid,
                config_id,
                nodes,
            },
        }),
        _ => Err(bad("a key is missing or unreadable")),
    }
}

/// A random storage id (not cryptographic: it tells directories apart in messages).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Checks that the directory `root` belongs to `id`, recording `id` there when it has no
/// identity yet. Returns the storage id.
pub(super) fn check(root: &Path, id: &StorageIdentity, sync: bool) -> Result<u64, StorageError> {
    let path = root.join(IDENTITY_FILE);
    remove_optional(&root.join(format!("{IDENTITY_FILE}.tmp")))?;
    match read_optional(&path)? {
        Some(bytes) => {
            let r = decode(&bytes, &path)?;
            if r.id != *id {
                return Err(StorageError::new(
                    StorageErrorKind::Mismatch,
                    format!(
                        "{} belongs to {} (storage {:016x}, see {}), but this node is {}; \
                         refusing to serve one node's log and promises as another's. Give \
                         each node, and each configuration, a directory of its own (a node \
                         of a new configuration starts on a new, empty directory)",
                        root.display(),
                        r.id,
                        r.storage_id,
                        path.display(),
                        id
                    ),
                ));
            }
            Ok(r.storage_id)
        }
        None => {
            let r = Recorded {
                storage_id: random_id(),
                id: id.clone(),
            };
            write_atomic(root, IDENTITY_FILE, &encode(&r), sync)?;
            Ok(r.storage_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let r = Recorded {
            storage_id: 0xDEAD_BEEF_0123_4567,
            id: StorageIdentity {
                pid: 2,
                config_id: 7,
                nodes: vec![1, 2, 3],
            },
        };
        let bytes = encode(&r);
        let p = Path::new("/x/identity");
        assert_eq!(decode(&bytes, p).unwrap(), r);
        let mut b = bytes.clone();
        let at = String::from_utf8_lossy(&b).find("pid = 2").unwrap() + 6;
        b[at] = b'3';
        assert_eq!(
            decode(&b, p).unwrap_err().kind,
            StorageErrorKind::Corruption
        );
        assert!(decode(b"", p).is_err());
    }
}
