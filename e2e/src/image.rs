//! Container images without a registry: an OCI image layout (one uncompressed layer, its
//! config, a manifest and an index naming the image) written as a tar archive that
//! `ctr images import` loads into a node's containerd.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The image every pod sandbox runs (the kubelet's "pause" container).
pub const PAUSE: &str = "ferrolb.test/pause:1";

/// What goes into an image's single layer.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A file copied from the host, with its mode.
    File {
        /// Where it goes in the image.
        path: String,
        /// Where it is read from.
        from: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file with this content.
    Text {
        /// Where it goes in the image.
        path: String,
        /// Its content.
        text: String,
        /// Its permission bits.
        mode: u32,
    },
    /// An empty directory.
    Dir(String),
    /// An empty directory every user may write to, sticky (mode 1777), as `/tmp` is.
    SharedDir(String),
    /// A symbolic link `path` → `target`.
    Link {
        /// The link.
        path: String,
        /// What it points at.
        target: String,
    },
}

/// One layer of an image.
#[derive(Debug, Clone)]
pub enum Layer {
    /// Made of these entries, in order.
    Entries(Vec<Entry>),
    /// A tar archive as it is (a root file system).
    Tar(PathBuf),
}

/// An image: its reference, layers and what it runs.
#[derive(Debug, Clone)]
pub struct Image {
    /// The full reference, as containerd stores it (`docker.io/ferrolb/ferrolb:0.1.0`).
    pub reference: String,
    /// Its layers, lowest first.
    pub layers: Vec<Layer>,
    /// The entry point (may be empty).
    pub entrypoint: Vec<String>,
    /// The command it runs (after the entry point).
    pub cmd: Vec<String>,
}

fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut out = String::from("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    header.set_path(path.trim_start_matches('/'))?;
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(kind);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    Ok(header)
}

fn layer(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        match entry {
            Entry::File { path, from, mode } => {
                let data = std::fs::read(from)
                    .with_context(|| format!("reading {} for the image", from.display()))?;
                let head = header(path, data.len() as u64, *mode, tar::EntryType::Regular)?;
                builder.append(&head, data.as_slice())?;
            }
            Entry::Text { path, text, mode } => {
                let head = header(path, text.len() as u64, *mode, tar::EntryType::Regular)?;
                builder.append(&head, text.as_bytes())?;
            }
            Entry::Dir(path) => {
                let head = header(path, 0, 0o755, tar::EntryType::Directory)?;
                builder.append(&head, std::io::empty())?;
            }
            Entry::SharedDir(path) => {
                let head = header(path, 0, 0o1777, tar::EntryType::Directory)?;
                builder.append(&head, std::io::empty())?;
            }
            Entry::Link { path, target } => {
                let mut head = header(path, 0, 0o777, tar::EntryType::Symlink)?;
                head.set_link_name(target)?;
                head.set_cksum();
                builder.append(&head, std::io::empty())?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

impl Image {
    /// Writes the image as an OCI layout archive at `archive`.
    pub fn write(&self, archive: &Path) -> Result<()> {
        self.write_also_as(archive, &[])
    }

    /// Writes the image as [`Image::write`] does, named `aliases` too: one archive, one set of
    /// blobs, an image per name once imported.
    pub fn write_also_as(&self, archive: &Path, aliases: &[String]) -> Result<()> {
        let layers: Vec<Vec<u8>> =
            self.layers
                .iter()
                .map(|l| match l {
                    Layer::Entries(entries) => layer(entries),
                    Layer::Tar(path) => std::fs::read(path)
                        .with_context(|| format!("reading layer {}", path.display())),
                })
                .collect::<Result<_>>()?;
        let digests: Vec<String> = layers.iter().map(|l| digest(l)).collect();
        let mut config = json!({
            "Cmd": self.cmd,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        });
        if !self.entrypoint.is_empty() {
            config["Entrypoint"] = json!(self.entrypoint);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": digests},
        }))?;
        let layer_list: Vec<serde_json::Value> = layers
            .iter()
            .zip(&digests)
            .map(|(l, d)| {
                json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": d,
                    "size": l.len(),
                })
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": layer_list,
        }))?;
        let names: Vec<serde_json::Value> = std::iter::once(&self.reference)
            .chain(aliases)
            .map(|reference| {
                let tag = reference.rsplit(':').next().unwrap_or("latest");
                json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(&manifest),
                    "size": manifest.len(),
                    "annotations": {
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": tag,
                    },
                })
            })
            .collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": names,
        }))?;
        let file = std::fs::File::create(archive)
            .with_context(|| format!("creating {}", archive.display()))?;
        let mut out = tar::Builder::new(std::io::BufWriter::new(file));
        let mut add = |path: &str, data: &[u8]| -> Result<()> {
            let head = header(path, data.len() as u64, 0o644, tar::EntryType::Regular)?;
            out.append(&head, data)?;
            Ok(())
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &index)?;
        for blob in layers.iter().chain([&config, &manifest]) {
            let name = digest(blob).replace(':', "/");
            add(&format!("blobs/{name}"), blob)?;
        }
        out.into_inner()?.flush()?;
        Ok(())
    }
}

