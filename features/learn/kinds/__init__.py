"""The model kinds, one class per module; features.learn.registry names them."""
