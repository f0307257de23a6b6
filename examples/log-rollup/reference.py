"""The job's answer in plain Python, then `#counters` and their JSON."""
import json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
totals, bad = {}, 0
for line in open(os.path.join(root, "access.log"), encoding="utf-8"):
    fields = line.split()
    if len(fields) < 10 or not fields[8].isdigit():
        bad += 1
        continue
    t = totals.setdefault(fields[8], [0, 0])
    t[0] += 1
    t[1] += int(fields[9])
for status in sorted(totals):
    print("%s\t%s" % (status, json.dumps({"requests": totals[status][0], "bytes": totals[status][1]}, separators=(",", ":"))))
print("#counters\t" + json.dumps({"bad_rows": bad}))
