//! One Kubernetes Event as one Gleaner event: its message as the body, its
//! own time (the last time it was seen) as the timestamp, `Warning` as
//! severity WARN, and its involved object and counters as typed fields
//! named as OpenTelemetry's k8s events receiver names them. Pure: no API
//! calls, no queues.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;

use crate::model::event::{Batch, value};

/// Field names.
pub mod fields {
    /// The Event's own name.
    pub const NAME: &str = "k8s.event.name";
    /// The Event's uid.
    pub const UID: &str = "k8s.event.uid";
    /// Why the Event was emitted (`BackOff`, `Scheduled`, …).
    pub const REASON: &str = "k8s.event.reason";
    /// `Normal` or `Warning`.
    pub const TYPE: &str = "k8s.event.type";
    /// What was done (events.k8s.io's `action`).
    pub const ACTION: &str = "k8s.event.action";
    /// How many times it happened (an int).
    pub const COUNT: &str = "k8s.event.count";
    /// When it first happened (RFC 3339).
    pub const START_TIME: &str = "k8s.event.start_time";
    /// The component that reported it (`kubelet`, `default-scheduler`, …).
    pub const REPORTER: &str = "k8s.event.reporting_component";
    /// The host it was reported from, when the reporter gave one.
    pub const HOST: &str = "k8s.event.host";
    /// The Event's resourceVersion (an int): the input's resume point.
    pub const RESOURCE_VERSION: &str = "k8s.event.resource_version";
    /// The involved object's namespace (else the Event's).
    pub const NAMESPACE: &str = "k8s.namespace.name";
    /// The involved object's kind.
    pub const OBJECT_KIND: &str = "k8s.object.kind";
    /// The involved object's name.
    pub const OBJECT_NAME: &str = "k8s.object.name";
    /// The involved object's uid.
    pub const OBJECT_UID: &str = "k8s.object.uid";
    /// The involved object's API version.
    pub const OBJECT_API_VERSION: &str = "k8s.object.api_version";
    /// The involved object's resourceVersion when the Event was made.
    pub const OBJECT_RESOURCE_VERSION: &str = "k8s.object.resource_version";
    /// The part of the object involved (e.g. `spec.containers{app}`).
    pub const OBJECT_FIELD_PATH: &str = "k8s.object.fieldpath";
}

/// OpenTelemetry severity numbers.
const INFO: u8 = 9;
const WARN: u8 = 13;

/// An Event's resourceVersion as a number. The API server's storage
/// (etcd) gives every change a revision that only grows, so resume points
/// compare as numbers; an object without one has none.
pub fn resource_version(event: &Event) -> Option<u64> {
    event.metadata.resource_version.as_deref()?.parse().ok()
}

fn nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX)
}

/// The Event's own time: when it was last seen (its series' last
/// observation, `lastTimestamp`), else when it happened (`eventTime`,
/// `firstTimestamp`), else when it was made.
pub fn time_nanos(event: &Event) -> Option<i64> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map(nanos)
}

