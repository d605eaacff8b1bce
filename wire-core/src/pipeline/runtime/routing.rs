//! Key routing: which partition a record goes to after the DAG ran on it. In a keyed
//! pipeline a record goes to the partition that owns its key's hash — through a channel to
//! its sink worker when it runs on this node, through the exchange when it runs on another
//! ([`super::exchange`]); otherwise (and for dead letters) it stays in the partition that
//! read it.

use std::collections::BTreeMap;
use std::sync::mpsc::SyncSender;

use super::plan::Exchange;
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
    /// How each step sends its output on (by step index; `None`: it does not).
    exchanges: Vec<Option<Exchange>>,
    routes: BTreeMap<u32, Route>,
    /// The next partition a spread record goes to.
    next: std::cell::Cell<u32>,
}

/// Records for the steps after exchange steps: (step, records).
pub type Exchanged = Vec<(usize, Vec<Record>)>;

impl Router {
    /// `routes` holds the sink workers this source may send to: every partition of a
    /// pipeline with an exchange step, else only its own.
    pub fn new(
        own: u32,
        parallelism: u32,
        exchanges: Vec<Option<Exchange>>,
        routes: BTreeMap<u32, Route>,
    ) -> Router {
        Router {
            own,
            parallelism,
            exchanges,
            routes,
            next: std::cell::Cell::new(own),
        }
    }

    /// The partition a record put out by exchange step `step` goes to.
    pub fn target(&self, step: usize, record: &Record) -> u32 {
        let t = match (self.exchanges.get(step).copied().flatten(), &record.key) {
            (Some(Exchange::ByKey), Some(key)) => partition_of(key, self.parallelism),
            (Some(Exchange::Spread), _) => {
                let n = self.next.get();
                self.next.set((n + 1) % self.parallelism.max(1));
                n
            }
            _ => self.own,
        };
        if self.routes.contains_key(&t) {
            t
        } else {
            self.own
        }
    }

    /// Groups what exchange steps put out by the partition each record goes to.
    pub fn split(&self, exchanged: Exchanged) -> BTreeMap<u32, Exchanged> {
        let mut out: BTreeMap<u32, Exchanged> = BTreeMap::new();
        for (step, records) in exchanged {
            let mut by_target: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
            for record in records {
                by_target
                    .entry(self.target(step, &record))
                    .or_default()
                    .push(record);
            }
            for (target, records) in by_target {
                out.entry(target).or_default().push((step, records));
            }
        }
        out
    }

    /// Sends one batch's output on: what stays in this partition (records for the sinks,
    /// dead letters) to its own sink worker, what exchange steps put out to the partitions
    /// it goes to. Blocks while a way is full (this is the backpressure). Errs when a way
    /// closed.
    pub fn send(
        &self,
        per_sink: Vec<Vec<Record>>,
        dead: Vec<Record>,
        exchanged: Exchanged,
    ) -> Result<(), String> {
        let closed = |target: u32| format!("the way to partition {target} closed");
        if per_sink.iter().any(|r| !r.is_empty()) || !dead.is_empty() {
            if let Some(route) = self.routes.get(&self.own) {
                route
                    .send(self.own, SinkMsg::Data { per_sink, dead })
                    .map_err(|_| closed(self.own))?;
            }
        }
        for (target, batches) in self.split(exchanged) {
            if let Some(route) = self.routes.get(&target) {
                route
                    .send(target, SinkMsg::Exchanged(batches))
                    .map_err(|_| closed(target))?;
            }
        }
        Ok(())
    }

    /// Sends this source partition's watermark to every sink worker it feeds.
    pub fn watermark(&self, watermark: Option<i64>) -> Result<(), String> {
        for (target, route) in &self.routes {
            route
                .send(
                    *target,
                    SinkMsg::Watermark {
                        from: self.own,
                        watermark,
                    },
                )
                .map_err(|_| format!("the way to partition {target} closed"))?;
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

    fn router(own: u32, exchange: Option<Exchange>, local: &[u32]) -> Router {
        let routes = local
            .iter()
            .map(|p| (*p, Route::Local(std::sync::mpsc::sync_channel(1).0)))
            .collect();
        Router::new(own, 4, vec![None, exchange], routes)
    }

    #[test]
    fn keyed_records_go_to_the_partition_owning_their_key() {
        let r = router(1, Some(Exchange::ByKey), &[0, 1, 2, 3]);
        let keys = ["a", "b", "c", "d", "e", "f", "g"];
        let records = keys.iter().map(|k| record(Some(k))).collect::<Vec<_>>();
        let split = r.split(vec![(1, records)]);
        let mut seen = 0;
        for (target, batches) in &split {
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].0, 1, "the step they came from");
            for rec in &batches[0].1 {
                let key = rec.key.as_deref().unwrap_or_default();
                assert_eq!(partition_of(key, 4), *target);
                seen += 1;
            }
        }
        assert_eq!(seen, keys.len());
        assert!(split.len() > 1, "seven keys over four partitions");
    }

    #[test]
    fn spread_records_go_round_robin_and_other_steps_stay() {
        let r = router(2, Some(Exchange::Spread), &[0, 1, 2, 3]);
        let split = r.split(vec![(1, (0..8).map(|_| record(None)).collect())]);
        let counts: Vec<usize> = split.values().map(|b| b[0].1.len()).collect();
        assert_eq!(counts, [2, 2, 2, 2]);
        // A step that is no exchange, or a partition not reachable: it stays.
        assert_eq!(r.target(0, &record(Some("a"))), 2);
        let r = router(2, Some(Exchange::ByKey), &[2]);
        assert!((0..50).all(|i| r.target(1, &record(Some(&i.to_string()))) == 2));
    }
}
