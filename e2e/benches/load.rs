//! Load on the whole lab (root; network namespaces, Debian's FRR, the pinned Kubernetes):
//! 10,000 Services announced to the ToR, then a burst of 2,000 changes at once (1,000 of
//! them deleted, 1,000 new ones created), then a stream of 100 changes a second (a new
//! Service asking for its own IP, or the oldest of the stream's deleted once 500 are up) for
//! `FERROLB_LOAD_MINUTES` (5), while the router's FIB is followed with `ip monitor route`.
//! Prints `BENCH <name> <value> <unit>`:
//!
//! - `load_burst_s`: from the burst's first request to the router's FIB holding the IP of
//!   every Service then in the cluster, and no other of the bulk pool;
//! - `load_stream_p50`, `load_stream_p99`: a stream Service created (the API server has
//!   answered its create) → its prefix in the FIB, 0 where the prefix came first (the watch
//!   can deliver the Service before the create's answer arrives); on stderr also the time
//!   from sending the create to its answer, which is the API server's own queue;
//! - `load_stream_lag`: changes the harness could not send on time (the API was behind);
//! - `load_dropped`: after the stream and 30 s, prefixes the FIB lacks or still holds
//!   against what the cluster says (goal 0);
//! - `load_rss_controller_max`, `load_rss_speaker_max`: the largest resident set seen during
//!   the burst and the stream, and on stderr each one's at the stream's start and end (the
//!   memory stays bounded if the end is not above the start by the stream's growth).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::{DeleteParams, ListParams, PostParams};
use pools::Pool;

use common::{
    NAMESPACE, bgp_routes, create_bulk, endpoints, memory, monitor, percentile, service,
    slice_name, with_api,
};
use ferrolb_e2e::lab;
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::process::wait_for;

const BULK: usize = 10_000;
const BURST: usize = 1_000;
const BULK_POOL: Pool = Pool([10, 100]);
const STREAM_POOL: Pool = Pool([10, 102]);
/// Stream Services up at once, at most.
const WINDOW: usize = 500;
/// Changes a second in the stream.
const RATE: u64 = 100;

/// A stream Service: its number, when its create was sent, when the API server answered.
type Created = (usize, Instant, Option<Instant>);

/// The /16 pools of this bench.
mod pools {
    use std::net::Ipv4Addr;

    #[derive(Clone, Copy)]
    pub(crate) struct Pool(pub [u8; 2]);

    impl Pool {
        pub(crate) fn cidr(self) -> String {
            format!("{}.{}.0.0/16", self.0[0], self.0[1])
        }

        pub(crate) fn contains(self, ip: Ipv4Addr) -> bool {
            ip.octets()[..2] == self.0
        }

        /// The `k`th address (k < 62,500), never .0 or .255.
        pub(crate) fn nth(self, k: usize) -> Ipv4Addr {
            let (a, b) = (k / 250, k % 250 + 1);
            Ipv4Addr::new(self.0[0], self.0[1], a as u8, b as u8)
        }
    }
}

/// A delete's outcome, a Service already gone counted as done (under load the API client
/// may send a delete again after the first one went through).
fn gone<T>(outcome: kube::Result<T>) -> Result<()> {
    match outcome {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The IPv4 prefixes of BGP routes in the router's FIB.
fn fib(router: &Netns) -> Result<BTreeSet<Ipv4Addr>> {
    Ok(router
        .ip(&["route", "show", "proto", "bgp"])?
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect())
}

/// The ingress IPs of the Services of the bench namespace, by name.
async fn ingress(
    services: &kube::Api<k8s_openapi::api::core::v1::Service>,
) -> Result<BTreeMap<String, Ipv4Addr>> {
    let list = services.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|s| {
            let name = s.metadata.name?;
            let ip = s
                .status?
                .load_balancer?
                .ingress?
                .first()?
                .ip
                .as_ref()?
                .parse()
                .ok()?;
            Some((name, ip))
        })
        .collect())
}

/// Largest resident set seen per role, and each role's latest, sampled every second
/// until `stop`.
struct Memory {
    peak: Arc<std::sync::Mutex<HashMap<String, f64>>>,
    stop: Arc<AtomicBool>,
}

