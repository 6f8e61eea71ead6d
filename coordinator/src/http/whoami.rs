//! `GET /api/v1/whoami`: who the presented token authenticates as and what its role allows,
//! for a console to offer only those actions. Every action route still checks on its own.

use axum::{Extension, Json};

use crate::api::Whoami;
use crate::http::replies::ApiResult;
use crate::http::route::Route;
use crate::rules::access::{Action, Caller, allows};

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![Route::get("/whoami", Action::Read, whoami)]
}

async fn whoami(Extension(caller): Extension<Caller>) -> ApiResult<Whoami> {
    Ok(Json(Whoami {
        may: Action::ALL
            .into_iter()
            .filter(|a| allows(caller.role, *a))
            .map(|a| a.as_str().to_owned())
            .collect(),
        models: caller
            .models
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect(),
        name: caller.name,
        owner: caller.owner,
        role: caller.role,
    }))
}
