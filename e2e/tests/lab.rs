//! The whole lab as `hack/lab.sh up` builds it (root; network namespaces, Debian's FRR and the
//! Kubernetes 1.20 apiserver from `hack/apiserver.sh`): a real API server, `ferrolb
//! controller`, and `ferrolb speaker` on two nodes, each driving its own FRR, peering with a
//! ToR router. Scenarios are driven with kubectl and judged by the router's kernel FIB:
//! ECMP from both nodes; `externalTrafficPolicy: Local` announced only where the ready
//! endpoint is (read from core/v1 Endpoints, which is all 1.20 serves), and moved when it
//! moves; an invalid CR reported in each speaker's ConfigurationState with every route kept;
//! a deleted Service withdrawn. The lab uses the fixed namespaces `ferrolb-*`: it refuses to
//! start while a user's lab is up.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use ferrolb_e2e::lab::{self, endpoints_manifest};
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::process::wait_for;

const WAIT: Duration = Duration::from_secs(30);
const N1: &str = "10.99.0.11";
const N2: &str = "10.99.0.12";

/// Takes the lab down however the test ends.
struct Up(PathBuf);

impl Drop for Up {
    fn drop(&mut self) {
        if let Err(error) = lab::down(&self.0) {
            eprintln!("lab down: {error:#}");
        }
    }
}

fn ip_of(dir: &std::path::Path, service: &str) -> Result<String> {
    let s = lab::kubectl(dir).get(&["service", "-n", "shop", service])?;
    match s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str() {
        Some(ip) => Ok(ip.to_string()),
        None => bail!("{service} has no IP"),
    }
}

fn wait_hops(router: &Netns, ip: &str, want: &[&str]) -> Result<()> {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_for(&format!("next hops {want:?} for {ip}"), WAIT, || {
        let mut hops = lab::nexthops(router, ip)?;
        hops.sort();
        Ok((hops == want).then_some(()))
    })
}

#[test]
fn speakers_announce_follow_endpoints_survive_bad_config_and_withdraw() -> Result<()> {
    if Netns::exists("ferrolb-sw") {
        bail!("a lab is up (namespace ferrolb-sw exists): run `hack/lab.sh down` first");
    }
    let dir = std::env::temp_dir().join(format!("ferrolb-lab-test-{}", std::process::id()));
    let summary = lab::up(&dir)?;
    let _up = Up(dir.clone());
    println!("{summary}");
    let kubectl = lab::kubectl(&dir);
    let router = Netns::attach("ferrolb-rtr");
    let web = ip_of(&dir, "web")?;
    let api = ip_of(&dir, "api")?;

    // ECMP for Cluster; Local only from the node with the endpoint.
    wait_hops(&router, &web, &[N1, N2])?;
    wait_hops(&router, &api, &[N1])?;

    // The endpoint moves to n2: so does the route.
    kubectl.apply(&endpoints_manifest("shop", "api", &[("10.244.2.11", "n2")]))?;
    wait_hops(&router, &api, &[N2])?;

    // An invalid pool: every speaker reports it, and no route changes.
    kubectl.apply(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: broken, namespace: metallb-system}\nspec: {addresses: [10.98.0.0/99]}\n",
    )?;
    for node in ["n1", "n2"] {
        wait_for(&format!("speaker-{node} to report the error"), WAIT, || {
            let state = kubectl.get(&[
                "configurationstate",
                "-n",
                "metallb-system",
                &format!("speaker-{node}"),
            ])?;
            let summary = state["status"]["errorSummary"].as_str().unwrap_or_default();
            Ok((state["status"]["result"] == "Invalid"
                && summary.contains("IPAddressPool/metallb-system/broken"))
            .then_some(()))
        })?;
    }
    std::thread::sleep(Duration::from_millis(500));
    wait_hops(&router, &web, &[N1, N2])?;
    wait_hops(&router, &api, &[N2])?;
    kubectl.run(
        &["delete", "ipaddresspool", "-n", "metallb-system", "broken"],
        None,
    )?;

    // Who announces what is visible in the API.
    let statuses = kubectl.get(&[
        "servicebgpstatuses",
        "-n",
        "metallb-system",
        "-l",
        "metallb.io/service-name=web",
    ])?;
    let mut nodes: Vec<&str> = statuses["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["status"]["node"].as_str())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"]);

    // A deleted Service is withdrawn from the router.
    kubectl.run(&["delete", "service", "-n", "shop", "web"], None)?;
    wait_hops(&router, &web, &[])?;
    Ok(())
}
