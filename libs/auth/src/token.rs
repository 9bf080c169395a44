use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::TenantId;

/// The claims of a Boomerang bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who holds the token, for logs and audit (a service account or a person).
    pub sub: String,
    /// Tenant ids the holder may act for; `*` means every tenant (for internal service accounts).
    pub tenants: Vec<String>,
    /// Scopes such as `ingestion.write`; `ingestion.*` grants every scope of a service and `*` every scope.
    pub scopes: Vec<String>,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: u64,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The signing secret is too short to be safe.
    #[error("the token secret must be at least 32 bytes, got {0}")]
    WeakSecret(usize),
    /// The token is malformed, forged or expired.
    #[error("invalid bearer token: {0}")]
    InvalidToken(#[from] jsonwebtoken::errors::Error),
    /// A scope or tenant in the request to mint a token is malformed.
    #[error("invalid claim: {0}")]
    InvalidClaim(String),
}

/// Tokens remembered as verified; past this many the memory starts over.
const VERIFIED_CAPACITY: usize = 4096;

/// Signs and verifies tokens with one shared secret (stored by operators as a Kubernetes Secret).
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens whose signature has been checked, by their exact text: a caller sends the same token with every call,
    /// and checking it again (base64, HMAC, JSON) was a tenth of a cached read's time. Expiry is checked on every use.
    verified: Arc<Mutex<HashMap<Box<str>, Arc<Claims>>>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Keys from a secret of at least 32 bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < 32 {
            return Err(AuthError::WeakSecret(secret.len()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
        })
    }

    /// Mints a token for `subject` that is valid for `ttl`.
    pub fn mint(
        &self,
        subject: &str,
        tenants: &[String],
        scopes: &[String],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        for tenant in tenants {
            if tenant != "*" {
                TenantId::parse(tenant)
                    .map_err(|err| AuthError::InvalidClaim(format!("tenant {tenant:?}: {err}")))?;
            }
        }
        for scope in scopes {
            if !valid_scope(scope) {
                return Err(AuthError::InvalidClaim(format!(
                    "scope {scope:?} must look like service.access, service.* or *"
                )));
            }
        }
        let now = unix_now();
        let claims = Claims {
            sub: subject.to_owned(),
            tenants: tenants.to_vec(),
            scopes: scopes.to_vec(),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies a token's signature and expiry and returns who is calling.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let known = self.verified().get(token).cloned();
        // The same expiry rule as the full check, leeway included; an expired token takes the full check, which
        // refuses it with the library's reason.
        if let Some(claims) = known
            && claims.exp + self.validation.leeway >= unix_now()
        {
            return Ok(Caller { claims });
        }
        let claims = Arc::new(
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims,
        );
        let mut verified = self.verified();
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(token.into(), claims.clone());
        Ok(Caller { claims })
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Claims>>> {
        // The map holds only checked tokens, whole; one left by a panicking thread is still right.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn valid_scope(scope: &str) -> bool {
    if scope == "*" {
        return true;
    }
    let Some((service, access)) = scope.split_once('.') else {
        return false;
    };
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    word(service) && (access == "*" || word(access))
}

/// A verified caller, as the auth layer puts it into each request.
#[derive(Debug, Clone)]
pub struct Caller {
    claims: Arc<Claims>,
}

impl Caller {
    /// The token's subject.
    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    /// Whether the caller may act for `tenant`.
    pub fn may_act_for(&self, tenant: &TenantId) -> bool {
        self.claims
            .tenants
            .iter()
            .any(|t| t == "*" || t == tenant.as_str())
    }

    /// Whether the caller may act for every tenant.
    pub fn all_tenants(&self) -> bool {
        self.claims.tenants.iter().any(|t| t == "*")
    }

    /// The tenants the caller is limited to, or `None` when it may act for all.
    pub fn tenants(&self) -> Option<&[String]> {
        (!self.all_tenants()).then_some(self.claims.tenants.as_slice())
    }

    /// Whether the token grants `scope` (for example `ingestion.write`).
    pub fn has_scope(&self, scope: &str) -> bool {
        let service = scope.split_once('.').map_or(scope, |(service, _)| service);
        self.claims.scopes.iter().any(|granted| {
            granted == "*"
                || granted == scope
                || granted
                    .strip_suffix(".*")
                    .is_some_and(|granted_service| granted_service == service)
        })
    }

    /// Checks that the caller may use `scope` on `tenant`.
    ///
    /// The refusal names only what the caller asked for, so it reads the same whether or not the tenant or the
    /// resource exists.
    pub fn authorize(&self, tenant: &TenantId, scope: &str) -> Result<(), Status> {
        if !self.may_act_for(tenant) || !self.has_scope(scope) {
            return Err(Status::permission_denied(format!(
                "permission denied: the caller may not use {scope} on tenants/{tenant}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn caller(tenants: &[&str], scopes: &[&str]) -> Caller {
        let keys = TokenKeys::from_secret(SECRET).unwrap();
        let tenants: Vec<String> = tenants.iter().map(|s| s.to_string()).collect();
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let token = keys
            .mint("tester", &tenants, &scopes, Duration::from_secs(60))
            .unwrap();
        keys.verify(&token).unwrap()
    }

    #[test]
    fn a_token_grants_only_its_tenants_and_scopes() {
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        let c = caller(&["acme"], &["ingestion.write"]);
        assert!(c.authorize(&acme, "ingestion.write").is_ok());
        assert!(c.authorize(&acme, "ingestion.read").is_err());
        assert!(c.authorize(&globex, "ingestion.write").is_err());
        assert!(c.authorize(&acme, "segmentation.write").is_err());
    }

    #[test]
    fn wildcards_cover_services_and_tenants() {
        let globex = TenantId::parse("globex").unwrap();
        let c = caller(&["*"], &["ingestion.*"]);
        assert!(c.authorize(&globex, "ingestion.erase").is_ok());
        assert!(c.authorize(&globex, "segmentation.read").is_err());
        assert!(
            caller(&["globex"], &["*"])
                .authorize(&globex, "segmentation.read")
                .is_ok()
        );
    }

    #[test]
    fn refusal_reads_the_same_for_any_tenant() {
        let c = caller(&["acme"], &["ingestion.read"]);
        let a = c.authorize(&TenantId::parse("globex").unwrap(), "ingestion.read");
        let b = c.authorize(&TenantId::parse("initech").unwrap(), "ingestion.read");
        let (a, b) = (a.unwrap_err(), b.unwrap_err());
        assert_eq!(a.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            a.message().replace("globex", "X"),
            b.message().replace("initech", "X")
        );
    }

    #[test]
    fn forged_and_expired_tokens_are_refused() {
        let keys = TokenKeys::from_secret(SECRET).unwrap();
        let other = TokenKeys::from_secret(b"another-secret-another-secret-xx").unwrap();
        let token = other
            .mint(
                "x",
                &["acme".into()],
                &["*".into()],
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(keys.verify(&token).is_err());

        let now = unix_now();
        let expired = Claims {
            sub: "x".into(),
            tenants: vec!["acme".into()],
            scopes: vec!["*".into()],
            iat: now - 3600,
            exp: now - 600,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &keys.encoding).unwrap();
        assert!(keys.verify(&token).is_err());
    }

    #[test]
    fn a_token_verified_before_is_refused_once_it_expires_and_a_changed_one_is_checked_afresh() {
        let keys = TokenKeys::from_secret(SECRET).unwrap();
        let now = unix_now();
        let mut claims = Claims {
            sub: "x".into(),
            tenants: vec!["acme".into()],
            scopes: vec!["ingestion.read".into()],
            iat: now,
            exp: now + 60,
        };
        let sign = |claims: &Claims| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &keys.encoding).unwrap()
        };
        let token = sign(&claims);
        assert!(keys.verify(&token).is_ok());
        assert!(keys.verify(&token).is_ok(), "a second use is accepted too");

        // A token remembered from when it was valid, now expired beyond the leeway.
        claims.exp = now - keys.validation.leeway - 1;
        let expired = sign(&claims);
        keys.verified()
            .insert(expired.as_str().into(), Arc::new(claims));
        assert!(matches!(
            keys.verify(&expired),
            Err(AuthError::InvalidToken(_))
        ));

        // Another signature over the same claims is not the remembered token: it is checked, and refused.
        let (signed, _) = token.rsplit_once('.').unwrap();
        let tampered = format!("{signed}.{}", "A".repeat(43));
        assert!(keys.verify(&tampered).is_err());
    }

    #[test]
    fn weak_secrets_and_malformed_claims_are_rejected() {
        assert!(TokenKeys::from_secret(b"short").is_err());
        let keys = TokenKeys::from_secret(SECRET).unwrap();
        let ttl = Duration::from_secs(1);
        assert!(
            keys.mint("x", &["Acme".into()], &["*".into()], ttl)
                .is_err()
        );
        assert!(
            keys.mint("x", &["acme".into()], &["write".into()], ttl)
                .is_err()
        );
    }
}
