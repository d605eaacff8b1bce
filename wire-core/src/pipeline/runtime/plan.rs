//! A validated pipeline made runnable: each transform step bound to its implementation and
//! its inputs resolved to indices, so a batch from one source goes through the DAG —
//! fan-out, fan-in, every consecutive stateless step — in one call on one thread.
//!
//! A `key_by` or `redistribute` step splits the DAG in two: the source's partition runs
//! everything up to and including it ([`Plan::run`]) and hands its output over to the
//! partitions the records go to, which run the steps after it ([`Plan::run_exchanged`]) —
//! so a keyed step sees every record of its keys, and the work after a `redistribute` is
//! spread over every partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::metrics::{JobMetrics, StepCounters};
use crate::pipeline::dedup::{Dedup, DedupState};
use crate::pipeline::join::{Join, JoinState, Side as JoinSide};
use crate::pipeline::jq::Jq;
use crate::pipeline::reduce::{KeyedFunction, Reduce, ReduceSpec, ReduceState};
use crate::pipeline::rolling::{Rolling, RollingState};
use crate::pipeline::spec::ErrorPolicy;
use crate::pipeline::transform::{
    parse_raw, Batching, JqTransform, KeyBy, Record, Rejected, Transform,
};
use crate::pipeline::validate::{
    JqConfig, KeyByConfig, PipelineGraph, Registered, STATEFUL_TRANSFORMS,
};
use crate::pipeline::window::{Window, WindowState};

/// How an exchange step sends its records on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// To the partition that owns the record's key.
    ByKey,
    /// Round-robin over every partition.
    Spread,
}

/// The open windows of one partition, per window step: what a partition checkpoints. It
/// also holds the input of steps that gather fuller batches ([`Batching`]), which is never
/// checkpointed: it is handed over before every barrier.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PartitionState {
    #[serde(skip)]
    held: BTreeMap<usize, Held>,
    windows: BTreeMap<usize, WindowState>,
    #[serde(default)]
    dedup: BTreeMap<usize, DedupState>,
    #[serde(default)]
    reduce: BTreeMap<usize, ReduceState>,
    #[serde(default)]
    joins: BTreeMap<usize, JoinState>,
    #[serde(default)]
    rolling: BTreeMap<usize, RollingState>,
}

impl PartitionState {
    /// The state as checkpointed (MessagePack).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        rmp_serde::to_vec(self).map_err(|e| format!("encoding the window state: {e}"))
    }

    /// The state a checkpoint holds.
    pub fn decode(bytes: &[u8]) -> Result<PartitionState, String> {
        rmp_serde::from_slice(bytes)
            .map_err(|e| format!("reading the checkpointed window state: {e}"))
    }

    /// Windows open over every window step.
    pub fn open(&self) -> u64 {
        self.windows.values().map(|w| w.open() as u64).sum::<u64>()
            + self
                .dedup
                .values()
                .map(|d| d.remembered() as u64)
                .sum::<u64>()
            + self.joins.values().map(|j| j.held() as u64).sum::<u64>()
    }

    /// Whether a step holds records back to fill a batch.
    pub fn holding(&self) -> bool {
        self.held.values().any(|h| !h.records.is_empty())
    }

    fn rolling(&mut self, step: usize) -> &mut RollingState {
        self.rolling.entry(step).or_default()
    }

    fn join(&mut self, step: usize) -> &mut JoinState {
        self.joins.entry(step).or_default()
    }

    fn reduce(&mut self, step: usize) -> &mut ReduceState {
        self.reduce.entry(step).or_default()
    }

    fn dedup(&mut self, step: usize) -> &mut DedupState {
        self.dedup.entry(step).or_default()
    }

    fn window(&mut self, step: usize) -> &mut WindowState {
        self.windows.entry(step).or_default()
    }
}

/// A batching step's input so far.
#[derive(Debug, Clone)]
struct Held {
    records: Vec<Record>,
    /// When its oldest record came.
    since: std::time::Instant,
}

/// `type: redistribute`: records pass unchanged (the exchange after it spreads them).
struct Redistribute;

impl Transform for Redistribute {
    fn apply(
        &self,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        _rejected: &mut Vec<(Record, String)>,
    ) {
        out.extend(batch);
    }
}

/// A function registered on a node by name (from Rust, Python or C).
#[derive(Clone)]
pub enum Function {
    /// A transform: `{"type": name}`, or a key function for `key_by`.
    Records(Arc<dyn Transform>),
    /// A keyed function with state: `{"type": "reduce", "config": {"function": name}}`.
    Keyed(Arc<dyn KeyedFunction>),
}

impl Function {
    /// What validation knows of it.
    pub fn kind(&self) -> Registered {
        match self {
            Function::Records(_) => Registered::Transform,
            Function::Keyed(_) => Registered::Keyed,
        }
    }
}

