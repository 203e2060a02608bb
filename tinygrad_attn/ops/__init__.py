"""Primitive differentiable ops, one family per module: elementwise, reduce, movement, linalg.

Each op is a ``Function`` subclass (see ``autograd.py``) with a forward on arrays and a backward in
Tensor ops, plus a plain function that users and ``Tensor`` methods call.
"""
