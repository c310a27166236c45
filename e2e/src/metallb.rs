//! MetalLB on the chart lab's real nodes, beside the same ToR and client, for the side-by-side
//! benchmarks and the switch from MetalLB to ferrolb, in any of its three BGP modes. MetalLB's
//! controller and speaker, and frr-k8s for its FRR-K8s mode, are built from the Go modules
//! pinned in `hack/tools/metallb` (`hack/metallb.sh`), put in images named as they are
//! published (FRR's made from ferrolb's FRR root file system), and installed with MetalLB's
//! own Helm chart from that module's archive; nothing from MetalLB is part of ferrolb.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::chart_lab::{self, ChartLab, NS, RequestLoop};
use crate::cpu::CpuSampler;
use crate::image::{Entry, Image, Layer};
use crate::kubectl::Kubectl;
use crate::netns::Netns;
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

/// MetalLB's version, as its chart's appVersion says (`v0.16.1`).
pub fn version(built: &Path) -> Result<String> {
    let chart = std::fs::read_to_string(built.join("chart/Chart.yaml"))?;
    chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .context("MetalLB's Chart.yaml has no appVersion")
}

/// MetalLB's controller and speaker images, the FRR image its FRR mode and frr-k8s run, and
/// frr-k8s's own, written to `dir` as archives nodes import, under the references the charts
/// name by default, so they run without a registry. MetalLB's images hold each binary at
/// `/<name>` as its entry point and a `/tmp` any user may write (the controller keeps its
/// webhook's certificate there); the speaker's also holds what its FRR mode copies out into
/// the FRR containers (`/cp-tool`, `/frr-metrics`, `/frr-reloader.sh`).
pub fn images(built: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let version = version(built)?;
    let mut archives = Vec::new();
    for (name, extras) in [
        ("controller", &[][..]),
        (
            "speaker",
            &["cp-tool", "frr-metrics", "frr-reloader.sh"][..],
        ),
    ] {
        let archive = dir.join(format!("metallb-{name}.tar"));
        component_image(built, name, &version, extras).write(&archive)?;
        archives.push(archive);
    }
    let root = paths::image_root()?;
    // MetalLB's chart and frr-k8s's name different FRR releases: the one FRR image answers to
    // both.
    let frr = frr_image(built, &root)?;
    let frr_k8s_frr = frr_k8s_frr_reference(built)?;
    let aliases: Vec<String> = [frr_k8s_frr]
        .into_iter()
        .filter(|r| *r != frr.reference)
        .collect();
    for (name, image, aliases) in [
        ("frr", frr, &aliases[..]),
        ("frr-k8s", frr_k8s_image(built, &root)?, &[][..]),
    ] {
        let archive = dir.join(format!("metallb-{name}.tar"));
        image.write_also_as(&archive, aliases)?;
        archives.push(archive);
    }
    Ok(archives)
}

/// MetalLB's `name` image (`controller` or `speaker`) as published for `version`
/// (`quay.io/metallb/<name>:<version>`): `built`'s `bin/<name>` at `/<name>` as the entry
/// point, `extras` from `bin/` beside it, and a `/tmp` any user may write.
pub(crate) fn component_image(built: &Path, name: &str, version: &str, extras: &[&str]) -> Image {
    let bin = |name: &str| Entry::File {
        path: name.into(),
        from: built.join("bin").join(name),
        mode: 0o755,
    };
    let mut entries = vec![Entry::SharedDir("tmp".into()), bin(name)];
    entries.extend(extras.iter().map(|extra| bin(extra)));
    Image {
        reference: format!("quay.io/metallb/{name}:{version}"),
        layers: vec![Layer::Entries(entries)],
        entrypoint: vec![format!("/{name}")],
        cmd: Vec::new(),
    }
}

/// The scalar at `path` (keys from the top) in a YAML document of nested maps, such as a
/// chart's `values.yaml`; `None` when a key is missing.
fn yaml_scalar(text: &str, path: &[&str]) -> Option<String> {
    let mut depth = 0;
    // The indentation of the keys at the current depth, once seen.
    let mut level: Option<usize> = Some(0);
    let mut parent = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if depth > 0 && indent <= parent {
            return None;
        }
        let at = *level.get_or_insert(indent);
        if indent != at {
            continue;
        }
        let Some(rest) = trimmed
            .strip_prefix(path[depth])
            .and_then(|r| r.strip_prefix(':'))
        else {
            continue;
        };
        if depth + 1 == path.len() {
            let value = rest.split(" #").next().unwrap_or("").trim();
            return Some(value.trim_matches('"').to_string());
        }
        depth += 1;
        parent = indent;
        level = None;
    }
    None
}

