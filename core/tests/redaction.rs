//! No type that holds plaintext prints it, whatever formatting is used on it.

mod common;

use std::sync::Arc;

use mailcred_core::credential;
use mailcred_core::kms::LocalKms;
use mailcred_core::{DataKey, MailPassword, envelope};

const SECRET: &str = "Pl41ntext-Must-Not-Leak";

fn assert_redacted(what: &str, rendered: &str) {
    assert!(
        !rendered.contains(SECRET),
        "{what} printed the secret: {rendered}"
    );
    assert!(
        rendered.contains("REDACTED"),
        "{what} should say it redacts: {rendered}"
    );
}

#[tokio::test]
async fn debug_of_every_secret_holding_type_redacts() {
    let password = MailPassword::new(SECRET.into()).unwrap();
    assert_redacted("MailPassword", &format!("{password:?}"));
    assert_redacted("MailPassword (pretty)", &format!("{password:#?}"));
    assert_redacted(
        "MailPassword duplicate",
        &format!("{:?}", password.duplicate()),
    );

    let key = DataKey::generate().unwrap();
    assert_redacted("DataKey", &format!("{key:?}"));

    let kms = LocalKms::generate().unwrap();
    assert_redacted("LocalKms", &format!("{kms:?}"));

    let sealed = envelope::seal(&kms, &common::binding(), &password)
        .await
        .unwrap();
    let opened = envelope::open(&kms, &common::binding(), &sealed)
        .await
        .unwrap();
    assert_redacted("opened MailPassword", &format!("{opened:?}"));

    drop(opened);
    // The credential as `open` finishes it, from a resource sealed in the test.
    let resource = common::credential().sealed(&kms, SECRET).await;
    let credential = Arc::new(credential::open(&resource, &kms).await.unwrap());
    assert_redacted("UsableCredential", &format!("{credential:?}"));
    assert_redacted("UsableCredential (pretty)", &format!("{credential:#?}"));

    // The sealed form and its fingerprint carry no plaintext either.
    let yaml = serde_saphyr::to_string(&sealed).unwrap();
    assert!(!yaml.contains(SECRET));
    assert!(!format!("{sealed:?}").contains(SECRET));
}

#[test]
fn errors_about_passwords_do_not_quote_them() {
    let with_newline = format!("{SECRET}\nmore");
    let err = MailPassword::new(with_newline).unwrap_err();
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
}
