import ipdc


def map(line):
    if ipdc.input_file() == "users.csv":
        user_id, name = line.split(",")
        yield int(user_id), ["user", name]
    else:
        _, user_id, amount = line.split(",")
        yield int(user_id), ["order", amount]
