"""Writing the tools' results: Markdown + CSV tables, JSON, and matplotlib figures as PNG, all atomically."""

import csv
import io
import json
import os

from rtm_plugin.files import atomic_write

def format_value(v):
    if isinstance(v, bool) or v is None:
        return '' if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f'{v:.4g}' if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f'{v:.4f}'.rstrip('0').rstrip('.')
    return str(v)

def markdown_table(rows, columns):
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(format_value(row.get(c)) for c in columns) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'

def write_table(outdir, name, rows, columns, title=None, notes=()):
    """<outdir>/<name>.md (title, table, notes) and <outdir>/<name>.csv (full precision). Returns both paths."""
    md = (f'### {title}\n\n' if title else '') + markdown_table(rows, columns)
    if notes:
        md += '\n' + '\n'.join(notes) + '\n'
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return (atomic_write(os.path.join(outdir, f'{name}.md'), md),
            atomic_write(os.path.join(outdir, f'{name}.csv'), buf.getvalue()))

def write_json(path, obj):
    return atomic_write(path, json.dumps(obj, indent=2) + '\n')

def figure(rows=1, cols=1, size=(4.0, 3.0)):
    """A matplotlib figure on the Agg backend (no display needed) and its axes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    return fig, axes

def save_figure(fig, path, dpi=80):
    import matplotlib.pyplot as plt
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=dpi)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())
