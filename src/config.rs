//! Node configuration and its validation. HOCON loading lives in [`hocon`].

pub mod hocon;

use std::path::PathBuf;

use crate::errors::ConfigError;
use crate::messages::NodeId;

/// When persistent storage forces data to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// fsync (fdatasync) once per batch before any Promise or Accepted is sent and before a
    /// decided index is reported. Survives power loss. The default.
    #[default]
    Always,
    /// Never fsync; the OS writes the data back when it likes. Survives a process crash but
    /// not a power loss or kernel crash. For users who choose speed over durability.
    Never,
}

/// Where the log lives.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum StorageConfig {
    /// In memory: lost when the process exits. The default.
    #[default]
    Memory,
    /// On disk under `path`.
    Persistent {
        /// Directory of the storage files (created if missing).
        path: PathBuf,
        /// When data is forced to disk.
        sync: SyncPolicy,
        /// Size of one commitlog segment in bytes.
        segment_bytes: usize,
    },
}

/// The configuration of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The configuration id: messages of another configuration are rejected.
    pub config_id: u32,
    /// This server's id (non-zero).
    pub pid: NodeId,
    /// The other servers of the configuration (non-empty, without `pid`, no duplicates).
    pub peers: Vec<NodeId>,
    /// Leader priority: among ballots with the same round, the higher priority leads.
    pub leader_priority: u32,
    /// The election timeout in ticks (at least 2). A leader that has not answered a
    /// heartbeat sent within this many ticks, or that reports it lost its quorum, is
    /// replaced; heartbeats go out every quarter of it (at least every tick). Choose it so
    /// that a heartbeat's round trip plus a quarter of it fits well within it.
    pub election_tick_timeout: u64,
    /// Ticks after which unanswered Sequence Paxos messages are sent again.
    pub resend_tick_timeout: u64,
    /// How many proposals may wait (for a leader, for the leader to take them, or at the
    /// leader to be decided) before `append` is refused with a buffer-full error.
    pub buffer_size: usize,
    /// The leader sends accumulated entries when this many are waiting (they are also sent
    /// whenever outgoing messages are taken).
    pub batch_size: usize,
    /// The largest message accepted by `handle_incoming_bytes`, in bytes, and the largest
    /// this node produces: every message fits, whatever the load or how far a follower is
    /// behind (batches, catch-up and promised logs travel in chunks that fit). An entry
    /// must fit in one message with room for the rest of it: `append` refuses one longer
    /// than `max_message_bytes` less 128 bytes and its length prefix
    /// ([`crate::wire::max_entry_len`]). Give every server of a configuration the same value.
    pub max_message_bytes: usize,
    /// Where the node writes its log lines; `None` (the default) writes none.
    pub log_file_path: Option<PathBuf>,
    /// Storage.
    pub storage: StorageConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            config_id: 1,
            pid: 0,
            peers: Vec::new(),
            leader_priority: 0,
            election_tick_timeout: 10,
            resend_tick_timeout: 5,
            buffer_size: 100_000,
            batch_size: 1_000,
            max_message_bytes: 64 << 20,
            log_file_path: None,
            storage: StorageConfig::Memory,
        }
    }
}

impl Config {
    /// Loads a configuration from a HOCON file (see [`hocon`] for the keys);
    /// the seed's `OmniPaxosConfig::with_hocon`.
    pub fn with_hocon_file(path: impl AsRef<std::path::Path>) -> Result<Config, ConfigError> {
        hocon::from_file(path.as_ref())
    }

    /// Loads a configuration from HOCON text.
    pub fn with_hocon_str(text: &str) -> Result<Config, ConfigError> {
        hocon::from_str(text)
    }

    /// Builds a node on `storage` (the seed's `config.build(storage)`); after a restart on
    /// persistent storage call [`crate::OmniPaxos::fail_recovery`] next.
    pub fn build(self, storage: Box<dyn crate::Storage>) -> crate::Result<crate::OmniPaxos> {
        crate::OmniPaxos::new(self, storage)
    }

