//! `spec.oauth` validation: one row per rule, each with the condition reason and the fix-it
//! text that ends up in status and Events; and the SingleReplicaGrant condition.

mod common;

use mailcred_operator::status::{SINGLE_REPLICA_GRANT, desired_conditions};
use mailcred_operator::validation::validate;
use serde_json::{Value, json};

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// The common fixture with a valid Microsoft client-credentials block and a v2 envelope.
fn oauth_credential(edit: impl FnOnce(&mut Value)) -> mailcred_core::crd::MailCredential {
    common::credential(|v| {
        v["spec"]["oauth"] = json!({
            "provider": "microsoft",
            "tenant": "contoso.onmicrosoft.com",
            "clientId": "00000000-1111-2222-3333-444444444444",
            "grant": "clientCredentials"
        });
        v["spec"]["sealedSecret"]["version"] = json!(2);
        edit(v);
    })
}

fn problems(edit: impl FnOnce(&mut Value)) -> Vec<(String, String)> {
    let c = oauth_credential(edit);
    let v = validate("mail", "smtp", &c.spec, &now());
    let mut out: Vec<(String, String)> = v
        .spec
        .iter()
        .map(|p| (p.reason.to_string(), p.message.clone()))
        .collect();
    if let Err(p) = v.sealed {
        out.push((p.reason.to_string(), p.message));
    }
    out
}

#[test]
fn a_valid_oauth_block_has_no_problems() {
    assert_eq!(problems(|_| {}), Vec::<(String, String)>::new());
    let google = problems(|v| {
        v["spec"]["oauth"] = json!({"provider": "google", "clientId": "1234", "grant": "serviceAccount", "keyId": "abc"});
    });
    assert!(google.is_empty(), "{google:?}");
    let generic = problems(|v| {
        v["spec"]["oauth"] = json!({"provider": "generic", "tokenEndpoint": "https://idp.example.test/token",
            "clientId": "app", "grant": "clientCredentials", "scopes": ["mail"]});
    });
    assert!(generic.is_empty(), "{generic:?}");
}

