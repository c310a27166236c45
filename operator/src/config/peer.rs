//! BGPPeer loading: session fields, MetalLB's timer derivation, passwords and their Secrets,
//! BFD profile references, and FRR's per-node rules across peers (one router ID and, per VRF,
//! one local AS per node; no two sessions to the same address or interface).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

use super::error::{Findings, ObjectRef};
use super::selector::parse_selectors;
use super::{
    BfdProfile, ClusterObjects, LoadOptions, Password, Peer, PeerAsn, PeerEndpoint, Timers,
    identify, insert_unique, labels_of, names,
};
use crate::api::{BGPPeerSpec, DynamicAsnMode};

/// The Secret type a passwordSecret must have.
pub(super) const BASIC_AUTH: &str = "kubernetes.io/basic-auth";
const DEFAULT_PORT: u16 = 179;
const MAX_PORT: u16 = 16384;

pub(super) fn load(
    objects: &ClusterObjects,
    options: &LoadOptions,
    bfd_profiles: &BTreeMap<String, BfdProfile>,
    findings: &mut Findings,
) -> BTreeMap<String, Peer> {
    let known_profiles: Vec<String> = objects
        .bfd_profiles
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let mut out = BTreeMap::new();
    for object in &objects.peers {
        let Some(reference) = identify(object, options, findings) else {
            continue;
        };
        let before = findings.error_count();
        let peer = load_one(&object.spec, &reference, objects, options, findings);
        if let Some(profile) = &object.spec.bfd_profile
            && findings
                .check(
                    &reference,
                    "spec.bfdProfile",
                    names::check_bfd_profile_name(profile),
                )
                .is_some()
            && !bfd_profiles.contains_key(profile)
            && !known_profiles.contains(profile)
        {
            findings.missing(
                &reference,
                "spec.bfdProfile",
                format!("BFDProfile {profile:?} does not exist; the configuration loads once it is created"),
            );
        }
        if let Some(peer) = peer
            && findings.error_count() == before
        {
            insert_unique(&mut out, &reference, peer, findings);
        }
    }
    check_frr_node_rules(&out, objects, options, findings);
    out
}

