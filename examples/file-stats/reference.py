"""The job's answer in plain Python, then `#counters` and their JSON.
`--reducers 0` prints the map-only job's lines: one per file, in name order."""
import json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, root)
from fileinfo import describe

names = []
for folder, dirs, files in os.walk(os.path.join(root, "files")):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    names += [os.path.relpath(os.path.join(folder, n), root).replace(os.sep, "/") for n in files if not n.startswith(".")]
compact = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)
kinds, broken = {}, 0
for name in sorted(names):
    kind, facts = describe(name, open(os.path.join(root, name), "rb").read())
    broken += kind == "broken"
    if "--reducers" in sys.argv:
        print("%s\t%s" % (kind, compact(facts)))
    kinds.setdefault(kind, []).append(facts)
if "--reducers" not in sys.argv:
    for kind in sorted(kinds):
        fs = kinds[kind]
        largest = max(fs, key=lambda f: (f["bytes"], f["file"]))
        print("%s\t%s" % (kind, compact({"files": len(fs), "bytes": sum(f["bytes"] for f in fs),
                                         "measure": sum(f["measure"] for f in fs), "largest": largest["file"]})))
print("#counters\t" + json.dumps({"broken_images": broken} if broken else {}))
