//! The built-in expression language: jq, through jaq. A compiled program runs on one JSON
//! record and yields zero or more records, so one filter maps (`.a`), filters
//! (`select(.amount > 5)`) and flat-maps (`.items[]`).

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;

use super::jq_fast::{Fallback, FastJq};
pub use super::json::parse_json;

/// A compiled jq program; cheap to share between partitions. Programs made only of what
/// [`FastJq`] evaluates run natively, every other one (and every input the fast path does
/// not take) through jaq.
pub struct Jq {
    filter: jaq_core::Filter<data::JustLut<Val>>,
    fast: Option<FastJq>,
}

impl std::fmt::Debug for Jq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jq")
    }
}

impl Jq {
    /// Compiles `code`, or says what is wrong with it.
    pub fn compile(code: &str) -> Result<Jq, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let problems: Vec<String> = errors
                    .into_iter()
                    .map(|(_, e)| match e {
                        jaq_core::load::Error::Io(io) => format!("{io:?}"),
                        jaq_core::load::Error::Lex(found) => {
                            expected(found.iter().map(|(expect, at)| (expect.as_str(), *at)))
                        }
                        jaq_core::load::Error::Parse(found) => {
                            expected(found.iter().map(|(expect, at)| (expect.as_str(), *at)))
                        }
                    })
                    .collect();
                format!("invalid jq: {}", problems.join("; "))
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| {
                let names: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, undefined)| {
                        undefined.into_iter().map(|(name, _)| name.to_string())
                    })
                    .collect();
                format!("invalid jq: undefined {}", names.join(", "))
            })?;
        Ok(Jq {
            filter,
            fast: FastJq::compile(code),
        })
    }

    /// Runs the program on one value: every output, or the first error's text.
    pub fn run(&self, input: Val) -> Result<Vec<Val>, String> {
        self.run_owned(input).map_err(|(e, _)| e)
    }

    /// [`Jq::run`], giving the input back with the error (for a dead letter) without keeping
    /// a copy of it while the program runs natively.
    pub fn run_owned(&self, input: Val) -> Result<Vec<Val>, (String, Val)> {
        let input = match &self.fast {
            Some(fast) => match fast.run(input) {
                Ok(out) => return Ok(out.into_iter().collect()),
                Err(input) => input,
            },
            None => input,
        };
        let keep = input.clone();
        self.run_jaq(input).map_err(|e| (e, keep))
    }

    /// Whether [`Jq::run_text`] can run the program: it only filters records and sets
    /// fields, reading top-level fields.
    pub fn takes_text(&self) -> bool {
        self.fast.as_ref().is_some_and(FastJq::takes_text)
    }

    /// Runs the program on a record's JSON text (see [`FastJq::run_text`]): the output's
    /// text, `None` for no output, or `Fallback` when the record must be parsed and run
    /// through [`Jq::run_owned`].
    pub fn run_text(&self, text: &bytes::Bytes) -> Result<Option<bytes::Bytes>, Fallback> {
        self.fast.as_ref().ok_or(Fallback)?.run_text(text)
    }

    /// Runs the program through jaq.
    pub(crate) fn run_jaq(&self, input: Val) -> Result<Vec<Val>, String> {
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input))
            .map(unwrap_valr)
            .map(|r| r.map_err(|e| format!("jq: {e}")))
            .collect()
    }
}

/// "expected X at '...'" for each place the parser got stuck.
fn expected<'a>(found: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    found
        .map(|(expect, at)| format!("expected {expect} at '{}'", excerpt(at)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn excerpt(s: &str) -> &str {
    let end = s.char_indices().nth(20).map(|(i, _)| i).unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &str, input: &str) -> Result<Vec<String>, String> {
        let jq = Jq::compile(code)?;
        Ok(jq
            .run(parse_json(input.as_bytes())?)?
            .iter()
            .map(|v| v.to_string())
            .collect())
    }

    #[test]
    fn one_filter_maps_filters_and_flat_maps() {
        assert_eq!(
            run(
                "select(.amount > 5) | .amount_cents = (.amount * 100 | floor)",
                r#"{"amount": 7.5}"#
            )
            .unwrap(),
            [r#"{"amount":7.5,"amount_cents":750}"#]
        );
        assert_eq!(
            run("select(.amount > 5)", r#"{"amount": 1}"#).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            run(".items[]", r#"{"items": [1, 2, 3]}"#).unwrap(),
            ["1", "2", "3"]
        );
    }

    #[test]
    fn bad_programs_and_runtime_errors_are_reported() {
        let e = Jq::compile("select(.a >").unwrap_err();
        assert!(e.starts_with("invalid jq"), "{e}");
        let e = Jq::compile("nosuchfunction(1)").unwrap_err();
        assert!(e.contains("nosuchfunction"), "{e}");
        let e = run(".a + 1", r#"{"a": "text"}"#).unwrap_err();
        assert!(e.starts_with("jq:"), "{e}");
        assert!(parse_json(b"{oops")
            .unwrap_err()
            .starts_with("invalid JSON"));
    }

    #[test]
    fn programs_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Jq>();
    }
}
