//! Logging: the journal under systemd (`JOURNAL_STREAM` set), readable lines on stderr otherwise.

use log::{LevelFilter, Log, Metadata, Record};

/// Sets up the global logger once. `level` comes from the config; `RUST_LOG` wins when set.
pub fn init(level: Option<&str>) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| level.map(str::to_owned))
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some()
        && systemd_journal_logger::connected_to_journal();
    let installed = if journal {
        systemd_journal_logger::JournalLog::new()
            .map(|j| j.with_syslog_identifier("pcad".into()).install().is_ok())
            .unwrap_or(false)
    } else {
        log::set_boxed_logger(Box::new(Stderr)).is_ok()
    };
    if installed {
        log::set_max_level(level);
    }
}

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        use std::io::Write;
        // One write per line: stderr is unbuffered, and `eprintln!` writes each piece apart
        // (lines of concurrent threads could interleave, and every audit line cost 5 syscalls).
        let line = format!(
            "{} {:5} {}: {}\n",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            record.level(),
            record.target(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
