//! ConfigurationState, as both daemons write theirs: the object by server-side apply (with
//! its component label and owner), then its status; conditions built from a configuration
//! load, keeping their transition times while their status stands.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::{Value, json};

use crate::api::{ConfigurationState, ConfigurationStateStatus};
use crate::config::ConfigError;

/// Label naming the component a ConfigurationState belongs to.
pub(crate) const COMPONENT_LABEL: &str = "metallb.io/component-type";

/// Gives each condition whose status is unchanged from `previous` its old transition time.
pub(crate) fn keep_transition_times(
    conditions: &mut [Condition],
    previous: Option<&ConfigurationStateStatus>,
) {
    let before = previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or(&[]);
    for condition in conditions {
        if let Some(old) = before
            .iter()
            .find(|o| o.type_ == condition.type_ && o.status == condition.status)
        {
            condition.last_transition_time = old.last_transition_time.clone();
        }
    }
}

/// The condition a ConfigurationState carries for one load.
pub(crate) fn load_condition(
    type_: &str,
    load: &Result<(), Vec<ConfigError>>,
    invalid_suffix: &str,
    now: &Time,
) -> Condition {
    let (status, reason, message) = match load {
        Ok(()) => (
            "True",
            "Reconciled",
            "the configuration is valid".to_string(),
        ),
        Err(errors) => (
            "False",
            "ConfigurationError",
            format!("{}{invalid_suffix}", summary(errors)),
        ),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: now.clone(),
        observed_generation: None,
    }
}

/// Every error, one per line.
pub(crate) fn summary(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which ConfigurationState a component writes, and as whom.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StateTarget<'a> {
    /// ferrolb's namespace.
    pub namespace: &'a str,
    /// `controller` or `speaker-<node>`.
    pub name: &'a str,
    /// The `metallb.io/component-type` label: `controller` or `speaker`.
    pub component: &'a str,
    /// The server-side apply field manager.
    pub field_manager: &'a str,
    /// The pod that owns the object, if known.
    pub owner: Option<&'a OwnerReference>,
}

/// Creates or updates a ConfigurationState by server-side apply: the object (with its label
/// and owner), then its status.
pub(crate) async fn apply_configuration_state(
    client: &Client,
    target: &StateTarget<'_>,
    status: &ConfigurationStateStatus,
) -> Result<(), kube::Error> {
    let api: Api<ConfigurationState> = Api::namespaced(client.clone(), target.namespace);
    let params = PatchParams::apply(target.field_manager).force();
    let mut metadata = json!({
        "name": target.name,
        "labels": { COMPONENT_LABEL: target.component },
    });
    if let Some(owner) = target.owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    let typed = |field: &str, value: Value| {
        let mut object = json!({
            "apiVersion": ConfigurationState::api_version(&()),
            "kind": ConfigurationState::kind(&()),
        });
        object[field] = value;
        object
    };
    let mut object = typed("metadata", metadata);
    object["spec"] = json!({});
    api.patch(target.name, &params, &Patch::Apply(&object))
        .await?;
    let status = typed("status", json!(status));
    api.patch_status(target.name, &params, &Patch::Apply(&status))
        .await
        .map(drop)
}

/// A daemon's own ConfigurationState (a speaker's: no owner), written in the background
/// ([`StateWriter::run`]).
#[derive(Clone)]
pub(crate) struct StateWriter {
    /// The client it writes with.
    pub client: Client,
    /// ferrolb's namespace.
    pub namespace: String,
    /// `speaker-<node>`.
    pub name: String,
    /// The `metallb.io/component-type` label.
    pub component: &'static str,
    /// The server-side apply field manager.
    pub field_manager: &'static str,
}

impl StateWriter {
    /// Writes the newest status `wanted` holds until `shutdown`, so a write the API server
    /// does not answer (the node cut from it, a request left waiting for TCP to send it
    /// again) never holds up the daemon's pass, which puts the next change into FRR
    /// meanwhile. A failed write is tried again (200 ms doubling to 30 s) with whatever is
    /// wanted by then; `errors` counts failures.
    pub(crate) async fn run(
        self,
        mut wanted: tokio::sync::watch::Receiver<Option<ConfigurationStateStatus>>,
        errors: prometheus_client::metrics::counter::Counter,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use crate::shell::runtime::{RETRY_MAX, RETRY_MIN};
        let target = StateTarget {
            namespace: &self.namespace,
            name: &self.name,
            component: self.component,
            field_manager: self.field_manager,
            owner: None,
        };
        let mut written: Option<ConfigurationStateStatus> = None;
        let mut retry = RETRY_MIN;
        loop {
            let latest = wanted.borrow_and_update().clone();
            if let Some(latest) = latest.filter(|l| written.as_ref() != Some(l)) {
                let result = tokio::select! {
                    result = apply_configuration_state(&self.client, &target, &latest) => result,
                    () = shutdown.cancelled() => return,
                };
                match result {
                    Ok(()) => {
                        written = Some(latest);
                        retry = RETRY_MIN;
                    }
                    Err(error) => {
                        errors.inc();
                        tracing::warn!(%error, name = %self.name, "writing the ConfigurationState failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(retry) => {}
                            () = shutdown.cancelled() => return,
                        }
                        retry = (retry * 2).min(RETRY_MAX);
                        continue;
                    }
                }
            }
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }
}
