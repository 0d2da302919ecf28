//! Sequence Paxos, the leader's side: prepare phase, adoption of the most recent log,
//! AcceptSync, batching, counting Accepted, Decide, and re-sending.

use super::{LeaderState, MaxPromise, PeerState, Phase, PromiseMeta, Role, SequencePaxos};
use crate::entries::Entries;
use crate::errors::Result;
use crate::messages::{Ballot, NodeId, PaxosMessage, StopSign};

impl SequencePaxos {
    /// Starts leading with ballot `n`: persist the promise, send Prepare to every peer.
    pub(super) fn become_leader(&mut self, n: Ballot) -> Result<()> {
        self.storage.set_promise(n)?;
        self.promise = n;
        if self.role == Role::Follower {
            // Proposals waiting to be forwarded are now ours to order.
            let queued = std::mem::take(&mut self.forwarding.queue);
            self.forwarding.first_seq += queued.len() as u64;
            self.forwarding.sent_upto = self.forwarding.first_seq;
            self.buffer.extend_from(&queued);
        }
        self.role = Role::Leader;
        self.phase = Phase::Prepare;
        self.set_leader(n);
        self.ls = LeaderState {
            n_leader: n,
            peers: vec![PeerState::default(); self.peers.len()],
            max_decided: self.decided_idx,
            ..LeaderState::default()
        };
        self.log(format!("became leader with ballot {n:?}; preparing"));
        for i in 0..self.peers.len() {
            let p = self.peers[i];
            self.send_prepare_to(p);
        }
        Ok(())
    }

    pub(super) fn send_prepare_to(&mut self, to: NodeId) {
        if let Some(i) = self.peer_index(to) {
            let st = &mut self.ls.peers[i];
            st.promise = None;
            st.accepted_idx = None;
            st.accepted_at_last_resend = None;
        }
        let msg = PaxosMessage::Prepare {
            n: self.ls.n_leader,
            // Entries only: a decided StopSign is not an index of the log.
            decided_idx: self.decided_idx.min(self.log_len),
            n_accepted: self.accepted_round,
            accepted_idx: self.log_len,
        };
        self.send(to, msg);
    }

    pub(super) fn handle_prepare_req(&mut self, from: NodeId) -> Result<()> {
        if self.role == Role::Leader {
            self.send_prepare_to(from);
        }
        Ok(())
    }

    pub(super) fn handle_promise(
        &mut self,
        from: NodeId,
        n: Ballot,
        meta: PromiseMeta,
        suffix_idx: u64,
        suffix: Entries,
        stopsign: Option<StopSign>,
    ) -> Result<()> {
        if self.role != Role::Leader || n != self.ls.n_leader {
            return Ok(());
        }
        let Some(i) = self.peer_index(from) else {
            return Ok(());
        };
        match self.phase {
            Phase::Prepare => {
                self.ls.peers[i].promise = Some(meta);
                self.ls.max_decided = self.ls.max_decided.max(meta.decided_idx);
                // The most recent log: the highest round, then the longest, counting a
                // StopSign as one more slot (in one round it only ever follows the
                // entries, so with equal lengths the log with it is the more recent).
                let theirs = (
                    meta.n_accepted,
                    meta.accepted_idx + u64::from(stopsign.is_some()),
                );
                let better = match &self.ls.max_promise {
                    Some(m) => {
                        theirs
                            > (
                                m.n_accepted,
                                m.accepted_idx + u64::from(m.stopsign.is_some()),
                            )
                    }
                    None => theirs > (self.accepted_round, self.accepted_len()),
                };
                if better {
                    self.ls.max_promise = Some(MaxPromise {
                        n_accepted: meta.n_accepted,
                        accepted_idx: meta.accepted_idx,
                        suffix_idx,
                        suffix,
                        stopsign,
                    });
                }
                let promised = self.ls.peers.iter().filter(|p| p.promise.is_some()).count();
                if promised + 1 >= self.majority {
                    self.adopt_and_accept()?;
                }
            }
            Phase::Accept => {
                self.ls.peers[i].promise = Some(meta);
                self.send_accept_sync(i)?;
            }
            Phase::Recover => {}
        }
        Ok(())
    }

