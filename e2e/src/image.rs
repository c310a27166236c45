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
    /// A symbolic link `path` → `target`.
    Link {
        /// The link.
        path: String,
        /// What it points at.
        target: String,
    },
}

/// An image: its reference, layer content and what it runs.
#[derive(Debug, Clone)]
pub struct Image {
    /// `name:tag`, as pods name it.
    pub reference: String,
    /// The layer's entries, in order.
    pub entries: Vec<Entry>,
    /// The command it runs.
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
        let layer = layer(&self.entries)?;
        let layer_digest = digest(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Cmd": self.cmd,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))?;
        let tag = self.reference.rsplit(':').next().unwrap_or("latest");
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&manifest),
                "size": manifest.len(),
                "annotations": {
                    "io.containerd.image.name": self.reference,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
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
        for blob in [&layer, &config, &manifest] {
            let name = digest(blob).replace(':', "/");
            add(&format!("blobs/{name}"), blob)?;
        }
        out.into_inner()?.flush()?;
        Ok(())
    }
}

/// The pause image: busybox's static binary sleeping for ever.
pub fn pause() -> Image {
    Image {
        reference: PAUSE.into(),
        entries: vec![
            Entry::Dir("bin".into()),
            Entry::File {
                path: "bin/busybox".into(),
                from: PathBuf::from("/bin/busybox"),
                mode: 0o755,
            },
        ],
        cmd: vec!["/bin/busybox".into(), "sleep".into(), "2147483647".into()],
    }
}

/// The demo backend behind the lab's Services: busybox's httpd answering every request for
/// `/` with the pod's name, its node's name and the client address it saw
/// (`pod=… node=… client=…`). Pods set `POD_NAME` and `NODE_NAME` from the downward API.
pub const DEMO: &str = "ferrolb.test/demo:1";

/// The CGI script busybox's httpd runs for `/` when there is no index.html.
const DEMO_CGI: &str = r#"#!/bin/sh
client=$(echo "$REMOTE_ADDR" | busybox sed -e 's/^\[::ffff:\(.*\)\]$/\1/' -e 's/^\[\(.*\)\]$/\1/')
echo "Content-Type: text/plain"
echo
echo "pod=$POD_NAME node=$NODE_NAME client=$client"
"#;

/// The demo backend's image ([`DEMO`]), listening on port 8080.
pub fn demo() -> Image {
    Image {
        reference: DEMO.into(),
        entries: vec![
            Entry::Dir("bin".into()),
            Entry::File {
                path: "bin/busybox".into(),
                from: PathBuf::from("/bin/busybox"),
                mode: 0o755,
            },
            Entry::Link {
                path: "bin/sh".into(),
                target: "busybox".into(),
            },
            Entry::Dir("www".into()),
            Entry::Dir("www/cgi-bin".into()),
            Entry::Text {
                path: "www/cgi-bin/index.cgi".into(),
                text: DEMO_CGI.into(),
                mode: 0o755,
            },
        ],
        cmd: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
            .map(String::from)
            .to_vec(),
    }
}
