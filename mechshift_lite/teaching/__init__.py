"""What only the book uses: exercise checkers, widget explorers and offline stand-in models.

The analyses never import from here; the chapters and their tests do.
"""
