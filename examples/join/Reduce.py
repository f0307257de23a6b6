import ipdc
from decimal import Decimal


def reduce(user_id, records):
    name, total, orders = None, Decimal(0), 0
    for kind, value in records:
        if kind == "user":
            name = value
        else:
            total += Decimal(value)
            orders += 1
    if name is None:
        ipdc.counter("orders_without_user", orders)
        return
    yield name, str(total)
