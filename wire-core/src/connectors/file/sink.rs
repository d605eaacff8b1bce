//! Writing JSON lines or CSV into part files, committed at checkpoints so that file output is
//! exactly-once across crashes (a two-phase commit with the checkpoint in Raft):
//!
//! 1. records of the current epoch are appended to `.part-{p}-n{node}.inprogress`; a file
//!    that reaches the rotation size or age is sealed as `.part-{p}-n{node}-e{e}-{seq}.pending`
//!    and a new one begun (`node` is the writer's node: after a failover, a node that was
//!    only paused and the partition's new owner never touch each other's files, even in a
//!    directory they share);
//! 2. before the checkpoint of epoch `e` is proposed, [`PartWriter::pre_commit`] fsyncs the
//!    in-progress file and seals it the same way;
//! 3. once the checkpoint is committed, [`PartWriter::commit`] renames its pending files up
//!    to `e` to `part-{p}-{incarnation}-{e}-{seq}.{jsonl,csv}`, the visible output (one node
//!    commits an epoch of a partition: the catalog refuses the checkpoints of any other).
//!
//! On open (after a crash, a restart or a failover) the writer is given which node committed
//! which epochs (the checkpoint's tenures): a pending file is published when its node
//! committed its epoch (the checkpoint made it, the publish did not), every other pending
//! and in-progress file of the partition is deleted (the source replays their records from
//! the checkpoint; a fenced node's files never commit). This holds whether the directory
//! is shared by the nodes or each node's own.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jaq_json::Val;

use super::config::{FileFormat, FileSinkConfig, DEFAULT_ROTATE_BYTES};
use crate::connectors::{Sink, SinkContext};
use crate::pipeline::spec::parse_duration;
use crate::pipeline::transform::Record;

/// How a part file is laid out and when it is rotated.
#[derive(Debug, Clone)]
pub struct PartFormat {
    pub format: FileFormat,
    pub rotate_bytes: u64,
    pub rotate_interval: Option<Duration>,
    /// Distinguishes the output of a pipeline from an earlier one of the same name.
    pub incarnation: u64,
    /// The node writing (names its in-progress and pending files).
    pub writer: u64,
}

impl Default for PartFormat {
    fn default() -> Self {
        PartFormat {
            format: FileFormat::Jsonl,
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            rotate_interval: None,
            incarnation: 0,
            writer: 0,
        }
    }
}

/// The part files of one partition of a file sink.
pub struct PartWriter {
    dir: PathBuf,
    partition: u32,
    part: PartFormat,
    current: Option<BufWriter<File>>,
    opened_at: Instant,
    /// CSV: the columns of the current file (from its first record).
    columns: Option<Vec<String>>,
    /// Bytes written to the in-progress file.
    written: u64,
    /// The epoch being written (one past the last pre-committed).
    epoch: u64,
    /// Files sealed in the current epoch.
    sealed: u32,
}

fn in_progress(dir: &Path, partition: u32, node: u64) -> PathBuf {
    dir.join(format!(".part-{partition}-n{node}.inprogress"))
}

fn pending(dir: &Path, partition: u32, node: u64, epoch: u64, seq: u32) -> PathBuf {
    dir.join(format!(".part-{partition}-n{node}-e{epoch}-{seq}.pending"))
}

/// A file of this partition that is not yet output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unpublished {
    /// (node, epoch, seq).
    Pending(u64, u64, u32),
    InProgress(u64),
}

/// This partition's pending and in-progress files, in order.
fn unpublished(dir: &Path, partition: u32) -> std::io::Result<Vec<Unpublished>> {
    let prefix = format!(".part-{partition}-n");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(node) = rest.strip_suffix(".inprogress") {
            if let Ok(node) = node.parse() {
                found.push(Unpublished::InProgress(node));
            }
            continue;
        }
        let parsed = rest.strip_suffix(".pending").and_then(|rest| {
            let (node, rest) = rest.split_once("-e")?;
            let (epoch, seq) = rest.split_once('-')?;
            Some(Unpublished::Pending(
                node.parse().ok()?,
                epoch.parse().ok()?,
                seq.parse().ok()?,
            ))
        });
        found.extend(parsed);
    }
    found.sort_unstable();
    Ok(found)
}

