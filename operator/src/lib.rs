//! ferrolb: `type: LoadBalancer` for bare-metal Kubernetes, a drop-in replacement for MetalLB
//! that drives FRR for BGP/BFD and answers ARP/NDP itself.
//!
//! Data flow: manifests or watched objects → [`manifest`] (typed objects) → [`config::load`]
//! (one checked [`config::Config`], or every error naming object, field and reason). The CLI,
//! the controller, the speaker and the webhook all go through that one function.

pub mod alloc;
pub mod api;
pub mod bgp;
pub mod cli;
pub mod config;
pub(crate) mod controller;
pub(crate) mod convert;
pub mod dry_run;
pub(crate) mod explain;
#[cfg(test)]
mod fixtures;
pub mod frr;
pub mod fuzzing;
pub mod http;
pub mod l2;
pub mod manifest;
pub(crate) mod shell;
pub mod speaker;
pub mod views;
pub(crate) mod webhook;
