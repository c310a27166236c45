//! MetalLB on the chart lab's real nodes, beside the same ToR and client, for the side-by-side
//! benchmarks and the switch from MetalLB to ferrolb. MetalLB's controller and speaker are
//! built from the Go module pinned in `hack/tools/metallb` (`hack/metallb.sh`), put in images
//! named as MetalLB publishes them, and installed with MetalLB's own Helm chart from that
//! module's archive; nothing from MetalLB is part of ferrolb.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::chart_lab::{self, ChartLab, NS, RequestLoop};
use crate::image::{Entry, Image, Layer};
use crate::kubectl::Kubectl;
use crate::paths;
use crate::process::wait_for;
use crate::sampler::{NexthopSampler, Sampled};

/// The Helm release MetalLB is installed as.
pub const RELEASE: &str = "metallb";

/// The directory `hack/metallb.sh build` prints (`bin/controller`, `bin/speaker`, `chart/`),
/// or `FERROLB_METALLB_DIR` when set.
pub fn built() -> Result<PathBuf> {
    paths::built_with("metallb.sh", "build", "FERROLB_METALLB_DIR")
}

/// MetalLB's version, as its chart's appVersion says (`v0.15.2`).
pub fn version(built: &Path) -> Result<String> {
    let chart = std::fs::read_to_string(built.join("chart/Chart.yaml"))?;
    chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .context("MetalLB's Chart.yaml has no appVersion")
}

/// MetalLB's controller and speaker images, written to `dir` as archives nodes import: each
/// binary at `/<name>` as its entry point and a `/tmp` any user may write (the controller
/// keeps its webhook's certificate there), under the references MetalLB's chart names by
/// default, so the chart runs them without a registry.
pub fn images(built: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let version = version(built)?;
    let mut archives = Vec::new();
    for name in ["controller", "speaker"] {
        let image = Image {
            reference: format!("quay.io/metallb/{name}:{version}"),
            layers: vec![Layer::Entries(vec![
                Entry::SharedDir("tmp".into()),
                Entry::File {
                    path: name.into(),
                    from: built.join("bin").join(name),
                    mode: 0o755,
                },
            ])],
            entrypoint: vec![format!("/{name}")],
            cmd: Vec::new(),
        };
        let archive = dir.join(format!("metallb-{name}.tar"));
        image.write(&archive)?;
        archives.push(archive);
    }
    Ok(archives)
}

/// The chart lab's cluster with MetalLB's images and ferrolb's imported, and nothing
/// installed.
pub fn lab(prefix: &str, dir: &Path, built: &Path) -> Result<ChartLab> {
    let mut all = chart_lab::chart_images(dir)?;
    all.extend(images(built, dir)?);
    ChartLab::without_chart(prefix, dir, &all)
}

/// `helm install metallb <MetalLB's chart> -n metallb-system --create-namespace` with the
/// speaker in native BGP mode (`speaker.frr.enabled=false`); returns once its controller and a
/// speaker per node are Ready and the BGPPeer definition is one the API server takes.
pub fn install_native(lab: &ChartLab, built: &Path) -> Result<()> {
    let chart = built.join("chart");
    lab.helm(&[
        "install",
        RELEASE,
        &chart.to_string_lossy(),
        "-n",
        NS,
        "--create-namespace",
        "--set",
        "speaker.frr.enabled=false",
    ])?;
    let kubectl = lab.cluster.kubectl();
    let pods = lab.cluster.names().len() + 1;
    chart_lab::all_ready(kubectl, "MetalLB", pods, Duration::from_secs(180))?;
    // The API server refuses every BGPPeer under MetalLB 0.15's definition (ASNs of format
    // int32 with a maximum of 4294967295; MetalLB 0.16 declares int64): ferrolb's, with the
    // same fields, stands in for it.
    let bgppeers = paths::repo().join("deploy/charts/ferrolb/crds/metallb.io_bgppeers.yaml");
    kubectl.run(&["replace", "-f", &bgppeers.to_string_lossy()], None)?;
    Ok(())
}

/// Applies `manifests` once the validating webhook that is being installed admits them (a
/// webhook whose pod is Ready may still be getting its certificate).
pub fn apply_when_admitted(kubectl: &Kubectl, manifests: &str) -> Result<()> {
    let mut last = String::new();
    let applied = wait_for(
        "the manifests admitted",
        Duration::from_secs(60),
        || match kubectl.apply(manifests) {
            Ok(_) => Ok(Some(())),
            Err(error) => {
                last = format!("{error:#}");
                Ok(None)
            }
        },
    );
    applied.with_context(|| format!("last refusal: {last}"))
}

/// A BGPPeer to the ToR that MetalLB's native mode takes (no BFD, no graceful restart: its
/// native speaker refuses both), a BGP pool with its advertisement, and Service `routed` over
/// the pods of [`chart_lab::l2_manifests`]' `web`.
pub fn native_bgp_manifests() -> String {
    chart_lab::bgp_manifests_with_peer("{myASN: 64512, peerASN: 64513, peerAddress: 10.95.0.1}")
}

