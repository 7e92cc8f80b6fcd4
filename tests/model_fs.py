#!/usr/bin/env python3
"""Model-based filesystem test: the same random operations on a sealvol mount and on a plain
directory (the model); every result (value or errno) and the final trees must be equal.

usage: model_fs.py SEALVOL_ROOT MODEL_ROOT SEED STEPS
       model_fs.py --compare ROOT_A ROOT_B
Exits 0 when both agree, 1 with the first difference (and the seed, to replay it).
"""

import errno
import hashlib
import os
import random
import stat
import sys


def outcome(fn):
    try:
        r = fn()
        return ("ok", r)
    except OSError as e:
        # Some errors legitimately differ between file systems in wording but not in errno.
        return ("err", errno.errorcode.get(e.errno, e.errno))


class Runner:
    def __init__(self, roots, seed):
        self.roots = roots
        self.rnd = random.Random(seed)
        self.names = ["a", "b", "c", "d", "e", "long-" + "x" * 40, "sp ace", "ünï"]
        self.fds = []  # (path, [fd per root])

    def rel(self):
        depth = self.rnd.choice([0, 0, 1, 1, 2])
        parts = [self.rnd.choice(self.names) for _ in range(depth + 1)]
        return "/".join(parts)

    def both(self, fn):
        return [outcome(lambda r=r: fn(r)) for r in self.roots]

    def step(self, i):
        op = self.rnd.choice(
            ["write", "write", "write", "pwrite", "read", "truncate", "mkdir", "rmdir",
             "unlink", "rename", "link", "symlink", "chmod", "xattr", "open", "close_one",
             "fdwrite", "listdir", "stat"]
        )
        p = self.rel()
        q = self.rel()
        size = self.rnd.choice([0, 1, 100, 4095, 4096, 4097, 65535, 65536, 65537, 200000])
        seed = self.rnd.randrange(1 << 30)
        data = random.Random(seed).randbytes(size)
        off = self.rnd.choice([0, 1, 4096, 65536, 70000, 300000])
        mode = self.rnd.choice([0o600, 0o644, 0o755, 0o4755, 0o1777])

        def j(r, x):
            return os.path.join(r, x)

        if op == "write":
            res = self.both(lambda r: open(j(r, p), "wb").write(data))
        elif op == "pwrite":
            def f(r):
                fd = os.open(j(r, p), os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    return os.pwrite(fd, data, off)
                finally:
                    os.close(fd)
            res = self.both(f)
        elif op == "read":
            res = self.both(lambda r: hashlib.sha256(open(j(r, p), "rb").read()).hexdigest())
        elif op == "truncate":
            res = self.both(lambda r: os.truncate(j(r, p), off + size))
        elif op == "mkdir":
            res = self.both(lambda r: os.mkdir(j(r, p), 0o755))
        elif op == "rmdir":
            res = self.both(lambda r: os.rmdir(j(r, p)))
        elif op == "unlink":
            res = self.both(lambda r: os.unlink(j(r, p)))
        elif op == "rename":
            res = self.both(lambda r: os.rename(j(r, p), j(r, q)))
        elif op == "link":
            res = self.both(lambda r: os.link(j(r, p), j(r, q)))
        elif op == "symlink":
            res = self.both(lambda r: os.symlink(p, j(r, q)))
        elif op == "chmod":
            res = self.both(lambda r: os.chmod(j(r, p), mode))
        elif op == "xattr":
            res = self.both(lambda r: os.setxattr(j(r, p), "user.k" + str(size % 3), data[:64], follow_symlinks=False))
        elif op == "open":
            fds = []
            res = []
            for r in self.roots:
                o = outcome(lambda r=r: os.open(j(r, p), os.O_RDWR))
                res.append((o[0], None if o[0] == "ok" else o[1]))
                fds.append(o[1] if o[0] == "ok" else None)
            if all(fd is not None for fd in fds):
                self.fds.append((p, fds))
            else:
                for fd in fds:
                    if fd is not None:
                        os.close(fd)
        elif op == "close_one":
            if self.fds:
                _, fds = self.fds.pop(self.rnd.randrange(len(self.fds)))
                for fd in fds:
                    os.close(fd)
            res = [("ok", None)] * 2
        elif op == "fdwrite":
            # Write through a descriptor that may point at an unlinked or renamed file.
            if self.fds:
                _, fds = self.rnd.choice(self.fds)
                wrote = [outcome(lambda fd=fd: os.pwrite(fd, data, off)) for fd in fds]
                read = [outcome(lambda fd=fd: hashlib.sha256(os.pread(fd, 1 << 20, 0)).hexdigest()) for fd in fds]
                res = list(zip(wrote, read))
            else:
                res = [("ok", None)] * 2
        elif op == "listdir":
            res = self.both(lambda r: sorted(os.listdir(j(r, p))))
        elif op == "stat":
            def f(r):
                s = os.lstat(j(r, p))
                size = s.st_size if not stat.S_ISDIR(s.st_mode) else None
                return (stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode), size, s.st_nlink if not stat.S_ISDIR(s.st_mode) else None)
            res = self.both(f)
        if res[0] != res[1]:
            raise AssertionError(f"step {i}: {op} {p!r} {q!r} size={size} off={off}: sealvol {res[0]} != model {res[1]}")

    def close_all(self):
        for _, fds in self.fds:
            for fd in fds:
                os.close(fd)
        self.fds = []


def tree(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root)
            s = os.lstat(full)
            entry = [stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode)]
            if stat.S_ISREG(s.st_mode):
                entry += [s.st_size, s.st_nlink, hashlib.sha256(open(full, "rb").read()).hexdigest()]
            elif stat.S_ISLNK(s.st_mode):
                entry += [os.readlink(full)]
            if not stat.S_ISLNK(s.st_mode):
                entry += [sorted((k, os.getxattr(full, k)) for k in os.listxattr(full))]
            out[rel] = entry
    return out


def compare_only(a_root, b_root):
    a, b = tree(a_root), tree(b_root)
    if a != b:
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                print(f"tree differs at {k!r}: {a.get(k)} != {b.get(k)}")
                sys.exit(1)
    print(f"trees agree, {len(a)} entries")


def main():
    if sys.argv[1] == "--compare":
        return compare_only(sys.argv[2], sys.argv[3])
    sealvol_root, model_root, seed, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    r = Runner([sealvol_root, model_root], seed)
    try:
        for i in range(steps):
            r.step(i)
        r.close_all()
        a, b = tree(sealvol_root), tree(model_root)
        if a != b:
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    raise AssertionError(f"final tree differs at {k!r}: sealvol {a.get(k)} != model {b.get(k)}")
    except AssertionError as e:
        print(f"seed {seed}: {e}")
        sys.exit(1)
    print(f"seed {seed}: {steps} steps agree, {len(a)} entries")


if __name__ == "__main__":
    main()
