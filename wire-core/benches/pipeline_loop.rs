//! The native limit for the pipeline benchmark: plain Rust that reads JSON lines, keeps
//! records with `amount > 5`, adds `amount_cents`, and writes JSON lines — the work of the
//! benchmark's pipeline with no engine around it, written as a skeptic would want the ideal:
//! lines read into one reused buffer (no `String` per line), each parsed into a typed record
//! whose strings borrow from the line (no map at all), written with serde. Two variants:
//!
//! - `--threads 1`: one thread reads, parses and writes;
//! - `--threads 2`: a reader thread hands batches of raw lines to a worker that parses,
//!   filters and writes (what Wire's read-ahead does for one partition).
//!
//! No fsync (the output sits in the page cache). Prints records/s and peak RSS.
//!
//! `cargo bench --bench pipeline_loop -- [--threads N] OUT_FILE INPUT...`

mod support;
use support::peak_rss_kib;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::sync::mpsc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct In<'a> {
    id: u64,
    #[serde(borrow)]
    user: &'a str,
    amount: f64,
    #[serde(borrow)]
    tags: Vec<&'a str>,
    #[serde(borrow)]
    note: &'a str,
}

#[derive(Serialize)]
struct Out<'a> {
    id: u64,
    user: &'a str,
    amount: f64,
    tags: &'a [&'a str],
    note: &'a str,
    amount_cents: i64,
}

/// Parses, filters and writes one line.
fn handle(line: &[u8], out: &mut impl Write) -> std::io::Result<()> {
    let Ok(r) = serde_json::from_slice::<In<'_>>(line) else {
        return Ok(());
    };
    if r.amount > 5.0 {
        let o = Out {
            id: r.id,
            user: r.user,
            amount: r.amount,
            tags: &r.tags,
            note: r.note,
            amount_cents: (r.amount * 100.0).floor() as i64,
        };
        serde_json::to_writer(&mut *out, &o)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One thread: read a line into the reused buffer, handle it.
fn one_thread(inputs: &[String], out: &mut impl Write) -> std::io::Result<u64> {
    let mut read = 0;
    let mut line = Vec::with_capacity(512);
    for input in inputs {
        let mut reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(input)?);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            read += 1;
            handle(&line, out)?;
        }
    }
    Ok(read)
}

/// Two threads: the reader sends ~256 KiB chunks of whole lines; the worker handles them.
fn two_threads(inputs: &[String], out: &mut impl Write) -> std::io::Result<u64> {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(8);
    let inputs = inputs.to_vec();
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        for input in inputs {
            let mut r = BufReader::with_capacity(256 * 1024, std::fs::File::open(input)?);
            let mut chunk = Vec::with_capacity(300 * 1024);
            loop {
                let n = r.read_until(b'\n', &mut chunk)?;
                if n == 0 || chunk.len() >= 256 * 1024 {
                    if !chunk.is_empty() && tx.send(std::mem::take(&mut chunk)).is_err() {
                        return Ok(());
                    }
                    chunk.reserve(300 * 1024);
                }
                if n == 0 {
                    break;
                }
            }
        }
        Ok(())
    });
    let mut read = 0;
    for chunk in rx {
        for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            read += 1;
            handle(line, out)?;
        }
    }
    reader
        .join()
        .map_err(|_| std::io::Error::other("the reader thread panicked"))??;
    Ok(read)
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut threads = 1;
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        threads = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(1);
        args.drain(i..(i + 2).min(args.len()));
    }
    let Some((out, inputs)) = args.split_first() else {
        eprintln!("usage: pipeline_loop [--threads 1|2] OUT_FILE INPUT...");
        std::process::exit(2);
    };
    let started = Instant::now();
    let mut writer = BufWriter::with_capacity(256 * 1024, std::fs::File::create(out)?);
    let read = if threads >= 2 {
        two_threads(inputs, &mut writer)?
    } else {
        one_thread(inputs, &mut writer)?
    };
    writer.flush()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loop threads={threads} records={read} seconds={secs:.3} records_per_s={:.0} peak_rss_kib={}",
        read as f64 / secs,
        peak_rss_kib()
    );
    Ok(())
}
