//! scaleout-bench: the Redis scale-out of issue 15, each figure beside a reference measured in
//! the same run.
//!
//! - (b) serving: one `pcad responder` (pinned to CPU 0) answering 1000 different POST and GET
//!   OCSP requests from its cache (filled from Redis) under `wrk -t1 -c64` (CPU 1), against
//!   nginx (CPU 0, one worker) serving one static response file. Goal: >= 0.9x nginx.
//!   `--runs N` repeats the comparison N times and prints the median of each figure.
//! - (m) memory: Redis `used_memory` per published response, N responses (P-256) signed by an
//!   in-process appliance and written by its real publisher (default 100k; 1M with
//!   `--count 1000000`, slow on a small machine).
//!
//! Usage: `scaleout-bench [--parts b,m] [--requests 1000] [--conns 64] [--wrk-threads 1]
//! [--wrk-secs 10] [--runs 1] [--count 100000] [--threads 2] [--pcad target/release/pcad]`

use std::path::PathBuf;

use pcad_bench::cli::{exit_on_error, Args};
use pcad_bench::serving::ServingOptions;

fn main() {
    exit_on_error("scaleout-bench", run());
}

fn run() -> Result<(), String> {
    let mut parts = "b,m".to_owned();
    let mut o = ServingOptions {
        requests: 1000,
        conns: 64,
        wrk_threads: 1,
        wrk_secs: 10,
        pcad: PathBuf::from("target/release/pcad"),
        runs: 1,
    };
    let (mut count, mut threads) = (100_000usize, 2usize);
    let mut args = Args::new(std::env::args().skip(1).collect());
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--parts" => parts = args.value()?,
            "--count" => count = args.num()?,
            "--threads" => threads = args.num()?,
            f if o.take(f, &mut args)? => {}
            _ => return Err(args.unknown()),
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