/// The functions registered on a node, by name.
pub type Registry = Arc<std::sync::RwLock<HashMap<String, Function>>>;

fn lookup(registry: &Registry, name: &str) -> Result<Function, String> {
    registry
        .read()
        .map_err(|_| "the transform registry is poisoned".to_string())?
        .get(name)
        .cloned()
        .ok_or_else(|| format!("transform '{name}' is not registered on this node"))
}

fn registered(registry: &Registry, name: &str) -> Result<Arc<dyn Transform>, String> {
    match lookup(registry, name)? {
        Function::Records(t) => Ok(t),
        Function::Keyed(_) => Err(format!(
            "'{name}' is a keyed function: use it in a reduce step"
        )),
    }
}

fn registered_keyed(registry: &Registry, name: &str) -> Result<Arc<dyn KeyedFunction>, String> {
    match lookup(registry, name)? {
        Function::Keyed(f) => Ok(f),
        Function::Records(_) => Err(format!("'{name}' is a transform, not a keyed function")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Source(usize),
    Transform(usize),
}

struct PlanStep {
    id: String,
    transform: Arc<dyn Transform>,
    inputs: Vec<Input>,
    on_error: ErrorPolicy,
    counters: Arc<StepCounters>,
    /// Set on a `key_by` or `redistribute` step.
    exchange: Option<Exchange>,
    /// Set on a step that keeps state per key (the partition's, checkpointed with it).
    op: Option<Operator>,
    /// Whether it runs after an exchange (where the records landed).
    after: bool,
    /// Set on a step that gathers its input into fuller batches.
    batching: Option<Batching>,
    /// Whether it reads records still in JSON text itself (else they are parsed for it).
    takes_raw: bool,
}

/// What a stateful step does, compiled from its config.
enum Operator {
    Window(Window),
    Dedup(Dedup),
    Reduce(Reduce),
    Join(Join),
    Rolling(Rolling),
}

impl Operator {
    /// The operator of `step`, if it is a stateful step.
    fn of(step: &crate::pipeline::Step, registry: &Registry) -> Result<Option<Operator>, String> {
        fn typed<S: serde::de::DeserializeOwned>(
            step: &crate::pipeline::Step,
        ) -> Result<S, String> {
            crate::connectors::typed(&step.config).map_err(|e| e.message)
        }
        Ok(Some(match step.kind.as_str() {
            "window" => Operator::Window(Window::compile(&typed(step)?)?),
            "dedup" => Operator::Dedup(Dedup::compile(&typed(step)?)?),
            "join" => Operator::Join(Join::compile(&typed(step)?)?),
            "aggregate" => Operator::Rolling(Rolling::compile(&typed(step)?)?),
            "reduce" => {
                let spec: ReduceSpec = typed(step)?;
                Operator::Reduce(match &spec.function {
                    Some(name) => Reduce::with_function(&spec, registered_keyed(registry, name)?),
                    None => Reduce::compile(&spec)?,
                })
            }
            _ => return Ok(None),
        }))
    }
}

/// The DAG of a pipeline, ready to run batches.
pub struct Plan {
    pub graph: PipelineGraph,
    steps: Vec<PlanStep>,
    /// Each sink's inputs.
    sinks: Vec<Vec<Input>>,
    /// How many consumers (steps and sinks) read each transform's output.
    uses: Vec<usize>,
    /// Whether a `key_by` or `redistribute` step sends records between partitions.
    pub keyed: bool,
}

/// Which steps a run covers.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// From a source: the steps before an exchange and the exchange steps.
    Source,
    /// From an exchange step's output: the steps after it.
    Landed,
}

/// What a batch turned into.
#[derive(Default)]
pub struct Outputs {
    /// Records for each sink, in the order of `graph.sinks`.
    pub per_sink: Vec<Vec<Record>>,
    /// Records a step with the dead-letter policy rejected.
    pub rejected: Vec<Rejected>,
    /// A record a step with the `fail` policy rejected: the pipeline must stop.
    pub failure: Option<Rejected>,
    /// What each exchange step put out, to be sent to the partitions it names: (step,
    /// records).
    pub exchanged: Vec<(usize, Vec<Record>)>,
}

impl Plan {
    /// Binds every step of `graph`; fails when a registered transform it names is gone.
    pub fn build(
        graph: PipelineGraph,
        registry: &Registry,
        metrics: &JobMetrics,
    ) -> Result<Plan, String> {
        let sources: BTreeMap<&str, usize> = graph
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let transforms: BTreeMap<&str, usize> = graph
            .transforms
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let resolve = |inputs: &[String]| -> Result<Vec<Input>, String> {
            inputs
                .iter()
                .map(|i| {
                    sources
                        .get(i.as_str())
                        .map(|s| Input::Source(*s))
                        .or_else(|| transforms.get(i.as_str()).map(|t| Input::Transform(*t)))
                        .ok_or_else(|| format!("no step named '{i}'"))
                })
                .collect()
        };
        let mut steps = Vec::new();
        let mut keyed = false;
        for step in &graph.transforms {
            let transform: Arc<dyn Transform> = match step.kind.as_str() {
                "jq" => {
                    let c: JqConfig =
                        crate::connectors::typed(&step.config).map_err(|e| e.message)?;
                    Arc::new(JqTransform(Jq::compile(&c.filter)?))
                }
                // A stateful step's work is its operator's (below).
                k if k == "redistribute" || STATEFUL_TRANSFORMS.contains(&k) => {
                    Arc::new(Redistribute)
                }
                "key_by" => {
                    let c: KeyByConfig =
                        crate::connectors::typed(&step.config).map_err(|e| e.message)?;
                    match (c.key, c.transform) {
                        (Some(key), _) => Arc::new(KeyBy(Jq::compile(&key)?)),
                        (None, Some(name)) => registered(registry, &name)?,
                        (None, None) => return Err("key_by needs key or transform".into()),
                    }
                }
                name => registered(registry, name)?,
            };
            let inputs = resolve(&step.inputs)?;
            let exchange = match step.kind.as_str() {
                "key_by" => Some(Exchange::ByKey),
                "redistribute" => Some(Exchange::Spread),
                _ => None,
            };
            keyed |= exchange.is_some();
            let op = Operator::of(step, registry)?;
            // Validation refused mixing: one crossed input means all did.
            let after = inputs.iter().any(|i| match i {
                Input::Transform(t) => {
                    let s: &PlanStep = &steps[*t];
                    s.after || s.exchange.is_some()
                }
                Input::Source(_) => false,
            });
            // A stateful or exchange step takes records as they come.
            let batching = transform
                .batching()
                .filter(|b| op.is_none() && exchange.is_none() && b.size > 0);
            let takes_raw = op.is_none() && exchange.is_none() && transform.takes_raw();
            steps.push(PlanStep {
                id: step.id.clone(),
                batching,
                takes_raw,
                transform,
                inputs,
                on_error: step.on_error,
                counters: metrics.step(&step.id),
                exchange,
                op,
                after,
            });
        }
        let sinks = graph
            .sinks
            .iter()
            .map(|s| resolve(&s.inputs))
            .collect::<Result<Vec<_>, _>>()?;
        let mut uses = vec![0; steps.len()];
        for inputs in steps.iter().map(|s| &s.inputs).chain(&sinks) {
            for input in inputs {
                if let Input::Transform(t) = input {
                    uses[*t] += 1;
                }
            }
        }
        Ok(Plan {
            graph,
            steps,
            sinks,
            uses,
            keyed,
        })
    }

    /// Runs a batch read by source `source` through every step it reaches before an
    /// exchange; what exchange steps put out is in `exchanged`. `held` keeps what batching
    /// steps hold between batches (the source worker's own; no window runs before an
    /// exchange).
    pub fn run(&self, source: usize, batch: Vec<Record>, held: &mut PartitionState) -> Outputs {
        let source_uses = self
            .steps
            .iter()
            .map(|s| &s.inputs)
            .chain(&self.sinks)
            .filter(|i| i.contains(&Input::Source(source)))
            .count();
        let flow = Flow {
            start: Input::Source(source),
            batch: Some(batch),
            start_left: source_uses,
            outputs: vec![None; self.steps.len()],
            left: self.uses.clone(),
        };
        self.flow(flow, Side::Source, held)
    }

    /// Hands over what batching steps hold, with `force` (before a barrier) or once a step's
    /// oldest record has waited its `max_wait`: then all of it, so that the partition holds
    /// nothing afterwards and a watermark waiting behind held records goes on (with two
    /// batching steps in a row and steady input, they might otherwise never be empty at
    /// once). Runs it through the steps after them.
    pub fn flush(&self, state: &mut PartitionState, force: bool) -> Outputs {
        let mut all = Outputs {
            per_sink: vec![Vec::new(); self.sinks.len()],
            ..Default::default()
        };
        let due = self
            .flush_at(state)
            .is_some_and(|at| at <= std::time::Instant::now());
        if !(force || due) {
            return all;
        }
        // In step order, so what one flush hands a later batching step is flushed too.
        for (t, step) in self.steps.iter().enumerate() {
            if step.batching.is_none() {
                continue;
            }
            let Some(held) = state.held.get_mut(&t) else {
                continue;
            };
            if held.records.is_empty() {
                continue;
            }
            let records = std::mem::take(&mut held.records);
            let started = std::time::Instant::now();
            let mut out = Vec::with_capacity(records.len());
            let mut failed = Vec::new();
            // Parsed (if it reads values) when it came in.
            step.transform.apply(records, &mut out, &mut failed);
            step.counters.add_out(out.len());
            step.counters.add_time(started.elapsed());
            reject(step, failed, &mut all);
            let side = if step.after {
                Side::Landed
            } else {
                Side::Source
            };
            let rest = self.flow_from(t, out, state, side);
            all.merge(rest);
        }
        all
    }

    /// When the oldest held record's step wants it handed over, if a step holds any.
    pub fn flush_at(&self, state: &PartitionState) -> Option<std::time::Instant> {
        state
            .held
            .iter()
            .filter(|(_, h)| !h.records.is_empty())
            .filter_map(|(t, h)| Some(h.since + self.steps.get(*t)?.batching?.max_wait))
            .min()
    }

    /// Whether every step that reads source `source` takes its records as JSON text, so the
    /// source may hand them over unparsed (sinks parse what they need themselves).
    pub fn takes_raw(&self, source: usize) -> bool {
        self.steps
            .iter()
            .filter(|s| s.inputs.contains(&Input::Source(source)))
            .all(|s| s.takes_raw)
    }

    /// Whether a step keeps state (its partition's, checkpointed).
    pub fn stateful(&self) -> bool {
        self.steps.iter().any(|s| s.op.is_some())
    }

    /// Step `t`'s window, if it is one.
    fn window(&self, t: usize) -> Option<&Window> {
        match &self.steps[t].op {
            Some(Operator::Window(w)) => Some(w),
            _ => None,
        }
    }

    /// How often the pipeline's windows emit early results (the shortest of its windows'),
    /// if any does.
    pub fn early_every(&self) -> Option<std::time::Duration> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(t, _)| self.window(t).and_then(|w| w.early))
            .min()
    }

    /// Every window step's open windows' results so far (for windows with `early` set),
    /// run through the steps after their window.
    pub fn early(&self, state: &mut PartitionState) -> Outputs {
        let mut all = Outputs {
            per_sink: vec![Vec::new(); self.sinks.len()],
            ..Default::default()
        };
        for (t, step) in self.steps.iter().enumerate() {
            let Some(window) = self.window(t).filter(|w| w.early.is_some()) else {
                continue;
            };
            let results = window.early_results(state.window(t), &step.id);
            if results.is_empty() {
                continue;
            }
            let out = self.flow_from(t, results, state, Side::Landed);
            all.merge(out);
        }
        all
    }

    /// Runs records step `t` put out through the steps after it on `side`.
    fn flow_from(
        &self,
        t: usize,
        records: Vec<Record>,
        state: &mut PartitionState,
        side: Side,
    ) -> Outputs {
        let flow = Flow {
            start: Input::Transform(t),
            batch: Some(records),
            start_left: self.uses[t],
            outputs: vec![None; self.steps.len()],
            left: self.uses.clone(),
        };
        self.flow(flow, side, state)
    }

    /// Moves the partition's watermark to `watermark`: the windows it closes emit their
    /// results, which run through the steps after their window.
    pub fn fire(&self, state: &mut PartitionState, watermark: i64) -> Outputs {
        let mut all = Outputs {
            per_sink: vec![Vec::new(); self.sinks.len()],
            ..Default::default()
        };
        for (t, step) in self.steps.iter().enumerate() {
            let results = match &step.op {
                Some(Operator::Window(w)) => w.advance(state.window(t), watermark, &step.id),
                Some(Operator::Join(j)) => j.advance(state.join(t), watermark, &step.id),
                Some(Operator::Dedup(d)) => {
                    d.advance(state.dedup(t), watermark);
                    continue;
                }
                _ => continue,
            };
            if results.is_empty() {
                continue;
            }
            step.counters.add_out(results.len());
            let out = self.flow_from(t, results, state, Side::Landed);
            all.merge(out);
        }
        all
    }

    /// How each step sends its output on (by step index; `None`: it does not).
    pub fn exchanges(&self) -> Vec<Option<Exchange>> {
        self.steps.iter().map(|s| s.exchange).collect()
    }

    /// Runs what exchange step `step` put out through the steps after it, where the records
    /// landed. An unknown step (from a peer of another pipeline version) runs nothing.
    pub fn run_exchanged(
        &self,
        step: usize,
        records: Vec<Record>,
        state: &mut PartitionState,
    ) -> Outputs {
        let uses = self.uses.get(step).copied().unwrap_or(0);
        let flow = Flow {
            start: Input::Transform(step),
            batch: Some(records),
            start_left: uses,
            outputs: vec![None; self.steps.len()],
            left: self.uses.clone(),
        };
        self.flow(flow, Side::Landed, state)
    }

    /// Runs step `t` (not a join: [`Plan::flow`] gives it each side) on `input`.
    fn apply(
        &self,
        t: usize,
        step: &PlanStep,
        input: Vec<Record>,
        state: &mut PartitionState,
        out: &mut Vec<Record>,
        failed: &mut Vec<(Record, String)>,
    ) {
        match &step.op {
            // A window takes records into its state; its results come with the watermark.
            Some(Operator::Window(w)) => w.add(state.window(t), input, failed),
            Some(Operator::Dedup(d)) => d.add(state.dedup(t), input, out, failed),
            Some(Operator::Reduce(r)) => r.add(state.reduce(t), input, out, failed),
            Some(Operator::Rolling(r)) => r.add(state.rolling(t), input, out, failed),
            // A join's two inputs are told apart by the caller.
            Some(Operator::Join(_)) => step.transform.apply(input, out, failed),
            None => match step.batching {
                Some(batching) => {
                    let held = state.held.entry(t).or_insert_with(|| Held {
                        records: Vec::new(),
                        since: std::time::Instant::now(),
                    });
                    if held.records.is_empty() {
                        held.since = std::time::Instant::now();
                    }
                    held.records.extend(input);
                    // Full batches go on now; the rest waits (its records are the newest).
                    while held.records.len() >= batching.size {
                        let rest = held.records.split_off(batching.size);
                        let full = std::mem::replace(&mut held.records, rest);
                        held.since = std::time::Instant::now();
                        step.transform.apply(full, out, failed);
                    }
                }
                None => step.transform.apply(input, out, failed),
            },
        }
    }

    fn flow(&self, mut flow: Flow, side: Side, state: &mut PartitionState) -> Outputs {
        let mut result = Outputs {
            per_sink: vec![Vec::new(); self.sinks.len()],
            ..Default::default()
        };
        for (t, step) in self.steps.iter().enumerate() {
            let runs_here = match side {
                Side::Source => !step.after,
                Side::Landed => step.after,
            };
            if !runs_here {
                continue;
            }
            let mut out = Vec::new();
            let mut failed = Vec::new();
            let started = std::time::Instant::now();
            if let Some(Operator::Join(join)) = &step.op {
                // Its first input is the left side, its second the right (validation).
                let sides = [JoinSide::Left, JoinSide::Right];
                let mut reached = false;
                for (input, side) in step.inputs.iter().zip(sides) {
                    if let Some(records) = flow.gather(std::slice::from_ref(input)) {
                        let records = parse_raw(records, &mut failed);
                        reached = true;
                        step.counters.add_in(records.len());
                        join.add(state.join(t), side, records, &mut out, &mut failed);
                    }
                }
                if !reached {
                    continue;
                }
            } else {
                let Some(mut input) = flow.gather(&step.inputs) else {
                    continue;
                };
                step.counters.add_in(input.len());
                if !step.takes_raw {
                    input = parse_raw(input, &mut failed);
                }
                out.reserve(input.len());
                self.apply(t, step, input, state, &mut out, &mut failed);
            }
            step.counters.add_out(out.len());
            step.counters.add_time(started.elapsed());
            reject(step, failed, &mut result);
            if step.exchange.is_some() && side == Side::Source {
                // Its consumers run where the records land.
                if !out.is_empty() {
                    result.exchanged.push((t, out));
                }
            } else {
                flow.outputs[t] = Some(out);
            }
        }
        for (k, inputs) in self.sinks.iter().enumerate() {
            if let Some(records) = flow.gather(inputs) {
                result.per_sink[k] = records;
            }
        }
        result
    }
}

