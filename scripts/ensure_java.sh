#!/usr/bin/env bash
# H2O (training and MOJO scoring) needs a Java runtime (17 works). Install it when missing.
set -euo pipefail
if command -v java >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Java not found: installing openjdk-17-jre-headless with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  exit 0
fi
echo "error: Java is required by H2O. Install a JRE 17 (e.g. 'sudo apt-get install openjdk-17-jre-headless' or 'brew install openjdk@17') and retry." >&2
exit 1
