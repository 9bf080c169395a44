//! Bearer-token authentication and tenant/scope authorization for every Boomerang service.
//!
//! A token is an HS256 JWT naming the tenants and scopes its holder may act for (`*` means all). Every service
//! verifies it in one tower layer ([`AuthLayer`]) that puts the verified [`Caller`] into the request; handlers then
//! call [`Caller::authorize`] with the tenant and scope the call needs. Health checks and reflection need no token.

mod layer;
mod tenant;
mod token;

pub use layer::{AuthLayer, AuthService, caller};
pub use tenant::{InvalidTenant, TenantId, customer_number};
pub use token::{AuthError, Caller, Claims, TokenKeys};
