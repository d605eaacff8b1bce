//! Running pipelines: a validated graph bound into a [`plan::Plan`], run by [`job::Job`]s
//! (a pipeline's partitions on one node, or a keyed pipeline's on every node that runs one,
//! linked by the [`exchange`]), which the leader's assigner places
//! ([`assign`]) and each node's supervisor starts and stops ([`supervisor`]).

pub mod assign;
pub mod coordinator;
pub mod dead_letter;
pub mod event_time;
pub mod exchange;
pub mod job;
pub mod live;
pub mod metrics;
pub mod plan;
pub mod routing;
pub mod sink_worker;
pub mod source_worker;
pub mod status;
pub mod supervisor;
