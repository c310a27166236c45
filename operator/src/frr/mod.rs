//! FRR: the node's configuration as data ([`model`]), rendered to frr.conf ([`render`]),
//! changed line by line ([`delta`]) and put into a running FRR and verified ([`apply`]).

pub mod apply;
pub mod delta;
pub mod model;
pub mod render;

pub use model::{FrrConfig, NodeFacts, build};
pub use render::{RenderError, render};