/// Records `step` rejected: dead letters or the pipeline's failure, by the step's policy.
fn reject(step: &PlanStep, failed: Vec<(Record, String)>, result: &mut Outputs) {
    for (record, reason) in failed {
        let rejected = Rejected {
            record,
            step: step.id.clone(),
            reason,
        };
        match step.on_error {
            ErrorPolicy::DeadLetter => {
                step.counters.add_dead(1);
                result.rejected.push(rejected);
            }
            ErrorPolicy::Fail => {
                if result.failure.is_none() {
                    result.failure = Some(rejected);
                }
            }
        }
    }
}

impl Outputs {
    /// Adds another run's outputs to these.
    fn merge(&mut self, other: Outputs) {
        for (k, records) in other.per_sink.into_iter().enumerate() {
            if let Some(mine) = self.per_sink.get_mut(k) {
                mine.extend(records);
            }
        }
        self.rejected.extend(other.rejected);
        if self.failure.is_none() {
            self.failure = other.failure;
        }
        self.exchanged.extend(other.exchanged);
    }
}

/// One batch on its way through the DAG: what each transform produced, and how many of its
/// consumers have yet to take it (the last one takes it, the others get a copy).
struct Flow {
    /// Where the batch enters: a source, or an exchange step whose output landed here.
    start: Input,
    batch: Option<Vec<Record>>,
    start_left: usize,
    outputs: Vec<Option<Vec<Record>>>,
    left: Vec<usize>,
}

