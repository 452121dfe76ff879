//! The daemon under test: `pcad quickstart` into a temporary folder on free loopback ports,
//! then `pcad serve`, stopped (SIGTERM, then SIGKILL) when dropped or when this process dies.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcad::config::Config;

/// A running `pcad serve`.
pub struct Daemon {
    child: Child,
    /// Its process id (for affinity, CPU accounting and tracing).
    pub pid: u32,
    /// The quickstart folder (config, token, TLS material, `pcad.log`).
    pub dir: PathBuf,
    /// The config it runs with.
    pub config: Config,
    /// Its mutual-TLS API port on 127.0.0.1.
    pub api_port: u16,
}

impl Daemon {
    /// Runs `pcad quickstart` in `dir` (which must be empty) and starts `pcad serve` on it;
    /// returns once the API port accepts connections (at most 30 s).
    pub fn start(pcad: &Path, dir: &Path) -> Result<Daemon, String> {
        Daemon::start_with(pcad, dir, "")
    }

    /// As `start`, with `extra` appended to the quickstart config (e.g. an `[acme]` section).
    pub fn start_with(pcad: &Path, dir: &Path, extra: &str) -> Result<Daemon, String> {
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
        let log = File::create(dir.join("pcad.log")).map_err(|e| format!("pcad.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("pcad.log: {e}"))?;
        let mut command = Command::new(pcad);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
        // which is async-signal-safe. It makes the daemon get SIGTERM if this process dies
        // (panic = abort, SIGKILL) so that no daemon outlives the benchmark.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start pcad serve: {e}"))?;
        let mut daemon = Daemon {
            pid: child.id(),
            child,
            dir: dir.to_owned(),
            config,
            api_port,
        };
        daemon.wait_ready(Duration::from_secs(30))?;
        Ok(daemon)
    }

    /// Stops the daemon: SIGTERM, up to 10 s to drain, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: kill with a pid this process started and has not reaped yet.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "pcad serve exited ({status}) before listening:\n{}",
                    self.log_tail()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.api_port)).is_ok() {
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

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
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
