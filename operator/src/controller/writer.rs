//! The controller's writes to the API server, one method per kind of write, each a single
//! request of a fixed shape (the mocked-API tests pin them down):
//!
//! - Service status: JSON merge patch of `status.loadBalancer` on the `status` subresource;
//!   the pool annotation: JSON merge patch of the object. Both carry the `resourceVersion` the
//!   decision was made from, so a decision taken on a stale cache fails with 409 Conflict
//!   instead of overwriting something newer.
//! - Events: `events.k8s.io/v1` through kube's recorder, as component `metallb-controller`.
//! - IPAddressPool status: JSON merge patch on the `status` subresource.
//! - ConfigurationState `controller`: server-side apply of the object, then of its status.

use crate::shell::state::{StateTarget, apply_configuration_state};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{self, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use serde_json::{Value, json};

use super::plan::ServiceWrite;
use crate::alloc;
use crate::api::{ConfigurationStateStatus, IPAddressPool, IPAddressPoolStatus};
use crate::views::ServiceKey;

/// The field manager of every write.
pub(crate) const FIELD_MANAGER: &str = "ferrolb-controller";
/// The component Events are reported as (MetalLB's name, so existing alerts match).
pub(crate) const EVENT_COMPONENT: &str = "metallb-controller";
/// The controller's ConfigurationState.
pub(crate) const STATE_NAME: &str = "controller";
/// The longest Event note the API accepts.
const NOTE_LIMIT: usize = 1024;

/// A write that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// Patching a Service's status or annotation.
    #[error("patching Service {key}: {source}")]
    Service {
        /// The Service.
        key: ServiceKey,
        /// Why.
        source: kube::Error,
    },
    /// Recording an Event.
    #[error("recording an Event on Service {key}: {source}")]
    Event {
        /// The Service.
        key: ServiceKey,
        /// Why.
        source: kube::Error,
    },
    /// Patching an IPAddressPool's status.
    #[error("patching the status of IPAddressPool {name}: {source}")]
    PoolStatus {
        /// The pool.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// Applying the ConfigurationState.
    #[error("applying ConfigurationState {STATE_NAME}: {source}")]
    ConfigurationState {
        /// Why.
        source: kube::Error,
    },
}

impl WriteError {
    /// The write lost a race with a newer version of the object; the watch brings that
    /// version, and the next pass decides again.
    pub(crate) fn is_conflict(&self) -> bool {
        let (Self::Service { source, .. }
        | Self::Event { source, .. }
        | Self::PoolStatus { source, .. }
        | Self::ConfigurationState { source }) = self;
        matches!(source, kube::Error::Api(status) if status.code == 409)
    }
}

/// Writes the controller's decisions.
#[derive(Clone)]
pub(crate) struct ApiWriter {
    client: Client,
    recorder: Recorder,
    namespace: String,
    owner: Option<OwnerReference>,
}

impl std::fmt::Debug for ApiWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiWriter")
            .field("namespace", &self.namespace)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn with_precondition(mut patch: Value, resource_version: Option<&str>) -> Value {
    if let (Some(rv), Some(object)) = (resource_version, patch.as_object_mut()) {
        let metadata = object.entry("metadata").or_insert_with(|| json!({}));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("resourceVersion".to_string(), json!(rv));
        }
    }
    patch
}

fn truncated(note: &str) -> String {
    if note.len() <= NOTE_LIMIT {
        return note.to_string();
    }
    let mut end = NOTE_LIMIT - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

impl ApiWriter {
    /// A writer for ferrolb's `namespace`. `instance` names this replica in Events (its pod);
    /// `owner` (its pod) owns the ConfigurationState, so it is collected with the pod.
    pub(crate) fn new(
        client: Client,
        namespace: &str,
        instance: Option<String>,
        owner: Option<OwnerReference>,
    ) -> ApiWriter {
        let reporter = Reporter {
            controller: EVENT_COMPONENT.to_string(),
            instance,
        };
        ApiWriter {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace: namespace.to_string(),
            owner,
        }
    }

    /// Applies one Service's patches (status first, so the IP is never announced by the
    /// annotation alone) from the version `resource_version`; returns the Service as written.
    pub(crate) async fn service(
        &self,
        write: &ServiceWrite,
        resource_version: Option<&str>,
    ) -> Result<Option<Service>, WriteError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &write.key.namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let failed = |source| WriteError::Service {
            key: write.key.clone(),
            source,
        };
        let mut version = resource_version.map(str::to_string);
        let mut written = None;
        if let Some(status) = &write.status {
            let patch = with_precondition(status.clone(), version.as_deref());
            let service = api
                .patch_status(&write.key.name, &params, &Patch::Merge(&patch))
                .await
                .map_err(failed)?;
            version.clone_from(&service.metadata.resource_version);
            written = Some(service);
        }
        if let Some(metadata) = &write.metadata {
            let patch = with_precondition(metadata.clone(), version.as_deref());
            let service = api
                .patch(&write.key.name, &params, &Patch::Merge(&patch))
                .await
                .map_err(failed)?;
            written = Some(service);
        }
        Ok(written)
    }

    /// Records `event` on `service`.
    pub(crate) async fn event(
        &self,
        service: &Service,
        event: &alloc::Event,
    ) -> Result<(), WriteError> {
        let reference = service.object_ref(&());
        let published = events::Event {
            type_: if event.type_ == "Warning" {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.to_string(),
            note: Some(truncated(&event.message)),
            action: "Allocate".to_string(),
            secondary: None,
        };
        self.recorder
            .publish(&published, &reference)
            .await
            .map_err(|source| WriteError::Event {
                key: ServiceKey::of(service),
                source,
            })
    }

    /// Sets an IPAddressPool's status.
    pub(crate) async fn pool_status(
        &self,
        name: &str,
        status: &IPAddressPoolStatus,
    ) -> Result<(), WriteError> {
        let api: Api<IPAddressPool> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        api.patch_status(name, &params, &Patch::Merge(json!({ "status": status })))
            .await
            .map(drop)
            .map_err(|source| WriteError::PoolStatus {
                name: name.to_string(),
                source,
            })
    }

    /// Creates or updates the `controller` ConfigurationState with `status`.
    pub(crate) async fn configuration_state(
        &self,
        status: &ConfigurationStateStatus,
    ) -> Result<(), WriteError> {
        apply_configuration_state(
            &self.client,
            &StateTarget {
                namespace: &self.namespace,
                name: STATE_NAME,
                component: "controller",
                field_manager: FIELD_MANAGER,
                owner: self.owner.as_ref(),
            },
            status,
        )
        .await
        .map_err(|source| WriteError::ConfigurationState { source })
    }
}
