# Which Debian packages a bundle needs: sourced by build.sh (to write the .deb's Depends and Recommends)
# and smoke.sh (to check them), so both resolve libraries the same way.
#
#   syslibs_resolve INTERNAL < ELF files   -> the system libraries they load (absolute paths), resolved as
#                                            the bootloader does: the bundle's INTERNAL folder first
#   syslibs_owner LIB                      -> the package that installed LIB ("" when none did)
#   syslibs_packages INTERNAL < ELF files  -> the packages owning those libraries, sorted, one per line
#   SYSLIBS_OPTIONAL_RE                    -> ELF paths whose libraries are optional: Qt plugins for GTK
#                                            themes and Wayland (and their libraries) load only where the
#                                            system has what they need; X11 is the fallback
# shellcheck shell=bash

SYSLIBS_OPTIONAL_RE='/plugins/(platformthemes|wayland-[^/]*)/|/plugins/platforms/libqwayland[^/]*$|/libQt6Wayland|/libQt6WlShell|/qml/QtWayland/'

syslibs_resolve() {  # libraries inside the bundle (the folder holding INTERNAL) are not the system's
    local internal bundle
    internal="$(cd "$1" && pwd)"
    bundle="$(dirname "$internal")"
    xargs -r env LD_LIBRARY_PATH="$internal" ldd 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
        | grep -v "^$bundle/" | sort -u || true
}

syslibs_owner() {
    local owner
    owner="$(dpkg -S "$(readlink -f "$1")" 2>/dev/null | head -1 | cut -d: -f1 || true)"
    [[ -z "$owner" ]] && owner="$(dpkg -S "$1" 2>/dev/null | head -1 | cut -d: -f1 || true)"
    printf '%s\n' "$owner"
}

syslibs_packages() {
    local lib owner
    syslibs_resolve "$1" | while read -r lib; do
        [[ -z "$lib" ]] && continue
        owner="$(syslibs_owner "$lib")"
        if [[ -z "$owner" ]]; then
            echo "syslibs: $lib belongs to no package; it cannot be declared" >&2
            continue
        fi
        printf '%s\n' "$owner"
    done | sort -u
}
