use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;

use crate::{Caller, TokenKeys};

/// Paths served without a token: health checks (Kubernetes probes) and reflection (tooling).
const PUBLIC_PREFIXES: &[&str] = &["/grpc.health.v1.", "/grpc.reflection."];

/// Tower layer that verifies the `authorization: Bearer …` header of every call and stores the [`Caller`] in the
/// request's extensions. Calls without a valid token get UNAUTHENTICATED.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    keys: Arc<TokenKeys>,
}

impl AuthLayer {
    /// A layer verifying tokens with `keys`.
    pub fn new(keys: Arc<TokenKeys>) -> Self {
        Self { keys }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// The service [`AuthLayer`] produces.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    keys: Arc<TokenKeys>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if PUBLIC_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            return Box::pin(self.inner.call(request));
        }
        match authenticate(&self.keys, request.headers()) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

fn authenticate(keys: &TokenKeys, headers: &http::HeaderMap) -> Result<Caller, Status> {
    let header = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Status::unauthenticated("missing authorization header with a bearer token")
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("authorization header must be: Bearer <token>"))?;
    keys.verify(token.trim())
        .map_err(|err| Status::unauthenticated(err.to_string()))
}

/// The verified caller of a gRPC request, as stored by [`AuthLayer`].
pub fn caller<T>(request: &tonic::Request<T>) -> Result<&Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated("request was not authenticated"))
}
