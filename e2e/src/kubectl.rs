//! `kubectl` against a lab's control plane, run as a user would run it: the pinned release's
//! own kubectl (`hack/k8s.sh`), never whatever the machine has on its PATH.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// kubectl with a fixed kubeconfig.
#[derive(Clone, Debug)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    netns: Option<String>,
}

impl Kubectl {
    /// kubectl for `kubeconfig`.
    pub fn new(kubeconfig: &Path) -> Kubectl {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            netns: None,
        }
    }

    /// kubectl run inside namespace `netns` (where the control plane is reachable).
    pub fn within(mut self, netns: Option<&str>) -> Kubectl {
        self.netns = netns.map(str::to_string);
        self
    }

    fn command(&self) -> Result<Command> {
        let kubectl = crate::paths::k8s_tool("kubectl")?;
        Ok(match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(kubectl);
                c
            }
            None => Command::new(kubectl),
        })
    }

    /// Starts `kubectl ARGS` (say `logs -f …`) with its output going to `out`; the caller
    /// ends the child.
    pub fn follow(&self, args: &[&str], out: &Path) -> Result<std::process::Child> {
        let file =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut command = self.command()?;
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting kubectl")
    }

    /// `kubectl auth can-i VERB RESOURCE -n NAMESPACE --as USER`; `RESOURCE` may name a
    /// subresource as `services/status`.
    pub fn can_i(&self, verb: &str, resource: &str, namespace: &str, user: &str) -> Result<bool> {
        let mut command = self.command()?;
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["auth", "can-i", verb, "-n", namespace, "--as", user]);
        match resource.split_once('/') {
            Some((resource, sub)) => command.args([resource, "--subresource", sub]),
            None => command.arg(resource),
        };
        let out = command.output().context("running kubectl auth can-i")?;
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => Ok(true),
            "no" => Ok(false),
            other => bail!(
                "kubectl auth can-i {verb} {resource}: {other} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }

    /// Runs `kubectl ARGS` (with `stdin` piped in); returns stdout, or an error with stderr.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut command = self.command()?;
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        crate::process::run_with_input(&mut command, stdin, &format!("kubectl {}", args.join(" ")))
    }

    /// `kubectl apply -f -` of `manifests`.
    pub fn apply(&self, manifests: &str) -> Result<String> {
        self.run(&["apply", "-f", "-"], Some(manifests))
    }

    /// `kubectl apply -f PATH` of a file of the repository (`examples/lab/lab.yaml`, …).
    pub fn apply_repo_file(&self, path: &str) -> Result<String> {
        let path = crate::paths::repo().join(path);
        self.run(&["apply", "-f", &path.to_string_lossy()], None)
    }

    /// Applies every CRD in `dir` as a user would (`kubectl apply --server-side`, with the
    /// API server's full schema validation), then waits until the API server has established
    /// each.
    pub fn apply_crds(&self, dir: &Path, timeout: std::time::Duration) -> Result<()> {
        let dir = dir.to_string_lossy();
        self.run(&["apply", "--server-side", "-f", &dir], None)?;
        let wait = format!("--timeout={}s", timeout.as_secs().max(1));
        self.run(
            &["wait", "--for=condition=Established", &wait, "-f", &dir],
            None,
        )?;
        Ok(())
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let text = self.run(&all, None)?;
        serde_json::from_str(&text).context("kubectl printed something other than JSON")
    }
}
