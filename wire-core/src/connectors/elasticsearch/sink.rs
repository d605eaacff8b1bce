//! The Elasticsearch sink: buffers bulk lines, sends them when the batch is full, old, or a
//! checkpoint comes, and reads the answer item by item.

use std::time::{Duration, Instant};

use jaq_json::Val;
use serde::Deserialize;

use base64::Engine;

use super::config::{secret, template_fields, ElasticsearchSinkConfig};
use crate::connectors::{derived_id, output_ordinals, Retry, Sink, SinkContext};
use crate::pipeline::transform::Record;

const DEFAULT_MAX_DOCS: usize = 1000;
const DEFAULT_MAX_BYTES: usize = 5 * 1024 * 1024;

/// A document waiting to be sent.
struct Pending {
    record: Record,
    /// The action line and the document line, each ending in a newline.
    lines: Vec<u8>,
}

pub struct ElasticsearchSink {
    bulk_url: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    index: String,
    index_fields: Vec<String>,
    id_field: Option<String>,
    max_docs: usize,
    max_bytes: usize,
    flush_interval: Option<Duration>,
    pending: Vec<Pending>,
    pending_bytes: usize,
    oldest: Option<Instant>,
    rejected: Vec<(Record, String)>,
}

/// Opens an Elasticsearch sink partition. Called on the node's runtime, whose handle the
/// sink thread uses to send requests.
pub fn open(
    config: &serde_json::Value,
    _ctx: &SinkContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn Sink>> {
    let c: ElasticsearchSinkConfig = crate::connectors::typed(config)?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the elasticsearch sink must be opened on the node's runtime".to_string())?;
    let http = client(&c)?;
    let flush_interval = c
        .flush_interval
        .as_deref()
        .map(crate::pipeline::spec::parse_duration)
        .transpose()?;
    Ok(Box::new(ElasticsearchSink {
        bulk_url: format!("{}/_bulk", c.url.trim_end_matches('/')),
        http,
        runtime,
        index_fields: template_fields(&c.index)?,
        index: c.index,
        id_field: c.id_field,
        max_docs: c.max_docs.unwrap_or(DEFAULT_MAX_DOCS),
        max_bytes: c.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
        flush_interval,
        pending: Vec::new(),
        pending_bytes: 0,
        oldest: None,
        rejected: Vec::new(),
    }))
}

/// The sink's HTTP client: the public roots and the config's CA, its credentials on every
/// request.
fn client(c: &ElasticsearchSinkConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
    if let Some(path) = &c.ca {
        let pem = std::fs::read(path).map_err(|e| format!("elasticsearch: ca {path}: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("elasticsearch: ca {path}: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "elasticsearch: ca {path}: no PEM certificate in it"
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let authorization = match (&c.user, &c.password, &c.api_key) {
        (Some(user), Some(password), _) => {
            let password = secret(password).map_err(|e| format!("elasticsearch: password: {e}"))?;
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Some(format!("Basic {pair}"))
        }
        (_, _, Some(key)) => {
            let key = secret(key).map_err(|e| format!("elasticsearch: api_key: {e}"))?;
            Some(format!("ApiKey {key}"))
        }
        _ => None,
    };
    if let Some(value) = authorization {
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| "elasticsearch: the credentials are not valid header text".to_string())?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    builder
        .build()
        .map_err(|e| format!("elasticsearch: building the HTTP client: {e}"))
}

/// The value at a dotted path of an object.
fn field<'a>(v: &'a Val, path: &str) -> Option<&'a Val> {
    path.split('.').try_fold(v, |v, name| match v {
        Val::Obj(map) => map.get(&Val::from(name.to_string())),
        _ => None,
    })
}

fn text_of(v: &Val) -> Option<String> {
    match v {
        Val::TStr(s) | Val::BStr(s) => Some(String::from_utf8_lossy(s).into_owned()),
        Val::Num(_) | Val::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// `YYYY.MM.DD` of a time in milliseconds since the epoch (UTC).
fn date_of(ms: i64) -> String {
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}.{month:02}.{day:02}")
}

#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, ItemAnswer>>,
}

#[derive(Deserialize)]
struct ItemAnswer {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

enum Outcome {
    Done,
    Retry(String),
    Rejected(String),
}

fn outcome(item: &ItemAnswer) -> Outcome {
    if (200..300).contains(&item.status) {
        return Outcome::Done;
    }
    let kind = item
        .error
        .as_ref()
        .and_then(|e| e["type"].as_str())
        .unwrap_or("")
        .to_string();
    let reason = item
        .error
        .as_ref()
        .map(|e| {
            format!(
                "{}: {}",
                e["type"].as_str().unwrap_or("error"),
                e["reason"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| format!("status {}", item.status));
    if matches!(item.status, 429 | 503)
        || kind == "es_rejected_execution_exception"
        || item.status >= 500
    {
        Outcome::Retry(reason)
    } else {
        Outcome::Rejected(format!(
            "elasticsearch rejected the document (status {}): {reason}",
            item.status
        ))
    }
}

/// An error with its causes (reqwest's own text leaves out why, such as a certificate
/// nobody trusts).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Whether TLS refused the server's certificate: rustls's error, which the connector wraps
/// in I/O errors (whose `source` skips what they wrap, so the walk goes into them).
fn certificate_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return matches!(tls, rustls::Error::InvalidCertificate(_));
        }
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    false
}

/// Why a bulk request did not get an answer to read.
enum Refusal {
    /// Worth asking again (the cluster is down, busy or answered garbage).
    Retry(String),
    /// Not worth it (the credentials were refused).
    Final(String),
}

impl ElasticsearchSink {
    fn index_for(&self, r: &Record) -> Result<String, String> {
        let mut index = self.index.clone();
        for name in &self.index_fields {
            let value = if name == "date" {
                date_of(
                    r.event_time
                        .unwrap_or_else(|| crate::pipeline::checkpoint::now_ms() as i64),
                )
            } else {
                field(&r.value, name)
                    .and_then(text_of)
                    .ok_or_else(|| {
                        format!("the index names field '{name}', which this record lacks")
                    })?
                    .to_lowercase()
            };
            index = index.replace(&format!("{{{name}}}"), &value);
        }
        Ok(index)
    }

    fn id_for(&self, r: &Record, nth: usize) -> Result<String, String> {
        match &self.id_field {
            Some(path) => field(&r.value, path).and_then(text_of).ok_or_else(|| {
                format!("the id field '{path}' is missing or not a string or number")
            }),
            None => Ok(derived_id(r, nth)),
        }
    }

    fn add(&mut self, r: &Record, nth: usize) {
        let (index, id) = match (self.index_for(r), self.id_for(r, nth)) {
            (Ok(i), Ok(d)) => (i, d),
            (Err(e), _) | (_, Err(e)) => {
                self.rejected.push((r.clone(), e));
                return;
            }
        };
        let mut lines =
            serde_json::to_vec(&serde_json::json!({"index": {"_index": index, "_id": id}}))
                .unwrap_or_default();
        lines.push(b'\n');
        crate::pipeline::json::write_json(&r.value, &mut lines);
        lines.push(b'\n');
        self.pending_bytes += lines.len();
        self.pending.push(Pending {
            record: r.clone(),
            lines,
        });
        self.oldest.get_or_insert_with(Instant::now);
    }

    fn due(&self) -> bool {
        self.pending.len() >= self.max_docs
            || self.pending_bytes >= self.max_bytes
            || matches!((self.oldest, self.flush_interval), (Some(t), Some(i)) if t.elapsed() >= i)
    }

    /// Sends everything pending until each document is stored or rejected for good.
    fn flush(&mut self) -> crate::connectors::ConnectorResult<()> {
        let mut pace = Retry::new();
        let mut todo = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.oldest = None;
        while !todo.is_empty() {
            let body: Vec<u8> = todo.iter().flat_map(|p| p.lines.iter().copied()).collect();
            let answer = self.runtime.block_on(async {
                let r = self
                    .http
                    .post(&self.bulk_url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        let why = format!("sending a bulk request: {}", causes(&e));
                        // A certificate nobody trusts stays untrusted: no use retrying.
                        if certificate_refused(&e) {
                            Refusal::Final(format!("{why} (for a CA of the cluster's own, set ca)"))
                        } else {
                            Refusal::Retry(why)
                        }
                    })?;
                let status = r.status();
                let text = r
                    .text()
                    .await
                    .map_err(|e| Refusal::Retry(format!("reading the bulk answer: {e}")))?;
                let said = || text.chars().take(300).collect::<String>();
                if matches!(status.as_u16(), 401 | 403) {
                    // Asking again will not change the answer: the pipeline stops with it.
                    return Err(Refusal::Final(format!(
                        "elasticsearch refused the sink's credentials ({status}): {}",
                        said()
                    )));
                }
                if !status.is_success() {
                    return Err(Refusal::Retry(format!(
                        "bulk request answered {status}: {}",
                        said()
                    )));
                }
                serde_json::from_str::<BulkAnswer>(&text)
                    .map_err(|e| Refusal::Retry(format!("reading the bulk answer: {e}")))
            });
            let mut retry = Vec::new();
            let why = match answer {
                Ok(a) if a.items.len() == todo.len() => {
                    let mut why = None;
                    for (p, item) in todo.into_iter().zip(a.items) {
                        match item.values().next().map(outcome) {
                            Some(Outcome::Done) => {}
                            Some(Outcome::Rejected(reason)) => {
                                self.rejected.push((p.record, reason))
                            }
                            Some(Outcome::Retry(reason)) => {
                                why = Some(reason);
                                retry.push(p);
                            }
                            None => {
                                why = Some("an empty item in the bulk answer".into());
                                retry.push(p);
                            }
                        }
                    }
                    why
                }
                Ok(a) => {
                    let why = format!(
                        "the bulk answer has {} items for {} documents",
                        a.items.len(),
                        todo.len()
                    );
                    retry = todo;
                    Some(why)
                }
                Err(Refusal::Final(e)) => {
                    return Err(crate::connectors::ConnectorError::invalid(e));
                }
                // The cluster is down or overloaded: send the same request again.
                Err(Refusal::Retry(e)) => {
                    retry = todo;
                    Some(e)
                }
            };
            todo = retry;
            if let (false, Some(why)) = (todo.is_empty(), why) {
                pace.wait("elasticsearch", todo.len(), &why)?;
            }
        }
        Ok(())
    }
}

impl Sink for ElasticsearchSink {
    fn write(&mut self, records: &[Record]) -> crate::connectors::ConnectorResult<()> {
        // The k-th output of one input gets id suffix k, the same again on a replay.
        for (nth, r) in output_ordinals(records) {
            self.add(r, nth);
            if self.due() {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn pre_commit(&mut self, _epoch: u64) -> crate::connectors::ConnectorResult<()> {
        self.flush()
    }

    fn take_rejected(&mut self) -> Vec<(Record, String)> {
        std::mem::take(&mut self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date_of(0), "1970.01.01");
        assert_eq!(date_of(951_782_400_000), "2000.02.29");
        assert_eq!(date_of(1_796_169_599_999), "2026.12.01");
        assert_eq!(date_of(-1), "1969.12.31");
    }

    #[test]
    fn outcomes_tell_retryable_from_permanent() {
        let item = |status, kind: &str| ItemAnswer {
            status,
            error: Some(serde_json::json!({"type": kind, "reason": "r"})),
        };
        assert!(matches!(outcome(&item(201, "")), Outcome::Done));
        assert!(matches!(
            outcome(&item(429, "too_many_requests")),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            outcome(&item(503, "unavailable_shards_exception")),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            outcome(&item(400, "es_rejected_execution_exception")),
            Outcome::Retry(_)
        ));
        match outcome(&item(400, "mapper_parsing_exception")) {
            Outcome::Rejected(why) => assert!(why.contains("mapper_parsing_exception: r"), "{why}"),
            _ => panic!("a mapping conflict is permanent"),
        }
    }

    #[test]
    fn index_templates_name_fields_and_the_date() {
        assert_eq!(
            template_fields("events-{kind}-{date}").unwrap(),
            ["kind", "date"]
        );
        assert!(template_fields("events-{kind").is_err());
        let value =
            crate::pipeline::jq::parse_json(br#"{"kind": "Click", "user": {"id": 7}}"#).unwrap();
        let r = Record {
            value,
            event_time: Some(0),
            ..Default::default()
        };
        assert_eq!(
            field(&r.value, "user.id").and_then(text_of).as_deref(),
            Some("7")
        );
        assert!(field(&r.value, "user.name").is_none());
    }
}
