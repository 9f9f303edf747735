#!/usr/bin/env python3
"""reference.py TEMPLATE MAIN SERVICE OUTPUT: superd.toml(5)'s scdoc source, the annotated
reference files conf/superd.toml and conf/conf.d/hello.toml.example placed into the template as
they are (so the page and the files say the same), with what scdoc would read as markup escaped."""
import sys


def literal(path):
    with open(path) as f:
        # Inside a ``` block scdoc takes every line as it is except a line of ```; tabs would be
        # indentation to it, so they become spaces.
        return "\n".join(line.replace("\t", "    ") for line in f.read().rstrip("\n").splitlines())


template, main, service, output = sys.argv[1:5]
with open(template) as f:
    text = f.read()
text = text.replace("@MAIN@", literal(main)).replace("@SERVICE@", literal(service))
with open(output, "w") as f:
    f.write(text)
