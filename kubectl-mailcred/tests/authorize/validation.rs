//! Every bad flag is refused, naming it, before any request: the device, authorization and
//! token endpoints are a listener that no row may reach.

use crate::support::{Tripwire, bin, local_key};

#[test]
fn bad_authorize_flags_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let key = local_key(dir.path());
    let kms = format!("local:{}", key.display());
    let wire = Tripwire::new();
    let token = wire.url("/token");
    let device = wire.url("/device/auth");
    let http_device = device.replace("https://", "http://");
    let base = |flow: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "authorize",
            "--flow",
            flow,
            "--name",
            "billing",
            "--namespace",
            "shop",
            "--username",
            "app@example.test",
            "--smtp",
            "smtp.example.test:587",
            "--service-account",
            "billing-api",
            "--kms",
            &kms,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let generic = |flow: &str, extra: &[&str]| -> Vec<String> {
        let mut e = vec![
            "--oauth-provider",
            "generic",
            "--client-id",
            "mailcred-native",
            "--token-endpoint",
            &token,
            "--scope",
            "mail",
        ];
        e.extend_from_slice(extra);
        base(flow, &e)
    };
    let dev = ["--device-endpoint", device.as_str()];
    let with_dev = |extra: &[&str]| -> Vec<String> {
        let mut e = dev.to_vec();
        e.extend_from_slice(extra);
        generic("device", &e)
    };
    let missing_dir = dir.path().join("no-such-dir/out.yaml");
    let missing_dir = missing_dir.to_str().unwrap();
    let rows: Vec<(Vec<String>, &str)> = vec![
        (
            generic("implicit", &dev),
            "--flow \"implicit\": expected device or code",
        ),
        (
            with_dev(&["--timeout", "2h"]),
            "--timeout \"2h\": expected a number and s or m",
        ),
        (
            with_dev(&["--timeout", "31m"]),
            "must be between 1s and 30m",
        ),
        (with_dev(&["--timeout", "0s"]), "must be between 1s and 30m"),
        (
            with_dev(&["--grant", "clientCredentials"]),
            "authorize yields a refresh token",
        ),
        (
            with_dev(&["--refresh-token-stdin"]),
            "leave out --refresh-token-stdin",
        ),
        (with_dev(&["--password-stdin"]), "not a password"),
        (base("device", &dev), "authorize needs --oauth-provider"),
        (with_dev(&["-o", "xml"]), "-o \"xml\""),
        (with_dev(&["-w", missing_dir]), "does not exist"),
        (
            generic("device", &[]),
            "--device-endpoint is required with --oauth-provider generic",
        ),
        (
            generic("code", &[]),
            "--authorization-endpoint is required with --oauth-provider generic",
        ),
        (
            generic("code", &dev),
            "--device-endpoint is for --flow device",
        ),
        (
            generic("device", &["--device-endpoint", &http_device]),
            "--device-endpoint: OAuth configuration: an http:// token endpoint needs spec.oauth.insecure",
        ),
        (
            with_dev(&["--client-auth", "clientSecretPost"]),
            "needs a client secret",
        ),
        (with_dev(&["--client-auth", "tls"]), "--client-auth \"tls\""),
        (
            base(
                "device",
                &["--oauth-provider", "microsoft", "--client-id", "app"],
            ),
            "tenant",
        ),
        (
            {
                let mut v = with_dev(&[]);
                let i = v.iter().position(|a| a == "--kms").unwrap();
                v[i + 1] = "gcp:projects/x".into();
                v
            },
            "unknown scheme \"gcp\"",
        ),
        (
            {
                let mut v = with_dev(&[]);
                let i = v.iter().position(|a| a == "--namespace").unwrap();
                v[i + 1] = "Shop_Ns".into();
                v
            },
            "Shop_Ns",
        ),
    ];
    for (args, expected) in &rows {
        let out = bin().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
        wire.assert_untouched(&format!("{args:?}"));
    }
}
