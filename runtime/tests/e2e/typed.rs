//! Typed values, severities and the log's own time, end to end: through
//! every builtin processor into the file and http flushers, and through a
//! plugin built against the 0.2.0 contract in the same chain.

use serde_json::json;

use crate::common::*;
use crate::http_sink::Sink;

/// One pipeline over `lines` with `processors`, into both the file and the
/// http flusher; returns (file events, http events).
fn both_flushers(
    processors: &str,
    lines: &[&str],
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let env = Env::new();
    env.write("in.log", &(lines.join("\n") + "\n"));
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let sink = Sink::start(&[]);
    let config = env.config(&format!(
        r#"
  - name: typed
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: {processors}
    flushers:
      - {{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}
      - {{ plugin: builtin:http, config: {{ url: "http://{addr}/in" }}, grants: {{ hosts: ["{addr}"] }} }}
"#,
        log = env.path("in.log").display(),
        out = out.display(),
        addr = sink.addr,
    ));
    run_once(&config);
    (lines_in(&out.join("events.ndjson")), sink.events())
}

#[test]
fn typed_values_pass_every_builtin_processor_into_file_and_http() {
    let lines = [
        r#"GET /a 200 0.25 level=warn {"user":"ann@example.com","n":3,"tags":["x",1],"ok":true,"t":1700000000,"gone":null}"#,
        r#"GET /b 404 1 level=info {"user":"bob@example.com","n":4,"t":1700000001}"#,
        r#"PUT /c 201 n/a level=ERR {"user":"carl","n":-5,"t":"soon","method":"PATCH","big":2.5e3}"#,
    ];
    let (file, http) = both_flushers(
        r#"
      - plugin: builtin:parse-regex
        config:
          pattern: '^(?P<method>\S+) (?P<path>\S+) (?P<status>\d+) (?P<ratio>\S+) level=(?P<level>\w+) (?P<json>.*)$'
          types: { status: int, ratio: float }
      - plugin: builtin:parse-json
        config: { field: json }
      - plugin: builtin:filter
        config: { exclude: [ { field: status, regex: '^404$' } ] }
      - plugin: builtin:add-fields
        config: { fields: { region: eu, shard: 3, canary: false, weights: [1, 2] } }
      - plugin: builtin:severity
      - plugin: builtin:mask
        config: { presets: [email], fields: [user] }
      - plugin: builtin:parse-time
        config: { field: t, format: unix, remove: true }"#,
        &lines,
    );
    assert_eq!(
        file, http,
        "the file and the http flusher write the same documents"
    );
    assert_eq!(file.len(), 2, "status 404 was filtered out by its text");
    let strip = |e: &serde_json::Value| {
        let mut e = e.clone();
        let o = e.as_object_mut().unwrap();
        assert!(o.remove("source.path").is_some());
        o.remove("json");
        e
    };
    assert_eq!(
        strip(&file[0]),
        json!({
            "timestamp": "2023-11-14T22:13:20.000000000Z",
            "severity": "WARN",
            "method": "GET", "path": "/a", "status": 200, "ratio": 0.25, "level": "warn",
            "user": "***@example.com", "n": 3, "tags": ["x", 1], "ok": true, "gone": null,
            "region": "eu", "shard": 3, "canary": false, "weights": [1, 2],
            "message": lines[0].replace("ann@", "***@"),
        })
    );
    // `n/a` is not a float: kept as text. `soon` is not a unix time: the
    // read time stays and so does the field. ERR is an error.
    let e = strip(&file[1]);
    assert_eq!(e["ratio"], "n/a");
    assert_eq!(e["status"], 201);
    assert_eq!(e["n"], -5);
    assert_eq!(e["t"], "soon");
    assert_eq!(e["severity"], "ERROR");
    assert_eq!(e["user"], "carl");
    // A member of the parsed JSON replaces the field of the same name.
    assert_eq!(e["method"], "PATCH");
    assert_eq!(e["big"], 2500.0);
    assert!(e["timestamp"].as_str().unwrap() > "2026");
}

#[test]
fn delimited_columns_take_their_types() {
    let (file, _) = both_flushers(
        r#"[ { plugin: builtin:parse-delimiter, config: { fields: [code, ms, ok, who], types: { code: int, ms: float, ok: bool } } } ]"#,
        &["200,12.5,yes,ann", "x,1,0,bob"],
    );
    let cols = |e: &serde_json::Value| {
        json!([
            e["code"].clone(),
            e["ms"].clone(),
            e["ok"].clone(),
            e["who"].clone()
        ])
    };
    assert_eq!(cols(&file[0]), json!([200, 12.5, true, "ann"]));
    assert_eq!(cols(&file[1]), json!(["x", 1, false, "bob"]));
}

#[test]
fn severity_names_numbers_and_a_map() {
    let lines = [
        "level=TRACE",
        "level=debug",
        "level=Info",
        "level=notice",
        "level=Warning",
        "level=error",
        "level=crit",
        "level=FATAL",
        "level=0",
        "level=4",
        "level=30",
        "level=loud",
        "no level at all",
    ];
    let (file, _) = both_flushers(
        r#"
      - plugin: builtin:parse-regex
        config: { pattern: 'level=(?P<level>\w+)' }
      - plugin: builtin:severity
        config: { map: { "30": info } }"#,
        &lines,
    );
    let got: Vec<Option<&str>> = file.iter().map(|e| e["severity"].as_str()).collect();
    assert_eq!(
        got,
        [
            Some("TRACE"),
            Some("DEBUG"),
            Some("INFO"),
            Some("INFO2"),
            Some("WARN"),
            Some("ERROR"),
            Some("FATAL2"),
            Some("FATAL"),
            Some("FATAL4"),
            Some("WARN"),
            Some("INFO"),
            None,
            None
        ]
    );
}

#[test]
fn parse_time_formats_and_time_zones() {
    // Yesterday, as syslog writes it (no year: the nearest one is taken).
    let yesterday = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 86_400_000_000_000;
    let mut text = Vec::new();
    gleaner_sdk::json::write_rfc3339(yesterday, &mut text);
    let iso = String::from_utf8(text).unwrap();
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][iso[5..7].parse::<usize>().unwrap() - 1];
    let day: u32 = iso[8..10].parse().unwrap();
    let syslog = format!("{month} {day:>2} 06:07:08");
    let lines = [
        r#"{"a":"2024-02-29T12:00:00.5+02:00"}"#.to_owned(),
        format!(r#"{{"b":"{syslog}"}}"#),
        r#"{"c":1700000000}"#.to_owned(),
        r#"{"d":1700000000123}"#.to_owned(),
        r#"{"e":"1700000000123456"}"#.to_owned(),
        r#"{"f":1700000000123456789}"#.to_owned(),
        r#"{"g":"2024-07-01 12:00:00"}"#.to_owned(),
        r#"{"a":"yesterday-ish"}"#.to_owned(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (file, _) = both_flushers(
        r#"
      - plugin: builtin:parse-json
      - { plugin: builtin:parse-time, config: { field: a, format: rfc3339 } }
      - { plugin: builtin:parse-time, config: { field: b, format: rfc3164, timezone: "+01:00" } }
      - { plugin: builtin:parse-time, config: { field: c, format: unix } }
      - { plugin: builtin:parse-time, config: { field: d, format: unix_ms } }
      - { plugin: builtin:parse-time, config: { field: e, format: unix_us } }
      - { plugin: builtin:parse-time, config: { field: f, format: unix_ns } }
      - { plugin: builtin:parse-time, config: { field: g, format: "%Y-%m-%d %H:%M:%S", timezone: America/New_York } }"#,
        &lines,
    );
    let times: Vec<&str> = file
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert_eq!(times[0], "2024-02-29T10:00:00.500000000Z");
    assert_eq!(times[1], format!("{}T05:07:08.000000000Z", &iso[..10]));
    assert_eq!(times[2], "2023-11-14T22:13:20.000000000Z");
    assert_eq!(times[3], "2023-11-14T22:13:20.123000000Z");
    assert_eq!(times[4], "2023-11-14T22:13:20.123456000Z");
    assert_eq!(times[5], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(times[6], "2024-07-01T16:00:00.000000000Z");
    // Not a time: the read time stays (later than anything above).
    assert!(times[7] > times[1], "{}", times[7]);
    assert_eq!(file[7]["a"], "yesterday-ish");
}

/// A plugin built against 0.2.0 between 0.3.0 ones: it sees text and its
/// kernels answer records; what it passes on is text without severities,
/// and types and severities set after it are kept.
#[test]
fn a_plugin_built_against_wit_0_2_0_runs_between_current_ones() {
    let fixture = plugin_wasm("test-wit-0-2-0");
    let wasm = std::fs::read(&fixture).unwrap();
    let has = |s: &str| wasm.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("gleaner:plugin/kernels@0.2.0"));
    assert!(!has("gleaner:plugin/host@0.3.0"));
    let lines: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "status={} level={}",
                200 + i % 5,
                ["info", "warn", "error"][i % 3]
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (file, http) = both_flushers(
        &format!(
            r#"
      - plugin: builtin:parse-regex
        config: {{ pattern: 'status=(?P<status>\d+)', types: {{ status: int }} }}
      - plugin: builtin:severity
        config: {{ field: status, map: {{ "200": debug }} }}
      - plugin: {fixture}
      - plugin: builtin:severity
      - plugin: builtin:parse-regex
        config: {{ pattern: 'status=(?P<code>\d+)', types: {{ code: int }} }}"#,
            fixture = fixture.display()
        ),
        &refs,
    );
    assert_eq!(file, http);
    assert_eq!(file.len(), 300);
    for (i, e) in file.iter().enumerate() {
        assert_eq!(e["message"], lines[i].as_str());
        // Typed before the 0.2.0 plugin: it comes back as text.
        assert_eq!(e["status"], (200 + i % 5).to_string());
        // Its own fields, from its 0.2.0 regex kernel.
        assert_eq!(e["wit"], "0.2.0");
        assert_eq!(e["level"], ["info", "warn", "error"][i % 3]);
        // Set after it: typed, and the severity from its `level`.
        assert_eq!(e["code"], 200 + i % 5);
        assert_eq!(e["severity"], ["INFO", "WARN", "ERROR"][i % 3]);
    }
}

/// A plugin built against 0.3.0 between 0.4.0 ones: it keeps types and
/// severities, its kernels and the host's zstd (0.3.0's codec enum) work.
#[test]
fn a_plugin_built_against_wit_0_3_0_runs_between_current_ones() {
    let fixture = plugin_wasm("test-wit-0-3-0");
    let wasm = std::fs::read(&fixture).unwrap();
    let has = |s: &str| wasm.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("gleaner:plugin/host@0.3.0"));
    assert!(!has("gleaner:plugin/host@0.4.0"));
    let lines: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "status={} level={}",
                200 + i % 5,
                ["info", "warn", "error"][i % 3]
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (file, http) = both_flushers(
        &format!(
            r#"
      - plugin: builtin:parse-regex
        config: {{ pattern: 'status=(?P<status>\d+)', types: {{ status: int }} }}
      - plugin: {fixture}
      - plugin: builtin:parse-regex
        config: {{ pattern: 'status=(?P<code>\d+)', types: {{ code: int }} }}"#,
            fixture = fixture.display()
        ),
        &refs,
    );
    assert_eq!(file, http);
    assert_eq!(file.len(), 300);
    for (i, e) in file.iter().enumerate() {
        assert_eq!(e["message"], lines[i].as_str());
        // Typed before the 0.3.0 plugin, typed after it.
        assert_eq!(e["status"], 200 + i % 5);
        assert_eq!(e["code"], 200 + i % 5);
        assert_eq!(e["wit"], "0.3.0");
        assert_eq!(e["level"], ["info", "warn", "error"][i % 3]);
        assert!(e["zstd"].as_u64().unwrap() > 0, "{e}");
        if i % 3 == 1 {
            assert_eq!(e["severity"], "WARN");
        } else {
            assert!(e.get("severity").is_none(), "{e}");
        }
    }
}
