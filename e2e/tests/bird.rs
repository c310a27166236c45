//! A router that is not FRR: BIRD 2 (Debian 12's `bird2`) peering over eBGP with BFD with a
//! node whose FRR 10.3 (the image's) ferrolb's applier configures, as the speaker does.
//! Needs root, `bird2` and the Debian 13 root file system (`.ci/run` has them).
//!
//! The session must come up and then stay up: BIRD drops a session whose BFD session goes
//! down and refuses it for its error wait time (60 s, doubling), so a BFD session that FRR
//! rebuilds once BGP is up (FRR 8.4 does, when BGP learns its source address) costs a BIRD
//! user a minute with the node out of the ECMP set. The same holds across a restart of the
//! node's bgpd (typed back from nothing, as the speaker does) and a change of the BFD profile.
//! BIRD must also see the advertisement's communities and large communities, and withdraw the
//! node's routes through BFD when the node's port goes down.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferrolb::frr::apply::{Applier, ApplyPath};
use ferrolb_e2e::bird::{BgpProtocol, Bird};
use ferrolb_e2e::configs;
use ferrolb_e2e::frr::{Build, Frr};
use ferrolb_e2e::netns::{Netns, Switch};
use ferrolb_e2e::paths::Scratch;
use ferrolb_e2e::process::wait_for;

const NODE: &str = "10.96.0.11";
const ROUTER: &str = "10.96.0.1";

// BIRD holds a session down for its error wait time after any failure, including the Cease
// of a restarting peer (60 s by default); 5 s keeps the test short, and a flap still shows as
// a new session.
const BIRD_CONFIG: &str = r#"router id 10.96.0.1;
debug protocols { states, events };
protocol device {}
protocol bfd { interface "*" { interval 100 ms; multiplier 3; }; }
protocol bgp node {
  local 10.96.0.1 as 64513;
  neighbor 10.96.0.11 as 64512;
  bfd on;
  error wait time 5, 10;
  ipv4 { import all; export none; };
}
"#;

/// The node's manifests: one Service announced to BIRD with communities, over a session with
/// BFD profile `fast` of `interval` ms × 3.
fn manifests(interval: u32) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: web}}
spec: {{addresses: [198.51.100.0/24]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: web}}
spec: {{ipAddressPools: [web], communities: [\"64512:100\", \"large:64512:1:2\"]}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: bird}}
spec: {{myASN: 64512, peerASN: 64513, peerAddress: {ROUTER}, bfdProfile: fast, connectTime: 1s}}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {{name: fast}}
spec: {{receiveInterval: {interval}, transmitInterval: {interval}, detectMultiplier: 3}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}
status: {{loadBalancer: {{ingress: [{{ip: 198.51.100.10}}]}}}}
"
    )
}

/// Whether BIRD's session is Established and its protocol up (which follows a moment later
/// and restamps the protocol's `since`).
fn is_up(state: &BgpProtocol) -> bool {
    state.state == "Established" && state.protocol == "up"
}

/// Waits until BIRD's session is up; returns its state then.
fn established(bird: &Bird, within: Duration) -> Result<BgpProtocol> {
    wait_for("BIRD's session to the node", within, || {
        let state = bird.bgp("node")?;
        Ok(is_up(&state).then_some(state))
    })
}

/// Checks for `how_long` that BIRD's session stays the one `up` is (same state, same since).
fn stays_up(bird: &Bird, up: &BgpProtocol, how_long: Duration, after: &str) -> Result<()> {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        let now = bird.bgp("node")?;
        if now != *up {
            bail!(
                "after {after}, BIRD's session went from {up:?} to {now:?}\n--- BIRD's log\n{}",
                bird.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

#[test]
fn a_bird_router_keeps_its_session_sees_communities_and_withdraws_through_bfd() -> Result<()> {
    let scratch = Scratch::new("bird")?;
    let prefix = format!("flbird{}", std::process::id());
    let switch = Switch::create(&format!("{prefix}-sw"))?;
    let router = Netns::create(&format!("{prefix}-rtr"))?;
    switch.attach(&router, "rtr", &[&format!("{ROUTER}/24")])?;
    let node = Netns::create(&format!("{prefix}-node"))?;
    switch.attach(&node, "node", &[&format!("{NODE}/24")])?;
    node.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
    let bird = Bird::start(&router, &scratch.path().join("bird"), BIRD_CONFIG)?;
    let node_dir = scratch.path().join("node");
    let mut frr = Frr::start(&node, &node_dir, &Build::frr10()?)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut applier = Applier::new(frr.target());
    let model = configs::model(&manifests(100))?;
    runtime.block_on(applier.apply(&model))?;

    // Up, and still the same session 20 s later.
    let up = established(&bird, Duration::from_secs(30))?;
    stays_up(&bird, &up, Duration::from_secs(20), "the first Established")?;

    // What BIRD learned: the Service's /32 with both kinds of community.
    let route = bird
        .route("198.51.100.10/32")?
        .ok_or_else(|| anyhow::anyhow!("BIRD has no route to 198.51.100.10/32"))?;
    for expected in [
        "BGP.community: (64512,100)",
        "BGP.large_community: (64512, 1, 2)",
    ] {
        assert!(route.contains(expected), "no {expected} in:\n{route}");
    }

    // A BFD profile change is typed as a delta; the session stays.
    let slower = configs::model(&manifests(200))?;
    let report = runtime.block_on(applier.apply(&slower))?;
    assert!(matches!(report.path, ApplyPath::Delta(_)), "{report:?}");
    stays_up(&bird, &up, Duration::from_secs(10), "a BFD profile change")?;

    // bgpd restarts empty; the speaker types its part back. The session comes back once and
    // then stays.
    frr.restart_daemon(&node, "bgpd")?;
    applier.forget();
    runtime.block_on(applier.apply(&slower))?;
    let back = wait_for("BIRD's new session", Duration::from_secs(30), || {
        let state = bird.bgp("node")?;
        Ok((is_up(&state) && state.since != up.since).then_some(state))
    })
    .map_err(|e| anyhow::anyhow!("{e}\n--- BIRD's log\n{}", bird.log()))?;
    stays_up(&bird, &back, Duration::from_secs(20), "bgpd's restart")?;

    // The node's port goes down: BFD (200 ms × 3) takes the route away well before BGP's
    // hold time would.
    switch.set_port("node", false)?;
    let gone = Instant::now();
    wait_for("BIRD to withdraw the node", Duration::from_secs(5), || {
        Ok(bird.route("198.51.100.10/32")?.is_none().then_some(()))
    })?;
    let took = gone.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "withdrawn after {took:?}, not through BFD"
    );
    Ok(())
}
