//! Where a measure's time goes: the CPU time the clusters' server processes
//! and the bench's own child processes (the binaries it times) used while
//! it ran. A run that keeps every core busy cannot finish sooner than its
//! CPU time over the cores, whatever it does in parallel.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// CPU time used so far, by the server processes of some clusters and by
/// this process's waited-for children.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub server: Duration,
    pub client: Duration,
}

impl Cpu {
    /// Now, for the clusters whose data directories are `datadirs`.
    pub fn now(datadirs: &[&Path]) -> Result<Cpu> {
        let mut server = Duration::ZERO;
        for datadir in datadirs {
            server += server_cpu(datadir)?;
        }
        Ok(Cpu { server, client: children_cpu() })
    }

    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu { server: self.server.saturating_sub(earlier.server), client: self.client.saturating_sub(earlier.client) }
    }

    pub fn total(self) -> Duration {
        self.server + self.client
    }
}

/// The postmaster of `datadir` (the first line of `postmaster.pid`): its own
/// CPU time, its exited children's (backends are reaped by it) and its live
/// children's.
fn server_cpu(datadir: &Path) -> Result<Duration> {
    let pidfile = datadir.join("postmaster.pid");
    let text = std::fs::read_to_string(&pidfile).with_context(|| format!("read {}", pidfile.display()))?;
    let pid: u32 = text.lines().next().unwrap_or_default().trim().parse().context("the postmaster's PID")?;
    let own = stat(pid).with_context(|| format!("read /proc/{pid}/stat"))?;
    let mut ticks = own.ticks + own.children_ticks;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        // A process may exit between the listing and the read.
        if let Some(found) = stat(child).filter(|s| s.ppid == pid) {
            ticks += found.ticks;
        }
    }
    Ok(from_ticks(ticks))
}

/// The fields of `/proc/PID/stat` the bench needs.
struct Stat {
    ppid: u32,
    /// utime + stime.
    ticks: u64,
    /// cutime + cstime: its waited-for children's.
    children_ticks: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields
    // after its closing parenthesis start with the state (field 3).
    let fields: Vec<&str> = text.get(text.rfind(')')? + 1..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        ticks: field(14)? + field(15)?,
        children_ticks: field(16)? + field(17)?,
    })
}

fn from_ticks(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// User and system time of this process's children that have been waited for.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
