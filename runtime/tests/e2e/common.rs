//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where `scripts/setup.sh --sdks` puts the tools it builds: `GLEANER_TOOLS`,
/// else `~/.cache/gleaner/tools` (outside the checkout, so fresh clones
/// reuse it).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GLEANER_TOOLS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("gleaner/tools")
}

/// A tool from the tools cache; panics naming the setup step if absent.
pub fn tool(rel: &str) -> PathBuf {
    let path = tools_dir().join(rel);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/setup.sh --sdks`",
        path.display()
    );
    path
}

/// A plugin component built by `cargo plugins` (build.rs runs it).
pub fn plugin_wasm(krate: &str) -> PathBuf {
    let p = workspace()
        .join("target/plugins/wasm32-wasip2/plugin")
        .join(format!("{}.wasm", krate.replace('-', "_")));
    assert!(
        p.exists(),
        "{} is missing: run `cargo plugins`",
        p.display()
    );
    p
}

/// A compiled-plugin cache shared by all tests, so each component is
/// compiled once per test run.
pub fn shared_cache() -> PathBuf {
    workspace().join("target/test-plugin-cache")
}

/// A temporary directory with a config in it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `gleaner.yaml` with `data_dir`, the shared plugin cache and
    /// the given `pipelines:` block (YAML, indented by two spaces).
    pub fn config(&self, pipelines: &str) -> PathBuf {
        let text = format!(
            "data_dir: {}\nplugin_cache_dir: {}\npipelines:\n{pipelines}",
            self.path("state").display(),
            shared_cache().display()
        );
        let p = self.path("gleaner.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Like [`Env::config`], with more top-level keys (YAML lines) before
    /// `pipelines:`.
    pub fn config_with(&self, top: &str, pipelines: &str) -> PathBuf {
        let text = format!(
            "data_dir: {}\nplugin_cache_dir: {}\n{top}\npipelines:\n{pipelines}",
            self.path("state").display(),
            shared_cache().display()
        );
        let p = self.path("gleaner.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A config (with `top` keys) of one pipeline `files` that reads
    /// `paths` (a YAML list's items, quoted) with more input options
    /// `input` (`, key: value, …`) into `out/events.ndjson` with the file
    /// flusher.
    pub fn files_pipeline(&self, top: &str, paths: &str, input: &str) -> PathBuf {
        let out = self.path("out");
        std::fs::create_dir_all(&out).unwrap();
        self.config_with(
            top,
            &format!(
                r#"
  - name: files
    inputs: [{{ type: file, paths: [{paths}] {input} }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
                out = out.display()
            ),
        )
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn append(&self, rel: &str, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(rel))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
}

/// The `gleaner` binary under test: this build's, or `GLEANER_TEST_BIN`
/// (to run the suite against another build, e.g. to see a new test fail
/// on the previous one).
pub fn gleaner() -> Command {
    let bin = std::env::var_os("GLEANER_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_gleaner").into());
    let mut c = Command::new(bin);
    // GLEANER_TEST_LOG=debug shows more of the agent when a test is studied.
    c.env(
        "GLEANER_LOG",
        std::env::var("GLEANER_TEST_LOG").unwrap_or_else(|_| "info".into()),
    );
    c
}

/// Runs `gleaner run --exit-on-eof` to completion.
/// [`run_once`] with one environment variable set (a secret the config
/// reads with `${NAME}`); returns the agent's log. The log must not hold
/// the secret's value.
pub fn run_with_secret(config: &Path, name: &str, value: &str) -> String {
    let out = gleaner()
        .args(["run", "--exit-on-eof", "--config"])
        .arg(config)
        .env(name, value)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "gleaner failed: {}\n{log}",
        out.status
    );
    assert!(
        value.len() < 4 || !log.contains(value),
        "the value of {name} reached the log"
    );
    log
}

pub fn run_once(config: &Path) -> Output {
    let out = gleaner()
        .args(["run", "--exit-on-eof", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gleaner failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `gleaner run` (not one-off), which must refuse to start with exit
/// code 2; returns its stderr.
pub fn run_refused(config: &Path) -> String {
    let err_path = config.with_extension("refused.log");
    let mut child = Reaper(Some(
        gleaner()
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    ));
    // An agent that starts instead runs until the wait's limit: killed.
    let (status, _) = wait_exit(child.0.as_mut().unwrap());
    child.0 = None;
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    err
}

/// Starts `gleaner run` in the background; its log goes to `agent.log`
/// in the test directory (see [`Env::log`]), stdout is captured.
pub fn start(env: &Env, config: &Path) -> Child {
    // Appended to, so a test can follow several runs in one log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.path("agent.log"))
        .unwrap();
    gleaner()
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Env {
    /// The running agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    /// Waits until the agent's log contains `text` `times` times.
    pub fn wait_log(&self, text: &str, times: usize) {
        wait_until(&format!("{times}x `{text}` in the agent log"), || {
            self.log().matches(text).count() >= times
        });
    }
}

/// Sends `sig` to the child.
pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill failed: {}", std::io::Error::last_os_error());
}

/// Sends SIGTERM and waits for a clean exit; returns stdout.
pub fn stop(child: Child) -> Vec<u8> {
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "gleaner exited with {}", out.status);
    out.stdout
}

/// Parses JSON lines.
pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits until `cond` holds; panics after a generous limit (never a
/// performance assertion: the limit only keeps a broken test from hanging;
/// `GLEANER_WAIT_SECS` raises it for large figure runs).
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    assert!(waited_for(cond), "timed out waiting for {what}");
}

/// [`wait_until`] that answers whether `cond` came to hold instead of
/// panicking, for a test that then says what it saw.
pub fn waited_for(mut cond: impl FnMut() -> bool) -> bool {
    let limit = std::env::var("GLEANER_WAIT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(limit);
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The complete lines of a file (none if it does not exist): a last line
/// without its newline is still being written, and is left for later.
pub fn lines_in(path: &Path) -> Vec<Value> {
    std::fs::read(path)
        .map(|b| {
            let end = b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
            json_lines(&b[..end])
        })
        .unwrap_or_default()
}

/// A test size knob: the environment variable `name` as a number, else
/// `default` (the suite's size; figure runs raise it).
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many times pipeline `name` was started, by the agent log `log`.
pub fn starts(log: &str, name: &str) -> usize {
    let tag = format!("pipeline={name} ");
    log.lines()
        .filter(|l| l.contains("Started pipeline.") && l.contains(&tag))
        .count()
}

/// Kills a child that is still running when dropped (a test that failed
/// half-way leaves no agent behind).
pub struct Reaper(pub Option<Child>);

impl Reaper {
    /// The child, taken out (it is no longer killed on drop).
    pub fn take(&mut self) -> Child {
        self.0.take().unwrap()
    }

    pub fn child(&self) -> &Child {
        self.0.as_ref().unwrap()
    }

    /// Sends SIGTERM and waits for the exit: its status and how long
    /// it took.
    pub fn sigterm_and_wait(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.take();
        signal(&child, libc::SIGTERM);
        wait_exit(&mut child)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for `child` to exit; its exit status and how long that took.
pub fn wait_exit(child: &mut Child) -> (std::process::ExitStatus, Duration) {
    let t0 = Instant::now();
    let mut status = None;
    wait_until("the agent to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    (status.unwrap(), t0.elapsed())
}

/// The value of the Prometheus sample `series` (name and labels, exactly
/// as exposed) in `metrics`, if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
