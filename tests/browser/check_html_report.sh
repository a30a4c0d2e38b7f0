#!/usr/bin/env bash
# The HTML report in a real browser. Builds nothing: given build/bin/transferbench, it makes a
# small store with the gtest that leaves one (store_tests beside it, TB_KEEP_STORE: surgery-,
# merge- and continual-like runs, hostile strings in option values, a suite's name and a tag),
# runs `transferbench report --suite "" --format html` on it, and opens the page in headless
# Chromium with scripts/screenshot-report --strict: every chart drew marks, no error or warning
# reached the console, nothing from the store became markup (no dialog, no image: the page's
# own check says so). The screenshot, the page and its check land in $TEST_OUTPUT_DIR (default:
# <build>/test-output/html-report). Exit 77 (CTest's SKIP_RETURN_CODE) without Chromium.
#
#   tests/browser/check_html_report.sh build/bin/transferbench
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:?usage: tests/browser/check_html_report.sh BUILD/bin/transferbench}
[ -x "$bin" ] || { echo "check_html_report: $bin: not an executable" >&2; exit 2; }
if ! command -v "${CHROMIUM:-chromium}" >/dev/null; then
  echo "SKIP: chromium not installed (scripts/setup installs it)"
  exit 77
fi
bindir=$(cd "$(dirname "$bin")" && pwd)
out=${TEST_OUTPUT_DIR:-$bindir/../test-output/html-report}
mkdir -p "$out"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail() { echo "check_html_report: FAILED: $*" >&2; exit 1; }

mkdir -p "$work/results"
TB_KEEP_STORE="$work/results/runs.db" "$bindir/store_tests" --gtest_filter=HtmlReportTest.EveryTableAndPlotIsOnThePage \
  >"$work/gtest.log" 2>&1 || { cat "$work/gtest.log" >&2; fail "store_tests could not make the store"; }
[ -s "$work/results/runs.db" ] || fail "store_tests left no store at $work/results/runs.db (TB_KEEP_STORE)"
"$bin" report --suite "" --format html --results "$work/results" >"$work/report.log" 2>&1 || {
  cat "$work/report.log" >&2; fail "transferbench report --format html"; }
html="$work/results/reports/all.html"
[ -s "$html" ] || fail "no $html"
cp "$html" "$out/all.html"

# The source: the hostile strings only escaped.
grep -qF '<script>alert(1)</script>' "$html" && fail "a <script> from the store is markup in the page"
grep -qF '<img src=x' "$html" && fail "an <img> from the store is markup in the page"
grep -qF '&lt;script&gt;alert(1)&lt;/script&gt;' "$html" || fail "the hostile suite or option is not shown as text"
grep -qF '&quot;&gt;&lt;img src=x onerror=alert(1)&gt;' "$html" || fail "the hostile option is not shown as text"

# The browser: marks in every chart, a clean console, a screenshot.
"$here/scripts/screenshot-report" --strict --png "$out/all.png" --json "$out/check.json" "$out/all.html" ||
  fail "the page in Chromium (check: $out/check.json, screenshot: $out/all.png)"
python3 - "$out/check.json" <<'EOF' || fail "charts missing from the page's check ($out/check.json)"
import json, sys
names = {c["name"] for c in json.load(open(sys.argv[1]))["charts"]}
expected = {"transfer-preservation/mnist", "training-depth/mnist", "finetune/mnist", "accuracy-matrix/mnist"}
missing = expected - names
if missing:
    print("missing charts: " + ", ".join(sorted(missing)), file=sys.stderr); sys.exit(1)
EOF
echo "check_html_report: ok ($(wc -c < "$html") bytes; screenshot $out/all.png)"
