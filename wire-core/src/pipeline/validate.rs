//! Validation of a [`PipelineSpec`] into a [`PipelineGraph`]: every connector and transform
//! type known and configured right, every input resolved, no cycle, every sink reachable
//! from a source. All problems are reported at once, each with its place in the spec; a
//! rejected spec changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::{parse_duration, ErrorPolicy, PipelineSpec, SpecError};
use crate::connectors::{check_config, connector, CONNECTORS};

/// Most partitions a pipeline may ask for.
pub const MAX_PARALLELISM: u32 = 1024;
/// Shortest checkpoint interval accepted.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// Transform types built into every node; other types name transforms registered on the
/// node (from Rust, Python or C).
pub const BUILTIN_TRANSFORMS: &[&str] = &[
    "jq",
    "key_by",
    "redistribute",
    "window",
    "dedup",
    "reduce",
    "join",
    "aggregate",
];
/// Transform types that keep state per key (after a `key_by`).
pub const STATEFUL_TRANSFORMS: &[&str] = &["window", "dedup", "reduce", "join", "aggregate"];
/// Transform types that run on event time.
const EVENT_TIME_TRANSFORMS: &[&str] = &["window", "dedup", "join"];
/// Default and largest `max_state_bytes`.
pub const DEFAULT_STATE_BYTES: u64 = 1024 * 1024;
pub const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// Event time, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventTime {
    /// A jq expression on the record as read (epoch ms or RFC 3339); `None`: the source's
    /// time or the read time.
    pub field: Option<String>,
    pub max_delay: Duration,
    pub idle_after: Duration,
}
/// Transform types after which records cross to other partitions (over the exchange when
/// those run on other nodes): the steps that read their output run where the records land.
pub const EXCHANGE_TRANSFORMS: &[&str] = &["key_by", "redistribute"];

/// `type: redistribute`: spreads records round-robin over the pipeline's partitions (after
/// a source with fewer splits than partitions, so the steps after it use every partition).
/// No settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedistributeConfig {}

/// `type: jq`: runs a jq filter on each JSON record; each output is a record (so one filter
/// maps, filters — `select(...)` — and flat-maps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JqConfig {
    pub filter: String,
}

/// `type: key_by`: sets each record's key to the result of a jq expression (`key`), or of a
/// transform registered on the node that sets keys (`transform`: a Python or C key function),
/// and routes it to the partition that owns the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyByConfig {
    pub key: Option<String>,
    pub transform: Option<String>,
}

/// A validated step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Unique in the pipeline.
    pub id: String,
    /// The connector or transform type.
    pub kind: String,
    /// Ids of the steps it reads (empty for sources).
    pub inputs: Vec<String>,
    pub config: Value,
    /// What happens to a record this step fails on.
    pub on_error: ErrorPolicy,
    /// Where the step is in the spec (`transforms[1]`).
    pub path: String,
}

/// A validated pipeline: its steps, transforms in an order where each comes after its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineGraph {
    pub name: String,
    pub parallelism: u32,
    pub checkpoint_interval: Duration,
    pub sources: Vec<Step>,
    pub transforms: Vec<Step>,
    pub sinks: Vec<Step>,
    pub dead_letter: Option<Step>,
    /// The node every partition must run on, if pinned.
    #[serde(default)]
    pub node: Option<u64>,
    /// Event time and watermarks: set when the spec says so or a window needs them.
    #[serde(default)]
    pub event_time: Option<EventTime>,
    /// Most bytes of window state one partition may checkpoint.
    #[serde(default = "default_state_bytes")]
    pub max_state_bytes: u64,
}

fn default_state_bytes() -> u64 {
    DEFAULT_STATE_BYTES
}

/// A jq program must be present and compile.
fn check_jq(code: &str, path: &str, errors: &mut Vec<SpecError>) {
    if code.trim().is_empty() {
        errors.push(SpecError::new(path, "must not be empty"));
    } else if let Err(e) = super::jq::Jq::compile(code) {
        errors.push(SpecError::new(path, e));
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Source,
    Transform,
    Sink,
}

/// What a name registered on a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A transform (or key function): `{"type": name}`, `key_by`'s `transform`.
    Transform,
    /// A keyed function with state: `reduce`'s `function`.
    Keyed,
}

