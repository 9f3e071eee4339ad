//! One agent among many, elected by a Lease (`coordination.k8s.io/v1`), as
//! client-go's leader election does it: the holder renews the Lease every
//! few seconds; another agent takes it over once it has not been renewed
//! for its duration; every write carries the resourceVersion read, so two
//! agents cannot both take it. Owns the Lease object only; what leading
//! means is the caller's.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tracing::{info, warn};

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
                    warn!(lease = %self.name, error = %why, "Cannot use the Lease that elects the agent writing pipeline resource status.");
                    self.failing = Some(why);
                }
            }
        }
        if self.leading != was {
            info!(lease = %self.name, identity = %self.identity, leading = self.leading, "Lease holder changed.");
        }
        self.leading
    }

    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
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
        let expired = spec.renew_time.as_ref().is_none_or(|r| {
            let secs = spec
                .lease_duration_seconds
                .unwrap_or(DURATION.as_secs() as i32);
            r.0.as_millisecond() + i64::from(secs) * 1000 < now.as_millisecond()
        });
        if !mine && !expired {
            return Ok(false);
        }
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
