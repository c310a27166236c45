//! The long-running commands: `ferrolb controller` and `ferrolb speaker`. They log with
//! `tracing` (`FERROLB_LOG` / `RUST_LOG` filter, text or JSON lines), stop on SIGTERM or
//! SIGINT, and exit 1 when they cannot run.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::api::DEFAULT_NAMESPACE;
use crate::controller;
use crate::frr::apply::FrrTarget;
use crate::l2;
use crate::speaker;
use crate::views::ServiceScope;

/// Log line format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options both long-running commands take.
#[derive(Debug, clap::Args)]
pub(super) struct CommonArgs {
    /// The namespace ferrolb runs in (configuration, Lease, ConfigurationState,
    /// ServiceBGPStatus).
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE, env = "FERROLB_NAMESPACE")]
    namespace: String,
    /// Handle Services of this loadBalancerClass (default: Services without a class).
    #[arg(long = "lb-class", value_name = "CLASS")]
    load_balancer_class: Option<String>,
    /// Address for /metrics; `none` disables the separate listener.
    #[arg(long, default_value = "0.0.0.0:9120")]
    metrics_addr: String,
    /// Address for /healthz and /readyz (they also serve /metrics, unless it is secured).
    #[arg(long, default_value = "0.0.0.0:17472")]
    health_addr: SocketAddr,
    /// Serve /metrics on --metrics-addr alone, over HTTPS, to callers whose bearer token
    /// the API server accepts (TokenReview) for a user allowed get on the non-resource URL
    /// /metrics (SubjectAccessReview), as MetalLB 0.16 does.
    #[arg(long)]
    metrics_secure: bool,
    /// With --metrics-secure: the directory holding tls.crt and tls.key (read again when they
    /// change); without it, a self-signed certificate made at start.
    #[arg(long, value_name = "DIR", requires = "metrics_secure")]
    metrics_cert_dir: Option<std::path::PathBuf>,
    /// Milliseconds a burst of changes is gathered before acting on it (a change after a
    /// quiet spell of that long is acted on at once).
    #[arg(long, default_value_t = 10)]
    coalesce_ms: u64,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

impl CommonArgs {
    fn scope(&self) -> ServiceScope {
        ServiceScope {
            load_balancer_class: self.load_balancer_class.clone(),
        }
    }

    /// Where the probes and metrics are served, or the exit code of a bad address.
    fn listeners(&self) -> Result<crate::http::Listeners, ExitCode> {
        Ok(crate::http::Listeners {
            health: self.health_addr,
            metrics: parse_metrics_addr(&self.metrics_addr)?,
            secure_metrics: self
                .metrics_secure
                .then(|| crate::http::secure::SecureMetrics {
                    cert_dir: self.metrics_cert_dir.clone(),
                }),
        })
    }
}

/// Options of `ferrolb controller`.
#[derive(Debug, clap::Args)]
pub(super) struct ControllerArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// This replica's pod name: the Lease holder identity and Event reporter instance.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// This replica's pod UID, so the pod owns the `controller` ConfigurationState.
    #[arg(long, env = "POD_UID")]
    pod_uid: Option<String>,
    /// The Lease replicas elect a leader on.
    #[arg(long, default_value = "ferrolb-controller")]
    lease_name: String,
    /// Seconds a Lease holds without renewal; a standby takes over within about this long
    /// (plus up to a second) after the leader dies, and at once after a clean stop.
    #[arg(long, default_value_t = 5)]
    lease_duration: u64,
    /// Seconds before expiry the leader renews; also the clock skew tolerated.
    #[arg(long, default_value_t = 2)]
    lease_grace: u64,
    /// Serve the validating webhook (AdmissionReview v1 over TLS) here, such as 0.0.0.0:9443.
    #[arg(long, value_name = "ADDR")]
    webhook_addr: Option<SocketAddr>,
    /// The Service in front of the webhook; its names go into the certificate.
    #[arg(long, default_value = "ferrolb-webhook")]
    webhook_service: String,
    /// More DNS names or IPs for the webhook certificate (repeatable).
    #[arg(long = "webhook-extra-name", value_name = "NAME")]
    webhook_extra_names: Vec<String>,
    /// The Secret the webhook's CA and certificate are kept in.
    #[arg(long, default_value = "ferrolb-webhook-cert")]
    webhook_secret: String,
    /// The ValidatingWebhookConfiguration whose caBundle the controller keeps current.
    #[arg(long, default_value = "ferrolb-validating-webhook")]
    webhook_configuration: String,
    /// Read tls.crt and tls.key from here (cert-manager) instead of managing certificates.
    #[arg(long, value_name = "DIR")]
    webhook_cert_dir: Option<std::path::PathBuf>,
}

