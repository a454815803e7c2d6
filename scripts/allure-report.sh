#!/usr/bin/env bash
# Render allure-results into an HTML report that works offline and phones nowhere.
#
#   scripts/allure-report.sh ALLURE_RESULTS_DIR OUTPUT_DIR
#
# Uses the npm package allure-commandline (Allure 2, needs Java 8+), installed once under .cache/allure.
# Allure's report template embeds a Google Tag Manager analytics script (seen in 2.46.1; Allure 3's
# default template does the same); this script removes it and fails if any other external script remains.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:?usage: scripts/allure-report.sh ALLURE_RESULTS_DIR OUTPUT_DIR}
out=${2:?usage: scripts/allure-report.sh ALLURE_RESULTS_DIR OUTPUT_DIR}
version=2.46.1
prefix=.cache/allure
command -v java >/dev/null || { echo "allure-report: Java is needed (Debian: default-jre-headless)" >&2; exit 2; }
command -v npm >/dev/null || { echo "allure-report: npm is needed (Debian: npm)" >&2; exit 2; }
if [ ! -x "$prefix/node_modules/.bin/allure" ]; then
    mkdir -p "$prefix"
    npm install --silent --no-audit --no-fund --prefix "$prefix" "allure-commandline@$version" >/dev/null
fi
"$prefix/node_modules/.bin/allure" generate "$results" -o "$out" --clean --single-file >/dev/null
python3 - "$out/index.html" <<'PY'
import re, sys
path = sys.argv[1]
html = open(path, encoding="utf-8").read()
# The analytics: an async loader script from googletagmanager plus the inline gtag() configuration.
html = re.sub(r'\s*<script async src="https://www\.googletagmanager\.com/[^"]*"></script>\s*<script>.*?</script>',
              "\n", html, flags=re.S)
left = re.findall(r'<script[^>]+src="https?://[^"]+"', html)
if left or "gtag(" in html:
    sys.exit(f"allure-report: external scripts remain in {path}: {left or 'gtag'}")
open(path, "w", encoding="utf-8").write(html)
PY
echo "allure report: $out/index.html (one self-contained file: open it in a browser, offline)"
