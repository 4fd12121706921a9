//! Envelope version 2 (OAuth grant secrets): round trips per grant kind, the payload kind and
//! every bound `spec.oauth` field, grant-secret validation, and a golden v1 envelope that must
//! keep opening.

mod common;

use mailcred_core::crd::{ClientAuthMethod, OAuthGrantKind, OAuthProvider, OAuthSpec};
use mailcred_core::kms::LocalKms;
use mailcred_core::{CredentialBinding, Error, GrantSecret, credential, envelope, grant};
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};

use common::{key_secret, oauth, oauth_edited_specs, oauth_spec, rsa_key_pem};

fn oauth_binding(spec: &mailcred_core::crd::MailCredentialSpec) -> CredentialBinding {
    CredentialBinding::new("shop", "billing", spec).expect("binding")
}

fn secret(refresh: Option<&str>, client: Option<&str>) -> GrantSecret {
    GrantSecret {
        refresh_token: refresh.map(SecretString::from),
        client_secret: client.map(SecretString::from),
        private_key_pem: None,
    }
}

async fn seal_for(
    kms: &LocalKms,
    spec: &mailcred_core::crd::MailCredentialSpec,
    s: &GrantSecret,
) -> mailcred_core::crd::SealedSecret {
    let o = spec.oauth.clone().unwrap();
    envelope::seal_grant(kms, &oauth_binding(spec), &o, s)
        .await
        .expect("seal grant")
}

#[tokio::test]
async fn every_grant_kind_round_trips() {
    let kms = LocalKms::generate().unwrap();
    let pem = rsa_key_pem();
    let mut refresh = oauth();
    refresh.grant = OAuthGrantKind::RefreshToken;
    refresh.client_auth = None;
    let mut secret_post = oauth();
    secret_post.client_auth = None;
    let mut google = oauth();
    google.provider = OAuthProvider::Google;
    google.grant = OAuthGrantKind::ServiceAccount;
    google.client_auth = None;
    let cases = [
        (refresh, secret(Some("1//rt-value"), None)),
        (secret_post, secret(None, Some("cs~value"))),
        (oauth(), key_secret(&pem)),
        (google, key_secret(&pem)),
    ];
    for (o, s) in cases {
        let spec = common::credential().oauth(o.clone()).into_spec();
        let sealed = seal_for(&kms, &spec, &s).await;
        assert_eq!(sealed.version, 2);
        envelope::parse(&sealed).expect("parses");
        let opened = envelope::open_grant(&kms, &oauth_binding(&spec), &sealed)
            .await
            .expect("opens");
        let text = |x: &Option<SecretString>| x.as_ref().map(|v| v.expose_secret().to_owned());
        assert_eq!(text(&opened.refresh_token), text(&s.refresh_token));
        assert_eq!(text(&opened.client_secret), text(&s.client_secret));
        assert_eq!(text(&opened.private_key_pem), text(&s.private_key_pem));
        // A password never comes out of a grant envelope.
        let err = envelope::open(&kms, &oauth_binding(&spec), &sealed)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::SealedSecretMismatch),
            "{:?} {err:?}",
            o.grant
        );
    }
}

#[tokio::test]
async fn the_payload_kind_is_bound_both_ways() {
    let kms = LocalKms::generate().unwrap();
    // A password sealed without oauth, then oauth added: must not open (someone would make the
    // sidecar send the password to a token endpoint).
    let password_spec = common::spec();
    let v1 = envelope::seal(
        &kms,
        &oauth_binding(&password_spec),
        &common::password("pw"),
    )
    .await
    .unwrap();
    let with_oauth = oauth_spec();
    let err = envelope::open_grant(&kms, &oauth_binding(&with_oauth), &v1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SealedSecretMismatch), "{err:?}");
    let err = envelope::open(&kms, &oauth_binding(&with_oauth), &v1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SealedSecretMismatch), "{err:?}");

    // A grant sealed with oauth, then oauth removed.
    let v2 = seal_for(&kms, &with_oauth, &key_secret(&rsa_key_pem())).await;
    let err = envelope::open(&kms, &oauth_binding(&password_spec), &v2)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SealedSecretMismatch), "{err:?}");
    let err = envelope::open_grant(&kms, &oauth_binding(&password_spec), &v2)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SealedSecretMismatch), "{err:?}");

    // Relabelling a v1 envelope as v2 (or back) fails in GCM: the version is in the AAD.
    let mut relabelled = v1.clone();
    relabelled.version = 2;
    let err = envelope::open_grant(&kms, &oauth_binding(&with_oauth), &relabelled)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SealedSecretMismatch), "{err:?}");

    // A password cannot be sealed for an OAuth spec.
    let err = envelope::seal(&kms, &oauth_binding(&with_oauth), &common::password("pw"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.oauth is set"), "{err}");
}

#[tokio::test]
async fn any_single_edit_of_a_bound_oauth_field_is_a_mismatch() {
    let kms = LocalKms::generate().unwrap();
    let sealed = seal_for(&kms, &oauth_spec(), &key_secret(&rsa_key_pem())).await;
    let edits = oauth_edited_specs();
    assert!(edits.len() >= 19);
    for (what, edited) in edits {
        let err = envelope::open_grant(&kms, &oauth_binding(&edited), &sealed)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::SealedSecretMismatch),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("spec.oauth"), "{what}: {err}");
    }
    // Endpoint, username and oauth removal apply to v2 as to v1.
    for (what, mut edited) in common::redirected_specs() {
        edited.oauth = Some(oauth());
        let err = envelope::open_grant(&kms, &oauth_binding(&edited), &sealed)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::SealedSecretMismatch),
            "{what}: {err:?}"
        );
    }
}