/// Every LoadBalancer Service's IPs in namespace `default`, by name.
pub fn service_ips(kubectl: &Kubectl) -> Result<BTreeMap<String, Vec<String>>> {
    let services = kubectl.get(&["services", "-n", "default"])?;
    Ok(services["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["spec"]["type"] == "LoadBalancer")
        .map(|s| {
            let ips = s["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(str::to_string))
                .collect();
            (
                s["metadata"]["name"].as_str().unwrap_or("").to_string(),
                ips,
            )
        })
        .collect())
}

/// The steps of the README's "Replacing MetalLB" for a MetalLB installed with Helm, up to
/// ferrolb's `helm install`: MetalLB's CRDs marked for Helm to keep and taken out of its
/// release (so `helm uninstall` leaves them and every object in them), MetalLB uninstalled,
/// and ferrolb's definitions of the CRDs that exist put in their place (MetalLB's BGPPeer
/// definition sends conversions to MetalLB's webhook Service, which is gone).
pub fn remove_keeping_objects(lab: &ChartLab, built: &Path) -> Result<()> {
    let kubectl = lab.cluster.kubectl();
    keep_crds(lab, built)?;
    lab.helm(&["uninstall", RELEASE, "-n", NS, "--wait"])?;
    replace_existing_crds(kubectl)
}

/// `kubectl replace -f deploy/charts/ferrolb/crds/`, as the README says: every CRD MetalLB
/// had is replaced; the one it lacks (ConfigurationState) is reported not found, which is the
/// only error allowed.
pub fn replace_existing_crds(kubectl: &Kubectl) -> Result<()> {
    let dir = paths::repo().join("deploy/charts/ferrolb/crds");
    let Err(error) = kubectl.run(&["replace", "-f", &dir.to_string_lossy()], None) else {
        return Ok(());
    };
    let text = format!("{error:#}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error from server") || l.starts_with("error"))
        .collect();
    let only_missing = !errors.is_empty()
        && errors
            .iter()
            .all(|l| l.contains("configurationstates.metallb.io") && l.contains("not found"));
    if !only_missing {
        bail!("replacing MetalLB's CRDs with ferrolb's: {text}");
    }
    Ok(())
}

/// `kubectl annotate` of every `*.metallb.io` CRD with `helm.sh/resource-policy=keep`, then
/// `helm upgrade metallb --reuse-values --set crds.enabled=false`: the CRDs leave MetalLB's
/// release and stay in the cluster (the upgrade reads the annotation on the live objects).
fn keep_crds(lab: &ChartLab, built: &Path) -> Result<()> {
    let kubectl = lab.cluster.kubectl();
    let crds = kubectl.run(&["get", "crd", "-o", "name"], None)?;
    let ours: Vec<&str> = crds
        .lines()
        .filter(|c| c.ends_with(".metallb.io"))
        .collect();
    let mut annotate = vec!["annotate", "--overwrite"];
    annotate.extend(&ours);
    annotate.push("helm.sh/resource-policy=keep");
    kubectl.run(&annotate, None)?;
    let chart = built.join("chart");
    lab.helm(&[
        "upgrade",
        RELEASE,
        &chart.to_string_lossy(),
        "-n",
        NS,
        "--reuse-values",
        "--set",
        "crds.enabled=false",
    ])?;
    Ok(())
}

/// What the switch from MetalLB to ferrolb did, measured under request loops.
#[derive(Debug)]
pub struct Switched {
    /// Services whose IPs differ after the switch.
    pub ip_changes: Vec<String>,
    /// Requests to the BGP IP, and of those failed.
    pub bgp_requests: (usize, usize),
    /// Requests to the layer-2 IP, and of those failed.
    pub l2_requests: (usize, usize),
    /// The ToR's next hops for the BGP IP during the switch.
    pub hops: Sampled,
    /// From MetalLB's removal starting to ferrolb announcing everything.
    pub total: Duration,
    /// From `helm install ferrolb` to ferrolb announcing everything.
    pub install_to_announced: Duration,
}

/// The README's switch without downtime, node by node: MetalLB's CRDs kept out of its
/// release; its speaker DaemonSet deleted with its pods left running (`--cascade=orphan`, so
/// none is recreated once deleted); ferrolb's CRD definitions put in; ferrolb installed with
/// its default values (its controller runs beside MetalLB's, both keeping the IPs they find;
/// its speakers wait while MetalLB's hold the node's ports); then, node by node, MetalLB's
/// speaker deleted and ferrolb's announcing from the node (a new session at the ToR, the BGP
/// IP routed through it) before the next; MetalLB uninstalled. Returns when
/// `helm install ferrolb` ran.
pub fn hand_over(lab: &ChartLab, built: &Path, bgp_ip: &str) -> Result<Instant> {
    let kubectl = lab.cluster.kubectl();
    let began = Instant::now();
    let step = |what: &str| println!("hand-over +{} ms: {what}", began.elapsed().as_millis());
    keep_crds(lab, built)?;
    kubectl.run(
        &[
            "delete",
            "daemonset",
            "-n",
            NS,
            "metallb-speaker",
            "--cascade=orphan",
        ],
        None,
    )?;
    step("MetalLB's CRDs kept, its speakers orphaned");
    replace_existing_crds(kubectl)?;
    step("ferrolb's CRD definitions in");
    let installing = Instant::now();
    chart_lab::helm_install(|args| lab.helm(args))?;
    step("ferrolb installed");
    // The ToR's session to a node: how many times it was established, and whether it is now.
    let session = |address: &str| -> Result<(u64, bool)> {
        let neighbour = lab
            .tor
            .json(&format!("show bgp neighbors {address} json"))?;
        let peer = &neighbour[address];
        Ok((
            peer["connectionsEstablished"].as_u64().unwrap_or(0),
            peer["bgpState"] == "Established",
        ))
    };
    for (name, address) in lab.cluster.names().iter().zip(lab.cluster.addresses()) {
        let (metallbs, _) = session(address)?;
        kubectl.run(
            &[
                "delete",
                "pod",
                "-n",
                NS,
                "-l",
                "app.kubernetes.io/name=metallb,app.kubernetes.io/component=speaker",
                "--field-selector",
                &format!("spec.nodeName={name}"),
            ],
            None,
        )?;
        step(&format!("MetalLB's speaker on {name} deleted"));
        // A new session (ferrolb's), and the IP routed through it.
        wait_for(
            &format!("ferrolb's speaker announcing {bgp_ip} from {name}"),
            Duration::from_secs(120),
            || {
                let (count, up) = session(address)?;
                let routed = crate::lab::nexthops(&lab.rtr, bgp_ip)?.contains(address);
                Ok((count > metallbs && up && routed).then_some(()))
            },
        )?;
        step(&format!("{name} announces through ferrolb"));
    }
    lab.helm(&["uninstall", RELEASE, "-n", NS, "--wait"])?;
    step("MetalLB uninstalled");
    Ok(installing)
}

/// How MetalLB is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// MetalLB removed, then ferrolb installed ([`remove_keeping_objects`]).
    RemoveFirst,
    /// Node by node ([`hand_over`]).
    NodeByNode,
}

