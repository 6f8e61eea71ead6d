"""HDiffPatch + zstd as an anchor of ferry-transfer-bench: diffs OLD against NEW, applies the
patch and checks it, and prints one JSON line with the patch's size and the times."""
import json
import sys
import time

import hdiffpatch

old_path, new_path, level = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(old_path, "rb") as f:
    old = f.read()
with open(new_path, "rb") as f:
    new = f.read()
wall, cpu = time.perf_counter(), time.process_time()
patch = hdiffpatch.diff(old, new, hdiffpatch.ZStdConfig(level=level), validate=False)
encode, encode_cpu = time.perf_counter() - wall, time.process_time() - cpu
wall = time.perf_counter()
back = hdiffpatch.apply(old, patch)
apply = time.perf_counter() - wall
if back != new:
    sys.exit("HDiffPatch did not reproduce the new file")
print(json.dumps({"bytes": len(patch), "encode": encode, "encode_cpu": encode_cpu, "apply": apply}))
