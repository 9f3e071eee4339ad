//! Kubernetes nodes: CRI log files as kubelet lays them out.

use crate::common::*;

#[test]
fn cri_log_files_are_decoded_with_runtime_time_stream_and_joined_partials() {
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    env.write(
        "pods/default_web-1_0f3c/app/0.log",
        "2024-01-02T03:04:05.000000006Z stdout F ready\n\
         2024-01-02T03:04:06Z stdout P a long \n\
         2024-01-02T05:04:07+02:00 stderr F warn: disk\n\
         2024-01-02T03:04:08Z stdout F line\n\
         garbage\n",
    );
    let config = env.config(&format!(
        r#"  - name: pods
    inputs: [{{ type: file, paths: ["{dir}/*/*/*.log"], format: cri, start_at: beginning }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        dir = env.path("pods").display(),
        out = out.display(),
    ));
    let run = run_once(&config);
    let got: Vec<(String, String, String)> = lines_in(&out.join("events.ndjson"))
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("message"), s("stream"), s("timestamp"))
        })
        .collect();
    let t = |s: &str| s.to_owned();
    assert_eq!(
        got,
        vec![
            (t("ready"), t("stdout"), t("2024-01-02T03:04:05.000000006Z")),
            (
                t("warn: disk"),
                t("stderr"),
                t("2024-01-02T03:04:07.000000000Z")
            ),
            (
                t("a long line"),
                t("stdout"),
                t("2024-01-02T03:04:06.000000000Z")
            ),
            (t("garbage"), t(""), got[3].2.clone()),
        ]
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("lines_malformed=1"));
}
