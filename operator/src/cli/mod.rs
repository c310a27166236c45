//! The `ferrolb` command line: offline tools that work on manifest files.
//!
//! Exit codes: 0 success, 1 the input is invalid, 2 usage error or unreadable input.

mod allocate;
mod files;
mod render;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::DEFAULT_NAMESPACE;
use crate::config::{self, LoadOptions};

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
    }
}

fn crds() -> ExitCode {
    match crate::api::crds_yaml() {
        Ok(yaml) => {
            let _ = std::io::stdout().write_all(yaml.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot serialise the CRDs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(paths: &[PathBuf], namespace: &str) -> ExitCode {
    if let Err(reason) = config::names::check_dns_label(namespace) {
        eprintln!("error: --namespace: {reason}");
        return ExitCode::from(2);
    }
    let manifests = match files::read_manifests(paths, namespace) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = LoadOptions {
        namespace: namespace.to_string(),
    };
    let analysis = config::analyse(&manifests.objects, &options);
    let mut stderr = std::io::stderr().lock();
    for warning in manifests.warnings.iter().chain(&analysis.warnings) {
        let _ = writeln!(stderr, "warning: {warning}");
    }
    let errors: Vec<_> = manifests.errors.iter().chain(&analysis.errors).collect();
    for error in &errors {
        let _ = writeln!(stderr, "{error}");
    }
    if errors.is_empty() {
        println!(
            "valid: {}",
            crate::manifest::kinds_summary(&manifests.objects)
        );
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(stderr, "invalid: {} error(s)", errors.len());
        ExitCode::from(1)
    }
}
