//! Lab harness for ferrolb: a real Kubernetes control plane ([`control_plane`]), network namespaces
//! and the lab switch ([`netns`]), hermetic FRR instances ([`frr`]) and BIRD routers
//! ([`bird`]), real Kubernetes nodes with containerd, kubelet and kube-proxy ([`kubenode`]) and
//! the images they run, written without a registry ([`image`]), a node peering with two
//! routers ([`peering`]) and the configurations it is driven through ([`configs`]), the
//! processes of the lab ([`process`]), `kubectl` as a user would run it ([`kubectl`]), and
//! where the binaries are ([`paths`]). The scenarios in `tests/` drive ferrolb through these
//! exactly as a user would: manifests applied with kubectl, results read back from the API.
//!
//! Everything a harness object starts is ended by PID when the object is dropped, on success
//! or failure.

pub mod bird;
pub mod chaos;
pub mod chart_lab;
pub mod configs;
pub mod control_plane;
pub mod cpu;
pub mod fabric;
pub mod frr;
pub mod gobgp;
pub mod helm;
pub mod image;
pub mod kubectl;
pub mod kubenode;
pub mod lab;
pub mod metallb;
pub mod metallb_legacy;
pub mod netns;
pub mod paths;
pub mod peering;
pub mod process;
pub mod rss;
pub mod sampler;
