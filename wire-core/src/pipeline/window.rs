//! Event-time windows: `type: window` after a `key_by`. Each record falls into the windows
//! of its key that contain its event time — one for a tumbling window (`size`), `size /
//! slide` for a sliding one; for session windows (`gap`), a key's records less than `gap`
//! apart form one session, and a record that bridges two sessions merges them — and adds
//! to each window's aggregates. A window's result is
//! emitted once the watermark passes its end plus `allowed_lateness`, as one record with
//! the key, `window_start`, `window_end` (ms since the Unix epoch) and every aggregate; a
//! record for a window already emitted is late and goes to the dead-letter sink with the
//! window it missed.
//!
//! The state (open windows and their aggregates) belongs to one partition: the runtime
//! keeps a [`WindowState`] per partition, snapshots it at each checkpoint's barrier and
//! restores it when the partition starts again — on any node.
//!
//! ```yaml
//! - type: window
//!   config:
//!     size: 1m                  # tumbling; add `slide: 30s` for sliding windows
//!     allowed_lateness: 0s
//!     aggregate: {n: count, total: {sum: .amount}, top: {max: .amount}, users: {count_distinct: .user}}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::jq::Jq;
use super::transform::{Position, Record};
use jaq_json::Val;

/// `type: window`: its config as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Window length (`1m`, `30s`, `500ms`), for tumbling and sliding windows.
    #[serde(default)]
    pub size: Option<String>,
    /// For session windows (instead of `size`): the silence that ends a key's session.
    #[serde(default)]
    pub gap: Option<String>,
    /// For sliding windows: how far apart windows start (must divide `size`).
    #[serde(default)]
    pub slide: Option<String>,
    /// How long after its end a window still takes records (its result waits that long).
    #[serde(default)]
    pub allowed_lateness: Option<String>,
    /// Also emit each open window's result so far every this long (processing time), marked
    /// `"early": true`; the final result comes as usual.
    #[serde(default)]
    pub early: Option<String>,
    /// Output field -> aggregate: `"count"`, or `{sum|min|max|avg|first|last|count_distinct:
    /// <jq>}`, or `{collect: <jq>, max: N}`.
    pub aggregate: serde_json::Map<String, Json>,
}

/// What an aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    First,
    Last,
    CountDistinct,
    Collect(usize),
}

/// One output field's aggregate: what it computes over which value of each record.
pub(crate) struct Aggregate {
    field: String,
    kind: Kind,
    value: Option<Jq>,
}

/// A window step, compiled.
pub struct Window {
    /// For tumbling and sliding windows (0 for sessions).
    size: i64,
    slide: i64,
    /// For session windows.
    gap: Option<i64>,
    lateness: i64,
    /// How often open windows emit early results.
    pub early: Option<std::time::Duration>,
    aggregates: Vec<Aggregate>,
}

/// Most records `collect` keeps when `max` is not given.
const COLLECT_DEFAULT: usize = 100;

fn millis(text: &str, what: &str) -> Result<i64, String> {
    let d = super::spec::parse_duration(text).map_err(|e| format!("{what}: {e}"))?;
    i64::try_from(d.as_millis()).map_err(|_| format!("{what}: too long"))
}

