//! Sequence Paxos, the leader's side: prepare phase, adoption of the most recent log,
//! AcceptSync, batching, counting Accepted, Decide, and re-sending.

use super::{LeaderState, MaxPromise, PeerState, Phase, PromiseMeta, Role, SequencePaxos};
use crate::entries::Entries;
use crate::errors::Result;
use crate::messages::{Ballot, NodeId, PaxosMessage, StopSign};
use crate::wire;

/// Resend ticks in a row without any progress of a suffix pull before the leader gives up
/// on that promiser and collects promises again.
const PULL_STALL_TICKS: u32 = 3;

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
            st.sent_idx = 0;
            st.chunks_in_flight.clear();
            st.bytes_in_flight = 0;
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
                    let mut suffix = suffix;
                    // Never more than the log the promiser announced.
                    let room = meta.accepted_idx.saturating_sub(suffix_idx);
                    if suffix.len() as u64 > room {
                        suffix.truncate(room as usize);
                    }
                    self.ls.max_promise = Some(MaxPromise {
                        from,
                        n_accepted: meta.n_accepted,
                        accepted_idx: meta.accepted_idx,
                        suffix_idx,
                        end_at_last_resend: suffix_idx + suffix.len() as u64,
                        suffix,
                        stopsign,
                        requested: None,
                        pull_received: 0,
                        ahead: Default::default(),
                        stalled_ticks: 0,
                    });
                }
                self.try_finish_prepare()?;
            }
            Phase::Accept => {
                self.ls.peers[i].promise = Some(meta);
                self.send_accept_sync(i)?;
            }
            Phase::Recover => {}
        }
        Ok(())
    }

    /// Once a majority has promised: when the leader holds the whole most recent log among
    /// the promises, adopts it and enters the accept phase; otherwise asks its promiser for
    /// the next part of it (one PullSuffix outstanding at a time; re-sent on resend ticks).
    fn try_finish_prepare(&mut self) -> Result<()> {
        let promised = self.ls.peers.iter().filter(|p| p.promise.is_some()).count();
        if promised + 1 < self.majority {
            return Ok(());
        }
        let n = self.ls.n_leader;
        let max_bytes = self.catchup_window() as u64;
        match self.ls.max_promise.as_mut() {
            Some(m) if !m.complete() => {
                if m.requested.is_none() {
                    let end = m.end();
                    m.requested = Some(end);
                    m.pull_received = 0;
                    m.ahead.clear();
                    let (to, n_accepted, accepted_idx) = (m.from, m.n_accepted, m.accepted_idx);
                    self.send(
                        to,
                        PaxosMessage::PullSuffix {
                            n,
                            n_accepted,
                            accepted_idx,
                            from_idx: end,
                            max_bytes,
                        },
                    );
                }
                Ok(())
            }
            _ => self.adopt_and_accept(),
        }
    }

    /// A part of the most recent log among the promises, pulled from its promiser.
    pub(super) fn handle_promise_suffix(
        &mut self,
        from: NodeId,
        n: Ballot,
        n_accepted: Ballot,
        accepted_idx: u64,
        start_idx: u64,
        entries: Entries,
    ) -> Result<()> {
        if self.role != Role::Leader || self.phase != Phase::Prepare || n != self.ls.n_leader {
            return Ok(());
        }
        let window = self.catchup_window();
        let Some(m) = self.ls.max_promise.as_mut() else {
            return Ok(());
        };
        if m.from != from || m.n_accepted != n_accepted || m.accepted_idx != accepted_idx {
            return Ok(()); // an answer about a promise no longer the most recent one
        }
        let end = m.end();
        let their_end = start_idx.saturating_add(entries.len() as u64);
        if their_end <= end || m.requested.is_none() {
            return Ok(()); // a duplicate, or an answer to a request given up
        }
        // Counted as the promiser counts what it sends (see `handle_pull_suffix`).
        let bytes = entries.byte_len().max(entries.len());
        if start_idx > end {
            // Ahead of a gap: kept (within the window asked for) until the gap is filled.
            if m.pull_received.saturating_add(bytes) <= window && !m.ahead.contains_key(&start_idx)
            {
                m.pull_received += bytes;
                m.ahead.insert(start_idx, entries);
            }
        } else {
            m.pull_received = m.pull_received.saturating_add(bytes);
            extend_promised(m, start_idx, &entries);
            // Then whatever was kept and now continues it.
            while let Some(&start) = m.ahead.keys().next() {
                if start > m.end() {
                    break;
                }
                if let Some(kept) = m.ahead.remove(&start) {
                    extend_promised(m, start, &kept);
                }
            }
        }
        if m.pull_received >= window {
            m.requested = None; // the whole answer is in: ask for the next part
        }
        self.try_finish_prepare()
    }

    /// Leader in the prepare phase, on a resend tick: re-asks for the pulled suffix, or,
    /// when its promiser has not answered for [`PULL_STALL_TICKS`] ticks (it crashed, or
    /// promised a higher ballot), collects the promises again.
    fn resend_pull(&mut self) -> Result<()> {
        let Some(m) = self.ls.max_promise.as_mut() else {
            return Ok(());
        };
        if m.complete() || m.requested.is_none() {
            return Ok(());
        }
        let end = m.end();
        if end != m.end_at_last_resend {
            m.end_at_last_resend = end;
            m.stalled_ticks = 0;
            return Ok(());
        }
        m.stalled_ticks += 1;
        if m.stalled_ticks >= PULL_STALL_TICKS {
            let from = m.from;
            self.log(format!(
                "server {from} stopped sending the suffix of its promise: collecting promises again"
            ));
            self.ls.max_promise = None;
            for i in 0..self.peers.len() {
                let p = self.peers[i];
                self.send_prepare_to(p);
            }
            return Ok(());
        }
        m.requested = None;
        m.ahead.clear();
        self.try_finish_prepare()
    }

    /// A majority has promised and the leader holds the most recent log among the
    /// promises: adopt it, enter the accept phase and bring every promiser up to date.
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
            let st = &mut self.ls.peers[i];
            // A follower still catching up gets it after the entries (`continue_sync`).
            if st.promise.is_some() && st.sent_idx == idx {
                st.sent_idx = idx + 1;
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
        // The first chunk of the log from `sync_idx`; the StopSign only with the chunk that
        // ends the log (the follower may accept it only right after the last entry).
        let ss_cost = self.stopsign.as_ref().map_or(0, wire::stopsign_cost);
        let budget = self.chunk_budget().saturating_sub(ss_cost);
        let suffix = self.read_chunk(sync_idx, self.log_len, budget)?;
        let end = sync_idx + suffix.len() as u64;
        let stopsign = self.stopsign.clone().filter(|_| end == self.log_len);
        let bytes = suffix.byte_len().max(suffix.len());
        let st = &mut self.ls.peers[i];
        st.accepted_idx = None;
        st.accepted_at_last_resend = None;
        st.sent_idx = end + u64::from(stopsign.is_some());
        st.chunks_in_flight.clear();
        st.chunks_in_flight.push_back((end, bytes));
        st.bytes_in_flight = bytes;
        st.sync_fresh = true;
        let msg = PaxosMessage::AcceptSync {
            n: self.ls.n_leader,
            sync_idx,
            suffix,
            decided_idx: self.decided_idx,
            stopsign,
        };
        self.send(to, msg);
        self.continue_sync(i)
    }

    /// Sends follower `i` the next chunks of the log it lacks (from what was sent to it),
    /// keeping at most [`CATCHUP_WINDOW_BYTES`] (at least two chunks) unacknowledged, then
    /// the StopSign once every
    /// entry is sent. Called when its Accepted arrives, so a lagging follower is caught up
    /// at the pace it acknowledges (the link's and its disk's), while the resend ticks
    /// cover losses.
    pub(super) fn continue_sync(&mut self, i: usize) -> Result<()> {
        let n = self.ls.n_leader;
        let log_len = self.log_len;
        let to = self.peers[i];
        {
            let st = &mut self.ls.peers[i];
            if st.promise.is_none() {
                return Ok(());
            }
            if let Some(a) = st.accepted_idx {
                while let Some(&(end, bytes)) = st.chunks_in_flight.front() {
                    if end > a {
                        break;
                    }
                    st.chunks_in_flight.pop_front();
                    st.bytes_in_flight = st.bytes_in_flight.saturating_sub(bytes);
                }
                st.sent_idx = st.sent_idx.max(a);
            }
        }
        let window = self.catchup_window();
        loop {
            let st = &self.ls.peers[i];
            let from = st.sent_idx;
            if st.bytes_in_flight >= window || from >= log_len {
                break;
            }
            if from < self.compacted_idx {
                self.log(format!(
                    "server {to} needs entries from {from}, but they are trimmed below {}; it cannot be caught up without a snapshot",
                    self.compacted_idx
                ));
                return Ok(());
            }
            let entries = self.read_chunk(from, log_len, self.chunk_budget())?;
            if entries.is_empty() {
                // Only with an entry stored under a larger max_message_bytes than now.
                self.log(format!(
                    "entry {from} does not fit in a message of max_message_bytes = {}; server {to} cannot be caught up",
                    self.limits.max_message_bytes
                ));
                return Ok(());
            }
            let end = from + entries.len() as u64;
            // At least one byte each, so that empty entries fill the window too.
            let bytes = entries.byte_len().max(entries.len());
            let st = &mut self.ls.peers[i];
            st.sent_idx = end;
            st.chunks_in_flight.push_back((end, bytes));
            st.bytes_in_flight += bytes;
            let decided_idx = self.decided_idx;
            self.send(
                to,
                PaxosMessage::AcceptDecide {
                    n,
                    start_idx: from,
                    entries,
                    decided_idx,
                },
            );
        }
        if self.ls.peers[i].sent_idx == log_len {
            if let Some(stopsign) = self.stopsign.clone() {
                self.ls.peers[i].sent_idx = log_len + 1;
                let idx = log_len;
                self.send(to, PaxosMessage::AcceptStopSign { n, idx, stopsign });
            }
        }
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
        let decided_idx = self.decided_idx;
        let end = self.log_len;
        // The followers that have everything before the batch; one still catching up gets
        // these entries in its chunks (`continue_sync`).
        for st in self.ls.peers.iter_mut() {
            if st.promise.is_some() && st.sent_idx == start_idx {
                st.sent_idx = end;
            }
        }
        // The next batch starts with room for one like this one, instead of growing (and
        // copying) its way up again.
        let next = Entries::with_capacity(self.batch.len(), self.batch.byte_len());
        let batch = std::mem::replace(&mut self.batch, next);
        // Cut by bytes: one message when it surely fits (the usual case, nothing copied),
        // otherwise in parts that each fit.
        let budget = self.entry_budget();
        if batch.byte_len().saturating_add(9 * batch.len()) <= budget {
            self.send_batch_part(end, start_idx, batch, decided_idx);
        } else {
            let (mut from, mut cost) = (0usize, 0usize);
            for k in 0..batch.len() {
                let c = wire::entry_cost(batch.get(k).map_or(0, <[u8]>::len));
                if k > from && cost + c > budget {
                    let part = batch.slice(from, k);
                    self.send_batch_part(end, start_idx + from as u64, part, decided_idx);
                    (from, cost) = (k, 0);
                }
                cost += c;
            }
            let part = batch.slice(from, batch.len());
            self.send_batch_part(end, start_idx + from as u64, part, decided_idx);
        }
        self.ls.decide_pending = false;
        Ok(())
    }

    /// Sends `part` (entries from `part_start`) of a flushed batch ending at `end` to every
    /// follower that has everything before the batch (`flush_batch` set its `sent_idx` to
    /// `end`).
    fn send_batch_part(&mut self, end: u64, part_start: u64, mut part: Entries, decided_idx: u64) {
        // Shared, so that the clones below share its bytes.
        part.share();
        let n = self.ls.n_leader;
        let current = |st: &PeerState| st.promise.is_some() && st.sent_idx == end;
        let count = self.ls.peers.iter().filter(|st| current(st)).count();
        let mut k = 0;
        for i in 0..self.peers.len() {
            if !current(&self.ls.peers[i]) {
                continue;
            }
            k += 1;
            let entries = if k < count {
                part.clone()
            } else {
                std::mem::take(&mut part)
            };
            let to = self.peers[i];
            self.send(
                to,
                PaxosMessage::AcceptDecide {
                    n,
                    start_idx: part_start,
                    entries,
                    decided_idx,
                },
            );
        }
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
        self.continue_sync(i)
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
        if self.phase == Phase::Prepare {
            self.resend_pull()?;
        }
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            let (promise, accepted_idx, at_last) = {
                let st = &self.ls.peers[i];
                (st.promise, st.accepted_idx, st.accepted_at_last_resend)
            };
            match (self.phase, promise, accepted_idx) {
                (_, None, _) => self.send_prepare_to(to),
                (Phase::Accept, Some(_), None) => {
                    // Give the AcceptSync one full resend period to be answered.
                    if std::mem::take(&mut self.ls.peers[i].sync_fresh) {
                        continue;
                    }
                    self.send_accept_sync(i)?
                }
                (Phase::Accept, Some(_), Some(a)) => {
                    let stalled = at_last == Some(a);
                    if a < self.accepted_len() && stalled {
                        // Nothing acknowledged since the last tick: what was sent from `a`
                        // on is taken as lost; send it again (entries, then the StopSign).
                        let st = &mut self.ls.peers[i];
                        st.sent_idx = a;
                        st.chunks_in_flight.clear();
                        st.bytes_in_flight = 0;
                        self.continue_sync(i)?;
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

/// Appends to the promised suffix `m` holds the part of `entries` (starting at
/// `start_idx <= m.end()`) that extends it, never past the promised log's end.
fn extend_promised(m: &mut MaxPromise, start_idx: u64, entries: &Entries) {
    let end = m.end();
    let their_end = start_idx.saturating_add(entries.len() as u64);
    if start_idx > end || their_end <= end {
        return;
    }
    let skip = (end - start_idx) as usize;
    let upto = (their_end.min(m.accepted_idx).max(end) - start_idx) as usize;
    if upto > skip {
        m.suffix.extend_from_range(entries, skip, upto);
    }
}
