//! `mailcred-linkpage`: serves the registration page over HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use clap::Parser;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_linkpage::keys::PublicKeys;
use mailcred_linkpage::limit::BadTokenLimiter;
use mailcred_linkpage::service::Service;
use mailcred_linkpage::store::{FileStore, KubeStore, Store};
use tracing::info;

#[derive(Parser, Debug)]
#[command(
    name = "mailcred-linkpage",
    version,
    about = "mailcred registration page: one-time links, sealed in the browser"
)]
struct Args {
    /// Address to listen on (HTTPS). In a pod: 0.0.0.0:8443 behind its Service.
    #[arg(
        long,
        default_value = "127.0.0.1:8443",
        env = "MAILCRED_LINKPAGE_LISTEN"
    )]
    listen: SocketAddr,
    /// Serving certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    tls_cert: PathBuf,
    /// Serving key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
    /// Key the page seals to (repeatable): aws:<key ARN>=<public key file> or local:<file>.
    #[arg(long = "public-key", value_name = "SCHEME:VALUE", required = true)]
    public_keys: Vec<String>,
    /// Read and write MailCredential YAML files in DIR instead of the Kubernetes API.
    #[arg(long, value_name = "DIR")]
    credentials_dir: Option<PathBuf>,
    /// Bad tokens a client address may present per window before it gets 429.
    #[arg(long, default_value_t = 10)]
    bad_tokens_per_window: u32,
    /// The window of --bad-tokens-per-window, in seconds.
    #[arg(long, default_value_t = 60)]
    bad_token_window_seconds: u64,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = mailcred_linkpage::http::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // One crypto provider in the whole tree (aws-lc-rs), installed before any TLS config.
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let args = Args::parse();
    let keys = PublicKeys::load(&args.public_keys)?;
    let store: Arc<dyn Store> = match &args.credentials_dir {
        Some(dir) => Arc::new(FileStore::new(dir.clone())),
        None => Arc::new(KubeStore::new(kube::Client::try_default().await.context(
            "cannot build a Kubernetes client (in-cluster config or kubeconfig)",
        )?)),
    };
    let tls = RustlsConfig::from_pem_file(&args.tls_cert, &args.tls_key)
        .await
        .context("cannot load --tls-cert / --tls-key")?;
    let service = Arc::new(Service {
        store,
        keys,
        limiter: BadTokenLimiter::new(
            args.bad_tokens_per_window,
            Duration::from_secs(args.bad_token_window_seconds),
        ),
        now: || Time(k8s_openapi::jiff::Timestamp::now()),
    });
    let app = mailcred_linkpage::http::router(service, args.max_body_bytes);
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        shutdown.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    info!(listen = %local, keys = args.public_keys.len(), store = if args.credentials_dir.is_some() { "files" } else { "kubernetes" }, "mailcred linkpage serving");
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("server failed")?;
    Ok(())
}
