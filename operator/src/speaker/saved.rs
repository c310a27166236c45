//! The last valid configuration a speaker loaded, kept in a file beside FRR's configuration
//! (`/etc/frr`, the pod's emptyDir shared with the frr container), so that a speaker that
//! restarts while the cluster's configuration is invalid starts with it instead of with
//! none.
//!
//! Without it, a restarted speaker loading an invalid configuration (one object in error is
//! enough) had nothing to apply: FRR kept what it ran, but nothing was applied until the
//! error was fixed — not a moved endpoint, and not the configuration of an FRR daemon that
//! restarted meanwhile, so the node could stay without its routes.
//!
//! The file holds the `metallb.io` objects and the Secrets of ferrolb's namespace (passwords,
//! as `frr.conf` beside it does), as a `kind: List`, read back with the manifest reader;
//! Nodes and Namespaces are taken from the cluster when it is read.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::ClusterObjects;

/// The file's name in FRR's configuration directory.
pub(crate) const FILE: &str = "ferrolb-last-valid.json";

/// The file in `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The objects of `objects` a load reads, besides Nodes and Namespaces, as a `kind: List`.
fn list(objects: &ClusterObjects) -> Result<Value, serde_json::Error> {
    let mut items: Vec<Value> = Vec::new();
    fn add<T: serde::Serialize>(
        items: &mut Vec<Value>,
        objects: &[T],
    ) -> Result<(), serde_json::Error> {
        for object in objects {
            items.push(serde_json::to_value(object)?);
        }
        Ok(())
    }
    add(&mut items, &objects.pools)?;
    add(&mut items, &objects.peers)?;
    add(&mut items, &objects.bgp_advertisements)?;
    add(&mut items, &objects.l2_advertisements)?;
    add(&mut items, &objects.bfd_profiles)?;
    add(&mut items, &objects.communities)?;
    add(&mut items, &objects.secrets)?;
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// Writes `objects` (a configuration that loaded) to `dir`'s file: a new file renamed over
/// the old, readable by its owner only.
pub(crate) fn write(dir: &Path, objects: &ClusterObjects) -> std::io::Result<()> {
    let text = serde_json::to_vec(&list(objects)?)?;
    let target = path(dir);
    let fresh = dir.join(format!(".{FILE}.new"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&fresh)?;
    file.write_all(&text)?;
    file.sync_all()?;
    std::fs::rename(&fresh, &target)
}

/// Reads `dir`'s file back: `None` when there is none, an error naming the file when it
/// cannot be read or decoded.
pub(crate) fn read(dir: &Path, namespace: &str) -> Option<Result<ClusterObjects, String>> {
    let target = path(dir);
    let text = match std::fs::read_to_string(&target) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => return Some(Err(format!("{}: {error}", target.display()))),
    };
    let name = target.display().to_string();
    Some(match crate::manifest::parse(&text, &name, namespace) {
        Ok(read) if read.errors.is_empty() => Ok(read.objects),
        Ok(read) => Err(format!(
            "{name}: {}",
            crate::shell::state::summary(&read.errors)
        )),
        Err(error) => Err(error.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load};

    /// A directory of its own for test `name`, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("ferrolb-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A pool announced to a peer whose password is in a Secret.
    fn config() -> String {
        use crate::fixtures::{bgp_advertisement, object, peer, pool};
        [
            pool("bgp", "{addresses: [10.98.0.0/24]}"),
            peer(
                "tor",
                "{myASN: 64512, peerASN: 64513, peerAddress: 10.99.0.1, passwordSecret: {name: tor-password}}",
            ),
            object(
                "Secret",
                "{name: tor-password, namespace: metallb-system}",
                "type: kubernetes.io/basic-auth\nstringData: {password: s3cret}",
            ),
            bgp_advertisement("bgp", "{ipAddressPools: [bgp]}"),
        ]
        .concat()
    }

    /// What is written reads back as the same configuration, and only its owner may read it.
    #[test]
    fn a_configuration_written_reads_back_the_same() {
        let dir = Scratch::new("saved-round-trip");
        let objects = crate::manifest::parse(&config(), "config", "metallb-system")
            .unwrap()
            .objects;
        let options = LoadOptions::default();
        let config = load(&objects, &options).unwrap();
        assert!(read(dir.path(), "metallb-system").is_none());
        write(dir.path(), &objects).unwrap();
        let back = read(dir.path(), "metallb-system").unwrap().unwrap();
        assert_eq!(load(&back, &options).unwrap(), config);
        let mode = std::fs::metadata(path(dir.path())).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    /// A file that is not a configuration is an error naming it, not a panic.
    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = Scratch::new("saved-damaged");
        std::fs::write(path(dir.path()), "{\"kind\": \"List\", \"items\": [").unwrap();
        let error = read(dir.path(), "metallb-system").unwrap().unwrap_err();
        assert!(error.contains(FILE), "{error}");
    }
}