#[test]
fn every_oauth_rule_has_a_reason_and_a_fix() {
    type Edit = fn(&mut Value);
    let rows: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "no tenant",
            |v| {
                v["spec"]["oauth"].as_object_mut().unwrap().remove("tenant");
            },
            "OAuthTenantMissing",
            "tenant is required with provider microsoft",
        ),
        (
            "tenant with a slash",
            |v| v["spec"]["oauth"]["tenant"] = json!("evil.test/x?"),
            "OAuthInvalidTenant",
            "Directory (tenant) ID",
        ),
        (
            "generic without endpoint",
            |v| {
                v["spec"]["oauth"]["provider"] = json!("generic");
                v["spec"]["oauth"]["scopes"] = json!(["x"]);
            },
            "OAuthTokenEndpointMissing",
            "tokenEndpoint is required with provider generic",
        ),
        (
            "generic without scopes",
            |v| {
                v["spec"]["oauth"]["provider"] = json!("generic");
                v["spec"]["oauth"]["tokenEndpoint"] = json!("https://idp.test/token");
            },
            "OAuthScopesMissing",
            "list the scopes",
        ),
        (
            "http endpoint",
            |v| v["spec"]["oauth"]["tokenEndpoint"] = json!("http://idp.test/token"),
            "InsecureNotAllowed",
            "use https://, or set insecure: true",
        ),
        (
            "not a url",
            |v| v["spec"]["oauth"]["tokenEndpoint"] = json!("idp.test/token"),
            "OAuthInvalidTokenEndpoint",
            "write it as https://host/path",
        ),
        (
            "ftp",
            |v| v["spec"]["oauth"]["tokenEndpoint"] = json!("ftp://idp.test/token"),
            "OAuthInvalidTokenEndpoint",
            "scheme \"ftp\"",
        ),
        (
            "userinfo",
            |v| v["spec"]["oauth"]["tokenEndpoint"] = json!("https://app:s3cret@idp.test/token"),
            "OAuthInvalidTokenEndpoint",
            "never in the URL",
        ),
        (
            "fragment",
            |v| v["spec"]["oauth"]["tokenEndpoint"] = json!("https://idp.test/token#x"),
            "OAuthInvalidTokenEndpoint",
            "#fragment",
        ),
        (
            "insecure without reason",
            |v| {
                v["spec"]["oauth"]["insecure"] = json!(true);
                v["spec"]["oauth"]["tokenEndpoint"] = json!("http://127.0.0.1:1/token");
            },
            "InsecureWithoutReason",
            "insecureReason is empty",
        ),
        (
            "insecure with https",
            |v| {
                v["spec"]["oauth"]["insecure"] = json!(true);
                v["spec"]["oauth"]["insecureReason"] = json!("t");
            },
            "InsecureWithTls",
            "remove insecure",
        ),
        (
            "microsoft oauthbearer",
            |v| v["spec"]["oauth"]["mechanism"] = json!("OAUTHBEARER"),
            "OAuthMechanismUnsupported",
            "accepts only XOAUTH2",
        ),
        (
            "client credentials without client auth",
            |v| v["spec"]["oauth"]["clientAuth"] = json!("none"),
            "OAuthClientAuthMismatch",
            "use clientSecretPost",
        ),
        (
            "service account at microsoft",
            |v| v["spec"]["oauth"]["grant"] = json!("serviceAccount"),
            "OAuthGrantUnsupported",
            "serviceAccount (JWT bearer with domain-wide delegation) is Google's",
        ),
        (
            "service account with a secret",
            |v| {
                v["spec"]["oauth"] = json!({"provider": "google", "clientId": "1", "grant": "serviceAccount", "clientAuth": "clientSecretPost"});
            },
            "OAuthClientAuthMismatch",
            "does not fit grant serviceAccount",
        ),
        (
            "google client credentials",
            |v| {
                v["spec"]["oauth"] =
                    json!({"provider": "google", "clientId": "1", "grant": "clientCredentials"});
            },
            "OAuthGrantUnsupported",
            "use serviceAccount",
        ),
        (
            "microsoft jwt without key id",
            |v| v["spec"]["oauth"]["clientAuth"] = json!("privateKeyJwt"),
            "OAuthKeyIdMissing",
            "certificateThumbprint",
        ),
        (
            "hex thumbprint",
            |v| {
                v["spec"]["oauth"]["clientAuth"] = json!("privateKeyJwt");
                v["spec"]["oauth"]["certificateThumbprint"] = json!("A".repeat(40));
            },
            "OAuthInvalidThumbprint",
            "xxd -r -p",
        ),
        (
            "scope with a space",
            |v| v["spec"]["oauth"]["scopes"] = json!(["a b"]),
            "OAuthInvalidScope",
            "its own list item",
        ),
        (
            "bad token CA",
            |v| v["spec"]["oauth"]["caPem"] = json!("hello"),
            "InvalidCaPem",
            "spec.oauth.caPem",
        ),
        (
            "password envelope",
            |v| v["spec"]["sealedSecret"]["version"] = json!(1),
            "SealedKindMismatch",
            "is a password (envelope version 1) but spec.oauth is set",
        ),
    ];
    for (what, edit, reason, fix) in rows {
        let found = problems(edit);
        assert!(
            found.iter().any(|(r, m)| r == reason && m.contains(fix)),
            "{what}: expected {reason} with {fix:?}, got {found:#?}"
        );
        assert!(
            found.iter().all(|(_, m)| !m.contains("s3cret")),
            "{what}: a URL password was quoted: {found:#?}"
        );
    }
}

#[test]
fn refresh_token_grants_warn_about_replicas() {
    let c = oauth_credential(|v| {
        v["spec"]["oauth"] =
            json!({"provider": "google", "clientId": "1", "grant": "refreshToken"});
    });
    let v = validate("mail", "smtp", &c.spec, &now());
    assert!(v.spec.is_empty(), "{:?}", v.spec);
    let conditions = desired_conditions(&v, "mailcred-smtp");
    let c = conditions
        .iter()
        .find(|c| c.type_ == SINGLE_REPLICA_GRANT)
        .expect("condition");
    assert!(c.status && !c.is_healthy());
    assert!(
        c.message
            .contains("use clientCredentials for multi-replica workloads"),
        "{}",
        c.message
    );
    // The warning does not make the credential unusable.
    assert!(conditions[0].status, "{:?}", conditions[0]);

    let v = validate("mail", "smtp", &oauth_credential(|_| {}).spec, &now());
    let c = desired_conditions(&v, "r")
        .into_iter()
        .find(|c| c.type_ == SINGLE_REPLICA_GRANT)
        .unwrap();
    assert!(!c.status && c.is_healthy());
    // Password credentials keep their four conditions.
    let v = validate("mail", "smtp", &common::credential(|_| {}).spec, &now());
    assert_eq!(desired_conditions(&v, "r").len(), 4);
}

#[test]
fn an_http_token_endpoint_is_listed_as_insecure() {
    let c = oauth_credential(|v| {
        v["spec"]["oauth"]["tokenEndpoint"] = json!("http://127.0.0.1:8443/token");
        v["spec"]["oauth"]["insecure"] = json!(true);
        v["spec"]["oauth"]["insecureReason"] = json!("local oidc-provider");
    });
    let v = validate("mail", "smtp", &c.spec, &now());
    assert!(v.spec.is_empty(), "{:?}", v.spec);
    assert_eq!(v.insecure_endpoints, ["oauth http://127.0.0.1:8443/token"]);
}