    /// A majority has promised: adopt the most recent log, enter the accept phase and bring
    /// every promiser up to date.
    fn adopt_and_accept(&mut self) -> Result<()> {
        let own_round = self.accepted_round;
        let mut adopted_round = own_round;
        if let Some(m) = self.ls.max_promise.take() {
            adopted_round = m.n_accepted;
            if m.n_accepted > own_round {
                // Our log after the decided prefix is outdated: replace it.
                self.storage.truncate(m.suffix_idx)?;
                self.log_len = m.suffix_idx.min(self.log_len);
            }
            if m.suffix_idx == self.log_len {
                self.storage.append_entries(&m.suffix)?;
                self.log_len += m.suffix.len() as u64;
            }
            // The adopted log ends as the promised one does: with its StopSign (which this
            // leader carries over and decides), or without one (a StopSign of ours from an
            // older round was not chosen).
            if m.stopsign != self.stopsign {
                self.storage.set_stopsign(m.stopsign.clone())?;
                self.stopsign = m.stopsign;
            }
        }
        let n = self.ls.n_leader;
        self.storage.set_accepted_round(n)?;
        self.accepted_round = n;
        self.ls.adopted_round = adopted_round;
        self.ls.adopted_len = self.log_len;
        let decided = self.ls.max_decided.min(self.accepted_len());
        self.set_decided(decided)?;
        self.phase = Phase::Accept;
        self.log(format!(
            "leader {n:?} in accept phase: log length {}, decided {}",
            self.log_len, self.decided_idx
        ));
        for i in 0..self.peers.len() {
            if self.ls.peers[i].promise.is_some() {
                self.send_accept_sync(i)?;
            }
        }
        let buffered = std::mem::take(&mut self.buffer);
        let pending = self.pending_stopsign.take();
        if let Some(ss) = &self.stopsign {
            // The adopted log ends with a StopSign: nothing can follow it.
            let next = ss.next_config_id;
            if !buffered.is_empty() {
                self.log(format!(
                    "{} proposals buffered while preparing dropped: the adopted log ends with a StopSign to configuration {next}",
                    buffered.len()
                ));
            }
            if let Some(p) = pending {
                self.log(format!(
                    "StopSign to configuration {} not proposed: the adopted log already ends with one to configuration {next}",
                    p.next_config_id
                ));
            }
            return Ok(());
        }
        self.batch.extend_from(&buffered);
        if let Some(ss) = pending {
            self.flush_batch()?;
            self.start_stopsign(ss)?;
        }
        Ok(())
    }

    /// Accept phase: appends the StopSign `ss` after every entry of the log (the batch must
    /// have been flushed) and sends it to every follower that has promised in this round
    /// (the others get it with their AcceptSync).
    pub(super) fn start_stopsign(&mut self, ss: StopSign) -> Result<()> {
        self.storage.set_stopsign(Some(ss.clone()))?;
        self.stopsign = Some(ss.clone());
        let (n, idx) = (self.ls.n_leader, self.log_len);
        self.log(format!(
            "proposing StopSign to configuration {} at index {idx}",
            ss.next_config_id
        ));
        for i in 0..self.peers.len() {
            if self.ls.peers[i].promise.is_some() {
                let to = self.peers[i];
                let stopsign = ss.clone();
                self.send(to, PaxosMessage::AcceptStopSign { n, idx, stopsign });
            }
        }
        Ok(())
    }

    /// Sends peer `i` the log from the point where it agrees with ours.
    fn send_accept_sync(&mut self, i: usize) -> Result<()> {
        let Some(meta) = self.ls.peers[i].promise else {
            return Ok(());
        };
        let sync_idx = if meta.n_accepted == self.ls.n_leader {
            meta.accepted_idx.min(self.log_len)
        } else if meta.n_accepted == self.ls.adopted_round {
            meta.accepted_idx.min(self.ls.adopted_len)
        } else {
            meta.decided_idx.min(self.log_len)
        };
        let to = self.peers[i];
        if sync_idx < self.compacted_idx {
            self.log(format!(
                "server {to} needs entries from {sync_idx}, but they are trimmed below {}; it cannot be synchronised without a snapshot",
                self.compacted_idx
            ));
            return Ok(());
        }
        let suffix = self.read_suffix(sync_idx, self.log_len)?;
        self.ls.peers[i].accepted_idx = None;
        self.ls.peers[i].accepted_at_last_resend = None;
        let msg = PaxosMessage::AcceptSync {
            n: self.ls.n_leader,
            sync_idx,
            suffix,
            decided_idx: self.decided_idx,
            stopsign: self.stopsign.clone(),
        };
        self.send(to, msg);
        Ok(())
    }

