//! The API-token routes (admin only): create (the token is returned once; only a hash of its
//! secret is stored), list, revoke.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use ferry_shared::ModelName;

use crate::api::{CreateToken, TokenCreated, TokenView};
use crate::app::Coordinator;
use crate::http::auth::actor;
use crate::http::replies::{ApiResult, Failure, expiry, parse, random_hex, token_name};
use crate::http::route::Route;
use crate::rules::access::{Action, Caller};
use crate::store::tokens::{TOKEN_PREFIX, TokenRecord, secret_hash};
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        // Even listing tokens (names, roles, scopes) is for admins.
        Route::get("/tokens", Action::Administer, list),
        Route::post("/tokens", Action::Administer, create),
        Route::delete("/tokens/{id}", Action::Administer, revoke),
    ]
}

fn view(id: String, r: TokenRecord) -> TokenView {
    TokenView {
        id,
        name: r.name,
        role: r.role,
        models: r
            .models
            .into_iter()
            .flatten()
            .map(|m| m.to_string())
            .collect(),
        created_at: r.created_at,
        created_by: r.created_by,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
        owner: r.owner,
    }
}

async fn create(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(request): Json<CreateToken>,
) -> Result<(StatusCode, Json<TokenCreated>), Failure> {
    let name = token_name(&request.name)?;
    let models: BTreeSet<ModelName> = request
        .models
        .iter()
        .map(|m| parse(m))
        .collect::<Result<_, _>>()?;
    let now = unix_now();
    let (id, secret) = (random_hex(8)?, random_hex(32)?);
    let record = TokenRecord {
        name: name.to_owned(),
        role: request.role,
        models: (!models.is_empty()).then_some(models),
        hash: secret_hash(&secret),
        created_at: now,
        created_by: actor(&caller, &headers),
        expires_at: expiry(now, "expires_days", request.expires_days, 86_400, "days")?,
        revoked_at: None,
        owner: match request.owner.as_deref() {
            Some(owner) => token_name(owner)
                .map_err(|_| {
                    Failure(
                        StatusCode::BAD_REQUEST,
                        "a token's owner must be 1 to 64 printable characters".into(),
                    )
                })?
                .to_owned(),
            None => name.to_owned(),
        },
    };
    app.store.create_token(&id, &record)?;
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token,
            view: view(id, record),
        }),
    ))
}

async fn list(State(app): State<Arc<Coordinator>>) -> ApiResult<Vec<TokenView>> {
    Ok(Json(
        app.store
            .tokens()?
            .into_iter()
            .map(|(id, r)| view(id, r))
            .collect(),
    ))
}

async fn revoke(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, Failure> {
    if app
        .store
        .revoke_token(&id, &actor(&caller, &headers), unix_now())?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Failure(StatusCode::NOT_FOUND, format!("no token {id}")))
    }
}
