//! ferrolb's FRR apply path against `frr-reload.py`, on a node with 10,000 Services
//! announced to a real router (root; network namespaces and Debian's FRR). The node runs FRR
//! 10.3, the image's (from `hack/rootfs.sh`); `FERROLB_BENCH_FRR=8.4` runs it on Debian 12's
//! FRR 8.4 instead. Prints `BENCH <name> <value> <unit>` lines:
//!
//! - `frr_apply_add1`, `frr_apply_remove1`, `frr_apply_remove1000`, `frr_apply_community1000`:
//!   ferrolb's applier (the delta typed through the daemons' vty sockets, verified against
//!   the whole running configuration);
//! - `frr_reload_py_*`: `frr-reload.py --reload` for the same change on the same instance,
//!   measured alternately with the above in the same run;
//! - `frr_apply_speedup_min`: the smallest of the four reload/apply ratios of medians.
//!
//! The node announces 9,000 Services from pool `bulk` and 1,000 from pool `edge`, whose
//! advertisement sets community 64512:7; `community1000` changes it to 64512:8.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb::frr::apply::{Applier, ApplyPath};
use ferrolb::frr::running::same_configuration;
use ferrolb::frr::{Dialect, FrrConfig};
use ferrolb_e2e::configs;
use ferrolb_e2e::frr::Build;
use ferrolb_e2e::peering::{Peering, ROUTERS};
use ferrolb_e2e::process::wait_for;
use ferrolb_e2e::sampler::median;

const BASE: u32 = 10_000;
const EDGE: u32 = 1_000;

struct Change {
    name: &'static str,
    from: FrrConfig,
    to: FrrConfig,
    runs: usize,
}

struct Rig {
    peering: Peering,
    applier: Applier,
    runtime: tokio::runtime::Runtime,
}

impl Rig {
    /// Brings FRR to `model` (any path), unmeasured.
    fn set(&mut self, model: &FrrConfig) -> Result<()> {
        self.runtime.block_on(self.applier.apply(model))?;
        Ok(())
    }

    /// ferrolb's apply of `to`, from `from`; milliseconds.
    fn apply(&mut self, from: &FrrConfig, to: &FrrConfig) -> Result<f64> {
        self.set(from)?;
        let report = self.runtime.block_on(self.applier.apply(to))?;
        if !matches!(report.path, ApplyPath::Delta(_)) {
            bail!("expected the delta path, took {:?}", report.path);
        }
        if !report.sockets {
            bail!("expected the delta through the vty sockets, it went through vtysh");
        }
        Ok(report.elapsed.as_secs_f64() * 1e3)
    }

    /// `frr-reload.py --reload` of `to`, from `from`; milliseconds. Checked afterwards.
    fn reload_py(&mut self, from: &FrrConfig, to: &FrrConfig) -> Result<f64> {
        self.set(from)?;
        let target = self.applier.target().clone();
        let text = configs::render(to, self.applier.dialect())?;
        std::fs::write(target.reload_file(), &text)?;
        let started = Instant::now();
        let out = target
            .reload_command(&target.reload_file())
            .output()
            .context("running frr-reload.py")?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        let running = self.peering.node_frr.running_config()?;
        if !same_configuration(&text, &running) {
            bail!(
                "frr-reload.py did not reach the configuration: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        self.applier.adopt(to)?;
        Ok(elapsed)
    }
}

fn main() -> Result<()> {
    let names = [
        "frr_apply_add1",
        "frr_apply_remove1",
        "frr_apply_remove1000",
        "frr_apply_community1000",
        "frr_apply_speedup_min",
    ];
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| names.contains(&w.as_str()) || w.starts_with("frr_reload_py_"));
    if !selected {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("frr_apply_* skipped: needs root (network namespaces)");
        return Ok(());
    }
    let model = |bulk: u32, edge: u32, community: &str| {
        configs::model(&configs::announced(0..bulk, edge, Some(community)))
    };
    // 9,000 Services in `bulk`, 1,000 in `edge` with a community.
    let base = model(BASE - EDGE, EDGE, "64512:7")?;
    let changes = vec![
        Change {
            name: "add1",
            from: base.clone(),
            to: model(BASE - EDGE + 1, EDGE, "64512:7")?,
            runs: 5,
        },
        Change {
            name: "remove1",
            from: base.clone(),
            to: model(BASE - EDGE - 1, EDGE, "64512:7")?,
            runs: 5,
        },
        Change {
            name: "remove1000",
            from: base.clone(),
            to: model(BASE - 2 * EDGE, EDGE, "64512:7")?,
            runs: 3,
        },
        Change {
            name: "community1000",
            from: base.clone(),
            to: model(BASE - EDGE, EDGE, "64512:8")?,
            runs: 3,
        },
    ];

    let version = std::env::var("FERROLB_BENCH_FRR").unwrap_or_else(|_| "10.3".into());
    let dialect = Dialect::of_version(&version)
        .with_context(|| format!("FERROLB_BENCH_FRR={version}: not a version ferrolb drives"))?;
    eprintln!("frr_apply: the node runs {dialect}");
    let mut rig = Rig {
        peering: Peering::start("apply", &Build::of(dialect)?)?,
        applier: Applier::new(Default::default()),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    rig.applier = Applier::new(rig.peering.node_frr.target());
    rig.set(&base)?;
    rig.peering
        .wait_established(ROUTERS[0].1, Duration::from_secs(30))?;
    wait_for("tor1 to hold every prefix", Duration::from_secs(60), || {
        Ok((rig.peering.received(0)? == u64::from(BASE)).then_some(()))
    })?;

    let mut ratios = Vec::new();
    for change in &changes {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for run in 0..change.runs {
            ours.push(rig.apply(&change.from, &change.to)?);
            theirs.push(rig.reload_py(&change.from, &change.to)?);
            eprintln!(
                "{} run {run}: apply {:.1} ms, frr-reload.py {:.0} ms",
                change.name, ours[run], theirs[run]
            );
        }
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "{}: apply runs (ms) {} / frr-reload.py runs (ms) {}",
            change.name,
            show(&ours),
            show(&theirs)
        );
        let (a, r) = (median(&ours), median(&theirs));
        println!("BENCH frr_apply_{} {a:.1} ms", change.name);
        println!("BENCH frr_reload_py_{} {r:.0} ms", change.name);
        ratios.push(r / a);
    }
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    println!("BENCH frr_apply_speedup_min {min:.1} ratio");
    Ok(())
}
