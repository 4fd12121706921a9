//! `kubectl mailcred authorize`: flags refused before any request (validation), the loopback
//! redirect's refusals and bounds (loopback), and both flows end to end against the real
//! oidc-provider of the test peers (peers; ignored without them).

mod loopback;
mod peers;
mod support;
mod validation;
