//! ocsp-bench: OCSP pre-signing rate, serving rate and cache memory of pcad, each beside a
//! reference measured in the same run.
//!
//! - (a) pre-signing: `Publisher::refresh_now` over N serials (default 100k) per issuer key type
//!   (RSA-2048, P-256, Ed25519) against the raw SoftHSM signing rate of the same key with as
//!   many threads as the config has HSM sessions. Goal: ratio >= 0.85. In-process, one child
//!   process per key type.
//! - (b) serving: the real daemon (`pcad serve`, pinned to CPU 0) answering a mix of 1000
//!   different POST and GET requests from `wrk -t1 -c64` (pinned to CPU 1: one thread for its one core), against nginx
//!   (pinned to CPU 0, one worker) serving one static response file. Goal: >= 1.0x nginx,
//!   p99 <= 2 ms. `--runs N` repeats the comparison N times and prints the median of each figure.
//! - (c) memory: RSS per cached response with 1M certificates (P-256), in a child process.
//!
//! Usage: `ocsp-bench [--parts a,b,c] [--count 100000] [--keys rsa2048,p256,ed25519]
//! [--raw-secs 5] [--c-count 1000000] [--requests 1000] [--conns 64] [--wrk-threads 1]
//! [--wrk-secs 15] [--runs 1] [--pcad target/release/pcad]`

use pcad_bench::cli::{exit_on_error, help, Args};
use pcad_bench::ocsp::{child_a, child_c, part_a, part_c, Options};
use pcad_bench::serving::ServingOptions;
use pcad_bench::{load_average, machine_header};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--child-a") => child_a(&args[1..]),
        Some("--child-c") => child_c(&args[1..]),
        _ => parent(&args),
    };
    exit_on_error("ocsp-bench", result);
}

const USAGE: &str = "ocsp-bench [--parts a,b,c] [--count 100000] [--keys rsa2048,p256,ed25519] [--raw-secs 5] [--c-count 1000000] [--requests 1000] [--conns 64] [--wrk-threads 1] [--wrk-secs 15] [--runs 1] [--pcad PATH] [--populate-threads 2]";

fn options(args: &[String]) -> Result<Options, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut o = Options {
        parts: "a,b,c".into(),
        count: 100_000,
        keys: vec!["rsa2048".into(), "p256".into(), "ed25519".into()],
        raw_secs: 5.0,
        c_count: 1_000_000,
        serving: ServingOptions {
            requests: 1000,
            conns: 64,
            wrk_threads: 1,
            wrk_secs: 15,
            pcad: exe.with_file_name("pcad"),
            runs: 1,
        },
        populate_threads: 2,
    };
    let mut args = Args::new(args.to_vec());
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--parts" => o.parts = args.value()?,
            "--count" => o.count = args.num()?,
            "--keys" => o.keys = args.keys()?,
            "--raw-secs" => o.raw_secs = args.num()?,
            "--c-count" => o.c_count = args.num()?,
            "--populate-threads" => o.populate_threads = args.num()?,
            "-h" | "--help" => help(USAGE),
            f if o.serving.take(f, &mut args)? => {}
            _ => return Err(args.unknown()),
        }
    }
    Ok(o)
}

fn parent(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    print!("{}", machine_header("ocsp-bench"));
    let parts: Vec<&str> = o.parts.split(',').map(str::trim).collect();
    if parts.contains(&"a") {
        part_a(&o)?;
    }
    if parts.contains(&"b") {
        pcad_bench::serving::run(&o.serving)?;
    }
    if parts.contains(&"c") {
        part_c(&o)?;
    }
    println!("\n# load average at end: {}", load_average());
    Ok(())
}
