//! Key routing: which partition a record goes to after the DAG ran on it. In a keyed
//! pipeline a record goes to the partition that owns its key's hash — through a channel to
//! its sink worker when it runs on this node, through the exchange when it runs on another
//! ([`super::exchange`]); otherwise (and for dead letters) it stays in the partition that
//! read it.

use std::collections::BTreeMap;
use std::sync::mpsc::SyncSender;

use super::sink_worker::SinkMsg;
use crate::hash::stable_hash;
use crate::pipeline::transform::Record;

/// The partition of `parallelism` that owns `key`.
pub fn partition_of(key: &[u8], parallelism: u32) -> u32 {
    (stable_hash(key) % u64::from(parallelism.max(1))) as u32
}

/// The way to one partition's sink worker.
#[derive(Clone)]
pub enum Route {
    /// On this node: its channel.
    Local(SyncSender<SinkMsg>),
    /// On another node: the queue of the exchange link to that node.
    Remote(tokio::sync::mpsc::Sender<(u32, SinkMsg)>),
}

impl Route {
    /// Sends to partition `to`, blocking while the way is full (the backpressure). Call
    /// from a worker thread, never from async code.
    fn send(&self, to: u32, msg: SinkMsg) -> Result<(), ()> {
        match self {
            Route::Local(s) => s.send(msg).map_err(drop),
            Route::Remote(s) => s.blocking_send((to, msg)).map_err(drop),
        }
    }
}

/// A source worker's way to the sink workers it feeds.
pub struct Router {
    own: u32,
    parallelism: u32,
    keyed: bool,
    routes: BTreeMap<u32, Route>,
}

impl Router {
    /// `routes` holds the sink workers this source may send to: every partition of a keyed
    /// pipeline, else only its own.
    pub fn new(own: u32, parallelism: u32, keyed: bool, routes: BTreeMap<u32, Route>) -> Router {
        Router {
            own,
            parallelism,
            keyed,
            routes,
        }
    }

    /// The partition a record goes to.
    pub fn target(&self, record: &Record) -> u32 {
        match (&record.key, self.keyed) {
            (Some(key), true) => {
                let t = partition_of(key, self.parallelism);
                if self.routes.contains_key(&t) {
                    t
                } else {
                    self.own
                }
            }
            _ => self.own,
        }
    }

    /// Groups one batch's output (records per sink, and dead letters) by target partition.
    pub fn split(
        &self,
        per_sink: Vec<Vec<Record>>,
        dead: Vec<Record>,
    ) -> BTreeMap<u32, (Vec<Vec<Record>>, Vec<Record>)> {
        let sinks = per_sink.len();
        let mut out: BTreeMap<u32, (Vec<Vec<Record>>, Vec<Record>)> = BTreeMap::new();
        for (k, records) in per_sink.into_iter().enumerate() {
            for record in records {
                let target = self.target(&record);
                out.entry(target)
                    .or_insert_with(|| (vec![Vec::new(); sinks], Vec::new()))
                    .0[k]
                    .push(record);
            }
        }
        if !dead.is_empty() {
            out.entry(self.own)
                .or_insert_with(|| (vec![Vec::new(); sinks], Vec::new()))
                .1 = dead;
        }
        out
    }

    /// Sends one batch's output on; blocks while a sink worker's channel is full (this is
    /// the backpressure). Errs when a sink worker ended.
    pub fn send(&self, per_sink: Vec<Vec<Record>>, dead: Vec<Record>) -> Result<(), String> {
        for (target, (per_sink, dead)) in self.split(per_sink, dead) {
            if let Some(route) = self.routes.get(&target) {
                route
                    .send(target, SinkMsg::Data { per_sink, dead })
                    .map_err(|_| format!("the way to partition {target} closed"))?;
            }
        }
        Ok(())
    }

    /// Sends barrier `epoch` to every sink worker this source feeds.
    pub fn barrier(&self, epoch: u64) -> Result<(), String> {
        for (target, route) in &self.routes {
            route
                .send(*target, SinkMsg::Barrier(epoch))
                .map_err(|_| format!("the way to partition {target} closed"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::transform::Position;

    fn record(key: Option<&str>) -> Record {
        let mut r = Record::new(jaq_json::Val::Null, Position::default());
        r.key = key.map(|k| k.as_bytes().to_vec());
        r
    }

    fn router(own: u32, keyed: bool, local: &[u32]) -> Router {
        let routes = local
            .iter()
            .map(|p| (*p, Route::Local(std::sync::mpsc::sync_channel(1).0)))
            .collect();
        Router::new(own, 4, keyed, routes)
    }

    #[test]
    fn keyed_records_go_to_the_partition_owning_their_key_and_dead_letters_stay() {
        let r = router(1, true, &[0, 1, 2, 3]);
        let keys = ["a", "b", "c", "d", "e", "f", "g"];
        let per_sink = vec![keys.iter().map(|k| record(Some(k))).collect::<Vec<_>>()];
        let split = r.split(per_sink, vec![record(None)]);
        let mut seen = 0;
        for (target, (per_sink, dead)) in &split {
            for rec in &per_sink[0] {
                let key = rec.key.as_deref().unwrap_or_default();
                assert_eq!(partition_of(key, 4), *target);
                seen += 1;
            }
            assert_eq!(dead.len(), usize::from(*target == 1));
        }
        assert_eq!(seen, keys.len());
        assert!(split.len() > 1, "seven keys over four partitions");
    }

    #[test]
    fn unkeyed_pipelines_and_missing_keys_stay_in_their_partition() {
        let r = router(2, false, &[2]);
        assert_eq!(r.target(&record(Some("a"))), 2);
        let r = router(2, true, &[0, 1, 2, 3]);
        assert_eq!(r.target(&record(None)), 2);
        // A key owned by a partition this node does not run stays here.
        let r = router(2, true, &[2]);
        assert!((0..50).all(|i| r.target(&record(Some(&i.to_string()))) == 2));
    }
}
