"""What a screenshot shows, for tests/it/report.rs: its size, how many of
its pixels are not white, how many distinct colours it has, and how many
pixels have each colour given. Python's standard library only (zlib): a
PNG of 8-bit RGB or RGBA, not interlaced, as Chromium writes them.

    png_pixels.py FILE [#rrggbb ...]  ->  one JSON object on stdout
"""

import json
import struct
import sys
import zlib


def pixels(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        sys.exit(f"{path}: depth {depth}, colour type {colour}, interlace {interlace}")
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * step
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - step] if i >= step else 0
            b = prev[i]
            c = prev[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, step, rows


def main():
    path, wanted = sys.argv[1], [c.lower() for c in sys.argv[2:]]
    width, height, step, rows = pixels(path)
    counts = {}
    for row in rows:
        for x in range(0, len(row), step):
            rgb = row[x : x + 3]
            counts[rgb] = counts.get(rgb, 0) + 1
    white = counts.get(b"\xff\xff\xff", 0)
    colours = {c: counts.get(bytes.fromhex(c[1:]), 0) for c in wanted}
    print(json.dumps({
        "width": width,
        "height": height,
        "distinct": len(counts),
        "not_white": 1 - white / (width * height),
        "colours": colours,
    }))


main()
