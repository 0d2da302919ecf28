//! Sequence Paxos, the follower's side: promise, AcceptSync, AcceptDecide, Decide.

use super::{Phase, Role, SequencePaxos};
use crate::entries::Entries;
use crate::errors::Result;
use crate::messages::{Ballot, NodeId, PaxosMessage, StopSign};

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
        let suffix = self.read_suffix(suffix_idx, self.log_len)?;
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
            // A gap (an earlier batch was lost): the leader re-sends from our accepted index.
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
        let decided = decided_idx.min(self.accepted_len());
        self.set_decided(decided)?;
        self.accepted_pending = true;
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
