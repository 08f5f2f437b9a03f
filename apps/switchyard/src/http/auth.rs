//! Authentication and authorisation at the edge. Each operation's `security` in its
//! `#[utoipa::path]` says what it needs, once, for the document and for the check:
//! `security(())` is public, `security(("session" = []))` needs a session, and
//! `security(("session" = ["catalog.write"]))` a session whose roles grant the
//! ability (several entries are alternatives). [`authorize`] runs before every handler
//! (before its body is read): no valid bearer session answers 401, a missing ability
//! 403, and the handler can take the [`Caller`].

use std::collections::{BTreeSet, HashMap};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use identity::{Account, Session, SessionToken};
use orders::CustomerId;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ProblemType};

/// The security scheme's name in the document.
pub(crate) const SCHEME: &str = "session";

/// What an operation requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// Nothing: anyone may call it.
    Public,
    /// A session whose abilities include every ability of at least one of these sets
    /// (an empty set: any session).
    AnyOf(Vec<BTreeSet<String>>),
}

/// Every operation's [`Access`], by method and route template, read from the document.
#[derive(Debug, Default)]
pub(crate) struct AccessTable(HashMap<(Method, String), Access>);

impl AccessTable {
    /// The table of `document`.
    ///
    /// # Panics
    /// If an operation has no `security`: each must say what it requires, so that no
    /// route is public by omission. The router is built at start (and in every test
    /// that serves a request), so the omission is found before anything is served.
    pub(crate) fn from_document(document: &Value) -> Self {
        let mut table = HashMap::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let access = access_of(operation).unwrap_or_else(|| {
                    panic!(
                        "{} {path} declares no `security`: add `security(())` if it is public",
                        method.to_uppercase()
                    )
                });
                let method = Method::from_bytes(method.to_uppercase().as_bytes())
                    .expect("the document's methods are HTTP methods");
                table.insert((method, path.clone()), access);
            }
        }
        Self(table)
    }

    /// What `method` on `route` requires; a route it does not know requires a session
    /// with no ability (none exists: the document lists every route).
    pub(crate) fn get(&self, method: &Method, route: &str) -> Access {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0
            .get(&(method.clone(), route.to_owned()))
            .cloned()
            .unwrap_or_else(|| Access::AnyOf(vec![BTreeSet::new()]))
    }
}

/// An operation's access, from its `security` (`None` if it has none).
pub(crate) fn access_of(operation: &Value) -> Option<Access> {
    let requirements = operation.get("security")?.as_array()?;
    let mut any_of = Vec::new();
    for requirement in requirements {
        let requirement = requirement.as_object()?;
        match requirement.get(SCHEME) {
            // `{}`: anonymous access is allowed.
            None if requirement.is_empty() => return Some(Access::Public),
            Some(abilities) => any_of.push(
                abilities
                    .as_array()?
                    .iter()
                    .map(|a| a.as_str().map(str::to_owned))
                    .collect::<Option<BTreeSet<_>>>()?,
            ),
            None => return None,
        }
    }
    (!any_of.is_empty()).then_some(Access::AnyOf(any_of))
}

/// Who is calling: a valid session, its account (which may log in) and the abilities
/// its roles grant.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) account: Account,
    pub(crate) session: Session,
    abilities: BTreeSet<identity::Ability>,
}

impl Caller {
    /// Whether the caller's roles grant `ability`.
    pub(crate) fn can(&self, ability: &str) -> bool {
        self.abilities.iter().any(|held| held.grants(ability))
    }

    /// The caller as the orders domain's customer: the account's id.
    pub(crate) fn customer_id(&self) -> CustomerId {
        CustomerId::parse(&self.account.id.to_string()).expect("a UUID is a customer id")
    }
}

/// The [`Caller`] of an operation that requires a session ([`authorize`] found it).
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| unauthenticated("this operation needs a session"))
    }
}

/// 401, with the `WWW-Authenticate` challenge RFC 6750 asks for.
pub(crate) fn unauthenticated(detail: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        ProblemType::Unauthenticated,
        "Authentication required",
        detail,
    )
    .header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"switchyard\""),
    )
}

/// The token of an `Authorization: Bearer …` header: `Ok(None)` without the header.
fn bearer(parts: &axum::http::HeaderMap) -> Result<Option<SessionToken>, ApiError> {
    let Some(value) = parts.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || unauthenticated("send `Authorization: Bearer <token>` with a session token");
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed());
    }
    SessionToken::parse(token.trim())
        .map(Some)
        .ok_or_else(|| unauthenticated("the session is unknown, expired or ended"))
}

/// Middleware on every route: checks the operation's [`Access`] before the handler
/// runs, and hands the handler the [`Caller`].
pub(crate) async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let Access::AnyOf(any_of) = state.access.get(request.method(), &route) else {
        return next.run(request).await;
    };
    match caller(&state, request.headers()).await {
        Ok(caller) => {
            let allowed = any_of
                .iter()
                .any(|needed| needed.iter().all(|ability| caller.can(ability)));
            if !allowed {
                return forbidden(&any_of).into_response();
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(problem) => problem.into_response(),
    }
}

async fn caller(state: &AppState, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers)?.ok_or_else(|| {
        unauthenticated("this operation needs a session: log in with `POST /api/sessions`")
    })?;
    let conn = state.fabric.connection(identity::SCHEMA)?;
    let identity::Authenticated { session, account } =
        identity::authenticate(conn, &token, state.now())
            .await?
            .ok_or_else(|| unauthenticated("the session is unknown, expired or ended"))?;
    let abilities = identity::abilities_of(conn, account.id).await?;
    Ok(Caller {
        account,
        session,
        abilities,
    })
}

