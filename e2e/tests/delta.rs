//! The delta engine against real FRR (needs root and Debian's frr; `.ci/run` has both), on
//! each FRR version ferrolb drives: Debian 12's 8.4 and Debian 13's 10.3.
//!
//! A node's FRR instance peers with two routers (FRR 8.4). It is taken through a chain of random
//! configurations ([`configs::random`]); each step is applied by ferrolb's applier, which
//! types `delta::diff(previous, next)` and verifies. For every step the test checks that the
//! delta path was taken (not the reload fallback) unless the engine itself asked for a
//! reload, that FRR's running configuration is exactly `render(next)`, and that no BGP
//! session whose neighbour lines are the same before and after was reset. Halfway, the
//! applier forgets FRR's state and that step is loaded by `frr-reload.py` (through vtysh), so
//! the deltas after it start from what vtysh typed. Set
//! `FERROLB_DELTA_SEED` and `FERROLB_DELTA_STEPS` to replay or extend a run.
//!
//! Also: bgpd restarted alone, then a change; the apply must leave bgpd with its whole part.

use std::time::Duration;

use anyhow::{Context, Result};
use ferrolb::frr::apply::{Applier, ApplyPath};
use ferrolb::frr::delta;
use ferrolb::frr::running::{first_difference, same_configuration};
use ferrolb::frr::{Dialect, FrrConfig};
use ferrolb_e2e::configs::{self, Rng};
use ferrolb_e2e::frr::Build;
use ferrolb_e2e::peering::{Peering, ROUTERS};
use serde_json::Value;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (state, connections dropped) of the node's session to `address`.
fn session(neighbors: &Value, address: &str) -> (String, u64) {
    let n = &neighbors[address];
    (
        n["bgpState"].as_str().unwrap_or("absent").to_string(),
        n["connectionsDropped"].as_u64().unwrap_or_else(|| {
            assert!(n.is_null(), "no connectionsDropped in {n}");
            0
        }),
    )
}

fn neighbor_lines_equal(a: &FrrConfig, b: &FrrConfig, address: &str) -> bool {
    let find = |c: &FrrConfig| {
        c.routers.iter().find(|r| r.vrf.is_none()).map(|r| {
            (
                r.asn,
                r.router_id,
                r.neighbors.iter().find(|n| n.peer == address).cloned(),
            )
        })
    };
    let (x, y) = (find(a), find(b));
    x.is_some() && x == y && x.as_ref().is_some_and(|(_, _, n)| n.is_some())
}