/// Appends `event` to `batch` (timestamped `now` if it carries no time);
/// returns the body's length.
pub fn push(batch: &mut Batch, event: &Event, now: i64) -> usize {
    let body = event.message.as_deref().unwrap_or_default();
    batch.push(time_nanos(event).unwrap_or(now), body.as_bytes());
    if let Some(severity) = batch.severities.last_mut() {
        *severity = if event.type_.as_deref() == Some("Warning") {
            WARN
        } else {
            INFO
        };
    }
    let meta = &event.metadata;
    let object = &event.involved_object;
    let strings = [
        (fields::NAME, meta.name.as_deref()),
        (fields::UID, meta.uid.as_deref()),
        (fields::REASON, event.reason.as_deref()),
        (fields::TYPE, event.type_.as_deref()),
        (fields::ACTION, event.action.as_deref()),
        (
            fields::REPORTER,
            event
                .reporting_component
                .as_deref()
                .filter(|c| !c.is_empty())
                .or(event.source.as_ref().and_then(|s| s.component.as_deref())),
        ),
        (
            fields::HOST,
            event.source.as_ref().and_then(|s| s.host.as_deref()),
        ),
        (
            fields::NAMESPACE,
            object.namespace.as_deref().or(meta.namespace.as_deref()),
        ),
        (fields::OBJECT_KIND, object.kind.as_deref()),
        (fields::OBJECT_NAME, object.name.as_deref()),
        (fields::OBJECT_UID, object.uid.as_deref()),
        (fields::OBJECT_API_VERSION, object.api_version.as_deref()),
        (
            fields::OBJECT_RESOURCE_VERSION,
            object.resource_version.as_deref(),
        ),
        (fields::OBJECT_FIELD_PATH, object.field_path.as_deref()),
    ];
    for (key, v) in strings {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            batch.push_field(key, v.as_bytes());
        }
    }
    let count = event
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(event.count)
        .unwrap_or(1);
    batch.push_typed(fields::COUNT, value::INT, count.to_string().as_bytes());
    let start = event
        .first_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()));
    if let Some(start) = start {
        batch.push_field(fields::START_TIME, start.as_bytes());
    }
    if let Some(rv) = resource_version(event) {
        batch.push_typed(
            fields::RESOURCE_VERSION,
            value::INT,
            rv.to_string().as_bytes(),
        );
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).unwrap()
    }

    fn fields_of(batch: &Batch, i: usize) -> Vec<(String, u8, String)> {
        batch
            .fields_of(i)
            .map(|(k, t, v)| (k.to_owned(), t, String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    #[test]
    fn a_kubelet_warning_becomes_a_typed_event_at_its_last_time() {
        let e = event(serde_json::json!({
            "metadata": {"name": "web-1.17a", "namespace": "shop", "uid": "e-1",
                         "resourceVersion": "4711", "creationTimestamp": "2026-11-30T08:00:00Z"},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "p-1",
                               "apiVersion": "v1", "resourceVersion": "42",
                               "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "message": "Back-off restarting failed container",
            "type": "Warning", "count": 7,
            "firstTimestamp": "2026-11-30T08:00:01Z", "lastTimestamp": "2026-11-30T08:05:00Z",
            "source": {"component": "kubelet", "host": "node-1"}
        }));
        let mut b = Batch::default();
        assert_eq!(push(&mut b, &e, 1), 36);
        assert_eq!(b.body(0), b"Back-off restarting failed container");
        assert_eq!(b.timestamps[0], 1_796_025_900_000_000_000);
        assert_eq!(b.severities[0], WARN);
        let f = fields_of(&b, 0);
        let s = |k: &str, v: &str| (k.to_owned(), value::STRING, v.to_owned());
        let i = |k: &str, v: &str| (k.to_owned(), value::INT, v.to_owned());
        assert_eq!(
            f,
            vec![
                s(fields::NAME, "web-1.17a"),
                s(fields::UID, "e-1"),
                s(fields::REASON, "BackOff"),
                s(fields::TYPE, "Warning"),
                s(fields::REPORTER, "kubelet"),
                s(fields::HOST, "node-1"),
                s(fields::NAMESPACE, "shop"),
                s(fields::OBJECT_KIND, "Pod"),
                s(fields::OBJECT_NAME, "web-1"),
                s(fields::OBJECT_UID, "p-1"),
                s(fields::OBJECT_API_VERSION, "v1"),
                s(fields::OBJECT_RESOURCE_VERSION, "42"),
                s(fields::OBJECT_FIELD_PATH, "spec.containers{app}"),
                i(fields::COUNT, "7"),
                s(fields::START_TIME, "2026-11-30T08:00:01Z"),
                i(fields::RESOURCE_VERSION, "4711"),
            ]
        );
        b.check_layout().unwrap();
    }

    #[test]
    fn an_events_k8s_io_event_uses_its_series_and_event_time() {
        let e = event(serde_json::json!({
            "metadata": {"name": "n", "namespace": "kube-system", "resourceVersion": "9"},
            "involvedObject": {"kind": "Node", "name": "node-2"},
            "eventTime": "2026-11-30T07:00:00.250000Z",
            "series": {"count": 3, "lastObservedTime": "2026-11-30T07:10:00.500000Z"},
            "reportingComponent": "node-controller", "reason": "NodeNotReady", "type": "Normal"
        }));
        let mut b = Batch::default();
        assert_eq!(push(&mut b, &e, 5), 0);
        assert_eq!(b.timestamps[0], 1_796_022_600_500_000_000);
        assert_eq!(b.severities[0], INFO);
        let f = fields_of(&b, 0);
        assert!(f.contains(&(fields::COUNT.into(), value::INT, "3".into())));
        assert!(f.contains(&(
            fields::REPORTER.into(),
            value::STRING,
            "node-controller".into()
        )));
        assert!(f.contains(&(
            fields::NAMESPACE.into(),
            value::STRING,
            "kube-system".into()
        )));
        assert!(f.contains(&(
            fields::START_TIME.into(),
            value::STRING,
            "2026-11-30T07:00:00.25Z".into()
        )));
        assert_eq!(resource_version(&e), Some(9));
    }

    #[test]
    fn an_event_without_any_time_takes_now() {
        let e = event(serde_json::json!({"metadata": {}, "involvedObject": {}}));
        let mut b = Batch::default();
        push(&mut b, &e, 77);
        assert_eq!(b.timestamps[0], 77);
        assert_eq!(resource_version(&e), None);
    }
}
