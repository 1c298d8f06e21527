//! Customers, teams and virtual keys: their tables, how rows become records and inputs
//! become columns, and their public CRUD. A key's secret is generated here and only its hash
//! and display prefix are stored.

use crate::db::{Row, Value};
use crate::error::{Error, Result};
use crate::keys::{generate_key, hash_key, key_prefix};
use crate::model::{
    Budget, ConfigKind, CreatedKey, Customer, CustomerInput, KeyInput, Limits, Team, TeamInput,
    VirtualKey,
};
use crate::Store;

use super::limits::{budget_limit_params, read_budget_limits};
use super::{new_id, Table};

/// A customer, team or key table. Its columns are laid out as [`Table`] requires: `created`
/// (set only at creation, the `id` first), then the mutable `fields` with the budget and
/// rate-limit columns all three share (see [`super::limits`]) and the `then` ones after them,
/// then the timestamps. `mutable` is made from the same lists, so the two cannot drift apart,
/// and the budget and limit columns are named once for all three tables.
macro_rules! entity_table {
    (
        $name:literal, $kind:literal, $config_kind:ident, $read:ident,
        created: [$($created:literal),*],
        fields: [$($field:literal),*],
        then: [$($then:literal),*] $(,)?
    ) => {
        entity_table!(@ $name, $kind, $config_kind, $read, [$($created),*], [
            $($field,)*
            "budget_limit_nanos", "budget_period", "rpm", "rph", "rpd", "tpm", "tph", "tpd"
            $(, $then)*
        ])
    };
    (@ $name:literal, $kind:literal, $config_kind:ident, $read:ident,
        [$($created:literal),*], [$($mutable:literal),*]) => {
        Table {
            name: $name,
            kind: $kind,
            config_kind: ConfigKind::$config_kind,
            cols: &[$($created,)* $($mutable,)* "created_at", "updated_at"],
            mutable: &[$($mutable,)* "updated_at"],
            order: "created_at, id",
            read: |_, r| $read(r),
        }
    };
}

pub(super) const CUSTOMERS: Table<Customer> = entity_table!(
    "customers", "customer", Customer, customer_from_row,
    created: ["id"],
    fields: ["name"],
    then: [],
);

pub(super) const TEAMS: Table<Team> = entity_table!(
    "teams", "team", Team, team_from_row,
    created: ["id"],
    fields: ["name", "customer_id"],
    then: [],
);

pub(super) const KEYS: Table<VirtualKey> = entity_table!(
    "virtual_keys", "key", Key, key_from_row,
    created: ["id", "key_hash", "key_prefix"],
    fields: ["name", "team_id", "allowed_providers", "allowed_models"],
    then: ["expires_at", "active", "cache_ttl_secs"],
);

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
        cache_ttl_secs: r.opt_i64(17)?,
        created_at: r.i64(18)?,
        updated_at: r.i64(19)?,
    })
}

/// An input's mutable columns but `updated_at`, laid out as [`entity_table!`] lays out the
/// table: its own `fields`, the budget and limit columns, then the `then` ones.
fn mutable_columns<const F: usize, const T: usize>(
    fields: [Value; F],
    budget: Option<&Budget>,
    limits: &Limits,
    then: [Value; T],
) -> Result<Vec<Value>> {
    let mut p = Vec::from(fields);
    p.extend(budget_limit_params(budget, limits)?);
    p.extend(then);
    Ok(p)
}

fn customer_fields(input: &CustomerInput) -> Result<Vec<Value>> {
    let fields = [input.name.as_str().into()];
    mutable_columns(fields, input.budget.as_ref(), &input.limits, [])
}

fn team_fields(input: &TeamInput) -> Result<Vec<Value>> {
    let fields = [
        input.name.as_str().into(),
        input.customer_id.as_deref().into(),
    ];
    mutable_columns(fields, input.budget.as_ref(), &input.limits, [])
}

fn key_fields(input: &KeyInput) -> Result<Vec<Value>> {
    let fields = [
        input.name.as_str().into(),
        input.team_id.as_deref().into(),
        list_json(&input.allowed_providers),
        list_json(&input.allowed_models),
    ];
    let then = [
        input.expires_at.into(),
        input.active.into(),
        input.cache_ttl_secs.into(),
    ];
    mutable_columns(fields, input.budget.as_ref(), &input.limits, then)
}

/// The public get, list, update and delete of one entity, each a call of the generic table
/// operation in [`super`]. Customers, teams and keys share them word for word, so they are
/// written once here and cannot drift apart; creation differs (a key has a secret) and stays
/// written out below. `$fields` makes an input's mutable columns; `$delete_doc` says what
/// keeps the entity from being deleted.
macro_rules! entity_crud {
    (
        $table:ident: $entity:ty, $input:ty, $fields:ident, $kind:literal, $plural:literal,
        $get:ident, $list:ident, $update:ident, $delete:ident, $delete_doc:literal $(,)?
    ) => {
        impl Store {
            #[doc = concat!("The ", $kind, " with `id`, if any.")]
            pub async fn $get(&self, id: &str) -> Result<Option<$entity>> {
                self.get(&$table, id).await
            }

            #[doc = concat!("All ", $plural, ", oldest first.")]
            pub async fn $list(&self) -> Result<Vec<$entity>> {
                self.list(&$table).await
            }

            #[doc = concat!("Replaces a ", $kind, "'s fields; [`Error::NotFound`] if absent.")]
            pub async fn $update(&self, id: &str, input: &$input) -> Result<$entity> {
                self.update(&$table, id, $fields(input)?).await
            }

            #[doc = $delete_doc]
            pub async fn $delete(&self, id: &str) -> Result<()> {
                self.delete(&$table, id).await
            }
        }
    };
}

entity_crud!(
    CUSTOMERS: Customer, CustomerInput, customer_fields, "customer", "customers",
    get_customer, list_customers, update_customer, delete_customer,
    "Deletes a customer; [`Error::InUse`] while teams reference it.",
);

entity_crud!(
    TEAMS: Team, TeamInput, team_fields, "team", "teams",
    get_team, list_teams, update_team, delete_team,
    "Deletes a team; [`Error::InUse`] while keys reference it.",
);

// A key's update replaces its fields, never its secret.
entity_crud!(
    KEYS: VirtualKey, KeyInput, key_fields, "key", "keys",
    get_key, list_keys, update_key, delete_key,
    "Deletes a key.",
);

impl Store {
    /// Creates a customer with a new UUID.
    pub async fn create_customer(&self, input: &CustomerInput) -> Result<Customer> {
        let fields = customer_fields(input)?;
        self.insert(&CUSTOMERS, vec![new_id().into()], fields).await
    }

    /// Creates a team with a new UUID.
    pub async fn create_team(&self, input: &TeamInput) -> Result<Team> {
        let fields = team_fields(input)?;
        self.insert(&TEAMS, vec![new_id().into()], fields).await
    }

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

    /// The key whose secret hashes to `key_hash` (see [`crate::keys::hash_key`]).
    pub async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<VirtualKey>> {
        let sql = format!("{} WHERE key_hash = $1", KEYS.select());
        let rows = self
            .db()
            .query(&sql, vec![key_hash.to_ascii_lowercase().into()])
            .await?;
        rows.first().map(key_from_row).transpose()
    }
}
