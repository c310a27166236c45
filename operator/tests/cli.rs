//! The `ferrolb` binary as users run it: exit codes, output, and documentation-style
//! manifests that must validate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn ferrolb(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferrolb runs");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("ferrolb finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn documentation_style_manifests_validate_one_by_one_and_together() {
    let dir = examples();
    // Top-level files form one configuration; each subdirectory is a configuration of its own
    // (the lab's).
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    let lab = dir.join("lab");
    let out = ferrolb(&["validate", "-f", lab.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for file in &files {
        let out = ferrolb(&["validate", "-f", file.to_str().unwrap()], None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
    }
    let mut args = vec!["validate"];
    for file in &files {
        args.extend(["-f", file.to_str().unwrap()]);
    }
    let out = ferrolb(&args, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "valid: 6 IPAddressPool, 3 BGPPeer, 3 BGPAdvertisement, 2 L2Advertisement, 2 BFDProfile, 1 Community\n"
    );
    assert!(text(&out.stderr).contains("warning: BGPPeer/metallb-system/tor-b: apiVersion: metallb.io/v1beta1 BGPPeer is deprecated"));
}

#[test]
fn invalid_manifests_exit_1_with_every_error_on_its_own_line() {
    let out = ferrolb(
        &["validate", "-f", fixtures("invalid").to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "\
L2Advertisement/metallb-system/l2: spec.ipAdressPools: unknown field: the API has no such field (check the spelling)
BGPPeer/metallb-system/p: spec.password: the password contains a line break; FRR takes the password as one word of printable ASCII
BGPPeer/metallb-system/p: spec.bfdProfile: BFDProfile \"missing\" does not exist; the configuration loads once it is created
IPAddressPool/metallb-system/b: spec.addresses[0]: \"10.0.0.128/25\" overlaps IPAddressPool \"a\" (spec.addresses[0], \"10.0.0.0/24\"): 10.0.0.128/25 and 10.0.0.0/24 share addresses, and an address may belong to one pool entry only
invalid: 4 error(s)
"
    );
}

#[test]
fn stdin_is_read_for_a_dash() {
    let doc = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: s}\nspec: {addresses: [10.1.0.0/16]}\n";
    let out = ferrolb(&["validate", "-f", "-"], Some(doc));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = ferrolb(&["validate", "-f", "-", "--namespace", "lb"], Some(doc));
    assert_eq!(
        out.status.code(),
        Some(0),
        "objects without a namespace take --namespace"
    );
}

#[test]
fn the_namespace_flag_sets_where_objects_must_be() {
    let out = ferrolb(
        &[
            "validate",
            "-f",
            examples().join("l2-simple.yaml").to_str().unwrap(),
            "--namespace",
            "lb",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with(
        "IPAddressPool/metallb-system/first-pool: metadata.namespace: IPAddressPool objects must be in namespace \"lb\""
    ));
}

#[test]
fn unreadable_input_and_usage_errors_exit_2() {
    let out = ferrolb(&["validate", "-f", "/nonexistent/ferrolb.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: cannot read /nonexistent/ferrolb.yaml:"),
        "{}",
        text(&out.stderr)
    );
    let out = ferrolb(&["validate", "-f", "-"], Some("a: [b\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: <stdin>: not valid YAML or JSON"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(ferrolb(&["validate"], None).status.code(), Some(2));
    assert_eq!(ferrolb(&["frobnicate"], None).status.code(), Some(2));
}

#[test]
fn crds_prints_what_crds_directory_holds() {
    let out = ferrolb(&["crds"], None);
    assert_eq!(out.status.code(), Some(0));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let committed: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert_eq!(text(&out.stdout), committed);
}

fn golden(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

fn render(what: &str, node: &str, input: &Path) -> Output {
    let path = input.to_str().expect("UTF-8 path");
    ferrolb(&["render", what, "--node", node, "-f", path], None)
}

#[test]
fn render_frr_prints_the_node_s_golden_configuration() {
    let case = golden("communities");
    let out = render("frr", "node-a", &case.join("input.yaml"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let expected = std::fs::read_to_string(case.join("frr.conf")).unwrap();
    assert_eq!(text(&out.stdout), expected);
}

#[test]
fn render_frr_prints_the_form_of_the_frr_version_asked_for() {
    let case = golden("asn-options");
    let input = case.join("input.yaml");
    let input = input.to_str().expect("UTF-8 path");
    let render = |version: &str| {
        let args = ["render", "frr", "--node", "node-a", "-f", input];
        ferrolb(&[&args[..], &["--frr-version", version]].concat(), None)
    };
    for (version, file) in [("8.4", "frr-8.4.conf"), ("10.3", "frr.conf")] {
        let out = render(version);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let expected = std::fs::read_to_string(case.join(file)).unwrap();
        assert_eq!(text(&out.stdout), expected, "{version}");
    }
    let out = render("9.1");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("FRR 9.1 is not a version ferrolb renders for (known: 8.4, 10.3)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn render_frr_exits_1_on_invalid_configuration() {
    let case = golden("invalid-password-with-space");
    let out = render("frr", "node-a", &case.join("input.yaml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let expected = std::fs::read_to_string(case.join("error.txt")).unwrap();
    assert_eq!(
        text(&out.stderr),
        format!("{expected}invalid: 1 error(s)\n")
    );
}

#[test]
fn render_announcements_lists_prefixes_reasons_and_l2_duties() {
    let out = render(
        "announcements",
        "node-a",
        &golden("traffic-policy-local").join("input.yaml"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = &json["bgp"]["services"];
    assert_eq!(services["web/local-here"]["announced"], true);
    assert_eq!(
        services["web/local-elsewhere"]["reason"],
        "noLocalEndpoints"
    );
    assert_eq!(services["web/cluster-none"]["reason"], "noEndpoints");
    let prefixes: Vec<&str> = json["bgp"]["sessions"][0]["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, ["198.51.100.10/32", "198.51.100.12/32"]);
    assert_eq!(json["l2"], serde_json::json!([]));
}

#[test]
fn render_announcements_elects_one_l2_owner_per_service() {
    let input = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan}
spec: {addresses: [192.168.50.0/24]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer}
status: {loadBalancer: {ingress: [{ip: 192.168.50.10}]}}
"#;
    let mut owners = 0;
    for node in ["node-a", "node-b"] {
        let out = ferrolb(
            &["render", "announcements", "--node", node, "-f", "-"],
            Some(input),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let l2 = json["l2"].as_array().unwrap();
        if !l2.is_empty() {
            owners += 1;
            assert_eq!(l2[0]["service"], "shop/web");
            assert_eq!(l2[0]["ips"], serde_json::json!(["192.168.50.10"]));
        }
    }
    assert_eq!(owners, 1, "exactly one node answers for the IP");
}

const ALLOCATE_INPUT: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: prod-pool}
spec: {addresses: [10.0.0.0/31]}
---
apiVersion: v1
kind: Service
metadata: {name: kept, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 10.0.0.1}]}}
---
apiVersion: v1
kind: Service
metadata: {name: new, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: waiting, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: foreign, namespace: shop}
spec: {type: LoadBalancer, loadBalancerClass: other.io/lb}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: shop}
spec: {type: ClusterIP}
"#;

#[test]
fn allocate_prints_a_table_with_reasons() {
    let out = ferrolb(
        &["allocate", "-f", "-", "-o", "table"],
        Some(ALLOCATE_INPUT),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().take(4).collect())
        .collect();
    assert_eq!(rows[0], ["NAMESPACE", "NAME", "POOL", "IPS"]);
    assert_eq!(rows[1], ["shop", "foreign", "-", "-"]);
    assert_eq!(
        rows[2],
        ["shop", "kept", "prod-pool", "10.0.0.1"],
        "a held IP is kept"
    );
    assert_eq!(rows[3], ["shop", "new", "prod-pool", "10.0.0.0"]);
    assert_eq!(rows[4], ["shop", "waiting", "-", "-"]);
    assert!(
        table.lines().nth(4).unwrap().ends_with(
            "pending: no pool could give IPv4: pool prod-pool exhausted (2/2 IPv4 in use)"
        ),
        "{table}"
    );
    assert_eq!(rows.len(), 5, "ClusterIP Services are not listed");
}

#[test]
fn allocate_prints_services_with_status_and_pool_annotation() {
    let out = ferrolb(&["allocate", "-f", "-"], Some(ALLOCATE_INPUT));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    assert_eq!(docs.len(), 4);
    let new = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "new")
        .unwrap();
    assert_eq!(
        new["status"]["loadBalancer"]["ingress"][0]["ip"],
        "10.0.0.0"
    );
    assert_eq!(
        new["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"],
        "prod-pool"
    );
    let foreign = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "foreign")
        .unwrap();
    assert!(
        foreign.get("status").is_none_or(|s| s.is_null()),
        "{foreign}"
    );
    // Feeding the output back, with the pool, changes nothing.
    let pool = ALLOCATE_INPUT.split("---").next().unwrap();
    let again = ferrolb(&["allocate", "-f", "-"], Some(&format!("{pool}{yaml}")));
    assert_eq!(text(&again.stdout), yaml);
}

#[test]
fn allocate_exits_1_on_invalid_configuration() {
    let out = ferrolb(
        &["allocate", "-f", "-"],
        Some(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [nonsense]}\n",
        ),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("IPAddressPool/metallb-system/p: spec.addresses[0]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn speaker_interface_exclusions_are_checked_before_anything_starts() {
    let out = ferrolb(
        &["speaker", "--node-name", "n1", "--exclude-interface", "("],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--exclude-interface") && err.contains("\"(\""),
        "{err}"
    );

    let file = std::env::temp_dir().join(format!("excludel2-{}.yaml", std::process::id()));
    std::fs::write(&file, "announcedInterfacesToExclude: ['^ok$', '[']\n").unwrap();
    let out = ferrolb(
        &[
            "speaker",
            "--node-name",
            "n1",
            "--exclude-interfaces-file",
            file.to_str().unwrap(),
        ],
        None,
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("excludel2") && err.contains("announcedInterfacesToExclude[1]"),
        "{err}"
    );
}

#[test]
fn convert_prints_resources_that_validate() {
    let legacy = examples().join("legacy/configmap.yaml");
    let out = ferrolb(&["convert", "-f", legacy.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    for kind in [
        "kind: BFDProfile",
        "kind: Community",
        "kind: IPAddressPool",
        "kind: BGPAdvertisement",
        "kind: L2Advertisement",
        "kind: BGPPeer",
    ] {
        assert!(yaml.contains(kind), "{kind} missing:\n{yaml}");
    }
    let validated = ferrolb(&["validate", "-f", "-"], Some(&yaml));
    assert_eq!(
        validated.status.code(),
        Some(0),
        "{}",
        text(&validated.stderr)
    );

    // A legacy configuration MetalLB would refuse converts, and says why it is invalid.
    let bad = "address-pools:\n- {name: a, protocol: bgp, addresses: [198.51.100.0/24]}\n- {name: b, protocol: layer2, addresses: [198.51.100.128/25]}\n";
    let out = ferrolb(&["convert", "-f", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("name: b"));
    let err = text(&out.stderr);
    assert!(
        err.contains("IPAddressPool/metallb-system/b") && err.contains("overlap"),
        "{err}"
    );

    let out = ferrolb(
        &["convert", "-f", "-"],
        Some("address-pools: [{name: a, protocol: x}]\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("protocol \"x\" is neither layer2 nor bgp"));
}

#[test]
fn explain_answers_from_files() {
    let lab = examples().join("lab/lab.yaml");
    let nodes = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\n";
    let out = ferrolb(
        &[
            "explain",
            "service",
            "printer",
            "-n",
            "shop",
            "-f",
            lab.to_str().unwrap(),
            "-f",
            "-",
        ],
        Some(nodes),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("Service shop/printer\n  IPs:     10.99.0.200\n"),
        "{shown}"
    );
    assert!(
        shown.contains("pool:    lab-l2 (requested: metallb.io/address-pool: lab-l2)"),
        "{shown}"
    );
    assert_eq!(
        shown.matches("L2:  answers ARP/NDP (elected)").count(),
        1,
        "{shown}"
    );

    let out = ferrolb(
        &[
            "explain",
            "service",
            "shop/nope",
            "-f",
            lab.to_str().unwrap(),
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Service shop/nope is not in the input"));
}

/// A kubeconfig for an API server that is not there: a loopback port nothing listens on.
fn kubeconfig_for_nobody(dir: &Path) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: c\n  context: {{cluster: gone, user: u}}\ncurrent-context: c\n"
        ),
    )
    .expect("writing the kubeconfig");
    path
}

#[test]
fn daemons_started_while_the_api_server_is_away_wait_for_it() {
    let dir = std::env::temp_dir().join(format!("ferrolb-cli-away-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let kubeconfig = kubeconfig_for_nobody(&dir);
    for (daemon, extra, step) in [
        ("controller", &[][..], "setting up the Lease"),
        (
            "speaker",
            &["--node-name", "n1"][..],
            "asking the API server for discovery.k8s.io/v1",
        ),
    ] {
        let log = dir.join(format!("{daemon}.log"));
        let out = std::fs::File::create(&log).expect("a log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
            .arg(daemon)
            .args(extra)
            .args(["--health-addr", "127.0.0.1:0", "--metrics-addr", "none"])
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("the log file"))
            .stderr(out)
            .spawn()
            .expect("starting ferrolb");
        std::thread::sleep(std::time::Duration::from_secs(3));
        let exited = child.try_wait().expect("asking after ferrolb");
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            exited.is_none(),
            "{daemon} exited ({exited:?}) instead of waiting for the API server:\n{text}"
        );
        let retries = text
            .lines()
            .filter(|l| l.contains(step) && l.contains("failed; retrying"))
            .count();
        assert!(
            retries >= 2,
            "{daemon} did not say it was retrying {step:?}:\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
