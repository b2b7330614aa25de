#!/usr/bin/env bash
# Prints the Debian mirror that the machine's apt sources use for Debian's main archive.
#
#   scripts/debian-mirror.sh [SUITE]     # SUITE: the suite the caller is about to fetch, default bookworm
#
# DEBIAN_MIRROR, when set, is printed as it is. Otherwise the sources are read in apt's order:
# etc/apt/sources.list, then etc/apt/sources.list.d/*.list and *.sources by name, under APT_SOURCES_ROOT
# (default /), in the one-line format ("deb [options] URI SUITE COMPONENT...") and in deb822 stanzas
# (Types, URIs, Suites, Components, Enabled). An entry serves the main archive when it is of type deb, has
# the main component, an http, https or file URI and a Debian suite: SUITE, the machine's own codename if
# etc/os-release says Debian, stable, oldstable, oldoldstable, testing, unstable or sid. A plain suite wins
# over SUITE-updates, -backports and -proposed-updates (the same archive); -security suites are a
# different archive and never count. Among equals the first in apt's order wins. The URI is printed
# without a trailing slash; with no such entry the script says so on stderr and exits 1.
set -euo pipefail

suite=${1:-bookworm}

if [[ -n ${DEBIAN_MIRROR:-} ]]; then
    printf '%s\n' "$DEBIAN_MIRROR"
    exit 0
fi

root=${APT_SOURCES_ROOT:-/}
root=${root%/}
etc=$root/etc/apt

# apt reads sources.list.d in C collation order and only names of these characters and extensions.
export LC_ALL=C
files=()
if [[ -f $etc/sources.list ]]; then
    files+=("$etc/sources.list")
fi
for part in "$etc"/sources.list.d/*; do
    if [[ -f $part && ${part##*/} =~ ^[A-Za-z0-9_.-]+\.(list|sources)$ ]]; then
        files+=("$part")
    fi
done

codename=
if [[ -r $root/etc/os-release ]] && grep -qE '^ID="?debian"?$' "$root/etc/os-release"; then
    codename=$(sed -n 's/^VERSION_CODENAME="\{0,1\}\([a-z]*\)"\{0,1\}$/\1/p' "$root/etc/os-release" | head -n 1)
fi

mirror=
if [[ ${#files[@]} -gt 0 ]]; then
    mirror=$(awk -v target="$suite" -v codename="$codename" '
        BEGIN {
            n = split("stable oldstable oldoldstable testing unstable sid " target " " codename, names, " ")
            for (i = 1; i <= n; i++) debian[names[i]] = 1
            best_rank = 99
        }
        function has(list, word,    items, count, i) {
            count = split(list, items, /[ \t]+/)
            for (i = 1; i <= count; i++) if (items[i] == word) return 1
            return 0
        }
        # 0 for a plain Debian suite, 1 for its -updates, -backports or -proposed-updates, -1 otherwise.
        function rank(s,    base, r) {
            if (s ~ /\// || s ~ /-security$/) return -1
            base = s; r = 0
            if (match(s, /-(proposed-updates|updates|backports)$/)) { base = substr(s, 1, RSTART - 1); r = 1 }
            return (base in debian) ? r : -1
        }
        function consider(types, uris, suites, components,    u, s, nu, ns, i, j, r, uri) {
            if (!has(types, "deb") || !has(components, "main")) return
            nu = split(uris, u, /[ \t]+/)
            ns = split(suites, s, /[ \t]+/)
            for (j = 1; j <= ns; j++) {
                r = rank(s[j])
                if (r < 0 || r >= best_rank) continue
                for (i = 1; i <= nu; i++) {
                    uri = u[i]
                    if (uri !~ /^(https?:\/\/|file:\/)/) continue
                    sub(/\/+$/, "", uri)
                    best = uri; best_rank = r
                    break
                }
            }
        }
        function stanza() {
            if (tolower(field["enabled"]) != "no") consider(field["types"], field["uris"], field["suites"], field["components"])
            delete field
            key = ""
        }
        FNR == 1 { if (deb822) stanza(); deb822 = (FILENAME ~ /\.sources$/) }
        deb822 {
            if ($0 ~ /^#/) next
            if ($0 ~ /^[ \t]*$/) { stanza(); next }
            if ($0 ~ /^[ \t]/) { if (key != "") field[key] = field[key] " " $0; next }
            colon = index($0, ":")
            if (colon == 0) next
            key = tolower(substr($0, 1, colon - 1))
            field[key] = substr($0, colon + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", field[key])
            next
        }
        {
            line = $0
            sub(/#.*/, "", line)
            n = split(line, w, /[ \t]+/)
            first = (w[1] == "") ? 2 : 1
            i = first + 1
            if (substr(w[i], 1, 1) == "[") {
                while (i <= n && w[i] !~ /\]$/) i++
                i++
            }
            if (i + 2 > n) next
            components = ""
            for (j = i + 2; j <= n; j++) components = components " " w[j]
            consider(w[first], w[i], w[i + 1], components)
        }
        END {
            if (deb822) stanza()
            if (best != "") print best
        }
    ' "${files[@]}")
fi

if [[ -z $mirror ]]; then
    printf '%s\n' \
        "debian-mirror: no entry for Debian's main archive in the apt sources under ${root:-/}" \
        "  (etc/apt/sources.list, etc/apt/sources.list.d/*.list and *.sources: type deb, component main," \
        "  suite $suite or another Debian suite, an http, https or file URI)." \
        "  Set DEBIAN_MIRROR to the URL of a Debian mirror." >&2
    exit 1
fi
printf '%s\n' "$mirror"