/// The scalar at `path` in MetalLB's chart's values, or in its packed frr-k8s subchart's.
fn chart_value(built: &Path, frr_k8s: bool, path: &[&str]) -> Result<String> {
    let chart = built.join("chart");
    let (text, what) = if frr_k8s {
        let packed = frr_k8s_subchart(built)?;
        let archive = chart.join("charts").join(&packed);
        let out = std::process::Command::new("tar")
            .arg("-xzOf")
            .arg(&archive)
            .arg(format!("{}/values.yaml", packed_chart(&packed).0))
            .output()?;
        if !out.status.success() {
            bail!(
                "reading {}: {}",
                archive.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (String::from_utf8(out.stdout)?, packed)
    } else {
        (
            std::fs::read_to_string(chart.join("values.yaml"))?,
            "MetalLB's chart".into(),
        )
    };
    yaml_scalar(&text, path).with_context(|| format!("{what}: no {} in values", path.join(".")))
}

/// The chart's name and version in a packed subchart's file name, `<name>-<version>.tgz`.
fn packed_chart(packed: &str) -> (&str, &str) {
    packed
        .strip_suffix(".tgz")
        .and_then(|p| p.rsplit_once('-'))
        .unwrap_or((packed, ""))
}

/// The packed frr-k8s subchart in MetalLB's chart (`frr-k8s-<version>.tgz`).
fn frr_k8s_subchart(built: &Path) -> Result<String> {
    let dir = built.join("chart/charts");
    std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with("frr-k8s-") && n.ends_with(".tgz"))
        .with_context(|| format!("no frr-k8s subchart in {}", dir.display()))
}

/// frr-k8s's version, as its packed chart's name says (`v0.0.25`).
fn frr_k8s_version(built: &Path) -> Result<String> {
    let packed = frr_k8s_subchart(built)?;
    Ok(format!("v{}", packed_chart(&packed).1))
}

/// The FRR image MetalLB's FRR mode names (`quay.io/frrouting/frr:10.5.3`, FRR's
/// published image, which no registry here serves), made from the FRR root file system
/// ferrolb's image uses (Debian's FRR 10.3, with Python for `frr-reload.py`), plus what the
/// charts' FRR containers call on FRR's image: `/sbin/tini`, `/usr/lib/frr/docker-start`
/// (the daemons of `/etc/frr/daemons` under watchfrr), and a `/bin/sh` that knows `[[` (the
/// charts' FRR container waits for its log file with `until [[ -f … ]]`; FRR's image has
/// busybox's shell, Debian's is dash).
fn frr_image(built: &Path, root: &Path) -> Result<Image> {
    let image = |key| chart_value(built, false, &["speaker", "frr", "image", key]);
    Ok(Image {
        reference: format!("{}:{}", image("repository")?, image("tag")?),
        layers: vec![
            Layer::Tar(root.to_path_buf()),
            Layer::Entries(vec![
                Entry::Link {
                    path: "usr/sbin/tini".into(),
                    target: "/usr/bin/tini".into(),
                },
                Entry::Link {
                    path: "usr/bin/sh".into(),
                    target: "bash".into(),
                },
                Entry::Text {
                    path: "usr/lib/frr/docker-start".into(),
                    text: DOCKER_START.into(),
                    mode: 0o755,
                },
            ]),
        ],
        entrypoint: vec!["/usr/lib/frr/docker-start".into()],
        cmd: Vec::new(),
    })
}

/// The FRR image frr-k8s's chart names (`quay.io/frrouting/frr:10.4.3`).
fn frr_k8s_frr_reference(built: &Path) -> Result<String> {
    let image = |key| chart_value(built, true, &["frrk8s", "frr", "image", key]);
    Ok(format!("{}:{}", image("repository")?, image("tag")?))
}

/// frr-k8s's image (`quay.io/metallb/frr-k8s:<its version>`): the daemon at `/frr-k8s`, its
/// webhook server at `/statuscleaner` and the tools its init containers copy into the FRR
/// containers, over Debian's root file system (its init containers run `/bin/sh -c "cp …"`).
fn frr_k8s_image(built: &Path, root: &Path) -> Result<Image> {
    let repository = chart_value(built, true, &["frrk8s", "image", "repository"])?;
    let file = |name: &str| Entry::File {
        path: name.into(),
        from: built.join("frr-k8s").join(name),
        mode: 0o755,
    };
    Ok(Image {
        reference: format!("{repository}:{}", frr_k8s_version(built)?),
        layers: vec![
            Layer::Tar(root.to_path_buf()),
            Layer::Entries(
                [
                    "frr-k8s",
                    "statuscleaner",
                    "frr-metrics",
                    "frr-status",
                    "frr-reloader.sh",
                ]
                .map(file)
                .into(),
            ),
        ],
        entrypoint: vec!["/frr-k8s".into()],
        cmd: Vec::new(),
    })
}

/// What `/usr/lib/frr/docker-start` runs in [`frr_image`].
const DOCKER_START: &str = "#!/bin/bash
# FRR's daemons as /etc/frr/daemons lists them, started by FRR's init script (watchfrr keeps
# them running); then this waits, as the entry point of a container.
set -e
/usr/lib/frr/frrinit.sh start
exec sleep infinity
";
/// The chart lab's cluster with MetalLB's images and ferrolb's imported, and nothing
/// installed.
pub fn lab(prefix: &str, dir: &Path, built: &Path) -> Result<ChartLab> {
    let mut all = chart_lab::chart_images(dir)?;
    all.extend(images(built, dir)?);
    ChartLab::without_chart(prefix, dir, &all)
}

/// The BGP implementation MetalLB's speakers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// MetalLB's own BGP speaker in Go (`speaker.frr.enabled=false`): no BFD, no graceful
    /// restart.
    Native,
    /// FRR beside each speaker (the chart's default up to 0.15): the speaker renders frr.conf and
    /// signals its reloader, which runs `frr-reload.py`.
    Frr,
    /// frr-k8s (the default from MetalLB 0.16): the speaker writes an FRRConfiguration per
    /// node, which frr-k8s's daemon renders and reloads into its own FRR.
    FrrK8s,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;

    /// `native`, `frr` or `frrk8s`.
    fn from_str(name: &str) -> Result<Mode> {
        match name {
            "native" => Ok(Mode::Native),
            "frr" => Ok(Mode::Frr),
            "frrk8s" => Ok(Mode::FrrK8s),
            other => bail!("no MetalLB mode {other:?} (native, frr, frrk8s)"),
        }
    }
}

