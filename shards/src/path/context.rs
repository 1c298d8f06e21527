//! The typed context of one request: what each phase of the request path ([`crate::path`])
//! has learned, in the order the phases fill it in. A phase reads only fields that earlier
//! phases set and adds its own; nothing else carries request state between phases.
//!
//! Hot-path cost: one stack value per request; the only heap parts are the owned model name,
//! the target list and, for a converted client API, the request's chat form.

use std::cell::{Cell, OnceCell};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vocab::CacheKind;

use crate::cache::desk::SemanticKey;
use crate::cache::{Entry, Form};
use crate::dialect::Inbound;
use crate::governance::admit::Admission;
use crate::governance::usage::Tally;
use crate::governance::{GovSnapshot, KeyPolicy};
use crate::http::request::RequestHead;
use crate::path::conn::{BodyLocation, ClientConn};
use crate::path::direct_fields::DirectFields;
use crate::route::Target;
use crate::snapshot::Snapshot;
use crate::state::Shard;

/// What every phase may read: this shard's state and the configuration the request is
/// served from.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub shard: &'a Shard,
    pub snapshot: &'a Snapshot,
    /// The governance snapshot, loaded once the request was read (`None`: governance off).
    pub gov: Option<&'a GovSnapshot>,
}

/// The phases of the request path, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Read,
    Authenticate,
    Extract,
    Resolve,
    Admit,
    Attempt,
    Relay,
    Settle,
}

/// When one request began arriving, and which phases it reached. Only the read phase's
/// start is a time (read deadlines, latency histograms and spans use it); the other phases
/// are marks (settle asks whether the attempt phase was reached). Each phase used to read the
/// clock as it started, seven clock reads a request that nothing read back (docs/perf.md).
/// A cell, so that phases holding the context shared (attempt, relay) can mark too.
#[derive(Debug, Clone)]
pub struct Phases {
    /// When the connection was accepted (shared by the requests it carries).
    pub accepted: Instant,
    read_start: Option<Instant>,
    /// Bit `phase as u8` set: the request reached `phase`.
    reached: Cell<u8>,
}

impl Phases {
    pub fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            read_start: None,
            reached: Cell::new(0),
        }
    }

    /// The read phase starts now (the request's first bytes are there); returns the time.
    pub fn start_read(&mut self) -> Instant {
        let now = crate::poll_clock::now();
        self.read_start = Some(now);
        self.enter(Phase::Read);
        now
    }

    /// Marks `phase` as reached.
    pub fn enter(&self, phase: Phase) {
        self.reached.set(self.reached.get() | 1 << phase as u8);
    }

    pub fn reached(&self, phase: Phase) -> bool {
        self.reached.get() & 1 << phase as u8 != 0
    }

    /// When the request began arriving: the start of its read phase.
    pub fn request_start(&self) -> Instant {
        self.read_start.unwrap_or(self.accepted)
    }
}

// Every phase has its bit.
const _: () = assert!((Phase::Settle as u8) < u8::BITS as u8);

/// Who is asking: set by the authenticate phase when governance is on.
#[derive(Default)]
pub struct Caller<'s> {
    /// The governance snapshot the request is judged by (`None`: governance is off). Held by
    /// the connection's loop for the request, so that what the request takes of it (its key's
    /// limits) is borrowed, not counted in shared `Arc`s.
    pub snapshot: Option<&'s GovSnapshot>,
    /// The hash of the virtual key presented (`None`: no key, allowed when keys are
    /// optional); its policy is in `snapshot` ([`Caller::key`]).
    pub key_hash: Option<[u8; 32]>,
    /// Wall-clock seconds the request's limits are counted at (0 when governance is off).
    pub now_unix: u64,
}

impl<'s> Caller<'s> {
    /// The policy of the key presented, from the request's snapshot: looked up (a few
    /// nanoseconds, [`crate::governance::KeyTable`]) rather than held as an `Arc`, whose
    /// count every shard serving the key would write.
    pub fn key(&self) -> Option<&'s KeyPolicy> {
        let hash = self.key_hash.as_ref()?;
        self.snapshot?.keys.get(hash).map(|k| &**k)
    }
}

/// What the extract phase read from the body and headers.
#[derive(Debug, Default)]
pub struct Ask<'s> {
    /// The model name as the client wrote it (see [`RequestCtx::new`] for where it lives).
    pub requested: &'s str,
    /// Where that name's string literal sits in the body.
    pub model_span: Range<usize>,
    pub stream: bool,
    /// The client asked for stream usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The body sets `stream_options` itself.
    pub has_stream_options: bool,
    /// The request in OpenAI chat form when the client spoke another API.
    pub chat_body: Option<Vec<u8>>,
    /// The output cap the client asked for, under any of its names.
    pub max_tokens: Option<u64>,
    /// Extra fallbacks from `x-ringgate-fallbacks` (comma-separated model names).
    pub listed_fallbacks: Option<&'s str>,
    /// `x-ringgate-timeout-ms`.
    pub timeout_ms: Option<u64>,
    /// Governed stream whose client did not ask for usage: the gateway asks the provider for
    /// it and keeps it out of the client's stream.
    pub inject_usage: bool,
    /// `x-ringgate-provider`: the provider of a files or batches request.
    pub named_provider: Option<&'s str>,
    /// A relayed API's request ([`crate::direct`]): where its model sits, what it is
    /// charged by.
    pub direct: Option<Box<DirectFields>>,
}

