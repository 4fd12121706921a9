//! `reencrypt -f FILE...`: each MailCredential document of each file is re-encrypted and
//! rewritten in place (or into `-w FILE`); every other byte of the file stays as it was.

use mailcred_core::credential::from_yaml;

use super::{Outcome, ReencryptArgs, Report, Target, id, openers, reseal};
use crate::merge::{self, documents};
use crate::reseal::read_bounded;
use crate::seal::render;
use crate::validate::OutputFormat;

pub async fn run(args: &ReencryptArgs, target: &Target) -> anyhow::Result<Report> {
    let mut report = Report::new();
    for path in &args.files {
        let text = read_bounded("-f", path)?;
        let mut selected = Vec::new();
        for doc in documents(&text) {
            let Some((namespace, name)) = &doc.credential else {
                continue;
            };
            let wanted = args.name.as_deref().is_none_or(|n| n == name)
                && args
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| namespace.as_deref().is_none_or(|d| d == ns));
            if wanted {
                let resource = from_yaml(&text[doc.range.clone()])
                    .map_err(|e| anyhow::anyhow!("-f {}: {e}", path.display()))?;
                selected.push((doc.range, resource));
            }
        }
        let resources: Vec<_> = selected.iter().map(|(_, r)| r).collect();
        let providers = if args.dry_run {
            Default::default()
        } else {
            openers(args, &resources, target).await?
        };
        let mut edits = Vec::new();
        for (range, mut resource) in selected {
            // The secret is bound to a namespace; a document that omits it (kustomize sets it
            // at build time) takes -n, and is written back without it.
            let implicit_namespace = resource.metadata.namespace.is_none();
            if implicit_namespace {
                let Some(namespace) = &args.namespace else {
                    report.push((
                        format!("{}: {}", path.display(), id(&resource)),
                        Err(anyhow::anyhow!(
                            "metadata.namespace is missing, and the sealed secret is bound to one: give -n NAMESPACE"
                        )),
                    ));
                    continue;
                };
                resource.metadata.namespace = Some(namespace.clone());
            }
            let label = format!("{}: {}", path.display(), id(&resource));
            match reseal(&resource, &providers, target, args.dry_run).await {
                Ok((outcome, Some(sealed))) => {
                    resource.spec.sealed_secret = Some(sealed);
                    if implicit_namespace {
                        resource.metadata.namespace = None;
                    }
                    let rendered = render(&resource, OutputFormat::Yaml)?;
                    let body = rendered.strip_prefix("---\n").unwrap_or(&rendered);
                    edits.push((range, body.to_string()));
                    report.push((label, Ok(outcome)));
                }
                Ok((outcome, None)) => report.push((label, Ok(outcome))),
                Err(e) => report.push((label, Err(e))),
            }
        }
        let out = args.write.as_ref().unwrap_or(path);
        if edits.is_empty() {
            if out != path && !args.dry_run {
                // -w asked for a result: it is the input unchanged.
                crate::seal::write_file(out, &text)?;
            }
            continue;
        }
        let merged = merge::replace(&text, &edits);
        if out == path {
            merge::write_replacing(path, &merged)?;
        } else {
            crate::seal::write_file(out, &merged)?;
        }
    }
    if report
        .iter()
        .all(|(_, r)| matches!(r, Ok(Outcome::NotSealed)))
        && !report.is_empty()
    {
        anyhow::bail!("none of the selected credentials holds a sealed secret");
    }
    Ok(report)
}
