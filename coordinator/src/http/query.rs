//! Which admin routes read a query string. A query sent to a route that reads none is
//! refused (400) instead of ignored, and the routes that do read one refuse keys they do not
//! know (their query types deny unknown fields): `?nmae=x` never quietly lists everything.

use axum::http::Method;

/// The routes (method, matched path under `/api/v1`) whose handlers read a query string.
const READ_QUERIES: &[(Method, &str)] = &[
    (Method::GET, "/releases"),
    (Method::POST, "/releases"),
    (Method::GET, "/aliases"),
    (Method::GET, "/fleet/status"),
    (Method::GET, "/fleet/fragmentation"),
    (Method::GET, "/audit"),
    (Method::GET, "/audit/verify"),
    (Method::GET, "/datasets/{id}/impact"),
    (Method::GET, "/trust/snapshot"),
];

/// Refuses a non-empty query on a route that reads none; names the route.
pub(crate) fn refuse_unread(
    method: &Method,
    route: &str,
    query: Option<&str>,
) -> Result<(), String> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(());
    };
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    if READ_QUERIES.iter().any(|(m, r)| m == method && *r == route) {
        return Ok(());
    }
    Err(format!(
        "{method} /api/v1{route} takes no query parameters (got `?{}`)",
        query.chars().take(200).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_that_reads_no_query_refuses_one() {
        assert!(refuse_unread(&Method::GET, "/api/v1/devices", Some("model=x")).is_err());
        assert!(
            refuse_unread(
                &Method::PUT,
                "/api/v1/aliases/{name}/{alias}",
                Some("force=1")
            )
            .is_err()
        );
        assert!(refuse_unread(&Method::GET, "/api/v1/devices", None).is_ok());
        assert!(refuse_unread(&Method::GET, "/api/v1/devices", Some("")).is_ok());
    }

    #[test]
    fn routes_that_read_a_query_pass_it_on() {
        assert!(refuse_unread(&Method::GET, "/api/v1/releases", Some("name=x")).is_ok());
        assert!(refuse_unread(&Method::POST, "/api/v1/releases", Some("reason=x")).is_ok());
        assert!(refuse_unread(&Method::DELETE, "/api/v1/releases", Some("name=x")).is_err());
    }
}
