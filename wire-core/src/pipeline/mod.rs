//! Pipelines: a spec ([`spec`]) validated into a DAG of steps ([`validate`]). Execution —
//! partitions, backpressure, checkpoints through Raft, dead letters — builds on these.

pub(crate) mod catalog;
pub mod checkpoint;
pub mod dedup;
pub mod join;
pub mod jq;
pub mod jq_fast;
pub mod json;
pub mod record;
pub mod reduce;
pub mod rolling;
pub mod runtime;
pub mod spec;
pub mod transform;
pub mod validate;
pub mod window;

pub use record::{DesiredState, PipelineRecord};
pub use spec::{ErrorPolicy, PipelineSpec, SpecError};
pub use validate::{
    validate, PipelineGraph, Registered, Step, BUILTIN_TRANSFORMS, EXCHANGE_TRANSFORMS,
};
