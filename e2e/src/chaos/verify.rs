//! The check after each storm: the cluster's objects as the API server holds them, run
//! through `ferrolb render announcements` for every node, say which node each router should
//! reach each prefix through and which node should answer ARP/NDP for each layer-2 IP; the
//! routers' kernel FIBs and the answers the client gets must say the same.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::watch::{Fib, fib, in_range};
use crate::lab::{self, NODES};
use crate::netns::Netns;
use crate::paths;

/// The pools whose IPs are announced with ARP and NDP.
const L2_POOLS: [&str; 3] = ["lab-l2", "lab-l2-v6", "chaos-l2"];

/// The routers compared: name, the session addresses whose announcements it gets, its
/// namespace and the protocol its routes carry in the kernel. (GoBGP keeps its routes in its
/// RIB only; it is not compared.)
const ROUTERS: [(&str, &[&str], &str, &str); 3] = [
    ("tor", &["10.99.0.1", "fd99::1"], "rtr", "bgp"),
    ("rr", &[lab::RR], "rr", "bgp"),
    ("bird", &["10.99.0.4"], "bird", "bird"),
];

/// What the nodes should do, by `render announcements`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Router name to its FIB.
    pub routers: BTreeMap<String, Fib>,
    /// Layer-2 IP to the nodes answering for it.
    pub l2: Fib,
    /// IPs held by layer-2 Services (probed whether announced or not).
    pub l2_ips: BTreeSet<String>,
    /// What render says the controller has not settled (Services without their IP yet, or
    /// whose IP it would change).
    pub unsettled: Vec<String>,
}

/// The cluster's objects, written where `render` reads them.
fn dump(dir: &Path) -> Result<(Value, Vec<std::path::PathBuf>)> {
    let kubectl = lab::kubectl(dir);
    let objects = kubectl.run(
        &[
            "--request-timeout=5s",
            "get",
            "services,endpointslices,nodes,namespaces",
            "-A",
            "-o",
            "json",
        ],
        None,
    )?;
    let config = kubectl.run(
        &[
            "--request-timeout=5s",
            "get",
            "ipaddresspools,bgppeers,bgpadvertisements,l2advertisements,bfdprofiles,communities,secrets",
            "-n",
            "metallb-system",
            "-o",
            "json",
        ],
        None,
    )?;
    let objects_file = dir.join("chaos-objects.json");
    let config_file = dir.join("chaos-config.json");
    let mut parsed: Value = serde_json::from_str(&objects)?;
    without_slices_without_endpoints(&mut parsed);
    std::fs::write(&objects_file, serde_json::to_string(&parsed)?)?;
    std::fs::write(&config_file, &config)?;
    Ok((parsed, vec![objects_file, config_file]))
}

/// Gives each Service of `list` that has no EndpointSlice an empty one. In the cluster such
/// a Service has no endpoints (the campaign's Services have no selector; their slices are
/// written and deleted by the workload, and a delete cut short by a fault can take the
/// slice and leave the Service), while `render` assumes endpoints everywhere for a Service
/// whose slices its input lacks (as manifests do).
fn without_slices_without_endpoints(list: &mut Value) {
    let Some(items) = list["items"].as_array_mut() else {
        return;
    };
    let with_slices: BTreeSet<(String, String)> = items
        .iter()
        .filter(|o| o["kind"] == "EndpointSlice")
        .filter_map(|o| {
            let meta = &o["metadata"];
            let service = meta["labels"]["kubernetes.io/service-name"].as_str()?;
            Some((meta["namespace"].as_str()?.to_string(), service.to_string()))
        })
        .collect();
    let lacking: Vec<(String, String)> = items
        .iter()
        .filter(|o| o["kind"] == "Service" && o["spec"]["type"] == "LoadBalancer")
        .filter_map(|o| {
            let meta = &o["metadata"];
            Some((
                meta["namespace"].as_str()?.to_string(),
                meta["name"].as_str()?.to_string(),
            ))
        })
        .filter(|key| !with_slices.contains(key))
        .collect();
    for (namespace, service) in lacking {
        items.push(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{service}-none"),
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [],
        }));
    }
}

