//! Customers, teams and virtual keys: their tables, how rows become records and inputs
//! become columns, and their public CRUD. A key's secret is generated here and only its hash
//! and display prefix are stored.

use crate::db::{Row, Value};
use crate::error::{Error, Result};
use crate::keys::{generate_key, hash_key, key_prefix};
use crate::model::{
    ConfigKind, CreatedKey, Customer, CustomerInput, KeyInput, Team, TeamInput, VirtualKey,
};
use crate::Store;

use super::limits::{budget_limit_params, read_budget_limits};
use super::{new_id, Table};

pub(super) const CUSTOMERS: Table<Customer> = Table {
    name: "customers",
    kind: "customer",
    config_kind: ConfigKind::Customer,
    cols: &[
        "id",
        "name",
        "budget_limit_nanos",
        "budget_period",
        "rpm",
        "rph",
        "rpd",
        "tpm",
        "tph",
        "tpd",
        "created_at",
        "updated_at",
    ],
    mutable: &[
        "name",
        "budget_limit_nanos",
        "budget_period",
        "rpm",
        "rph",
        "rpd",
        "tpm",
        "tph",
        "tpd",
        "updated_at",
    ],
    order: "created_at, id",
    read: |_, r| customer_from_row(r),
};

pub(super) const TEAMS: Table<Team> = Table {
    name: "teams",
    kind: "team",
    config_kind: ConfigKind::Team,
    cols: &[
        "id",
        "name",
        "customer_id",
        "budget_limit_nanos",
        "budget_period",
        "rpm",
        "rph",
        "rpd",
        "tpm",
        "tph",
        "tpd",
        "created_at",
        "updated_at",
    ],
    mutable: &[
        "name",
        "customer_id",
        "budget_limit_nanos",
        "budget_period",
        "rpm",
        "rph",
        "rpd",
        "tpm",
        "tph",
        "tpd",
        "updated_at",
    ],
    order: "created_at, id",
    read: |_, r| team_from_row(r),
};

pub(super) const KEYS: Table<VirtualKey> = Table {
    name: "virtual_keys",
    kind: "key",
    config_kind: ConfigKind::Key,
    cols: &[
        "id",
        "key_hash",
        "key_prefix",
        "name",
        "team_id",
        "allowed_providers",
        "allowed_models",
        "budget_limit_nanos",
        "budget_period",
        "rpm",
        "rph",
        "rpd",
        "tpm",
        "tph",
        "tpd",
        "expires_at",
        "active",
        "created_at",
        "updated_at",
    ],
    mutable: &[
        "name",
        "team_id",
        "allowed_providers",
        "allowed_models",
        "budget_limit_nanos",
        "budget_period",
        "rpm",
        "rph",
        "rpd",
        "tpm",
        "tph",
        "tpd",
        "expires_at",
        "active",
        "updated_at",
    ],
    order: "created_at, id",
    read: |_, r| key_from_row(r),
};

fn customer_from_row(r: &Row) -> Result<Customer> {
    let (budget, limits) = read_budget_limits(r, 2)?;
    Ok(Customer {
        id: r.text(0)?,
        name: r.text(1)?,
        budget,
        limits,
        created_at: r.i64(10)?,
        updated_at: r.i64(11)?,
    })
}

fn team_from_row(r: &Row) -> Result<Team> {
    let (budget, limits) = read_budget_limits(r, 3)?;
    Ok(Team {
        id: r.text(0)?,
        name: r.text(1)?,
        customer_id: r.opt_text(2)?,
        budget,
        limits,
        created_at: r.i64(11)?,
        updated_at: r.i64(12)?,
    })
}

fn json_list(r: &Row, i: usize) -> Result<Vec<String>> {
    let text = r.text(i)?;
    serde_json::from_str(&text).map_err(|e| Error::Corrupt(format!("list column {i}: {e}")))
}

fn list_json(list: &[String]) -> Value {
    // Serialising a list of strings cannot fail.
    Value::Text(serde_json::to_string(list).unwrap_or_else(|_| "[]".into()))
}

fn key_from_row(r: &Row) -> Result<VirtualKey> {
    let (budget, limits) = read_budget_limits(r, 7)?;
    Ok(VirtualKey {
        id: r.text(0)?,
        key_hash: r.text(1)?,
        key_prefix: r.text(2)?,
        name: r.text(3)?,
        team_id: r.opt_text(4)?,
        allowed_providers: json_list(r, 5)?,
        allowed_models: json_list(r, 6)?,
        budget,
        limits,
        expires_at: r.opt_i64(15)?,
        active: r.bool(16)?,
        created_at: r.i64(17)?,
        updated_at: r.i64(18)?,
    })
}

/// A customer input's mutable columns but `updated_at`.
fn customer_fields(input: &CustomerInput) -> Result<Vec<Value>> {
    let mut p = vec![input.name.as_str().into()];
    p.extend(budget_limit_params(input.budget.as_ref(), &input.limits)?);
    Ok(p)
}