impl Window {
    /// Compiles a window step's config; `Err` names the problem.
    pub fn compile(spec: &WindowSpec) -> Result<Window, String> {
        let (size, slide, gap) =
            match (&spec.size, &spec.gap) {
                (Some(size), None) => {
                    let size = millis(size, "size")?;
                    if size <= 0 {
                        return Err("size: must be more than 0".into());
                    }
                    let slide = match &spec.slide {
                        Some(s) => millis(s, "slide")?,
                        None => size,
                    };
                    if slide <= 0 || slide > size || size % slide != 0 {
                        return Err(format!(
                        "slide: must be more than 0 and divide size ({size} ms), not {slide} ms"
                    ));
                    }
                    (size, slide, None)
                }
                (None, Some(gap)) => {
                    let gap = millis(gap, "gap")?;
                    if gap <= 0 {
                        return Err("gap: must be more than 0".into());
                    }
                    if spec.slide.is_some() {
                        return Err("slide: session windows (gap) do not slide".into());
                    }
                    (0, 1, Some(gap))
                }
                _ => return Err(
                    "give size (tumbling or sliding windows) or gap (session windows), one of them"
                        .into(),
                ),
            };
        let lateness = match &spec.allowed_lateness {
            Some(l) => millis(l, "allowed_lateness")?,
            None => 0,
        };
        if spec.aggregate.is_empty() {
            return Err("aggregate: name at least one output field".into());
        }
        let mut aggregates = Vec::new();
        for (field, how) in &spec.aggregate {
            if matches!(field.as_str(), "key" | "window_start" | "window_end") {
                return Err(format!(
                    "aggregate.{field}: the name is taken by the window's own field"
                ));
            }
            aggregates.push(aggregate(field, how).map_err(|e| format!("aggregate.{field}: {e}"))?);
        }
        let early = match &spec.early {
            Some(e) => {
                let d = super::spec::parse_duration(e).map_err(|e| format!("early: {e}"))?;
                if d.is_zero() {
                    return Err("early: must be more than 0".into());
                }
                Some(d)
            }
            None => None,
        };
        Ok(Window {
            early,
            size,
            slide,
            gap,
            lateness,
            aggregates,
        })
    }

