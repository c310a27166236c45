//! BGP communities: standard (`A:B`) and large (`large:A:B:C`), and the aliases Community
//! objects give them.

use std::collections::BTreeMap;
use std::fmt;

use super::error::Findings;
use super::{ClusterObjects, LoadOptions, identify, names};

/// A BGP community value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BgpCommunity {
    /// RFC 1997 community: two 16-bit numbers.
    Standard(u16, u16),
    /// RFC 8092 large community: three 32-bit numbers.
    Large(u32, u32, u32),
}

impl BgpCommunity {
    /// True for large communities.
    pub fn is_large(&self) -> bool {
        matches!(self, BgpCommunity::Large(..))
    }
}

impl fmt::Display for BgpCommunity {
    /// The form used in manifests: `65000:100` or `large:65000:1:2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BgpCommunity::Standard(a, b) => write!(f, "{a}:{b}"),
            BgpCommunity::Large(a, b, c) => write!(f, "large:{a}:{b}:{c}"),
        }
    }
}

impl serde::Serialize for BgpCommunity {
    /// Serialised in the manifest form, as [`fmt::Display`] prints it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Parses a community value. Errors name the offending part.
pub fn parse_community(text: &str) -> Result<BgpCommunity, String> {
    if let Some(rest) = text.strip_prefix("large:") {
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() != 3 {
            return Err(format!(
                "{text:?} is not a large community: write large:A:B:C with three numbers"
            ));
        }
        let mut n = [0u32; 3];
        for (slot, part) in n.iter_mut().zip(&parts) {
            *slot = parse_number(part).ok_or_else(|| {
                format!("{text:?} is not a large community: {part:?} is not a number from 0 to 4294967295")
            })?;
        }
        return Ok(BgpCommunity::Large(n[0], n[1], n[2]));
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 2 {
        return Err(format!(
            "{text:?} is not a community: write A:B (two numbers from 0 to 65535) or large:A:B:C"
        ));
    }
    let mut n = [0u16; 2];
    for (slot, part) in n.iter_mut().zip(&parts) {
        let value = parse_number(part)
            .ok_or_else(|| format!("{text:?} is not a community: {part:?} is not a number"))?;
        *slot = u16::try_from(value).map_err(|_| {
            format!("{text:?} is not a community: {part} is above 65535 (use large:A:B:C for 32-bit values)")
        })?;
    }
    Ok(BgpCommunity::Standard(n[0], n[1]))
}

fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Loads the aliases of all Community objects. Alias names are unique across objects.
pub(super) fn load_aliases(
    objects: &ClusterObjects,
    options: &LoadOptions,
    findings: &mut Findings,
) -> BTreeMap<String, BgpCommunity> {
    let mut out = BTreeMap::new();
    let mut defined_by: BTreeMap<String, String> = BTreeMap::new();
    for object in &objects.communities {
        let Some(reference) = identify(object, options, findings) else {
            continue;
        };
        for (i, alias) in object.spec.communities.iter().flatten().enumerate() {
            let field = format!("spec.communities[{i}]");
            let name = alias.name.clone().unwrap_or_default();
            let name_ok = findings
                .check(
                    &reference,
                    format!("{field}.name"),
                    names::check_alias(&name),
                )
                .is_some();
            let value = findings.check(
                &reference,
                format!("{field}.value"),
                alias
                    .value
                    .as_deref()
                    .ok_or_else(|| "must be set".to_string())
                    .and_then(parse_community),
            );
            if !name_ok {
                continue;
            }
            if let Some(owner) = defined_by.get(&name) {
                findings.invalid(
                    &reference,
                    format!("{field}.name"),
                    format!("alias {name:?} is already defined by Community {owner:?}; alias names are unique across Community objects"),
                );
                continue;
            }
            defined_by.insert(name.clone(), reference.name.clone());
            if let Some(value) = value {
                out.insert(name, value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_large_communities_round_trip() {
        for text in ["65000:100", "0:0", "65535:65535", "large:4294967295:1:2"] {
            assert_eq!(parse_community(text).unwrap().to_string(), text);
        }
        assert!(parse_community("large:1:2:3").unwrap().is_large());
    }

    #[test]
    fn invalid_communities_name_the_bad_part() {
        assert_eq!(
            parse_community("99999999:1").unwrap_err(),
            "\"99999999:1\" is not a community: 99999999 is above 65535 (use large:A:B:C for 32-bit values)"
        );
        assert_eq!(
            parse_community("lar:123:9999:123").unwrap_err(),
            "\"lar:123:9999:123\" is not a community: write A:B (two numbers from 0 to 65535) or large:A:B:C"
        );
        assert_eq!(
            parse_community("large:1:2").unwrap_err(),
            "\"large:1:2\" is not a large community: write large:A:B:C with three numbers"
        );
        assert_eq!(
            parse_community("large:1:2:4294967296").unwrap_err(),
            "\"large:1:2:4294967296\" is not a large community: \"4294967296\" is not a number from 0 to 4294967295"
        );
        assert_eq!(
            parse_community("1:-2").unwrap_err(),
            "\"1:-2\" is not a community: \"-2\" is not a number"
        );
    }
}
