# shellcheck shell=bash
# Local stand-ins for the Dockerfile's public base images, built under the same names, for machines that cannot
# pull from a registry but can reach Debian's package archive. Sourced by .ci/image-tests, which provides `docker`
# (a function running the engine's client) and `note`.
#
#   debian:bookworm-slim       debootstrap --variant=minbase, trimmed like the official slim image
#   rust:<version>-slim-bookworm  that plus gcc and libc6-dev and this machine's Rust toolchain, laid out like the
#                              official image (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo), trusting
#                              the certificate authorities this machine trusts (its HTTPS, and so cargo's download of
#                              crates, may go through a proxy with its own CA)
#
# Each stand-in carries a label with a hash of what it was made from; an image whose label matches is reused.

standin_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
debian_mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# The label value an image has, or nothing when it does not exist.
standin_label() {
  docker image inspect --format '{{ index .Config.Labels "ci.standin" }}' "$1" 2>/dev/null || true
}

# make_debian_standin NAME RELEASE
make_debian_standin() (
  name=$1 release=$2
  recipe="$(declare -f make_debian_standin | sha256sum | cut -c1-16)-$release"
  if [ "$(standin_label "$name")" = "$recipe" ]; then
    note "stand-in $name: cached"
    return
  fi
  note "stand-in $name: debootstrap $release (minbase) from $debian_mirror"
  command -v debootstrap >/dev/null || apt_install debootstrap
  root="$(mktemp -d /var/tmp/standin-rootfs.XXXXXX)"
  # The rootfs is removed whatever happens (this function runs in a subshell).
  # shellcheck disable=SC2064
  trap "rm -rf '$root' '$root.log'" EXIT
  debootstrap --variant=minbase "$release" "$root" "$debian_mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    exit 1
  }
  # What the official image does to stay slim: no docs, man pages or translations, no apt caches.
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: $debian_mirror
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${debian_mirror%/debian}/debian-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
  find "$root/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/* "$root"/tmp/* "$root"/root/.bash_history
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  : >"$root/etc/hostname"
  : >"$root/etc/resolv.conf"
  tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL ci.standin=$recipe" \
    - "$name" >/dev/null
  note "stand-in $name: $(docker image inspect --format '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}')"
)

# make_rust_standin NAME BASE: BASE plus gcc, libc6-dev and the Rust toolchain of this machine (rustc, cargo,
# rust-std: the official image's minimal profile).
make_rust_standin() (
  name=$1 base=$2
  sysroot="$(rustc --print sysroot)"
  version="$(rustc --version | awk '{print $2}')"
  recipe="$({ declare -f make_rust_standin; cat "$standin_dir/rust-standin.Dockerfile" /etc/ssl/certs/ca-certificates.crt; } |
    sha256sum | cut -c1-16)-$version-$(standin_label "$base")"
  if [ "$(standin_label "$name")" = "$recipe" ]; then
    note "stand-in $name: cached (rustc $version)"
    return
  fi
  wanted=${name#rust:}
  wanted=${wanted%%-*}
  case "$version" in
    "$wanted" | "$wanted".*) ;;
    *) note "stand-in $name: this machine has rustc $version, not $wanted; the stand-in carries $version" ;;
  esac
  note "stand-in $name: $base + gcc + rustc $version from $sysroot"
  context="$(mktemp -d /var/tmp/standin-rust.XXXXXX)"
  # shellcheck disable=SC2064
  trap "rm -rf '$context'" EXIT
  mkdir -p "$context/toolchain/bin"
  cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$sysroot/bin/rustdoc" "$context/toolchain/bin/"
  mkdir -p "$context/toolchain/lib/rustlib"
  cp -a "$sysroot"/lib/*.so* "$context/toolchain/lib/"
  cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu" "$sysroot/lib/rustlib/etc" "$context/toolchain/lib/rustlib/"
  cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
  cp "$standin_dir/rust-standin.Dockerfile" "$context/Dockerfile"
  docker build --network host --quiet \
    --build-arg "base=$base" --build-arg "rust_version=$version" --label "ci.standin=$recipe" \
    -t "$name" "$context" >/dev/null
  note "stand-in $name: $(docker image inspect --format '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}')"
)
