//! Issue 14, the files and the state directory under faults: fast
//! rotation with an exact path, a FIFO in a watched directory, a file
//! truncated and refilled right after a resume, a full `data_dir`, and two
//! agents on one `data_dir`. Each counts lines lost and duplicated exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;

/// How often each `seq=` number occurs in a file of JSON events.
fn seqs(path: &Path) -> BTreeMap<u64, u32> {
    let mut got = BTreeMap::new();
    for e in lines_in(path) {
        let m = e["message"].as_str().unwrap();
        let n = m
            .split_whitespace()
            .find_map(|w| w.strip_prefix("seq="))
            .unwrap_or_else(|| panic!("no seq= in {m}"))
            .parse()
            .unwrap();
        *got.entry(n).or_insert(0) += 1;
    }
    got
}

/// (lost, duplicated) of `0..n` in `got`.
fn lost_and_duplicated(got: &BTreeMap<u64, u32>, n: u64) -> (u64, u64) {
    let lost = (0..n).filter(|i| !got.contains_key(i)).count() as u64;
    let dup = got.values().map(|c| u64::from(c.saturating_sub(1))).sum();
    (lost, dup)
}

fn file_pipeline(env: &Env, paths: &str, extra: &str) -> PathBuf {
    env.files_pipeline("", paths, &format!(", start_at: beginning {extra}"))
}

/// A logrotate-style writer: `app.log` is renamed to `app.log.1` (and so
/// on, `keep` generations; the oldest deleted) and a new `app.log` is
/// created, every `every`, while lines are written as fast as a chunk a
/// few milliseconds allows.
fn rotate_while_writing(
    dir: &Path,
    generations: u64,
    lines_per_gen: u64,
    every: Duration,
    keep: u32,
) {
    let log = dir.join("app.log");
    let gen_path = |n: u32| dir.join(format!("app.log.{n}"));
    let mut seq = 0u64;
    for _ in 0..generations {
        let mut f = std::fs::File::create(&log).unwrap();
        let started = std::time::Instant::now();
        // Ten chunks per generation, spread over the interval.
        let chunk = lines_per_gen / 10;
        for _ in 0..10 {
            let mut text = String::with_capacity(chunk as usize * 100);
            for _ in 0..chunk {
                text.push_str(&format!("seq={seq:010} {}\n", "x".repeat(80)));
                seq += 1;
            }
            f.write_all(text.as_bytes()).unwrap();
            std::thread::sleep(every / 12);
        }
        drop(f);
        std::thread::sleep(every.saturating_sub(started.elapsed()));
        let _ = std::fs::remove_file(gen_path(keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(gen_path(n), gen_path(n + 1));
        }
        std::fs::rename(&log, gen_path(1)).unwrap();
    }
}

#[test]
fn fast_rotation_with_an_exact_path_loses_no_generation() {
    let env = Env::new();
    let logs = env.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "").unwrap();
    // A long poll: rotation must be followed from the notifications
    // alone (the old tailer waited for a poll to open the new file).
    let config = file_pipeline(
        &env,
        &format!("\"{}\"", logs.join("app.log").display()),
        ", poll_interval: 5s",
    );
    let mut agent = Reaper(Some(start(&env, &config)));
    env.wait_log("Started tailing file.", 1);
    // Many rotations per poll: each generation is renamed away (and five
    // later deleted) before a poll would see it. 400 ms each leaves a
    // loaded machine room to take a notification.
    let generations = knob("GLEANER_ROTATIONS", 20) as u64;
    let per_gen = 2_000;
    rotate_while_writing(&logs, generations, per_gen, Duration::from_millis(400), 5);
    let n = generations * per_gen;
    let out = env.path("out/events.ndjson");
    wait_until(&format!("{n} lines"), || lines_in(&out).len() as u64 >= n);
    stop(agent.take());
    let got = seqs(&out);
    let (lost, dup) = lost_and_duplicated(&got, n);
    println!("fast rotation: {generations} generations, {n} lines: lost {lost}, duplicated {dup}");
    assert_eq!((lost, dup), (0, 0));
    assert_eq!(
        env.log().matches("Started tailing file.").count() as u64,
        generations,
        "every generation opened once (the first is the file there at start)"
    );
}