/// A peering (named `name` and the version) whose node runs FRR of `dialect`, a runtime, and
/// an applier for the node's FRR.
fn node_on(name: &str, dialect: Dialect) -> Result<(Peering, tokio::runtime::Runtime, Applier)> {
    let peering = Peering::start(
        &format!("{name}{}", dialect.version().replace('.', "")),
        &Build::of(dialect)?,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let applier = Applier::new(peering.node_frr.target());
    Ok((peering, runtime, applier))
}

/// The `frr.conf` the chart's `frr-files` init container writes before FRR starts, with the
/// chart's default FRR log level.
fn chart_boot_config() -> Result<String> {
    let chart = ferrolb_e2e::paths::repo().join("deploy/charts/ferrolb");
    let template = std::fs::read_to_string(chart.join("templates/speaker.yaml"))?;
    let written = template
        .lines()
        .find(|l| l.trim_end().ends_with("> /etc/frr/frr.conf"))
        .and_then(|l| l.split('\'').nth(1))
        .context("the chart's speaker.yaml writes no /etc/frr/frr.conf with printf")?;
    let values = std::fs::read_to_string(chart.join("values.yaml"))?;
    // `speaker.frr.logLevel`: the one `logLevel` indented two levels.
    let level = values
        .lines()
        .find_map(|l| l.strip_prefix("    logLevel: "))
        .context("no speaker.frr.logLevel in the chart's values.yaml")?;
    let text = written
        .replace("{{ .Values.speaker.frr.logLevel }}", level.trim())
        .replace("\\n", "\n");
    anyhow::ensure!(!text.contains("{{"), "an unknown value in {written}");
    Ok(text)
}

#[test]
fn random_deltas_on_frr_8_4_give_the_rendered_configuration_and_keep_sessions() -> Result<()> {
    random_deltas(Dialect::Frr8)
}

#[test]
fn random_deltas_on_frr_10_3_give_the_rendered_configuration_and_keep_sessions() -> Result<()> {
    random_deltas(Dialect::Frr10)
}

fn random_deltas(dialect: Dialect) -> Result<()> {
    let seed = env_number("FERROLB_DELTA_SEED", 20261121);
    let steps = env_number("FERROLB_DELTA_STEPS", 40);
    let (peering, runtime, mut applier) = node_on("delta", dialect)?;
    let mut rng = Rng::new(seed);

    let mut manifests = configs::random(&mut rng);
    let mut previous = configs::model(&manifests)?;
    // FRR as a new speaker pod finds it: started from the chart's boot file.
    peering.node_frr.load(&chart_boot_config()?)?;
    let first = runtime.block_on(applier.apply(&previous))?;
    assert_eq!(
        applier.frr_version().and_then(|v| v.dialect),
        Some(dialect),
        "{:?}",
        applier.frr_version()
    );
    // A fresh FRR takes the whole configuration as a delta from nothing (not frr-reload.py,
    // which takes seconds of both cores for a large one).
    assert!(matches!(first.path, ApplyPath::Delta(_)), "{first:?}");
    assert!(first.sockets, "{first:?}");
    peering.wait_established(ROUTERS[0].1, Duration::from_secs(30))?;

    let (mut deltas, mut reloads, mut refreshes, mut kept) = (0, 0, 0, 0);
    for step in 1..=steps {
        let next_manifests = configs::random(&mut rng);
        let next = configs::model(&next_manifests)?;
        let before = peering.neighbors()?;
        // Halfway, the applier forgets FRR's state (as after a restart of FRR) and loads
        // the step with frr-reload.py, which types through vtysh: the deltas after it must
        // find vtysh's copies of each line (prefix-lists in bfdd too) where they left them.
        let forgotten = step == steps / 2;
        if forgotten {
            applier.forget();
        }
        let expected = if forgotten {
            Err(delta::NeedsReload("the applier forgot FRR's state".into()))
        } else {
            delta::diff(&previous, &next)
        };
        let applied = runtime.block_on(applier.apply(&next));
        let context = || {
            format!(
                "seed {seed} step {step}\n--- previous manifests\n{manifests}\n--- next manifests\n{next_manifests}"
            )
        };
        let report = match applied {
            Ok(report) => report,
            Err(e) => panic!(
                "{e}\n--- delta\n{:?}\n--- rendered\n{}\n--- running\n{}\n{}",
                expected.map(|d| d.commands),
                configs::render(&next, dialect)?,
                peering.node_frr.running_config()?,
                context()
            ),
        };
        match (&expected, &report.path) {
            (Ok(d), ApplyPath::Delta(_)) => {
                assert!(
                    report.sockets,
                    "the delta went through vtysh, not the daemons' sockets\n{}",
                    context()
                );
                deltas += 1;
                refreshes += usize::from(!d.refresh.is_empty());
            }
            (Ok(d), ApplyPath::Unchanged) => assert!(d.is_empty(), "{}", context()),
            (Err(_), ApplyPath::Reload(_)) => reloads += 1,
            (Ok(d), other) => panic!(
                "the delta was not enough: {other:?}\n--- delta\n{}\n{}",
                d.commands.join("\n"),
                context()
            ),
            (Err(e), other) => panic!("expected a reload ({e}), got {other:?}\n{}", context()),
        }
        let running = peering.node_frr.running_config()?;
        let rendered = configs::render(&next, dialect)?;
        assert!(
            same_configuration(&rendered, &running),
            "{}\n{}",
            first_difference(&rendered, &running),
            context()
        );

        std::thread::sleep(Duration::from_millis(300));
        let after = peering.neighbors()?;
        for (_, address) in ROUTERS {
            let (state, dropped) = session(&before, address);
            if state != "Established" || !neighbor_lines_equal(&previous, &next, address) {
                continue;
            }
            kept += 1;
            assert_eq!(
                session(&after, address),
                (state, dropped),
                "the session to {address} was reset\n{}",
                context()
            );
        }
        previous = next;
        manifests = next_manifests;
    }
    println!(
        "delta property on {dialect}: seed {seed}, {steps} steps: {deltas} deltas ({refreshes} with soft-out refresh), {reloads} reloads asked for, {kept} established sessions kept"
    );
    assert!(
        deltas * 2 > steps as usize,
        "most steps must go through the delta engine"
    );
    assert!(
        kept > 0,
        "no established session was ever checked for resets"
    );
    Ok(())
}

#[test]
fn a_bgpd_restarted_empty_on_frr_8_4_gets_its_whole_part_from_the_next_apply() -> Result<()> {
    bgpd_restarted_empty(Dialect::Frr8)
}

#[test]
fn a_bgpd_restarted_empty_on_frr_10_3_gets_its_whole_part_from_the_next_apply() -> Result<()> {
    bgpd_restarted_empty(Dialect::Frr10)
}

/// bgpd restarts alone (as watchfrr starts a crashed one) and a change arrives before any
/// check of FRR's state: the delta, typed into an empty bgpd, falls short and the applier
/// reloads. zebra kept its copies of the prefix-lists and route-maps, so vtysh's merged view,
/// from which frr-reload.py works, shows them: bgpd must get them all the same, at once, not
/// from a later drift check (until then it matches every route against missing lists).
fn bgpd_restarted_empty(dialect: Dialect) -> Result<()> {
    let (mut peering, runtime, mut applier) = node_on("lost", dialect)?;
    let mut rng = Rng::new(20261205);
    let first = loop {
        let model = configs::model(&configs::random(&mut rng))?;
        let text = configs::render(&model, dialect)?;
        if !model.routers.is_empty() && text.contains("prefix-list") && text.contains("route-map ")
        {
            break model;
        }
    };
    runtime.block_on(applier.apply(&first))?;

    peering.node_frr.restart_daemon(&peering.node, "bgpd")?;
    let mut next = first.clone();
    next.routers[0].coalesce_time += 100;
    let report = runtime.block_on(applier.apply(&next))?;
    assert!(
        matches!(report.path, ApplyPath::Reload(_)),
        "a delta typed into an empty bgpd was taken as enough: {report:?}"
    );
    let running = peering.node_frr.running_config()?;
    let rendered = configs::render(&next, dialect)?;
    assert!(
        same_configuration(&rendered, &running),
        "{}",
        first_difference(&rendered, &running)
    );
    let own = peering.node_frr.daemon_running_config("bgpd")?;
    let merged = peering.node_frr.vtysh("show running-config")?;
    let mut checked = 0;
    for line in merged.lines().filter(|l| {
        l.starts_with("ip prefix-list")
            || l.starts_with("ipv6 prefix-list")
            || l.starts_with("route-map ")
    }) {
        checked += 1;
        assert!(
            own.lines().any(|o| o == line),
            "bgpd lacks {line:?} after the apply that followed its restart; its own configuration:\n{own}"
        );
    }
    assert!(
        checked > 0,
        "no prefix-list or route-map to check:\n{merged}"
    );
    Ok(())
}
