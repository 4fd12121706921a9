//! The committed CRD is what the code generates, and it carries the rules the API server
//! should enforce.

use kube::CustomResourceExt;
use mailcred_core::crd::{MailCredential, crd_yaml};

#[test]
fn committed_crd_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/mailcredential.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/mailcredential.yaml exists");
    let generated = crd_yaml().expect("CRD serializes");
    assert!(
        committed == generated,
        "crds/mailcredential.yaml is stale: run `cargo run -q -p mailcred-core --bin crdgen > crds/mailcredential.yaml`"
    );
}

#[test]
fn crd_has_names_columns_status_and_cel_rules() {
    let crd = serde_json::to_value(MailCredential::crd()).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["shortNames"][0], "mcred");
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(
        version["subresources"]["status"].is_object(),
        "status subresource"
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["Ready", "SMTP", "IMAP", "Age"] {
        assert!(columns.contains(&name), "column {name} in {columns:?}");
    }
    let text = serde_json::to_string(&crd).unwrap();
    for rule in [
        "has(self.smtp) || has(self.imap)",
        "self.tls != 'none' || (has(self.insecure) && self.insecure)",
        "size(self.insecureReason) > 0",
    ] {
        assert!(text.contains(rule), "CEL rule {rule:?} missing");
    }
    let props = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        props["access"]["properties"]["serviceAccounts"]["minItems"],
        1
    );
    assert!(
        props["smtp"]["properties"]["tls"]["enum"]
            .as_array()
            .unwrap()
            .len()
            == 3,
        "tls is an enum of implicit/starttls/none"
    );
}
