//! Assembles the sidecar: credential feed and cache, protocol front-ends, admin endpoints,
//! and the shutdown sequence. Each protocol front-end is a library crate with the same shape:
//! `Front::new(config, Arc<dyn CredentialSource>, metrics).serve(listener, shutdown)`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use mailcred_core::credential::CredentialSource;
use mailcred_core::kms::{AwsKms, AwsKmsOptions, KmsProviders, LocalKms};
use mailcred_core::upstream_auth::TokenSourceFactory;
use mailcred_imap::{ImapMetrics, ImapProxy};
use mailcred_oauth::{HttpLimits, OAuthClient, TokenMetrics};
use mailcred_smtp::{RelayMetrics, SmtpRelay};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::cli::Args;
use crate::listen;
use crate::plan::{FeedSpec, Mode, Plan};
use crate::source::{self, CachedCredentialSource, ResourceFeed, SourceMetrics};

mod accounts;

/// How often decrypted passwords past their TTL are dropped (feed changes act at once; the
/// account set also wakes at the earliest TTL or lifetime end of a cached plaintext).
const EXPIRE_EVERY: Duration = Duration::from_secs(5);

/// Runs the sidecar `plan` describes (arguments already validated: [`Plan::from_args`]).
pub async fn run(args: Args, plan: Plan, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Bind first: a port clash or a non-loopback address fails before anything is decrypted.
    let smtp_listener = listen::bind("smtp", args.smtp_listen, args.unsafe_listen_any).await?;
    let imap_listener = listen::bind("imap", args.imap_listen, args.unsafe_listen_any).await?;
    let admin_listener = listen::bind("admin", args.admin_listen, args.unsafe_listen_any).await?;
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(listen::bind_metrics(addr).await?),
        None => None,
    };

    let mut registry = Registry::default();
    admin::register_build_info(&mut registry);
    let source_metrics = SourceMetrics::register(&mut registry);
    let sources = match plan.mode {
        Mode::Single {
            smtp_feed,
            imap_feed,
        } => {
            single_sources(
                &args,
                &smtp_feed,
                imap_feed.as_ref(),
                &mut registry,
                source_metrics,
                shutdown.clone(),
            )
            .await?
        }
        Mode::Accounts(set_plan) => {
            accounts::start(
                &args,
                set_plan,
                &mut registry,
                source_metrics,
                shutdown.clone(),
            )
            .await?
        }
    };
    let Sources {
        smtp: smtp_source,
        imap: imap_source,
        loaded,
        expiry,
        accounts,
    } = sources;

    let relay = SmtpRelay::new(
        plan.relay,
        smtp_source.clone(),
        RelayMetrics::register(&mut registry),
    );
    let imap = ImapProxy::new(
        plan.imap,
        imap_source.clone(),
        ImapMetrics::register(&mut registry),
    );
    let (relay, imap) = match &accounts {
        Some(a) => accounts::front_ends(relay, imap, a)?,
        None => (relay, imap),
    };
    let imap = Arc::new(imap);

    let admin_state = Arc::new(AdminState {
        registry,
        listening: false.into(),
        loaded,
    });

    tracing::info!(
        smtp = %smtp_listener.local_addr().context("SMTP listener address")?,
        imap = %imap_listener.local_addr().context("IMAP listener address")?,
        admin = %admin_listener.local_addr().context("admin listener address")?,
        metrics = %metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or_else(|| "off".to_string(), |a| a.to_string()),
        "mailcred sidecar serving"
    );
    let smtp = tokio::spawn(relay.serve(smtp_listener, shutdown.clone()));
    let imap_task = tokio::spawn((*imap).clone().serve(imap_listener, shutdown.clone()));
    admin_state.listening.store(true, Ordering::Relaxed);
    let scrape = metrics_listener.map(|listener| {
        let router = admin::metrics_router(admin_state.clone());
        tokio::spawn(admin::serve(listener, router, shutdown.clone()))
    });
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        admin::router(admin_state),
        shutdown.clone(),
    ));

    let registration = match &accounts {
        Some(a) => accounts::serve_registration(&args, a, shutdown.clone()).await?,
        None => None,
    };

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
    if let Some(task) = registration {
        let _ = task.await;
    }
    if let Some(task) = scrape {
        let _ = task.await;
    }
    for task in expiry {
        let _ = task.await;
    }
    // Dropping the last source handles zeroizes any password still cached.
    drop((smtp_source, imap_source, imap, accounts));
    smtp_result
        .context("SMTP relay task")?
        .context("SMTP relay")?;
    imap_result
        .context("IMAP proxy task")?
        .context("IMAP proxy")?;
    tracing::info!("mailcred sidecar stopped");
    Ok(())
}