fn load_one(
    spec: &BGPPeerSpec,
    reference: &ObjectRef,
    objects: &ClusterObjects,
    options: &LoadOptions,
    findings: &mut Findings,
) -> Option<Peer> {
    let before = findings.error_count();
    if spec.my_asn == 0 {
        findings.invalid(
            reference,
            "spec.myASN",
            "must be set to the node's AS number (0 is not an AS number)",
        );
    }
    let peer_asn = match (spec.peer_asn.filter(|n| *n != 0), spec.dynamic_asn) {
        (Some(n), None) => Some(PeerAsn::Number(n)),
        (None, Some(DynamicAsnMode::Internal)) => Some(PeerAsn::Internal),
        (None, Some(DynamicAsnMode::External)) => Some(PeerAsn::External),
        (None, None) => {
            findings.invalid(
                reference,
                "spec.peerASN",
                "one of peerASN and dynamicASN must be set",
            );
            None
        }
        (Some(_), Some(_)) => {
            findings.invalid(
                reference,
                "spec.dynamicASN",
                "peerASN and dynamicASN are mutually exclusive; set one",
            );
            None
        }
    };
    let ebgp_multihop = spec.ebgp_multi_hop.unwrap_or(false);
    let ibgp = peer_asn.is_some_and(|asn| asn.is_internal_to(spec.my_asn));
    if ebgp_multihop && ibgp {
        findings.invalid(
            reference,
            "spec.ebgpMultiHop",
            "is for eBGP sessions, but the peer is in the node's own AS (iBGP); iBGP sessions may span hops without it",
        );
    }
    match spec.local_asn {
        Some(0) => findings.invalid(
            reference,
            "spec.localASN",
            "must be between 1 and 4294967295",
        ),
        Some(_) if ibgp => findings.invalid(
            reference,
            "spec.localASN",
            "applies to eBGP sessions only, but the peer is in the node's own AS (iBGP); FRR rejects local-as on iBGP sessions",
        ),
        Some(local) if local == spec.my_asn => findings.invalid(
            reference,
            "spec.localASN",
            format!("{local} equals myASN; a local AS must differ from the AS it replaces"),
        ),
        Some(local) if peer_asn == Some(PeerAsn::Number(local)) => findings.invalid(
            reference,
            "spec.localASN",
            format!("{local} equals peerASN; FRR rejects a local AS equal to the router's AS"),
        ),
        _ => {}
    }
    let endpoint = match (spec.peer_address.as_deref(), spec.interface.as_deref()) {
        (Some(address), None) => findings
            .check(reference, "spec.peerAddress", parse_ip(address))
            .map(PeerEndpoint::Address),
        (None, Some(interface)) => findings
            .check(
                reference,
                "spec.interface",
                names::check_interface(interface),
            )
            .map(|()| PeerEndpoint::Interface(interface.to_string())),
        (None, None) => {
            findings.invalid(
                reference,
                "spec.peerAddress",
                "one of peerAddress and interface must be set",
            );
            None
        }
        (Some(_), Some(_)) => {
            findings.invalid(
                reference,
                "spec.interface",
                "peerAddress and interface are mutually exclusive: a session goes to an address or is unnumbered over an interface",
            );
            None
        }
    };
    let source_address = spec
        .source_address
        .as_deref()
        .and_then(|s| findings.check(reference, "spec.sourceAddress", parse_ip(s)));
    let router_id = spec.router_id.as_deref().and_then(|s| {
        findings.check(
            reference,
            "spec.routerID",
            Ipv4Addr::from_str(s).map_err(|_| {
                format!("{s:?} is not a router ID: BGP router IDs are written as IPv4 addresses")
            }),
        )
    });
    let port = match spec.peer_port {
        None | Some(0) => DEFAULT_PORT,
        Some(p) if p > MAX_PORT => {
            findings.invalid(
                reference,
                "spec.peerPort",
                format!("{p} is above {MAX_PORT}, the highest port accepted"),
            );
            DEFAULT_PORT
        }
        Some(p) => p,
    };
    let timers = match derive_timers(spec.hold_time.as_deref(), spec.keepalive_time.as_deref()) {
        Ok(timers) => timers,
        Err((field, reason)) => {
            findings.invalid(reference, field, reason);
            None
        }
    };
    let connect_time = spec
        .connect_time
        .as_deref()
        .and_then(|text| findings.check(reference, "spec.connectTime", parse_connect_time(text)));
    let node_selectors = parse_selectors(
        spec.node_selectors.as_ref(),
        reference,
        "spec.nodeSelectors",
        findings,
    );
    let vrf = spec.vrf.as_deref().filter(|v| !v.is_empty()).and_then(|v| {
        findings
            .check(reference, "spec.vrf", names::check_vrf(v))
            .map(|()| v.to_string())
    });
    let (password, password_secret) = load_password(spec, reference, objects, options, findings);
    if spec.disable_mp == Some(true) {
        findings.warn(
            reference,
            "spec.disableMP",
            "is deprecated and has no effect: IPv4 and IPv6 prefixes always travel in their own address family; use dualStackAddressFamily to send both over one session",
        );
    }
    if findings.error_count() != before {
        return None;
    }
    Some(Peer {
        name: reference.name.clone(),
        my_asn: spec.my_asn,
        peer_asn: peer_asn?,
        local_asn: spec.local_asn,
        endpoint: endpoint?,
        source_address,
        port,
        timers,
        connect_time,
        router_id,
        node_selectors: node_selectors?,
        password,
        password_secret,
        bfd_profile: spec.bfd_profile.clone(),
        graceful_restart: spec.enable_graceful_restart.unwrap_or(false),
        ebgp_multihop,
        vrf,
        dual_stack_address_family: spec.dual_stack_address_family.unwrap_or(false),
    })
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(text).map_err(|_| format!("{text:?} is not an IP address"))
}

