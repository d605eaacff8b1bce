//! When a node campaigns. openraft 0.9 has no pre-vote, and its own election timer waits
//! a leader lease plus a timeout, and three more election timeouts after it lost a vote to
//! a longer log: survivors of a dead leader sat idle for 5–6 s, and a node that came back
//! from a pause campaigned at once and deposed a healthy leader. So its timer is off
//! (`enable_elect: false`) and Wire decides here, the way etcd does:
//!
//! - a voter that has heard from no leader for a randomized election timeout asks the other
//!   voters for a pre-vote, which changes nothing on them;
//! - a voter grants it only if it has not heard from a leader within the lease (the
//!   shortest election timeout, which is also openraft's lease on real votes) and the
//!   candidate's log is at least as up to date as its own; a leader that a quorum has
//!   acknowledged within the lease refuses;
//! - only with a quorum of pre-votes does the node start a real election (a new term).
//!
//! A node that merely lost touch (paused, cut off, restarted) therefore never raises the
//! term while the others follow a live leader, and a node whose log is behind never
//! campaigns in vain. [`ElectionTimer`] and [`answer_pre_vote`] are pure; the driver
//! ([`run`]) and the pre-vote endpoint do the I/O.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{LogId, NodeId};

/// The election settings of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionSettings {
    /// How often a leader sends heartbeats.
    pub heartbeat: Duration,
    /// The shortest election timeout; also the lease a heartbeat gives its leader.
    pub min: Duration,
    /// The longest election timeout.
    pub max: Duration,
}

impl ElectionSettings {
    /// openraft's own settings derived from these: its lease on votes is its
    /// `election_timeout_max`, so that is ours `min`; its own timer never runs.
    pub fn raft_timeouts(&self) -> (u64, u64) {
        let lease = self.min.as_millis() as u64;
        let heartbeat = self.heartbeat.as_millis() as u64;
        ((lease / 2).max(heartbeat + 1), lease)
    }
}

/// When this node last heard from a leader it follows (or granted a vote). Clones share it.
#[derive(Debug, Clone)]
pub struct LeaderContact(Arc<Mutex<Instant>>);

impl Default for LeaderContact {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }
}

impl LeaderContact {
    /// Records contact now.
    pub fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// The last contact.
    pub fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The follower's election timer: due once no leader was heard from for the current
/// timeout, and again one timeout after each attempt; the timeout is drawn anew from
/// `[min, max]` after every attempt, so that two nodes rarely try together twice.
#[derive(Debug)]
pub(crate) struct ElectionTimer {
    settings: ElectionSettings,
    timeout: Duration,
    last_attempt: Option<Instant>,
    seed: u64,
}

impl ElectionTimer {
    pub(crate) fn new(settings: ElectionSettings, seed: u64) -> Self {
        let mut timer = Self {
            settings,
            timeout: settings.min,
            last_attempt: None,
            seed: seed | 1,
        };
        timer.redraw();
        timer
    }

    fn redraw(&mut self) {
        // xorshift: no dependency, and a seed per node keeps nodes apart.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let span = self
            .settings
            .max
            .saturating_sub(self.settings.min)
            .as_millis() as u64;
        let extra = if span == 0 { 0 } else { self.seed % (span + 1) };
        self.timeout = self.settings.min + Duration::from_millis(extra);
    }

    /// The timeout in force.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether to ask for pre-votes now, given the last contact with a leader. A node that is
    /// the only voter (`alone`) has no leader to wait for: it is due at once, and again one
    /// timeout after each attempt.
    pub(crate) fn due(&self, now: Instant, last_contact: Instant, alone: bool) -> bool {
        let since = |t: Instant| now.saturating_duration_since(t) >= self.timeout;
        (alone || since(last_contact)) && self.last_attempt.is_none_or(since)
    }

    /// Notes an attempt made now (whatever its outcome).
    pub(crate) fn attempted(&mut self, now: Instant) {
        self.last_attempt = Some(now);
        self.redraw();
    }

    /// A new term or vote was seen: draws a new timeout.
    pub(crate) fn new_term(&mut self) {
        self.redraw();
    }

