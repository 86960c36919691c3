"""A settings file derived from the checkout's own: a two-level YAML (section -> key -> value) with some keys set.

`rtm-patch` writes StudioGAN's RTM configs this way: the user's baseline YAML, text kept line for line, with the
overlay's keys replaced in place or appended to their section. So `diff baseline.yaml baseline-RTM.yaml` shows the
mapper keys and nothing else, and no upstream file is stored in this repository.

The result is parsed back and must equal the baseline's mapping updated by the overlays, or ValueError.
"""

import re

import yaml

SECTION = re.compile(r'^([A-Za-z_][\w-]*):[ \t]*(#.*)?$')
ENTRY = re.compile(r'^([ \t]+)([A-Za-z_][\w-]*):(.*)$')

def _two_level(text, name):
    data = yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f'{name}: expected sections of key: value settings (a two-level mapping)')
    return data

def overlay_entries(text, name='overlay'):
    """[(section, key, 'key: value  # comment')] of an overlay file, in order; its own-line comments are skipped."""
    entries, section = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        head, entry = SECTION.match(line), ENTRY.match(line)
        if head:
            section = head.group(1)
        elif entry and section is not None:
            entries.append((section, entry.group(2), line.strip()))
        else:
            raise ValueError(f'{name} line {number}: expected "SECTION:" or an indented "key: value", got {line!r}')
    _two_level(text, name)
    return entries

def leading_comment(text):
    """The comment lines an overlay starts with (its description), without the '#'."""
    lines = []
    for line in text.splitlines():
        if not line.startswith('#'):
            break
        lines.append(line[1:].strip())
    return lines

def _section_span(lines, section):
    """(header index, end index) of a top-level section; the body holds indented, blank and comment lines."""
    starts = [i for i, m in enumerate(map(SECTION.match, lines)) if m and m.group(1) == section]
    if len(starts) > 1:
        raise ValueError(f'section {section} appears {len(starts)} times')
    if not starts:
        return None
    end = starts[0] + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in ' \t#'):
        end += 1
    return starts[0], end

def set_entry(lines, section, key, entry):
    """Replace `key` in `section`, or append it after the section's last setting (adding the section if needed)."""
    span = _section_span(lines, section)
    if span is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += [f'{section}:', f'  {entry}']
        return
    start, end = span
    body = [(i, ENTRY.match(lines[i])) for i in range(start + 1, end)]
    settings = [(i, m) for i, m in body if m]
    indent = settings[0][1].group(1) if settings else '  '
    for i, m in settings:
        if m.group(2) == key:
            lines[i] = m.group(1) + entry
            return
    last = settings[-1][0] if settings else start
    lines.insert(last + 1, indent + entry)

def compose(base_text, overlays, header=(), base_name='base'):
    """The base YAML text with each overlay's (name, text) keys set, in order, under `header` comment lines."""
    expected = _two_level(base_text, base_name)
    lines = base_text.splitlines()
    for name, text in overlays:
        values = yaml.safe_load(text)
        for section, key, entry in overlay_entries(text, name):
            set_entry(lines, section, key, entry)
            expected.setdefault(section, {})[key] = values[section][key]
    result = ''.join(f'# {line}'.rstrip() + '\n' for line in header) + '\n'.join(lines) + '\n'
    if _two_level(result, 'composed') != expected:
        raise ValueError(f'composing {base_name} with {", ".join(n for n, _ in overlays)} did not give the expected '
                         f'settings (is {base_name} plain "SECTION:" / "  key: value" YAML?)')
    return result
