"""The sections of RESULTS.md, one module per benchmark area.

Each ``section_*`` function takes the ``_render.Results`` of benchmarks/results/ and returns its
section's markdown lines (a ``## title`` first), or None when none of its JSON files exists;
``benchmarks/table.py`` puts them in order.
"""
