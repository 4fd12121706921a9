//! The real `mailcred-operator` binary, wired as in production, against a fake API server
//! (plain HTTP on loopback, reached through a kubeconfig): it reconciles a credential, creates
//! its webhook certificate Secret and patches caBundle, turns ready, injects a pod over HTTPS
//! with the certificate it made, exports metrics, and exits cleanly on SIGTERM.

#[path = "../common/mod.rs"]
mod common;
mod failover;
mod fake_api;
mod operator_process;
mod single_replica;