    /// Forgets attempts: the node leads or follows a leader again.
    pub(crate) fn settle(&mut self) {
        if self.last_attempt.take().is_some() {
            self.redraw();
        }
    }
}

/// A request for a pre-vote: would you vote for me in a new term?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    /// The candidate's last log id.
    pub last_log_id: Option<LogId>,
}

/// Why a pre-vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// This node leads, and a quorum acknowledged it within the lease.
    LeaderAlive,
    /// This node heard from a leader this many milliseconds ago, within the lease.
    LeaderHeard { millis_ago: u64 },
    /// The candidate's log is behind this node's.
    LogBehind { mine: Option<LogId> },
    /// This node does not vote.
    NotVoter,
}

/// The answer to a pre-vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteResponse {
    /// `None`: granted.
    pub refused: Option<Refusal>,
}

/// What a voter knows when it answers a pre-vote.
#[derive(Debug, Clone)]
pub(crate) struct VoterView {
    pub voter: bool,
    /// Leads, with a quorum's acknowledgement this long ago (`None`: not leading).
    pub leading_acked: Option<Option<Duration>>,
    /// Since this node last heard from a leader it follows.
    pub since_contact: Duration,
    pub last_log_id: Option<LogId>,
}

/// The answer of a voter to a pre-vote: refuse while a leader is known alive within the
/// lease or the candidate's log is behind; otherwise grant (nothing changes on this node).
pub(crate) fn answer_pre_vote(
    req: &PreVoteRequest,
    me: &VoterView,
    lease: Duration,
) -> PreVoteResponse {
    let refused = if !me.voter {
        Some(Refusal::NotVoter)
    } else if let Some(acked) = me.leading_acked {
        acked
            .is_some_and(|a| a < lease)
            .then_some(Refusal::LeaderAlive)
    } else if me.since_contact < lease {
        Some(Refusal::LeaderHeard {
            millis_ago: me.since_contact.as_millis() as u64,
        })
    } else {
        None
    };
    let refused = refused.or_else(|| {
        (req.last_log_id < me.last_log_id).then_some(Refusal::LogBehind {
            mine: me.last_log_id,
        })
    });
    PreVoteResponse { refused }
}

