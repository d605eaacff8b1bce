//! The Kafka sink: an idempotent `BaseProducer`; a checkpoint flushes it and fails if any
//! message was not acknowledged, so a checkpoint only covers what the broker has.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use super::config::KafkaSinkConfig;
use crate::connectors::{Sink, SinkContext};
use crate::pipeline::transform::Record;

/// Longest a checkpoint waits for the broker to acknowledge what was written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Remembers the first failed delivery.
#[derive(Default)]
pub struct Deliveries {
    failed: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

pub struct KafkaSink {
    producer: BaseProducer<Deliveries>,
    topic: String,
    failed: Arc<Mutex<Option<String>>>,
    buf: Vec<u8>,
}

/// Opens a Kafka sink partition.
pub fn open(
    config: &serde_json::Value,
    _ctx: &SinkContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn Sink>> {
    let c: KafkaSinkConfig = crate::connectors::typed(config)?;
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &c.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "compression.type",
            c.compression.as_deref().unwrap_or("lz4"),
        )
        .set("linger.ms", c.linger_ms.unwrap_or(5).to_string());
    if let Some(b) = c.batch_size {
        cc.set("batch.size", b.to_string());
    }
    for (k, v) in &c.properties {
        cc.set(k, v);
    }
    let deliveries = Deliveries::default();
    let failed = deliveries.failed.clone();
    let producer: BaseProducer<Deliveries> = cc
        .create_with_context(deliveries)
        .map_err(|e| format!("creating a Kafka producer: {e}"))?;
    // A missing topic is said at once (and retried), not found at the first send.
    let metadata = producer
        .client()
        .fetch_metadata(Some(&c.topic), Duration::from_secs(10))
        .map_err(|e| format!("reading the metadata of topic '{}': {e}", c.topic))?;
    if metadata
        .topics()
        .iter()
        .any(|t| t.error().is_some() || t.partitions().is_empty())
    {
        return Err(format!("topic '{}' does not exist", c.topic).into());
    }
    Ok(Box::new(KafkaSink {
        producer,
        topic: c.topic,
        failed,
        buf: Vec::new(),
    }))
}

impl KafkaSink {
    fn check(&self) -> Result<(), String> {
        match self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(format!(
                "kafka: a message to '{}' was not delivered: {e}",
                self.topic
            )),
            None => Ok(()),
        }
    }
}

impl Sink for KafkaSink {
    /// A message is the record's JSON text: text kept from the source goes out as it is.
    fn takes_raw(&self) -> bool {
        true
    }

    fn write(&mut self, records: &[Record]) -> crate::connectors::ConnectorResult<()> {
        for r in records {
            self.buf.clear();
            match (&r.raw, &r.value) {
                (None, jaq_json::Val::BStr(b)) => self.buf.extend_from_slice(b),
                _ => r.write_json(&mut self.buf),
            }
            let headers = (!r.headers.is_empty()).then(|| {
                r.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    })
                })
            });
            loop {
                let mut message = BaseRecord::to(&self.topic).payload(self.buf.as_slice());
                if let Some(k) = &r.key {
                    message = message.key(k.as_slice());
                }
                if let Some(t) = r.event_time {
                    message = message.timestamp(t);
                }
                if let Some(h) = &headers {
                    message = message.headers(h.clone());
                }
                match self.producer.send(message) {
                    Ok(()) => break,
                    // The local queue is full (the broker is slow or away): wait, which
                    // slows the pipeline down rather than dropping anything.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        self.producer.poll(Duration::from_millis(100));
                    }
                    Err((e, _)) => {
                        return Err(format!("kafka: producing to '{}': {e}", self.topic).into())
                    }
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(self.check()?)
    }

    fn pre_commit(&mut self, _epoch: u64) -> crate::connectors::ConnectorResult<()> {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| {
            format!(
                "kafka: the broker did not acknowledge everything written to '{}': {e}",
                self.topic
            )
        })?;
        Ok(self.check()?)
    }
}