impl Flow {
    /// The records a consumer of `inputs` receives from this batch; `None` when none of its
    /// inputs carries any (it is not reached by this batch's source).
    fn gather(&mut self, inputs: &[Input]) -> Option<Vec<Record>> {
        let mut gathered: Option<Vec<Record>> = None;
        for input in inputs {
            let part = match *input {
                i if i == self.start => {
                    self.start_left = self.start_left.saturating_sub(1);
                    if self.start_left == 0 {
                        self.batch.take()
                    } else {
                        self.batch.clone()
                    }
                }
                Input::Source(_) => None,
                Input::Transform(t) => {
                    self.left[t] = self.left[t].saturating_sub(1);
                    if self.left[t] == 0 {
                        self.outputs[t].take()
                    } else {
                        self.outputs[t].clone()
                    }
                }
            };
            if let Some(part) = part {
                gathered.get_or_insert_with(Vec::new).extend(part);
            }
        }
        gathered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::jq::parse_json;
    use crate::pipeline::spec::PipelineSpec;
    use crate::pipeline::transform::Position;

    fn plan(yaml: &str) -> Plan {
        let spec = PipelineSpec::parse(yaml).unwrap();
        let graph = crate::pipeline::validate(&spec, &|_| None).unwrap();
        Plan::build(graph, &Registry::default(), &JobMetrics::default()).unwrap()
    }

    fn batch(values: &[&str]) -> Vec<Record> {
        values
            .iter()
            .map(|v| Record::new(parse_json(v.as_bytes()).unwrap(), Position::default()))
            .collect()
    }

    fn texts(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.value.to_string()).collect()
    }

