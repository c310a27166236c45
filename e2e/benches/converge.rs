//! Convergence on the whole lab (root; network namespaces, Debian's FRR, the pinned Kubernetes):
//! `ferrolb controller` and two `ferrolb speaker`s announcing 10,000 Services to the ToR
//! router, then one more Service at a time. Prints `BENCH <name> <value> <unit>` lines:
//!
//! - `converge_p50`, `converge_p99`: a Service (with its ready endpoints already in place) is
//!   created through the API → its prefix is in the router's kernel FIB; 40 Services, each
//!   asking for its own IP from a pool kept apart from the 10,000;
//! - `withdraw_p50`: that Service deleted → its prefix gone from the router's FIB;
//! - `speaker_rss_10k`: the larger of the two speakers' resident set (VmRSS) with the 10,000
//!   announced, and their peak (VmHWM) alongside on stderr.
//!
//! `FERROLB_CONVERGE_KEEP=1` leaves the lab up afterwards, with its 10,000 Services;
//! `FERROLB_CONVERGE_LAB=DIR` measures the probes again on such a lab (only the latencies:
//! nothing is created in bulk and the speakers' memory is not read), for instance after
//! restarting its daemons with another build.
//!
//! The clock starts just before the create or delete request leaves (the API client runs in
//! the control plane's namespace, in process, so no kubectl start-up is counted) and stops
//! when `ip monitor route` in the router's namespace prints the route's arrival or deletion.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use kube::api::{DeleteParams, PostParams};

use common::{
    NAMESPACE, bgp_routes, create_bulk, endpoints, memory, monitor, percentile, service,
    slice_name, with_api,
};
use ferrolb_e2e::lab;
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::process::wait_for;

const BULK: usize = 10_000;
const PROBES: usize = 40;
const BULK_POOL: &str = "10.100.0.0/16";
/// Probe `i` asks for `10.101.0.{i + 1}`.
const PROBE_POOL: &str = "10.101.0.0/24";

/// The time of day in UTC to the microsecond, as the daemons' logs print it.
fn clock() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let day = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        since.subsec_micros()
    )
}

fn run(dir: &Path) -> Result<()> {
    let kubectl = lab::kubectl(dir);
    kubectl.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: bulk, namespace: metallb-system}}\nspec: {{addresses: [{BULK_POOL}]}}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: probe, namespace: metallb-system}}\nspec: {{addresses: [{PROBE_POOL}], autoAssign: false}}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: bench, namespace: metallb-system}}\nspec: {{ipAddressPools: [bulk, probe], peers: [tor]}}\n"
    ))?;
    let kubeconfig = dir.join("cp/kubeconfig");
    let router = Netns::attach(&lab::ns("rtr"));
    let base = bgp_routes(&router)?;

    // 10,000 Services with ready endpoints on both nodes.
    let started = Instant::now();
    create_bulk(&kubeconfig, BULK)?;
    eprintln!(
        "created {BULK} Services and EndpointSlices in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    wait_for(
        "the router to hold the 10,000 routes",
        Duration::from_secs(600),
        || Ok((bgp_routes(&router)? >= base + BULK).then_some(())),
    )?;
    eprintln!(
        "10,000 routes in the router's FIB {:.1} s after the first create",
        started.elapsed().as_secs_f64()
    );
    // Let the speakers settle (status writes, polls) before measuring memory and latency.
    std::thread::sleep(Duration::from_secs(5));
    let mut rss = 0.0f64;
    for (node, _) in lab::NODES {
        let (now, peak) = memory(lab::pid(dir, &format!("speaker-{node}"))?)?;
        eprintln!("speaker-{node}: VmRSS {now:.1} MiB, VmHWM {peak:.1} MiB");
        rss = rss.max(now);
    }

    println!("BENCH speaker_rss_10k {rss:.1} MiB");
    probe(dir)
}

/// Creates and deletes the probe Services one at a time; prints the latency figures.
fn probe(dir: &Path) -> Result<()> {
    let kubeconfig = dir.join("cp/kubeconfig");
    let monitor = monitor()?;
    let router = Netns::attach(&lab::ns("rtr"));
    let (converge, withdraw) = with_api(&kubeconfig, |eps, svcs| async move {
        let (mut converge, mut withdraw) = (Vec::new(), Vec::new());
        for i in 0..PROBES {
            let name = format!("probe-{i}");
            let ip = format!("10.101.0.{}", i + 1);
            eps.create(&PostParams::default(), &endpoints(&name, BULK + i)?)
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            monitor.drain();
            let created = Instant::now();
            let wall = clock();
            svcs.create(&PostParams::default(), &service(&name, Some(&ip))?)
                .await?;
            // Blocking is fine here: nothing else runs on this runtime meanwhile.
            let routed = monitor.wait_routed(&ip)?;
            converge.push(routed.duration_since(created).as_secs_f64() * 1e3);
            // Both next hops in, and quiet, before the delete.
            tokio::time::sleep(Duration::from_millis(300)).await;
            monitor.drain();
            let deleted = Instant::now();
            svcs.delete(&name, &DeleteParams::default()).await?;
            let gone = monitor.wait_unrouted(&router, &ip)?;
            withdraw.push(gone.duration_since(deleted).as_secs_f64() * 1e3);
            // The harness's slice has no owner: it goes by hand.
            let _ = eps
                .delete(&slice_name(&name), &DeleteParams::default())
                .await;
            eprintln!(
                "probe {i}: converge {:.1} ms, withdraw {:.1} ms (created at {wall} UTC)",
                converge[i], withdraw[i]
            );
        }
        anyhow::Ok((converge, withdraw))
    })?;

    println!("BENCH converge_p50 {:.1} ms", percentile(&converge, 50.0));
    println!("BENCH converge_p99 {:.1} ms", percentile(&converge, 99.0));
    println!("BENCH withdraw_p50 {:.1} ms", percentile(&withdraw, 50.0));
    Ok(())
}

fn main() -> Result<()> {
    let names = [
        "converge_p50",
        "converge_p99",
        "withdraw_p50",
        "speaker_rss_10k",
    ];
    if !lab::bench_selected(&names) {
        return Ok(());
    }
    if let Some(dir) = std::env::var_os("FERROLB_CONVERGE_LAB") {
        return probe(Path::new(&dir));
    }
    let dir = std::env::temp_dir().join(format!("ferrolb-converge-{}", std::process::id()));
    let (up, summary) = lab::Up::start(&dir)?;
    eprintln!("{summary}");
    let result = run(&dir);
    if std::env::var_os("FERROLB_CONVERGE_KEEP").is_some() {
        // Left up for a look (logs, FRR, the API): `ferrolb-lab --dir DIR down` ends it.
        eprintln!("lab left up in {}", dir.display());
        up.keep();
    }
    result
}
