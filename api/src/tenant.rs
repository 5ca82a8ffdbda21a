//! Which tenant a request acts for, and whether it may: the `X-Scope-OrgID` header (as Mimir and
//! Cortex read it), a configurable default tenant when it is absent (or a 401 when one is
//! required), and optional per-tenant bearer-token or basic-auth credentials.

use std::collections::HashMap;

use amber_storage::TenantId;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;

use crate::AppState;
use crate::limit_share::Explained;

/// The header that names the tenant.
pub const ORG_ID_HEADER: &str = "X-Scope-OrgID";

/// Credentials a tenant's requests must carry in `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Bearer(String),
    Basic { username: String, password: String },
}

impl Credentials {
    fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(header) = authorization else { return false };
        match self {
            Credentials::Bearer(token) => header.strip_prefix("Bearer ").is_some_and(|t| constant_time_eq(t, token)),
            Credentials::Basic { username, password } => {
                let expected = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                header.strip_prefix("Basic ").is_some_and(|t| constant_time_eq(t, &expected))
            }
        }
    }
}

/// Compares secrets without stopping at the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How requests map to tenants.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    /// The tenant of requests without `X-Scope-OrgID` (stored as tenant id 0).
    pub default_tenant: String,
    /// Refuse requests without `X-Scope-OrgID` instead of using the default tenant.
    pub require_tenant: bool,
    /// Tenants whose requests must authenticate.
    pub credentials: HashMap<String, Credentials>,
    /// Tenants with their own series limit instead of `ApiLimits::max_series_per_tenant`.
    pub max_series: HashMap<String, u64>,
    /// Tenants with their own ingestion rate instead of `ApiLimits::ingestion_rate`.
    pub ingestion_rate: HashMap<String, f64>,
    /// Tenants with their own new-series rate instead of `ApiLimits::new_series_rate`.
    pub new_series_rate: HashMap<String, f64>,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            default_tenant: "anonymous".into(),
            require_tenant: false,
            credentials: HashMap::new(),
            max_series: HashMap::new(),
            ingestion_rate: HashMap::new(),
            new_series_rate: HashMap::new(),
        }
    }
}

/// Why a request was refused before it reached its handler.
#[derive(Debug)]
pub struct TenantError {
    pub status: StatusCode,
    pub message: String,
}

/// Mimir's rules for tenant ids: at most 150 characters from a safe set, and not `.` or `..`.
fn check_name(name: &str) -> Result<(), TenantError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
    if name.is_empty() || name.len() > 150 || name == "." || name == ".." || !name.chars().all(allowed) {
        return Err(TenantError {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "invalid tenant ID {name:?}: at most 150 characters of a-z A-Z 0-9 ! - _ . * ' ( ), and not \".\" or \"..\""
            ),
        });
    }
    Ok(())
}

/// The tenant named by the request, after checking its credentials.
fn name_of<'a>(state: &'a AppState, headers: &'a HeaderMap) -> Result<&'a str, TenantError> {
    let settings = &state.tenants;
    let name = match headers.get(ORG_ID_HEADER) {
        Some(v) => {
            let name = v.to_str().map_err(|_| TenantError {
                status: StatusCode::BAD_REQUEST,
                message: format!("invalid tenant ID: the {ORG_ID_HEADER} header is not ASCII"),
            })?;
            check_name(name)?;
            name
        }
        None if settings.require_tenant => {
            return Err(TenantError { status: StatusCode::UNAUTHORIZED, message: "no org id".into() });
        }
        None => settings.default_tenant.as_str(),
    };
    if let Some(credentials) = settings.credentials.get(name) {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        if !credentials.accepts(authorization) {
            return Err(TenantError {
                status: StatusCode::UNAUTHORIZED,
                message: format!("missing or wrong credentials for tenant {name:?}"),
            });
        }
    }
    Ok(name)
}

/// The tenant a write goes to and the limits it writes under here: the configured ones on one
/// node, this process's part of them in a cluster ([`crate::limit_share`]).
pub struct WriteTenant {
    pub id: TenantId,
    pub name: String,
    pub max_series: u64,
    /// How `max_series` comes from the configured limit, for refusals: nothing on one node.
    pub max_series_explained: Explained,
    /// Samples plus exemplars per second; `None` for no limit here.
    pub ingestion: Option<RateLimit>,
    /// New series per second; `None` for no limit here.
    pub new_series: Option<RateLimit>,
}

/// A rate limit as enforced here.
pub struct RateLimit {
    pub rate: f64,
    pub burst: f64,
    /// How `rate` comes from the configured one, for refusals: nothing on one node.
    pub explained: Explained,
}

/// The tenant a write goes to, registering it on its first write.
pub fn for_write(state: &AppState, headers: &HeaderMap) -> Result<WriteTenant, TenantError> {
    let name = name_of(state, headers)?;
    let (settings, limits) = (&state.tenants, &state.limits);
    let max_series = settings.max_series.get(name).copied().unwrap_or(limits.max_series_per_tenant);
    let ingestion_rate = settings.ingestion_rate.get(name).copied().unwrap_or(limits.ingestion_rate);
    let new_series_rate = settings.new_series_rate.get(name).copied().unwrap_or(limits.new_series_rate);
    let series_part = state.limit_share.series();
    let ingestion = state.limit_share.ingestion().filter(|_| ingestion_rate > 0.0).map(|part| {
        let rate = part.of_rate(ingestion_rate);
        // Not divided: a request larger than a distributor's part of the burst could never pass.
        RateLimit {
            rate,
            burst: limits.ingestion_burst.max(rate),
            explained: part.explain(ingestion_rate, "samples/s"),
        }
    });
    let new_series = (new_series_rate > 0.0).then(|| RateLimit {
        rate: series_part.of_rate(new_series_rate),
        burst: series_part.of_rate(limits.new_series_burst.max(new_series_rate)),
        explained: series_part.explain(new_series_rate, "new series/s"),
    });
    let id = if name == settings.default_tenant {
        TenantId::DEFAULT
    } else {
        state.storage.register_tenant(name).map_err(|e| TenantError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("registering tenant {name:?}: {e}"),
        })?
    };
    Ok(WriteTenant {
        id,
        name: name.to_string(),
        max_series: series_part.of_count(max_series),
        max_series_explained: series_part.explain(max_series as f64, "series"),
        ingestion,
        new_series,
    })
}

/// The name of the tenant a read looks at (the default tenant's name when the request names
/// none), as read sources take it.
pub fn for_read(state: &AppState, headers: &HeaderMap) -> Result<String, TenantError> {
    name_of(state, headers).map(str::to_string)
}

/// This store's id of the tenant a read looks at, for what only this store knows (metadata,
/// cardinality, diagnostics); `None` for a tenant that never wrote here (it sees no data).
pub fn for_local_read(state: &AppState, headers: &HeaderMap) -> Result<Option<TenantId>, TenantError> {
    let name = name_of(state, headers)?;
    if name == state.tenants.default_tenant {
        return Ok(Some(TenantId::DEFAULT));
    }
    Ok(state.storage.tenant_id(name))
}
