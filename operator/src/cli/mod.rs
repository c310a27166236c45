//! The `ferrolb` command line: offline tools that work on manifest files, and the
//! long-running components.
//!
//! Exit codes: 0 success, 1 the input is invalid, 2 usage error or unreadable input.

mod allocate;
mod daemon;
mod explain;
mod files;
mod render;

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::DEFAULT_NAMESPACE;
use crate::config::{self, Config, LoadOptions};
use crate::frr::Dialect;
use crate::manifest::Manifests;

/// MetalLB-compatible LoadBalancer for bare-metal Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "ferrolb", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check metallb.io manifests the way the cluster would, and report every error.
    Validate {
        /// A file, a directory (searched recursively for *.yaml, *.yml, *.json) or - for stdin.
        #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The namespace ferrolb runs in.
        #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE, env = "FERROLB_NAMESPACE")]
        namespace: String,
    },
    /// Print the CustomResourceDefinitions ferrolb serves, as YAML.
    Crds,
    /// Allocate IPs to the LoadBalancer Services in the manifests exactly as the controller
    /// would (existing statuses honoured), and print them with their status filled in.
    Allocate {
        /// A file, a directory (searched recursively for *.yaml, *.yml, *.json) or - for stdin.
        #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The namespace ferrolb runs in.
        #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE, env = "FERROLB_NAMESPACE")]
        namespace: String,
        /// Handle Services of this loadBalancerClass (default: Services without a class).
        #[arg(long = "lb-class", value_name = "CLASS")]
        load_balancer_class: Option<String>,
        /// `yaml`: the Services with status.loadBalancer filled; `table`: one line each.
        #[arg(short = 'o', long, value_enum, default_value = "yaml")]
        output: allocate::Output,
    },
    /// Show what one node's speaker would do with these manifests.
    Render {
        #[command(subcommand)]
        what: RenderWhat,
    },
    /// Explain a Service: the pool and IPs it gets and why, and per node whether it is
    /// announced (BGP peers and attributes, layer-2 owner) or why not. Reads the cluster, or
    /// manifest files with -f.
    Explain {
        #[command(subcommand)]
        what: explain::ExplainWhat,
    },
    /// Convert MetalLB's legacy ConfigMap configuration (the `config` key) to metallb.io
    /// resources, printed as YAML; the result is checked as `validate` would check it.
    Convert {
        /// The ConfigMap (or its `config` file); - for stdin.
        #[arg(short = 'f', long = "filename", value_name = "PATH")]
        path: PathBuf,
        /// The namespace of the resources when the ConfigMap names none.
        #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE, env = "FERROLB_NAMESPACE")]
        namespace: String,
    },
    /// Run the controller: allocate IPs to LoadBalancer Services in the cluster (leader
    /// elected on a Lease, so several replicas can run).
    Controller(daemon::ControllerArgs),
    /// Announce this node's Services: BGP through FRR (delta applies, verified), with
    /// ConfigurationState, ServiceBGPStatus and metrics.
    Speaker(daemon::SpeakerArgs),
}

#[derive(Debug, Subcommand)]
enum RenderWhat {
    /// Print the frr.conf the node's speaker would apply.
    Frr(RenderArgs),
    /// Print, as JSON, each BGP prefix with the peers and attributes it goes to, and each IP
    /// the node would answer ARP/NDP for (every node in the input assumed alive).
    Announcements(RenderArgs),
}

#[derive(Debug, clap::Args)]
struct RenderArgs {
    /// The node's name; a Node object of that name in the input supplies labels and addresses.
    #[arg(long, value_name = "NAME")]
    node: String,
    /// A file, a directory (searched recursively for *.yaml, *.yml, *.json) or - for stdin.
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The namespace ferrolb runs in.
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE, env = "FERROLB_NAMESPACE")]
    namespace: String,
    /// Handle Services of this loadBalancerClass (default: Services without a class).
    #[arg(long, value_name = "CLASS")]
    load_balancer_class: Option<String>,
    /// The node does not forward IPv4 (FRR then prints `no ip forwarding`).
    #[arg(long)]
    no_ipv4_forwarding: bool,
    /// The node does not forward IPv6.
    #[arg(long)]
    no_ipv6_forwarding: bool,
    /// The FRR version the speaker drives (8.4 or 10.3, the image's): frr.conf is printed as
    /// that version prints it.
    #[arg(long, value_name = "VERSION", default_value = "10.3", value_parser = frr_version)]
    frr_version: Dialect,
}

