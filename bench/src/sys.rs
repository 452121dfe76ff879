//! Linux process facts the benchmarks report or change: CPU affinity (what `taskset -a -p`
//! does), CPU time used, memory, clocks and the load average.

use std::fs;
use std::time::Duration;

/// How many CPUs this process may run on.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Pins every thread of process `pid` to `cpus` (threads they start later inherit it), like
/// `taskset -a -p -c <cpus> <pid>`.
pub fn pin_process(pid: u32, cpus: &[usize]) -> Result<(), String> {
    let tasks =
        fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("/proc/{pid}/task: {e}"))?;
    for task in tasks.flatten() {
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        {
            // A thread may exit between the listing and this call: that is not an error.
            let _ = set_affinity(tid, cpus);
        }
    }
    Ok(())
}

/// Pins the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> Result<(), String> {
    set_affinity(0, cpus)
}

/// User plus system CPU seconds used so far by every thread of `pid` (`self` for this process).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with field 3, `state`;
    // utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks()?)
}

fn clock_seconds(clock: libc::clockid_t) -> f64 {
    // SAFETY: clock_gettime writes into the timespec we hand it; a zeroed timespec is valid.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the callers pass clocks Linux always has.
    unsafe {
        libc::clock_gettime(clock, &mut t);
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage writes into the struct we hand it; a zeroed rusage is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
    }
    u
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

/// CPU seconds all processes of the machine have used so far (`/proc/stat`: everything but
/// idle and iowait).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 / clock_ticks()?)
}

/// The 1, 5 and 15 minute load averages as `/proc/loadavg` shows them.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Memory figures of this process, in bytes, from `/proc/self/status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    /// Resident now (`VmRSS`).
    pub rss: u64,
    /// Peak resident since start or the last `reset_peak` (`VmHWM`).
    pub hwm: u64,
}

/// Reads `VmRSS` and `VmHWM`.
pub fn mem() -> Mem {
    let text = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    Mem {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
    }
}

/// CPU time (user + system) this process has used so far, all threads.
pub fn cpu_time() -> Duration {
    let u = rusage();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Context switches of this process so far (all threads): (voluntary, involuntary). Many
/// voluntary switches per operation mean threads wait on each other (a lock), involuntary ones
/// that they wait for a CPU.
pub fn context_switches() -> (u64, u64) {
    let u = rusage();
    (u.ru_nvcsw as u64, u.ru_nivcsw as u64)
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Gives freed heap back to the kernel, so that RSS readings after a drop mean something.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CLOCK_MONOTONIC seconds (what `perf record -k CLOCK_MONOTONIC` stamps samples with).
pub fn monotonic() -> f64 {
    clock_seconds(libc::CLOCK_MONOTONIC)
}

/// CPU seconds used by the calling thread.
pub fn thread_cpu_seconds() -> f64 {
    clock_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// `0-1`, `0`, `1,3`: CPUs as a short list.
pub fn cpu_list(cpus: &[usize]) -> String {
    match cpus {
        [] => String::new(),
        [one] => one.to_string(),
        [first, .., last] if last - first + 1 == cpus.len() => format!("{first}-{last}"),
        _ => cpus
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn set_affinity(tid: i32, cpus: &[usize]) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set, CPU_SET stays in bounds for
    // CPU numbers below CPU_SETSIZE (checked), and the pointer and size describe that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(format!("CPU {cpu} is out of range"));
            }
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "sched_setaffinity({tid}, {}): {}",
                cpu_list(cpus),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}
