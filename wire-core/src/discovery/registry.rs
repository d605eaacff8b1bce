//! Registering a node where discovery can find it, and finding the registered ones, in etcd:
//! a key under the prefix kept alive by a lease (the v3 JSON API). A clean shutdown revokes
//! the lease, which removes the key; a node that dies is dropped when its lease expires.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Discover, Finder};

const TTL_SECS: u64 = 10;
const RENEW_EVERY: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The key range just past `prefix` (etcd's prefix end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// POSTs `body` to `path` on the first etcd endpoint that answers.
async fn etcd_call(
    http: &reqwest::Client,
    endpoints: &[String],
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let mut last = String::from("no endpoint");
    for e in endpoints {
        let sent = http
            .post(format!("http://{e}{path}"))
            .json(body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                return r
                    .json()
                    .await
                    .map_err(|err| format!("etcd {e}{path}: {err}"))
            }
            Ok(r) => {
                let status = r.status();
                last = format!(
                    "etcd {e}{path}: {status} {}",
                    r.text().await.unwrap_or_default()
                )
            }
            Err(err) => last = format!("etcd {e}{path}: {err}"),
        }
    }
    Err(last)
}

pub(super) async fn etcd_find(
    http: &reqwest::Client,
    endpoints: &[String],
    prefix: &str,
) -> Result<Vec<String>, String> {
    let dir = format!("{prefix}/");
    let end = base64::engine::general_purpose::STANDARD.encode(prefix_end(&dir));
    let answer = etcd_call(
        http,
        endpoints,
        "/v3/kv/range",
        &json!({"key": b64(&dir), "range_end": end}),
    )
    .await?;
    let mut out = Vec::new();
    for kv in answer["kvs"].as_array().into_iter().flatten() {
        let value = kv["value"]
            .as_str()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .and_then(|v| serde_json::from_slice::<Value>(&v).ok());
        if let Some(addr) = value.as_ref().and_then(|v| v["http_addr"].as_str()) {
            out.push(addr.to_string());
        }
    }
    Ok(out)
}

/// This node as registered.
#[derive(Debug, Clone)]
pub struct Me {
    pub node_id: u64,
    pub http_addr: String,
    pub raft_addr: String,
}

/// A registration kept alive until [`Registration::stop`].
pub struct Registration {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Registration {
    /// Registers `me` and keeps it alive; `None` for the DNS modes (the operator keeps
    /// the records).
    pub fn start(finder: &Finder, me: Me) -> Option<Registration> {
        let (stop, stopped) = watch::channel(false);
        let http = finder.http.clone();
        let task = match finder.discover.clone() {
            Discover::Etcd { endpoints, prefix } => {
                tokio::spawn(etcd_keep(http, endpoints, prefix, me, stopped))
            }
            Discover::Dns { .. } | Discover::DnsSrv { .. } => return None,
        };
        Some(Registration { stop, task })
    }

    /// Removes the registration (within a few seconds at most).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

async fn pause(stopped: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stopped.wait_for(|s| *s) => true,
    }
}

async fn etcd_keep(
    http: reqwest::Client,
    endpoints: Vec<String>,
    prefix: String,
    me: Me,
    mut stopped: watch::Receiver<bool>,
) {
    let key = format!("{prefix}/{}", me.node_id);
    let value =
        json!({"node_id": me.node_id, "http_addr": me.http_addr, "raft_addr": me.raft_addr})
            .to_string();
    let mut lease: Option<String> = None;
    loop {
        let step = match &lease {
            None => {
                async {
                    let granted = etcd_call(
                        &http,
                        &endpoints,
                        "/v3/lease/grant",
                        &json!({"TTL": TTL_SECS}),
                    )
                    .await?;
                    let id = match &granted["ID"] {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        other => return Err(format!("etcd lease grant answered {other}")),
                    };
                    etcd_call(
                        &http,
                        &endpoints,
                        "/v3/kv/put",
                        &json!({"key": b64(&key), "value": b64(&value), "lease": id}),
                    )
                    .await?;
                    tracing::info!(%key, "registered in etcd");
                    Ok(Some(id))
                }
                .await
            }
            Some(id) => {
                let kept =
                    etcd_call(&http, &endpoints, "/v3/lease/keepalive", &json!({"ID": id})).await;
                match kept {
                    // An expired lease comes back without a TTL: register again.
                    Ok(v) if v["result"]["TTL"].as_str().is_some_and(|t| t != "0") => {
                        Ok(Some(id.clone()))
                    }
                    Ok(v) if v["result"]["TTL"].as_u64().is_some_and(|t| t > 0) => {
                        Ok(Some(id.clone()))
                    }
                    Ok(_) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        match step {
            Ok(l) => lease = l,
            Err(e) => tracing::warn!(error = %e, "keeping the etcd registration"),
        }
        if pause(&mut stopped, RENEW_EVERY).await {
            break;
        }
    }
    if let Some(id) = lease {
        let _ = etcd_call(&http, &endpoints, "/v3/lease/revoke", &json!({"ID": id})).await;
        tracing::info!(%key, "deregistered from etcd");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_ends_are_the_next_key() {
        assert_eq!(super::prefix_end("/wire/"), b"/wire0".to_vec());
        assert_eq!(super::prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
