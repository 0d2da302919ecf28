//! Sequence Paxos.
