#!/usr/bin/python3
"""Checks the relative links of the repository's Markdown files: every
[text](path) names a file that exists, every #anchor a heading of its file
(GitHub's anchors: lowercase, punctuation dropped, spaces to '-', a repeated
heading gets -1, -2...). Links to http(s): and mailto: are not checked.

    tools/check-links.py [FILE.md...]    # default: every *.md git knows
Exit status 1 when a link does not resolve, each one printed as file:line.
"""
import os
import re
import subprocess
import sys

LINK = re.compile(r'!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
FENCE = re.compile(r'^\s*(```|~~~)')


def lines_outside_code(path):
    """(line number, text) of the lines outside fenced code blocks, with
    inline code spans blanked out."""
    fenced = False
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            if FENCE.match(line):
                fenced = not fenced
                continue
            if not fenced:
                yield n, re.sub(r'`[^`]*`', lambda m: ' ' * len(m.group()), line)


def slug(heading):
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link: its text
    text = re.sub(r'[^\w\- ]', '', text.strip().lower())
    return text.replace(' ', '-')


def anchors(path, cache={}):
    if path not in cache:
        seen, fenced = {}, False
        with open(path, encoding='utf-8') as f:
            for line in f:
                if FENCE.match(line):
                    fenced = not fenced
                m = None if fenced else re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
                if m:
                    s = slug(m.group(1))
                    seen[s] = seen.get(s, -1) + 1
                    if seen[s]:
                        seen[f'{s}-{seen[s]}'] = 0
        cache[path] = set(seen)
    return cache[path]


def check(path):
    bad = []
    for n, line in lines_outside_code(path):
        for m in LINK.finditer(line):
            target = m.group(1)
            if re.match(r'[a-z][a-z0-9+.-]*:', target, re.I):
                continue
            file, _, anchor = target.partition('#')
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(dest):
                bad.append(f'{path}:{n}: {target}: no such file')
            elif anchor and dest.endswith('.md') and anchor not in anchors(dest):
                bad.append(f'{path}:{n}: {target}: no heading #{anchor} in {dest}')
    return bad


def main(argv):
    files = argv or subprocess.run(['git', 'ls-files', '*.md'], capture_output=True,
                                   text=True, check=True).stdout.split()
    bad = [b for f in files for b in check(f)]
    print('\n'.join(bad) if bad else f'{len(files)} files: every relative link resolves')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
