//! CRUD for customers, teams, virtual keys and providers.
//!
//! Referential integrity is enforced by the database with
//! `ON DELETE RESTRICT`: deleting a team that still has keys, or a customer
//! that still has teams, fails with [`Error::InUse`] (nothing is cascaded or
//! nulled: detach or delete the children first). Creating or updating with
//! an unknown `team_id`/`customer_id` fails with [`Error::InvalidReference`].
//! Every successful write emits a [`ConfigChange`](crate::ConfigChange).
//!
//! The parts: this file holds the table machinery every entity shares (generic insert,
//! update, get, list and delete, each write announcing its change); [`entities`] has
//! customers, teams and keys, [`providers`] the providers with their encrypted secrets,
//! and [`limits`] the budget and rate-limit columns the first three share.

mod entities;
mod limits;
mod providers;

pub(crate) use limits::lock_budget_stmt;

use crate::db::{Row, Stmt, Value};
use crate::error::{Constraint, Error, Result};
use crate::model::{ConfigChange, ConfigKind};
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

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("OS random source unavailable");
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Store {
    /// Runs `stmt` in a transaction that also bumps the config version and
    /// emits `change` at that version (PostgreSQL: `pg_notify` inside the
    /// same transaction, so it is delivered iff the write commits; SQLite:
    /// in-process subscribers after commit).
    async fn write_notify(&self, stmt: Stmt, change: ConfigChange) -> Result<Vec<Row>> {
        let stmts = vec![stmt, crate::notify::bump_stmt(self.db(), &change)];
        let mut out = self.db().transaction(stmts).await?;
        let version = crate::notify::bumped_version(&out[1])?;
        if !matches!(self.backend(), crate::Backend::Postgres) {
            self.notify_local(&change, version);
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
}
