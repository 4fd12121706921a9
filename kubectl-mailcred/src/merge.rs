//! Multi-document YAML files edited one document at a time: `seal --merge-into` and
//! `reencrypt -f`. A document is found by kind, namespace and name; only its bytes are
//! rewritten, every other byte of the file (other documents, separators, comments) stays.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use anyhow::{Context, bail};
use mailcred_core::crd::MailCredential;
use serde::Deserialize;

use crate::reseal::read_bounded;
use crate::validate::OutputFormat;

/// The identifying fields of one document; anything else (or a document that is not a
/// mapping) makes it "some other document".
#[derive(Deserialize, Default)]
struct Ident {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default)]
    metadata: Option<IdentMeta>,
}

#[derive(Deserialize, Default)]
struct IdentMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// One document: its bytes in the file (without the `---` line before it) and, when it is a
/// MailCredential, its namespace (if written) and name.
pub struct Document {
    pub range: Range<usize>,
    pub credential: Option<(Option<String>, String)>,
}

/// Splits at `---` lines (a `---` followed by nothing, a space or a comment).
pub fn documents(text: &str) -> Vec<Document> {
    let mut bounds = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let separator = body
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '#']));
        if separator {
            bounds.push(start..offset);
            start = offset + line.len();
        }
        offset += line.len();
    }
    bounds.push(start..text.len());
    bounds
        .into_iter()
        .map(|range| {
            let ident: Ident = serde_saphyr::from_str(&text[range.clone()]).unwrap_or_default();
            let credential = match (ident.kind, ident.api_version, ident.metadata) {
                (Some(kind), Some(api), Some(meta))
                    if kind == "MailCredential" && api.starts_with("mailcred.io/") =>
                {
                    meta.name.map(|name| (meta.namespace, name))
                }
                _ => None,
            };
            Document { range, credential }
        })
        .collect()
}

/// Whether a document is `namespace/name`; a document without a namespace is taken to be in
/// the resource's (kustomize and Argo CD set it at apply time).
pub fn is(doc: &Document, namespace: &str, name: &str) -> bool {
    doc.credential
        .as_ref()
        .is_some_and(|(ns, n)| n == name && ns.as_deref().is_none_or(|ns| ns == namespace))
}

/// `--merge-into FILE` must exist (it is edited, not created) and takes YAML.
pub fn check_target(path: &Path, format: OutputFormat) -> anyhow::Result<()> {
    if format != OutputFormat::Yaml {
        bail!("--merge-into writes YAML documents; leave out -o json");
    }
    read_bounded("--merge-into", path).map(|_| ())
}

/// Puts `rendered` (a `---`-prefixed YAML document) in place of the document for the same
/// credential in `path`, or appends it.
pub fn merge_into(path: &Path, resource: &MailCredential, rendered: &str) -> anyhow::Result<()> {
    let text = read_bounded("--merge-into", path)?;
    let namespace = resource.metadata.namespace.as_deref().unwrap_or_default();
    let name = resource.metadata.name.as_deref().unwrap_or_default();
    let body = rendered.strip_prefix("---\n").unwrap_or(rendered);
    let docs = documents(&text);
    let matching: Vec<&Document> = docs.iter().filter(|d| is(d, namespace, name)).collect();
    let merged = match matching.as_slice() {
        [] => {
            let mut out = text.clone();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("---\n");
            out.push_str(body);
            out
        }
        [doc] => replace(&text, &[(doc.range.clone(), body.to_string())]),
        more => bail!(
            "--merge-into {}: {} documents are MailCredential {namespace}/{name}; keep one",
            path.display(),
            more.len()
        ),
    };
    write_replacing(path, &merged)
}

/// `text` with each range replaced (ranges in file order, not overlapping).
pub fn replace(text: &str, edits: &[(Range<usize>, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, body) in edits {
        out.push_str(&text[at..range.start]);
        out.push_str(body);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Writes beside `path` and renames over it, keeping its permissions: a crash leaves the old
/// file or the new one, never half of each.
pub fn write_replacing(path: &Path, text: &str) -> anyhow::Result<()> {
    let perms = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions();
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.mailcred-tmp", file_name.to_string_lossy()));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, perms)
        .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# app manifests\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n---\napiVersion: mailcred.io/v1alpha1\nkind: MailCredential\nmetadata:\n  name: billing\n  namespace: shop\nspec: {}\n--- # the other one\napiVersion: mailcred.io/v1alpha1\nkind: MailCredential\nmetadata:\n  name: orders\nspec: {}\n";

    #[test]
    fn documents_split_at_separator_lines_only() {
        let docs = documents(FILE);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].credential, None);
        assert_eq!(
            docs[1].credential,
            Some((Some("shop".into()), "billing".into()))
        );
        assert_eq!(docs[2].credential, Some((None, "orders".into())));
        assert!(is(&docs[2], "shop", "orders") && !is(&docs[1], "other", "billing"));
        let inline = documents("a: '---'\nb: |\n  ---x\n");
        assert_eq!(inline.len(), 1);
    }

    /// A document body: lines that are never separators (`---` only starts a separator).
    fn body() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec("([a-z:#][a-z:# -]{0,11})?(---[a-z]{1,3})?", 0..5)
            .prop_map(|lines| lines.iter().map(|l| format!("{l}\n")).collect())
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn splitting_and_replacing_one_document_keeps_every_other_byte(
            bodies in proptest::collection::vec(body(), 1..6),
            pick in 0usize..6,
            new in body(),
        ) {
            let text = bodies.join("---\n");
            let docs = documents(&text);
            prop_assert_eq!(docs.len(), bodies.len());
            for (doc, body) in docs.iter().zip(&bodies) {
                prop_assert_eq!(&text[doc.range.clone()], body.as_str());
            }
            let pick = pick % bodies.len();
            let out = replace(&text, &[(docs[pick].range.clone(), new.clone())]);
            let mut expected = bodies.clone();
            expected[pick] = new;
            prop_assert_eq!(out, expected.join("---\n"));
        }
    }

    #[test]
    fn replace_keeps_every_other_byte() {
        let docs = documents(FILE);
        let out = replace(FILE, &[(docs[1].range.clone(), "NEW\n".into())]);
        assert_eq!(
            out,
            FILE.replace(
                "apiVersion: mailcred.io/v1alpha1\nkind: MailCredential\nmetadata:\n  name: billing\n  namespace: shop\nspec: {}\n",
                "NEW\n"
            )
        );
    }
}
