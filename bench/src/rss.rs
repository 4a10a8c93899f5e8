//! Resident memory and CPU time of a process, from `/proc/PID/status` and `/proc/PID/stat`.

use std::time::Duration;

/// `VmRSS` (current) and `VmHWM` (peak since start) of a process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// Current resident set size, KiB.
    pub vm_rss_kib: u64,
    /// Peak resident set size ("high water mark"), KiB.
    pub vm_hwm_kib: u64,
}

/// Reads the memory figures of `pid`; `None` if the process is gone or the
/// fields are missing (not Linux).
pub fn read(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status)
}

/// Parses the text of `/proc/PID/status`.
pub fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        vm_rss_kib: field("VmRSS:")?,
        vm_hwm_kib: field("VmHWM:")?,
    })
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux).
const CLK_TCK: u64 = 100;

/// User plus system CPU time consumed so far by every thread of `pid`, living or exited
/// (`utime + stime` of `/proc/PID/stat`); 10 ms resolution. `None` if the process is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    parse_stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of this process.
pub fn own_cpu_time() -> Option<Duration> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Parses `utime + stime` out of the text of `/proc/PID/stat`.
pub fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may contain spaces: count
    // fields after the last ')'. utime and stime are fields 14 and 15 overall.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / CLK_TCK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reads_self() {
        let m = parse_status("Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\n").unwrap();
        assert_eq!(
            m,
            Memory {
                vm_rss_kib: 1024,
                vm_hwm_kib: 2048
            }
        );
        assert!(parse_status("Name: x\n").is_none());
        let me = read(std::process::id()).unwrap();
        assert!(me.vm_hwm_kib >= me.vm_rss_kib && me.vm_rss_kib > 0);
    }

    #[test]
    fn cpu() {
        let stat = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_secs(3)));
        assert!(parse_stat_cpu("garbage").is_none());
        let start = own_cpu_time().unwrap();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(own_cpu_time().unwrap() > start);
        assert!(cpu_time(std::process::id()).is_some());
    }
}
