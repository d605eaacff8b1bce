//! Event time at the source: each record read gets its event time (from a jq expression on
//! the record, epoch milliseconds or RFC 3339; else the source's own time; else the time it
//! was read), and each source partition keeps a watermark — the least, over its splits that
//! are not idle, of the newest event time seen minus `max_delay`. The partition sends its
//! watermark downstream with its records (a sink partition's is the least of its
//! upstreams'); a partition whose splits all went quiet for `idle_after` says it is idle and
//! holds nobody back; one read to its end sends the largest watermark, closing every window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jaq_json::{Num, Val};

use crate::pipeline::checkpoint::now_ms;
use crate::pipeline::jq::Jq;
use crate::pipeline::transform::Record;
use crate::pipeline::validate::EventTime;

/// One source partition's event times and watermark.
pub struct EventClock {
    field: Option<Jq>,
    max_delay: i64,
    idle_after: Duration,
    /// Split -> (newest event time, when it last gave a record).
    splits: HashMap<Arc<str>, (i64, Instant)>,
    started: Instant,
    /// What was sent last (`Some(None)`: idle).
    sent: Option<Option<i64>>,
}

impl EventClock {
    pub fn new(spec: &EventTime) -> Result<EventClock, String> {
        Ok(EventClock {
            field: spec.field.as_deref().map(Jq::compile).transpose()?,
            max_delay: i64::try_from(spec.max_delay.as_millis()).unwrap_or(i64::MAX),
            idle_after: spec.idle_after,
            splits: HashMap::new(),
            started: Instant::now(),
            sent: None,
        })
    }

    /// Sets each record's event time; a record whose time cannot be read is returned apart
    /// with the reason.
    pub fn stamp(&mut self, records: Vec<Record>) -> (Vec<Record>, Vec<(Record, String)>) {
        let now = Instant::now();
        let mut ok = Vec::with_capacity(records.len());
        let mut bad = Vec::new();
        for mut r in records {
            let ts = match &self.field {
                Some(jq) => match jq.run(r.value.clone()) {
                    Ok(vals) => match vals.as_slice() {
                        [v] => time_of(v),
                        _ => Err(format!(
                            "the expression gave {} values, not one",
                            vals.len()
                        )),
                    },
                    Err(e) => Err(e),
                },
                None => Ok(r.event_time.unwrap_or_else(|| now_ms() as i64)),
            };
            match ts {
                Ok(ts) => {
                    r.event_time = Some(ts);
                    let split = self
                        .splits
                        .entry(r.position.split.clone())
                        .or_insert((i64::MIN, now));
                    split.0 = split.0.max(ts);
                    split.1 = now;
                    ok.push(r);
                }
                Err(why) => bad.push((r, format!("event time: {why}"))),
            }
        }
        (ok, bad)
    }

    /// The partition's watermark now: `None` when idle.
    fn watermark(&self) -> Option<Option<i64>> {
        let active: Vec<i64> = self
            .splits
            .values()
            .filter(|(_, seen)| seen.elapsed() < self.idle_after)
            .map(|(max, _)| max.saturating_sub(self.max_delay))
            .collect();
        if let Some(least) = active.iter().min() {
            return Some(Some(*least));
        }
        if !self.splits.is_empty() || self.started.elapsed() >= self.idle_after {
            return Some(None);
        }
        // Nothing read yet and not idle yet: hold back (downstream starts at the least).
        None
    }

    /// The watermark to send, when it moved (it never goes back).
    pub fn due(&mut self) -> Option<Option<i64>> {
        let now = self.watermark()?;
        let moved = match (self.sent, now) {
            (None, _) => true,
            (Some(Some(old)), Some(new)) => new > old,
            (Some(old), new) => old.is_some() != new.is_some(),
        };
        if !moved {
            return None;
        }
        // Back from idle, the watermark does not go behind what was sent before.
        let now = match (self.sent, now) {
            (Some(Some(old)), Some(new)) => Some(old.max(new)),
            _ => now,
        };
        self.sent = Some(now);
        Some(now)
    }
}

/// A value as an event time: a number of milliseconds since the Unix epoch, or an RFC 3339
/// string.
fn time_of(v: &Val) -> Result<i64, String> {
    match v {
        Val::Num(Num::Int(i)) => Ok(*i as i64),
        Val::Num(Num::Float(f)) if f.is_finite() => Ok(*f as i64),
        Val::Num(n) => n
            .to_string()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| f as i64)
            .ok_or_else(|| format!("{n} is not a time in milliseconds")),
        Val::TStr(s) | Val::BStr(s) => {
            let text = String::from_utf8_lossy(s);
            rfc3339_ms(&text).ok_or_else(|| format!("'{text}' is not an RFC 3339 time"))
        }
        other => Err(format!(
            "{} is neither milliseconds nor an RFC 3339 time",
            crate::pipeline::json::to_json(other)
        )),
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time (`2026-12-04T16:30:00Z`,
/// `2026-12-04T17:30:00.250+01:00`).
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let part = b.get(from..from + n)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = &text[start..i];
        if frac.is_empty() {
            return None;
        }
        let ms: String = frac.chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let m = digits(i + 1, 2)? * 60 + digits(i + 4, 2)?;
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset * 60;
    Some(secs * 1_000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::transform::Position;

    #[test]
    fn rfc3339_times_parse_with_fractions_and_offsets() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2026-12-04T16:30:00Z"), Some(1_796_401_800_000));
        assert_eq!(
            rfc3339_ms("2026-12-04T17:30:00.25+01:00"),
            Some(1_796_401_800_250)
        );
        assert_eq!(
            rfc3339_ms("2000-02-29T12:00:00.123456-00:30"),
            Some(951_827_400_123)
        );
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-12-04",
            "2026-12-04T16:30:00",
            "yesterday",
            "2026-12-04T16:30:00.Z",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }

    fn clock(field: Option<&str>, max_delay_ms: u64) -> EventClock {
        EventClock::new(&EventTime {
            field: field.map(String::from),
            max_delay: Duration::from_millis(max_delay_ms),
            idle_after: Duration::from_secs(60),
        })
        .expect("clock")
    }

    fn rec(split: &str, json: &str) -> Record {
        Record::new(
            crate::pipeline::json::parse_strict(json.as_bytes()).expect("json"),
            Position {
                source: "in".into(),
                split: split.into(),
                offset: 0.into(),
            },
        )
    }

    #[test]
    fn records_get_their_time_and_the_watermark_is_the_slowest_split_minus_the_delay() {
        let mut c = clock(Some(".ts"), 1_000);
        assert_eq!(c.due(), None, "nothing read yet");
        let (ok, bad) = c.stamp(vec![
            rec("a", r#"{"ts": 10000}"#),
            rec("b", r#"{"ts": "1970-01-01T00:00:05Z"}"#),
            rec("a", r#"{"ts": "soon"}"#),
            rec("b", r#"{"no": 1}"#),
        ]);
        assert_eq!(
            ok.iter().map(|r| r.event_time).collect::<Vec<_>>(),
            [Some(10_000), Some(5_000)]
        );
        assert_eq!(bad.len(), 2);
        assert!(bad[0].1.contains("RFC 3339"), "{}", bad[0].1);
        assert_eq!(c.due(), Some(Some(4_000)), "split b is behind");
        assert_eq!(c.due(), None, "not moved");
        c.stamp(vec![rec("b", r#"{"ts": 20000}"#)]);
        assert_eq!(c.due(), Some(Some(9_000)), "now split a is");
    }
}