/// Options of `ferrolb speaker`.
#[derive(Debug, clap::Args)]
pub(super) struct SpeakerArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// This node's name.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// The speaker's pod (from the downward API): at shutdown, its DaemonSet and node tell a
    /// restart (BGP sessions left to graceful restart) from a removal (sessions ended).
    #[arg(long, env = "FERROLB_POD_NAME")]
    pod_name: Option<String>,
    /// The vtysh binary.
    #[arg(long, default_value = "/usr/bin/vtysh")]
    frr_vtysh: std::path::PathBuf,
    /// The directory of FRR's vty sockets (shared with the frr container).
    #[arg(long, default_value = "/var/run/frr")]
    frr_vty_dir: std::path::PathBuf,
    /// FRR's configuration directory; frr.conf is written there.
    #[arg(long, default_value = "/etc/frr")]
    frr_config_dir: std::path::PathBuf,
    /// FRR's frr-reload.py, the fallback path.
    #[arg(long, default_value = "/usr/lib/frr/frr-reload.py")]
    frr_reload: std::path::PathBuf,
    /// Seconds between polls of FRR's sessions and configuration.
    #[arg(long, default_value_t = 5)]
    poll_seconds: u64,
    /// Announce from nodes labelled node.kubernetes.io/exclude-from-external-load-balancers.
    #[arg(long)]
    ignore_exclude_lb: bool,
    /// FRR's log level (`log stdout LEVEL` in frr.conf).
    #[arg(long, default_value = "informational", value_parser = [
        "emergencies", "alerts", "critical", "errors", "warnings", "notifications",
        "informational", "debugging",
    ])]
    frr_log_level: String,
    /// The UDP port speakers gossip on (MetalLB's memberlist port).
    #[arg(long, env = "FERROLB_ML_BIND_PORT", default_value_t = l2::members::DEFAULT_PORT)]
    ml_bind_port: u16,
    /// The address other speakers reach this one at; default: this Node's first internal IP.
    #[arg(long, env = "FERROLB_ML_BIND_ADDR")]
    ml_bind_addr: Option<std::net::IpAddr>,
    /// The Secret (in ferrolb's namespace) whose `secretkey` authenticates gossip.
    #[arg(long, default_value = "memberlist")]
    ml_secret_name: String,
    /// Milliseconds between gossip probes.
    #[arg(long, default_value_t = 300)]
    ml_probe_ms: u64,
    /// Milliseconds a suspected speaker has to answer before it counts as dead.
    #[arg(long, default_value_t = 600)]
    ml_suspect_ms: u64,
    /// Also gossip with ferrolb 0.1's speakers, whose datagrams carry no stamp: for a rolling
    /// upgrade from 0.1 only (it lets captured 0.1 datagrams be replayed); switch it off once
    /// every speaker is upgraded.
    #[arg(long)]
    ml_accept_format_2: bool,
    /// Milliseconds a speaker that hears no other speaker and cannot reach the API server
    /// keeps answering for layer-2 IPs (the others have taken them over by then); 0: for
    /// ever, as MetalLB's do.
    #[arg(long, default_value_t = l2::isolation::DEFAULT_AFTER.as_secs() * 1_000)]
    ml_isolated_ms: u64,
    /// Interfaces never answered on for layer 2 (regular expressions; repeatable), on top of
    /// the list from --exclude-interfaces-file.
    #[arg(long = "exclude-interface", value_name = "REGEX")]
    exclude_interfaces: Vec<String>,
    /// MetalLB's `excludel2.yaml` (`announcedInterfacesToExclude: [REGEX, …]`, from the
    /// `metallb-excludel2` ConfigMap); when the file is absent, the built-in list of container
    /// and CNI interfaces is used.
    #[arg(long, default_value = "/etc/metallb/excludel2.yaml")]
    exclude_interfaces_file: std::path::PathBuf,
}

fn parse_metrics_addr(text: &str) -> Result<Option<SocketAddr>, ExitCode> {
    match text {
        "none" | "" => Ok(None),
        text => text.parse::<SocketAddr>().map(Some).map_err(|error| {
            eprintln!("error: --metrics-addr {text:?}: {error}");
            ExitCode::from(2)
        }),
    }
}