    #[test]
    fn fan_out_and_fan_in_run_in_one_pass() {
        let p = plan(
            r#"
name: dag
sources: [{id: a, type: generator}, {id: b, type: generator}]
transforms:
  - {id: big, type: jq, inputs: [a], config: {filter: "select(. > 5)"}}
  - {id: small, type: jq, inputs: [a], config: {filter: "select(. <= 5) | . * 10"}}
  - {id: both, type: jq, inputs: [big, small, b], config: {filter: ". + 1"}}
sinks:
  - {id: all, type: stdout, inputs: [both]}
  - {id: raw, type: stdout, inputs: [a, big]}
"#,
        );
        let out = p.run(0, batch(&["1", "7"]), &mut PartitionState::default());
        assert_eq!(texts(&out.per_sink[0]), ["8", "11"]);
        assert_eq!(texts(&out.per_sink[1]), ["1", "7", "7"]);
        let out = p.run(1, batch(&["100"]), &mut PartitionState::default());
        assert_eq!(texts(&out.per_sink[0]), ["101"]);
        assert!(
            out.per_sink[1].is_empty(),
            "source b does not reach sink raw"
        );
        assert!(!p.keyed);
    }

    #[test]
    fn rejections_follow_each_steps_policy() {
        let p = plan(
            r#"
name: policies
sources: [{type: generator}]
transforms:
  - {id: lenient, type: jq, config: {filter: ".a + 1"}}
  - {id: strict, type: jq, on_error: fail, config: {filter: "if . > 5 then error(\"too big\") else . end"}}
sinks: [{type: stdout}]
dead_letter: {type: stdout}
"#,
        );
        let out = p.run(
            0,
            batch(&[r#"{"a": 1}"#, r#"{"a": "x"}"#, r#"{"a": 9}"#]),
            &mut PartitionState::default(),
        );
        assert_eq!(texts(&out.per_sink[0]), ["2"]);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].step, "lenient");
        let failure = out.failure.expect("the strict step fails the batch");
        assert_eq!(failure.step, "strict");
        assert!(failure.reason.contains("too big"), "{}", failure.reason);
    }

