//! The config of `type: elasticsearch`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::check_config;
use crate::pipeline::spec::SpecError;

/// `type: elasticsearch` as a sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSinkConfig {
    /// The cluster's URL, such as `http://127.0.0.1:9200`.
    pub url: String,
    /// The index; `{field.path}` is replaced by that field of the record and `{date}` by its
    /// event date (or today's) as `YYYY.MM.DD`, e.g. `events-{date}`.
    pub index: String,
    /// The field holding the document id (default: derived from the record's position).
    #[serde(default)]
    pub id_field: Option<String>,
    /// Documents per bulk request (default 1000).
    #[serde(default)]
    pub max_docs: Option<usize>,
    /// Bytes per bulk request (default 5 MiB).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Longest a document waits before its request is sent, such as `1s` (default: until
    /// the batch is full or the next checkpoint).
    #[serde(default)]
    pub flush_interval: Option<String>,
    /// A PEM file of CA certificates to trust for an `https://` URL besides the public roots
    /// (for a cluster with a CA of its own). Read on the node that runs the sink.
    #[serde(default)]
    pub ca: Option<String>,
    /// Basic authentication: the user, with `password`.
    #[serde(default)]
    pub user: Option<String>,
    /// The user's password. `${NAME}` reads the environment variable `NAME` of the node that
    /// runs the sink, so the spec (which readers of the pipeline see) need not hold it.
    #[serde(default)]
    pub password: Option<String>,
    /// An API key, sent as `Authorization: ApiKey <key>` (the `encoded` form Elasticsearch
    /// answers a key's creation with); `${NAME}` as for `password`.
    #[serde(default)]
    pub api_key: Option<String>,
}

/// A secret as given, or the node's environment variable it names (`${NAME}`).
pub fn secret(value: &str) -> Result<String, String> {
    match value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(name) => std::env::var(name)
            .map_err(|_| format!("the environment variable {name} is not set on this node")),
        None => Ok(value.to_string()),
    }
}

/// The fields an index template names (`{name}`), or an error for an unclosed brace.
pub fn template_fields(template: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err("an unclosed '{'".into());
        };
        let name = &rest[open + 1..open + close];
        if name.is_empty() {
            return Err("an empty '{}'".into());
        }
        fields.push(name.to_string());
        rest = &rest[open + close + 1..];
    }
    Ok(fields)
}

pub fn check_sink(config: &Value, path: &str) -> Vec<SpecError> {
    let c: ElasticsearchSinkConfig = match check_config(config, path) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
        errors.push(SpecError::new(
            format!("{path}.url"),
            "must be an http:// or https:// URL",
        ));
    }
    if c.index.trim().is_empty() {
        errors.push(SpecError::new(format!("{path}.index"), "must not be empty"));
    } else if let Err(e) = template_fields(&c.index) {
        errors.push(SpecError::new(format!("{path}.index"), e));
    } else if c
        .index
        .chars()
        .any(|ch| ch.is_ascii_uppercase() || " \"*\\<|,>/?".contains(ch))
    {
        errors.push(SpecError::new(
            format!("{path}.index"),
            "index names are lowercase, without spaces or any of \" * \\ < | , > / ?",
        ));
    }
    if c.max_docs == Some(0) {
        errors.push(SpecError::new(
            format!("{path}.max_docs"),
            "must be positive",
        ));
    }
    if c.max_bytes == Some(0) {
        errors.push(SpecError::new(
            format!("{path}.max_bytes"),
            "must be positive",
        ));
    }
    if let Some(i) = &c.flush_interval {
        if let Err(e) = crate::pipeline::spec::parse_duration(i) {
            errors.push(SpecError::new(format!("{path}.flush_interval"), e));
        }
    }
    errors.extend(check_access(&c, path));
    errors
}

/// Credentials and CA: one way to sign in, each part where it belongs.
fn check_access(c: &ElasticsearchSinkConfig, path: &str) -> Vec<SpecError> {
    let mut errors = Vec::new();
    match (&c.user, &c.password) {
        (Some(_), None) => errors.push(SpecError::new(
            format!("{path}.password"),
            "user needs a password",
        )),
        (None, Some(_)) => errors.push(SpecError::new(
            format!("{path}.user"),
            "password needs a user",
        )),
        _ => {}
    }
    if c.api_key.is_some() && c.user.is_some() {
        errors.push(SpecError::new(
            format!("{path}.api_key"),
            "sign in with user and password or with api_key, not both",
        ));
    }
    if c.ca.is_some() && !c.url.starts_with("https://") {
        errors.push(SpecError::new(
            format!("{path}.ca"),
            "a CA is for an https:// URL",
        ));
    }
    // Credentials in the URL would be sent as they are nowhere else: refused, with the way.
    if let Some(host) = c.url.split("://").nth(1) {
        if host.split('/').next().is_some_and(|h| h.contains('@')) {
            errors.push(SpecError::new(
                format!("{path}.url"),
                "put credentials in user and password (or api_key), not in the URL",
            ));
        }
    }
    errors
}
