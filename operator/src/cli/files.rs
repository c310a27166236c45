//! Reading manifest paths: files, directories (recursive, sorted) and stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::manifest::{self, Manifests};

/// Why input could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    /// A path could not be opened or listed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A document is not YAML or JSON.
    #[error(transparent)]
    Syntax(#[from] manifest::SyntaxError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Expands `paths` into manifest files: directories are searched recursively for
/// `*.yaml`, `*.yml` and `*.json`, in name order; `-` stands for stdin.
pub(super) fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReadError> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            out.push(path.clone());
            continue;
        }
        let meta = std::fs::metadata(path).map_err(io_error(path))?;
        if meta.is_dir() {
            collect_dir(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_error(dir))?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_dir(&entry, out)?;
        } else if entry
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(entry);
        }
    }
    Ok(())
}

/// Reads and parses every manifest under `paths`.
pub(super) fn read_manifests(paths: &[PathBuf], namespace: &str) -> Result<Manifests, ReadError> {
    let mut all = Manifests::default();
    for path in expand(paths)? {
        let (text, name) = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(io_error(&path))?;
            (text, "<stdin>".to_string())
        } else {
            (
                std::fs::read_to_string(&path).map_err(io_error(&path))?,
                path.display().to_string(),
            )
        };
        all.extend(manifest::parse(&text, &name, namespace)?);
    }
    Ok(all)
}
