//! crl-bench: CRL build+sign time, CRL size, peak memory and revoke latency at N revoked
//! certificates (default N = 1k, 10k, 100k, 1M), against a real SoftHSM token, in-process.
//!
//! Each (key type, N) is populated in a fresh child process (this program re-run with `--child`)
//! and measured in another (`--measure`, over the populated folder), so that its RSS is that of
//! a restarted daemon, not of the setup. Goal (issue): 1M entries in < 5 s and < 500 MB RSS, linear.
//!
//! Usage: `crl-bench [--ns 1000,10000,100000,1000000] [--keys p256,rsa2048] [--revokes 5]
//! [--reps 3] [--threads 2]`

use pcad_bench::cli::{exit_on_error, help, Args};
use pcad_bench::crl::{child, measure, run, Options};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--child") => child(&args[1..]),
        Some("--measure") => measure(&args[1..]),
        _ => options(&args).and_then(|o| run(&o)),
    };
    exit_on_error("crl-bench", result);
}

const USAGE: &str = "crl-bench [--ns 1000,10000,100000,1000000] [--keys p256,rsa2048] [--revokes 5] [--reps 3] [--threads 2]";

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        ns: vec![1_000, 10_000, 100_000, 1_000_000],
        keys: vec!["p256".into(), "rsa2048".into()],
        revokes: 5,
        reps: 3,
        threads: 2,
    };
    let mut args = Args::new(args.to_vec());
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--ns" => o.ns = args.nums()?,
            "--keys" => o.keys = args.keys()?,
            "--revokes" => o.revokes = args.num()?,
            "--reps" => o.reps = args.num()?,
            "--threads" => o.threads = args.num()?,
            "-h" | "--help" => help(USAGE),
            _ => return Err(args.unknown()),
        }
    }
    Ok(o)
}
