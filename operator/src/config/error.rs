//! The one error type of configuration loading: which object, which field, why.

use std::fmt::{self, Display};

/// Identifies one object of the input: `Kind/namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The object's kind, e.g. `IPAddressPool`.
    pub kind: String,
    /// The object's namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to an object of `kind` named `name` in `namespace`.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Whether an error goes away by itself once another object appears.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The object is wrong and must be changed.
    Invalid,
    /// The object names another object (BFDProfile, Community alias, Secret) that does not
    /// exist yet. MetalLB treats these as transient: the configuration loads once it exists.
    MissingReference,
}

/// A configuration error: the object, the field path within it and the reason, in words a
/// user can act on. Displayed as `Kind/namespace/name: field: reason`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[error("{object}: {field}: {reason}")]
pub struct ConfigError {
    /// The object at fault.
    pub object: ObjectRef,
    /// The field path, e.g. `spec.addresses[1]`.
    pub field: String,
    /// Why the value is not accepted.
    pub reason: String,
    /// Whether the error is permanent or waits for a missing object.
    pub kind: ErrorKind,
}

impl ConfigError {
    /// An error the user must fix in `object`.
    pub fn invalid(object: &ObjectRef, field: impl Into<String>, why: impl Into<String>) -> Self {
        Self::of_kind(ErrorKind::Invalid, object, field.into(), why.into())
    }

    /// An error that clears once the referenced object exists.
    pub fn missing(object: &ObjectRef, field: impl Into<String>, why: impl Into<String>) -> Self {
        Self::of_kind(
            ErrorKind::MissingReference,
            object,
            field.into(),
            why.into(),
        )
    }

    fn of_kind(kind: ErrorKind, object: &ObjectRef, field: String, reason: String) -> Self {
        ConfigError {
            object: object.clone(),
            field,
            reason,
            kind,
        }
    }

    /// True when the error clears by itself once a referenced object is created.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::MissingReference
    }
}

/// Something accepted but probably not meant: deprecated fields, references to objects that
/// do not exist (which MetalLB ignores), values that were silently corrected.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigWarning {
    /// The object concerned.
    pub object: ObjectRef,
    /// The field path.
    pub field: String,
    /// What is off and what happens.
    pub reason: String,
}

impl ConfigWarning {
    /// A warning about `field` of `object`.
    pub fn new(object: &ObjectRef, field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigWarning {
            object: object.clone(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.reason)
    }
}

/// Collects the errors and warnings of one load, so every problem is reported at once.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
}

impl Findings {
    /// An error the user must fix in `object`.
    pub(crate) fn invalid(&mut self, object: &ObjectRef, field: impl Display, why: impl Display) {
        let error = ConfigError::invalid(object, field.to_string(), why.to_string());
        self.errors.push(error);
    }

    /// An error that clears once the object `object` names exists.
    pub(crate) fn missing(&mut self, object: &ObjectRef, field: impl Display, why: impl Display) {
        let error = ConfigError::missing(object, field.to_string(), why.to_string());
        self.errors.push(error);
    }

    /// Something accepted but probably not meant.
    pub(crate) fn warn(&mut self, object: &ObjectRef, field: impl Display, why: impl Display) {
        let warning = ConfigWarning::new(object, field.to_string(), why.to_string());
        self.warnings.push(warning);
    }

    /// Records `result`'s error, if any, against `field`, and returns its value.
    pub(crate) fn check<T>(
        &mut self,
        object: &ObjectRef,
        field: impl Display,
        result: Result<T, String>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(reason) => {
                self.invalid(object, field, reason);
                None
            }
        }
    }

    /// Number of errors recorded so far; compare before and after a check to see if it failed.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }
}