    #[test]
    fn every_stateful_step_kind_makes_a_stateful_plan() {
        let configs = [
            ("window", "{size: 1s, aggregate: {n: count}}"),
            ("dedup", "{within: 1s}"),
            ("reduce", "{update: '{state: 1}'}"),
            ("aggregate", "{aggregate: {n: count}}"),
        ];
        for kind in crate::pipeline::validate::STATEFUL_TRANSFORMS {
            let inputs = if *kind == "join" { "[k, k2]" } else { "[k]" };
            let config = configs
                .iter()
                .find(|(k, _)| k == kind)
                .map_or("{within: 1s}", |(_, c)| c);
            let p = plan(&format!(
                r#"
name: s
event_time: {{field: .ts}}
sources: [{{id: a, type: generator}}]
transforms:
  - {{id: k, type: key_by, inputs: [a], config: {{key: "."}}}}
  - {{id: k2, type: key_by, inputs: [a], config: {{key: "."}}}}
  - {{id: s, type: {kind}, inputs: {inputs}, config: {config}}}
sinks: [{{type: stdout, inputs: [s, k2]}}]
"#
            ));
            assert!(p.stateful(), "{kind}: its state must be checkpointed");
        }
    }

    #[test]
    fn steps_after_an_exchange_run_where_the_records_land() {
        let p = plan(
            r#"
name: split
sources: [{id: a, type: generator}]
transforms:
  - {id: up, type: jq, config: {filter: ". + 1"}}
  - {id: keyed, type: key_by, config: {key: "."}}
  - {id: down, type: jq, config: {filter: ". * 10"}}
sinks:
  - {id: early, type: stdout, inputs: [up]}
  - {id: late, type: stdout, inputs: [down]}
"#,
        );
        assert!(p.keyed);
        let out = p.run(0, batch(&["1", "2"]), &mut PartitionState::default());
        assert_eq!(
            texts(&out.per_sink[0]),
            ["2", "3"],
            "before the exchange: here"
        );
        assert!(out.per_sink[1].is_empty(), "after it: where they land");
        assert_eq!(out.exchanged.len(), 1);
        let (step, records) = out.exchanged.into_iter().next().expect("exchanged");
        assert_eq!(step, 1);
        assert!(records.iter().all(|r| r.key.is_some()));
        let landed = p.run_exchanged(step, records, &mut PartitionState::default());
        assert!(landed.per_sink[0].is_empty());
        assert_eq!(texts(&landed.per_sink[1]), ["20", "30"]);
        assert_eq!(p.exchanges(), [None, Some(Exchange::ByKey), None]);
    }

