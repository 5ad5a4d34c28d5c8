"""The course as a static book, built from the notebooks' stored outputs (nothing is executed).

    python -m closekit.book build [--out build/book] [--strict]    # or: bash course.sh book
    python -m closekit.book stamp [--execute | --kernel RELEASE] NOTEBOOK...
    python -m closekit.book check                                   # editions share their code
    python -m closekit.book sync [--check | --accept] [NOTEBOOK...]  # give translations the new code

``build`` (build.py) stages each edition and runs Sphinx + myst-nb; ``sphinx_ext`` frames each page
and sanitizes stored HTML (``sanitize``); ``frame`` writes the words and links around a chapter;
``editions`` knows the languages and the rule that their code cells are identical; ``provenance``
records which kernel and day a notebook's outputs come from. The words and links are data, in
``book.toml``. Building needs the ``book`` extra (Sphinx, myst-nb, furo, nh3, jieba).
"""
