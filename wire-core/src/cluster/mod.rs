//! Cluster membership: joining (idempotent, with address updates), removing members, and the
//! node-level calls a follower makes to its leader on the Raft listener (forwarded writes,
//! read-index, joins, removals, leadership hand-off).
//!
//! Deciding what a join means is pure ([`plan_join`]); the node (`node.rs`) executes the plan.

pub mod calls;
pub mod rpc;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::consensus::{NodeId, WireNode, PROTOCOL_VERSION};

/// A request to add (or re-add) a node to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub http_addr: String,
    pub raft_addr: String,
    /// Join as a non-voting learner.
    #[serde(default)]
    pub learner: bool,
    /// The joining node's protocol version ([`PROTOCOL_VERSION`] when left out, as by an
    /// operator's hand-made join).
    #[serde(default = "current_protocol")]
    pub protocol: u32,
}

fn current_protocol() -> u32 {
    PROTOCOL_VERSION
}

impl JoinRequest {
    /// The member record this request asks for.
    pub fn node(&self) -> WireNode {
        WireNode {
            http_addr: self.http_addr.clone(),
            raft_addr: self.raft_addr.clone(),
        }
    }
}

/// What the leader must do for a join, decided from the current membership alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinPlan {
    /// The node is already a member with these addresses and role: nothing to do.
    AlreadyMember,
    /// A member with this id exists under other addresses: replace them, then make it a
    /// voter if `promote`.
    UpdateAddress { promote: bool },
    /// A new node: add it as a learner (it catches up), then make it a voter if `promote`.
    Add { promote: bool },
    /// A learner that should now vote.
    Promote,
    /// The request cannot be honoured; the reason says why.
    Conflict(String),
}

/// Decides what a join request means given the current members and voters.
pub fn plan_join<'a>(
    members: impl IntoIterator<Item = (&'a NodeId, &'a WireNode)>,
    voters: &BTreeSet<NodeId>,
    req: &JoinRequest,
) -> JoinPlan {
    if req.protocol != PROTOCOL_VERSION {
        return JoinPlan::Conflict(format!(
            "node {} speaks Wire protocol {}, this cluster {PROTOCOL_VERSION}: every node of a cluster must speak the same one",
            req.node_id, req.protocol
        ));
    }
    let wanted = req.node();
    let want_voter = !req.learner;
    let mut existing = None;
    for (id, node) in members {
        if *id == req.node_id {
            existing = Some(node.clone());
        } else if node.raft_addr == wanted.raft_addr || node.http_addr == wanted.http_addr {
            return JoinPlan::Conflict(format!(
                "node {id} already uses these addresses ({node}); node {} cannot join with them",
                req.node_id
            ));
        }
    }
    let is_voter = voters.contains(&req.node_id);
    match existing {
        None => JoinPlan::Add {
            promote: want_voter,
        },
        Some(node) if node != wanted => JoinPlan::UpdateAddress {
            promote: want_voter && !is_voter,
        },
        Some(_) if want_voter && !is_voter => JoinPlan::Promote,
        Some(_) if !want_voter && is_voter => JoinPlan::Conflict(format!(
            "node {} is a voter; remove it before it rejoins as a learner",
            req.node_id
        )),
        Some(_) => JoinPlan::AlreadyMember,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn node(h: u16, r: u16) -> WireNode {
        WireNode {
            http_addr: format!("127.0.0.1:{h}"),
            raft_addr: format!("127.0.0.1:{r}"),
        }
    }

    fn req(id: NodeId, h: u16, r: u16, learner: bool) -> JoinRequest {
        JoinRequest {
            node_id: id,
            http_addr: format!("127.0.0.1:{h}"),
            raft_addr: format!("127.0.0.1:{r}"),
            learner,
            protocol: PROTOCOL_VERSION,
        }
    }

    /// A node of another protocol version is refused whatever else its join asks, and a
    /// hand-made join without the field counts as this version.
    #[test]
    fn a_node_of_another_protocol_version_cannot_join() {
        let members: BTreeMap<NodeId, WireNode> = [(1, node(8081, 9081))].into();
        let voters: BTreeSet<NodeId> = [1].into();
        let mut newer = req(2, 8082, 9082, false);
        newer.protocol = PROTOCOL_VERSION + 1;
        match plan_join(&members, &voters, &newer) {
            JoinPlan::Conflict(why) => assert!(why.contains("protocol"), "{why}"),
            other => panic!("{other:?}"),
        }
        let by_hand: JoinRequest = serde_json::from_str(
            r#"{"node_id": 2, "http_addr": "127.0.0.1:8082", "raft_addr": "127.0.0.1:9082"}"#,
        )
        .expect("join");
        assert_eq!(by_hand.protocol, PROTOCOL_VERSION);
        assert!(matches!(
            plan_join(&members, &voters, &by_hand),
            JoinPlan::Add { promote: true }
        ));
        let this = PROTOCOL_VERSION.to_string();
        let other = (PROTOCOL_VERSION + 1).to_string();
        assert_eq!(crate::consensus::protocol_mismatch(Some(&this)), None);
        assert!(crate::consensus::protocol_mismatch(None).is_some());
        assert!(crate::consensus::protocol_mismatch(Some(&other)).is_some());
    }

    #[test]
    fn joins_are_planned_from_the_membership() {
        let members: BTreeMap<NodeId, WireNode> = [
            (1, node(8081, 9081)),
            (2, node(8082, 9082)),
            (3, node(8083, 9083)),
        ]
        .into();
        let voters: BTreeSet<NodeId> = [1, 2].into();
        let plan = |r: JoinRequest| plan_join(&members, &voters, &r);

        assert_eq!(plan(req(2, 8082, 9082, false)), JoinPlan::AlreadyMember);
        assert_eq!(plan(req(3, 8083, 9083, true)), JoinPlan::AlreadyMember);
        assert_eq!(
            plan(req(4, 8084, 9084, false)),
            JoinPlan::Add { promote: true }
        );
        assert_eq!(
            plan(req(4, 8084, 9084, true)),
            JoinPlan::Add { promote: false }
        );
        assert_eq!(plan(req(3, 8083, 9083, false)), JoinPlan::Promote);
        assert_eq!(
            plan(req(2, 8092, 9092, false)),
            JoinPlan::UpdateAddress { promote: false }
        );
        assert_eq!(
            plan(req(3, 8093, 9093, false)),
            JoinPlan::UpdateAddress { promote: true }
        );
        assert!(matches!(
            plan(req(5, 8082, 9095, false)),
            JoinPlan::Conflict(_)
        ));
        assert!(matches!(
            plan(req(1, 8081, 9081, true)),
            JoinPlan::Conflict(_)
        ));
    }
}