    /// Opens the storage this configuration names and builds a node on it.
    pub fn build_with_configured_storage(self) -> crate::Result<crate::OmniPaxos> {
        let storage = crate::storage::open(&self.storage)?;
        self.build(storage)
    }

    /// Checks everything a user can get wrong; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pid == 0 {
            return Err(ConfigError::new(
                "pid",
                "must be a positive integer (0 is reserved)",
            ));
        }
        if self.peers.is_empty() {
            return Err(ConfigError::new(
                "peers",
                "must list at least one other server (a cluster has at least two servers)",
            ));
        }
        if self.peers.contains(&0) {
            return Err(ConfigError::new(
                "peers",
                "pid 0 is reserved and cannot be a peer",
            ));
        }
        if self.peers.contains(&self.pid) {
            return Err(ConfigError::new(
                "peers",
                format!("must not contain this server's own pid {}", self.pid),
            ));
        }
        let mut sorted = self.peers.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::new(
                "peers",
                format!("pid {} is listed more than once", w[0]),
            ));
        }
        if self.election_tick_timeout < 2 {
            return Err(ConfigError::new(
                "election_tick_timeout",
                "must be at least 2 ticks (a heartbeat sent at one tick must be able to come \
                 back before the timeout)",
            ));
        }
        if self.resend_tick_timeout == 0 {
            return Err(ConfigError::new(
                "resend_tick_timeout",
                "must be at least 1",
            ));
        }
        if self.buffer_size == 0 {
            return Err(ConfigError::new("buffer_size", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::new("batch_size", "must be at least 1"));
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::new(
                "max_message_bytes",
                "must be at least 1024",
            ));
        }
        if let StorageConfig::Persistent {
            path,
            segment_bytes,
            ..
        } = &self.storage
        {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::new("storage.path", "must not be empty"));
            }
            if *segment_bytes < 4096 {
                return Err(ConfigError::new(
                    "storage.segment_bytes",
                    "must be at least 4096",
                ));
            }
        }
        Ok(())
    }

    /// All servers of the configuration, this one included, sorted.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut v = self.peers.clone();
        v.push(self.pid);
        v.sort_unstable();
        v
    }
}

/// The size of a majority of a cluster of `cluster_size` servers.
pub fn majority_of(cluster_size: usize) -> usize {
    cluster_size / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Config {
        Config {
            pid: 2,
            peers: vec![1, 3],
            ..Config::default()
        }
    }

    #[test]
    fn seed_flow_hocon_then_build() {
        let c = Config::with_hocon_str(
            r#"{ config_id: 1, pid: 2, peers: [1, 3], log_file_path: "/omnipaxos/logs" }"#,
        )
        .unwrap();
        assert_eq!((c.config_id, c.pid, c.peers.clone()), (1, 2, vec![1, 3]));
        let mut node = c.build(Box::new(crate::MemoryStorage::new())).unwrap();
        node.fail_recovery().unwrap();
        assert_eq!(node.decided_idx().unwrap(), 0);
    }

    #[test]
    fn validate_names_the_key() {
        assert!(ok().validate().is_ok());
        let bad = [
            (Config { pid: 0, ..ok() }, "pid"),
            (
                Config {
                    peers: vec![],
                    ..ok()
                },
                "peers",
            ),
            (
                Config {
                    peers: vec![1, 2],
                    ..ok()
                },
                "peers",
            ),
            (
                Config {
                    peers: vec![1, 1],
                    ..ok()
                },
                "peers",
            ),
            (
                Config {
                    election_tick_timeout: 0,
                    ..ok()
                },
                "election_tick_timeout",
            ),
            (
                Config {
                    election_tick_timeout: 1,
                    ..ok()
                },
                "election_tick_timeout",
            ),
            (
                Config {
                    resend_tick_timeout: 0,
                    ..ok()
                },
                "resend_tick_timeout",
            ),
            (
                Config {
                    buffer_size: 0,
                    ..ok()
                },
                "buffer_size",
            ),
            (
                Config {
                    batch_size: 0,
                    ..ok()
                },
                "batch_size",
            ),
        ];
        for (c, key) in bad {
            assert_eq!(c.validate().unwrap_err().key, key);
        }
    }
}