impl Mode {
    /// Its name in figures: `metallb_native`, `metallb_frr`, `metallb_frrk8s`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "metallb_native",
            Mode::Frr => "metallb_frr",
            Mode::FrrK8s => "metallb_frrk8s",
        }
    }

    /// The chart values that choose it.
    fn values(self) -> [&'static str; 4] {
        let (frr, frrk8s) = match self {
            Mode::Native => ("speaker.frr.enabled=false", "frrk8s.enabled=false"),
            Mode::Frr => ("speaker.frr.enabled=true", "frrk8s.enabled=false"),
            Mode::FrrK8s => ("speaker.frr.enabled=false", "frrk8s.enabled=true"),
        };
        ["--set", frr, "--set", frrk8s]
    }

    /// Its pods on a cluster of `nodes` nodes: the controller and a speaker per node, and
    /// with frr-k8s its daemon per node and its webhook.
    fn pods(self, nodes: usize) -> usize {
        match self {
            Mode::Native | Mode::Frr => nodes + 1,
            Mode::FrrK8s => 2 * nodes + 2,
        }
    }
}

/// `helm install metallb <MetalLB's chart> -n metallb-system --create-namespace` with the
/// speakers in `mode`; returns once every pod is Ready.
pub fn install(lab: &ChartLab, built: &Path, mode: Mode) -> Result<()> {
    helm_in_mode(lab, built, mode, "install", &["--create-namespace"])
}

/// `helm upgrade metallb --reuse-values` to speakers in `mode`; returns once MetalLB's pods
/// of that mode, and only those, are all Ready.
pub fn change_mode(lab: &ChartLab, built: &Path, mode: Mode) -> Result<()> {
    helm_in_mode(lab, built, mode, "upgrade", &["--reuse-values"])
}

/// `helm <verb> metallb <MetalLB's chart> -n metallb-system <flags>` with `mode`'s values,
/// then waits as [`install`] says.
fn helm_in_mode(
    lab: &ChartLab,
    built: &Path,
    mode: Mode,
    verb: &str,
    flags: &[&str],
) -> Result<()> {
    helm_in_mode_unsettled(lab, built, mode, verb, flags)?;
    settle_install(lab, mode)
}

/// [`helm_in_mode`] without the wait.
fn helm_in_mode_unsettled(
    lab: &ChartLab,
    built: &Path,
    mode: Mode,
    verb: &str,
    flags: &[&str],
) -> Result<()> {
    let chart = built.join("chart");
    let mut args = vec![
        verb,
        RELEASE,
        chart.to_str().context("MetalLB's chart path")?,
        "-n",
        NS,
    ];
    args.extend(flags);
    args.extend(mode.values());
    lab.helm(&args)?;
    Ok(())
}

fn settle_install(lab: &ChartLab, mode: Mode) -> Result<()> {
    let kubectl = lab.cluster.kubectl();
    let pods = mode.pods(lab.cluster.names().len());
    chart_lab::all_ready(kubectl, "MetalLB", pods, Duration::from_secs(300))
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

/// What a switch between MetalLB and ferrolb did, measured under request loops.
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
    /// From the switch starting to the system switched to announcing everything.
    pub total: Duration,
    /// From its `helm install` to its announcing everything.
    pub install_to_announced: Duration,
    /// From the switch starting to the last pod of the system switched from gone.
    pub old_gone: Duration,
}

/// The DaemonSet of frr-k8s's daemons in MetalLB's FRR-K8s mode (MetalLB's chart installed
/// as `metallb`).
const FRR_K8S_DAEMONSET: &str = "metallb-frr-k8s";

