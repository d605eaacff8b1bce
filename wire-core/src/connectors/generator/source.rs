//! Making records from a template. Partition `p` of `n` makes sequence numbers
//! `p, p + n, p + 2n, ...` below the configured count; a record's position offset is the next
//! sequence number of its partition, so a resumed partition makes exactly what it had not
//! delivered. Pacing (`rate`) is the runtime's job.

use serde_json::Value;

use super::config::GeneratorConfig;
use crate::pipeline::checkpoint::Offset;
use crate::pipeline::jq::parse_json;
use crate::pipeline::transform::{Position, Record};

/// The default template.
fn default_template() -> Value {
    serde_json::json!({"seq": "{{seq}}"})
}

/// Replaces `"{{seq}}"` strings by the number, and `{{seq}}` inside other strings by its text.
fn fill(template: &Value, seq: u64) -> Value {
    match template {
        Value::String(s) if s == "{{seq}}" => Value::from(seq),
        Value::String(s) if s.contains("{{seq}}") => {
            Value::String(s.replace("{{seq}}", &seq.to_string()))
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, seq)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), fill(v, seq))).collect())
        }
        other => other.clone(),
    }
}

/// One partition's generator.
pub struct Generator {
    source: std::sync::Arc<str>,
    /// The split name: this partition's share of the sequence (`{partition}/{partitions}`).
    split: std::sync::Arc<str>,
    template: Value,
    count: Option<u64>,
    step: u64,
    next: u64,
}

impl Generator {
    /// Partition `partition` of `partitions` for the source step `source`, resuming at
    /// sequence number `resume` (its checkpointed offset; `None` to start).
    pub fn new(
        source: &str,
        config: &GeneratorConfig,
        partition: u32,
        partitions: u32,
        resume: Option<u64>,
    ) -> Generator {
        Generator {
            source: source.into(),
            split: format!("{partition}/{partitions}").into(),
            template: config.template.clone().unwrap_or_else(default_template),
            count: config.count,
            step: u64::from(partitions.max(1)),
            next: resume.unwrap_or(u64::from(partition)),
        }
    }

    /// Whether every record of this partition has been made.
    pub fn done(&self) -> bool {
        self.count.is_some_and(|c| self.next >= c)
    }

    /// Makes up to `max` records.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, String> {
        let mut out = Vec::with_capacity(max);
        while out.len() < max && !self.done() {
            let seq = self.next;
            self.next += self.step;
            let text = fill(&self.template, seq).to_string();
            let value = parse_json(text.as_bytes())
                .map_err(|e| format!("generator template made {text}: {e}"))?;
            out.push(Record::new(
                value,
                Position {
                    source: self.source.clone(),
                    split: self.split.clone(),
                    offset: Offset::Num(self.next),
                },
            ));
        }
        Ok(out)
    }
}

/// A generator partition as a pipeline source, paced to its share of `rate`.
pub struct GeneratorSource {
    generator: Generator,
    /// Records per second for this partition, if paced.
    rate: Option<f64>,
    started: std::time::Instant,
    made: u64,
}

impl crate::connectors::Source for GeneratorSource {
    fn read(
        &mut self,
        max: usize,
    ) -> crate::connectors::ConnectorResult<crate::connectors::SourceBatch> {
        use crate::connectors::{ReadState, SourceBatch};
        if self.generator.done() {
            return Ok(SourceBatch {
                records: Vec::new(),
                bad: Vec::new(),
                state: ReadState::Finished,
            });
        }
        let allowed = match self.rate {
            None => max,
            Some(rate) => {
                let due = (self.started.elapsed().as_secs_f64() * rate) as u64;
                (due.saturating_sub(self.made) as usize).min(max)
            }
        };
        if allowed == 0 {
            return Ok(SourceBatch {
                records: Vec::new(),
                bad: Vec::new(),
                state: ReadState::Idle,
            });
        }
        let records = self.generator.next_batch(allowed)?;
        self.made += records.len() as u64;
        Ok(SourceBatch {
            records,
            bad: Vec::new(),
            state: ReadState::More,
        })
    }

    fn positions(&self) -> std::collections::BTreeMap<String, Offset> {
        std::collections::BTreeMap::from([(
            self.generator.split.to_string(),
            Offset::Num(self.generator.next),
        )])
    }

    fn lag(&self) -> Option<u64> {
        self.generator
            .count
            .map(|c| c.saturating_sub(self.generator.next) / self.generator.step)
    }
}

/// Opens a generator partition (the registry's entry point).
pub fn open(
    config: &Value,
    ctx: &crate::connectors::SourceContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn crate::connectors::Source>> {
    let config: GeneratorConfig = crate::connectors::typed(config)?;
    let generator = Generator::new(
        ctx.step,
        &config,
        ctx.partition,
        ctx.partitions,
        ctx.resume
            .get(&format!("{}/{}", ctx.partition, ctx.partitions))
            .and_then(Offset::num),
    );
    Ok(Box::new(GeneratorSource {
        generator,
        rate: config
            .rate
            .map(|r| r as f64 / f64::from(ctx.partitions.max(1))),
        started: std::time::Instant::now(),
        made: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(count: Option<u64>, template: Option<Value>) -> GeneratorConfig {
        GeneratorConfig {
            count,
            rate: None,
            template,
        }
    }

    #[test]
    fn partitions_split_the_sequence_and_resume_exactly() {
        let c = config(
            Some(7),
            Some(serde_json::json!({"id": "{{seq}}", "name": "user-{{seq}}", "k": [true]})),
        );
        let mut p1 = Generator::new("gen", &c, 1, 2, None);
        let batch = p1.next_batch(2).unwrap();
        let values: Vec<String> = batch.iter().map(|r| r.value.to_string()).collect();
        // Object keys keep the template's order.
        assert_eq!(
            values,
            [
                r#"{"id":1,"name":"user-1","k":[true]}"#,
                r#"{"id":3,"name":"user-3","k":[true]}"#
            ]
        );
        // Resume from the last delivered record's offset: the rest, once.
        let mut resumed = Generator::new("gen", &c, 1, 2, batch[1].position.offset.num());
        let rest: Vec<String> = resumed
            .next_batch(10)
            .unwrap()
            .iter()
            .map(|r| r.value.to_string())
            .collect();
        assert_eq!(rest, [r#"{"id":5,"name":"user-5","k":[true]}"#]);
        assert!(resumed.done());
        // Both partitions together make 0..7 exactly once.
        let mut all: Vec<u64> = Vec::new();
        for p in 0..2 {
            let mut g = Generator::new("gen", &config(Some(7), None), p, 2, None);
            while !g.done() {
                for r in g.next_batch(3).unwrap() {
                    all.push(
                        r.value
                            .to_string()
                            .trim_start_matches("{\"seq\":")
                            .trim_end_matches('}')
                            .parse()
                            .unwrap(),
                    );
                }
            }
        }
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4, 5, 6]);
    }
}
