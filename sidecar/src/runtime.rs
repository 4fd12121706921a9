//! Assembles the sidecar: credential feed and cache, protocol front-ends, admin endpoints,
//! and the shutdown sequence. Each protocol front-end is a library crate with the same shape:
//! `Front::new(config, Arc<dyn CredentialSource>, metrics).serve(listener, shutdown)`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use mailcred_core::MailPassword;
use mailcred_core::credential::CredentialSource;
use mailcred_core::kms::{AwsKms, AwsKmsOptions, KmsProviders, LocalKms};
use mailcred_imap::{ImapMetrics, ImapProxy, ImapProxyConfig};
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
    let imap_listener = listen::bind("imap", args.imap_listen, args.unsafe_listen_any).await?;
    let admin_listener = listen::bind("admin", args.admin_listen, args.unsafe_listen_any).await?;

    let mut registry = Registry::default();
    let source_metrics = SourceMetrics::register(&mut registry);
    let kms = Arc::new(kms_providers(&args).await?);
    let new_source = |feed| {
        Arc::new(CachedCredentialSource::new(
            feed,
            kms.clone(),
            args.cache_ttl(),
            args.service_account.clone(),
            source_metrics.clone(),
        ))
    };

    let smtp_name = credential_name(&args, args.smtp_credential.as_ref());
    let imap_name = credential_name(&args, args.imap_credential.as_ref());
    let smtp_source = new_source(feed(&args, smtp_name.clone(), shutdown.clone()).await?);
    // One credential for both protocols (the usual case) shares one feed and one cache.
    let imap_source = if imap_name == smtp_name {
        smtp_source.clone()
    } else {
        new_source(feed(&args, imap_name, shutdown.clone()).await?)
    };

    let relay = SmtpRelay::new(
        relay_config(&args)?,
        smtp_source.clone() as Arc<dyn CredentialSource>,
        RelayMetrics::register(&mut registry),
    );
    let imap = Arc::new(ImapProxy::new(
        imap_config(&args)?,
        imap_source.clone() as Arc<dyn CredentialSource>,
        ImapMetrics::register(&mut registry),
    ));

    let loaded = {
        let (s, i) = (smtp_source.clone(), imap_source.clone());
        Box::new(move || s.loaded() && i.loaded())
    };
    let admin_state = Arc::new(AdminState {
        registry,
        listening: false.into(),
        loaded,
    });

    let expiry = tokio::spawn({
        let sources = [smtp_source.clone(), imap_source.clone()];
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(EXPIRE_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => for s in &sources { s.expire().await },
                }
            }
        }
    });

    tracing::info!(
        smtp = %smtp_listener.local_addr().context("SMTP listener address")?,
        imap = %imap_listener.local_addr().context("IMAP listener address")?,
        admin = %admin_listener.local_addr().context("admin listener address")?,
        "mailcred sidecar serving"
    );
    let smtp = tokio::spawn(relay.serve(smtp_listener, shutdown.clone()));
    let imap_task = tokio::spawn({
        let (imap, shutdown) = (imap.clone(), shutdown.clone());
        async move { imap.serve(imap_listener, shutdown.cancelled_owned()).await }
    });
    admin_state.listening.store(true, Ordering::Relaxed);
    let admin = tokio::spawn(admin::serve(admin_listener, admin_state, shutdown.clone()));

    // Either front-end ending (shutdown, or a fatal listener error) stops the whole sidecar.
    let (smtp_result, imap_result) = tokio::join!(
        async {
            let r = smtp.await;
            shutdown.cancel();
            r
        },
        async {
            let r = imap_task.await;
            shutdown.cancel();
            r
        }
    );
    let _ = admin.await;
    let _ = expiry.await;
    // Dropping the last source handles zeroizes any password still cached.
    drop((smtp_source, imap_source, imap));
    smtp_result
        .context("SMTP relay task")?
        .context("SMTP relay")?;
    imap_result
        .context("IMAP proxy task")?
        .context("IMAP proxy")?;
    tracing::info!("mailcred sidecar stopped");
    Ok(())
}

fn imap_config(args: &Args) -> anyhow::Result<ImapProxyConfig> {
    let local_token = match &args.imap_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading IMAP token file {}", path.display()))?;
            Some(
                MailPassword::new(text.trim_end_matches(['\r', '\n']).to_owned())
                    .context("IMAP token file")?,
            )
        }
        None => None,
    };
    Ok(ImapProxyConfig {
        pod: args.pod.clone(),
        local_token,
        max_append_bytes: args.imap_max_append,
        idle_timeout: Duration::from_secs(args.imap_idle_minutes.max(30) * 60),
        upstream_timeout: Duration::from_secs(args.upstream_timeout),
        max_connections: args.max_connections,
        allow_non_loopback: args.unsafe_listen_any,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        ..ImapProxyConfig::default()
    })
}

/// The credential a protocol uses: its own flag, else the first one named.
fn credential_name(args: &Args, chosen: Option<&String>) -> Option<String> {
    chosen
        .cloned()
        .or_else(|| args.credentials.first().cloned())
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

/// The resource behind one front-end: the file, or the named credential from the API.
async fn feed(
    args: &Args,
    name: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<ResourceFeed> {
    if let Some(path) = &args.credential_file {
        return Ok(source::file::watch_file(
            path.clone(),
            args.namespace.clone(),
            Duration::from_millis(args.file_poll_ms),
            shutdown,
        )
        .await?);
    }
    let name =
        name.context("no credential given: pass --credential NAME (or --credential-file PATH)")?;
    let namespace = source::kube::pod_namespace(args.namespace.as_deref())?;
    Ok(source::kube::watch_resource(namespace, name, shutdown).await?)
}
