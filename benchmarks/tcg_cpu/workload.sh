#!/bin/sh
# Runs inside a test VM: each line prints '<ms> ms <command>'.
# The single-quoted commands are expanded by the shell each one starts.
# shellcheck disable=SC2016
set -e
t() { s=$(date +%s%N); "$@" >/dev/null 2>&1; echo "$(( ($(date +%s%N) - s) / 1000000 )) ms $*"; }
t python3 -c 'import json,subprocess,email.parser,http.client,xml.dom.minidom,ssl,asyncio,decimal,unittest'
t python3 -c 'sum(i*i for i in range(3000000))'
t sh -c 'for i in $(seq 300); do /bin/true; done'
t dd if=/dev/zero of=/dev/null bs=512 count=300000
t python3 -c 'import hashlib; h=hashlib.sha256(); [h.update(b"x"*4096) for i in range(20000)]'
t sh -c 'head -c 20000000 /dev/zero | openssl enc -aes-128-cbc -pass pass:x -pbkdf2 >/dev/null'
t sh -c 'for j in 1 2; do python3 -c "sum(i*i for i in range(1500000))" & done; wait'
t sh -c 'for j in 1 2 3 4; do (for i in $(seq 75); do /bin/true; done) & done; wait'
