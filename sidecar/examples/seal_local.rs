//! Development helper until `kubectl mailcred seal` lands: seals a password (read from stdin,
//! never argv) with a local key file into a MailCredential JSON document for
//! `mailcred-sidecar --credential-file`. Used by bench/smtp/run.sh.
//!
//! cargo run -p mailcred-sidecar --example seal_local -- keygen KEYFILE
//! cargo run -p mailcred-sidecar --example seal_local -- KEYFILE HOST PORT starttls|implicit CA_PEM USERNAME > cred.json

use mailcred_core::crd::TlsMode;
use mailcred_core::kms::LocalKms;
use mailcred_core::testkit::{TestCredential, endpoint, manifest_json};
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
    let password = line.trim_end_matches(['\r', '\n']);
    let kms = LocalKms::from_file(std::path::Path::new(key))?;
    let tls = if tls == "implicit" {
        TlsMode::Implicit
    } else {
        TlsMode::Starttls
    };
    let resource = TestCredential::new("default", "bench")
        .smtp_endpoint(endpoint(host, port.parse()?, tls))
        .ca_pem(&std::fs::read_to_string(ca)?)
        .username(username)
        .service_accounts(&["default"])
        .sealed(&kms, password)
        .await;
    let doc = manifest_json(&resource);
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