    /// Replaces each value by the size of the batch it came in; gathers batches of 3.
    struct Sizes(std::time::Duration);

    impl Transform for Sizes {
        fn apply(&self, batch: Vec<Record>, out: &mut Vec<Record>, _: &mut Vec<(Record, String)>) {
            let n = batch.len();
            out.extend(batch.into_iter().map(|mut r| {
                r.value = parse_json(format!("{n}").as_bytes()).unwrap();
                r
            }));
        }

        fn batching(&self) -> Option<Batching> {
            Some(Batching {
                size: 3,
                max_wait: self.0,
            })
        }
    }

    /// A plan of a `Sizes` step per wait (each named `sizes{i}`), then `. + 100`.
    fn with_sizes(waits: &[std::time::Duration], after_exchange: bool) -> Plan {
        let registry = Registry::default();
        let mut steps = String::new();
        if after_exchange {
            steps.push_str("{id: spread, type: redistribute}, ");
        }
        for (i, wait) in waits.iter().enumerate() {
            registry.write().unwrap().insert(
                format!("sizes{i}"),
                Function::Records(Arc::new(Sizes(*wait))),
            );
            steps.push_str(&format!("{{type: sizes{i}}}, "));
        }
        let yaml = format!(
            r#"
name: batched
sources: [{{id: a, type: generator}}]
transforms: [{steps}{{id: plus, type: jq, config: {{filter: ". + 100"}}}}]
sinks: [{{type: stdout, inputs: [plus]}}]
"#
        );
        let spec = PipelineSpec::parse(&yaml).unwrap();
        let graph = crate::pipeline::validate(&spec, &|n| {
            n.starts_with("sizes")
                .then_some(crate::pipeline::Registered::Transform)
        })
        .unwrap();
        Plan::build(graph, &registry, &JobMetrics::default()).unwrap()
    }

    #[test]
    fn a_batching_step_holds_its_input_until_full_or_flushed() {
        let p = with_sizes(&[std::time::Duration::from_secs(3600)], false);
        let mut held = PartitionState::default();
        let out = p.run(0, batch(&["1", "2"]), &mut held);
        assert!(out.per_sink[0].is_empty(), "two of three: held");
        assert!(held.holding());
        let out = p.run(0, batch(&["3", "4"]), &mut held);
        assert_eq!(
            texts(&out.per_sink[0]),
            ["103", "103", "103"],
            "one full batch"
        );
        assert!(held.holding(), "the fourth waits");
        assert!(
            p.flush(&mut held, false).per_sink[0].is_empty(),
            "not yet due"
        );
        let out = p.flush(&mut held, true);
        assert_eq!(
            texts(&out.per_sink[0]),
            ["101"],
            "forced: the rest, after it too"
        );
        assert!(!held.holding());
        assert!(p.flush_at(&held).is_none());
    }