fn frr_version(value: &str) -> Result<Dialect, String> {
    Dialect::of_version(value).ok_or_else(|| {
        format!(
            "FRR {value} is not a version ferrolb renders for (known: {})",
            Dialect::known()
        )
    })
}

/// Runs the command line with the process arguments.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Validate { paths, namespace } => validate(&paths, &namespace),
        Command::Crds => crds(),
        Command::Allocate {
            paths,
            namespace,
            load_balancer_class,
            output,
        } => allocate::run(&paths, &namespace, load_balancer_class, output),
        Command::Render { what } => match what {
            RenderWhat::Frr(args) => render::frr(&args),
            RenderWhat::Announcements(args) => render::announcements(&args),
        },
        Command::Explain { what } => explain::run(what),
        Command::Convert { path, namespace } => convert(&path, &namespace),
        Command::Controller(args) => daemon::controller(args),
        Command::Speaker(args) => daemon::speaker(args),
    }
}

fn convert(path: &std::path::Path, namespace: &str) -> ExitCode {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let converted = match crate::convert::convert(&text, namespace) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let yaml = match converted.yaml() {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = std::io::stdout().write_all(yaml.as_bytes());
    // The output must stand on its own: check it as `validate` would.
    let target = converted
        .documents
        .first()
        .and_then(|d| d.object["metadata"]["namespace"].as_str())
        .unwrap_or(namespace)
        .to_string();
    let manifests = match crate::manifest::parse(&yaml, "converted", &target) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: the converted output does not read back: {e}");
            return ExitCode::FAILURE;
        }
    };
    let analysis = config::analyse(&manifests.objects, &options(&target));
    warn(&analysis.warnings);
    let errors: Vec<_> = manifests.errors.iter().chain(&analysis.errors).collect();
    if !errors.is_empty() {
        eprintln!(
            "the converted configuration is not valid as it stands (as in MetalLB, it would be refused):"
        );
        return invalid(&errors);
    }
    ExitCode::SUCCESS
}

fn crds() -> ExitCode {
    emit(crate::api::crds_yaml().map_err(|e| format!("cannot serialise the CRDs: {e}")))
}

fn validate(paths: &[PathBuf], namespace: &str) -> ExitCode {
    let manifests = match read_input(paths, namespace) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let analysis = config::analyse(&manifests.objects, &options(namespace));
    warn(&analysis.warnings);
    let errors: Vec<_> = manifests.errors.iter().chain(&analysis.errors).collect();
    if !errors.is_empty() {
        return invalid(&errors);
    }
    println!(
        "valid: {}",
        crate::manifest::kinds_summary(&manifests.objects)
    );
    ExitCode::SUCCESS
}

fn options(namespace: &str) -> LoadOptions {
    LoadOptions {
        namespace: namespace.to_string(),
    }
}

/// Prints warnings to stderr.
fn warn(warnings: &[impl Display]) {
    let mut stderr = std::io::stderr().lock();
    for warning in warnings {
        let _ = writeln!(stderr, "warning: {warning}");
    }
}

/// Prints every error on its own line and the count; exit 1.
fn invalid(errors: &[impl Display]) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    for error in errors {
        let _ = writeln!(stderr, "{error}");
    }
    let _ = writeln!(stderr, "invalid: {} error(s)", errors.len());
    ExitCode::from(1)
}

/// Checks `--namespace`, reads the manifests under `paths` and prints their warnings;
/// exit 2 when the input cannot be read.
fn read_input(paths: &[PathBuf], namespace: &str) -> Result<Manifests, ExitCode> {
    if let Err(reason) = config::names::check_dns_label(namespace) {
        eprintln!("error: --namespace: {reason}");
        return Err(ExitCode::from(2));
    }
    let manifests = files::read_manifests(paths, namespace).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    warn(&manifests.warnings);
    Ok(manifests)
}

/// [`read_input`], then the configuration loaded from it (its warnings printed); exit 1 with
/// every error when it does not load.
fn load_input(paths: &[PathBuf], namespace: &str) -> Result<(Manifests, Config), ExitCode> {
    let manifests = read_input(paths, namespace)?;
    if !manifests.errors.is_empty() {
        return Err(invalid(&manifests.errors));
    }
    let config = config::load(&manifests.objects, &options(namespace)).map_err(|e| invalid(&e))?;
    warn(&config.warnings);
    Ok((manifests, config))
}

/// Writes the command's output to stdout, or its error to stderr with exit 1.
fn emit<E: Display>(output: Result<String, E>) -> ExitCode {
    match output {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