/// Renames `from` to `to`; a file already gone (published or removed by another writer
/// of the partition, which fenced this one) is not an error.
fn rename_if_there(from: &Path, to: &Path) -> std::io::Result<bool> {
    match fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A value as a CSV field: strings as they are, anything else as JSON; quoted when needed.
fn csv_field(v: Option<&Val>, out: &mut String) {
    let text = match v {
        None | Some(Val::Null) => String::new(),
        Some(Val::TStr(s)) | Some(Val::BStr(s)) => String::from_utf8_lossy(s).into_owned(),
        Some(other) => crate::pipeline::json::to_json(other),
    };
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

fn object_keys(v: &Val) -> Vec<String> {
    match v {
        Val::Obj(map) => map.keys().map(key_text).collect(),
        _ => vec!["value".to_string()],
    }
}

fn key_text(k: &Val) -> String {
    match k {
        Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(s).into_owned(),
        other => other.to_string(),
    }
}

fn field<'a>(v: &'a Val, column: &str) -> Option<&'a Val> {
    match v {
        Val::Obj(map) => map
            .iter()
            .find(|(k, _)| key_text(k) == column)
            .map(|(_, v)| v),
        other if column == "value" => Some(other),
        _ => None,
    }
}

impl PartWriter {
    /// Opens partition `partition` of the sink in `dir` (created if missing), writing JSON
    /// lines, rotating at the default size.
    pub fn open(dir: &Path, partition: u32, committed_epoch: u64) -> std::io::Result<PartWriter> {
        let tenures = [(0, 1, committed_epoch)];
        let tenures: &[(u64, u64, u64)] = if committed_epoch == 0 { &[] } else { &tenures };
        Self::open_with(
            dir,
            partition,
            committed_epoch,
            tenures,
            PartFormat::default(),
        )
    }

    /// Opens partition `partition` of the sink in `dir`, recovering: a pending file is
    /// published when `tenures` say its node committed its epoch; every other unpublished
    /// file of the partition is removed.
    pub fn open_with(
        dir: &Path,
        partition: u32,
        committed_epoch: u64,
        tenures: &[(u64, u64, u64)],
        part: PartFormat,
    ) -> std::io::Result<PartWriter> {
        fs::create_dir_all(dir)?;
        let writer = PartWriter {
            dir: dir.to_path_buf(),
            partition,
            part,
            current: None,
            opened_at: Instant::now(),
            columns: None,
            written: 0,
            epoch: committed_epoch + 1,
            sealed: 0,
        };
        writer.publish_committed(tenures)?;
        for file in unpublished(dir, partition)? {
            match file {
                Unpublished::Pending(node, epoch, seq) => {
                    remove_if_there(&pending(dir, partition, node, epoch, seq))?
                }
                Unpublished::InProgress(node) => {
                    remove_if_there(&in_progress(dir, partition, node))?
                }
            }
        }
        sync_dir(dir)?;
        Ok(writer)
    }

    fn committed(&self, epoch: u64, seq: u32) -> PathBuf {
        let ext = match self.part.format {
            FileFormat::Jsonl => "jsonl",
            FileFormat::Csv => "csv",
        };
        self.dir.join(format!(
            "part-{}-{}-{epoch:010}-{seq:03}.{ext}",
            self.partition, self.part.incarnation
        ))
    }

    /// Appends `records` to the current epoch's in-progress file.
    pub fn write(&mut self, records: &[Record]) -> std::io::Result<()> {
        let mut line: Vec<u8> = Vec::with_capacity(256);
        for record in records {
            let due = self.written >= self.part.rotate_bytes
                || self
                    .part
                    .rotate_interval
                    .is_some_and(|i| self.current.is_some() && self.opened_at.elapsed() >= i);
            if due {
                self.seal()?;
            }
            if self.current.is_none() {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(in_progress(&self.dir, self.partition, self.part.writer))?;
                self.current = Some(BufWriter::with_capacity(256 * 1024, file));
                self.opened_at = Instant::now();
            }
            line.clear();
            match self.part.format {
                FileFormat::Jsonl => record.write_json(&mut line),
                FileFormat::Csv => {
                    if self.columns.is_none() {
                        let columns = object_keys(&record.value);
                        let mut header = String::new();
                        for (i, c) in columns.iter().enumerate() {
                            if i > 0 {
                                header.push(',');
                            }
                            csv_field(Some(&Val::from(c.clone())), &mut header);
                        }
                        header.push('\n');
                        if let Some(out) = &mut self.current {
                            out.write_all(header.as_bytes())?;
                        }
                        self.written += header.len() as u64;
                        self.columns = Some(columns);
                    }
                    if let Some(columns) = &self.columns {
                        let mut row = String::new();
                        for (i, c) in columns.iter().enumerate() {
                            if i > 0 {
                                row.push(',');
                            }
                            csv_field(field(&record.value, c), &mut row);
                        }
                        line.extend_from_slice(row.as_bytes());
                    }
                }
            }
            line.push(b'\n');
            if let Some(out) = &mut self.current {
                out.write_all(&line)?;
            }
            self.written += line.len() as u64;
        }
        Ok(())
    }

