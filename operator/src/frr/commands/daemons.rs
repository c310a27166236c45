//! Which daemon takes which command, and the commands that are ferrolb's.

use super::super::dialect::Dialect;

/// The daemons that own a top-level line of ferrolb's grammar on FRR of `dialect`: those that
/// must take it, and those that take a copy: vtysh sends route-maps to zebra as well and
/// prefix-lists to zebra and bfdd, so an FRR loaded by `vtysh -b` or `frr-reload.py` has them
/// there, and `show running-config` prints every daemon's copy; a copy left behind by a
/// removal would be a difference no delta clears. Zebra's lines go to
/// [`Dialect::zebra_front`].
pub(crate) fn owners(
    line: &str,
    dialect: Dialect,
) -> Option<(&'static [&'static str], &'static [&'static str])> {
    let bare = line.strip_prefix("no ").unwrap_or(line);
    let first = bare.split_whitespace().next()?;
    let second = bare.split_whitespace().nth(1).unwrap_or("");
    let zebra = dialect.zebra_front();
    match (first, second) {
        ("log", _) => Some((&["*"], &[])),
        ("ip" | "ipv6", "nht") => Some((zebra, &[])),
        ("ip" | "ipv6", "prefix-list") => Some((&["bgpd"], dialect.prefix_list_copies())),
        ("route-map", _) => Some((&["bgpd"], zebra)),
        ("router", "bgp") | ("bgp", "route-map") => Some((&["bgpd"], &[])),
        ("bfd", "") => Some((&["bfdd"], &[])),
        _ => None,
    }
}

/// How the top-level lines ferrolb configures start: an FRR printing none of them is blank,
/// as a freshly started one is. Logging lines do not count: the chart's pod starts FRR with
/// `log stdout` set, and the delta from a blank FRR types ferrolb's logging lines anyway
/// (counted, they sent every new speaker pod's first apply to `frr-reload.py`: 12 s of both
/// cores with 10,000 Services).
pub(crate) const OURS: [&str; 7] = [
    "router ",
    "ip prefix-list",
    "ipv6 prefix-list",
    "route-map ",
    "bfd",
    "ip nht",
    "ipv6 nht",
];
