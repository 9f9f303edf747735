#!/usr/bin/env python3
"""Module boundaries, file sizes and formatting of superd/ (and bench/loadgen/), checked as a test.

The build makes each module a static library with declared dependencies (superd/meson.build);
the headers share one include root, so this check makes the include graph follow the same
table: a module includes only its own headers and those of the modules it depends on. It also
keeps toml++ inside config/, every file under kMaxLines lines, and the tree formatted with the
committed .clang-format (clang-format --dry-run -Werror).
"""
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "superd")
MAX_LINES = 600
# Outside superd/'s module table, held to the same size and format: loadgen, the installed
# superd-loadgen (it includes only its own headers).
EXTRA_DIRS = [os.path.join(ROOT, "bench", "loadgen")]

# module -> (path prefixes below superd/, modules it may include). Keep in step with
# superd/meson.build.
MODULES = {
    "util": (["util/"], []),
    "proxy": (["proxy/"], []),
    "admission": (["admission/"], ["util"]),
    "uid_pool": (["uid_pool/"], ["util"]),
    "cleanup": (["cleanup/"], ["util", "uid_pool"]),
    "inloop": (["inloop/"], ["util", "admission"]),
    "sandbox_filters": (["sandbox/seccomp", "sandbox/landlock", "sandbox/cgroup"], ["util"]),
    "config": (["config/"], ["util", "proxy", "admission", "sandbox_filters", "uid_pool", "inloop"]),
    "sandbox": (["sandbox/mounts", "sandbox/dirs", "sandbox/idmap"], ["util", "config", "sandbox_filters"]),
    "listener": (["listener/"], ["util", "config"]),
    "spawn": (["spawn/"], ["util", "config", "sandbox", "sandbox_filters", "uid_pool"]),
    "control": (["control/"], ["util"]),
    "xinetd": (["xinetd/"], ["util", "config", "inloop"]),
    "nss": (["nss/"], ["uid_pool"]),
    "capsule": (["capsule/"], ["util"]),
    "daemon": (["daemon/"], ["*"]),
    "cli": (["cli/"], ["util", "config", "control", "capsule"]),
    "main": (["main.cpp"], ["*"]),
}


def module_of(rel):
    best = None
    for name, (prefixes, _) in MODULES.items():
        for p in prefixes:
            if rel.startswith(p) and (best is None or len(p) > best[1]):
                best = (name, len(p))
    return best[0] if best else None


def sources():
    for dirpath, _, files in os.walk(SRC):
        for f in sorted(files):
            if f.endswith((".cpp", ".hpp")):
                yield os.path.relpath(os.path.join(dirpath, f), SRC)


def main():
    problems = []
    include = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
    toml = re.compile(r"^\s*#\s*include\s+<toml\+\+")
    files = list(sources())
    for rel in files:
        mod = module_of(rel)
        if mod is None:
            problems.append(f"superd/{rel}: in no module of tests/layout/check.py")
            continue
        allowed = MODULES[mod][1]
        with open(os.path.join(SRC, rel)) as f:
            lines = f.read().splitlines()
        if len(lines) > MAX_LINES:
            problems.append(f"superd/{rel}: {len(lines)} lines (at most {MAX_LINES})")
        for n, line in enumerate(lines, 1):
            if toml.match(line) and mod != "config":
                problems.append(f"superd/{rel}:{n}: toml++ outside config/")
            m = include.match(line)
            if not m:
                continue
            target = module_of(m.group(1))
            if target is None or target == mod or "*" in allowed or target in allowed:
                continue
            problems.append(f"superd/{rel}:{n}: module {mod} includes {m.group(1)} of module {target} "
                            f"(it may include: {', '.join(allowed) or 'nothing'})")
    extra = [os.path.join(d, f) for d in EXTRA_DIRS if os.path.isdir(d)
             for f in sorted(os.listdir(d)) if f.endswith((".cpp", ".hpp"))]
    for path in extra:
        with open(path) as f:
            n = len(f.read().splitlines())
        if n > MAX_LINES:
            problems.append(f"{os.path.relpath(path, ROOT)}: {n} lines (at most {MAX_LINES})")
    fmt = shutil.which("clang-format")
    if not fmt:
        problems.append("clang-format is not installed (.ci/install-deps installs it)")
    else:
        paths = [os.path.join(SRC, r) for r in files]
        unit = os.path.join(ROOT, "tests", "unit")
        paths += [os.path.join(unit, f) for f in sorted(os.listdir(unit)) if f.endswith((".cpp", ".hpp"))]
        paths += extra
        r = subprocess.run([fmt, "--dry-run", "-Werror", "--style=file"] + paths, cwd=ROOT,
                           capture_output=True, text=True)
        if r.returncode != 0:
            bad = sorted({l.split(":")[0] for l in r.stderr.splitlines() if ": error:" in l})
            problems.append("not formatted with .clang-format (run: clang-format -i <file>): " +
                            ", ".join(os.path.relpath(b, ROOT) for b in bad))
    for p in problems:
        print(p)
    print(f"layout: {len(files) + len(extra)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
