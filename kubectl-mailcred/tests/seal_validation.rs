//! `seal` refuses every input the cluster would refuse, naming the flag, before it reads the
//! password: each row's stdin is a pipe holding the password, and after the process exits the
//! password is still unread in the pipe.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

const PASSWORD: &str = "never-read-Passw0rd";

/// A valid invocation; each row replaces, removes or adds flags.
fn base_args(key: &std::path::Path) -> Vec<(String, Option<String>)> {
    let flag = |f: &str, v: &str| (f.to_string(), Some(v.to_string()));
    vec![
        flag("--name", "billing"),
        flag("--namespace", "shop"),
        flag("--username", "app@example.test"),
        flag("--smtp", "smtp.example.test:587"),
        flag("--imap", "imap.example.test:993"),
        flag("--service-account", "billing-api"),
        flag("--kms", &format!("local:{}", key.display())),
        ("--password-stdin".to_string(), None),
    ]
}

/// One bad input: flags to set (replacing the base's), flags to drop, and the message.
struct Row {
    set: Vec<(&'static str, String)>,
    drop: Vec<&'static str>,
    expected: String,
}

fn row(set: &[(&'static str, &str)], expected: &str) -> Row {
    Row {
        set: set.iter().map(|(f, v)| (*f, v.to_string())).collect(),
        drop: Vec::new(),
        expected: expected.to_string(),
    }
}

fn without(drop: &[&'static str], set: &[(&'static str, &str)], expected: &str) -> Row {
    Row {
        drop: drop.to_vec(),
        ..row(set, expected)
    }
}

fn argv(key: &std::path::Path, row: &Row) -> Vec<String> {
    let mut args = vec!["seal".to_string()];
    let mut base = base_args(key);
    base.retain(|(f, _)| !row.drop.contains(&f.as_str()));
    for (f, v) in &mut base {
        if let Some((_, new)) = row.set.iter().find(|(rf, _)| rf == f) {
            *v = Some(new.clone());
        }
    }
    for (f, v) in &row.set {
        if !base.iter().any(|(bf, _)| bf == f) {
            base.push((f.to_string(), Some(v.clone())));
        }
    }
    for (f, v) in base {
        args.push(f);
        args.extend(v);
    }
    args
}

#[test]
fn bad_inputs_are_refused_by_flag_before_the_password_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("local.key");
    let status = Command::new(env!("CARGO_BIN_EXE_kubectl-mailcred"))
        .args(["keygen", "-o"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let long_host = format!("{}:587", "a".repeat(254));
    // For the -f rows: a sealed billing credential, a ConfigMap, a file that is not there.
    let sealed = dir.path().join("billing.yaml");
    let mut seal = Command::new(env!("CARGO_BIN_EXE_kubectl-mailcred"));
    seal.args(argv(&key, &row(&[("-w", sealed.to_str().unwrap())], "")))
        .stdin(Stdio::piped());
    let mut child = seal.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"first-Passw0rd\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let sealed = sealed.to_str().unwrap();
    let config_map = dir.path().join("cm.yaml");
    std::fs::write(
        &config_map,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: billing\n",
    )
    .unwrap();
    let config_map = config_map.to_str().unwrap();
    let no_file = dir.path().join("gone.yaml");
    let no_file = no_file.to_str().unwrap();

    let rows = vec![
        row(
            &[("--smtp", "smtp://mail.example.test")],
            "--smtp \"smtp://mail.example.test\": give the host without smtp:// (e.g. --smtp mail.example.test:587)",
        ),
        row(
            &[("--imap", "imaps://imap.example.test")],
            "give the host without imaps:// (e.g. --imap imap.example.test:993)",
        ),
        row(
            &[("--smtp", "smtps://mail.example.test:2465/")],
            "give the host without smtps:// (e.g. --smtp mail.example.test:2465)",
        ),
        row(
            &[("--smtp", "mail example.test:587")],
            "--smtp \"mail example.test:587\": the host contains a space",
        ),
        row(&[("--smtp", ":587")], "--smtp \":587\": the host is empty"),
        row(
            &[("--smtp", &long_host)],
            "--smtp: the host is longer than 253 characters",
        ),
        row(
            &[("--smtp", "mail.example.test:0")],
            "--smtp \"mail.example.test:0\": the port must be 1-65535",
        ),
        row(
            &[("--imap", "imap.example.test:70000")],
            "--imap \"imap.example.test:70000\": the port must be 1-65535",
        ),
        row(
            &[("--smtp", "mail.example.test")],
            "--smtp \"mail.example.test\": expected HOST:PORT (e.g. --smtp mail.example.test:465)",
        ),
        row(
            &[("--smtp", "2001:db8::1:587")],
            "put an IPv6 address in brackets",
        ),
        row(
            &[("--smtp-tls", "tls13")],
            "--smtp-tls \"tls13\": expected implicit, starttls or none",
        ),
        row(
            &[("--name", "Billing")],
            "--name \"Billing\": not a valid resource name",
        ),
        row(
            &[("--namespace", "shop.prod")],
            "--namespace \"shop.prod\": not a valid namespace name",
        ),
        row(&[("--username", "")], "--username is empty"),
        row(
            &[(
                "--service-account",
                "system:serviceaccount:shop:billing-api",
            )],
            "give only the name (--service-account billing-api)",
        ),
        row(
            &[("--service-account", "Billing_API")],
            "--service-account \"Billing_API\": not a valid ServiceAccount name",
        ),
        row(
            &[("--allowed-sender", "not an address")],
            "--allowed-sender \"not an address\": expected `user@domain` or `*@domain`",
        ),
        row(
            &[("--allowed-recipient", "a@@example.test")],
            "--allowed-recipient \"a@@example.test\": ",
        ),
        row(
            &[("--allowed-mailbox", "")],
            "--allowed-mailbox \"\": empty mailbox name",
        ),
        row(
            &[("--max-recipients", "0")],
            "--max-recipients 0: must be 1-1000",
        ),
        row(
            &[("--max-message-bytes", "100")],
            "--max-message-bytes 100: must be 1024-157286400",
        ),
        row(
            &[("--messages-per-minute", "0")],
            "--messages-per-minute 0: must be at least 1",
        ),
        row(
            &[("--messages-per-hour", "0")],
            "--messages-per-hour 0: must be at least 1",
        ),
        row(
            &[("--recipients-per-minute", "0")],
            "--recipients-per-minute 0: must be at least 1",
        ),
        row(
            &[("--recipients-per-hour", "0")],
            "--recipients-per-hour 0: must be at least 1",
        ),
        row(
            &[("--ca-file", not_pem)],
            &format!("--ca-file {not_pem}: contains no PEM CERTIFICATE block"),
        ),
        row(&[("--smtp-ca-file", missing)], "cannot read --smtp-ca-file"),
        row(
            &[("--ca-file", not_pem), ("--imap-ca-file", not_pem)],
            "--ca-file and --imap-ca-file both give the imap CA bundle; give one of them",
        ),
        without(
            &["--imap"],
            &[("--imap-ca-file", not_pem)],
            "--imap-ca-file needs --imap HOST:PORT",
        ),
        without(
            &["--smtp"],
            &[("--smtp-enabled", "true")],
            "--smtp-enabled needs --smtp HOST:PORT",
        ),
        row(
            &[("--insecure-reason", "lab")],
            "--insecure-reason only goes with --smtp-tls none or --imap-tls none",
        ),
        row(
            &[("--kms", "aws:not-a-key")],
            "--kms: \"not-a-key\" is not an AWS KMS key ARN, alias or key id",
        ),
        row(
            &[("--kms", "aws:alias/mail"), ("--kms-region", "EU West")],
            "--kms-region \"EU West\": not an AWS region",
        ),
        row(
            &[
                ("--kms", "aws-public-key:pub.pem"),
                ("--kms-key-id", "bogus"),
            ],
            "--kms-key-id: \"bogus\" is not an AWS KMS key ARN",
        ),
        row(
            &[("--kms-endpoint", "http://127.0.0.1:4566")],
            "--kms-region and --kms-endpoint only go with --kms aws",
        ),
        row(
            &[("-o", "mcred.yaml")],
            "-o now picks the format (yaml|json); write a file with -w FILE",
        ),
        row(
            &[("-w", "/nonexistent-dir/mcred.yaml")],
            "-w /nonexistent-dir/mcred.yaml: the directory /nonexistent-dir does not exist",
        ),
        row(&[("-f", no_file)], &format!("-f {no_file}: cannot read")),
        row(
            &[("-f", config_map)],
            "expected apiVersion mailcred.io/v1alpha1, kind MailCredential; found v1 ConfigMap",
        ),
        row(
            &[("-f", sealed), ("--name", "orders")],
            "--name \"orders\" conflicts with -f",
        ),
        row(
            &[("-f", sealed), ("--namespace", "prod")],
            "--namespace \"prod\" conflicts with -f",
        ),
        without(
            &["--kms"],
            &[("-f", sealed)],
            "is sealed with a local key (sha256:",
        ),
        without(
            &["--kms"],
            &[("-f", sealed), ("--kms-region", "eu-west-1")],
            "--kms-region needs --kms: with -f alone the file's key is kept",
        ),
        row(
            &[("-f", sealed), ("--smtp-tls", "starttls"), ("--smtp", "")],
            "--smtp \"\": expected HOST:PORT",
        ),
        row(
            &[("--merge-into", no_file)],
            &format!("--merge-into {no_file}: cannot read"),
        ),
        row(
            &[("--merge-into", sealed), ("-o", "json")],
            "--merge-into writes YAML documents; leave out -o json",
        ),
        without(
            &["--name"],
            &[],
            "--name is required (or re-seal an existing MailCredential with -f FILE)",
        ),
    ];
    assert!(rows.len() >= 30);
    for row in &rows {
        let args = argv(&key, row);
        let (mut unread, mut writer) = std::io::pipe().unwrap();
        writer
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        drop(writer);
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mailcred"))
            .args(&args)
            .current_dir(dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::from(unread.try_clone().unwrap()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(&row.expected),
            "{args:?}: expected {:?} in {stderr:?}",
            row.expected
        );
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
        let mut left = String::new();
        unread.read_to_string(&mut left).unwrap();
        assert_eq!(left, format!("{PASSWORD}\n"), "{args:?} read stdin");
    }
}

/// The check above can fail: a valid invocation does read the password from the pipe.
#[test]
fn a_valid_invocation_consumes_the_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("local.key");
    let status = Command::new(env!("CARGO_BIN_EXE_kubectl-mailcred"))
        .args(["keygen", "-o"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let (mut unread, mut writer) = std::io::pipe().unwrap();
    writer.write_all(PASSWORD.as_bytes()).unwrap();
    drop(writer);
    let ok = row(&[], "");
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mailcred"))
        .args(argv(&key, &ok))
        .stdin(Stdio::from(unread.try_clone().unwrap()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut left = String::new();
    unread.read_to_string(&mut left).unwrap();
    assert_eq!(left, "");
}