/// The credential sources the front-ends start with, what readiness waits for, and the tasks
/// that drop stale plaintexts.
struct Sources {
    smtp: Arc<dyn CredentialSource>,
    imap: Arc<dyn CredentialSource>,
    loaded: Box<dyn Fn() -> bool + Send + Sync>,
    expiry: Vec<tokio::task::JoinHandle<()>>,
    /// Account-set mode.
    accounts: Option<accounts::Accounts>,
}

/// Single-credential mode: one feed and cache per distinct credential.
async fn single_sources(
    args: &Args,
    smtp_feed: &FeedSpec,
    imap_feed: Option<&FeedSpec>,
    registry: &mut Registry,
    source_metrics: SourceMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Sources> {
    // The resources first: a missing file or object, or no RBAC, fails before any cloud SDK
    // is initialised (the AWS one may wait on a metadata endpoint for its region).
    let smtp_feed = feed(args, smtp_feed, shutdown.clone()).await?;
    let imap_feed = match imap_feed {
        Some(spec) => Some(feed(args, spec, shutdown.clone()).await?),
        None => None,
    };
    let tokens = oauth_tokens(registry);
    let kms = Arc::new(kms_providers(args).await?);
    let new_source = |feed| {
        Arc::new(
            CachedCredentialSource::new(
                feed,
                kms.clone(),
                args.cache_ttl(),
                args.service_account.clone(),
                source_metrics.clone(),
            )
            .with_tokens(tokens.clone()),
        )
    };
    let smtp_source = new_source(smtp_feed);
    // One credential for both protocols (the usual case) shares one feed and one cache.
    let imap_source = match imap_feed {
        Some(feed) => new_source(feed),
        None => smtp_source.clone(),
    };
    // Each distinct source drops its plaintext on every feed change and every EXPIRE_EVERY.
    let mut distinct = vec![smtp_source.clone()];
    if !Arc::ptr_eq(&smtp_source, &imap_source) {
        distinct.push(imap_source.clone());
    }
    let expiry = distinct
        .into_iter()
        .map(|source| {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { source.expire_until(EXPIRE_EVERY, shutdown).await })
        })
        .collect();
    let loaded = {
        let (s, i) = (smtp_source.clone(), imap_source.clone());
        Box::new(move || s.loaded() && i.loaded())
    };
    Ok(Sources {
        smtp: smtp_source,
        imap: imap_source,
        loaded,
        expiry,
        accounts: None,
    })
}

/// The OAuth token sources' factory (mailcred-oauth), with its metrics.
fn oauth_tokens(registry: &mut Registry) -> Arc<dyn TokenSourceFactory> {
    Arc::new(OAuthClient::new(
        HttpLimits::default(),
        TokenMetrics::register(registry),
    ))
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
    spec: &FeedSpec,
    shutdown: CancellationToken,
) -> anyhow::Result<ResourceFeed> {
    Ok(match spec {
        FeedSpec::File(path) => {
            source::file::watch_file(
                path.clone(),
                args.namespace.clone(),
                Duration::from_millis(args.file_poll_ms),
                shutdown,
            )
            .await?
        }
        FeedSpec::Api { namespace, name } => {
            source::kube::watch_resource(namespace.clone(), name.clone(), shutdown).await?
        }
    })
}
