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
