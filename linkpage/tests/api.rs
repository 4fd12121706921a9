//! The registration page's API end to end in process: a directory store, a local RSA key, the
//! real router. The browser suite (e2e/linkpage) drives the same flows through Chromium.

mod common;

use common::*;
use mailcred_core::credential;
use serde_json::json;

#[tokio::test]
async fn open_describes_the_request_and_seal_stores_a_secret_that_opens() {
    let f = fixture(10);
    let (resource, token) = pending(&f.key, "shop", "billing", 10);
    write(&f.creds(), &resource);
    let router = f.router("127.0.0.1");

    let (status, headers, opened) = call(
        &router,
        "POST",
        "/api/open",
        link_json("shop", "billing", token.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["username"], "billing@example.test");
    assert_eq!(opened["requestedBy"], "alice@platform");
    assert_eq!(opened["servers"][0]["host"], "smtp.example.test");
    assert_eq!(opened["hasSecret"], false);
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");

    let body = page_seal_body(
        &f.key,
        &resource,
        token.expose(),
        opened["aadSha256"].as_str().unwrap(),
        "s3cret-pw",
    )
    .await;
    let (status, _, sealed) =
        call(&router, "POST", "/api/seal", body.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{sealed}");
    let stored = f.stored("shop", "billing").await;
    assert!(stored.spec.seal_request.as_ref().unwrap().used_at.is_some());
    assert_eq!(
        sealed["fingerprint"],
        mailcred_core::envelope::fingerprint(stored.spec.sealed_secret.as_ref().unwrap())
    );
    let opened = credential::open(&stored, &f.key).await.unwrap();
    assert_eq!(
        opened.auth.password().expect("password").expose(),
        "s3cret-pw"
    );

    // Second use: refused, and nothing is written again.
    let (status, _, again) =
        call(&router, "POST", "/api/seal", body.to_string().into_bytes()).await;
    assert_eq!((status, again["error"].as_str()), (410, Some("used")));
    let (status, _, reopen) = call(
        &router,
        "POST",
        "/api/open",
        link_json("shop", "billing", token.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!((status, reopen["error"].as_str()), (410, Some("used")));
}

#[tokio::test]
async fn concurrent_submits_write_once() {
    let f = fixture(10);
    let (resource, token) = pending(&f.key, "shop", "billing", 10);
    write(&f.creds(), &resource);
    let router = f.router("127.0.0.1");
    let (_, _, opened) = call(
        &router,
        "POST",
        "/api/open",
        link_json("shop", "billing", token.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    let aad = opened["aadSha256"].as_str().unwrap().to_owned();
    let mut bodies = Vec::new();
    for i in 0..6 {
        bodies.push(
            page_seal_body(&f.key, &resource, token.expose(), &aad, &format!("pw-{i}")).await,
        );
    }
    let calls = bodies.into_iter().map(|b| {
        let router = router.clone();
        tokio::spawn(async move {
            call(&router, "POST", "/api/seal", b.to_string().into_bytes())
                .await
                .0
        })
    });
    let mut codes = Vec::new();
    for c in calls {
        codes.push(c.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 410), "{codes:?}");
}

#[tokio::test]
async fn unknown_names_tampered_and_foreign_tokens_get_one_answer() {
    let f = fixture(100);
    let (a, token_a) = pending(&f.key, "shop", "billing", 10);
    let (b, token_b) = pending(&f.key, "shop", "support", 10);
    write(&f.creds(), &a);
    write(&f.creds(), &b);
    let router = f.router("127.0.0.1");
    let mut tampered: Vec<char> = token_a.expose().chars().collect();
    tampered[5] = if tampered[5] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let cases = [
        link_json("shop", "billing", &tampered),
        link_json("shop", "billing", token_b.expose()),
        link_json("shop", "nobody", token_a.expose()),
        link_json("other", "billing", token_a.expose()),
        link_json("Shop/../x", "billing", token_a.expose()),
    ];
    let mut answers = Vec::new();
    for c in cases {
        let (status, _, body) =
            call(&router, "POST", "/api/open", c.to_string().into_bytes()).await;
        answers.push((status, body));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 404);
    assert_eq!(answers[0].1["error"], "unknown");
}

#[tokio::test]
async fn expired_links_and_existing_secrets_are_refused() {
    let f = fixture(10);
    let (expired, token) = pending(&f.key, "shop", "old", -1);
    write(&f.creds(), &expired);
    let (mut sealed, token2) = pending(&f.key, "shop", "live", 10);
    sealed.spec.sealed_secret = Some(mailcred_core::testkit::placeholder_sealed_secret());
    write(&f.creds(), &sealed);
    let router = f.router("127.0.0.1");
    let (status, _, body) = call(
        &router,
        "POST",
        "/api/open",
        link_json("shop", "old", token.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (410, Some("expired")));
    let (status, _, body) = call(
        &router,
        "POST",
        "/api/open",
        link_json("shop", "live", token2.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("already_sealed"))
    );

    // With replace: the page may open and the write replaces the secret.
    sealed.spec.seal_request.as_mut().unwrap().replace = true;
    write(&f.creds(), &sealed);
    let (status, _, opened) = call(
        &router,
        "POST",
        "/api/open",
        link_json("shop", "live", token2.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["hasSecret"], true);
}

#[tokio::test]
async fn bad_bodies_name_the_field_and_big_ones_get_413() {
    let f = fixture(10);
    let (resource, token) = pending(&f.key, "shop", "billing", 10);
    write(&f.creds(), &resource);
    let router = f.router("127.0.0.1");
    let (status, _, body) = call(&router, "POST", "/api/open", b"{not json".to_vec()).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("body")));
    let (_, _, opened) = call(
        &router,
        "POST",
        "/api/open",
        link_json("shop", "billing", token.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    let good = page_seal_body(
        &f.key,
        &resource,
        token.expose(),
        opened["aadSha256"].as_str().unwrap(),
        "pw",
    )
    .await;
    for (field, value, expect) in [
        ("nonce", json!("not base64!"), "nonce"),
        ("nonce", json!(b64(&[0; 11])), "nonce"),
        ("ciphertext", json!(b64(&[0; 10])), "ciphertext"),
        (
            "encryptedDataKey",
            json!(b64(&[0; 256])),
            "encryptedDataKey",
        ),
        ("ciphertext", json!(17), "ciphertext"),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let (status, _, answer) =
            call(&router, "POST", "/api/seal", body.to_string().into_bytes()).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(expect)),
            "{field}: {answer}"
        );
    }
    let mut changed = good.clone();
    changed["aadSha256"] = json!("00".repeat(32));
    let (status, _, answer) = call(
        &router,
        "POST",
        "/api/seal",
        changed.to_string().into_bytes(),
    )
    .await;
    assert_eq!((status, answer["error"].as_str()), (409, Some("changed")));
    let (status, _, _) = call(&router, "POST", "/api/seal", vec![b' '; 70 * 1024]).await;
    assert_eq!(status, 413);
    // Nothing was stored by any of these.
    assert!(
        f.stored("shop", "billing")
            .await
            .spec
            .sealed_secret
            .is_none()
    );
}

#[tokio::test]
async fn bad_tokens_are_rate_limited_per_client_and_others_are_served() {
    let f = fixture(3);
    let (resource, token) = pending(&f.key, "shop", "billing", 10);
    write(&f.creds(), &resource);
    let attacker = f.router("127.0.0.9");
    let mut codes = Vec::new();
    for i in 0..5 {
        let guess = format!("{:0>43}", i);
        codes.push(
            call(
                &attacker,
                "POST",
                "/api/open",
                link_json("shop", "billing", &guess)
                    .to_string()
                    .into_bytes(),
            )
            .await
            .0,
        );
    }
    assert_eq!(codes, [404, 404, 404, 429, 429]);
    // Even the right token is refused from the limited address; another address is served.
    let (status, _, _) = call(
        &attacker,
        "POST",
        "/api/open",
        link_json("shop", "billing", token.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 429);
    let owner = f.router("127.0.0.1");
    let (status, _, _) = call(
        &owner,
        "POST",
        "/api/open",
        link_json("shop", "billing", token.expose())
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_page_and_every_answer_carry_the_security_headers() {
    let f = fixture(10);
    let router = f.router("127.0.0.1");
    for path in ["/", "/app.js", "/app.css", "/nothing-here"] {
        let (status, headers, _) = call(&router, "GET", path, Vec::new()).await;
        assert!(status == 200 || status == 404, "{path}: {status}");
        assert_eq!(
            headers["content-security-policy"],
            mailcred_linkpage::http::CSP,
            "{path}"
        );
        for (name, value) in [
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
            ("strict-transport-security", "max-age=31536000"),
        ] {
            assert_eq!(headers[name], value, "{path} {name}");
        }
    }
    let (_, _, html) = call(&router, "GET", "/", Vec::new()).await;
    let html = html.as_str().unwrap().to_owned();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external resource"
    );
}
