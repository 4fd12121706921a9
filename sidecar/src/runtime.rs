//! Assembles the sidecar: credential feed and cache, protocol front-ends, admin endpoints,
//! and the shutdown sequence. Each protocol front-end is a library crate with the same shape:
//! `Front::new(config, Arc<dyn CredentialSource>, metrics).serve(listener, shutdown)`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use mailcred_core::credential::CredentialSource;
use mailcred_core::kms::{AwsKms, AwsKmsOptions, KmsProviders, LocalKms};
use mailcred_smtp::{RelayConfig, RelayMetrics, SmtpRelay};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::cli::Args;
use crate::listen;
use crate::source::{self, CachedCredentialSource, ResourceFeed, SourceMetrics};

/// How often decrypted passwords past their TTL are dropped.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);

pub async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Bind first: a port clash or a non-loopback address fails before anything is decrypted.
    let smtp_listener = listen::bind("smtp", args.smtp_listen, args.unsafe_listen_any).await?;
    let admin_listener = listen::bind("admin", args.admin_listen, args.unsafe_listen_any).await?;
    // IMAP: `args.imap_listen` is reserved for the IMAP front-end (see `serve_imap` below).
    listen::check("imap", args.imap_listen, args.unsafe_listen_any)?;

    let mut registry = Registry::default();
    let source_metrics = SourceMetrics::register(&mut registry);
    let kms = Arc::new(kms_providers(&args).await?);

    let feed = smtp_feed(&args, shutdown.clone()).await?;
    let smtp_source = Arc::new(CachedCredentialSource::new(
        feed,
        kms.clone(),
        args.cache_ttl(),
        args.service_account.clone(),
        source_metrics.clone(),
    ));

    let relay_metrics = RelayMetrics::register(&mut registry);
    let relay = SmtpRelay::new(
        relay_config(&args)?,
        smtp_source.clone() as Arc<dyn CredentialSource>,
        relay_metrics,
    );

    let loaded = {
        let s = smtp_source.clone();
        Box::new(move || s.loaded())
    };
    let admin_state = Arc::new(AdminState {
        registry,
        listening: false.into(),
        loaded,
    });

    let expiry = tokio::spawn({
        let s = smtp_source.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(EXPIRE_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => s.expire().await,
                }
            }
        }
    });

    let smtp_addr = smtp_listener
        .local_addr()
        .context("SMTP listener address")?;
    let admin_addr = admin_listener
        .local_addr()
        .context("admin listener address")?;
    tracing::info!(smtp = %smtp_addr, admin = %admin_addr, "mailcred sidecar serving");
    let smtp = tokio::spawn(relay.serve(smtp_listener, shutdown.clone()));
    // IMAP front-end goes here, next to SMTP, sharing `kms`, `registry` and the feed pattern:
    //   let imap_listener = listen::bind("imap", args.imap_listen, args.unsafe_listen_any).await?;
    //   let imap_source = Arc::new(CachedCredentialSource::new(imap_feed, kms.clone(), ...));
    //   let imap = tokio::spawn(mailcred_imap::ImapProxy::new(cfg, imap_source, ImapMetrics::register(&mut registry)).serve(imap_listener, shutdown.clone()));
    // (register its metrics before `registry` moves into AdminState.)
    admin_state.listening.store(true, Ordering::Relaxed);
    let admin = tokio::spawn(admin::serve(admin_listener, admin_state, shutdown.clone()));

    let smtp_result = smtp.await.context("SMTP relay task")?;
    shutdown.cancel();
    let _ = admin.await;
    let _ = expiry.await;
    // Dropping the last source handles zeroizes any password still cached.
    drop(smtp_source);
    smtp_result.context("SMTP relay")?;
    tracing::info!("mailcred sidecar stopped");
    Ok(())
}

fn relay_config(args: &Args) -> anyhow::Result<RelayConfig> {
    let local_token = match &args.smtp_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading SMTP token file {}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => None,
    };
    Ok(RelayConfig {
        pod: args.pod.clone(),
        max_line: args.smtp_max_line,
        command_timeout: Duration::from_secs(args.smtp_command_timeout),
        data_timeout: Duration::from_secs(args.smtp_data_timeout),
        upstream_timeout: Duration::from_secs(args.upstream_timeout),
        upstream_pool_size: args.upstream_pool_size,
        max_connections: args.max_connections,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        local_token,
        ..RelayConfig::default()
    })
}

async fn kms_providers(args: &Args) -> anyhow::Result<KmsProviders> {
    let local = match &args.local_key_file {
        Some(path) => Some(LocalKms::from_file(path).context("local KMS key file")?),
        None => None,
    };
    let aws = if args.no_aws {
        None
    } else {
        Some(
            AwsKms::from_env(AwsKmsOptions {
                trusted_endpoints: args.trusted_kms_endpoints.clone(),
                ..AwsKmsOptions::default()
            })
            .await,
        )
    };
    Ok(KmsProviders { local, aws })
}

/// The resource the SMTP relay uses: the file, or the named credential from the API.
async fn smtp_feed(args: &Args, shutdown: CancellationToken) -> anyhow::Result<ResourceFeed> {
    if let Some(path) = &args.credential_file {
        return Ok(source::file::watch_file(
            path.clone(),
            args.namespace.clone(),
            Duration::from_millis(args.file_poll_ms),
            shutdown,
        )
        .await?);
    }
    let name = args
        .smtp_credential
        .clone()
        .or_else(|| args.credentials.first().cloned())
        .context("no credential given: pass --credential NAME (or --credential-file PATH)")?;
    let namespace = source::kube::pod_namespace(args.namespace.as_deref())?;
    Ok(source::kube::watch_resource(namespace, name, shutdown).await?)
}
