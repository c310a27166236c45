//! How ferrolb spells the FRR commands it types, object by object, and what goes with the
//! spelling: FRR's defaults ([`defaults`]) and which daemon takes which command
//! ([`daemons`]). The delta ([`super::delta`]) types these lines, the vty router sends them
//! to their daemons, the model leaves defaults out as FRR does, and the blank check knows
//! ferrolb's commands by them. The template (`frr-templates/frr.conf.tera`) renders whole
//! configurations for boot and reloads; a test checks that the lines spelled here for every
//! object of a model are the lines the template renders for it.

pub(crate) mod daemons;
pub(crate) mod defaults;
mod word;

pub use word::{Line, NotFrrText, Word};

#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use super::model::{
    BfdProfileConfig, Neighbor, NeighborPolicy, PrefixListEntry, RouteMapEntry, Router,
};

/// The line that sets bgpd's route-map delay.
pub(crate) fn route_map_delay_line(seconds: u32) -> String {
    format!("bgp route-map delay-timer {seconds}")
}

/// The lines inside `profile NAME` that turn `before` (absent: all defaults) into `after`.
/// A field back at its default is typed with the default value, which FRR then leaves out.
pub(crate) fn bfd_profile_lines(
    before: Option<&BfdProfileConfig>,
    after: &BfdProfileConfig,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut number = |get: fn(&BfdProfileConfig) -> Option<u32>, command: &str, default: u32| {
        let was = before.and_then(get);
        let is = get(after);
        if was != is {
            lines.push(format!("  {command} {}", is.unwrap_or(default)));
        }
    };
    number(
        |p| p.detect_multiplier,
        "detect-multiplier",
        defaults::BFD_DETECT_MULTIPLIER,
    );
    number(
        |p| p.transmit_interval,
        "transmit-interval",
        defaults::BFD_INTERVAL_MS,
    );
    number(
        |p| p.receive_interval,
        "receive-interval",
        defaults::BFD_INTERVAL_MS,
    );
    let echo = defaults::BFD_ECHO_INTERVAL_MS;
    number(|p| p.echo_interval, "echo transmit-interval", echo);
    number(|p| p.echo_interval, "echo receive-interval", echo);
    number(|p| p.minimum_ttl, "minimum-ttl", defaults::BFD_MINIMUM_TTL);
    let mut flag = |get: fn(&BfdProfileConfig) -> bool, command: &str| {
        let was = before.is_some_and(get);
        if was != get(after) {
            lines.push(if get(after) {
                format!("  {command}")
            } else {
                format!("  no {command}")
            });
        }
    };
    flag(|p| p.passive_mode, "passive-mode");
    flag(|p| p.echo_mode, "echo-mode");
    lines
}

/// `ip|ipv6 prefix-list NAME seq N ACTION PREFIX [le M]`, without a leading `no`.
pub(crate) fn prefix_list_line(family: &str, name: &str, entry: &PrefixListEntry) -> String {
    let mut line = format!(
        "{family} prefix-list {name} seq {} {} ",
        entry.seq, entry.action
    );
    match entry.prefix {
        Some(prefix) => {
            let _ = write!(line, "{prefix}");
        }
        None => line.push_str("any"),
    }
    if let Some(le) = entry.le {
        let _ = write!(line, " le {le}");
    }
    line
}

/// One route-map entry from `route-map NAME ACTION SEQ` to its `exit`.
pub(crate) fn route_map_entry_lines(name: &str, entry: &RouteMapEntry) -> Vec<String> {
    let mut lines = vec![format!("route-map {name} {} {}", entry.action, entry.seq)];
    if let Some((family, list)) = &entry.match_prefix_list {
        lines.push(format!(" match {family} address prefix-list {list}"));
    }
    lines.extend(entry.set.iter().map(|s| format!(" set {s}")));
    lines.push("exit".into());
    lines
}

/// `router bgp ASN [vrf VRF]`, which opens (or, after `no `, removes) a router.
pub(crate) fn router_line(router: &Router) -> String {
    match &router.vrf {
        Some(vrf) => format!("router bgp {} vrf {vrf}", router.asn),
        None => format!("router bgp {}", router.asn),
    }
}

/// The lines every router of ferrolb's carries.
const FIXED_ROUTER_LINES: [&str; 5] = [
    " bgp log-neighbor-changes",
    " no bgp ebgp-requires-policy",
    " no bgp default ipv4-unicast",
    " bgp graceful-restart preserve-fw-state",
    " no bgp network import-check",
];

/// Every line inside a new router: its settings, neighbours and address families.
pub(crate) fn router_body(router: &Router, out: &mut Vec<String>) {
    if let Some(id) = router.router_id {
        out.push(format!(" bgp router-id {id}"));
    }
    out.extend(FIXED_ROUTER_LINES.iter().map(|l| (*l).to_string()));
    out.push(format!(" coalesce-time {}", router.coalesce_time));
    for neighbor in &router.neighbors {
        out.extend(neighbor_lines(neighbor));
    }
    for (name, af) in [("ipv4", &router.ipv4), ("ipv6", &router.ipv6)] {
        if let Some(af) = af {
            out.push(format!(" address-family {name} unicast"));
            out.extend(af.networks.iter().map(|n| format!("  network {n}")));
            for policy in &af.neighbors {
                out.extend(activation_lines(policy));
            }
            out.push(" exit-address-family".into());
        }
    }
}

