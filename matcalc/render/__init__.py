"""Writing the IR for people: text, LaTeX, names for shared parts."""
