//! FRR's running configuration as text: `show running-config` normalised to what ferrolb
//! renders, a canonical form in which print order does not count, the digests that compare
//! two configurations in about a millisecond, and the difference told in words. Used by the
//! apply path, the vty reader and the drift check alike.

use super::commands::daemons::OURS;

/// The line vtysh prints before the running configuration.
const RUNNING_CONFIG_MARKER: &str = "Current configuration:";

/// Whether a running configuration holds nothing ferrolb configures: no router, list,
/// route-map, BFD or next-hop tracking line (what a freshly started FRR prints, whatever its
/// logging).
pub fn is_blank(running: &str) -> bool {
    !running
        .lines()
        .any(|line| OURS.iter().any(|ours| line.starts_with(ours)))
}

/// `show running-config` as ferrolb renders it: without the banner, `frr version`,
/// `hostname`, `service integrated-vtysh-config` and `end`, which depend on the host, and
/// without an empty `bfd` block (what bfdd keeps printing once `frr-reload.py` has removed
/// its last profile; it configures nothing). Whatever vtysh printed before the banner
/// (messages of earlier commands) is dropped too.
pub fn normalise_running(output: &str) -> String {
    let body = match output.find(RUNNING_CONFIG_MARKER) {
        Some(at) => &output[at + RUNNING_CONFIG_MARKER.len()..],
        None => output,
    };
    let mut lines = body.lines().skip_while(|l| l.trim().is_empty()).peekable();
    if lines.peek() == Some(&"!") {
        lines.next();
    }
    let mut out = String::with_capacity(body.len());
    while let Some(line) = lines.next() {
        if line.starts_with("frr version ")
            || line.starts_with("hostname ")
            || line == "service integrated-vtysh-config"
            || line == "end"
        {
            continue;
        }
        if line == "bfd" && lines.peek() == Some(&"exit") {
            lines.next();
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A configuration as the set of its lines, each with the lines it sits under (`router bgp
/// 64512 > address-family ipv4 unicast > network 192.0.2.1/32`), sorted, each once. FRR
/// prints route-maps, prefix-lists, BFD profiles and VRF routers in the order they were
/// created, so after a delta the same configuration can print in another order than a
/// fresh load; this form is the same for both. It is also the same for vtysh's merged view
/// and for the daemons' parts read one by one, where lines every daemon prints (`frr
/// defaults`, `log …`) and the lists zebra mirrors appear more than once. Separators and
/// comments (`!…`) and block ends (`exit`, `exit-address-family`) carry no meaning and are
/// left out.
pub fn canonical(text: &str) -> Vec<String> {
    let mut out = walk(text, |parent: Option<&String>, line| match parent {
        Some(parent) => format!("{parent} > {line}"),
        None => line.to_string(),
    });
    out.sort_unstable();
    out.dedup();
    out
}

/// Calls `node` on each line that carries meaning (no separators, comments or block ends),
/// with what it returned for the line's parent (the nearest line above it with less
/// indentation); returns what it returned, in line order.
fn walk<T: Clone>(text: &str, mut node: impl FnMut(Option<&T>, &str) -> T) -> Vec<T> {
    let mut stack: Vec<(usize, T)> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty()
            || trimmed.starts_with('!')
            || trimmed == "exit"
            || trimmed == "exit-address-family"
        {
            continue;
        }
        let depth = line.len() - trimmed.len();
        while stack.last().is_some_and(|(d, _)| *d >= depth) {
            stack.pop();
        }
        let value = node(stack.last().map(|(_, v)| v), trimmed);
        out.push(value.clone());
        stack.push((depth, value));
    }
    out
}

/// Whether FRR's running configuration holds exactly the rendered one, in any print order:
/// the same [`canonical`] lines, compared through [`digest`].
pub fn same_configuration(rendered: &str, running: &str) -> bool {
    rendered == running || digest(rendered) == digest(running)
}

/// [`canonical`] as 64-bit hashes, sorted, each once: a line's hash covers its text and its
/// parent's hash, so it stands for the whole path without building it. Comparing digests of
/// two 10,000-line configurations takes about a millisecond, where sorting the path strings
/// takes tens; the chance that two different configurations give the same digest is that of
/// a 64-bit collision.
pub fn digest(text: &str) -> Vec<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut out = walk(text, |parent: Option<&u64>, line| {
        // SipHash with fixed keys: the same line hashes the same in every process.
        let mut hasher = std::hash::DefaultHasher::new();
        parent.copied().unwrap_or(0).hash(&mut hasher);
        line.hash(&mut hasher);
        hasher.finish()
    });
    out.sort_unstable();
    out.dedup();
    out
}

/// What differs between two configurations, for messages: the first few lines missing from
/// FRR and the first few it has in excess.
pub fn first_difference(expected: &str, running: &str) -> String {
    let (a, b) = (canonical(expected), canonical(running));
    let missing: Vec<&String> = a.iter().filter(|l| b.binary_search(l).is_err()).collect();
    let extra: Vec<&String> = b.iter().filter(|l| a.binary_search(l).is_err()).collect();
    if missing.is_empty() && extra.is_empty() {
        return "none".to_string();
    }
    let show = |lines: &[&String]| {
        let mut text = lines
            .iter()
            .take(3)
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        if lines.len() > 3 {
            text.push_str(&format!(" and {} more", lines.len() - 3));
        }
        text
    };
    format!(
        "FRR lacks {} line(s) [{}] and has {} more [{}]",
        missing.len(),
        show(&missing),
        extra.len(),
        show(&extra)
    )
}

/// The part of `rendered` (FRR's running-configuration form) that `daemon` must hold: each
/// top-level line or block whose owners ([`crate::frr::commands::daemons::owners`]) name
/// it — bgpd's prefix-lists, route-maps and `router bgp`, bfdd's `bfd`, zebra's `ip nht`.
/// Lines every daemon holds (`log …`) and lines FRR prints for itself are left out.
pub(crate) fn owned_part(rendered: &str, daemon: &str, dialect: crate::frr::Dialect) -> String {
    let mut out = String::new();
    let mut taking = false;
    for line in rendered.lines() {
        let top = !line.starts_with(' ') && line != "exit" && line != "!";
        if top {
            taking = crate::frr::commands::daemons::owners(line, dialect)
                .is_some_and(|(must, _)| must.contains(&daemon));
        }
        if taking && line != "!" {
            out.push_str(line);
            out.push('\n');
        }
        if line == "exit" || line == "!" {
            taking = false;
        }
    }
    out
}

/// What `daemon`'s own running configuration `running` lacks of the part of `rendered` it
/// must hold ([`owned_part`]), for messages; `None` when it lacks nothing.
pub(crate) fn lacking(
    rendered: &str,
    daemon: &str,
    running: &str,
    dialect: crate::frr::Dialect,
) -> Option<String> {
    let part = owned_part(rendered, daemon, dialect);
    if part.is_empty() {
        return None;
    }
    let have = canonical(running);
    let missing: Vec<String> = canonical(&part)
        .into_iter()
        .filter(|l| have.binary_search(l).is_err())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let shown: Vec<String> = missing.iter().take(3).map(|l| format!("{l:?}")).collect();
    Some(format!(
        "{daemon} lacks {} line(s) of its part: {}{}",
        missing.len(),
        shown.join(", "),
        if missing.len() > 3 { " …" } else { "" }
    ))
}

/// The top-level lines and blocks of `daemon`'s part of `rendered` ([`owned_part`]) that
/// the daemon's own configuration `running` lacks while another daemon (`elsewhere`: the
/// others' configurations) still holds the line or the block's first line — a loss only the
/// daemons' own views show (zebra's copy of a prefix-list or a route-map, without its `set`
/// lines, that a restarted bgpd no longer has). What no other daemon holds is left to a delta
/// or a reload. Returned as lines to type, blocks whole, with their `exit`.
pub(crate) fn hidden_losses(
    rendered: &str,
    daemon: &str,
    running: &str,
    elsewhere: &str,
    dialect: crate::frr::Dialect,
) -> Vec<String> {
    let part = owned_part(rendered, daemon, dialect);
    let have = canonical(running);
    let everywhere = canonical(elsewhere);
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in part.lines() {
        if line.starts_with(' ') || line == "exit" {
            if let Some(block) = blocks.last_mut() {
                block.push(line);
            }
        } else {
            blocks.push(vec![line]);
        }
    }
    let mut out = Vec::new();
    for block in blocks {
        let lines = canonical(&(block.join("\n") + "\n"));
        let lost = lines.iter().any(|l| have.binary_search(l).is_err());
        let kept_elsewhere = everywhere.binary_search(&block[0].to_string()).is_ok();
        if lost && kept_elsewhere {
            out.extend(block.iter().map(|l| l.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = "frr version 10.3
frr defaults traditional
log stdout informational
!
ip prefix-list 10.0.0.1-plain-ipv4 seq 1 permit 192.0.2.0/28 le 32
!
route-map 10.0.0.1-out permit 1
 match ip address prefix-list 10.0.0.1-plain-ipv4
 set community 64512:1 additive
exit
!
bfd
 profile fast
  receive-interval 100
 exit
 !
exit
!
router bgp 64512
 neighbor 10.0.0.1 remote-as 64513
exit
!
";

    #[test]
    fn each_daemon_must_hold_its_own_part() {
        let dialect = crate::frr::Dialect::Frr10;
        let bgpd = owned_part(RENDERED, "bgpd", dialect);
        assert!(
            bgpd.contains("ip prefix-list 10.0.0.1-plain-ipv4"),
            "{bgpd}"
        );
        assert!(bgpd.contains(" set community 64512:1 additive"), "{bgpd}");
        assert!(bgpd.contains("router bgp 64512"), "{bgpd}");
        assert!(
            !bgpd.contains("bfd") && !bgpd.contains("frr version"),
            "{bgpd}"
        );
        let bfdd = owned_part(RENDERED, "bfdd", dialect);
        assert!(bfdd.starts_with("bfd\n profile fast\n"), "{bfdd}");
        assert!(!bfdd.contains("router bgp"), "{bfdd}");
        // bgpd restarted empty while zebra kept its copy of the list: the merged view has
        // everything, bgpd's own configuration lacks the list and the route-map.
        let restarted = "router bgp 64512\n neighbor 10.0.0.1 remote-as 64513\nexit\n";
        let zebra = "ip prefix-list 10.0.0.1-plain-ipv4 seq 1 permit 192.0.2.0/28 le 32\nroute-map 10.0.0.1-out permit 1\n match ip address prefix-list 10.0.0.1-plain-ipv4\nexit\n";
        let said = lacking(RENDERED, "bgpd", restarted, dialect).expect("bgpd lacks its lists");
        assert!(said.starts_with("bgpd lacks 4 line(s)"), "{said}");
        assert_eq!(lacking(RENDERED, "zebra", zebra, dialect), None);
        assert_eq!(
            lacking(
                RENDERED,
                "bgpd",
                &owned_part(RENDERED, "bgpd", dialect),
                dialect
            ),
            None
        );
        // What zebra still holds is a hidden loss of bgpd's, to type back into bgpd alone;
        // the neighbour bgpd lacks is held nowhere (a change, not a loss) and is not.
        let partial = "router bgp 64512\nexit\n";
        let back = hidden_losses(RENDERED, "bgpd", partial, zebra, dialect);
        assert_eq!(
            back,
            [
                "ip prefix-list 10.0.0.1-plain-ipv4 seq 1 permit 192.0.2.0/28 le 32",
                "route-map 10.0.0.1-out permit 1",
                " match ip address prefix-list 10.0.0.1-plain-ipv4",
                " set community 64512:1 additive",
                "exit",
            ]
        );
        // The network and neighbour lines bgpd lacks are no other daemon's: not hidden.
        let restored = hidden_losses(RENDERED, "bgpd", restarted, zebra, dialect);
        assert!(
            restored.iter().all(|l| !l.contains("router bgp")),
            "{restored:?}"
        );
        assert!(hidden_losses(RENDERED, "zebra", zebra, restarted, dialect).is_empty());
    }

    #[test]
    fn running_config_loses_the_host_dependent_lines() {
        let output = "% The route-map 'x' does not exist.\nBuilding configuration...\n\nCurrent configuration:\n!\nfrr version 8.4.4\nfrr defaults traditional\nhostname vm\nservice integrated-vtysh-config\nlog stdout informational\n!\nend\n";
        assert_eq!(
            normalise_running(output),
            "frr defaults traditional\nlog stdout informational\n!\n"
        );
    }

    #[test]
    fn an_frr_that_only_logs_is_blank_and_one_with_any_of_ours_is_not() {
        // What a freshly started speaker pod's FRR prints: the chart sets its logging.
        let fresh = "frr version 10.3.1\nfrr defaults traditional\nhostname n1\nlog stdout informational\nlog timestamp precision 3\nservice integrated-vtysh-config\n!\nend\n";
        assert!(is_blank(fresh));
        assert!(is_blank(""));
        for ours in [
            "router bgp 64512\nexit\n",
            "ip prefix-list l seq 1 permit 10.0.0.0/8\n",
            "route-map m permit 1\nexit\n",
            "bfd\n profile p\n exit\nexit\n",
            "ip nht resolve-via-default\n",
        ] {
            assert!(!is_blank(&format!("{fresh}{ours}")), "{ours}");
        }
    }

    #[test]
    fn an_empty_bfd_block_is_no_configuration_but_a_profile_is() {
        let banner = "Current configuration:\n!\nfrr defaults traditional\n";
        let empty = format!("{banner}bfd\nexit\n!\nend\n");
        assert_eq!(normalise_running(&empty), "frr defaults traditional\n!\n");
        let profile = format!("{banner}bfd\n profile fast\n exit\nexit\n!\nend\n");
        assert!(normalise_running(&profile).contains("bfd\n profile fast\n"));
    }

    #[test]
    fn print_order_of_top_level_objects_does_not_matter_but_content_does() {
        let fresh = "router bgp 1\n neighbor a remote-as 2\n !\n address-family ipv4 unicast\n  network 10.0.0.1/32\n exit-address-family\nexit\n!\nroute-map a permit 1\nexit\n!\nroute-map b permit 1\nexit\n!\n";
        let later = "router bgp 1\n neighbor a remote-as 2\n !\n address-family ipv4 unicast\n  network 10.0.0.1/32\n exit-address-family\nexit\n!\nroute-map b permit 1\nexit\n!\nroute-map a permit 1\nexit\n!\n";
        assert!(same_configuration(fresh, later));
        let moved = later.replace("  network", " network");
        assert!(!same_configuration(fresh, &moved));
        assert_eq!(
            first_difference(fresh, &moved),
            "FRR lacks 1 line(s) [\"router bgp 1 > address-family ipv4 unicast > network 10.0.0.1/32\"] and has 1 more [\"router bgp 1 > network 10.0.0.1/32\"]"
        );
        assert_eq!(first_difference(fresh, later), "none");
    }

    #[test]
    fn lines_every_daemon_prints_count_once_and_parents_matter() {
        let rendered = "frr defaults traditional\nip prefix-list a seq 1 permit 10.0.0.1/32\nroute-map m permit 1\n match ip address prefix-list a\n set community 1:1\nexit\n";
        // What the daemons print one by one: zebra mirrors the list and the route-map.
        let zebra = "frr defaults traditional\n! a comment\nip prefix-list a seq 1 permit 10.0.0.1/32\nroute-map m permit 1\n match ip address prefix-list a\nexit\n";
        let bgpd = "frr defaults traditional\nip prefix-list a seq 1 permit 10.0.0.1/32\nroute-map m permit 1\n match ip address prefix-list a\n set community 1:1\nexit\n";
        assert!(same_configuration(rendered, &format!("{zebra}{bgpd}")));
        assert_eq!(digest(rendered).len(), canonical(rendered).len());
        // The same line under another parent is another line.
        let other = rendered.replace("route-map m permit 1", "route-map m permit 2");
        assert!(!same_configuration(rendered, &other));
        assert!(!same_configuration(rendered, zebra));
    }
}