/// The pods of MetalLB's speakers and of frr-k8s's daemons where it runs (not its webhook
/// server's): the set of names times the set of components matches no other pod of either
/// chart.
const SPEAKER_AND_FRR_K8S: &str = "app.kubernetes.io/name in (metallb,frr-k8s),\
                                   app.kubernetes.io/component in (speaker,frr-k8s)";

/// The README's switch without downtime, node by node: MetalLB's CRDs kept out of its
/// release; its speaker DaemonSet (and in FRR-K8s mode frr-k8s's) deleted with its pods left
/// running (`--cascade=orphan`, so none is recreated once deleted); ferrolb's CRD
/// definitions put in; ferrolb installed with its default values (its controller runs beside
/// MetalLB's, both keeping the IPs they find; its speakers wait while MetalLB's hold the
/// node's ports); then, node by node, MetalLB's speaker (and frr-k8s's daemon) deleted and
/// ferrolb's announcing from the node (a new session at the ToR, the BGP IP routed through
/// it) before the next; MetalLB uninstalled. Returns when `helm install ferrolb` ran.
pub fn hand_over(lab: &ChartLab, built: &Path, bgp_ip: &str) -> Result<Instant> {
    let kubectl = lab.cluster.kubectl();
    let began = Instant::now();
    let step = |what: &str| println!("hand-over +{} ms: {what}", began.elapsed().as_millis());
    keep_crds(lab, built)?;
    // In FRR-K8s mode, frr-k8s's daemon and its FRR hold the node's BGP session: they are
    // handed over with the speaker.
    let frr_k8s = !kubectl
        .run(
            &[
                "get",
                "daemonset",
                "-n",
                NS,
                FRR_K8S_DAEMONSET,
                "--ignore-not-found",
                "-o",
                "name",
            ],
            None,
        )?
        .trim()
        .is_empty();
    let mut orphan = vec!["delete", "daemonset", "-n", NS, "metallb-speaker"];
    if frr_k8s {
        orphan.push(FRR_K8S_DAEMONSET);
    }
    orphan.push("--cascade=orphan");
    kubectl.run(&orphan, None)?;
    step(if frr_k8s {
        "MetalLB's CRDs kept, its speakers and frr-k8s's daemons orphaned"
    } else {
        "MetalLB's CRDs kept, its speakers orphaned"
    });
    replace_existing_crds(kubectl)?;
    step("ferrolb's CRD definitions in");
    let installing = Instant::now();
    chart_lab::helm_install(|args| lab.helm(args))?;
    step("ferrolb installed");
    node_by_node(lab, bgp_ip, SPEAKER_AND_FRR_K8S, &step)?;
    lab.helm(&["uninstall", RELEASE, "-n", NS, "--wait"])?;
    step("MetalLB uninstalled");
    Ok(installing)
}

/// For each node in turn, those answering for layer-2 IPs last ([`layer2_owners_last`]):
/// MetalLB's speaker pod there (pods of `selector`) deleted, then a wait until ferrolb's
/// speaker has a new session with the ToR from that node and the ToR routes `bgp_ip` through
/// it. `step` reports each.
pub(crate) fn node_by_node(
    lab: &ChartLab,
    bgp_ip: &str,
    selector: &str,
    step: &dyn Fn(&str),
) -> Result<()> {
    let kubectl = lab.cluster.kubectl();
    for (name, address) in &layer2_owners_last(lab)? {
        let metallbs = tor_session(lab, address)?.connections;
        delete_pods_on(kubectl, selector, name)?;
        step(&format!("MetalLB's speaker on {name} deleted"));
        // A new session (ferrolb's), and the IP routed through it.
        wait_for(
            &format!("ferrolb's speaker announcing {bgp_ip} from {name}"),
            Duration::from_secs(120),
            || {
                let now = tor_session(lab, address)?;
                let routed = crate::lab::nexthops(&lab.rtr, bgp_ip)?.contains(address);
                Ok((now.connections > metallbs && now.established && routed).then_some(()))
            },
        )?;
        step(&format!("{name} announces through ferrolb"));
    }
    Ok(())
}

/// The nodes (name, address), those answering for fewer layer-2 IPs first: MetalLB's
/// ServiceL2Status objects, one per IP its speaker on a node answers for, labelled
/// `metallb.io/node`; name order among equals, and where MetalLB writes none (before 0.14).
/// Handing over a node whose MetalLB speaker answers for an IP moves that IP twice: MetalLB's
/// other speakers elect among the members its memberlist has left, and ferrolb's speaker on
/// the node, electing as MetalLB did before, takes it back. Handed over last, such a node has
/// no MetalLB speaker left to take its IPs, and ferrolb's answers from the same node.
fn layer2_owners_last(lab: &ChartLab) -> Result<Vec<(String, String)>> {
    let owners = owner_counts(
        &lab.cluster
            .kubectl()
            .get(&["servicel2statuses", "-n", NS])?,
    );
    let mut nodes = nodes(lab);
    nodes.sort_by_key(|(name, _)| owners.get(name).copied().unwrap_or(0));
    Ok(nodes)
}

