//! One agent among many, elected by a Lease (`coordination.k8s.io/v1`), as
//! client-go's leader election does it: the holder renews the Lease every
//! few seconds; another agent takes it over once it has not been renewed
//! for its duration; every write carries the resourceVersion read, so two
//! agents cannot both take it. A leader may keep a little state of its own
//! in the Lease's annotations (a resume point), written with every renewal
//! and read by whoever takes the Lease next; on a clean stop it gives the
//! Lease up at once, so another agent need not wait for it to expire.
//! Owns the Lease object only; what leading means is the caller's.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tracing::{info, warn};

/// The Lease electing the agent that writes pipeline resources' status.
pub const STATUS_LEASE: &str = "gleaner-pipeline-status";

/// How long a Lease not renewed stays its holder's.
pub const DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews it (and the others look at it).
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// This agent's view of one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    leading: bool,
    /// Why the Lease cannot be used, once logged.
    failing: Option<String>,
    /// The Lease's annotations: as last read while another agent held it,
    /// as this agent writes them while it leads.
    annotations: BTreeMap<String, String>,
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

impl Elector {
    /// The Lease `name` in `api`'s namespace, held as `identity`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> Self {
        Elector {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            leading: false,
            failing: None,
            annotations: BTreeMap::new(),
        }
    }

    /// An annotation of the Lease: the value its last holder wrote (read
    /// when this agent took it), or this agent's own since.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// Sets an annotation, written with the next renewal (or release).
    pub fn set_annotation(&mut self, key: &str, value: String) {
        self.annotations.insert(key.to_owned(), value);
    }

    /// Gives the Lease up (with the annotations set), so another agent
    /// takes it at its next look instead of after [`DURATION`]. Does
    /// nothing unless this agent leads; a failure is logged (the Lease
    /// then expires as if the agent had died).
    pub async fn release(&mut self) {
        if !self.leading {
            return;
        }
        self.leading = false;
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(());
            };
            let spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            lease.metadata.annotations = Some(self.annotations.clone());
            lease.spec = Some(LeaseSpec {
                holder_identity: None,
                ..spec
            });
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(drop)
        }
        .await;
        match result {
            Ok(()) => info!(lease = %self.name, identity = %self.identity, "Gave the Lease up."),
            Err(e) => {
                warn!(lease = %self.name, error = %e, "Cannot give the Lease up; it expires by itself.")
            }
        }
    }

    /// True while the Lease cannot be used at all (then no agent can be
    /// elected, and callers fall back to acting on their own).
    pub fn unusable(&self) -> bool {
        self.failing.is_some()
    }

    /// Takes or renews the Lease if it can; whether this agent leads now.
    /// Without the Lease (no RBAC for it, the API down) it does not lead,
    /// and says why once.
    pub async fn tick(&mut self) -> bool {
        let was = self.leading;
        match self.try_hold().await {
            Ok(leading) => {
                self.leading = leading;
                self.failing = None;
            }
            Err(e) => {
                self.leading = false;
                let why = e.to_string();
                if self.failing.as_deref() != Some(&why) {
                    warn!(lease = %self.name, error = %why, "Cannot use the Lease; no agent is elected through it until it can be.");
                    self.failing = Some(why);
                }
            }
        }
        if self.leading != was {
            info!(lease = %self.name, identity = %self.identity, leading = self.leading, "Lease holder changed.");
        }
        self.leading
    }

    async fn try_hold(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    annotations: Some(self.annotations.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let expired = free
            || spec.renew_time.as_ref().is_none_or(|r| {
                let secs = spec
                    .lease_duration_seconds
                    .unwrap_or(DURATION.as_secs() as i32);
                r.0.as_millisecond() + i64::from(secs) * 1000 < now.as_millisecond()
            });
        if !self.leading || !mine {
            // Another agent's state (or this agent's from before a
            // restart): what the holder wrote is what a new holder resumes.
            self.annotations = lease.metadata.annotations.clone().unwrap_or_default();
        }
        if !mine && !expired {
            return Ok(false);
        }
        lease.metadata.annotations = Some(self.annotations.clone());
        let (acquired, transitions) = if mine {
            (
                spec.acquire_time.map_or(now, |t| t.0),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (now, spec.lease_transitions.unwrap_or(0) + 1)
        };
        lease.spec = Some(self.spec(now, acquired, transitions));
        // The resourceVersion read goes with the write: of two agents
        // taking an expired Lease, one gets 409 Conflict.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, now: Timestamp, acquired: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(DURATION.as_secs() as i32),
            acquire_time: Some(micro(acquired)),
            renew_time: Some(micro(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}
