//! A native evaluator for the jq programs pipelines use most: field paths, literals,
//! comparisons, arithmetic, `and`/`or`/`not`, `//`, `if`, `select`, `floor`, and `=`/`|=` on
//! field paths, each giving at most one value. jaq evaluates a program through boxed
//! iterators and paths, which cost a file → jq → file pipeline more than reading, parsing and
//! writing together; this evaluates the same tree directly on the same values.
//!
//! It only ever gives jaq's answer: every operation is jaq's own (`Val`'s arithmetic,
//! ordering, indexing, truthiness, `floor`), and anything outside the happy path — an error,
//! a type an operation does not take, more than one output — stops it with [`Fallback`], and
//! the record is run through jaq from its original value. A program with any construct not
//! listed here (definitions, variables, iteration, `,`, `reduce`, string interpolation, ...)
//! is not compiled at all.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use jaq_core::ValT as _;
use jaq_json::Val;
use jaq_std::ValT as StdVal;

/// "Let jaq do this one": the fast path cannot give jaq's answer for this input.
#[derive(Debug, PartialEq, Eq)]
pub struct Fallback;

type R = Result<Option<Val>, Fallback>;

/// A compiled expression that gives zero or one value per input.
#[derive(Debug, Clone)]
enum Expr {
    Id,
    /// Field `n` of a record run on text ([`TextPlan`]), whose input is the array of the
    /// fields the program uses.
    Slot(usize),
    Lit(Val),
    Empty,
    /// `f.key`
    Field(Box<Expr>, Val),
    Pipe(Box<Expr>, Box<Expr>),
    Select(Box<Expr>),
    Not,
    Floor,
    Neg(Box<Expr>),
    Cmp(Box<Expr>, Cmp, Box<Expr>),
    Math(Box<Expr>, Math, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Alt(Box<Expr>, Box<Expr>),
    If(Vec<(Expr, Expr)>, Box<Expr>),
    /// `.a.b = f`
    Assign(Vec<Val>, Box<Expr>),
    /// `.a.b |= f`
    Update(Vec<Val>, Box<Expr>),
}

/// A whole program, as the stages of its top-level pipe.
#[derive(Debug)]
pub struct FastJq {
    stages: Vec<Expr>,
    /// Set when the program can also run on a record's JSON text ([`FastJq::run_text`]).
    text: Option<TextPlan>,
}

/// A program that only filters records and sets fields, as it runs on a record's text: the
/// top-level fields it reads and writes are parsed into slots, the stages run on the slots,
/// and every other field is copied through as text, never parsed.
#[derive(Debug)]
struct TextPlan {
    /// Each field the program reads or writes (its slot is its index).
    fields: Vec<TextField>,
    stages: Vec<TextStage>,
    /// The fields the program writes, in the order it first writes them (which is the
    /// order jaq adds new keys in).
    writes: Vec<usize>,
}

/// A field a [`TextPlan`] reads or writes.
#[derive(Debug)]
struct TextField {
    /// As it appears between the quotes of a key.
    name: Box<[u8]>,
    /// Its key as JSON text followed by `:`.
    prefix: Box<[u8]>,
}

/// A stage of a [`TextPlan`]: what reads the record reads slots ([`Expr::Slot`]).
#[derive(Debug)]
enum TextStage {
    Select(Expr),
    /// `.field.rest = value`
    Assign(usize, Vec<Val>, Expr),
    /// `.field.rest |= f` (`f` runs on the present value, not on the record).
    Update(usize, Vec<Val>, Expr),
}

impl FastJq {
    /// Compiles `code` if every part of it is one the fast path evaluates.
    pub fn compile(code: &str) -> Option<FastJq> {
        let term = jaq_core::load::parse(code, |p| p.term())?;
        let mut stages = Vec::new();
        flatten(&term, &mut stages)?;
        let text = TextPlan::of(&stages);
        Some(FastJq { stages, text })
    }

    /// Whether [`FastJq::run_text`] can run this program.
    pub fn takes_text(&self) -> bool {
        self.text.is_some()
    }