/// The lab's nodes, (name, address), in name order.
fn nodes(lab: &ChartLab) -> Vec<(String, String)> {
    let names = lab.cluster.names().iter().cloned();
    names.zip(lab.cluster.addresses().iter().cloned()).collect()
}

/// How many of the ServiceL2Status objects in `list` (`kubectl get -o json`) name each node.
fn owner_counts(list: &serde_json::Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for status in list["items"].as_array().into_iter().flatten() {
        if let Some(node) = status["metadata"]["labels"]["metallb.io/node"].as_str() {
            *counts.entry(node.to_string()).or_default() += 1;
        }
    }
    counts
}

/// How MetalLB is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// MetalLB removed, then ferrolb installed ([`remove_keeping_objects`]).
    RemoveFirst,
    /// Node by node ([`hand_over`]).
    NodeByNode,
    /// From MetalLB v0.12 and its ConfigMap, through `ferrolb convert`, node by node
    /// ([`crate::metallb_legacy::hand_over`]).
    FromConfigMap,
}

/// Request loops to a BGP IP and a layer-2 IP, a sampler of the ToR's next hops for the
/// BGP IP and one of the machine's CPU use, running across a switch between MetalLB and
/// ferrolb, with the Services' IPs from before it.
struct Watched {
    before: BTreeMap<String, Vec<String>>,
    bgp_loop: RequestLoop,
    l2_loop: RequestLoop,
    sampler: NexthopSampler,
    cpu: CpuSampler,
    bgp_ip: String,
    l2_ip: String,
    /// When the switch began: a second after the loops.
    started: Instant,
}

impl Watched {
    fn start(lab: &ChartLab, bgp_ip: &str, l2_ip: &str) -> Result<Watched> {
        let before = service_ips(lab.cluster.kubectl())?;
        let bgp_loop = RequestLoop::start(&lab.client, bgp_ip, Duration::from_millis(20))?;
        let l2_loop = RequestLoop::start(&lab.client, l2_ip, Duration::from_millis(20))?;
        let sampler = NexthopSampler::start(&lab.rtr, bgp_ip);
        let mut namespaces: Vec<&Netns> = lab.cluster.node_namespaces().iter().collect();
        namespaces.extend([lab.cluster.control_plane(), &lab.rtr, &lab.client]);
        let cpu = CpuSampler::start(&namespaces);
        std::thread::sleep(Duration::from_secs(1));
        Ok(Watched {
            before,
            bgp_loop,
            l2_loop,
            sampler,
            cpu,
            bgp_ip: bgp_ip.to_string(),
            l2_ip: l2_ip.to_string(),
            started: Instant::now(),
        })
    }

    /// Stops the loops 2 s from now and sums up: `installing` is when the new system's
    /// `helm install` ran, `announced` when it announced everything, `gone` when the old
    /// system's last pod was gone. `what` names the switch in what is printed.
    fn finish(
        self,
        lab: &ChartLab,
        what: &str,
        installing: Instant,
        announced: Instant,
        gone: Instant,
    ) -> Result<Switched> {
        let started = self.started;
        std::thread::sleep(Duration::from_secs(2));
        let hops = self.sampler.finish();
        for (from, lasted) in &hops.unrouted {
            println!(
                "{what} +{} ms: the ToR had no route to {} for {} ms",
                from.saturating_duration_since(started).as_millis(),
                self.bgp_ip,
                lasted.as_millis()
            );
        }
        let bgp_results = self.bgp_loop.finish();
        let l2_results = self.l2_loop.finish();
        let cpu = self.cpu.finish();
        println!(
            "{what}: {}",
            cpu.describe(started, Instant::now(), CPU_PROGRAMS_SHOWN)
        );
        let count = |ip: &str, results: &[(Instant, bool)]| {
            let bursts = failure_bursts(results);
            if !bursts.is_empty() {
                let ms = |at: Instant| at.saturating_duration_since(started).as_millis();
                let words: Vec<String> = bursts
                    .iter()
                    .map(|&(first, last, count)| match count {
                        1 => format!("+{}", ms(first)),
                        _ => format!("+{}…+{} ({count})", ms(first), ms(last)),
                    })
                    .collect();
                println!(
                    "{what}: requests to {ip} failed at (ms) {}",
                    words.join(" ")
                );
                // Each request has 1 s a step: the machine's use from just before the
                // burst's first request to the last one's first second.
                for &(first, last, _) in bursts.iter().take(CPU_BURSTS_SHOWN) {
                    println!(
                        "{what} +{} ms, {ip}: {}",
                        ms(first),
                        cpu.describe(
                            first - Duration::from_millis(500),
                            last + Duration::from_secs(1),
                            CPU_PROGRAMS_SHOWN
                        )
                    );
                }
            }
            (results.len(), results.iter().filter(|(_, ok)| !ok).count())
        };
        let bgp_requests = count(&self.bgp_ip, &bgp_results);
        let l2_requests = count(&self.l2_ip, &l2_results);
        let after = service_ips(lab.cluster.kubectl())?;
        let ip_changes = self
            .before
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
            old_gone: gone - started,
        })
    }
}

