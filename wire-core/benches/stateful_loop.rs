//! The stateful benchmark's plain Rust baseline (bench/stateful/run.py): one thread reads a
//! JSON-lines file of `{"user", "ts", "amount"}` events and keeps a `HashMap` — a running
//! sum per user (one output line per event) or a count per user and tumbling minute (one
//! line per window, written at the end) — then writes its output and fsyncs it.
//!
//!     stateful_loop sum|window INPUT OUTPUT
//!
//! prints `seconds=S peak_rss_kib=K` on stderr.

mod support;
use support::peak_rss_kib;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};

#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    user: &'a str,
    ts: i64,
    amount: i64,
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, input, output) = match args.as_slice() {
        [_, m, i, o] => (m.clone(), i.clone(), o.clone()),
        _ => {
            eprintln!("usage: stateful_loop sum|window INPUT OUTPUT");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(&input)?);
    let file = std::fs::File::create(&output)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    let mut totals: HashMap<String, i64> = HashMap::new();
    let mut counts: HashMap<(String, i64), u64> = HashMap::new();
    let mut line = Vec::new();
    let mut reader = reader;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let Ok(e) = serde_json::from_slice::<Event>(&line) else {
            continue;
        };
        if mode == "sum" {
            let t = totals.entry(e.user.to_string()).or_default();
            *t += e.amount;
            writeln!(out, "{{\"user\":\"{}\",\"total\":{}}}", e.user, t)?;
        } else {
            *counts
                .entry((e.user.to_string(), e.ts / 60_000 * 60_000))
                .or_default() += 1;
        }
    }
    for ((user, start), n) in &counts {
        writeln!(
            out,
            "{{\"key\":\"{user}\",\"window_start\":{start},\"window_end\":{},\"n\":{n}}}",
            start + 60_000
        )?;
    }
    out.flush()?;
    drop(out);
    file.sync_all()?;
    eprintln!(
        "seconds={:.3} peak_rss_kib={}",
        started.elapsed().as_secs_f64(),
        peak_rss_kib()
    );
    Ok(())
}
