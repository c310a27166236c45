//! `ferrolb render frr|announcements`: one node's speaker output, offline.

use std::io::Write;
use std::process::ExitCode;

use super::{RenderArgs, files};
use crate::cluster::ServiceScope;
use crate::config::{self, LoadOptions};
use crate::frr::NodeFacts;
use crate::offline::{self, OfflineNode};

fn prepare(args: &RenderArgs) -> Result<OfflineNode, ExitCode> {
    if let Err(reason) = config::names::check_dns_label(&args.namespace) {
        eprintln!("error: --namespace: {reason}");
        return Err(ExitCode::from(2));
    }
    if let Err(reason) = config::names::check_subdomain(&args.node) {
        eprintln!("error: --node: {reason}");
        return Err(ExitCode::from(2));
    }
    let manifests = files::read_manifests(&args.paths, &args.namespace).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let mut stderr = std::io::stderr().lock();
    for warning in &manifests.warnings {
        let _ = writeln!(stderr, "warning: {warning}");
    }
    let options = LoadOptions {
        namespace: args.namespace.clone(),
    };
    let scope = ServiceScope {
        load_balancer_class: args.load_balancer_class.clone(),
    };
    let result = if manifests.errors.is_empty() {
        offline::prepare(&manifests.objects, &args.node, &options, scope)
    } else {
        Err(manifests.errors.clone())
    };
    match result {
        Ok(node) => {
            for warning in node.config.warnings.iter() {
                let _ = writeln!(stderr, "warning: {warning}");
            }
            for warning in &node.warnings {
                let _ = writeln!(stderr, "warning: {warning}");
            }
            Ok(node)
        }
        Err(errors) => {
            for error in &errors {
                let _ = writeln!(stderr, "{error}");
            }
            let _ = writeln!(stderr, "invalid: {} error(s)", errors.len());
            Err(ExitCode::from(1))
        }
    }
}

/// `render frr`.
pub(super) fn frr(args: &RenderArgs) -> ExitCode {
    let node = match prepare(args) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let facts = NodeFacts {
        ipv4_forwarding: !args.no_ipv4_forwarding,
        ipv6_forwarding: !args.no_ipv6_forwarding,
    };
    match node.render_frr(facts) {
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

/// `render announcements`.
pub(super) fn announcements(args: &RenderArgs) -> ExitCode {
    let node = match prepare(args) {
        Ok(n) => n,
        Err(code) => return code,
    };
    match serde_json::to_string_pretty(&node.announcements()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
