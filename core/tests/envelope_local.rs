//! Envelope v1 with the local provider: round trips, tampering, binding, bad input.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailcred_core::crd::SealedSecret;
use mailcred_core::kms::LocalKms;
use mailcred_core::{CredentialBinding, Error, KmsError, envelope};
use proptest::prelude::*;

use common::{binding, password, redirected_specs, spec};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

async fn seal(kms: &LocalKms, secret: &str) -> SealedSecret {
    envelope::seal(kms, &binding(), &password(secret))
        .await
        .expect("seal")
}

#[tokio::test]
async fn round_trip_returns_the_password() {
    let kms = LocalKms::generate().unwrap();
    let sealed = seal(&kms, "correct horse battery staple").await;
    let opened = envelope::open(&kms, &binding(), &sealed).await.unwrap();
    assert_eq!(opened.expose(), "correct horse battery staple");
    assert_eq!(sealed.kms.key_id, kms.fingerprint());
    envelope::parse(&sealed).expect("parses");
}

#[tokio::test]
async fn every_seal_uses_a_fresh_data_key_and_nonce() {
    let kms = LocalKms::generate().unwrap();
    let a = seal(&kms, "same").await;
    let b = seal(&kms, "same").await;
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.encrypted_data_key, b.encrypted_data_key);
    assert_ne!(a.ciphertext, b.ciphertext);
    assert_ne!(envelope::fingerprint(&a), envelope::fingerprint(&b));
}

#[tokio::test]
async fn ciphertext_length_does_not_reveal_password_length() {
    let kms = LocalKms::generate().unwrap();
    let short = seal(&kms, "a").await;
    let long = seal(&kms, &"b".repeat(60)).await;
    assert_eq!(short.ciphertext.len(), long.ciphertext.len());
}

