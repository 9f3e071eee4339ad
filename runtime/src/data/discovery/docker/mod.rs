//! Docker discovery through the engine API (`bollard`): lists containers
//! and follows engine events, inspects each container once, applies the
//! include/exclude filters, and turns every selected container into targets:
//! its json-file log (stdout and stderr) and the files the config names
//! inside it, mapped to host paths through the container's mounts or its
//! overlay upper directory. Tags carry the container's id, name, image,
//! labels and selected environment variables.
//!
//! Nothing between a list and the event stream is missed: the stream is
//! opened with `since` set to a time taken before the list, so the engine
//! replays what happened meanwhile. After a lost connection `since` goes
//! back to the last contact, so containers that started and exited while
//! Gleaner could not reach the engine are replayed too. A full re-list
//! runs on an interval, and after every reconnect (with backoff).
//!
//! Owns the engine connection only: never opens a log file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use regex::Regex;

mod targets;
mod watch;

use targets::Planner;
pub use targets::*;
use watch::Discovery;

use super::DiscoveryStats;
use crate::data::tail::TargetUpdate;

/// The engine's default socket.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// Tag names.
pub mod tags {
    /// Full container id.
    pub const ID: &str = "container.id";
    /// Container name without the leading `/`.
    pub const NAME: &str = "container.name";
    /// Image as the container was created with.
    pub const IMAGE: &str = "container.image";
    /// Prefix of label tags.
    pub const LABEL: &str = "container.label.";
    /// Prefix of environment tags.
    pub const ENV: &str = "container.env.";
}

/// Checked options of a `docker` input.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// `unix://` address of the engine API.
    pub endpoint: String,
    /// Collect the containers' output (json-file driver).
    pub stdout: bool,
    /// Absolute glob patterns of files inside containers.
    pub paths: Vec<String>,
    /// A container must match all of these.
    pub include: ContainerFilter,
    /// A container must match none of these.
    pub exclude: ContainerFilter,
    /// Environment variables copied into tags.
    pub env_tags: Vec<String>,
    /// Copy every label into a tag.
    pub label_tags: bool,
    /// Where the host's `/` is seen.
    pub host_root: PathBuf,
    /// Full re-list interval.
    pub resync_interval: Duration,
}

/// Conditions on a container; every pattern matches a whole value.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    /// Label key and value pattern.
    pub labels: Vec<(String, Regex)>,
    /// Environment variable and value pattern.
    pub env: Vec<(String, Regex)>,
    /// Name pattern.
    pub name: Option<Regex>,
    /// Image pattern.
    pub image: Option<Regex>,
}

pub use super::whole;

impl ContainerFilter {
    /// Each condition on `c` (without those on the environment unless
    /// `env`: a container known only from an event has none).
    fn conditions<'a>(&'a self, c: &'a Container, env: bool) -> impl Iterator<Item = bool> + 'a {
        let kv = |set: &'a [(String, Regex)], map: &'a BTreeMap<String, String>| {
            set.iter()
                .map(move |(k, re)| map.get(k).is_some_and(|v| re.is_match(v)))
        };
        let env = if env { &self.env[..] } else { &[] };
        kv(&self.labels, &c.labels)
            .chain(kv(env, &c.env))
            .chain(self.name.iter().map(|re| re.is_match(&c.name)))
            .chain(self.image.iter().map(|re| re.is_match(&c.image)))
    }

    /// True if `c` matches every condition (or there are none); without
    /// `env`, those on the environment are taken as met.
    pub fn all(&self, c: &Container, env: bool) -> bool {
        self.conditions(c, env).all(|m| m)
    }

    /// True if `c` matches at least one condition; without `env`, those
    /// on the environment are taken as not met.
    pub fn any(&self, c: &Container, env: bool) -> bool {
        self.conditions(c, env).any(|m| m)
    }
}

/// Why a session with the engine ended.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The engine could not be reached or answered with an error.
    #[error("Docker engine at {endpoint}: {source}")]
    Engine {
        /// Where.
        endpoint: String,
        /// What.
        source: bollard::errors::Error,
    },
    /// The event stream ended (the engine stopped).
    #[error("Docker engine at {endpoint} closed its event stream")]
    Closed {
        /// Where.
        endpoint: String,
    },
}

/// Runs discovery on its own thread until `stop` is set, sending updates to
/// `tx` (the tailer of the same input).
pub fn spawn(
    name: String,
    opts: DockerOptions,
    tx: Sender<TargetUpdate>,
    stop: Arc<AtomicBool>,
    stats: Arc<DiscoveryStats>,
) -> std::io::Result<JoinHandle<()>> {
    let mut d = Discovery {
        planner: Planner {
            opts,
            stats,
            warned: HashSet::new(),
        },
        tx,
        stop,
        inspected: HashMap::new(),
        sent: HashMap::new(),
        last_contact: None,
        root: None,
    };
    crate::background::spawn_on_runtime(name, async move { d.run().await })
}

