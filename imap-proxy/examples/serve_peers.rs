//! Runs the IMAP proxy against the peers' dovecot for manual checks and the benchmark
//! (bench/imap/run.sh). The credential is sealed here with a fresh local key, as a test does.
//!
//! `MAILCRED_PEERS_ENV=DIR/env cargo run --release -p mailcred-imap --example serve_peers -- PORT [implicit|starttls|none] [USER_KEY]`

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use mailcred_core::crd::{
    Access, ImapPolicy, MailCredentialSpec, Policy, SealedSecret, TlsMode, UpstreamEndpoint,
};
use mailcred_core::credential::{CredentialSource, UsableCredential};
use mailcred_core::kms::{DataKeySealer, LocalKms};
use mailcred_core::{CredentialBinding, MailPassword, UpstreamAuth, envelope};
use mailcred_imap::{ImapMetrics, ImapProxy, ImapProxyConfig};

struct Source {
    kms: LocalKms,
    spec: MailCredentialSpec,
    cached: tokio::sync::OnceCell<Arc<UsableCredential>>,
}

impl Source {
    fn sealed(&self) -> &SealedSecret {
        self.spec.sealed_secret.as_ref().expect("sealed in main")
    }
}

#[async_trait]
impl CredentialSource for Source {
    async fn credential(&self) -> Result<Arc<UsableCredential>, mailcred_core::Error> {
        self.cached
            .get_or_try_init(|| async {
                let binding = CredentialBinding::new("bench", "imap", &self.spec)?;
                let password = envelope::open(&self.kms, &binding, self.sealed()).await?;
                Ok(Arc::new(UsableCredential {
                    namespace: "bench".into(),
                    name: "imap".into(),
                    username: self.spec.username.clone(),
                    smtp: None,
                    imap: self.spec.imap.clone(),
                    policy: self.spec.policy.clone(),
                    oauth: None,
                    sealed_fingerprint: envelope::fingerprint(self.sealed()),
                    auth: UpstreamAuth::Password(password),
                }))
            })
            .await
            .cloned()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: serve_peers PORT [implicit|starttls] [USER_KEY]");
    let tls = match args.get(2).map(String::as_str) {
        Some("starttls") => TlsMode::Starttls,
        // Benchmark only: the like-for-like comparison with nginx, which cannot do TLS upstream.
        Some("none") => TlsMode::None,
        _ => TlsMode::Implicit,
    };
    let user_key = args.get(3).cloned().unwrap_or_else(|| "PEERS_USER".into());
    let env_path = std::env::var("MAILCRED_PEERS_ENV").expect("MAILCRED_PEERS_ENV");
    let env: HashMap<String, String> = std::fs::read_to_string(env_path)
        .expect("peers env")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let pass_key = user_key.replace("USER", "PASSWORD");
    let imap = UpstreamEndpoint {
        host: env["PEERS_HOST"].clone(),
        port: env[if tls == TlsMode::Implicit {
            "PEERS_IMAP_TLS_PORT"
        } else {
            "PEERS_IMAP_STARTTLS_PORT"
        }]
        .parse()
        .unwrap(),
        tls,
        ca_pem: Some(std::fs::read_to_string(&env["PEERS_CA_PEM"]).unwrap()),
        insecure: tls == TlsMode::None,
        insecure_reason: (tls == TlsMode::None)
            .then(|| "benchmark against nginx on loopback".into()),
    };
    let kms = LocalKms::generate().unwrap();
    let mut spec = MailCredentialSpec {
        smtp: None,
        imap: Some(imap),
        username: env[&user_key].clone(),
        oauth: None,
        sealed_secret: Some(SealedSecret {
            version: 1,
            kms: kms.key_ref(),
            encrypted_data_key: String::new(),
            nonce: String::new(),
            ciphertext: String::new(),
        }),
        seal_request: None,
        policy: Policy {
            imap: ImapPolicy {
                enabled: true,
                read_only: true,
                allowed_mailboxes: vec!["*".into()],
                ..Default::default()
            },
            ..Default::default()
        },
        access: Access {
            service_accounts: vec!["bench".into()],
        },
        expires_at: None,
    };
    let binding = CredentialBinding::new("bench", "imap", &spec).unwrap();
    let password = MailPassword::new(env[&pass_key].clone()).unwrap();
    spec.sealed_secret = Some(envelope::seal(&kms, &binding, &password).await.unwrap());
    let source = Arc::new(Source {
        kms,
        spec,
        cached: Default::default(),
    });
    let proxy = ImapProxy::new(
        ImapProxyConfig::default(),
        source,
        ImapMetrics::unregistered(),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    eprintln!("serve_peers: listening on 127.0.0.1:{port}");
    let stop = mailcred_imap::CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        cancel.cancel();
    });
    proxy.serve(listener, stop).await.unwrap();
}
