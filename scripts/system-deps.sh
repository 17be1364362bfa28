#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those that are missing:
#   postgresql  - the real database server the suite also runs against (scripts/pg-test.sh)
#   chromium    - Debian's browser, driven by Playwright (its own browser download is not used)
#   nodejs/npm  - only if the machine has no node at all (Stoplight Prism comes from npm)
# apt-get update runs only when something must be installed. Uses sudo only when not root.
set -euo pipefail

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
if ! command -v chromium >/dev/null 2>&1; then
    missing+=(chromium fonts-liberation)
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "system-deps: postgresql, chromium and node are present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "system-deps: need ${missing[*]} but I am not root and there is no sudo" >&2
    exit 1
fi

echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