/// Validates `spec`; `registered` says what a name is registered as on the node, if it is.
pub fn validate(
    spec: &PipelineSpec,
    registered: &dyn Fn(&str) -> Option<Registered>,
) -> Result<PipelineGraph, Vec<SpecError>> {
    let mut errors = Vec::new();
    if !valid_name(&spec.name) {
        errors.push(SpecError::new(
            "name",
            "must be 1-128 characters of letters, digits, '-', '_' or '.'",
        ));
    }
    if spec.parallelism == 0 || spec.parallelism > MAX_PARALLELISM {
        errors.push(SpecError::new(
            "parallelism",
            format!("must be between 1 and {MAX_PARALLELISM}"),
        ));
    }
    let checkpoint_interval = match parse_duration(&spec.checkpoint_interval) {
        Ok(d) if d < MIN_CHECKPOINT_INTERVAL => {
            errors.push(SpecError::new(
                "checkpoint_interval",
                "must be at least 100ms",
            ));
            d
        }
        Ok(d) => d,
        Err(e) => {
            errors.push(SpecError::new("checkpoint_interval", e));
            Duration::ZERO
        }
    };
    if spec.sources.is_empty() {
        errors.push(SpecError::new(
            "sources",
            "a pipeline needs at least one source",
        ));
    }
    if spec.sinks.is_empty() {
        errors.push(SpecError::new(
            "sinks",
            "a pipeline needs at least one sink",
        ));
    }

    // Ids: given or defaulted, well-formed and unique.
    let mut kinds: BTreeMap<String, (Kind, String)> = BTreeMap::new();
    let mut assign = |given: &Option<String>,
                      default: String,
                      path: String,
                      kind: Kind,
                      errors: &mut Vec<SpecError>| {
        let id = given.clone().unwrap_or(default);
        if !valid_name(&id) {
            errors.push(SpecError::new(
                format!("{path}.id"),
                "must be 1-128 characters of letters, digits, '-', '_' or '.'",
            ));
        } else if let Some((_, first)) = kinds.get(&id) {
            errors.push(SpecError::new(
                format!("{path}.id"),
                format!("'{id}' is already the id of {first}"),
            ));
        } else {
            kinds.insert(id.clone(), (kind, path));
        }
        id
    };
    let source_ids: Vec<String> = spec
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            assign(
                &s.id,
                format!("source{i}"),
                format!("sources[{i}]"),
                Kind::Source,
                &mut errors,
            )
        })
        .collect();
    let transform_ids: Vec<String> = spec
        .transforms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            assign(
                &t.id,
                format!("transform{i}"),
                format!("transforms[{i}]"),
                Kind::Transform,
                &mut errors,
            )
        })
        .collect();
    let sink_ids: Vec<String> = spec
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            assign(
                &s.id,
                format!("sink{i}"),
                format!("sinks[{i}]"),
                Kind::Sink,
                &mut errors,
            )
        })
        .collect();

    // Types and configs.
    let known_connectors = || {
        CONNECTORS
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, s) in spec.sources.iter().enumerate() {
        let path = format!("sources[{i}]");
        match connector(&s.kind) {
            None => errors.push(SpecError::new(
                format!("{path}.type"),
                format!(
                    "unknown connector '{}'; known: {}",
                    s.kind,
                    known_connectors()
                ),
            )),
            Some(c) => match c.source {
                Some(check) => errors.extend(check(&s.config, &format!("{path}.config"))),
                None => errors.push(SpecError::new(
                    format!("{path}.type"),
                    format!("'{}' can only be a sink", s.kind),
                )),
            },
        }
    }
    let check_sink =
        |kind: &str, config: &Value, path: &str, errors: &mut Vec<SpecError>| match connector(kind)
        {
            None => errors.push(SpecError::new(
                format!("{path}.type"),
                format!("unknown connector '{kind}'; known: {}", known_connectors()),
            )),
            Some(c) => match c.sink {
                Some(check) => errors.extend(check(config, &format!("{path}.config"))),
                None => errors.push(SpecError::new(
                    format!("{path}.type"),
                    format!("'{kind}' can only be a source"),
                )),
            },
        };
    for (i, s) in spec.sinks.iter().enumerate() {
        check_sink(&s.kind, &s.config, &format!("sinks[{i}]"), &mut errors);
    }
    if let Some(d) = &spec.dead_letter {
        check_sink(&d.kind, &d.config, "dead_letter", &mut errors);
    }
    for (i, t) in spec.transforms.iter().enumerate() {
        let path = format!("transforms[{i}]");
        let config_path = format!("{path}.config");
        match t.kind.as_str() {
            "jq" => match check_config::<JqConfig>(&t.config, &config_path) {
                Ok(c) => check_jq(&c.filter, &format!("{config_path}.filter"), &mut errors),
                Err(e) => errors.push(e),
            },
            "key_by" => match check_config::<KeyByConfig>(&t.config, &config_path) {
                Ok(KeyByConfig {
                    key: Some(key),
                    transform: None,
                }) => check_jq(&key, &format!("{config_path}.key"), &mut errors),
                Ok(KeyByConfig {
                    key: None,
                    transform: Some(name),
                }) => match registered(&name) {
                    Some(Registered::Transform) => {}
                    Some(Registered::Keyed) => errors.push(SpecError::new(
                        format!("{config_path}.transform"),
                        format!("'{name}' is a keyed function (for reduce), not a key function"),
                    )),
                    None => errors.push(SpecError::new(
                        format!("{config_path}.transform"),
                        format!("no transform '{name}' is registered on the node"),
                    )),
                },
                Ok(_) => errors.push(SpecError::new(
                    config_path,
                    "give exactly one of key (a jq expression) or transform (a registered key function)",
                )),
                Err(e) => errors.push(e),
            },
            "window" => match check_config::<super::window::WindowSpec>(&t.config, &config_path) {
                Ok(w) => {
                    if let Err(e) = super::window::Window::compile(&w) {
                        errors.push(SpecError::new(config_path.clone(), e));
                    }
                }
                Err(e) => errors.push(e),
            },
            "reduce" => match check_config::<super::reduce::ReduceSpec>(&t.config, &config_path) {
                Ok(r) => match (&r.update, &r.function) {
                    (_, None) => {
                        if let Err(e) = super::reduce::Reduce::compile(&r) {
                            let at = match r.update {
                                Some(_) => format!("{config_path}.update"),
                                None => config_path.clone(),
                            };
                            errors.push(SpecError::new(at, e));
                        }
                    }
                    (Some(_), Some(_)) => errors.push(SpecError::new(
                        config_path.clone(),
                        "give exactly one of update (a jq program) or function (a registered keyed function)",
                    )),
                    (None, Some(name)) => match registered(name) {
                        Some(Registered::Keyed) => {}
                        Some(Registered::Transform) => errors.push(SpecError::new(
                            format!("{config_path}.function"),
                            format!("'{name}' is a transform, not a keyed function (register it as fold or stateful_map)"),
                        )),
                        None => errors.push(SpecError::new(
                            format!("{config_path}.function"),
                            format!("no keyed function '{name}' is registered on the node"),
                        )),
                    },
                },
                Err(e) => errors.push(e),
            },
            "aggregate" => match check_config::<super::rolling::RollingSpec>(&t.config, &config_path)
            {
                Ok(r) => {
                    if let Err(e) = super::rolling::Rolling::compile(&r) {
                        errors.push(SpecError::new(config_path.clone(), e));
                    }
                }
                Err(e) => errors.push(e),
            },
            "join" => match check_config::<super::join::JoinSpec>(&t.config, &config_path) {
                Ok(j) => {
                    if let Err(e) = super::join::Join::compile(&j) {
                        errors.push(SpecError::new(config_path.clone(), e));
                    }
                }
                Err(e) => errors.push(e),
            },
            "dedup" => match check_config::<super::dedup::DedupSpec>(&t.config, &config_path) {
                Ok(d) => {
                    if let Err(e) = super::dedup::Dedup::compile(&d) {
                        errors.push(SpecError::new(config_path.clone(), e));
                    }
                }
                Err(e) => errors.push(e),
            },
            "redistribute" => {
                if !t.config.is_null() {
                    if let Err(e) = check_config::<RedistributeConfig>(&t.config, &config_path) {
                        errors.push(e);
                    }
                }
            }
            other if registered(other) == Some(Registered::Keyed) => {
                errors.push(SpecError::new(
                    format!("{path}.type"),
                    format!(
                        "'{other}' is a keyed function: use it as {{\"type\": \"reduce\", \"config\": {{\"function\": \"{other}\"}}}} after a key_by"
                    ),
                ))
            }
            other if registered(other).is_some() => {
                if !t.config.is_object() {
                    errors.push(SpecError::new(config_path, "must be an object"));
                }
            }
            other => errors.push(SpecError::new(
                format!("{path}.type"),
                format!(
                    "unknown transform '{other}': built in are {}; others must be registered on the node",
                    BUILTIN_TRANSFORMS.join(", ")
                ),
            )),
        }
    }

    // Inputs: defaulted, resolved to sources or transforms.
    let default_inputs = |upto: usize| -> Vec<String> {
        match upto {
            0 => source_ids.clone(),
            n => vec![transform_ids[n - 1].clone()],
        }
    };
    let resolve = |given: &Option<Vec<String>>,
                   default: Vec<String>,
                   path: &str,
                   errors: &mut Vec<SpecError>|
     -> Vec<String> {
        let inputs = given.clone().unwrap_or(default);
        if given.as_ref().is_some_and(|g| g.is_empty()) {
            errors.push(SpecError::new(
                format!("{path}.inputs"),
                "must name at least one input",
            ));
        }
        for (j, input) in inputs.iter().enumerate() {
            match kinds.get(input) {
                None => errors.push(SpecError::new(
                    format!("{path}.inputs[{j}]"),
                    format!("no source or transform named '{input}'"),
                )),
                Some((Kind::Sink, at)) => errors.push(SpecError::new(
                    format!("{path}.inputs[{j}]"),
                    format!("'{input}' is a sink ({at}); inputs must be sources or transforms"),
                )),
                Some(_) => {}
            }
        }
        inputs
    };
    let transform_inputs: Vec<Vec<String>> = spec
        .transforms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let inputs = resolve(
                &t.inputs,
                default_inputs(i),
                &format!("transforms[{i}]"),
                &mut errors,
            );
            if t.kind == "join" && (inputs.len() != 2 || inputs[0] == inputs[1]) {
                errors.push(SpecError::new(
                    format!("transforms[{i}].inputs"),
                    format!(
                        "a join reads exactly two different inputs, the left then the right (got {})",
                        inputs.len()
                    ),
                ));
            }
            inputs
        })
        .collect();
    let sink_inputs: Vec<Vec<String>> = spec
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            resolve(
                &s.inputs,
                default_inputs(spec.transforms.len()),
                &format!("sinks[{i}]"),
                &mut errors,
            )
        })
        .collect();

    // Cycles among transforms, and a topological order.
    let index: BTreeMap<&str, usize> = transform_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let order = match topological_order(&transform_ids, &transform_inputs, &index) {
        Ok(order) => order,
        Err((at, input, cycle)) => {
            errors.push(SpecError::new(
                format!("transforms[{at}].inputs[{input}]"),
                format!(
                    "closes a cycle (each reads the next): {}",
                    cycle.join(" -> ")
                ),
            ));
            Vec::new()
        }
    };

    // Every sink reachable from a source; every transform's output used.
    if errors.is_empty() {
        let mut reachable: BTreeSet<&str> = source_ids.iter().map(String::as_str).collect();
        for &t in &order {
            if transform_inputs[t]
                .iter()
                .any(|i| reachable.contains(i.as_str()))
            {
                reachable.insert(&transform_ids[t]);
            }
        }
        for (i, inputs) in sink_inputs.iter().enumerate() {
            if !inputs
                .iter()
                .any(|input| reachable.contains(input.as_str()))
            {
                errors.push(SpecError::new(
                    format!("sinks[{i}]"),
                    "no source reaches this sink",
                ));
            }
        }
        check_exchanges(spec, &order, &transform_ids, &transform_inputs, &mut errors);
        let used: BTreeSet<&str> = transform_inputs
            .iter()
            .chain(&sink_inputs)
            .flatten()
            .map(String::as_str)
            .collect();
        for (i, id) in transform_ids.iter().enumerate() {
            if !used.contains(id.as_str()) {
                errors.push(SpecError::new(
                    format!("transforms[{i}]"),
                    format!("the output of '{id}' is read by no transform or sink"),
                ));
            }
        }
    }

    // Error policies.
    let default_policy = spec.on_error.unwrap_or(if spec.dead_letter.is_some() {
        ErrorPolicy::DeadLetter
    } else {
        ErrorPolicy::Fail
    });
    if spec.dead_letter.is_none() {
        if spec.on_error == Some(ErrorPolicy::DeadLetter) {
            errors.push(SpecError::new(
                "on_error",
                "dead_letter needs a dead_letter sink",
            ));
        }
        for (i, t) in spec.transforms.iter().enumerate() {
            if t.on_error == Some(ErrorPolicy::DeadLetter) {
                errors.push(SpecError::new(
                    format!("transforms[{i}].on_error"),
                    "dead_letter needs a dead_letter sink",
                ));
            }
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let step = |id: &str,
                kind: &str,
                inputs: Vec<String>,
                config: &Value,
                on_error: ErrorPolicy,
                path: String| Step {
        id: id.to_string(),
        kind: kind.to_string(),
        inputs,
        config: config.clone(),
        on_error,
        path,
    };
    if spec.node == Some(0) {
        return Err(vec![SpecError::new(
            "node",
            "must be a node id (a positive integer)",
        )]);
    }
    // Windows, dedup and joins run on event time (reduce does not need it).
    let windows = spec
        .transforms
        .iter()
        .any(|t| EVENT_TIME_TRANSFORMS.contains(&t.kind.as_str()));
    let event_time = match (&spec.event_time, windows) {
        (None, false) => None,
        (given, _) => {
            let given = given.clone().unwrap_or(super::spec::EventTimeSpec {
                field: None,
                max_delay: None,
                idle_after: None,
            });
            let mut errors = Vec::new();
            if let Some(f) = &given.field {
                check_jq(f, "event_time.field", &mut errors);
            }
            let mut duration = |text: &Option<String>, path: &str, default: Duration| match text {
                None => default,
                Some(t) => parse_duration(t).unwrap_or_else(|e| {
                    errors.push(SpecError::new(path, e));
                    default
                }),
            };
            let max_delay = duration(&given.max_delay, "event_time.max_delay", Duration::ZERO);
            let idle_after = duration(
                &given.idle_after,
                "event_time.idle_after",
                Duration::from_secs(10),
            );
            if !errors.is_empty() {
                return Err(errors);
            }
            Some(EventTime {
                field: given.field,
                max_delay,
                idle_after,
            })
        }
    };
    let max_state_bytes = spec.max_state_bytes.unwrap_or(DEFAULT_STATE_BYTES);
    if max_state_bytes == 0 || max_state_bytes > MAX_STATE_BYTES {
        return Err(vec![SpecError::new(
            "max_state_bytes",
            format!("must be between 1 and {MAX_STATE_BYTES}"),
        )]);
    }
    Ok(PipelineGraph {
        event_time,
        max_state_bytes,
        node: spec.node,
        name: spec.name.clone(),
        parallelism: spec.parallelism,
        checkpoint_interval,
        sources: spec
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                step(
                    &source_ids[i],
                    &s.kind,
                    Vec::new(),
                    &s.config,
                    default_policy,
                    format!("sources[{i}]"),
                )
            })
            .collect(),
        transforms: order
            .iter()
            .map(|&i| {
                let t = &spec.transforms[i];
                step(
                    &transform_ids[i],
                    &t.kind,
                    transform_inputs[i].clone(),
                    &t.config,
                    t.on_error.unwrap_or(default_policy),
                    format!("transforms[{i}]"),
                )
            })
            .collect(),
        sinks: spec
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                step(
                    &sink_ids[i],
                    &s.kind,
                    sink_inputs[i].clone(),
                    &s.config,
                    default_policy,
                    format!("sinks[{i}]"),
                )
            })
            .collect(),
        dead_letter: spec.dead_letter.as_ref().map(|d| {
            step(
                "dead_letter",
                &d.kind,
                Vec::new(),
                &d.config,
                ErrorPolicy::Fail,
                "dead_letter".into(),
            )
        }),
    })
}