/// Parses a Kubernetes duration (`90s`, `1m30s`, `500ms`), refusing negative values.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = kube::core::Duration::from_str(text)
        .map_err(|e| format!("{text:?} is not a duration like 90s, 1m30s or 500ms ({e})"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?} is negative"));
    }
    Ok(parsed.into())
}

fn parse_connect_time(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{text:?} is not a whole number of seconds"));
    }
    if !(1..=65535).contains(&d.as_secs()) {
        return Err(format!("{text:?} is outside 1s–65535s"));
    }
    Ok(d)
}

/// MetalLB's timer rule: neither set keeps FRR's defaults; hold alone gives keepalive =
/// hold/3; keepalive alone gives hold = 3×keepalive; hold, in whole seconds, must be 0 or at
/// least 3s; keepalive may not exceed hold. Errors carry their field path.
fn derive_timers(
    hold: Option<&str>,
    keepalive: Option<&str>,
) -> Result<Option<Timers>, (&'static str, String)> {
    const HOLD: &str = "spec.holdTime";
    const KEEPALIVE: &str = "spec.keepaliveTime";
    let hold_d = hold
        .map(parse_duration)
        .transpose()
        .map_err(|e| (HOLD, e))?;
    let keepalive_d = keepalive
        .map(parse_duration)
        .transpose()
        .map_err(|e| (KEEPALIVE, e))?;
    let (hold_d, keepalive_d) = match (hold_d, keepalive_d) {
        (None, None) => return Ok(None),
        (Some(h), Some(k)) => (h, k),
        (Some(h), None) => (h, h / 3),
        (None, Some(k)) => (k * 3, k),
    };
    let whole = hold_d.as_secs();
    if whole != 0 && whole < 3 {
        let (field, what) = match hold {
            Some(h) => (HOLD, format!("{h:?}")),
            None => (
                KEEPALIVE,
                format!(
                    "{:?} gives a hold time of {}s, which",
                    keepalive.unwrap_or_default(),
                    hold_d.as_secs_f64()
                ),
            ),
        };
        return Err((
            field,
            format!("{what} is too short: the hold time must be 0 (no keepalives) or at least 3s"),
        ));
    }
    if keepalive_d > hold_d {
        return Err((
            KEEPALIVE,
            format!(
                "{:?} is longer than the hold time ({}s); keepalives must come before the hold time runs out",
                keepalive.unwrap_or_default(),
                hold_d.as_secs_f64()
            ),
        ));
    }
    Ok(Some(Timers {
        hold: hold_d,
        keepalive: keepalive_d,
    }))
}

fn load_password(
    spec: &BGPPeerSpec,
    reference: &ObjectRef,
    objects: &ClusterObjects,
    options: &LoadOptions,
    findings: &mut Findings,
) -> (Option<Password>, Option<String>) {
    let inline = spec.password.as_deref().filter(|p| !p.is_empty());
    let secret_ref = spec
        .password_secret
        .as_ref()
        .and_then(|s| s.name.as_deref())
        .filter(|n| !n.is_empty());
    match (inline, secret_ref) {
        (Some(_), Some(_)) => {
            findings.invalid(
                reference,
                "spec.passwordSecret",
                "password and passwordSecret are mutually exclusive; keep one",
            );
            (None, None)
        }
        (Some(p), None) => {
            let password = findings
                .check(reference, "spec.password", names::check_password(p))
                .map(|()| Password::new(p.to_string()));
            (password, None)
        }
        (None, Some(name)) => {
            if let Some(ns) = spec
                .password_secret
                .as_ref()
                .and_then(|s| s.namespace.as_deref())
                && !ns.is_empty()
                && ns != options.namespace
            {
                findings.warn(
                    reference,
                    "spec.passwordSecret.namespace",
                    format!(
                        "{ns:?} is ignored: the Secret is read from {:?}, ferrolb's namespace",
                        options.namespace
                    ),
                );
            }
            let secret = objects.secrets.iter().find(|s| {
                s.metadata.name.as_deref() == Some(name)
                    && s.metadata
                        .namespace
                        .as_deref()
                        .unwrap_or(&options.namespace)
                        == options.namespace
            });
            let Some(secret) = secret else {
                findings.missing(
                    reference,
                    "spec.passwordSecret.name",
                    format!(
                        "Secret {name:?} does not exist in namespace {:?}; the configuration loads once it is created",
                        options.namespace
                    ),
                );
                return (None, Some(name.to_string()));
            };
            let password = findings.check(
                reference,
                "spec.passwordSecret.name",
                password_from_secret(secret, name),
            );
            (password.map(Password::new), Some(name.to_string()))
        }
        (None, None) => (None, None),
    }
}

