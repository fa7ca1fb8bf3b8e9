"""Media: image references in, downloaded and thumbnailed outputs out.

(Interface fixed by the engine; implementation pending.)
"""
