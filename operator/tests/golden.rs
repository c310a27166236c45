//! Golden tests: each `tests/golden/<case>/input.yaml` is rendered for node `node-a` and
//! compared with `frr.conf` (or, for invalid input, the errors with `error.txt`).
//! `UPDATE_GOLDEN=1` rewrites the expected files.
//!
//! Every expected frr.conf must also pass FRR's own parser, `vtysh --dryrun`, and the broken
//! fixture `tests/golden-broken.conf` must fail it. Then each is loaded into real FRR daemons
//! in a network namespace (`hack/frr-running-config.sh`), and FRR's `show running-config` must
//! print back exactly the same text: the renderer writes FRR's canonical form, which is what
//! lets the speaker verify an applied configuration by comparing text. These need Debian's
//! `frr` package and root, which `.ci/run` provides; without them the tests fail and say so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrolb::cluster::ServiceScope;
use ferrolb::config::{ClusterObjects, LoadOptions};
use ferrolb::frr::NodeFacts;
use ferrolb::manifest;

const NODE: &str = "node-a";

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/golden exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("input.yaml").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "expected the golden cases under {}",
        root.display()
    );
    cases
}

fn objects(case: &Path) -> ClusterObjects {
    let text = fs::read_to_string(case.join("input.yaml")).expect("input.yaml readable");
    let parsed =
        manifest::parse(&text, "input.yaml", "metallb-system").expect("input.yaml is YAML");
    assert!(
        parsed.errors.is_empty(),
        "{}: manifest errors: {:?}",
        case.display(),
        parsed
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    parsed.objects
}

/// The rendered frr.conf, or the error lines.
fn outcome(objects: &ClusterObjects) -> Result<String, String> {
    let config = ferrolb::config::load(objects, &LoadOptions::default())
        .map_err(|errors| errors.iter().map(|e| format!("{e}\n")).collect::<String>())?;
    let node = ferrolb::offline::prepare(config, objects, NODE, ServiceScope::default());
    Ok(node
        .render_frr(NodeFacts::default())
        .expect("rendering never fails on loaded config"))
}

fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(path, actual).expect("golden writable");
        return;
    }
    let expected = fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{} differs (UPDATE_GOLDEN=1 re-blesses):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn every_case_renders_its_golden_output() {
    let mut failures = Vec::new();
    for case in cases() {
        let (file, other, text) = match outcome(&objects(&case)) {
            Ok(conf) => ("frr.conf", "error.txt", conf),
            Err(errors) => ("error.txt", "frr.conf", errors),
        };
        if case.join(other).exists() && std::env::var_os("UPDATE_GOLDEN").is_some() {
            fs::remove_file(case.join(other)).expect("stale golden removable");
        }
        check(&case.join(file), &text, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn output_does_not_depend_on_the_order_of_objects() {
    for case in cases() {
        let objects = objects(&case);
        let expected = outcome(&objects);
        for rotation in 1..4 {
            let mut shuffled = objects.clone();
            rotate(&mut shuffled.pools, rotation);
            shuffled.peers.reverse();
            rotate(&mut shuffled.peers, rotation);
            shuffled.bgp_advertisements.reverse();
            rotate(&mut shuffled.services, rotation);
            shuffled.services.reverse();
            shuffled.endpoint_slices.reverse();
            shuffled.bfd_profiles.reverse();
            shuffled.communities.reverse();
            shuffled.nodes.reverse();
            assert_eq!(outcome(&shuffled), expected, "{}", case.display());
        }
    }
}

fn rotate<T>(items: &mut [T], by: usize) {
    let len = items.len().max(1);
    items.rotate_left(by % len);
}

fn vtysh_dry_run(file: &Path) -> Result<(), String> {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ferrolb-golden-{}-{call}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    fs::write(dir.join("vtysh.conf"), "").expect("vtysh.conf");
    let output = Command::new("vtysh")
        .arg("--config_dir")
        .arg(&dir)
        .arg("--vty_socket")
        .arg(&dir)
        .arg("--dryrun")
        .arg("-f")
        .arg(file)
        .output();
    let _ = fs::remove_dir_all(&dir);
    let output = output.map_err(|e| {
        format!("cannot run vtysh ({e}); install Debian's frr package (.ci/run does)")
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && !text.contains('%') {
        Ok(())
    } else {
        Err(format!("{}: {}", output.status, text.trim()))
    }
}

#[test]
fn every_golden_passes_frr_s_own_parser() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases() {
        let conf = case.join("frr.conf");
        if !conf.exists() {
            continue;
        }
        checked += 1;
        if let Err(e) = vtysh_dry_run(&conf) {
            failures.push(format!("{}: {e}", conf.display()));
        }
    }
    assert!(checked >= 15, "only {checked} frr.conf goldens");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_broken_fixture_fails_frr_s_own_parser() {
    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-broken.conf");
    let error = vtysh_dry_run(&broken).expect_err("the broken fixture must be rejected");
    assert!(error.contains("bogus-keyword"), "{error}");
}

#[test]
fn frr_prints_every_golden_back_unchanged() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/frr-running-config.sh");
    let mut failures = Vec::new();
    for case in cases() {
        let conf = case.join("frr.conf");
        if !conf.exists() {
            continue;
        }
        let output = Command::new(&script)
            .arg(&conf)
            .output()
            .expect("hack/frr-running-config.sh runs (needs root and Debian's frr)");
        let running = String::from_utf8_lossy(&output.stdout);
        let expected = fs::read_to_string(&conf).expect("golden readable");
        if !output.status.success() {
            failures.push(format!(
                "{}: {}",
                conf.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        } else if running != expected {
            failures.push(format!(
                "{}: FRR prints it back differently:\n--- rendered\n{expected}\n--- running\n{running}",
                conf.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
