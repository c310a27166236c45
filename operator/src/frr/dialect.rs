//! The FRR versions ferrolb drives, and what differs in how each prints a configuration.
//!
//! ferrolb verifies every change by comparing FRR's `show running-config` with its own
//! rendering, so it renders exactly what the running version prints. Each dialect is proven
//! against that version's daemons (the golden print-back and the delta property tests run on
//! both). The differences between FRR 8.4 (Debian 12) and FRR 10.3 (Debian 13, the image's):
//!
//! - FRR 10 prints prefix-lists and route-maps before the `router bgp` blocks, FRR 8.4 after;
//! - FRR 10 resolves next hops through the default route unless told not to, so
//!   `ip|ipv6 nht resolve-via-default` is its default and not printed;
//! - FRR 10 prints `neighbor X ebgp-multihop 255` as `neighbor X ebgp-multihop` (255 is the
//!   default hop count);
//! - FRR 10 configures zebra through mgmtd: `ip nht …` and zebra's copies of prefix-lists
//!   and route-maps are typed on mgmtd's vty, and a running FRR 10 has mgmtd's daemon too.
//!
//! Both print prefix-lists and route-maps of a fresh load in file order (FRR 10 by name), and
//! the model sorts them by name, so a fresh load prints in the rendered order on both.
//!
//! A version not listed here is driven through `frr-reload.py` only: see
//! [`super::apply::Applier`].

use std::fmt;

/// How one FRR version prints its configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// FRR 8.4.
    Frr8,
    /// FRR 10.3, the image's.
    #[default]
    Frr10,
}

/// The top-level sections of frr.conf after its header, as the template names them.
const POLICY: &str = "policy";
const ROUTERS: &str = "routers";
const NHT: &str = "nht";
const BFD: &str = "bfd";

impl Dialect {
    /// Every dialect, oldest first.
    pub const ALL: [Dialect; 2] = [Dialect::Frr8, Dialect::Frr10];

    /// The releases ferrolb knows, for messages (`8.4, 10.3`).
    pub fn known() -> String {
        Dialect::ALL.map(Dialect::version).join(", ")
    }

    /// The FRR release it stands for (`major.minor`).
    pub fn version(self) -> &'static str {
        match self {
            Dialect::Frr8 => "8.4",
            Dialect::Frr10 => "10.3",
        }
    }

    /// The dialect of an FRR version (`10.3`, `10.3.1`, `8.4.4`, `10.3-dev`), if ferrolb
    /// knows it: the same major and minor release.
    pub fn of_version(version: &str) -> Option<Dialect> {
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?;
        let minor = parts.next()?;
        Dialect::ALL
            .into_iter()
            .find(|d| d.version().split_once('.') == Some((major, minor)))
    }

    /// The sections after the header, in print order.
    pub(super) fn sections(self) -> &'static [&'static str] {
        match self {
            Dialect::Frr8 => &[ROUTERS, POLICY, NHT, BFD],
            Dialect::Frr10 => &[POLICY, ROUTERS, BFD],
        }
    }

    /// The daemon that takes zebra's configuration (`ip nht …` and zebra's copies of
    /// prefix-lists and route-maps), as the one-element list the vty routing table uses:
    /// zebra itself on FRR 8.4; mgmtd on FRR 10, which passes it on to zebra (zebra's own
    /// vty refuses those lines).
    pub fn zebra_front(self) -> &'static [&'static str] {
        match self {
            Dialect::Frr8 => &["zebra"],
            Dialect::Frr10 => &["mgmtd"],
        }
    }

    /// The daemons besides bgpd that vtysh gives a prefix-list line (checked on FRR 8.4 and
    /// 10.3: bfdd takes them too, and staticd does not).
    pub fn prefix_list_copies(self) -> &'static [&'static str] {
        match self {
            Dialect::Frr8 => &["zebra", "bfdd"],
            Dialect::Frr10 => &["mgmtd", "bfdd"],
        }
    }

    /// The commands that open and close a batch of configuration lines typed on `daemon`.
    ///
    /// FRR 10 commits each line of a northbound-converted object (prefix-lists, route-maps,
    /// `ip nht`) on its own, unless a batch is announced the way `vtysh -b` announces a
    /// file (`XFRR_start_configuration` … `XFRR_end_configuration`), which is many times
    /// faster for long lists (measured in the README, "Run the tests"). mgmtd takes a batch
    /// only under the exclusive lock `configure terminal file-lock` (else "Candidate DS is
    /// not locked"). FRR 8.4 takes lines one by one.
    pub(super) fn batch(self, daemon: &str) -> (&'static [&'static str], &'static [&'static str]) {
        const END: &[&str] = &["XFRR_end_configuration", "end"];
        match (self, daemon) {
            (Dialect::Frr8, _) => (&["configure terminal"], &["end"]),
            (Dialect::Frr10, "mgmtd") => (
                &["configure terminal file-lock", "XFRR_start_configuration"],
                END,
            ),
            (Dialect::Frr10, _) => (&["configure terminal", "XFRR_start_configuration"], END),
        }
    }

    /// Whether `ebgp-multihop 255` prints its hop count.
    pub(super) fn prints_maximum_hops(self) -> bool {
        self == Dialect::Frr8
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FRR {}", self.version())
    }
}

/// The version in `show version` output (`FRRouting 10.3 (host) on Linux(…)` → `10.3`).
pub fn version_of_show_version(output: &str) -> Option<&str> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("FRRouting "))
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_dialects_by_major_and_minor_release() {
        assert_eq!(Dialect::of_version("8.4"), Some(Dialect::Frr8));
        assert_eq!(Dialect::of_version("8.4.4"), Some(Dialect::Frr8));
        assert_eq!(Dialect::of_version("10.3"), Some(Dialect::Frr10));
        assert_eq!(Dialect::of_version("10.3.1"), Some(Dialect::Frr10));
        assert_eq!(Dialect::of_version("10.3-dev"), Some(Dialect::Frr10));
        for unknown in ["10.4", "10.30", "9.1", "8", "1.0.3", "", "x.y"] {
            assert_eq!(Dialect::of_version(unknown), None, "{unknown}");
        }
        for d in Dialect::ALL {
            assert_eq!(Dialect::of_version(d.version()), Some(d));
        }
    }

    #[test]
    fn the_version_is_read_from_show_version() {
        let output = "FRRouting 10.3 (node-a) on Linux(6.1.0-28-amd64).\nCopyright 1996-2005 Kunihiro Ishiguro, et al.\nconfigured with:\n    '--build=x86_64-linux-gnu'\n";
        assert_eq!(version_of_show_version(output), Some("10.3"));
        assert_eq!(
            version_of_show_version("FRRouting 8.4.4 (n) on Linux(6.1).\n"),
            Some("8.4.4")
        );
        assert_eq!(version_of_show_version("% Unknown command\n"), None);
        assert_eq!(version_of_show_version("FRRouting (n)\n"), None);
    }
}
