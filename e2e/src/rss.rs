//! Resident memory and CPU time of the processes a pod runs on a lab node, found from the
//! host: every process in the node's network namespace whose command line matches.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// The `/proc/<pid>` directories of the processes whose arguments (`argv`) `matches`
/// accepts: in `node`'s network namespace, or in any when `node` is `None`.
fn processes(node: Option<&Netns>, matches: impl Fn(&[String]) -> bool) -> Result<Vec<PathBuf>> {
    let wanted = node.map(namespace_link).transpose()?;
    let mut found = Vec::new();
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
        if let Some(wanted) = &wanted {
            let Ok(net) = std::fs::read_link(path.join("ns/net")) else {
                continue;
            };
            if net.to_string_lossy() != *wanted {
                continue;
            }
        }
        let Some(argv) = argv(&path) else {
            continue;
        };
        if !argv.is_empty() && matches(&argv) {
            found.push(path);
        }
    }
    Ok(found)
}

/// What `/proc/<pid>/ns/net` links to for a process in `node`'s network namespace
/// (`net:[<inode>]`).
pub fn namespace_link(node: &Netns) -> Result<String> {
    let inode = std::fs::metadata(format!("/run/netns/{}", node.name()))
        .with_context(|| format!("namespace {}", node.name()))?
        .ino();
    Ok(format!("net:[{inode}]"))
}

/// The arguments of the process at `proc_dir` (`/proc/<pid>`): empty for a kernel thread,
/// `None` once it has ended.
pub fn argv(proc_dir: &Path) -> Option<Vec<String>> {
    let cmdline = std::fs::read(proc_dir.join("cmdline")).ok()?;
    Some(
        cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The clock tick rate of `/proc`'s CPU times (`sysconf(CLK_TCK)`).
pub fn ticks_per_second() -> Option<f64> {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map(|t| t as f64)
}

/// The summed VmRSS, in KiB, of the processes in `node`'s network namespace whose arguments
/// (`argv`) `matches` accepts, and how many there were.
pub fn rss_kib(node: &Netns, matches: impl Fn(&[String]) -> bool) -> Result<(u64, usize)> {
    let each = processes(Some(node), matches)?
        .iter()
        .filter_map(|path| vm_rss_kib(path))
        .collect::<Vec<_>>();
    Ok((each.iter().sum(), each.len()))
}

/// The VmRSS, in KiB, of each process on the machine, in any network namespace (a pod's
/// own, say), whose arguments (`argv`) `matches` accepts.
pub fn each_rss_kib(matches: impl Fn(&[String]) -> bool) -> Result<Vec<u64>> {
    Ok(processes(None, matches)?
        .iter()
        .filter_map(|path| vm_rss_kib(path))
        .collect())
}

/// The VmRSS, in KiB, of the process at `/proc/<pid>`; `None` once it has ended.
fn vm_rss_kib(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path.join("status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
}

/// The CPU time, in clock ticks, a process has used, from the text of its `/proc/<pid>/stat`:
/// user and system time, its own and its waited-for children's (fields 14 to 17).
pub fn stat_ticks(stat: &str) -> Option<u64> {
    summed_stat_fields(stat, 14..=17)
}

/// A process's own user and system time in clock ticks, without its children's (fields 14
/// and 15 of `/proc/<pid>/stat`).
pub fn own_ticks(stat: &str) -> Option<u64> {
    summed_stat_fields(stat, 14..=15)
}

/// The sum of the numeric `fields` (numbered from 1, as proc(5) does) of a `/proc/<pid>/stat`
/// text.
fn summed_stat_fields(stat: &str, fields: std::ops::RangeInclusive<usize>) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it,
    // where field 3 (the state) starts.
    let rest = &stat[stat.rfind(')')? + 1..];
    let values: Vec<&str> = rest.split_whitespace().collect();
    values
        .get(fields.start() - 3..=fields.end() - 3)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// The summed CPU seconds ([`stat_ticks`]) of the processes in `node`'s network namespace
/// (with `None`, in any: a pod's own, say) whose arguments (`argv`) `matches` accepts, and
/// how many there were.
pub fn cpu_seconds(
    node: Option<&Netns>,
    matches: impl Fn(&[String]) -> bool,
) -> Result<(f64, usize)> {
    let ticks_per_second = ticks_per_second().context("the clock tick rate (sysconf CLK_TCK)")?;
    let (mut ticks, mut count) = (0, 0);
    for path in processes(node, matches)? {
        let Some(used) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| stat_ticks(&s))
        else {
            continue;
        };
        ticks += used;
        count += 1;
    }
    Ok((ticks as f64 / ticks_per_second, count))
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
    fn cpu_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 100 0";
        assert_eq!(stat_ticks(stat), Some(310));
        assert_eq!(own_ticks(stat), Some(300));
        assert_eq!(stat_ticks("42 (short) S 1"), None);
        assert_eq!(stat_ticks("no parenthesis"), None);
    }

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
