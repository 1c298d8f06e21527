//! CRUD for customers, teams, virtual keys and providers.
//!
//! Referential integrity is enforced by the database with
//! `ON DELETE RESTRICT`: deleting a team that still has keys, or a customer
//! that still has teams, fails with [`Error::InUse`] (nothing is cascaded or
//! nulled: detach or delete the children first). Creating or updating with
//! an unknown `team_id`/`customer_id` fails with [`Error::InvalidReference`].
//! Every successful write emits a [`ConfigChange`](crate::ConfigChange).

use vocab::{BudgetPeriod, EntityKind, EntityRef, NanoUsd};

use crate::db::{opt_u64, Row, Stmt, Value};
use crate::error::{Constraint, Error, Result};
use crate::keys::{generate_key, hash_key, key_prefix};
use crate::model::{
    Budget, ConfigChange, ConfigKind, CreatedKey, Customer, CustomerInput, KeyInput, Limits,
    Provider, ProviderInput, Team, TeamInput, VirtualKey,
};
use crate::{now_unix, Store};

/// One governance table: its column layout and how a row becomes the entity `T`.
///
/// `cols` are laid out as: the columns only set at creation (primary key first), then the
/// `mutable` ones but `updated_at`, then the timestamps (`created_at` where the table has it,
/// `updated_at`). [`Store::insert`] and [`Store::update`] rely on that order.
struct Table<T> {
    name: &'static str,
    /// Entity kind for errors.
    kind: &'static str,
    config_kind: ConfigKind,
    /// All columns, primary key first.
    cols: &'static [&'static str],
    /// Columns rewritten by an update, in parameter order `$2…`; `updated_at` last.
    mutable: &'static [&'static str],
    /// `ORDER BY` of listings.
    order: &'static str,
    /// Builds the entity from a row of `cols` (providers decrypt their secret with the store).
    read: fn(&Store, &Row) -> Result<T>,
}

const CUSTOMERS: Table<Customer> = Table {
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

const TEAMS: Table<Team> = Table {
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

const KEYS: Table<VirtualKey> = Table {
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

const PROVIDERS: Table<Provider> = Table {
    name: "providers",
    kind: "provider",
    config_kind: ConfigKind::Provider,
    cols: &[
        "name",
        "kind",
        "base_url",
        "config_json",
        "secret",
        "updated_at",
    ],
    mutable: &["kind", "base_url", "config_json", "secret", "updated_at"],
    order: "name",
    read: Store::provider_from_row,
};

/// `$from, $from+1, …` (n placeholders).
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<T> Table<T> {
    fn select(&self) -> String {
        format!("SELECT {} FROM {}", self.cols.join(", "), self.name)
    }

    fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES ({}) RETURNING {}",
            self.name,
            self.cols.join(", "),
            placeholders(1, self.cols.len()),
            self.cols.join(", ")
        )
    }

    fn update_sql(&self) -> String {
        let sets = self
            .mutable
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "UPDATE {} SET {sets} WHERE {} = $1 RETURNING {}",
            self.name,
            self.cols[0],
            self.cols.join(", ")
        )
    }
}

/// The 8 budget + limit parameters, in column order.
fn budget_limit_params(budget: Option<&Budget>, limits: &Limits) -> Result<Vec<Value>> {
    Ok(vec![
        opt_u64(budget.map(|b| b.limit_nanos.nanos()), "budget.limit_nanos")?,
        budget.map(|b| b.period.as_str()).into(),
        opt_u64(limits.rpm, "limits.rpm")?,
        opt_u64(limits.rph, "limits.rph")?,
        opt_u64(limits.rpd, "limits.rpd")?,
        opt_u64(limits.tpm, "limits.tpm")?,
        opt_u64(limits.tph, "limits.tph")?,
        opt_u64(limits.tpd, "limits.tpd")?,
    ])
}

/// Reads the budget columns (limit, period) starting at `at`.
fn read_budget(row: &Row, at: usize) -> Result<Option<Budget>> {
    Ok(match (row.opt_u64(at)?, row.opt_text(at + 1)?) {
        (Some(limit_nanos), Some(p)) => Some(Budget {
            limit_nanos: NanoUsd::from_nanos(limit_nanos),
            period: BudgetPeriod::parse(&p)
                .ok_or_else(|| Error::Corrupt(format!("budget period {p:?}")))?,
        }),
        (None, None) => None,
        _ => return Err(Error::Corrupt("budget half set".into())),
    })
}

