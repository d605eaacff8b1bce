//! Writing JSON lines or CSV into part files, committed at checkpoints so that file output is
//! exactly-once across crashes (a two-phase commit with the checkpoint in Raft):
//!
//! 1. records of the current epoch are appended to `.part-{p}.inprogress`; a file that
//!    reaches the rotation size or age is sealed as `.part-{p}-e{e}-{seq}.pending` and a new
//!    one begun;
//! 2. before the checkpoint of epoch `e` is proposed, [`PartWriter::pre_commit`] fsyncs the
//!    in-progress file and seals it the same way;
//! 3. once the checkpoint is committed, [`PartWriter::commit`] renames pending files up to
//!    `e` to `part-{p}-{incarnation}-{e}-{seq}.{jsonl,csv}`, the visible output.
//!
//! After a crash, [`PartWriter::open`] is given the last committed epoch: pending files up to
//! it are committed (their checkpoint made it), later ones and in-progress files are deleted
//! (the source replays their records from the checkpoint).

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
}

impl Default for PartFormat {
    fn default() -> Self {
        PartFormat {
            format: FileFormat::Jsonl,
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            rotate_interval: None,
            incarnation: 0,
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

fn in_progress(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!(".part-{partition}.inprogress"))
}

fn pending(dir: &Path, partition: u32, epoch: u64, seq: u32) -> PathBuf {
    dir.join(format!(".part-{partition}-e{epoch}-{seq}.pending"))
}

/// This partition's pending files as (epoch, seq), in order.
fn pending_files(dir: &Path, partition: u32) -> std::io::Result<Vec<(u64, u32)>> {
    let prefix = format!(".part-{partition}-e");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let parsed = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".pending"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(e, q)| Some((e.parse::<u64>().ok()?, q.parse::<u32>().ok()?)));
        if let Some(p) = parsed {
            found.push(p);
        }
    }
    found.sort_unstable();
    Ok(found)
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
        Self::open_with(dir, partition, committed_epoch, PartFormat::default())
    }

    /// Opens partition `partition` of the sink in `dir`, recovering from a crash: pending
    /// files up to `committed_epoch` are committed, the rest is removed.
    pub fn open_with(
        dir: &Path,
        partition: u32,
        committed_epoch: u64,
        part: PartFormat,
    ) -> std::io::Result<PartWriter> {
        fs::create_dir_all(dir)?;
        let mut writer = PartWriter {
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
        writer.commit(committed_epoch)?;
        for (epoch, seq) in pending_files(dir, partition)? {
            fs::remove_file(pending(dir, partition, epoch, seq))?;
        }
        match fs::remove_file(in_progress(dir, partition)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
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
                    .open(in_progress(&self.dir, self.partition))?;
                self.current = Some(BufWriter::with_capacity(256 * 1024, file));
                self.opened_at = Instant::now();
            }
            line.clear();
            match self.part.format {
                FileFormat::Jsonl => crate::pipeline::json::write_json(&record.value, &mut line),
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
                in_progress(&self.dir, self.partition),
                pending(&self.dir, self.partition, self.epoch, self.sealed),
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
        let mut renamed = false;
        for (e, seq) in pending_files(&self.dir, self.partition)? {
            if e <= epoch {
                fs::rename(
                    pending(&self.dir, self.partition, e, seq),
                    self.committed(e, seq),
                )?;
                renamed = true;
            }
        }
        if renamed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

impl Sink for PartWriter {
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
    };
    let writer = PartWriter::open_with(
        Path::new(&config.path),
        ctx.partition,
        ctx.committed_epoch,
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
