def reduce(kind, files):
    files = sorted(files, key=lambda f: f["file"])
    largest = max(files, key=lambda f: (f["bytes"], f["file"]))
    yield kind, {
        "files": len(files),
        "bytes": sum(f["bytes"] for f in files),
        "measure": sum(f["measure"] for f in files),
        "largest": largest["file"],
    }