    /// Bytes written to the in-progress file.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Seals the in-progress file (fsynced) as a pending file of the current epoch.
    fn seal(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.current.take() {
            out.flush()?;
            out.get_ref().sync_all()?;
            fs::rename(
                in_progress(&self.dir, self.partition, self.part.writer),
                pending(
                    &self.dir,
                    self.partition,
                    self.part.writer,
                    self.epoch,
                    self.sealed,
                ),
            )?;
            self.sealed += 1;
        }
        self.written = 0;
        self.columns = None;
        Ok(())
    }

    /// Makes everything written so far durable as the pending output of `epoch`; call before
    /// proposing that epoch's checkpoint.
    pub fn pre_commit(&mut self, epoch: u64) -> std::io::Result<()> {
        self.epoch = epoch;
        let any = self.current.is_some() || self.sealed > 0;
        self.seal()?;
        if any {
            sync_dir(&self.dir)?;
        }
        self.epoch = epoch + 1;
        self.sealed = 0;
        Ok(())
    }

    /// Publishes the pending output of every epoch up to `epoch`; call once that epoch's
    /// checkpoint is committed.
    pub fn commit(&mut self, epoch: u64) -> std::io::Result<()> {
        self.publish(self.part.writer, epoch)
    }

    /// Publishes the pending files whose node committed their epoch.
    fn publish_committed(&self, tenures: &[(u64, u64, u64)]) -> std::io::Result<()> {
        for &(node, first, last) in tenures {
            self.publish_range(node, first, last)?;
        }
        Ok(())
    }

    /// Publishes `node`'s pending files up to `epoch`.
    fn publish(&self, node: u64, epoch: u64) -> std::io::Result<()> {
        self.publish_range(node, 0, epoch)
    }

