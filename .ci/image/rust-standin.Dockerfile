# Stand-in for the official rust:<version>-slim-bookworm image, made from a local toolchain (see standins.sh).
ARG base=debian:bookworm-slim
FROM ${base}
ARG rust_version
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# The CAs of the machine that makes the stand-in, so that cargo reaches crates.io as it does there.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${rust_version}
COPY toolchain/ /usr/local/rustup/toolchains/${rust_version}-x86_64-unknown-linux-gnu/
RUN mkdir -p /usr/local/cargo/bin \
 && for tool in cargo rustc rustdoc; do \
      ln -s "/usr/local/rustup/toolchains/${rust_version}-x86_64-unknown-linux-gnu/bin/$tool" /usr/local/cargo/bin/; \
    done \
 && cargo --version && rustc --version
