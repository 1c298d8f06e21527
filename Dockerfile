# ringgate's container image: a stripped release binary on distroless (glibc, CA roots, no
# shell, no package manager), running as an unprivileged user, with a default config that
# listens on 0.0.0.0 (data port 8080, control port 9090).
#
#   docker build -t ringgate .
#   docker run --rm -p 8080:8080 -p 9090:9090 -v "$PWD/my.yaml:/etc/ringgate/config.yaml:ro" ringgate
#
# Docker's default seccomp profile blocks io_uring, so ringgate runs on epoll there. For
# io_uring: --security-opt seccomp=helm/ringgate/seccomp/ringgate-io-uring.json

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The release profile keeps line tables for profiling; the image needs none of it.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# Dependencies first, built against empty targets, so that this layer is rebuilt only when a
# manifest or Cargo.lock changes, not on every source edit.
COPY Cargo.toml Cargo.lock ./
COPY shards/Cargo.toml shards/
COPY store/Cargo.toml store/
COPY translate/Cargo.toml translate/
COPY mock-llm/Cargo.toml mock-llm/
COPY vocab/Cargo.toml vocab/
COPY tokens/Cargo.toml tokens/
COPY perf/floor/Cargo.toml perf/floor/
RUN mkdir -p src benches shards/src store/src translate/src translate/benches mock-llm/src vocab/src tokens/src tokens/benches perf/floor/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > perf/floor/src/main.rs \
 && echo 'fn main() {}' > mock-llm/src/main.rs \
 && echo 'fn main() {}' > benches/hot_path.rs \
 && echo 'fn main() {}' > benches/cache.rs \
 && echo 'fn main() {}' > benches/semantic_index.rs \
 && echo 'fn main() {}' > translate/benches/streams.rs \
 && echo 'fn main() {}' > tokens/benches/count.rs \
 && touch shards/src/lib.rs store/src/lib.rs translate/src/lib.rs vocab/src/lib.rs tokens/src/lib.rs \
 && cargo build --release --locked --bin ringgate \
 && rm -rf src benches shards/src store/src translate/src translate/benches mock-llm/src vocab/src tokens/src tokens/benches perf/floor/src

# The sources. COPY keeps their timestamps, which may be older than the empty targets' build:
# touch the crate roots so that cargo rebuilds the workspace's own crates.
COPY . .
RUN touch src/main.rs shards/src/lib.rs store/src/lib.rs translate/src/lib.rs vocab/src/lib.rs tokens/src/lib.rs \
 && cargo build --release --locked --bin ringgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ringgate /usr/local/bin/ringgate
COPY examples/container.yaml /etc/ringgate/config.yaml
# distroless's nonroot user.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/ringgate"]
CMD ["serve", "--config", "/etc/ringgate/config.yaml"]
