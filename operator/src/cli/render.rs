//! `ferrolb render frr|announcements`: one node's speaker output, offline.

use std::process::ExitCode;

use super::{RenderArgs, emit, load_input, warn};
use crate::config;
use crate::dry_run::{self, NodeDryRun};
use crate::frr::NodeFacts;
use crate::views::ServiceScope;

fn prepare(args: &RenderArgs) -> Result<NodeDryRun, ExitCode> {
    if let Err(reason) = config::names::check_subdomain(&args.node) {
        eprintln!("error: --node: {reason}");
        return Err(ExitCode::from(2));
    }
    let (manifests, config) = load_input(&args.paths, &args.namespace)?;
    let scope = ServiceScope {
        load_balancer_class: args.load_balancer_class.clone(),
    };
    let node = dry_run::prepare(config, &manifests.objects, &args.node, scope);
    warn(&node.warnings);
    Ok(node)
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
    emit(node.render_frr(facts, args.frr_version))
}

/// `render announcements`.
pub(super) fn announcements(args: &RenderArgs) -> ExitCode {
    let node = match prepare(args) {
        Ok(n) => n,
        Err(code) => return code,
    };
    emit(serde_json::to_string_pretty(&node.announcements()).map(|text| text + "\n"))
}