    /// Publishes `node`'s pending files of epochs `first..=last`.
    fn publish_range(&self, node: u64, first: u64, last: u64) -> std::io::Result<()> {
        let mut renamed = false;
        for file in unpublished(&self.dir, self.partition)? {
            if let Unpublished::Pending(n, e, seq) = file {
                if n == node && first <= e && e <= last {
                    let from = pending(&self.dir, self.partition, n, e, seq);
                    renamed |= rename_if_there(&from, &self.committed(e, seq))?;
                }
            }
        }
        if renamed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

impl Sink for PartWriter {
    fn takes_raw(&self) -> bool {
        self.part.format == FileFormat::Jsonl
    }

    fn write(&mut self, records: &[Record]) -> crate::connectors::ConnectorResult<()> {
        Ok(PartWriter::write(self, records)
            .map_err(|e| format!("writing {}: {e}", self.dir.display()))?)
    }

    fn pre_commit(&mut self, epoch: u64) -> crate::connectors::ConnectorResult<()> {
        Ok(PartWriter::pre_commit(self, epoch)
            .map_err(|e| format!("sealing part files in {}: {e}", self.dir.display()))?)
    }

    fn commit(&mut self, epoch: u64) -> crate::connectors::ConnectorResult<()> {
        Ok(PartWriter::commit(self, epoch)
            .map_err(|e| format!("publishing part files in {}: {e}", self.dir.display()))?)
    }
}

/// Opens a file sink partition (the registry's entry point).
pub fn open(
    config: &serde_json::Value,
    ctx: &SinkContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn Sink>> {
    let config: FileSinkConfig = crate::connectors::typed(config)?;
    let part = PartFormat {
        format: config.format,
        rotate_bytes: config.rotate_bytes.unwrap_or(DEFAULT_ROTATE_BYTES),
        rotate_interval: config
            .rotate_interval
            .as_deref()
            .map(parse_duration)
            .transpose()?,
        incarnation: ctx.incarnation,
        writer: ctx.node,
    };
    let writer = PartWriter::open_with(
        Path::new(&config.path),
        ctx.partition,
        ctx.committed_epoch,
        ctx.tenures,
        part,
    )
    .map_err(|e| format!("opening {}: {e}", config.path))?;
    Ok(Box::new(writer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::jq::parse_json;
    use crate::pipeline::transform::Position;

    fn records(values: &[&str]) -> Vec<Record> {
        values
            .iter()
            .map(|v| Record::new(parse_json(v.as_bytes()).unwrap(), Position::default()))
            .collect()
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
            .iter()
            .flat_map(|n| {
                fs::read_to_string(dir.join(n))
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn output_appears_only_when_its_checkpoint_commits() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut w = PartWriter::open(&out, 0, 0).unwrap();
        w.write(&records(&["1", "2"])).unwrap();
        assert!(
            visible(&out).is_empty(),
            "nothing is visible before a checkpoint"
        );
        w.pre_commit(1).unwrap();
        assert!(
            visible(&out).is_empty(),
            "pre-committed output waits for the checkpoint"
        );
        w.commit(1).unwrap();
        assert_eq!(visible(&out), ["1", "2"]);
    }

    fn writer(dir: &Path, node: u64, tenures: &[(u64, u64, u64)]) -> PartWriter {
        let part = PartFormat {
            writer: node,
            ..PartFormat::default()
        };
        let epoch = tenures.last().map_or(0, |t| t.2);
        PartWriter::open_with(dir, 0, epoch, tenures, part).unwrap()
    }

    #[test]
    fn a_node_s_own_directory_keeps_its_committed_but_unpublished_epoch_across_a_failover() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out-of-node-1");
        // Node 1 commits epochs 1 and 2 but dies before publishing 2; its stale job had
        // also sealed an epoch 3 that was never committed.
        let mut a = writer(&out, 1, &[]);
        a.write(&records(&["1"])).unwrap();
        a.pre_commit(1).unwrap();
        a.commit(1).unwrap();
        a.write(&records(&["2"])).unwrap();
        a.pre_commit(2).unwrap();
        a.write(&records(&["30"])).unwrap();
        a.pre_commit(3).unwrap();
        drop(a);
        // Node 2 ran the partition meanwhile (epochs 3 and 4, in its own directory); the
        // partition comes back to node 1.
        let _a = writer(&out, 1, &[(1, 1, 2), (2, 3, 4)]);
        assert_eq!(
            visible(&out),
            ["1", "2"],
            "epoch 2 published, the stale 3 dropped"
        );
    }

    #[test]
    fn a_fenced_writer_in_a_shared_directory_never_adds_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // Node 1 owns the partition: epoch 1 published, epoch 2 committed but not yet
        // published when it is paused, more in progress.
        let mut a = writer(&out, 1, &[]);
        a.write(&records(&["1"])).unwrap();
        a.pre_commit(1).unwrap();
        a.commit(1).unwrap();
        a.write(&records(&["2"])).unwrap();
        a.pre_commit(2).unwrap();
        a.write(&records(&["31"])).unwrap();

        // Node 2 takes over from the checkpoint (epoch 2, by node 1).
        let mut b = writer(&out, 2, &[(1, 1, 2)]);
        assert_eq!(visible(&out), ["1", "2"]);
        b.write(&records(&["3"])).unwrap();
        b.pre_commit(3).unwrap();

        // Node 1 wakes: its in-progress file was removed, so it starts another and seals it
        // as its epoch 3 — whose checkpoint the catalog refuses, so it is never committed.
        a.write(&records(&["41"])).unwrap();
        let _ = a.pre_commit(3);
        b.commit(3).unwrap();
        assert_eq!(visible(&out), ["1", "2", "3"], "only the owner's epoch 3");

        // A third owner cleans up whatever node 1 left.
        let _c = writer(&out, 3, &[(1, 1, 2), (2, 3, 3)]);
        assert_eq!(visible(&out), ["1", "2", "3"]);
        let leftovers: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn recovery_keeps_exactly_the_checkpointed_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut w = PartWriter::open(&out, 3, 0).unwrap();
        w.write(&records(&["1"])).unwrap();
        w.pre_commit(1).unwrap();
        w.commit(1).unwrap();
        // Epoch 2 is pre-committed and its checkpoint committed, but the process dies before
        // publishing it; epoch 3 is pre-committed with no checkpoint; more is in progress.
        w.write(&records(&["2"])).unwrap();
        w.pre_commit(2).unwrap();
        w.write(&records(&["3"])).unwrap();
        w.pre_commit(3).unwrap();
        w.write(&records(&["4"])).unwrap();
        drop(w);

        // Restart knowing epoch 2 is the last committed checkpoint: "2" is published, "3" and
        // "4" are dropped (the source replays them from the checkpoint).
        let mut w = PartWriter::open(&out, 3, 2).unwrap();
        assert_eq!(visible(&out), ["1", "2"]);
        let leftovers: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // The replay writes them again, once.
        w.write(&records(&["3", "4"])).unwrap();
        w.pre_commit(3).unwrap();
        w.commit(3).unwrap();
        assert_eq!(visible(&out), ["1", "2", "3", "4"]);
    }
}
