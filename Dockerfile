# Placeholder until the deployment issue: a plain two-stage build of the gateway.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin ringgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ringgate /usr/local/bin/ringgate
EXPOSE 8080
ENTRYPOINT ["ringgate", "serve", "--config", "/etc/ringgate/config.yaml"]
