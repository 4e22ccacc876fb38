# The cf-blue-green-resource image: /opt/resource/{check,in,out} on a slim Debian with ca-certificates, bash,
# curl and jq (for smoke-test scripts: README.md, "What a smoke test can use", lists everything they get).
#
#   docker build -t cf-blue-green-resource .               the image
#   docker build --target tests .                          also runs the integration tests against /opt/resource/*
#   docker run --rm cf-blue-green-resource:tests [FILTER]  runs them again (a built `--target tests` image)
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts. The base images can be overridden, e.g.
#   --build-arg builder_image=my-registry/rust:1.95-slim-bookworm --build-arg base_image=my-registry/debian:bookworm-slim
# The builder must be Debian bookworm (or older) based, so that the binaries' glibc matches the runtime.

ARG builder_image=rust:1.95-slim-bookworm
ARG base_image=debian:bookworm-slim

FROM ${builder_image} AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=cf-blue-green-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=cf-blue-green-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
 && mkdir /assets \
 && cp target/release/check target/release/in target/release/out /assets/

# The integration test binary (tests/integration) and the sample app it deploys (stripped, as the tests strip it
# outside the image: a tenth of the size to upload and stage): compiled here, run in `tests`
# against /opt/resource/*. A plain `docker build .` skips this stage. The dev profile: the test binary needs no
# optimisation, and its dependencies are built with other features than the release binaries' anyway.
FROM builder AS test-builder
RUN --mount=type=cache,id=cf-blue-green-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=cf-blue-green-target,target=/src/target,sharing=locked \
    set -eu; \
    mkdir /tests; \
    exe=$(cargo test --locked --test integration --no-run --message-format=json \
          | grep '"kind":\["test"\]' | grep '"name":"integration"' \
          | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p'); \
    test -x "$exe"; \
    cp "$exe" /tests/integration; \
    cargo build --locked -p sample-app --bin sample-app; \
    strip -o /tests/sample-app target/debug/sample-app

FROM ${base_image} AS resource
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl bash jq \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
COPY --from=builder /assets/ /opt/resource/
LABEL org.opencontainers.image.title="cf-blue-green-resource" \
      org.opencontainers.image.description="Concourse resource type for zero-downtime blue-green deploys to Cloud Foundry" \
      org.opencontainers.image.licenses="Apache-2.0"

FROM resource AS tests
COPY --from=test-builder /tests/ /tests/
# What the tests read at run time (fixtures, examples, the README and the tree it describes), where the test
# binary was built (/src).
COPY --from=test-builder /src/ /src/
ENV RESOURCE_BIN_DIR=/opt/resource SAMPLE_APP_BIN=/tests/sample-app
RUN /tests/integration
CMD ["/tests/integration"]

FROM resource