#[cfg(test)]
mod tests {
    use super::watch::engine_time;
    use super::*;
    use crate::data::discovery::map_path;
    use crate::data::tail::Format;
    use std::path::Path;

    fn container() -> Container {
        Container {
            id: "abc".into(),
            name: "web-1".into(),
            image: "nginx:1.25".into(),
            labels: BTreeMap::from([
                ("app".into(), "web".into()),
                ("tier".into(), "front".into()),
            ]),
            env: BTreeMap::from([
                ("VERSION".into(), "3".into()),
                ("SECRET".into(), "x".into()),
            ]),
            log_driver: "json-file".into(),
            log_path: Some("/var/lib/docker/containers/abc/abc-json.log".into()),
            mounts: vec![
                ("/var/log".into(), "/srv/logs".into()),
                ("/var/log/app/".into(), "/vol/app/_data".into()),
            ],
            upper_dir: Some("/var/lib/docker/overlay2/l1/diff".into()),
        }
    }

    fn opts() -> DockerOptions {
        DockerOptions {
            endpoint: DEFAULT_ENDPOINT.into(),
            stdout: true,
            paths: vec![
                "/var/log/app/*.log".into(),
                "/var/logs/x.log".into(),
                "/tmp/**/*.log".into(),
            ],
            include: ContainerFilter::default(),
            exclude: ContainerFilter::default(),
            env_tags: vec!["VERSION".into(), "MISSING".into()],
            label_tags: true,
            host_root: PathBuf::from("/"),
            resync_interval: Duration::from_secs(60),
        }
    }

    fn planner(opts: DockerOptions) -> Planner {
        Planner {
            opts,
            stats: Arc::new(DiscoveryStats::default()),
            warned: HashSet::new(),
        }
    }

    #[test]
    fn paths_map_through_the_longest_mount_then_the_upper_dir() {
        let c = container();
        let m = |p| map_path(p, &c.mounts, c.upper_dir.as_deref());
        assert_eq!(
            m("/var/log/app/*.log").as_deref(),
            Some("/vol/app/_data/*.log")
        );
        assert_eq!(m("/var/log/x.log").as_deref(), Some("/srv/logs/x.log"));
        // `/var/logs` is not below the `/var/log` mount.
        assert_eq!(
            m("/var/logs/x.log").as_deref(),
            Some("/var/lib/docker/overlay2/l1/diff/var/logs/x.log")
        );
        assert_eq!(map_path("/a/*.log", &[], None), None);
    }

