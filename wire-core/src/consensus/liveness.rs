//! Which members are alive, as the leader knows it: when each peer last answered one of this
//! node's Raft messages (heartbeats go out every `heartbeat_ms`, so a live follower answers
//! several times a second). A member silent for longer than `failover_after` is not alive,
//! and the leader's assigner moves its partitions to live members.
//!
//! A node only knows this while it leads (followers send no heartbeats): a newly elected
//! leader counts every peer as heard at the moment it took over, so a leader change does not
//! declare anyone dead. Followers ask the leader (`ClusterOps::liveness`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{NodeId, Raft};

/// A member's liveness as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLiveness {
    pub alive: bool,
    /// Milliseconds since the leader last heard from it (0 for the leader itself).
    pub last_heard_ms: u64,
}

/// Whether a member silent for `silence` is still trusted.
pub fn alive(silence: Duration, failover_after: Duration) -> bool {
    silence <= failover_after
}

#[derive(Debug, Default)]
struct State {
    heard: BTreeMap<NodeId, Instant>,
    /// Since when this node leads (none while it does not).
    leading_since: Option<Instant>,
}

/// When each peer last answered this node. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Liveness(Arc<Mutex<State>>);

impl Liveness {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `peer` answered a message just now.
    pub fn heard(&self, peer: NodeId) {
        self.state().heard.insert(peer, Instant::now());
    }

    /// Whether this node leads, as of now.
    pub fn set_leading(&self, leading: bool) {
        let mut s = self.state();
        match (leading, s.leading_since) {
            (true, None) => s.leading_since = Some(Instant::now()),
            (false, Some(_)) => s.leading_since = None,
            _ => {}
        }
    }

    /// How long `peer` has been silent, counted from when this node began to lead at the
    /// earliest; `None` while this node does not lead.
    pub fn silence(&self, peer: NodeId, now: Instant) -> Option<Duration> {
        let s = self.state();
        let since = s.leading_since?;
        let last = s.heard.get(&peer).map_or(since, |h| (*h).max(since));
        Some(now.saturating_duration_since(last))
    }

    /// Every member's liveness (`me` always alive); `None` while this node does not lead.
    pub fn view(
        &self,
        me: NodeId,
        members: impl IntoIterator<Item = NodeId>,
        failover_after: Duration,
    ) -> Option<BTreeMap<NodeId, MemberLiveness>> {
        self.state().leading_since?;
        let now = Instant::now();
        let mut out = BTreeMap::new();
        for id in members {
            let silence = if id == me {
                Duration::ZERO
            } else {
                self.silence(id, now)?
            };
            out.insert(
                id,
                MemberLiveness {
                    alive: alive(silence, failover_after),
                    last_heard_ms: silence.as_millis() as u64,
                },
            );
        }
        Some(out)
    }

    /// Keeps `leading` in step with Raft's state until `stop` is set.
    pub async fn follow(self, raft: Raft, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut metrics = raft.metrics();
        loop {
            let leading = {
                let m = metrics.borrow_and_update();
                m.current_leader == Some(m.id)
            };
            self.set_leading(leading);
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_member_is_alive_until_silent_past_the_limit_counted_from_the_takeover() {
        let l = Liveness::default();
        let limit = Duration::from_secs(3);
        assert!(
            l.view(1, [1, 2], limit).is_none(),
            "a follower does not know"
        );
        l.heard(2);
        tokio::time::advance(Duration::from_secs(10)).await;
        // Became leader now: node 2's old answer is not held against it, nor node 3's none.
        l.set_leading(true);
        let v = l.view(1, [1, 2, 3], limit).expect("leader");
        assert!(v.values().all(|m| m.alive));
        tokio::time::advance(Duration::from_secs(2)).await;
        l.heard(2);
        tokio::time::advance(Duration::from_millis(1500)).await;
        let v = l.view(1, [1, 2, 3], limit).expect("leader");
        assert_eq!(v[&1].last_heard_ms, 0);
        assert_eq!(
            v[&2],
            MemberLiveness {
                alive: true,
                last_heard_ms: 1500
            }
        );
        assert_eq!(
            v[&3],
            MemberLiveness {
                alive: false,
                last_heard_ms: 3500
            }
        );
        l.set_leading(false);
        assert!(l.view(1, [1, 2, 3], limit).is_none());
    }
}
