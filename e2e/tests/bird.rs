//! A BIRD 2 router (Debian 12's `bird2`, BFD on) that comes up after the node it peers with,
//! as after a reboot: the node's FRR 10.3 already runs its configuration, driven as the
//! speaker drives it (the BFD hold of `ferrolb::frr::bfd_hold`, FRR's sessions read every
//! `HOLD_RECHECK`). Needs root, `bird2` and the Debian 13 root file system (`.ci/run` has
//! them).
//!
//! BIRD drops a BGP session whose BFD session goes down and holds it down for its error wait
//! time (60 s by default, doubling). FRR replaces a neighbour's BFD session when the BGP
//! connection comes up; configured before, BFD may already be up with BIRD by then, and BIRD
//! then sees it go down just after the session came up. With BFD configured once the session
//! is up, BIRD sees one session, and its BFD comes up after. Whether BFD or BGP wins the race
//! without the hold varies from run to run, so the scenario runs three times.
//!
//! The lab test covers the rest with real speakers: ECMP, communities, the password, BFD
//! failover, stability across a speaker restart, a BFD profile change and bgpd's restart.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferrolb::frr::apply::Applier;
use ferrolb::frr::bfd_hold::BfdHold;
use ferrolb::frr::sessions;
use ferrolb::speaker::HOLD_RECHECK;
use ferrolb_e2e::bird::Bird;
use ferrolb_e2e::configs;
use ferrolb_e2e::frr::{Build, Frr};
use ferrolb_e2e::netns::{Netns, Switch};
use ferrolb_e2e::paths::Scratch;
use ferrolb_e2e::process::wait_for;

const NODE: &str = "10.96.0.11";
const ROUTER: &str = "10.96.0.1";

// BIRD's defaults but for the error wait, shortened so a flap costs seconds here.
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

/// The node's manifests: one Service announced to BIRD over a session with BFD 100 ms × 3.
fn manifests() -> String {
    format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: web}}
spec: {{addresses: [198.51.100.0/24]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: web}}
spec: {{ipAddressPools: [web]}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: bird}}
spec: {{myASN: 64512, peerASN: 64513, peerAddress: {ROUTER}, bfdProfile: fast}}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {{name: fast}}
spec: {{receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}
status: {{loadBalancer: {{ingress: [{{ip: 198.51.100.10}}]}}}}
"
    )
}

/// One run: the node's FRR configured, BIRD started 3 s later; fails if BIRD's session
/// comes up more than once in the 10 s after it first did, or BFD is not up then.
fn bird_after_the_node(run: usize) -> Result<()> {
    let scratch = Scratch::new("bird")?;
    let prefix = format!("flbird{}-{run}", std::process::id());
    let switch = Switch::create(&format!("{prefix}-sw"))?;
    let router = Netns::create(&format!("{prefix}-rtr"))?;
    switch.attach(&router, "rtr", &[&format!("{ROUTER}/24")])?;
    let node = Netns::create(&format!("{prefix}-node"))?;
    switch.attach(&node, "node", &[&format!("{NODE}/24")])?;
    let frr = Frr::start(&node, &scratch.path().join("node"), &Build::frr10()?)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let model = configs::model(&manifests())?;
    let mut applier = Applier::new(frr.target());
    let mut hold = BfdHold::new();

    // As the speaker does: FRR's sessions read, the held model applied, and applied again
    // whenever a neighbour is released.
    let step = |applier: &mut Applier, hold: &mut BfdHold| -> Result<()> {
        let text = runtime.block_on(applier.query("bgpd", "show bgp vrf all neighbors json"))?;
        hold.observe(&sessions::bgp_sessions(&text)?, Instant::now());
        runtime.block_on(applier.apply(&hold.gate(&model)))?;
        Ok(())
    };
    step(&mut applier, &mut hold)?;
    std::thread::sleep(Duration::from_secs(3));

    let bird = Bird::start(&router, &scratch.path().join("bird"), BIRD_CONFIG)?;
    let first_up = wait_for("BIRD's session up", Duration::from_secs(30), || {
        step(&mut applier, &mut hold)?;
        std::thread::sleep(HOLD_RECHECK);
        Ok((bird.established("node") > 0).then_some(Instant::now()))
    })?;
    while first_up.elapsed() < Duration::from_secs(10) {
        step(&mut applier, &mut hold)?;
        std::thread::sleep(HOLD_RECHECK);
    }
    let ups = bird.established("node");
    let bfd = bird.birdc("show bfd sessions")?;
    if ups != 1 || !bfd.contains(" Up ") {
        bail!(
            "run {run}: BIRD's session came up {ups} times; BFD:\n{bfd}\n--- BIRD's log\n{}",
            bird.log()
        );
    }
    let running = frr.running_config()?;
    assert!(
        running.contains(&format!(" neighbor {ROUTER} bfd profile fast")),
        "{running}"
    );
    Ok(())
}

#[test]
fn a_bird_router_that_comes_up_after_the_node_sees_one_session_and_bfd_after_it() -> Result<()> {
    for run in 0..3 {
        bird_after_the_node(run)?;
    }
    Ok(())
}
