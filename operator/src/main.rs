//! `mailcred-operator`: wiring of the controller (leader-elected), the admission webhook (every
//! replica), the health/metrics listener, and graceful shutdown on SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use kube::Client;
use kube::runtime::reflector;
use mailcred_core::crd::MailCredential;
use mailcred_operator::cache;
use mailcred_operator::config::{Config, TlsMode};
use mailcred_operator::controller::{self, Context};
use mailcred_operator::health::{self, HealthState, Readiness};
use mailcred_operator::leader::{self, LeaseSettings};
use mailcred_operator::metrics::Metrics;
use mailcred_operator::webhook::admission::{Admission, Credentials};
use mailcred_operator::webhook::certs::{Lifetimes, service_dns_names};
use mailcred_operator::webhook::tls::{self, SelfSigned, Source};
use mailcred_operator::{Error, Result, telemetry, webhook};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init(config.log_format, &config.log_level);
    if let Err(e) = config.validate() {
        error!(error = %e, "invalid flags");
        return ExitCode::from(2);
    }
    // One crypto provider for every TLS user in the process (kube client, webhook listener).
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        warn!("a rustls crypto provider was already installed");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "mailcred-operator failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<()> {
    // In-cluster config, else KUBECONFIG / ~/.kube/config and its current context.
    let client = Client::try_default()
        .await
        .map_err(Error::kube("loading the Kubernetes client configuration"))?;
    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let readiness = Arc::new(Readiness::default());
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let mut tasks = tokio::task::JoinSet::new();

    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|e| {
            Error::Io(format!(
                "binding --metrics-addr {}: {e}",
                config.metrics_addr
            ))
        })?;
    let health_router = health::router(HealthState {
        registry: Arc::new(registry),
        readiness: readiness.clone(),
    });
    let health_shutdown = shutdown.clone();
    tasks.spawn(async move {
        axum::serve(listener, health_router)
            .with_graceful_shutdown(async move { health_shutdown.cancelled().await })
            .await
            .map_err(|e| Error::Io(format!("health listener: {e}")))
    });
    info!(addr = %config.metrics_addr, "serving /healthz /readyz /metrics");

    if config.webhook.disable_webhook {
        readiness.webhook.store(true, Ordering::Release);
        readiness.credential_cache.store(true, Ordering::Release);
    } else {
        start_webhook(
            &config, &client, &metrics, &readiness, &shutdown, &mut tasks,
        )
        .await?;
    }

    if !config.controller.disable_controller {
        let ctx = Arc::new(
            Context::new(
                client.clone(),
                config.pod_name.clone(),
                metrics.clone(),
                Duration::from_secs(config.controller.resync_seconds),
            )
            .with_retired_keys(mailcred_operator::seal_age::RetiredKeys::new(
                config.controller.retired_kms_keys.clone(),
            )),
        );
        let token = shutdown.clone();
        if config.controller.leader_elect {
            let settings = LeaseSettings {
                namespace: config.namespace.clone(),
                name: config.controller.lease_name.clone(),
                identity: config.pod_name.clone(),
                duration: Duration::from_secs(config.controller.lease_duration_seconds),
            };
            let client = client.clone();
            let metrics = metrics.clone();
            tasks.spawn(async move {
                leader::run_while_leader(client, settings, metrics, token, |term| {
                    controller::run(ctx.clone(), term)
                })
                .await
            });
        } else {
            metrics.leader.set(1);
            tasks.spawn(async move {
                controller::run(ctx, token).await;
                Ok(())
            });
        }
    }

    // The first task to fail stops everything; otherwise wait for the signal.
    let mut result = Ok(());
    tokio::select! {
        () = shutdown.cancelled() => {}
        Some(done) = tasks.join_next() => {
            result = flatten(done);
            shutdown.cancel();
        }
    }
    info!("shutting down");
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let drained = tokio::time::timeout(grace, async {
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = flatten(done) {
                warn!(error = %e, "task ended with an error during shutdown");
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            seconds = grace.as_secs(),
            "shutdown grace period over; exiting"
        );
    }
    result
}

