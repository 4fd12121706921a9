//! operator/deploy/rbac.yaml grants every call the operator makes (and the names match the
//! flags' defaults). A rule missing here is a 403 in a real cluster that no mock would show.

use serde_json::Value;

fn documents() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---\n")
        .filter(|d| {
            d.lines().any(|l| {
                !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---"
            })
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
        .collect()
}

fn rules(kind: &str) -> Vec<Value> {
    documents()
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))["rules"]
        .as_array()
        .unwrap()
        .clone()
}

/// True when some rule grants `verb` on `group/resource` (for `name`, if given).
fn grants(rules: &[Value], group: &str, resource: &str, verb: &str, name: Option<&str>) -> bool {
    let has = |v: &Value, s: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == s));
    rules.iter().any(|r| {
        has(&r["apiGroups"], group)
            && has(&r["resources"], resource)
            && has(&r["verbs"], verb)
            && match (&r["resourceNames"], name) {
                (Value::Null, _) => true,
                (names, Some(n)) => has(names, n),
                (_, None) => false,
            }
    })
}

#[test]
fn cluster_role_covers_the_controller_and_webhook() {
    let r = rules("ClusterRole");
    for verb in ["get", "list", "watch"] {
        assert!(
            grants(&r, "mailcred.io", "mailcredentials", verb, None),
            "{verb} mailcredentials"
        );
    }
    // Lifetime GC deletes expired credentials; it never creates or updates one.
    assert!(grants(&r, "mailcred.io", "mailcredentials", "delete", None));
    for verb in ["create", "update", "patch"] {
        assert!(
            !grants(&r, "mailcred.io", "mailcredentials", verb, None),
            "{verb}"
        );
    }
    assert!(grants(
        &r,
        "mailcred.io",
        "mailcredentials/status",
        "patch",
        None
    ));
    for res in ["roles", "rolebindings"] {
        for verb in ["list", "watch", "create", "patch"] {
            assert!(
                grants(&r, "rbac.authorization.k8s.io", res, verb, None),
                "{verb} {res}"
            );
        }
    }
    assert!(grants(&r, "events.k8s.io", "events", "create", None));
    assert!(grants(&r, "events.k8s.io", "events", "patch", None));
    for verb in ["get", "patch"] {
        assert!(grants(
            &r,
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            verb,
            Some("mailcred-operator")
        ));
    }
    assert!(
        !r.iter().any(|x| x["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "secrets" || s == "pods")),
        "no Secrets or pods cluster-wide"
    );
}

#[test]
fn namespace_role_covers_lease_and_webhook_secret() {
    let r = rules("Role");
    assert!(grants(&r, "coordination.k8s.io", "leases", "create", None));
    for verb in ["get", "patch"] {
        assert!(grants(
            &r,
            "coordination.k8s.io",
            "leases",
            verb,
            Some("mailcred-operator")
        ));
    }
    assert!(grants(&r, "", "secrets", "create", None));
    for verb in ["get", "update"] {
        assert!(grants(
            &r,
            "",
            "secrets",
            verb,
            Some("mailcred-operator-webhook-tls")
        ));
    }
    assert!(
        !grants(&r, "", "secrets", "get", Some("some-app-secret")),
        "only its own Secret"
    );
}

fn documents_of(file: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(format!("{}/deploy/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    text.split("\n---\n")
        .filter(|d| {
            d.lines().any(|l| {
                !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---"
            })
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
        .collect()
}

#[test]
fn webhook_manifests_match_the_flag_defaults() {
    use clap::Parser;
    let config = mailcred_operator::config::Config::parse_from(["mailcred-operator"]);
    let docs = documents_of("webhook.yaml");
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(
        service["metadata"]["name"],
        config.webhook.webhook_service.as_str()
    );
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"],
        config.webhook.webhook_addr.port()
    );
    let hook_config = docs
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    assert_eq!(
        hook_config["metadata"]["name"],
        config.webhook.webhook_config.as_str()
    );
    let hook = &hook_config["webhooks"][0];
    assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
    assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
    assert_eq!(
        hook["clientConfig"]["service"]["name"],
        config.webhook.webhook_service.as_str()
    );
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");

    let deployment = &documents_of("deployment.yaml")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "mailcred-operator");
    let ports: Vec<u64> = pod["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert!(ports.contains(&u64::from(config.webhook.webhook_addr.port())));
    assert!(ports.contains(&u64::from(config.metrics_addr.port())));
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > config.shutdown_grace_seconds);
}
