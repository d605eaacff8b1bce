//! Reading ahead: a source run on a thread of its own, so that reading and parsing the next
//! batches overlaps the partition's transforms instead of taking turns with them. The
//! partition sees an ordinary [`Source`]: batches in order, and positions that cover exactly
//! the batches it was handed (what was read ahead but not handed out is read again after a
//! restart, never skipped).
//!
//! The runtime uses it for sources that parse on their own thread (files) when the node has
//! a core to spare for it, see [`worth_it`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{ReadState, Source, SourceBatch};
use crate::pipeline::checkpoint::Offset;

/// Batches read ahead at most.
const AHEAD: usize = 2;
/// How long `read` waits for the reader before telling the partition to look again.
const WAIT: Duration = Duration::from_millis(5);
/// How long dropping waits for the reader to end its current read.
const JOIN: Duration = Duration::from_secs(2);

/// Whether a partition's source gets a reader thread: when this machine has more cores than
/// the partitions that `local` names (each of which keeps a core busy on its own).
pub fn worth_it(local: usize) -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > local)
}

/// One batch as the reader thread read it, with the source's state just after it.
struct Ahead {
    batch: crate::connectors::ConnectorResult<SourceBatch>,
    positions: BTreeMap<String, Offset>,
    lag: Option<u64>,
}

/// A [`Source`] whose reads happen on a reader thread.
pub struct ReadAhead {
    rx: Option<Receiver<Ahead>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    positions: BTreeMap<String, Offset>,
    lag: Option<u64>,
    ended: bool,
}

impl ReadAhead {
    /// Starts reading `source` in batches of `max` on a thread named `name`.
    pub fn start(mut source: Box<dyn Source>, max: usize, name: String) -> Result<Self, String> {
        let positions = source.positions();
        let lag = source.lag();
        let (tx, rx) = sync_channel::<Ahead>(AHEAD);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let reader = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut lag = lag;
                let mut lag_at = Instant::now();
                while !stopping.load(Ordering::Relaxed) {
                    let batch = source.read(max);
                    let last = match &batch {
                        Err(_) => true,
                        Ok(b) => b.state == ReadState::Finished,
                    };
                    let empty = batch
                        .as_ref()
                        .is_ok_and(|b| b.records.is_empty() && b.bad.is_empty());
                    if empty && !last {
                        // Nothing new (a tailed file): look again a little later.
                        std::thread::sleep(WAIT);
                        continue;
                    }
                    if last || lag_at.elapsed() >= Duration::from_secs(1) {
                        lag = source.lag();
                        lag_at = Instant::now();
                    }
                    let ahead = Ahead {
                        batch,
                        positions: source.positions(),
                        lag,
                    };
                    if tx.send(ahead).is_err() || last {
                        break;
                    }
                }
            })
            .map_err(|e| format!("starting a reader thread: {e}"))?;
        Ok(ReadAhead {
            rx: Some(rx),
            stop,
            reader: Some(reader),
            positions,
            lag,
            ended: false,
        })
    }
}

