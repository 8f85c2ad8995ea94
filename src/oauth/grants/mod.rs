//! One file per grant type.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

/// True when something issued at `issued_at` falls under any bulk-revocation
/// cut-off ("nothing issued before T is valid").
pub fn cut_off(issued_at: i64, cutoffs: &[Option<i64>]) -> bool {
    cutoffs.iter().flatten().any(|t| issued_at < *t)
}

use super::clients::Client;
use super::tokens::Issued;
use super::OAuthError;
use crate::audit::Actor;
use crate::state::Core;

/// The grant parameters, whichever endpoint they came from.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
}

/// Runs the grant named by `grant_type` for an authenticated client.
pub async fn dispatch(
    core: &Core,
    client: &Client,
    grant_type: &str,
    p: Params,
    actor: &Actor,
) -> Result<Issued, OAuthError> {
    let missing = |what: &str| OAuthError::InvalidRequest(format!("{what} is required"));
    match grant_type {
        "authorization_code" => {
            let code = p.code.ok_or_else(|| missing("code"))?;
            authorization_code::exchange(
                core,
                client,
                &code,
                p.redirect_uri.as_deref(),
                p.code_verifier.as_deref(),
                actor,
            )
            .await
        }
        "refresh_token" => {
            let rt = p.refresh_token.ok_or_else(|| missing("refresh_token"))?;
            refresh_token::refresh(core, client, &rt, actor).await
        }
        "client_credentials" => client_credentials::issue(core, client, p.scope.as_deref()).await,
        "" => Err(missing("grant_type")),
        other => Err(OAuthError::UnsupportedGrantType(format!(
            "grant_type {other:?} is not supported"
        ))),
    }
}
