//! The C API: `include/omnipaxos.h` is generated from this module by cbindgen (build.rs).
//!
//! Conventions (the same in every function):
//!
//! - Every name starts with `omnipaxos_` (types, functions) or `OMNIPAXOS_` (constants).
//! - Fallible functions return an `omnipaxos_result`: `OMNIPAXOS_OK` (0) or an error code.
//!   After an error, `omnipaxos_last_error` gives the detail on the same thread. Results
//!   come back through out-parameters, which are written only on success.
//! - Every pointer parameter is checked: NULL gives `OMNIPAXOS_ERR_NULL_PARAMETER` (except
//!   the ones documented as optional, and the `_free` functions, which accept NULL).
//! - Opaque objects come in `_new`-like / `_free` pairs: `omnipaxos_node` (created from a
//!   HOCON configuration) and `omnipaxos_entries` (made by the read functions). The caller
//!   owns them and frees each exactly once.
//! - Byte buffers travel as `(pointer, length)`; the library copies what it keeps.
//! - No panic crosses the boundary: an internal error is caught and returned as
//!   `OMNIPAXOS_ERR_PANIC`.
//!
//! The modules: [`boundary`] (panic guard, pointer checks, last-error slot, error codes),
//! [`info`] (versions and error text), [`node`] (the node and the protocol calls),
//! [`message`] (a message's header, without a node), [`entries`] (entry lists).
#![warn(unsafe_op_in_unsafe_fn)]
// The C names are the Rust names: `omnipaxos_node`, `OMNIPAXOS_OK`.
#![allow(non_camel_case_types)]

// Declared in the order the header lists them (cbindgen follows this order).
pub mod boundary;
// Versions and error text.
pub mod info;
// The node.
pub mod node;
// A message's header.
pub mod message;
// Entry lists.
pub mod entries;

pub use boundary::omnipaxos_result;
pub use entries::{omnipaxos_entries, omnipaxos_entry_kind};
pub use info::omnipaxos_result_code;
pub use node::{omnipaxos_ballot, omnipaxos_node, omnipaxos_outgoing};
