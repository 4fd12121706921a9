//! Where the grant goes: the token endpoint of `spec.oauth`, and the device or authorization
//! endpoint from the provider preset or the flag. Each is checked as the sidecar checks the
//! token endpoint (https unless spec.oauth.insecure, no credentials in the URL).

use anyhow::bail;
use mailcred_core::crd::{OAuthProvider, OAuthSpec};
use mailcred_oauth::http::Endpoint;

use super::Flow;

const GOOGLE_DEVICE: &str = "https://oauth2.googleapis.com/device/code";
const GOOGLE_AUTHORIZE: &str = "https://accounts.google.com/o/oauth2/v2/auth";

pub struct Endpoints {
    pub token: Endpoint,
    /// The device authorization endpoint (device flow).
    pub device: Option<Endpoint>,
    /// The authorization endpoint URL the person opens (code flow).
    pub authorization: Option<String>,
    /// Google returns a refresh token only with `access_type=offline`.
    pub google: bool,
}

fn microsoft(spec: &OAuthSpec, path: &str) -> anyhow::Result<String> {
    let Some(tenant) = &spec.tenant else {
        bail!("--tenant is required with --oauth-provider microsoft");
    };
    Ok(format!(
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/{path}"
    ))
}

fn preset(spec: &OAuthSpec, flow: Flow, given: Option<&str>) -> anyhow::Result<String> {
    let flag = match flow {
        Flow::Device => "--device-endpoint",
        Flow::Code => "--authorization-endpoint",
    };
    if let Some(url) = given {
        return Ok(url.to_string());
    }
    match (spec.provider, flow) {
        (OAuthProvider::Microsoft, Flow::Device) => microsoft(spec, "devicecode"),
        (OAuthProvider::Microsoft, Flow::Code) => microsoft(spec, "authorize"),
        (OAuthProvider::Google, Flow::Device) => Ok(GOOGLE_DEVICE.into()),
        (OAuthProvider::Google, Flow::Code) => Ok(GOOGLE_AUTHORIZE.into()),
        (OAuthProvider::Generic, _) => {
            bail!("{flag} is required with --oauth-provider generic")
        }
    }
}

impl Endpoints {
    pub fn resolve(
        flow: Flow,
        spec: &OAuthSpec,
        device: Option<&str>,
        authorization: Option<&str>,
    ) -> anyhow::Result<Self> {
        match (flow, device, authorization) {
            (Flow::Device, _, Some(_)) => {
                bail!(
                    "--authorization-endpoint is for --flow code; the device flow uses --device-endpoint"
                )
            }
            (Flow::Code, Some(_), _) => {
                bail!(
                    "--device-endpoint is for --flow device; the code flow uses --authorization-endpoint"
                )
            }
            _ => {}
        }
        let check = |flag: &str, url: &str| -> anyhow::Result<Endpoint> {
            Endpoint::parse(url, spec.ca_pem.as_deref(), spec.insecure)
                .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        };
        let token = check("--token-endpoint", &spec.token_endpoint_url()?)?;
        let google = spec.provider == OAuthProvider::Google;
        Ok(match flow {
            Flow::Device => {
                let url = preset(spec, flow, device)?;
                Self {
                    token,
                    device: Some(check("--device-endpoint", &url)?),
                    authorization: None,
                    google,
                }
            }
            Flow::Code => {
                let url = preset(spec, flow, authorization)?;
                check("--authorization-endpoint", &url)?;
                if url.contains('#') {
                    bail!("--authorization-endpoint {url:?} must not have a #fragment");
                }
                Self {
                    token,
                    device: None,
                    authorization: Some(url),
                    google,
                }
            }
        })
    }
}
