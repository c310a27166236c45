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
//!
//! [`Link::scan`] reads the interfaces from sysfs, as MetalLB does every 10 s.

use std::collections::BTreeSet;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use super::wire::Mac;

/// MetalLB's default exclusions: container, bridge, tunnel and CNI interfaces, and `lo`.
pub(crate) const DEFAULT_EXCLUDED: [&str; 14] = [
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
pub(crate) struct Link {
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
    /// Its index.
    pub index: u32,
    /// Its hardware address.
    pub mac: Mac,
}

const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_NOARP: u32 = 0x80;

impl Link {
    /// The interfaces of the network namespace whose sysfs is mounted at `class_net`
    /// (`/sys/class/net`), with IPv6 link-local addresses read from `if_inet6`
    /// (`/proc/net/if_inet6`), by name. What MetalLB reads too: flags, a `master` link, and
    /// link-scope IPv6 addresses. Interfaces that vanish while being read are left out.
    pub(crate) fn scan(class_net: &Path, if_inet6: &Path) -> std::io::Result<Vec<Link>> {
        let inet6 = std::fs::read_to_string(if_inet6).unwrap_or_default();
        let link_local = link_local_interfaces(&inet6);
        let mut links = Vec::new();
        for entry in std::fs::read_dir(class_net)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            let Ok(flags) = std::fs::read_to_string(dir.join("flags")) else {
                continue;
            };
            let Some(flags) = parse_flags(&flags) else {
                continue;
            };
            let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            let Ok(index) = read("ifindex").trim().parse::<u32>() else {
                continue;
            };
            links.push(Link {
                index,
                mac: read("address").trim().parse().unwrap_or(Mac::ZERO),
                up: flags & IFF_UP != 0,
                broadcast: flags & IFF_BROADCAST != 0,
                noarp: flags & IFF_NOARP != 0,
                enslaved: dir.join("master").exists(),
                ipv6_link_local: link_local.contains(&name),
                name,
            });
        }
        links.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(links)
    }
}

/// The interface flags sysfs prints (`0x1003`).
fn parse_flags(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// Interfaces with a link-scope (0x20) address in `/proc/net/if_inet6` text: lines of
/// address, index, prefix length, scope, flags and name, in hex.
fn link_local_interfaces(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, _, _, scope, _, name] if u8::from_str_radix(scope, 16) == Ok(0x20) => {
                    Some(name.to_string())
                }
                _ => None,
            }
        })
        .collect()
}

/// What an interface answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Responders {
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

    /// Both lists.
    pub fn and(mut self, other: Exclusions) -> Exclusions {
        self.0.extend(other.0);
        self
    }

    /// Whether `name` is excluded.
    pub fn excludes(&self, name: &str) -> bool {
        self.0.iter().any(|r| r.is_match(name))
    }
}

/// What `link` answers, given `exclusions`.
pub(crate) fn responders(link: &Link, exclusions: &Exclusions) -> Responders {
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
pub(crate) fn answers_on(interfaces: &BTreeSet<String>, link: &str) -> bool {
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
    fn interfaces_are_read_from_sysfs_and_if_inet6() {
        let dir = std::env::temp_dir().join(format!("ferrolb-links-{}", std::process::id()));
        let net = dir.join("class/net");
        for (index, (name, flags)) in [
            ("eth0", "0x1003"),
            ("eth1", "0x1002"),
            ("br0", "0x1003"),
            ("wg0", "0x91"),
        ]
        .into_iter()
        .enumerate()
        {
            std::fs::create_dir_all(net.join(name)).unwrap();
            std::fs::write(net.join(name).join("flags"), format!("{flags}\n")).unwrap();
            std::fs::write(net.join(name).join("ifindex"), format!("{}\n", index + 2)).unwrap();
            std::fs::write(
                net.join(name).join("address"),
                format!("02:00:00:00:00:{index:02x}\n"),
            )
            .unwrap();
        }
        // eth1 is a bridge port.
        std::fs::write(net.join("eth1/master"), "").unwrap();
        // Gone before its flags could be read.
        std::fs::create_dir_all(net.join("tmp0")).unwrap();
        let inet6 = dir.join("if_inet6");
        std::fs::write(
            &inet6,
            "fe80000000000000020000fffe00000a 02 40 20 80     eth0\nfd000000000000000000000000000002 04 40 00 80     br0\n00000000000000000000000000000001 01 80 10 80       lo\n",
        )
        .unwrap();
        let links = Link::scan(&net, &inet6).unwrap();
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["br0", "eth0", "eth1", "wg0"]);
        let eth0 = &links[1];
        assert!(eth0.up && eth0.broadcast && !eth0.noarp && !eth0.enslaved && eth0.ipv6_link_local);
        assert_eq!((eth0.index, eth0.mac), (2, Mac([2, 0, 0, 0, 0, 0])));
        assert!(links[2].enslaved && !links[2].up);
        // br0 has only a global IPv6 address; wg0 is point-to-point and NOARP.
        assert!(!links[0].ipv6_link_local);
        assert!(links[3].noarp && !links[3].broadcast);
        std::fs::remove_dir_all(&dir).unwrap();

        // This machine's own loopback: up, no broadcast.
        let here =
            Link::scan(Path::new("/sys/class/net"), Path::new("/proc/net/if_inet6")).unwrap();
        let lo = here.iter().find(|l| l.name == "lo").expect("lo is listed");
        assert!(lo.up && !lo.broadcast);
        assert_eq!((lo.index, lo.mac), (1, Mac::ZERO));
    }

    #[test]
    fn named_interfaces_limit_where_an_ip_is_answered() {
        let named: BTreeSet<String> = ["eth1".to_string()].into();
        assert!(answers_on(&named, "eth1"));
        assert!(!answers_on(&named, "eth0"));
        assert!(answers_on(&BTreeSet::new(), "eth0"));
    }
}