/// What `render announcements` says for every node of the lab.
pub fn expected(dir: &Path, pools: &BTreeMap<String, Vec<String>>) -> Result<Expected> {
    let (objects, files) = dump(dir)?;
    let mut out = Expected::default();
    for (node, _) in NODES {
        let mut command = Command::new(paths::ferrolb()?);
        command.args(["render", "announcements", "--node", node]);
        for file in &files {
            command.arg("-f").arg(file);
        }
        let run = command
            .output()
            .context("running ferrolb render announcements")?;
        if !run.status.success() {
            bail!(
                "ferrolb render announcements --node {node}: {}",
                String::from_utf8_lossy(&run.stderr).trim()
            );
        }
        for line in String::from_utf8_lossy(&run.stderr).lines() {
            if line.contains("has no IP yet") || line.contains("would not keep its status") {
                out.unsettled.push(line.trim().to_string());
            }
        }
        let said: Value = serde_json::from_slice(&run.stdout)?;
        for session in said["bgp"]["sessions"].as_array().into_iter().flatten() {
            let address = session["address"].as_str().unwrap_or_default();
            let Some((router, ..)) = ROUTERS.iter().find(|(_, a, ..)| a.contains(&address)) else {
                continue;
            };
            for prefix in session["prefixes"].as_array().into_iter().flatten() {
                let prefix = prefix["prefix"].as_str().unwrap_or_default();
                let prefix = prefix.trim_end_matches("/32").trim_end_matches("/128");
                out.routers
                    .entry(router.to_string())
                    .or_default()
                    .entry(prefix.to_string())
                    .or_default()
                    .insert(node.to_string());
            }
        }
        for announcement in said["l2"].as_array().into_iter().flatten() {
            for ip in announcement["ips"].as_array().into_iter().flatten() {
                if let Some(ip) = ip.as_str() {
                    out.l2
                        .entry(ip.to_string())
                        .or_default()
                        .insert(node.to_string());
                }
            }
        }
    }
    out.unsettled.sort();
    out.unsettled.dedup();
    let l2_ranges: Vec<&String> = L2_POOLS
        .iter()
        .filter_map(|p| pools.get(*p))
        .flatten()
        .collect();
    for service in objects["items"].as_array().into_iter().flatten() {
        if service["kind"] != "Service" {
            continue;
        }
        for ip in lab::ingress_ips(service) {
            if let Ok(address) = ip.parse::<IpAddr>()
                && l2_ranges.iter().any(|r| in_range(r, address))
            {
                out.l2_ips.insert(ip.to_string());
            }
        }
    }
    out.l2_ips.extend(out.l2.keys().cloned());
    Ok(out)
}

