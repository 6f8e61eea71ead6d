//! A route of the admin API, declared once beside its handler with everything the router
//! needs to guard it: method, path, the action the caller's role must allow (or the path
//! parameter whose value picks it), the path parameter that names the model (checked against
//! a scoped token before the handler runs), and whether the handler reads a query string.
//! The router is built from these declarations only ([`crate::http::router::routes`]), so a
//! route cannot exist without its permission, and the permission tests walk the same table.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::app::Coordinator;
use crate::rules::access::Action;

/// What a route requires of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The action the caller's role must allow, unless [`Rule::picked_by`] picks another.
    pub action: Action,
    /// A path parameter whose value picks the action: `(parameter, [(value, action), …])`;
    /// any other value keeps [`Rule::action`].
    pub picked_by: Option<(&'static str, &'static [(&'static str, Action)])>,
    /// The path parameter naming the model, if the path names one: a scoped caller is checked
    /// against it before the handler runs. Routes whose model is in the body or a record
    /// check the scope in the handler, once they know it.
    pub model_param: Option<&'static str>,
    /// Whether the handler reads a query string. Any other route refuses one (400) rather
    /// than ignore it, so a misspelt key never quietly lists everything; the routes that read
    /// one refuse keys they do not know (their query types deny unknown fields).
    pub reads_query: bool,
}

impl Rule {
    /// The action a request needs, given its path parameters (`param(name)`).
    pub fn action_for(&self, param: impl Fn(&str) -> Option<String>) -> Action {
        self.picked_by
            .and_then(|(name, cases)| {
                let value = param(name)?;
                cases.iter().find(|(v, _)| *v == value).map(|(_, a)| *a)
            })
            .unwrap_or(self.action)
    }
}

/// One route under `/api/v1`: its declaration, and the handler the router guards with it.
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path under `/api/v1`, in the router's syntax (`/releases/{name}/{version}`).
    pub path: &'static str,
    /// What it requires.
    pub rule: Rule,
    pub(crate) handler: MethodRouter<Arc<Coordinator>>,
}

impl Route {
    fn on<H, T>(
        method: Method,
        filter: MethodFilter,
        path: &'static str,
        action: Action,
        handler: H,
    ) -> Self
    where
        H: Handler<T, Arc<Coordinator>>,
        T: 'static,
    {
        Route {
            method,
            path,
            rule: Rule {
                action,
                picked_by: None,
                model_param: None,
                reads_query: false,
            },
            handler: on(filter, handler),
        }
    }

    /// A `GET` route needing `action`.
    pub(crate) fn get<H, T>(path: &'static str, action: Action, handler: H) -> Self
    where
        H: Handler<T, Arc<Coordinator>>,
        T: 'static,
    {
        Self::on(Method::GET, MethodFilter::GET, path, action, handler)
    }

    /// A `POST` route needing `action`.
    pub(crate) fn post<H, T>(path: &'static str, action: Action, handler: H) -> Self
    where
        H: Handler<T, Arc<Coordinator>>,
        T: 'static,
    {
        Self::on(Method::POST, MethodFilter::POST, path, action, handler)
    }

    /// A `PUT` route needing `action`.
    pub(crate) fn put<H, T>(path: &'static str, action: Action, handler: H) -> Self
    where
        H: Handler<T, Arc<Coordinator>>,
        T: 'static,
    {
        Self::on(Method::PUT, MethodFilter::PUT, path, action, handler)
    }

    /// A `DELETE` route needing `action`.
    pub(crate) fn delete<H, T>(path: &'static str, action: Action, handler: H) -> Self
    where
        H: Handler<T, Arc<Coordinator>>,
        T: 'static,
    {
        Self::on(Method::DELETE, MethodFilter::DELETE, path, action, handler)
    }

    /// The handler reads a query string.
    pub(crate) fn reads_query(mut self) -> Self {
        self.rule.reads_query = true;
        self
    }

    /// Path parameter `param` names the model.
    pub(crate) fn model_in(mut self, param: &'static str) -> Self {
        self.rule.model_param = Some(param);
        self
    }

    /// Path parameter `param` picks the action: `cases` give the action for some values.
    pub(crate) fn action_picked_by(
        mut self,
        param: &'static str,
        cases: &'static [(&'static str, Action)],
    ) -> Self {
        self.rule.picked_by = Some((param, cases));
        self
    }

    /// The body is not held to the API's size limit (artifact uploads, which stream to the
    /// spool under their own limit).
    pub(crate) fn body_unlimited(mut self) -> Self {
        self.handler = self.handler.layer(DefaultBodyLimit::disable());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_parameter_picks_the_action_only_for_its_listed_values() {
        let rule = Rule {
            action: Action::SetAlias,
            picked_by: Some(("alias", &[("prod", Action::Promote)])),
            model_param: Some("name"),
            reads_query: false,
        };
        let with = |alias: &'static str| move |p: &str| (p == "alias").then(|| alias.to_owned());
        assert_eq!(rule.action_for(with("prod")), Action::Promote);
        assert_eq!(rule.action_for(with("staging")), Action::SetAlias);
        assert_eq!(rule.action_for(|_| None), Action::SetAlias);
    }
}
