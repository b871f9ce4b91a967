#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/idx, fuzz/corpus/npy): a few small
valid files and a few broken ones. The files are committed; run this only to change them."""
import gzip
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def write(kind, name, data):
    path = os.path.join(here, "corpus", kind, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def idx(magic, dims, data):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + data


images = idx(0x803, [3, 4, 4], bytes(range(0, 240, 5)))
labels = idx(0x801, [3], b"\x03\x01\x09")
write("idx", "images_3x4x4", images)
write("idx", "labels_3", labels)
write("idx", "images_3x4x4.gz", gzip.compress(images, mtime=0))
write("idx", "labels_two_members.gz", gzip.compress(labels[:6], mtime=0) + gzip.compress(labels[6:], mtime=0))
write("idx", "images_truncated", images[:-7])
write("idx", "images_trailing", images + b"xx")
write("idx", "bad_magic", idx(0x12345678, [3, 4, 4], b""))
write("idx", "float_type", idx(0x0D03, [1, 2, 2], b"\0" * 16))
write("idx", "huge_dims", idx(0x803, [0xFFFFFFFF, 0xFFFFFFFF, 28], b"\0" * 8))
write("idx", "gzip_truncated.gz", gzip.compress(images, mtime=0)[:20])
write("idx", "empty", b"")


def npy(descr, fortran, shape, data, major=1):
    shape_text = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", shape_text)
    length_size = 2 if major == 1 else 4
    total = 6 + 2 + length_size + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    length = struct.pack("<H" if major == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + length + header.encode() + data


floats = struct.pack("<6f", 0.5, -1.0, 2.25, 0.0, 1e30, -3e-8)
write("npy", "f4_2x3", npy("<f4", False, [2, 3], floats))
write("npy", "f4_6", npy("<f4", False, [6], floats))
write("npy", "u1_2x4", npy("|u1", False, [2, 4], bytes([0, 1, 1, 0, 1, 0, 0, 1])))
write("npy", "f4_2x3_v2", npy("<f4", False, [2, 3], floats, major=2))
write("npy", "f4_empty", npy("<f4", False, [0, 3], b""))
write("npy", "fortran", npy("<f4", True, [2, 3], floats))
write("npy", "f8", npy("<f8", False, [3], floats))
write("npy", "truncated", npy("<f4", False, [2, 3], floats[:-4]))
write("npy", "bad_dict", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'\n")
write("npy", "empty", b"")
