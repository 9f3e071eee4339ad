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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, EventMessage, MountPoint};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use crossbeam_channel::Sender;
use futures_util::StreamExt;
use regex::Regex;
use tracing::{debug, info, warn};

use super::{DiscoveryStats, glob_escape, map_path, on_host};
use crate::data::tail::{Format, Tags, Target, TargetUpdate};

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
    fn conditions<'a>(&'a self, c: &'a Container) -> impl Iterator<Item = bool> + 'a {
        let kv = |set: &'a [(String, Regex)], map: &'a BTreeMap<String, String>| {
            set.iter()
                .map(move |(k, re)| map.get(k).is_some_and(|v| re.is_match(v)))
        };
        kv(&self.labels, &c.labels)
            .chain(kv(&self.env, &c.env))
            .chain(self.name.iter().map(|re| re.is_match(&c.name)))
            .chain(self.image.iter().map(|re| re.is_match(&c.image)))
    }

    /// True if `c` matches every condition (or there are none).
    pub fn all(&self, c: &Container) -> bool {
        self.conditions(c).all(|m| m)
    }

    /// True if `c` matches at least one condition.
    pub fn any(&self, c: &Container) -> bool {
        self.conditions(c).any(|m| m)
    }
}

/// What discovery knows of a container, from one inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Full id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image as created with.
    pub image: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Log driver name.
    pub log_driver: String,
    /// Host path of the json-file log.
    pub log_path: Option<String>,
    /// Mounts: destination in the container → source on the host.
    pub mounts: Vec<(String, String)>,
    /// Host directory of the container's writable layer (overlay).
    pub upper_dir: Option<String>,
}

impl Container {
    /// Reads the parts Gleaner uses from an inspect response.
    pub fn from_inspect(r: ContainerInspectResponse) -> Option<Container> {
        let id = r.id?;
        let config = r.config.unwrap_or_default();
        let env = config
            .env
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        let mounts = r
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m: MountPoint| Some((m.destination?, m.source?)))
            .collect();
        let upper_dir = r
            .graph_driver
            .and_then(|g| g.data.get("UpperDir").cloned())
            .filter(|d| !d.is_empty());
        Some(Container {
            name: r
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image: config.image.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            env,
            log_driver: r
                .host_config
                .and_then(|h| h.log_config)
                .and_then(|l| l.typ)
                .unwrap_or_default(),
            log_path: r.log_path.filter(|p| !p.is_empty()),
            mounts,
            upper_dir,
            id,
        })
    }
}

/// The live json-file log and its rotated files (`.1`, `.2`, …).
fn json_file_patterns(log: &str) -> Vec<String> {
    let escaped = glob_escape(log);
    vec![escaped.clone(), format!("{escaped}.[0-9]*")]
}

/// The id of a container's output target.
pub fn stdout_target_id(container: &str) -> String {
    format!("docker/{container}/stdout")
}

/// The id of a container's files target.
pub fn files_target_id(container: &str) -> String {
    format!("docker/{container}/files")
}

/// Turns containers into targets, remembering what it warned about.
struct Planner {
    opts: DockerOptions,
    stats: Arc<DiscoveryStats>,
    warned: HashSet<String>,
}

impl Planner {
    fn selected(&self, c: &Container) -> bool {
        self.opts.include.all(c) && !self.opts.exclude.any(c)
    }

    fn tags(&self, c: &Container) -> Tags {
        let mut t = vec![
            (tags::ID.to_owned(), c.id.clone()),
            (tags::NAME.to_owned(), c.name.clone()),
            (tags::IMAGE.to_owned(), c.image.clone()),
        ];
        if self.opts.label_tags {
            for (k, v) in &c.labels {
                t.push((format!("{}{k}", tags::LABEL), v.clone()));
            }
        }
        for k in &self.opts.env_tags {
            if let Some(v) = c.env.get(k) {
                t.push((format!("{}{k}", tags::ENV), v.clone()));
            }
        }
        Arc::from(t)
    }

    fn warn_once(&mut self, id: &str, what: &str, message: &str) {
        if self.warned.insert(format!("{id}/{what}")) {
            warn!(container = %id, "{message}");
        }
    }

