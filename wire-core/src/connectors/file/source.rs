//! Reading JSON lines from a file in batches, resumable at a byte offset. A line that is not
//! JSON is returned as a rejected record (its raw bytes and position) rather than dropped.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use crate::pipeline::jq::parse_json;
use crate::pipeline::transform::{Position, Record};

/// A line that could not be read as a record.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    pub raw: Vec<u8>,
    pub position: Position,
    pub reason: String,
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    pub bad: Vec<BadLine>,
    /// Whether the end of the file was reached.
    pub at_end: bool,
}

/// Reads one JSON-lines file. Each record's position offset is the byte offset just after
/// its line: resuming from a record's offset reads the records after it.
pub struct JsonlReader {
    reader: BufReader<File>,
    source: String,
    split: String,
    offset: u64,
    line: Vec<u8>,
}

impl JsonlReader {
    /// Opens `path` for the source step `source`, positioned at byte `offset`.
    pub fn open(source: &str, path: &Path, offset: u64) -> std::io::Result<JsonlReader> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(JsonlReader {
            reader: BufReader::with_capacity(256 * 1024, file),
            source: source.to_string(),
            split: path.display().to_string(),
            offset,
            line: Vec::new(),
        })
    }

    /// The offset the next read starts at.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads up to `max` lines. Empty lines are skipped; a last line without a newline counts
    /// as a line.
    pub fn read_batch(&mut self, max: usize) -> std::io::Result<Batch> {
        let mut batch = Batch::default();
        let mut lines = 0;
        while lines < max {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line)?;
            if n == 0 {
                batch.at_end = true;
                break;
            }
            self.offset += n as u64;
            let mut text: &[u8] = &self.line;
            while let Some((last, rest)) = text.split_last() {
                if *last == b'\n' || *last == b'\r' {
                    text = rest;
                } else {
                    break;
                }
            }
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let position = Position {
                source: self.source.clone(),
                split: self.split.clone(),
                offset: self.offset,
            };
            match parse_json(text) {
                Ok(value) => batch.records.push(Record::new(value, position)),
                Err(reason) => batch.bad.push(BadLine {
                    raw: text.to_vec(),
                    position,
                    reason,
                }),
            }
        }
        Ok(batch)
    }
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

        let mut r = JsonlReader::open("events", &path, 0).unwrap();
        let first = r.read_batch(2).unwrap();
        assert_eq!(values(&first), ["{\"a\":1}"]);
        assert_eq!(first.bad.len(), 1);
        assert_eq!(first.bad[0].raw, b"{oops");
        assert_eq!(first.bad[0].position.offset, 16);
        assert!(first.bad[0].reason.starts_with("invalid JSON"));
        assert!(!first.at_end);

        // Resume after the first record: the bad line and the rest come again.
        let resume_at = first.records[0].position.offset;
        assert_eq!(resume_at, 9);
        let mut again = JsonlReader::open("events", &path, resume_at).unwrap();
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
}