    /// Runs the program on a record kept as JSON text, without parsing the fields it does
    /// not touch: its output as text (the input's text with the written fields replaced or
    /// added), `None` for no output, or `Fallback` when the value path must run it (the
    /// text is not an object, has a repeated or escaped key, or the program falls back).
    ///
    /// The program runs on slots holding only the fields it reads and writes: its selects
    /// and right-hand sides read nothing else (see [`TextPlan::of`]), and each step is the
    /// one [`FastJq::run`] takes (jaq's operations, the same checks before a field is set),
    /// so it gets the answer it gets on the whole record.
    pub fn run_text(&self, text: &bytes::Bytes) -> Result<Option<bytes::Bytes>, Fallback> {
        let plan = self.text.as_ref().ok_or(Fallback)?;
        MEMBERS.with_borrow_mut(|members| {
            members.clear();
            let close = crate::pipeline::json::members(text, members).ok_or(Fallback)?;
            plan.run(text, members, close)
        })
    }

    /// Runs the program on `input`: its output (`None` for none), or `Err` with `input`
    /// unchanged when jaq must run it instead.
    pub fn run(&self, input: Val) -> Result<Option<Val>, Val> {
        // Leading `select`s only look at the value, so the input stays whole through them.
        let mut rest = self.stages.as_slice();
        while let [Expr::Select(cond), tail @ ..] = rest {
            match cond.eval(input.clone()) {
                Err(Fallback) => return Err(input),
                Ok(None) => return Ok(None),
                Ok(Some(keep)) if !keep.as_bool() => return Ok(None),
                Ok(Some(_)) => rest = tail,
            }
        }
        match rest {
            [] => Ok(Some(input)),
            // One last stage gets the input itself (a last assignment changes it in place).
            [last] => last.run_owned(input),
            _ => {
                let mut current = Some(input.clone());
                for stage in rest {
                    let Some(v) = current else { break };
                    match stage.eval(v) {
                        Ok(next) => current = next,
                        Err(Fallback) => return Err(input),
                    }
                }
                Ok(current)
            }
        }
    }
}

thread_local! {
    /// The members of the record [`FastJq::run_text`] is on (kept to save an allocation).
    static MEMBERS: std::cell::RefCell<Vec<Member>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most fields a program may use to run on text.
const MAX_FIELDS: usize = 8;

/// A member of an object's text: its key (between the quotes) and its value.
type Member = (std::ops::Range<usize>, std::ops::Range<usize>);

impl TextPlan {
    /// The plan of a program that can run on text: its stages are `select`s and
    /// assignments (`=`, `|=`) to field paths, and the conditions and right-hand sides of
    /// `=` read the record only through top-level fields. Any other program gets none.
    fn of(stages: &[Expr]) -> Option<TextPlan> {
        let mut plan = TextPlan {
            fields: Vec::new(),
            stages: Vec::new(),
            writes: Vec::new(),
        };
        for stage in stages {
            let stage = match stage {
                Expr::Select(cond) => TextStage::Select(plan.slots(cond)?),
                Expr::Assign(keys, rhs) => {
                    let rhs = plan.slots(rhs)?;
                    TextStage::Assign(plan.write(&keys[0])?, keys[1..].to_vec(), rhs)
                }
                Expr::Update(keys, f) => {
                    TextStage::Update(plan.write(&keys[0])?, keys[1..].to_vec(), (**f).clone())
                }
                _ => return None,
            };
            plan.stages.push(stage);
        }
        (plan.fields.len() <= MAX_FIELDS).then_some(plan)
    }

    /// The slot of field `key`, added if new.
    fn field(&mut self, key: &Val) -> Option<usize> {
        let Val::TStr(name) = key else { return None };
        // Keys that JSON text would spell with escapes are left to the value path.
        if name.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        if let Some(f) = self.fields.iter().position(|f| *f.name == ***name) {
            return Some(f);
        }
        let mut prefix = Vec::new();
        crate::pipeline::json::write_json(key, &mut prefix);
        prefix.push(b':');
        self.fields.push(TextField {
            name: name.to_vec().into(),
            prefix: prefix.into(),
        });
        Some(self.fields.len() - 1)
    }

    fn write(&mut self, key: &Val) -> Option<usize> {
        let f = self.field(key)?;
        if !self.writes.contains(&f) {
            self.writes.push(f);
        }
        Some(f)
    }

    /// `e` reading slots where it reads top-level fields of the record; `None` if it reads
    /// the record in any other way.
    fn slots(&mut self, e: &Expr) -> Option<Expr> {
        Some(match e {
            Expr::Field(base, key) => match &**base {
                Expr::Id => Expr::Slot(self.field(key)?),
                other => Expr::Field(Box::new(self.slots(other)?), key.clone()),
            },
            Expr::Lit(_) | Expr::Empty => e.clone(),
            // The right side reads the left side's output, not the record.
            Expr::Pipe(l, r) => Expr::Pipe(Box::new(self.slots(l)?), r.clone()),
            Expr::Neg(e) => Expr::Neg(Box::new(self.slots(e)?)),
            Expr::Cmp(l, op, r) => {
                let (l, r) = self.pair(l, r)?;
                Expr::Cmp(l, *op, r)
            }
            Expr::Math(l, op, r) => {
                let (l, r) = self.pair(l, r)?;
                Expr::Math(l, *op, r)
            }
            Expr::And(l, r) => {
                let (l, r) = self.pair(l, r)?;
                Expr::And(l, r)
            }
            Expr::Or(l, r) => {
                let (l, r) = self.pair(l, r)?;
                Expr::Or(l, r)
            }
            Expr::Alt(l, r) => {
                let (l, r) = self.pair(l, r)?;
                Expr::Alt(l, r)
            }
            Expr::If(branches, otherwise) => Expr::If(
                branches
                    .iter()
                    .map(|(c, t)| Some((self.slots(c)?, self.slots(t)?)))
                    .collect::<Option<_>>()?,
                Box::new(self.slots(otherwise)?),
            ),
            Expr::Id
            | Expr::Slot(_)
            | Expr::Select(_)
            | Expr::Not
            | Expr::Floor
            | Expr::Assign(..)
            | Expr::Update(..) => return None,
        })
    }

    fn pair(&mut self, l: &Expr, r: &Expr) -> Option<(Box<Expr>, Box<Expr>)> {
        Some((Box::new(self.slots(l)?), Box::new(self.slots(r)?)))
    }

    /// Runs the stages on the record `text`, whose members are `members` and whose closing
    /// brace is at `close`.
    fn run(
        &self,
        text: &bytes::Bytes,
        members: &[Member],
        close: usize,
    ) -> Result<Option<bytes::Bytes>, Fallback> {
        let key = |m: &Member| &text[m.0.clone()];
        // jaq keeps one member per key: a repeated key is left to the value path.
        let repeated = if members.len() <= 32 {
            (1..members.len()).any(|i| members[..i].iter().any(|m| key(m) == key(&members[i])))
        } else {
            let mut keys: Vec<&[u8]> = members.iter().map(key).collect();
            keys.sort_unstable();
            keys.windows(2).any(|w| w[0] == w[1])
        };
        if repeated {
            return Err(Fallback);
        }
        // Each field's member, and its value (null when absent, as `.field` reads it).
        let mut found = [None; MAX_FIELDS];
        let mut slots = vec![Val::Null; self.fields.len()];
        for (m, member) in members.iter().enumerate() {
            let name = key(member);
            if let Some(f) = self.fields.iter().position(|f| *f.name == *name) {
                found[f] = Some(m);
                slots[f] =
                    crate::pipeline::json::parse_value(&text[member.1.clone()]).ok_or(Fallback)?;
            }
        }
        let mut record = Val::Arr(slots.into());
        for stage in &self.stages {
            match stage {
                TextStage::Select(cond) => match cond.eval(record.clone())? {
                    Some(keep) if keep.as_bool() => {}
                    _ => return Ok(None),
                },
                TextStage::Assign(f, rest, rhs) => {
                    let Some(new) = rhs.eval(record.clone())? else {
                        return Ok(None);
                    };
                    set_slot(&mut record, *f, rest, found[*f].is_some(), new)?;
                }
                TextStage::Update(f, rest, update) => {
                    let old = get_path(&slot(&record, *f)?, rest)?;
                    let new = update.eval(old)?.ok_or(Fallback)?;
                    set_slot(&mut record, *f, rest, found[*f].is_some(), new)?;
                }
            }
            // A field set once is present from then on.
            if let TextStage::Assign(f, ..) | TextStage::Update(f, ..) = stage {
                found[*f].get_or_insert(usize::MAX);
            }
        }
        if self.writes.is_empty() {
            return Ok(Some(text.clone()));
        }
        let mut buf = Vec::with_capacity(text.len() + 32);
        // Written fields the text has, in place; the others copied as they are.
        let mut places: Vec<(usize, usize)> = self
            .writes
            .iter()
            .filter_map(|&f| found[f].filter(|&m| m != usize::MAX).map(|m| (m, f)))
            .collect();
        places.sort_unstable();
        let mut at = 0;
        for (m, f) in places {
            let value = &members[m].1;
            buf.extend_from_slice(&text[at..value.start]);
            crate::pipeline::json::write_json(&slot(&record, f)?, &mut buf);
            at = value.end;
        }
        buf.extend_from_slice(&text[at..close]);
        // New fields last, as jaq adds them.
        let mut first = members.is_empty();
        for &f in &self.writes {
            if found[f] != Some(usize::MAX) {
                continue;
            }
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.extend_from_slice(&self.fields[f].prefix);
            crate::pipeline::json::write_json(&slot(&record, f)?, &mut buf);
        }
        buf.extend_from_slice(&text[close..]);
        Ok(Some(bytes::Bytes::from(buf)))
    }
}

/// Slot `f` of a record run on text.
fn slot(record: &Val, f: usize) -> Result<Val, Fallback> {
    match record {
        Val::Arr(slots) => slots.get(f).cloned().ok_or(Fallback),
        _ => Err(Fallback),
    }
}

/// Sets `.field.rest` of a record run on text to `new`, where jaq could (`present`: the
/// field is in the record).
fn set_slot(
    record: &mut Val,
    f: usize,
    rest: &[Val],
    present: bool,
    new: Val,
) -> Result<(), Fallback> {
    let Val::Arr(slots) = record else {
        return Err(Fallback);
    };
    let value = std::sync::Arc::make_mut(slots).get_mut(f).ok_or(Fallback)?;
    if rest.is_empty() {
        *value = new;
        return Ok(());
    }
    // Deeper keys are set only inside a field the record has (as `settable` says).
    if !present || !settable(value, rest) {
        return Err(Fallback);
    }
    set_path(value, rest, new);
    Ok(())
}

/// Sets `keys` in `input` to `new` if jaq could; else gives `input` back unchanged.
fn set_checked(mut input: Val, keys: &[Val], new: Val) -> Result<Option<Val>, Val> {
    if !settable(&input, keys) {
        return Err(input);
    }
    set_path(&mut input, keys, new);
    Ok(Some(input))
}

fn flatten(term: &Term<&str>, stages: &mut Vec<Expr>) -> Option<()> {
    match term {
        Term::BinOp(l, BinaryOp::Pipe(None), r) => {
            flatten(l, stages)?;
            flatten(r, stages)
        }
        other => {
            stages.push(expr(other)?);
            Some(())
        }
    }
}

fn boxed(term: &Term<&str>) -> Option<Box<Expr>> {
    expr(term).map(Box::new)
}

fn expr(term: &Term<&str>) -> Option<Expr> {
    Some(match term {
        Term::Id => Expr::Id,
        Term::Num(n) => Expr::Lit(match n.parse::<isize>() {
            Ok(i) => Val::from(i),
            Err(_) => Val::from_num(n).ok()?,
        }),
        Term::Str(None, parts) => Expr::Lit(Val::from(plain_str(parts)?.to_string())),
        Term::Neg(t) => Expr::Neg(boxed(t)?),
        Term::Path(base, path) => {
            let mut e = expr(base)?;
            for (part, opt) in &path.0 {
                match (part, opt) {
                    (Part::Index(Term::Str(None, parts)), Opt::Essential) => {
                        e = Expr::Field(Box::new(e), Val::from(plain_str(parts)?.to_string()));
                    }
                    _ => return None,
                }
            }
            e
        }
        Term::BinOp(l, op, r) => match op {
            BinaryOp::Pipe(None) => Expr::Pipe(boxed(l)?, boxed(r)?),
            BinaryOp::Cmp(c) => Expr::Cmp(boxed(l)?, *c, boxed(r)?),
            BinaryOp::Math(m) => Expr::Math(boxed(l)?, *m, boxed(r)?),
            BinaryOp::And => Expr::And(boxed(l)?, boxed(r)?),
            BinaryOp::Or => Expr::Or(boxed(l)?, boxed(r)?),
            BinaryOp::Alt => Expr::Alt(boxed(l)?, boxed(r)?),
            BinaryOp::Assign => Expr::Assign(field_path(l)?, boxed(r)?),
            BinaryOp::Update => Expr::Update(field_path(l)?, boxed(r)?),
            _ => return None,
        },
        Term::IfThenElse(branches, otherwise) => {
            let branches = branches
                .iter()
                .map(|(c, t)| Some((expr(c)?, expr(t)?)))
                .collect::<Option<Vec<_>>>()?;
            let otherwise = match otherwise {
                Some(e) => boxed(e)?,
                None => Box::new(Expr::Id),
            };
            Expr::If(branches, otherwise)
        }
        Term::Call(name, args) => match (*name, args.as_slice()) {
            ("select", [cond]) => Expr::Select(boxed(cond)?),
            ("not", []) => Expr::Not,
            ("floor", []) => Expr::Floor,
            ("empty", []) => Expr::Empty,
            ("true", []) => Expr::Lit(Val::Bool(true)),
            ("false", []) => Expr::Lit(Val::Bool(false)),
            ("null", []) => Expr::Lit(Val::Null),
            _ => return None,
        },
        _ => return None,
    })
}

/// The text of a string literal without escapes or interpolation.
fn plain_str<'s>(parts: &[StrPart<&'s str, Term<&'s str>>]) -> Option<&'s str> {
    match parts {
        [] => Some(""),
        [StrPart::Str(s)] => Some(s),
        _ => None,
    }
}

/// The keys of a path of fields from `.`, such as `.a.b` (the left of `=` and `|=`).
fn field_path(term: &Term<&str>) -> Option<Vec<Val>> {
    let Term::Path(base, path) = term else {
        return None;
    };
    if !matches!(**base, Term::Id) || path.0.is_empty() {
        return None;
    }
    path.0
        .iter()
        .map(|(part, opt)| match (part, opt) {
            (Part::Index(Term::Str(None, parts)), Opt::Essential) => {
                Some(Val::from(plain_str(parts)?.to_string()))
            }
            _ => None,
        })
        .collect()
}

impl Expr {
    fn eval(&self, v: Val) -> R {
        match self {
            Expr::Id => Ok(Some(v)),
            Expr::Slot(f) => slot(&v, *f).map(Some),
            Expr::Lit(x) => Ok(Some(x.clone())),
            Expr::Empty => Ok(None),
            Expr::Field(base, key) => match base.eval(v)? {
                Some(b) => index(b, key).map(Some),
                None => Ok(None),
            },
            Expr::Pipe(l, r) => match l.eval(v)? {
                Some(x) => r.eval(x),
                None => Ok(None),
            },
            Expr::Select(cond) => match cond.eval(v.clone())? {
                Some(keep) if keep.as_bool() => Ok(Some(v)),
                _ => Ok(None),
            },
            Expr::Not => Ok(Some(Val::Bool(!v.as_bool()))),
            Expr::Floor => floor(v).map(Some),
            Expr::Neg(e) => match e.eval(v)? {
                Some(x) => (-x).map(Some).map_err(|_| Fallback),
                None => Ok(None),
            },
            Expr::Cmp(l, op, r) => {
                let Some((a, b)) = both(l, r, v)? else {
                    return Ok(None);
                };
                Ok(Some(Val::Bool(op.run(&a, &b))))
            }
            Expr::Math(l, op, r) => {
                let Some((a, b)) = both(l, r, v)? else {
                    return Ok(None);
                };
                op.run(a, b).map(Some).map_err(|_| Fallback)
            }
            Expr::And(l, r) => match l.eval(v.clone())? {
                None => Ok(None),
                Some(a) if !a.as_bool() => Ok(Some(Val::Bool(false))),
                Some(_) => Ok(r.eval(v)?.map(|b| Val::Bool(b.as_bool()))),
            },
            Expr::Or(l, r) => match l.eval(v.clone())? {
                None => Ok(None),
                Some(a) if a.as_bool() => Ok(Some(Val::Bool(true))),
                Some(_) => Ok(r.eval(v)?.map(|b| Val::Bool(b.as_bool()))),
            },
            Expr::Alt(l, r) => match l.eval(v.clone())? {
                Some(a) if a.as_bool() => Ok(Some(a)),
                _ => r.eval(v),
            },
            Expr::If(branches, otherwise) => {
                for (cond, then) in branches {
                    match cond.eval(v.clone())? {
                        None => return Ok(None),
                        Some(c) if c.as_bool() => return then.eval(v),
                        Some(_) => {}
                    }
                }
                otherwise.eval(v)
            }
            Expr::Assign(..) | Expr::Update(..) => self.run_owned(v).map_err(|_| Fallback),
        }
    }

    /// Evaluates on `v`, or gives `v` back unchanged when jaq must. `=` and `|=` check
    /// everything that can fail before they change `v`, so they change it in place.
    fn run_owned(&self, v: Val) -> Result<Option<Val>, Val> {
        let new = match self {
            Expr::Assign(keys, rhs) => rhs.eval(v.clone()).map(|new| (keys, new)),
            Expr::Update(keys, f) => get_path(&v, keys)
                .and_then(|old| f.eval(old)?.ok_or(Fallback))
                .map(|new| (keys, Some(new))),
            other => return other.eval(v.clone()).map_err(|_| v),
        };
        match new {
            Err(Fallback) => Err(v),
            Ok((_, None)) => Ok(None),
            Ok((keys, Some(new))) => set_checked(v, keys, new),
        }
    }
}

/// Both sides of a binary operator. jaq pairs every output of the right with every output
/// of the left; with at most one each, an empty side means no output.
fn both(l: &Expr, r: &Expr, v: Val) -> Result<Option<(Val, Val)>, Fallback> {
    let Some(b) = r.eval(v.clone())? else {
        return Ok(None);
    };
    let Some(a) = l.eval(v)? else {
        return Ok(None);
    };
    Ok(Some((a, b)))
}

/// `.key` as jaq does it, for the inputs that cannot fail: an object or null.
fn index(v: Val, key: &Val) -> Result<Val, Fallback> {
    match v {
        Val::Obj(_) | Val::Null => v.index(key).map_err(|_| Fallback),
        _ => Err(Fallback),
    }
}

/// jq's `floor`, as jaq-std does it, for the numbers that fit a machine integer.
fn floor(v: Val) -> Result<Val, Fallback> {
    if v.is_int() {
        return Ok(v);
    }
    let f = v.as_f64().ok_or(Fallback)?.floor();
    if f.is_finite() && isize::MIN as f64 <= f && f <= isize::MAX as f64 {
        Ok(Val::from(f as isize))
    } else {
        Err(Fallback)
    }
}

fn get_path(v: &Val, keys: &[Val]) -> Result<Val, Fallback> {
    let mut current = v.clone();
    for key in keys {
        current = index(current, key)?;
    }
    Ok(current)
}

/// Whether every step of `keys` meets an object, all but the last key present (jaq sets a
/// path only through objects: `null | .a = 1` is an error there).
fn settable(v: &Val, keys: &[Val]) -> bool {
    let mut current = v;
    for (i, key) in keys.iter().enumerate() {
        let Val::Obj(map) = current else {
            return false;
        };
        match map.get(key) {
            Some(next) => current = next,
            None => return i + 1 == keys.len(),
        }
    }
    true
}

/// Sets `keys` to `new`; `settable` said it can.
fn set_path(v: &mut Val, keys: &[Val], new: Val) {
    let Some((key, rest)) = keys.split_first() else {
        *v = new;
        return;
    };
    if let Val::Obj(map) = v {
        let slot = std::sync::Arc::make_mut(map)
            .entry(key.clone())
            .or_insert(Val::Null);
        set_path(slot, rest, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::jq::{parse_json, Jq};
    use crate::pipeline::json::to_json;

    const PROGRAMS: &[&str] = &[
        "select(.amount > 5) | .amount_cents = (.amount * 100 | floor)",
        ".",
        ".a",
        ".a.b",
        ".\"a\"",
        ".[\"a\"]",
        "(.a)",
        ".a = 1",
        ".a.b = .c",
        ".x.y.z = \"deep\"",
        ".a |= . + 1",
        ".a.b |= floor",
        ".amount = .amount",
        ".a = empty",
        "select(.a)",
        "select(.a) | select(.b == null)",
        "select(.amount >= 5 and .user != \"u1\")",
        "select(.a < .b or .c)",
        "select(.a | not)",
        ".a // .b // 0",
        "if .a > 1 then \"big\" elif .a == 1 then \"one\" else \"small\" end",
        "if .a then .b end",
        "-.a",
        ".a - .b * 2 / 4 % 3",
        ".a + .b",
        "1 + 2 | . * 3",
        "true, false",
        "[.a]",
        "null | .a = 1",
        ".a = 1 | .b = 2",
        "select(.a > 1) | .a",
        "select(empty)",
        "(.amount * 100 | floor) as $c | .c = $c",
    ];

    const INPUTS: &[&str] = &[
        r#"{"id":1,"user":"u1","amount":7.25,"tags":["a"],"note":"x"}"#,
        r#"{"id":2,"user":"u2","amount":3,"a":2,"b":10}"#,
        r#"{"amount":"7.5","a":"text","b":1}"#,
        r#"{"a":{"b":2.5},"c":[1,2]}"#,
        r#"{"a":{"b":"s"},"x":{"y":5}}"#,
        r#"{"a":null,"b":false,"c":true}"#,
        r#"{"a":9223372036854775807,"b":1}"#,
        r#"{"a":1e400,"b":-0.0,"amount":1e3}"#,
        r#"{"a":[1,2],"b":{"c":1}}"#,
        r#"{"a":1,"b":0}"#,
        r#"{"a":1.5,"b":2,"amount":5}"#,
        r#"[1,2,3]"#,
        r#""a string""#,
        r#"null"#,
        r#"12"#,
        r#"{}"#,
    ];

    fn jaq_answer(jq: &Jq, input: &Val) -> Result<Vec<String>, String> {
        jq.run_jaq(input.clone())
            .map(|out| out.iter().map(to_json).collect())
    }

    #[test]
    fn the_fast_path_gives_jaqs_answer_or_hands_the_input_back() {
        let mut native = 0;
        for program in PROGRAMS {
            let jq = Jq::compile(program).unwrap();
            let Some(fast) = FastJq::compile(program) else {
                continue;
            };
            for input in INPUTS {
                let value = parse_json(input.as_bytes()).unwrap();
                let expected = jaq_answer(&jq, &value);
                match fast.run(value.clone()) {
                    Ok(out) => {
                        native += 1;
                        let got: Vec<String> = out.iter().map(to_json).collect();
                        assert_eq!(Ok(got), expected, "{program} on {input}");
                    }
                    Err(back) => assert_eq!(to_json(&back), to_json(&value), "{program}"),
                }
                // Whichever path runs, the answer is jaq's.
                let whole = jq
                    .run(value.clone())
                    .map(|out| out.iter().map(to_json).collect::<Vec<_>>());
                assert_eq!(whole, expected, "{program} on {input}");
            }
        }
        // Most pairs run natively: the fast path is not falling back for everything.
        assert!(native > 200, "only {native} ran natively");
    }

    #[test]
    fn on_text_the_fast_path_gives_jaqs_answer_or_falls_back() {
        let more = [
            r#" { "amount" : 7.25 , "user":"u\"1", "n": {"amount": 1, "s": "}]"}, "t":[ "a", {"b":[1]} ] } "#,
            r#"{"a":1e2,"b":"\u00e9\/","amount":5.5,"c":{"x":[]}}"#,
            r#"{"amount_cents":0,"amount":6,"a":{"b":1}}"#,
            r#"{"amount":1,"amount":9}"#,
            r#"{"am\u006funt":9,"a":1}"#,
            r#"{"a":1} "#,
        ];
        let mut native = 0;
        for program in PROGRAMS {
            let jq = Jq::compile(program).unwrap();
            let Some(fast) = FastJq::compile(program) else {
                continue;
            };
            for input in INPUTS.iter().chain(&more) {
                let expected = jaq_answer(&jq, &parse_json(input.as_bytes()).unwrap());
                let text = bytes::Bytes::copy_from_slice(input.as_bytes());
                let Ok(out) = fast.run_text(&text) else {
                    continue;
                };
                native += 1;
                let got: Vec<String> = out
                    .iter()
                    .map(|t| to_json(&parse_json(t).expect("the output is JSON")))
                    .collect();
                assert_eq!(Ok(got), expected, "{program} on {input}");
            }
        }
        assert!(native > 100, "only {native} ran on text");
        // What only the value path can answer.
        let fast = FastJq::compile(".a = 1").unwrap();
        for input in [more[3], more[4], "[1]", "null", "{\"a\":1}x"] {
            let text = bytes::Bytes::copy_from_slice(input.as_bytes());
            assert_eq!(fast.run_text(&text), Err(Fallback), "{input}");
        }
        for program in [
            ".a",
            "select(. != null)",
            "select(.a) | .a",
            "if .a then .b end",
            ".a = .",
        ] {
            assert!(
                !FastJq::compile(program).is_some_and(|f| f.takes_text()),
                "{program}"
            );
        }
        // Fields the program does not write keep their text; a written one keeps its place.
        let fast = FastJq::compile(".amount_cents = (.amount * 100 | floor)").unwrap();
        let out = fast.run_text(&bytes::Bytes::copy_from_slice(more[2].as_bytes()));
        assert_eq!(
            out,
            Ok(Some(bytes::Bytes::from_static(
                br#"{"amount_cents":600,"amount":6,"a":{"b":1}}"#
            )))
        );
        let out = fast.run_text(&bytes::Bytes::from_static(b" { } "));
        assert_eq!(out, Err(Fallback), "null * 100 is jaq's to answer");
        let out = FastJq::compile(".b = 2 | .a = 1")
            .unwrap()
            .run_text(&bytes::Bytes::from_static(b" { } "));
        assert_eq!(
            out,
            Ok(Some(bytes::Bytes::from_static(br#" { "b":2,"a":1} "#)))
        );
    }

    #[test]
    fn common_programs_compile_and_others_do_not() {
        for program in [
            "select(.amount > 5) | .amount_cents = (.amount * 100 | floor)",
            ".a.b",
            "if .a then 1 else 2 end",
            ".a |= . + 1",
        ] {
            assert!(FastJq::compile(program).is_some(), "{program}");
        }
        for program in [
            ".[]",
            ".a, .b",
            "[.a]",
            "{a: 1}",
            "def f: 1; f",
            ". as $x | $x",
            "\"\\(.a)\"",
            "\"esc\\n\"",
            ".a?",
            ".[0]",
            "reduce .[] as $x (0; . + $x)",
            "length",
            ".a += 1",
            "true, false",
        ] {
            assert!(FastJq::compile(program).is_none(), "{program}");
        }
    }

    #[test]
    fn a_last_assignment_changes_the_record_in_place() {
        let fast = FastJq::compile("select(.amount > 5) | .amount_cents = (.amount * 100 | floor)")
            .unwrap();
        let input = parse_json(br#"{"amount":7.25,"user":"u"}"#).unwrap();
        let Val::Obj(map) = &input else { panic!() };
        let before = std::sync::Arc::as_ptr(map);
        let Ok(Some(out)) = fast.run(input) else {
            panic!("fell back")
        };
        let Val::Obj(map) = &out else { panic!() };
        assert_eq!(std::sync::Arc::as_ptr(map), before, "the object was copied");
        assert_eq!(
            to_json(&out),
            r#"{"amount":7.25,"user":"u","amount_cents":725}"#
        );
    }
}
