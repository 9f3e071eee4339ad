//! Measuring a collector the way a user runs it: a long-running process
//! (`gleaner run`, `fluent-bit -c`) started on a file that exists, timed
//! until its output holds every line, then stopped with SIGTERM. CPU time
//! and memory come from `/proc/PID` of exactly that process, read before it
//! is stopped, so shutdown work is not counted. Also the steady-rate mode
//! (an application writing N MB/s) and `wait4` figures for processes that
//! exit by themselves (the native baseline).
//!
//! Owns processes and `/proc` readings, not what the collectors run.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Resource use of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Wall time, seconds.
    pub wall: f64,
    /// User + system CPU time, seconds.
    pub cpu: f64,
    /// Peak resident set size, KiB.
    pub max_rss_kib: i64,
}

/// Runs `cmd` to completion (it must succeed) and measures it with `wait4`.
pub fn run_measured(cmd: &mut Command) -> anyhow::Result<Usage> {
    let started = Instant::now();
    let child = cmd.spawn().context("cannot start the benchmark child")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = started.elapsed().as_secs_f64();
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("benchmark child failed with status {status}");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Usage {
        wall,
        cpu: secs(ru.ru_utime) + secs(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss,
    })
}

/// CPU seconds (user + system, all threads) used so far by `pid`.
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at `) `.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// A `/proc/PID/status` figure in KiB (`VmHWM`: peak RSS; `VmRSS`: now).
pub fn status_kib(pid: u32, key: &str) -> anyhow::Result<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// Counts the lines of a file that is still being written, reading only
/// what is new on each call.
pub struct LineCounter {
    path: PathBuf,
    file: Option<File>,
    lines: u64,
    buf: Vec<u8>,
}

impl LineCounter {
    /// A counter of `path` (which may not exist yet).
    pub fn new(path: &Path) -> Self {
        LineCounter {
            path: path.to_path_buf(),
            file: None,
            lines: 0,
            buf: vec![0; 1 << 20],
        }
    }

    /// Lines so far.
    pub fn count(&mut self) -> std::io::Result<u64> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        if let Some(f) = &mut self.file {
            loop {
                let n = f.read(&mut self.buf)?;
                if n == 0 {
                    break;
                }
                self.lines += memchr::memchr_iter(b'\n', &self.buf[..n]).count() as u64;
            }
        }
        Ok(self.lines)
    }
}

/// A collector running as a child process, stopped (SIGTERM, then SIGKILL
/// after 30 s) when dropped.
pub struct Running {
    child: Child,
    started: Instant,
}

impl Running {
    /// Starts `cmd` with its output discarded.
    pub fn start(cmd: &mut Command) -> anyhow::Result<Self> {
        let started = Instant::now();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Running { child, started })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the collector exited early: {status}");
        }
        Ok(())
    }

    /// Waits until `output` holds `lines` lines; the wall time since the
    /// start, and CPU and peak RSS at that moment.
    pub fn until_lines(&mut self, output: &Path, lines: u64) -> anyhow::Result<Usage> {
        let mut counter = LineCounter::new(output);
        self.until(|| Ok(counter.count()?), lines)
    }

    /// Waits until `progress` reaches `lines`; the wall time since the
    /// start, and CPU and peak RSS at that moment.
    pub fn until(
        &mut self,
        mut progress: impl FnMut() -> anyhow::Result<u64>,
        lines: u64,
    ) -> anyhow::Result<Usage> {
        let mut last = (0, Instant::now());
        loop {
            let got = progress()?;
            if got >= lines {
                break;
            }
            self.check_alive()?;
            if got != last.0 {
                last = (got, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(120) {
                bail!("no progress for 120 s: {got} of {lines} lines written");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let wall = self.started.elapsed().as_secs_f64();
        let pid = self.pid();
        let got = progress()?;
        if got != lines {
            bail!("wrote {got} lines for {lines} input lines");
        }
        Ok(Usage {
            wall,
            cpu: cpu_secs(pid)?,
            max_rss_kib: status_kib(pid, "VmHWM")?,
        })
    }

    /// SIGTERM, then waits (SIGKILL after 30 s).
    pub fn stop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// What a steady run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steady {
    /// CPU over the window, % of one core.
    pub cpu_pct: f64,
    /// Largest RSS sampled in the window, KiB.
    pub max_rss_kib: i64,
    /// Peak RSS before the writer started (the start itself), KiB.
    pub start_peak_kib: i64,
}

/// Appends lines from `next` to `input` at `mb_per_s` for `secs` seconds
/// (in 10 ms slices) while `collector` tails it; measures the collector
/// over that window and waits until `output` holds every line written.
pub fn steady(
    collector: &mut Running,
    input: &Path,
    output: &Path,
    (mb_per_s, secs): (f64, u64),
    next: &mut dyn FnMut(&mut String),
) -> anyhow::Result<Steady> {
    use std::io::Write;
    // Let it start and settle before the window opens.
    std::thread::sleep(Duration::from_secs(2));
    collector.check_alive()?;
    let pid = collector.pid();
    let start_peak_kib = status_kib(pid, "VmHWM")?;
    let mut file = std::fs::OpenOptions::new().append(true).open(input)?;
    let slice = Duration::from_millis(10);
    let per_slice = (mb_per_s * 1e6 * slice.as_secs_f64()) as u64;
    let (cpu0, t0) = (cpu_secs(pid)?, Instant::now());
    let (mut written, mut lines) = (0u64, 0u64);
    let mut max_rss_kib = 0;
    let mut line = String::new();
    let mut chunk = String::new();
    let mut next_sample = t0;
    while t0.elapsed() < Duration::from_secs(secs) {
        let due = per_slice * (t0.elapsed().as_millis() as u64 / 10 + 1);
        chunk.clear();
        while written < due {
            line.clear();
            next(&mut line);
            written += line.len() as u64;
            lines += 1;
            chunk.push_str(&line);
        }
        // One write per line, as an application logs.
        for l in chunk.split_inclusive('\n') {
            file.write_all(l.as_bytes())?;
        }
        if Instant::now() >= next_sample {
            max_rss_kib = max_rss_kib.max(status_kib(pid, "VmRSS")?);
            next_sample += Duration::from_millis(100);
        }
        let into = t0.elapsed().as_nanos() % slice.as_nanos();
        std::thread::sleep(Duration::from_nanos((slice.as_nanos() - into) as u64));
    }
    let cpu = cpu_secs(pid)? - cpu0;
    let window = t0.elapsed().as_secs_f64();
    collector.until_lines(output, lines)?;
    Ok(Steady {
        cpu_pct: cpu / window * 100.0,
        max_rss_kib,
        start_peak_kib,
    })
}