/// busybox's static binary at `/bin/busybox`.
fn busybox() -> Entry {
    Entry::File {
        path: "bin/busybox".into(),
        from: PathBuf::from("/bin/busybox"),
        mode: 0o755,
    }
}

/// The pause image: busybox's static binary sleeping for ever.
pub fn pause() -> Image {
    Image {
        reference: PAUSE.into(),
        layers: vec![Layer::Entries(vec![Entry::Dir("bin".into()), busybox()])],
        entrypoint: Vec::new(),
        cmd: vec!["/bin/busybox".into(), "sleep".into(), "2147483647".into()],
    }
}

/// The demo backend behind the lab's Services: a threaded HTTP server (`e2e/demo/server.py`,
/// listen backlog 4,096) answering every request for `/` with the pod's name, its node's name
/// and the client address it saw (`pod=… node=… client=…`). Pods set `POD_NAME` and
/// `NODE_NAME` from the downward API.
pub const DEMO: &str = "ferrolb.test/demo:2";

/// The demo backend's server.
const DEMO_SERVER: &str = include_str!("../demo/server.py");

/// A Deployment (`replicas` given) or DaemonSet of the demo backend in namespace `default`,
/// its pods labelled `app: <name>`, ready once they answer. A pod being deleted goes on
/// answering for 5 s before its server is told to stop (a `preStop` sleep, as any backend
/// behind a load balancer should): that is how long the load balancer has to move its
/// traffic elsewhere once the pod's endpoint turns terminating.
pub fn demo_workload(name: &str, replicas: Option<u32>) -> String {
    let (kind, replicas) = match replicas {
        Some(n) => ("Deployment", format!("\n  replicas: {n}")),
        None => ("DaemonSet", String::new()),
    };
    format!(
        "apiVersion: apps/v1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:{replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: web
        image: {DEMO}
        imagePullPolicy: Never
        ports: [{{containerPort: 8080}}]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
        lifecycle: {{preStop: {{sleep: {{seconds: 5}}}}}}
        resources: {{requests: {{cpu: 50m, memory: 16Mi}}}}
"
    )
}

/// `workload` (from [`demo_workload`]) with its pods kept to node `node`.
pub fn pinned(workload: &str, node: &str) -> String {
    workload.replace(
        "    spec:\n      containers:",
        &format!(
            "    spec:\n      nodeSelector: {{kubernetes.io/hostname: {node}}}\n      containers:"
        ),
    )
}

/// The demo backend's image ([`DEMO`]), listening on port 8080: the root file system of
/// ferrolb's image (the archive at `root_archive`, `hack/rootfs.sh image`; its Python comes
/// with FRR's tools), so nodes that run both store that layer once, and the server.
pub fn demo(root_archive: &Path) -> Image {
    Image {
        reference: DEMO.into(),
        layers: vec![
            Layer::Tar(root_archive.to_path_buf()),
            Layer::Entries(vec![
                Entry::Dir("srv".into()),
                Entry::Text {
                    path: "srv/demo.py".into(),
                    text: DEMO_SERVER.into(),
                    mode: 0o644,
                },
            ]),
        ],
        entrypoint: Vec::new(),
        cmd: ["/usr/bin/python3", "/srv/demo.py"]
            .map(String::from)
            .to_vec(),
    }
}

