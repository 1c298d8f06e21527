//! Admin routing: which paths exist ([`Resource`]), which methods each accepts, and which
//! handler answers — entity CRUD in [`super::entities`], usage, budget resets and request
//! logs in [`super::usage`].

use hyper::Method;

use super::reply::{ApiError, Reply};
use super::wire::parse_empty_body;
use super::{entities, usage, AdminState};

/// The entity collections under `/admin/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Collection {
    Customers,
    Teams,
    Keys,
    Providers,
}

/// A parsed admin path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resource<'a> {
    /// `/admin/{collection}`
    List(Collection),
    /// `/admin/{collection}/{id}`
    Item(Collection, &'a str),
    /// `/admin/usage/{kind}/{id}`
    Usage(&'a str, &'a str),
    /// `/admin/budgets/{kind}/{id}/reset`
    BudgetReset(&'a str, &'a str),
    /// `/admin/request-logs`
    RequestLogs,
    /// `/admin/cluster`
    Cluster,
}

impl<'a> Resource<'a> {
    pub(super) fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix("/admin/")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        let collection = |s: &str| {
            Some(match s {
                "customers" => Collection::Customers,
                "teams" => Collection::Teams,
                "keys" => Collection::Keys,
                "providers" => Collection::Providers,
                _ => return None,
            })
        };
        Some(match segs.as_slice() {
            ["request-logs"] => Resource::RequestLogs,
            ["cluster"] => Resource::Cluster,
            ["usage", kind, id] => Resource::Usage(kind, id),
            ["budgets", kind, id, "reset"] => Resource::BudgetReset(kind, id),
            [c] => Resource::List(collection(c)?),
            [c, id] => Resource::Item(collection(c)?, id),
            _ => return None,
        })
    }

    pub(super) fn allowed(self) -> &'static str {
        match self {
            Resource::List(_) => "GET, POST",
            Resource::Item(..) => "GET, PUT, DELETE",
            Resource::Usage(..) | Resource::RequestLogs | Resource::Cluster => "GET",
            Resource::BudgetReset(..) => "POST",
        }
    }

    pub(super) fn allows(self, method: &Method) -> bool {
        self.allowed().split(", ").any(|m| m == method.as_str())
    }
}

/// The fleet this node belongs to; an SQLite node is a fleet of one by definition.
async fn cluster(state: &AdminState) -> Result<Reply, ApiError> {
    match &state.fleet {
        Some(fleet) => super::reply::ok(serde_json::json!({
            "mode": "fleet",
            "node_id": fleet.node_id(),
            "nodes": fleet.nodes().await?,
        })),
        None => super::reply::ok(serde_json::json!({"mode": "single_node", "nodes": []})),
    }
}

pub(super) async fn dispatch(
    method: &Method,
    resource: Resource<'_>,
    query: Option<&str>,
    body: &[u8],
    state: &AdminState,
) -> Result<Reply, ApiError> {
    let store = &state.store;
    match (resource, method) {
        (Resource::List(c), &Method::GET) => entities::list(store, c).await,
        (Resource::List(c), &Method::POST) => entities::create(store, c, body).await,
        (Resource::Item(c, id), &Method::GET) => entities::get(store, c, id).await,
        (Resource::Item(c, id), &Method::PUT) => entities::update(store, c, id, body).await,
        (Resource::Item(c, id), &Method::DELETE) => entities::delete(store, c, id).await,
        (Resource::Usage(kind, id), _) => usage::usage(store, usage::entity(kind, id)?).await,
        (Resource::BudgetReset(kind, id), _) => {
            parse_empty_body(body)?;
            usage::reset_budget(store, usage::entity(kind, id)?).await
        }
        (Resource::RequestLogs, _) => usage::request_logs(store, query).await,
        (Resource::Cluster, _) => cluster(state).await,
        // `route` only dispatches methods the resource allows.
        _ => Err(ApiError::internal()),
    }
}
