"""The IR and the language's functions: nodes, shapes, interning, traversal; nothing here imports upward."""