/// Where records go across partitions: a transform that reads both records that crossed
/// (after a `key_by` or `redistribute`) and records that did not would run in two places
/// at once, and a second exchange after one is not supported yet; both are refused.
fn check_exchanges(
    spec: &PipelineSpec,
    order: &[usize],
    ids: &[String],
    inputs: &[Vec<String>],
    errors: &mut Vec<SpecError>,
) {
    // Transforms whose output has crossed: an exchange step, and all that read one; with
    // whether the records went by key (a key_by) or round-robin (a redistribute).
    let mut crossed: BTreeMap<&str, bool> = BTreeMap::new();
    for &t in order {
        let kind = spec.transforms[t].kind.as_str();
        let from: Vec<bool> = inputs[t]
            .iter()
            .map(|i| crossed.contains_key(i.as_str()))
            .collect();
        let by_key = inputs[t]
            .iter()
            .all(|i| crossed.get(i.as_str()).copied().unwrap_or(false));
        let path = format!("transforms[{t}]");
        if EXCHANGE_TRANSFORMS.contains(&kind) {
            if let Some(j) = from.iter().position(|c| *c) {
                errors.push(SpecError::new(
                    format!("{path}.inputs[{j}]"),
                    format!(
                        "'{}' reads '{}', which comes after a key_by or redistribute: a second one on a path is not supported yet",
                        ids[t], inputs[t][j]
                    ),
                ));
            }
            crossed.insert(&ids[t], kind == "key_by");
        } else if STATEFUL_TRANSFORMS.contains(&kind) {
            if !by_key {
                errors.push(SpecError::new(
                    format!("{path}.type"),
                    format!(
                        "{kind} '{}' must come after a key_by: its state is kept per key, in the partition that owns the key",
                        ids[t]
                    ),
                ));
            }
            crossed.insert(&ids[t], true);
        } else if from.iter().any(|c| *c) {
            if let Some(j) = from.iter().position(|c| !*c) {
                errors.push(SpecError::new(
                    format!("{path}.inputs[{j}]"),
                    format!(
                        "'{}' reads both records that crossed partitions (after a key_by or redistribute) and '{}', whose records did not; put the key_by or redistribute after the fan-in",
                        ids[t], inputs[t][j]
                    ),
                ));
            }
            crossed.insert(&ids[t], by_key);
        }
    }
}

