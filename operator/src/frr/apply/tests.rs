use super::*;
use std::path::Path;

use crate::frr::{NotFrrText, Word};

/// `node-a`'s view of a golden case.
fn golden_node(case: &str) -> crate::dry_run::NodeDryRun {
    let path = format!(
        "{}/tests/golden/{case}/input.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("golden input readable");
    let parsed = crate::manifest::parse(&text, "input.yaml", "metallb-system").expect("YAML");
    let config = crate::config::load(&parsed.objects, &crate::config::LoadOptions::default())
        .expect("golden input loads");
    crate::dry_run::prepare(
        config,
        &parsed.objects,
        "node-a",
        crate::views::ServiceScope::default(),
    )
}

/// The model of a golden case for `node-a`.
fn golden_model(case: &str) -> FrrConfig {
    let node = golden_node(case);
    crate::frr::build(&node.config, &node.intent(), &node.node, Default::default())
        .expect("golden names are words")
}

#[test]
fn a_value_that_is_not_one_word_never_reaches_the_model() {
    // The delta is typed before the whole model is rendered; what rendering would refuse
    // cannot be in a model to begin with. The loader refuses such names first; should one
    // get past it, building the model fails.
    let mut node = golden_node("bfd-profiles");
    let profile = node
        .config
        .bfd_profiles
        .values_mut()
        .next()
        .expect("a profile");
    profile.name = "two words".into();
    let built = crate::frr::build(&node.config, &node.intent(), &node.node, Default::default());
    assert!(
        matches!(&built, Err(NotFrrText::NotOneWord(word)) if word == "two words"),
        "{built:?}"
    );
    assert!(Word::new("x\nrouter bgp 1").is_err());
}

/// A stand-in for an FRR daemon of a version no real FRR here has (only 8.4 and 10.3 run
/// on these machines): it answers `show version` with `version`, `show running-config`
/// with the last file the reload script was given, and records every other command.
async fn fake_daemon(
    dir: &Path,
    version: &'static str,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::UnixListener::bind(dir.join("bgpd.vty")).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (record, running) = (seen.clone(), dir.join("running.conf"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (record, running) = (record.clone(), running.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk).await
                    && n > 0
                {
                    buffer.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buffer.iter().position(|b| *b == 0) {
                        let command = String::from_utf8_lossy(&buffer[..end]).into_owned();
                        buffer.drain(..=end);
                        let answer = match command.as_str() {
                            "show version" => {
                                format!("FRRouting {version} (n) on Linux(6.1).\n")
                            }
                            "show running-config" => {
                                std::fs::read_to_string(&running).unwrap_or_default()
                            }
                            _ => {
                                record.lock().unwrap().push(command);
                                String::new()
                            }
                        };
                        let mut reply = answer.into_bytes();
                        reply.extend_from_slice(&[0, 0, 0, 0]);
                        if stream.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    seen
}

#[tokio::test]
async fn an_unknown_frr_version_is_reloaded_never_typed_into_and_its_print_is_taken() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("ferrolb-unknown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let typed = fake_daemon(&dir, "9.1").await;
    // The reload: FRR 9.1 "prints" the file it is given with a line of its own added.
    let script = dir.join("frr-reload.py");
    std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor file; do :; done\n{{ cat \"$file\"; echo 'bgp something-new'; }} > '{0}/running.conf'\necho reloads >> '{0}/reloads'\n",
                dir.display()
            ),
        )
        .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut applier = Applier::new(FrrTarget {
        vtysh: PathBuf::from("/nonexistent/vtysh"),
        vty_dir: dir.clone(),
        config_dir: dir.clone(),
        reload_script: script,
    });
    let model = golden_model("peer-filter");
    for round in 1..=2 {
        let mut model = model.clone();
        model.log_level = ["informational", "debugging"][round - 1].into();
        let report = applier.apply(&model).await.unwrap();
        let ApplyPath::Reload(reason) = &report.path else {
            panic!("round {round}: {report:?}");
        };
        assert_eq!(
            reason, "FRR 9.1 is not a version ferrolb knows (8.4, 10.3)",
            "round {round}"
        );
        let running = std::fs::read_to_string(dir.join("running.conf")).unwrap();
        assert_eq!(applier.applied_text(), Some(running.as_str()));
        // The whole rendering was reloaded; frr.conf is its boot form.
        let whole = render::render(&model, Dialect::default()).unwrap();
        assert_eq!(running, format!("{whole}bgp something-new\n"));
        assert_eq!(
            std::fs::read_to_string(dir.join("frr.conf")).unwrap(),
            crate::frr::bfd_hold::boot_text(&whole)
        );
    }
    let version = applier.frr_version().unwrap();
    assert_eq!((version.version.as_str(), version.dialect), ("9.1", None));
    let reloads = std::fs::read_to_string(dir.join("reloads")).unwrap();
    assert_eq!(reloads.lines().count(), 2);
    // Nothing but the connection's `enable` was typed into the daemon.
    assert!(
        typed.lock().unwrap().iter().all(|c| c == "enable"),
        "{:?}",
        typed.lock().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_are_replaced_whole_and_readable_by_frr() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("ferrolb-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("frr.conf");
    write_atomically(&path, "one\n").unwrap();
    write_atomically(&path, "two\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
