//! # libomnipaxos
//!
//! The Omni-Paxos consensus protocol (EuroSys 2023, "Breaking the Barriers of Partial
//! Connectivity") as a library with a C ABI: a replicated log that stays live under partial
//! network partitions.
//!
//! - [`OmniPaxos`] is one server: tick it, hand it incoming messages, take its outgoing ones,
//!   append entries and read the decided log. It does no I/O: the caller owns the network.
//! - [`ballot_leader_election`] and [`sequence_paxos`] are the two halves of the protocol.
//! - [`wire`] is the only place where messages become bytes.
//! - [`ffi`] is the C API (`include/omnipaxos.h`).
#![deny(missing_docs)]

pub mod ballot_leader_election;
mod block;
pub mod config;
pub mod entries;
pub mod errors;
pub mod ffi;
pub mod messages;
pub mod omni_paxos;
mod quiet;
pub mod sequence_paxos;
pub mod storage;
pub mod wire;

pub use config::{Config, StorageConfig, SyncPolicy};
pub use entries::Entries;
pub use errors::{ConfigError, DecodeError, Error, Result, StorageError, StorageErrorKind};
pub use messages::{Ballot, Message, NodeId, StopSign};
pub use omni_paxos::{LogEntry, OmniPaxos};
pub use storage::{MemoryStorage, Storage};
