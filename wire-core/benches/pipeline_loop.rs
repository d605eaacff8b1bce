//! The native limit for the pipeline benchmark: a plain Rust loop that reads JSON lines,
//! keeps records with `amount > 5`, adds `amount_cents`, and writes JSON lines — the work
//! of the benchmark's pipeline with no engine around it. Prints records/s and peak RSS.
//!
//! `cargo bench --bench pipeline_loop -- OUT_FILE INPUT...`

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some((out, inputs)) = args.split_first() else {
        eprintln!("usage: pipeline_loop OUT_FILE INPUT...");
        std::process::exit(2);
    };
    let started = Instant::now();
    let mut writer = BufWriter::with_capacity(256 * 1024, std::fs::File::create(out)?);
    let mut read = 0u64;
    for input in inputs {
        let reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(input)?);
        for line in reader.lines() {
            let line = line?;
            read += 1;
            let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let amount = v["amount"].as_f64().unwrap_or(0.0);
            if amount > 5.0 {
                v["amount_cents"] = serde_json::Value::from((amount * 100.0).floor() as i64);
                serde_json::to_writer(&mut writer, &v)?;
                writer.write_all(b"\n")?;
            }
        }
    }
    writer.flush()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loop records={read} seconds={secs:.3} records_per_s={:.0} peak_rss_kib={}",
        read as f64 / secs,
        peak_rss_kib()
    );
    Ok(())
}
