"""Widgets (ipywidgets 8; anywidget for the custom views): the chat, the embedding map, the image
gallery and before/after slider, the side-by-side comparison. Every widget output carries a static
picture (PNG or HTML) in the same MIME bundle, for nbconvert, GitHub and saved notebooks.

Nothing here is imported when the extension loads; ipywidgets is imported when a widget is made.
"""
