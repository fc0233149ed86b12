"""On the cart over time: the drift watch (:mod:`edgevcf.watch.drift`).

Cart side: numpy and the standard library only, never a toolchain.
"""
