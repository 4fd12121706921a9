//! An API error: the reconcile fails with an Event and the retries back off.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{credential, echo, fake_client, status_error};
use crate::support::*;
use kube::runtime::controller::Action;
use mailcred_operator::controller::{error_policy, reconcile};

#[tokio::test]
async fn api_error_fails_the_reconcile_with_an_event_and_backs_off() {
    let (client, log) = fake_client(|r| {
        if r.uri.contains("/roles/") {
            (
                403,
                status_error(
                    403,
                    "Forbidden",
                    "roles.rbac.authorization.k8s.io is forbidden",
                ),
            )
        } else {
            echo(r)
        }
    });
    let ctx = context(client);
    let obj = Arc::new(credential(|_| {}));
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.metric_label(), "kube_forbidden");
    assert!(
        err.to_string().contains("applying Role mail/mailcred-smtp"),
        "{err}"
    );
    let log = requests(&log);
    assert_eq!(
        log.len(),
        2,
        "the failed apply, then the Event; nothing else: {log:#?}"
    );
    let ev = events(&log);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].0.as_str(), ev[0].1.as_str()),
        ("Warning", "ReconcileFailed")
    );
    assert!(
        ev[0].2.contains("applying Role mail/mailcred-smtp") && ev[0].2.contains("forbidden"),
        "{}",
        ev[0].2
    );

    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(
        error_policy(obj, &err, ctx),
        Action::requeue(Duration::from_secs(20))
    );
}
