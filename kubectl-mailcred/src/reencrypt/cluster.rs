//! `reencrypt` against the cluster (kubeconfig): GET or LIST (paged), re-encrypt, then PUT
//! with the resourceVersion that was read. A 409 means the object changed since: it is read
//! again; if its sealed secret changed too (someone re-sealed it), it is left alone and
//! reported, else the re-encryption is redone on the fresh object and written once more.

use anyhow::Context;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use mailcred_core::crd::MailCredential;
use mailcred_core::kms::KmsProviders;

use super::{Outcome, ReencryptArgs, Report, Target, id, openers, reseal};
use crate::kubeconfig;

/// Objects per LIST page: bounds memory however many credentials the cluster holds.
const PAGE: u32 = 100;

pub async fn run(args: &ReencryptArgs, target: &Target) -> anyhow::Result<Report> {
    let client = Client::try_default()
        .await
        .context("cannot load the Kubernetes client configuration (kubeconfig)")?;
    let namespace = match &args.namespace {
        Some(ns) => ns.clone(),
        None => kubeconfig::namespace(kubeconfig::path_from_env().as_deref())?,
    };
    run_with(client, &namespace, args, target).await
}

/// Everything after the client is made (tests give a mock one).
pub async fn run_with(
    client: Client,
    namespace: &str,
    args: &ReencryptArgs,
    target: &Target,
) -> anyhow::Result<Report> {
    let api: Api<MailCredential> = if args.all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    };
    let mut report = Report::new();
    if let Some(name) = &args.name {
        let resource = api
            .get(name)
            .await
            .with_context(|| format!("cannot read MailCredential {namespace}/{name}"))?;
        let providers = providers(args, &[&resource], target).await?;
        let id = id(&resource);
        let outcome = move_one(&client, resource, &providers, target, args.dry_run).await;
        report.push((id, outcome));
        return Ok(report);
    }
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api
            .list(&params)
            .await
            .context("cannot list MailCredentials")?;
        let refs: Vec<&MailCredential> = page.items.iter().collect();
        let providers = providers(args, &refs, target).await?;
        for resource in page.items.iter().cloned() {
            let id = id(&resource);
            let outcome = move_one(&client, resource, &providers, target, args.dry_run).await;
            report.push((id, outcome));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(report)
}

async fn providers(
    args: &ReencryptArgs,
    resources: &[&MailCredential],
    target: &Target,
) -> anyhow::Result<KmsProviders> {
    if args.dry_run {
        return Ok(KmsProviders::default());
    }
    openers(args, resources, target).await
}

/// One credential: re-encrypt, PUT with its resourceVersion, and on 409 at most one retry.
pub async fn move_one(
    client: &Client,
    resource: MailCredential,
    providers: &KmsProviders,
    target: &Target,
    dry_run: bool,
) -> anyhow::Result<Outcome> {
    let namespace = resource
        .metadata
        .namespace
        .clone()
        .context("the API returned a MailCredential without a namespace")?;
    let name = resource
        .metadata
        .name
        .clone()
        .context("the API returned a MailCredential without a name")?;
    let api: Api<MailCredential> = Api::namespaced(client.clone(), &namespace);
    let (outcome, sealed) = reseal(&resource, providers, target, dry_run).await?;
    let Some(sealed) = sealed else {
        return Ok(outcome);
    };
    let original = resource.spec.sealed_secret.clone();
    let mut updated = resource;
    updated.spec.sealed_secret = Some(sealed);
    match api.replace(&name, &PostParams::default(), &updated).await {
        Ok(_) => return Ok(outcome),
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(e).with_context(|| format!("cannot write {namespace}/{name}")),
    }
    let fresh = api
        .get(&name)
        .await
        .with_context(|| format!("cannot re-read {namespace}/{name} after a conflict"))?;
    if fresh.spec.sealed_secret != original {
        return Ok(Outcome::ChangedMeanwhile);
    }
    // Only other fields changed: redo it on what is there now (its binding may differ).
    let (outcome, sealed) = reseal(&fresh, providers, target, false).await?;
    let Some(sealed) = sealed else {
        return Ok(outcome);
    };
    let mut updated = fresh;
    updated.spec.sealed_secret = Some(sealed);
    api.replace(&name, &PostParams::default(), &updated)
        .await
        .with_context(|| {
            format!("cannot write {namespace}/{name} (second attempt after a conflict)")
        })?;
    Ok(outcome)
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
