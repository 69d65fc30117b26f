#!/usr/bin/env python3
"""Compare two directory trees the way a rootfs round trip must preserve them.

usage: compare-trees.py SOURCE COPY [--epoch SOURCE_DATE_EPOCH]

Checks every entry below the roots (the roots themselves are not part of an archive):
kind, permission bits incl. setuid/setgid/sticky, numeric owner, size, device numbers,
symlink target, file contents, all extended attributes (security.capability too), which
paths share an inode (hardlinks), and mtimes (the source's clamped to the epoch when one
is given; symlink mtimes are not compared). Paths are handled as bytes, so names that are
not UTF-8 are fine. Prints one line per difference (at most 50) and exits 1 when any.
"""
import hashlib
import os
import stat
import sys


def kind(mode):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "unknown"


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def walk(root, epoch):
    entries, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            k = kind(st.st_mode)
            rec = {
                "kind": k,
                "mode": oct(stat.S_IMODE(st.st_mode)),
                "owner": (st.st_uid, st.st_gid),
                "xattrs": xattrs(full),
            }
            if k != "dir":
                rec["size"] = st.st_size
            if k != "symlink":
                mtime = int(st.st_mtime)
                rec["mtime"] = min(mtime, epoch) if epoch is not None else mtime
            if k == "symlink":
                rec["target"] = os.readlink(full)
            if k in ("char", "block"):
                rec["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if k == "file":
                rec["sha256"] = digest(full)
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            entries[rel] = rec
    # Hardlinks: record, for each path, the sorted group of paths sharing its inode.
    for group in inodes.values():
        group.sort()
        for rel in group:
            entries[rel]["links"] = tuple(os.fsdecode(p) for p in group)
    return entries


def main(argv):
    args = [os.fsencode(a) for a in argv[1:]]
    epoch = None
    if b"--epoch" in args:
        i = args.index(b"--epoch")
        epoch = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    source, copy = args
    a, b = walk(source, epoch), walk(copy, None)
    problems = []
    for rel in sorted(set(a) | set(b)):
        shown = os.fsdecode(rel)
        if rel not in b:
            problems.append(f"missing in copy: {shown}")
        elif rel not in a:
            problems.append(f"extra in copy: {shown}")
        else:
            for key in sorted(set(a[rel]) | set(b[rel])):
                if a[rel].get(key) != b[rel].get(key):
                    problems.append(f"{shown}: {key} {a[rel].get(key)!r} != {b[rel].get(key)!r}")
    for line in problems[:50]:
        print(line)
    if len(problems) > 50:
        print(f"... and {len(problems) - 50} more differences")
    files = sum(1 for r in a.values() if r["kind"] == "file")
    if not problems:
        print(f"identical: {len(a)} entries ({files} files) match in kind, mode, owner, size, "
              f"content, link target, device numbers, xattrs, hardlinks and mtime")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
