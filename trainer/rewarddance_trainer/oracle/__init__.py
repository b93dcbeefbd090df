"""An independent gold oracle: classical computer vision + a separately trained style classifier on pixels."""
