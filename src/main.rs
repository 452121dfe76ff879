//! The `pcad` command: parses the command line and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// pcad: a hardware-backed private certificate authority.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the daemon.
    Serve {
        #[arg(long, default_value = "/etc/pcad/pcad.toml")]
        config: PathBuf,
    },
    /// Creates a SoftHSM token, demo TLS material and a config in DIR.
    Quickstart {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 8443)]
        api_port: u16,
        #[arg(long, default_value_t = 8080)]
        public_port: u16,
        #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
        module: PathBuf,
    },
    /// Serves the public routes (OCSP, CRLs) from Redis: no HSM, no database.
    Responder {
        /// A config file with `[responder]` redis, listen, password_file; flags win.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Redis URL (`redis://`, `rediss://`); repeat for Redis Cluster nodes.
        #[arg(long)]
        redis: Vec<String>,
        /// Address to serve on, e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// File holding the Redis password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Checks a config file, its TLS material and the HSM login.
    CheckConfig {
        #[arg(long, default_value = "/etc/pcad/pcad.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve { config } => pcad::server::serve(&config),
        Command::Quickstart {
            dir,
            api_port,
            public_port,
            module,
        } => pcad::quickstart::run(&pcad::quickstart::QuickstartOptions {
            dir,
            api_port,
            public_port,
            module,
        })
        .map(|text| println!("{text}")),
        Command::Responder {
            config,
            redis,
            listen,
            password_file,
        } => pcad::publish::ResponderOptions::load(config.as_deref(), redis, listen, password_file)
            .and_then(|(options, level)| {
                pcad::server::logging::init(level.as_deref());
                pcad::publish::run_responder(options)
            }),
        Command::CheckConfig { config } => {
            pcad::server::check_config(&config).map(|text| println!("{text}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pcad: {e}");
            ExitCode::FAILURE
        }
    }
}
