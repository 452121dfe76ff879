//! issue-bench: SIGN-mode leaf issuance rate and latency of a real `pcad serve` (durable
//! writes: sled flush + fsync before every answer) at 8 and 32 concurrent mutual-TLS clients,
//! for a P-256 and an RSA-2048 issuer, beside the raw SoftHSM signing rate of the same token
//! measured in the same run. Goal: issuance >= 0.5 x raw.
//!
//! ```sh
//! cargo build --release --bin pcad && cargo build --release -p pcad-bench --bin issue-bench
//! target/release/issue-bench [--pcad target/release/pcad] [--secs 10] [--layout both]
//! ```
//!
//! Layouts: `shared` leaves the daemon and this load generator on the same CPUs (what a small
//! host does); `split` pins the daemon to CPU 0 and the load generator to the others (as
//! `taskset -a -p` would), and compares with the raw rate on CPU 0 alone.

use std::process::ExitCode;
use std::time::Duration;

use pcad_bench::cli::{default_pcad, Args};
use pcad_bench::issue::bench::{run, Options};

const USAGE: &str = "usage: issue-bench [--pcad PATH] [--secs N] [--warmup N] [--raw-secs N] \
    [--layout shared|split|both] [--csrs N] [--no-ocsp] [--no-floor] [--keep]\n\
    (PCAD_BIN in the environment is the default of --pcad)";

fn main() -> ExitCode {
    pcad_bench::cli::main("issue-bench", USAGE, parse, run)
}

fn parse(mut args: Args) -> Result<Options, String> {
    let mut o = Options {
        pcad: default_pcad(),
        window: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        raw_window: Duration::from_secs(5),
        layouts: vec!["shared", "split"],
        csrs: 1000,
        ocsp_run: true,
        floor_runs: true,
        keep: false,
    };
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--pcad" => o.pcad = args.value()?.into(),
            "--secs" => o.window = Duration::from_secs(args.num_to(120)?),
            "--warmup" => o.warmup = Duration::from_secs(args.num_to(30)?),
            "--raw-secs" => o.raw_window = Duration::from_secs(args.num_to(60)?),
            "--layout" => {
                o.layouts = match args.value()?.as_str() {
                    "shared" => vec!["shared"],
                    "split" => vec!["split"],
                    "both" => vec!["shared", "split"],
                    _ => return Err("--layout takes shared, split or both".into()),
                }
            }
            "--csrs" => o.csrs = args.num_to(100_000)? as usize,
            "--no-ocsp" => o.ocsp_run = false,
            "--no-floor" => o.floor_runs = false,
            "--keep" => o.keep = true,
            _ => return Err(args.unknown()),
        }
    }
    Ok(o)
}
