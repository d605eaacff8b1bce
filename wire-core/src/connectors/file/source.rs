//! Reading JSON lines or CSV from files in batches, resumable at a byte offset. A line that
//! cannot be read as a record is returned as bad input (its raw bytes and position) rather
//! than dropped. [`FileSource`] spreads the files a path or glob matches over partitions; a
//! JSON-lines file larger than [`RANGE_BYTES`] (not tailed) is several splits of that many
//! bytes, each holding the lines that begin inside its range, so one big file keeps every
//! partition busy.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
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

/// A JSON-lines file (not tailed) larger than this is read as splits of this many bytes.
pub const RANGE_BYTES: u64 = 8 * 1024 * 1024;

/// Reads one file of JSON lines or CSV. Each record's position offset is the byte offset
/// just after its line: resuming from a record's offset reads the records after it.
pub struct LineReader {
    file: File,
    /// Read from the file, not yet handed out: lines are cut from it without copying, so a
    /// line kept as text shares the block it was read in.
    buf: bytes::BytesMut,
    source: std::sync::Arc<str>,
    split: std::sync::Arc<str>,
    offset: u64,
    /// A byte range's end: lines that begin at or after it belong to the next split.
    end: Option<u64>,
    /// CSV: the header's column names (read from the start of the file, wherever we resume).
    columns: Option<Vec<String>>,
    /// JSON lines are handed over as text ([`Record::raw`]), checked but not parsed.
    pub raw: bool,
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
            file,
            buf: bytes::BytesMut::new(),
            source: source.into(),
            split: path.display().to_string().into(),
            offset,
            end: None,
            columns,
            raw: false,
        })
    }

    /// Opens the split `key` of a JSON-lines `path`: the lines that begin in
    /// `[start, end)`, from `resume` (a line boundary it reached before) or else from the
    /// first line that begins at or after `start`.
    pub fn open_range(
        source: &str,
        path: &Path,
        key: &str,
        start: u64,
        end: Option<u64>,
        resume: Option<u64>,
    ) -> std::io::Result<LineReader> {
        let (at, align) = match resume {
            Some(offset) => (offset, false),
            None if start == 0 => (0, false),
            None => (start - 1, true),
        };
        let mut reader = Self::open_as(source, path, at, FileFormat::Jsonl)?;
        if align {
            // The byte before the range: skip to just after the next newline, where the
            // first line that begins in the range starts.
            let skipped = reader.next_line()?;
            reader.offset += skipped.len() as u64;
        }
        reader.split = key.into();
        reader.end = end;
        Ok(reader)
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
            if self.end.is_some_and(|end| self.offset >= end) {
                batch.at_end = true;
                break;
            }
            let mut line = self.next_line()?;
            if line.is_empty() {
                batch.at_end = true;
                break;
            }
            // A CSV row may hold quoted newlines: read on until its quotes balance.
            if self.columns.is_some() {
                while line.iter().filter(|b| **b == b'"').count() % 2 == 1 {
                    let more = self.next_line()?;
                    if more.is_empty() {
                        break;
                    }
                    line = [line, more].concat().into();
                }
            }
            self.offset += line.len() as u64;
            let text = trim_newline(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let position = Position {
                source: self.source.clone(),
                split: self.split.clone(),
                offset: Offset::Num(self.offset),
            };
            if self.columns.is_none() && self.raw && crate::pipeline::json::is_json(text) {
                batch.records.push(Record {
                    raw: Some(line.slice_ref(text)),
                    ..Record::new(Val::Null, position)
                });
                continue;
            }
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

    /// The next line with its newline, if it has one (a last line may not): a slice of the
    /// read buffer. Empty at the end of the file (for now: a tailed file may grow).
    fn next_line(&mut self) -> std::io::Result<bytes::Bytes> {
        const BLOCK: usize = 256 * 1024;
        let mut searched = 0;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..]) {
                return Ok(self.buf.split_to(searched + i + 1).freeze());
            }
            searched = self.buf.len();
            // Lines handed out still hold the block they were cut from: a new block is
            // allocated, and only the unfinished line is copied to it.
            if self.buf.capacity() - self.buf.len() < BLOCK / 4 {
                self.buf.reserve(BLOCK);
            }
            let start = self.buf.len();
            self.buf.resize(self.buf.capacity(), 0);
            let read = loop {
                match self.file.read(&mut self.buf[start..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            let n = read.inspect_err(|_| self.buf.truncate(start))?;
            self.buf.truncate(start + n);
            if n == 0 {
                return Ok(self.buf.split().freeze());
            }
        }
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

/// A split of a file source: a whole file, or a byte range of a large JSON-lines one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub path: PathBuf,
    /// Its name in checkpoints: the path, or `path@start` for a range.
    pub key: String,
    pub start: u64,
    /// Where the range ends (none: the file's end).
    pub end: Option<u64>,
}

/// The splits of `files`: whole files when tailing or reading CSV (whose quoted fields may
/// hold newlines), else ranges of [`RANGE_BYTES`] for larger files. Depends only on the files
/// and their sizes, not on the parallelism, so checkpoints carry over a change of it.
pub fn splits(files: &[PathBuf], format: FileFormat, tail: bool, range: u64) -> Vec<Split> {
    let mut out = Vec::new();
    for path in files {
        let key = path.display().to_string();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if tail || format != FileFormat::Jsonl || size <= range {
            out.push(Split {
                path: path.clone(),
                key,
                start: 0,
                end: None,
            });
            continue;
        }
        let mut start = 0;
        while start < size {
            let end = (start + range < size).then_some(start + range);
            out.push(Split {
                path: path.clone(),
                key: format!("{key}@{start}"),
                start,
                end,
            });
            start += range;
        }
    }
    out
}

/// A partition of a file source: the splits dealt to it, read one after the other from
/// their checkpointed offsets.
pub struct FileSource {
    config: FileSourceConfig,
    step: String,
    partition: u32,
    partitions: u32,
    /// Split key -> offset reached.
    offsets: BTreeMap<String, u64>,
    /// Splits whose end was reached (rechecked when tailing).
    done: Vec<String>,
    current: Option<LineReader>,
    last_scan: Option<std::time::Instant>,
    /// Without `tail`: this partition's splits, dealt round-robin when the partition starts
    /// (an even spread). With `tail` files come and go, so each is placed by a hash of its
    /// path instead (stable as others appear).
    dealt: Option<Vec<Split>>,
    /// Bytes per range split.
    range: u64,
    /// JSON lines go out as text (see [`SourceContext::raw`]).
    raw: bool,
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
            range: RANGE_BYTES,
            raw: ctx.raw,
        }
    }

    /// Whether a tailed split belongs here (placed by a hash of its key).
    fn hashed_here(&self, split: &Split) -> bool {
        crate::hash::stable_hash(split.key.as_bytes()) % u64::from(self.partitions)
            == u64::from(self.partition)
    }

    /// This partition's splits now.
    fn my_splits(&mut self) -> Result<Vec<Split>, String> {
        if let Some(dealt) = &self.dealt {
            return Ok(dealt.clone());
        }
        let files = matching_files(&self.config.path)
            .map_err(|e| format!("listing {}: {e}", self.config.path))?;
        let all = splits(&files, self.config.format, self.config.tail, self.range);
        let n = self.partitions as usize;
        let p = self.partition as usize;
        if self.config.tail {
            return Ok(all.into_iter().filter(|s| self.hashed_here(s)).collect());
        }
        let mine: Vec<Split> = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == p)
            .map(|(_, s)| s)
            .collect();
        self.dealt = Some(mine.clone());
        Ok(mine)
    }

    /// Opens the next split that is not done, if any.
    fn next_split(&mut self) -> Result<Option<LineReader>, String> {
        for split in self.my_splits()? {
            if self.done.contains(&split.key) {
                continue;
            }
            let resume = self.offsets.get(&split.key).copied();
            let reader = if split.end.is_none() && split.start == 0 {
                LineReader::open_as(
                    &self.step,
                    &split.path,
                    resume.unwrap_or(0),
                    self.config.format,
                )
            } else {
                LineReader::open_range(
                    &self.step,
                    &split.path,
                    &split.key,
                    split.start,
                    split.end,
                    resume,
                )
            };
            let mut reader = reader.map_err(|e| format!("opening {}: {e}", split.key))?;
            reader.raw = self.raw;
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
        let mine: Vec<Split> = match &self.dealt {
            Some(dealt) => dealt.clone(),
            None if self.config.tail => {
                let files = matching_files(&self.config.path).ok()?;
                splits(&files, self.config.format, true, self.range)
                    .into_iter()
                    .filter(|s| self.hashed_here(s))
                    .collect()
            }
            // Not dealt yet: nothing read, nothing known.
            None => return None,
        };
        Some(
            mine.iter()
                .map(|s| {
                    let end = s.end.unwrap_or_else(|| {
                        std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0)
                    });
                    let at = self.offsets.get(&s.key).copied().unwrap_or(s.start);
                    end.saturating_sub(at)
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
    use crate::pipeline::json::is_json;

    #[test]
    fn only_json_in_utf8_is_handed_over_as_text() {
        assert!(is_json(br#"{"a": [1, "x", null]}"#));
        assert!(is_json(b"42"));
        assert!(!is_json(b"{\"a\": "));
        assert!(!is_json(b"{} {}"));
        assert!(!is_json(b"\"\xff\""));
    }

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

    /// Reads every partition of a source over `path` to its end (ranges of `range` bytes),
    /// resuming each from its positions every `stop_every` batches; returns the ids read.
    fn read_all(path: &str, partitions: u32, range: u64, stop_every: usize) -> Vec<u64> {
        let config = FileSourceConfig {
            path: path.to_string(),
            format: FileFormat::Jsonl,
            tail: false,
        };
        let mut ids = Vec::new();
        for partition in 0..partitions {
            let mut resume = BTreeMap::new();
            'restart: loop {
                let ctx = SourceContext {
                    pipeline: "test",
                    step: "files",
                    partition,
                    partitions,
                    resume: &resume,
                    // Odd partitions hand their lines over as text.
                    raw: partition % 2 == 1,
                };
                let mut s = FileSource::open(config.clone(), &ctx);
                s.range = range;
                for _ in 0..stop_every {
                    let b = s.read(3).unwrap();
                    ids.extend(b.records.iter().map(|r| {
                        assert_eq!(r.raw.is_some(), partition % 2 == 1);
                        let value = match &r.raw {
                            Some(text) => parse_json(text).unwrap(),
                            None => r.value.clone(),
                        };
                        match &value {
                            Val::Obj(m) => m
                                .values()
                                .next()
                                .map_or(0, |v| v.to_string().parse().unwrap_or(0)),
                            _ => 0,
                        }
                    }));
                    if b.state == ReadState::Finished {
                        break 'restart;
                    }
                }
                resume = s.positions();
            }
        }
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_big_file_is_read_in_byte_ranges_each_line_once_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.jsonl");
        let mut text = String::new();
        for i in 0..200u64 {
            // Lines of many lengths, some longer than a range.
            let pad = "x".repeat((i as usize * 7) % 90);
            text.push_str(&format!("{{\"id\":{i},\"pad\":\"{pad}\"}}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let path = path.display().to_string();
        let files = matching_files(&path).unwrap();
        assert_eq!(
            splits(&files, FileFormat::Jsonl, false, 64).len(),
            text.len().div_ceil(64)
        );
        let all: Vec<u64> = (0..200).collect();
        for partitions in [1, 2, 3] {
            for range in [37, 1000, RANGE_BYTES] {
                assert_eq!(
                    read_all(&path, partitions, range, usize::MAX),
                    all,
                    "p{partitions} r{range}"
                );
                assert_eq!(
                    read_all(&path, partitions, range, 7),
                    all,
                    "resumed, p{partitions} r{range}"
                );
            }
        }
        // Tailing or CSV: whole files.
        assert_eq!(splits(&files, FileFormat::Jsonl, true, 64).len(), 1);
        assert_eq!(splits(&files, FileFormat::Csv, false, 64).len(), 1);
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
                raw: false,
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