fn password_from_secret(secret: &Secret, name: &str) -> Result<String, String> {
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    if kind != BASIC_AUTH {
        return Err(format!(
            "Secret {name:?} has type {kind:?}; a BGP password Secret must be of type {BASIC_AUTH:?}"
        ));
    }
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get("password"))
        .map(|b| b.0.clone());
    let from_string_data = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get("password"))
        .map(|s| s.clone().into_bytes());
    let bytes = from_string_data
        .or(from_data)
        .ok_or_else(|| format!("Secret {name:?} has no \"password\" key"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the \"password\" key of Secret {name:?} is not UTF-8 text"))?;
    names::check_password(&text).map_err(|e| format!("Secret {name:?}: {e}"))?;
    Ok(text)
}

/// FRR runs one `router bgp` per VRF on a node, so peers that can land on the same node must
/// agree: one router ID (MetalLB requires it across VRFs too), one local AS per VRF, and no
/// two sessions to the same address or interface in the same VRF. Pairs are checked only
/// when some Node matches both peers' nodeSelectors (all pairs when no Nodes are known).
fn check_frr_node_rules(
    peers: &BTreeMap<String, Peer>,
    objects: &ClusterObjects,
    options: &LoadOptions,
    findings: &mut Findings,
) {
    let node_labels: Vec<(String, BTreeMap<String, String>)> = objects
        .nodes
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), labels_of(n)))
        .collect();
    let shared_node = |a: &Peer, b: &Peer| -> Option<Option<String>> {
        if node_labels.is_empty() {
            return Some(None);
        }
        node_labels
            .iter()
            .find(|(_, labels)| a.selects_node(labels) && b.selects_node(labels))
            .map(|(name, _)| Some(name.clone()))
    };
    let list: Vec<&Peer> = peers.values().collect();
    for (j, later) in list.iter().enumerate() {
        for earlier in &list[..j] {
            let Some(node) = shared_node(earlier, later) else {
                continue;
            };
            let place = match &node {
                Some(n) => format!("both apply to node {n:?}"),
                None => {
                    "no Node objects were given, so both may apply to the same node".to_string()
                }
            };
            let reference = ObjectRef::new("BGPPeer", &options.namespace, &later.name);
            if earlier.router_id != later.router_id {
                let show = |r: Option<Ipv4Addr>| {
                    r.map_or("unset".to_string(), |r| format!("{:?}", r.to_string()))
                };
                findings.invalid(
                    &reference,
                    "spec.routerID",
                    format!(
                        "{} differs from {} of BGPPeer {:?} and {place}; FRR uses one router ID per node",
                        show(later.router_id),
                        show(earlier.router_id),
                        earlier.name
                    ),
                );
            }
            if earlier.vrf == later.vrf {
                if earlier.my_asn != later.my_asn {
                    findings.invalid(
                        &reference,
                        "spec.myASN",
                        format!(
                            "{} differs from {} of BGPPeer {:?} in the same VRF, and {place}; FRR runs one BGP instance per VRF with one AS number",
                            later.my_asn, earlier.my_asn, earlier.name
                        ),
                    );
                }
                if earlier.endpoint == later.endpoint {
                    let field = match later.endpoint {
                        PeerEndpoint::Address(_) => "spec.peerAddress",
                        PeerEndpoint::Interface(_) => "spec.interface",
                    };
                    findings.invalid(
                        &reference,
                        field,
                        format!(
                            "BGPPeer {:?} already has a session to {} in the same VRF, and {place}; FRR allows one session per neighbor",
                            earlier.name, later.endpoint
                        ),
                    );
                }
            }
        }
    }
}
