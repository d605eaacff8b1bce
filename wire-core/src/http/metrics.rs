//! `GET /metrics`: Prometheus text exposition of this node's Raft state and of the pipeline
//! jobs it runs (per step records in/out/dead-lettered and batch time; per partition the
//! checkpoint epoch and age, records read and lag).

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::consensus::liveness::MemberLiveness;
use crate::consensus::NodeId;
use crate::node::Node;
use crate::pipeline::checkpoint::now_ms;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the metrics text.
pub fn render(node: &Node, liveness: &BTreeMap<NodeId, MemberLiveness>) -> String {
    let mut out = String::new();
    if !liveness.is_empty() {
        family(
            &mut out,
            "wire_member_alive",
            "gauge",
            "1 when the leader heard from the member within failover_after_ms.",
        );
        for (id, l) in liveness {
            let _ = writeln!(
                out,
                "wire_member_alive{{node=\"{id}\"}} {}",
                u8::from(l.alive)
            );
        }
        family(
            &mut out,
            "wire_member_last_heard_seconds",
            "gauge",
            "Seconds since the leader last heard from the member.",
        );
        for (id, l) in liveness {
            let _ = writeln!(
                out,
                "wire_member_last_heard_seconds{{node=\"{id}\"}} {:.3}",
                l.last_heard_ms as f64 / 1000.0
            );
        }
    }
    let m = node.raft().metrics().borrow().clone();
    family(&mut out, "wire_raft_term", "gauge", "Current Raft term.");
    let _ = writeln!(out, "wire_raft_term {}", m.current_term);
    family(
        &mut out,
        "wire_raft_is_leader",
        "gauge",
        "1 if this node leads.",
    );
    let _ = writeln!(out, "wire_raft_is_leader {}", u8::from(node.is_leader()));
    family(
        &mut out,
        "wire_raft_leader_id",
        "gauge",
        "The leader's node id (0: none known).",
    );
    let _ = writeln!(out, "wire_raft_leader_id {}", m.current_leader.unwrap_or(0));
    family(
        &mut out,
        "wire_raft_last_log_index",
        "gauge",
        "Last index in this node's log.",
    );
    let _ = writeln!(
        out,
        "wire_raft_last_log_index {}",
        m.last_log_index.unwrap_or(0)
    );
    family(
        &mut out,
        "wire_raft_applied_index",
        "gauge",
        "Last index applied to the state machine.",
    );
    let _ = writeln!(
        out,
        "wire_raft_applied_index {}",
        m.last_applied.map(|l| l.index).unwrap_or(0)
    );

    let counters = node.raft_counters();
    let raft_counters = [
        (
            "wire_raft_pre_votes_total",
            "Pre-vote rounds this node asked for (no leader heard for an election timeout).",
            &counters.pre_votes,
        ),
        (
            "wire_raft_elections_total",
            "Elections this node started after a quorum granted its pre-vote.",
            &counters.elections,
        ),
        (
            "wire_raft_leader_changes_total",
            "Times the leader this node knows of changed.",
            &counters.leader_changes,
        ),
        (
            "wire_raft_read_index_failures_total",
            "Linearizable reads whose leadership this node could not confirm in time.",
            &counters.read_index_failures,
        ),
    ];
    for (name, help, value) in raft_counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(
            out,
            "{name} {}",
            value.load(std::sync::atomic::Ordering::Relaxed)
        );
    }

    let jobs = node.runtime().jobs();
    let steps: [(&str, &str, &str); 5] = [
        (
            "wire_pipeline_records_in_total",
            "counter",
            "Records a step received.",
        ),
        (
            "wire_pipeline_records_out_total",
            "counter",
            "Records a step emitted.",
        ),
        (
            "wire_pipeline_dead_lettered_total",
            "counter",
            "Records a step sent to the dead-letter sink.",
        ),
        (
            "wire_pipeline_batches_total",
            "counter",
            "Batches a step handled.",
        ),
        (
            "wire_pipeline_batch_seconds_total",
            "counter",
            "Seconds a step spent on batches.",
        ),
    ];
    let snapshots: Vec<_> = jobs
        .iter()
        .map(|j| (j.pipeline.clone(), j.metrics.snapshot(), j.partitions()))
        .collect();
    for (i, (name, kind, help)) in steps.iter().enumerate() {
        family(&mut out, name, kind, help);
        for (pipeline, stats, _) in &snapshots {
            for (step, s) in stats {
                let value = match i {
                    0 => s.records_in as f64,
                    1 => s.records_out as f64,
                    2 => s.dead_lettered as f64,
                    3 => s.batches as f64,
                    _ => s.batch_seconds,
                };
                let _ = writeln!(
                    out,
                    "{name}{{pipeline=\"{}\",step=\"{}\"}} {value}",
                    label(pipeline),
                    label(step)
                );
            }
        }
    }
    let now = now_ms();
    let parts: [(&str, &str); 6] = [
        ("wire_pipeline_checkpoint_epoch", "Epoch of the partition's last committed checkpoint."),
        ("wire_pipeline_checkpoint_age_seconds", "Seconds since the partition's last committed checkpoint."),
        ("wire_pipeline_records_read_total", "Records (and bad inputs) the partition read since its job started."),
        ("wire_pipeline_lag", "Input known to be left for the partition (bytes of files, records of a counted generator)."),
        ("wire_pipeline_watermark_ms", "The partition's event-time watermark, ms since the Unix epoch (pipelines with windows)."),
        ("wire_pipeline_open_windows", "Windows open in the partition (pipelines with windows)."),
    ];
    for (i, (name, help)) in parts.iter().enumerate() {
        let kind = if i == 2 { "counter" } else { "gauge" };
        family(&mut out, name, kind, help);
        for (pipeline, _, partitions) in &snapshots {
            for (p, live) in partitions {
                let value = match i {
                    0 => Some(live.epoch as f64),
                    1 => live
                        .last_checkpoint_ms
                        .map(|t| now.saturating_sub(t) as f64 / 1000.0),
                    2 => Some(live.read as f64),
                    3 => live.lag.map(|l| l as f64),
                    4 => live.watermark.map(|w| w as f64),
                    _ => live.open_windows.map(|w| w as f64),
                };
                if let Some(value) = value {
                    let _ = writeln!(
                        out,
                        "{name}{{pipeline=\"{}\",partition=\"{p}\"}} {value}",
                        label(pipeline)
                    );
                }
            }
        }
    }
    out
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "cluster",
    summary = "Prometheus text: Raft, pipelines, steps, partitions",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain"), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody))
)]
pub async fn metrics(State(node): State<Node>) -> Response {
    let liveness = node.cluster().liveness().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&node, &liveness),
    )
        .into_response()
}
