//! BFDProfile loading: ranges from MetalLB's CRD and parser, and a name FRR accepts.

use std::collections::BTreeMap;

use super::error::Findings;
use super::{BfdProfile, ClusterObjects, LoadOptions, identify, insert_unique, names};

fn check_range(value: Option<u32>, min: u32, max: u32, unit: &str) -> Result<Option<u32>, String> {
    match value {
        Some(v) if v < min || v > max => Err(format!(
            "{v} is outside the accepted range {min}–{max}{unit}"
        )),
        other => Ok(other),
    }
}

pub(super) fn load(
    objects: &ClusterObjects,
    options: &LoadOptions,
    findings: &mut Findings,
) -> BTreeMap<String, BfdProfile> {
    let mut out = BTreeMap::new();
    for object in &objects.bfd_profiles {
        let Some(reference) = identify(object, options, findings) else {
            continue;
        };
        let before = findings.error_count();
        findings.check(
            &reference,
            "metadata.name",
            names::check_bfd_profile_name(&reference.name),
        );
        let spec = &object.spec;
        let ms = " ms";
        let profile = BfdProfile {
            name: reference.name.clone(),
            receive_interval: findings
                .check(
                    &reference,
                    "spec.receiveInterval",
                    check_range(spec.receive_interval, 10, 60000, ms),
                )
                .flatten(),
            transmit_interval: findings
                .check(
                    &reference,
                    "spec.transmitInterval",
                    check_range(spec.transmit_interval, 10, 60000, ms),
                )
                .flatten(),
            detect_multiplier: findings
                .check(
                    &reference,
                    "spec.detectMultiplier",
                    check_range(spec.detect_multiplier, 2, 255, ""),
                )
                .flatten(),
            echo_interval: findings
                .check(
                    &reference,
                    "spec.echoInterval",
                    check_range(spec.echo_interval, 10, 60000, ms),
                )
                .flatten(),
            echo_mode: spec.echo_mode.unwrap_or(false),
            passive_mode: spec.passive_mode.unwrap_or(false),
            minimum_ttl: findings
                .check(
                    &reference,
                    "spec.minimumTtl",
                    check_range(spec.minimum_ttl, 1, 254, ""),
                )
                .flatten(),
        };
        if findings.error_count() == before {
            insert_unique(&mut out, &reference, profile, findings);
        }
    }
    out
}
