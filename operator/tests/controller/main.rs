//! The reconciler against kube's mock API service: exact requests, exact Role/RoleBinding,
//! status conditions, Events, and no status patch when nothing changed.

mod access;
mod api_errors;
mod applies;
#[path = "../common/mod.rs"]
mod common;
mod endpoints;
mod policy;
mod sealed_secret;
mod status_changes;
mod support;
