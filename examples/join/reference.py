"""The job's answer in plain Python, then `#counters` and their JSON."""
import json, os, sys
from decimal import Decimal

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
names = dict(l.strip().split(",") for l in open(os.path.join(root, "users.csv")))
totals, orphans = {}, 0
for line in open(os.path.join(root, "orders.csv")):
    _, uid, amount = line.strip().split(",")
    if uid in names:
        totals[uid] = totals.get(uid, Decimal(0)) + Decimal(amount)
    else:
        orphans += 1
for uid in sorted(names, key=int):
    print("%s\t%s" % (names[uid], totals.get(uid, Decimal(0))))
print("#counters\t" + json.dumps({"orders_without_user": orphans}))