    /// The starts of the windows `ts` falls in.
    fn starts(&self, ts: i64) -> impl Iterator<Item = i64> + '_ {
        let last = ts.div_euclid(self.slide) * self.slide;
        let n = self.size / self.slide;
        (0..n)
            .map(move |i| last - i * self.slide)
            .filter(move |s| *s + self.size > ts)
    }

    /// When the window starting at `start` is emitted (and closed).
    fn closes_at(&self, start: i64) -> i64 {
        start
            .saturating_add(self.size)
            .saturating_add(self.lateness)
    }

    /// Adds records to the windows of `state`; a record without an event time or key, one
    /// whose windows are all closed, or one an aggregate cannot take is rejected with the
    /// reason.
    pub fn add(
        &self,
        state: &mut WindowState,
        records: Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        for record in records {
            let Some(ts) = record.event_time else {
                rejected.push((
                    record,
                    "window: the record has no event time (set the pipeline's event_time)".into(),
                ));
                continue;
            };
            let Some(key) = record.key.clone() else {
                rejected.push((
                    record,
                    "window: the record has no key (put a key_by before the window)".into(),
                ));
                continue;
            };
            let values = match self.values(&record) {
                Ok(v) => v,
                Err(why) => {
                    rejected.push((record, why));
                    continue;
                }
            };
            if let Some(gap) = self.gap {
                if let Err(why) = self.add_to_session(state, key, ts, gap, &values) {
                    rejected.push((record, why));
                }
                continue;
            }
            let mut open = 0;
            let mut missed = None;
            for start in self.starts(ts) {
                if self.closes_at(start) <= state.watermark {
                    missed.get_or_insert(start);
                    continue;
                }
                open += 1;
                let accs = state
                    .windows
                    .entry((start, key.clone()))
                    .or_insert_with(|| self.aggregates.iter().map(|a| Acc::new(a.kind)).collect());
                for (acc, v) in accs.iter_mut().zip(&values) {
                    acc.add(v.as_ref());
                }
            }
            if open == 0 {
                let start = missed.unwrap_or(ts);
                let why = format!(
                    "late: event time {ts} is in window [{start}, {}), closed at watermark {}",
                    start + self.size,
                    state.watermark
                );
                rejected.push((record, why));
            }
        }
    }

    /// Adds a record at `ts` to its key's session, merging the sessions it bridges.
    fn add_to_session(
        &self,
        state: &mut WindowState,
        key: Vec<u8>,
        ts: i64,
        gap: i64,
        values: &[Option<Json>],
    ) -> Result<(), String> {
        let (mut start, mut end) = (ts, ts.saturating_add(gap));
        let watermark = state.watermark;
        let sessions = state.sessions.entry(key).or_default();
        let (touching, rest): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
            .into_iter()
            .partition(|s| s.start <= end && start <= s.end);
        *sessions = rest;
        if touching.is_empty() && end.saturating_add(self.lateness) <= watermark {
            return Err(format!(
                "late: event time {ts} would open session [{start}, {end}), closed at watermark {watermark}"
            ));
        }
        let mut accs: Option<Vec<Acc>> = None;
        for s in touching {
            start = start.min(s.start);
            end = end.max(s.end);
            accs = Some(match accs {
                None => s.accs,
                Some(a) => a.into_iter().zip(s.accs).map(|(x, y)| x.merge(y)).collect(),
            });
        }
        let mut accs =
            accs.unwrap_or_else(|| self.aggregates.iter().map(|a| Acc::new(a.kind)).collect());
        for (acc, v) in accs.iter_mut().zip(values) {
            acc.add(v.as_ref());
        }
        sessions.push(Session { start, end, accs });
        sessions.sort_by_key(|s| s.start);
        Ok(())
    }

    /// One result record.
    fn result(
        &self,
        key: Vec<u8>,
        start: i64,
        end: i64,
        accs: Vec<Acc>,
        step: &std::sync::Arc<str>,
    ) -> Record {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "key".into(),
            Json::String(String::from_utf8_lossy(&key).into_owned()),
        );
        obj.insert("window_start".into(), start.into());
        obj.insert("window_end".into(), end.into());
        for (a, acc) in self.aggregates.iter().zip(accs) {
            obj.insert(a.field.clone(), acc.result());
        }
        let text = Json::Object(obj).to_string();
        let value = crate::pipeline::json::parse_strict(text.as_bytes()).unwrap_or(Val::Null);
        Record {
            key: Some(key),
            raw: None,
            value,
            event_time: Some(end - 1),
            headers: Vec::new(),
            position: Position {
                source: step.clone(),
                split: step.clone(),
                offset: (start.max(0) as u64).into(),
            },
        }
    }

    /// The result so far of every open window, marked `"early": true` (the windows stay
    /// open).
    pub fn early_results(&self, state: &WindowState, step: &str) -> Vec<Record> {
        let step: std::sync::Arc<str> = step.into();
        let mut out = Vec::new();
        let mut push = |key: &[u8], start: i64, end: i64, accs: &[Acc]| {
            let mut r = self.result(key.to_vec(), start, end, accs.to_vec(), &step);
            if let Val::Obj(map) = &mut r.value {
                jaq_json::Rc::make_mut(map).insert(
                    Val::TStr(Box::new(bytes::Bytes::from_static(b"early"))),
                    Val::Bool(true),
                );
            }
            out.push(r);
        };
        for ((start, key), accs) in &state.windows {
            push(key, *start, start + self.size, accs);
        }
        for (key, sessions) in &state.sessions {
            for s in sessions {
                push(key, s.start, s.end, &s.accs);
            }
        }
        out
    }

    /// Each aggregate's value of a record (`None` for `count`).
    fn values(&self, record: &Record) -> Result<Vec<Option<Json>>, String> {
        values(&self.aggregates, record, "window")
    }

    /// Moves the watermark to `watermark` (it never goes back) and returns the results of
    /// the windows that closed, oldest first.
    pub fn advance(&self, state: &mut WindowState, watermark: i64, step: &str) -> Vec<Record> {
        if watermark <= state.watermark {
            return Vec::new();
        }
        state.watermark = watermark;
        let mut out = Vec::new();
        let closed: Vec<(i64, Vec<u8>)> = state
            .windows
            .keys()
            .take_while(|(start, _)| self.closes_at(*start) <= watermark)
            .cloned()
            .collect();
        let step: std::sync::Arc<str> = step.into();
        for k in closed {
            let Some(accs) = state.windows.remove(&k) else {
                continue;
            };
            let (start, key) = k;
            out.push(self.result(key, start, start + self.size, accs, &step));
        }
        // Sessions that closed, oldest first.
        let lateness = self.lateness;
        let mut ended = Vec::new();
        for (key, sessions) in state.sessions.iter_mut() {
            let (done, open): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
                .into_iter()
                .partition(|s| s.end.saturating_add(lateness) <= watermark);
            *sessions = open;
            ended.extend(done.into_iter().map(|s| (s.start, key.clone(), s)));
        }
        state.sessions.retain(|_, s| !s.is_empty());
        ended.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, key, s) in ended {
            out.push(self.result(key, s.start, s.end, s.accs, &step));
        }
        out
    }
}

