//! The cache phase, between resolve and admit: whether the request's answer is cached
//! ([`crate::cache::policy`]), its key, and a lookup — this node's memory tier first, then
//! the fleet's shared tier. A hit is answered here, in the client's API and stream mode,
//! after taking a request from the key's request limits when the configuration counts hits
//! (never tokens or budget: a hit costs nothing); the attempt phase never runs. A miss goes
//! on, and the fresh answer, captured whole as it is relayed, is kept once it ended well
//! ([`keep`]). Every response of a node with a cache says `x-ringgate-cache`.
//!
//! Reads `endpoint`, `caller`, `ask`, `targets`; adds `cache`.

use std::sync::Arc;

use vocab::{CacheKind, NanoUsd, TokenUsage};

use crate::cache::desk::Asked::{Answered, Unanswered};
use crate::cache::desk::SemanticKey;
use crate::cache::key::{cache_key, semantic_key, KeyParts};
use crate::cache::policy::{
    CachePolicy, Decision, ModelNames, RequestCacheHeaders, SemanticPolicy,
};
use crate::cache::replay::{replay, Asked, Replayed};
use crate::cache::{CacheStatus, Entry, Form, NodeCache};
use crate::dialect::Inbound;
use crate::http::chunked::{push_chunk_frame, LAST_CHUNK};
use crate::http::response::{finish_head, push_status_line, OutFraming};
use crate::path::conn::ClientConn;
use crate::path::context::{RequestCtx, Scope, Served};
use crate::path::outcome::Stop;
use crate::snapshot::Snapshot;
use crate::state::stats::CacheCounters;

/// The node's cache and its policy, when it has one: only then is there a lookup to await
/// (each awaited phase copies its future's whole size, needed or not: docs/perf.md).
#[derive(Clone, Copy)]
pub struct Tiers<'s> {
    cache: &'s NodeCache,
    policy: &'s CachePolicy,
}

/// The node's cache tiers, when the node has a cache (`None`: the phase has nothing to do).
pub fn tiers<'s>(scope: Scope<'s>) -> Option<Tiers<'s>> {
    Some(Tiers {
        cache: scope.shard.cache.as_deref()?,
        policy: scope.snapshot.cache.as_ref()?,
    })
}

