"""The job's answer in plain Python: one `word<TAB>json list` line per word."""
import json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
index = {}
for folder, dirs, files in os.walk(os.path.join(root, "docs")):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in sorted(files):
        path = os.path.join(folder, name)
        doc = os.path.relpath(path, root).replace(os.sep, "/")
        for line in open(path, encoding="utf-8"):
            for word in line.split():
                index.setdefault(word.lower(), set()).add(doc)
for word in sorted(index):
    print("%s\t%s" % (word, json.dumps(sorted(index[word]), separators=(",", ":"))))