/// Switches the lab from MetalLB to ferrolb as the README tells a user, `how`, under a
/// request loop to `bgp_ip` and one to `l2_ip`, sampling the ToR's next hops for `bgp_ip`;
/// returns once ferrolb announces both (the ToR routes `bgp_ip` to every node, the client's
/// requests to both are answered, and only ferrolb's pods are left) and the loops have run
/// 2 s more.
pub fn switch_to_ferrolb(
    lab: &ChartLab,
    built: &Path,
    how: Switch,
    bgp_ip: &str,
    l2_ip: &str,
) -> Result<Switched> {
    let kubectl = lab.cluster.kubectl();
    let before = service_ips(kubectl)?;
    let bgp_loop = RequestLoop::start(&lab.client, bgp_ip, Duration::from_millis(20))?;
    let l2_loop = RequestLoop::start(&lab.client, l2_ip, Duration::from_millis(20))?;
    let sampler = NexthopSampler::start(&lab.rtr, bgp_ip);
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let nodes = lab.cluster.names().len();
    let installing = match how {
        Switch::RemoveFirst => {
            remove_keeping_objects(lab, built)?;
            let installing = Instant::now();
            chart_lab::install_chart(kubectl, |args| lab.helm(args), nodes + 2)?;
            installing
        }
        Switch::NodeByNode => hand_over(lab, built, bgp_ip)?,
    };
    wait_for(
        "ferrolb announcing every Service, alone",
        Duration::from_secs(120),
        || {
            let (ready, total) = chart_lab::ready_pods(kubectl, NS)?;
            Ok(
                (ready == total && total == nodes + 2 && lab.announced(bgp_ip, &[l2_ip])?)
                    .then_some(()),
            )
        },
    )?;
    let announced = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let hops = sampler.finish();
    for (from, lasted) in &hops.unrouted {
        println!(
            "switch +{} ms: the ToR had no route to {bgp_ip} for {} ms",
            from.saturating_duration_since(started).as_millis(),
            lasted.as_millis()
        );
    }
    let count = |what: &str, results: Vec<(Instant, bool)>| {
        let failed: Vec<String> = results
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(at, _)| format!("+{}", at.saturating_duration_since(started).as_millis()))
            .collect();
        if !failed.is_empty() {
            println!(
                "switch: requests to {what} failed at (ms) {}",
                failed.join(" ")
            );
        }
        (results.len(), failed.len())
    };
    let bgp_requests = count(bgp_ip, bgp_loop.finish());
    let l2_requests = count(l2_ip, l2_loop.finish());
    let after = service_ips(kubectl)?;
    let ip_changes = before
        .iter()
        .filter(|(name, ips)| after.get(*name) != Some(ips))
        .map(|(name, ips)| format!("{name}: {ips:?} → {:?}", after.get(name)))
        .collect();
    Ok(Switched {
        ip_changes,
        bgp_requests,
        l2_requests,
        hops,
        total: announced - started,
        install_to_announced: announced - installing,
    })
}