/// Whether `granted` (the candidate included) is a quorum of every voter set in `configs`
/// (one set, or two during a joint membership change).
pub(crate) fn is_quorum(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|set| set.intersection(granted).count() * 2 > set.len())
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn settings() -> ElectionSettings {
        ElectionSettings {
            heartbeat: Duration::from_millis(100),
            min: Duration::from_millis(750),
            max: Duration::from_millis(1500),
        }
    }

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn follower(since_contact_ms: u64, last: Option<LogId>) -> VoterView {
        VoterView {
            voter: true,
            leading_acked: None,
            since_contact: Duration::from_millis(since_contact_ms),
            last_log_id: last,
        }
    }

    fn ask(last: Option<LogId>) -> PreVoteRequest {
        PreVoteRequest {
            candidate: 2,
            last_log_id: last,
        }
    }

    const LEASE: Duration = Duration::from_millis(750);

    #[test]
    fn a_voter_that_hears_a_leader_refuses_and_one_that_does_not_grants() {
        let heard = answer_pre_vote(&ask(log(1, 9)), &follower(120, log(1, 9)), LEASE);
        assert_eq!(
            heard.refused,
            Some(Refusal::LeaderHeard { millis_ago: 120 })
        );
        let silent = answer_pre_vote(&ask(log(1, 9)), &follower(800, log(1, 9)), LEASE);
        assert_eq!(silent.refused, None);
    }

    #[test]
    fn a_candidate_with_a_shorter_or_older_log_is_refused() {
        let shorter = answer_pre_vote(&ask(log(1, 8)), &follower(800, log(1, 9)), LEASE);
        assert_eq!(
            shorter.refused,
            Some(Refusal::LogBehind { mine: log(1, 9) })
        );
        let older_term = answer_pre_vote(&ask(log(1, 20)), &follower(800, log(2, 9)), LEASE);
        assert!(older_term.refused.is_some());
        let longer = answer_pre_vote(&ask(log(1, 10)), &follower(800, log(1, 9)), LEASE);
        assert_eq!(longer.refused, None);
    }

    #[test]
    fn a_leader_refuses_while_its_quorum_answers_and_learners_never_grant() {
        let mut leader = follower(5_000, log(1, 9));
        leader.leading_acked = Some(Some(Duration::from_millis(90)));
        assert_eq!(
            answer_pre_vote(&ask(log(1, 9)), &leader, LEASE).refused,
            Some(Refusal::LeaderAlive)
        );
        leader.leading_acked = Some(Some(Duration::from_millis(2_000)));
        assert_eq!(
            answer_pre_vote(&ask(log(1, 9)), &leader, LEASE).refused,
            None
        );
        let mut learner = follower(5_000, None);
        learner.voter = false;
        assert_eq!(
            answer_pre_vote(&ask(log(1, 9)), &learner, LEASE).refused,
            Some(Refusal::NotVoter)
        );
    }

    #[test]
    fn the_timer_waits_a_timeout_after_contact_and_after_each_attempt() {
        let mut timer = ElectionTimer::new(settings(), 42);
        let t0 = Instant::now();
        let timeout = timer.timeout();
        assert!(timeout >= settings().min && timeout <= settings().max);
        assert!(!timer.due(t0 + timeout - Duration::from_millis(1), t0, false));
        assert!(timer.due(t0 + timeout, t0, false));
        // Contact pushes the deadline.
        assert!(!timer.due(t0 + timeout, t0 + Duration::from_millis(100), false));
        // After an attempt, the next one waits a (new) timeout.
        let tried = t0 + timeout;
        timer.attempted(tried);
        let next = timer.timeout();
        assert!(!timer.due(tried + next - Duration::from_millis(1), t0, false));
        assert!(timer.due(tried + next, t0, false));
        timer.settle();
        assert!(timer.due(
            tried + Duration::from_millis(1) + timer.timeout(),
            t0,
            false
        ));
    }

    #[test]
    fn the_only_voter_is_due_at_once() {
        let mut timer = ElectionTimer::new(settings(), 3);
        let t0 = Instant::now();
        assert!(timer.due(t0, t0, true));
        timer.attempted(t0);
        assert!(!timer.due(t0 + Duration::from_millis(10), t0, true));
        assert!(timer.due(t0 + timer.timeout(), t0, true));
    }

    #[test]
    fn timeouts_spread_over_the_range() {
        let mut timer = ElectionTimer::new(settings(), 7);
        let mut seen = BTreeSet::new();
        for i in 0..200 {
            timer.attempted(Instant::now());
            let t = timer.timeout();
            assert!(
                t >= settings().min && t <= settings().max,
                "draw {i}: {t:?}"
            );
            seen.insert(t.as_millis() / 100);
        }
        assert!(seen.len() >= 7, "timeouts cluster: {seen:?}");
    }

    #[test]
    fn quorum_counts_each_voter_set() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<_>>();
        assert!(is_quorum(&[set(&[1, 2, 3])], &set(&[1, 3])));
        assert!(!is_quorum(&[set(&[1, 2, 3])], &set(&[1])));
        assert!(is_quorum(&[set(&[1])], &set(&[1])));
        // Joint: a majority of both.
        assert!(!is_quorum(
            &[set(&[1, 2, 3]), set(&[3, 4, 5])],
            &set(&[1, 2, 3])
        ));
        assert!(is_quorum(
            &[set(&[1, 2, 3]), set(&[3, 4, 5])],
            &set(&[1, 3, 4])
        ));
    }

    #[test]
    fn raft_timeouts_put_the_lease_at_the_shortest_election_timeout() {
        assert_eq!(settings().raft_timeouts(), (375, 750));
        let tight = ElectionSettings {
            heartbeat: Duration::from_millis(100),
            min: Duration::from_millis(150),
            max: Duration::from_millis(300),
        };
        assert_eq!(tight.raft_timeouts(), (101, 150));
    }
}
