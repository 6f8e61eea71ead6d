# Sourced by the scripts that build for device targets without containers. `cross_setup
# TARGET…` installs what each TARGET needs (idempotent; apt as root or with sudo), then
# `cross_cargo TARGET ARGS…` runs cargo for it (output under target/cross/):
# - aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf (and x86_64-unknown-linux-gnu
#   for packages): Debian bookworm's Rust 1.96 (rustc-web/cargo-web, called by full path
#   since a rustup toolchain may come first on PATH) and the Debian cross gcc (linker, and the
#   target's glibc under /usr/<triple>, which qemu-user is pointed at). The ARM standard
#   library is compiled from Debian's own source of that same compiler (rust-web-src,
#   `-Zbuild-std`), not taken from the multiarch libstd packages: those pull the foreign
#   architecture's whole LLVM from bookworm-security, and a mirror that serves one foreign
#   index out of sync (as it did in December 2026, for days) then makes them uninstallable.
#   No foreign architecture is added to dpkg, so apt never fetches another architecture's
#   index;
# - x86_64-unknown-linux-musl: the rustup toolchain's own musl target (`rustup target add`;
#   its standard library brings musl's start files and LLVM's libunwind, so the binary is
#   static) with musl-tools' musl-gcc for the C parts (ring, zstd).

# The device targets the scripts build when given none.
DEVICE_TARGETS=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf x86_64-unknown-linux-musl)

# Runs a command as root: directly, or through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Refreshes apt's package lists. A mirror caught mid-sync serves index files that do not match
# its Release file ("File has unexpected size ... Mirror sync in progress?"), and apt-get
# update fails for all of them: it is tried three times, FERRY_APT_RETRY_PAUSE seconds apart
# (15), and then the install goes on with the lists at hand, so that a package that is really
# missing fails with apt's own message.
apt_update() {
    local try
    for try in 1 2 3; do
        as_root apt-get update -q && return 0
        [ "$try" -lt 3 ] && sleep "${FERRY_APT_RETRY_PAUSE:-15}"
    done
    echo "apt-get update failed three times; installing from the package lists at hand" >&2
}

# Installs the Debian packages named, those not installed yet, in one apt run.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

cross_setup() {
    local need=(rustc-web cargo-web) target
    for target in "$@"; do
        case "$target" in
            x86_64-unknown-linux-gnu) ;;
            x86_64-unknown-linux-musl)
                need+=(musl-tools)
                rustup target list --installed | grep -qx "$target" || rustup target add "$target"
                continue ;;
            aarch64-unknown-linux-gnu) need+=(gcc-aarch64-linux-gnu rust-web-src) ;;
            armv7-unknown-linux-gnueabihf) need+=(gcc-arm-linux-gnueabihf rust-web-src) ;;
            *) echo "$target is not built by these scripts" >&2; return 2 ;;
        esac
    done
    apt_install "${need[@]}"
}

# Runs cargo for TARGET with the toolchain cross_setup prepared for it.
cross_cargo() {
    local target=$1; shift
    local common=(CARGO_TARGET_DIR=target/cross)
    case "$target" in
        x86_64-unknown-linux-musl)
            env "${common[@]}" CC_x86_64_unknown_linux_musl=musl-gcc cargo "$@" ;;
        x86_64-unknown-linux-gnu)
            env "${common[@]}" RUSTC=/usr/bin/rustc /usr/bin/cargo "$@" ;;
        *)
            # RUSTC_BOOTSTRAP lets this stable compiler take `-Zbuild-std`; `panic_abort`
            # because the release and device profiles abort on panic.
            env "${common[@]}" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
                CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
                CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
                CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
                CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
                /usr/bin/cargo -Zbuild-std=std,panic_abort "$@" ;;
    esac
}

# The command that runs a program built for TARGET on this machine: qemu-user for ARM, with
# the cross gcc's glibc as the target's root for the dynamic loader and libraries; nothing
# for x86_64.
target_runner() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo "qemu-aarch64-static -L /usr/aarch64-linux-gnu" ;;
        armv7-unknown-linux-gnueabihf) echo "qemu-arm-static -L /usr/arm-linux-gnueabihf" ;;
        x86_64-unknown-linux-gnu|x86_64-unknown-linux-musl) echo "" ;;
        *) echo "no way to run $1 here" >&2; return 2 ;;
    esac
}
