//! Resident memory of the processes a pod runs on a lab node, found from the host: every
//! process in the node's network namespace whose command line matches.

use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};

use crate::netns::Netns;

/// The summed VmRSS, in KiB, of the processes in `node`'s network namespace whose arguments
/// (`argv`) `matches` accepts, and how many there were.
pub fn rss_kib(node: &Netns, matches: impl Fn(&[String]) -> bool) -> Result<(u64, usize)> {
    let inode = std::fs::metadata(format!("/run/netns/{}", node.name()))
        .with_context(|| format!("namespace {}", node.name()))?
        .ino();
    let wanted = format!("net:[{inode}]");
    let (mut total, mut count) = (0, 0);
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        // A process may end between the listing and these reads: skip it.
        let Ok(net) = std::fs::read_link(path.join("ns/net")) else {
            continue;
        };
        if net.to_string_lossy() != wanted {
            continue;
        }
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.is_empty() || !matches(&argv) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            total += kib;
            count += 1;
        }
    }
    Ok((total, count))
}

/// Whether `argv` is one of FRR's daemons (or watchfrr), by the program's file name.
pub fn is_frr_daemon(argv: &[String]) -> bool {
    let program = argv[0].rsplit('/').next().unwrap_or("");
    matches!(
        program,
        "zebra" | "bgpd" | "bfdd" | "staticd" | "mgmtd" | "watchfrr"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frr_daemons_are_told_by_their_program_name() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_frr_daemon(&argv(&["/usr/lib/frr/bgpd", "-d"])));
        assert!(is_frr_daemon(&argv(&["watchfrr"])));
        assert!(!is_frr_daemon(&argv(&[
            "/usr/local/bin/ferrolb",
            "speaker"
        ])));
        assert!(!is_frr_daemon(&argv(&["/usr/lib/frr/bgpd-helper"])));
    }
}