fn to_json(v: &Val) -> Json {
    use jaq_json::Num;
    match v {
        Val::Null => Json::Null,
        Val::Bool(b) => Json::Bool(*b),
        Val::Num(Num::Int(i)) => Json::from(*i as i64),
        Val::Num(Num::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number)
        }
        Val::TStr(s) => match std::str::from_utf8(s) {
            Ok(t) => Json::String(t.to_string()),
            Err(_) => Json::String(String::from_utf8_lossy(s).into_owned()),
        },
        other => serde_json::from_str(&crate::pipeline::json::to_json(other)).unwrap_or(Json::Null),
    }
}

pub(crate) fn aggregate(field: &str, how: &Json) -> Result<Aggregate, String> {
    let named = |name: &str| -> Result<Kind, String> {
        Ok(match name {
            "count" => Kind::Count,
            "sum" => Kind::Sum,
            "min" => Kind::Min,
            "max" => Kind::Max,
            "avg" => Kind::Avg,
            "first" => Kind::First,
            "last" => Kind::Last,
            "count_distinct" => Kind::CountDistinct,
            "collect" => Kind::Collect(COLLECT_DEFAULT),
            other => {
                return Err(format!(
                    "unknown aggregate '{other}': count, sum, min, max, avg, first, last, count_distinct or collect"
                ))
            }
        })
    };
    match how {
        Json::String(s) if s == "count" => Ok(Aggregate {
            field: field.to_string(),
            kind: Kind::Count,
            value: None,
        }),
        Json::String(s) => Err(format!(
            "'{s}' needs a value: write {{\"{s}\": \".field\"}} (only count stands alone)"
        )),
        Json::Object(map) => {
            let mut kind = None;
            let mut value = None;
            let mut max = None;
            for (k, v) in map {
                if k == "max" && map.contains_key("collect") {
                    max = Some(
                        v.as_u64()
                            .filter(|m| *m > 0)
                            .ok_or("max: a number above 0")? as usize,
                    );
                    continue;
                }
                if kind.is_some() {
                    return Err("give one aggregate per field".into());
                }
                kind = Some(named(k)?);
                let expr = v
                    .as_str()
                    .ok_or_else(|| format!("{k}: a jq expression such as \".amount\""))?;
                value = Some(Jq::compile(expr).map_err(|e| format!("{k}: {e}"))?);
            }
            let mut kind = kind.ok_or("name an aggregate")?;
            if let (Kind::Collect(_), Some(m)) = (kind, max) {
                kind = Kind::Collect(m);
            }
            Ok(Aggregate {
                field: field.to_string(),
                kind,
                value,
            })
        }
        _ => Err("\"count\", or an object such as {\"sum\": \".amount\"}".into()),
    }
}

/// Each aggregate's value of `record` (`None` for count); `Err` when an aggregate's
/// expression fails or a numeric one gets something else (`what` names the step's kind).
pub(crate) fn values(
    aggregates: &[Aggregate],
    record: &Record,
    what: &str,
) -> Result<Vec<Option<Json>>, String> {
    let mut out = Vec::with_capacity(aggregates.len());
    for a in aggregates {
        let Some(jq) = &a.value else {
            out.push(None);
            continue;
        };
        let got = jq
            .run(record.value.clone())
            .map_err(|e| format!("{what}: aggregate {}: {e}", a.field))?;
        let v = match got.as_slice() {
            [v] => to_json(v),
            _ => Json::Null,
        };
        let numeric = matches!(a.kind, Kind::Sum | Kind::Min | Kind::Max | Kind::Avg);
        if numeric && !v.is_number() && !v.is_null() {
            return Err(format!(
                "{what}: aggregate {} ({:?}) needs a number, got {v}",
                a.field, a.kind
            ));
        }
        out.push(Some(v));
    }
    Ok(out)
}

