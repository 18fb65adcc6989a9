#!/usr/bin/env bash
# Debian's Chromium for the report page's browser test (tests/api/test_report_page.py), which
# Playwright drives: Playwright's own browser downloads are not needed (nor possible here).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
echo "installing Debian's chromium for the browser test"
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
"${sudo[@]}" apt-get install -y -q chromium >/dev/null 2>&1 \
  || { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q chromium >/dev/null; }
