//! The processes a benchmark starts: `Proc`, any child stopped (SIGTERM, then SIGKILL) when
//! dropped or when this process dies, and `Daemon`, `pcad quickstart` into a folder on free
//! loopback ports, then `pcad serve` (optionally pinned to CPUs with `taskset`).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcad::config::Config;

use crate::wait_bounded;

/// A process of ours, stopped (SIGTERM, then SIGKILL after 10 s) when dropped, also on errors,
/// and sent SIGTERM by the kernel if this process dies first.
pub struct Proc {
    pub name: &'static str,
    command: Command,
    child: Child,
}

impl Proc {
    /// Starts `command`.
    pub fn spawn(name: &'static str, mut command: Command) -> Result<Proc, String> {
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
        // which is async-signal-safe. It makes the child get SIGTERM if this process dies
        // (panic = abort, SIGKILL) so that nothing outlives the benchmark.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| format!("{name}: {e}"))?;
        Ok(Proc {
            name,
            command,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, up to 10 s to drain, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
        if wait_bounded(&mut self.child, Duration::from_secs(10)).is_err() {
            eprintln!("pcad-bench: {} did not stop on SIGTERM; killed", self.name);
        }
    }

    /// Stops the process and runs its command again.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = self
            .command
            .spawn()
            .map_err(|e| format!("{}: {e}", self.name))?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `pcad serve`.
pub struct Daemon {
    pub proc: Proc,
    /// Its process id (for affinity, CPU accounting and tracing).
    pub pid: u32,
    /// The quickstart folder (config, token, TLS material, `pcad.log`).
    pub dir: PathBuf,
    /// The config it runs with.
    pub config: Config,
    /// Its mutual-TLS API and public ports on 127.0.0.1.
    pub api_port: u16,
    pub public_port: u16,
}

impl Daemon {
    /// Runs `pcad quickstart` in `dir` (which must be empty or absent) and starts `pcad serve`
    /// on it; returns once the API and public ports accept connections (at most 30 s).
    pub fn start(pcad: &Path, dir: &Path) -> Result<Daemon, String> {
        Daemon::start_with(pcad, dir, "", None)
    }

    /// As `start`, with `extra` appended to the quickstart config (e.g. an `[acme]` section),
    /// and `pcad serve` pinned to `cpus` (`taskset -c`) when given.
    pub fn start_with(
        pcad: &Path,
        dir: &Path,
        extra: &str,
        cpus: Option<&str>,
    ) -> Result<Daemon, String> {
        if !pcad.exists() {
            return Err(format!(
                "{} not found: cargo build --release --bin pcad (or --pcad PATH)",
                pcad.display()
            ));
        }
        let (api_port, public_port) = free_ports()?;
        let out = Command::new(pcad)
            .arg("quickstart")
            .arg("--dir")
            .arg(dir)
            .args(["--api-port", &api_port.to_string()])
            .args(["--public-port", &public_port.to_string()])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", pcad.display()))?;
        if !out.status.success() {
            return Err(format!(
                "pcad quickstart failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let config_path = dir.join("pcad.toml");
        if !extra.is_empty() {
            let mut text =
                std::fs::read_to_string(&config_path).map_err(|e| format!("pcad.toml: {e}"))?;
            text.push_str(extra);
            std::fs::write(&config_path, text).map_err(|e| format!("pcad.toml: {e}"))?;
        }
        let config = Config::load(&config_path).map_err(|e| e.to_string())?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(pcad);
                c
            }
            None => Command::new(pcad),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null());
        log_to(&mut command, &dir.join("pcad.log"))?;
        let proc = Proc::spawn("pcad serve", command)?;
        let mut daemon = Daemon {
            pid: proc.pid(),
            proc,
            dir: dir.to_owned(),
            config,
            api_port,
            public_port,
        };
        daemon.wait_ready(Duration::from_secs(30))?;
        Ok(daemon)
    }

    /// Stops `pcad serve` and starts it again over the same folder.
    pub fn restart(&mut self) -> Result<(), String> {
        self.proc.restart()?;
        self.pid = self.proc.pid();
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let listening = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
        loop {
            if !self.proc.alive() {
                return Err(format!(
                    "pcad serve exited before listening:\n{}",
                    self.log_tail()
                ));
            }
            if listening(self.api_port) && listening(self.public_port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "pcad serve did not listen on {} within {limit:?}:\n{}",
                    self.api_port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the daemon's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("pcad.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Sends a command's output (stdout and stderr) to the end of `log`.
pub fn log_to(command: &mut Command, log: &Path) -> Result<(), String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    command.stdout(out).stderr(err);
    Ok(())
}

/// A free loopback port.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Two free loopback ports for the API and public listeners. Quickstart also writes a metrics
/// listener at public + 1384, so that one must be free as well.
fn free_ports() -> Result<(u16, u16), String> {
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    for _ in 0..50 {
        let api = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let public = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let (a, p) = (port(&api)?, port(&public)?);
        let Some(metrics) = p.checked_add(1384) else {
            continue;
        };
        if metrics != a && TcpListener::bind(("127.0.0.1", metrics)).is_ok() {
            return Ok((a, p));
        }
    }
    Err("no free loopback ports found".into())
}
