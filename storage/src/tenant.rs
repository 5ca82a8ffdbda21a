//! Tenants: every series belongs to exactly one. Until multi-tenancy lands (`X-Scope-OrgID`),
//! everything is written to and read from [`TenantId::DEFAULT`]; the id is already part of every
//! index, activity and trace-index key so that adding tenants needs no format change.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub u32);

impl TenantId {
    /// The tenant of requests that name none (Mimir calls it `anonymous`).
    pub const DEFAULT: TenantId = TenantId(0);
}
