//! Envelope decoding from untrusted resources: YAML → MailCredential → parse → open.

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use mailcred_core::crd::{KmsKeyRef, KmsProviderKind, SealedSecret};
use mailcred_core::credential::from_yaml;
use mailcred_core::kms::LocalKms;
use mailcred_core::{CredentialBinding, envelope};

fn local_kms() -> &'static LocalKms {
    static KMS: OnceLock<LocalKms> = OnceLock::new();
    KMS.get_or_init(|| match LocalKms::generate() {
        Ok(kms) => kms,
        Err(e) => panic!("the random generator failed: {e}"),
    })
}

/// The local provider completes without waiting, so polling until ready is enough.
fn run_ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Any bytes as a MailCredential manifest.
pub fn envelope_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(resource) = from_yaml(text) else {
        return;
    };
    let Some(sealed) = &resource.spec.sealed_secret else {
        return;
    };
    let _ = envelope::parse(sealed);
    let _ = envelope::fingerprint(sealed);
    if let Ok(binding) = CredentialBinding::for_resource(&resource) {
        let _ = run_ready(envelope::open(local_kms(), &binding, sealed));
    }
}

/// Any bytes as the four stored fields (split at 0xFF), opened with the local provider.
pub fn envelope_fields(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0xff).map(String::from_utf8_lossy);
    let mut next = || parts.next().map(|p| p.into_owned()).unwrap_or_default();
    let (key_id, wrapped, nonce, ciphertext) = (next(), next(), next(), next());
    let sealed = SealedSecret {
        version: data.first().map_or(1, |b| u32::from(*b % 3)),
        kms: KmsKeyRef {
            provider: KmsProviderKind::Local,
            key_id,
            wrapping: Default::default(),
            region: None,
            endpoint: None,
        },
        encrypted_data_key: wrapped,
        nonce,
        ciphertext,
    };
    let _ = envelope::parse(&sealed);
    let spec = mailcred_core::crd::MailCredentialSpec {
        smtp: Some(mailcred_core::crd::UpstreamEndpoint {
            host: "smtp.example.test".into(),
            port: 587,
            tls: mailcred_core::crd::TlsMode::Starttls,
            ca_pem: None,
            insecure: false,
            insecure_reason: None,
        }),
        imap: None,
        username: "fuzz@example.test".into(),
        oauth: None,
        sealed_secret: Some(sealed.clone()),
        seal_request: None,
        policy: Default::default(),
        access: Default::default(),
        expires_at: None,
    };
    if let Ok(binding) = CredentialBinding::new("fuzz", "fuzz", &spec) {
        let _ = run_ready(envelope::open(local_kms(), &binding, &sealed));
    }
}
