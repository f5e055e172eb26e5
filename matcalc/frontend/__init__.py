"""From text to the IR: the grammar's parser, declarations, type checking by unification, lowering."""
