//! Reading JSON lines or CSV from files in batches, resumable at a byte offset. A line that
//! cannot be read as a record is returned as bad input (its raw bytes and position) rather
//! than dropped. [`FileSource`] spreads the files a path or glob matches over partitions.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use jaq_json::Val;

use super::config::{FileFormat, FileSourceConfig};
use crate::connectors::{
    numeric_positions, BadInput, ReadState, Source, SourceBatch, SourceContext,
};
use crate::pipeline::checkpoint::Offset;
use crate::pipeline::jq::parse_json;
use crate::pipeline::transform::{Position, Record};

/// What one read of a file returned.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    pub bad: Vec<BadInput>,
    /// Whether the end of the file was reached.
    pub at_end: bool,
}

/// Reads one file of JSON lines or CSV. Each record's position offset is the byte offset
/// just after its line: resuming from a record's offset reads the records after it.
pub struct LineReader {
    reader: BufReader<File>,
    source: std::sync::Arc<str>,
    split: std::sync::Arc<str>,
    offset: u64,
    line: Vec<u8>,
    /// CSV: the header's column names (read from the start of the file, wherever we resume).
    columns: Option<Vec<String>>,
}

impl LineReader {
    /// Opens a JSON-lines `path` for the source step `source`, positioned at byte `offset`.
    pub fn open(source: &str, path: &Path, offset: u64) -> std::io::Result<LineReader> {
        Self::open_as(source, path, offset, FileFormat::Jsonl)
    }

    /// Opens `path` in `format` at byte `offset` (for CSV, 0 means just after the header).
    pub fn open_as(
        source: &str,
        path: &Path,
        offset: u64,
        format: FileFormat,
    ) -> std::io::Result<LineReader> {
        let mut file = File::open(path)?;
        let mut columns = None;
        let mut offset = offset;
        if format == FileFormat::Csv {
            let mut header = Vec::new();
            let n = BufReader::new(&mut file).read_until(b'\n', &mut header)?;
            let text = String::from_utf8_lossy(trim_newline(&header)).into_owned();
            columns = Some(match parse_csv_line(&text) {
                Some(c) => c,
                None => text.split(',').map(str::to_string).collect(),
            });
            offset = offset.max(n as u64);
        }
        file.seek(SeekFrom::Start(offset))?;
        Ok(LineReader {
            reader: BufReader::with_capacity(256 * 1024, file),
            source: source.into(),
            split: path.display().to_string().into(),
            offset,
            line: Vec::new(),
            columns,
        })
    }

