//! Every 4xx of the registration API, one row each: status, code and field pinned, and
//! nothing stored. The same table is in docs/reliability.md ("Registration API: bad input").

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use super::*;

/// `good()` with `edit` applied.
fn with(edit: impl FnOnce(&mut Value)) -> Body {
    let mut v = good();
    edit(&mut v);
    Body::from(v.to_string())
}

fn req(method: &str, uri: &str, token: Option<&str>, ctype: &str, body: Body) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", t);
    }
    b.header("content-type", ctype).body(body).unwrap()
}

struct Row {
    case: &'static str,
    request: Request<Body>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    /// Whether the login check may have run (only for the upstream's refusal).
    checked: bool,
}

fn row(
    case: &'static str,
    request: Request<Body>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Row {
    Row {
        case,
        request,
        status,
        code,
        field,
        checked: false,
    }
}

fn rows() -> Vec<Row> {
    let bearer = format!("Bearer {TOKEN}");
    let js = "application/json";
    vec![
        row(
            "missing token",
            req("POST", "/v1/accounts", None, js, with(|_| {})),
            401,
            "unauthorized",
            None,
        ),
        row(
            "wrong token",
            req(
                "POST",
                "/v1/accounts",
                Some("Bearer nope"),
                js,
                with(|_| {}),
            ),
            401,
            "unauthorized",
            None,
        ),
        row(
            "token without Bearer",
            req("POST", "/v1/accounts", Some(TOKEN), js, with(|_| {})),
            401,
            "unauthorized",
            None,
        ),
        row(
            "wrong token on GET",
            req("GET", "/v1/accounts", Some("Bearer x"), js, Body::empty()),
            401,
            "unauthorized",
            None,
        ),
        row(
            "wrong content type",
            req(
                "POST",
                "/v1/accounts",
                Some(&bearer),
                "text/plain",
                with(|_| {}),
            ),
            415,
            "unsupported_media_type",
            None,
        ),
        row(
            "body over 64 KiB",
            post(with(|v| v["username"] = json!("u".repeat(70 * 1024)))),
            413,
            "body_too_large",
            None,
        ),
        row(
            "malformed JSON",
            post("{\"username\": "),
            400,
            "malformed_json",
            None,
        ),
        row("not an object", post("[1,2]"), 400, "malformed_json", None),
        row(
            "unknown field",
            post(with(|v| v["usernme"] = json!("x"))),
            400,
            "unknown_field",
            Some("usernme"),
        ),
        row(
            "unknown policy field",
            post(with(|v| v["policy"]["smtp"]["allowedSender"] = json!([]))),
            400,
            "unknown_field",
            Some("policy.smtp.allowedSender"),
        ),
        row(
            "insecure offered",
            post(with(|v| v["smtp"]["insecure"] = json!(true))),
            400,
            "unknown_field",
            Some("smtp.insecure"),
        ),
        row(
            "missing username",
            post(with(|v| {
                v.as_object_mut().unwrap().remove("username");
            })),
            400,
            "missing_field",
            Some("username"),
        ),
        row(
            "missing password",
            post(with(|v| {
                v.as_object_mut().unwrap().remove("password");
            })),
            400,
            "missing_field",
            Some("password"),
        ),
        row(
            "password not a string",
            post(with(|v| v["password"] = json!(12345))),
            400,
            "invalid_field",
            Some("password"),
        ),
        row(
            "no endpoint",
            post(with(|v| {
                let o = v.as_object_mut().unwrap();
                o.remove("smtp");
                o.remove("imap");
            })),
            400,
            "no_endpoint",
            None,
        ),
        row(
            "missing host",
            post(with(|v| {
                v["smtp"].as_object_mut().unwrap().remove("host");
            })),
            400,
            "missing_field",
            Some("smtp.host"),
        ),
        row(
            "host with scheme",
            post(with(|v| v["smtp"]["host"] = json!("smtp://x"))),
            400,
            "invalid_host",
            Some("smtp.host"),
        ),
        row(
            "host with space",
            post(with(|v| v["imap"]["host"] = json!("mail example.com"))),
            400,
            "invalid_host",
            Some("imap.host"),
        ),
        row(
            "port 0",
            post(with(|v| v["smtp"]["port"] = json!(0))),
            400,
            "invalid_port",
            Some("smtp.port"),
        ),
        row(
            "port 70000",
            post(with(|v| v["imap"]["port"] = json!(70000))),
            400,
            "invalid_port",
            Some("imap.port"),
        ),
        row(
            "port as string",
            post(with(|v| v["imap"]["port"] = json!("993"))),
            400,
            "invalid_port",
            Some("imap.port"),
        ),
        row(
            "tls none",
            post(with(|v| v["smtp"]["tls"] = json!("none"))),
            400,
            "invalid_tls",
            Some("smtp.tls"),
        ),
        row(
            "caPem not PEM",
            post(with(|v| v["imap"]["caPem"] = json!("not a certificate"))),
            400,
            "invalid_ca_pem",
            Some("imap.caPem"),
        ),
        row(
            "password over 1024 bytes",
            post(with(|v| v["password"] = json!("p".repeat(1025)))),
            400,
            "password_too_long",
            Some("password"),
        ),
        row(
            "password with a line break",
            post(with(|v| v["password"] = json!("a\nb"))),
            400,
            "invalid_password",
            Some("password"),
        ),
        row(
            "bad name",
            post(with(|v| v["name"] = json!("Alice_1"))),
            400,
            "invalid_name",
            Some("name"),
        ),
        row(
            "lifetime 59 s",
            post(with(|v| v["lifetimeSeconds"] = json!(59))),
            400,
            "invalid_lifetime",
            Some("lifetimeSeconds"),
        ),
        row(
            "lifetime over 30 days",
            post(with(|v| v["lifetimeSeconds"] = json!(2_592_001))),
            400,
            "invalid_lifetime",
            Some("lifetimeSeconds"),
        ),
        row(
            "unmatchable sender pattern",
            post(with(|v| {
                v["policy"]["smtp"]["allowedSenders"] =
                    json!(["a@example.test", "*@example.test", "alice@"])
            })),
            400,
            "invalid_policy",
            Some("policy.smtp.allowedSenders[2]"),
        ),
        row(
            "unmatchable mailbox pattern",
            post(with(|v| {
                v["policy"]["imap"] = json!({"allowedMailboxes": ["INBOX", ""]})
            })),
            400,
            "invalid_policy",
            Some("policy.imap.allowedMailboxes[1]"),
        ),
        row(
            "policy value of the wrong type",
            post(with(|v| {
                v["policy"]["smtp"]["maxRecipients"] = json!("many")
            })),
            400,
            "invalid_policy",
            Some("policy.smtp.maxRecipients"),
        ),
        row(
            "duplicate name",
            post(with(|v| v["name"] = json!("taken"))),
            409,
            "already_exists",
            Some("name"),
        ),
        row(
            "unknown account (GET)",
            req(
                "GET",
                "/v1/accounts/nobody",
                Some(&bearer),
                js,
                Body::empty(),
            ),
            404,
            "not_found",
            None,
        ),
        row(
            "another set's account (GET)",
            req(
                "GET",
                "/v1/accounts/other-set",
                Some(&bearer),
                js,
                Body::empty(),
            ),
            404,
            "not_found",
            None,
        ),
        row(
            "another set's account (DELETE)",
            req(
                "DELETE",
                "/v1/accounts/other-set",
                Some(&bearer),
                js,
                Body::empty(),
            ),
            404,
            "not_found",
            None,
        ),
        row(
            "wrong method",
            req("PUT", "/v1/accounts", Some(&bearer), js, Body::empty()),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "unknown route",
            req("GET", "/v2/accounts", Some(&bearer), js, Body::empty()),
            404,
            "not_found",
            None,
        ),
    ]
}

#[tokio::test]
async fn every_bad_input_gets_its_status_code_and_field_and_nothing_is_stored() {
    let mut all = rows();
    all.push(Row {
        case: "password refused upstream",
        request: post(with(|_| {})),
        status: 422,
        code: "login_failed",
        field: Some("password"),
        checked: true,
    });
    let count = all.len();
    for row in all {
        let f = fixture(Answer::Reject(
            "535 5.7.8 Error: authentication failed".into(),
        ));
        f.store.insert(
            mailcred_core::testkit::TestCredential::new(NAMESPACE, "taken")
                .account_set(SET)
                .build(),
        );
        f.store.insert(
            mailcred_core::testkit::TestCredential::new(NAMESPACE, "other-set")
                .account_set("billing")
                .build(),
        );
        let (status, body, _) = call(&f.api, row.request).await;
        let case = row.case;
        assert_eq!(status.as_u16(), row.status, "{case}: {body}");
        assert_eq!(body["error"]["code"], row.code, "{case}: {body}");
        assert_eq!(body["error"]["field"], json!(row.field), "{case}: {body}");
        for key in ["message", "fix"] {
            assert!(
                body["error"][key].as_str().is_some_and(|s| !s.is_empty()),
                "{case}: {body}"
            );
        }
        assert_eq!(f.store.len(), 2, "{case}: something was stored or deleted");
        assert!(
            f.store.get_now("taken").is_some() && f.store.get_now("other-set").is_some(),
            "{case}"
        );
        assert_eq!(
            f.checker.calls() > 0,
            row.checked,
            "{case}: the login check ran (or not)"
        );
    }
    assert!(count >= 38, "{count}");
}
