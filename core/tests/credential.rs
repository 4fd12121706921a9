//! `credential::open` (resource → finished credential), re-use of an opened password across
//! edits that are not bound into the ciphertext, and the test kit's stub sources.

mod common;

use std::sync::Arc;
use std::time::Duration;

use mailcred_core::Error;
use mailcred_core::crd::TlsMode;
use mailcred_core::credential::{self, CredentialSource, UsableCredential};
use mailcred_core::envelope;
use mailcred_core::kms::LocalKms;
use mailcred_core::testkit::{
    FailingSource, HangingSource, SealedSource, StaticSource, TestCredential,
};

#[tokio::test]
async fn open_returns_the_finished_credential() {
    let kms = LocalKms::generate().unwrap();
    let resource = common::credential()
        .username("billing@example.test")
        .sealed(&kms, "pw-open")
        .await;
    let c = credential::open(&resource, &kms).await.unwrap();
    assert_eq!(c.id(), "shop/billing");
    assert_eq!(c.username, "billing@example.test");
    assert_eq!(c.smtp, resource.spec.smtp);
    assert_eq!(c.imap, resource.spec.imap);
    assert_eq!(c.policy, resource.spec.policy);
    assert_eq!(
        c.sealed_fingerprint,
        envelope::fingerprint(resource.spec.sealed_secret.as_ref().unwrap())
    );
    assert_eq!(c.auth.password().expect("password").expose(), "pw-open");
    assert!(c.opened_from(&resource));
}

#[tokio::test]
async fn open_refuses_every_redirection_and_a_move() {
    let kms = LocalKms::generate().unwrap();
    let sealed = common::credential().sealed(&kms, "pw").await;
    for (what, spec) in common::redirected_specs() {
        let mut edited = sealed.clone();
        edited.spec = mailcred_core::crd::MailCredentialSpec {
            sealed_secret: sealed.spec.sealed_secret.clone(),
            ..spec
        };
        let err = credential::open(&edited, &kms).await.unwrap_err();
        assert!(
            matches!(err, Error::SealedSecretMismatch | Error::InvalidSpec(_)),
            "{what}: {err}"
        );
    }
    let mut moved = sealed.clone();
    moved.metadata.name = Some("other".into());
    assert!(credential::open(&moved, &kms).await.is_err());
    let mut no_namespace = sealed;
    no_namespace.metadata.namespace = None;
    let err = credential::open(&no_namespace, &kms).await.unwrap_err();
    assert!(err.to_string().contains("metadata.namespace"), "{err}");
}

#[tokio::test]
async fn policy_and_access_edits_reissue_the_password_other_edits_do_not() {
    let kms = LocalKms::generate().unwrap();
    let resource = common::credential().sealed(&kms, "pw").await;
    let opened = credential::open(&resource, &kms).await.unwrap();

    let mut policy_edit = resource.clone();
    policy_edit.spec.policy.smtp.max_recipients = 2;
    policy_edit
        .spec
        .access
        .service_accounts
        .push("other".into());
    let reissued = opened.reissue(&policy_edit).expect("same secret");
    assert_eq!(reissued.policy.smtp.max_recipients, 2);
    assert_eq!(reissued.auth.password().expect("password").expose(), "pw");

    let resealed = common::credential().sealed(&kms, "pw").await;
    let mut renamed = resource.clone();
    renamed.metadata.name = Some("other".into());
    let mut user = resource.clone();
    user.spec.username = "other@example.test".into();
    let mut endpoint = resource.clone();
    endpoint.spec.smtp.as_mut().unwrap().port = 25;
    for (what, edited) in [
        ("re-sealed", resealed),
        ("renamed", renamed),
        ("username", user),
        ("endpoint", endpoint),
    ] {
        assert!(!opened.opened_from(&edited), "{what}");
        assert!(opened.reissue(&edited).is_none(), "{what}");
    }
}

#[tokio::test]
async fn kit_sources_answer_as_named() {
    let usable = TestCredential::new("ns", "mail")
        .smtp("localhost", 2525, TlsMode::Starttls)
        .usable("pw-static");
    let shared = Arc::new(usable);
    let fixed = StaticSource::shared(shared.clone());
    assert!(Arc::ptr_eq(&fixed.credential().await.unwrap(), &shared));
    assert_eq!(fixed.requests(), 1);
    assert_eq!(fixed.outline().unwrap().id, "ns/mail");
    assert!(
        StaticSource::shared(shared)
            .without_outline()
            .outline()
            .is_none()
    );

    let failing = FailingSource::kms_down();
    let err = failing.credential().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(failing.outline().is_none());

    let hanging = HangingSource::new().with_outline("ns/mail", Default::default());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), hanging.credential())
            .await
            .is_err(),
        "a hanging source never answers"
    );
    assert_eq!(hanging.outline().unwrap().id, "ns/mail");

    let kms = LocalKms::generate().unwrap();
    let resource = TestCredential::new("ns", "mail")
        .sealed(&kms, "pw-sealed")
        .await;
    let sealed = SealedSource::new(resource, kms);
    assert_eq!(
        sealed
            .credential()
            .await
            .unwrap()
            .auth
            .password()
            .expect("password")
            .expose(),
        "pw-sealed"
    );
    assert_eq!(
        sealed
            .credential()
            .await
            .unwrap()
            .auth
            .password()
            .expect("password")
            .expose(),
        "pw-sealed"
    );
    assert_eq!(sealed.opened(), 2, "opened on every request");

    let test = UsableCredential::test(&TestCredential::new("a", "b").build(), "pw");
    assert_eq!(test.id(), "a/b");
}
