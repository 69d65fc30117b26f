# shellcheck shell=bash
# The static node binary's build, shared by scripts/setup --static and scripts/package.
# Source it; do not run it.
#
# The binary carries the Swift runtime (--static-swift-stdlib), libarchive and liblzma: the
# archives Debian's -dev packages ship (libarchive.a, liblzma.a) are linked in, so a node
# needs only libc, libm, libstdc++, libgcc_s and libzstd (all in every Debian minbase:
# dpkg itself needs libzstd). Dynamically, libarchive alone brought ten more shared
# libraries (libxml2, ICU, nettle, acl, lz4, bzip2, zlib …) for formats slipway never
# uses, and their loading and relocations into every command's start
# (docs/engineering.md "Start-up"). libzstd stays shared: Debian's libzstd.a is built
# without multithreading, and slipway's zstd encoder sets ZSTD_c_nbWorkers.
#
# How: SwiftPM takes the link flags of the system libraries from pkg-config. The .pc files
# written here send `-larchive` and `-llzma` to a directory where libarchive.so is a linker
# script naming libarchive.a (and so for liblzma); SLIPWAY_STATIC_LIBARCHIVE fills in
# Sources/CArchiveStatic, the one helper of libarchive's pax writer that would otherwise
# pull in every other format.

# static_build_setup ROOT: writes ROOT/.build-static/static-libs, exports PKG_CONFIG_PATH
# and sets STATIC_BUILD_ARGS (the arguments of `swift build` for the static binary).
static_build_setup() {
    local root="$1"
    local dir="$root/.build-static/static-libs"
    mkdir -p "$dir/pkgconfig"
    local lib archive cflags version
    for lib in libarchive liblzma; do
        version="$(pkg-config --modversion "$lib")" || {
            echo "static build: pkg-config knows no $lib (install ${lib}-dev)" >&2
            return 1
        }
        # Where the linker finds it (the archive is in the multiarch directory).
        archive="$(clang -print-file-name="$lib.a")"
        [[ "$archive" == /* && -f "$archive" ]] || {
            echo "static build: no $lib.a in the linker's search path (it comes with ${lib}-dev)" >&2
            return 1
        }
        cflags="$(pkg-config --cflags "$lib")"
        write_if_changed "$dir/$lib.so" "/* scripts/lib/static-build.sh: -l${lib#lib} links the static archive. */
INPUT($archive)"
        write_if_changed "$dir/pkgconfig/$lib.pc" "# scripts/lib/static-build.sh: $lib linked statically.
Name: $lib
Description: $lib, the static archive
Version: $version
Cflags: $cflags
Libs: -L$dir -l${lib#lib}"
    done
    export PKG_CONFIG_PATH="$dir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    STATIC_BUILD_ARGS=(-c release --static-swift-stdlib --scratch-path "$root/.build-static" -Xcc -DSLIPWAY_STATIC_LIBARCHIVE)
}

# write_if_changed FILE TEXT: leaves an unchanged file (and its time) alone.
write_if_changed() {
    local file="$1" text="$2"
    [[ -f "$file" && "$(cat "$file")" == "$text" ]] || printf '%s\n' "$text" > "$file"
}