/// A team input's mutable columns but `updated_at`.
fn team_fields(input: &TeamInput) -> Result<Vec<Value>> {
    let mut p = vec![
        input.name.as_str().into(),
        input.customer_id.as_deref().into(),
    ];
    p.extend(budget_limit_params(input.budget.as_ref(), &input.limits)?);
    Ok(p)
}

/// A key input's mutable columns but `updated_at`.
fn key_fields(input: &KeyInput) -> Result<Vec<Value>> {
    let mut p = vec![
        input.name.as_str().into(),
        input.team_id.as_deref().into(),
        list_json(&input.allowed_providers),
        list_json(&input.allowed_models),
    ];
    p.extend(budget_limit_params(input.budget.as_ref(), &input.limits)?);
    p.extend([input.expires_at.into(), input.active.into()]);
    Ok(p)
}

impl Store {
    // ---------------------------------------------------------------- customers

    /// Creates a customer with a new UUID.
    pub async fn create_customer(&self, input: &CustomerInput) -> Result<Customer> {
        let fields = customer_fields(input)?;
        self.insert(&CUSTOMERS, vec![new_id().into()], fields).await
    }

    /// The customer with `id`, if any.
    pub async fn get_customer(&self, id: &str) -> Result<Option<Customer>> {
        self.get(&CUSTOMERS, id).await
    }

    /// All customers, oldest first.
    pub async fn list_customers(&self) -> Result<Vec<Customer>> {
        self.list(&CUSTOMERS).await
    }

    /// Replaces a customer's fields; [`Error::NotFound`] if absent.
    pub async fn update_customer(&self, id: &str, input: &CustomerInput) -> Result<Customer> {
        self.update(&CUSTOMERS, id, customer_fields(input)?).await
    }

    /// Deletes a customer; [`Error::InUse`] while teams reference it.
    pub async fn delete_customer(&self, id: &str) -> Result<()> {
        self.delete(&CUSTOMERS, id).await
    }

    // -------------------------------------------------------------------- teams

    /// Creates a team with a new UUID.
    pub async fn create_team(&self, input: &TeamInput) -> Result<Team> {
        let fields = team_fields(input)?;
        self.insert(&TEAMS, vec![new_id().into()], fields).await
    }

    /// The team with `id`, if any.
    pub async fn get_team(&self, id: &str) -> Result<Option<Team>> {
        self.get(&TEAMS, id).await
    }

    /// All teams, oldest first.
    pub async fn list_teams(&self) -> Result<Vec<Team>> {
        self.list(&TEAMS).await
    }

    /// Replaces a team's fields; [`Error::NotFound`] if absent.
    pub async fn update_team(&self, id: &str, input: &TeamInput) -> Result<Team> {
        self.update(&TEAMS, id, team_fields(input)?).await
    }

    /// Deletes a team; [`Error::InUse`] while keys reference it.
    pub async fn delete_team(&self, id: &str) -> Result<()> {
        self.delete(&TEAMS, id).await
    }

    // --------------------------------------------------------------------- keys

    /// Creates a key with a freshly generated secret (returned once, never
    /// stored: only its SHA-256 and first 8 characters are kept).
    pub async fn create_key(&self, input: &KeyInput) -> Result<CreatedKey> {
        let secret = generate_key();
        let key = self.create_key_with_secret(input, &secret).await?;
        Ok(CreatedKey { key, secret })
    }

    /// Creates a key for a caller-supplied secret (e.g. an imported key).
    pub async fn create_key_with_secret(
        &self,
        input: &KeyInput,
        secret: &str,
    ) -> Result<VirtualKey> {
        let created = vec![
            new_id().into(),
            hash_key(secret).into(),
            key_prefix(secret).into(),
        ];
        self.insert(&KEYS, created, key_fields(input)?).await
    }

    /// The key with `id`, if any.
    pub async fn get_key(&self, id: &str) -> Result<Option<VirtualKey>> {
        self.get(&KEYS, id).await
    }

    /// The key whose secret hashes to `key_hash` (see [`crate::keys::hash_key`]).
    pub async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<VirtualKey>> {
        let sql = format!("{} WHERE key_hash = $1", KEYS.select());
        let rows = self
            .db()
            .query(&sql, vec![key_hash.to_ascii_lowercase().into()])
            .await?;
        rows.first().map(key_from_row).transpose()
    }

    /// All keys, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<VirtualKey>> {
        self.list(&KEYS).await
    }

    /// Replaces a key's fields (not its secret); [`Error::NotFound`] if absent.
    pub async fn update_key(&self, id: &str, input: &KeyInput) -> Result<VirtualKey> {
        self.update(&KEYS, id, key_fields(input)?).await
    }

    /// Deletes a key.
    pub async fn delete_key(&self, id: &str) -> Result<()> {
        self.delete(&KEYS, id).await
    }
}
