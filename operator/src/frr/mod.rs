//! FRR: the node's configuration as data ([`model`]), rendered to frr.conf ([`render`]) as
//! the running FRR version prints it ([`dialect`]),
//! changed line by line ([`delta`], spelling each command as [`commands`] does), put into a running FRR and verified ([`apply`]) against
//! what FRR prints back ([`running`]), and its sessions read back ([`sessions`]), talking to the
//! daemons through their sockets ([`vty`]). Each neighbour's BFD waits for its session
//! ([`bfd_hold`]).

pub mod apply;
pub mod bfd_hold;
pub(crate) mod commands;
pub mod delta;
pub mod dialect;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod model;
pub(crate) mod render;
pub mod running;
pub mod sessions;
pub(crate) mod vty;

pub use commands::{Line, NotFrrText, Word};
pub use dialect::Dialect;
pub use model::{FrrConfig, NodeFacts, build};
pub use render::{RenderError, render};
