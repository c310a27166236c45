//! `ferrolb-chaos [--nodes] [--minutes N] [--seed S] [--dir DIR]`: a chaos campaign on a lab
//! of its own (see `ferrolb_e2e::chaos`), or with `--nodes` on real nodes with the chart and a
//! client's requests (see `ferrolb_e2e::chaos::nodes`). Run through `hack/chaos.sh`, which
//! builds what it needs first. Prints every fault, change and violation as it happens, then
//! a summary and the benchmark lines (`BENCH chaos_violations` and
//! `BENCH chaos_reconverge_max_ms`; on nodes `BENCH chaos_nodes_…`); exits 1 when a promise
//! was broken.

use std::path::PathBuf;
use std::process::ExitCode;

fn value<T: std::str::FromStr>(args: &[String], flag: &str) -> Result<Option<T>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(at) => args
            .get(at + 1)
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{flag} needs a value")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| -> Result<_, String> {
        let known = ["--minutes", "--seed", "--dir"];
        for (i, arg) in args.iter().enumerate() {
            let is_value = i > 0 && known.contains(&args[i - 1].as_str());
            if !is_value && !known.contains(&arg.as_str()) && arg != "--nodes" {
                return Err(format!("unknown argument {arg}"));
            }
        }
        let minutes: f64 = value(&args, "--minutes")?.unwrap_or(5.0);
        let seed: u64 = match value(&args, "--seed")? {
            Some(seed) => seed,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1),
        };
        let dir: PathBuf = value(&args, "--dir")?.unwrap_or_else(|| "/run/ferrolb-chaos".into());
        Ok((minutes, seed, dir))
    })();
    let (minutes, seed, dir) = match parsed {
        Ok(p) => p,
        Err(error) => {
            eprintln!(
                "error: {error}\nusage: ferrolb-chaos [--nodes] [--minutes N] [--seed S] [--dir DIR]"
            );
            return ExitCode::from(2);
        }
    };
    println!("chaos: {minutes} minutes, seed {seed}");
    // The summary, the benchmark lines and whether a promise was broken.
    let outcome = if args.iter().any(|a| a == "--nodes") {
        let options = ferrolb_e2e::chaos::nodes::NodesOptions {
            minutes,
            seed,
            dir: dir.clone(),
        };
        let outcome = ferrolb_e2e::chaos::nodes::run_on_nodes(&options)
            .map(|r| (r.summary(minutes), r.bench_lines(), r.violations.is_empty()));
        // The cluster's files (images, containerd's root, logs: over a GiB) stay only when
        // a promise was broken or FERROLB_KEEP asks, as the lab's do.
        if matches!(outcome, Ok((_, _, true)))
            && std::env::var_os("FERROLB_KEEP").is_none()
            && let Err(error) = std::fs::remove_dir_all(&dir)
        {
            eprintln!("removing {}: {error}", dir.display());
        }
        outcome
    } else {
        let options = ferrolb_e2e::chaos::Options::new(minutes, seed, dir);
        ferrolb_e2e::chaos::run(&options)
            .map(|r| (r.summary(minutes), r.bench_lines(), r.violations.is_empty()))
    };
    match outcome {
        Ok((summary, bench, kept)) => {
            print!("{summary}{bench}");
            if kept {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
