//! Sequence Paxos, the follower's side: promise, AcceptSync, AcceptDecide, Decide.

use super::{Phase, Role, SequencePaxos};
use crate::entries::Entries;
use crate::errors::Result;
use crate::messages::{Ballot, NodeId, PaxosMessage, StopSign};
use crate::wire;

impl SequencePaxos {
    pub(super) fn handle_prepare(
        &mut self,
        from: NodeId,
        n: Ballot,
        leader_decided: u64,
        leader_n_accepted: Ballot,
        leader_accepted_idx: u64,
    ) -> Result<()> {
        if n.pid != from || (n == self.promise && self.role == Role::Leader) {
            return Ok(());
        }
        if n < self.promise {
            return Ok(());
        }
        if n != self.promise {
            self.storage.set_promise(n)?;
            self.promise = n;
        }
        if self.role == Role::Leader {
            self.log(format!("preempted by server {from} with ballot {n:?}"));
            self.role = Role::Follower;
            self.requeue_own_proposals();
        }
        // Already accepting in this very round (a re-sent Prepare): keep accepting; the
        // AcceptSync that follows only extends our log.
        if !(self.phase == Phase::Accept && self.accepted_round == n) {
            self.phase = Phase::Prepare;
            self.accepted_pending = false;
        }
        self.set_leader(n);
        // Send the part of our log the leader lacks.
        let suffix_idx = if self.accepted_round > leader_n_accepted {
            leader_decided.max(self.compacted_idx).min(self.log_len)
        } else if self.accepted_round == leader_n_accepted && self.log_len > leader_accepted_idx {
            leader_accepted_idx.max(self.compacted_idx)
        } else {
            self.log_len
        };
        // As much of it as fits in one message next to the StopSign; the leader pulls the
        // rest (PullSuffix) if it needs it.
        let ss_cost = self.stopsign.as_ref().map_or(0, wire::stopsign_cost);
        let budget = self.chunk_budget().saturating_sub(ss_cost);
        let suffix = self.read_chunk(suffix_idx, self.log_len, budget)?;
        let msg = PaxosMessage::Promise {
            n,
            n_accepted: self.accepted_round,
            decided_idx: self.decided_idx,
            accepted_idx: self.log_len,
            suffix_idx,
            suffix,
            stopsign: self.stopsign.clone(),
        };
        self.send(from, msg);
        Ok(())
    }

    /// The leader of `n` pulls more of the suffix this node promised with: answered only
    /// while this node's log is still exactly the one it promised with (it has promised
    /// `n` and accepted nothing since, so the entries are the same).
    pub(super) fn handle_pull_suffix(
        &mut self,
        from: NodeId,
        n: Ballot,
        n_accepted: Ballot,
        accepted_idx: u64,
        from_idx: u64,
        max_bytes: u64,
    ) -> Result<()> {
        if n != self.promise
            || n.pid != from
            || self.role != Role::Follower
            || self.accepted_round != n_accepted
            || self.log_len != accepted_idx
            || from_idx >= self.log_len
            || from_idx < self.compacted_idx
        {
            return Ok(());
        }
        // Chunks until `max_bytes` (counted as the leader counts them) or the end of the log;
        // never more than a catch-up window, whatever the leader asks.
        let max_bytes = (max_bytes.min(self.catchup_window() as u64)) as usize;
        let (mut at, mut sent) = (from_idx, 0usize);
        while at < self.log_len && sent < max_bytes {
            let entries = self.read_chunk(at, self.log_len, self.chunk_budget())?;
            if entries.is_empty() {
                break;
            }
            let start_idx = at;
            at += entries.len() as u64;
            sent += entries.byte_len().max(entries.len());
            self.send(
                from,
                PaxosMessage::PromiseSuffix {
                    n,
                    n_accepted,
                    accepted_idx,
                    start_idx,
                    entries,
                },
            );
        }
        Ok(())
    }

    pub(super) fn handle_accept_sync(
        &mut self,
        from: NodeId,
        n: Ballot,
        sync_idx: u64,
        suffix: Entries,
        decided_idx: u64,
        stopsign: Option<StopSign>,
    ) -> Result<()> {
        if n != self.promise || self.role != Role::Follower {
            return Ok(());
        }
        if self.phase == Phase::Recover {
            self.send(from, PaxosMessage::PrepareReq { n });
            return Ok(());
        }
        if self.accepted_round == n {
            // We already accepted in this round (a re-sent or re-requested AcceptSync). Our
            // log and the leader's agree wherever both have entries, and we may have
            // acknowledged entries past `sync_idx`: never cut them, only extend.
            let end = sync_idx + suffix.len() as u64;
            if sync_idx <= self.log_len && end > self.log_len {
                let rest = suffix.slice((self.log_len - sync_idx) as usize, suffix.len());
                self.storage.append_entries(&rest)?;
                self.log_len = end;
            }
            if self.stopsign.is_none() && stopsign.is_some() && self.log_len == end {
                // A StopSign is only ever added within a round, never taken back, and only
                // right after the leader's last entry (not after a log with a gap).
                self.storage.set_stopsign(stopsign.clone())?;
                self.stopsign = stopsign;
            }
        } else {
            if sync_idx > self.log_len || sync_idx < self.compacted_idx {
                // We cannot splice the suffix in: ask for a fresh Prepare.
                self.send(from, PaxosMessage::PrepareReq { n });
                return Ok(());
            }
            self.storage.truncate(sync_idx)?;
            self.storage.append_entries(&suffix)?;
            self.log_len = sync_idx + suffix.len() as u64;
            self.storage.set_accepted_round(n)?;
            self.accepted_round = n;
            if stopsign != self.stopsign {
                self.storage.set_stopsign(stopsign.clone())?;
                self.stopsign = stopsign;
            }
        }
        let decided = decided_idx.min(self.accepted_len());
        self.set_decided(decided)?;
        self.phase = Phase::Accept;
        self.accepted_pending = true;
        // The leader is established: send it whatever waits to be forwarded.
        self.forwarding.sent_upto = self.forwarding.first_seq;
        Ok(())
    }

