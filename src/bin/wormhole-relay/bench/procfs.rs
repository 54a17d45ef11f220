//! A process's memory as Linux's `/proc/PID/status` reports it (the relay's, for `--idle` and
//! the floods).

/// Resident memory of a process in KiB, from /proc (Linux only).
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status (Linux only).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