fn flatten(done: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    done.map_err(|e| Error::Io(format!("task panicked or was cancelled: {e}")))?
}

async fn start_webhook(
    config: &Config,
    client: &Client,
    metrics: &Metrics,
    readiness: &Arc<Readiness>,
    shutdown: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<Result<()>>,
) -> Result<()> {
    let w = &config.webhook;
    // The webhook's view of MailCredentials: a trimmed watch cache.
    let (store, writer) = reflector::store::<MailCredential>();
    let stream = cache::credentials(client.clone(), writer);
    let cache_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                () = cache_shutdown.cancelled() => return Ok(()),
                next = stream.next() => match next {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => warn!(error = %e, "MailCredential watch error; retrying with backoff"),
                    None => return Ok(()),
                },
            }
        }
    });
    let ready_store = store.clone();
    let ready = readiness.clone();
    tokio::spawn(async move {
        if ready_store.wait_until_ready().await.is_ok() {
            ready.credential_cache.store(true, Ordering::Release);
            info!("MailCredential cache synced");
        }
    });

    let source = match w.webhook_tls_mode {
        TlsMode::SelfSigned => Source::SelfSigned(SelfSigned {
            namespace: config.namespace.clone(),
            secret: w.webhook_tls_secret.clone(),
            webhook_config: w.webhook_config.clone(),
            dns_names: service_dns_names(&w.webhook_service, &config.namespace),
            lifetimes: Lifetimes {
                ca: time::Duration::days(i64::from(w.webhook_ca_validity_days)),
                serving: time::Duration::days(i64::from(w.webhook_cert_validity_days)),
                renew_before: time::Duration::days(i64::from(w.webhook_renew_before_days)),
            },
        }),
        TlsMode::Files => Source::Files {
            cert: w.webhook_cert_file.clone(),
            key: w.webhook_key_file.clone(),
        },
    };
    // The first certificate is retried until it exists: with cert-manager the files may
    // appear a little after the pod starts; the Secret may need RBAC to settle.
    let loaded = loop {
        match tls::load(client, &source).await {
            Ok(pair) => break pair,
            Err(e) => {
                warn!(error = %e, "webhook certificate not available yet; retrying in 5 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    };
    let rustls_config = tls::rustls_config(&loaded.0, &loaded.1).await?;
    tokio::spawn(tls::keep_current(
        client.clone(),
        source,
        rustls_config.clone(),
        loaded,
        Duration::from_secs(w.webhook_cert_check_seconds.max(10)),
        metrics.clone(),
        shutdown.clone(),
    ));

    let admission = Arc::new(Admission {
        credentials: Credentials::new(
            store,
            Some((
                client.clone(),
                Duration::from_millis(w.credential_lookup_timeout_ms),
            )),
        ),
        sidecar: config.sidecar.clone(),
        policy: w.invalid_pod_policy,
    });
    let handle = axum_server::Handle::new();
    let drain_handle = handle.clone();
    let drain_token = shutdown.clone();
    let drain_ready = readiness.clone();
    tokio::spawn(async move {
        drain_token.cancelled().await;
        // Keep answering while the API server and kube-proxy learn that this replica is
        // going; reviews sent meanwhile would otherwise fail (failurePolicy decides how).
        drain_ready.webhook.store(false, Ordering::Release);
        tokio::time::sleep(webhook::ENDPOINT_PROPAGATION).await;
        drain_handle.graceful_shutdown(Some(webhook::DRAIN));
    });
    let listening = handle.clone();
    let ready = readiness.clone();
    let addr = w.webhook_addr;
    tokio::spawn(async move {
        if let Some(bound) = listening.listening().await {
            ready.webhook.store(true, Ordering::Release);
            info!(addr = %bound, "serving the admission webhook (POST /mutate)");
        }
    });
    let router = webhook::router(admission, metrics.clone());
    tasks.spawn(webhook::serve(addr, rustls_config, router, handle));
    Ok(())
}

async fn cancel_on_signal(token: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
    token.cancel();
}