    /// The targets of `c` (none if the filters skip it).
    fn targets(&mut self, c: &Container) -> Vec<Target> {
        if !self.selected(c) {
            if self.warned.insert(format!("{}/filtered", c.id)) {
                self.stats.containers_filtered.inc();
                debug!(container = %c.name, "Container skipped by the filters.");
            }
            return Vec::new();
        }
        let tags = self.tags(c);
        let mut out = Vec::new();
        if self.opts.stdout {
            match (&*c.log_driver, &c.log_path) {
                ("json-file", Some(path)) => out.push(Target {
                    id: Arc::from(stdout_target_id(&c.id)),
                    // The rotated files too (`-json.log.1` …): when the engine
                    // rotates twice between two looks, the file in between
                    // is found under its new name instead of being skipped.
                    include: json_file_patterns(&on_host(&self.opts.host_root, path)),
                    exclude: vec![format!(
                        "{}.*.gz",
                        glob_escape(&on_host(&self.opts.host_root, path))
                    )],
                    tags: tags.clone(),
                    format: Format::DockerJson,
                }),
                (driver, _) => {
                    if self.warned.insert(format!("{}/driver", c.id)) {
                        self.stats.unsupported_drivers.inc();
                        warn!(
                            container = %c.name,
                            driver,
                            "Container logs through a driver Gleaner cannot read (only json-file); its output is skipped."
                        );
                    }
                }
            }
        }
        let mut include = Vec::new();
        for p in self.opts.paths.clone() {
            match map_path(&p, &c.mounts, c.upper_dir.as_deref()) {
                Some(host) => include.push(on_host(&self.opts.host_root, &host)),
                None => self.warn_once(
                    &c.id,
                    "paths",
                    &format!(
                        "Cannot map `{p}` to the host: no mount covers it and the storage driver has no upper directory; skipped."
                    ),
                ),
            }
        }
        if !include.is_empty() {
            out.push(Target {
                id: Arc::from(files_target_id(&c.id)),
                include,
                exclude: Vec::new(),
                tags,
                format: Format::Raw,
            });
        }
        out
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
    };
    super::spawn_on_runtime(name, async move { d.run().await })
}

struct Discovery {
    planner: Planner,
    tx: Sender<TargetUpdate>,
    stop: Arc<AtomicBool>,
    /// Containers inspected, by id.
    inspected: HashMap<String, Container>,
    /// Target ids sent per container.
    sent: HashMap<String, Vec<Arc<str>>>,
    /// The engine's state is known up to this time (last event or list).
    last_contact: Option<std::time::SystemTime>,
}

