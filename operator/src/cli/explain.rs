//! `ferrolb explain service [NAMESPACE/]NAME`: against manifest files (`-f`) or the cluster
//! (kubeconfig as kubectl finds it, or `--kubeconfig`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};

use super::{emit, invalid, load_input, options, warn};
use crate::api::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, DEFAULT_NAMESPACE, IPAddressPool,
    L2Advertisement,
};
use crate::config::{self, ClusterObjects, Config};
use crate::explain;
use crate::views::{ServiceKey, ServiceScope, ServingEndpoints, serving_endpoints};

/// How `explain` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Output {
    /// For people.
    Text,
    /// For machines.
    Json,
}

/// What to explain.
#[derive(Debug, clap::Subcommand)]
pub(super) enum ExplainWhat {
    /// Why a Service has its IP (or none), and what each node does with it.
    Service(ServiceArgs),
}

/// `explain service`.
#[derive(Debug, clap::Args)]
pub(super) struct ServiceArgs {
    /// The Service: NAME (in --namespace) or NAMESPACE/NAME.
    #[arg(value_name = "[NAMESPACE/]NAME")]
    service: String,
    /// The Service's namespace, as with kubectl.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Read these manifests instead of the cluster: a file, a directory or - for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The kubeconfig for the cluster (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The namespace ferrolb runs in.
    #[arg(long, default_value = DEFAULT_NAMESPACE, env = "FERROLB_NAMESPACE")]
    ferrolb_namespace: String,
    /// Services of this loadBalancerClass are handled (default: Services without a class).
    #[arg(long = "lb-class", value_name = "CLASS")]
    load_balancer_class: Option<String>,
    /// `text` or `json`.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

/// Runs `explain`.
pub(super) fn run(what: ExplainWhat) -> ExitCode {
    let ExplainWhat::Service(args) = what;
    let key = match args.service.split_once('/') {
        Some((ns, name)) => ServiceKey::new(ns, name),
        None => ServiceKey::new(&args.namespace, &args.service),
    };
    let (objects, endpoints, config) = if args.paths.is_empty() {
        match from_cluster(&args) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        }
    } else {
        match load_input(&args.paths, &args.ferrolb_namespace) {
            Ok((manifests, config)) => {
                let endpoints = serving_endpoints(&manifests.objects.endpoint_slices);
                (manifests.objects, endpoints, config)
            }
            Err(code) => return code,
        }
    };
    let scope = ServiceScope {
        load_balancer_class: args.load_balancer_class.clone(),
    };
    let explanation = match explain::explain(&config, &objects, &endpoints, &key, &scope) {
        Ok(e) => e,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    emit(match args.output {
        Output::Text => Ok(explanation.text()),
        Output::Json => serde_json::to_string_pretty(&explanation).map(|t| t + "\n"),
    })
}

/// Where each Service's endpoints serve.
type Serving = BTreeMap<ServiceKey, ServingEndpoints>;

/// Reads what the controller and speakers read from the cluster, and loads it.
fn from_cluster(args: &ServiceArgs) -> Result<(ClusterObjects, Serving, Config), ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        })?;
    let (objects, endpoints) = runtime
        .block_on(read_cluster(
            args.kubeconfig.as_deref(),
            &args.ferrolb_namespace,
        ))
        .map_err(|e| {
            eprintln!("error: reading the cluster: {e:#}");
            ExitCode::from(2)
        })?;
    let config = config::load(&objects, &options(&args.ferrolb_namespace)).map_err(|errors| {
        eprintln!("the cluster's configuration does not load:");
        invalid(&errors)
    })?;
    warn(&config.warnings);
    Ok((objects, endpoints, config))
}

async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(path)?,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?
        }
        None => kube::Config::infer().await?,
    };
    crate::shell::runtime::client(config)
}

async fn list<K>(api: Api<K>) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.list(&ListParams::default()).await?.items)
}

/// The objects, and where endpoints serve (from EndpointSlices, as the speaker reads them).
async fn read_cluster(
    kubeconfig: Option<&std::path::Path>,
    namespace: &str,
) -> anyhow::Result<(ClusterObjects, Serving)> {
    let client = client(kubeconfig).await?;
    if !crate::speaker::cache::serves_endpoint_slices_v1(&client).await? {
        anyhow::bail!(
            "the API server does not serve discovery.k8s.io/v1 EndpointSlices: ferrolb needs Kubernetes 1.21 or newer"
        );
    }
    let endpoint_slices = list(Api::<EndpointSlice>::all(client.clone())).await?;
    let endpoints = serving_endpoints(&endpoint_slices);
    let objects = ClusterObjects {
        pools: list(Api::<IPAddressPool>::namespaced(client.clone(), namespace)).await?,
        peers: list(Api::<BGPPeer>::namespaced(client.clone(), namespace)).await?,
        bgp_advertisements: list(Api::<BGPAdvertisement>::namespaced(
            client.clone(),
            namespace,
        ))
        .await?,
        l2_advertisements: list(Api::<L2Advertisement>::namespaced(
            client.clone(),
            namespace,
        ))
        .await?,
        bfd_profiles: list(Api::<BFDProfile>::namespaced(client.clone(), namespace)).await?,
        communities: list(Api::<Community>::namespaced(client.clone(), namespace)).await?,
        secrets: list(Api::<Secret>::namespaced(client.clone(), namespace)).await?,
        namespaces: list(Api::<Namespace>::all(client.clone())).await?,
        nodes: list(Api::<Node>::all(client.clone())).await?,
        services: list(Api::<Service>::all(client.clone())).await?,
        endpoint_slices,
    };
    Ok((objects, endpoints))
}
