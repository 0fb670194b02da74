# shellcheck shell=bash
# The release build a benchmark measures. Source this file, then:
#
#   inmail=$(release_build --bin inmail)
#   bin=$(release_build --example throughput)
#
# prints the built file's path. With PGO=1 the build is profile-guided
# (scripts/pgo.sh, under target/<host>/release), else `cargo build --release`.
release_build() {
    local kind=$1 name=$2 sub=""
    local dir=${CARGO_TARGET_DIR:-target}
    [ "$kind" = --example ] && sub=examples/
    if [ -n "${PGO:-}" ]; then
        scripts/pgo.sh build --release --quiet "$kind" "$name" >&2
        echo "$dir/$(rustc -vV | sed -n 's/^host: //p')/release/$sub$name"
    else
        cargo build --release --quiet "$kind" "$name" >&2
        echo "$dir/release/$sub$name"
    fi
}
