# shellcheck shell=bash
# Helpers shared by scripts/demo and scripts/bench/*. Source it; do not run it.

SLIPWAY_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Base trees survive across runs (and across fresh clones on the same machine) so that
# a second run skips the ~25 s bootstrap. Override with SLIPWAY_CACHE_DIR.
SLIPWAY_CACHE_DIR="${SLIPWAY_CACHE_DIR:-${XDG_CACHE_HOME:-/var/cache}/slipway}"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root() {
    local what="$1"
    if [[ "$(id -u)" != 0 ]]; then
        die "$what must run as root: it bootstraps a Debian tree and packs/unpacks device nodes, owners and file capabilities. Run it again with sudo: sudo $0"
    fi
}

# Wall-clock seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

# elapsed START END -> seconds with 2 decimals
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# human SIZE_IN_BYTES -> "123.4MB" (SI, as slipway prints sizes)
human() { numfmt --to=si --suffix=B --format='%.1f' "$1"; }

# The host's own apt source files that serve SUITE, one per line.
#
# mmdebstrap falls back to a built-in default mirror when it is given none, so the
# project names no mirror at all: it hands mmdebstrap the host's source files (an
# existing file given as MIRROR is pasted into the new tree's apt sources), and the
# tree is bootstrapped from wherever this machine already gets its packages.
host_apt_sources() {
    local suite="$1" f
    local -a candidates=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    for f in "${candidates[@]}"; do
        [[ -f "$f" && -r "$f" ]] || continue
        # A source counts when a non-comment line names the suite (one-line "deb URI
        # bookworm main" or deb822 "Suites: bookworm bookworm-updates").
        if grep -v '^[[:space:]]*#' "$f" | grep -qw -- "$suite"; then
            # deb822 stanzas can be switched off with "Enabled: no".
            if grep -qiE '^[[:space:]]*Enabled:[[:space:]]*no' "$f"; then
                continue
            fi
            printf '%s\n' "$f"
        fi
    done
}

# ensure_base_rootfs NAME SUITE VARIANT [PACKAGE...]
# Prints the path of a cached Debian tree bootstrapped by mmdebstrap, building it on the
# first call. The tree is built beside its final place and renamed in, so an interrupted
# bootstrap never leaves a half tree in the cache. A recipe stamp next to the tree
# rebuilds it when the recipe changes.
ensure_base_rootfs() {
    local name="$1" suite="$2" variant="$3"
    shift 3
    local -a packages=("$@")
    local dir="$SLIPWAY_CACHE_DIR/$name"
    local stamp="$dir.recipe"
    local recipe="suite=$suite variant=$variant include=${packages[*]:-}"

    if [[ -d "$dir" && -f "$stamp" && "$(cat "$stamp")" == "$recipe" ]]; then
        log "using cached base tree $dir ($recipe)"
        printf '%s\n' "$dir"
        return 0
    fi

    command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: run scripts/setup first"
    mkdir -p "$SLIPWAY_CACHE_DIR"
    rm -rf -- "$dir" "$stamp" "$dir.partial"

    local -a sources=()
    mapfile -t sources < <(host_apt_sources "$suite")
    if ((${#sources[@]} == 0)); then
        warn "no apt source on this host names '$suite'; mmdebstrap will use its built-in default mirror"
    else
        log "apt sources for the base tree (from this host): ${sources[*]}"
    fi

    local -a args=(--variant="$variant")
    if ((${#packages[@]} > 0)); then
        args+=(--include="$(IFS=,; printf '%s' "${packages[*]}")")
    fi
    log "bootstrapping $suite ($variant${packages[*]:+ + ${packages[*]}}) into $dir (once; cached afterwards)"
    local t0 t1
    t0="$(now)"
    if ! mmdebstrap "${args[@]}" "$suite" "$dir.partial" "${sources[@]}" </dev/null >&2; then
        rm -rf -- "$dir.partial"
        die "mmdebstrap failed to bootstrap $suite; see its messages above"
    fi
    t1="$(now)"
    mv -- "$dir.partial" "$dir"
    printf '%s\n' "$recipe" >"$stamp"
    log "bootstrapped $dir in $(elapsed "$t0" "$t1") s"
    printf '%s\n' "$dir"
}

# tree_stats DIR -> "BYTES ENTRIES" (apparent size of regular files, entries below DIR)
tree_stats() {
    local bytes entries
    bytes="$(find "$1" -mindepth 1 -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')"
    entries="$(find "$1" -mindepth 1 -printf x | wc -c)"
    printf '%s %s\n' "$bytes" "$entries"
}
