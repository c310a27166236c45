//! Routers that are not FRR, on the lab (root; network namespaces, FRR, BIRD, GoBGP, the
//! control plane from `hack/k8s.sh`). Prints `BENCH <name> <value> <unit>` lines; names and
//! goals are in the README.
//!
//! - `bfd_failover_bird`: a node's switch port goes down → its next hop is gone from BIRD's
//!   kernel route for `shop/web`; BFD 100 ms × 3; median of 5 runs, alternating nodes (the
//!   port comes back and BIRD's ECMP is restored between runs).
//! - `speaker_start_routes_frr`, `_bird`, `_gobgp`: a node restarts as after a reboot
//!   (speaker stopped, bgpd killed and started empty, every router's session to it down and
//!   the router ready to take it again); from the new speaker's start until the router has
//!   a new session to the node and holds `shop/web` through it (FRR ToR and BIRD: kernel
//!   FIB; GoBGP: RIB). Median of 3 runs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_e2e::frr::Frr;
use ferrolb_e2e::lab::{self, others};
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::process::{stop_pid, wait_for};
use ferrolb_e2e::sampler::median;

const NAMES: [&str; 4] = [
    "bfd_failover_bird",
    "speaker_start_routes_frr",
    "speaker_start_routes_bird",
    "speaker_start_routes_gobgp",
];
const N1: &str = "10.99.0.11";

fn print(name: &str, runs: Vec<f64>) {
    let text: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    eprintln!("{name} runs (ms): {}", text.join(" "));
    println!("BENCH {name} {:.0} ms", median(&runs));
}

fn web_ip(dir: &std::path::Path) -> Result<String> {
    let s = lab::kubectl(dir).get(&["service", "-n", "shop", "web"])?;
    s["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .map(str::to_string)
        .context("web has no IP")
}

fn bfd_failover_bird(dir: &std::path::Path, web: &str) -> Result<()> {
    let bird = Netns::attach(&lab::ns("bird"));
    let bird_ctl = others::bird(dir);
    let mut runs = Vec::new();
    for run in 0..5 {
        let (node, survivor) = [("n1", "10.99.0.12"), ("n2", N1)][run % 2];
        wait_for("BIRD's ECMP and BFD", Duration::from_secs(60), || {
            let bfd = bird_ctl.birdc("show bfd sessions")?;
            Ok(
                (lab::nexthops(&bird, web)?.len() == 2 && bfd.matches(" Up ").count() == 2)
                    .then_some(()),
            )
        })?;
        let started = Instant::now();
        lab::set_node_port(node, false)?;
        loop {
            let hops = lab::nexthops(&bird, web)?;
            if hops == [survivor] {
                break;
            }
            if started.elapsed() > Duration::from_secs(15) {
                lab::set_node_port(node, true)?;
                bail!("{node} never left BIRD's route: {hops:?}");
            }
        }
        runs.push(started.elapsed().as_secs_f64() * 1e3);
        lab::set_node_port(node, true)?;
    }
    print("bfd_failover_bird", runs);
    Ok(())
}

fn speaker_start(dir: &std::path::Path, web: &str) -> Result<()> {
    let tor = Netns::attach(&lab::ns("rtr"));
    let tor_frr = Frr::client(&dir.join("rtr"), &lab::ns("rtr"));
    let bird_ns = Netns::attach(&lab::ns("bird"));
    let bird = others::bird(dir);
    let gobgp = others::gobgp(dir);
    // Per router: (sessions to n1 that came up so far, n1 Established now).
    let session = |kind: usize| -> Result<(u64, bool)> {
        Ok(match kind {
            0 => {
                let n = &tor_frr.json("show bgp neighbors json")?[N1];
                (
                    n["connectionsEstablished"].as_u64().unwrap_or(0),
                    n["bgpState"] == "Established",
                )
            }
            1 => (
                bird.established("n1") as u64,
                bird.bgp("n1")?.state == "Established",
            ),
            _ => (gobgp.ups(N1) as u64, gobgp.established(N1)?),
        })
    };
    let through_n1 = |kind: usize| -> Result<bool> {
        Ok(match kind {
            0 => lab::nexthops(&tor, web)?.iter().any(|h| h == N1),
            1 => lab::nexthops(&bird_ns, web)?.iter().any(|h| h == N1),
            _ => gobgp
                .route(&format!("{web}/32"))?
                .is_some_and(|rib| rib.contains(N1)),
        })
    };
    let mut runs = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..3 {
        wait_for("every router through n1", Duration::from_secs(90), || {
            Ok((0..3)
                .all(|k| through_n1(k).unwrap_or(false) && session(k).is_ok_and(|s| s.1))
                .then_some(()))
        })?;
        let before: Vec<u64> = (0..3)
            .map(|k| session(k).map(|s| s.0))
            .collect::<Result<_>>()?;
        stop_pid(lab::pid(dir, "speaker-n1")?, Duration::from_secs(10));
        lab::crash_daemon(dir, "n1", "bgpd")?;
        // Every router sees the session go (they may keep n1's routes a while as stale:
        // the node offers graceful restart).
        wait_for(
            "every router's session to n1 down",
            Duration::from_secs(60),
            || Ok((0..3).all(|k| session(k).is_ok_and(|s| !s.1)).then_some(())),
        )?;
        // BIRD's error wait (5 s in the lab) and GoBGP's idle hold after a reset (30 s) end
        // before the node comes back, as they would during a reboot.
        std::thread::sleep(Duration::from_secs(32));
        let started = Instant::now();
        lab::restart_speaker(dir, "n1")?;
        let mut pending: Vec<usize> = vec![0, 1, 2];
        while !pending.is_empty() {
            if started.elapsed() > Duration::from_secs(120) {
                bail!("routers {pending:?} never took n1 back");
            }
            pending.retain(|k| {
                let back = session(*k).is_ok_and(|s| s.0 > before[*k] && s.1)
                    && through_n1(*k).unwrap_or(false);
                if back {
                    runs[*k].push(started.elapsed().as_secs_f64() * 1e3);
                }
                !back
            });
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let [frr, bird_runs, gobgp_runs] = runs;
    print("speaker_start_routes_frr", frr);
    print("speaker_start_routes_bird", bird_runs);
    print("speaker_start_routes_gobgp", gobgp_runs);
    Ok(())
}

fn main() -> Result<()> {
    if !lab::bench_selected(&NAMES) {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ferrolb-routers-bench-{}", std::process::id()));
    let (_up, _) = lab::Up::start(&dir)?;
    let web = web_ip(&dir)?;
    bfd_failover_bird(&dir, &web)?;
    speaker_start(&dir, &web)
}
