"""What one file is: its kind (by extension, from kinds.json), its size in
bytes, its measure (pixels for an image, data rows for a table, lines for
text) and the start of its SHA-256. Shared by Map.py and reference.py."""
import hashlib, json, os, struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "kinds.json")) as f:
    KINDS = json.load(f)


def describe(name, data):
    """(kind, facts) for the file `name` holding `data`; kind "broken" for an
    image that is not a PNG."""
    kind = KINDS.get(os.path.splitext(name)[1], "other")
    if kind == "image":
        if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
            kind, measure = "broken", 0
        else:
            width, height = struct.unpack(">II", data[16:24])
            measure = width * height
    elif kind == "table":
        measure = max(data.count(b"\n") - 1, 0)
    else:
        measure = data.count(b"\n")
    return kind, {"file": name, "bytes": len(data), "measure": measure, "sha256": hashlib.sha256(data).hexdigest()[:16]}
