//! The `pcad` command: parses the command line and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const DEFAULT_CONFIG: &str = "/etc/pcad/pcad.toml";

const AFTER_HELP: &str = "\
The manual page pcad(8) (`man pcad`; packaging/pcad.8 in the source) describes every command.
Every config key is described in the commented example config: /etc/pcad/pcad.toml as the Debian
package installs it, packaging/pcad.toml.example in the source.";

/// pcad: a private certificate authority whose issuer keys live in an HSM (PKCS#11). It serves
/// the NHN Cloud Private CA API v2.0 over mutual TLS and publishes CRLs and pre-signed OCSP.
#[derive(Parser)]
#[command(version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the daemon: the API (mutual TLS), the public CRL/OCSP listener and metrics.
    #[command(after_help = AFTER_HELP)]
    Serve {
        /// The config file (TOML).
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Creates a SoftHSM token, demo TLS material and a config in DIR (a demo, not production);
    /// `pcad quickstart add-client` adds API users to it.
    #[command(
        after_help = AFTER_HELP,
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true
    )]
    Quickstart {
        /// The folder to create (new or empty); everything the demo needs is written in it.
        #[arg(long, value_name = "DIR", required = true)]
        dir: Option<PathBuf>,
        /// Port of the API listener (mutual TLS) on 127.0.0.1.
        #[arg(long, value_name = "PORT", default_value_t = 8443)]
        api_port: u16,
        /// Port of the public listener (CRL, OCSP, /healthz; plain HTTP) on 127.0.0.1.
        #[arg(long, value_name = "PORT", default_value_t = 8080)]
        public_port: u16,
        /// The PKCS#11 library of the HSM.
        #[arg(
            long,
            value_name = "LIBRARY",
            default_value = "/usr/lib/softhsm/libsofthsm2.so"
        )]
        module: PathBuf,
        #[command(subcommand)]
        action: Option<QuickstartAction>,
    },
    /// Serves the public routes (OCSP, CRLs) from Redis: no HSM, no database.
    #[command(after_help = AFTER_HELP)]
    Responder {
        /// A config file with `[responder]` redis, listen, password_file; flags win.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Redis URL (`redis://`, `rediss://`); repeat for Redis Cluster nodes.
        #[arg(long, value_name = "URL")]
        redis: Vec<String>,
        /// Address to serve on, e.g. 0.0.0.0:8080.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// File holding the Redis password.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Checks a config file, its TLS material and the HSM login, then exits.
    #[command(after_help = AFTER_HELP)]
    CheckConfig {
        /// The config file (TOML).
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Writes a consistent snapshot of the database to FILE, while pcad serves or not, and
    /// checks what it wrote. Issuer keys are not in it: back up the HSM with its own means.
    #[command(after_help = AFTER_HELP)]
    Backup {
        /// The config file of the pcad to back up.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The snapshot file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restores a snapshot written by `pcad backup` into the config's (missing or empty)
    /// storage path, then says which HSM keys it expects and whether the token has them.
    #[command(after_help = AFTER_HELP)]
    Restore {
        /// The config file of the pcad to restore into (pcad must not be running on it).
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The snapshot file written by `pcad backup`.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
    },
    /// Verifies a snapshot file and lists the HSM key ids (CKA_ID) it expects, and whether the
    /// config's token has each of them. Exits 1 when a key is missing.
    #[command(after_help = AFTER_HELP)]
    BackupCheck {
        /// The config file naming the HSM token to check against.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The snapshot file written by `pcad backup`.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
    },
}

#[derive(Subcommand)]
enum QuickstartAction {
    /// Mints a client certificate NAME from the quickstart's client CA (DIR/tls/ca.pem) and
    /// adds its [[access]] entry to DIR/pcad.toml; a running pcad picks it up on SIGHUP.
    #[command(after_help = AFTER_HELP)]
    AddClient {
        /// The identity: the certificate's common name, and DIR/tls/NAME.pem|.key.
        name: String,
        /// The role the [[access]] entry grants: VIEWER or ADMIN.
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// The appkey the role applies to; "*" means every appkey.
        #[arg(long, value_name = "KEY", default_value = "*")]
        appkey: String,
        /// The folder `pcad quickstart` wrote.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve { config } => pcad::server::serve(&config),
        Command::Quickstart {
            action:
                Some(QuickstartAction::AddClient {
                    name,
                    role,
                    appkey,
                    dir,
                }),
            ..
        } => pcad::quickstart::add_client(&dir, &name, &role, &appkey).map(|t| println!("{t}")),
        Command::Quickstart {
            dir,
            api_port,
            public_port,
            module,
            action: None,
        } => match dir {
            Some(dir) => pcad::quickstart::run(&pcad::quickstart::QuickstartOptions {
                dir,
                api_port,
                public_port,
                module,
            })
            .map(|text| println!("{text}")),
            None => Err("quickstart needs --dir".into()),
        },
        Command::Responder {
            config,
            redis,
            listen,
            password_file,
        } => pcad::publish::ResponderOptions::load(config.as_deref(), redis, listen, password_file)
            .and_then(|(options, level)| {
                pcad::server::logging::init(level.as_deref());
                pcad::server::responder::run(options)
            }),
        Command::CheckConfig { config } => {
            pcad::server::check_config(&config).map(|text| println!("{text}"))
        }
        Command::Backup { config, out } => {
            pcad::backup::backup(&config, &out).map(|t| println!("{t}"))
        }
        Command::Restore { config, input } => {
            pcad::backup::restore(&config, &input).map(|t| println!("{t}"))
        }
        Command::BackupCheck { config, input } => match pcad::backup::check(&config, &input) {
            Ok((text, complete)) => {
                println!("{text}");
                if complete {
                    Ok(())
                } else {
                    Err("the token lacks keys the snapshot expects (listed above)".into())
                }
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pcad: {e}");
            ExitCode::FAILURE
        }
    }
}
