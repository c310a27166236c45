//! Which of a node's interfaces answer ARP and NDP, by MetalLB's rules, so a node behaves
//! the same after the switch:
//!
//! - an interface whose name matches an exclusion pattern never answers; the patterns come
//!   from the `announcedInterfacesToExclude` list of MetalLB's `metallb-excludel2` ConfigMap
//!   (regular expressions, any match excludes), by default [`DEFAULT_EXCLUDED`];
//! - nor one that is down, enslaved to a bond, bridge or VRF, or marked NOARP;
//! - of the rest, those that can broadcast answer ARP, and those with an IPv6 link-local
//!   address answer NDP;
//! - an L2Advertisement that names interfaces limits its IPs to those ([`answers_on`]).

use std::collections::BTreeSet;

use regex::Regex;
use serde::Deserialize;

/// MetalLB's default exclusions: container, bridge, tunnel and CNI interfaces, and `lo`.
pub const DEFAULT_EXCLUDED: [&str; 14] = [
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^nodelocaldns.*",
    "^lxc.*",
];

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Its name.
    pub name: String,
    /// IFF_UP.
    pub up: bool,
    /// IFF_BROADCAST.
    pub broadcast: bool,
    /// IFF_NOARP.
    pub noarp: bool,
    /// It has a master (bond, bridge, VRF).
    pub enslaved: bool,
    /// It has an fe80::/10 address.
    pub ipv6_link_local: bool,
}

/// What an interface answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Responders {
    /// ARP (IPv4).
    pub arp: bool,
    /// Neighbour discovery (IPv6).
    pub ndp: bool,
}

/// Why an exclusion list is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ExclusionError {
    /// Not the ConfigMap's YAML.
    #[error("announcedInterfacesToExclude: {0}")]
    Syntax(String),
    /// A pattern is not a regular expression.
    #[error(
        "announcedInterfacesToExclude[{index}]: {pattern:?} is not a regular expression: {reason}"
    )]
    Pattern {
        /// Its place in the list.
        index: usize,
        /// The pattern.
        pattern: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// Interface name patterns that never answer.
#[derive(Clone, Debug)]
pub struct Exclusions(Vec<Regex>);

#[derive(Deserialize)]
struct ExcludeFile {
    #[serde(rename = "announcedInterfacesToExclude", default)]
    patterns: Vec<String>,
}

impl Default for Exclusions {
    /// [`DEFAULT_EXCLUDED`].
    fn default() -> Self {
        Exclusions(
            DEFAULT_EXCLUDED
                .iter()
                .map(|p| Regex::new(p).expect("the default patterns are valid"))
                .collect(),
        )
    }
}

impl Exclusions {
    /// From a list of regular expressions.
    pub fn from_patterns(patterns: &[String]) -> Result<Exclusions, ExclusionError> {
        patterns
            .iter()
            .enumerate()
            .map(|(index, pattern)| {
                Regex::new(pattern).map_err(|e| ExclusionError::Pattern {
                    index,
                    pattern: pattern.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()
            .map(Exclusions)
    }

    /// From the `excludel2.yaml` file MetalLB's ConfigMap holds.
    pub fn from_yaml(text: &str) -> Result<Exclusions, ExclusionError> {
        let file: ExcludeFile =
            serde_saphyr::from_str(text).map_err(|e| ExclusionError::Syntax(e.to_string()))?;
        Exclusions::from_patterns(&file.patterns)
    }

    /// Whether `name` is excluded.
    pub fn excludes(&self, name: &str) -> bool {
        self.0.iter().any(|r| r.is_match(name))
    }
}

/// What `link` answers, given `exclusions`.
pub fn responders(link: &Link, exclusions: &Exclusions) -> Responders {
    if !link.up || link.enslaved || link.noarp || exclusions.excludes(&link.name) {
        return Responders::default();
    }
    Responders {
        arp: link.broadcast,
        ndp: link.ipv6_link_local,
    }
}

/// Whether an IP whose advertisements name `interfaces` is answered for on `link` (no names:
/// on every interface that answers at all).
pub fn answers_on(interfaces: &BTreeSet<String>, link: &str) -> bool {
    interfaces.is_empty() || interfaces.contains(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str) -> Link {
        Link {
            name: name.into(),
            up: true,
            broadcast: true,
            ipv6_link_local: true,
            ..Link::default()
        }
    }

    #[test]
    fn the_default_list_leaves_uplinks_and_drops_container_and_cni_interfaces() {
        let ex = Exclusions::default();
        for name in ["eth0", "ens3", "bond0", "enp0s31f6", "lo0", "vlan100"] {
            assert!(!ex.excludes(name), "{name}");
        }
        for name in [
            "lo",
            "docker0",
            "veth1a2b",
            "cali123",
            "flannel.1",
            "cni0",
            "kube-ipvs0",
            "lxc_health",
            "tunl0",
            "virbr0",
            "nodelocaldns",
        ] {
            assert!(ex.excludes(name), "{name}");
        }
    }

    #[test]
    fn only_up_free_arp_capable_interfaces_answer() {
        let ex = Exclusions::default();
        let both = Responders {
            arp: true,
            ndp: true,
        };
        assert_eq!(responders(&link("eth0"), &ex), both);
        for broken in [
            Link {
                up: false,
                ..link("eth0")
            },
            Link {
                enslaved: true,
                ..link("eth0")
            },
            Link {
                noarp: true,
                ..link("eth0")
            },
            link("docker0"),
        ] {
            assert_eq!(
                responders(&broken, &ex),
                Responders::default(),
                "{broken:?}"
            );
        }
        let point_to_point = Link {
            broadcast: false,
            ..link("wg0")
        };
        assert_eq!(
            responders(&point_to_point, &ex),
            Responders {
                arp: false,
                ndp: true
            }
        );
        let v4_only = Link {
            ipv6_link_local: false,
            ..link("eth1")
        };
        assert!(!responders(&v4_only, &ex).ndp);
    }

    #[test]
    fn metallb_s_configmap_file_is_read_and_bad_patterns_are_named() {
        let ex =
            Exclusions::from_yaml("announcedInterfacesToExclude:\n- ^eth1$\n- ^br-.*\n").unwrap();
        assert!(ex.excludes("eth1") && ex.excludes("br-lan"));
        assert!(!ex.excludes("eth10") && !ex.excludes("docker0"));
        let err = Exclusions::from_yaml("announcedInterfacesToExclude: ['^ok$', '(']").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("announcedInterfacesToExclude[1]: \"(\" is not a regular expression"),
            "{err}"
        );
        assert!(Exclusions::from_yaml("announcedInterfacesToExclude: 3").is_err());
    }

    #[test]
    fn named_interfaces_limit_where_an_ip_is_answered() {
        let named: BTreeSet<String> = ["eth1".to_string()].into();
        assert!(answers_on(&named, "eth1"));
        assert!(!answers_on(&named, "eth0"));
        assert!(answers_on(&BTreeSet::new(), "eth0"));
    }
}
