//! Writing JSON lines into part files, committed at checkpoints so that file output is
//! exactly-once across crashes (a two-phase commit with the checkpoint in Raft):
//!
//! 1. records of the current epoch are appended to `.part-{p}.inprogress`;
//! 2. before the checkpoint of epoch `e` is proposed, [`PartWriter::pre_commit`] fsyncs that
//!    file and renames it to `.part-{p}-e{e}.pending`;
//! 3. once the checkpoint is committed, [`PartWriter::commit`] renames pending files up to
//!    `e` to `part-{p}-{e}.jsonl`, the visible output.
//!
//! After a crash, [`PartWriter::open`] is given the last committed epoch: pending files up to
//! it are committed (their checkpoint made it), later ones and in-progress files are deleted
//! (the source replays their records from the checkpoint).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::pipeline::transform::Record;

/// The part files of one partition of a file sink.
pub struct PartWriter {
    dir: PathBuf,
    partition: u32,
    current: Option<BufWriter<File>>,
    /// Bytes written to the in-progress file.
    written: u64,
}

fn in_progress(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!(".part-{partition}.inprogress"))
}

fn pending(dir: &Path, partition: u32, epoch: u64) -> PathBuf {
    dir.join(format!(".part-{partition}-e{epoch}.pending"))
}

fn committed(dir: &Path, partition: u32, epoch: u64) -> PathBuf {
    dir.join(format!("part-{partition}-{epoch:010}.jsonl"))
}

/// The epochs of this partition's pending files, in order.
fn pending_epochs(dir: &Path, partition: u32) -> std::io::Result<Vec<u64>> {
    let prefix = format!(".part-{partition}-e");
    let mut epochs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(epoch) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".pending"))
            .and_then(|e| e.parse::<u64>().ok())
        {
            epochs.push(epoch);
        }
    }
    epochs.sort_unstable();
    Ok(epochs)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl PartWriter {
    /// Opens partition `partition` of the sink in `dir` (created if missing), recovering from
    /// a crash: pending files up to `committed_epoch` are committed, the rest is removed.
    pub fn open(dir: &Path, partition: u32, committed_epoch: u64) -> std::io::Result<PartWriter> {
        fs::create_dir_all(dir)?;
        let mut writer = PartWriter {
            dir: dir.to_path_buf(),
            partition,
            current: None,
            written: 0,
        };
        writer.commit(committed_epoch)?;
        for epoch in pending_epochs(dir, partition)? {
            fs::remove_file(pending(dir, partition, epoch))?;
        }
        match fs::remove_file(in_progress(dir, partition)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        sync_dir(dir)?;
        Ok(writer)
    }

    /// Appends `records` as JSON lines to the current epoch's in-progress file.
    pub fn write(&mut self, records: &[Record]) -> std::io::Result<()> {
        if self.current.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(in_progress(&self.dir, self.partition))?;
            self.current = Some(BufWriter::with_capacity(256 * 1024, file));
        }
        if let Some(out) = &mut self.current {
            for record in records {
                let line = record.value.to_string();
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                self.written += line.len() as u64 + 1;
            }
        }
        Ok(())
    }

    /// Bytes written since the last pre-commit.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes everything written so far durable as the pending output of `epoch`; call before
    /// proposing that epoch's checkpoint.
    pub fn pre_commit(&mut self, epoch: u64) -> std::io::Result<()> {
        if let Some(mut out) = self.current.take() {
            out.flush()?;
            out.get_ref().sync_all()?;
            fs::rename(
                in_progress(&self.dir, self.partition),
                pending(&self.dir, self.partition, epoch),
            )?;
            sync_dir(&self.dir)?;
        }
        self.written = 0;
        Ok(())
    }

    /// Publishes the pending output of every epoch up to `epoch`; call once that epoch's
    /// checkpoint is committed.
    pub fn commit(&mut self, epoch: u64) -> std::io::Result<()> {
        let mut renamed = false;
        for e in pending_epochs(&self.dir, self.partition)? {
            if e <= epoch {
                fs::rename(
                    pending(&self.dir, self.partition, e),
                    committed(&self.dir, self.partition, e),
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
