//! Tenants: every series belongs to exactly one, and every index, activity and trace-index key
//! starts with its tenant's id, so tenants never see each other's data.
//!
//! Tenants are named by the `X-Scope-OrgID` header (as in Mimir and Cortex). Names map to small
//! ids through `0x06 name` keys in the index; id 0 is the default tenant, used for requests that
//! name none, and is never registered under a name.

use rocksdb::{Direction, IteratorMode};

use crate::db::Storage;
use crate::error::{Error, Result};
use crate::keys::{self, prefix};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub u32);

impl TenantId {
    /// The tenant of requests that name none (Mimir calls it `anonymous`).
    pub const DEFAULT: TenantId = TenantId(0);
}

impl Storage {
    /// Loads the registered tenants (at open).
    pub(crate) fn load_tenants(&self) -> Result<()> {
        let index = self.cf(keys::CF_INDEX);
        let start = [prefix::TENANT];
        let mut tenants = self.tenants.write();
        for item in self.db.iterator_cf(index, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            if k[0] != prefix::TENANT {
                break;
            }
            let name = String::from_utf8(k[1..].to_vec()).map_err(|_| Error::CorruptIndex {
                what: "tenant name",
                source: crate::chunkenc::DecodeError::Invalid("not UTF-8"),
            })?;
            let id = v.as_ref().try_into().map(u32::from_be_bytes).map_err(|_| Error::CorruptIndex {
                what: "tenant id",
                source: crate::chunkenc::DecodeError::Invalid("not 4 bytes"),
            })?;
            tenants.insert(name, TenantId(id));
        }
        Ok(())
    }

    /// The id of a registered tenant; `None` if it never wrote anything.
    /// Every tenant: the default one and each registered one.
    pub(crate) fn tenant_ids(&self) -> Vec<TenantId> {
        let mut ids: Vec<TenantId> = self.tenants.read().values().copied().collect();
        ids.push(TenantId::DEFAULT);
        ids
    }

    pub fn tenant_id(&self, name: &str) -> Option<TenantId> {
        self.tenants.read().get(name).copied()
    }

    /// The id of tenant `name`, registering it (durably) on first use.
    pub fn register_tenant(&self, name: &str) -> Result<TenantId> {
        if let Some(id) = self.tenant_id(name) {
            return Ok(id);
        }
        let mut tenants = self.tenants.write();
        if let Some(&id) = tenants.get(name) {
            return Ok(id);
        }
        let id = TenantId(tenants.values().map(|t| t.0).max().unwrap_or(0) + 1);
        self.db.put_cf_opt(self.cf(keys::CF_INDEX), keys::tenant(name), id.0.to_be_bytes(), &crate::db::synced())?;
        tenants.insert(name.to_string(), id);
        Ok(id)
    }
}