/// How many programs the switch's CPU use names, the busiest first.
const CPU_PROGRAMS_SHOWN: usize = 8;

/// For how many bursts of failed requests the machine's CPU use is printed.
const CPU_BURSTS_SHOWN: usize = 10;

/// The failed requests of `results` (in the order sent) as bursts, each a run of failures
/// with no success between: its first and last request's start and how many failed.
fn failure_bursts(results: &[(Instant, bool)]) -> Vec<(Instant, Instant, usize)> {
    results
        .split(|(_, ok)| *ok)
        .filter(|run| !run.is_empty())
        .map(|run| (run[0].0, run[run.len() - 1].0, run.len()))
        .collect()
}

/// Switches the lab from MetalLB to ferrolb as the README tells a user, `how`, under a
/// request loop to `bgp_ip` and one to `l2_ip`, sampling the ToR's next hops for `bgp_ip`;
/// returns once ferrolb announces both (its pods Ready, the ToR routing `bgp_ip` to every
/// node, the client's requests to both answered), only ferrolb's pods are left, and the
/// loops have run 2 s more. `built` is MetalLB's build ([`built`]; [`Switch::FromConfigMap`]
/// needs none).
pub fn switch_to_ferrolb(
    lab: &ChartLab,
    built: &Path,
    how: Switch,
    bgp_ip: &str,
    l2_ip: &str,
) -> Result<Switched> {
    let kubectl = lab.cluster.kubectl();
    let watched = Watched::start(lab, bgp_ip, l2_ip)?;
    let nodes = lab.cluster.names().len();
    let installing = match how {
        Switch::RemoveFirst => {
            remove_keeping_objects(lab, built)?;
            let installing = Instant::now();
            chart_lab::install_chart(kubectl, |args| lab.helm(args), nodes + 2)?;
            installing
        }
        Switch::NodeByNode => hand_over(lab, built, bgp_ip)?,
        Switch::FromConfigMap => crate::metallb_legacy::hand_over(lab, bgp_ip)?,
    };
    // ferrolb's pods Ready and both IPs announced; MetalLB's pods may still be stopping
    // (its controller takes its grace period while it writes Services' status).
    wait_for(
        "ferrolb announcing every Service",
        Duration::from_secs(120),
        || {
            let pods = kubectl.get(&["pods", "-n", NS, "-l", "app.kubernetes.io/name=ferrolb"])?;
            let pods = pods["items"].as_array().cloned().unwrap_or_default();
            let ready = pods.iter().filter(|p| chart_lab::pod_ready(p)).count();
            Ok(
                (ready == pods.len() && ready == nodes + 2 && lab.announced(bgp_ip, &[l2_ip])?)
                    .then_some(()),
            )
        },
    )?;
    let announced = Instant::now();
    // With thousands of Services MetalLB's controller may take minutes to stop.
    wait_gone(kubectl, "MetalLB", Duration::from_secs(600), |name| {
        name != "ferrolb"
    })?;
    watched.finish(lab, "switch", installing, announced, Instant::now())
}