#[test]
fn a_fifo_matching_the_glob_is_skipped_and_blocks_nothing() {
    let env = Env::new();
    let logs = env.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let a = logs.join("a.log");
    std::fs::write(
        &a,
        (0..100).map(|i| format!("seq={i}\n")).collect::<String>(),
    )
    .unwrap();
    let fifo_at_start = logs.join("early.log");
    mkfifo(&fifo_at_start);
    let port = crate::kubernetes::free_port();
    let out = env.path("out");
    let config = env.files_pipeline(
        &format!("shutdown_timeout: 2s\napi: {{ address: \"127.0.0.1:{port}\" }}"),
        &format!("\"{}/*.log\"", logs.display()),
        ", start_at: beginning",
    );
    let mut agent = Reaper(Some(start(&env, &config)));
    let events = out.join("events.ndjson");
    wait_until("a.log read", || lines_in(&events).len() == 100);
    // A FIFO made while running, then more lines and a new file.
    mkfifo(&logs.join("late.log"));
    env.append(
        "logs/a.log",
        &(100..200).map(|i| format!("seq={i}\n")).collect::<String>(),
    );
    std::fs::write(
        logs.join("b.log"),
        (200..300).map(|i| format!("seq={i}\n")).collect::<String>(),
    )
    .unwrap();
    wait_until("every line", || lines_in(&events).len() == 300);
    let (_, metrics) = crate::kubernetes::api_get(port, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            "gleaner_input_files_skipped_total{pipeline=\"files\",input=\"0\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    let (status, took) = agent.sigterm_and_wait();
    println!("FIFO: SIGTERM to exit in {took:?}");
    assert!(status.success());
    let got = seqs(&events);
    assert_eq!(lost_and_duplicated(&got, 300), (0, 0));
    assert_eq!(
        env.log()
            .matches("Skipping a path that is not a regular file")
            .count(),
        2,
        "one warning per FIFO, not one per scan"
    );
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path we own.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(r, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

#[test]
fn a_file_truncated_and_refilled_right_after_a_resume_is_read_from_the_start() {
    let env = Env::new();
    let log = env.path("app.log");
    let line = |tag: &str, i: u64| format!("{tag} seq={i:08} {}\n", "y".repeat(60));
    std::fs::write(&log, (0..5_000).map(|i| line("old", i)).collect::<String>()).unwrap();
    // A long poll: only what the tailer does on a file's own change is
    // tested, not a periodic check that might run at the right moment.
    let config = file_pipeline(
        &env,
        &format!("\"{}\"", log.display()),
        ", poll_interval: 30s, rescan_interval: 30s",
    );
    run_once(&config);
    let out = env.path("out/events.ndjson");
    assert_eq!(lines_in(&out).len(), 5_000);
    // Resume at the end of the old content; copytruncate happens at once,
    // and the file grows past the resumed offset in one write.
    let mut agent = Reaper(Some(start(&env, &config)));
    env.wait_log("resumed=true", 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(
        (0..6_000)
            .map(|i| line("new", i))
            .collect::<String>()
            .as_bytes(),
    )
    .unwrap();
    drop(f);
    wait_until("11,000 lines", || lines_in(&out).len() >= 11_000);
    std::thread::sleep(Duration::from_millis(300));
    stop(agent.take());
    let events = lines_in(&out);
    let new: BTreeMap<u64, u32> = events
        .iter()
        .filter_map(|e| e["message"].as_str().unwrap().strip_prefix("new seq="))
        .fold(BTreeMap::new(), |mut m, rest| {
            *m.entry(rest[..8].parse().unwrap()).or_insert(0) += 1;
            m
        });
    assert_eq!(lost_and_duplicated(&new, 6_000), (0, 0));
    assert_eq!(events.len(), 11_000);
}

/// A small tmpfs, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(path: PathBuf, size: &str) -> SmallFs {
        std::fs::create_dir_all(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (the suite runs as root)");
        SmallFs(path)
    }

    /// Writes until the file system is full.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_data_dir_refuses_to_start_and_never_turns_a_restart_into_a_first_start() {
    let env = Env::new();
    let fs = SmallFs::mount(env.path("state"), "512k");
    let log = env.path("app.log");
    let line = |i: u64| format!("seq={i}\n");
    std::fs::write(&log, (0..10).map(line).collect::<String>()).unwrap();
    let port = crate::kubernetes::free_port();
    let out = env.path("out");
    let config = env.files_pipeline(
        &format!("checkpoint_interval: 100ms\napi: {{ address: \"127.0.0.1:{port}\" }}"),
        &format!("\"{}\"", log.display()),
        ", start_at: end",
    );
    // 1. Full from the start: refused, nothing stored.
    fs.fill();
    let err = run_refused(&config);
    assert!(err.contains("data_dir: cannot write state"), "{err}");
    assert!(!env.path("state/checkpoints.json").exists());
    fs.free();
    // 2. Room again: a first start (the 10 lines there are skipped), then
    // 20 lines delivered and checkpointed.
    let mut agent = Reaper(Some(start(&env, &config)));
    env.wait_log("Started tailing file.", 1);
    env.append("app.log", &(10..30).map(line).collect::<String>());
    let events = out.join("events.ndjson");
    wait_until("20 lines", || lines_in(&events).len() == 20);
    let size = std::fs::metadata(&log).unwrap().len();
    wait_until("checkpoint at the end", || {
        std::fs::read_to_string(env.path("state/checkpoints.json"))
            .is_ok_and(|t| t.contains(&format!("\"offset\": {size}")))
    });
    // 3. Full while running: said (not ready, counted), and lines still flow.
    fs.fill();
    wait_until("not ready", || {
        crate::kubernetes::api_get(port, "/readyz").0 == 503
    });
    let (_, metrics) = crate::kubernetes::api_get(port, "/metrics");
    assert_eq!(sample(&metrics, "gleaner_checkpoint_writable"), Some(0.0));
    assert!(sample(&metrics, "gleaner_checkpoint_write_errors_total").unwrap() >= 1.0);
    env.append("app.log", &(30..60).map(line).collect::<String>());
    wait_until("50 lines", || lines_in(&events).len() == 50);
    let (status, _) = agent.sigterm_and_wait();
    assert_eq!(
        status.code(),
        Some(2),
        "the last checkpoint could not be written"
    );
    // 4. Written while down, and still full at the next start: refused
    // again, not started as a first start.
    env.append("app.log", &(60..100).map(line).collect::<String>());
    run_refused(&config);
    fs.free();
    // 5. Resumed from the last checkpoint that was written: nothing lost;
    // what was delivered after it (30 lines) comes again.
    let agent = start(&env, &config);
    wait_until("every line", || lines_in(&events).len() == 120);
    std::thread::sleep(Duration::from_millis(300));
    stop(agent);
    let got = seqs(&events);
    let lost = (10..100).filter(|i| !got.contains_key(i)).count();
    let dup: u32 = got.values().map(|c| c - 1).sum();
    println!("full data_dir: lost {lost}, duplicated {dup}");
    assert_eq!((lost, dup), (0, 30));
}

#[test]
fn a_second_agent_on_the_same_data_dir_refuses_naming_the_first() {
    let env = Env::new();
    env.write("app.log", "seq=0\n");
    let config = file_pipeline(&env, &format!("\"{}\"", env.path("app.log").display()), "");
    let mut first = Reaper(Some(start(&env, &config)));
    env.wait_log("Started pipeline.", 1);
    let err = run_refused(&config);
    let pid = first.child().id();
    assert!(
        err.contains(&format!("is in use by another gleaner (pid {pid},")),
        "{err}"
    );
    assert_eq!(starts(&env.log(), "files"), 1);
    env.append("app.log", "seq=1\n");
    wait_until("2 lines", || {
        lines_in(&env.path("out/events.ndjson")).len() == 2
    });
    stop(first.take());
    // Once the first has stopped, the lock is free.
    let again = start(&env, &config);
    env.wait_log("Started pipeline.", 2);
    stop(again);
}