    #[test]
    fn held_records_go_on_once_they_waited_long_enough() {
        let p = with_sizes(&[std::time::Duration::ZERO], false);
        let mut held = PartitionState::default();
        let out = p.run(0, batch(&["1"]), &mut held);
        assert!(out.per_sink[0].is_empty());
        let due = p.flush_at(&held).expect("a deadline");
        assert!(due <= std::time::Instant::now());
        let out = p.flush(&mut held, false);
        assert_eq!(texts(&out.per_sink[0]), ["101"]);
    }

    #[test]
    fn a_batching_step_after_an_exchange_holds_where_records_land() {
        let p = with_sizes(&[std::time::Duration::from_secs(3600)], true);
        let mut none = PartitionState::default();
        let out = p.run(0, batch(&["1", "2"]), &mut none);
        assert!(!none.holding(), "nothing held before the exchange");
        let (step, records) = out.exchanged.into_iter().next().expect("exchanged");
        let mut state = PartitionState::default();
        let landed = p.run_exchanged(step, records, &mut state);
        assert!(landed.per_sink[0].is_empty());
        assert!(state.holding());
        assert!(state.encode().is_ok());
        let restored = PartitionState::decode(&state.encode().unwrap()).unwrap();
        assert!(!restored.holding(), "held records are never checkpointed");
        let out = p.flush(&mut state, true);
        assert_eq!(texts(&out.per_sink[0]), ["102", "102"]);
    }

    #[test]
    fn a_due_flush_empties_every_batching_step() {
        // The first step is due at once, the second never: after the first hands its row
        // on, the second holds nothing either (a watermark behind them may go on).
        let hour = std::time::Duration::from_secs(3600);
        let p = with_sizes(&[std::time::Duration::ZERO, hour], false);
        let mut held = PartitionState::default();
        assert!(p.run(0, batch(&["1"]), &mut held).per_sink[0].is_empty());
        let out = p.flush(&mut held, false);
        assert_eq!(texts(&out.per_sink[0]), ["101"]);
        assert!(!held.holding());
        // Nothing due: nothing moves.
        let p = with_sizes(&[hour, hour], false);
        p.run(0, batch(&["1"]), &mut held);
        assert!(p.flush(&mut held, false).per_sink[0].is_empty());
        assert!(held.holding());
    }

    /// Passes records through; reads JSON text itself.
    struct TakesText;

    impl Transform for TakesText {
        fn apply(&self, batch: Vec<Record>, out: &mut Vec<Record>, _: &mut Vec<(Record, String)>) {
            out.extend(batch);
        }

        fn takes_raw(&self) -> bool {
            true
        }
    }

    fn text(json: &str) -> Record {
        Record {
            raw: Some(bytes::Bytes::copy_from_slice(json.as_bytes())),
            ..Record::new(jaq_json::Val::Null, Position::default())
        }
    }

    #[test]
    fn records_in_json_text_are_parsed_for_steps_that_read_values() {
        let registry = Registry::default();
        registry
            .write()
            .unwrap()
            .insert("text".into(), Function::Records(Arc::new(TakesText)));
        let build = |transforms: &str| {
            let yaml = format!(
                "name: raw\nsources: [{{id: a, type: generator}}]\ntransforms: [{transforms}]\nsinks: [{{type: stdout}}]\ndead_letter: {{type: stdout}}\n"
            );
            let spec = PipelineSpec::parse(&yaml).unwrap();
            let graph = crate::pipeline::validate(&spec, &|n| {
                (n == "text").then_some(crate::pipeline::Registered::Transform)
            })
            .unwrap();
            Plan::build(graph, &registry, &JobMetrics::default()).unwrap()
        };
        let p = build("{type: text}, {type: jq, config: {filter: \". + 1\"}}");
        assert!(p.takes_raw(0), "the source's only reader takes text");
        let out = p.run(
            0,
            vec![text("1"), text("nope"), text("41")],
            &mut PartitionState::default(),
        );
        assert_eq!(texts(&out.per_sink[0]), ["2", "42"]);
        assert!(out.per_sink[0].iter().all(|r| r.raw.is_none()));
        assert_eq!(
            out.rejected.len(),
            1,
            "text that does not parse is rejected"
        );
        assert_eq!(out.rejected[0].record.json().as_ref(), b"nope");
        assert!(
            out.rejected[0].reason.contains("JSON"),
            "{}",
            out.rejected[0].reason
        );
        // A step that reads values reads the source: it hands values over.
        assert!(!build("{type: jq, config: {filter: \".\"}}").takes_raw(0));
        // Straight to a sink: the text stays text (the sink parses it if it must).
        let p = build("{type: text}");
        let out = p.run(0, vec![text("[1]")], &mut PartitionState::default());
        assert_eq!(out.per_sink[0][0].json().as_ref(), b"[1]");
    }
}
