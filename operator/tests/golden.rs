//! Golden tests: each `tests/golden/<case>/input.yaml` is rendered for node `node-a` and
//! compared with `frr.conf` as FRR 10.3 prints it (the image's FRR) and `frr-8.4.conf` as FRR
//! 8.4 does (or, for invalid input, the errors with `error.txt`). Both come from the one
//! renderer; they differ only where the two versions print differently (see
//! `ferrolb::frr::dialect`). `UPDATE_GOLDEN=1` rewrites the expected files.
//!
//! Every expected file must also pass its FRR version's own parser, `vtysh --dryrun`, and the
//! broken fixture `tests/golden-broken.conf` must fail both. Then each is loaded into real FRR
//! daemons of its version in a network namespace (`hack/frr-running-config.sh`), and FRR's
//! `show running-config` must print back exactly the same text: the renderer writes each
//! version's canonical form, which is what lets the speaker verify an applied configuration by
//! comparing text. FRR 8.4 is Debian 12's `frr` package; FRR 10.3 runs from the Debian 13 root
//! file system of `hack/rootfs.sh` (`FERROLB_FRR_ROOT` names a built one; otherwise it is
//! built). These need root, which `.ci/run` has; without it the tests fail and say so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrolb::config::{ClusterObjects, LoadOptions};
use ferrolb::frr::{Dialect, NodeFacts};
use ferrolb::manifest;
use ferrolb::views::ServiceScope;

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

/// The expected frr.conf of a case for FRR of `dialect`.
fn conf_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Frr10 => "frr.conf",
        Dialect::Frr8 => "frr-8.4.conf",
    }
}

/// The rendered frr.conf for each dialect, or the error lines.
fn outcome(objects: &ClusterObjects) -> Result<Vec<(Dialect, String)>, String> {
    let config = ferrolb::config::load(objects, &LoadOptions::default())
        .map_err(|errors| errors.iter().map(|e| format!("{e}\n")).collect::<String>())?;
    let node = ferrolb::dry_run::prepare(config, objects, NODE, ServiceScope::default());
    Ok(Dialect::ALL
        .map(|dialect| {
            let text = node
                .render_frr(NodeFacts::default(), dialect)
                .expect("rendering never fails on loaded config");
            (dialect, text)
        })
        .to_vec())
}

/// The root file system FRR 10.3 runs from.
fn frr10_root() -> PathBuf {
    if let Some(root) = std::env::var_os("FERROLB_FRR_ROOT") {
        return PathBuf::from(root);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/rootfs.sh");
    let output = Command::new(&script)
        .arg("build")
        .output()
        .expect("hack/rootfs.sh runs");
    assert!(
        output.status.success(),
        "hack/rootfs.sh build: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// `hack/in-root.sh ROOT` for programs of FRR of `dialect` (nothing for the machine's own).
fn in_root(dialect: Dialect) -> Vec<std::ffi::OsString> {
    match dialect {
        Dialect::Frr8 => Vec::new(),
        Dialect::Frr10 => vec![
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../hack/in-root.sh")
                .into(),
            frr10_root().into(),
        ],
    }
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
        let (expected, stale): (Vec<(&str, String)>, Vec<&str>) = match outcome(&objects(&case)) {
            Ok(confs) => (
                confs
                    .into_iter()
                    .map(|(dialect, text)| (conf_name(dialect), text))
                    .collect(),
                vec!["error.txt"],
            ),
            Err(errors) => (
                vec![("error.txt", errors)],
                Dialect::ALL.map(conf_name).to_vec(),
            ),
        };
        for other in stale {
            if case.join(other).exists() && std::env::var_os("UPDATE_GOLDEN").is_some() {
                fs::remove_file(case.join(other)).expect("stale golden removable");
            }
        }
        for (file, text) in expected {
            check(&case.join(file), &text, &mut failures);
        }
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

fn vtysh_dry_run(file: &Path, dialect: Dialect) -> Result<(), String> {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ferrolb-golden-{}-{call}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    fs::write(dir.join("vtysh.conf"), "").expect("vtysh.conf");
    // The file goes in the directory, which FRR 10.3's vtysh sees at the same path.
    let copy = dir.join("frr.conf");
    fs::copy(file, &copy).expect("copy of the file to check");
    fs::create_dir_all(dir.join("run")).expect("run dir");
    let mut command = match in_root(dialect).split_first() {
        None => Command::new("vtysh"),
        Some((script, root)) => {
            let mut command = Command::new(script);
            command.args(root).arg(&dir).arg("vtysh");
            command
        }
    };
    let output = command
        .arg("--config_dir")
        .arg(&dir)
        .arg("--vty_socket")
        .arg(&dir)
        .arg("--dryrun")
        .arg("-f")
        .arg(&copy)
        .output();
    let _ = fs::remove_dir_all(&dir);
    let output = output.map_err(|e| {
        format!("cannot run {dialect}'s vtysh ({e}); install Debian's frr package (.ci/run does)")
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
        for dialect in Dialect::ALL {
            let conf = case.join(conf_name(dialect));
            if !conf.exists() {
                continue;
            }
            checked += 1;
            if let Err(e) = vtysh_dry_run(&conf, dialect) {
                failures.push(format!("{} ({dialect}): {e}", conf.display()));
            }
        }
    }
    assert!(checked >= 30, "only {checked} frr.conf goldens");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_broken_fixture_fails_frr_s_own_parser() {
    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-broken.conf");
    for dialect in Dialect::ALL {
        let error =
            vtysh_dry_run(&broken, dialect).expect_err("the broken fixture must be rejected");
        assert!(error.contains("bogus-keyword"), "{dialect}: {error}");
    }
}

#[test]
fn frr_prints_every_golden_back_unchanged() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/frr-running-config.sh");
    let mut failures = Vec::new();
    let root = frr10_root();
    for (case, dialect) in cases()
        .into_iter()
        .flat_map(|case| Dialect::ALL.map(|d| (case.clone(), d)))
    {
        let conf = case.join(conf_name(dialect));
        if !conf.exists() {
            continue;
        }
        let mut command = Command::new(&script);
        if dialect == Dialect::Frr10 {
            command.arg("--root").arg(&root);
        }
        let output = command
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
                "{}: {dialect} prints it back differently:\n--- rendered\n{expected}\n--- running\n{running}",
                conf.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
