//! PostgreSQL backend: a `deadpool-postgres` pool of `tokio-postgres`
//! connections (statement cache per connection), plus dedicated
//! connections for `LISTEN`, all over TLS as the URL's `sslmode` says
//! ([`super::pg_tls`]).

use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::bulk::{BulkInsert, ColumnType};
use super::pg_tls::PgUrl;
use super::{Row, Stmt, Value};
use crate::error::{Error, Result};
use crate::migrations::Migration;

/// Advisory lock key serialising migrations across nodes ("ringgate").
const MIGRATION_LOCK: i64 = 0x7269_6e67_6761_7465;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A connection's stream: TLS or plain, as tokio-postgres negotiated under `sslmode`.
type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::I64(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.to_sql(ty, out)
                }
                _ => Err(format!("cannot bind text to a {ty} parameter").into()),
            },
            Value::Bool(b) => match *ty {
                Type::BOOL => b.to_sql(ty, out),
                _ => Err(format!("cannot bind a boolean to a {ty} parameter").into()),
            },
            Value::Bytes(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(format!("cannot bind bytes to a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::I64),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::I64(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::I64(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
            Type::VOID => None,
            ref other => {
                return Err(Error::Corrupt(format!(
                    "unsupported column type {other} for {}",
                    col.name()
                )))
            }
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

fn pg_type(ty: ColumnType) -> Type {
    match ty {
        ColumnType::Text => Type::TEXT,
        ColumnType::BigInt => Type::INT8,
        ColumnType::Bool => Type::BOOL,
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// The PostgreSQL database handle.
pub(crate) struct PgDb {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The config-change channel of this database schema ([`crate::notify::config_channel`]).
    channel: String,
}

impl PgDb {
    /// Builds the pool and opens its first connection, so that a wrong address, credential
    /// or certificate fails here with the TLS settings named. `schema`, if set, becomes every
    /// connection's `search_path` (via the startup `options`) and is created if missing.
    pub(crate) async fn connect(url: &str, pool_size: usize, schema: Option<&str>) -> Result<Self> {
        let url = PgUrl::parse(url)?;
        let tls = url.connector()?;
        let mut config: tokio_postgres::Config = url
            .rest
            .parse()
            .map_err(|e| Error::Config(format!("bad PostgreSQL URL: {e}")))?;
        url.configure(&mut config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if let Some(schema) = schema {
            validate_schema(schema)?;
            let opt = format!("-csearch_path={schema}");
            let options = match config.get_options() {
                Some(existing) if !existing.is_empty() => format!("{existing} {opt}"),
                _ => opt,
            };
            config.options(options);
        }
        let mgr = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()?;
        let first = pool.get().await.map_err(|source| Error::Connect {
            target: describe_target(&config, &url),
            source,
        })?;
        if let Some(schema) = schema {
            first
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
        }
        drop(first);
        Ok(Self {
            pool,
            config,
            tls,
            channel: crate::notify::config_channel(schema),
        })
    }

    /// The config-change notification channel of this database schema.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// A connection outside the pool (for `LISTEN`), with the pool's settings and TLS, named
    /// `application_name` in `pg_stat_activity`. TCP keepalives are short so that a peer that
    /// vanished without closing (a dropped route, a frozen server) is noticed within about
    /// 25 s rather than the system's default two hours.
    pub(crate) async fn connect_dedicated(
        &self,
        application_name: &str,
    ) -> Result<(Client, Connection<Socket, TlsStream>)> {
        let mut config = self.config.clone();
        config
            .application_name(application_name)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        Ok(config.connect(self.tls.clone()).await?)
    }

    pub(crate) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, &refs(params)).await?;
        rows.iter().map(read_row).collect()
    }

    pub(crate) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, &refs(params)).await?)
    }

    /// Runs the statements, then COPYs `copy`'s rows in when given, in one transaction;
    /// returns each statement's rows.
    pub(crate) async fn transaction(
        &self,
        stmts: &[Stmt],
        copy: Option<&BulkInsert>,
    ) -> Result<Vec<Vec<Row>>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut out = Vec::with_capacity(stmts.len());
        for s in stmts {
            let stmt = tx.prepare_cached(&s.sql).await?;
            let rows = tx.query(&stmt, &refs(&s.params)).await?;
            out.push(rows.iter().map(read_row).collect::<Result<Vec<_>>>()?);
        }
        if let Some(rows) = copy.filter(|rows| !rows.is_empty()) {
            let types: Vec<Type> = rows.columns.iter().map(|(_, ty)| pg_type(*ty)).collect();
            let sink = tx.copy_in(&rows.copy_sql()).await?;
            let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
            for row in rows.rows() {
                writer.as_mut().write_raw(row).await?;
            }
            writer.finish().await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Applies pending migrations in one transaction, holding a
    /// transaction-scoped advisory lock so concurrent nodes don't race.
    pub(crate) async fn migrate(&self, migrations: &'static [Migration]) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(crate::migrations::POSTGRES_BOOTSTRAP)
            .await?;
        let applied: Vec<i64> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .await?
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<Result<_, _>>()?;
        for m in migrations {
            if applied.contains(&m.version) {
                continue;
            }
            let wrap = |e: tokio_postgres::Error| Error::Migration {
                version: m.version,
                name: m.name,
                source: Box::new(Error::Postgres(e)),
            };
            tx.batch_execute(m.sql).await.map_err(wrap)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &crate::now_unix()],
            )
            .await
            .map_err(wrap)?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied postgres migration"
            );
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `host:port, … (sslmode=…)` — where the store tried to connect, without credentials.
fn describe_target(config: &tokio_postgres::Config, url: &PgUrl) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let mut places: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            Host::Unix(dir) => format!("{}:{}", dir.display(), port(i)),
        })
        .collect();
    if places.is_empty() {
        places = (config.get_hostaddrs().iter().enumerate())
            .map(|(i, addr)| format!("{addr}:{}", port(i)))
            .collect();
    }
    format!("{} ({})", places.join(", "), url.describe())
}

/// Accepts only plain lower-case identifiers, so the name can be used
/// unquoted in `search_path` and `CREATE SCHEMA`.
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "schema name {schema:?} must match [a-z_][a-z0-9_]*"
        )))
    }
}