/// Reads the 8 budget + limit columns starting at `at`.
fn read_budget_limits(row: &Row, at: usize) -> Result<(Option<Budget>, Limits)> {
    let budget = read_budget(row, at)?;
    let limits = Limits {
        rpm: row.opt_u64(at + 2)?,
        rph: row.opt_u64(at + 3)?,
        rpd: row.opt_u64(at + 4)?,
        tpm: row.opt_u64(at + 5)?,
        tph: row.opt_u64(at + 6)?,
        tpd: row.opt_u64(at + 7)?,
    };
    Ok((budget, limits))
}

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

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("OS random source unavailable");
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Store {
    /// Runs `stmt` in a transaction that also emits `change` (PostgreSQL:
    /// `pg_notify` inside the same transaction, so it is delivered iff the
    /// write commits; SQLite: in-process subscribers after commit).
    async fn write_notify(&self, stmt: Stmt, change: ConfigChange) -> Result<Vec<Row>> {
        let mut stmts = vec![stmt];
        let pg = matches!(self.backend(), crate::Backend::Postgres);
        if pg {
            stmts.push(crate::notify::pg_notify_stmt(&change));
        }
        let mut out = self.db().transaction(stmts).await?;
        if !pg {
            self.notify_local(&change);
        }
        Ok(out.swap_remove(0))
    }

    /// Inserts an entity: `created` are the columns only set at creation (primary key first),
    /// `fields` the mutable ones but `updated_at`; the timestamps are filled with now.
    async fn insert<T>(&self, t: &Table<T>, created: Vec<Value>, fields: Vec<Value>) -> Result<T> {
        let id = match &created[0] {
            Value::Text(s) => s.clone(),
            _ => String::new(),
        };
        let mut params = created;
        params.extend(fields);
        debug_assert!(params.len() < t.cols.len(), "{}: too many values", t.name);
        params.resize(t.cols.len(), now_unix().into());
        let change = ConfigChange {
            kind: t.config_kind,
            id: id.clone(),
        };
        let rows = self
            .write_notify(Stmt::new(t.insert_sql(), params), change)
            .await
            .map_err(|e| match e.constraint() {
                Some(Constraint::Unique) => Error::Conflict(format!(
                    "{} {id:?} or a unique field already exists",
                    t.kind
                )),
                Some(Constraint::ForeignKey) => {
                    Error::InvalidReference(format!("{} {id:?} refers to a missing entity", t.kind))
                }
                None => e,
            })?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("INSERT … RETURNING returned no row".into()))?;
        (t.read)(self, &row)
    }

    /// Replaces entity `id`'s mutable columns with `fields` (all but `updated_at`, which
    /// becomes now); [`Error::NotFound`] if absent.
    async fn update<T>(&self, t: &Table<T>, id: &str, fields: Vec<Value>) -> Result<T> {
        let mut params = vec![id.into()];
        params.extend(fields);
        params.push(now_unix().into());
        let change = ConfigChange {
            kind: t.config_kind,
            id: id.to_owned(),
        };
        let rows = self
            .write_notify(Stmt::new(t.update_sql(), params), change)
            .await
            .map_err(|e| match e.constraint() {
                Some(Constraint::ForeignKey) => {
                    Error::InvalidReference(format!("{} {id:?} refers to a missing entity", t.kind))
                }
                Some(Constraint::Unique) => Error::Conflict(format!("{} {id:?}", t.kind)),
                None => e,
            })?;
        let row = rows.into_iter().next().ok_or_else(|| Error::NotFound {
            kind: t.kind,
            id: id.to_owned(),
        })?;
        (t.read)(self, &row)
    }

    /// Entity `id`, if any.
    async fn get<T>(&self, t: &Table<T>, id: &str) -> Result<Option<T>> {
        let sql = format!("{} WHERE {} = $1", t.select(), t.cols[0]);
        let rows = self.db().query(&sql, vec![id.into()]).await?;
        rows.first().map(|r| (t.read)(self, r)).transpose()
    }

    /// All entities, in the table's listing order.
    async fn list<T>(&self, t: &Table<T>) -> Result<Vec<T>> {
        let sql = format!("{} ORDER BY {}", t.select(), t.order);
        let rows = self.db().query(&sql, Vec::new()).await?;
        rows.iter().map(|r| (t.read)(self, r)).collect()
    }

    /// Deletes entity `id`; [`Error::NotFound`] if absent, [`Error::InUse`] while others
    /// reference it.
    async fn delete<T>(&self, t: &Table<T>, id: &str) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE {} = $1 RETURNING {}",
            t.name, t.cols[0], t.cols[0]
        );
        let change = ConfigChange {
            kind: t.config_kind,
            id: id.to_owned(),
        };
        let rows = self
            .write_notify(Stmt::new(sql, vec![id.into()]), change)
            .await
            .map_err(|e| match e.constraint() {
                Some(Constraint::ForeignKey) => Error::InUse {
                    kind: t.kind,
                    id: id.to_owned(),
                },
                _ => e,
            })?;
        if rows.is_empty() {
            return Err(Error::NotFound {
                kind: t.kind,
                id: id.to_owned(),
            });
        }
        Ok(())
    }

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

    // ---------------------------------------------------------------- providers

    fn encrypt_secret(&self, secret: Option<&str>) -> Result<Value> {
        match secret {
            None => Ok(Value::Null),
            Some(s) => {
                let sb = self.inner.secrets.as_ref().ok_or(Error::NoSecretKey)?;
                Ok(Value::Text(sb.encrypt(s)?))
            }
        }
    }

    fn provider_from_row(&self, r: &Row) -> Result<Provider> {
        let secret = match r.opt_text(4)? {
            None => None,
            Some(stored) => {
                let sb = self.inner.secrets.as_ref().ok_or(Error::NoSecretKey)?;
                Some(sb.decrypt(&stored)?)
            }
        };
        Ok(Provider {
            name: r.text(0)?,
            kind: r.text(1)?,
            base_url: r.text(2)?,
            config_json: r.text(3)?,
            secret,
            updated_at: r.i64(5)?,
        })
    }

    /// A provider input's mutable columns but `updated_at`, its secret encrypted.
    fn provider_fields(&self, input: &ProviderInput) -> Result<Vec<Value>> {
        Ok(vec![
            input.kind.as_str().into(),
            input.base_url.as_str().into(),
            input.config_json.as_str().into(),
            self.encrypt_secret(input.secret.as_deref())?,
        ])
    }

    /// Creates provider `name`; its secret is encrypted with the store's
    /// [`SecretBox`](crate::SecretBox) ([`Error::NoSecretKey`] without one).
    pub async fn create_provider(&self, name: &str, input: &ProviderInput) -> Result<Provider> {
        let fields = self.provider_fields(input)?;
        self.insert(&PROVIDERS, vec![name.into()], fields).await
    }

    /// Provider `name` with its secret decrypted, if it exists.
    pub async fn get_provider(&self, name: &str) -> Result<Option<Provider>> {
        self.get(&PROVIDERS, name).await
    }

    /// All providers by name, secrets decrypted.
    pub async fn list_providers(&self) -> Result<Vec<Provider>> {
        self.list(&PROVIDERS).await
    }

    /// Replaces all of a provider's fields, including the secret (`None`
    /// clears it); [`Error::NotFound`] if absent.
    pub async fn update_provider(&self, name: &str, input: &ProviderInput) -> Result<Provider> {
        let fields = self.provider_fields(input)?;
        self.update(&PROVIDERS, name, fields).await
    }

    /// Deletes a provider.
    pub async fn delete_provider(&self, name: &str) -> Result<()> {
        self.delete(&PROVIDERS, name).await
    }

    /// The budget of `entity` (`None` if it has none); [`Error::NotFound`]
    /// if the entity does not exist.
    pub async fn entity_budget(&self, entity: &EntityRef) -> Result<Option<Budget>> {
        let (table, kind) = match entity.kind {
            EntityKind::Key => (KEYS.name, KEYS.kind),
            EntityKind::Team => (TEAMS.name, TEAMS.kind),
            EntityKind::Customer => (CUSTOMERS.name, CUSTOMERS.kind),
        };
        let sql = format!("SELECT budget_limit_nanos, budget_period FROM {table} WHERE id = $1");
        let rows = self
            .db()
            .query(&sql, vec![entity.id.as_str().into()])
            .await?;
        let row = rows.first().ok_or_else(|| Error::NotFound {
            kind,
            id: entity.id.clone(),
        })?;
        read_budget(row, 0)
    }
}