/// Waits until no pod in MetalLB's namespace is `what`'s: one whose `app.kubernetes.io/name`
/// `old` picks; on a timeout the error names those still there.
fn wait_gone(
    kubectl: &Kubectl,
    what: &str,
    timeout: Duration,
    old: impl Fn(&str) -> bool,
) -> Result<()> {
    wait_for(&format!("{what}'s pods gone"), timeout, || {
        let pods = kubectl.get(&["pods", "-n", NS])?;
        let others: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                old(p["metadata"]["labels"]["app.kubernetes.io/name"]
                    .as_str()
                    .unwrap_or(""))
            })
            .map(|p| {
                format!(
                    "{} ({}{})",
                    p["metadata"]["name"].as_str().unwrap_or("?"),
                    p["status"]["phase"].as_str().unwrap_or("?"),
                    if p["metadata"]["deletionTimestamp"].is_string() {
                        ", terminating"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        if others.is_empty() {
            Ok(Some(()))
        } else {
            bail!("still in {NS}: {}", others.join(", "))
        }
    })
}

/// How ferrolb gives way to MetalLB on the way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Back {
    /// `helm uninstall ferrolb`, then MetalLB installed: no node announces in between.
    Uninstall,
    /// Node by node ([`hand_back`]).
    NodeByNode,
}

/// The README's way back from ferrolb to MetalLB, `how`, under the same request loops and
/// sampler as [`switch_to_ferrolb`]. [`Back::Uninstall`]: `helm uninstall ferrolb` (the CRDs,
/// in its chart's `crds/`, stay, and with them every object; the Services keep their IPs in
/// their status), `prepare` run once ferrolb is gone (what `mode` needs of the objects: native
/// mode a BGPPeer without BFD and no BFD profile), then `helm install metallb --take-ownership
/// --force-conflicts` in `mode`: MetalLB's chart takes the CRDs back, with the conversion
/// webhook its BGPPeer definition names (Helm applies server-side, and `kubectl replace` of
/// ferrolb's definitions in the switch left them owned by another field manager).
/// [`Back::NodeByNode`]: the same install, node by node ([`hand_back`]). Returns once MetalLB's
/// pods are Ready, it announces both IPs, ferrolb's pods are gone, and the loops have run 2 s
/// more.
pub fn roll_back(
    lab: &ChartLab,
    built: &Path,
    mode: Mode,
    how: Back,
    prepare: impl FnOnce() -> Result<()>,
    bgp_ip: &str,
    l2_ip: &str,
) -> Result<Switched> {
    let kubectl = lab.cluster.kubectl();
    let watched = Watched::start(lab, bgp_ip, l2_ip)?;
    let installing = match how {
        Back::Uninstall => {
            lab.helm(&["uninstall", "ferrolb", "-n", NS, "--wait"])?;
            prepare()?;
            let installing = Instant::now();
            helm_in_mode_unsettled(lab, built, mode, "install", TAKE_BACK)?;
            installing
        }
        Back::NodeByNode => hand_back(lab, built, mode, prepare, bgp_ip)?,
    };
    wait_for(
        "MetalLB announcing every Service",
        Duration::from_secs(300),
        || lab.announced(bgp_ip, &[l2_ip]).map(|a| a.then_some(())),
    )?;
    let announced = Instant::now();
    wait_gone(kubectl, "ferrolb", Duration::from_secs(120), |name| {
        name == "ferrolb"
    })?;
    settle_install(lab, mode)?;
    let restarted = chart_lab::restarted(&kubectl.get(&["pods", "-n", NS])?);
    if !restarted.is_empty() {
        println!(
            "roll-back: MetalLB's containers restarted: {}",
            restarted.join("; ")
        );
    }
    watched.finish(lab, "roll-back", installing, announced, Instant::now())
}

/// The flags of MetalLB's `helm install` on the way back: its chart takes the CRDs back.
const TAKE_BACK: &[&str] = &["--take-ownership", "--force-conflicts"];

/// The taint that keeps MetalLB's pods off the nodes whose ferrolb speaker still announces,
/// while ferrolb is handed back: MetalLB's speaker exits when another holds the node's
/// memberlist port, and its FRR would open a second session from the node's address.
pub const HANDING_BACK: &str = "ferrolb.io/handing-back";

/// The README's way back node by node: ferrolb's speaker DaemonSet deleted with its pods left
/// running (`--cascade=orphan`: each, stopped from then on, goes for good, ending its sessions
/// with a Cease so the ToR withdraws that node's routes at once); every node but the first
/// tainted [`HANDING_BACK`]; ferrolb's speaker on the first node deleted, `prepare` run, and
/// MetalLB installed as [`roll_back`] does (its controller, and every pod of its, can only go
/// to the first node); then, for each node in turn, once MetalLB announces from the one before
/// (a new session at the ToR, sending as many prefixes as ferrolb's did from that node, the
/// BGP IP routed through it): ferrolb's speaker there deleted and the node's taint removed, so
/// that MetalLB's DaemonSets put their pods there. Last, `helm uninstall ferrolb` (its
/// controllers). Returns when MetalLB's `helm install` ran.
pub fn hand_back(
    lab: &ChartLab,
    built: &Path,
    mode: Mode,
    prepare: impl FnOnce() -> Result<()>,
    bgp_ip: &str,
) -> Result<Instant> {
    let kubectl = lab.cluster.kubectl();
    let began = Instant::now();
    let step = |what: &str| println!("hand-back +{} ms: {what}", began.elapsed().as_millis());
    let nodes = nodes(lab);
    kubectl.run(
        &[
            "delete",
            "daemonset",
            "-n",
            NS,
            "speaker",
            "--cascade=orphan",
        ],
        None,
    )?;
    step("ferrolb's speakers orphaned");
    let taint = format!("{HANDING_BACK}=:NoSchedule");
    for (name, _) in &nodes[1..] {
        kubectl.run(&["taint", "nodes", name, &taint], None)?;
    }
    step("every node but the first tainted");
    let mut installing = None;
    let mut prepare = Some(prepare);
    for (i, (name, address)) in nodes.iter().enumerate() {
        let before = tor_session(lab, address)?;
        if before.prefixes == 0 {
            bail!("the ToR has no prefix from {name} ({address}) to hand back");
        }
        delete_pods_on(
            kubectl,
            "app.kubernetes.io/name=ferrolb,app.kubernetes.io/component=speaker",
            name,
        )?;
        wait_for(
            &format!("the ToR's session with {name} ended by ferrolb's speaker"),
            Duration::from_secs(60),
            || Ok((!tor_session(lab, address)?.established).then_some(())),
        )?;
        step(&format!("ferrolb's speaker on {name} gone"));
        if let Some(prepare) = prepare.take() {
            prepare()?;
            installing = Some(Instant::now());
            helm_in_mode_unsettled(lab, built, mode, "install", TAKE_BACK)?;
            step("MetalLB installed");
        }
        if i > 0 {
            kubectl.run(
                &[
                    "taint",
                    "nodes",
                    name,
                    &format!("{HANDING_BACK}:NoSchedule-"),
                ],
                None,
            )?;
            step(&format!("{name}'s taint removed"));
        }
        wait_for(
            &format!(
                "MetalLB announcing from {name} the {} prefixes ferrolb sent, {bgp_ip} among them",
                before.prefixes
            ),
            Duration::from_secs(300),
            || {
                let now = tor_session(lab, address)?;
                let routed = crate::lab::nexthops(&lab.rtr, bgp_ip)?.contains(&address.to_string());
                Ok((now.connections > before.connections
                    && now.established
                    && now.prefixes >= before.prefixes
                    && routed)
                    .then_some(()))
            },
        )?;
        step(&format!("{name} announces through MetalLB"));
    }
    lab.helm(&["uninstall", "ferrolb", "-n", NS, "--wait"])?;
    step("ferrolb uninstalled");
    installing.context("no node to hand back")
}

/// Deletes the pods of `selector` in MetalLB's namespace on node `node`.
fn delete_pods_on(kubectl: &Kubectl, selector: &str, node: &str) -> Result<()> {
    let on = format!("spec.nodeName={node}");
    kubectl.run(
        &[
            "delete",
            "pod",
            "-n",
            NS,
            "-l",
            selector,
            "--field-selector",
            &on,
        ],
        None,
    )?;
    Ok(())
}

/// The ToR's BGP session with a node.
struct TorSession {
    /// How many times it was established.
    connections: u64,
    /// Whether it is now.
    established: bool,
    /// The prefixes the ToR accepted from it, every address family.
    prefixes: u64,
}

/// The ToR's session with the node at `address` (`show bgp neighbors <address> json`).
fn tor_session(lab: &ChartLab, address: &str) -> Result<TorSession> {
    let neighbour = lab
        .tor
        .json(&format!("show bgp neighbors {address} json"))?;
    let peer = &neighbour[address];
    let prefixes = peer["addressFamilyInfo"]
        .as_object()
        .into_iter()
        .flat_map(|families| families.values())
        .filter_map(|family| family["acceptedPrefixCounter"].as_u64())
        .sum();
    Ok(TorSession {
        connections: peer["connectionsEstablished"].as_u64().unwrap_or(0),
        established: peer["bgpState"] == "Established",
        prefixes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_requests_are_told_as_bursts_between_successes() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let results = [
            (at(0), true),
            (at(20), false),
            (at(40), true),
            (at(60), false),
            (at(80), false),
            (at(100), false),
            (at(120), true),
            (at(140), false),
        ];
        assert_eq!(
            failure_bursts(&results),
            [
                (at(20), at(20), 1),
                (at(60), at(100), 3),
                (at(140), at(140), 1)
            ]
        );
        assert!(failure_bursts(&[(at(0), true)]).is_empty());
    }

    #[test]
    fn layer2_statuses_are_counted_by_the_node_they_name() {
        let list = serde_json::json!({"items": [
            {"metadata": {"labels": {"metallb.io/node": "n2"}}},
            {"metadata": {"labels": {"metallb.io/node": "n2"}}},
            {"metadata": {"labels": {"metallb.io/node": "n1"}}},
            {"metadata": {"labels": {}}},
        ]});
        let counts = owner_counts(&list);
        assert_eq!(counts.get("n2"), Some(&2));
        assert_eq!(counts.get("n1"), Some(&1));
        assert_eq!(counts.len(), 2);
        assert!(owner_counts(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn a_scalar_is_read_at_its_path_only() {
        let values = "\
# top
speaker:
  image:
    repository: quay.io/metallb/speaker
  other:
    frr:
      image: {tag: wrong}
  frr:
    enabled: true
    image:
      repository: quay.io/frrouting/frr
      tag: \"9.1.0\" # the default
controller:
  image:
    tag: v1
";
        let at = |path: &[&str]| yaml_scalar(values, path);
        assert_eq!(
            at(&["speaker", "frr", "image", "repository"]).as_deref(),
            Some("quay.io/frrouting/frr")
        );
        assert_eq!(
            at(&["speaker", "frr", "image", "tag"]).as_deref(),
            Some("9.1.0")
        );
        assert_eq!(
            at(&["speaker", "image", "repository"]).as_deref(),
            Some("quay.io/metallb/speaker")
        );
        // A key of another section, or one the section lacks, is not taken.
        assert_eq!(at(&["speaker", "image", "tag"]), None);
        assert_eq!(at(&["controller", "image", "repository"]), None);
        assert_eq!(at(&["controller", "image", "tag"]).as_deref(), Some("v1"));
    }
}