    pub(super) fn handle_accept_decide(
        &mut self,
        n: Ballot,
        start_idx: u64,
        entries: Entries,
        decided_idx: u64,
    ) -> Result<()> {
        if n != self.promise || self.role != Role::Follower || self.phase != Phase::Accept {
            return Ok(());
        }
        if start_idx > self.log_len {
            // A gap (an earlier batch was lost or is late): keep this one for when the gap is
            // filled; our Accepted makes the leader re-send from our accepted index.
            self.keep_for_later(n, start_idx, entries);
            self.accepted_pending = true;
            return Ok(());
        }
        let overlap = (self.log_len - start_idx) as usize;
        if self.stopsign.is_some() {
            // Our log ends with the round's StopSign: the leader sends no entries after it
            // (this is an old batch, re-sent or duplicated), and none may follow it.
        } else if overlap == 0 {
            self.storage.append_entries(&entries)?;
            self.log_len += entries.len() as u64;
        } else if overlap < entries.len() {
            let rest = entries.slice(overlap, entries.len());
            self.storage.append_entries(&rest)?;
            self.log_len += rest.len() as u64;
        }
        self.apply_kept(n)?;
        let decided = decided_idx.min(self.accepted_len());
        self.set_decided(decided)?;
        self.accepted_pending = true;
        Ok(())
    }

    /// Keeps a chunk of round `n` that arrived after a gap, within a catch-up window.
    fn keep_for_later(&mut self, n: Ballot, start_idx: u64, entries: Entries) {
        if self.reorder.0 != n {
            self.reorder = (n, Default::default(), 0);
        }
        let bytes = entries.byte_len().max(entries.len());
        if self.reorder.2.saturating_add(bytes) > self.catchup_window()
            || self.reorder.1.contains_key(&start_idx)
            || entries.is_empty()
        {
            return;
        }
        self.reorder.2 += bytes;
        self.reorder.1.insert(start_idx, entries);
    }

    /// Appends the kept chunks of round `n` that the log now reaches (in this round the log
    /// is a prefix of the leader's, so they continue it), drops those it has passed.
    fn apply_kept(&mut self, n: Ballot) -> Result<()> {
        if self.reorder.1.is_empty() {
            return Ok(());
        }
        if self.reorder.0 != n || self.stopsign.is_some() {
            self.reorder = Default::default();
            return Ok(());
        }
        while let Some(entry) = self.reorder.1.first_entry() {
            let start = *entry.key();
            if start > self.log_len {
                break;
            }
            let entries = entry.remove();
            self.reorder.2 = self
                .reorder
                .2
                .saturating_sub(entries.byte_len().max(entries.len()));
            let overlap = (self.log_len - start) as usize;
            if overlap < entries.len() {
                let rest = entries.slice(overlap, entries.len());
                self.storage.append_entries(&rest)?;
                self.log_len += rest.len() as u64;
            }
        }
        Ok(())
    }

    pub(super) fn handle_decide(&mut self, n: Ballot, decided_idx: u64) -> Result<()> {
        if n != self.promise || self.role != Role::Follower || self.phase != Phase::Accept {
            return Ok(());
        }
        let decided = decided_idx.min(self.accepted_len());
        if decided > self.decided_idx {
            // Tell the leader (in an Accepted) how far we have decided: it trims only below
            // every server's decided index.
            self.accepted_pending = true;
        }
        self.set_decided(decided)
    }

    pub(super) fn handle_accept_stopsign(
        &mut self,
        n: Ballot,
        idx: u64,
        stopsign: StopSign,
    ) -> Result<()> {
        if n != self.promise || self.role != Role::Follower || self.phase != Phase::Accept {
            return Ok(());
        }
        if idx != self.log_len {
            // Entries before it are missing (a lost batch): our Accepted makes the leader
            // re-send them, and then the StopSign.
            self.accepted_pending = true;
            return Ok(());
        }
        if self.stopsign.as_ref() != Some(&stopsign) {
            self.storage.set_stopsign(Some(stopsign.clone()))?;
            self.stopsign = Some(stopsign);
        }
        self.accepted_pending = true;
        Ok(())
    }
}