/// Orders transforms so each comes after the transforms it reads; on a cycle, returns the
/// transform and input index that close it, with the cycle's ids.
fn topological_order(
    ids: &[String],
    inputs: &[Vec<String>],
    index: &BTreeMap<&str, usize>,
) -> Result<Vec<usize>, (usize, usize, Vec<String>)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        t: usize,
        ids: &[String],
        inputs: &[Vec<String>],
        index: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), (usize, usize, Vec<String>)> {
        marks[t] = Mark::Active;
        stack.push(t);
        for (j, input) in inputs[t].iter().enumerate() {
            let Some(&u) = index.get(input.as_str()) else {
                continue;
            };
            match marks[u] {
                Mark::Done => {}
                Mark::Active => {
                    let from = stack.iter().position(|&s| s == u).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|&s| ids[s].clone()).collect();
                    cycle.push(ids[u].clone());
                    return Err((t, j, cycle));
                }
                Mark::New => visit(u, ids, inputs, index, marks, stack, order)?,
            }
        }
        stack.pop();
        marks[t] = Mark::Done;
        order.push(t);
        Ok(())
    }
    let mut marks = vec![Mark::New; ids.len()];
    let mut order = Vec::with_capacity(ids.len());
    for t in 0..ids.len() {
        if marks[t] == Mark::New {
            visit(
                t,
                ids,
                inputs,
                index,
                &mut marks,
                &mut Vec::new(),
                &mut order,
            )?;
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<Registered> {
        None
    }

    fn parse(text: &str) -> PipelineSpec {
        match PipelineSpec::parse(text) {
            Ok(s) => s,
            Err(e) => panic!("spec should parse: {e:?}"),
        }
    }

    fn paths(errors: &[SpecError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    const YAML: &str = r#"
name: orders
parallelism: 2
checkpoint_interval: 5s
sources:
  - {id: events, type: file, config: {path: events.jsonl}}
  - {id: more, type: generator, config: {count: 10}}
transforms:
  - {id: keyed, type: key_by, inputs: [clean], config: {key: .user}}
  - {id: clean, type: jq, inputs: [events, more], config: {filter: "select(.amount > 5)"}}
sinks:
  - {id: out, type: file, inputs: [keyed], config: {path: out/, rotate_interval: 1m}}
  - {id: show, type: stdout, inputs: [keyed]}
dead_letter: {type: file, config: {path: dead/}}
"#;

    #[test]
    fn yaml_and_json_give_the_same_graph() {
        let yaml = parse(YAML);
        let json_text =
            serde_json::to_string(&serde_norway::from_str::<Value>(YAML).unwrap()).unwrap();
        let json = parse(&json_text);
        assert_eq!(yaml, json);
        let g = validate(&yaml, &none).unwrap();
        assert_eq!(g.parallelism, 2);
        assert_eq!(g.checkpoint_interval, Duration::from_secs(5));
        // Fan-in (clean reads two sources), then in dependency order, then fan-out to two sinks.
        let order: Vec<&str> = g.transforms.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(order, ["clean", "keyed"]);
        assert_eq!(g.transforms[0].inputs, ["events", "more"]);
        assert!(g.sinks.iter().all(|s| s.inputs == ["keyed"]));
        // With a dead-letter sink, steps default to sending bad records there.
        assert!(g
            .transforms
            .iter()
            .all(|t| t.on_error == ErrorPolicy::DeadLetter));
        assert_eq!(g.dead_letter.unwrap().kind, "file");
    }

    #[test]
    fn the_original_shape_needs_no_ids_or_inputs() {
        let spec = parse(
            r#"{"name": "copy",
                "sources": [{"type": "file", "config": {"path": "in.jsonl"}}],
                "transforms": [{"type": "jq", "config": {"filter": ".a"}},
                               {"type": "jq", "config": {"filter": ".b"}}],
                "sinks": [{"type": "stdout"}]}"#,
        );
        let g = validate(&spec, &none).unwrap();
        assert_eq!(g.sources[0].id, "source0");
        assert_eq!(g.transforms[0].inputs, ["source0"]);
        assert_eq!(g.transforms[1].inputs, ["transform0"]);
        assert_eq!(g.sinks[0].inputs, ["transform1"]);
        assert_eq!(g.parallelism, 1);
        assert_eq!(g.checkpoint_interval, Duration::from_secs(10));
        assert!(g.transforms.iter().all(|t| t.on_error == ErrorPolicy::Fail));
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let spec = parse(
            r#"
name: "bad name!"
parallelism: 0
checkpoint_interval: 5 minutes
on_error: dead_letter
sources:
  - {id: a, type: mqtt}
  - {id: b, type: stdout}
  - {id: c, type: file, config: {path: x, format: xml}}
  - {id: d, type: file, config: {path: x, colour: red}}
transforms:
  - {id: t1, type: jq, inputs: [a, nowhere], config: {filter: "select(.x >"}}
  - {id: t2, type: jq, inputs: [t3], config: {filter: .x}}
  - {id: t3, type: jq, inputs: [t2], config: {filter: .x}}
  - {id: t4, type: enrich, inputs: [a]}
  - {id: t1, type: jq, inputs: [out], config: {}}
sinks:
  - {id: out, type: generator, inputs: [t1]}
  - {id: o2, type: file, inputs: [t1], config: {path: o, rotate_bytes: 0}}
"#,
        );
        let errors = validate(&spec, &none).unwrap_err();
        let mut got = paths(&errors);
        got.sort();
        let mut want = vec![
            "name",
            "parallelism",
            "checkpoint_interval",
            "transforms[4].id",
            "sources[0].type",
            "sources[1].type",
            "sources[2].config.format",
            "sources[3].config.colour",
            "sinks[0].type",
            "sinks[1].config.rotate_bytes",
            "transforms[3].type",
            "transforms[4].config",
            "transforms[0].inputs[1]",
            "transforms[0].config.filter",
            "transforms[4].inputs[0]",
            "transforms[2].inputs[0]",
            "on_error",
        ];
        want.sort();
        assert_eq!(got, want, "{errors:#?}");
        let text = |p: &str| {
            errors
                .iter()
                .find(|e| e.path == p)
                .map(|e| e.message.clone())
                .unwrap_or_default()
        };
        assert!(text("sources[0].type").contains("unknown connector 'mqtt'"));
        assert!(text("sources[1].type").contains("only be a sink"));
        assert!(text("sinks[0].type").contains("only be a source"));
        assert!(text("sources[3].config.colour").contains("unknown field"));
        assert!(text("transforms[0].inputs[1]").contains("'nowhere'"));
        assert!(text("transforms[4].inputs[0]").contains("is a sink"));
        assert!(
            text("transforms[2].inputs[0]").contains("t2 -> t3 -> t2"),
            "{}",
            text("transforms[2].inputs[0]")
        );
        assert!(text("transforms[4].id").contains("transforms[0]"));
        assert!(text("transforms[0].config.filter").starts_with("invalid jq"));
    }

    #[test]
    fn structure_errors_in_several_steps_are_all_reported() {
        let errors = PipelineSpec::parse(
            r#"{"name": "x", "srcs": [],
                "sources": [{"type": "file", "config": {"path": 3}}],
                "transforms": [{"type": "jq", "inputs": "a"}, {"kind": "jq"}],
                "sinks": "stdout"}"#,
        )
        .unwrap_err();
        let got = paths(&errors);
        assert_eq!(
            got,
            [
                "srcs",
                "transforms[0].inputs",
                "transforms[1].kind",
                "sinks"
            ],
            "{errors:#?}"
        );
        // Config is checked by the connector at validation, where the place is named too.
        let spec = parse(
            r#"{"name": "x", "sources": [{"type": "file", "config": {"path": 3}}], "sinks": [{"type": "stdout"}]}"#,
        );
        let errors = validate(&spec, &none).unwrap_err();
        assert_eq!(paths(&errors), ["sources[0].config.path"]);
        let errors = PipelineSpec::parse("name: [unclosed").unwrap_err();
        assert!(errors[0].message.contains("invalid YAML"), "{errors:?}");
    }

    #[test]
    fn registered_transforms_are_known_by_name() {
        let spec = parse(
            r#"{"name": "udf", "sources": [{"type": "generator"}],
                "transforms": [{"type": "enrich", "config": {"factor": 2}}],
                "sinks": [{"type": "stdout"}]}"#,
        );
        let errors = validate(&spec, &none).unwrap_err();
        assert_eq!(paths(&errors), ["transforms[0].type"]);
        assert!(errors[0].message.contains("registered"));
        let g = validate(&spec, &|name| {
            (name == "enrich").then_some(Registered::Transform)
        })
        .unwrap();
        assert_eq!(g.transforms[0].kind, "enrich");
    }

    #[test]
    fn reduce_takes_a_jq_update_or_a_registered_keyed_function() {
        let with = |config: &str| {
            parse(&format!(
                r#"{{"name": "r", "sources": [{{"type": "generator"}}],
                    "transforms": [{{"type": "key_by", "config": {{"key": ".seq"}}}},
                                   {{"type": "reduce", "config": {config}}}],
                    "sinks": [{{"type": "stdout"}}]}}"#
            ))
        };
        let known = |name: &str| match name {
            "total" => Some(Registered::Keyed),
            "enrich" => Some(Registered::Transform),
            _ => None,
        };
        assert!(validate(&with(r#"{"function": "total", "init": 0}"#), &known).is_ok());
        assert!(validate(&with(r#"{"update": "{state: 1}"}"#), &known).is_ok());
        for (config, message) in [
            (r#"{"function": "nobody"}"#, "no keyed function 'nobody'"),
            (
                r#"{"function": "enrich"}"#,
                "is a transform, not a keyed function",
            ),
            (r#"{"function": "total", "update": "."}"#, "exactly one of"),
            (r#"{"init": 0}"#, "exactly one of"),
        ] {
            let errors = validate(&with(config), &known).unwrap_err();
            assert!(
                errors[0].path.starts_with("transforms[1].config"),
                "{config}: {errors:?}"
            );
            assert!(errors[0].message.contains(message), "{config}: {errors:?}");
        }
        // A keyed function used as a transform is named as such.
        let misused = parse(
            r#"{"name": "m", "sources": [{"type": "generator"}],
                "transforms": [{"type": "total"}], "sinks": [{"type": "stdout"}]}"#,
        );
        let errors = validate(&misused, &known).unwrap_err();
        assert_eq!(paths(&errors), ["transforms[0].type"]);
        assert!(errors[0].message.contains("keyed function"), "{errors:?}");
    }

    #[test]
    fn key_by_takes_a_jq_key_or_a_registered_key_function() {
        let with = |config: &str| {
            parse(&format!(
                r#"{{"name": "k", "sources": [{{"type": "generator"}}],
                    "transforms": [{{"type": "key_by", "config": {config}}}],
                    "sinks": [{{"type": "stdout"}}]}}"#
            ))
        };
        let by_name = |name: &str| (name == "user_of").then_some(Registered::Transform);
        assert!(validate(&with(r#"{"key": ".user"}"#), &none).is_ok());
        assert!(validate(&with(r#"{"transform": "user_of"}"#), &by_name).is_ok());
        let errors = validate(&with(r#"{"transform": "nobody"}"#), &by_name).unwrap_err();
        assert_eq!(paths(&errors), ["transforms[0].config.transform"]);
        for both_or_neither in [r#"{"key": ".u", "transform": "user_of"}"#, "{}"] {
            let errors = validate(&with(both_or_neither), &by_name).unwrap_err();
            assert_eq!(
                paths(&errors),
                ["transforms[0].config"],
                "{both_or_neither}"
            );
            assert!(errors[0].message.contains("exactly one"));
        }
    }

    #[test]
    fn unused_outputs_and_unreachable_sinks_are_rejected() {
        let spec = parse(
            r#"{"name": "dangling",
                "sources": [{"id": "s", "type": "generator"}],
                "transforms": [{"id": "a", "type": "jq", "inputs": ["s"], "config": {"filter": "."}},
                               {"id": "b", "type": "jq", "inputs": ["s"], "config": {"filter": "."}}],
                "sinks": [{"type": "stdout", "inputs": ["b"]}]}"#,
        );
        let errors = validate(&spec, &none).unwrap_err();
        assert_eq!(paths(&errors), ["transforms[0]"]);
        assert!(errors[0].message.contains("read by no transform or sink"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10 seconds").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn an_exchange_may_not_mix_with_records_that_did_not_cross_nor_follow_another() {
        let check = |transforms: &str| {
            let spec = PipelineSpec::parse(&format!(
                r#"{{"name": "x", "sources": [{{"id": "in", "type": "generator"}}],
                    "transforms": {transforms},
                    "sinks": [{{"type": "stdout"}}]}}"#
            ))
            .expect("spec");
            validate(&spec, &|_| None)
        };
        assert!(
            check(r#"[{"type": "redistribute"}, {"type": "jq", "config": {"filter": "."}}]"#)
                .is_ok()
        );
        assert!(check(r#"[{"type": "redistribute", "config": {}}]"#).is_ok());
        let errors =
            check(r#"[{"type": "redistribute", "config": {"n": 1}}]"#).expect_err("bad config");
        assert_eq!(errors[0].path, "transforms[0].config.n");
        let errors = check(
            r#"[{"id": "k", "type": "key_by", "config": {"key": ".a"}},
                {"id": "both", "type": "jq", "inputs": ["k", "in"], "config": {"filter": "."}}]"#,
        )
        .expect_err("mixed fan-in");
        assert_eq!(errors[0].path, "transforms[1].inputs[1]");
        assert!(
            errors[0].message.contains("crossed"),
            "{}",
            errors[0].message
        );
        let errors = check(
            r#"[{"id": "k", "type": "key_by", "config": {"key": ".a"}},
                {"id": "k2", "type": "key_by", "config": {"key": ".b"}}]"#,
        )
        .expect_err("two exchanges");
        assert_eq!(errors[0].path, "transforms[1].inputs[0]");
    }
}
