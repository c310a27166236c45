//! Label selectors: checked once at load, then matched against label maps.
//!
//! Semantics are Kubernetes': `matchLabels` entries and `matchExpressions` are ANDed; an empty
//! selector matches everything; `NotIn` and `DoesNotExist` match objects without the label.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::error::{Findings, ObjectRef};
use super::names::{check_label_key, check_label_value};

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Requirement {
    /// The label is present with one of the values.
    In(String, BTreeSet<String>),
    /// The label is absent, or present with none of the values.
    NotIn(String, BTreeSet<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A checked label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True for the selector that matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl fmt::Display for Selector {
    /// kubectl's selector syntax: `a=b,c in (x,y),!d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::In(k, vs) if vs.len() == 1 => {
                    format!("{k}={}", vs.iter().next().map_or("", |v| v))
                }
                Requirement::In(k, vs) => format!("{k} in ({})", join(vs)),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", join(vs)),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        if parts.is_empty() {
            f.write_str("<everything>")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

fn join(values: &BTreeSet<String>) -> String {
    values.iter().cloned().collect::<Vec<_>>().join(",")
}

/// Checks one selector at `field` and converts it; errors go to `findings`.
pub(crate) fn parse_selector(
    selector: &LabelSelector,
    object: &ObjectRef,
    field: &str,
    findings: &mut Findings,
) -> Option<Selector> {
    let before = findings.error_count();
    let mut requirements = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        let path = format!("{field}.matchLabels[{key:?}]");
        findings.check(object, &path, check_label_key(key));
        findings.check(object, &path, check_label_value(value));
        requirements.push(Requirement::In(
            key.clone(),
            BTreeSet::from([value.clone()]),
        ));
    }
    let mut seen_expressions = BTreeSet::new();
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{field}.matchExpressions[{i}]");
        findings.check(object, format!("{path}.key"), check_label_key(&expr.key));
        let values = expr.values.clone().unwrap_or_default();
        let mut set = BTreeSet::new();
        for (j, v) in values.iter().enumerate() {
            findings.check(object, format!("{path}.values[{j}]"), check_label_value(v));
            if !set.insert(v.clone()) {
                findings.invalid(
                    object,
                    format!("{path}.values[{j}]"),
                    format!("value {v:?} is listed twice"),
                );
            }
        }
        let requirement = match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                findings.invalid(
                    object,
                    format!("{path}.values"),
                    format!("operator {} needs at least one value", expr.operator),
                );
                continue;
            }
            "In" => Requirement::In(expr.key.clone(), set),
            "NotIn" => Requirement::NotIn(expr.key.clone(), set),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                findings.invalid(
                    object,
                    format!("{path}.values"),
                    format!("operator {} takes no values", expr.operator),
                );
                continue;
            }
            "Exists" => Requirement::Exists(expr.key.clone()),
            "DoesNotExist" => Requirement::DoesNotExist(expr.key.clone()),
            other => {
                findings.invalid(
                    object,
                    format!("{path}.operator"),
                    format!("{other:?} is not a selector operator; use In, NotIn, Exists or DoesNotExist"),
                );
                continue;
            }
        };
        if !seen_expressions.insert(requirement.clone()) {
            findings.invalid(object, path, "the same match expression is listed twice");
            continue;
        }
        requirements.push(requirement);
    }
    (findings.error_count() == before).then_some(Selector { requirements })
}

/// Checks a list of selectors at `field`, rejecting duplicates; `None` if any is invalid.
pub(crate) fn parse_selectors(
    selectors: Option<&Vec<LabelSelector>>,
    object: &ObjectRef,
    field: &str,
    findings: &mut Findings,
) -> Option<Vec<Selector>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, selector) in selectors.into_iter().flatten().enumerate() {
        let path = format!("{field}[{i}]");
        match parse_selector(selector, object, &path, findings) {
            Some(parsed) => {
                if let Some(first) = out.iter().position(|s| *s == parsed) {
                    findings.invalid(
                        object,
                        path,
                        format!("duplicates {field}[{first}] ({parsed})"),
                    );
                    ok = false;
                } else {
                    out.push(parsed);
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Whether any of `selectors` matches `labels`; an empty list matches everything.
pub fn any_matches(selectors: &[Selector], labels: &BTreeMap<String, String>) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

#[cfg(test)]
mod tests;
