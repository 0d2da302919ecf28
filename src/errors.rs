//! Error types. Every fallible operation in the crate returns one of these; nothing a
//! user can get wrong ends in a panic.

use std::fmt;

/// An invalid or incomplete configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key at fault (`"pid"`, `"storage.path"`), or empty when the error is not about one key.
    pub key: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl ConfigError {
    /// A config error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid configuration key `{}`: {}",
                self.key, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// The kind of a storage failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// An I/O error (including a full disk or an unwritable path).
    Io,
    /// The files on disk are damaged in a way that cannot be repaired without losing
    /// acknowledged data.
    Corruption,
    /// The storage directory is held by another live node (lock file).
    Locked,
    /// The request is outside what the storage holds (trimmed or beyond the end).
    OutOfRange,
    /// The storage directory belongs to another node or configuration (its identity
    /// file names another pid, `config_id` or set of nodes).
    Mismatch,
}

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// What kind of failure.
    pub kind: StorageErrorKind,
    /// Detail for a human (path, operation, OS error).
    pub message: String,
}

impl StorageError {
    /// A storage error of `kind`.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            message: message.into(),
        }
    }

    /// An I/O error with context.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        StorageError::new(StorageErrorKind::Io, format!("{context}: {err}"))
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            StorageErrorKind::Io => "storage I/O error",
            StorageErrorKind::Corruption => "storage corruption",
            StorageErrorKind::Locked => "storage locked",
            StorageErrorKind::OutOfRange => "storage index out of range",
            StorageErrorKind::Mismatch => "storage of another node",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for StorageError {}

/// Why an incoming message was rejected. The node's state is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not a message of this library (garbage, truncated, trailing bytes).
    Malformed(String),
    /// The message is larger than the configured maximum.
    TooLarge {
        /// Size of the message in bytes.
        len: usize,
        /// The maximum accepted.
        max: usize,
    },
    /// The wire-format version byte is not one this build understands.
    UnsupportedVersion(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(m) => write!(f, "malformed message: {m}"),
            DecodeError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the maximum of {max} bytes"
                )
            }
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported wire-format version {v}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Every error the library reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bad configuration.
    Config(ConfigError),
    /// Storage failure.
    Storage(StorageError),
    /// An incoming message could not be decoded.
    Decode(DecodeError),
    /// An incoming message belongs to another configuration (`config_id`).
    WrongConfiguration {
        /// The configuration the message claims.
        got: u32,
        /// This node's configuration.
        expected: u32,
    },
    /// An incoming message comes from a pid that is not a peer of this node, or is not
    /// addressed to this node.
    UnknownSender(u64),
    /// The proposal buffer is full (no leader is known, or the leader has not taken the
    /// proposals yet); the entry was not appended. Retry later.
    BufferFull {
        /// The configured `buffer_size`.
        capacity: usize,
    },
    /// The configuration is stopped: a StopSign is in the log (proposed here, or accepted
    /// from the leader; see [`crate::OmniPaxos::reconfigure`]). No more entries, and no
    /// other StopSign, are accepted.
    Stopped,
    /// The requested index is not in the log (beyond its end, or trimmed).
    OutOfRange {
        /// The index asked for.
        idx: u64,
        /// What the log holds: a human-readable range.
        detail: String,
    },
    /// An argument is invalid (empty range, trim beyond the decided index, ...).
    InvalidArgument(String),
    /// The call must be made at the leader (a reconfiguration), and this node is not it.
    NotLeader {
        /// The leader this node follows, if it knows one: call it there.
        leader: Option<u64>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Storage(e) => e.fmt(f),
            Error::Decode(e) => e.fmt(f),
            Error::WrongConfiguration { got, expected } => write!(
                f,
                "message from configuration {got}, but this node is in configuration {expected}"
            ),
            Error::UnknownSender(pid) => {
                write!(
                    f,
                    "message from or to pid {pid}, which is not in this configuration"
                )
            }
            Error::BufferFull { capacity } => write!(
                f,
                "proposal buffer full ({capacity} entries waiting for a leader); retry later"
            ),
            Error::Stopped => write!(
                f,
                "this configuration is stopped: a StopSign is in the log, no more entries are accepted"
            ),
            Error::OutOfRange { idx, detail } => {
                write!(f, "index {idx} is out of range: {detail}")
            }
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::NotLeader { leader: Some(l) } => write!(
                f,
                "this node is not the leader: call it at the leader, server {l}"
            ),
            Error::NotLeader { leader: None } => write!(
                f,
                "this node is not the leader, and no leader is known yet: retry at the leader once one is elected"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Decode(e)
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
