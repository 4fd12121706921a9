//! docs/registration-api.yaml parses, and every route, method, status and error code the
//! API serves is in it.

use super::super::errors::Code;

const SPEC: &str = include_str!("../../../../docs/registration-api.yaml");

#[test]
fn the_openapi_file_names_every_route_status_and_code() {
    let doc: serde_json::Value = serde_saphyr::from_str(SPEC).expect("valid YAML");
    assert_eq!(doc["openapi"], "3.1.0");
    let served: &[(&str, &str, &[u16])] = &[
        (
            "/v1/accounts",
            "post",
            &[201, 400, 401, 409, 413, 415, 422, 502, 503, 504],
        ),
        ("/v1/accounts", "get", &[200, 401, 503, 504]),
        ("/v1/accounts/{name}", "get", &[200, 401, 404, 503]),
        ("/v1/accounts/{name}", "delete", &[204, 401, 404, 503]),
    ];
    for (path, method, statuses) in served {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        for s in *statuses {
            assert!(
                op["responses"][s.to_string()].is_object(),
                "{method} {path} {s} missing"
            );
        }
    }
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for c in Code::ALL {
        assert!(
            codes.contains(&c.as_str()),
            "{} not in ErrorCode",
            c.as_str()
        );
    }
    assert_eq!(
        codes.len(),
        Code::ALL.len(),
        "the file lists codes the API never sends"
    );
}