/// The ferrolb image as the chart runs it by default, made from the image's one definition:
/// the root file system `hack/rootfs.sh image` archives (FRR's users and the packages of
/// `deploy/image/`, which `deploy/Dockerfile` installs too), the `ferrolb` binary at
/// `/usr/local/bin/ferrolb`, and `deploy/Dockerfile`'s ENTRYPOINT. Its reference is the chart's
/// default (`image.repository` at the chart's appVersion, on Docker Hub as containerd names it).
pub fn ferrolb(root_archive: &Path, binary: &Path) -> Result<Image> {
    let repo = crate::paths::repo();
    let dockerfile = std::fs::read_to_string(repo.join("deploy/Dockerfile"))?;
    let entrypoint: Vec<String> = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .context("deploy/Dockerfile has no ENTRYPOINT")
        .and_then(|e| serde_json::from_str(e).context("deploy/Dockerfile's ENTRYPOINT"))?;
    Ok(Image {
        reference: chart_image()?,
        layers: vec![
            Layer::Tar(root_archive.to_path_buf()),
            Layer::Entries(vec![
                Entry::Dir("usr/local/bin".into()),
                Entry::File {
                    path: "usr/local/bin/ferrolb".into(),
                    from: binary.to_path_buf(),
                    mode: 0o755,
                },
            ]),
        ],
        entrypoint,
        cmd: Vec::new(),
    })
}

/// The chart's default image, fully named: `docker.io/<image.repository>:<appVersion>`.
pub fn chart_image() -> Result<String> {
    let chart = crate::paths::repo().join("deploy/charts/ferrolb");
    let field = |file: &str, key: &str| -> Result<String> {
        let text = std::fs::read_to_string(chart.join(file))?;
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').to_string())
            .with_context(|| format!("{file} has no {key}"))
    };
    let repository = field("values.yaml", "repository:")?;
    let version = field("Chart.yaml", "appVersion:")?;
    let host = if repository
        .split('/')
        .next()
        .is_some_and(|h| h.contains('.'))
    {
        ""
    } else {
        "docker.io/"
    };
    Ok(format!("{host}{repository}:{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_builds_from_the_image_definition_the_lab_image_uses() {
        let repo = crate::paths::repo();
        let dockerfile = std::fs::read_to_string(repo.join("deploy/Dockerfile")).unwrap();
        // The runtime stage: the definition copied in, the users written first, then exactly
        // the listed packages; nothing else installed.
        let runtime = dockerfile.split("FROM debian:trixie-slim").nth(1).unwrap();
        for needed in [
            "COPY deploy/image/ /tmp/image/",
            "RUN sh /tmp/image/users.sh /",
            "apt-get install -y --no-install-recommends $(cat /tmp/image/packages)",
            "COPY --from=build /src/target/release/ferrolb /usr/local/bin/ferrolb",
        ] {
            assert!(
                runtime.contains(needed),
                "deploy/Dockerfile lacks {needed:?}"
            );
        }
        assert_eq!(runtime.matches("apt-get install").count(), 1);
        let rootfs = std::fs::read_to_string(repo.join("hack/rootfs.sh")).unwrap();
        assert!(rootfs.contains(r#""$definition/packages""#));
        assert!(rootfs.contains("users.sh"));
        // The lab's image takes the Dockerfile's entry point and the chart's reference.
        let image = ferrolb(Path::new("/nonexistent.tar"), Path::new("/nonexistent")).unwrap();
        assert_eq!(
            image.entrypoint,
            ["/usr/bin/tini", "--", "/usr/local/bin/ferrolb"]
        );
        assert!(
            image.reference.starts_with("docker.io/ferrolb/ferrolb:"),
            "{}",
            image.reference
        );
        assert!(matches!(&image.layers[1], Layer::Entries(e) if e.len() == 2));
    }

    #[test]
    fn an_image_written_with_aliases_names_one_manifest_under_each() {
        let dir = crate::paths::Scratch::new("image-aliases").unwrap();
        let archive = dir.path().join("frr.tar");
        let mut image = pause();
        image.reference = "quay.io/frrouting/frr:10.5.3".into();
        let alias = "quay.io/frrouting/frr:10.4.3".to_string();
        image.write_also_as(&archive, &[alias]).unwrap();
        let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        let index = tar
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str() == Some("index.json"))
            .map(|e| serde_json::from_reader::<_, serde_json::Value>(e).unwrap())
            .unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        let names: Vec<&str> = manifests
            .iter()
            .map(|m| {
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            names,
            [
                "quay.io/frrouting/frr:10.5.3",
                "quay.io/frrouting/frr:10.4.3"
            ]
        );
        let tags: Vec<&str> = manifests
            .iter()
            .map(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(tags, ["10.5.3", "10.4.3"]);
        assert_eq!(manifests[0]["digest"], manifests[1]["digest"]);
    }
}
