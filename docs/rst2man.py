#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Turn one of berth's program pages (docs/NAME.rst) into a man page.

The pages are written for reading as they are and use :doc:`page` links;
a man page cannot link, so each becomes "page(7)"-style prose naming the
file under docs/. The page's own title becomes the man page's name, with
the section and a one-line summary given on the command line. Any docutils
warning fails the build, so a page that would render badly is caught.

Usage: rst2man.py INPUT.rst OUTPUT SECTION SUMMARY VERSION
"""
import re
import sys

from docutils.core import publish_string
from docutils.writers import manpage


def main():
    src, out, section, summary, version = sys.argv[1:6]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r":doc:`([^`<]*)`", r"the \1 page (docs/\1.rst)", text)
    # The first heading is the program name; give it the man page's fields.
    m = re.match(r"(?:=+\n)?([^\n]+)\n=+\n", text)
    if not m:
        sys.exit("%s: the page must start with its title" % src)
    name = m.group(1).strip()
    header = ("%s\n%s\n%s\n\n%s\n%s\n%s\n\n:Manual section: %s\n:Manual group: berth\n"
              ":Version: %s\n\n" % ("=" * len(name), name, "=" * len(name),
                                    "-" * len(summary), summary, "-" * len(summary),
                                    section, version))
    text = header + text[m.end():]
    page = publish_string(text, source_path=src, writer=manpage.Writer(),
                          settings_overrides={"halt_level": 2, "report_level": 2})
    with open(out, "wb") as f:
        f.write(page)


if __name__ == "__main__":
    main()