    /// The offset the next read starts at.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads up to `max` lines. Empty lines are skipped; a last line without a newline counts
    /// as a line (when tailing a growing file, a partial last line is read once complete).
    pub fn read_batch(&mut self, max: usize) -> std::io::Result<Batch> {
        let mut batch = Batch::default();
        let mut lines = 0;
        while lines < max {
            self.line.clear();
            let mut n = self.reader.read_until(b'\n', &mut self.line)?;
            if n == 0 {
                batch.at_end = true;
                break;
            }
            // A CSV row may hold quoted newlines: read on until its quotes balance.
            if self.columns.is_some() {
                while self.line.iter().filter(|b| **b == b'"').count() % 2 == 1 {
                    let more = self.reader.read_until(b'\n', &mut self.line)?;
                    if more == 0 {
                        break;
                    }
                    n += more;
                }
            }
            self.offset += n as u64;
            let text = trim_newline(&self.line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let position = Position {
                source: self.source.clone(),
                split: self.split.clone(),
                offset: Offset::Num(self.offset),
            };
            let parsed = match &self.columns {
                None => parse_json(text),
                Some(columns) => csv_record(columns, text),
            };
            match parsed {
                Ok(value) => batch.records.push(Record::new(value, position)),
                Err(reason) => batch.bad.push(BadInput {
                    raw: text.to_vec(),
                    position,
                    reason,
                }),
            }
        }
        Ok(batch)
    }
}

fn trim_newline(mut text: &[u8]) -> &[u8] {
    while let Some((last, rest)) = text.split_last() {
        if *last == b'\n' || *last == b'\r' {
            text = rest;
        } else {
            break;
        }
    }
    text
}

/// Splits one CSV row (RFC 4180 quoting: `"a,b"`, `""` for a quote); `None` if a quote is
/// left open or text follows a closing quote.
pub fn parse_csv_line(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                other => field.push(other),
            }
        } else {
            match c {
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                _ if was_quoted => return None,
                other => field.push(other),
            }
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

/// A CSV row as a JSON object keyed by the header; every value is a string.
fn csv_record(columns: &[String], text: &[u8]) -> Result<Val, String> {
    let text = std::str::from_utf8(text).map_err(|e| format!("invalid CSV: not UTF-8 ({e})"))?;
    let fields =
        parse_csv_line(text).ok_or_else(|| "invalid CSV: unbalanced quotes".to_string())?;
    if fields.len() != columns.len() {
        return Err(format!(
            "invalid CSV: {} fields where the header has {}",
            fields.len(),
            columns.len()
        ));
    }
    let object: jaq_json::Map = columns
        .iter()
        .cloned()
        .map(Val::from)
        .zip(fields.into_iter().map(Val::from))
        .collect();
    Ok(Val::obj(object))
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters and `?` one.
fn wildcard(pattern: &[char], name: &[char]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..]))
        }
        (Some('?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// The files `path` names: itself, or those a `*`/`?` pattern in its last component matches
/// (sorted; hidden files only when the pattern starts with a dot).
pub fn matching_files(path: &str) -> std::io::Result<Vec<PathBuf>> {
    let p = Path::new(path);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(if p.is_file() {
            vec![p.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pattern: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') && !name.starts_with('.') {
            continue;
        }
        let chars: Vec<char> = file_name.chars().collect();
        if wildcard(&pattern, &chars) && entry.file_type()?.is_file() {
            out.push(dir.join(file_name));
        }
    }
    out.sort();
    Ok(out)
}

/// A partition of a file source: the matched files whose path hashes to it, read one after
/// the other from their checkpointed offsets.
pub struct FileSource {
    config: FileSourceConfig,
    step: String,
    partition: u32,
    partitions: u32,
    /// Split (path) -> offset reached.
    offsets: BTreeMap<String, u64>,
    /// Splits whose end was reached (rechecked when tailing).
    done: Vec<String>,
    current: Option<LineReader>,
    last_scan: Option<std::time::Instant>,
    /// Without `tail`: this partition's files, dealt round-robin from the sorted matches
    /// when the partition starts (even spread). With `tail` files come and go, so each is
    /// placed by a hash of its path instead (stable as others appear).
    dealt: Option<Vec<String>>,
}

impl FileSource {
    pub fn open(config: FileSourceConfig, ctx: &SourceContext<'_>) -> FileSource {
        FileSource {
            config,
            step: ctx.step.to_string(),
            partition: ctx.partition,
            partitions: ctx.partitions.max(1),
            offsets: ctx.numeric_resume(),
            done: Vec::new(),
            current: None,
            last_scan: None,
            dealt: None,
        }
    }

    fn mine(&self, path: &Path) -> bool {
        let key = path.display().to_string();
        match &self.dealt {
            Some(files) => files.contains(&key),
            None => {
                crate::hash::stable_hash(key.as_bytes()) % u64::from(self.partitions)
                    == u64::from(self.partition)
            }
        }
    }

    /// Opens the next split that is not done, if any.
    fn next_split(&mut self) -> Result<Option<LineReader>, String> {
        let files = matching_files(&self.config.path)
            .map_err(|e| format!("listing {}: {e}", self.config.path))?;
        if !self.config.tail && self.dealt.is_none() {
            let n = self.partitions as usize;
            let p = self.partition as usize;
            self.dealt = Some(
                files
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % n == p)
                    .map(|(_, f)| f.display().to_string())
                    .collect(),
            );
        }
        for file in files {
            let key = file.display().to_string();
            if !self.mine(&file) || self.done.contains(&key) {
                continue;
            }
            let offset = self.offsets.get(&key).copied().unwrap_or(0);
            let reader = LineReader::open_as(&self.step, &file, offset, self.config.format)
                .map_err(|e| format!("opening {key}: {e}"))?;
            return Ok(Some(reader));
        }
        Ok(None)
    }
}

impl Source for FileSource {
    fn read(&mut self, max: usize) -> crate::connectors::ConnectorResult<SourceBatch> {
        loop {
            if self.current.is_none() {
                self.current = self.next_split()?;
                // Tailing: look again at finished files (they may grow) and for new ones, at
                // most every 200 ms.
                let due = self
                    .last_scan
                    .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(200));
                if self.current.is_none() && self.config.tail && due {
                    self.done.clear();
                    self.last_scan = Some(std::time::Instant::now());
                    self.current = self.next_split()?;
                }
            }
            let Some(reader) = self.current.as_mut() else {
                let state = if self.config.tail {
                    ReadState::Idle
                } else {
                    ReadState::Finished
                };
                return Ok(SourceBatch {
                    records: Vec::new(),
                    bad: Vec::new(),
                    state,
                });
            };
            let batch = reader
                .read_batch(max)
                .map_err(|e| format!("reading {}: {e}", reader.split))?;
            self.offsets
                .insert(reader.split.to_string(), reader.offset());
            if batch.at_end {
                self.done.push(reader.split.to_string());
                self.current = None;
                if batch.records.is_empty() && batch.bad.is_empty() {
                    continue;
                }
            }
            return Ok(SourceBatch {
                records: batch.records,
                bad: batch.bad,
                state: ReadState::More,
            });
        }
    }

    fn positions(&self) -> BTreeMap<String, Offset> {
        numeric_positions(&self.offsets)
    }

    fn read_ahead(&self) -> bool {
        true
    }

    fn lag(&self) -> Option<u64> {
        let files = matching_files(&self.config.path).ok()?;
        Some(
            files
                .iter()
                .filter(|f| self.mine(f))
                .map(|f| {
                    let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
                    let key = f.display().to_string();
                    len.saturating_sub(self.offsets.get(&key).copied().unwrap_or(0))
                })
                .sum(),
        )
    }
}

/// Opens a file source partition (the registry's entry point).
pub fn open(
    config: &serde_json::Value,
    ctx: &SourceContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn Source>> {
    let config: FileSourceConfig = crate::connectors::typed(config)?;
    Ok(Box::new(FileSource::open(config, ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(b: &Batch) -> Vec<String> {
        b.records.iter().map(|r| r.value.to_string()).collect()
    }

    #[test]
    fn reads_in_batches_rejects_bad_lines_and_resumes_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"a\":1}\r\n\n{oops\n{\"a\":2}\n  \n{\"a\":3}").unwrap();

        let mut r = LineReader::open("events", &path, 0).unwrap();
        let first = r.read_batch(2).unwrap();
        assert_eq!(values(&first), ["{\"a\":1}"]);
        assert_eq!(first.bad.len(), 1);
        assert_eq!(first.bad[0].raw, b"{oops");
        assert_eq!(first.bad[0].position.offset, Offset::Num(16));
        assert!(first.bad[0].reason.starts_with("invalid JSON"));
        assert!(!first.at_end);

        // Resume after the first record: the bad line and the rest come again.
        let resume_at = first.records[0].position.offset.num().unwrap();
        assert_eq!(resume_at, 9);
        let mut again = LineReader::open("events", &path, resume_at).unwrap();
        let rest = again.read_batch(100).unwrap();
        assert_eq!(values(&rest), ["{\"a\":2}", "{\"a\":3}"]);
        assert_eq!(rest.bad.len(), 1);
        assert!(rest.at_end);
        assert_eq!(again.offset(), std::fs::metadata(&path).unwrap().len());

        // Reading on from where the first reader stopped gives the remaining records once.
        let tail = r.read_batch(100).unwrap();
        assert_eq!(values(&tail), ["{\"a\":2}", "{\"a\":3}"]);
        assert!(r.read_batch(100).unwrap().records.is_empty());
    }

    #[test]
    fn csv_rows_become_objects_keyed_by_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        std::fs::write(
            &path,
            "name,note\nada,\"likes, commas\"\nbob,\"two\nlines\"\ncy\n\"x\"\"y\",z\n",
        )
        .unwrap();
        let mut r = LineReader::open_as("people", &path, 0, FileFormat::Csv).unwrap();
        let b = r.read_batch(10).unwrap();
        assert_eq!(
            values(&b),
            [
                r#"{"name":"ada","note":"likes, commas"}"#,
                r#"{"name":"bob","note":"two\nlines"}"#,
                r#"{"name":"x\"y","note":"z"}"#
            ]
        );
        assert_eq!(b.bad.len(), 1);
        assert_eq!(b.bad[0].raw, b"cy");
        assert!(b.bad[0].reason.contains("1 fields where the header has 2"));
        // Resuming after the first row reads the header again, then the rest.
        let mut again = LineReader::open_as(
            "people",
            &path,
            b.records[0].position.offset.num().unwrap(),
            FileFormat::Csv,
        )
        .unwrap();
        assert_eq!(again.read_batch(10).unwrap().records.len(), 2);
    }

    #[test]
    fn globs_match_the_last_component_and_splits_spread_over_partitions() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.jsonl", "b.jsonl", "c.txt", ".hidden.jsonl"] {
            std::fs::write(dir.path().join(name), "{\"f\":1}\n").unwrap();
        }
        let pattern = format!("{}/*.jsonl", dir.path().display());
        let files = matching_files(&pattern).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.jsonl", "b.jsonl"]);

        let config = FileSourceConfig {
            path: pattern,
            format: FileFormat::Jsonl,
            tail: false,
        };
        let resume = BTreeMap::new();
        let mut total = 0;
        for partition in 0..2 {
            let ctx = SourceContext {
                pipeline: "test",
                step: "files",
                partition,
                partitions: 2,
                resume: &resume,
            };
            let mut s = FileSource::open(config.clone(), &ctx);
            loop {
                let b = s.read(100).unwrap();
                total += b.records.len();
                if b.state == ReadState::Finished {
                    break;
                }
            }
        }
        assert_eq!(total, 2, "each file is read by exactly one partition");
    }
}
