//! Providers stored through the admin API: their table and CRUD. A provider's secret is
//! encrypted with the store's [`SecretBox`](crate::SecretBox) before it is written and
//! decrypted when read.

use crate::db::{Row, Value};
use crate::error::{Error, Result};
use crate::model::{ConfigKind, Provider, ProviderInput};
use crate::Store;

use super::Table;

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

impl Store {
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
}