impl Memory {
    fn sample(dir: &Path) -> Result<Memory> {
        let mut pids = vec![("controller".to_string(), lab::pid(dir, "controller")?)];
        for (node, _) in lab::NODES {
            pids.push((
                "speaker".to_string(),
                lab::pid(dir, &format!("speaker-{node}"))?,
            ));
        }
        let peak: Arc<std::sync::Mutex<HashMap<String, f64>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                for (role, pid) in &pids {
                    if let Ok((rss, _)) = memory(*pid) {
                        let mut seen = seen.lock().expect("not poisoned");
                        let max = seen.entry(role.clone()).or_insert(0.0);
                        *max = max.max(rss);
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Ok(Memory { peak, stop })
    }

    fn peak(&self, role: &str) -> f64 {
        self.peak
            .lock()
            .expect("not poisoned")
            .get(role)
            .copied()
            .unwrap_or_default()
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn now_rss(dir: &Path) -> Result<String> {
    let mut out = vec![format!(
        "controller {:.1}",
        memory(lab::pid(dir, "controller")?)?.0
    )];
    for (node, _) in lab::NODES {
        out.push(format!(
            "speaker-{node} {:.1}",
            memory(lab::pid(dir, &format!("speaker-{node}"))?)?.0
        ));
    }
    Ok(out.join(", ") + " MiB")
}

fn run(dir: &Path) -> Result<()> {
    let kubectl = lab::kubectl(dir);
    kubectl.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: bulk, namespace: metallb-system}}\nspec: {{addresses: [{}]}}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: stream, namespace: metallb-system}}\nspec: {{addresses: [{}], autoAssign: false}}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: bench, namespace: metallb-system}}\nspec: {{ipAddressPools: [bulk, stream], peers: [tor]}}\n",
        BULK_POOL.cidr(),
        STREAM_POOL.cidr(),
    ))?;
    let kubeconfig = dir.join("cp/kubeconfig");
    let router = Netns::attach(&lab::ns("rtr"));

    // 10,000 Services with ready endpoints on both nodes.
    let started = Instant::now();
    create_bulk(&kubeconfig, BULK)?;
    let base = bgp_routes(&router)?;
    wait_for(
        "the router to hold the 10,000 routes",
        Duration::from_secs(900),
        || {
            let held = fib(&router)?
                .into_iter()
                .filter(|ip| BULK_POOL.contains(*ip))
                .count();
            Ok((held >= BULK).then_some(()))
        },
    )?;
    eprintln!(
        "10,000 routes in the router's FIB {:.1} s after the first create ({base} BGP routes)",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    eprintln!("before the burst: {}", now_rss(dir)?);
    let memory_seen = Memory::sample(dir)?;

    // The burst: 1,000 deleted and 1,000 created at once, then the FIB followed until it
    // holds exactly the cluster's IPs of the bulk pool.
    let burst_router = Netns::attach(&lab::ns("rtr"));
    let burst = with_api(&kubeconfig, move |eps, svcs| async move {
        let started = Instant::now();
        futures::stream::iter(0..2 * BURST)
            .map(|j| {
                let (eps, svcs) = (eps.clone(), svcs.clone());
                async move {
                    if j % 2 == 0 {
                        let name = format!("bulk-{}", j / 2);
                        gone(svcs.delete(&name, &DeleteParams::default()).await)?;
                        let _ = eps
                            .delete(&slice_name(&name), &DeleteParams::default())
                            .await;
                    } else {
                        let name = format!("burst-{}", j / 2);
                        eps.create(&PostParams::default(), &endpoints(&name, BULK + j / 2)?)
                            .await?;
                        svcs.create(&PostParams::default(), &service(&name, None)?)
                            .await?;
                    }
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(256)
            .try_collect::<Vec<()>>()
            .await?;
        let sent = started.elapsed();
        loop {
            let want: BTreeSet<Ipv4Addr> = ingress(&svcs)
                .await?
                .into_values()
                .filter(|ip| BULK_POOL.contains(*ip))
                .collect();
            let held: BTreeSet<Ipv4Addr> = fib(&burst_router)?
                .into_iter()
                .filter(|ip| BULK_POOL.contains(*ip))
                .collect();
            if want.len() == BULK && held == want {
                return anyhow::Ok((sent, started.elapsed()));
            }
            if started.elapsed() > Duration::from_secs(300) {
                anyhow::bail!(
                    "after 300 s the FIB holds {} of the bulk pool, the cluster {} (missing {}, extra {})",
                    held.len(),
                    want.len(),
                    want.difference(&held).count(),
                    held.difference(&want).count()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    eprintln!(
        "burst: 2,000 requests sent in {:.1} s, FIB right {:.1} s after the first",
        burst.0.as_secs_f64(),
        burst.1.as_secs_f64()
    );
    println!("BENCH load_burst_s {:.1} s", burst.1.as_secs_f64());

    // The stream.
    let minutes: u64 = ferrolb_e2e::paths::env_parsed("FERROLB_LOAD_MINUTES").unwrap_or(5);
    eprintln!("stream start: {}", now_rss(dir)?);
    let monitor = monitor()?;
    let lag = Arc::new(AtomicU64::new(0));
    let lagged = Arc::clone(&lag);
    let created = with_api(&kubeconfig, move |eps, svcs| async move {
        let created: Arc<std::sync::Mutex<Vec<Created>>> = Arc::default();
        let mut live = std::collections::VecDeque::new();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
        let end = Instant::now() + Duration::from_secs(60 * minutes);
        let mut next = 0usize;
        let mut tasks = tokio::task::JoinSet::new();
        while Instant::now() < end {
            tick.tick().await;
            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                lagged.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (eps, svcs) = (eps.clone(), svcs.clone());
            if live.len() >= WINDOW && (next % 2 == 1 || live.len() > WINDOW) {
                let k: usize = live.pop_front().expect("a live Service");
                let name = format!("stream-{k}");
                tasks.spawn(async move {
                    let _permit = permit;
                    gone(svcs.delete(&name, &DeleteParams::default()).await)?;
                    let _ = eps
                        .delete(&slice_name(&name), &DeleteParams::default())
                        .await;
                    anyhow::Ok(())
                });
            } else {
                let k = next;
                next += 1;
                let name = format!("stream-{k}");
                let ip = STREAM_POOL.nth(k).to_string();
                let slot = {
                    let mut created = created.lock().expect("not poisoned");
                    created.push((k, Instant::now(), None));
                    created.len() - 1
                };
                live.push_back(k);
                let created = Arc::clone(&created);
                tasks.spawn(async move {
                    let _permit = permit;
                    eps.create(&PostParams::default(), &endpoints(&name, k % 50_000)?)
                        .await?;
                    svcs.create(&PostParams::default(), &service(&name, Some(&ip))?)
                        .await?;
                    created.lock().expect("not poisoned")[slot].2 = Some(Instant::now());
                    anyhow::Ok(())
                });
            }
            while let Some(done) = tasks.try_join_next() {
                done??;
            }
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let created = std::mem::take(&mut *created.lock().expect("not poisoned"));
        anyhow::Ok(created)
    })?;
    eprintln!("stream end: {}", now_rss(dir)?);
    std::thread::sleep(Duration::from_secs(30));
    let mut first_seen: HashMap<Ipv4Addr, Instant> = HashMap::new();
    while let Ok((at, line)) = monitor.lines.try_recv() {
        if let Some(ip) = line
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<Ipv4Addr>().ok())
            .filter(|ip| STREAM_POOL.contains(*ip))
        {
            first_seen.entry(ip).or_insert(at);
        }
    }
    let (mut latencies, mut queued) = (Vec::new(), Vec::new());
    let mut never = 0usize;
    for (k, sent, answered) in &created {
        let answered = answered.expect("every create was answered (the stream returned Ok)");
        queued.push(answered.duration_since(*sent).as_secs_f64() * 1e3);
        match first_seen.get(&STREAM_POOL.nth(*k)) {
            Some(seen) => {
                latencies.push(seen.saturating_duration_since(answered).as_secs_f64() * 1e3)
            }
            None => never += 1,
        }
    }
    eprintln!(
        "stream: create sent → answered by the API server p50 {:.1} ms, p99 {:.1} ms",
        percentile(&queued, 50.0),
        percentile(&queued, 99.0)
    );
    // What the cluster says now against what the router holds.
    let want: BTreeSet<Ipv4Addr> = with_api(&kubeconfig, |_, svcs| async move {
        Ok(ingress(&svcs).await?.into_values().collect())
    })?;
    let held: BTreeSet<Ipv4Addr> = fib(&router)?
        .into_iter()
        .filter(|ip| BULK_POOL.contains(*ip) || STREAM_POOL.contains(*ip))
        .collect();
    let missing = want.difference(&held).count();
    let extra = held.difference(&want).count();
    eprintln!(
        "stream: {} created ({} never routed), FIB against the cluster: {missing} missing, {extra} extra",
        created.len(),
        never
    );
    println!(
        "BENCH load_stream_p50 {:.1} ms",
        percentile(&latencies, 50.0)
    );
    println!(
        "BENCH load_stream_p99 {:.1} ms",
        percentile(&latencies, 99.0)
    );
    println!(
        "BENCH load_stream_lag {} changes",
        lag.load(Ordering::Relaxed)
    );
    println!("BENCH load_dropped {} prefixes", never + missing + extra);
    println!(
        "BENCH load_rss_controller_max {:.1} MiB",
        memory_seen.peak("controller")
    );
    println!(
        "BENCH load_rss_speaker_max {:.1} MiB",
        memory_seen.peak("speaker")
    );
    Ok(())
}

fn main() -> Result<()> {
    let names = [
        "load_burst_s",
        "load_stream_p50",
        "load_stream_p99",
        "load_stream_lag",
        "load_dropped",
        "load_rss_controller_max",
        "load_rss_speaker_max",
    ];
    if !lab::bench_selected(&names) {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ferrolb-load-{}", std::process::id()));
    let (_up, summary) = lab::Up::start(&dir)?;
    eprintln!("{summary}");
    run(&dir)
}
