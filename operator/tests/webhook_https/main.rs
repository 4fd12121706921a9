//! The admission webhook end to end: real AdmissionReview JSON over HTTPS on loopback, with a
//! serving certificate from the operator's own CA code, trusted by the client through that CA.

#[path = "../common/mod.rs"]
mod common;
mod injection;
mod protocol;
mod refusals;
mod support;
