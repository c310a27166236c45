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
mod tests;
