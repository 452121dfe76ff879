//! The benchmark programs' command lines: flags read one by one, the `pcad` binary they run,
//! and the serving options that `ocsp-bench` and `scaleout-bench` share.

use std::path::PathBuf;
use std::str::FromStr;

use crate::serving::ServingOptions;

/// A command line read flag by flag: `while let Some(flag) = args.flag() { ... args.value() }`.
pub struct Args {
    rest: std::vec::IntoIter<String>,
    flag: String,
}

impl Args {
    pub fn new(args: Vec<String>) -> Args {
        Args {
            rest: args.into_iter(),
            flag: String::new(),
        }
    }

    /// The next flag (kept for the error messages of its value).
    pub fn flag(&mut self) -> Option<String> {
        self.flag = self.rest.next()?;
        Some(self.flag.clone())
    }

    /// The value after the flag.
    pub fn value(&mut self) -> Result<String, String> {
        self.rest
            .next()
            .ok_or(format!("{} needs a value", self.flag))
    }

    /// The value after the flag, as a number.
    pub fn num<T: FromStr>(&mut self) -> Result<T, String> {
        let v = self.value()?;
        v.trim()
            .parse()
            .map_err(|_| format!("{}: {v:?} is not a number", self.flag))
    }

    /// The value after the flag, a whole number from 1 to `max`.
    pub fn num_to(&mut self, max: u64) -> Result<u64, String> {
        self.num()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or(format!("{} takes 1 to {max}", self.flag))
    }

    /// The value after the flag, split at commas.
    pub fn list(&mut self) -> Result<Vec<String>, String> {
        Ok(self.value()?.split(',').map(str::to_owned).collect())
    }

    /// The value after the flag: key type names (`rsa2048,p256,ed25519`), checked.
    pub fn keys(&mut self) -> Result<Vec<String>, String> {
        let keys = self.list()?;
        for k in &keys {
            crate::key_by_name(k).ok_or(format!(
                "{}: {k:?} is not rsa2048, p256 or ed25519",
                self.flag
            ))?;
        }
        Ok(keys)
    }

    /// The value after the flag, numbers split at commas.
    pub fn nums<T: FromStr>(&mut self) -> Result<Vec<T>, String> {
        let flag = self.flag.clone();
        self.list()?
            .iter()
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|_| format!("{flag}: bad number {s:?}"))
            })
            .collect()
    }

    /// The error for a flag nobody took.
    pub fn unknown(&self) -> String {
        format!("unknown argument {:?} (see --help)", self.flag)
    }
}

/// Prints the usage and ends the program (status 0): `-h` and `--help`.
pub fn help(usage: &str) -> ! {
    println!("{usage}");
    std::process::exit(0)
}

/// `PCAD_BIN` of the environment, else this workspace's `target/release/pcad`.
pub fn default_pcad() -> PathBuf {
    std::env::var_os("PCAD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/pcad"
            ))
        })
}

impl ServingOptions {
    /// Takes `flag` (and its value) when it is one of the serving flags: `--requests`,
    /// `--conns`, `--wrk-threads`, `--wrk-secs`, `--pcad`, `--runs`.
    pub fn take(&mut self, flag: &str, args: &mut Args) -> Result<bool, String> {
        match flag {
            "--requests" => self.requests = args.num()?,
            "--conns" => self.conns = args.num()?,
            "--wrk-threads" => self.wrk_threads = args.num()?,
            "--wrk-secs" => self.wrk_secs = args.num()?,
            "--pcad" => self.pcad = PathBuf::from(args.value()?),
            "--runs" => self.runs = args.num_to(100)? as usize,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Ends the program with its error (exit status 1) when `result` is one.
pub fn exit_on_error(program: &str, result: Result<(), String>) {
    if let Err(e) = result {
        eprintln!("{program}: {e}");
        std::process::exit(1);
    }
}

/// The `main` of a program: `-h`/`--help` prints `usage`; a command line that `parse` refuses
/// ends with status 2 (and the usage), an error of `run` with 1.
pub fn main<O>(
    program: &str,
    usage: &str,
    parse: impl FnOnce(Args) -> Result<O, String>,
    run: impl FnOnce(&O) -> Result<(), String>,
) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{usage}");
        return std::process::ExitCode::SUCCESS;
    }
    let o = match parse(Args::new(args)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{program}: {e}\n{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
