//! acme-bench: ACME orders completed per second with http-01 on loopback (newOrder, the
//! authorization, the challenge validated by pcad against this program's HTTP responder,
//! finalize with a fresh P-256 CSR, the certificate downloaded), and time per order, beside the
//! v2.0 SIGN-mode issuance rate of the same daemon and template measured in the same run.
//!
//! ```sh
//! cargo build --release --bin pcad && cargo build --release -p pcad-bench --bin acme-bench
//! target/release/acme-bench [--pcad target/release/pcad] [--secs 5] [--clients 8] [--accounts 4]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use pcad_bench::acme::{run, Options};
use pcad_bench::cli::{default_pcad, Args};

const USAGE: &str = "usage: acme-bench [--pcad PATH] [--secs N] [--clients N] [--accounts N]\n\
    (PCAD_BIN in the environment is the default of --pcad)";

fn parse(mut args: Args) -> Result<Options, String> {
    let mut o = Options {
        pcad: default_pcad(),
        window: Duration::from_secs(5),
        clients: 8,
        accounts: 4,
    };
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--pcad" => o.pcad = args.value()?.into(),
            "--secs" => o.window = Duration::from_secs(args.num_to(120)?),
            "--clients" => o.clients = args.num_to(64)? as usize,
            "--accounts" => o.accounts = args.num_to(64)? as usize,
            _ => return Err(args.unknown()),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    pcad_bench::cli::main("acme-bench", USAGE, parse, run)
}