/// An aggregate's running value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Acc {
    Count(u64),
    /// Integers add exactly until a float comes.
    Sum {
        int: i64,
        float: f64,
        is_float: bool,
    },
    Min(Option<Json>),
    Max(Option<Json>),
    Avg {
        sum: f64,
        n: u64,
    },
    First(Option<Json>),
    Last(Option<Json>),
    Distinct(BTreeSet<String>),
    Collect {
        max: usize,
        items: Vec<Json>,
    },
}

fn num(v: &Json) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

impl Acc {
    /// A fresh running value for `a`.
    pub(crate) fn of(a: &Aggregate) -> Acc {
        Acc::new(a.kind)
    }

    fn new(kind: Kind) -> Acc {
        match kind {
            Kind::Count => Acc::Count(0),
            Kind::Sum => Acc::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
            },
            Kind::Min => Acc::Min(None),
            Kind::Max => Acc::Max(None),
            Kind::Avg => Acc::Avg { sum: 0.0, n: 0 },
            Kind::First => Acc::First(None),
            Kind::Last => Acc::Last(None),
            Kind::CountDistinct => Acc::Distinct(BTreeSet::new()),
            Kind::Collect(max) => Acc::Collect {
                max,
                items: Vec::new(),
            },
        }
    }

    pub(crate) fn add(&mut self, v: Option<&Json>) {
        let present = v.filter(|v| !v.is_null());
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                int,
                float,
                is_float,
            } => {
                if let Some(v) = present {
                    match v.as_i64() {
                        Some(i) if !*is_float => match int.checked_add(i) {
                            Some(s) => *int = s,
                            None => {
                                *is_float = true;
                                *float = *int as f64 + i as f64;
                            }
                        },
                        _ => {
                            if !*is_float {
                                *is_float = true;
                                *float = *int as f64;
                            }
                            *float += num(v);
                        }
                    }
                }
            }
            Acc::Min(m) => {
                if let Some(v) = present {
                    if m.as_ref().is_none_or(|m| num(v) < num(m)) {
                        *m = Some(v.clone());
                    }
                }
            }
            Acc::Max(m) => {
                if let Some(v) = present {
                    if m.as_ref().is_none_or(|m| num(v) > num(m)) {
                        *m = Some(v.clone());
                    }
                }
            }
            Acc::Avg { sum, n } => {
                if let Some(v) = present {
                    *sum += num(v);
                    *n += 1;
                }
            }
            Acc::First(f) => {
                if f.is_none() {
                    *f = v.cloned();
                }
            }
            Acc::Last(l) => *l = v.cloned(),
            Acc::Distinct(set) => {
                if let Some(v) = present {
                    set.insert(v.to_string());
                }
            }
            Acc::Collect { max, items } => {
                if let Some(v) = v {
                    if items.len() < *max {
                        items.push(v.clone());
                    }
                }
            }
        }
    }

    /// The two running values as one (`self` the earlier session's, `other` the later's).
    fn merge(self, other: Acc) -> Acc {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => Acc::Count(a + b),
            (
                Acc::Sum {
                    int: a,
                    float: fa,
                    is_float: xa,
                },
                Acc::Sum {
                    int: b,
                    float: fb,
                    is_float: xb,
                },
            ) => match (xa || xb, a.checked_add(b)) {
                (false, Some(int)) => Acc::Sum {
                    int,
                    float: 0.0,
                    is_float: false,
                },
                _ => {
                    let f = |int: i64, float: f64, is: bool| if is { float } else { int as f64 };
                    Acc::Sum {
                        int: 0,
                        float: f(a, fa, xa) + f(b, fb, xb),
                        is_float: true,
                    }
                }
            },
            (Acc::Min(a), Acc::Min(b)) => Acc::Min(match (a, b) {
                (Some(a), Some(b)) => Some(if num(&b) < num(&a) { b } else { a }),
                (a, b) => a.or(b),
            }),
            (Acc::Max(a), Acc::Max(b)) => Acc::Max(match (a, b) {
                (Some(a), Some(b)) => Some(if num(&b) > num(&a) { b } else { a }),
                (a, b) => a.or(b),
            }),
            (Acc::Avg { sum: a, n: x }, Acc::Avg { sum: b, n: y }) => Acc::Avg {
                sum: a + b,
                n: x + y,
            },
            (Acc::First(a), Acc::First(b)) => Acc::First(a.or(b)),
            (Acc::Last(a), Acc::Last(b)) => Acc::Last(b.or(a)),
            (Acc::Distinct(mut a), Acc::Distinct(b)) => {
                a.extend(b);
                Acc::Distinct(a)
            }
            (Acc::Collect { max, mut items }, Acc::Collect { items: more, .. }) => {
                items.extend(more);
                items.truncate(max);
                Acc::Collect { max, items }
            }
            (a, _) => a,
        }
    }

    pub(crate) fn result(self) -> Json {
        match self {
            Acc::Min(m) | Acc::Max(m) | Acc::First(m) | Acc::Last(m) => m.unwrap_or(Json::Null),
            Acc::Collect { items, .. } => Json::Array(items),
            other => other.value(),
        }
    }

    /// The value so far, leaving the running value as it is (for rolling aggregates).
    pub(crate) fn value(&self) -> Json {
        match self {
            Acc::Count(n) => (*n).into(),
            Acc::Sum {
                int,
                float,
                is_float,
            } => {
                if *is_float {
                    serde_json::Number::from_f64(*float).map_or(Json::Null, Json::Number)
                } else {
                    (*int).into()
                }
            }
            Acc::Min(m) | Acc::Max(m) | Acc::First(m) | Acc::Last(m) => {
                m.clone().unwrap_or(Json::Null)
            }
            Acc::Avg { sum, n } if *n > 0 => {
                serde_json::Number::from_f64(sum / *n as f64).map_or(Json::Null, Json::Number)
            }
            Acc::Avg { .. } => Json::Null,
            Acc::Distinct(set) => (set.len() as u64).into(),
            Acc::Collect { items, .. } => Json::Array(items.clone()),
        }
    }
}

