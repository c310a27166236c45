//! The local lab as `hack/lab.sh up` (the README's first command) brings it up: real nodes,
//! the chart installed by Helm, `examples/lab/lab.yaml` and the demo backends; every Service
//! IP is answered by the pods behind it, through the routers (BGP) or the node answering
//! ARP/NDP (layer 2), and `down` leaves nothing behind.
//!
//! Needs root and what `chart_on_nodes.rs` needs.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, bail};
use ferrolb_e2e::chart_lab::speaker_vtysh;
use ferrolb_e2e::lab::{self, Mode};
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::paths::Scratch;
use ferrolb_e2e::process::wait_for;

/// The IPs of Service `shop/<name>`.
fn ips(dir: &std::path::Path, name: &str) -> Result<Vec<String>> {
    let service = lab::kubectl(dir).get(&["service", "-n", "shop", name])?;
    Ok(service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect())
}

/// `count` requests from the client to `url`: the answers' `pod=… node=… client=…` words.
fn ask(client: &Netns, url: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            client
                .run("curl", &["-s", "-m", "1", url])
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect()
}

fn word<'a>(answer: &'a str, key: &str) -> &'a str {
    answer
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_default()
}

#[test]
fn the_lab_on_real_nodes_answers_every_service_from_its_pods() -> Result<()> {
    let scratch = Scratch::new("lab-pods")?;
    let dir = scratch.path().join("lab");
    let (up, summary) = lab::Up::start_with(&dir, Mode::Pods)?;
    println!("{summary}");
    let client = Netns::attach(&lab::ns("cli"));

    // web (Cluster, a pod on each node) through the ToR's ECMP: both nodes' pods answer
    // (kube-proxy on each node may also send a request to the other node's pod).
    let web = ips(&dir, "web")?;
    let url = format!("http://{}/", web[0]);
    let nodes = wait_for(
        "web answered from both nodes",
        Duration::from_secs(60),
        || {
            let seen: BTreeSet<String> = ask(&client, &url, 20)
                .iter()
                .filter(|a| a.starts_with("pod=web-"))
                .map(|a| word(a, "node=").to_string())
                .collect();
            Ok((seen.len() == 2).then_some(seen))
        },
    )?;
    assert_eq!(nodes, BTreeSet::from(["n1".into(), "n2".into()]));

    // api (Local, one pod on n1): only n1 announces it, and the pod sees the client.
    let api = ips(&dir, "api")?;
    let router = Netns::attach(&lab::ns("rtr"));
    assert_eq!(lab::nexthops(&router, &api[0])?, ["10.99.0.11"]);
    for answer in ask(&client, &format!("http://{}:443/", api[0]), 5) {
        assert!(
            answer.starts_with("pod=api-") && word(&answer, "node=") == "n1",
            "{answer:?}"
        );
        assert_eq!(word(&answer, "client="), "10.99.0.100", "{answer}");
    }

    // printer (layer 2, its pod on n2) over IPv4 and IPv6, and web over IPv6 (BGP).
    for service in ["printer", "printer6", "web6"] {
        let ip = ips(&dir, service)?;
        let Some(ip) = ip.first() else {
            bail!("Service shop/{service} has no IP");
        };
        let port = if service == "web6" { 80 } else { 631 };
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        let url = format!("http://{host}:{port}/");
        let want = service.trim_end_matches('6');
        let answers = ask(&client, &url, 5);
        assert!(
            answers
                .iter()
                .all(|a| a.starts_with(&format!("pod={want}-"))),
            "{service} at {url}: {answers:?}"
        );
    }

    // The routers that are not FRR learn the BGP pool's IPs from both nodes.
    let bird = Netns::attach(&lab::ns("bird"));
    // (BIRD starts last, after the nodes announce; `up` waits for the ToR only.)
    let routed = wait_for("BIRD's ECMP route", Duration::from_secs(30), || {
        let routes = bird.ip(&["route", "show", &web[0]])?;
        Ok((routes.contains("10.99.0.11") && routes.contains("10.99.0.12")).then_some(()))
    });
    if let Err(error) = routed {
        bail!(
            "{error:#}: {}",
            bird.ip(&["route", "show", &web[0]]).unwrap_or_default()
        );
    }

    // The README's command to look at BFD from inside a speaker pod.
    let bfd = speaker_vtysh(&lab::kubectl(&dir), "show bfd peers brief")?;
    assert!(bfd.contains("10.99.0.1") && bfd.contains("up"), "{bfd}");

    // `down` ends every process and namespace it started.
    drop(up);
    for name in ["sw", "cp", "rtr", "n1", "n2", "cli", "bird", "gobgp"] {
        assert!(!Netns::exists(&lab::ns(name)), "{} is left", lab::ns(name));
    }
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/pids/n1").exists(),
        "node n1's cgroup is left"
    );
    Ok(())
}