/// The nodes whose MACs answer ARP (IPv4) or NDP (IPv6) for each of `ips` from the client,
/// probed all at once.
pub fn answers(ips: &BTreeSet<String>, macs: &BTreeMap<String, String>) -> Result<Fib> {
    let cli = Netns::attach(&lab::ns("cli"));
    let mut probes = Vec::new();
    for ip in ips {
        let mut command = if ip.contains(':') {
            let mut c = cli.command("ndisc6");
            c.args(["-m", "-r", "1", "-w", "800", ip, "eth0"]);
            c
        } else {
            let mut c = cli.command("arping");
            c.args(["-c", "2", "-w", "1", "-I", "eth0", ip]);
            c
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting arping or ndisc6 in the client")?;
        probes.push((ip.clone(), child));
    }
    let mut out = Fib::new();
    for (ip, child) in probes {
        let text = String::from_utf8_lossy(&child.wait_with_output()?.stdout).into_owned();
        let mut seen = BTreeSet::new();
        for line in text.lines() {
            let mac = if let Some(rest) = line.split("link-layer address:").nth(1) {
                Some(rest.trim().to_lowercase())
            } else if line.contains("reply from") {
                line.find('[')
                    .zip(line.find(']'))
                    .map(|(a, b)| line[a + 1..b].to_lowercase())
            } else {
                None
            };
            if let Some(mac) = mac {
                seen.insert(macs.get(&mac).cloned().unwrap_or(mac));
            }
        }
        if !seen.is_empty() {
            out.insert(ip, seen);
        }
    }
    Ok(out)
}

/// The differences between `want` and `have`, one line each.
fn differ(what: &str, want: &Fib, have: &Fib, out: &mut Vec<String>) {
    let keys: BTreeSet<&String> = want.keys().chain(have.keys()).collect();
    let none = BTreeSet::new();
    for key in keys {
        let w = want.get(key).unwrap_or(&none);
        let h = have.get(key).unwrap_or(&none);
        if w != h {
            out.push(format!("{what} {key}: want {w:?}, have {h:?}"));
        }
    }
}

/// Everything that differs now between what the cluster's objects say and what the routers
/// and the client see: first what ferrolb answers for alone (the controller's allocations,
/// the FRR ToR, whose timers the lab sets, and the client's ARP/NDP answers), then the other
/// routers, whose own policies (BIRD's error wait, up to 30 s after repeated session errors)
/// bound how soon they take a session back.
pub fn differences(
    dir: &Path,
    pools: &BTreeMap<String, Vec<String>>,
    gateways: &BTreeMap<String, String>,
    macs: &BTreeMap<String, String>,
) -> Result<(Vec<String>, Vec<String>)> {
    let want = expected(dir, pools)?;
    let mut first = want.unsettled.clone();
    let mut then = Vec::new();
    for (router, _, netns, proto) in ROUTERS {
        let have = fib(&lab::ns(netns), proto, gateways)?;
        let none = Fib::new();
        let wanted = want.routers.get(router).unwrap_or(&none);
        let out = if router == "tor" {
            &mut first
        } else {
            &mut then
        };
        differ(&format!("{router} FIB"), wanted, &have, out);
    }
    let answered = answers(&want.l2_ips, macs)?;
    let wanted: Fib = want
        .l2
        .iter()
        .filter(|(_, nodes)| !nodes.is_empty())
        .map(|(ip, nodes)| (ip.clone(), nodes.clone()))
        .collect();
    differ("ARP/NDP", &wanted, &answered, &mut first);
    Ok((first, then))
}

/// How a quiet period ended.
#[derive(Debug)]
pub enum Settled {
    /// Everything agreed by the quiet period's end and kept agreeing.
    After {
        /// From when the ToR, the client and the allocations agreed, after the storm.
        tor: Duration,
        /// From when every router agreed too.
        all: Duration,
        /// The last difference seen before everything agreed, if any.
        last: Option<String>,
        /// The last difference of the ToR, the client or the allocations seen before they
        /// agreed, if any.
        last_tor: Option<String>,
    },
    /// Something still differed at its limit.
    Not(Vec<String>),
}

fn summed(diffs: &[String]) -> Option<String> {
    let first = diffs.first()?;
    Some(match diffs.len() {
        1 => first.clone(),
        n => format!("{first} (and {} more)", n - 1),
    })
}

/// Polls [`differences`] from `since` (the last fault healed, the last change made): what
/// ferrolb answers for alone must agree by `quiet + limit` after it, every router by
/// `quiet + limit_all`, and both keep agreeing to the quiet period's end.
pub fn settle(
    dir: &Path,
    pools: &BTreeMap<String, Vec<String>>,
    gateways: &BTreeMap<String, String>,
    macs: &BTreeMap<String, String>,
    since: Instant,
    quiet: Duration,
    (limit, limit_all): (Duration, Duration),
) -> Settled {
    let mut tor: Option<Instant> = None;
    let mut all: Option<Instant> = None;
    let mut last: Option<String> = None;
    let mut last_tor: Option<String> = None;
    loop {
        let now = Instant::now();
        let (first, then) = match differences(dir, pools, gateways, macs) {
            Ok(d) => d,
            Err(error) => (vec![format!("could not compare: {error:#}")], Vec::new()),
        };
        if first.is_empty() {
            tor.get_or_insert(now);
        } else {
            tor = None;
            last_tor = summed(&first);
        }
        if first.is_empty() && then.is_empty() {
            all.get_or_insert(now);
        } else {
            all = None;
            last = summed(&first).or_else(|| summed(&then));
        }
        let elapsed = now.duration_since(since);
        if let (Some(tor), Some(all)) = (tor, all)
            && elapsed >= quiet
        {
            return Settled::After {
                tor: tor.duration_since(since),
                all: all.duration_since(since),
                last,
                last_tor,
            };
        }
        if (!first.is_empty() && elapsed >= quiet + limit) || elapsed >= quiet + limit_all {
            return Settled::Not(first.into_iter().chain(then).collect());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Writes what the nodes' FRR and the routers hold into `dir/diagnosis/NAME/`, for a
/// comparison that failed: each node's running configuration and BGP tables, each FRR
/// router's BGP tables and sessions, BIRD's routes. Returns the directory.
pub fn diagnose(dir: &Path, name: &str) -> std::path::PathBuf {
    let out = dir.join("diagnosis").join(name);
    let _ = std::fs::create_dir_all(&out);
    let mut frr: Vec<(&str, Vec<&str>)> = NODES
        .iter()
        .map(|(node, _)| {
            (
                *node,
                vec![
                    "show running-config",
                    "show bgp summary",
                    "show bgp ipv4 unicast",
                    "show bgp ipv6 unicast",
                    "show bfd peers brief",
                ],
            )
        })
        .collect();
    for router in ["rtr", "rr"] {
        frr.push((
            router,
            vec![
                "show bgp summary",
                "show bgp ipv4 unicast",
                "show bgp ipv6 unicast",
                "show bfd peers brief",
            ],
        ));
    }
    for (name, commands) in frr {
        let client = crate::frr::Frr::client(&dir.join(name), &lab::ns(name));
        let mut text = String::new();
        for command in commands {
            text.push_str(&format!("# {command}\n"));
            match client.vtysh(command) {
                Ok(said) => text.push_str(&said),
                Err(error) => text.push_str(&format!("error: {error:#}\n")),
            }
        }
        let _ = std::fs::write(out.join(format!("{name}.txt")), text);
    }
    let bird = crate::lab::others::bird(dir)
        .birdc("show route all")
        .unwrap_or_else(|e| format!("error: {e:#}"));
    let _ = std::fs::write(out.join("bird.txt"), bird);
    out
}

/// Where each log of the lab's processes ends now: [`keep_logs`] copies what they write
/// after it.
pub fn log_marks(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut marks = Vec::new();
    for folder in [dir.to_path_buf(), dir.join("cp")] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                marks.push((path, len));
            }
        }
    }
    marks.sort();
    marks
}

/// The most of one log [`keep_logs`] copies (its end).
const KEPT_LOG_MAX: u64 = 4 << 20;

/// Copies what each log in `marks` got after its mark into `out` (the newest
/// [`KEPT_LOG_MAX`] bytes of it): the processes' own account of a slow or failed storm.
pub fn keep_logs(marks: &[(std::path::PathBuf, u64)], out: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let _ = std::fs::create_dir_all(out);
    for (path, mark) in marks {
        let Ok(mut file) = std::fs::File::open(path) else {
            continue;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A log that shrank was written anew (a restarted process): keep all of it.
        let from = if len < *mark { 0 } else { *mark };
        let from = from.max(len.saturating_sub(KEPT_LOG_MAX));
        let mut text = Vec::new();
        if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut text).is_err() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = std::fs::write(out.join(name), text);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::without_slices_without_endpoints;

    #[test]
    fn a_load_balancer_service_without_slices_gets_an_empty_one() {
        let slice = json!({
            "kind": "EndpointSlice",
            "metadata": {"name": "a-x", "namespace": "chaos",
                         "labels": {"kubernetes.io/service-name": "a"}},
            "endpoints": [{"addresses": ["10.244.0.1"], "nodeName": "n1"}],
        });
        let service = |name: &str, kind: &str| {
            json!({"kind": "Service", "metadata": {"name": name, "namespace": "chaos"},
                   "spec": {"type": kind}})
        };
        let mut list = json!({"items": [
            service("a", "LoadBalancer"),
            slice,
            service("b", "LoadBalancer"),
            service("c", "ClusterIP"),
        ]});
        without_slices_without_endpoints(&mut list);
        let items = list["items"].as_array().unwrap();
        let slices: Vec<(&str, usize)> = items
            .iter()
            .filter(|o| o["kind"] == "EndpointSlice")
            .map(|o| {
                (
                    o["metadata"]["labels"]["kubernetes.io/service-name"]
                        .as_str()
                        .unwrap(),
                    o["endpoints"].as_array().unwrap().len(),
                )
            })
            .collect();
        assert_eq!(slices, [("a", 1), ("b", 0)]);
    }
}