/// Runs `ferrolb speaker`.
pub(super) fn speaker(args: SpeakerArgs) -> ExitCode {
    init_logging(args.common.log_format);
    let listeners = match args.common.listeners() {
        Ok(listeners) => listeners,
        Err(code) => return code,
    };
    let base = match std::fs::read_to_string(&args.exclude_interfaces_file) {
        Ok(text) => l2::interfaces::Exclusions::from_yaml(&text)
            .map_err(|error| format!("{}: {error}", args.exclude_interfaces_file.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(l2::interfaces::Exclusions::default())
        }
        Err(error) => Err(format!(
            "{}: {error}",
            args.exclude_interfaces_file.display()
        )),
    };
    let extra = l2::interfaces::Exclusions::from_patterns(&args.exclude_interfaces)
        .map_err(|error| format!("--exclude-interface: {error}"));
    let exclusions = match (base, extra) {
        (Ok(base), Ok(extra)) => base.and(extra),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let probe_period = Duration::from_millis(args.ml_probe_ms.max(20));
    let l2 = speaker::L2Options {
        port: args.ml_bind_port,
        advertise: args.ml_bind_addr,
        secret: args.ml_secret_name,
        exclusions,
        timings: l2::members::Timings {
            probe_period,
            probe_rtt: (probe_period / 3).max(Duration::from_millis(10)),
            suspect_to_down: Duration::from_millis(args.ml_suspect_ms.max(50)),
        },
        accept_format_2: args.ml_accept_format_2,
        isolated_after: (args.ml_isolated_ms > 0)
            .then(|| Duration::from_millis(args.ml_isolated_ms)),
    };
    let options = speaker::Options {
        l2,
        scope: args.common.scope(),
        node_name: args.node_name,
        namespace: args.common.namespace,
        frr: FrrTarget {
            vtysh: args.frr_vtysh,
            vty_dir: args.frr_vty_dir,
            config_dir: args.frr_config_dir,
            reload_script: args.frr_reload,
        },
        listeners,
        coalesce: Duration::from_millis(args.common.coalesce_ms),
        poll: Duration::from_secs(args.poll_seconds.max(1)),
        ignore_exclude_label: args.ignore_exclude_lb,
        frr_log_level: args.frr_log_level,
        pod_name: args.pod_name,
    };
    finish(
        "speaker",
        runtime().map_err(anyhow::Error::from).and_then(|rt| {
            rt.block_on(async {
                let shutdown = on_signal()?;
                speaker::run(options, shutdown).await
            })
        }),
    )
}

fn finish(what: &str, outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{what} failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The tracing filter for a `FERROLB_LOG` value: a bare `debug` or `trace` (the chart's
/// `logLevel`) is ferrolb's own lines at that level and the libraries' at info (at debug,
/// the Kubernetes client, TLS and HTTP libraries print several lines per request); anything
/// else is a filter as it stands (`debug,ferrolb=trace`, `kube=debug`, `warn`).
fn log_filter(value: &str) -> String {
    let value = value.trim();
    match value {
        "debug" | "trace" => format!("info,ferrolb={value}"),
        _ => value.to_string(),
    }
}

fn init_logging(format: LogFormat) {
    let filter = std::env::var("FERROLB_LOG")
        .ok()
        .and_then(|value| EnvFilter::try_new(log_filter(&value)).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A token cancelled on SIGTERM or SIGINT.
fn on_signal() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping");
        cancel.cancel();
    });
    Ok(token)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Runs `ferrolb controller`.
pub(super) fn controller(args: ControllerArgs) -> ExitCode {
    init_logging(args.common.log_format);
    let listeners = match args.common.listeners() {
        Ok(listeners) => listeners,
        Err(code) => return code,
    };
    if args.lease_grace >= args.lease_duration {
        eprintln!(
            "error: --lease-grace ({}) must be shorter than --lease-duration ({})",
            args.lease_grace, args.lease_duration
        );
        return ExitCode::from(2);
    }
    let namespace = args.common.namespace.clone();
    let options = controller::Options {
        scope: args.common.scope(),
        namespace: args.common.namespace,
        identity: args.pod_name,
        pod_uid: args.pod_uid,
        lease_name: args.lease_name,
        lease_duration: Duration::from_secs(args.lease_duration),
        lease_grace: Duration::from_secs(args.lease_grace),
        listeners,
        coalesce: Duration::from_millis(args.common.coalesce_ms),
        webhook: args
            .webhook_addr
            .map(|addr| crate::webhook::WebhookOptions {
                addr,
                namespace,
                service: args.webhook_service,
                extra_names: args.webhook_extra_names,
                secret: args.webhook_secret,
                configuration: args.webhook_configuration,
                cert_dir: args.webhook_cert_dir,
            }),
    };
    finish(
        "controller",
        runtime().map_err(anyhow::Error::from).and_then(|rt| {
            rt.block_on(async {
                let shutdown = on_signal()?;
                controller::run(options, shutdown).await
            })
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn a_bare_verbose_level_is_ferrolbs_own_and_a_filter_stands() {
        assert_eq!(log_filter("debug"), "info,ferrolb=debug");
        assert_eq!(log_filter(" trace\n"), "info,ferrolb=trace");
        assert_eq!(log_filter("info"), "info");
        assert_eq!(log_filter("warn"), "warn");
        assert_eq!(log_filter("debug,kube=trace"), "debug,kube=trace");
    }
}
