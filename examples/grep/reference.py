"""The job's answer in plain Python (in input order), then `#counters`."""
import json, os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
pattern = re.compile(sys.argv[2] if len(sys.argv) > 2 else "ERROR")
matched = [l.rstrip("\n") for l in open(os.path.join(root, "data.dat")) if pattern.search(l.rstrip("\n"))]
for line in matched:
    print(line)
print("#counters\t" + json.dumps({"matched": len(matched)}))
