//! What a container is to discovery ([`Container`], from one inspect) and
//! the targets it becomes: its json-file log and the files the config
//! names inside it, mapped to host paths, with the container's tags. Plain
//! functions of the container and the options: no engine calls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bollard::models::{ContainerInspectResponse, MountPoint};
use tracing::{debug, warn};

use super::{DockerOptions, tags};
use crate::data::discovery::{DiscoveryStats, glob_escape, map_path, on_host};
use crate::data::tail::{Format, Tags, Target};

/// What discovery knows of a container, from one inspect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

impl Container {
    /// A created container's json-file log, before it starts (the engine
    /// names it then): `<root>/containers/<id>/<id>-json.log`.
    pub fn expect_log_under(&mut self, root: &str) {
        if self.log_path.is_none() && self.log_driver == "json-file" {
            let id = &self.id;
            self.log_path = Some(format!(
                "{}/containers/{id}/{id}-json.log",
                root.trim_end_matches('/')
            ));
        }
    }

    /// What an event says of a container: its name, its image and its
    /// labels (the event's other attributes, besides the exit's).
    pub fn from_event(id: &str, attributes: &HashMap<String, String>) -> Container {
        let mut labels: BTreeMap<String, String> = attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let name = labels.remove("name").unwrap_or_default();
        let image = labels.remove("image").unwrap_or_default();
        for k in ["exitCode", "execDuration", "signal"] {
            labels.remove(k);
        }
        Container {
            id: id.to_owned(),
            name,
            image,
            labels,
            ..Container::default()
        }
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
pub(super) struct Planner {
    pub(super) opts: DockerOptions,
    pub(super) stats: Arc<DiscoveryStats>,
    pub(super) warned: HashSet<String>,
}

impl Planner {
    pub(super) fn selected(&self, c: &Container) -> bool {
        self.opts.include.all(c, true) && !self.opts.exclude.any(c, true)
    }

    /// Whether the filters could have selected `c`, known only from an
    /// event (gone before it could be inspected): its environment is not
    /// known, so conditions on it never rule it out.
    pub(super) fn could_select(&self, c: &Container) -> bool {
        self.opts.include.all(c, false) && !self.opts.exclude.any(c, false)
    }

    pub(super) fn tags(&self, c: &Container) -> Tags {
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

    pub(super) fn warn_once(&mut self, id: &str, what: &str, message: &str) {
        if self.warned.insert(format!("{id}/{what}")) {
            warn!(container = %id, "{message}");
        }
    }

    /// The targets of `c`, created but not started: its log does not exist
    /// yet, so the tailer waits for it to appear rather than count it lost.
    /// None when its json-file log's path cannot be predicted (the
    /// engine's root is unknown): it is read from its start instead.
    pub(super) fn targets_before_start(&mut self, c: &Container) -> Vec<Target> {
        if c.log_path.is_none() && self.opts.stdout {
            return Vec::new();
        }
        let mut targets = self.targets(c);
        for t in &mut targets {
            t.lost_if_absent = false;
        }
        targets
    }

    /// The targets of `c` (none if the filters skip it).
    pub(super) fn targets(&mut self, c: &Container) -> Vec<Target> {
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
                    lost_if_absent: true,
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
                lost_if_absent: false,
            });
        }
        out
    }
}