#[tokio::test]
async fn resolved_defaults_and_scope_order_are_not_edits() {
    let kms = LocalKms::generate().unwrap();
    let sealed = seal_for(&kms, &oauth_spec(), &key_secret(&rsa_key_pem())).await;
    let same: Vec<fn(&mut OAuthSpec)> = vec![
        |o| o.scopes.reverse(),
        |o| o.scopes.push("offline_access".into()),
        |o| {
            o.token_endpoint = Some(
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
                    .into(),
            )
        },
        |o| o.insecure_reason = Some("not bound: it only explains insecure".into()),
    ];
    for edit in same {
        let mut spec = oauth_spec();
        edit(spec.oauth.as_mut().unwrap());
        envelope::open_grant(&kms, &oauth_binding(&spec), &sealed)
            .await
            .expect("an equivalent spec opens");
    }
}

#[test]
fn grant_secrets_are_validated_per_grant_and_client_auth() {
    let pem = rsa_key_pem();
    let mut refresh = oauth();
    refresh.grant = OAuthGrantKind::RefreshToken;
    refresh.client_auth = None;
    let mut refresh_confidential = refresh.clone();
    refresh_confidential.client_auth = Some(ClientAuthMethod::ClientSecretBasic);
    let mut post = oauth();
    post.client_auth = Some(ClientAuthMethod::ClientSecretPost);
    let mut google = oauth();
    google.provider = OAuthProvider::Google;
    google.grant = OAuthGrantKind::ServiceAccount;
    google.client_auth = None;
    let jwt = oauth();
    let cases: Vec<(&str, &OAuthSpec, GrantSecret, Option<&str>)> = vec![
        ("refresh ok", &refresh, secret(Some("rt"), None), None),
        (
            "refresh missing",
            &refresh,
            secret(None, None),
            Some("needs a refresh token"),
        ),
        (
            "refresh extra secret",
            &refresh,
            secret(Some("rt"), Some("cs")),
            Some("does not use a client secret"),
        ),
        (
            "refresh confidential",
            &refresh_confidential,
            secret(Some("rt"), None),
            Some("needs a client secret"),
        ),
        (
            "refresh confidential ok",
            &refresh_confidential,
            secret(Some("rt"), Some("cs")),
            None,
        ),
        ("post ok", &post, secret(None, Some("cs")), None),
        (
            "post missing",
            &post,
            secret(None, None),
            Some("--client-secret-stdin"),
        ),
        (
            "post with key",
            &post,
            GrantSecret {
                client_secret: Some("cs".into()),
                ..key_secret(&pem)
            },
            Some("does not use a private key"),
        ),
        ("jwt ok", &jwt, key_secret(&pem), None),
        (
            "jwt missing",
            &jwt,
            secret(None, None),
            Some("--private-key-file"),
        ),
        ("google ok", &google, key_secret(&pem), None),
        (
            "google secret",
            &google,
            secret(None, Some("cs")),
            Some("does not use a client secret"),
        ),
        (
            "google nothing",
            &google,
            secret(None, None),
            Some("needs a private key"),
        ),
        (
            "newline",
            &post,
            secret(None, Some("cs\nx")),
            Some("control characters"),
        ),
        (
            "too long",
            &post,
            secret(None, Some(&"c".repeat(grant::MAX_GRANT_TEXT_BYTES + 1))),
            Some("expected 1 to"),
        ),
        (
            "pkcs1",
            &jwt,
            key_secret("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
            Some("openssl pkcs8 -topk8"),
        ),
        ("not pem", &jwt, key_secret("hello"), Some("PKCS#8")),
    ];
    for (what, o, s, want) in cases {
        let got = grant::validate(o, &s);
        match (want, got) {
            (None, Ok(())) => {}
            (Some(w), Err(e)) => {
                assert!(matches!(e, Error::InvalidGrantSecret(_)), "{what}: {e:?}");
                let m = e.to_string();
                assert!(m.contains(w), "{what}: {m}");
                assert!(!m.contains("cs\nx") && !m.contains("rt\""), "{what}: {m}");
            }
            (w, g) => panic!("{what}: wanted {w:?}, got {g:?}"),
        }
    }
}

#[test]
fn a_non_rsa_key_is_refused_with_the_fix() {
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let err = grant::check_private_key(&ec.serialize_pem()).unwrap_err();
    assert!(err.to_string().contains("not an RSA key"), "{err}");
}

#[test]
fn grant_json_is_bounded_and_strict() {
    assert!(grant::from_json(br#"{"refreshToken":"a","extra":"b"}"#).is_err());
    assert!(grant::from_json(b"not json").is_err());
    let big = vec![b' '; grant::MAX_GRANT_JSON_BYTES + 1];
    let err = grant::from_json(&big).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    let s = grant::from_json(br#"{"clientSecret":"x"}"#).unwrap();
    assert_eq!(s.client_secret.unwrap().expose_secret(), "x");
    // Never a secret in Debug.
    let rendered = format!("{:?}", secret(Some("rt-secret"), Some("cs-secret")));
    assert!(
        !rendered.contains("secret\"") && !rendered.contains("rt-secret"),
        "{rendered}"
    );
}

#[tokio::test]
async fn an_oauth_credential_without_a_token_client_says_so() {
    let kms = LocalKms::generate().unwrap();
    let resource = common::credential()
        .oauth(oauth())
        .sealed_grant(&kms, &key_secret(&rsa_key_pem()))
        .await;
    let err = credential::open(&resource, &kms).await.unwrap_err();
    assert!(err.to_string().contains("OAuth token client"), "{err}");
}

#[tokio::test]
async fn golden_v1_envelope_still_opens() {
    // Sealed by the build before envelope version 2 (main 31d9ea9), kept byte for byte.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let kms = LocalKms::from_file(&dir.join("v1-golden.key")).unwrap();
    let text = std::fs::read_to_string(dir.join("v1-golden.yaml")).unwrap();
    let resource = credential::from_yaml(&text).unwrap();
    assert_eq!(resource.spec.sealed_secret.as_ref().unwrap().version, 1);
    let opened = credential::open(&resource, &kms).await.unwrap();
    assert_eq!(
        opened.auth.password().unwrap().expose(),
        "golden-v1-password"
    );
    // The same v1 envelope with oauth added is a mismatch, before any key is used.
    let mut with_oauth = resource.clone();
    with_oauth.spec.oauth = Some(oauth());
    let err = envelope::open_grant(
        &kms,
        &CredentialBinding::for_resource(&with_oauth).unwrap(),
        with_oauth.spec.sealed_secret.as_ref().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::SealedSecretMismatch), "{err:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_client_id_tenant_or_scope_edit_fails(
        client in "[A-Za-z0-9-]{1,40}",
        tenant in "[a-z0-9-]{1,30}\\.onmicrosoft\\.com",
        scope in "[!#-\\[\\]-~]{1,40}",
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let kms = LocalKms::generate().unwrap();
            let base = oauth_spec();
            let sealed = seal_for(&kms, &base, &key_secret(&rsa_key_pem())).await;
            let o = base.oauth.clone().unwrap();
            let mut edits = Vec::new();
            let mut e = base.clone();
            e.oauth.as_mut().unwrap().client_id = client.clone();
            edits.push((o.client_id != client, e));
            let mut e = base.clone();
            e.oauth.as_mut().unwrap().tenant = Some(tenant.clone());
            edits.push((o.tenant.as_deref() != Some(tenant.as_str()), e));
            let mut e = base.clone();
            e.oauth.as_mut().unwrap().scopes[0] = scope.clone();
            edits.push((!o.scopes.contains(&scope), e));
            for (changed, spec) in edits {
                let r = envelope::open_grant(&kms, &oauth_binding(&spec), &sealed).await;
                if changed {
                    prop_assert!(matches!(r, Err(Error::SealedSecretMismatch)));
                }
            }
            Ok(())
        })?;
    }
}