    /// Writes the batch of new entries to storage and sends it to every follower that has
    /// promised in this round.
    pub(super) fn flush_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() || self.phase != Phase::Accept {
            return Ok(());
        }
        if self.stopsign.is_some() {
            // Unreachable: `append` refuses entries once a StopSign is in the log, and a
            // StopSign is only added after the batch was flushed. Never place entries
            // after it.
            let n = self.batch.len();
            self.batch.clear();
            self.log(format!(
                "{n} batched entries dropped: the log ends with a StopSign"
            ));
            return Ok(());
        }
        let start_idx = self.log_len;
        // Shared before it is stored: the in-memory log then keeps the batch's buffer as it
        // is instead of copying it, and every receiver's message shares it too (nothing is
        // copied until encoding).
        self.batch.share();
        self.storage.append_entries(&self.batch)?;
        self.log_len += self.batch.len() as u64;
        let n = self.ls.n_leader;
        let decided_idx = self.decided_idx;
        let promised: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.ls.peers[i].promise.is_some())
            .collect();
        // The next batch starts with room for one like this one, instead of growing (and
        // copying) its way up again.
        let next = Entries::with_capacity(self.batch.len(), self.batch.byte_len());
        let mut batch = std::mem::replace(&mut self.batch, next);
        for (k, &i) in promised.iter().enumerate() {
            let entries = if k + 1 < promised.len() {
                batch.clone()
            } else {
                std::mem::take(&mut batch)
            };
            let to = self.peers[i];
            self.send(
                to,
                PaxosMessage::AcceptDecide {
                    n,
                    start_idx,
                    entries,
                    decided_idx,
                },
            );
        }
        self.ls.decide_pending = false;
        Ok(())
    }

    pub(super) fn handle_accepted(
        &mut self,
        from: NodeId,
        n: Ballot,
        idx: u64,
        decided_idx: u64,
    ) -> Result<()> {
        if self.role != Role::Leader || n != self.ls.n_leader || self.phase != Phase::Accept {
            return Ok(());
        }
        let Some(i) = self.peer_index(from) else {
            return Ok(());
        };
        let st = &mut self.ls.peers[i];
        if st.promise.is_none() {
            return Ok(());
        }
        st.accepted_idx = Some(st.accepted_idx.map_or(idx, |a| a.max(idx)));
        st.decided_idx = st.decided_idx.max(decided_idx);
        self.try_decide();
        Ok(())
    }

    /// Raises the decided index to what a majority has durably accepted.
    pub(super) fn try_decide(&mut self) {
        let mut acc: Vec<u64> = Vec::with_capacity(self.peers.len() + 1);
        acc.push(self.durable_accepted_len);
        acc.extend(self.ls.peers.iter().filter_map(|p| p.accepted_idx));
        if acc.len() < self.majority {
            return;
        }
        acc.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = acc[self.majority - 1];
        if candidate > self.decided_idx {
            // Storage errors surface at the next commit; the in-memory index moves now.
            self.decided_idx = candidate;
            let _ = self.storage.set_decided_idx(candidate);
            self.ls.decide_pending = true;
        }
    }

    /// Sends Decide to every follower in the accept phase if the decided index moved.
    pub(super) fn send_decide_if_pending(&mut self) {
        if !self.ls.decide_pending {
            return;
        }
        self.ls.decide_pending = false;
        let n = self.ls.n_leader;
        let decided_idx = self.decided_idx;
        for i in 0..self.peers.len() {
            if self.ls.peers[i].accepted_idx.is_some() {
                let to = self.peers[i];
                self.send(to, PaxosMessage::Decide { n, decided_idx });
            }
        }
    }

    /// Re-sends whatever a follower has not acknowledged since the previous resend tick.
    pub(super) fn leader_resend(&mut self) -> Result<()> {
        let n = self.ls.n_leader;
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            let st = self.ls.peers[i].clone();
            match (self.phase, st.promise, st.accepted_idx) {
                (_, None, _) => self.send_prepare_to(to),
                (Phase::Accept, Some(_), None) => self.send_accept_sync(i)?,
                (Phase::Accept, Some(_), Some(a)) => {
                    let stalled = st.accepted_at_last_resend == Some(a);
                    if a < self.log_len && stalled {
                        let to_idx = self.log_len.min(a + self.limits.max_resend_entries as u64);
                        if a >= self.compacted_idx {
                            let entries = self.read_suffix(a, to_idx)?;
                            self.send(
                                to,
                                PaxosMessage::AcceptDecide {
                                    n,
                                    start_idx: a,
                                    entries,
                                    decided_idx: self.decided_idx,
                                },
                            );
                        }
                    } else if let Some(stopsign) = self
                        .stopsign
                        .clone()
                        .filter(|_| a == self.log_len && stalled)
                    {
                        // Every entry is there but the StopSign is not: send it again.
                        let idx = self.log_len;
                        self.send(to, PaxosMessage::AcceptStopSign { n, idx, stopsign });
                    } else if a >= self.accepted_len() {
                        let decided_idx = self.decided_idx;
                        self.send(to, PaxosMessage::Decide { n, decided_idx });
                    }
                    self.ls.peers[i].accepted_at_last_resend = Some(a);
                }
                _ => {}
            }
        }
        Ok(())
    }
}
