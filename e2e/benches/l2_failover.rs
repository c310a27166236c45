//! Layer-2 failover on the lab (root; network namespaces, Debian's FRR, the control plane from
//! `hack/k8s.sh`): three speakers, the IPv4 layer-2 Service `shop/printer`. Each run
//! the client resolves the IP (its neighbour entry holds the owner's MAC), the owner's switch
//! port goes down, and the time until the client's kernel holds a surviving node's MAC is
//! measured (the survivor learns of the death through gossip and sends gratuitous ARP). The
//! port comes back and the IP returns before the next run.
//!
//! Prints `BENCH l2_failover_p50 <ms> ms` and `BENCH l2_failover_max <ms> ms` over 7 runs.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferrolb_e2e::lab;
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::process::wait_for;

const RUNS: usize = 7;
const IP: &str = "10.99.0.200";
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// Makes the client resolve the IP; the MAC it gets.
fn resolve(cli: &Netns) -> Result<String> {
    let target: std::net::SocketAddr = format!("{IP}:9").parse()?;
    wait_for(
        "the client to resolve the IP",
        Duration::from_secs(30),
        || {
            cli.in_thread(move || {
                std::net::UdpSocket::bind("0.0.0.0:0")?.send_to(b"x", target)?;
                Ok(())
            })?;
            std::thread::sleep(Duration::from_millis(100));
            lab::client_neighbour(IP)
        },
    )
}

fn run(dir: &std::path::Path) -> Result<()> {
    lab::add_node(dir, "n3", "10.99.0.13")?;
    let cli = Netns::attach(&lab::ns("cli"));
    let macs: Vec<(String, &str)> = NODES
        .iter()
        .map(|n| Ok((lab::node_mac(n)?, *n)))
        .collect::<Result<_>>()?;
    wait_for(
        "three speakers and one owner",
        Duration::from_secs(60),
        || {
            Ok(lab::l2_owner(dir, "printer")?.filter(|_| {
                std::fs::read_to_string(dir.join("speaker-n3.log"))
                    .is_ok_and(|l| l.matches("speaker up").count() >= 2)
            }))
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let owner_mac = resolve(&cli)?;
        let Some((_, owner)) = macs.iter().find(|(m, _)| *m == owner_mac) else {
            bail!("{IP} resolves to {owner_mac}, no node's MAC");
        };
        let started = Instant::now();
        lab::set_node_port(owner, false)?;
        let moved = loop {
            let now = lab::client_neighbour(IP)?;
            if let Some(mac) = now.filter(|m| *m != owner_mac) {
                break Ok(mac);
            }
            if started.elapsed() > Duration::from_secs(15) {
                break Err(anyhow::anyhow!(
                    "the client still holds {owner}'s MAC after 15 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = started.elapsed().as_secs_f64() * 1e3;
        lab::set_node_port(owner, true)?;
        moved?;
        runs.push(took);
        // The owner rejoins, wins the IP back and announces it; wait for the client to
        // follow, then for the announcement rounds to end.
        wait_for("the IP to return", Duration::from_secs(30), || {
            Ok((lab::client_neighbour(IP)?.as_deref() == Some(owner_mac.as_str())).then_some(()))
        })?;
        std::thread::sleep(Duration::from_secs(6));
    }
    let text: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    eprintln!("l2_failover runs (ms): {}", text.join(" "));
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    println!("BENCH l2_failover_p50 {:.0} ms", sorted[sorted.len() / 2]);
    println!("BENCH l2_failover_max {:.0} ms", sorted[sorted.len() - 1]);
    Ok(())
}

fn main() -> Result<()> {
    if !lab::bench_selected(&["l2_failover_p50", "l2_failover_max"]) {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ferrolb-l2-failover-{}", std::process::id()));
    let (_up, summary) = lab::Up::start(&dir)?;
    eprintln!("{summary}");
    run(&dir)
}