impl Ask<'_> {
    /// A transcription the client asked as `text`, asked upstream as `json` (which states
    /// the duration it is charged by) and answered with the JSON's text.
    pub fn transcript_as_text(&self) -> bool {
        self.direct
            .as_deref()
            .is_some_and(|d| d.text_format_span.is_some())
    }
}

/// The model names a request asks for, copied once out of the client's buffers (which
/// every attempt borrows mutably). They live in a cell beside the context, in the
/// connection loop's frame, so that the targets resolved from them (`provider/model` names
/// a slice of the name) can borrow them for the rest of the request without another copy.
#[derive(Debug, Default)]
pub struct ModelNames {
    /// `model`, as the client wrote it.
    pub requested: String,
    /// `x-ringgate-fallbacks`.
    pub listed_fallbacks: Option<String>,
    /// `x-ringgate-provider`.
    pub provider: Option<String>,
}

/// A response that reached the client.
#[derive(Debug, Clone)]
pub struct Served {
    pub keep_alive: bool,
    pub status: u16,
    /// Index in [`RequestCtx::targets`] of the target that answered.
    pub target: Option<usize>,
    pub tally: Tally,
    /// The answer as the cache keeps it (chat or embeddings JSON, or the chat stream),
    /// captured whole when the request's answer is to be kept.
    pub answer: Option<Vec<u8>>,
}

/// Everything one request has gathered, phase by phase (see [`crate::path`]).
pub struct RequestCtx<'s> {
    pub times: Phases,
    /// read: the request head (positions in the connection's buffer).
    pub head: RequestHead,
    /// read: where the body is.
    pub body: BodyLocation,
    /// route: the API the client called.
    pub endpoint: Inbound,
    /// authenticate: the caller.
    pub caller: Caller<'s>,
    /// extract: what the body and headers ask for.
    pub ask: Ask<'s>,
    /// extract: holds the names `ask` points to.
    names: &'s OnceCell<ModelNames>,
    /// resolve: the targets to try in order (the model, its balanced peers, fallbacks).
    pub targets: Vec<Target<'s>>,
    /// resolve: when the whole request must be answered by.
    pub deadline: Instant,
    /// admit: what the request holds of its key's, team's and customer's limits.
    pub admission: Option<Admission<'s>>,
    /// attempt/relay: the answer sent, when one was.
    pub served: Option<Served>,
    /// cache: the request's cache key and what became of it.
    pub cache: CacheCtx,
    /// admit or settle: the prompt's tokens, once counted.
    prompt_tokens: Cell<Option<u64>>,
}

/// The cache phase's part of a request.
#[derive(Default)]
pub struct CacheCtx {
    /// The key a fresh answer is kept under, and its form (`None`: not kept).
    pub key: Option<([u8; 32], Form)>,
    /// How long a fresh answer is kept.
    pub ttl: Duration,
    /// The answer served from the cache, and how it was found.
    pub hit: Option<(Arc<Entry>, CacheKind)>,
    /// What the hit would have cost (priced when governance has prices).
    pub saved_cost: vocab::NanoUsd,
    /// The request's place in the semantic cache, for its fresh answer.
    pub semantic: Option<SemanticKey>,
}

impl<'s> RequestCtx<'s> {
    /// `names` is an empty cell in the caller's frame: see [`ModelNames`].
    pub fn new(
        times: Phases,
        head: RequestHead,
        body: BodyLocation,
        names: &'s OnceCell<ModelNames>,
    ) -> Self {
        let start = times.request_start();
        Self {
            times,
            head,
            body,
            endpoint: Inbound::Chat,
            caller: Caller::default(),
            ask: Ask::default(),
            names,
            targets: Vec::new(),
            deadline: start,
            admission: None,
            served: None,
            cache: CacheCtx::default(),
            prompt_tokens: Cell::new(None),
        }
    }

    /// Keeps the model names the client asked for (once) for the rest of the request.
    pub fn set_names(&mut self, names: ModelNames) {
        let names = self.names.get_or_init(|| names);
        self.ask.requested = &names.requested;
        self.ask.listed_fallbacks = names.listed_fallbacks.as_deref();
        self.ask.named_provider = names.provider.as_deref();
    }

    /// Prompt tokens of the request for `model`'s tokenizer, counted once (the admit phase
    /// may need them for a token limit, the settle phase when the provider reports none).
    pub fn prompt_tokens(&self, conn: &ClientConn, model: &str) -> u64 {
        if let Some(n) = self.prompt_tokens.get() {
            return n;
        }
        let n = tokens::prompt_tokens(tokens::Family::of_model(model), self.prompt_body(conn));
        self.prompt_tokens.set(Some(n));
        n
    }

    /// The target that answered, else the one that was to be tried first (none when the
    /// request was refused before it had targets): what its logs, metrics and usage name.
    pub fn answering_target(&self) -> Option<&Target<'s>> {
        self.served
            .as_ref()
            .and_then(|s| s.target)
            .and_then(|i| self.targets.get(i))
            .or(self.targets.first())
    }

    /// An upper bound of the prompt's tokens for any model, read without a tokenizer.
    pub fn prompt_tokens_at_most(&self, conn: &ClientConn) -> u64 {
        tokens::prompt_tokens_at_most(self.prompt_body(conn))
    }

    /// The body the prompt is read from: the chat form of a converted request, else the
    /// client's.
    fn prompt_body<'c>(&'c self, conn: &'c ClientConn) -> &'c [u8] {
        match &self.ask.chat_body {
            Some(chat) => &chat[..],
            None => conn.body(&self.body),
        }
    }

    /// Whether governance judges this request (keys, limits, usage).
    pub fn governed(&self) -> bool {
        self.caller.snapshot.is_some()
    }
}
