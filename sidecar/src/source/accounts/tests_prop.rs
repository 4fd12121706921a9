//! Random sequences of use, delete, restore, revoke, re-seal, lifetime end and expiry tick:
//! the cache never holds more than its bound, never holds or hands out a plaintext of an
//! account that is gone, revoked, expired or re-sealed, and a handed-out plaintext is the
//! account's current one.

use std::sync::{Arc, Weak};
use std::time::Duration;

use mailcred_core::crd::MailCredential;
use mailcred_core::credential::UsableCredential;
use proptest::prelude::*;

use super::tests::{Fixture, at, fixture};

const ACCOUNTS: usize = 4;
const CAPACITY: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Use(usize),
    Delete(usize),
    Restore(usize),
    Revoke(usize),
    Reseal(usize),
    Expire(usize),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..ACCOUNTS;
    prop_oneof![
        4 => i.clone().prop_map(Op::Use),
        1 => i.clone().prop_map(Op::Delete),
        1 => i.clone().prop_map(Op::Restore),
        1 => i.clone().prop_map(Op::Revoke),
        1 => i.clone().prop_map(Op::Reseal),
        1 => i.prop_map(Op::Expire),
        1 => Just(Op::Tick),
    ]
}

/// What the test believes account i is: its password and resource, or gone.
struct Model {
    accounts: Vec<Option<(String, MailCredential)>>,
    usable: Vec<bool>,
    /// Plaintexts handed out per account, by generation: they must die when it goes stale.
    handed: Vec<Vec<Weak<UsableCredential>>>,
    generation: u32,
}

fn name(i: usize) -> String {
    format!("acct-{i}")
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let f = fixture(CAPACITY, Duration::from_secs(3600), Duration::ZERO);
    let mut m = Model {
        accounts: Vec::new(),
        usable: vec![true; ACCOUNTS],
        handed: vec![Vec::new(); ACCOUNTS],
        generation: 0,
    };
    for i in 0..ACCOUNTS {
        let pw = format!("pw-{i}-0");
        m.accounts
            .push(Some((pw.clone(), f.account(&name(i), &pw).await)));
    }
    f.set.replace_all(
        m.accounts
            .iter()
            .flatten()
            .map(|(_, r)| r.clone())
            .collect(),
    );
    for op in ops {
        step(&f, &mut m, op).await?;
        check(&f, &m)?;
    }
    Ok(())
}

async fn step(f: &Fixture, m: &mut Model, op: Op) -> Result<(), TestCaseError> {
    // Whatever went stale: its handed-out plaintexts must be dead after the op.
    let mut stale = None;
    match op {
        Op::Use(i) => {
            let got = f.set.credential(&name(i)).await;
            match (&m.accounts[i], m.usable[i]) {
                (Some((pw, _)), true) => {
                    let c = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(c.auth.password().unwrap().expose(), pw.as_str());
                    m.handed[i].push(Arc::downgrade(&c));
                }
                _ => prop_assert!(got.is_err(), "a plaintext for an unusable account"),
            }
        }
        Op::Delete(i) => {
            f.set.remove(&name(i));
            m.accounts[i] = None;
            stale = Some(i);
        }
        Op::Restore(i) | Op::Reseal(i) => {
            m.generation += 1;
            let pw = format!("pw-{i}-{}", m.generation);
            let r = f.account(&name(i), &pw).await;
            f.set.apply(r.clone());
            m.accounts[i] = Some((pw, r));
            m.usable[i] = true;
            stale = Some(i);
        }
        Op::Revoke(i) | Op::Expire(i) => {
            if let Some((_, r)) = &mut m.accounts[i] {
                if matches!(op, Op::Revoke(_)) {
                    r.spec.access.service_accounts = vec!["other".into()];
                } else {
                    r.spec.expires_at = Some(at(-1));
                }
                f.set.apply(r.clone());
                m.usable[i] = false;
                stale = Some(i);
            }
        }
        Op::Tick => {
            f.set.expire();
        }
    }
    if let Some(i) = stale {
        for weak in m.handed[i].drain(..) {
            prop_assert!(
                weak.upgrade().is_none(),
                "stale plaintext of {} alive",
                name(i)
            );
        }
    }
    Ok(())
}

fn check(f: &Fixture, m: &Model) -> Result<(), TestCaseError> {
    prop_assert!(f.set.cached_plaintexts() <= CAPACITY);
    let state = f.set.state();
    for cached in state.cache.names() {
        let i: usize = cached["acct-".len()..].parse().unwrap();
        let Some((pw, resource)) = &m.accounts[i] else {
            return Err(TestCaseError::fail(format!("{cached} cached but deleted")));
        };
        prop_assert!(m.usable[i], "{} cached but unusable", cached);
        let c = state.cache.peek(&cached).unwrap();
        prop_assert!(c.credential.opened_from(resource));
        prop_assert_eq!(c.credential.auth.password().unwrap().expose(), pw.as_str());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn the_cache_stays_bounded_and_never_serves_a_gone_account(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(run(ops))?;
    }
}