/// Decides what the cache does for the request and looks its answer up. `Some`: the answer,
/// rendered for the client, to send instead of asking a provider.
pub async fn look_up(
    scope: Scope<'_>,
    Tiers { cache, policy }: Tiers<'_>,
    conn: &mut ClientConn,
    req: &mut RequestCtx<'_>,
) -> Result<Option<Replayed>, Stop> {
    let stats = &scope.shard.stats.cache;
    let form = match req.endpoint {
        Inbound::Chat | Inbound::AnthropicMessages | Inbound::Responses => Form::Chat,
        Inbound::Embeddings if !req.ask.stream => Form::Embeddings,
        _ => return Ok(bypass(conn, stats)),
    };
    let headers = RequestCacheHeaders::parse(
        conn.request_header("x-ringgate-cache"),
        conn.request_header("x-ringgate-cache-ttl"),
    )?;
    // The model's own target, not the balanced order's first: the same request gets the
    // same key whichever member a balanced alias tries first.
    let Some(target) = scope.snapshot.models.resolve(req.ask.requested) else {
        return Ok(bypass(conn, stats));
    };
    let provider = &scope.snapshot.providers[target.provider].name;
    let key_policy = req.caller.key();
    let names = ModelNames {
        requested: req.ask.requested,
        provider,
        model: target.model,
    };
    let Decision::Use { lookup, ttl } =
        policy.decide(headers, key_policy.and_then(|k| k.cache_ttl_secs), &names)
    else {
        return Ok(bypass(conn, stats));
    };
    let scope_id = policy.scope_of(
        key_policy.map(|k| k.id.as_str()),
        key_policy.and_then(|k| k.team_id.as_deref()),
    );
    let parts = KeyParts {
        form,
        scope: &scope_id,
        provider,
        model: target.model,
        body: req
            .ask
            .chat_body
            .as_deref()
            .unwrap_or_else(|| conn.body(&req.body)),
    };
    let Some(key) = cache_key(&parts) else {
        return Ok(bypass(conn, stats));
    };
    let mut found = None;
    let mut similar = None;
    if lookup {
        found = find(cache, policy, stats, key)
            .await
            .map(|entry| (entry, CacheStatus::Hit));
        // An exact miss asks the semantic cache, with the last user turn and the rest's hash.
        if found.is_none() && form == Form::Chat && cache.desk.is_some() {
            similar = policy.semantic.and_then(|semantic| {
                semantic_key(&parts).map(|(partition, text)| (semantic, partition, text))
            });
        }
    }
    req.cache.key = Some((key, form));
    req.cache.ttl = ttl;
    conn.tracker.cache = Some(CacheStatus::Miss);
    if let Some((semantic, partition, text)) = similar {
        found = find_similar(cache, policy, stats, req, semantic, partition, text).await;
    }
    let Some((entry, status)) = found.filter(|(e, _)| e.form == form) else {
        stats.misses.incr();
        return Ok(None);
    };
    let asked = Asked {
        inbound: req.endpoint,
        stream: req.ask.stream,
        include_usage: req.ask.include_usage,
        model: req.ask.requested,
        created: crate::clock::unix_now(),
    };
    match replay(&entry, &asked) {
        Ok(replayed) => {
            conn.tracker.cache = Some(status);
            let kind = match status {
                CacheStatus::SemanticHit { .. } => {
                    stats.hits_semantic.incr();
                    CacheKind::Semantic
                }
                _ => {
                    stats.hits_exact.incr();
                    CacheKind::Exact
                }
            };
            req.cache.hit = Some((entry, kind));
            Ok(Some(replayed))
        }
        Err(e) => {
            // An entry that cannot be replayed is served by the provider instead, and
            // replaced by its fresh answer.
            tracing::warn!(request_id = conn.tracker.echoed_id(), error = %e, "cached answer could not be replayed; asking the provider");
            stats.misses.incr();
            Ok(None)
        }
    }
}

/// The live entry under `key`: this node's memory tier, then the fleet's shared tier (whose
/// entry is then kept here too).
async fn find(
    cache: &NodeCache,
    policy: &CachePolicy,
    stats: &CacheCounters,
    key: [u8; 32],
) -> Option<Arc<Entry>> {
    if let Some(entry) = cache.get(&key) {
        return Some(entry);
    }
    let desk = cache.desk.as_ref().filter(|_| cache.fleet)?;
    match desk.get(key, policy.fleet_lookup_timeout).await {
        Answered(Some(entry)) => {
            stats.fleet_hits.incr();
            cache.insert(key, entry.clone());
            Some(entry)
        }
        Answered(None) => None,
        Unanswered => {
            stats.fleet_unanswered.incr();
            None
        }
    }
}

/// The answer of the cached request most similar to this one, when one is similar enough.
/// The request's embedding is kept for its own answer either way.
async fn find_similar(
    cache: &NodeCache,
    policy: &CachePolicy,
    stats: &CacheCounters,
    req: &mut RequestCtx<'_>,
    semantic: SemanticPolicy,
    partition: [u8; 32],
    text: String,
) -> Option<(Arc<Entry>, CacheStatus)> {
    let desk = cache.desk.as_ref()?;
    let similar = match desk
        .similar(partition, text, semantic.threshold, semantic.timeout)
        .await
    {
        Answered(similar) => similar,
        Unanswered => {
            stats.semantic_unanswered.incr();
            return None;
        }
    };
    req.cache.semantic = similar
        .vector
        .map(|vector| SemanticKey { partition, vector });
    let (key, similarity) = similar.nearest?;
    let entry = find(cache, policy, stats, key).await?;
    Some((entry, CacheStatus::SemanticHit { similarity }))
}

fn bypass(conn: &mut ClientConn, stats: &CacheCounters) -> Option<Replayed> {
    conn.tracker.cache = Some(CacheStatus::Bypass);
    stats.bypassed.incr();
    None
}

/// Most bytes of the answer to keep, when the request's answer is to be kept.
pub fn keep_limit(snapshot: &Snapshot, req: &RequestCtx<'_>) -> Option<usize> {
    req.cache.key?;
    snapshot.cache.as_ref().map(|p| p.max_entry_bytes)
}