    #[test]
    fn a_container_becomes_an_output_target_and_a_files_target_with_tags() {
        let mut p = planner(opts());
        let t = p.targets(&container());
        assert_eq!(t.len(), 2);
        assert_eq!(&*t[0].id, "docker/abc/stdout");
        assert_eq!(t[0].format, Format::DockerJson);
        assert_eq!(
            t[0].include,
            vec![
                "/var/lib/docker/containers/abc/abc-json.log",
                "/var/lib/docker/containers/abc/abc-json.log.[0-9]*"
            ]
        );
        let m = crate::data::tail::PathMatcher::new(&t[0].include, &t[0].exclude).unwrap();
        for (name, read) in [
            ("abc-json.log", true),
            ("abc-json.log.1", true),
            ("abc-json.log.12", true),
            ("abc-json.log.2.gz", false),
            ("abc-json.logx", false),
        ] {
            let p = format!("/var/lib/docker/containers/abc/{name}");
            assert_eq!(m.matches(Path::new(&p)), read, "{name}");
        }
        assert_eq!(&*t[1].id, "docker/abc/files");
        assert_eq!(t[1].format, Format::Raw);
        assert_eq!(
            t[1].include,
            vec![
                "/vol/app/_data/*.log",
                "/var/lib/docker/overlay2/l1/diff/var/logs/x.log",
                "/var/lib/docker/overlay2/l1/diff/tmp/**/*.log",
            ]
        );
        let tags: Vec<(&str, &str)> = t[0]
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("container.id", "abc"),
                ("container.name", "web-1"),
                ("container.image", "nginx:1.25"),
                ("container.label.app", "web"),
                ("container.label.tier", "front"),
                ("container.env.VERSION", "3"),
            ]
        );
    }

    #[test]
    fn host_root_prefixes_every_host_path() {
        let mut o = opts();
        o.host_root = PathBuf::from("/host/");
        o.paths.truncate(1);
        let t = planner(o).targets(&container());
        assert_eq!(
            t[0].include[0],
            "/host/var/lib/docker/containers/abc/abc-json.log"
        );
        assert_eq!(t[1].include, vec!["/host/vol/app/_data/*.log"]);
    }

    #[test]
    fn filters_include_on_all_conditions_and_exclude_on_any() {
        let c = container();
        let f =
            |labels: &[(&str, &str)], name: Option<&str>, image: Option<&str>| ContainerFilter {
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), whole(v).unwrap()))
                    .collect(),
                env: Vec::new(),
                name: name.map(|n| whole(n).unwrap()),
                image: image.map(|i| whole(i).unwrap()),
            };
        assert!(f(&[], None, None).all(&c, true));
        assert!(!f(&[], None, None).any(&c, true));
        assert!(f(&[("app", "web")], Some("web-\\d+"), Some("nginx:.*")).all(&c, true));
        assert!(
            !f(&[("app", "we")], None, None).all(&c, true),
            "values match whole"
        );
        assert!(!f(&[("app", "web")], Some("db"), None).all(&c, true));
        assert!(f(&[("app", "db")], Some("web-1"), None).any(&c, true));
        assert!(!f(&[("missing", ".*")], None, None).any(&c, true));
        let env = ContainerFilter {
            env: vec![("VERSION".into(), whole("[23]").unwrap())],
            ..ContainerFilter::default()
        };
        assert!(env.all(&c, true));

        let mut o = opts();
        o.exclude = f(&[("tier", "front")], None, None);
        let mut p = planner(o);
        assert!(p.targets(&c).is_empty());
        assert_eq!(p.stats.containers_filtered.get(), 1);
    }

    #[test]
    fn a_container_known_only_from_its_event_is_judged_on_what_it_carries() {
        let attributes = HashMap::from([
            ("name".to_owned(), "web-1".to_owned()),
            ("image".to_owned(), "nginx:1.25".to_owned()),
            ("app".to_owned(), "web".to_owned()),
            ("exitCode".to_owned(), "0".to_owned()),
        ]);
        let c = Container::from_event("abc", &attributes);
        assert_eq!((&*c.name, &*c.image), ("web-1", "nginx:1.25"));
        assert_eq!(c.labels, BTreeMap::from([("app".into(), "web".into())]));
        let filter = |labels: &[(&str, &str)], env: &[(&str, &str)]| ContainerFilter {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), whole(v).unwrap()))
                .collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), whole(v).unwrap()))
                .collect(),
            ..ContainerFilter::default()
        };
        let judge = |include, exclude| {
            let mut o = opts();
            (o.include, o.exclude) = (include, exclude);
            planner(o).could_select(&c)
        };
        let none = ContainerFilter::default;
        assert!(judge(filter(&[("app", "web")], &[]), none()));
        assert!(
            !judge(filter(&[("app", "db")], &[]), none()),
            "another input's"
        );
        assert!(!judge(none(), filter(&[("app", "web")], &[])), "excluded");
        // The environment is unknown: it never rules a container out.
        assert!(judge(filter(&[], &[("VERSION", "3")]), none()));
        assert!(judge(none(), filter(&[], &[("VERSION", "3")])));
    }

    #[test]
    fn other_log_drivers_are_reported_once_and_skipped() {
        let mut c = container();
        c.log_driver = "journald".into();
        let mut o = opts();
        o.paths.clear();
        let mut p = planner(o);
        assert!(p.targets(&c).is_empty());
        assert!(p.targets(&c).is_empty());
        assert_eq!(p.stats.unsupported_drivers.get(), 1);
    }

    #[test]
    fn a_created_containers_log_is_awaited_not_counted_lost() {
        let mut p = planner(opts());
        let started = p.targets(&container());
        assert_eq!(
            started.iter().map(|t| t.lost_if_absent).collect::<Vec<_>>(),
            [true, false]
        );
        let created = p.targets_before_start(&container());
        assert_eq!(created.len(), 2);
        assert!(created.iter().all(|t| !t.lost_if_absent));
        assert_eq!(created[0].include, started[0].include);
        // Without the engine's root its log cannot be predicted: nothing
        // until it starts.
        let mut unknown = container();
        unknown.log_path = None;
        assert!(p.targets_before_start(&unknown).is_empty());
    }

    #[test]
    fn engine_time_has_nanoseconds() {
        let t = std::time::UNIX_EPOCH + Duration::new(12, 5);
        assert_eq!(engine_time(t), "12.000000005");
    }
}