impl Source for ReadAhead {
    /// The next batch read ahead (of the size given to [`ReadAhead::start`]).
    fn read(&mut self, _max: usize) -> crate::connectors::ConnectorResult<SourceBatch> {
        let nothing = |state| SourceBatch {
            records: Vec::new(),
            bad: Vec::new(),
            state,
        };
        let Some(rx) = self.rx.as_ref().filter(|_| !self.ended) else {
            return Ok(nothing(ReadState::Finished));
        };
        match rx.recv_timeout(WAIT) {
            Ok(ahead) => {
                self.positions = ahead.positions;
                self.lag = ahead.lag;
                // After an error the reader has ended too: later reads say so as errors.
                self.ended = ahead
                    .batch
                    .as_ref()
                    .is_ok_and(|b| b.state == ReadState::Finished);
                Ok(ahead.batch?)
            }
            // The reader is still reading (or waiting for input): ask again soon.
            Err(RecvTimeoutError::Timeout) => Ok(nothing(ReadState::More)),
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Err("the reader thread ended".to_string().into())
            }
        }
    }

    fn positions(&self) -> BTreeMap<String, Offset> {
        self.positions.clone()
    }

    fn lag(&self) -> Option<u64> {
        self.lag
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblocks a reader waiting to hand over a batch.
        self.rx = None;
        let Some(reader) = self.reader.take() else {
            return;
        };
        // Wait for the current read to end, so the source is closed when the partition is;
        // a read that blocks longer is left to end on its own.
        let deadline = Instant::now() + JOIN;
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::jq::parse_json;
    use crate::pipeline::transform::{Position, Record};

    /// Counts to `n` in batches, failing at `fail_at` if set; says when it is dropped.
    struct Counter {
        next: u64,
        n: u64,
        fail_at: Option<u64>,
        dropped: Arc<AtomicBool>,
    }

    impl Drop for Counter {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    fn counter(n: u64, fail_at: Option<u64>) -> (Counter, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let c = Counter {
            next: 0,
            n,
            fail_at,
            dropped: dropped.clone(),
        };
        (c, dropped)
    }

    impl Source for Counter {
        fn read(&mut self, max: usize) -> crate::connectors::ConnectorResult<SourceBatch> {
            if Some(self.next) == self.fail_at {
                return Err("broken".into());
            }
            let mut records = Vec::new();
            while self.next < self.n && records.len() < max {
                let value = parse_json(self.next.to_string().as_bytes())?;
                self.next += 1;
                records.push(Record::new(value, Position::default()));
            }
            let state = if self.next == self.n {
                ReadState::Finished
            } else {
                ReadState::More
            };
            Ok(SourceBatch {
                records,
                bad: Vec::new(),
                state,
            })
        }

        fn positions(&self) -> BTreeMap<String, Offset> {
            BTreeMap::from([("s".to_string(), Offset::Num(self.next))])
        }
    }

    fn drain(source: &mut ReadAhead) -> (Vec<String>, Result<(), String>) {
        let mut seen = Vec::new();
        loop {
            match source.read(10) {
                Ok(batch) => {
                    seen.extend(batch.records.iter().map(|r| r.value.to_string()));
                    // Positions cover exactly what was handed out.
                    assert_eq!(
                        source.positions()["s"],
                        Offset::Num(seen.len() as u64),
                        "after {} records",
                        seen.len()
                    );
                    if batch.state == ReadState::Finished {
                        return (seen, Ok(()));
                    }
                }
                Err(e) => return (seen, Err(e.message)),
            }
        }
    }

    #[test]
    fn batches_arrive_in_order_with_their_positions() {
        let (counter, _) = counter(95, None);
        let mut source = ReadAhead::start(Box::new(counter), 10, "test-reader".into()).unwrap();
        let (seen, end) = drain(&mut source);
        assert_eq!(end, Ok(()));
        let expected: Vec<String> = (0..95).map(|i| i.to_string()).collect();
        assert_eq!(seen, expected);
        // After the end, reads say so again.
        assert_eq!(source.read(10).unwrap().state, ReadState::Finished);
    }

    #[test]
    fn a_read_error_reaches_the_partition_after_the_batches_before_it() {
        let (counter, _) = counter(100, Some(30));
        let mut source = ReadAhead::start(Box::new(counter), 10, "test-reader".into()).unwrap();
        let (seen, end) = drain(&mut source);
        assert_eq!(seen.len(), 30);
        assert_eq!(end, Err("broken".to_string()));
        // It does not turn into an end of input afterwards.
        assert!(source.read(10).is_err());
    }

    #[test]
    fn dropping_it_stops_the_reader() {
        let (counter, dropped) = counter(u64::MAX, None);
        let mut source = ReadAhead::start(Box::new(counter), 10, "test-reader".into()).unwrap();
        assert!(!source.read(10).unwrap().records.is_empty());
        drop(source);
        // The reader ended and dropped the source before the drop returned.
        assert!(dropped.load(Ordering::SeqCst), "the reader did not stop");
    }
}
