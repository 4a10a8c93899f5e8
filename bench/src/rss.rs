//! Resident memory of a process, from `/proc/PID/status`.

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
}
