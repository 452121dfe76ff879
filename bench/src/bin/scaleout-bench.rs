//! scaleout-bench: the Redis scale-out of issue 15, each figure beside a reference measured in
//! the same run.
//!
//! - (b) serving: one `pcad responder` (pinned to CPU 0) answering 1000 different POST and GET
//!   OCSP requests from its cache (filled from Redis) under `wrk -t1 -c64` (CPU 1), against
//!   nginx (CPU 0, one worker) serving one static response file. Goal: >= 0.9x nginx.
//! - (m) memory: Redis `used_memory` per published response, N responses (P-256) signed by an
//!   in-process appliance and written by its real publisher (default 100k; 1M with
//!   `--count 1000000`, slow on a small machine).
//!
//! Usage: `scaleout-bench [--parts b,m] [--requests 1000] [--conns 64] [--wrk-threads 1]
//! [--wrk-secs 10] [--count 100000] [--threads 2] [--pcad target/release/pcad]`

use std::path::PathBuf;

use pcad_bench::serving::ServingOptions;

fn main() {
    if let Err(e) = run() {
        eprintln!("scaleout-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut parts = "b,m".to_owned();
    let mut o = ServingOptions {
        requests: 1000,
        conns: 64,
        wrk_threads: 1,
        wrk_secs: 10,
        pcad: PathBuf::from("target/release/pcad"),
    };
    let (mut count, mut threads) = (100_000usize, 2usize);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--parts" => parts = value()?,
            "--requests" => o.requests = num(value()?)?,
            "--conns" => o.conns = num(value()?)?,
            "--wrk-threads" => o.wrk_threads = num(value()?)?,
            "--wrk-secs" => o.wrk_secs = num(value()?)? as u64,
            "--count" => count = num(value()?)?,
            "--threads" => threads = num(value()?)?,
            "--pcad" => o.pcad = PathBuf::from(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    println!("{}", pcad_bench::machine_header("scaleout-bench"));
    for part in parts.split(',') {
        match part.trim() {
            "b" => pcad_bench::scaleout::serving(&o)?,
            "m" => pcad_bench::scaleout::memory(count, threads)?,
            other => return Err(format!("unknown part {other}")),
        }
    }
    Ok(())
}