/// Writes a cached answer to `conn.out`, for the caller to send. What it saved is counted
/// here and priced for the usage record.
pub fn render_hit(
    scope: Scope<'_>,
    conn: &mut ClientConn,
    req: &mut RequestCtx<'_>,
    replayed: Replayed,
) -> Served {
    let keep_alive = req.head.keep_alive;
    let lines = conn.tracker.head_lines();
    let out = &mut conn.out;
    out.clear();
    push_status_line(out, 200);
    out.extend_from_slice(b"content-type: ");
    out.extend_from_slice(replayed.content_type().as_bytes());
    out.extend_from_slice(b"\r\n");
    if replayed.stream {
        out.extend_from_slice(b"cache-control: no-cache\r\n");
        finish_head(out, OutFraming::Chunked, keep_alive, &lines);
        push_chunk_frame(out, &replayed.body);
        out.extend_from_slice(LAST_CHUNK);
    } else {
        let length = OutFraming::Length(replayed.body.len() as u64);
        finish_head(out, length, keep_alive, &lines);
        out.extend_from_slice(&replayed.body);
    }
    scope.shard.stats.record_status(200);
    if let Some((entry, _)) = &req.cache.hit {
        let stats = &scope.shard.stats.cache;
        stats.saved_prompt_tokens.add(entry.usage.prompt);
        stats.saved_completion_tokens.add(entry.usage.completion);
        let saved = saved_cost(req, entry);
        stats.saved_cost_nanos.add(saved.nanos());
        req.cache.saved_cost = saved;
    }
    Served {
        keep_alive,
        status: 200,
        target: None,
        tally: Default::default(),
        answer: None,
    }
}

/// What the answer would have cost had a provider made it again (known when governance
/// has prices).
fn saved_cost(req: &RequestCtx<'_>, entry: &Entry) -> NanoUsd {
    let Some(gov) = req.caller.snapshot else {
        return NanoUsd::ZERO;
    };
    let u = entry.usage;
    gov.prices
        .lookup(&entry.provider, &entry.model)
        .map_or(NanoUsd::ZERO, |p| p.cost(u.prompt, u.completion, u.cached))
}

/// Keeps a fresh answer that ended well, in this node's memory tier and (offered) in the
/// fleet's shared tier.
pub fn keep(scope: Scope<'_>, conn: &ClientConn, req: &RequestCtx<'_>, served: &mut Served) {
    let (Some(answer), Some(cache), Some((key, form))) = (
        served.answer.take(),
        scope.shard.cache.as_deref(),
        req.cache.key,
    ) else {
        return;
    };
    // Only a success is kept (an answer cut short was never captured: see the relay).
    if !(200..300).contains(&served.status) {
        return;
    }
    let body = if req.ask.stream && form == Form::Chat {
        match translate::openai::fold_chat_stream(&answer) {
            Ok(body) => body,
            Err(e) => {
                tracing::debug!(request_id = conn.tracker.echoed_id(), error = %e, "streamed answer not kept");
                return;
            }
        }
    } else {
        answer
    };
    let Some(target) = served.target.and_then(|i| req.targets.get(i)) else {
        return;
    };
    let provider = &scope.snapshot.providers[target.provider].name;
    let usage = served.tally.usage.unwrap_or_else(|| TokenUsage {
        prompt: req.prompt_tokens(conn, target.model),
        completion: served.tally.output_tokens,
        cached: 0,
    });
    let entry = Arc::new(Entry {
        form,
        body: body.into_boxed_slice(),
        usage,
        provider: provider.as_str().into(),
        model: target.model.into(),
        expires_at_ms: crate::clock::unix_now_ms() + req.cache.ttl.as_millis() as u64,
    });
    cache.insert(key, entry.clone());
    scope.shard.stats.cache.stored.incr();
    let semantic = req.cache.semantic.clone();
    if let Some(desk) = cache.desk.as_ref() {
        if (cache.fleet || semantic.is_some()) && !desk.offer(key, entry, semantic) {
            scope.shard.stats.cache.desk_dropped.incr();
        }
    }
}