/// Seconds.nanoseconds since the epoch, as the engine's `since` takes it.
fn engine_time(t: std::time::SystemTime) -> String {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

impl Discovery {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn endpoint(&self) -> &str {
        &self.planner.opts.endpoint
    }

    fn err(&self, source: bollard::errors::Error) -> DiscoveryError {
        DiscoveryError::Engine {
            endpoint: self.endpoint().to_owned(),
            source,
        }
    }

    async fn run(&mut self) {
        let mut backoff = super::FIRST_BACKOFF;
        while !self.stopped() {
            match self.session(&mut backoff).await {
                Ok(()) => return,
                Err(e) => {
                    self.planner.stats.errors.inc();
                    warn!(error = %e, retry_in = ?backoff, "Docker discovery failed; other inputs are unaffected, known containers are still read.");
                }
            }
            if !super::back_off(&mut backoff, &self.stop).await {
                return;
            }
        }
    }

    /// One connection: list, then follow events until the stream breaks or
    /// `stop` is set (then `Ok`).
    async fn session(&mut self, backoff: &mut Duration) -> Result<(), DiscoveryError> {
        let docker = Docker::connect_with_unix(self.endpoint(), 30, bollard::API_DEFAULT_VERSION)
            .map_err(|e| self.err(e))?
            .negotiate_version()
            .await
            .map_err(|e| self.err(e))?;
        // Events from a moment before the list (or before the connection
        // was lost) on: the engine replays what happened meanwhile, so
        // nothing falls in between.
        let now = std::time::SystemTime::now();
        let since = engine_time(self.last_contact.unwrap_or(now).min(now) - Duration::from_secs(1));
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "event".to_owned(),
                ["start", "die", "destroy", "rename"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ]);
        let mut events = docker.events(Some(EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(filters),
        }));
        self.resync(&docker).await?;
        info!(endpoint = %self.endpoint(), containers = self.sent.len(), "Connected to the Docker engine.");
        *backoff = super::FIRST_BACKOFF;
        let mut resync = tokio::time::interval(self.planner.opts.resync_interval);
        resync.tick().await;
        let mut check_stop = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => self.on_event(&docker, ev).await,
                    Some(Err(e)) => return Err(self.err(e)),
                    None => return Err(DiscoveryError::Closed { endpoint: self.endpoint().to_owned() }),
                },
                _ = resync.tick() => self.resync(&docker).await?,
                _ = check_stop.tick() => if self.stopped() { return Ok(()) },
            }
        }
    }

    async fn inspect(
        &mut self,
        docker: &Docker,
        id: &str,
    ) -> Result<Option<Container>, DiscoveryError> {
        if let Some(c) = self.inspected.get(id) {
            return Ok(Some(c.clone()));
        }
        match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(r) => {
                let c = Container::from_inspect(r);
                if let Some(c) = &c {
                    self.inspected.insert(c.id.clone(), c.clone());
                }
                Ok(c)
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Lists running containers and sends the complete set of targets.
    async fn resync(&mut self, docker: &Docker) -> Result<(), DiscoveryError> {
        let listed_at = std::time::SystemTime::now();
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: false,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err(e))?;
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        let live: HashSet<&String> = ids.iter().collect();
        self.inspected.retain(|id, _| live.contains(id));
        let mut all = Vec::new();
        let mut sent = HashMap::new();
        for id in ids {
            let Some(c) = self.inspect(docker, &id).await? else {
                continue;
            };
            let targets = self.planner.targets(&c);
            sent.insert(id, targets.iter().map(|t| t.id.clone()).collect());
            all.extend(targets);
        }
        self.sent = sent;
        self.planner.stats.resyncs.inc();
        let _ = self.tx.send(TargetUpdate::Sync(all));
        self.last_contact = Some(listed_at);
        Ok(())
    }

    async fn on_event(&mut self, docker: &Docker, ev: EventMessage) {
        if let Some(t) = ev.time_nano.and_then(|n| u64::try_from(n).ok()) {
            let at = std::time::UNIX_EPOCH + Duration::from_nanos(t);
            self.last_contact = Some(self.last_contact.map_or(at, |l| l.max(at)));
        }
        let Some(id) = ev.actor.and_then(|a| a.id) else {
            return;
        };
        let action = ev.action.unwrap_or_default();
        debug!(container = %id, action = %action, "Docker event.");
        match action.as_str() {
            "start" | "rename" => {
                if action == "rename" {
                    self.inspected.remove(&id);
                }
                match self.inspect(docker, &id).await {
                    Ok(Some(c)) => {
                        let targets = self.planner.targets(&c);
                        if !targets.is_empty() && !self.sent.contains_key(&id) {
                            self.planner.stats.containers_added.inc();
                            info!(container = %c.name, id = %short(&id), targets = targets.len(), "Container started; reading it.");
                        }
                        self.sent
                            .insert(id, targets.iter().map(|t| t.id.clone()).collect());
                        for t in targets {
                            let _ = self.tx.send(TargetUpdate::Added(t));
                        }
                        // A `--rm` container can be gone, log and all, by now.
                        if let Some(log) = &c.log_path
                            && self.planner.opts.stdout
                            && c.log_driver == "json-file"
                            && !Path::new(&on_host(&self.planner.opts.host_root, log)).exists()
                        {
                            self.planner.stats.containers_missed.inc();
                            warn!(container = %c.name, "Container and its log were removed before they could be read; its output is lost.");
                        }
                    }
                    Ok(None) => {
                        self.planner.stats.containers_missed.inc();
                        warn!(id = %short(&id), "Container was removed before it could be inspected; its output could not be read.");
                    }
                    Err(e) => {
                        warn!(error = %e, "Cannot inspect a container; the next resync retries.")
                    }
                }
            }
            "die" | "destroy" => {
                if action == "destroy" {
                    self.inspected.remove(&id);
                    self.planner.warned.retain(|k| !k.starts_with(&id));
                }
                for t in self.sent.remove(&id).unwrap_or_default() {
                    let _ = self.tx.send(TargetUpdate::Removed(t));
                }
            }
            _ => {}
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(f(&[], None, None).all(&c));
        assert!(!f(&[], None, None).any(&c));
        assert!(f(&[("app", "web")], Some("web-\\d+"), Some("nginx:.*")).all(&c));
        assert!(
            !f(&[("app", "we")], None, None).all(&c),
            "values match whole"
        );
        assert!(!f(&[("app", "web")], Some("db"), None).all(&c));
        assert!(f(&[("app", "db")], Some("web-1"), None).any(&c));
        assert!(!f(&[("missing", ".*")], None, None).any(&c));
        let env = ContainerFilter {
            env: vec![("VERSION".into(), whole("[23]").unwrap())],
            ..ContainerFilter::default()
        };
        assert!(env.all(&c));

        let mut o = opts();
        o.exclude = f(&[("tier", "front")], None, None);
        let mut p = planner(o);
        assert!(p.targets(&c).is_empty());
        assert_eq!(p.stats.containers_filtered.get(), 1);
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
    fn engine_time_has_nanoseconds() {
        let t = std::time::UNIX_EPOCH + Duration::new(12, 5);
        assert_eq!(engine_time(t), "12.000000005");
    }
}
