"""Writes this example's input folder, files/: small PNG images, CSV
tables, a text file, an empty file and one broken image (run it again to
regenerate the same bytes)."""
import os, random, struct, sys, zlib

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
out = os.path.join(root, "files")
r = random.Random(2026)


def png(width, height):
    """A grey-scale PNG of random pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes(r.randrange(256) for _ in range(width)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write(name, data):
    path = os.path.join(out, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


for i in range(12):
    write("images/img-%02d.png" % i, png(r.randrange(1, 40), r.randrange(1, 40)))
write("images/broken.png", b"\x89PNG\r\n\x1a\nnot really")
for i in range(5):
    rows = ["sensor,reading"] + ["s%d,%d" % (r.randrange(9), r.randrange(1000)) for _ in range(r.randrange(0, 60))]
    write("tables/readings-%d.csv" % i, ("\n".join(rows) + "\n").encode())
write("notes.txt", "calibrated on site\nno \u00e9cart seen\n".encode("utf-8"))
write("empty.dat", b"")
