//! Admin handlers for the entity collections — customers, teams, virtual keys and providers:
//! list, get, create, update (full replace) and delete, with request bodies parsed strictly
//! and responses shown through views that hide secrets ([`super::wire`]).

use serde_json::json;
use store::Store;

use super::reply::{created, list_of, ok, to_json, ApiError, Reply};
use super::routes::Collection;
use super::wire::{
    parse_body, CustomerBody, KeyBody, KeyView, ProviderCreateBody, ProviderUpdateBody,
    ProviderView, TeamBody,
};

fn not_found(kind: &'static str, id: &str) -> ApiError {
    ApiError::from(store::Error::NotFound {
        kind,
        id: id.to_owned(),
    })
}

pub(super) async fn list(store: &Store, c: Collection) -> Result<Reply, ApiError> {
    match c {
        Collection::Customers => list_of(store.list_customers().await?),
        Collection::Teams => list_of(store.list_teams().await?),
        Collection::Keys => list_of(store.list_keys().await?.iter().map(KeyView::from).collect()),
        Collection::Providers => list_of(
            store
                .list_providers()
                .await?
                .iter()
                .map(ProviderView::from)
                .collect(),
        ),
    }
}

pub(super) async fn get(store: &Store, c: Collection, id: &str) -> Result<Reply, ApiError> {
    match c {
        Collection::Customers => match store.get_customer(id).await? {
            Some(v) => ok(v),
            None => Err(not_found("customer", id)),
        },
        Collection::Teams => match store.get_team(id).await? {
            Some(v) => ok(v),
            None => Err(not_found("team", id)),
        },
        Collection::Keys => match store.get_key(id).await? {
            Some(v) => ok(KeyView::from(&v)),
            None => Err(not_found("key", id)),
        },
        Collection::Providers => match store.get_provider(id).await? {
            Some(v) => ok(ProviderView::from(&v)),
            None => Err(not_found("provider", id)),
        },
    }
}

pub(super) async fn create(store: &Store, c: Collection, body: &[u8]) -> Result<Reply, ApiError> {
    match c {
        Collection::Customers => {
            let input = parse_body::<CustomerBody>(body)?.into_input()?;
            created(store.create_customer(&input).await?)
        }
        Collection::Teams => {
            let input = parse_body::<TeamBody>(body)?.into_input()?;
            let team = store
                .create_team(&input)
                .await
                .map_err(|e| ApiError::from(e).reference_param("customer_id"))?;
            created(team)
        }
        Collection::Keys => {
            let input = parse_body::<KeyBody>(body)?.into_input()?;
            let made = store
                .create_key(&input)
                .await
                .map_err(|e| ApiError::from(e).reference_param("team_id"))?;
            created(json!({ "key": to_json(KeyView::from(&made.key))?, "secret": made.secret }))
        }
        Collection::Providers => {
            let (name, input) = parse_body::<ProviderCreateBody>(body)?.into_input()?;
            created(ProviderView::from(
                &store.create_provider(&name, &input).await?,
            ))
        }
    }
}

pub(super) async fn update(
    store: &Store,
    c: Collection,
    id: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    match c {
        Collection::Customers => {
            let input = parse_body::<CustomerBody>(body)?.into_input()?;
            ok(store.update_customer(id, &input).await?)
        }
        Collection::Teams => {
            let input = parse_body::<TeamBody>(body)?.into_input()?;
            let team = store
                .update_team(id, &input)
                .await
                .map_err(|e| ApiError::from(e).reference_param("customer_id"))?;
            ok(team)
        }
        Collection::Keys => {
            let input = parse_body::<KeyBody>(body)?.into_input()?;
            let key = store
                .update_key(id, &input)
                .await
                .map_err(|e| ApiError::from(e).reference_param("team_id"))?;
            ok(KeyView::from(&key))
        }
        Collection::Providers => {
            let parsed = parse_body::<ProviderUpdateBody>(body)?;
            // An omitted `secret` keeps the stored one (it cannot be read back, so a
            // full replace would silently drop it); `null` clears it.
            let keep = match parsed.secret {
                Some(_) => None,
                None => Some(
                    store
                        .get_provider(id)
                        .await?
                        .ok_or_else(|| not_found("provider", id))?
                        .secret,
                ),
            };
            let input = parsed.into_input(keep)?;
            ok(ProviderView::from(
                &store.update_provider(id, &input).await?,
            ))
        }
    }
}

pub(super) async fn delete(store: &Store, c: Collection, id: &str) -> Result<Reply, ApiError> {
    let object = match c {
        Collection::Customers => {
            store.delete_customer(id).await?;
            "customer"
        }
        Collection::Teams => {
            store.delete_team(id).await?;
            "team"
        }
        Collection::Keys => {
            store.delete_key(id).await?;
            "key"
        }
        Collection::Providers => {
            store.delete_provider(id).await?;
            "provider"
        }
    };
    ok(json!({ "id": id, "object": object, "deleted": true }))
}
