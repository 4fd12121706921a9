//! Development helper until `kubectl mailcred seal` lands: seals a password (read from stdin,
//! never argv) with a local key file into a MailCredential JSON document for
//! `mailcred-sidecar --credential-file`. Used by bench/smtp/run.sh.
//!
//! cargo run -p mailcred-sidecar --example seal_local -- keygen KEYFILE
//! cargo run -p mailcred-sidecar --example seal_local -- KEYFILE HOST PORT starttls|implicit CA_PEM USERNAME > cred.json

use mailcred_core::crd::{
    Access, DataKeyWrapping, KmsKeyRef, KmsProviderKind, MailCredentialSpec, Policy, SealedSecret,
    TlsMode, UpstreamEndpoint,
};
use mailcred_core::kms::LocalKms;
use mailcred_core::{CredentialBinding, MailPassword, envelope};
use zeroize::Zeroizing;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, path] = args.as_slice()
        && cmd == "keygen"
    {
        LocalKms::generate()?.write_new_key_file(std::path::Path::new(path))?;
        return Ok(());
    }
    let [key, host, port, tls, ca, username] = args.as_slice() else {
        anyhow::bail!(
            "usage: seal_local KEYFILE HOST PORT starttls|implicit CA_PEM USERNAME (password on stdin)"
        );
    };
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    let password = MailPassword::new(line.trim_end_matches(['\r', '\n']).to_owned())?;
    let kms = LocalKms::from_file(std::path::Path::new(key))?;
    let mut spec = MailCredentialSpec {
        smtp: Some(UpstreamEndpoint {
            host: host.clone(),
            port: port.parse()?,
            tls: if tls == "implicit" {
                TlsMode::Implicit
            } else {
                TlsMode::Starttls
            },
            ca_pem: Some(std::fs::read_to_string(ca)?),
            insecure: false,
            insecure_reason: None,
        }),
        imap: None,
        username: username.clone(),
        sealed_secret: SealedSecret {
            version: 1,
            kms: KmsKeyRef {
                provider: KmsProviderKind::Local,
                key_id: kms.fingerprint().into(),
                wrapping: DataKeyWrapping::SymmetricDefault,
                region: None,
                endpoint: None,
            },
            encrypted_data_key: String::new(),
            nonce: String::new(),
            ciphertext: String::new(),
        },
        policy: Policy::default(),
        access: Access {
            service_accounts: vec!["default".into()],
        },
    };
    let binding = CredentialBinding::new("default", "bench", &spec)?;
    spec.sealed_secret = envelope::seal(&kms, &binding, &password).await?;
    let doc = serde_json::json!({
        "apiVersion": "mailcred.io/v1alpha1",
        "kind": "MailCredential",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": spec,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