#[tokio::test]
async fn a_redirected_credential_does_not_open() {
    let kms = LocalKms::generate().unwrap();
    let sealed = seal(&kms, "pw").await;
    for (what, edited) in redirected_specs() {
        let edited = CredentialBinding::new("shop", "billing", &edited).unwrap();
        let err = envelope::open(&kms, &edited, &sealed).await.unwrap_err();
        assert!(
            matches!(err, Error::SealedSecretMismatch),
            "{what}: expected SealedSecretMismatch, got {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("re-seal"), "{what}: {message}");
    }
}

#[tokio::test]
async fn host_case_and_trailing_dot_are_not_an_edit() {
    let kms = LocalKms::generate().unwrap();
    let sealed = seal(&kms, "pw").await;
    let mut s = spec();
    s.smtp.as_mut().unwrap().host = "SMTP.Example.TEST.".into();
    let same = CredentialBinding::new("shop", "billing", &s).unwrap();
    assert_eq!(
        envelope::open(&kms, &same, &sealed).await.unwrap().expose(),
        "pw"
    );
}

#[tokio::test]
async fn a_copy_in_another_namespace_or_name_fails_in_the_key_provider() {
    let kms = LocalKms::generate().unwrap();
    let sealed = seal(&kms, "pw").await;
    for (ns, name) in [
        ("other", "billing"),
        ("shop", "billing2"),
        ("shopb", "illing"),
    ] {
        let moved = CredentialBinding::new(ns, name, &spec()).unwrap();
        let err = envelope::open(&kms, &moved, &sealed).await.unwrap_err();
        assert!(
            matches!(err, Error::Kms(KmsError::ContextMismatch { .. })),
            "{ns}/{name}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_different_local_key_is_named_in_the_error() {
    let sealing = LocalKms::generate().unwrap();
    let other = LocalKms::generate().unwrap();
    let sealed = seal(&sealing, "pw").await;
    let err = envelope::open(&other, &binding(), &sealed)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, Error::Kms(KmsError::WrongKey { .. })),
        "{err:?}"
    );
    assert!(
        message.contains(sealing.fingerprint()) && message.contains(other.fingerprint()),
        "{message}"
    );

    // Claiming the other key's id does not help: the wrapped key does not open under it.
    let mut forged = sealed.clone();
    forged.kms.key_id = other.fingerprint().to_string();
    let err = envelope::open(&other, &binding(), &forged)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Kms(KmsError::ContextMismatch { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_version_and_malformed_fields_are_named() {
    let kms = LocalKms::generate().unwrap();
    let sealed = seal(&kms, "pw").await;

    let mut v3 = sealed.clone();
    v3.version = 3;
    let err = envelope::open(&kms, &binding(), &v3).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 3,
                supported: 2
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 3"));

    type Edit = Box<dyn Fn(&mut SealedSecret)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("nonce", Box::new(|s| s.nonce.truncate(5))),
        ("nonce", Box::new(|s| s.nonce = STANDARD.encode([0u8; 8]))),
        ("ciphertext", Box::new(|s| s.ciphertext.truncate(10))),
        (
            "ciphertext",
            Box::new(|s| s.ciphertext = "not base64!".into()),
        ),
        (
            "ciphertext",
            Box::new(|s| s.ciphertext = STANDARD.encode([0u8; 16])),
        ),
        (
            "encryptedDataKey",
            Box::new(|s| s.encrypted_data_key = String::new()),
        ),
        (
            "encryptedDataKey",
            Box::new(|s| s.encrypted_data_key.insert(3, '%')),
        ),
        (
            "kms.keyId",
            Box::new(|s| s.kms.key_id = "sha256:xyz".into()),
        ),
    ];
    for (field, edit) in cases {
        let mut bad = sealed.clone();
        edit(&mut bad);
        let err = envelope::open(&kms, &binding(), &bad).await.unwrap_err();
        match &err {
            Error::Malformed { field: f, .. } => assert_eq!(*f, field, "{err}"),
            other => panic!("{field}: expected Malformed, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("spec.sealedSecret.{field}")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn truncating_the_wrapped_key_fails_cleanly() {
    let kms = LocalKms::generate().unwrap();
    let mut sealed = seal(&kms, "pw").await;
    let mut wrapped = STANDARD.decode(&sealed.encrypted_data_key).unwrap();
    wrapped.truncate(wrapped.len() - 1);
    sealed.encrypted_data_key = STANDARD.encode(wrapped);
    let err = envelope::open(&kms, &binding(), &sealed).await.unwrap_err();
    assert!(
        matches!(err, Error::Kms(KmsError::ContextMismatch { .. })),
        "{err:?}"
    );
}

#[test]
fn invalid_passwords_are_refused_before_sealing() {
    for (bad, why) in [("", "empty"), ("a\nb", "line break"), ("a\0b", "NUL")] {
        let err = mailcred_core::MailPassword::new(bad.to_string()).unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    let long = "x".repeat(mailcred_core::secret::MAX_PASSWORD_BYTES + 1);
    assert!(mailcred_core::MailPassword::new(long).is_err());
}

#[test]
fn key_files_round_trip_and_bad_files_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek");
    let kms = LocalKms::generate().unwrap();
    kms.write_new_key_file(&path).unwrap();
    let again = LocalKms::from_file(&path).unwrap();
    assert_eq!(again.fingerprint(), kms.fingerprint());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let err = kms.write_new_key_file(&path).unwrap_err();
    assert!(err.to_string().contains("cannot create key file"), "{err}");

    std::fs::write(dir.path().join("short"), "AAAA\n").unwrap();
    let err = LocalKms::from_file(&dir.path().join("short")).unwrap_err();
    assert!(err.to_string().contains("holds 3 bytes"), "{err}");
    std::fs::write(dir.path().join("empty"), "# nothing\n").unwrap();
    let err = LocalKms::from_file(&dir.path().join("empty")).unwrap_err();
    assert!(err.to_string().contains("keygen"), "{err}");
    let err = LocalKms::from_file(&dir.path().join("missing")).unwrap_err();
    assert!(
        err.to_string().contains("cannot read local key file"),
        "{err}"
    );
}

fn flip(text: &str, bit: usize) -> String {
    let mut bytes = STANDARD.decode(text).unwrap();
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
    STANDARD.encode(bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_password_round_trips(secret in "[^\\x00\\r\\n]{1,300}") {
        let kms = LocalKms::generate().unwrap();
        let rt = runtime();
        let sealed = rt.block_on(envelope::seal(&kms, &binding(), &password(&secret))).unwrap();
        let opened = rt.block_on(envelope::open(&kms, &binding(), &sealed)).unwrap();
        prop_assert_eq!(opened.expose(), secret.as_str());
    }

    #[test]
    fn any_single_bit_flip_fails(field in 0usize..3, bit in any::<usize>()) {
        let kms = LocalKms::generate().unwrap();
        let rt = runtime();
        let sealed = rt.block_on(envelope::seal(&kms, &binding(), &password("pw"))).unwrap();
        let mut tampered = sealed.clone();
        match field {
            0 => tampered.nonce = flip(&sealed.nonce, bit),
            1 => tampered.ciphertext = flip(&sealed.ciphertext, bit),
            _ => tampered.encrypted_data_key = flip(&sealed.encrypted_data_key, bit),
        }
        let err = rt.block_on(envelope::open(&kms, &binding(), &tampered)).unwrap_err();
        prop_assert!(
            matches!(err, Error::SealedSecretMismatch | Error::Kms(KmsError::ContextMismatch { .. })),
            "field {} bit {}: {:?}", field, bit, err
        );
    }

    #[test]
    fn any_key_id_edit_fails(suffix in "[0-9a-f]{32}") {
        let kms = LocalKms::generate().unwrap();
        let rt = runtime();
        let sealed = rt.block_on(envelope::seal(&kms, &binding(), &password("pw"))).unwrap();
        let mut tampered = sealed.clone();
        tampered.kms.key_id = format!("sha256:{suffix}");
        prop_assume!(tampered.kms.key_id != sealed.kms.key_id);
        prop_assert!(rt.block_on(envelope::open(&kms, &binding(), &tampered)).is_err());
    }

    #[test]
    fn parse_never_panics_on_arbitrary_fields(
        version in 0u32..4, key in ".{0,80}", nonce in ".{0,40}", ct in ".{0,200}", id in ".{0,60}"
    ) {
        let mut sealed = SealedSecret {
            version,
            kms: mailcred_core::crd::KmsKeyRef {
                provider: mailcred_core::crd::KmsProviderKind::Aws,
                key_id: id,
                wrapping: Default::default(),
                region: None,
                endpoint: None,
            },
            encrypted_data_key: key,
            nonce,
            ciphertext: ct,
        };
        let _ = envelope::parse(&sealed);
        sealed.kms.provider = mailcred_core::crd::KmsProviderKind::Local;
        let _ = envelope::parse(&sealed);
    }
}