/// An open session window of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    start: i64,
    /// The last record's time plus the gap.
    end: i64,
    accs: Vec<Acc>,
}

/// One partition's open windows of one window step, and its watermark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// (window start, key) -> each aggregate's running value.
    windows: BTreeMap<(i64, Vec<u8>), Vec<Acc>>,
    /// Key -> its open sessions, by start.
    #[serde(default)]
    sessions: BTreeMap<Vec<u8>, Vec<Session>>,
    /// Windows closing at or before it are emitted; records for them are late.
    pub watermark: i64,
}

impl Default for WindowState {
    /// No window open, and no watermark yet (the least there is).
    fn default() -> WindowState {
        WindowState {
            windows: BTreeMap::new(),
            sessions: BTreeMap::new(),
            watermark: i64::MIN,
        }
    }
}

impl WindowState {
    pub fn new() -> WindowState {
        WindowState::default()
    }

    /// How many windows are open.
    pub fn open(&self) -> usize {
        self.windows.len() + self.sessions.values().map(Vec::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(yaml: &str) -> Window {
        let spec: WindowSpec = serde_norway::from_str(yaml).expect("spec");
        Window::compile(&spec).expect("compiles")
    }

    fn rec(key: &str, ts: i64, value: &str) -> Record {
        crate::pipeline::transform::testing::keyed(key, Some(ts), value)
    }

    fn results(records: &[Record]) -> Vec<Json> {
        records
            .iter()
            .map(|r| serde_json::from_str(&crate::pipeline::json::to_json(&r.value)).expect("json"))
            .collect()
    }

    #[test]
    fn tumbling_windows_aggregate_per_key_and_close_at_the_watermark() {
        let w = window(
            "size: 10s\naggregate: {n: count, total: {sum: .a}, top: {max: .a}, avg: {avg: .a}, \
             first: {first: .a}, last: {last: .a}, kinds: {count_distinct: .k}, all: {collect: .a, max: 2}}",
        );
        let mut s = WindowState::new();
        let mut rejected = Vec::new();
        w.add(
            &mut s,
            vec![
                rec("u1", 1_000, r#"{"a": 1, "k": "x"}"#),
                rec("u1", 9_999, r#"{"a": 2.5, "k": "y"}"#),
                rec("u1", 10_000, r#"{"a": 7, "k": "x"}"#),
                rec("u2", 3_000, r#"{"a": 4, "k": "x"}"#),
            ],
            &mut rejected,
        );
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(s.open(), 3);
        assert!(
            w.advance(&mut s, 9_999, "w").is_empty(),
            "[0, 10000) still open"
        );
        let out = results(&w.advance(&mut s, 10_000, "w"));
        assert_eq!(
            out,
            [
                serde_json::json!({"key": "u1", "window_start": 0, "window_end": 10000, "n": 2,
                    "total": 3.5, "top": 2.5, "avg": 1.75, "first": 1, "last": 2.5, "kinds": 2, "all": [1, 2.5]}),
                serde_json::json!({"key": "u2", "window_start": 0, "window_end": 10000, "n": 1,
                    "total": 4, "top": 4, "avg": 4.0, "first": 4, "last": 4, "kinds": 1, "all": [4]}),
            ]
        );
        // A record for the closed window is late, with the window it missed.
        w.add(&mut s, vec![rec("u1", 5_000, r#"{"a": 1}"#)], &mut rejected);
        assert_eq!(rejected.len(), 1);
        assert!(
            rejected[0].1.contains("late") && rejected[0].1.contains("[0, 10000)"),
            "{}",
            rejected[0].1
        );
    }

    #[test]
    fn sliding_windows_count_a_record_in_each_window_that_holds_it() {
        let w = window("size: 10s\nslide: 5s\naggregate: {n: count}");
        let mut s = WindowState::new();
        let mut rejected = Vec::new();
        w.add(
            &mut s,
            vec![rec("k", 7_000, "{}"), rec("k", 12_000, "{}")],
            &mut rejected,
        );
        let out = results(&w.advance(&mut s, i64::MAX, "w"));
        let got: Vec<(i64, u64)> = out
            .iter()
            .map(|v| {
                (
                    v["window_start"].as_i64().unwrap(),
                    v["n"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [(0, 1), (5_000, 2), (10_000, 1)]);
    }

    #[test]
    fn lateness_keeps_a_window_open_and_state_round_trips() {
        let w = window("size: 10s\nallowed_lateness: 5s\naggregate: {n: count}");
        let mut s = WindowState::new();
        let mut rejected = Vec::new();
        w.add(&mut s, vec![rec("k", 1_000, "{}")], &mut rejected);
        assert!(w.advance(&mut s, 12_000, "w").is_empty());
        w.add(&mut s, vec![rec("k", 2_000, "{}")], &mut rejected);
        assert!(rejected.is_empty(), "still within the lateness");
        let bytes = rmp_serde::to_vec(&s).expect("encode");
        let mut back: WindowState = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, s);
        let out = results(&w.advance(&mut back, 15_000, "w"));
        assert_eq!(out[0]["n"], 2);
    }

    #[test]
    fn sessions_grow_merge_when_bridged_and_close_after_the_gap() {
        let w = window("gap: 5s\naggregate: {n: count, total: {sum: .a}, first: {first: .a}, last: {last: .a}}");
        let mut s = WindowState::new();
        let mut rejected = Vec::new();
        // Two sessions of k (0-1 s and 8 s), one of j; then a record at 4 s bridges k's two.
        w.add(
            &mut s,
            vec![
                rec("k", 0, r#"{"a": 1}"#),
                rec("k", 1_000, r#"{"a": 2}"#),
                rec("k", 8_000, r#"{"a": 3}"#),
                rec("j", 2_000, r#"{"a": 10}"#),
            ],
            &mut rejected,
        );
        assert_eq!(s.open(), 3);
        w.add(&mut s, vec![rec("k", 4_000, r#"{"a": 4}"#)], &mut rejected);
        assert_eq!(s.open(), 2, "k's sessions merged");
        assert!(rejected.is_empty(), "{rejected:?}");
        let out = results(&w.advance(&mut s, 7_000, "w"));
        assert_eq!(
            out,
            [
                serde_json::json!({"key": "j", "window_start": 2000, "window_end": 7000,
                "n": 1, "total": 10, "first": 10, "last": 10})
            ]
        );
        let out = results(&w.advance(&mut s, 13_000, "w"));
        assert_eq!(
            out,
            [
                serde_json::json!({"key": "k", "window_start": 0, "window_end": 13000,
                "n": 4, "total": 10, "first": 1, "last": 4})
            ]
        );
        w.add(&mut s, vec![rec("k", 1_000, "{}")], &mut rejected);
        assert!(rejected[0].1.contains("late"), "{}", rejected[0].1);
        let bytes = rmp_serde::to_vec(&s).expect("encode");
        assert_eq!(
            rmp_serde::from_slice::<WindowState>(&bytes).expect("decode"),
            s
        );
    }

    #[test]
    fn early_results_show_open_windows_so_far_and_leave_them_open() {
        let w = window("size: 10s\nearly: 1s\naggregate: {n: count}");
        assert_eq!(w.early, Some(std::time::Duration::from_secs(1)));
        let mut s = WindowState::new();
        let mut rejected = Vec::new();
        w.add(
            &mut s,
            vec![rec("k", 1_000, "{}"), rec("k", 2_000, "{}")],
            &mut rejected,
        );
        let early = results(&w.early_results(&s, "w"));
        assert_eq!(
            early,
            [
                serde_json::json!({"key": "k", "window_start": 0, "window_end": 10000, "n": 2, "early": true})
            ]
        );
        assert_eq!(s.open(), 1, "still open");
        let last = results(&w.advance(&mut s, 10_000, "w"));
        assert_eq!(last[0]["n"], 2);
        assert!(last[0].get("early").is_none());
    }

    #[test]
    fn bad_configs_and_records_are_named() {
        let bad = |yaml: &str| {
            let spec: WindowSpec = serde_norway::from_str(yaml).expect("spec");
            Window::compile(&spec).err().expect("refused")
        };
        assert!(bad("size: 10s\nslide: 3s\naggregate: {n: count}").contains("slide"));
        assert!(bad("size: 10s\naggregate: {}").contains("aggregate"));
        assert!(bad("size: 10s\naggregate: {n: {median: .a}}").contains("unknown aggregate"));
        assert!(bad("size: 10s\naggregate: {n: sum}").contains("needs a value"));
        assert!(bad("size: 10s\naggregate: {key: count}").contains("taken"));
        assert!(bad("aggregate: {n: count}").contains("size"));
        assert!(bad("size: 1s\ngap: 1s\naggregate: {n: count}").contains("one of them"));
        let w = window("size: 10s\naggregate: {t: {sum: .a}}");
        let mut s = WindowState::new();
        let mut rejected = Vec::new();
        let mut no_time = rec("k", 0, r#"{"a": 1}"#);
        no_time.event_time = None;
        w.add(
            &mut s,
            vec![no_time, rec("k", 0, r#"{"a": "x"}"#)],
            &mut rejected,
        );
        assert_eq!(rejected.len(), 2);
        assert!(rejected[0].1.contains("event time"));
        assert!(rejected[1].1.contains("needs a number"));
    }
}
