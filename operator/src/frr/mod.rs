//! FRR: the node's configuration as data ([`model`]), rendered to frr.conf ([`render`]).

pub mod delta;
pub mod model;
pub mod render;

pub use model::{FrrConfig, NodeFacts, build};
pub use render::{RenderError, render};