fn forbidden(any_of: &[BTreeSet<String>]) -> ApiError {
    let needs: Vec<String> = any_of
        .iter()
        .map(|set| set.iter().cloned().collect::<Vec<_>>().join(" and "))
        .collect();
    ApiError::forbidden(
        ProblemType::Forbidden,
        "Forbidden",
        format!(
            "this operation needs the ability {}; the session's roles do not grant it",
            needs.join(" or ")
        ),
    )
    .with("required", json!(any_of))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::Config;
    use crate::http::testing::{bearer, sqlite_router};

    async fn send(
        router: &axum::Router,
        method: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, Value, Option<HeaderValue>) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::from("{}")).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).cloned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
            challenge,
        )
    }

    fn refused(status: StatusCode) -> bool {
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
    }

    /// Walks every operation of the document (the router serves exactly these: see
    /// `every_route_and_method_the_router_serves_is_in_the_document`): without a
    /// session, with a session without abilities, with every ability but the needed
    /// ones, and with just the needed ones.
    #[tokio::test]
    async fn every_route_refuses_callers_without_a_session_or_without_its_ability() {
        let config = Config::default();
        let (router, db) = sqlite_router(&config, std::time::Duration::from_secs(1)).await;
        let fabric = db.fabric();
        let document = crate::http::document(&config);
        let mut walked = 0;
        let mut private = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                walked += 1;
                let method = method.to_uppercase();
                let what = format!("{method} {path}");
                let concrete = path
                    .replace("{sku}", "NO-SUCH")
                    .replace("{id}", &uuid::Uuid::now_v7().to_string())
                    .replace("{role}", "admin");
                let access = access_of(operation).unwrap();
                let (status, body, challenge) = send(&router, &method, &concrete, None).await;
                let Access::AnyOf(any_of) = access else {
                    assert!(!refused(status), "{what} is public: {status} {body}");
                    continue;
                };
                private += 1;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
                assert_eq!(body["type"], "urn:switchyard:problem:unauthenticated");
                assert!(challenge.is_some(), "{what}: no WWW-Authenticate");
                let garbage = send(&router, &method, &concrete, Some("Bearer nope")).await;
                assert_eq!(garbage.0, StatusCode::UNAUTHORIZED, "{what}");
                let unknown = format!("Bearer {}", "0".repeat(64));
                let unknown = send(&router, &method, &concrete, Some(&unknown)).await;
                assert_eq!(unknown.0, StatusCode::UNAUTHORIZED, "{what}");

                let needs_an_ability = any_of.iter().all(|set| !set.is_empty());
                let needed: BTreeSet<&str> = any_of.iter().flatten().map(String::as_str).collect();
                let others: Vec<&str> = identity::ABILITIES
                    .iter()
                    .copied()
                    .filter(|a| !needed.contains(a))
                    .collect();
                for abilities in [&[][..], &others[..]] {
                    let session = bearer(fabric, abilities).await;
                    let (status, body, _) = send(&router, &method, &concrete, Some(&session)).await;
                    if needs_an_ability {
                        assert_eq!(
                            status,
                            StatusCode::FORBIDDEN,
                            "{what} with {abilities:?}: {body}"
                        );
                        assert_eq!(body["type"], "urn:switchyard:problem:forbidden");
                    } else {
                        assert!(
                            !refused(status),
                            "{what} with {abilities:?}: {status} {body}"
                        );
                    }
                }
                let everything = bearer(fabric, &[identity::EVERY_ABILITY]).await;
                let (status, body, _) = send(&router, &method, &concrete, Some(&everything)).await;
                assert!(!refused(status), "{what} with `*`: {status} {body}");
                for set in &any_of {
                    let abilities: Vec<&str> = set.iter().map(String::as_str).collect();
                    let session = bearer(fabric, &abilities).await;
                    let (status, body, _) = send(&router, &method, &concrete, Some(&session)).await;
                    assert!(
                        !refused(status),
                        "{what} with {abilities:?}: {status} {body}"
                    );
                }
            }
        }
        assert!(
            walked > 20 && private > 15,
            "{walked} operations, {private} private"
        );
    }

    #[test]
    fn an_operation_without_security_is_refused_when_the_router_is_built() {
        let document = json!({ "paths": { "/x": { "get": { "responses": {} } } } });
        let built = std::panic::catch_unwind(|| AccessTable::from_document(&document));
        assert!(built.is_err());
        let public = json!({ "security": [{}] });
        assert_eq!(access_of(&public), Some(Access::Public));
        let either = json!({ "security": [{ "session": ["a.b"] }, { "session": [] }] });
        assert_eq!(
            access_of(&either),
            Some(Access::AnyOf(vec![
                BTreeSet::from(["a.b".to_owned()]),
                BTreeSet::new()
            ]))
        );
        assert_eq!(access_of(&json!({ "security": [{ "other": [] }] })), None);
    }
}