/// `neighbor X [interface] remote-as AS`, which creates a neighbour.
pub(crate) fn remote_as_line(n: &Neighbor) -> String {
    if n.interface {
        format!(" neighbor {} interface remote-as {}", n.peer, n.remote_as)
    } else {
        format!(" neighbor {} remote-as {}", n.peer, n.remote_as)
    }
}

/// Every line of a new neighbour, in the template's order.
pub(crate) fn neighbor_lines(n: &Neighbor) -> Vec<String> {
    let mut lines = vec![remote_as_line(n)];
    lines.extend(attribute_sets(None, n));
    lines
}

/// The lines that set the attributes `n` has and `before` has not (all of them when
/// `before` is `None`), in the template's order.
pub(crate) fn attribute_sets(before: Option<&Neighbor>, n: &Neighbor) -> Vec<String> {
    let p = &n.peer;
    let mut lines = Vec::new();
    let changed = |f: &dyn Fn(&Neighbor) -> String| before.is_none_or(|b| f(b) != f(n));
    if let Some(asn) = n.local_as
        && changed(&|x| format!("{:?}", x.local_as))
    {
        lines.push(format!(
            " neighbor {p} local-as {asn} no-prepend replace-as"
        ));
    }
    if let Some(profile) = &n.bfd_profile
        && changed(&|x| format!("{:?}", x.bfd_profile))
    {
        if before.is_none_or(|b| b.bfd_profile.is_none()) {
            lines.push(format!(" neighbor {p} bfd"));
        }
        lines.push(format!(" neighbor {p} bfd profile {profile}"));
    }
    if let Some(password) = &n.password
        && changed(&|x| format!("{:?}", x.password))
    {
        lines.push(format!(" neighbor {p} password {password}"));
    }
    if let Some(port) = n.port
        && changed(&|x| format!("{:?}", x.port))
    {
        lines.push(format!(" neighbor {p} port {port}"));
    }
    if n.ebgp_multihop && changed(&|x| x.ebgp_multihop.to_string()) {
        lines.push(format!(" neighbor {p} ebgp-multihop 255"));
    }
    if n.disable_connected_check && changed(&|x| x.disable_connected_check.to_string()) {
        lines.push(format!(" neighbor {p} disable-connected-check"));
    }
    if let Some(source) = &n.update_source
        && changed(&|x| format!("{:?}", x.update_source))
    {
        lines.push(format!(" neighbor {p} update-source {source}"));
    }
    if let Some((keepalive, hold)) = n.timers
        && changed(&|x| format!("{:?}", x.timers))
    {
        lines.push(format!(" neighbor {p} timers {keepalive} {hold}"));
    }
    if let Some(connect) = n.connect_time
        && changed(&|x| format!("{:?}", x.connect_time))
    {
        lines.push(format!(" neighbor {p} timers connect {connect}"));
    }
    if n.graceful_restart && changed(&|x| x.graceful_restart.to_string()) {
        lines.push(format!(" neighbor {p} graceful-restart"));
    }
    lines
}

/// The `no` lines for attributes `before` has and `n` has not.
pub(crate) fn attribute_removals(before: &Neighbor, n: &Neighbor) -> Vec<String> {
    let p = &n.peer;
    let mut lines = Vec::new();
    if before.local_as.is_some() && n.local_as.is_none() {
        lines.push(format!(" no neighbor {p} local-as"));
    }
    if before.bfd_profile.is_some() && n.bfd_profile.is_none() {
        lines.push(format!(" no neighbor {p} bfd"));
    }
    if before.password.is_some() && n.password.is_none() {
        lines.push(format!(" no neighbor {p} password"));
    }
    if before.port.is_some() && n.port.is_none() {
        lines.push(format!(" no neighbor {p} port"));
    }
    if before.ebgp_multihop && !n.ebgp_multihop {
        lines.push(format!(" no neighbor {p} ebgp-multihop"));
    }
    if before.disable_connected_check && !n.disable_connected_check {
        lines.push(format!(" no neighbor {p} disable-connected-check"));
    }
    if before.update_source.is_some() && n.update_source.is_none() {
        lines.push(format!(" no neighbor {p} update-source"));
    }
    if before.timers.is_some() && n.timers.is_none() {
        lines.push(format!(" no neighbor {p} timers"));
    }
    if before.connect_time.is_some() && n.connect_time.is_none() {
        lines.push(format!(" no neighbor {p} timers connect"));
    }
    if before.graceful_restart && !n.graceful_restart {
        lines.push(format!(" no neighbor {p} graceful-restart"));
    }
    lines
}

/// A neighbour's lines in an address family: activated, with its inbound and outbound
/// route-maps.
pub(crate) fn activation_lines(policy: &NeighborPolicy) -> [String; 3] {
    let p = &policy.peer;
    [
        format!("  neighbor {p} activate"),
        format!("  neighbor {p} route-map {} in", policy.route_map_in),
        format!("  neighbor {p} route-map {} out", policy.route_map_out),
    ]
}
